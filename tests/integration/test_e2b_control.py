"""E2BControl (liveness and kill without the SDK) sees what the real SDK sees, against the
E2B stand-in: the same API address, the same states, the same "already gone", the same
errors for a bad key, rate limiting and an unreachable API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2b import AsyncSandbox, AuthenticationException, ConnectionConfig, NotFoundException

from iris_exec.adapters.e2b.control import E2BControl, api_url
from iris_exec.domain.errors import InternalError, ProviderUnavailable
from tests.support.e2b_standin import E2BStandIn
from tests.support.server import free_port

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def e2b() -> Iterator[E2BStandIn]:
    with E2BStandIn() as standin:
        yield standin


@pytest.fixture
def sdk_env(e2b: E2BStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in e2b.env.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"E2B_DOMAIN": "eu.e2b.example"},
        {"E2B_API_URL": "http://127.0.0.1:9999", "E2B_DOMAIN": "ignored.example"},
        {"E2B_DEBUG": "true"},
        {"E2B_DEBUG": "TRUE", "E2B_API_URL": "https://api.custom.example"},
    ],
)
def test_the_api_address_follows_the_sdks_rules(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for name in ("E2B_DOMAIN", "E2B_API_URL", "E2B_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert api_url() == ConnectionConfig(api_key="e2b_x").api_url


async def test_a_running_sandbox_is_running_for_both(e2b: E2BStandIn, sdk_env: None) -> None:
    sandbox = await AsyncSandbox.create(api_key=e2b.api_key)
    control = E2BControl(lambda: e2b.api_key)
    try:
        info = await AsyncSandbox.get_info(sandbox.sandbox_id, api_key=e2b.api_key)
        assert await control.state(sandbox.sandbox_id) == str(info.state.value).lower()
        assert await control.state(sandbox.sandbox_id) == "running"
    finally:
        await sandbox.kill()
        control.close()


async def test_a_kill_is_seen_by_the_sdk_and_a_second_kill_is_already_gone(
    e2b: E2BStandIn, sdk_env: None
) -> None:
    sandbox = await AsyncSandbox.create(api_key=e2b.api_key)
    control = E2BControl(lambda: e2b.api_key)
    try:
        assert await control.kill(sandbox.sandbox_id) is True
        with pytest.raises(NotFoundException):
            await AsyncSandbox.get_info(sandbox.sandbox_id, api_key=e2b.api_key)
        assert not e2b.sandbox(sandbox.sandbox_id).alive
        assert await control.state(sandbox.sandbox_id) is None
        assert await control.kill(sandbox.sandbox_id) is False
        assert await AsyncSandbox.kill(sandbox.sandbox_id, api_key=e2b.api_key) is False
    finally:
        control.close()


async def test_a_sandbox_e2b_never_had_is_none(e2b: E2BStandIn, sdk_env: None) -> None:
    control = E2BControl(lambda: e2b.api_key)
    assert await control.state("i-never-existed") is None
    assert await control.kill("i-never-existed") is False
    control.close()


async def test_a_rejected_key_is_a_configuration_error(e2b: E2BStandIn, sdk_env: None) -> None:
    sandbox = await AsyncSandbox.create(api_key=e2b.api_key)
    control = E2BControl(lambda: "e2b_" + "0" * 40)
    try:
        with pytest.raises(AuthenticationException):
            await AsyncSandbox.get_info(sandbox.sandbox_id, api_key="e2b_" + "0" * 40)
        with pytest.raises(InternalError, match="E2B API key was rejected"):
            await control.state(sandbox.sandbox_id)
        with pytest.raises(InternalError):
            await control.kill(sandbox.sandbox_id)
        assert e2b.sandbox(sandbox.sandbox_id).alive  # nothing was killed
    finally:
        await sandbox.kill()
        control.close()


async def test_rate_limiting_is_unavailable_with_a_retry_after(
    e2b: E2BStandIn, sdk_env: None
) -> None:
    control = E2BControl(lambda: e2b.api_key)
    e2b.rate_limit_next(times=1, retry_after=3)
    try:
        with pytest.raises(ProviderUnavailable, match="rate-limiting") as raised:
            await control.state("i-never-existed")
    finally:
        e2b.clear_faults()
        control.close()
    assert raised.value.retry_after_s == 10


async def test_an_unreachable_api_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E2B_API_URL", f"http://127.0.0.1:{free_port()}")
    control = E2BControl(lambda: "e2b_key", timeout_s=1)
    with pytest.raises(ProviderUnavailable, match="unreachable") as raised:
        await control.state("sb")
    assert raised.value.retry_after_s == 5
