"""Each port's contract suite runs against every adapter of that port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from iris_exec.adapters.postgres.tools import PostgresToolStore
from iris_exec.adapters.sqlite.database import Database
from iris_exec.adapters.sqlite.keys import SqliteKeyStore
from iris_exec.adapters.sqlite.ratelimit import SqliteRateLimitStore
from iris_exec.adapters.sqlite.registry import SqliteSandboxRegistry
from iris_exec.adapters.sqlite.tools import TOOL_SCHEMA, SqliteToolStore
from iris_exec.domain.ports import KeyStore, RateLimitStore, SandboxRegistry, ToolStore

from tests.support.postgres import PostgresServer

ADAPTERS = ["sqlite"]
TOOL_STORES = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    server.migrate()
    yield server
    server.stop()


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
    db = Database(tmp_path / "iris.db")
    yield db
    db.close()


@pytest.fixture(params=ADAPTERS)
def registry(request: pytest.FixtureRequest, sqlite_db: Database) -> SandboxRegistry:
    if request.param == "sqlite":
        return SqliteSandboxRegistry(sqlite_db)
    raise AssertionError(request.param)


@pytest.fixture(params=ADAPTERS)
def key_store(request: pytest.FixtureRequest, sqlite_db: Database) -> KeyStore:
    if request.param == "sqlite":
        return SqliteKeyStore(sqlite_db)
    raise AssertionError(request.param)


@pytest.fixture(params=ADAPTERS)
def rate_store(request: pytest.FixtureRequest, sqlite_db: Database) -> RateLimitStore:
    if request.param == "sqlite":
        return SqliteRateLimitStore(sqlite_db)
    raise AssertionError(request.param)
