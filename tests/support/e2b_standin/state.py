"""The stand-in's world: sandboxes, their processes, idempotency and injected faults.

Everything here is touched from the server's event loop; the few entry points
a test thread uses (reading records, arming faults) take ``lock``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import ssl
import string
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support.e2b_standin.egress import EgressCA, EgressProxy
from tests.support.e2b_standin.jail import Jail, StandInTemplate
from tests.support.e2b_standin.processes import ProcessTable
from tests.support.e2b_standin.records import (
    CreateRequestRecord,
    EndReason,
    SandboxRecord,
    utcnow,
)

logger = logging.getLogger(__name__)

#: ``consts.ClientID``: what the API returns as ``clientID`` for backwards compatibility.
CLIENT_ID = "6532622b"
#: The envd version the stand-in reports (``packages/envd/pkg/version.go``).
ENVD_VERSION = "0.6.13"
#: ``sandbox.SandboxTimeoutDefault`` / the spec's default ``timeout``.
DEFAULT_TIMEOUT_S = 300
#: The longest a sandbox may live: 1 hour on the Hobby tier (24 on Pro).
MAX_TIMEOUT_S = 3600
#: Concurrent sandboxes a team may run: 20 on Hobby (100 on Pro).
MAX_CONCURRENT = 20

_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_sandbox_id() -> str:
    """A sandbox id shaped like E2B's (20 lower-case letters and digits)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(20))


@dataclass
class CreateFailure:
    status: int
    remaining: int
    after_create: bool


@dataclass
class RateLimit:
    remaining: int
    retry_after: int | None


@dataclass
class IdempotentCreate:
    sandbox_id: str
    response: dict[str, Any]


@dataclass
class Team:
    """The team the API key belongs to, and what E2B lets it do."""

    #: LaunchDarkly's ``network-transform-rules``; off by default outside E2B's own
    #: development environment (``featureflags/flags.go``): rules are then a 400.
    transform_rules: bool = False
    max_concurrent: int = MAX_CONCURRENT
    max_lifetime_s: int = MAX_TIMEOUT_S


class StandInState:
    """Sandboxes and their envd processes, shared by all handlers."""

    def __init__(
        self,
        *,
        api_key: str,
        envd_version: str,
        base_dir: Path,
        template: StandInTemplate | None = None,
        egress_port: int = 0,
    ) -> None:
        self.api_key = api_key
        self.team = Team()
        #: Commands run in a jail with the template's users (None: on this host, as is).
        self.template = template
        self.jails: dict[str, Jail] = {}
        self.ca = EgressCA()
        #: What this host trusts, plus the CA of the stand-in's own HTTPS (``E2BStandIn``).
        self.trust = ssl.create_default_context()
        #: Host name -> upstream URL: where the egress proxy sends a sandbox's requests.
        self.routes: dict[str, str] = {}
        self.egress_port = egress_port
        self.egress_seen: list[dict[str, Any]] = []
        self._proxies: dict[str, Any] = {}
        self._proxy_tasks: set[asyncio.Task[None]] = set()
        self._next_address = 2
        #: Seconds between recording a sandbox (listed from then on) and answering create.
        self.create_latency_s = 0.0
        #: Every request: (method, path, sandbox id or None), for counting round trips.
        self.requests: list[tuple[str, str, str | None]] = []
        self.envd_version = envd_version
        self.base_dir = base_dir
        self.lock = threading.Lock()
        self.sandboxes: dict[str, SandboxRecord] = {}
        self.processes: dict[str, ProcessTable] = {}
        self.create_requests: list[CreateRequestRecord] = []
        self.idempotency: dict[str, IdempotentCreate] = {}
        self.create_failures: list[CreateFailure] = []
        self.rate_limits: list[RateLimit] = []
        self.now: Callable[[], datetime] = utcnow

    # ---- faults (armed from the test thread) -------------------------------------------

    def take_rate_limit(self) -> RateLimit | None:
        with self.lock:
            if not self.rate_limits:
                return None
            limit = self.rate_limits[0]
            limit.remaining -= 1
            if limit.remaining <= 0:
                self.rate_limits.pop(0)
            return limit

    def take_create_failure(self) -> CreateFailure | None:
        with self.lock:
            if not self.create_failures:
                return None
            failure = self.create_failures[0]
            failure.remaining -= 1
            if failure.remaining <= 0:
                self.create_failures.pop(0)
            return failure

    # ---- sandboxes ------------------------------------------------------------------------

    def create_sandbox(
        self,
        *,
        body: dict[str, Any],
        timeout_s: int,
        idempotency_key: str | None,
    ) -> SandboxRecord:
        sandbox_id = new_sandbox_id()
        root = self.base_dir / sandbox_id
        (root / "home" / "user").mkdir(parents=True)
        (root / "tmp").mkdir()
        address = None
        jail = None
        if self.routes:
            address = f"127.77.{self._next_address // 250}.{self._next_address % 250 + 2}"
            self._next_address += 1
        if self.template is not None:
            jail = Jail(
                root,
                self.template,
                hosts={host: address for host in self.routes} if address else {},
                ca_pem=self.ca.pem,
            )
        started = self.now()
        network = body.get("network")
        allow_internet = body.get("allow_internet_access")
        record = SandboxRecord(
            sandbox_id=sandbox_id,
            template_id=str(body["templateID"]),
            metadata=dict(body.get("metadata") or {}),
            envs=dict(body.get("envVars") or {}),
            timeout_s=timeout_s,
            started_at=started,
            end_at=started + timedelta(seconds=timeout_s),
            network=network if isinstance(network, dict) else None,
            allow_internet_access=allow_internet if isinstance(allow_internet, bool) else None,
            request=body,
            idempotency_key=idempotency_key,
            envd_access_token=secrets.token_urlsafe(24),
            envd_version=self.envd_version,
            root=root,
            users=jail.users if jail else {"root": 0, "user": 1000},
            jailed=jail is not None,
            egress_address=address,
        )
        if jail is not None:
            (root / "home" / "user").chmod(0o755)
            os.chown(root / "home" / "user", 1000, 1000)
            self.jails[sandbox_id] = jail
        if address is not None:
            self._start_proxy(record, address)
        with self.lock:
            self.sandboxes[sandbox_id] = record
            self.processes[sandbox_id] = ProcessTable()
        logger.info("sandbox %s created (template %s)", sandbox_id, record.template_id)
        return record

    def live(self, sandbox_id: str) -> SandboxRecord | None:
        """The sandbox if it is running; one past its end time is killed here first."""
        record = self.sandboxes.get(sandbox_id)
        if record is None or not record.alive:
            return None
        if record.end_at <= self.now():
            self.end_sandbox(sandbox_id, "timeout")
            return None
        return record

    def live_sandboxes(self) -> list[SandboxRecord]:
        return [r for r in list(self.sandboxes.values()) if self.live(r.sandbox_id)]

    def end_sandbox(self, sandbox_id: str, reason: EndReason) -> bool:
        """Kill a sandbox: its processes die and its streams break off. Loop thread only."""
        record = self.sandboxes.get(sandbox_id)
        if record is None or not record.alive:
            return False
        record.alive = False
        record.end_reason = reason
        record.end_at = min(record.end_at, self.now())
        self.processes[sandbox_id].abandon_all()
        jail = self.jails.pop(sandbox_id, None)
        if jail is not None:
            jail.close()
        proxy = self._proxies.pop(sandbox_id, None)
        if proxy is not None:
            proxy.should_exit = True
        logger.info("sandbox %s ended (%s)", sandbox_id, reason)
        return True

    def _start_proxy(self, record: SandboxRecord, address: str) -> None:
        """The sandbox's egress proxy, listening at its own address (``egress.py``)."""
        import uvicorn

        app = EgressProxy(lambda: record.network, self.routes, self.egress_seen, self.trust)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, self.egress_port))
        sock.listen(64)
        first = next(iter(self.routes))
        self.ca.context_for(first)
        config = uvicorn.Config(
            app,
            log_config=None,
            log_level="warning",
            access_log=False,
            ws="none",
            lifespan="off",
            ssl_context_factory=lambda _config, _default: self.ca.server_context(first),
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)

        async def serve() -> None:
            try:
                await server.serve(sockets=[sock])
            finally:
                await app.close()
                sock.close()

        self._proxies[record.sandbox_id] = server
        task = asyncio.create_task(serve())
        self._proxy_tasks.add(task)
        task.add_done_callback(self._proxy_tasks.discard)

    def reap_expired(self) -> None:
        for record in list(self.sandboxes.values()):
            self.live(record.sandbox_id)

    async def reap_forever(self, interval: float = 0.2) -> None:
        """E2B kills a sandbox at its end time whether or not anyone is looking."""
        while True:
            self.reap_expired()
            await asyncio.sleep(interval)

    async def shutdown(self) -> None:
        for sandbox_id in list(self.sandboxes):
            self.end_sandbox(sandbox_id, "stand_in_stopped")
        await asyncio.gather(*self._proxy_tasks, return_exceptions=True)
        self.ca.close()
        # SIGKILL is not refused: every command is reaped quickly.
        async with asyncio.timeout(10):
            for table in self.processes.values():
                await table.wait_all()
