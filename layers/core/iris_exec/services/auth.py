"""API keys: ``sk_live_`` + base64url(32 random bytes), stored as SHA-256 only."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Callable

from iris_exec.domain.errors import BadRequest, NotFound, Unauthorized
from iris_exec.domain.models import ApiKeyRecord, Principal
from iris_exec.domain.ports import KeyStore
from iris_exec.services.clock import Clock, new_id

KEY_PREFIX = "sk_live_"
KEY_PATTERN = re.compile(r"^sk_live_[A-Za-z0-9_-]{43}$")
PROJECT_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SHOWN_PREFIX_CHARS = 14
HASH_PATTERN = re.compile(r"^[0-9a-f]{64}$")


def new_api_key() -> str:
    raw = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return KEY_PREFIX + raw


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def bearer_credential(authorization: str | None) -> str | None:
    """The credential of ``Authorization: Bearer <credential>`` (the scheme in any case,
    spaces around), or None for another scheme or no header: the one reading of the header,
    for API keys and execution tokens alike."""
    scheme, _, credential = (authorization or "").strip().partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else None


def validate_project_id(project_id: str) -> str:
    if not PROJECT_PATTERN.match(project_id):
        raise BadRequest("project ids are 1-128 characters of letters, digits and . _ : -")
    return project_id


class AuthService:
    """Turns an Authorization header into a Principal, and manages keys."""

    def __init__(self, keys: KeyStore, clock: Clock) -> None:
        self._keys = keys
        self._clock = clock

    def authenticate(self, authorization: str | list[str] | None) -> Principal:
        """``authorization``: the Authorization header, or every one the request carried
        (two are refused: a proxy that keeps the other one would act for another key)."""
        if isinstance(authorization, list):
            if len(authorization) > 1:
                raise Unauthorized("Send one Authorization header, not several")
            authorization = authorization[0] if authorization else None
        if not authorization or not authorization.strip():
            raise Unauthorized("Authorization header is required")
        token = bearer_credential(authorization)
        if token is None or not KEY_PATTERN.match(token):
            raise Unauthorized("Invalid API key format")
        return self.principal_for_key(token)

    def principal_for_key(self, key: str) -> Principal:
        record = self._keys.find_by_hash(hash_key(key)) if KEY_PATTERN.match(key) else None
        if record is None or not record.active:
            raise Unauthorized("Invalid or inactive API key")
        return Principal(record.project_id, record.key_id, record.usage_key)

    def create_key(
        self,
        project_id: str,
        name: str | None = None,
        *,
        usage_key: Callable[[str], str] | None = None,
    ) -> tuple[str, ApiKeyRecord]:
        """A new key for the project. The key itself is returned once and never stored.
        ``usage_key(key_id)`` names its API Gateway usage-plan key, when there is one."""
        validate_project_id(project_id)
        key = new_api_key()
        key_id = new_id("key_", 9)
        record = ApiKeyRecord(
            key_id=key_id,
            key_hash=hash_key(key),
            prefix=key[:SHOWN_PREFIX_CHARS],
            project_id=project_id,
            created_at=self._clock(),
            name=name,
            usage_key=usage_key(key_id) if usage_key else None,
        )
        self._keys.add(record)
        return key, record

    def import_key(
        self,
        key_hash: str,
        project_id: str,
        *,
        name: str | None = None,
        prefix: str | None = None,
        created_at: float | None = None,
        revoked_at: float | None = None,
    ) -> ApiKeyRecord:
        """Take over a key that exists elsewhere, by its SHA-256 hash (the key stays unknown
        to us). Raises AlreadyExists if that hash is already a key."""
        validate_project_id(project_id)
        if not HASH_PATTERN.match(key_hash):
            raise BadRequest("a key hash is 64 lowercase hexadecimal characters (SHA-256)")
        record = ApiKeyRecord(
            key_id=new_id("key_", 9),
            key_hash=key_hash,
            prefix=prefix or "sk_live_(imported)",
            project_id=project_id,
            created_at=created_at if created_at is not None else self._clock(),
            revoked_at=revoked_at,
            name=name,
        )
        self._keys.add(record)
        return record

    def revoke(self, key_or_prefix: str) -> ApiKeyRecord:
        """Revoke by full key, key id or a prefix that matches exactly one key."""
        candidates: list[ApiKeyRecord]
        if KEY_PATTERN.match(key_or_prefix):
            found = self._keys.find_by_hash(hash_key(key_or_prefix))
            candidates = [found] if found else []
        else:
            keys = self._keys.list()
            candidates = [k for k in keys if k.key_id == key_or_prefix]
            by_prefix = [k for k in keys if k.prefix.startswith(key_or_prefix)]
            if not candidates and by_prefix and len(key_or_prefix) < 10:
                raise BadRequest(
                    f"{len(by_prefix)} key(s) start with {key_or_prefix!r}: give at least 10"
                    " characters of a key's prefix, or its key id (iris-exec keys list)"
                )
            candidates = candidates or by_prefix
        if not candidates:
            raise NotFound(f"no key matches {key_or_prefix!r}")
        if len(candidates) > 1:
            raise BadRequest(
                f"{len(candidates)} keys match {key_or_prefix!r}; give more characters"
            )
        record = candidates[0]
        self._keys.revoke(record.key_id, self._clock())
        return record

    def delete_key(self, key_id: str) -> bool:
        """Forget a key entirely (the CLI's key for one run)."""
        return self._keys.delete(key_id)

    def list_keys(self, project_id: str | None = None) -> list[ApiKeyRecord]:
        return self._keys.list(project_id)

    def has_keys(self) -> bool:
        return bool(self._keys.list())
