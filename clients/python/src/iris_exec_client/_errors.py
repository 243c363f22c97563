"""Typed errors. Every HTTP error of the service has one shape
(``{error, message, statusCode, timestamp, path, requestId}``); it becomes an
:class:`IrisApiError` subclass chosen by status."""

from __future__ import annotations

from typing import Any

import httpx


class IrisError(Exception):
    """Anything this client raises."""


class IrisConnectionError(IrisError):
    """The service could not be reached (after the retries)."""


class IrisApiError(IrisError):
    """The service answered with an error status.

    ``request_id`` is what to quote when asking about a failure; ``retry_after`` is the
    ``Retry-After`` header in seconds (429, 503 and an in-flight 409), else None."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        title: str = "",
        request_id: str | None = None,
        retry_after: float | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {title or 'Error'}: {message}")
        self.status = status
        self.title = title
        self.message = message
        self.request_id = request_id
        self.retry_after = retry_after
        self.body: dict[str, Any] = body or {}


class BadRequestError(IrisApiError):
    """400: malformed or invalid request."""


class AuthenticationError(IrisApiError):
    """401: no key, a malformed one, or an invalid or revoked one (``hint`` says which)."""

    @property
    def hint(self) -> str | None:
        value = self.body.get("hint")
        return value if isinstance(value, str) else None


class PermissionDeniedError(IrisApiError):
    """403: ``projectId`` is not the key's project."""


class NotFoundError(IrisApiError):
    """404: unknown, or another project's (the same answer)."""


class ConflictError(IrisApiError):
    """409: the sandbox is busy, or a request with this Idempotency-Key is still running."""


class GoneError(IrisApiError):
    """410: the sandbox existed but is gone; ``reason`` is closed, expired, evicted or failed."""

    @property
    def reason(self) -> str | None:
        value = self.body.get("reason")
        return value if isinstance(value, str) else None

    @property
    def gone_at(self) -> str | None:
        value = self.body.get("goneAt")
        return value if isinstance(value, str) else None


class PayloadTooLargeError(IrisApiError):
    """413: code over the size limit."""


class UnprocessableEntityError(IrisApiError):
    """422: the same Idempotency-Key was used with another body."""


class RateLimitError(IrisApiError):
    """429: over the rate limit, or every sandbox of the project busy; see ``retry_after``."""


class InternalServerError(IrisApiError):
    """500 (and any other 5xx without its own class)."""


class ServiceUnavailableError(IrisApiError):
    """503: the sandbox provider or a store is unavailable; see ``retry_after``."""


_BY_STATUS: dict[int, type[IrisApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    413: PayloadTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    500: InternalServerError,
    503: ServiceUnavailableError,
}


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (the service sends whole seconds), or None."""
    value = response.headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def api_error(response: httpx.Response) -> IrisApiError:
    """The typed error for an error answer (body read already)."""
    body: dict[str, Any] = {}
    try:
        parsed = response.json()
        if isinstance(parsed, dict):
            body = parsed
    except ValueError:
        pass
    status = response.status_code
    message = body.get("message")
    if not isinstance(message, str):
        message = response.text[:500] or response.reason_phrase
    title = body.get("error")
    request_id = body.get("requestId") or response.headers.get("x-request-id")
    default = InternalServerError if status >= 500 else IrisApiError
    cls = _BY_STATUS.get(status, default)
    return cls(
        status,
        message,
        title=title if isinstance(title, str) else response.reason_phrase,
        request_id=request_id if isinstance(request_id, str) else None,
        retry_after=retry_after(response),
        body=body,
    )
