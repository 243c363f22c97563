"""The E2B SandboxProvider: one E2B microVM per sandbox, from this project's template
(infra/e2b), reached from any Lambda instance by its E2B id.

What it gets right, against what users of E2B most complain about:
- a retried create never makes two sandboxes (the create carries an idempotency key);
- a reconnect never resets the sandbox's lifetime (every connect passes the time left);
- an idle sandbox does not run unbilled by us for long: E2B's own timeout is kept just
  past the idle deadline, so it dies even if the reaper does not run;
- no credential inside: E2B's egress proxy adds the execution's token to requests for
  the tool endpoint (the only host the sandbox may reach), so code never sees it. That
  proxy re-signs HTTPS with a CA only the sandbox's system bundle holds, which Node
  ignores unless told (NODE_EXTRA_CA_CERTS); teams without E2B's transform rules use the
  request-file mode (IRIS_E2B_EGRESS_MODE);
- code cannot tamper with later executions: it runs as the template's unprivileged user
  (no sudo) under root-owned, read-only runners and Node, and everything it started is
  killed before the execution's answer is read;
- four round trips for an execution in a reused sandbox (connect, egress rule, request
  file, one command that runs, cleans up and hands back the frames), five for a new one;
  output held in the Lambda is capped, never the SDK's unbounded buffers;
- stack-scoped: every sandbox carries the stack's name, and only that stack's are listed;
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
import secrets
import shlex
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from iris_exec.adapters.e2b.control import E2BControl, api_error
from iris_exec.adapters.frames import Collector, channel_budget, lost_because, outcome
from iris_exec.domain.errors import InternalError, ProviderUnavailable, SandboxLost
from iris_exec.domain.models import CreatedSandbox, ExecutionJob, ProviderSandbox, RunOutcome
from iris_exec.settings import Settings

if TYPE_CHECKING:
    from e2b import AsyncSandbox
    from e2b.sandbox.sandbox_api import SandboxNetworkOpts, SandboxNetworkUpdate

log = logging.getLogger(__name__)

#: Metadata tag of every sandbox this service creates; ``stack`` names the deployment.
SERVICE = "iris-exec"
#: The template's unprivileged user that runs the code (infra/e2b/build.py makes it).
CODE_USER = "iris"
CODE_HOME = f"/home/{CODE_USER}"
#: Node, copied out of E2B's world-writable /usr/local by the template, root-owned.
NODE = "/opt/node/bin/node"
#: Where E2B's envd installs its egress proxy's CA (Node's own store does not have it).
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
#: Root-only: the request files (code, context, maybe a token) and the frame files.
RUN_DIR = "/root/.iris"
#: Printed by the root shell after every process of the code is dead; the runner's frames
#: follow. JSON never holds a raw NUL, so no frame can contain it.
FRAMES_MARK = "\x00IRIS-FRAMES\x00\n"
#: Tool calls leave the sandbox with the token added by E2B's egress proxy.
EGRESS_HEADER = "egress-header"
#: Fallback when the egress rules are not available: the token travels in the request file.
SANDBOX_TOKEN = "sandbox-token"  # noqa: S105 - a channel name, not a secret
#: IRIS_E2B_EGRESS_MODE -> tool channel.
EGRESS_MODES = {"header-rewrite": EGRESS_HEADER, "request-file": SANDBOX_TOKEN}
#: Past the idle deadline, E2B's own timeout kills a sandbox the reaper missed.
E2B_TIMEOUT_MARGIN_S = 60
COMMAND_GRACE_S = 10
FILENAMES = {"typescript": "main.ts", "javascript": "main.js", "python": "main.py"}
#: Root-only: each kept runner's pid, request FIFO, frame and output files, and why it was
#: lost (outside RUN_DIR, which every execution's script empties).
KEPT_DIR = "/root/.iris-kept"
#: The first line root prints after FRAMES_MARK in a keepState execution: why the kept
#: runner had been lost ("reset": "" when it had not).
STATE_FRAME = b'{"t":"iris-state"'
REQUEST_TIMEOUT_S = 30
#: Liveness and kill: quick calls; three attempts stay inside API Gateway's 29 s.
CONTROL_TIMEOUT_S = 8
ALL_TRAFFIC = "0.0.0.0/0"


def idempotency_key(sandbox_id: str) -> str:
    """E2B's keys are lowercase letters, digits and hyphens; our ids are not."""
    return "iris-" + hashlib.sha256(sandbox_id.encode()).hexdigest()[:40]


class E2BSandboxProvider:
    """Sandboxes as E2B microVMs, through the real SDK (imported on first use); liveness
    checks and kills through ``E2BControl``."""

    name = "e2b"
    #: keepState: a runner per language stays alive in the sandbox (see _kept_script).
    keeps_state = True
    #: ``run`` finds a lost sandbox itself (connect answers 404): the services skip their
    #: own liveness call before an execution, one round trip less.
    run_detects_loss = True

    def __init__(
        self,
        settings: Settings,
        *,
        api_key: Callable[[], str],
        tools_url: Callable[[], str | None] | None = None,
    ) -> None:
        self._settings = settings
        self._api_key = api_key
        self._tools_url = tools_url or (lambda: settings.public_url)
        self.tool_channel = EGRESS_MODES[settings.e2b_egress_mode]
        # Liveness and kill without the SDK: the sandbox routes' first call stays cheap.
        self._control = E2BControl(api_key, timeout_s=CONTROL_TIMEOUT_S)

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
            raise InternalError("IRIS_PUBLIC_URL is needed for E2B sandboxes to reach /mcp")
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
        from e2b import AsyncSandbox

        keepalive = self._keepalive_s(job.timeout_s, job.sandbox_deadline)
        try:
            return await AsyncSandbox.connect(provider_ref, timeout=keepalive, **self._opts())
        except Exception as exc:
            from e2b import NotFoundException

            if isinstance(exc, NotFoundException):
                # The registry still had it live (and E2B's own timeout is past the idle
                # deadline): it was stopped outside this service, not expired.
                raise SandboxLost(
                    f"E2B sandbox {provider_ref}: the sandbox stopped outside this service",
                    reason="failed",
                ) from exc
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
        if isinstance(exc, e2b.FileNotFoundException):
            return exc  # a file of ours went missing in a live sandbox: a 500, not a 410
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
        from e2b import AsyncSandbox

        try:
            sandbox = await AsyncSandbox.create(
                template=self._settings.e2b_template,
                timeout=min(math.ceil(lifetime_s), self._keepalive_s(0, None)),
                metadata={
                    "service": SERVICE,
                    "stack": self._settings.stack_name,
                    "sandboxId": sandbox_id,
                    "projectId": project_id,
                    "toolChannel": self.tool_channel,
                },
                network=cast("SandboxNetworkOpts", self._network(None)),
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
        here = f"{RUN_DIR}/{job.execution_id}"
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
            "workdir": self._workdir(job),
        }
        nonce = secrets.token_hex(16) if job.keep_state else None
        if nonce is not None:
            request |= {"keep": True, "nonce": nonce, "workdir": self._kept_workdir(job)}
        collector = Collector(
            job.output_limit_bytes, frame_clock=True, on_output=job.on_output, nonce=nonce
        )
        stdout = _FramedStdout(collector)
        try:
            if token is not None and self.tool_channel == EGRESS_HEADER:
                await self._set_egress(sandbox, token)
            # Root's: the code's user cannot read it (nor a later execution's).
            await sandbox.files.write(f"{here}/request.json", json.dumps(request), user="root")
            follower = None
            if job.on_output is not None and nonce is None:
                # Someone watches this execution live: follow the frames as they are written.
                await sandbox.files.write(f"{here}/events", "", user="root")
                follower = await _Follower.start(sandbox, f"{here}/events", collector, job)
            try:
                script = (
                    self._script(job, here)
                    if nonce is None
                    else self._kept_script(job, here, nonce)
                )
                exit_code = await self._command(sandbox, script, job, stdout)
                if exit_code is None:  # killed at the time limit: end what the code started
                    # (A kept runner: this one is lost, and says why; the others stay.)
                    k = self._kept(job)
                    # (A fresh one: its processes; the kept runners stay, stopped.)
                    end = _give_up(k, "timeout") + _PAUSE if nonce else _PAUSE
                    await sandbox.commands.run(
                        f"{end}rm -rf {here} {self._workdir(job)}; true",
                        user="root",
                        timeout=30,
                        retain_output=False,
                    )
            finally:
                consumed = await follower.stop() if follower is not None else 0
        except Exception as exc:
            raise self._translate(exc, provider_ref) from exc
        # Frames the follower did not deliver (all of them, when nobody followed).
        frames = stdout.frames()[consumed:]
        reset: str | None = None
        if nonce is not None and frames and frames[0].startswith(STATE_FRAME):
            state = json.loads(frames.pop(0))
            reset = str(state["reset"]) if state.get("reset") else None
        collector.lines(frames)
        report = collector.report
        report.returncode = exit_code
        report.timed_out = report.timed_out or exit_code is None
        result = outcome(report, began, job, self._settings.sandbox_memory_mb)
        if nonce is not None:
            result.state_reset = reset
            k = self._kept(job)
            if report.result is None and exit_code is not None:
                # The runner did not come back: the next execution says why (the script
                # could only tell that it died).
                why = lost_because(report, result)
                with contextlib.suppress(Exception):
                    await sandbox.files.write(f"{k}/lost", why, user="root")
            elif report.result is not None and report.result.get("idle") is False:
                # It could not stop what the code started (a thread): not used again.
                with contextlib.suppress(Exception):
                    await sandbox.commands.run(
                        _give_up(k, "busy") + "true",
                        user="root",
                        timeout=30,
                        retain_output=False,
                    )
        return result

    @staticmethod
    def _workdir(job: ExecutionJob) -> str:
        """The execution's own directory, the code's user's (its compiled module)."""
        return f"{CODE_HOME}/.iris/{job.execution_id}"

    @staticmethod
    def _kept(job: ExecutionJob) -> str:
        """Root's directory of the sandbox's kept runner of the job's language."""
        return f"{KEPT_DIR}/{job.language}"

    @staticmethod
    def _kept_workdir(job: ExecutionJob) -> str:
        """The kept runner's module directory (the code's user's; not under .iris, which
        every fresh execution removes)."""
        return f"{CODE_HOME}/.iris-kept-{job.language}"

    def _kept_script(self, job: ExecutionJob, here: str, nonce: str) -> str:
        """One root shell per keepState execution. The sandbox's runner of this language is
        started once (as the code's user, reading requests from a root-owned FIFO, a copy
        of its stdin at fd 4 so that the code's stdin can be emptied (runner.ts), and
        appending frames to a root-owned file); each execution resumes it (SIGCONT), hands
        it the request, waits for the result frame carrying this execution's nonce, pauses
        (_pause: every kept runner seen stopped, every other process of the code's user, what
        the code started, killed) and prints the frames this execution added, after
        FRAMES_MARK. A runner
        found dead is replaced, and the frames start with why (STATE_FRAME)."""
        runner, env = self._runner_command(job), self._code_env()
        frames_cap = channel_budget(job.output_limit_bytes)
        as_code = _AS_CODE
        k = self._kept(job)
        alive = '[ -n "$pid" ] && /usr/bin/kill -0 "$pid" 2>/dev/null'
        return (
            "export PATH=/usr/sbin:/usr/bin:/sbin:/bin; "
            f"[ -e {RUN_DIR}.locked ] || {{ /usr/bin/chown -R root:root /usr/local && "
            f"/usr/bin/chmod -R go-w /usr/local && /usr/bin/touch {RUN_DIR}.locked; }} "
            "|| exit 97; "
            f"/usr/bin/mkdir -p -m 700 {KEPT_DIR} {k}; reason=; "
            f"{_runners(f'{k}/pid')}pid=${{r# }}; "
            f"if {alive}; then /usr/bin/kill -CONT $pid; else "
            # (It had one, now dead or its pid another's: why it was lost.)
            f"  [ -e {k}/pid ] && reason=$(/usr/bin/cat {k}/lost 2>/dev/null || echo crash); "
            f"  {_PAUSE}"
            f"  /usr/bin/rm -rf {k}/*; /usr/bin/mkfifo -m 644 {k}/in; "
            f"  : > {k}/events; : > {k}/out; : > {k}/err; "
            f"  {as_code} /usr/bin/mkdir -p -m 700 {self._kept_workdir(job)} || exit 97; "
            # A session of its own (setsid: not a group leader, so the same pid): the kernel
            # sends SIGHUP + SIGCONT to a group orphaned with a stopped member when the one
            # that linked it to its session exits. A runner that made a group of its own
            # while root's shell, its parent, was in its session would be woken when that
            # shell exits, after the pause; from another session it never is.
            f"  ( ulimit -u {self._settings.sandbox_max_processes}; cd {CODE_HOME} && "
            f"exec /usr/bin/setsid {as_code} --no-new-privs /usr/bin/env -i {env} {runner} ) "
            f"<>{k}/in 4<&0 3>>{k}/events >>{k}/out 2>>{k}/err & "
            # Its identity: the pid and the start time (a pid alone may be another's later).
            f"  pid=$!; read -r l < /proc/$pid/stat; set -- ${{l##*) }}; "
            f'  echo "$pid ${{20}}" > {k}/pid; '
            f'  until /usr/bin/grep -q \'"t":"ready"\' {k}/events; do '
            f"{alive} || break; /usr/bin/sleep 0.005; done; "
            "fi; "
            f"off=$(/usr/bin/stat -c %s {k}/events); "
            f"o1=$(/usr/bin/stat -c %s {k}/out); e1=$(/usr/bin/stat -c %s {k}/err); "
            f"{{ /usr/bin/cat {here}/request.json; echo; }} > {k}/in; "
            f"until /usr/bin/tail -c +$((off + 1)) {k}/events | /usr/bin/grep -qF "
            f'\'"nonce":"{nonce}"\'; do {alive} || break; /usr/bin/sleep 0.005; done; '
            f"{alive} || echo crash > {k}/lost; {_PAUSE}"
            f"/usr/bin/tail -c +$((o1 + 1)) {k}/out; /usr/bin/tail -c +$((e1 + 1)) {k}/err >&2; "
            "printf '\\0IRIS-FRAMES\\0\\n'; "
            # Always the first line, root's: one the code wrote can only follow it.
            'printf \'{"t":"iris-state","reset":"%s"}\\n\' "$reason"; '
            f"/usr/bin/tail -c +$((off + 1)) {k}/events | /usr/bin/head -c {frames_cap}; "
            f"/usr/bin/rm -rf {here}; exit 0"
        )

    async def _set_egress(self, sandbox: AsyncSandbox, token: str) -> None:
        """The egress rule that adds this execution's token. A 400 is E2B refusing rules
        (transform rules are a per-team feature): no retry can help, so it is loud."""
        from e2b import SandboxException

        try:
            await sandbox.update_network(cast("SandboxNetworkUpdate", self._network(token)))
        except SandboxException as exc:
            if getattr(exc, "status_code", None) != 400 and not str(exc).startswith("400"):
                raise
            raise InternalError(
                f"E2B refused the egress header rule ({exc}): network transform rules are "
                "not enabled for this E2B team. Ask E2B to enable them, or set "
                "IRIS_E2B_EGRESS_MODE=request-file"
            ) from exc

    def _runner_command(self, job: ExecutionJob) -> str:
        """The runner of the job's language, as the code's user starts it."""
        assets = self._settings.e2b_assets_dir
        heap_mb = max(64, self._settings.sandbox_memory_mb * 3 // 4)
        if job.language == "python":
            # -S: no site-packages (.pth files run at start), whoever wrote them.
            return f"/usr/bin/python3 -I -S {assets}/python/runner.py"
        return f"{NODE} --enable-source-maps --max-old-space-size={heap_mb} {assets}/runner.mjs"

    def _code_env(self) -> str:
        """The whole environment of the code's processes (nothing of root's)."""
        assets = self._settings.e2b_assets_dir
        return " ".join(
            f"{k}={shlex.quote(v)}"
            for k, v in {
                "HOME": CODE_HOME,
                "USER": CODE_USER,
                "PATH": "/usr/bin:/bin",
                "LANG": "C.UTF-8",
                "IRIS_ASSETS": assets,
                "ESBUILD_BINARY_PATH": f"{assets}/esbuild",
                # E2B's egress proxy re-signs HTTPS with a CA only this bundle holds.
                "NODE_EXTRA_CA_CERTS": SYSTEM_CA_BUNDLE,
            }.items()
        )

    def _script(self, job: ExecutionJob, here: str) -> str:
        """One root shell does the whole execution: the code runs as the unprivileged user
        in a fresh directory; then every process of that user is killed (but the sandbox's
        kept runners, stopped again: see _pause), and only then
        are the frames printed (after FRAMES_MARK, so nothing of the code's can follow
        them) and the execution's files removed. Nothing the code wrote runs later."""
        runner, env = self._runner_command(job), self._code_env()
        work = self._workdir(job)
        # The frames are JSON: escaped text, a frame per write. The same budget as the
        # runner's channel anywhere (adapters/frames.py), so output at its cap always fits.
        frames_cap = channel_budget(job.output_limit_bytes)
        # Every process of the code's user but the sandbox's kept runners, which stay
        # stopped (see _pause): a fresh execution neither sees nor ends them, as locally.
        as_code, kill_all = _AS_CODE, _PAUSE
        return (
            # Root runs only what root owns: a fixed PATH, and E2B's world-writable
            # /usr/local (first on root's and envd's PATH) closed before any code runs, once
            # per sandbox (the marker is in root's own directory).
            "export PATH=/usr/sbin:/usr/bin:/sbin:/bin; "
            f"[ -e {RUN_DIR}.locked ] || {{ /usr/bin/chown -R root:root /usr/local && "
            f"/usr/bin/chmod -R go-w /usr/local && /usr/bin/touch {RUN_DIR}.locked; }} "
            "|| exit 97; "
            # What an earlier execution left (one that failed half-way): its processes,
            # its work directory, its request files. One execution at a time per sandbox.
            f"{kill_all}/usr/bin/rm -rf {CODE_HOME}/.iris; "
            f"/usr/bin/find {RUN_DIR} -mindepth 1 -maxdepth 1 ! -name {job.execution_id} "
            "-exec /usr/bin/rm -rf {} +; "
            # Made by the code's user, not by root: root never follows a link it planted.
            f"{as_code} /usr/bin/mkdir -p -m 700 {CODE_HOME}/.iris {work} || exit 97; "
            f"( ulimit -u {self._settings.sandbox_max_processes}; cd {CODE_HOME} && "
            f"exec {as_code} --no-new-privs /usr/bin/env -i {env} {runner} ) "
            f"< {here}/request.json 3> {here}/events; "
            "rc=$?; "
            f"{kill_all}"
            f"printf '\\0IRIS-FRAMES\\0\\n'; /usr/bin/head -c {frames_cap} {here}/events; "
            f"/usr/bin/rm -rf {here} {work}; exit $rc"
        )

    async def _command(
        self, sandbox: AsyncSandbox, script: str, job: ExecutionJob, stdout: _FramedStdout
    ) -> int | None:
        """Run the execution's script as root; its exit code, or None if it hit the time
        limit (then killed: the code's processes die with the next execution's script, or
        with the sandbox). Output is consumed as it comes, never retained by the SDK."""
        from e2b import CommandExitException, SandboxException

        handle = await sandbox.commands.run(
            script,
            background=True,
            user="root",
            on_stdout=stdout.add,
            on_stderr=lambda text: stdout.collector.add("stderr", text),
            timeout=job.timeout_s + 2 * COMMAND_GRACE_S,
            retain_output=False,
        )
        try:
            done = await asyncio.wait_for(handle.wait(), job.timeout_s + COMMAND_GRACE_S)
        except TimeoutError:
            await handle.kill()
            with contextlib.suppress(Exception):
                await handle.disconnect()
            return None
        except CommandExitException as exited:
            return int(exited.exit_code)
        except SandboxException:
            raise
        except Exception as exc:  # the SDK's "Command ended without an end event"
            raise ProviderUnavailable(
                f"E2B's command stream broke off: {exc}", retry_after_s=5
            ) from exc
        return int(done.exit_code)

    async def list_sandboxes(self) -> list[ProviderSandbox]:
        """Every running E2B sandbox this stack created (by its metadata)."""
        from e2b import AsyncSandbox, SandboxQuery

        found: list[ProviderSandbox] = []
        try:
            paginator = AsyncSandbox.list(
                query=SandboxQuery(
                    metadata={"service": SERVICE, "stack": self._settings.stack_name}
                ),
                **self._opts(),
            )
            while paginator.has_next:
                for info in await paginator.next_items():
                    meta = info.metadata or {}
                    if "sandboxId" in meta and "projectId" in meta:
                        found.append(
                            ProviderSandbox(
                                info.sandbox_id,
                                meta["sandboxId"],
                                meta["projectId"],
                                started_at=info.started_at.timestamp(),
                            )
                        )
        except Exception as exc:
            raise self._translate(exc, "list") from exc
        return found

    async def kill(self, provider_ref: str) -> None:
        await self._control.kill(provider_ref)  # False if already gone

    async def is_alive(self, provider_ref: str) -> bool:
        state = await self._control.state(provider_ref)
        return state is not None and state.endswith("running")


#: Runs a command as the code's user (root's shell drops to it).
_AS_CODE = f"/usr/bin/setpriv --reuid={CODE_USER} --regid={CODE_USER} --init-groups"
#: Kill every process of the code's user: kill(-1) as that user, again until none is left (a
#: process forking as fast as it can cannot outrun it for long).
_KILL_ALL = (
    f"while /usr/bin/pgrep -u {CODE_USER} >/dev/null; do "
    f"{_AS_CODE} /usr/bin/kill -KILL -1 2>/dev/null; /usr/bin/sleep 0.01; done; "
)


def _runners(pid_files: str) -> str:
    """Shell that sets ``r`` to the pids of the kept runners named by ``pid_files`` (a glob)
    that still live: each file holds the runner's pid and start time, and a pid whose
    process started at another time (the runner died, the pid was reused, by the code or by
    root) or is a zombie is not one. Shell builtins only."""
    return (
        f'r=; for f in {pid_files}; do read -r p s 2>/dev/null < "$f" && '
        'read -r l 2>/dev/null < "/proc/$p/stat" && set -- ${l##*) } && [ "$1" != Z ] && '
        '[ "${20}" = "$s" ] && r="$r $p"; done; '
    )


def _give_up(kept: str, why: str) -> str:
    """Shell that kills the kept runner of directory ``kept`` (if it still lives), after
    writing why the next execution of its language will say it was lost."""
    return f"echo {why} > {kept}/lost; {_runners(f'{kept}/pid')}kill -KILL $r 2>/dev/null; "


#: Rounds of the pause before the kept runners are given up; from the fourth on, each waits
#: 10 ms (so about half a second in all, the local pause's deadline).
PAUSE_ROUNDS = 50


def _pause(rounds: int) -> str:
    """Between two executions: SIGSTOP every kept runner of the sandbox (the code may have woken
    another language's) and SIGKILL every other process of the code's user, again until no
    other is alive and then every thread of every runner is seen stopped (T; Z/X: dead).
    Seen stopped, not merely sent SIGSTOP: a process of the code can SIGCONT a runner between
    its SIGSTOP and its own SIGKILL, and the runner would run on between executions (and start
    more). In that order: a process read dead by ps sends nothing after, while one that ps read
    after the runner could still have woken it. Once nothing but stopped runners is left,
    nothing can wake them. If that does not hold in ``rounds`` rounds, every runner is given
    up: killed, and the next execution of its language says "busy". The usual cost is one ps
    (the threads' states are read by shell builtins); no sleep unless the code left something."""
    return (
        f"{_runners(f'{KEPT_DIR}/*/pid')}i=0; "
        "while :; do kill -STOP $r 2>/dev/null; "
        f'o=$(/usr/bin/ps -u {CODE_USER} -o pid=,stat= | /usr/bin/awk -v r="$r" '
        "'BEGIN {split(r, a); for (k in a) run[a[k]] = 1} !($1 in run) && $2 !~ /^Z/ {print $1}'); "
        'if [ -z "$o" ]; then w=; for p in $r; do for t in /proc/$p/task/*/stat; do '
        'read -r l 2>/dev/null < "$t" || continue; case ${l##*) } in [TZX]*) ;; *) w=1;; esac; '
        'done; done; [ -z "$w" ] && break; fi; '
        f"i=$((i + 1)); if [ $i -gt {rounds} ]; then "
        f'for d in {KEPT_DIR}/*/; do [ -e "$d"lost ] || echo busy > "$d"lost; done; '
        f"kill -KILL $r 2>/dev/null; {_KILL_ALL}break; fi; "
        "kill -KILL $o 2>/dev/null; [ $i -lt 4 ] || /usr/bin/sleep 0.01; done; "
    )


_PAUSE = _pause(PAUSE_ROUNDS)


class _FramedStdout:
    """The script's stdout: the code's own output until the last FRAMES_MARK (printed by
    root once the code's processes are dead), then the runner's frames, capped in the
    sandbox. A mark the code printed itself only costs it the output that followed."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self._held = ""  # output that may be the start of a mark
        self._frames: list[str] | None = None

    def add(self, text: str) -> None:
        text = self._held + text
        self._held = ""
        while (at := text.find(FRAMES_MARK)) >= 0:
            if self._frames is None:
                self._emit(text[:at])
            self._frames = []
            text = text[at + len(FRAMES_MARK) :]
        if self._frames is not None:
            self._frames.append(text)
            return
        # Hold back a tail that could be a mark cut in two by the stream's chunking.
        keep = next(
            (n for n in range(len(FRAMES_MARK) - 1, 0, -1) if text.endswith(FRAMES_MARK[:n])), 0
        )
        self._held = text[len(text) - keep :] if keep else ""
        self._emit(text[: len(text) - keep])

    def _emit(self, text: str) -> None:
        if text:
            self.collector.add("stdout", text)

    def frames(self) -> list[bytes]:
        if self._frames is None:
            self._emit(self._held)
            return []
        return "".join(self._frames).encode().splitlines()


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
        """Follow ``path`` (root's: the frame file)."""
        follower = cls(collector)
        follower._handle = await sandbox.commands.run(
            f"exec tail -c +1 -F {path} 2>/dev/null",
            background=True,
            user="root",
            retain_output=False,
            on_stdout=follower._receive,
            timeout=job.timeout_s + 2 * COMMAND_GRACE_S,
        )
        return follower

    def _receive(self, text: str) -> None:
        *lines, self._pending = (self._pending + text).split("\n")
        self.delivered += len(lines)
        self._collector.lines(lines)

    async def stop(self) -> int:
        """Stop following; how many lines were delivered (a partial last one is not)."""
        with contextlib.suppress(Exception):
            await self._handle.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._handle.wait(), COMMAND_GRACE_S)
        return self.delivered
