"""Production: DynamoDB (registry, keys, rate windows...), E2B (sandboxes), Lambda (workers),
PostgreSQL/Supabase (tool records). Built once per Lambda container; secrets are fetched
from Secrets Manager on first use and cached."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, cast

from iris_exec.composition import Adapters, Services
from iris_exec.domain.errors import InternalError, StoreUnavailable
from iris_exec.domain.ports import ExecutionObserver, IdempotencyStore, ToolStore
from iris_exec.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from iris_exec.adapters.awsapi import DynamoDB

log = logging.getLogger(__name__)
SECRET_MAX_AGE_S = 300

#: The API's public base URL as the current request reached it (https://<domain>/<stage>):
#: where E2B sandboxes reach /mcp when IRIS_PUBLIC_URL is not set.
REQUEST_BASE_URL: ContextVar[str | None] = ContextVar("iris_request_base_url", default=None)


def secret(
    direct: str | None,
    secret_name: str | None,
    setting: str,
    *,
    stage: str = "AWSCURRENT",
    max_age_s: float = SECRET_MAX_AGE_S,
) -> Callable[[], str]:
    """A lazy secret: the direct value (tests), else Secrets Manager's ``stage`` version of
    it by name, read again when ``max_age_s`` old, so that a rotation takes effect. A
    secret that cannot be read is a 503 (its name in the log), not a 500."""
    provider: Any = None

    def value() -> str:
        nonlocal provider
        if direct:
            return direct
        if not secret_name:
            raise InternalError(
                f"set IRIS_{setting}_SECRET to the name of a Secrets Manager secret"
            )
        from aws_lambda_powertools.utilities.parameters import SecretsProvider
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        # One provider per stage: Powertools' cache is keyed by name only.
        provider = provider or SecretsProvider()
        try:
            fetched = provider.get(secret_name, max_age=int(max_age_s), VersionStage=stage)
        except GetParameterError as exc:
            log.error("secret %s (%s) could not be read: %s", secret_name, stage, exc)
            raise StoreUnavailable(f"the secret {secret_name} could not be read") from exc
        if not isinstance(fetched, str) or not fetched:
            raise InternalError(f"the secret {secret_name} is empty")
        return fetched

    return value


def previous_secret(
    value: Callable[[], str], max_age_s: float = SECRET_MAX_AGE_S
) -> Callable[[], str | None]:
    """The AWSPREVIOUS version through ``value`` (made by ``secret(..., stage=...)``), or
    None when the secret was never rotated (that answer, too, is kept ``max_age_s``: a
    forged token must not cost a Secrets Manager call)."""
    known: list[tuple[float, str | None]] = []

    def previous() -> str | None:
        if known and time.monotonic() - known[0][0] < max_age_s:
            return known[0][1]
        try:
            found: str | None = value()
        except StoreUnavailable:
            found = None
        known[:] = [(time.monotonic(), found)]
        return found

    return previous


def dynamodb_client(settings: Settings) -> DynamoDB:
    """The DynamoDB client of the adapters. Short timeouts and few retries: a request
    should fail closed (503) quickly, not hang."""
    from iris_exec.adapters.awsapi import DynamoDB

    return DynamoDB.connect(
        settings.aws_region,
        settings.dynamodb_endpoint,
        connect_timeout=2,
        read_timeout=5,
        max_attempts=3,
    )


def botocore_dynamodb_client(settings: Settings) -> DynamoDBClient:
    """A botocore client, for Powertools' idempotency layer (built on first use)."""
    # botocore directly: boto3 would add ~100 ms of imports (s3transfer).
    import botocore.session
    from botocore.config import Config

    # Short timeouts and few retries: a request should fail closed (503) quickly, not hang.
    config = Config(
        connect_timeout=2,
        read_timeout=5,
        retries={"mode": "standard", "total_max_attempts": 3},
    )
    client = botocore.session.get_session().create_client(
        "dynamodb",
        region_name=settings.aws_region,
        endpoint_url=settings.dynamodb_endpoint,
        config=config,
    )
    return cast("DynamoDBClient", client)


class Lazy:
    """An adapter built on its first use: the tool store (only the MCP function touches it;
    psycopg's import is not free) and the idempotency store (Powertools imports boto3)."""

    def __init__(self, build: Callable[[], object]) -> None:
        self._build = build
        self._adapter: object | None = None

    def __getattr__(self, name: str) -> Any:
        if self._adapter is None:
            self._adapter = self._build()
        return getattr(self._adapter, name)

    def close(self) -> None:
        close = getattr(self._adapter, "close", None)
        if callable(close):
            close()


def build_aws(settings: Settings, *, observer: ExecutionObserver | None = None) -> Services:
    """The services over the AWS adapters; ``observer``: the Lambda edge's metrics."""
    from iris_exec.adapters.dynamodb.audit import DynamoAuditLog
    from iris_exec.adapters.dynamodb.executions import DynamoExecutionStore
    from iris_exec.adapters.dynamodb.keys import DynamoKeyStore
    from iris_exec.adapters.dynamodb.ratelimit import DynamoRateLimitStore
    from iris_exec.adapters.dynamodb.registry import DynamoSandboxRegistry
    from iris_exec.adapters.e2b.provider import E2BSandboxProvider
    from iris_exec.adapters.lambda_dispatch import LambdaDispatcher

    def tool_store() -> ToolStore:
        from iris_exec.adapters.postgres.tools import PostgresToolStore

        return PostgresToolStore(database_url)

    def idempotency() -> IdempotencyStore:
        from iris_exec.adapters.dynamodb.idempotency import PowertoolsIdempotencyStore

        return PowertoolsIdempotencyStore(
            botocore_dynamodb_client(settings),
            settings.idempotency_table,
            settings.idempotency_ttl_s,
        )

    client = dynamodb_client(settings)
    direct = settings.database_url.get_secret_value() if settings.database_url else None
    database_url = secret(direct, settings.database_url_secret, "DATABASE_URL")
    e2b_key = settings.e2b_api_key.get_secret_value() if settings.e2b_api_key else None
    signing = settings.token_signing_key.get_secret_value() if settings.token_signing_key else None
    signing_key = secret(signing, settings.token_signing_key_secret, "TOKEN_SIGNING_KEY")
    previous_key = previous_secret(
        secret(None, settings.token_signing_key_secret, "TOKEN_SIGNING_KEY", stage="AWSPREVIOUS")
    )
    adapters = Adapters(
        registry=DynamoSandboxRegistry(client, settings.sandbox_table),
        keys=DynamoKeyStore(client, settings.keys_table),
        rate_limits=DynamoRateLimitStore(client, settings.rate_table),
        tool_store=cast(ToolStore, Lazy(tool_store)),
        provider=E2BSandboxProvider(
            settings,
            api_key=secret(e2b_key, settings.e2b_api_key_secret, "E2B_API_KEY"),
            tools_url=lambda: settings.public_url or REQUEST_BASE_URL.get(),
        ),
        signing_key=lambda: signing_key().encode(),
        previous_signing_key=(
            (lambda: key.encode() if (key := previous_key()) else None)
            if settings.token_signing_key_secret and not signing
            else None
        ),
        audit_log=DynamoAuditLog(
            client, settings.audit_table, settings.audit_retention_days * 86400
        ),
        idempotency=cast(IdempotencyStore, Lazy(idempotency)),
        execution_store=DynamoExecutionStore(
            client, settings.executions_table, settings.execution_retention_s
        ),
        dispatcher=LambdaDispatcher(
            settings, lambda: settings.public_url or REQUEST_BASE_URL.get()
        ),
        observer=observer,
    )
    return Services(settings, adapters)
