"""API keys in DynamoDB, keyed by the key's SHA-256 hash (the key itself is never stored)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from iris_exec.adapters.awsapi import AwsError
from iris_exec.adapters.dynamodb import (
    get_float,
    get_opt_float,
    get_opt_str,
    is_condition_failure,
    num,
    put_new,
    query_all,
    scan_all,
    store_errors,
    text,
)
from iris_exec.domain.models import ApiKeyRecord

if TYPE_CHECKING:
    from iris_exec.adapters.awsapi import DynamoDB
    from iris_exec.adapters.dynamodb import Item

log = logging.getLogger(__name__)


def _item(record: ApiKeyRecord) -> Item:
    item: Item = {
        "keyHash": text(record.key_hash),
        "keyId": text(record.key_id),
        "prefix": text(record.prefix),
        "projectId": text(record.project_id),
        "createdAt": num(record.created_at),
    }
    if record.name is not None:
        item["name"] = text(record.name)
    if record.revoked_at is not None:
        item["revokedAt"] = num(record.revoked_at)
    if record.usage_key is not None:
        item["usageKey"] = text(record.usage_key)
    return item


def _record(item: Item) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=item["keyId"]["S"],
        key_hash=item["keyHash"]["S"],
        prefix=item["prefix"]["S"],
        project_id=item["projectId"]["S"],
        created_at=get_float(item, "createdAt"),
        revoked_at=get_opt_float(item, "revokedAt"),
        name=get_opt_str(item, "name"),
        usage_key=get_opt_str(item, "usageKey"),
    )


class DynamoKeyStore:
    """``KeyStore`` over one DynamoDB table (see ``tables.TABLES["keys"]``)."""

    def __init__(self, client: DynamoDB, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def add(self, record: ApiKeyRecord) -> None:
        put_new(
            self._client, self._table, _item(record), "keyHash", "storing an API key",
            record.key_id,
        )  # fmt: skip

    def find_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        with store_errors("looking up an API key"):
            # Strongly consistent, so a revocation takes effect on the next request.
            answer = self._client.get_item(
                TableName=self._table, Key={"keyHash": text(key_hash)}, ConsistentRead=True
            )
        item = answer.get("Item")
        return _record(item) if item is not None else None

    def list(self, project_id: str | None = None) -> list[ApiKeyRecord]:
        # An admin operation over a small table: a Scan is simpler than another index.
        request: dict[str, Any] = {"TableName": self._table, "ConsistentRead": True}
        if project_id is not None:
            request["FilterExpression"] = "projectId = :p"
            request["ExpressionAttributeValues"] = {":p": text(project_id)}
        with store_errors("listing API keys"):
            items = list(scan_all(self._client, request))
        return sorted((_record(item) for item in items), key=lambda r: (r.created_at, r.key_id))

    def _hashes(self, key_id: str) -> tuple[str, ...]:
        return tuple(
            item["keyHash"]["S"]
            for item in query_all(
                self._client,
                {
                    "TableName": self._table,
                    "IndexName": "byKeyId",
                    "KeyConditionExpression": "keyId = :id",
                    "ExpressionAttributeValues": {":id": text(key_id)},
                },
            )
        )

    def delete(self, key_id: str) -> bool:
        deleted = False
        with store_errors("deleting an API key"):
            for key_hash in self._hashes(key_id):
                try:
                    self._client.delete_item(
                        TableName=self._table,
                        Key={"keyHash": text(key_hash)},
                        ConditionExpression="keyId = :id",
                        ExpressionAttributeValues={":id": text(key_id)},
                    )
                    deleted = True
                except AwsError as exc:
                    if not is_condition_failure(exc):
                        raise
        return deleted

    def revoke(self, key_id: str, at: float) -> bool:
        with store_errors("revoking an API key"):
            hashes = self._hashes(key_id)
            revoked = False
            for key_hash in hashes:
                try:
                    self._client.update_item(
                        TableName=self._table,
                        Key={"keyHash": text(key_hash)},
                        UpdateExpression="SET revokedAt = :at",
                        # The index may lag: make sure the item is there and still active.
                        ConditionExpression="attribute_exists(keyHash)"
                        " AND keyId = :id AND attribute_not_exists(revokedAt)",
                        ExpressionAttributeValues={":at": num(at), ":id": text(key_id)},
                    )
                    revoked = True
                except AwsError as exc:
                    if not is_condition_failure(exc):
                        raise
                    log.debug("key %s was already revoked", key_id)
        return revoked
