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

TABLES: dict[str, dict[str, Any]] = {
    "sandboxes": {
        "AttributeDefinitions": [
            {"AttributeName": "sandboxId", "AttributeType": "S"},
            {"AttributeName": "projectId", "AttributeType": "S"},
            {"AttributeName": "lastUsedAt", "AttributeType": "N"},
            {"AttributeName": "status", "AttributeType": "S"},
            {"AttributeName": "expiresAt", "AttributeType": "N"},
            {"AttributeName": "createdAt", "AttributeType": "N"},
        ],
        "KeySchema": [{"AttributeName": "sandboxId", "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [
            {
                # list_live: a project's sandboxes, least recently used first.
                "IndexName": "byProject",
                "KeySchema": [
                    {"AttributeName": "projectId", "KeyType": "HASH"},
                    {"AttributeName": "lastUsedAt", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            },
            {
                # list_recent: a project's sandboxes, newest first (the console's list).
                "IndexName": "byProjectCreated",
                "KeySchema": [
                    {"AttributeName": "projectId", "KeyType": "HASH"},
                    {"AttributeName": "createdAt", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            },
            {
                # list_due and list_running: running sandboxes, earliest deadline first.
                "IndexName": "byStatus",
                "KeySchema": [
                    {"AttributeName": "status", "KeyType": "HASH"},
                    {"AttributeName": "expiresAt", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            },
        ],
        "BillingMode": "PAY_PER_REQUEST",
    },
    "keys": {
        "AttributeDefinitions": [
            {"AttributeName": "keyHash", "AttributeType": "S"},
            {"AttributeName": "keyId", "AttributeType": "S"},
        ],
        "KeySchema": [{"AttributeName": "keyHash", "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [
            {
                # revoke: keys are revoked by id, found by hash.
                "IndexName": "byKeyId",
                "KeySchema": [{"AttributeName": "keyId", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            },
        ],
        "BillingMode": "PAY_PER_REQUEST",
    },
    "rate": {
        "AttributeDefinitions": [
            {"AttributeName": "subject", "AttributeType": "S"},
            {"AttributeName": "windowStart", "AttributeType": "N"},
        ],
        "KeySchema": [
            {"AttributeName": "subject", "KeyType": "HASH"},
            {"AttributeName": "windowStart", "KeyType": "RANGE"},
        ],
        "BillingMode": "PAY_PER_REQUEST",
    },
    "audit": {
        "AttributeDefinitions": [
            {"AttributeName": "projectId", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        # sk = "<epoch ms, 15 digits>#<event id>": a project's trail in time order.
        "KeySchema": [
            {"AttributeName": "projectId", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "BillingMode": "PAY_PER_REQUEST",
    },
    "executions": {
        "AttributeDefinitions": [
            {"AttributeName": "executionId", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "open", "AttributeType": "S"},
            {"AttributeName": "aliveUntil", "AttributeType": "N"},
            {"AttributeName": "projectId", "AttributeType": "S"},
            {"AttributeName": "createdAt", "AttributeType": "N"},
        ],
        # sk = "meta" | "log#<line>#<part>" | "result#<part>" (adapters/dynamodb/executions.py)
        "KeySchema": [
            {"AttributeName": "executionId", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                # list_stale: unfinished executions (sparse: only they have `open`).
                "IndexName": "byOpen",
                "KeySchema": [
                    {"AttributeName": "open", "KeyType": "HASH"},
                    {"AttributeName": "aliveUntil", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            },
            {
                # list_recent: a project's executions, newest first (sparse: only the
                # `meta` items have createdAt; log and result parts stay out).
                "IndexName": "byProject",
                "KeySchema": [
                    {"AttributeName": "projectId", "KeyType": "HASH"},
                    {"AttributeName": "createdAt", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            },
        ],
        "BillingMode": "PAY_PER_REQUEST",
    },
    # Powertools idempotency's own schema (DynamoDBPersistenceLayer defaults).
    "idempotency": {
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "BillingMode": "PAY_PER_REQUEST",
    },
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
