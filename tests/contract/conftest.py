"""Each port's contract suite runs against every adapter of that port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from iris_exec.adapters.sqlite.database import Database
from iris_exec.adapters.sqlite.keys import SqliteKeyStore
from iris_exec.adapters.sqlite.ratelimit import SqliteRateLimitStore
from iris_exec.adapters.sqlite.registry import SqliteSandboxRegistry
from iris_exec.domain.ports import KeyStore, RateLimitStore, SandboxRegistry

ADAPTERS = ["sqlite"]


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
