"""The services a request goes through, in-process on SQLite and a fake provider: parsing
of the execute body, authentication and keys, idempotent executions, and the IRIS tools'
rules. Each is what a caller of the HTTP API or of /mcp would notice, without a jail or a
server (make test-fast)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from iris_exec.composition import Services
from iris_exec.domain.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    Forbidden,
    InternalError,
    IrisError,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    StoreUnavailable,
    Unauthorized,
    UnprocessableEntity,
)
from iris_exec.domain.models import ExecutionJob, Principal, RunOutcome
from iris_exec.domain.tools import ToolCaller, ToolInputError, ToolLimitError
from iris_exec.services.commands import ExecuteCommand, parse_execute
from iris_exec.settings import Settings
from tests.support.app import fake_container
from tests.support.fakes import FakeProvider, MovableClock

pytestmark = pytest.mark.anyio

ALPHA = Principal("alpha", "key_alpha")


@pytest.fixture
def services(tmp_path: Path, provider: FakeProvider, clock: MovableClock) -> Services:
    return fake_container(tmp_path, provider, clock, tool_storage_quota_bytes=4096)


def parse(body: Any, principal: Principal = ALPHA, **settings: Any) -> ExecuteCommand:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_execute(raw, principal, Settings(**settings))


# -- the execute body -----------------------------------------------------------------------


def test_a_minimal_body_runs_typescript_with_the_default_time_limit() -> None:
    command = parse({"code": "return 1"}, execution_timeout_s=30)
    assert (command.code, command.language, command.timeout_s) == ("return 1", "typescript", 30)
    assert not command.background and not command.timeout_given


def test_timeout_ms_lowers_the_limit_and_async_asks_for_the_background() -> None:
    command = parse({"code": "1", "timeoutMs": 1500, "async": True, "language": "python"})
    assert (command.timeout_s, command.background, command.language) == (1.5, True, "python")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "JSON"),
        ([1, 2], "JSON object"),
        ({"code": "   "}, "'code' must not be empty"),
        ({"code": "1", "extra": True}, "extra"),
        ({"code": 1}, "code"),
        ({"code": "1", "sessionId": "has spaces"}, "sessionId"),
        ({"code": "1", "timeoutMs": 0}, "timeoutMs"),
        ({"code": "1", "sandboxId": "nope"}, "sandboxId"),
        ({"code": "1", "language": "ruby"}, "language"),
    ],
)
def test_a_bad_body_is_a_400_that_names_what_to_fix(body: Any, says: str) -> None:
    with pytest.raises(BadRequest) as raised:
        parse(body)
    assert says in raised.value.message


def test_nan_in_context_is_refused() -> None:
    with pytest.raises(BadRequest):
        parse(b'{"code": "1", "context": {"x": NaN}}')


def test_another_projects_id_is_403() -> None:
    with pytest.raises(Forbidden):
        parse({"code": "1", "projectId": "beta"})
    assert parse({"code": "1", "projectId": "alpha"}).code == "1"


def test_code_over_the_limit_is_413_counted_in_utf8_bytes() -> None:
    assert parse({"code": "é" * 50}, max_code_bytes=100).code == "é" * 50
    with pytest.raises(PayloadTooLarge, match="101 bytes"):
        parse({"code": "é" * 50 + "x"}, max_code_bytes=100)


# -- authentication and keys ------------------------------------------------------------------


def test_a_created_key_authenticates_as_its_project(services: Services) -> None:
    key, record = services.auth.create_key("alpha", name="ci")
    principal = services.auth.authenticate(f"Bearer {key}")
    assert (principal.project_id, principal.key_id) == ("alpha", record.key_id)
    assert services.auth.authenticate([f"bearer   {key}  "]).project_id == "alpha"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "Authorization header is required"),
        ("  ", "Authorization header is required"),
        ("Basic dXNlcjpwYXNz", "Invalid API key format"),
        ("Bearer sk_live_short", "Invalid API key format"),
        ("Bearer sk_live_" + "A" * 43, "Invalid or inactive API key"),
    ],
)
def test_a_bad_authorization_is_401_with_the_contracts_message(
    services: Services, header: str | None, message: str
) -> None:
    with pytest.raises(Unauthorized) as raised:
        services.auth.authenticate(header)
    assert raised.value.message == message
    assert raised.value.headers["WWW-Authenticate"] == "Bearer"


def test_two_authorization_headers_are_refused(services: Services) -> None:
    key, _ = services.auth.create_key("alpha")
    with pytest.raises(Unauthorized, match="one Authorization header"):
        services.auth.authenticate([f"Bearer {key}", f"Bearer {key}"])


def test_a_revoked_key_stops_at_once_and_a_short_prefix_is_ambiguous(services: Services) -> None:
    key, record = services.auth.create_key("alpha")
    services.auth.create_key("alpha")
    with pytest.raises(BadRequest, match="at least 10"):
        services.auth.revoke("sk_live_")
    assert services.auth.revoke(record.key_id).key_id == record.key_id
    with pytest.raises(Unauthorized, match="inactive"):
        services.auth.authenticate(f"Bearer {key}")
    with pytest.raises(NotFound):
        services.auth.revoke("key_unknown00")


def test_an_imported_hash_is_taken_once(services: Services) -> None:
    digest = "a" * 64
    services.auth.import_key(digest, "alpha")
    with pytest.raises(AlreadyExists):
        services.auth.import_key(digest, "alpha")
    with pytest.raises(BadRequest, match="SHA-256"):
        services.auth.import_key("not-a-hash", "alpha")


# -- idempotent executions -------------------------------------------------------------------


class CountingProvider(FakeProvider):
    def __init__(self) -> None:
        super().__init__()
        self.runs = 0

    async def run(self, provider_ref: str, job: ExecutionJob) -> RunOutcome:
        self.runs += 1
        return await super().run(provider_ref, job)


@pytest.fixture
def counting(tmp_path: Path, clock: MovableClock) -> tuple[Services, CountingProvider]:
    provider = CountingProvider()
    return fake_container(tmp_path, provider, clock), provider


def command(code: str = "return 1") -> ExecuteCommand:
    return ExecuteCommand(code=code, language="typescript", timeout_s=30)


async def test_a_retry_with_the_same_key_replays_the_answer_without_running_again(
    counting: tuple[Services, CountingProvider],
) -> None:
    services, provider = counting
    first, replayed = await services.idempotent.execute(ALPHA, command(), "retry-1")
    second, again = await services.idempotent.execute(ALPHA, command(), "retry-1")
    assert (replayed, again, provider.runs) == (False, True, 1)
    assert second == first
    # Another project's same key is another key.
    _, other = await services.idempotent.execute(Principal("beta", "k"), command(), "retry-1")
    assert (other, provider.runs) == (False, 2)


async def test_the_same_key_with_another_body_is_422(
    counting: tuple[Services, CountingProvider],
) -> None:
    services, provider = counting
    await services.idempotent.execute(ALPHA, command("return 1"), "k-1")
    with pytest.raises(UnprocessableEntity):
        await services.idempotent.execute(ALPHA, command("return 2"), "k-1")
    assert provider.runs == 1


async def test_the_same_key_while_the_first_runs_is_409_with_retry_after(
    counting: tuple[Services, CountingProvider],
) -> None:
    services, provider = counting
    provider.run_delay = 0.2
    first = asyncio.create_task(services.idempotent.execute(ALPHA, command(), "slow"))
    await asyncio.sleep(0.05)
    with pytest.raises(Conflict) as raised:
        await services.idempotent.execute(ALPHA, command(), "slow")
    assert raised.value.headers["Retry-After"] == "1"
    assert (await first)[1] is False


async def test_a_run_that_failed_is_not_remembered(
    counting: tuple[Services, CountingProvider],
) -> None:
    services, provider = counting
    provider.fail_create = ServiceUnavailable("provider down")
    with pytest.raises(ServiceUnavailable):
        await services.idempotent.execute(ALPHA, command(), "flaky")
    provider.fail_create = None
    _, replayed = await services.idempotent.execute(ALPHA, command(), "flaky")
    assert (replayed, provider.runs) == (False, 1)


async def test_a_bad_idempotency_key_is_400(services: Services) -> None:
    with pytest.raises(BadRequest, match="Idempotency-Key"):
        await services.idempotent.execute(ALPHA, command(), "has space")


# -- the IRIS tools --------------------------------------------------------------------------

CALLER = ToolCaller("alpha", "session-1", "ex_1")


def test_prompts_are_versioned_per_name_and_project(services: Services) -> None:
    tools = services.tools
    one = tools.save_prompt(CALLER, "greet", "Hi {who}", None)
    two = tools.save_prompt(CALLER, "greet", "Hello {who}", ["who"])
    assert (one.version, two.version, two.variables) == (1, 2, ["who"])
    assert tools.get_prompt(CALLER, "greet", 1) == one
    assert tools.get_prompt(CALLER, "greet", None) == two
    assert tools.get_prompt(ToolCaller("beta"), "greet", None) is None


@pytest.mark.parametrize(
    ("variables", "says"),
    [(["other"], "declared but do not appear"), ([], "does not declare"), (["a-b"], "identifiers")],
)
def test_prompt_variables_must_match_the_template(
    services: Services, variables: list[str], says: str
) -> None:
    with pytest.raises(ToolInputError, match=says):
        services.tools.save_prompt(CALLER, "p", "Hi {who}", variables)


def test_voting_again_replaces_the_vote(services: Services) -> None:
    tools = services.tools
    tools.submit_vote(CALLER, "c1", "agent-a", "approve")
    tools.submit_vote(CALLER, "c1", "agent-b", "reject")
    last = tools.submit_vote(CALLER, "c1", "agent-b", "approve")
    assert last.tally.model_dump() == {"approve": 2, "reject": 0, "abstain": 0, "total": 2}
    assert last.status == "approved"
    assert tools.get_consensus(CALLER, "c1").tally == last.tally
    with pytest.raises(ToolInputError, match="approve"):
        tools.submit_vote(CALLER, "c1", "agent-c", "maybe")  # type: ignore[arg-type]


@pytest.mark.parametrize("threshold", [0, -0.1, 1.5])
def test_pattern_thresholds_outside_0_1_are_refused(services: Services, threshold: float) -> None:
    with pytest.raises(ToolInputError, match="minSupport"):
        services.tools.discover_patterns(CALLER, threshold, 0.5, 10)


def test_the_storage_quota_stops_writes_and_stores_nothing(services: Services) -> None:
    tools = services.tools
    tools.log_event(CALLER, "small", {"n": 1})
    with pytest.raises(ToolLimitError, match="storage quota of 4096 bytes"):
        tools.log_event(CALLER, "big", {"blob": "x" * 5000})
    tools.log_event(CALLER, "still-fits", None)


def test_a_tool_store_that_is_down_is_a_503_that_says_no_more(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*_: object) -> None:
        raise StoreUnavailable("postgres://admin:hunter2@db refused the connection")

    monkeypatch.setattr(services.adapters.tool_store, "add_event", down)
    with pytest.raises(StoreUnavailable) as raised:
        services.tools.log_event(CALLER, "e", None)
    assert raised.value.status == 503
    assert "hunter2" not in raised.value.public_message()
    assert "hunter2" in raised.value.detail  # for the log


# -- one error family, one translation per edge ------------------------------------------------


@pytest.mark.parametrize(
    ("error", "tool_text"),
    [
        (
            StoreUnavailable("postgres://admin:hunter2@db: connection refused"),
            "503 Service Unavailable: A store this service depends on is unavailable; retry"
            " shortly (retry after 5 s)",
        ),
        (
            InternalError("the E2B API key was rejected; check the E2B secret"),
            "500 Internal Server Error: An internal error occurred; it was logged",
        ),
        (NotFound("Sandbox sb_12345678 not found"), "404 Not Found: Sandbox sb_12345678 not found"),
    ],
)
def test_mcp_says_what_http_says_and_never_the_detail(error: IrisError, tool_text: str) -> None:
    from iris_exec.mcp.server import tool_error

    assert str(tool_error(error, with_status=True)) == tool_text
    assert str(tool_error(error)) == error.public_message()
    if error.status >= 500:
        assert error.detail not in tool_text
