"""Commands run for real on this host, the way envd's process service runs them.

Mirrors ``packages/envd/internal/services/process`` of e2b-dev/infra where the
SDK can tell the difference:

- stdout/stderr are read in chunks of at most 32 KiB, each sent as its own data
  event as soon as it is read (so large output streams, with back-pressure
  through bounded queues);
- the end event carries Go's ``ProcessState``: ``exit_code`` (-1 when killed by
  a signal), ``exited``, ``status`` (``exit status 3`` / ``signal: killed``) and
  ``error`` (the same text, unset on exit status 0);
- a ``Start`` with ``Connect-Timeout-Ms`` kills the process at that deadline,
  even when no client is attached any more; closing a stream never kills it;
- the end event waits for the output pipes to close (``Handler.Wait``: ``<-outCtx.Done()``
  before ``cmd.Wait``): a background child that holds stdout holds the command until it
  closes it, the command's deadline passes, or a SIGKILL/SIGTERM is sent through the API
  (``SendSignal`` cancels the output);
- an ended process stays findable for ``Connect`` for 30 seconds.

Signals go to the process alone, as envd's do. Unlike envd (whose commands share its own
session and process group), each command gets its own session, so that the sandbox's end
(``abandon``) kills every grandchild and none outlives a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from e2b.envd.process import process_pb
from protobuf import Oneof

from tests.support.e2b_standin.records import CommandRecord, utcnow

logger = logging.getLogger(__name__)

CHUNK_SIZE = 32 * 1024
QUEUE_SIZE = 64
RETAIN_ENDED_S = 30.0
#: How long output is still read once envd stops waiting for the pipes (a signal or the
#: deadline cancelled them).
PIPE_GRACE_S = 0.1


class SandboxGone:
    """Put into a subscriber's queue when the sandbox ends under a running stream."""


SANDBOX_GONE = SandboxGone()
StreamItem = process_pb.ProcessEvent | SandboxGone


def end_event(returncode: int) -> process_pb.ProcessEvent.EndEvent:
    """The end event envd builds from Go's ``ProcessState`` for this return code."""
    if returncode >= 0:
        status = f"exit status {returncode}"
        return process_pb.ProcessEvent.EndEvent(
            exit_code=returncode,
            exited=True,
            status=status,
            error=None if returncode == 0 else status,
        )
    name = signal.strsignal(-returncode) or f"signal {-returncode}"
    status = f"signal: {name.lower()}"
    return process_pb.ProcessEvent.EndEvent(exit_code=-1, exited=False, status=status, error=status)


def start_event(pid: int) -> process_pb.ProcessEvent:
    start: Oneof[Literal["start"], process_pb.ProcessEvent.StartEvent] = Oneof(
        "start", process_pb.ProcessEvent.StartEvent(pid=pid)
    )
    return process_pb.ProcessEvent(event=start)


def data_event(stream: Literal["stdout", "stderr"], chunk: bytes) -> process_pb.ProcessEvent:
    # Each Oneof gets its Literal from a declared type: mypy does not infer it from a union.
    if stream == "stdout":
        stdout: Oneof[Literal["stdout"], bytes] = Oneof("stdout", chunk)
        payload = process_pb.ProcessEvent.DataEvent(output=stdout)
    else:
        stderr: Oneof[Literal["stderr"], bytes] = Oneof("stderr", chunk)
        payload = process_pb.ProcessEvent.DataEvent(output=stderr)
    data: Oneof[Literal["data"], process_pb.ProcessEvent.DataEvent] = Oneof("data", payload)
    return process_pb.ProcessEvent(event=data)


def end_message(end: process_pb.ProcessEvent.EndEvent) -> process_pb.ProcessEvent:
    event: Oneof[Literal["end"], process_pb.ProcessEvent.EndEvent] = Oneof("end", end)
    return process_pb.ProcessEvent(event=event)


def keepalive_event() -> process_pb.ProcessEvent:
    event: Oneof[Literal["keepalive"], process_pb.ProcessEvent.KeepAlive] = Oneof(
        "keepalive", process_pb.ProcessEvent.KeepAlive()
    )
    return process_pb.ProcessEvent(event=event)


class _ExitAwareProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """asyncio's protocol for ``create_subprocess_exec``, plus an event for the exit itself.

    ``Process.wait()`` returns only once the pipes are closed too, which a
    background child (``sleep 9 & echo started``) keeps open; envd answers when
    the process exits.
    """

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


@dataclass
class _Subscriber:
    queue: asyncio.Queue[StreamItem]
    closed: bool = False


class ManagedProcess:
    """One running command and the streams attached to it."""

    def __init__(
        self,
        transport: asyncio.SubprocessTransport,
        protocol: _ExitAwareProtocol,
        config: process_pb.ProcessConfig,
        record: CommandRecord,
    ) -> None:
        self._transport = transport
        self._protocol = protocol
        self._proc = asyncio.subprocess.Process(transport, protocol, asyncio.get_running_loop())
        self.pid = self._proc.pid
        self.config = config
        self.record = record
        self.end: process_pb.ProcessEvent.EndEvent | None = None
        self._subscribers: list[_Subscriber] = []
        self._gone = False
        self._pumps: list[asyncio.Task[None]] = []
        self._waiter: asyncio.Task[None] | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self.finished = asyncio.Event()
        #: envd's outCtx: cancelled by the deadline or a SIGKILL/SIGTERM through the API.
        self._output_cancelled = asyncio.Event()

    @property
    def tag(self) -> str | None:
        return self.record.tag

    def subscribe(self) -> _Subscriber:
        subscriber = _Subscriber(asyncio.Queue(QUEUE_SIZE))
        self._subscribers.append(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: _Subscriber) -> None:
        subscriber.closed = True
        with contextlib.suppress(ValueError):
            self._subscribers.remove(subscriber)
        _drain(subscriber.queue)  # wakes a producer blocked on this full queue

    def run(self, *, deadline: float | None) -> None:
        """Start pumping output; kill the process at ``deadline`` (loop time) if given."""
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._pumps = [
            asyncio.create_task(self._pump(self._proc.stdout, "stdout")),
            asyncio.create_task(self._pump(self._proc.stderr, "stderr")),
        ]
        self._waiter = asyncio.create_task(self._wait())
        if deadline is not None:
            self._deadline = asyncio.get_running_loop().call_at(deadline, self._deadline_passed)

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the command's process, as envd does: not to its group, so the
        children it started live on (``handler.go``, ``SendSignal``). SIGKILL and SIGTERM
        also stop the wait for its output pipes."""
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self._output_cancelled.set()
        if self._protocol.exited.is_set():
            return  # reaped already (envd's is a zombie until cmd.Wait): the pid may be reused
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.pid, sig)

    def write_stdin(self, data: bytes) -> None:
        stdin = self._proc.stdin
        if stdin is None or stdin.is_closing():
            raise ConnectError(Code.INTERNAL, "error writing to stdin: stdin not enabled or closed")
        stdin.write(data)

    def close_stdin(self) -> None:
        stdin = self._proc.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()

    def abandon(self) -> None:
        """The sandbox ended: streams break off, the command is killed."""
        self._gone = True
        for subscriber in list(self._subscribers):
            _drain(subscriber.queue)
            subscriber.queue.put_nowait(SANDBOX_GONE)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # the whole machine goes

    async def events(
        self,
        subscriber: _Subscriber,
        *,
        sandbox_id: str,
        deadline: float | None,
        keepalive_s: float,
    ) -> AsyncIterator[process_pb.ProcessEvent]:
        """The events a stream delivers: data, keepalives when idle, then the end event.

        Raises ``DEADLINE_EXCEEDED`` when the stream's own deadline passes (as
        connect-go does when the handler context expires) and ``UNAVAILABLE``
        when the sandbox ends under the stream.
        """
        loop = asyncio.get_running_loop()
        while True:
            wait = keepalive_s
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise ConnectError(Code.DEADLINE_EXCEEDED, "context deadline exceeded")
                wait = min(wait, remaining)
            try:
                item = await asyncio.wait_for(subscriber.queue.get(), wait)
            except TimeoutError:
                if deadline is None or loop.time() < deadline:
                    yield keepalive_event()
                continue
            if isinstance(item, SandboxGone):
                raise ConnectError(
                    Code.UNAVAILABLE,
                    f"the connection to sandbox {sandbox_id} ended before the stream completed",
                )
            if deadline is not None and loop.time() >= deadline:
                raise ConnectError(Code.DEADLINE_EXCEEDED, "context deadline exceeded")
            yield item
            if isinstance(item.event, Oneof) and item.event.field == "end":
                return

    async def _publish(self, event: process_pb.ProcessEvent) -> None:
        for subscriber in list(self._subscribers):
            if not subscriber.closed and not self._gone:
                await subscriber.queue.put(event)

    async def _pump(self, stream: asyncio.StreamReader, field: Literal["stdout", "stderr"]) -> None:
        while chunk := await stream.read(CHUNK_SIZE):
            if not self._gone:
                await self._publish(data_event(field, chunk))

    async def _wait(self) -> None:
        await self._protocol.exited.wait()
        returncode = self._transport.get_returncode()
        assert returncode is not None
        # Like envd, the end waits for the output pipes to close (every holder, background
        # children too), unless the deadline or a signal cancelled the output first.
        cancelled = asyncio.create_task(self._output_cancelled.wait())
        waiting: set[asyncio.Task[Any]] = {*self._pumps, cancelled}
        while cancelled in waiting and len(waiting) > 1:
            _, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        cancelled.cancel()
        _, pending = await asyncio.wait(self._pumps, timeout=PIPE_GRACE_S)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        self._transport.close()
        if self._deadline is not None:
            self._deadline.cancel()
        self.end = end_event(returncode)
        self.record.exit_code = self.end.exit_code
        self.record.status = self.end.status
        self.record.ended_at = utcnow()
        logger.info("pid %d (%r) ended: %s", self.pid, self.record.cmd, self.end.status)
        await self._publish(end_message(self.end))
        self.finished.set()

    def _deadline_passed(self) -> None:
        self._output_cancelled.set()  # outCtx derives from the deadline's context
        if not self._protocol.exited.is_set():
            logger.info("pid %d (%r) passed its timeout: killed", self.pid, self.record.cmd)
            self.record.timed_out = True
            self.signal(signal.SIGKILL)


def _drain(queue: asyncio.Queue[StreamItem]) -> None:
    while not queue.empty():
        queue.get_nowait()


class ProcessTable:
    """The processes of one sandbox's envd, by pid."""

    def __init__(self) -> None:
        self.running: dict[int, ManagedProcess] = {}
        self._ended: dict[int, tuple[ManagedProcess, float]] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        #: Process groups whose leader has been reaped (background children may live on).
        self._orphan_groups: set[int] = set()

    async def spawn(
        self,
        *,
        config: process_pb.ProcessConfig,
        record: CommandRecord,
        argv: list[str],
        cwd: Path,
        env: dict[str, str],
        stdin: bool,
    ) -> ManagedProcess:
        """Start ``argv`` (``config.cmd config.args``, maybe inside the sandbox's jail);
        output flows once ``run``."""
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.subprocess_exec(
                lambda: _ExitAwareProtocol(limit=2 * CHUNK_SIZE, loop=loop),
                *argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as e:
            raise ConnectError(
                Code.INVALID_ARGUMENT, f"error starting process '{' '.join(argv)}': {e}"
            ) from e
        process = ManagedProcess(transport, protocol, config, record)
        record.pid = process.pid
        self.running[process.pid] = process
        task = asyncio.create_task(self._retire(process))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        return process

    async def _retire(self, process: ManagedProcess) -> None:
        await process.finished.wait()
        if self.running.get(process.pid) is process:
            del self.running[process.pid]
        self._orphan_groups.add(process.pid)
        loop = asyncio.get_running_loop()
        self._ended[process.pid] = (process, loop.time() + RETAIN_ENDED_S)

    def find(self, selector: process_pb.ProcessSelector | None) -> ManagedProcess:
        """The running process a selector names (envd ``getProcess``)."""
        match selector.selector if selector is not None else None:
            case Oneof(field="pid", value=pid):
                if pid in self.running:
                    return self.running[pid]
                raise ConnectError(Code.NOT_FOUND, f"process with pid {pid} not found")
            case Oneof(field="tag", value=tag):
                for process in self.running.values():
                    if process.tag == tag:
                        return process
                raise ConnectError(Code.NOT_FOUND, f"process with tag {tag} not found")
            case other:
                raise ConnectError(Code.UNIMPLEMENTED, f"invalid input type {other!r}")

    def find_ended(self, selector: process_pb.ProcessSelector | None) -> ManagedProcess | None:
        """A process that ended in the last 30 s, for a late ``Connect``."""
        now = asyncio.get_running_loop().time()
        self._ended = {pid: entry for pid, entry in self._ended.items() if entry[1] > now}
        match selector.selector if selector is not None else None:
            case Oneof(field="pid", value=int(pid)):
                entry = self._ended.get(pid)
                return entry[0] if entry else None
            case Oneof(field="tag", value=tag):
                for process, _ in self._ended.values():
                    if process.tag == tag:
                        return process
        return None

    def abandon_all(self) -> None:
        """The sandbox ended: break off every stream and kill every command and its children."""
        for process in list(self.running.values()):
            process.abandon()
        for pgid in self._orphan_groups:
            # While any member of group <pgid> lives, the kernel does not hand out <pgid> as
            # a pid again; if a process <pgid> exists, the number was reused: not ours.
            if not Path(f"/proc/{pgid}").exists():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
        self._orphan_groups.clear()

    async def wait_all(self) -> None:
        """Wait until every command has ended and been reaped."""
        await asyncio.gather(*(p.finished.wait() for p in list(self.running.values())))
