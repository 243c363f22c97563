"""The runner's protocol, seen from the host: frames in, a RunOutcome out.

Shared by every provider: the local jail reads the frames live from fd 3; a remote
sandbox (E2B) hands back the same frames in a file. See sandbox/src/runner.ts."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, cast

from iris_exec.domain.models import CodeError, ExecutionJob, OutputChunk, RunOutcome, Stream

HEAP_EXHAUSTED = "JavaScript heap out of memory"
#: Every line on the runner's channel costs at least this much of its budget, whatever it
#: holds (an empty line, a frame of an unknown kind, noise): parsing costs the host CPU.
FRAME_MIN_COST = 64
#: Lines that do not parse as a batch are parsed one by one, about ten times the CPU: each
#: of them costs this many times FRAME_MIN_COST.
SLOW_FRAME_FACTOR = 8
#: The share of the memory limit an execution's peak must reach for a claim of running out
#: of memory to be believed (see near_memory_limit; the figures are in docs/CONTRACT.md).
NEAR_MEMORY_LIMIT = 0.6
#: A run's pieces are joined once this many have come (bounded memory, linear time).
RUN_PARTS = 4096
#: A runner's "limit" frame comes after the output that fit under the cap: up to this many
#: bytes short of it (a UTF-8 character cut at the cap).
LIMIT_SLACK_BYTES = 4


def channel_budget(output_limit: int) -> int:
    """What the runner's channel may carry in one execution, every frame counted at
    FRAME_MIN_COST at least: enough for output at its cap written a byte at a time (each
    output frame carries a byte at least; 300,000 `console.log('a')` are 300,000 frames),
    plus room for the frames that are not output. Bounded all the same: a flood of frames
    that are not output stops there."""
    return output_limit * FRAME_MIN_COST + 1024 * 1024


def well_formed(text: str) -> str:
    """``text`` with lone UTF-16 surrogates (which JavaScript strings may hold, and JSON
    frames carry as \\udXXX escapes) replaced by U+FFFD, so that it can be UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


@dataclass(slots=True)
class Report:
    """What the host saw of one execution, before it becomes a RunOutcome."""

    result: dict[str, Any] | None = None
    exit_code: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    timed_out: bool = False
    output_exceeded: bool = False
    heap_exhausted: bool = False
    #: Processes of the execution the kernel killed for memory (the runner's cgroup).
    oom_kills: int = 0
    #: The most memory the execution's group held (bytes, the cgroup's reading), or None
    #: where the host cannot see it (E2B, a local server without cgroups).
    memory_peak: int | None = None
    returncode: int | None = None
    #: A kept runner answered and is waiting for the next execution (local jails).
    kept: bool = False
    #: Output runs of one stream each, earlier runs joined already; the last one still
    #: growing. Joined as they come, a run would be copied once per frame: quadratic.
    _runs: list[tuple[Stream, list[str]]] = field(default_factory=list)

    def append(self, stream: Stream, text: str) -> None:
        runs = self._runs
        if runs and runs[-1][0] == stream:
            parts = runs[-1][1]
            parts.append(text)
            if len(parts) >= RUN_PARTS:
                parts[:] = ["".join(parts)]
        else:
            runs.append((stream, [text]))

    @property
    def chunks(self) -> list[OutputChunk]:
        """The output in arrival order, one chunk per run of a stream."""
        return [OutputChunk(stream, "".join(parts)) for stream, parts in self._runs]


class Collector:
    """Keeps output in arrival order, counts it against the cap, and notices the end.

    The start and the end are stamped as their frames arrive (the local jail); a remote
    provider replaying a file passes ``frame_clock=True`` to use the runner's own stamps."""

    def __init__(
        self,
        output_limit: int,
        *,
        frame_clock: bool = False,
        on_output: Callable[[OutputChunk], None] | None = None,
        nonce: str | None = None,
    ) -> None:
        self.report = Report()
        #: A kept runner's result frame carries its request's nonce: a result frame without it
        #: (the code's own, or a late one of an earlier execution) is not this execution's.
        self.nonce = nonce
        self.limit = output_limit
        self.bytes = 0
        #: What the channel carried, every frame counted (see FRAME_MIN_COST).
        self.channel_bytes = 0
        self.channel_limit = channel_budget(output_limit)
        self.done = asyncio.Event()
        self.stopped = False
        self._frame_clock = frame_clock
        self._on_output = on_output
        self._live: list[tuple[Stream, list[str]]] = []

    def _stamp(self, frame: dict[str, Any]) -> float:
        at = frame.get("at")
        if self._frame_clock and isinstance(at, int | float):
            return float(at) / 1000
        return time.monotonic()

    def add(self, stream: Stream, text: str) -> None:
        """Output from the program, counted against the cap; the listener hears it now."""
        self._add(stream, text)
        self._notify()

    def _add(self, stream: Stream, text: str) -> None:
        if self.stopped or not text:
            return
        try:
            encoded = text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: rare, so not looked for up front
            text = well_formed(text)
            encoded = text.encode("utf-8")
        if stream == "stderr" and HEAP_EXHAUSTED in text:
            self.report.heap_exhausted = True
        if self.bytes + len(encoded) > self.limit:
            text = encoded[: self.limit - self.bytes].decode("utf-8", "ignore")
            self.report.output_exceeded = True
            self.stopped = True
            self.done.set()
        self.bytes += len(encoded)
        if not text:
            return
        self.report.append(stream, text)
        if self._on_output is not None:
            live = self._live
            if live and live[-1][0] == stream:
                live[-1][1].append(text)
            else:
                live.append((stream, [text]))

    def _notify(self) -> None:
        """Tell the listener what came since last time: one chunk per run of a stream,
        not one per frame."""
        if self._live and self._on_output is not None:
            live, self._live = self._live, []
            for stream, parts in live:
                self._on_output(OutputChunk(stream, "".join(parts)))

    def frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("t")
        if kind == "out":
            self._add("stderr" if frame.get("s") == "e" else "stdout", str(frame.get("d", "")))
        elif kind == "start" and self.report.started_at is None:
            self.report.started_at = self._stamp(frame)
        elif kind == "limit" and frame.get("kind") == "output":
            # The runner stopped itself at the output cap (remote sandboxes). The code can
            # write this frame too: believed only once the cap's worth of output came (the
            # runner sends what fits, then this; a character cut at the cap may lose a few
            # bytes), so that limitHit stays the service's reading.
            if self.bytes < self.limit - LIMIT_SLACK_BYTES:
                return
            self.report.output_exceeded = True
            self.report.ended_at = self._stamp(frame)
            self.stopped = True
            self.done.set()
        elif kind == "result" and self.report.result is None:
            if self.nonce is not None and frame.get("nonce") != self.nonce:
                return
            self.report.result = frame
            self.report.ended_at = self._stamp(frame)
            self.done.set()
        elif kind == "exit" and self.report.result is None:
            code = frame.get("code")
            self.report.exit_code = code if isinstance(code, int) else None
            self.report.ended_at = self._stamp(frame)
            self.done.set()

    def lines(self, lines: Iterable[bytes | str]) -> None:
        """Feed JSON-lines frames; lines that are not frames are ignored (a program that
        writes to fd 3 on purpose changes only its own result).

        The lines are parsed as one JSON array, a tenth of the CPU of one parse a line, and
        every per-line step runs in C: a flood of a million frames costs the host about
        what it costs the flooder. When the array does not parse (only a program writing
        to fd 3 itself does that: blank lines, junk, a line holding two values) the lines
        are parsed one by one, each charged SLOW_FRAME_FACTOR times as much."""
        if self.stopped:
            return
        given = lines if isinstance(lines, list) else list(lines)
        if not given:
            return
        batch = cast(list[bytes], given)  # frames read from a pipe: bytes, kept as they are
        if isinstance(given[0], str):  # a remote sandbox's lines come decoded
            batch = [
                line.encode("utf-8", "replace") if isinstance(line, str) else line for line in given
            ]
        count = len(batch)
        cost = sum(map(max, map(len, batch), repeat(FRAME_MIN_COST, count)))
        frames: list[Any] | None = None
        if count > 1:
            try:
                frames = json.loads(b"[" + b",".join(batch) + b"]")
            except ValueError:
                frames = None
            if frames is not None and len(frames) != count:
                frames = None  # a line held more than one value: not the runner's frames
            if frames is None:
                cost *= SLOW_FRAME_FACTOR
        if not self._charge(cost):
            return
        if frames is None:
            frames = []
            for line in batch:
                try:
                    frames.append(json.loads(line))
                except ValueError:
                    continue
        self._frames(frames)
        self._notify()

    def _frames(self, frames: list[Any]) -> None:
        handle = self.frame
        for frame in frames:
            if self.stopped:  # a frame can stop the collector (the output cap)
                return
            if isinstance(frame, dict):
                handle(frame)

    def _charge(self, cost: int) -> bool:
        """Count ``cost`` against the channel's budget; False (and stopped) past it."""
        self.channel_bytes += cost
        if self.channel_bytes > self.channel_limit:
            # A flood of frames that are not output: stopped like too much output.
            self.report.output_exceeded = True
            self.stopped = True
            self.done.set()
            return False
        return True


def near_memory_limit(report: Report, memory_mb: int) -> bool:
    """Whether the execution's peak memory backs a claim of running out of it (Node's heap
    exhausted, an allocation refused): the code itself can print Node's words and abort,
    throw the RangeError or raise MemoryError, or ask for more than the machine has (refused
    at once, using nothing). Where the host sees no peak, the claim is all there is."""
    if report.memory_peak is None:
        return True
    return report.memory_peak >= memory_mb * 1024 * 1024 * NEAR_MEMORY_LIMIT


def outcome(report: Report, began: float, job: ExecutionJob, memory_mb: int) -> RunOutcome:
    """The outcome the service renders, from what the host saw."""
    started = report.started_at if report.started_at is not None else began
    ended = report.ended_at if report.ended_at is not None else started
    result = RunOutcome(
        output=report.chunks,
        output_truncated=report.output_exceeded,
        setup_ms=max(0.0, started - began) * 1000,
        execution_ms=max(0.0, ended - started) * 1000,
        exit_code=report.returncode,
    )
    frame = report.result
    error = frame.get("error") if frame and not frame.get("ok") else None
    allocation_failed = isinstance(error, dict) and (
        (
            error.get("name") == "RangeError"
            and "allocation failed" in str(error.get("message", "")).lower()
        )
        or error.get("name") == "MemoryError"  # Python's
    )
    # Node at its heap limit prints HEAP_EXHAUSTED and aborts: no result follows. A program
    # that prints those words and answers was stopped by no limit.
    claimed_oom = (report.heap_exhausted and frame is None) or allocation_failed
    if report.timed_out:
        result.limit_hit = "timeout"
        result.execution_ms = job.timeout_s * 1000
        result.error = CodeError(
            "TimeoutError", f"Execution timed out after {job.timeout_s:g} s and was stopped"
        )
    elif report.oom_kills or (claimed_oom and near_memory_limit(report, memory_mb)):
        result.limit_hit = "memory"
        result.error = CodeError(
            "OutOfMemoryError",
            f"The program ran out of memory (limit {memory_mb} MiB) and was stopped",
        )
    elif report.output_exceeded:
        result.limit_hit = "output"
        result.error = CodeError(
            "OutputLimitError",
            f"Output exceeded {job.output_limit_bytes} bytes; the program was stopped and"
            " its output truncated",
        )
    elif frame is not None and frame.get("ok"):
        result.succeeded = True
        value = frame.get("value")
        result.value_json = well_formed(value) if isinstance(value, str) else None
    elif isinstance(error, dict):
        result.error = CodeError(
            well_formed(str(error.get("name") or "Error")),
            well_formed(str(error.get("message", ""))),
            well_formed(str(error["stack"])) if error.get("stack") else None,
        )
    elif report.exit_code == 0:
        result.succeeded = True
    elif report.exit_code is not None:
        result.error = CodeError("Error", f"Process exited with code {report.exit_code}")
    else:
        result.error = CodeError(
            "Error", f"The program ended unexpectedly (exit status {report.returncode})"
        )
    return result


def lost_because(report: Report, result: RunOutcome) -> str:
    """Why a kept runner did not come back from an execution (its ``stateResetReason``)."""
    if result.limit_hit is not None:
        return result.limit_hit  # "timeout", "memory" or "output"
    if report.exit_code is not None:
        return "exit"
    return "crash"
