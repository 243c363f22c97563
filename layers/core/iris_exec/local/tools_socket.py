"""The tool server's Unix sockets: the one channel out of a local jail.

Each sandbox gets a socket of its own (bound read-only into its jails), served inside the
API's event loop by uvicorn's HTTP protocol with just the MCP endpoint behind it. A socket is
world-connectable (jails run as another uid), which grants nothing by itself: every call
still needs a valid per-execution token.

Sandboxed code can open connections and send requests as fast as it likes, and they cost the
server file descriptors, memory and CPU. So each socket is a *tenant* with its own limits,
renewed at each execution (``reset``):

- connections at once: past the cap the socket stops accepting (connections wait in the
  kernel's backlog, which costs the server nothing), and a global cap keeps a reserve of the
  server's file descriptors for the API, /health and the other sandboxes;
- requests in flight, requests per second and bytes (each request's body, and everything
  in and out over the execution): past them, that execution's requests get 413/429;
- a header timeout (a request must arrive whole, headers and body, in time) and an idle
  timeout between requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from iris_exec.http.envelope import send_error
from iris_exec.services.clock import iso
from iris_exec.settings import Settings

log = logging.getLogger(__name__)

#: Connections accepted per wake-up of a listener (others wait for the next loop turn).
ACCEPT_BATCH = 16
#: A socket that could not accept (the process is out of descriptors) retries after this.
ACCEPT_RETRY_S = 0.5
#: One warning per this many seconds at most, however often it happens.
WARN_EVERY_S = 10.0


@dataclass(frozen=True, slots=True)
class ToolSocketLimits:
    """Per execution (per sandbox socket), except ``fd_reserve`` (the whole server)."""

    connections: int = 64
    in_flight: int = 16
    requests_per_s: float = 100.0
    request_bytes: int = 4 * 1024 * 1024
    execution_bytes: int = 256 * 1024 * 1024
    idle_s: float = 5.0
    header_s: float = 10.0
    #: File descriptors no tool socket may take (the API, /health, stores, jails' pipes).
    fd_reserve: int = 1024


class _OncePerKind(logging.Filter):
    """Lets a message through at most once per WARN_EVERY_S (per message text)."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now - self._last.get(record.msg, 0.0) < WARN_EVERY_S:
            return False
        self._last[str(record.msg)] = now
        return True


#: What uvicorn's protocol logs about tool socket connections (bad requests, app errors).
HTTP_LOG = logging.getLogger(f"{__name__}.http")
HTTP_LOG.addFilter(_OncePerKind())


class _Warnings:
    """At most one log line per kind per WARN_EVERY_S, with the count of the silent ones."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, int]] = {}

    def warn(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last, silenced = self._last.get(kind, (0.0, 0))
        if now - last < WARN_EVERY_S:
            self._last[kind] = (last, silenced + 1)
            return
        self._last[kind] = (now, 0)
        suffix = f" ({silenced} more like it not logged)" if silenced else ""
        log.warning(message + suffix, *args)


def raise_fd_limit() -> int:
    """Raise this process's soft descriptor limit to its hard one; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return int(soft)


class Tenant:
    """One sandbox's socket: its listener, its connections and its budget."""

    def __init__(self, host: ToolSocketHost, name: str, path: Path) -> None:
        self.host = host
        self.name = name
        self.path = path
        self.limits = host.limits
        self.connections: set[_Connection] = set()
        self.app: ASGIApp = _Limited(host.app, self)
        self._slots = asyncio.Semaphore(self.limits.in_flight)
        self.bytes = 0
        self._tokens = float(self.limits.requests_per_s)
        self._refilled = time.monotonic()
        self._sock: socket.socket | None = None
        self._reading = False
        self._retry: asyncio.TimerHandle | None = None

    # -- the listener ------------------------------------------------------------------

    def listen(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
            sock.listen(min(self.limits.connections, 128))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        os.chmod(self.path, 0o666)  # noqa: S103 - jails run as another uid; calls need a token
        self._sock = sock
        self.resume()

    def resume(self) -> None:
        if self._sock is None or self._reading or not self._may_accept():
            return
        self.host.loop.add_reader(self._sock.fileno(), self._accept)
        self._reading = True

    def _pause(self) -> None:
        if self._sock is not None and self._reading:
            self.host.loop.remove_reader(self._sock.fileno())
            self._reading = False

    def _may_accept(self) -> bool:
        return len(self.connections) < self.limits.connections and self.host.may_accept()

    def _accept(self) -> None:
        assert self._sock is not None
        for _ in range(ACCEPT_BATCH):
            if not self._may_accept():
                self._pause()
                return
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.host.warnings.warn(
                        "accept", "tool socket %s cannot accept: %s", self.name, exc.strerror
                    )
                    self._pause()
                    self._retry = self.host.loop.call_later(ACCEPT_RETRY_S, self.resume)
                    return
                raise
            conn.setblocking(False)
            protocol = _Connection(self)
            self.connections.add(protocol)
            self.host.open_connections += 1
            task = self.host.loop.create_task(self._connect(conn, protocol))
            self.host.pending.add(task)
            task.add_done_callback(self.host.pending.discard)

    async def _connect(self, conn: socket.socket, protocol: _Connection) -> None:
        try:
            await self.host.loop.connect_accepted_socket(lambda: protocol, conn)
        except OSError:
            conn.close()
            self.closed(protocol)

    def closed(self, protocol: _Connection) -> None:
        if protocol in self.connections:
            self.connections.discard(protocol)
            self.host.open_connections -= 1
            self.resume()
            self.host.resume_all()

    # -- the budget ----------------------------------------------------------------------

    async def admit(self) -> tuple[int, str] | None:
        """Take this execution's next request: None once it may go on (after waiting for its
        turn), else why it is refused (status, message). Past the calls in flight or the
        request rate, a call waits rather than fails: the connections are capped, so the
        waiting calls are too. Call ``done()`` after an admitted request."""
        if self.bytes >= self.limits.execution_bytes:
            return 429, (
                f"This execution sent and received {self.limits.execution_bytes} bytes of tool"
                " calls, its limit"
            )
        await self._slots.acquire()
        try:
            rate = self.limits.requests_per_s
            now = time.monotonic()
            self._tokens = min(rate, self._tokens + (now - self._refilled) * rate) - 1
            self._refilled = now
            if self._tokens < 0:
                await asyncio.sleep(-self._tokens / rate)
        except BaseException:
            self._slots.release()
            raise
        return None

    def done(self) -> None:
        self._slots.release()

    def reset(self) -> None:
        """A new execution: a fresh budget, and nothing left open by the previous one."""
        for protocol in list(self.connections):
            protocol.abort()
        self.bytes = 0
        self._tokens = float(self.limits.requests_per_s)
        self._refilled = time.monotonic()

    async def aclose(self) -> None:
        self._pause()
        if self._retry is not None:
            self._retry.cancel()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for protocol in list(self.connections):
            protocol.abort()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.host.tenants.discard(self)


class ToolSocketHost:
    """Opens the sandboxes' tool sockets, all served by ``app`` in the running loop."""

    def __init__(self, app: ASGIApp, limits: ToolSocketLimits) -> None:
        self.app = app
        self.limits = limits
        self.loop = asyncio.get_running_loop()
        self.config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,
            access_log=False,
            http="httptools",
            timeout_keep_alive=max(1, round(limits.idle_s)),
            proxy_headers=False,
        )
        self.config.load()
        self.state = ServerState()
        self.tenants: set[Tenant] = set()
        #: Connections being set up (kept referenced until done).
        self.pending: set[asyncio.Task[None]] = set()
        self.open_connections = 0
        self._saturated = False
        self.warnings = _Warnings()
        self.max_connections = max(limits.connections, raise_fd_limit() - limits.fd_reserve)

    def may_accept(self) -> bool:
        if self.open_connections < self.max_connections:
            return True
        self._saturated = True
        self.warnings.warn(
            "global",
            "tool sockets hold %d connections, their share of the server's descriptors",
            self.open_connections,
        )
        return False

    def resume_all(self) -> None:
        """After the global cap was reached, every listener may accept again."""
        if self._saturated and self.open_connections < self.max_connections:
            self._saturated = False
            for tenant in list(self.tenants):
                tenant.resume()

    async def open(self, name: str, path: Path) -> Tenant:
        tenant = Tenant(self, name, path)
        tenant.listen()
        self.tenants.add(tenant)
        return tenant

    async def aclose(self) -> None:
        for tenant in list(self.tenants):
            await tenant.aclose()
        await asyncio.sleep(0)


class _Connection(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, answering with the tenant's app, with a header timeout."""

    def __init__(self, tenant: Tenant) -> None:
        host = tenant.host
        super().__init__(config=host.config, server_state=host.state, app_state={}, _loop=host.loop)
        self.app = tenant.app
        self.tenant = tenant
        # Junk requests by the thousand must not become thousands of log lines.
        self.logger = HTTP_LOG
        self._request_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
        self.tenant.closed(self)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _arm(self) -> None:
        if self._request_timer is None:
            self._request_timer = self.loop.call_later(self.tenant.limits.header_s, self.abort)

    def _disarm(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def abort(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


class _Limited:
    """The tenant's budget in front of the app: refuse, or count the request's bytes."""

    def __init__(self, app: ASGIApp, tenant: Tenant) -> None:
        self.app = app
        self.tenant = tenant

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tenant = self.tenant
        refusal = await tenant.admit()
        if refusal is not None:
            await _refuse(scope, send, *refusal)
            return
        try:
            # The body is read here, whole and capped, whether it came with a Content-Length
            # or in chunks; the app reads it from memory.
            body, complete = await _read_body(receive, tenant.limits.request_bytes)
            tenant.bytes += len(body)
            if not complete:
                limit = tenant.limits.request_bytes
                await _refuse(
                    scope, send, 413, f"A tool call's body may have at most {limit} bytes"
                )
                return
            given = False

            async def replay() -> Message:
                nonlocal given
                if not given:
                    given = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            async def counted_send(message: Message) -> None:
                tenant.bytes += len(message.get("body", b""))
                await send(message)

            await self.app(scope, replay, counted_send)
        finally:
            tenant.done()


async def _refuse(scope: Scope, send: Send, status: int, message: str) -> None:
    title = "Too Many Requests" if status == 429 else "Payload Too Large"
    await send_error(
        scope, send, status, title, message,
        timestamp=iso(time.time()), headers={"Retry-After": "1"},
    )  # fmt: skip


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The request's body, and whether it was read whole within ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), True
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", False
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True


@contextlib.asynccontextmanager
async def serve_unix_socket(
    app: ASGIApp, path: Path, limits: ToolSocketLimits | None = None
) -> AsyncIterator[Tenant]:
    """Serve ``app`` on the one Unix socket ``path`` for the duration of the context."""
    host = ToolSocketHost(app, limits or ToolSocketLimits())
    tenant = await host.open(path.name, path)
    try:
        yield tenant
    finally:
        await host.aclose()


def limits_from(settings: Settings) -> ToolSocketLimits:
    """The limits of the settings' ``tool_socket_*`` fields."""
    return ToolSocketLimits(
        connections=settings.tool_socket_connections,
        in_flight=settings.tool_socket_in_flight,
        requests_per_s=settings.tool_socket_requests_per_s,
        request_bytes=settings.tool_socket_request_bytes,
        execution_bytes=settings.tool_socket_execution_bytes,
        idle_s=settings.tool_socket_idle_s,
        header_s=settings.tool_socket_header_s,
        fd_reserve=settings.tool_socket_fd_reserve,
    )
