"""The audit trail in DynamoDB: one item per event, a project's events under one partition
in time order; DynamoDB's TTL drops them after the retention period."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from iris_exec.adapters.dynamodb import (
    get_opt_float,
    get_opt_str,
    integer,
    num,
    query_all,
    store_errors,
    text,
)
from iris_exec.domain.models import AuditEvent

if TYPE_CHECKING:
    from iris_exec.adapters.awsapi import DynamoDB
    from iris_exec.adapters.dynamodb import Item

LATEST = "9" * 15


def _sort_key(at: float, event_id: str = "") -> str:
    return f"{int(at * 1000):015d}#{event_id}"


def _record(item: Item) -> AuditEvent:
    bytes_out = item.get("outputBytes")
    return AuditEvent(
        event_id=item["eventId"]["S"],
        project_id=item["projectId"]["S"],
        at=float(item["at"]["N"]),
        kind=item["kind"]["S"],
        actor=item["actor"]["S"],
        sandbox_id=get_opt_str(item, "sandboxId"),
        execution_id=get_opt_str(item, "executionId"),
        duration_ms=get_opt_float(item, "durationMs"),
        outcome=get_opt_str(item, "outcome"),
        output_bytes=int(bytes_out["N"]) if bytes_out is not None else None,
        detail=get_opt_str(item, "detail"),
    )


class DynamoAuditLog:
    def __init__(self, client: DynamoDB, table_name: str, retention_s: float) -> None:
        self._client = client
        self._table = table_name
        self._retention_s = retention_s

    def record(self, event: AuditEvent) -> None:
        item: Item = {
            "projectId": text(event.project_id),
            "sk": text(_sort_key(event.at, event.event_id)),
            "eventId": text(event.event_id),
            "at": num(event.at),
            "kind": text(event.kind),
            "actor": text(event.actor),
            "ttl": integer(int(event.at + self._retention_s)),
        }
        optional: dict[str, Any] = {
            "sandboxId": event.sandbox_id,
            "executionId": event.execution_id,
            "outcome": event.outcome,
            "detail": event.detail,
        }
        for name, value in optional.items():
            if value is not None:
                item[name] = text(str(value))
        if event.duration_ms is not None:
            item["durationMs"] = num(event.duration_ms)
        if event.output_bytes is not None:
            item["outputBytes"] = integer(event.output_bytes)
        with store_errors("recording an audit event"):
            self._client.put_item(TableName=self._table, Item=item)

    def query(
        self, project_id: str, since: float | None, until: float | None, limit: int
    ) -> list[AuditEvent]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "projectId = :p AND sk BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {
                ":p": text(project_id),
                ":lo": text(_sort_key(since or 0.0)),
                ":hi": text(_sort_key(until) + "~" if until is not None else LATEST),
            },
            "ScanIndexForward": False,
            "Limit": limit,
        }
        events: list[AuditEvent] = []
        with store_errors("reading the audit trail"):
            for item in query_all(self._client, request):
                events.append(_record(item))
                if len(events) >= limit:
                    break
        return events

    def purge(self, before: float) -> int:
        return 0  # DynamoDB's TTL removes old events
