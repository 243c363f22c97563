"""The DynamoDB tables, as data: CreateTable arguments (without ``TableName``) keyed by
logical name. The SAM template declares the same key schemas and indexes; change both
together."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from iris_exec.adapters.awsapi import AwsError

if TYPE_CHECKING:
    from iris_exec.adapters.awsapi import DynamoDB

log = logging.getLogger(__name__)

#: Records of gone sandboxes stay this long after their lifetime deadline (for 410 answers).
SANDBOX_RETENTION_S = 7 * 24 * 3600


def _attributes(**types: str) -> list[dict[str, str]]:
    return [{"AttributeName": name, "AttributeType": kind} for name, kind in types.items()]


def _key(hash_key: str, range_key: str | None = None) -> list[dict[str, str]]:
    schema = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    if range_key is not None:
        schema.append({"AttributeName": range_key, "KeyType": "RANGE"})
    return schema


def _index(name: str, hash_key: str, range_key: str | None = None) -> dict[str, Any]:
    """A global secondary index that projects whole items."""
    return {
        "IndexName": name,
        "KeySchema": _key(hash_key, range_key),
        "Projection": {"ProjectionType": "ALL"},
    }


def _table(
    attributes: dict[str, str], key: list[dict[str, str]], *indexes: dict[str, Any]
) -> dict[str, Any]:
    table: dict[str, Any] = {"AttributeDefinitions": _attributes(**attributes), "KeySchema": key}
    if indexes:
        table["GlobalSecondaryIndexes"] = list(indexes)
    return table | {"BillingMode": "PAY_PER_REQUEST"}


TABLES: dict[str, dict[str, Any]] = {
    "sandboxes": _table(
        {
            "sandboxId": "S",
            "projectId": "S",
            "lastUsedAt": "N",
            "status": "S",
            "expiresAt": "N",
            "createdAt": "N",
        },
        _key("sandboxId"),
        # list_live: a project's sandboxes, least recently used first.
        _index("byProject", "projectId", "lastUsedAt"),
        # list_recent: a project's sandboxes, newest first (the console's list).
        _index("byProjectCreated", "projectId", "createdAt"),
        # list_due and list_running: running sandboxes, earliest deadline first.
        _index("byStatus", "status", "expiresAt"),
    ),
    # revoke: keys are revoked by id, found by hash.
    "keys": _table({"keyHash": "S", "keyId": "S"}, _key("keyHash"), _index("byKeyId", "keyId")),
    "rate": _table({"subject": "S", "windowStart": "N"}, _key("subject", "windowStart")),
    # sk = "<epoch ms, 15 digits>#<event id>": a project's trail in time order.
    "audit": _table({"projectId": "S", "sk": "S"}, _key("projectId", "sk")),
    "executions": _table(
        {
            "executionId": "S",
            "sk": "S",
            "open": "S",
            "aliveUntil": "N",
            "projectId": "S",
            "createdAt": "N",
        },
        # sk = "meta" | "log#<line>#<part>" | "result#<part>" (adapters/dynamodb/executions.py)
        _key("executionId", "sk"),
        # list_stale: unfinished executions (sparse: only they have `open`).
        _index("byOpen", "open", "aliveUntil"),
        # list_recent: a project's executions, newest first (sparse: only the `meta` items
        # have createdAt; log and result parts stay out).
        _index("byProject", "projectId", "createdAt"),
    ),
    # Powertools idempotency's own schema (DynamoDBPersistenceLayer defaults).
    "idempotency": _table({"id": "S"}, _key("id")),
}

#: The attribute DynamoDB's TTL deletes by (epoch seconds), per table. TTL is not part of
#: CreateTable: it is switched on afterwards (``TimeToLiveSpecification`` in the template).
TTL_ATTRIBUTES: dict[str, str] = {
    "sandboxes": "ttl",
    "rate": "ttl",
    "audit": "ttl",
    "idempotency": "expiration",
    "executions": "ttl",
}


def wait_until_active(client: DynamoDB, table_name: str, timeout_s: float = 120.0) -> None:
    """A new table (and its indexes) is usable once ACTIVE; DynamoDB Local is at once."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            table = client.describe_table(TableName=table_name)["Table"]
            indexes = table.get("GlobalSecondaryIndexes", [])
            if table["TableStatus"] == "ACTIVE" and all(
                index.get("IndexStatus", "ACTIVE") == "ACTIVE" for index in indexes
            ):
                return
        except AwsError as exc:
            if exc.code != "ResourceNotFoundException":
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"DynamoDB table {table_name} is not ACTIVE after {timeout_s:g} s")
        time.sleep(1)


def create_tables(client: DynamoDB, names: dict[str, str]) -> None:
    """Create the tables named in ``names`` (logical name -> table name) and turn TTL on.
    Tables that already exist are left as they are, so this can run again safely."""
    unknown = set(names) - set(TABLES)
    if unknown:
        raise ValueError(f"unknown table(s) {sorted(unknown)}; known: {sorted(TABLES)}")
    for logical, table_name in names.items():
        try:
            client.create_table(TableName=table_name, **TABLES[logical])
            log.info("created DynamoDB table %s (%s)", table_name, logical)
        except AwsError as exc:
            if exc.code != "ResourceInUseException":
                raise
            log.info("DynamoDB table %s (%s) already exists", table_name, logical)
    for logical, table_name in names.items():
        wait_until_active(client, table_name)
        attribute = TTL_ATTRIBUTES.get(logical)
        if attribute is None:
            continue
        current = client.describe_time_to_live(TableName=table_name)
        status = current["TimeToLiveDescription"].get("TimeToLiveStatus")
        if status in ("ENABLED", "ENABLING"):
            continue
        client.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute},
        )
