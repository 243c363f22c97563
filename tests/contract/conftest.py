"""Each port's contract suite runs against every adapter of that port."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from iris_exec.adapters.dynamodb.audit import DynamoAuditLog
from iris_exec.adapters.dynamodb.executions import DynamoExecutionStore
from iris_exec.adapters.dynamodb.idempotency import DynamoIdempotencyStore
from iris_exec.adapters.dynamodb.keys import DynamoKeyStore
from iris_exec.adapters.dynamodb.ratelimit import DynamoRateLimitStore
from iris_exec.adapters.dynamodb.registry import DynamoSandboxRegistry
from iris_exec.adapters.dynamodb.tables import TABLES, create_tables
from iris_exec.adapters.postgres.tools import PostgresToolStore
from iris_exec.adapters.sqlite.audit import AUDIT_SCHEMA, SqliteAuditLog, SqliteIdempotencyStore
from iris_exec.adapters.sqlite.database import Database
from iris_exec.adapters.sqlite.executions import EXECUTIONS_SCHEMA, SqliteExecutionStore
from iris_exec.adapters.sqlite.keys import SqliteKeyStore
from iris_exec.adapters.sqlite.ratelimit import SqliteRateLimitStore
from iris_exec.adapters.sqlite.registry import SqliteSandboxRegistry
from iris_exec.adapters.sqlite.tools import TOOL_SCHEMA, SqliteToolStore
from iris_exec.domain.ports import (
    AuditLog,
    ExecutionStore,
    IdempotencyStore,
    KeyStore,
    RateLimitStore,
    SandboxRegistry,
    ToolStore,
)
from tests.contract.test_registry import NOW as CONTRACT_NOW
from tests.support.dynamodb_local import DynamoDBLocal
from tests.support.postgres import PostgresServer

if TYPE_CHECKING:
    from iris_exec.adapters.awsapi import DynamoDB

ADAPTERS = ["sqlite", "dynamodb"]
TOOL_STORES = ["sqlite", "postgres"]


class ToolStores:
    """Makes stores of one kind over one database (several, for concurrency tests)."""

    def __init__(self, kind: str, path: Path, postgres: PostgresServer | None) -> None:
        self.kind = kind
        self.path = path
        self.postgres = postgres
        self.opened: list[Database | PostgresToolStore] = []

    def new(self) -> ToolStore:
        if self.kind == "postgres":
            assert self.postgres is not None
            store = PostgresToolStore(self.postgres.dsn)
            self.opened.append(store)
            return store
        db = Database(self.path, extra_schema=(TOOL_SCHEMA,))
        self.opened.append(db)
        return SqliteToolStore(db)

    def close(self) -> None:
        for item in self.opened:
            item.close()


@pytest.fixture(params=TOOL_STORES)
def tool_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ToolStores]:
    pg = request.getfixturevalue("postgres") if request.param == "postgres" else None
    stores = ToolStores(request.param, tmp_path / "tools.db", pg)
    yield stores
    stores.close()


@pytest.fixture
def tool_store(tool_stores: ToolStores) -> ToolStore:
    return tool_stores.new()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    db = Database(tmp_path / "iris.db", extra_schema=(AUDIT_SCHEMA, EXECUTIONS_SCHEMA))
    yield db
    db.close()


@dataclass(frozen=True)
class DynamoTables:
    client: DynamoDB
    names: dict[str, str]


@pytest.fixture
def dynamodb_tables(dynamodb_local: DynamoDBLocal) -> Iterator[DynamoTables]:
    """A fresh set of tables for one test, under names no other test uses."""
    client = dynamodb_local.client()
    suffix = uuid.uuid4().hex[:12]
    names = {logical: f"iris-{logical}-{suffix}" for logical in TABLES}
    create_tables(client, names)
    yield DynamoTables(client, names)
    for name in names.values():
        client.delete_table(TableName=name)


@pytest.fixture(params=ADAPTERS)
def registry(request: pytest.FixtureRequest) -> SandboxRegistry:
    if request.param == "sqlite":
        return SqliteSandboxRegistry(request.getfixturevalue("sqlite_db"))
    if request.param == "dynamodb":
        tables: DynamoTables = request.getfixturevalue("dynamodb_tables")
        # The contract's records live around CONTRACT_NOW: TTL's clock must agree with it.
        return DynamoSandboxRegistry(
            tables.client, tables.names["sandboxes"], clock=lambda: CONTRACT_NOW
        )
    raise AssertionError(request.param)


@pytest.fixture(params=ADAPTERS)
def key_store(request: pytest.FixtureRequest) -> KeyStore:
    if request.param == "sqlite":
        return SqliteKeyStore(request.getfixturevalue("sqlite_db"))
    if request.param == "dynamodb":
        tables: DynamoTables = request.getfixturevalue("dynamodb_tables")
        return DynamoKeyStore(tables.client, tables.names["keys"])
    raise AssertionError(request.param)


@pytest.fixture(params=ADAPTERS)
def rate_store(request: pytest.FixtureRequest) -> RateLimitStore:
    if request.param == "sqlite":
        return SqliteRateLimitStore(request.getfixturevalue("sqlite_db"))
    if request.param == "dynamodb":
        tables: DynamoTables = request.getfixturevalue("dynamodb_tables")
        return DynamoRateLimitStore(tables.client, tables.names["rate"])
    raise AssertionError(request.param)


RETENTION_S = 3600.0


@pytest.fixture(params=ADAPTERS)
def audit_log(request: pytest.FixtureRequest) -> AuditLog:
    if request.param == "sqlite":
        return SqliteAuditLog(request.getfixturevalue("sqlite_db"))
    if request.param == "dynamodb":
        tables: DynamoTables = request.getfixturevalue("dynamodb_tables")
        return DynamoAuditLog(tables.client, tables.names["audit"], RETENTION_S)
    raise AssertionError(request.param)


@pytest.fixture(params=ADAPTERS)
def idempotency_store(request: pytest.FixtureRequest) -> IdempotencyStore:
    if request.param == "sqlite":
        return SqliteIdempotencyStore(request.getfixturevalue("sqlite_db"), RETENTION_S)
    if request.param == "dynamodb":
        tables: DynamoTables = request.getfixturevalue("dynamodb_tables")
        return DynamoIdempotencyStore(tables.client, tables.names["idempotency"], RETENTION_S)
    raise AssertionError(request.param)


@pytest.fixture(params=ADAPTERS)
def execution_store(request: pytest.FixtureRequest) -> ExecutionStore:
    if request.param == "sqlite":
        return SqliteExecutionStore(request.getfixturevalue("sqlite_db"))
    if request.param == "dynamodb":
        tables: DynamoTables = request.getfixturevalue("dynamodb_tables")
        return DynamoExecutionStore(tables.client, tables.names["executions"], RETENTION_S)
    raise AssertionError(request.param)
