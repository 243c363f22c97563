"""Per-execution tool tokens: short-lived, bound to (project, sandbox, execution, session),
expiring at the execution's deadline, signed (HMAC-SHA256) with a key no sandbox sees.

A signature and a deadline alone would let a token outlive what it was made for. So, when
the stores are given, a token is only honoured while its execution holds its sandbox's
lease (the lease is released once every process of the execution is gone, and a closed
sandbox has none), while the API key that started the execution is active, and within its
project's tool-call budget per minute."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

from iris_exec.domain.errors import Unauthorized
from iris_exec.domain.models import Principal, SandboxStatus, ToolGrant
from iris_exec.domain.ports import KeyStore, SandboxRegistry
from iris_exec.services.clock import Clock
from iris_exec.services.ratelimit import RateLimiter

TOKEN_PREFIX = "iet_"  # noqa: S105 - a prefix, not a secret
#: An active key is looked up again after this long (listing keys is a Scan on DynamoDB):
#: a revocation reaches the tokens of running executions within it.
KEY_CHECK_TTL_S = 2.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


#: The ids of API keys (services/auth.py); other principals are the service's own.
API_KEY_ID_PREFIX = "key_"


class ExecutionTokens:
    """Mints and verifies tokens. The key may be given lazily (a callable), so that a
    function that never mints or verifies one never fetches it."""

    def __init__(
        self,
        signing_key: bytes | Callable[[], bytes],
        clock: Clock,
        previous_key: Callable[[], bytes | None] | None = None,
        *,
        registry: SandboxRegistry | None = None,
        keys: KeyStore | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        """A callable ``signing_key`` is asked at each use (it keeps its own cache, so that
        a rotated key takes effect); ``previous_key``, the key before the last rotation,
        still verifies the tokens minted with it. With ``registry``, ``keys`` and
        ``rate_limiter``, a token is live only while its execution holds its sandbox's lease
        and its key is active, and its calls are charged to the project's tool budget."""
        self._key_source = signing_key
        self._key: bytes | None = None
        if isinstance(signing_key, bytes):
            self._key = self._checked(signing_key)
        self._previous = previous_key
        self._clock = clock
        self._registry = registry
        self._keys = keys
        self._rate_limiter = rate_limiter
        #: (project, key id) -> until when the key is known to be active.
        self._active_keys: dict[tuple[str, str], float] = {}

    @staticmethod
    def _checked(key: bytes) -> bytes:
        if len(key) < 32:
            raise ValueError("the token signing key must be at least 32 bytes")
        return key

    def _sign(self, payload: bytes, key: bytes | None = None) -> str:
        if key is None:
            key = self._key
        if key is None:
            assert callable(self._key_source)
            key = self._checked(self._key_source())
        return _b64(hmac.new(key, payload, hashlib.sha256).digest())

    def _signed(self, payload: bytes, signature: str) -> bool:
        # As bytes: compare_digest refuses text that is not ASCII (a TypeError, a 500).
        given = signature.encode("utf-8", "replace")
        if hmac.compare_digest(self._sign(payload).encode(), given):
            return True
        previous = self._previous() if self._previous is not None else None
        return previous is not None and hmac.compare_digest(
            self._sign(payload, previous).encode(), given
        )

    def mint(
        self,
        project_id: str,
        sandbox_id: str,
        execution_id: str,
        session_id: str | None,
        expires_at: float,
        usage_key: str | None = None,
        *,
        lease_id: str | None = None,
        key_id: str | None = None,
    ) -> ToolGrant:
        """A token for one execution. ``usage_key``: the API Gateway key the tool calls are
        metered on (the caller's); ``lease_id`` (the sandbox lease it runs under) and
        ``key_id`` (the API key that started it) bind it to their lives."""
        claims = {"p": project_id, "s": sandbox_id, "e": execution_id, "x": round(expires_at, 3)}
        if session_id is not None:
            claims["n"] = session_id
        if usage_key is not None:
            claims["u"] = usage_key
        if lease_id is not None:
            claims["l"] = lease_id
        if key_id is not None:
            claims["k"] = key_id
        payload = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
        token = f"{TOKEN_PREFIX}{_b64(payload)}.{self._sign(payload)}"
        return ToolGrant(project_id, sandbox_id, execution_id, expires_at, token, session_id)

    def verify(self, token: str) -> ToolGrant:
        """The grant a token carries, for one tool call; 401 if forged, malformed, expired
        or no longer live (see the module's text), 429 past the project's tool budget."""
        claims = self._claims(token)  # parsed and checked once per tool call
        self._check_live(claims, self._clock())
        return self._grant(claims, token)

    def signed_grant(self, token: str) -> ToolGrant:
        """The grant a token carries if it is signed and unexpired, without asking whether
        its execution still runs (API Gateway's authorizer, whose answers are cached: the
        tool server itself asks at every call)."""
        return self._grant(self._claims(token), token)

    @staticmethod
    def _grant(claims: dict[str, Any], token: str) -> ToolGrant:
        return ToolGrant(
            project_id=str(claims["p"]),
            sandbox_id=str(claims["s"]),
            execution_id=str(claims["e"]),
            expires_at=float(claims["x"]),
            token=token,
            session_id=claims.get("n"),
        )

    def metering_key(self, token: str) -> str | None:
        """The API Gateway key a valid token's tool calls are metered on, if it names one;
        401 if the token is forged, malformed or expired."""
        usage_key = self._claims(token).get("u")
        return usage_key if isinstance(usage_key, str) else None

    def _claims(self, token: str) -> dict[str, Any]:
        body, _, signature = token.removeprefix(TOKEN_PREFIX).partition(".")
        try:
            payload = _unb64(body)
            claims = json.loads(payload) if self._signed(payload, signature) else None
        except (ValueError, UnicodeDecodeError):
            claims = None
        if not isinstance(claims, dict):
            raise Unauthorized("Invalid execution token")
        if float(claims["x"]) <= self._clock():
            raise Unauthorized("Execution token expired: the execution it was made for has ended")
        return claims

    def _key_active(self, project_id: str, key_id: str, now: float) -> bool:
        if not key_id.startswith(API_KEY_ID_PREFIX):
            # Started by the service itself (the CLI's in-process run), not by an API key:
            # nothing to revoke. Tokens are signed, so no caller can claim such an id.
            return True
        if self._active_keys.get((project_id, key_id), 0.0) > now:
            return True
        assert self._keys is not None
        if not any(k.key_id == key_id and k.active for k in self._keys.list(project_id)):
            return False
        if len(self._active_keys) > 10_000:
            self._active_keys.clear()
        self._active_keys[(project_id, key_id)] = now + KEY_CHECK_TTL_S
        return True

    def _check_live(self, claims: dict[str, object], now: float) -> None:
        project_id, sandbox_id = str(claims["p"]), str(claims["s"])
        lease_id, key_id = claims.get("l"), claims.get("k")
        if self._registry is not None:
            record = self._registry.get(project_id, sandbox_id)
            if record is None or lease_id is None or record.lease_id != lease_id:
                raise Unauthorized(
                    "Execution token expired: the execution it was made for has ended"
                )
            if record.status is not SandboxStatus.RUNNING or not record.is_busy(now):
                raise Unauthorized("Execution token expired: its sandbox is closed")
        if self._keys is not None and not self._key_active(project_id, str(key_id), now):
            raise Unauthorized("Execution token revoked: the API key that started it is revoked")
        if self._rate_limiter is not None:
            # Charged to the project's tool budget, whichever of its keys started the execution.
            self._rate_limiter.check(Principal(project_id, f"tools:{project_id}"))
