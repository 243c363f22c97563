"""The console in a real browser (Debian's Chromium through Playwright) against the real local
server with real jails: what a person signing in and clicking around sees."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, expect

from tests.support.browser import axe_violations, chromium, describe, screenshot, sign_in
from tests.support.server import LocalServer

pytestmark = pytest.mark.jail

SESSION = "console-session-1"


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    # The module's pages share one key: a person clicking through a dozen pages in a
    # minute would too, but the tests do it faster than anyone (the 429 page has its own).
    with LocalServer(
        tmp_path_factory.mktemp("console") / "data", rate_limit_per_minute=1000
    ) as running:
        yield running


@pytest.fixture(scope="module")
def console_key(console_server: LocalServer) -> str:
    return console_server.create_key("console")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A page that fails the test on any script error or Content-Security-Policy report."""
    opened = context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # The browser logs each 4xx answer ("Failed to load resource"): those are expected.
        expected = "Failed to load resource" in message.text
        if "Content Security Policy" in message.text or (message.type == "error" and not expected):
            problems.append(message.text)

    opened.on("console", on_console)
    opened.on("pageerror", lambda exc: problems.append(str(exc)))
    yield opened
    assert problems == [], problems


def load_example(page: Page, title: str) -> None:
    page.get_by_label("Example").select_option(label=title)
    page.get_by_role("button", name="Load example").click()


def run(page: Page, button: str = "Run") -> None:
    page.get_by_role("button", name=button, exact=True).click()
    expect(page.get_by_test_id("verdict")).to_be_visible(timeout=60_000)


def pane(page: Page, name: str) -> str:
    return page.locator(f'pre[data-pane="{name}"]').first.inner_text().strip()


def test_the_page_is_served_with_a_strict_policy(console_server: LocalServer) -> None:
    response = httpx.get(console_server.url + "/")
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    # No inline script: the page's only script is its own file.
    assert re.findall(r"<script[^>]*>[^<]*", response.text) == [
        '<script type="module" src="console/app.js">'
    ]
    nonce = re.search(r"'nonce-([^']+)'", policy)
    assert nonce and nonce.group(1) in response.text
    assert nonce.group(1) not in httpx.get(console_server.url + "/").text  # one per load
    assert httpx.get(console_server.url + "/console/../settings.py").status_code == 404


def test_sign_in_refuses_a_wrong_key_then_signs_in_and_out(
    page: Page, console_server: LocalServer, console_key: str
) -> None:
    page.goto(console_server.url + "/")
    screenshot(page, "01-sign-in")
    assert axe_violations(page) == []
    page.get_by_label("API key").fill("sk_live_" + "x" * 43)
    page.get_by_role("button", name="Sign in").click()
    error = page.locator("#notice .error")
    expect(error).to_contain_text("401")
    expect(error).to_contain_text("requestId req_")
    assert page.evaluate("sessionStorage.length") == 0
    sign_in(page, console_server.url, console_key)
    assert console_key not in page.url
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_a_revoked_key_returns_to_sign_in(page: Page, console_server: LocalServer) -> None:
    key = console_server.create_key("revoked")
    sign_in(page, console_server.url, key)
    assert console_server.cli("keys", "revoke", key).returncode == 0
    page.get_by_role("link", name="Sandboxes").click()
    expect(page.get_by_label("API key")).to_be_visible()
    expect(page.locator("#notice .error")).to_contain_text("401")


def test_the_seed_examples_run_and_the_iris_pages_show_what_they_wrote(
    page: Page, console_server: LocalServer, console_key: str
) -> None:
    sign_in(page, console_server.url, console_key)
    page.get_by_label("Session id").fill(SESSION)
    for title in (
        "Example 1: Pattern discovery",
        "Example 2: Multi-agent workflow",
        "Example 3: Prompt evolution",
        "Python: metrics and an event",
    ):
        load_example(page, title)
        run(page)
        expect(page.get_by_test_id("verdict")).to_contain_text("Succeeded")
        assert "executionTime" in page.get_by_test_id("execution-time").inner_text()
        expect(page.get_by_test_id("setup-time")).to_contain_text("setupTime")
    assert "Workflow completed!" not in pane(page, "output")  # the last run's output only
    screenshot(page, "02-playground-result")
    assert axe_violations(page) == []

    page.get_by_role("link", name="IRIS").click()
    expect(page.locator('[data-prompt="analysis-v1"]')).to_contain_text(
        "Analyze {data} for {aspect}"
    )
    expect(page.locator('[data-prompt="analysis-v2"]')).to_contain_text("{context}")
    page.get_by_label("Consensus id").fill(SESSION)
    page.locator("#consensus").get_by_role("button", name="Show").click()
    expect(page.get_by_test_id("consensus-status")).to_contain_text("approved")
    expect(page.get_by_test_id("consensus-status")).to_contain_text("approve 3")
    expect(page.locator("#lineage")).to_contain_text("consensusId")
    expect(page.get_by_test_id("metric-summary")).to_contain_text("count 1")
    page.get_by_label("Metric", exact=True).fill("quality")
    page.locator("#metrics").get_by_role("button", name="Show").click()
    expect(page.get_by_test_id("metric-summary")).to_contain_text("count 3")
    expect(page.locator("#metrics svg rect")).to_have_count(1)  # one bucket holds all three
    page.get_by_label("Minimum support").fill("0.5")
    page.locator("#patterns").get_by_role("button", name="Show").click()
    expect(page.locator("#patterns")).to_contain_text("transaction(s)")
    expect(page.locator("#patterns table")).to_contain_text("event:")
    screenshot(page, "03-iris")
    assert axe_violations(page) == []


def test_live_log_lines_of_an_async_run_appear_before_it_ends(
    page: Page, console_server: LocalServer, console_key: str
) -> None:
    sign_in(page, console_server.url, console_key)
    load_example(page, "Live logs: a 3-second program")
    page.get_by_role("button", name="Run async").click()
    first = page.get_by_test_id("live-logs").locator("li").first
    expect(first).to_have_text("[stdout] tick 1", timeout=30_000)
    # The line is there while the program still runs: no answer yet.
    assert page.get_by_test_id("verdict").count() == 0
    assert page.get_by_test_id("live-logs").locator("li").count() < 3
    expect(page.get_by_test_id("verdict")).to_contain_text("Succeeded", timeout=30_000)
    expect(page.get_by_test_id("live-logs").locator("li")).to_have_count(3)
    assert pane(page, "results") == '"done"'


def test_reuse_close_and_find_the_run_in_history(
    page: Page, console_server: LocalServer, console_key: str
) -> None:
    sign_in(page, console_server.url, console_key)
    page.locator(".cm-content").click()
    page.keyboard.press("Control+a")
    # Deleted first: Chromium's own editing, typing over a selection of several lines,
    # inserts a styled span that the policy (rightly) blocks, and reports it.
    page.keyboard.press("Backspace")
    page.keyboard.type("globalThis.n = (globalThis.n ?? 0) + 1;\nreturn 41 + 1")
    page.keyboard.press("Control+Enter")  # runs, from the editor
    expect(page.get_by_test_id("verdict")).to_contain_text("Succeeded", timeout=60_000)
    sandbox_id = page.get_by_test_id("sandbox-id").inner_text()
    assert pane(page, "results") == "42"

    page.get_by_label("Sandbox", exact=True).select_option(sandbox_id)
    run(page)
    assert page.get_by_test_id("sandbox-id").inner_text() == sandbox_id
    page.get_by_role("button", name="curl").click()
    snippet = page.get_by_test_id("snippet").inner_text()
    assert f'"sandboxId":"{sandbox_id}"' in snippet and "$IRIS_API_KEY" in snippet
    assert console_key not in snippet

    page.get_by_role("link", name="Sandboxes").click()
    screenshot(page, "04-sandboxes")
    assert axe_violations(page) == []
    page.get_by_role("button", name=f"Close {sandbox_id}").click()
    expect(page.get_by_role("status")).to_contain_text(f"Sandbox {sandbox_id} closed")
    row = page.locator("tr", has=page.locator(f'[data-sandbox="{sandbox_id}"]'))
    expect(row).to_contain_text("closed")

    page.get_by_role("link", name="Executions").click()
    page.get_by_label("Sandbox id").fill(sandbox_id)
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(2)
    screenshot(page, "05-executions")
    assert axe_violations(page) == []
    rows.last.get_by_role("link").click()
    expect(page.locator('pre[data-pane="code"]')).to_contain_text("return 41 + 1")
    expect(page.get_by_test_id("status")).to_have_text("succeeded")
    screenshot(page, "06-execution")
    assert axe_violations(page) == []
    page.get_by_role("button", name="Re-run in playground").click()
    expect(page.locator(".cm-content")).to_contain_text("return 41 + 1")
    run(page)
    assert page.get_by_test_id("sandbox-id").inner_text() != sandbox_id  # a new sandbox


def test_an_error_shows_its_stack_and_close_all_is_confirmed(
    page: Page, console_server: LocalServer, console_key: str
) -> None:
    sign_in(page, console_server.url, console_key)
    load_example(page, "An error with a stack")
    run(page)
    expect(page.get_by_test_id("verdict")).to_contain_text("Failed: SyntaxError")
    errors = pane(page, "errors")
    assert "SyntaxError" in errors and "at parse" in errors
    assert "about to fail" in page.get_by_test_id("live-logs").inner_text()

    page.get_by_label("Context (JSON object)").fill("[1, 2]")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator("#context-error")).to_contain_text("must be a JSON object")

    page.get_by_role("link", name="Sandboxes").click()
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Close all").click()
    expect(page.locator("tbody")).to_contain_text("running")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Close all").click()
    expect(page.get_by_role("status")).to_contain_text("Closed")
    expect(page.locator("tbody")).not_to_contain_text("running")


def test_audit_dark_theme_and_a_narrow_screen(
    browser: Browser, console_server: LocalServer, console_key: str
) -> None:
    ctx = browser.new_context(viewport={"width": 375, "height": 812}, color_scheme="dark")
    page = ctx.new_page()
    try:
        sign_in(page, console_server.url, console_key)
        assert page.evaluate("document.documentElement.dataset.theme") == "dark"
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        screenshot(page, "07-playground-375-dark")
        assert axe_violations(page) == []
        for name, shot in (("Audit", "08-audit-375-dark"), ("IRIS", "09-iris-375-dark")):
            page.get_by_role("link", name=name).click()
            page.get_by_role("heading", level=1).wait_for()
            page.wait_for_load_state("networkidle")
            if name == "Audit":
                expect(page.locator("tbody").first).to_contain_text("sandbox.closed")
                expect(page.locator("tbody").first).to_contain_text("execution")
            assert page.evaluate("document.documentElement.scrollWidth") <= 375
            screenshot(page, shot)
            assert axe_violations(page) == [], describe(axe_violations(page))
        page.get_by_role("button", name="Dark theme").click()
        assert page.evaluate("document.documentElement.dataset.theme") == "light"
        assert axe_violations(page) == []
    finally:
        ctx.close()


def test_screenshots_are_kept_out_of_git() -> None:
    root = Path(__file__).resolve().parents[2]
    assert "tests/browser-screenshots/" in (root / ".gitignore").read_text().splitlines()


def test_without_a_stream_live_lines_come_by_polling(
    page: Page, console_server: LocalServer, console_key: str
) -> None:
    """As on AWS, where API Gateway has no /events route: the console polls with the cursor."""
    page.route(
        "**/api/iris/executions/*/events",
        lambda route: route.fulfill(
            status=403,
            content_type="application/json",
            body='{"message":"Missing Authentication Token"}',
        ),
    )
    sign_in(page, console_server.url, console_key)
    load_example(page, "Live logs: a 3-second program")
    page.get_by_role("button", name="Run async").click()
    expect(page.get_by_test_id("live-logs").locator("li").first).to_have_text(
        "[stdout] tick 1", timeout=30_000
    )
    assert page.get_by_test_id("verdict").count() == 0
    expect(page.get_by_test_id("verdict")).to_contain_text("Succeeded", timeout=30_000)
    expect(page.get_by_test_id("live-logs").locator("li")).to_have_count(3)


def test_over_the_rate_limit_the_page_says_when_to_retry(page: Page, tmp_path: Path) -> None:
    with LocalServer(tmp_path / "data", rate_limit_per_minute=3) as server:
        key = server.create_key("limited")
        sign_in(page, server.url, key)  # 2 requests: the check, the sandbox picker
        page.get_by_role("link", name="Executions").click()
        page.get_by_role("link", name="Sandboxes").click()
        error = page.locator("#notice .error")
        expect(error).to_contain_text("429")
        expect(error).to_contain_text(re.compile(r"Retry in \d+ s"))
        expect(error).to_contain_text("requestId req_")


def test_copy_as_curl_and_python_send_the_same_request(
    page: Page, console_server: LocalServer, console_key: str
) -> None:
    sign_in(page, console_server.url, console_key)
    page.locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.press("Backspace")
    page.keyboard.type("import { context } from './iris-prime';")
    page.keyboard.press("Enter")
    page.keyboard.type("return context.who + ' ran'")
    page.get_by_label("Context (JSON object)").fill('{"who": "the snippet"}')
    env = {**os.environ, "IRIS_API_KEY": console_key}
    for kind, command in (("curl", ["bash", "-c"]), ("Python", [sys.executable, "-c"])):
        page.get_by_role("button", name=kind, exact=True).click()
        snippet = page.get_by_test_id("snippet").inner_text()
        assert console_key not in snippet
        ran = subprocess.run(
            [*command, snippet], env=env, capture_output=True, text=True, timeout=60
        )
        assert ran.returncode == 0, ran.stderr
        assert "the snippet ran" in ran.stdout, ran.stdout


def test_keep_state_runs_like_notebook_cells(
    page: Page, console_server: LocalServer, console_key: str
) -> None:
    sign_in(page, console_server.url, console_key)
    page.get_by_label("Keep state").check()

    def cell(code: str) -> None:
        page.locator(".cm-content").click()
        page.keyboard.press("Control+a")
        page.keyboard.press("Backspace")
        page.keyboard.type(code)
        page.get_by_role("button", name="Run", exact=True).click()
        expect(page.get_by_role("status")).to_contain_text("Done", timeout=60_000)

    cell("const counted: number = 41;\nreturn counted")
    expect(page.get_by_test_id("state")).to_have_text("state kept", timeout=60_000)
    first = page.get_by_test_id("sandbox-id").inner_text()
    # The next cell goes to the same sandbox by itself, and sees what the first declared.
    expect(page.get_by_label("Sandbox", exact=True)).to_have_value(first)
    cell("return counted + 1")
    expect(page.locator('pre[data-pane="results"]')).to_have_text("42", timeout=60_000)
    assert page.get_by_test_id("sandbox-id").inner_text() == first
    page.get_by_role("button", name="curl").click()
    assert '"keepState":true' in page.get_by_test_id("snippet").inner_text()

    cell("process.exit(3)")
    expect(page.get_by_test_id("verdict")).to_contain_text("Failed", timeout=60_000)
    cell("return typeof counted")
    expect(page.get_by_test_id("state")).to_have_text("state reset (exit)", timeout=60_000)
    assert pane(page, "results") == '"undefined"'
    assert axe_violations(page) == []
