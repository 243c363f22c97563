"""What the sync and async clients share: settings, the retry rule, request shapes and the
Server-Sent Events parser. Only their I/O differs."""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from iris_exec_client._errors import IrisApiError, api_error, retry_after

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
#: A synchronous execution may run 5 minutes (the service's default limit): wait a bit longer.
DEFAULT_TIMEOUT_S = 330.0
#: The events stream sends a heartbeat every 15 s while nothing happens.
STREAM_READ_TIMEOUT_S = 60.0
USER_AGENT = "iris-exec-client-python/0.1.0"

LogStream = Literal["auto", "sse", "poll"]


@dataclass(frozen=True)
class Settings:
    api_key: str
    base_url: str
    timeout_s: float
    max_retries: int
    max_retry_wait_s: float
    log_stream: LogStream
    poll_interval_s: float
    headers: Mapping[str, str] = field(default_factory=dict)


def settings(
    api_key: str | None,
    base_url: str | None,
    *,
    timeout_s: float,
    max_retries: int,
    max_retry_wait_s: float,
    log_stream: LogStream,
    poll_interval_s: float,
) -> Settings:
    key = api_key or os.environ.get("IRIS_API_KEY", "")
    if not key:
        raise ValueError("No API key: pass api_key=... or set IRIS_API_KEY")
    url = (base_url or os.environ.get("IRIS_URL") or DEFAULT_BASE_URL).rstrip("/")
    if max_retries < 0:
        raise ValueError("max_retries must be 0 or more")
    headers = {"Authorization": f"Bearer {key}", "User-Agent": USER_AGENT}
    return Settings(
        key, url, timeout_s, max_retries, max_retry_wait_s, log_stream, poll_interval_s, headers
    )


def new_idempotency_key() -> str:
    """One per logical call; every retry of that call sends the same one."""
    return f"iris-py-{uuid.uuid4().hex}"


def retry_delay(
    s: Settings, attempt: int, response: httpx.Response | None, *, retrying_own: bool
) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``, or None when not to retry.

    Retried: a transport error (``response`` None), any 5xx, a 429 that says when
    (``Retry-After`` within ``max_retry_wait_s``), and a 409 with ``Retry-After`` on a retry
    (``retrying_own``: our own earlier attempt, with the same Idempotency-Key, still running).
    """
    if attempt >= s.max_retries:
        return None
    backoff = min(s.max_retry_wait_s, 0.5 * 2.0**attempt) * (0.75 + random.random() / 2)  # noqa: S311
    if response is None:
        return backoff
    status = response.status_code
    wait = retry_after(response)
    if status >= 500:
        return backoff if wait is None else min(wait, s.max_retry_wait_s)
    if status == 429 or (status == 409 and retrying_own):
        if wait is None or wait > s.max_retry_wait_s:
            return None
        return wait
    return None


def checked(response: httpx.Response) -> httpx.Response:
    """The response when it is a success; its typed error otherwise."""
    if response.status_code >= 400:
        raise api_error(response)
    return response


def is_missing_route(error: IrisApiError) -> bool:
    """A 404 (or API Gateway's 403 for a path it has no route for) from the events route:
    confirmed as a missing route when the execution itself can be read."""
    return error.status in (403, 404)


def execution_params(after: int, limit: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {"after": after}
    if limit is not None:
        params["limit"] = limit
    return params


@dataclass
class SseEvent:
    event: str
    data: str
    id: str | None


class SseParser:
    """Server-Sent Events, line by line (https://html.spec.whatwg.org/#event-stream-interpretation)."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> SseEvent | None:
        """One line without its end; the event it completes, if any."""
        if line == "":
            if not self._data:
                self._event = ""
                return None
            event = SseEvent(self._event or "message", "\n".join(self._data), self._id)
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None  # a comment: the heartbeat
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        return None


@dataclass
class LogCursor:
    """Where a log stream is: the number of the last line yielded."""

    after: int
    failures: int = 0

    def apply(self, event: SseEvent) -> tuple[str | None, bool]:
        """The log line an event carries (or None), and whether the stream is done."""
        if event.event == "log":
            data = json.loads(event.data)
            number = int(data["n"])
            if number <= self.after:
                return None, False  # already yielded before a reconnect
            self.after = number
            self.failures = 0
            return str(data["line"]), False
        return None, event.event == "done"


def stream_headers(after: int) -> dict[str, str]:
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    if after:
        headers["Last-Event-ID"] = str(after)
    return headers


def stream_timeout(s: Settings) -> httpx.Timeout:
    return httpx.Timeout(s.timeout_s, read=STREAM_READ_TIMEOUT_S)
