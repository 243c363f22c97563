"""The real HTTP app over SQLite and a fake provider, for edge tests in-process."""

from __future__ import annotations

from pathlib import Path

from iris_exec.adapters.sqlite.database import Database
from iris_exec.adapters.sqlite.keys import SqliteKeyStore
from iris_exec.adapters.sqlite.ratelimit import SqliteRateLimitStore
from iris_exec.adapters.sqlite.registry import SqliteSandboxRegistry
from iris_exec.adapters.sqlite.tools import TOOL_SCHEMA, SqliteToolStore
from iris_exec.composition import Container, assemble
from iris_exec.settings import Settings
from tests.support.fakes import FakeProvider, MovableClock


def fake_container(
    tmp_path: Path, provider: FakeProvider, clock: MovableClock, **settings: object
) -> Container:
    db = Database(tmp_path / "iris.db", extra_schema=(TOOL_SCHEMA,))
    return assemble(
        Settings(data_dir=tmp_path, **settings),  # type: ignore[arg-type]
        registry=SqliteSandboxRegistry(db),
        keys=SqliteKeyStore(db),
        rate_limits=SqliteRateLimitStore(db),
        tool_store=SqliteToolStore(db),
        provider=provider,
        signing_key=b"s" * 32,
        clock=clock,
    )
