"""`iris-exec smoke --url URL --key KEY`: the check to run right after a deploy. Every route
once, as a client would call it; one row per check; all must pass.

It leaves little behind: one sandbox (deleted at the end), one asynchronous execution and
the audit events of both."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ERROR_FIELDS = {"error", "message", "statusCode", "timestamp", "path", "requestId"}
FINAL = {"succeeded", "failed", "timed_out"}
MCP_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2025-06-18",
}


class CheckFailed(Exception):
    pass


@dataclass
class Row:
    name: str
    ok: bool
    detail: str
    ms: float


@dataclass
class Smoke:
    url: str
    key: str
    origin: str = "https://console.example.com"
    timeout_s: float = 60.0
    rows: list[Row] = field(default_factory=list)
    sandbox_id: str | None = None
    rate_headers: tuple[str | None, str | None] = (None, None)

    def __post_init__(self) -> None:
        import httpx

        self.http = httpx.Client(base_url=self.url.rstrip("/"), timeout=self.timeout_s)

    # -- helpers --------------------------------------------------------------------------

    def request(
        self, method: str, path: str, *, key: bool = True, **kwargs: Any
    ) -> tuple[int, Any, dict[str, str]]:
        headers = dict(kwargs.pop("headers", {}))
        if key:
            headers["Authorization"] = f"Bearer {self.key}"
        response = self.http.request(method, path, headers=headers, **kwargs)
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = response.text[:200]
        return response.status_code, body, {k.lower(): v for k, v in response.headers.items()}

    def check(self, name: str, run: Callable[[], str]) -> None:
        started = time.monotonic()
        try:
            detail, ok = run(), True
        except CheckFailed as exc:
            detail, ok = str(exc), False
        except Exception as exc:
            detail, ok = f"{type(exc).__name__}: {exc}", False
        self.rows.append(Row(name, ok, detail, (time.monotonic() - started) * 1000))

    @staticmethod
    def expect(condition: bool, message: str) -> None:
        if not condition:
            raise CheckFailed(message)

    def execute(self, body: dict[str, Any], status: int = 200) -> tuple[Any, dict[str, str]]:
        got, answer, headers = self.request("POST", "/api/iris/execute", json=body)
        self.expect(got == status, f"HTTP {got}: {json.dumps(answer)[:200]}")
        return answer, headers

    def mcp(self, method: str, params: dict[str, Any]) -> Any:
        call = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        got, answer, _ = self.request("POST", "/mcp", json=call, headers=MCP_HEADERS)
        self.expect(got == 200, f"HTTP {got}: {json.dumps(answer)[:200]}")
        self.expect("result" in answer, f"no result: {json.dumps(answer)[:200]}")
        return answer["result"]

    # -- the checks -----------------------------------------------------------------------

    def execute_sync(self) -> str:
        answer, headers = self.execute({"code": "console.log('smoke'); return 1 + 1"})
        self.expect(answer.get("success") is True, f"not successful: {answer.get('result')}")
        self.expect("=== Results ===\n2" in answer["result"]["output"], "wrong output")
        self.expect(answer["result"]["logs"] == ["[stdout] smoke"], "wrong logs")
        self.sandbox_id = answer["sandboxId"]
        limit = headers.get("x-ratelimit-limit")
        self.rate_headers = (limit, headers.get("x-ratelimit-remaining"))
        return f"sandbox {self.sandbox_id}, code {answer['result']['executionTime']} ms"

    def rate_limit_headers(self) -> str:
        limit, remaining = self.rate_headers
        self.expect(limit is not None and remaining is not None, "no X-RateLimit-* headers")
        return f"limit {limit}, remaining {remaining}"

    def reuse(self) -> str:
        self.expect(self.sandbox_id is not None, "no sandbox from the first execution")
        body = {"code": "return 'again'", "sandboxId": self.sandbox_id}
        answer, _ = self.execute(body)
        self.expect(answer["sandboxId"] == self.sandbox_id, "another sandbox answered")
        self.expect(answer["result"]["metadata"]["sandboxCreated"] is False, "not reused")
        return "same sandbox, not created again"

    def sandbox_get(self) -> str:
        got, body, _ = self.request(
            "GET", "/api/iris/sandbox", params={"sandboxId": self.sandbox_id}
        )
        self.expect(got == 200 and body.get("active") is True, f"HTTP {got}: {body}")
        return f"active, {body.get('totalActive')} live in the project"

    def execute_async(self) -> str:
        answer, _ = self.execute({"code": "console.log('later'); return 3", "async": True}, 202)
        execution_id = answer["executionId"]
        deadline, body = time.monotonic() + self.timeout_s, dict[str, Any]()
        path = f"/api/iris/executions/{execution_id}"
        polls = 0
        while time.monotonic() < deadline:
            got, body, _ = self.request("GET", path)
            polls += 1
            self.expect(got == 200, f"HTTP {got}: {body}")
            if body["status"] in FINAL:
                break
            time.sleep(1)
        self.expect(body.get("status") == "succeeded", f"ended {body.get('status')}: {body}")
        self.expect("=== Results ===\n3" in body["result"]["output"], "wrong output")
        return f"{execution_id} succeeded after {polls} poll(s)"

    def executions_unknown(self) -> str:
        got, body, _ = self.request("GET", "/api/iris/executions/ex_" + "0" * 16)
        self.expect(got == 404, f"HTTP {got}, not 404")
        self.expect(set(body) >= ERROR_FIELDS, f"not the error shape: {body}")
        return "404 in the error shape"

    def audit(self) -> str:
        got, body, _ = self.request("GET", "/api/iris/audit", params={"limit": "5"})
        self.expect(got == 200 and isinstance(body.get("events"), list), f"HTTP {got}: {body}")
        return f"{len(body['events'])} recent event(s)"

    def mcp_initialize(self) -> str:
        result = self.mcp(
            "initialize",
            {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "iris-exec smoke", "version": "1"},
            },
        )
        return f"server {result['serverInfo']['name']} {result['serverInfo'].get('version', '')}"

    def mcp_tools(self) -> str:
        tools = [tool["name"] for tool in self.mcp("tools/list", {})["tools"]]
        self.expect(bool(tools), "no tools")
        return f"{len(tools)} tools"

    def mcp_call(self) -> str:
        result = self.mcp("tools/call", {"name": "listPrompts", "arguments": {}})
        self.expect(result.get("isError") is not True, f"tool error: {result}")
        return "listPrompts answered"

    def mcp_get(self) -> str:
        """MCP Streamable HTTP without sessions: GET (a server-to-client stream) is 405,
        locally and on AWS, as the transport's specification asks of such a server."""
        headers = {"Accept": "text/event-stream", "Authorization": f"Bearer {self.key}"}
        with self.http.stream("GET", "/mcp", headers=headers) as response:
            status, allow = response.status_code, response.headers.get("allow")
        self.expect(status == 405 and allow == "POST", f"HTTP {status}, Allow: {allow}")
        return "405, Allow: POST"

    def error_shape(self) -> str:
        got, body, _ = self.request("POST", "/api/iris/execute", json={})
        self.expect(got == 400, f"HTTP {got}, not 400")
        self.expect(set(body) >= ERROR_FIELDS, f"not the error shape: {body}")
        return str(body["message"])[:60]

    def unauthorized(self) -> str:
        got, body, _ = self.request("GET", "/api/iris/audit", key=False)
        self.expect(got == 401, f"HTTP {got}, not 401")
        self.expect(set(body) >= ERROR_FIELDS, f"not the error shape: {body}")
        return "401 in the error shape"

    def cors_preflight(self) -> str:
        got, _, headers = self.request(
            "OPTIONS",
            "/api/iris/execute",
            key=False,
            headers={
                "Origin": self.origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
            },
        )
        allowed = headers.get("access-control-allow-origin")
        self.expect(got in (200, 204), f"HTTP {got}")
        self.expect(allowed in ("*", self.origin), f"Access-Control-Allow-Origin: {allowed}")
        return f"{self.origin} allowed ({allowed})"

    def sandbox_delete(self) -> str:
        params = {"sandboxId": self.sandbox_id}
        got, body, _ = self.request("DELETE", "/api/iris/sandbox", params=params)
        self.expect(got == 200, f"HTTP {got}: {body}")
        got, body, _ = self.request("GET", "/api/iris/sandbox", params=params)
        self.expect(got != 200 or body.get("active") is False, f"still active: {body}")
        return "deleted"

    def run(self) -> bool:
        for name, check in (
            ("execute (sync)", self.execute_sync),
            ("rate-limit headers", self.rate_limit_headers),
            ("execute (reuse sandbox)", self.reuse),
            ("sandbox get", self.sandbox_get),
            ("execute (async) + poll", self.execute_async),
            ("executions: unknown id", self.executions_unknown),
            ("audit", self.audit),
            ("mcp initialize", self.mcp_initialize),
            ("mcp tools/list", self.mcp_tools),
            ("mcp tools/call", self.mcp_call),
            ("mcp GET is 405", self.mcp_get),
            ("error shape (400)", self.error_shape),
            ("no key (401)", self.unauthorized),
            ("CORS preflight", self.cors_preflight),
            ("sandbox delete", self.sandbox_delete),
        ):
            self.check(name, check)
        self.http.close()
        return all(row.ok for row in self.rows)

    def table(self) -> str:
        width = max(len(row.name) for row in self.rows)
        lines = [f"{'CHECK':<{width}}  RESULT  {'MS':>6}  DETAIL"]
        for row in self.rows:
            result = "pass" if row.ok else "FAIL"
            lines.append(f"{row.name:<{width}}  {result:<6}  {row.ms:>6.0f}  {row.detail}")
        failed = sum(not row.ok for row in self.rows)
        lines.append(
            f"{len(self.rows) - failed}/{len(self.rows)} passed"
            + (f", {failed} FAILED" if failed else "")
        )
        return "\n".join(lines)


def smoke(url: str, key: str, origin: str, timeout_s: float) -> tuple[bool, str]:
    check = Smoke(url, key, origin=origin, timeout_s=timeout_s)
    ok = check.run()
    return ok, check.table()
