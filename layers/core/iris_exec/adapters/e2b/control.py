"""The two E2B API calls of the sandbox routes, over plain HTTP: is a sandbox running
(``GET /sandboxes/{id}``), and kill it (``DELETE /sandboxes/{id}``).

Why not the SDK here: importing it takes ~340 ms (httpx, rich, protobuf, its sync and
async clients, templates, volumes), which the first ``sandbox_get`` or ``sandbox_delete``
of every Lambda container would pay for two REST calls. Creating sandboxes and running
code still go through the SDK. This module follows the SDK where it matters: the API
address (``E2B_API_URL``, else ``https://api.<E2B_DOMAIN or e2b.app>``), the
``X-API-KEY`` header, three attempts on connection failures, and its reading of the
answers (404: no such sandbox; 401: a bad key; 429: rate limited; 503: no capacity).
Tests check it against the SDK's own view of the same sandboxes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from urllib.parse import quote

from iris_exec.adapters.httppool import TRANSPORT_ERRORS, ConnectionPool, Reply
from iris_exec.domain.errors import InternalError, ProviderUnavailable

log = logging.getLogger(__name__)

USER_AGENT = "iris-exec"
ATTEMPTS = 3
RETRY_PAUSE_S = 0.2


def api_url() -> str:
    """Where the SDK sends API calls, by the same rules."""
    explicit = os.environ.get("E2B_API_URL")
    if explicit:
        return explicit
    if os.environ.get("E2B_DEBUG", "false").lower() == "true":
        return "http://localhost:3000"
    return f"https://api.{os.environ.get('E2B_DOMAIN') or 'e2b.app'}"


def api_error(status: int, detail: str) -> InternalError | ProviderUnavailable:
    """E2B's failure answer ``status`` as a domain error: the one reading of them, for the
    SDK's exceptions (``E2BSandboxProvider``) and the REST calls here alike."""
    if status == 401:
        log.error("E2B rejected our API key: %s", detail)
        return InternalError("the E2B API key was rejected; check the E2B secret")
    if status == 429:
        return ProviderUnavailable("E2B is rate-limiting us", retry_after_s=10)
    if status == 503:
        return ProviderUnavailable("E2B has no capacity right now", retry_after_s=15)
    return ProviderUnavailable(f"E2B failed: {detail}", retry_after_s=5)


class E2BControl:
    def __init__(self, api_key: Callable[[], str], *, timeout_s: float = 30.0) -> None:
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._pool: ConnectionPool | None = None
        self._pool_lock = threading.Lock()  # _send runs in worker threads

    async def state(self, sandbox_ref: str) -> str | None:
        """The sandbox's state (``running``, ``paused``), or None if E2B does not know it."""
        reply = await self._call("GET", sandbox_ref)
        if reply.status == 404:
            return None
        self._raise_for(reply)
        try:
            detail = json.loads(reply.body)
        except ValueError as exc:
            raise ProviderUnavailable("E2B answered without the detail", retry_after_s=5) from exc
        return str(detail.get("state", "running")).lower() if isinstance(detail, dict) else None

    async def kill(self, sandbox_ref: str) -> bool:
        """Kill the sandbox: False if it was already gone."""
        reply = await self._call("DELETE", sandbox_ref)
        if reply.status == 404:
            return False
        self._raise_for(reply)
        return True

    async def _call(self, method: str, sandbox_ref: str) -> Reply:
        headers = {
            "X-API-KEY": self._api_key(),
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }
        path = f"/sandboxes/{quote(sandbox_ref, safe='')}"
        return await asyncio.to_thread(self._send, method, path, headers)

    def _send(self, method: str, path: str, headers: dict[str, str]) -> Reply:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    api_url(), connect_timeout=self._timeout_s, read_timeout=self._timeout_s
                )
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return self._pool.exchange(method, path, headers)
            except TRANSPORT_ERRORS as exc:
                log.info("E2B %s %s: attempt %d failed: %r", method, path, attempt, exc)
                if attempt == ATTEMPTS:
                    detail = (
                        "E2B did not answer in time"
                        if isinstance(exc, TimeoutError)
                        else f"E2B is unreachable: {exc}"
                    )
                    raise ProviderUnavailable(detail, retry_after_s=5) from exc
                time.sleep(RETRY_PAUSE_S * attempt)
        raise AssertionError("unreachable")

    @staticmethod
    def _raise_for(reply: Reply) -> None:
        if reply.status < 300:
            return
        message = ""
        with contextlib.suppress(ValueError):
            body = json.loads(reply.body) if reply.body else {}
            message = str(body.get("message", "")) if isinstance(body, dict) else ""
        raise api_error(reply.status, f"{reply.status}: {message}")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
