"""A local, wire-compatible stand-in for E2B, for tests that drive the real SDK.

One HTTP server plays both parts of E2B the SDK talks to:

- the control-plane REST API (``E2B_API_URL``): create, connect, get, list,
  set timeout, kill (``control_plane.py``);
- the proxy in front of every sandbox's ``envd`` (``E2B_SANDBOX_URL``): the SDK
  sends envd requests to that one URL with ``E2b-Sandbox-Id`` and
  ``E2b-Sandbox-Port`` headers (it does so with ``E2B_SANDBOX_URL`` as it does
  with E2B's own ``sandbox.<domain>`` edge). Like E2B's proxy, it answers 502
  ``The sandbox was not found`` for a sandbox that is not running and checks
  envd's ``X-Access-Token``; then envd's HTTP API (``envd_http.py``) or Connect
  services (``envd_rpc.py``) answer.

Each sandbox is a directory under a temporary base directory, its ``/`` for the
file API. Where this host allows (root and bubblewrap), its commands run in a
throwaway jail that looks like an E2B sandbox built from this project's template
(``jail.py``): its users, a login shell, a world-writable ``/usr/local``, the egress
proxy's CA in the system bundle only, one PID namespace; outgoing HTTPS to the hosts
a test routes (``route``) meets E2B's egress proxy (``egress.py``). Without a jail,
commands run on this host as they are, with the host's paths.

Both are HTTPS (HTTP/1.1), with a certificate from a CA of the stand-in's own that the
SDK trusts through ``SSL_CERT_FILE`` (``env``), as it trusts E2B's public CA.

The team the key belongs to has E2B's limits: 20 concurrent sandboxes (429 beyond),
one hour of life, and no network transform rules unless ``team.transform_rules``.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import re
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import uvicorn
from e2b.connection_config import ApiParams
from e2b.envd.filesystem import filesystem_connect
from e2b.envd.process import process_connect
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from tests.support.e2b_standin.control_plane import ControlPlane
from tests.support.e2b_standin.egress import EgressCA
from tests.support.e2b_standin.envd_http import EnvdHttp, envd_error
from tests.support.e2b_standin.envd_rpc import FilesystemService, ProcessService
from tests.support.e2b_standin.jail import SYSTEM_BUNDLE, StandInTemplate, iris_template
from tests.support.e2b_standin.jail import available as jail_available
from tests.support.e2b_standin.records import CreateRequestRecord, SandboxRecord
from tests.support.e2b_standin.state import (
    ENVD_VERSION,
    CreateFailure,
    RateLimit,
    StandInState,
    Team,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: A key in E2B's format (``e2b_`` + 40 hex digits); the only one the stand-in accepts.
DEFAULT_API_KEY = "e2b_" + "5a1d" * 10
ENVD_PORT = 49983
ENVD_RPC_PREFIXES = ("/process.Process/", "/filesystem.Filesystem/")
ENVD_HTTP_PATHS = ("/files", "/health")
#: envd's ``authExcludedPaths`` (``/files`` checks the token or a signature itself).
ENVD_OPEN_ROUTES = {("GET", "/health"), ("GET", "/files"), ("POST", "/files")}
#: ``<port>-<sandbox id>.<domain>``: how E2B's proxy reads a sandbox from the host name.
SANDBOX_HOST = re.compile(r"^(\d+)-([a-z0-9]+)\.")


def proxy_error(status: int, body: dict[str, Any]) -> JSONResponse:
    """An answer of E2B's proxy itself (``packages/shared/pkg/proxy/template``)."""
    return JSONResponse(body, status, media_type="application/json; charset=utf-8")


_PUBLIC_CA: list[EgressCA] = []


def public_ca() -> EgressCA:
    """One per process: the SDK keeps one connection pool per process, and with it the
    CAs it trusted when the pool was made."""
    if not _PUBLIC_CA:
        _PUBLIC_CA.append(EgressCA("E2B stand-in public CA"))
        atexit.register(_PUBLIC_CA[0].close)
    return _PUBLIC_CA[0]


class StandInApp:
    """The ASGI application: E2B's API, or E2B's proxy and the sandbox's envd behind it."""

    def __init__(self, state: StandInState) -> None:
        self.state = state
        self.control_plane = ControlPlane(state).app()
        self.envd_http = EnvdHttp(state).app()
        self.process = process_connect.ProcessASGIApplication(ProcessService(state))
        self.filesystem = filesystem_connect.FilesystemASGIApplication(FilesystemService(state))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        headers = Headers(scope=scope)
        self.state.requests.append((scope["method"], path, headers.get("e2b-sandbox-id")))
        if path.startswith(ENVD_RPC_PREFIXES) or path in ENVD_HTTP_PATHS:
            await self._envd(scope, receive, send)
        else:
            await self.control_plane(scope, receive, send)

    async def _envd(self, scope: Scope, receive: Receive, send: Send) -> None:
        """E2B's proxy: find the sandbox, refuse if it is gone, check the token, pass on."""
        headers = Headers(scope=scope)
        sandbox_id = headers.get("e2b-sandbox-id")
        port = headers.get("e2b-sandbox-port", str(ENVD_PORT))
        if sandbox_id is None and (match := SANDBOX_HOST.match(headers.get("host", ""))):
            port, sandbox_id = match.group(1), match.group(2)
            scope["headers"] = [*scope["headers"], (b"e2b-sandbox-id", sandbox_id.encode())]
        if sandbox_id is None:
            response = proxy_error(400, {"code": 400, "message": "missing sandbox id"})
            await response(scope, receive, send)
            return
        if self.state.live(sandbox_id) is None:
            body = {"sandboxId": sandbox_id, "message": "The sandbox was not found", "code": 502}
            await proxy_error(502, body)(scope, receive, send)
            return
        if port != str(ENVD_PORT):
            body = {
                "sandboxId": sandbox_id,
                "message": "The sandbox is running but port is not open",
                "port": int(port) if port.isdigit() else 0,
                "code": 502,
            }
            await proxy_error(502, body)(scope, receive, send)
            return
        record = self.state.sandboxes[sandbox_id]
        route = (scope["method"], scope["path"])
        if route not in ENVD_OPEN_ROUTES and (
            headers.get("x-access-token") != record.envd_access_token
        ):
            message = (
                "unauthorized access, please provide a valid access token "
                "or method signing if supported"
            )
            await envd_error(401, message)(scope, receive, send)
            return
        scope.setdefault("state", {})["sandbox_id"] = sandbox_id
        path: str = scope["path"]
        if path.startswith("/process.Process/"):
            await self.process(scope, receive, send)
        elif path.startswith("/filesystem.Filesystem/"):
            await self.filesystem(scope, receive, send)
        else:
            await self.envd_http(scope, receive, send)


class E2BStandIn:
    """E2B's API and sandboxes, served locally for the real SDK.

    Use as a context manager (or ``start()``/``stop()``), then point the SDK at
    it with ``env`` (environment variables) or ``api_params`` (keyword options
    for ``AsyncSandbox.create/connect/list/kill``)::

        with E2BStandIn() as e2b:
            monkeypatch.setattr(os, "environ", {**os.environ, **e2b.env})
            sandbox = await AsyncSandbox.create(metadata={"project": "p1"})
            assert e2b.sandbox(sandbox.sandbox_id).metadata == {"project": "p1"}
    """

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        envd_version: str = ENVD_VERSION,
        base_dir: Path | None = None,
        template: StandInTemplate | Literal["auto"] | None = "auto",
    ) -> None:
        if template == "auto":
            template = iris_template() if jail_available() else None
        self._template = template
        self._own_base_dir = base_dir is None
        self._base_dir = base_dir
        self._api_key = api_key
        self._envd_version = envd_version
        self._state: StandInState | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._port = 0
        self._trust_file = Path("/nonexistent")

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind 127.0.0.1 on a free port and serve from a background thread."""
        if self._thread is not None:
            raise RuntimeError("the E2B stand-in is already running")
        base_dir = self._base_dir or Path(tempfile.mkdtemp(prefix="e2b-standin-"))
        base_dir.mkdir(parents=True, exist_ok=True)
        self._base_dir = base_dir
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.bind(("127.0.0.1", 0))
        egress_port = probe.getsockname()[1]
        probe.close()
        self._state = StandInState(
            api_key=self._api_key,
            envd_version=self._envd_version,
            base_dir=base_dir,
            template=self._template,
            egress_port=egress_port,
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        # HTTPS, as E2B's API and envd proxy are: a leaf from a CA that stands for the
        # public ones, trusted through SSL_CERT_FILE (``env``) with this host's own CAs.
        public = public_ca()
        leaf = public.leaf("127.0.0.1")
        system = Path(SYSTEM_BUNDLE)
        self._trust_file = base_dir / "trusted-cas.pem"
        self._trust_file.write_bytes(
            (system.read_bytes() if system.exists() else b"") + b"\n" + public.pem
        )
        self._state.trust.load_verify_locations(cadata=public.pem.decode())
        config = uvicorn.Config(
            StandInApp(self._state),
            ssl_certfile=str(leaf),
            log_config=None,
            log_level="warning",
            access_log=False,
            ws="none",
            lifespan="off",
            # Longer than the SDK's pool keeps idle connections (300 s): the server must
            # not close one just as the client reuses it.
            timeout_keep_alive=600,
            timeout_graceful_shutdown=3,
        )
        self._server = uvicorn.Server(config)
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(sock, started), name="e2b-standin", daemon=True
        )
        self._thread.start()
        if not started.wait(10) or not self._server.started:
            self.stop()
            raise RuntimeError("the E2B stand-in did not start")
        logger.info("E2B stand-in listening on %s", self.url)
        return self

    def _run(self, sock: socket.socket, started: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(sock, started))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
            sock.close()

    async def _serve(self, sock: socket.socket, started: threading.Event) -> None:
        assert self._server is not None and self._state is not None
        reaper = asyncio.create_task(self._state.reap_forever())
        server = asyncio.create_task(self._server.serve(sockets=[sock]))
        # uvicorn offers no event for "started".
        while not self._server.started and not server.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        started.set()
        try:
            await server
        finally:
            reaper.cancel()
            await asyncio.gather(reaper, return_exceptions=True)
            await self._state.shutdown()

    def stop(self) -> None:
        """Kill every sandbox, stop serving, remove the sandboxes' directories."""
        if self._thread is None:
            return
        if self._loop is not None and self._state is not None and self._thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self._state.shutdown(), self._loop)
            future.result(timeout=10)
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(timeout=15)
        self._thread = None
        self._loop = None
        if self._own_base_dir and self._base_dir is not None:
            shutil.rmtree(self._base_dir, ignore_errors=True)
            self._base_dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- pointing the SDK at it -----------------------------------------------------------

    @property
    def api_key(self) -> str:
        """The one API key the stand-in accepts; any other gets the API's 401."""
        return self._api_key

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """Base URL of both the API and the sandbox proxy (HTTPS, see ``env``)."""
        return f"https://127.0.0.1:{self._port}"

    @property
    def trusted_cas(self) -> Path:
        """This host's CAs plus the stand-in's: what ``SSL_CERT_FILE`` names in ``env``."""
        return self._trust_file

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that point the SDK (and e2b_code_interpreter) here."""
        return {
            "E2B_API_KEY": self._api_key,
            "E2B_API_URL": self.url,
            "E2B_SANDBOX_URL": self.url,
            # The SDK (rustls with the system's CAs) and Python's ssl read it.
            "SSL_CERT_FILE": str(self._trust_file),
            # Debug mode would skip the API altogether and talk to localhost:49983.
            "E2B_DEBUG": "false",
        }

    @property
    def api_params(self) -> ApiParams:
        """The same as keyword options: ``AsyncSandbox.create(**e2b.api_params)``."""
        return ApiParams(api_key=self._api_key, api_url=self.url, sandbox_url=self.url, debug=False)

    # ---- what E2B is to this test --------------------------------------------------------

    @property
    def jailed(self) -> bool:
        """Whether commands run in jails with the template's users (root and bwrap here)."""
        return self._template is not None

    @property
    def team(self) -> Team:
        """The API key's team: its flags and limits (change them between requests)."""
        return self._running_state().team

    @property
    def egress_port(self) -> int:
        """The port sandboxes reach routed hosts on (put it in the URL they call)."""
        return self._running_state().egress_port

    @property
    def egress_ca_pem(self) -> bytes:
        return self._running_state().ca.pem

    def route(self, host: str, upstream: str) -> None:
        """Sandboxes created from now on reach ``https://<host>:<egress_port>`` through the
        egress proxy, which forwards to ``upstream``."""
        self._running_state().routes[host] = upstream

    @property
    def egress_requests(self) -> list[dict[str, Any]]:
        """Every request the egress proxy forwarded: host, path, headers sent upstream."""
        return list(self._running_state().egress_seen)

    @property
    def requests(self) -> list[tuple[str, str, str | None]]:
        """Every request the SDK made: (method, path, sandbox id for envd calls)."""
        return list(self._running_state().requests)

    def set_create_latency(self, seconds: float) -> None:
        """Answer creates this much after the sandbox exists (and is listed)."""
        self._running_state().create_latency_s = seconds

    # ---- inspecting -----------------------------------------------------------------------

    @property
    def base_dir(self) -> Path:
        """The directory holding every sandbox's root directory."""
        if self._base_dir is None:
            raise RuntimeError("the E2B stand-in is not running")
        return self._base_dir

    @property
    def sandboxes(self) -> dict[str, SandboxRecord]:
        """Every sandbox ever created, by id (ended ones too, with ``alive`` False)."""
        state = self._running_state()
        self._on_loop(state.reap_expired)
        with state.lock:
            return dict(state.sandboxes)

    def sandbox(self, sandbox_id: str) -> SandboxRecord:
        return self.sandboxes[sandbox_id]

    @property
    def create_requests(self) -> list[CreateRequestRecord]:
        """Every create request that reached the stand-in, in order, with the status it got."""
        state = self._running_state()
        with state.lock:
            return list(state.create_requests)

    # ---- fault injection ------------------------------------------------------------------

    def fail_next_create(
        self, status: int = 502, times: int = 1, *, after_create: bool = False
    ) -> None:
        """Answer the next ``times`` create requests with ``status``.

        By default nothing is created (the failure happened before the API
        acted). With ``after_create`` the sandbox *is* created (and recorded
        under the request's ``Idempotency-Key``) and only the answer is lost,
        as when a gateway times out on a slow create.
        """
        state = self._running_state()
        with state.lock:
            state.create_failures.append(CreateFailure(status, times, after_create))

    def rate_limit_next(self, times: int = 1, retry_after: int | None = 0) -> None:
        """Answer the next ``times`` API requests (any route) with 429 and ``Retry-After``."""
        state = self._running_state()
        with state.lock:
            state.rate_limits.append(RateLimit(times, retry_after))

    def clear_faults(self) -> None:
        state = self._running_state()
        with state.lock:
            state.create_failures.clear()
            state.rate_limits.clear()
            state.create_latency_s = 0.0

    def kill_behind_our_back(self, sandbox_id: str) -> None:
        """The sandbox dies (as if E2B lost it): API 404, envd 502, streams break off."""
        state = self._running_state()
        if not self._on_loop(lambda: state.end_sandbox(sandbox_id, "killed_behind_our_back")):
            raise KeyError(f"sandbox {sandbox_id} is not running")

    def expire(self, sandbox_id: str) -> None:
        """The sandbox reaches its end time now, and is killed as E2B kills it on timeout."""
        state = self._running_state()

        def run() -> bool:
            record = state.live(sandbox_id)
            if record is None:
                return False
            record.end_at = state.now()
            return state.end_sandbox(sandbox_id, "timeout")

        if not self._on_loop(run):
            raise KeyError(f"sandbox {sandbox_id} is not running")

    # ---- plumbing -------------------------------------------------------------------------

    def _running_state(self) -> StandInState:
        if self._state is None or self._thread is None:
            raise RuntimeError("the E2B stand-in is not running")
        return self._state

    def _on_loop(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's event loop (sandbox state belongs to it)."""
        assert self._loop is not None

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)
