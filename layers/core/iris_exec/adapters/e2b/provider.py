"""The E2B SandboxProvider: one E2B microVM per sandbox, from this project's template
(infra/e2b), reached from any Lambda instance by its E2B id.

What it gets right, against what users of E2B most complain about:
- a retried create never makes two sandboxes (the create carries an idempotency key);
- a reconnect never resets the sandbox's lifetime (every connect passes the time left);
- an idle sandbox does not run unbilled by us for long: E2B's own timeout is kept just
  past the idle deadline, so it dies even if the reaper does not run;
- no credential inside: E2B's egress proxy adds the execution's token to requests for
  the tool endpoint (the only host the sandbox may reach), so code never sees it;
- every SDK exception becomes a domain error (410 with the true reason, 503 with
  Retry-After, an internal error logged loudly for a bad E2B key).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from iris_exec.adapters.e2b.control import E2BControl, api_error
from iris_exec.adapters.runner_protocol import Collector, outcome
from iris_exec.domain.errors import ConfigurationError, ProviderUnavailable, SandboxLost
from iris_exec.domain.models import CreatedSandbox, ExecutionJob, ProviderSandbox, RunOutcome
from iris_exec.settings import Settings

if TYPE_CHECKING:
    from e2b_code_interpreter import AsyncSandbox

log = logging.getLogger(__name__)

HOME = "/home/user"
#: Metadata tag of every sandbox this service creates.
SERVICE = "iris-exec"
#: Tool calls leave the sandbox with the token added by E2B's egress proxy.
EGRESS_HEADER = "egress-header"
#: Fallback when the egress rules are not available: the token travels in the request file.
SANDBOX_TOKEN = "sandbox-token"  # noqa: S105 - a channel name, not a secret
#: Past the idle deadline, E2B's own timeout kills a sandbox the reaper missed.
E2B_TIMEOUT_MARGIN_S = 60
COMMAND_GRACE_S = 10
FILENAMES = {"typescript": "main.ts", "javascript": "main.js", "python": "main.py"}
REQUEST_TIMEOUT_S = 30
ALL_TRAFFIC = "0.0.0.0/0"


def idempotency_key(sandbox_id: str) -> str:
    """E2B's keys are lowercase letters, digits and hyphens; our ids are not."""
    return "iris-" + hashlib.sha256(sandbox_id.encode()).hexdigest()[:40]


class E2BSandboxProvider:
    """Sandboxes as E2B microVMs, through the real SDK (imported on first use); liveness
    checks and kills through ``E2BControl``."""

    name = "e2b"

    def __init__(
        self,
        settings: Settings,
        *,
        api_key: Callable[[], str],
        tools_url: Callable[[], str | None] | None = None,
        egress_injection: bool = True,
    ) -> None:
        self._settings = settings
        self._api_key = api_key
        self._tools_url = tools_url or (lambda: settings.public_url)
        self.tool_channel = EGRESS_HEADER if egress_injection else SANDBOX_TOKEN
        # Liveness and kill without the SDK: the sandbox routes' first call stays cheap.
        self._control = E2BControl(api_key, timeout_s=REQUEST_TIMEOUT_S)

    async def start(self) -> None:
        return None

    async def shutdown(self) -> None:
        self._control.close()

    # -- helpers ---------------------------------------------------------------------------

    def _opts(self) -> dict[str, Any]:
        return {"api_key": self._api_key(), "request_timeout": REQUEST_TIMEOUT_S}

    def _mcp_url(self) -> str:
        base = self._tools_url()
        if not base:
            raise ConfigurationError("IRIS_PUBLIC_URL is needed for E2B sandboxes to reach /mcp")
        return base.rstrip("/") + "/mcp"

    def _network(self, token: str | None) -> dict[str, Any]:
        """Egress: nothing but the tool endpoint; with a token, E2B's proxy adds it."""
        host = urlsplit(self._mcp_url()).hostname or ""
        network: dict[str, Any] = {"allow_out": [host], "deny_out": [ALL_TRAFFIC]}
        if token is not None:
            network["rules"] = {
                host: [{"transform": {"headers": {"Authorization": f"Bearer {token}"}}}]
            }
        return network

    def _keepalive_s(self, timeout_s: float, deadline: float | None) -> int:
        """E2B's timeout for a sandbox in use: this execution, then the idle timeout, never
        past the sandbox's end of life. Always passed: E2B would otherwise reset it."""
        span = timeout_s + self._settings.sandbox_idle_timeout_s + E2B_TIMEOUT_MARGIN_S
        if deadline is not None:
            span = min(span, deadline - time.time())
        return max(1, math.ceil(span))

    async def _connect(self, provider_ref: str, job: ExecutionJob) -> AsyncSandbox:
        from e2b_code_interpreter import AsyncSandbox

        keepalive = self._keepalive_s(job.timeout_s, job.sandbox_deadline)
        try:
            return await AsyncSandbox.connect(provider_ref, timeout=keepalive, **self._opts())
        except Exception as exc:
            raise self._translate(exc, provider_ref) from exc

    def _translate(self, exc: Exception, provider_ref: str) -> Exception:
        """SDK exceptions -> domain errors, including those that are not SandboxExceptions."""
        from e2b import exceptions as e2b

        if isinstance(exc, e2b.AuthenticationException):
            return api_error(401, str(exc))
        if isinstance(exc, e2b.RateLimitException):
            return api_error(429, str(exc))
        if isinstance(exc, e2b.ServiceBusyException):
            return api_error(503, str(exc))
        if isinstance(exc, e2b.NotFoundException | e2b.SandboxNotRunningException):
            return SandboxLost(
                f"E2B sandbox {provider_ref} was killed or reached its timeout",
                reason="expired",
            )
        if isinstance(exc, e2b.InvalidArgumentException | e2b.TemplateException):
            return exc  # our mistake (or a wrong template): a 500, logged, not a retry
        if isinstance(exc, e2b.TimeoutException):
            return ProviderUnavailable("E2B did not answer in time", retry_after_s=5)
        if isinstance(exc, e2b.SandboxException):
            return api_error(500, str(exc))
        return exc

    # -- the port --------------------------------------------------------------------------

    async def create(self, sandbox_id: str, project_id: str, lifetime_s: float) -> CreatedSandbox:
        from e2b_code_interpreter import AsyncSandbox

        try:
            sandbox = await AsyncSandbox.create(
                template=self._settings.e2b_template,
                timeout=min(math.ceil(lifetime_s), self._keepalive_s(0, None)),
                metadata={
                    "service": SERVICE,
                    "sandboxId": sandbox_id,
                    "projectId": project_id,
                    "toolChannel": self.tool_channel,
                },
                network=self._network(None),
                # Retries of this create (the SDK's, after a 502) give back the same sandbox.
                idempotency_key=idempotency_key(sandbox_id),
                **self._opts(),
            )
        except Exception as exc:
            raise self._translate(exc, sandbox_id) from exc
        return CreatedSandbox(sandbox.sandbox_id, self.tool_channel)

    async def run(self, provider_ref: str, job: ExecutionJob) -> RunOutcome:
        began = time.time()
        sandbox = await self._connect(provider_ref, job)
        token = job.grant.token if job.grant else None
        request = {
            "source": job.source,
            "language": job.language,
            "projectId": job.project_id,
            "sessionId": job.session_id,
            "context": job.context,
            "filename": FILENAMES[job.language],
            # With egress injection the token never enters the sandbox: E2B's proxy adds it.
            "tools": None
            if token is None
            else {
                "url": self._mcp_url(),
                "token": token if self.tool_channel == SANDBOX_TOKEN else None,
            },
            "outputLimit": job.output_limit_bytes,
            "workdir": f".iris/{job.execution_id}/work",
        }
        # Everything of one execution lives in one directory of the user's home (removed
        # after): the request (code, maybe a token), the compiled module, the event frames.
        here = f".iris/{job.execution_id}"
        heap_mb = max(64, self._settings.sandbox_memory_mb * 3 // 4)
        runner = (
            '/usr/bin/python3 -I "$IRIS_ASSETS/python/runner.py"'
            if job.language == "python"
            else f"node --enable-source-maps --max-old-space-size={heap_mb}"
            ' "$IRIS_ASSETS/runner.mjs"'
        )
        command = (
            f"cd ~ && mkdir -p {here}/work && exec {runner} < {here}/request.json 3> {here}/events"
        )
        collector = Collector(job.output_limit_bytes, frame_clock=True, on_output=job.on_output)
        try:
            if token is not None and self.tool_channel == EGRESS_HEADER:
                await sandbox.update_network(self._network(token))
            await sandbox.files.write(f"{HOME}/{here}/request.json", json.dumps(request))
            follower = None
            if job.on_output is not None:
                # Someone watches this execution live: follow the frames as they are written.
                await sandbox.files.write(f"{HOME}/{here}/events", "")
                follower = await _Follower.start(sandbox, f"{here}/events", collector, job)
            try:
                exit_code = await self._command(sandbox, command, job, collector)
            finally:
                consumed = await follower.stop() if follower is not None else 0
            events = await sandbox.files.read(f"{HOME}/{here}/events", format="bytes")
            await self._cleanup(sandbox, f"{HOME}/{here}")
        except Exception as exc:
            raise self._translate(exc, provider_ref) from exc
        # Frames the follower did not deliver (all of them, when nobody followed).
        collector.lines(bytes(events).splitlines()[consumed:])
        report = collector.report
        report.returncode = exit_code
        report.timed_out = report.timed_out or exit_code is None
        return outcome(report, began, job, self._settings.sandbox_memory_mb)

    async def _cleanup(self, sandbox: AsyncSandbox, directory: str) -> None:
        """Nothing of an execution outlives it: its files, and its processes (background
        ones included: every process of the sandbox's user; the runner has exited)."""
        await sandbox.files.remove(directory)
        await sandbox.commands.run("pkill -KILL -u user; true", user="root", timeout=30)

    async def _command(
        self, sandbox: AsyncSandbox, command: str, job: ExecutionJob, collector: Collector
    ) -> int | None:
        """Run the runner; its exit code, or None if it hit the time limit (then killed)."""
        from e2b import CommandExitException

        assets = self._settings.e2b_assets_dir
        handle = await sandbox.commands.run(
            command,
            background=True,
            envs={"IRIS_ASSETS": assets, "ESBUILD_BINARY_PATH": f"{assets}/esbuild"},
            on_stdout=lambda text: collector.add("stdout", text),
            on_stderr=lambda text: collector.add("stderr", text),
            timeout=job.timeout_s + 2 * COMMAND_GRACE_S,
        )
        try:
            done = await asyncio.wait_for(handle.wait(), job.timeout_s + COMMAND_GRACE_S)
        except TimeoutError:
            await handle.kill()
            return None
        except CommandExitException as exited:
            return int(exited.exit_code)
        return int(done.exit_code)

    async def list_sandboxes(self) -> list[ProviderSandbox]:
        """Every running E2B sandbox this service created (by its metadata)."""
        from e2b import SandboxQuery
        from e2b_code_interpreter import AsyncSandbox

        found: list[ProviderSandbox] = []
        try:
            paginator = AsyncSandbox.list(
                query=SandboxQuery(metadata={"service": SERVICE}), **self._opts()
            )
            while paginator.has_next:
                for info in await paginator.next_items():
                    meta = info.metadata or {}
                    if "sandboxId" in meta and "projectId" in meta:
                        found.append(
                            ProviderSandbox(info.sandbox_id, meta["sandboxId"], meta["projectId"])
                        )
        except Exception as exc:
            raise self._translate(exc, "list") from exc
        return found

    async def kill(self, provider_ref: str) -> None:
        await self._control.kill(provider_ref)  # False if already gone

    async def is_alive(self, provider_ref: str) -> bool:
        state = await self._control.state(provider_ref)
        return state is not None and state.endswith("running")


class _Follower:
    """``tail -F`` of a running execution's frame file: frames reach the collector as the
    runner writes them (live logs). It counts the lines it delivered, so that the file read
    after the run adds only the rest."""

    def __init__(self, collector: Collector) -> None:
        self._collector = collector
        self._pending = ""
        self.delivered = 0
        self._handle: Any = None

    @classmethod
    async def start(
        cls, sandbox: AsyncSandbox, path: str, collector: Collector, job: ExecutionJob
    ) -> _Follower:
        """Follow ``path`` (relative to the sandbox user's home)."""
        follower = cls(collector)
        follower._handle = await sandbox.commands.run(
            f"cd ~ && exec tail -c +1 -F {path} 2>/dev/null",
            background=True,
            on_stdout=follower._receive,
            timeout=job.timeout_s + 2 * COMMAND_GRACE_S,
        )
        return follower

    def _receive(self, text: str) -> None:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            self.delivered += 1
            self._collector.lines([line])

    async def stop(self) -> int:
        """Stop following; how many lines were delivered (a partial last one is not)."""
        with contextlib.suppress(Exception):
            await self._handle.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._handle.wait(), COMMAND_GRACE_S)
        return self.delivered
