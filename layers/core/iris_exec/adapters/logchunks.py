"""Log lines stored in chunks, in about the bytes that were printed.

A log line is ``[stdout] text`` or ``[stderr] text`` and never holds a newline. Stored one
row per line, a megabyte of bare newlines became a million rows (over 100 MB of SQLite);
stored here, a chunk of up to ``CHUNK_LINES`` lines and about ``CHUNK_BYTES`` bytes is one
text: each line is its tag in one character (``o`` stdout, ``e`` stderr, ``=`` anything
else, kept whole) followed by its text, the lines joined by newlines. A chunk is keyed by
its first line's number, so a reader finds a cursor's line without reading the others."""

from __future__ import annotations

from collections.abc import Iterator

CHUNK_LINES = 4096
CHUNK_BYTES = 64 * 1024
_TAGS = {"[stdout] ": "o", "[stderr] ": "e"}
_PREFIXES = {"o": "[stdout] ", "e": "[stderr] ", "=": ""}


def _pack_line(line: str) -> str:
    tag = _TAGS.get(line[:9])
    return tag + line[9:] if tag is not None else "=" + line


def pack(lines: list[str]) -> str:
    """One chunk's text (``lines`` must not hold newlines)."""
    return "\n".join(_pack_line(line) for line in lines)


def unpack(data: str) -> list[str]:
    return [_PREFIXES[packed[0]] + packed[1:] for packed in data.split("\n")]


def chunks(first: int, lines: list[str]) -> Iterator[tuple[int, list[str]]]:
    """``lines`` (line ``first`` onwards) cut into chunks: (first line's number, lines). The
    cuts depend only on the lines, so a longer retry of the same flush cuts its start alike."""
    start, size = 0, 0
    for i, line in enumerate(lines):
        size += len(line) + 1
        if i - start + 1 >= CHUNK_LINES or size >= CHUNK_BYTES:
            yield first + start, lines[start : i + 1]
            start, size = i + 1, 0
    if start < len(lines):
        yield first + start, lines[start:]
