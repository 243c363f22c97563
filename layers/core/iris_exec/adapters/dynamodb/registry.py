"""The sandbox registry in DynamoDB: one item per sandbox, conditional writes for every
state change (the SQLite adapter mirrors these conditions)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from iris_exec.adapters.awsapi import AwsError
from iris_exec.adapters.dynamodb import (
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
from iris_exec.adapters.dynamodb.tables import SANDBOX_RETENTION_S
from iris_exec.domain.models import GoneReason, Position, SandboxRecord, SandboxStatus

if TYPE_CHECKING:
    from iris_exec.adapters.awsapi import DynamoDB
    from iris_exec.adapters.dynamodb import Item, Value

log = logging.getLogger(__name__)

_RUNNING: Value = {"S": SandboxStatus.RUNNING.value}
_STATUS = {"#status": "status"}


def _item(record: SandboxRecord) -> Item:
    item: Item = {
        "sandboxId": text(record.sandbox_id),
        "projectId": text(record.project_id),
        "provider": text(record.provider),
        "providerRef": text(record.provider_ref),
        "status": text(record.status.value),
        "createdAt": num(record.created_at),
        "lastUsedAt": num(record.last_used_at),
        "expiresAt": num(record.expires_at),
        "lifetimeDeadline": num(record.lifetime_deadline),
        "executions": integer(record.executions),
        "ttl": integer(int(record.lifetime_deadline) + SANDBOX_RETENTION_S),
    }
    if record.closed_at is not None:
        item["closedAt"] = num(record.closed_at)
    if record.closed_reason is not None:
        item["closedReason"] = text(record.closed_reason.value)
    if record.detail is not None:
        item["detail"] = text(record.detail)
    if record.lease_id is not None:
        item["leaseId"] = text(record.lease_id)
    if record.lease_until is not None:
        item["leaseUntil"] = num(record.lease_until)
    if record.tool_channel is not None:
        item["toolChannel"] = text(record.tool_channel)
    return item


def _record(item: Item) -> SandboxRecord:
    reason = get_opt_str(item, "closedReason")
    return SandboxRecord(
        sandbox_id=item["sandboxId"]["S"],
        project_id=item["projectId"]["S"],
        provider=item["provider"]["S"],
        provider_ref=item["providerRef"]["S"],
        status=SandboxStatus(item["status"]["S"]),
        created_at=get_float(item, "createdAt"),
        last_used_at=get_float(item, "lastUsedAt"),
        expires_at=get_float(item, "expiresAt"),
        lifetime_deadline=get_float(item, "lifetimeDeadline"),
        closed_at=get_opt_float(item, "closedAt"),
        closed_reason=GoneReason(reason) if reason is not None else None,
        detail=get_opt_str(item, "detail"),
        lease_id=get_opt_str(item, "leaseId"),
        lease_until=get_opt_float(item, "leaseUntil"),
        executions=int(item["executions"]["N"]) if "executions" in item else 0,
        tool_channel=get_opt_str(item, "toolChannel"),
    )


class DynamoSandboxRegistry:
    """``SandboxRegistry`` over one DynamoDB table (see ``tables.TABLES["sandboxes"]``).

    ``clock`` is the wall clock DynamoDB's TTL runs on: an item past its ``ttl`` is treated
    as deleted even while TTL (which deletes lazily, up to days late) has not removed it."""

    def __init__(
        self,
        client: DynamoDB,
        table_name: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._table = table_name
        self._clock = clock

    def create(self, record: SandboxRecord) -> None:
        put_new(
            self._client, self._table, _item(record), "sandboxId", "registering a sandbox",
            record.sandbox_id,
        )  # fmt: skip

    def _get_item(self, sandbox_id: str) -> Item | None:
        with store_errors("reading a sandbox"):
            # Strongly consistent: a lease or a close just written must be seen.
            answer = self._client.get_item(
                TableName=self._table, Key={"sandboxId": text(sandbox_id)}, ConsistentRead=True
            )
        return answer.get("Item")

    def get(self, project_id: str, sandbox_id: str) -> SandboxRecord | None:
        item = self._get_item(sandbox_id)
        if item is None or item["projectId"]["S"] != project_id:
            return None
        ttl = item.get("ttl")
        if ttl is not None and float(ttl["N"]) <= self._clock():
            return None
        return _record(item)

    def list_live(self, project_id: str, now: float) -> list[SandboxRecord]:
        with store_errors("listing live sandboxes"):
            items = list(
                query_all(
                    self._client,
                    {
                        "TableName": self._table,
                        "IndexName": "byProject",
                        "KeyConditionExpression": "projectId = :p",
                        # Filter on expiresAt, not on TTL's deletion: an expired item may
                        # linger for days before TTL removes it.
                        "FilterExpression": "#status = :running"
                        " AND (expiresAt > :now OR leaseUntil > :now)",
                        "ExpressionAttributeNames": _STATUS,
                        "ExpressionAttributeValues": {
                            ":p": text(project_id),
                            ":running": _RUNNING,
                            ":now": num(now),
                        },
                        "ScanIndexForward": True,
                    },
                )
            )
        return [_record(item) for item in items]

    def list_recent(
        self, project_id: str, status: str | None, limit: int, before: Position | None
    ) -> tuple[list[SandboxRecord], Position | None]:
        # Items past their TTL count as deleted (TTL removes them lazily).
        condition = "#ttl > :now"
        names = {"#ttl": "ttl"}
        values: dict[str, Value] = {":p": text(project_id), ":now": num(self._clock())}
        if status is not None:
            condition += " AND #status = :status"
            names["#status"] = "status"
            values[":status"] = text(status)
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "byProjectCreated",
            "KeyConditionExpression": "projectId = :p",
            "FilterExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
        }
        if before is not None:
            request["ExclusiveStartKey"] = {
                "projectId": text(project_id),
                "createdAt": num(before.created_at),
                "sandboxId": text(before.item_id),
            }
        with store_errors("listing sandboxes"):
            items, last = query_page(self._client, request, limit)
        following = Position(get_float(last, "createdAt"), last["sandboxId"]["S"]) if last else None
        return [_record(item) for item in items], following

    def list_due(self, now: float, limit: int) -> list[SandboxRecord]:
        due: list[SandboxRecord] = []
        if limit <= 0:
            return due
        with store_errors("listing due sandboxes"):
            # Limit would cap the items read before the filter, so page until we have enough.
            for item in query_all(
                self._client,
                {
                    "TableName": self._table,
                    "IndexName": "byStatus",
                    "KeyConditionExpression": "#status = :running AND expiresAt <= :now",
                    "FilterExpression": "attribute_not_exists(leaseId) OR leaseUntil <= :now",
                    "ExpressionAttributeNames": _STATUS,
                    "ExpressionAttributeValues": {":running": _RUNNING, ":now": num(now)},
                    "ScanIndexForward": True,
                },
            ):
                due.append(_record(item))
                if len(due) >= limit:
                    break
        return due

    def list_running(self, provider: str) -> list[SandboxRecord]:
        with store_errors("listing running sandboxes"):
            items = list(
                query_all(
                    self._client,
                    {
                        "TableName": self._table,
                        "IndexName": "byStatus",
                        "KeyConditionExpression": "#status = :running",
                        "FilterExpression": "provider = :provider",
                        "ExpressionAttributeNames": _STATUS,
                        "ExpressionAttributeValues": {
                            ":running": _RUNNING,
                            ":provider": text(provider),
                        },
                    },
                )
            )
        return [_record(item) for item in items]

    def acquire_lease(
        self, project_id: str, sandbox_id: str, lease_id: str, until: float, now: float
    ) -> bool:
        with store_errors("taking a sandbox lease"):
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key={"sandboxId": text(sandbox_id)},
                    UpdateExpression="SET leaseId = :lease, leaseUntil = :until",
                    ConditionExpression="projectId = :p AND #status = :running"
                    " AND (attribute_not_exists(leaseId) OR leaseUntil <= :now)",
                    ExpressionAttributeNames=_STATUS,
                    ExpressionAttributeValues={
                        ":lease": text(lease_id),
                        ":until": num(until),
                        ":p": text(project_id),
                        ":running": _RUNNING,
                        ":now": num(now),
                    },
                )
            except AwsError as exc:
                if is_condition_failure(exc):
                    return False
                raise
        return True

    def release_lease(
        self,
        project_id: str,
        sandbox_id: str,
        lease_id: str,
        last_used_at: float,
        expires_at: float,
    ) -> None:
        # UpdateExpression has no min(): read the lifetime deadline first. It never changes,
        # so the read cannot go stale; the lease condition below guards everything else.
        item = self._get_item(sandbox_id)
        if item is None or item["projectId"]["S"] != project_id:
            return
        if get_opt_str(item, "leaseId") != lease_id:
            return  # not ours (any more): no need to try the write
        capped = min(expires_at, get_float(item, "lifetimeDeadline"))
        with store_errors("releasing a sandbox lease"):
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key={"sandboxId": text(sandbox_id)},
                    UpdateExpression="SET lastUsedAt = :used, expiresAt = :expires"
                    " REMOVE leaseId, leaseUntil ADD executions :one",
                    ConditionExpression="projectId = :p AND leaseId = :lease",
                    ExpressionAttributeValues={
                        ":used": num(last_used_at),
                        ":expires": num(capped),
                        ":one": integer(1),
                        ":p": text(project_id),
                        ":lease": text(lease_id),
                    },
                )
            except AwsError as exc:
                if not is_condition_failure(exc):
                    raise
                # Not ours any more (expired and taken over, or the sandbox was closed).
                log.debug("lease %s on %s was no longer held", lease_id, sandbox_id)

    def mark_gone(
        self,
        project_id: str,
        sandbox_id: str,
        reason: GoneReason,
        at: float,
        detail: str | None = None,
        *,
        only_if_idle: bool = False,
    ) -> bool:
        values: dict[str, Value] = {
            ":status": text(reason.status.value),
            ":reason": text(reason.value),
            ":at": num(at),
            ":p": text(project_id),
            ":running": _RUNNING,
        }
        sets = "SET #status = :status, closedReason = :reason, closedAt = :at"
        removes = "REMOVE leaseId, leaseUntil"
        if detail is None:
            removes += ", detail"
        else:
            sets += ", detail = :detail"
            values[":detail"] = text(detail)
        condition = "projectId = :p AND #status = :running"
        if only_if_idle:
            condition += " AND (attribute_not_exists(leaseId) OR leaseUntil <= :at)"
        with store_errors("closing a sandbox"):
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key={"sandboxId": text(sandbox_id)},
                    UpdateExpression=f"{sets} {removes}",
                    ConditionExpression=condition,
                    ExpressionAttributeNames=_STATUS,
                    ExpressionAttributeValues=values,
                )
            except AwsError as exc:
                if is_condition_failure(exc):
                    return False
                raise
        return True
