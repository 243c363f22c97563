"""The local server: all routes and /mcp on one process, sandboxes reaped in the background."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from iris_exec.composition import Services
from iris_exec.composition.local import build_local
from iris_exec.domain.errors import ConfigurationError
from iris_exec.http.app import create_app
from iris_exec.http.envelope import RequestContext
from iris_exec.local.tools_socket import ToolSocketHost, limits_from
from iris_exec.mcp.app import MCP_PATH, McpEndpoint
from iris_exec.settings import Settings

log = logging.getLogger(__name__)

LOCK_FILE = "server.lock"
INFO_FILE = "server.json"


@contextlib.contextmanager
def engine_lock(settings: Settings) -> Iterator[None]:
    """One local engine per data directory: a second one would sweep the first one's jails."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = running_server(settings)
            who = f" (a server on {info['url']}, pid {info['pid']})" if info else ""
            raise ConfigurationError(
                f"another iris-exec engine is using {settings.data_dir}{who}; stop it, or set"
                " IRIS_DATA_DIR to another directory"
            ) from None
        yield
    finally:
        os.close(fd)


def running_server(settings: Settings) -> dict[str, str] | None:
    """The local server using this data directory, if one is up."""
    path = settings.data_dir / INFO_FILE
    try:
        info = json.loads(path.read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    probe = os.open(settings.data_dir / LOCK_FILE, os.O_RDWR)
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return {"url": str(info["url"]), "pid": str(info["pid"])}
    finally:
        os.close(probe)
    return None


AUDIT_PURGE_EVERY_S = 3600


async def _reap_forever(services: Services) -> None:
    last_purge = 0.0
    while True:
        await asyncio.sleep(services.settings.reaper_interval_s)
        try:
            await services.sandboxes.reap()
            services.background.sweep()
            if services.clock() - last_purge > AUDIT_PURGE_EVERY_S:
                services.audit.purge()
                services.background.purge()
                last_purge = services.clock()
        except Exception:
            log.exception("reaper pass failed")


def mcp_endpoint(services: Services) -> McpEndpoint:
    return McpEndpoint(services)


@asynccontextmanager
async def local_engine(services: Services, mcp: McpEndpoint) -> AsyncIterator[None]:
    """Everything local mode runs besides HTTP: the jails, the tool socket, the reaper."""
    # Each sandbox gets a tool socket of its own, with its own limits (opened as jails are).
    sockets = ToolSocketHost(RequestContext(mcp), limits_from(services.settings))
    await services.start(tool_sockets=sockets)
    try:
        lost = await services.sandboxes.reconcile()
        if lost:
            log.warning("%d sandbox(es) of an earlier run were marked failed", lost)
        # Workers run inside this server: those of an earlier run died with it.
        abandoned = services.background.abandon_all(
            "the server stopped before the execution finished"
        )
        if abandoned:
            log.warning("%d execution(s) of an earlier run were marked failed", abandoned)
        async with mcp.session_manager_run():
            reaper = asyncio.create_task(_reap_forever(services))
            try:
                yield
            finally:
                reaper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reaper
                await services.stop_workers()
                closed = services.sandboxes.close_running("the local server stopped")
                if closed:
                    log.info("%d sandbox(es) closed as the server stops", closed)
    finally:
        await services.stop()
        await sockets.aclose()


class WithMcp:
    """Routes /mcp to the tool server and everything else to the API."""

    def __init__(self, api: FastAPI, mcp: McpEndpoint) -> None:
        self.api = api
        self.mcp: ASGIApp = RequestContext(mcp)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].rstrip("/") == MCP_PATH:
            await self.mcp(scope, receive, send)
        else:
            await self.api(scope, receive, send)


def create_local_app(settings: Settings, services: Services | None = None) -> WithMcp:
    """The whole API and /mcp for one machine. The engine starts and stops with the app."""
    built = services or build_local(settings)
    mcp = mcp_endpoint(built)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with local_engine(built, mcp):
            yield

    return WithMcp(create_app(built, lifespan=lifespan), mcp)


def write_server_info(settings: Settings, url: str) -> Path:
    path = settings.data_dir / INFO_FILE
    path.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    return path
