"""Asynchronous executions in DynamoDB, kept whole whatever their size.

One partition per execution (``executionId``), sorted by ``sk``:

- ``meta``: the record. While the execution is unfinished it carries ``open = "1"``, which
  puts it in the sparse ``byOpen`` index ordered by ``aliveUntil`` (the sweeper's query).
- ``log#<first line, 9 digits>#<part, 3 digits>``: one chunk of log lines (packed as in
  ``adapters/logchunks.py``, in about the bytes printed; older items: a JSON array),
  split into parts of at most ``PART_BYTES`` (an item holds 400 KB; one line alone may be
  the whole 1 MiB of output). Each part says how many there are (``parts``): a reader
  that comes between two part writes leaves the chunk for its next read. A reader starts
  at the chunk holding its cursor's next line, not at the first.
- ``result#<part, 4 digits>``: the final answer as JSON, in parts the same way; ``meta``
  says how many (``resultParts``) once the execution has ended.

Every item expires by DynamoDB's TTL ``retention_s`` after the execution was created."""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING, Any

from iris_exec.adapters import logchunks
from iris_exec.adapters.awsapi import AwsError
from iris_exec.adapters.dynamodb import (
    blob,
    get_blob,
    get_float,
    get_opt_float,
    get_opt_str,
    integer,
    is_condition_failure,
    num,
    put_new,
    query_all,
    query_page,
    store_errors,
    text,
)
from iris_exec.domain.models import (
    UNFINISHED_STATUSES,
    ExecutionEnd,
    ExecutionRecord,
    Position,
)

if TYPE_CHECKING:
    from iris_exec.adapters.awsapi import DynamoDB
    from iris_exec.adapters.dynamodb import Item, Value

META = "meta"
PART_BYTES = 300_000
OPEN = "1"
QUEUED = frozenset({"queued"})


def _parts(data: bytes) -> list[bytes]:
    return [data[i : i + PART_BYTES] for i in range(0, len(data), PART_BYTES)] or [b""]


def _unpack(data: bytes) -> list[str]:
    """A log item's lines: a packed chunk, or a JSON array (items written before chunks)."""
    if data.startswith(b"["):
        lines: list[str] = json.loads(data)
        return lines
    return logchunks.unpack(data.decode())


def _record(item: Item, result: dict[str, Any] | None) -> ExecutionRecord:
    return ExecutionRecord(
        execution_id=item["executionId"]["S"],
        project_id=item["projectId"]["S"],
        sandbox_id=item["sandboxId"]["S"],
        status=item["status"]["S"],
        request=json.loads(item["request"]["S"]),
        lease_id=item["leaseId"]["S"],
        sandbox_created=item["sandboxCreated"]["BOOL"],
        created_at=get_float(item, "createdAt"),
        alive_until=get_float(item, "aliveUntil"),
        actor=item["actor"]["S"],
        started_at=get_opt_float(item, "startedAt"),
        finished_at=get_opt_float(item, "finishedAt"),
        result=result,
        reason=get_opt_str(item, "reason"),
        log_lines=int(item["logLines"]["N"]),
        execution_ms=get_opt_float(item, "executionTime"),
    )


class DynamoExecutionStore:
    def __init__(self, client: DynamoDB, table_name: str, retention_s: float) -> None:
        self._client = client
        self._table = table_name
        self._retention_s = retention_s
        #: (project, execution) -> createdAt. Neither ever changes, so a worker flushing
        #: log lines every second reads the record once, not once per flush.
        self._created: dict[tuple[str, str], float] = {}

    def _created_at(self, project_id: str, execution_id: str) -> float | None:
        """When the execution was created, if it exists and is ``project_id``'s."""
        key = (project_id, execution_id)
        if key not in self._created:
            meta = self._meta(execution_id)
            if meta is None or meta["projectId"]["S"] != project_id:
                return None
            if len(self._created) >= 1024:
                self._created.clear()
            self._created[key] = get_float(meta, "createdAt")
        return self._created[key]

    def _ttl(self, created_at: float) -> Value:
        return integer(int(created_at + self._retention_s))

    def create(self, record: ExecutionRecord) -> None:
        item: Item = {
            "executionId": text(record.execution_id),
            "sk": text(META),
            "projectId": text(record.project_id),
            "sandboxId": text(record.sandbox_id),
            "status": text(record.status),
            "request": text(json.dumps(record.request)),
            "leaseId": text(record.lease_id),
            "sandboxCreated": {"BOOL": record.sandbox_created},
            "createdAt": num(record.created_at),
            "aliveUntil": num(record.alive_until),
            "actor": text(record.actor),
            "logLines": integer(record.log_lines),
            "open": text(OPEN),
            "ttl": self._ttl(record.created_at),
        }
        put_new(
            self._client, self._table, item, "executionId", "recording an execution",
            record.execution_id,
        )  # fmt: skip
        # Its log lines and answer follow soon (at once, for a synchronous execution).
        if len(self._created) >= 1024:
            self._created.clear()
        self._created[(record.project_id, record.execution_id)] = record.created_at

    def _meta(self, execution_id: str) -> Item | None:
        with store_errors("reading an execution"):
            found = self._client.get_item(
                TableName=self._table,
                Key={"executionId": text(execution_id), "sk": text(META)},
                ConsistentRead=True,
            )
        return found.get("Item")

    def get(self, project_id: str, execution_id: str) -> ExecutionRecord | None:
        item = self._meta(execution_id)
        if item is None or item["projectId"]["S"] != project_id:
            return None
        result = None
        parts = item.get("resultParts")
        if parts is not None:
            result = json.loads(self._read_parts(execution_id, "result#", int(parts["N"])))
        return _record(item, result)

    def _read_parts(self, execution_id: str, prefix: str, count: int) -> bytes:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "executionId = :e AND begins_with(sk, :p)",
            "ExpressionAttributeValues": {":e": text(execution_id), ":p": text(prefix)},
            "ConsistentRead": True,
        }
        with store_errors("reading an execution's result"):
            chunks = [get_blob(item, "data") for item in query_all(self._client, request)]
        if len(chunks) != count:
            raise RuntimeError(f"execution {execution_id}: {len(chunks)} of {count} result parts")
        return b"".join(chunks)

    def _change(
        self,
        project_id: str,
        execution_id: str,
        expect: frozenset[str],
        sets: dict[str, Value],
        removes: tuple[str, ...] = (),
        alive_before: float | None = None,
        mine: str | None = None,
    ) -> bool:
        """SET ``sets`` (attribute -> value) and REMOVE ``removes`` if the status is one of
        ``expect`` (and, given ``alive_before``, ``aliveUntil`` is before it). ``mine``: an
        attribute of ``sets`` holding a token of this call: when the condition fails on an
        item that already holds it, this call's own write was done by an attempt whose
        answer was lost (the client sent it again), and the change is this call's."""
        names = {f"#{name}": name for name in (*sets, *removes, "status")}
        values: dict[str, Value] = {f":{name}": value for name, value in sets.items()}
        values[":project"] = text(project_id)
        for i, status in enumerate(sorted(expect)):
            values[f":expect{i}"] = text(status)
        expected = ", ".join(f":expect{i}" for i in range(len(expect)))
        condition = f"projectId = :project AND #status IN ({expected})"
        if alive_before is not None:
            condition += " AND aliveUntil < :aliveBefore"
            values[":aliveBefore"] = num(alive_before)
        expression = "SET " + ", ".join(f"#{name} = :{name}" for name in sets)
        if removes:
            expression += " REMOVE " + ", ".join(f"#{name}" for name in removes)
        try:
            with store_errors("updating an execution"):
                self._client.update_item(
                    TableName=self._table,
                    Key={"executionId": text(execution_id), "sk": text(META)},
                    UpdateExpression=expression,
                    ConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                    **({"ReturnValuesOnConditionCheckFailure": "ALL_OLD"} if mine else {}),
                )
        except AwsError as exc:
            if is_condition_failure(exc):
                held = (exc.data or {}).get("Item") or {}
                return mine is not None and held.get(mine) == sets[mine]
            raise
        return True

    def start(
        self, project_id: str, execution_id: str, *, started_at: float, alive_until: float
    ) -> bool:
        sets = {"status": text("running"), "startedAt": num(started_at)}
        sets["aliveUntil"] = num(alive_until)
        # The worker that took it: another delivery of the event has another token.
        sets["startToken"] = text(secrets.token_hex(16))
        return self._change(project_id, execution_id, QUEUED, sets, mine="startToken")

    def beat(self, project_id: str, execution_id: str, *, alive_until: float) -> bool:
        sets = {"aliveUntil": num(alive_until)}
        return self._change(project_id, execution_id, UNFINISHED_STATUSES, sets)

    def finish(
        self,
        project_id: str,
        execution_id: str,
        end: ExecutionEnd,
        *,
        alive_before: float | None = None,
    ) -> bool:
        sets = {"status": text(end.status), "finishedAt": num(end.finished_at)}
        # Finished: out of the sweeper's index.
        removes = ["open"]
        if end.reason is None:
            removes.append("reason")
        else:
            sets["reason"] = text(end.reason)
        if end.log_lines is not None:
            sets["logLines"] = integer(end.log_lines)
        if end.result is None:
            removes.append("resultParts")
        else:
            count = self._put_parts(execution_id, project_id, "result#{part:04d}", end.result)
            sets["resultParts"] = integer(count)
            execution_ms = end.result.get("executionTime")
            if isinstance(execution_ms, int | float):
                # Kept on the record too: lists show it without reading the parts.
                sets["executionTime"] = num(execution_ms)
        return self._change(
            project_id, execution_id, UNFINISHED_STATUSES, sets, tuple(removes), alive_before
        )

    def _put_parts(self, execution_id: str, project_id: str, sk: str, value: Any) -> int:
        """``value`` as JSON, in items of at most PART_BYTES keyed ``sk.format(part=i)``.
        Writing the same value again writes the same items (retries are harmless)."""
        return self._put_bytes(
            execution_id, project_id, sk, json.dumps(value, separators=(",", ":")).encode()
        )

    def _put_bytes(self, execution_id: str, project_id: str, sk: str, data: bytes) -> int:
        created_at = self._created_at(project_id, execution_id)
        if created_at is None:
            return 0
        parts = _parts(data)
        with store_errors("storing an execution's output"):
            for i, part in enumerate(parts):
                self._client.put_item(
                    TableName=self._table,
                    Item={
                        "executionId": text(execution_id),
                        "sk": text(sk.format(part=i)),
                        "projectId": text(project_id),
                        "data": blob(part),
                        "parts": integer(len(parts)),
                        "ttl": self._ttl(created_at),
                    },
                )
        return len(parts)

    def append_logs(self, project_id: str, execution_id: str, first: int, lines: list[str]) -> None:
        # One chunk per item (parts only for a line longer than an item holds), in about the
        # bytes printed: see adapters/logchunks.py.
        for number, chunk in logchunks.chunks(first + 1, lines):
            self._put_bytes(
                execution_id,
                project_id,
                f"log#{number:09d}#{{part:03d}}",
                logchunks.pack(chunk).encode(),
            )

    def logs(self, project_id: str, execution_id: str, after: int, limit: int) -> list[str]:
        values = {":e": text(execution_id)}
        # The chunk holding line after + 1 is the last one starting at or before it.
        holder: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "executionId = :e AND sk BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {
                **values,
                ":lo": text("log#"),
                ":hi": text(f"log#{after + 1:09d}#999"),
            },
            "ScanIndexForward": False,
            "Limit": 1,
            "ConsistentRead": True,
        }
        with store_errors("reading an execution's log lines"):
            found = self._client.query(**holder)["Items"]
        start = found[0]["sk"]["S"].split("#")[1] if found else "000000000"
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "executionId = :e AND sk BETWEEN :lo AND :hi",
            "FilterExpression": "projectId = :project",
            "ExpressionAttributeValues": {
                **values,
                ":project": text(project_id),
                ":lo": text(f"log#{start}#"),
                ":hi": text("log#~"),
            },
            "ConsistentRead": True,
        }
        lines: list[str] = []
        batch: list[bytes] = []
        with store_errors("reading an execution's log lines"):
            for item in query_all(self._client, request):
                _, first_text, part = item["sk"]["S"].split("#")
                first = int(first_text)
                if int(part) == 0:
                    batch = []
                batch.append(get_blob(item, "data"))
                if len(batch) < int(item["parts"]["N"]):
                    continue
                if first > after + len(lines) + 1:
                    # A gap (a writer between two items): read on from here next time, so
                    # that the cursor never skips a line.
                    return lines
                skip = after + len(lines) + 1 - first
                lines += _unpack(b"".join(batch))[skip : skip + limit - len(lines)]
                batch = []
                if len(lines) >= limit:
                    return lines
        return lines

    def list_recent(
        self,
        project_id: str,
        *,
        sandbox_id: str | None,
        status: str | None,
        limit: int,
        before: Position | None,
    ) -> tuple[list[ExecutionRecord], Position | None]:
        # Only ``meta`` items carry createdAt, so only they are in the byProject index.
        filters: list[str] = []
        names: dict[str, str] = {}
        values: dict[str, Value] = {":p": text(project_id)}
        if sandbox_id is not None:
            filters.append("sandboxId = :sandbox")
            values[":sandbox"] = text(sandbox_id)
        if status is not None:
            filters.append("#status = :status")
            names["#status"] = "status"
            values[":status"] = text(status)
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "byProject",
            "KeyConditionExpression": "projectId = :p",
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
        }
        if filters:
            request["FilterExpression"] = " AND ".join(filters)
        if names:
            request["ExpressionAttributeNames"] = names
        if before is not None:
            request["ExclusiveStartKey"] = {
                "projectId": text(project_id),
                "createdAt": num(before.created_at),
                "executionId": text(before.item_id),
                "sk": text(META),
            }
        with store_errors("listing executions"):
            items, last = query_page(self._client, request, limit)
        following = (
            Position(get_float(last, "createdAt"), last["executionId"]["S"]) if last else None
        )
        return [_record(item, None) for item in items], following

    def list_stale(self, now: float, limit: int) -> list[ExecutionRecord]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "byOpen",
            "KeyConditionExpression": "#open = :open AND aliveUntil < :now",
            "ExpressionAttributeNames": {"#open": "open"},
            "ExpressionAttributeValues": {":open": text(OPEN), ":now": num(min(now, 1e15))},
        }
        found: list[ExecutionRecord] = []
        with store_errors("listing stale executions"):
            for item in query_all(self._client, request):
                found.append(_record(item, None))
                if len(found) >= limit:
                    break
        return found

    def purge(self, before: float) -> int:
        return 0  # DynamoDB's TTL removes old executions
