"""Key administration for the CLI: the keys of the local data directory or of the AWS
deployment's table, the deployment's usage-plan keys, and the keys of the service this one
replaces (an `iris_api_keys` table in PostgreSQL)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

from iris_exec.domain.errors import ConfigurationError
from iris_exec.domain.ports import UsageKeys
from iris_exec.services.auth import AuthService
from iris_exec.services.clock import system_clock
from iris_exec.settings import Settings

if TYPE_CHECKING:
    from iris_exec.adapters.postgres.legacy_keys import LegacyKey

KeyBackend = Literal["local", "dynamodb"]


def aws_region() -> str:
    """The Region the AWS CLI would use: AWS_REGION, else AWS_DEFAULT_REGION, else the
    profile's (``aws configure``: ~/.aws/config, AWS_CONFIG_FILE, AWS_PROFILE)."""
    import botocore.session

    region = os.environ.get("AWS_REGION") or botocore.session.get_session().get_config_variable(
        "region"
    )
    if not region:
        raise ConfigurationError(
            "no AWS Region: run `aws configure` or export AWS_REGION=<the stack's Region>"
        )
    return str(region)


def key_admin(backend: KeyBackend, keys_table: str | None = None) -> tuple[AuthService, str]:
    """The key service over the local data directory's keys, or the AWS deployment's
    table (``keys_table``, default IRIS_KEYS_TABLE); and where those keys are, in words."""
    if backend == "dynamodb":
        from iris_exec.adapters.dynamodb.keys import DynamoKeyStore
        from iris_exec.composition.aws import dynamodb_client

        settings = Settings(aws_region=aws_region())
        table = keys_table or settings.keys_table
        where = f"keys table {table} in {settings.aws_region}"
        return AuthService(DynamoKeyStore(dynamodb_client(settings), table), system_clock), where
    from iris_exec.adapters.sqlite.database import Database
    from iris_exec.adapters.sqlite.keys import SqliteKeyStore

    settings = Settings()
    where = f"keys of the local data directory {settings.data_dir.resolve()} (IRIS_DATA_DIR)"
    return AuthService(SqliteKeyStore(Database(settings.database_path)), system_clock), where


def usage_keys(usage_plan_id: str) -> UsageKeys:
    """The usage-plan keys of the deployment (an empty id: retiring keys only)."""
    import boto3

    from iris_exec.adapters.apigateway import UsagePlanKeys

    client = boto3.client("apigateway", region_name=aws_region())
    return UsagePlanKeys(client, usage_plan_id)


def legacy_keys(database_url: str, table: str) -> list[LegacyKey]:
    """The keys of the service this one replaces, read from its PostgreSQL table."""
    from iris_exec.adapters.postgres.legacy_keys import read_legacy_keys

    return read_legacy_keys(database_url, table)
