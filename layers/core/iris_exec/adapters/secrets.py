"""Secrets read from AWS Secrets Manager by name, through the service's own AWS client
(``awsapi.SecretsManager``): no boto3 on the requests that need one (the E2B key on the
first sandbox_get or sandbox_delete of a container, the token signing key).

A value is kept ``max_age_s`` per (name, version stage), then read again, so that a
rotation takes effect. A secret that cannot be read is ``StoreUnavailable`` (a 503, its
name in the log), not a 500; one that holds no text is a ``ConfigurationError``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from iris_exec.domain.errors import InternalError, StoreUnavailable

if TYPE_CHECKING:
    from iris_exec.adapters.awsapi import SecretsManager

log = logging.getLogger(__name__)
SECRET_MAX_AGE_S = 300
NOT_FOUND = "ResourceNotFoundException"


class SecretVersionMissing(StoreUnavailable):
    """Secrets Manager has no such secret, or none of its versions has the stage asked for
    (ResourceNotFoundException: AWSPREVIOUS before the first rotation)."""


class SecretsManagerSecrets:
    """Secret values by name, each (name, stage) kept ``max_age_s``; thread-safe enough:
    two threads may both read an expired value, and both get a good one."""

    def __init__(self, client: SecretsManager, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._clock = clock
        self._known: dict[tuple[str, str], tuple[float, str]] = {}

    @classmethod
    def connect(cls, region: str) -> SecretsManagerSecrets:
        """Secrets Manager in ``region`` (or where AWS_ENDPOINT_URL_SECRETS_MANAGER points).
        Short timeouts and few retries, as for DynamoDB: fail closed quickly."""
        from iris_exec.adapters.awsapi import SecretsManager

        client = SecretsManager.connect(region, connect_timeout=2, read_timeout=5, max_attempts=3)
        return cls(client)

    def read(
        self, name: str, stage: str = "AWSCURRENT", max_age_s: float = SECRET_MAX_AGE_S
    ) -> str:
        known = self._known.get((name, stage))
        if known is not None and self._clock() - known[0] < max_age_s:
            return known[1]
        from iris_exec.adapters.awsapi import AwsError, AwsUnreachable

        try:
            answer = self._client.get_secret_value(SecretId=name, VersionStage=stage)
        except (AwsError, AwsUnreachable) as exc:
            # A secret never rotated has no AWSPREVIOUS: ResourceNotFoundException, expected.
            expected = stage != "AWSCURRENT" and getattr(exc, "code", "") == NOT_FOUND
            log.log(
                logging.INFO if expected else logging.ERROR,
                "secret %s (%s) could not be read: %s", name, stage, exc,
            )  # fmt: skip
            missing = getattr(exc, "code", "") == NOT_FOUND
            error = SecretVersionMissing if missing else StoreUnavailable
            raise error(f"the secret {name} could not be read") from exc
        value = answer.get("SecretString")
        if not isinstance(value, str) or not value:
            raise InternalError(f"the secret {name} holds no text (SecretString)")
        self._known[(name, stage)] = (self._clock(), value)
        return value

    def close(self) -> None:
        self._client.close()


def secret(
    direct: str | None,
    secret_name: str | None,
    setting: str,
    secrets: SecretsManagerSecrets,
    *,
    stage: str = "AWSCURRENT",
    max_age_s: float = SECRET_MAX_AGE_S,
) -> Callable[[], str]:
    """A lazy secret: the direct value (tests), else Secrets Manager's ``stage`` version of
    it by name, read again when ``max_age_s`` old."""

    def value() -> str:
        if direct:
            return direct
        if not secret_name:
            raise InternalError(
                f"set IRIS_{setting}_SECRET to the name of a Secrets Manager secret"
            )
        return secrets.read(secret_name, stage, max_age_s)

    return value


def previous_secret(
    value: Callable[[], str], max_age_s: float = SECRET_MAX_AGE_S
) -> Callable[[], str | None]:
    """The AWSPREVIOUS version through ``value`` (made by ``secret(..., stage=...)``), or
    None when the secret was never rotated (that answer, too, is kept ``max_age_s``: a
    forged token must not cost a Secrets Manager call). When Secrets Manager cannot answer
    now, ``StoreUnavailable`` and nothing kept: remembering "no previous key" then would
    refuse every token minted before a rotation for ``max_age_s``."""
    known: list[tuple[float, str | None]] = []

    def previous() -> str | None:
        if known and time.monotonic() - known[0][0] < max_age_s:
            return known[0][1]
        try:
            found: str | None = value()
        except SecretVersionMissing:
            found = None
        known[:] = [(time.monotonic(), found)]
        return found

    return previous
