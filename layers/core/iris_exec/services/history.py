"""A project's sandboxes and executions, newest first, a page at a time (what the console
lists). Pages are chained by an opaque cursor: the last item's creation time and id."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re

from iris_exec.domain.errors import BadRequest
from iris_exec.domain.models import (
    FINAL_STATUSES,
    ExecutionRecord,
    Position,
    Principal,
    SandboxStatus,
)
from iris_exec.domain.ports import ExecutionStore, SandboxRegistry
from iris_exec.services.answers import (
    ExecutionPage,
    ExecutionSummary,
    SandboxPage,
    SandboxSummary,
)
from iris_exec.services.clock import Clock, iso
from iris_exec.services.sandboxes import summary_fields

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
SANDBOX_STATUSES = frozenset(s.value for s in SandboxStatus)
EXECUTION_STATUSES = frozenset({"queued", "running", "succeeded", "failed", "timed_out"})
_ID = re.compile(r"^[A-Za-z0-9_]{1,80}$")
_BAD_CURSOR = "cursor must be a nextCursor value this API returned"


def encode_cursor(position: Position | None) -> str | None:
    if position is None:
        return None
    raw = json.dumps([position.created_at, position.item_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Position | None:
    """The position a cursor stands for; 400 for anything this API did not hand out."""
    if cursor is None:
        return None
    if not cursor or len(cursor) > 200 or not re.fullmatch(r"[A-Za-z0-9_-]+", cursor):
        raise BadRequest(_BAD_CURSOR)
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(_BAD_CURSOR) from exc
    if (
        not isinstance(value, list)
        or len(value) != 2
        or isinstance(value[0], bool)
        or not isinstance(value[0], int | float)
        or not math.isfinite(value[0])
        or not isinstance(value[1], str)
        or not _ID.match(value[1])
    ):
        raise BadRequest(_BAD_CURSOR)
    return Position(float(value[0]), value[1])


def parse_limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(text)


def parse_status(text: str | None, allowed: frozenset[str]) -> str | None:
    if text is None:
        return None
    if text not in allowed:
        raise BadRequest(f"status must be one of {', '.join(sorted(allowed))}")
    return text


class History:
    def __init__(self, registry: SandboxRegistry, store: ExecutionStore, clock: Clock) -> None:
        self._registry = registry
        self._store = store
        self._clock = clock

    def sandboxes(
        self, principal: Principal, status: str | None, limit: int, cursor: str | None
    ) -> SandboxPage:
        records, following = self._registry.list_recent(
            principal.project_id, status, limit, decode_cursor(cursor)
        )
        now = self._clock()
        # `active` from the registry alone (no provider call per row); a running sandbox
        # past its deadline that the reaper has not closed yet is not active.
        return SandboxPage(
            sandboxes=[
                SandboxSummary(**summary_fields(r, now, active=r.is_live(now))) for r in records
            ],
            next_cursor=encode_cursor(following),
            timestamp=iso(now),
        )

    def executions(
        self,
        principal: Principal,
        sandbox_id: str | None,
        status: str | None,
        limit: int,
        cursor: str | None,
    ) -> ExecutionPage:
        records, following = self._store.list_recent(
            principal.project_id,
            sandbox_id=sandbox_id,
            status=status,
            limit=limit,
            before=decode_cursor(cursor),
        )
        return ExecutionPage(
            executions=[self._execution(r) for r in records],
            next_cursor=encode_cursor(following),
            timestamp=iso(self._clock()),
        )

    @staticmethod
    def _execution(record: ExecutionRecord) -> ExecutionSummary:
        done = record.status in FINAL_STATUSES
        return ExecutionSummary(
            execution_id=record.execution_id,
            sandbox_id=record.sandbox_id,
            status=record.status,
            async_=not record.request.get("sync", False),
            language=record.request.get("language"),
            session_id=record.request.get("sessionId"),
            created_at=iso(record.created_at),
            finished_at=iso(record.finished_at),
            execution_time=round(record.execution_ms) if record.execution_ms is not None else None,
            success=record.status == "succeeded" if done else None,
        )
