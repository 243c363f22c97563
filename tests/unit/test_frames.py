"""The host's side of the runner channel: what a program's frames become, and what a flood
of frames costs it."""

from __future__ import annotations

import json

import pytest

from iris_exec.adapters.frames import Collector, Report, outcome
from iris_exec.domain.models import ExecutionJob, OutputChunk

CAP = 1024 * 1024


def out(text: str, stream: str = "o") -> bytes:
    return json.dumps({"t": "out", "s": stream, "d": text}).encode()


RESULT = b'{"t":"result","ok":true,"value":"1"}'


def feed(collector: Collector, lines: list[bytes], read: int = 5000) -> None:
    """As the jail's reader does: a read's worth of lines at a time."""
    for start in range(0, len(lines), read):
        collector.lines(lines[start : start + read])


@pytest.mark.slow  # half a million frames: seconds, not milliseconds
def test_output_at_the_cap_one_byte_a_frame_is_kept_whole_and_in_order() -> None:
    heard: list[OutputChunk] = []
    collector = Collector(CAP, on_output=heard.append)
    letters = "abcdefghij"
    feed(collector, [out(letters[n % 10]) for n in range(CAP)] + [RESULT])

    assert not collector.report.output_exceeded
    assert collector.report.result is not None
    text = (letters * (CAP // 10 + 1))[:CAP]
    assert [(c.stream, c.text) for c in collector.report.chunks] == [("stdout", text)]
    # Live listeners hear runs, not single frames, and miss nothing.
    assert "".join(c.text for c in heard) == text
    assert len(heard) < CAP // 1000


def test_streams_keep_their_interleaving() -> None:
    collector = Collector(CAP)
    feed(collector, [out("1"), out("2"), out("x", "e"), out("3"), out("y", "e"), out("z", "e")])
    chunks = [(c.stream, c.text) for c in collector.report.chunks]
    assert chunks == [("stdout", "12"), ("stderr", "x"), ("stdout", "3"), ("stderr", "yz")]


def test_a_line_that_is_not_a_frame_loses_nothing_else() -> None:
    collector = Collector(CAP)
    collector.lines([out("before"), b"not json {", b"", out("after"), RESULT])
    assert [c.text for c in collector.report.chunks] == ["beforeafter"]
    assert collector.report.result == {"t": "result", "ok": True, "value": "1"}


def test_a_line_holding_two_values_is_not_two_frames() -> None:
    collector = Collector(CAP)
    collector.lines([out("a"), out("b") + b"," + RESULT, out("c")])
    assert [c.text for c in collector.report.chunks] == ["ac"]
    assert collector.report.result is None


def test_a_flood_of_frames_that_are_not_output_is_stopped_as_too_much_output() -> None:
    collector = Collector(CAP)
    noop = b'{"t":"noop"}'
    sent = 0
    while not collector.stopped and sent < 10_000_000:
        feed(collector, [noop] * 5000)
        sent += 5000
    assert collector.report.output_exceeded
    # Bounded: about as many frames as the most output frames a legitimate program makes.
    assert sent <= 1.1 * CAP


def test_lines_that_break_the_batch_are_charged_more() -> None:
    def lines_until_stopped(batch: list[bytes]) -> int:
        collector = Collector(CAP)
        sent = 0
        while not collector.stopped:
            collector.lines(batch)
            sent += len(batch)
        assert collector.report.output_exceeded
        return sent

    frames = lines_until_stopped([b'{"t":"noop"}'] * 1000)
    broken = lines_until_stopped([b'{"t":"noop"}'] * 999 + [b"{"])
    # A batch that fails is parsed line by line (several times the CPU): its budget runs
    # out several times sooner.
    assert broken * 4 < frames


def test_text_lines_from_a_remote_sandbox_are_frames_too() -> None:
    collector = Collector(CAP)
    collector.lines([out("remote").decode(), RESULT.decode()])
    assert [c.text for c in collector.report.chunks] == ["remote"]
    assert collector.report.result is not None


def _memory_reading(*, peak: int | None, oom_kills: int = 0, claim: str) -> str | None:
    """The service's limitHit for a report whose memory reading is ``peak`` (bytes of a
    100 MiB limit) and whose program claimed to run out of memory as ``claim`` says."""
    report = Report(oom_kills=oom_kills, memory_peak=peak)
    if claim == "heap":  # Node's words on stderr, then no answer
        report.heap_exhausted = True
    else:
        error = {"name": "RangeError", "message": "Array buffer allocation failed"}
        if claim == "python":
            error = {"name": "MemoryError", "message": ""}
        report.result = {"t": "result", "ok": False, "error": error}
    job = ExecutionJob("ex", "", "javascript", "p", None, {}, 5.0, CAP)
    return outcome(report, 0.0, job, 100).limit_hit


@pytest.mark.parametrize("claim", ["heap", "allocation", "python"])
def test_a_claim_of_running_out_of_memory_needs_the_peak_near_the_limit(claim: str) -> None:
    mib = 1024 * 1024
    assert _memory_reading(peak=5 * mib, claim=claim) is None
    assert _memory_reading(peak=59 * mib, claim=claim) is None
    assert _memory_reading(peak=60 * mib, claim=claim) == "memory"
    # The kernel's OOM kill is evidence enough, whatever the peak read afterwards.
    assert _memory_reading(peak=5 * mib, oom_kills=1, claim=claim) == "memory"
    # No reading at all (E2B, no cgroups): the claim is all there is.
    assert _memory_reading(peak=None, claim=claim) == "memory"
