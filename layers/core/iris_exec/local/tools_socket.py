"""The tool server's Unix socket: the one channel out of a local jail.

Served by a second uvicorn server inside the same event loop as the API, with just the
MCP endpoint on it. The socket is world-connectable (jails run as another uid), which
grants nothing by itself: every call still needs a valid per-execution token."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the process's main server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve_unix_socket(app: ASGIApp, path: Path) -> AsyncIterator[None]:
    """Serve ``app`` on the Unix socket ``path`` for the duration of the context."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    config = uvicorn.Config(
        app,
        uds=str(path),
        lifespan="off",
        log_level="warning",
        access_log=False,
        http="httptools",
        timeout_keep_alive=30,
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises what prevented the start
            raise RuntimeError(f"the tool socket {path} did not start")
        await asyncio.sleep(0.01)
    os.chmod(path, 0o666)  # noqa: S103 - jails run as another uid; calls still need a token
    try:
        yield
    finally:
        server.should_exit = True
        await task
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
