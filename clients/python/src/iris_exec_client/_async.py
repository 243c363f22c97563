"""The asynchronous client: :class:`IrisClient`'s methods, awaited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self

import httpx

from iris_exec_client import _core
from iris_exec_client._core import LogCursor, LogStream, SseParser
from iris_exec_client._errors import IrisApiError, IrisConnectionError, api_error
from iris_exec_client._models import (
    Closed,
    ExecuteResponse,
    Execution,
    ExecutionPage,
    Language,
    Sandbox,
    SandboxPage,
    SubmittedExecution,
    execute_body,
)


class AsyncIrisClient:
    """An asyncio client of the IRIS code execution service (see :class:`IrisClient`).

    ``api_key`` and ``base_url`` default to the ``IRIS_API_KEY`` and ``IRIS_URL``
    environment variables (and ``http://127.0.0.1:8000``). Failed requests are retried
    ``max_retries`` times (transport errors, 5xx, 429 with ``Retry-After``); executions
    carry an ``Idempotency-Key`` so that a retry never runs the code twice.
    ``log_stream`` chooses how :meth:`stream_logs` reads: ``"auto"`` (Server-Sent Events,
    falling back to polling where the events route does not exist, as on AWS), ``"sse"`` or
    ``"poll"``."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout_s: float = _core.DEFAULT_TIMEOUT_S,
        max_retries: int = 2,
        max_retry_wait_s: float = 30.0,
        log_stream: LogStream = "auto",
        poll_interval_s: float = 0.5,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._s = _core.settings(
            api_key,
            base_url,
            timeout_s=timeout_s,
            max_retries=max_retries,
            max_retry_wait_s=max_retry_wait_s,
            log_stream=log_stream,
            poll_interval_s=poll_interval_s,
        )
        self._own_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout_s)
        self._sse = log_stream != "poll"

    @property
    def base_url(self) -> str:
        return self._s.base_url

    # -- executions ------------------------------------------------------------------------

    async def execute(
        self,
        code: str,
        *,
        language: Language | None = None,
        sandbox_id: str | None = None,
        session_id: str | None = None,
        project_id: str | None = None,
        context: dict[str, Any] | None = None,
        timeout_ms: int | None = None,
        keep_state: bool | None = None,
        idempotency_key: str | None = None,
    ) -> ExecuteResponse:
        """Run code and wait for its answer. A failure of the code is data
        (``result.success`` false and ``result.error``), not an exception. ``keep_state``:
        run in the sandbox's live runner, whose top-level names the next execution with
        ``keep_state`` in the same ``sandbox_id`` sees (``result.metadata.state_reset``)."""
        body = execute_body(
            code,
            language=language,
            sandbox_id=sandbox_id,
            session_id=session_id,
            project_id=project_id,
            context=context,
            timeout_ms=timeout_ms,
            keep_state=keep_state,
            background=False,
        )
        response = await self._execute(body, idempotency_key)
        return ExecuteResponse.model_validate(response.json())

    async def submit(
        self,
        code: str,
        *,
        language: Language | None = None,
        sandbox_id: str | None = None,
        session_id: str | None = None,
        project_id: str | None = None,
        context: dict[str, Any] | None = None,
        timeout_ms: int | None = None,
        keep_state: bool | None = None,
        idempotency_key: str | None = None,
    ) -> SubmittedExecution:
        """Start code in the asynchronous mode (``async: true``) and return at once; follow
        it with :meth:`stream_logs` and read its answer with :meth:`get_execution`."""
        body = execute_body(
            code,
            language=language,
            sandbox_id=sandbox_id,
            session_id=session_id,
            project_id=project_id,
            context=context,
            timeout_ms=timeout_ms,
            keep_state=keep_state,
            background=True,
        )
        response = await self._execute(body, idempotency_key)
        return SubmittedExecution.model_validate(response.json())

    async def get_execution(
        self, execution_id: str, *, after: int = 0, limit: int | None = None
    ) -> Execution:
        """Status, the log lines after line ``after`` and, once ended, the answer."""
        response = await self._request(
            "GET",
            f"/api/iris/executions/{execution_id}",
            params=_core.execution_params(after, limit),
        )
        return Execution.model_validate(response.json())

    async def stream_logs(self, execution_id: str, *, after: int = 0) -> AsyncIterator[str]:
        """The execution's log lines (``[stdout] ...`` / ``[stderr] ...``) as they are
        printed, from line ``after + 1``, until it ends. Then :meth:`get_execution` has
        its answer."""
        if self._sse:
            async for line in self._sse_logs(execution_id, LogCursor(after)):
                yield line
        else:
            async for line in self._polled_logs(execution_id, LogCursor(after)):
                yield line

    # -- sandboxes -------------------------------------------------------------------------

    async def get_sandbox(self, sandbox_id: str) -> Sandbox:
        response = await self._request("GET", "/api/iris/sandbox", params={"sandboxId": sandbox_id})
        return Sandbox.model_validate(response.json())

    async def list_sandboxes(
        self, *, status: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> SandboxPage:
        """The project's sandboxes, newest first (a page: pass ``next_cursor`` back)."""
        params = {k: v for k, v in (("status", status), ("limit", limit), ("cursor", cursor)) if v}
        response = await self._request("GET", "/api/iris/sandboxes", params=params)
        return SandboxPage.model_validate(response.json())

    async def list_executions(
        self,
        *,
        sandbox_id: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> ExecutionPage:
        """Every execution of the project, newest first, kept after its sandbox is gone."""
        given = (
            ("sandboxId", sandbox_id),
            ("status", status),
            ("limit", limit),
            ("cursor", cursor),
        )
        params = {k: v for k, v in given if v}
        response = await self._request("GET", "/api/iris/executions", params=params)
        return ExecutionPage.model_validate(response.json())

    async def close_sandbox(self, sandbox_id: str) -> Closed:
        """Close one sandbox (closing a closed one is fine)."""
        response = await self._request(
            "DELETE", "/api/iris/sandbox", params={"sandboxId": sandbox_id}
        )
        return Closed.model_validate(response.json())

    async def close_all_sandboxes(self) -> Closed:
        """Close every sandbox of the key's project; ``closed`` says how many."""
        response = await self._request("DELETE", "/api/iris/sandbox", params={"all": "true"})
        return Closed.model_validate(response.json())

    # -- plumbing --------------------------------------------------------------------------

    async def _execute(self, body: dict[str, Any], idempotency_key: str | None) -> httpx.Response:
        key = idempotency_key or _core.new_idempotency_key()
        return await self._request(
            "POST", "/api/iris/execute", json=body, headers={"Idempotency-Key": key}
        )

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    method,
                    self._s.base_url + path,
                    params=params,
                    json=json,
                    headers={**self._s.headers, **(headers or {})},
                    timeout=self._s.timeout_s,
                )
            except httpx.TransportError as exc:
                wait = _core.retry_delay(self._s, attempt, None, retrying_own=attempt > 0)
                if wait is None:
                    raise IrisConnectionError(
                        f"{method} {self._s.base_url}{path} failed: {exc!r}"
                    ) from exc
            else:
                if response.status_code < 400:
                    return response
                wait = _core.retry_delay(self._s, attempt, response, retrying_own=attempt > 0)
                if wait is None:
                    raise api_error(response)
            await asyncio.sleep(wait)
            attempt += 1

    async def _sse_logs(self, execution_id: str, cursor: LogCursor) -> AsyncIterator[str]:
        url = f"{self._s.base_url}/api/iris/executions/{execution_id}/events"
        while True:
            response: httpx.Response | None = None
            try:
                async with self._http.stream(
                    "GET",
                    url,
                    headers={**self._s.headers, **_core.stream_headers(cursor.after)},
                    timeout=_core.stream_timeout(self._s),
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        error = api_error(response)
                        if self._s.log_stream == "auto" and _core.is_missing_route(error):
                            await self.get_execution(execution_id, limit=1)  # a 404 of its own
                            self._sse = False
                            async for polled in self._polled_logs(execution_id, cursor):
                                yield polled
                            return
                        raise error
                    parser = SseParser()
                    async for line in response.aiter_lines():
                        event = parser.feed(line)
                        if event is None:
                            continue
                        text, done = cursor.apply(event)
                        if text is not None:
                            yield text
                        if done:
                            return
                response = None  # the stream ended without `done`: reconnect
            except httpx.TransportError:
                response = None
            except IrisApiError as error:
                if error.status < 500 and error.status != 429:
                    raise
            wait = _core.retry_delay(self._s, cursor.failures, response, retrying_own=False)
            cursor.failures += 1
            if wait is None:
                raise IrisConnectionError(f"the log stream of {execution_id} kept failing")
            await asyncio.sleep(wait)

    async def _polled_logs(self, execution_id: str, cursor: LogCursor) -> AsyncIterator[str]:
        while True:
            execution = await self.get_execution(execution_id, after=cursor.after)
            for line in execution.logs:
                yield line
            cursor.after = execution.cursor
            if execution.done and not execution.logs:
                return
            if not execution.logs:
                await asyncio.sleep(self._s.poll_interval_s)

    # -- lifetime --------------------------------------------------------------------------

    async def close(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
