"""One error vocabulary. Every error a caller can see is an `IrisError` carrying its HTTP
status; each edge translates it in one place (the HTTP app's handler, MCP's `tool_error`,
the CLI's `main`). Its ``message`` is for the caller; its ``detail`` (``str(exc)``) is for
the log only, so a store's or a provider's own words never reach a client on a 5xx.
Nothing matches on message text.

Besides the family: `AlreadyExists` is a port's answer that the services act on, never an
error; `ConfigurationError` stops the service at start-up (settings, bubblewrap, a port in
use): a misconfiguration found while serving is an `InternalError`."""

from __future__ import annotations

from typing import Any, ClassVar


class IrisError(Exception):
    """Base of every error a caller may see. ``message`` says what to change."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal Server Error"

    def __init__(
        self,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(detail or message)
        self.message = message
        #: What the log gets (the message unless the cause says more than a caller may see).
        self.detail = detail or message
        self.headers = headers or {}
        self.extra = extra or {}

    def public_message(self, request_id: str | None = None) -> str:
        """What the caller reads (``request_id``: where the edge has one to quote)."""
        return self.message


class BadRequest(IrisError):
    status = 400
    title = "Bad Request"


class Unauthorized(IrisError):
    status = 401
    title = "Unauthorized"

    HINT = "Send 'Authorization: Bearer sk_live_...' with an active key of your project."

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"}, extra={"hint": self.HINT})


class Forbidden(IrisError):
    status = 403
    title = "Forbidden"


class NotFound(IrisError):
    status = 404
    title = "Not Found"


class Conflict(IrisError):
    status = 409
    title = "Conflict"


class Gone(IrisError):
    """The sandbox existed but is gone; ``reason`` is closed, expired, evicted or failed."""

    status = 410
    title = "Gone"

    def __init__(self, message: str, *, reason: str, at: str | None) -> None:
        super().__init__(message, extra={"reason": reason, "goneAt": at})
        self.reason = reason


class UnprocessableEntity(IrisError):
    status = 422
    title = "Unprocessable Entity"


class PayloadTooLarge(IrisError):
    status = 413
    title = "Payload Too Large"


class TooManyRequests(IrisError):
    status = 429
    title = "Too Many Requests"

    def __init__(self, message: str, *, retry_after_s: int, headers: dict[str, str] | None = None):
        merged = {"Retry-After": str(max(1, retry_after_s)), **(headers or {})}
        super().__init__(message, headers=merged)


class ServiceUnavailable(IrisError):
    """The sandbox provider (or a store we depend on) is unavailable or rate-limiting us."""

    status = 503
    title = "Service Unavailable"

    def __init__(self, message: str, *, retry_after_s: int = 5, detail: str | None = None):
        super().__init__(
            message, headers={"Retry-After": str(max(1, retry_after_s))}, detail=detail
        )
        self.retry_after_s = max(1, retry_after_s)


class StoreUnavailable(ServiceUnavailable):
    """A store (registry, keys, rate limits, tool records, a secret) cannot be reached.
    Requests fail closed: a 503 that says no more than that; ``detail`` goes to the log."""

    MESSAGE = "A store this service depends on is unavailable; retry shortly"

    def __init__(self, detail: str) -> None:
        super().__init__(self.MESSAGE, retry_after_s=5, detail=detail)


class InternalError(IrisError):
    """Something broke on our side (a bug, or a misconfiguration found while serving: a
    rejected E2B key, a missing setting). The caller reads a generic message; ``detail``,
    which says what to fix, goes to the log only."""

    status = 500
    title = "Internal Server Error"

    def __init__(self, detail: str) -> None:
        super().__init__("An internal error occurred; it was logged", detail=detail)

    def public_message(self, request_id: str | None = None) -> str:
        return f"{self.message} with requestId {request_id}" if request_id else self.message


class ProviderUnavailable(ServiceUnavailable):
    """Raised by sandbox providers: they cannot serve now; retry later. The services say
    which step failed; ``str(exc)`` is the provider's own account."""

    def __init__(self, detail: str, *, retry_after_s: int = 5) -> None:
        super().__init__(
            "The sandbox provider is unavailable; retry shortly",
            retry_after_s=retry_after_s,
            detail=detail,
        )


class SandboxLost(ServiceUnavailable):
    """Raised by sandbox providers: this sandbox is gone behind our back (killed, expired,
    crashed). The services record why and answer 410 Gone; one that escaped them is a 503."""

    def __init__(self, detail: str, *, reason: str = "failed") -> None:
        super().__init__("The sandbox stopped unexpectedly; retry", detail=detail)
        self.reason = reason


class AlreadyExists(Exception):
    """A conditional create found the item already there (a port's answer, not an error:
    the services act on it)."""


class ConfigurationError(Exception):
    """The service cannot start as configured (missing bubblewrap, bad settings...).
    The message says what to install or change. Raised at start-up only."""
