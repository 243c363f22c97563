"""/docs in a real browser: Swagger UI served by this server (nothing from elsewhere), the
OpenAPI document declaring the bearer key so "Authorize" works."""

from __future__ import annotations

import httpx
from playwright.sync_api import Request, expect

from tests.support.browser import chromium
from tests.support.server import LocalServer


def test_the_api_reference_loads_offline_and_offers_authorize(server: LocalServer) -> None:
    requested: list[str] = []
    with chromium() as browser:
        context = browser.new_context()
        page = context.new_page()

        def note(request: Request) -> None:
            requested.append(request.url)

        page.on("request", note)
        page.goto(server.url + "/docs")
        expect(page.get_by_text("IRIS code execution service").first).to_be_visible(timeout=30_000)
        expect(page.locator(".opblock-summary-path", has_text="/api/iris/execute")).to_be_visible()
        expect(page.get_by_role("button", name="Authorize")).to_be_visible()
        context.close()
    assert requested, "the page made no request at all"
    assert all(url.startswith(server.url) for url in requested), [
        url for url in requested if not url.startswith(server.url)
    ]


def test_the_openapi_document_declares_the_bearer_key(server: LocalServer) -> None:
    schema = httpx.get(server.url + "/openapi.json").json()
    assert schema["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A project API key: sk_live_ followed by 43 characters",
    }
    execute = schema["paths"]["/api/iris/execute"]["post"]
    assert execute["security"] == [{"apiKey": []}]
    page = httpx.get(server.url + "/docs")
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "cdn" not in page.text.lower()


def test_the_openapi_document_lists_every_query_parameter(server: LocalServer) -> None:
    schema = httpx.get(server.url + "/openapi.json").json()

    def names(path: str, method: str) -> set[str]:
        operation = schema["paths"][path][method]
        return {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}

    assert names("/api/iris/sandboxes", "get") == {"status", "limit", "cursor"}
    assert names("/api/iris/executions", "get") == {"sandboxId", "status", "limit", "cursor"}
    assert names("/api/iris/executions/{execution_id}", "get") == {"after", "limit"}
    assert names("/api/iris/sandbox", "get") == {"sandboxId"}
    assert names("/api/iris/sandbox", "delete") == {"sandboxId", "all"}
    assert names("/api/iris/audit", "get") == {"since", "until", "limit"}
