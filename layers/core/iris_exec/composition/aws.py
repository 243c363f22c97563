"""Adapters for production: DynamoDB (registry, keys, rate windows, audit, idempotency,
executions: one client for every table), E2B (sandboxes), PostgreSQL/Supabase (tool
records). Built once per Lambda container; secrets are read from Secrets Manager on first
use, through the same light AWS client, and cached (``adapters/secrets.py``)."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, cast

from iris_exec.adapters.secrets import SecretsManagerSecrets, previous_secret, secret
from iris_exec.composition import Adapters, Services
from iris_exec.domain.ports import ExecutionObserver, ToolStore
from iris_exec.settings import Settings

if TYPE_CHECKING:
    from iris_exec.adapters.awsapi import DynamoDB

#: The API's public base URL as the current request reached it (https://<domain>/<stage>):
#: where E2B sandboxes reach /mcp when IRIS_PUBLIC_URL is not set.
REQUEST_BASE_URL: ContextVar[str | None] = ContextVar("iris_request_base_url", default=None)


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


class Lazy:
    """An adapter built on its first use: the tool store (only the MCP function touches it;
    psycopg's import is not free)."""

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
    from iris_exec.adapters.dynamodb.idempotency import DynamoIdempotencyStore
    from iris_exec.adapters.dynamodb.keys import DynamoKeyStore
    from iris_exec.adapters.dynamodb.ratelimit import DynamoRateLimitStore
    from iris_exec.adapters.dynamodb.registry import DynamoSandboxRegistry
    from iris_exec.adapters.e2b.provider import E2BSandboxProvider
    from iris_exec.adapters.lambda_dispatch import LambdaDispatcher

    def tool_store() -> ToolStore:
        from iris_exec.adapters.postgres.tools import PostgresToolStore

        return PostgresToolStore(database_url)

    client = dynamodb_client(settings)
    secrets = SecretsManagerSecrets.connect(settings.aws_region)
    direct = settings.database_url.get_secret_value() if settings.database_url else None
    database_url = secret(direct, settings.database_url_secret, "DATABASE_URL", secrets)
    e2b_key = settings.e2b_api_key.get_secret_value() if settings.e2b_api_key else None
    signing = settings.token_signing_key.get_secret_value() if settings.token_signing_key else None
    signing_key = secret(signing, settings.token_signing_key_secret, "TOKEN_SIGNING_KEY", secrets)
    previous = secret(
        None, settings.token_signing_key_secret, "TOKEN_SIGNING_KEY", secrets, stage="AWSPREVIOUS"
    )
    previous_key = previous_secret(previous)
    adapters = Adapters(
        registry=DynamoSandboxRegistry(client, settings.sandbox_table),
        keys=DynamoKeyStore(client, settings.keys_table),
        rate_limits=DynamoRateLimitStore(client, settings.rate_table),
        tool_store=cast(ToolStore, Lazy(tool_store)),
        provider=E2BSandboxProvider(
            settings,
            api_key=secret(e2b_key, settings.e2b_api_key_secret, "E2B_API_KEY", secrets),
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
        idempotency=DynamoIdempotencyStore(
            client, settings.idempotency_table, settings.idempotency_ttl_s
        ),
        execution_store=DynamoExecutionStore(
            client, settings.executions_table, settings.execution_retention_s
        ),
        dispatcher=LambdaDispatcher(
            settings, lambda: settings.public_url or REQUEST_BASE_URL.get()
        ),
        observer=observer,
    )
    return Services(settings, adapters)
