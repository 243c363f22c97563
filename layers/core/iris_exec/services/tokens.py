"""Per-execution tool tokens: short-lived, bound to (project, sandbox, execution, session),
expiring at the execution's deadline, signed (HMAC-SHA256) with a key no sandbox sees."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable

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

    def __init__(self, signing_key: bytes | Callable[[], bytes], clock: Clock) -> None:
        self._key_source = signing_key
        self._key: bytes | None = None
        if isinstance(signing_key, bytes):
            self._key = self._checked(signing_key)
        self._clock = clock

    @staticmethod
    def _checked(key: bytes) -> bytes:
        if len(key) < 32:
            raise ValueError("the token signing key must be at least 32 bytes")
        return key

    def _sign(self, payload: bytes) -> str:
        if self._key is None:
            assert callable(self._key_source)
            self._key = self._checked(self._key_source())
        return _b64(hmac.new(self._key, payload, hashlib.sha256).digest())

    def mint(
        self,
        project_id: str,
        sandbox_id: str,
        execution_id: str,
        session_id: str | None,
        expires_at: float,
    ) -> ToolGrant:
        claims = {"p": project_id, "s": sandbox_id, "e": execution_id, "x": round(expires_at, 3)}
        if session_id is not None:
            claims["n"] = session_id
        payload = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
        token = f"{TOKEN_PREFIX}{_b64(payload)}.{self._sign(payload)}"
        return ToolGrant(project_id, sandbox_id, execution_id, expires_at, token, session_id)

    def verify(self, token: str) -> ToolGrant:
        """The grant a token carries; 401 if forged, malformed or expired."""
        body, _, signature = token.removeprefix(TOKEN_PREFIX).partition(".")
        try:
            payload = _unb64(body)
            valid = hmac.compare_digest(self._sign(payload), signature)
            claims = json.loads(payload) if valid else None
        except (ValueError, UnicodeDecodeError):
            claims = None
        if not isinstance(claims, dict):
            raise Unauthorized("Invalid execution token")
        if float(claims["x"]) <= self._clock():
            raise Unauthorized("Execution token expired: the execution it was made for has ended")
        return ToolGrant(
            project_id=str(claims["p"]),
            sandbox_id=str(claims["s"]),
            execution_id=str(claims["e"]),
            expires_at=float(claims["x"]),
            token=token,
            session_id=claims.get("n"),
        )
