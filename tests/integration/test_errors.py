"""Every row of CONTRACT.md's error table, against the real local server."""

from __future__ import annotations

import concurrent.futures
import json
import time
from typing import Any

import httpx
import pytest

from tests.support.server import LocalServer

ENVELOPE = {"error", "message", "statusCode", "timestamp", "path", "requestId"}


def check_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) >= ENVELOPE, body
    assert body["statusCode"] == status
    assert body["timestamp"].endswith("Z")
    assert body["requestId"] == response.headers["x-request-id"]
    return body


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"code": "1"', "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"", "not valid JSON"),
        (b'{"code": 5}', "'code'"),
        (b'{"code": null}', "'code'"),
        (b'{"code": ""}', "must not be empty"),
        (b'{"code": "   \\n"}', "must not be empty"),
        (b'{"other": 1}', "'code' is required"),
        (b'{"code": "1", "extra": true}', "unknown field 'extra'"),
        (b'{"code": "1", "sessionId": "has space"}', "sessionId"),
        (b'{"code": "1", "sessionId": ""}', "sessionId"),
        (b'{"code": "1", "sessionId": 12}', "sessionId"),
        (b'{"code": "1", "sandboxId": "not-a-sandbox"}', "sandboxId"),
        (b'{"code": "1", "sandboxId": 7}', "sandboxId"),
        (b'{"code": "1", "context": [1]}', "context"),
        (b'{"code": "1", "context": "{}"}', "context"),
        (b'{"code": "1", "language": "ruby"}', "language"),
        (b'{"code": "1", "timeoutMs": 0}', "timeoutMs"),
        (b'{"code": "1", "timeoutMs": "1000"}', "timeoutMs"),
        (b'{"code": "1", "timeoutMs": 99999999}', "timeoutMs"),
        (b'{"code": "1", "projectId": 3}', "projectId"),
    ],
)
def test_bad_request_bodies_are_400(server: LocalServer, key: str, raw: bytes, needle: str) -> None:
    with server.client(key) as client:
        response = client.post(
            "/api/iris/execute", content=raw, headers={"Content-Type": "application/json"}
        )
    body = check_error(response, 400)
    assert body["error"] == "Bad Request"
    assert needle in body["message"]


def test_context_too_large_is_400(server: LocalServer, key: str) -> None:
    with server.client(key) as client:
        response = client.post(
            "/api/iris/execute", json={"code": "1", "context": {"blob": "x" * 70_000}}
        )
    assert "'context' is larger than 65536 bytes" in check_error(response, 400)["message"]


def test_code_of_exactly_100_kib_runs_and_one_byte_more_is_413(
    server: LocalServer, key: str
) -> None:
    prefix = "return 1; //"
    filler = "é" * ((100 * 1024 - len(prefix)) // 2)  # two bytes each in UTF-8
    code = prefix + filler
    assert len(code.encode()) == 100 * 1024
    with server.client(key) as client:
        ok = client.post("/api/iris/execute", json={"code": code})
        assert ok.status_code == 200
        assert ok.json()["result"]["output"] == "=== Results ===\n1"
        too_big = client.post("/api/iris/execute", json={"code": code + "x"})
    body = check_error(too_big, 413)
    assert "102401 bytes" in body["message"]


def test_huge_declared_body_is_refused_before_reading(server: LocalServer, key: str) -> None:
    with server.client(key) as client:
        response = client.post(
            "/api/iris/execute",
            content=b"{" + b" " * (5 * 1024 * 1024) + b"}",
            headers={"Content-Type": "application/json"},
        )
    check_error(response, 413)


def test_missing_invalid_and_revoked_keys_are_401(server: LocalServer) -> None:
    revoked = server.create_key("revoked-project")
    assert server.cli("keys", "revoke", revoked).returncode == 0
    cases = [
        ({}, "Authorization header is required"),
        ({"Authorization": ""}, "Authorization header is required"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "Invalid API key format"),
        ({"Authorization": "Bearer sk_test_abc"}, "Invalid API key format"),
        ({"Authorization": "sk_live_" + "a" * 43}, "Invalid API key format"),
        ({"Authorization": "Bearer sk_live_" + "a" * 43}, "Invalid or inactive API key"),
        ({"Authorization": f"Bearer {revoked}"}, "Invalid or inactive API key"),
    ]
    with httpx.Client(base_url=server.url) as client:
        for headers, message in cases:
            for method, path in (
                ("POST", "/api/iris/execute"),
                ("GET", "/api/iris/sandbox?sandboxId=sb_12345678"),
                ("DELETE", "/api/iris/sandbox?all=true"),
            ):
                response = client.request(method, path, headers=headers, json={"code": "1"})
                body = check_error(response, 401)
                assert body["message"] == message
                assert "hint" in body
                assert response.headers["www-authenticate"] == "Bearer"


def test_project_id_of_another_project_is_403(server: LocalServer, key: str) -> None:
    with server.client(key) as client:
        response = client.post("/api/iris/execute", json={"code": "1", "projectId": "beta"})
    assert "projectId" in check_error(response, 403)["message"]


def test_unknown_sandbox_is_404_everywhere(server: LocalServer, key: str) -> None:
    with server.client(key) as client:
        for response in (
            client.get("/api/iris/sandbox", params={"sandboxId": "sb_unknown123"}),
            client.delete("/api/iris/sandbox", params={"sandboxId": "sb_unknown123"}),
            client.post("/api/iris/execute", json={"code": "1", "sandboxId": "sb_unknown123"}),
        ):
            assert check_error(response, 404)["message"] == "Sandbox sb_unknown123 not found"
        check_error(client.get("/api/iris/nothing-here"), 404)


def test_sandbox_query_parameters_are_checked(server: LocalServer, key: str) -> None:
    with server.client(key) as client:
        assert "required" in check_error(client.get("/api/iris/sandbox"), 400)["message"]
        check_error(client.get("/api/iris/sandbox", params={"sandboxId": "../etc"}), 400)
        check_error(client.delete("/api/iris/sandbox"), 400)
        check_error(client.delete("/api/iris/sandbox", params={"all": "yes"}), 400)
        both = client.delete(
            "/api/iris/sandbox", params={"all": "true", "sandboxId": "sb_12345678"}
        )
        check_error(both, 400)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/api/iris/execute", "POST"),
        ("GET", "/api/iris/execute", "POST"),
        ("POST", "/api/iris/sandbox", "GET, DELETE"),
        ("PATCH", "/api/iris/sandbox", "GET, DELETE"),
    ],
)
def test_wrong_method_is_405(
    server: LocalServer, key: str, method: str, path: str, allowed: str
) -> None:
    with server.client(key) as client:
        response = client.request(method, path)
    body = check_error(response, 405)
    assert set(response.headers["allow"].split(", ")) >= set(allowed.split(", "))
    assert method in body["message"]


def test_cors_preflight_is_answered_without_a_key(server: LocalServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        for path in ("/api/iris/execute", "/api/iris/sandbox"):
            preflight = client.options(
                path,
                headers={
                    "Origin": "https://dashboard.example",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, content-type",
                },
            )
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == "*"
            assert "POST" in preflight.headers["access-control-allow-methods"]
            assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
            bare = client.options(path)
            assert bare.status_code == 204


def test_busy_sandbox_with_no_wait_is_409_and_waits_otherwise(
    server: LocalServer, key: str
) -> None:
    with server.client(key) as client:
        sandbox = client.post("/api/iris/execute", json={"code": "1"}).json()["sandboxId"]

        def slow() -> httpx.Response:
            with server.client(key) as own:
                return own.post(
                    "/api/iris/execute",
                    json={
                        "code": "await new Promise(r => setTimeout(r, 1500)); return 'slow'",
                        "sandboxId": sandbox,
                    },
                )

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(slow)
            time.sleep(0.5)
            rejected = client.post(
                "/api/iris/execute",
                json={"code": "1", "sandboxId": sandbox},
                headers={"X-Iris-Busy": "reject"},
            )
            body = check_error(rejected, 409)
            assert "busy" in body["message"]
            waited = client.post(
                "/api/iris/execute", json={"code": "return 'after'", "sandboxId": sandbox}
            )
            assert first.result().json()["result"]["output"] == '=== Results ===\n"slow"'
        assert waited.status_code == 200
        assert waited.json()["result"]["output"] == '=== Results ===\n"after"'


def test_rate_limit_101st_request_is_429(server: LocalServer) -> None:
    key = server.create_key("rate-limited")
    with server.client(key) as client:
        for i in range(100):
            response = client.get("/api/iris/sandbox", params={"sandboxId": "sb_12345678"})
            assert response.status_code == 404
            assert response.headers["x-ratelimit-limit"] == "100"
            assert response.headers["x-ratelimit-remaining"] == str(99 - i)
        limited = client.get("/api/iris/sandbox", params={"sandboxId": "sb_12345678"})
    body = check_error(limited, 429)
    assert "Rate limit" in body["message"]
    # A sliding window of 5-second buckets: the oldest request leaves it within 65 s.
    assert 1 <= int(limited.headers["retry-after"]) <= 65
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert int(limited.headers["x-ratelimit-reset"]) > time.time()
    # Another key of another project is not affected.
    other = server.create_key("not-limited")
    with server.client(other) as client:
        assert (
            client.get("/api/iris/sandbox", params={"sandboxId": "sb_12345678"}).status_code == 404
        )


def test_error_bodies_are_json_with_one_shape(server: LocalServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        response = client.post("/api/iris/execute", json={"code": "1"})
    body = check_error(response, 401)
    assert json.loads(response.text) == body
    assert body["path"] == "/api/iris/execute"
