"""Per-execution tool tokens: short-lived, bound to (project, sandbox, execution, session),
expiring at the execution's deadline, signed (HMAC-SHA256) with a key no sandbox sees."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

from iris_exec.domain.errors import Unauthorized
from iris_exec.domain.models import ToolGrant
from iris_exec.services.clock import Clock

TOKEN_PREFIX = "iet_"  # noqa: S105 - a prefix, not a secret


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ExecutionTokens:
    """Mints and verifies tokens. The key may be given lazily (a callable), so that a
    function that never mints or verifies one never fetches it."""

    def __init__(
        self,
        signing_key: bytes | Callable[[], bytes],
        clock: Clock,
        previous_key: Callable[[], bytes | None] | None = None,
    ) -> None:
        """A callable ``signing_key`` is asked at each use (it keeps its own cache, so that
        a rotated key takes effect); ``previous_key``, the key before the last rotation,
        still verifies the tokens minted with it."""
        self._key_source = signing_key
        self._key: bytes | None = None
        if isinstance(signing_key, bytes):
            self._key = self._checked(signing_key)
        self._previous = previous_key
        self._clock = clock

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
        if hmac.compare_digest(self._sign(payload), signature):
            return True
        previous = self._previous() if self._previous is not None else None
        return previous is not None and hmac.compare_digest(
            self._sign(payload, previous), signature
        )

    def mint(
        self,
        project_id: str,
        sandbox_id: str,
        execution_id: str,
        session_id: str | None,
        expires_at: float,
        usage_key: str | None = None,
    ) -> ToolGrant:
        """``usage_key``: the API Gateway key the tool calls are metered on (the caller's)."""
        claims = {"p": project_id, "s": sandbox_id, "e": execution_id, "x": round(expires_at, 3)}
        if session_id is not None:
            claims["n"] = session_id
        if usage_key is not None:
            claims["u"] = usage_key
        payload = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
        token = f"{TOKEN_PREFIX}{_b64(payload)}.{self._sign(payload)}"
        return ToolGrant(project_id, sandbox_id, execution_id, expires_at, token, session_id)

    def verify(self, token: str) -> ToolGrant:
        """The grant a token carries; 401 if forged, malformed or expired."""
        claims = self._claims(token)
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
