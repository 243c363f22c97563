"""Shared fixtures. Integration tests start the real parts themselves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dynamodb_local import DynamoDBLocal
from tests.support.postgres import PostgresServer
from tests.support.server import LocalServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """One real local server for the whole session (default limits)."""
    with LocalServer(tmp_path_factory.mktemp("server") / "data") as running:
        yield running


@pytest.fixture(scope="session")
def key(server: LocalServer) -> str:
    return server.create_key("alpha")


@pytest.fixture(scope="session")
def other_key(server: LocalServer) -> str:
    return server.create_key("beta")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent.name == "integration":
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    server.migrate()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[DynamoDBLocal]:
    """One DynamoDB Local for the session (it takes a few seconds to start)."""
    server = DynamoDBLocal().start()
    yield server
    server.stop()
