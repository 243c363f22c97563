"""The response's `output` and `logs`, built the same way whatever provider ran the code."""

from __future__ import annotations

import json
import re

from iris_exec.domain.models import CodeError, OutputChunk, RunOutcome

NO_OUTPUT = "(no output)"
#: A printed line that starts like a section header (after any backslashes) gets one more
#: backslash, so that printed text can never pose as `=== Results ===` or another section.
_HEADER_LIKE = re.compile(r"^(\\*=== )", re.MULTILINE)
#: What of an untrusted label (an error's name) a log line or the audit trail keeps.
LABEL_CHARS = 100


def quote_headers(text: str) -> str:
    return _HEADER_LIKE.sub(r"\\\1", text)


def label(text: str) -> str:
    """An untrusted string made safe for one log line: at most LABEL_CHARS characters, as
    a JSON string (quotes, backslashes, newlines and control characters escaped)."""
    cut = text[:LABEL_CHARS] + ("..." if len(text) > LABEL_CHARS else "")
    return json.dumps(cut)


def sections(outcome: RunOutcome) -> str:
    """`=== Results ===`, `=== Output ===`, `=== Errors ===`, each only when non-empty."""
    stdout = "".join(c.text for c in outcome.output if c.stream == "stdout").rstrip("\n")
    stderr = "".join(c.text for c in outcome.output if c.stream == "stderr").rstrip("\n")
    parts: list[str] = []
    if outcome.value_json is not None:
        parts.append("=== Results ===\n" + outcome.value_json)
    if stdout:
        parts.append("=== Output ===\n" + quote_headers(stdout))
    errors = [stderr] if stderr else []
    if outcome.error is not None:
        errors.append(describe(outcome.error))
    if errors:
        parts.append("=== Errors ===\n" + quote_headers("\n".join(errors)))
    return "\n\n".join(parts) or NO_OUTPUT


def describe(error: CodeError) -> str:
    return error.stack or f"{error.name}: {error.message}"


def log_lines(chunks: list[OutputChunk]) -> list[str]:
    """One entry per line, tagged with its stream, in the order the program wrote them."""
    lines: list[str] = []
    for chunk in chunks:
        text = chunk.text[:-1] if chunk.text.endswith("\n") else chunk.text
        for line in text.split("\n"):
            lines.append(f"[{chunk.stream}] {line.removesuffix(chr(13))}")
    return lines


class LiveLines:
    """Output turned into log lines as it arrives: the same lines, in the same order, as
    ``log_lines`` gives for the whole output at the end (a line is complete at its newline,
    or when the other stream speaks, or at the end)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._stream: str | None = None
        self._partial = ""

    def add(self, chunk: OutputChunk) -> None:
        if chunk.stream != self._stream:
            self._end_chunk()
            self._stream = chunk.stream
        *complete, self._partial = (self._partial + chunk.text).split("\n")
        for line in complete:
            self._emit(line)

    def close(self) -> None:
        self._end_chunk()

    def _end_chunk(self) -> None:
        if self._partial:
            self._emit(self._partial)
        self._partial = ""

    def _emit(self, line: str) -> None:
        self.lines.append(f"[{self._stream}] {line.removesuffix(chr(13))}")
