"""The HTTP edge with a faulty provider: 503 and 500 answers keep the contract's shape
and never leak internals."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from iris_exec.composition import Services
from iris_exec.domain.errors import ProviderUnavailable, StoreUnavailable
from iris_exec.http.app import create_app
from tests.support.app import fake_container
from tests.support.fakes import FakeProvider, MovableClock

pytestmark = pytest.mark.anyio


@pytest.fixture
def container(tmp_path: Path, provider: FakeProvider) -> Services:
    return fake_container(tmp_path, provider, MovableClock())


@pytest.fixture
def key(container: Services) -> str:
    return container.auth.create_key("alpha")[0]


def client(container: Services, key: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(container), raise_app_exceptions=False)
    return httpx.AsyncClient(
        transport=transport, base_url="http://test", headers={"Authorization": f"Bearer {key}"}
    )


async def test_provider_unavailable_is_503_with_retry_after(
    container: Services, provider: FakeProvider, key: str
) -> None:
    provider.fail_create = ProviderUnavailable("rate limited by the provider", retry_after_s=9)
    async with client(container, key) as http:
        response = await http.post("/api/iris/execute", json={"code": "1"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "9"
    assert response.json()["error"] == "Service Unavailable"


async def test_unexpected_failure_is_500_without_details(
    container: Services, provider: FakeProvider, key: str
) -> None:
    provider.fail_run = RuntimeError("postgres://admin:hunter2@db/secret")
    async with client(container, key) as http:
        response = await http.post("/api/iris/execute", json={"code": "1"})
    assert response.status_code == 500
    body = response.json()
    assert "hunter2" not in response.text and "postgres" not in response.text
    assert body["message"].startswith("An internal error occurred")
    assert body["requestId"] in body["message"]


async def test_store_down_fails_closed_with_503(
    container: Services, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> object:
        raise StoreUnavailable("database is locked")

    monkeypatch.setattr(container.adapters.rate_limits, "hit", broken)
    async with client(container, key) as http:
        response = await http.post("/api/iris/execute", json={"code": "1"})
    assert response.status_code == 503
    assert "locked" not in response.text
    assert response.headers["retry-after"] == "5"


async def test_every_response_carries_its_request_id(container: Services, key: str) -> None:
    async with client(container, key) as http:
        response = await http.get("/api/iris/sandbox")
    assert response.json()["requestId"] == response.headers["x-request-id"]
    assert response.headers["x-request-id"].startswith("req_")
