"""Time and identifiers, injectable so tests can move the clock."""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import overload

Clock = Callable[[], float]


def system_clock() -> float:
    return time.time()


@overload
def iso(ts: float) -> str: ...
@overload
def iso(ts: float | None) -> str | None: ...
def iso(ts: float | None) -> str | None:
    """Epoch seconds -> '2026-11-26T12:00:00.000Z' (the contract's timestamp format)."""
    if ts is None:
        return None
    return (
        datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{int(ts * 1000) % 1000:03d}Z"
    )


def new_id(prefix: str, nbytes: int = 12) -> str:
    """Random url-safe id with a type prefix, e.g. ``sb_3kq...``."""
    return prefix + secrets.token_urlsafe(nbytes).replace("-", "x").replace("_", "y")


def parse_instant(value: str | float | None, what: str) -> float | None:
    """An ISO 8601 time (with its zone) or epoch milliseconds (JavaScript's Date.now()),
    as epoch seconds; a clear 400 otherwise."""
    from iris_exec.domain.errors import BadRequest

    if value is None:
        return None
    if isinstance(value, bool):
        raise BadRequest(f"{what} must be an ISO 8601 time or epoch milliseconds")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise BadRequest(f"{what} must be a finite number of epoch milliseconds")
        return float(value) / 1000
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(f"{what} must be an ISO 8601 time; got {value!r}") from exc
    if parsed.tzinfo is None:
        raise BadRequest(f"{what} needs a time zone (e.g. 2026-11-26T12:00:00Z)")
    return parsed.timestamp()
