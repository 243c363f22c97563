"""One error vocabulary. Each domain error carries its HTTP status; the HTTP edge renders
one envelope from it and MCP renders tool errors. Nothing matches on message text."""

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
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}


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


class MethodNotAllowed(IrisError):
    status = 405
    title = "Method Not Allowed"


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

    def __init__(self, message: str, *, retry_after_s: int = 5) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after_s))})


class InternalError(IrisError):
    """Something broke on our side. The message is generic; details go to the log only."""

    status = 500
    title = "Internal Server Error"


class ProviderError(Exception):
    """Raised by sandbox providers; the services turn it into a domain error."""


class SandboxLost(ProviderError):
    """The provider no longer has this sandbox (killed, expired or crashed behind our back)."""

    def __init__(self, detail: str, *, reason: str = "failed") -> None:
        super().__init__(detail)
        self.reason = reason


class ProviderUnavailable(ProviderError):
    """The provider cannot serve now; retry later."""

    def __init__(self, detail: str, *, retry_after_s: int = 5) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class StoreUnavailable(Exception):
    """A store (registry, keys, rate limits) cannot be reached. Requests fail closed (503)."""


class AlreadyExists(Exception):
    """A conditional create found the item already there."""


class ConfigurationError(Exception):
    """The service cannot start as configured (missing bubblewrap, bad settings...).
    The message says what to install or change."""
