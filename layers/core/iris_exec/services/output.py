"""The response's `output` and `logs`, built the same way whatever provider ran the code."""

from __future__ import annotations

import json
import re
from typing import Any

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


# -- answers that fit a response limit ------------------------------------------------------

_PLAIN = re.compile(r"^[\x20\x21\x23-\x5b\x5d-\x7e]*$")  # ASCII that JSON never escapes


def wire_size(body: object) -> int:
    """Bytes of ``body`` as Lambda carries it: the JSON text (as the API serializes it) is
    itself a string inside the JSON of the proxy response, so it is escaped twice."""
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return len(json.dumps(text))


def _line_size(line: str) -> int:
    """What one entry of a list of strings adds to ``wire_size`` (with its comma)."""
    if _PLAIN.match(line):
        return len(line) + 5  # \"...\",
    return len(json.dumps(json.dumps(line, ensure_ascii=False))) - 1


def _drop_lines(lines: list[str], excess: int) -> int:
    """How many lines to keep so that at least ``excess`` bytes go."""
    kept, freed = len(lines), 0
    while kept and freed < excess:
        kept -= 1
        freed += _line_size(lines[kept])
    return kept


def fit_answer(body: dict[str, Any], limit: int) -> dict[str, Any]:
    """``body`` made to fit ``limit`` bytes (``wire_size``). Log lines go first, as they
    repeat the output: the answer's own (``result.metadata.logsTruncated``), then the end
    of a page of them (its ``cursor`` then points at the first line left out, so the next
    poll reads it; one line at least stays, so polling always moves on); then the end of
    the output (``outputTruncated``); a single line longer than everything keeps only its
    beginning."""
    size = wire_size(body)
    if size <= limit:
        return body
    body = dict(body)
    result = dict(body["result"]) if isinstance(body.get("result"), dict) else None
    if result is not None:
        body["result"] = result
        logs = result.get("logs")
        if isinstance(logs, list) and logs:
            # (and room for the flag that says so)
            result["logs"] = logs[: _drop_lines(logs, size - limit + FLAG_BYTES)]
            result["metadata"] = {**(result.get("metadata") or {}), "logsTruncated": True}
            size = wire_size(body)
    if size > limit:
        size = _fit_page(body, size, limit, keep=1)
    output = result.get("output") if result is not None else None
    if size > limit and result is not None and isinstance(output, str):
        result["metadata"] = {**(result.get("metadata") or {}), "outputTruncated": True}
        low, high = 0, len(output)  # the longest beginning that fits
        while low < high:
            middle = (low + high + 1) // 2
            result["output"] = output[:middle]
            if wire_size(body) <= limit:
                low = middle
            else:
                high = middle - 1
        result["output"] = output[:low]
        size = wire_size(body)
    page = body.get("logs")
    if size > limit and isinstance(page, list) and len(page) == 1:
        # One line longer than the limit (1 MiB of control characters): its beginning,
        # so that the cursor still moves past it.
        line: str = page[0]
        low, high = 0, len(line)
        while low < high:
            middle = (low + high + 1) // 2
            body["logs"] = [line[:middle]]
            if wire_size(body) <= limit:
                low = middle
            else:
                high = middle - 1
        body["logs"] = [line[:low]]
    return body


FLAG_BYTES = 64


def _fit_page(body: dict[str, Any], size: int, limit: int, keep: int) -> int:
    page, cursor = body.get("logs"), body.get("cursor")
    if not isinstance(page, list) or not page or not isinstance(cursor, int):
        return size
    kept = max(keep, _drop_lines(page, size - limit))
    body["logs"] = page[:kept]
    body["cursor"] = cursor - (len(page) - kept)
    return wire_size(body)
