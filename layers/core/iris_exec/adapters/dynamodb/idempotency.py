"""Idempotency records in DynamoDB, through the service's one DynamoDB client, in the record
format of Powertools' idempotency utility (``DynamoDBPersistenceLayer`` with its default
attribute names), so that its documentation describes the table and a record written by
either is read by the other:

- ``id``: ``iris-exec.execute#`` and the MD5 of the Idempotency-Key as JSON (Powertools'
  ``key_prefix#hash`` with its default ``hash_function``);
- ``status``: ``INPROGRESS`` or ``COMPLETED``;
- ``expiration``: when the record ends, epoch seconds (the table's TTL attribute);
- ``in_progress_expiration``: when a claim not completed may be taken again, epoch ms;
- ``validation``: the MD5 of the request's fingerprint as JSON (payload validation);
- ``data``: the answer as JSON with sorted keys;
- ``claim``: ours, not Powertools' (which ignores attributes it does not name): a random
  token of the request that claimed the key.

A claim is Powertools' conditional put: it succeeds when no record exists, the record has
expired, or it is an in-progress claim past its ``in_progress_expiration``; otherwise
DynamoDB returns the record that stood in the way (ReturnValuesOnConditionCheckFailure).
When that record carries this claim's own token, the claim had succeeded and its answer was
lost: the client sent the PutItem again (as botocore does), so the key is this request's."""

from __future__ import annotations

import hashlib
import json
import secrets
import zlib
from typing import TYPE_CHECKING, Any

from iris_exec.adapters.awsapi import AwsError
from iris_exec.adapters.dynamodb import (
    Item,
    blob,
    get_blob,
    get_opt_str,
    integer,
    store_errors,
    text,
)
from iris_exec.domain.errors import StoreUnavailable
from iris_exec.domain.models import IdempotencyHit

if TYPE_CHECKING:
    from iris_exec.adapters.awsapi import DynamoDB

#: Powertools' ``key_prefix``: the records are those of the execute operation.
KEY_PREFIX = "iris-exec.execute"
IN_PROGRESS, COMPLETED = "INPROGRESS", "COMPLETED"
#: Powertools' claim: no record, an expired one, or an in-progress one whose claim lapsed.
CLAIM_CONDITION = (
    "attribute_not_exists(#id) OR #expiry < :now OR (#status = :inprogress"
    " AND attribute_exists(#in_progress_expiry) AND #in_progress_expiry < :now_in_millis)"
)

#: A DynamoDB item holds at most 400 KB: an answer longer than this (as JSON) is stored
#: compressed, in parts of this size next to its record, which keeps only where they are.
PART_BYTES = 300 * 1024
PARTS_FIELD = "$irisParts"


def powertools_hash(value: str) -> str:
    """Powertools' hash of an extracted value: MD5 of its JSON (sorted keys, ASCII)."""
    data = json.dumps(value, sort_keys=True).encode()
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class DynamoIdempotencyStore:
    def __init__(self, client: DynamoDB, table_name: str, retention_s: float) -> None:
        self._client = client
        self._table = table_name
        self._retention_s = retention_s

    def _key(self, key: str) -> Item:
        return {"id": text(f"{KEY_PREFIX}#{powertools_hash(key)}")}

    def begin(self, key: str, fingerprint: str, now: float, lock_s: float) -> IdempotencyHit | None:
        validation = powertools_hash(fingerprint)
        token = secrets.token_hex(16)
        claim: Item = {
            **self._key(key),
            "expiration": integer(int(now + self._retention_s)),
            "status": text(IN_PROGRESS),
            "in_progress_expiration": integer(int((now + lock_s) * 1000)),
            "validation": text(validation),
            "claim": text(token),
        }
        with store_errors("claiming an idempotency key"):
            try:
                self._client.put_item(
                    TableName=self._table,
                    Item=claim,
                    ConditionExpression=CLAIM_CONDITION,
                    ExpressionAttributeNames={
                        "#id": "id",
                        "#expiry": "expiration",
                        "#in_progress_expiry": "in_progress_expiration",
                        "#status": "status",
                    },
                    ExpressionAttributeValues={
                        ":now": integer(int(now)),
                        ":now_in_millis": integer(int(now * 1000)),
                        ":inprogress": text(IN_PROGRESS),
                    },
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return None
            except AwsError as exc:
                if not exc.condition_failed:
                    raise
                held: Item | None = (exc.data or {}).get("Item")
            if held is None:  # a store that does not return it: read it
                held = self._client.get_item(
                    TableName=self._table, Key=self._key(key), ConsistentRead=True
                ).get("Item")
            if held is None:  # released since: the caller's retry claims it
                return IdempotencyHit("in_progress")
            if get_opt_str(held, "claim") == token and get_opt_str(held, "status") == IN_PROGRESS:
                return None  # our own claim, written by an attempt whose answer was lost
            if get_opt_str(held, "validation") != validation:
                return IdempotencyHit("mismatch")
            if get_opt_str(held, "status") != COMPLETED:
                return IdempotencyHit("in_progress")
            response: dict[str, Any] = json.loads(held["data"]["S"])
            if PARTS_FIELD in response:
                response = self._read_parts(key, fingerprint, int(response[PARTS_FIELD]))
        return IdempotencyHit("completed", response)

    def complete(self, key: str, fingerprint: str, response: dict[str, Any], now: float) -> None:
        # As Powertools stores it (json.dumps' ASCII escapes: a CJK character is 6 bytes
        # there, an emoji 12): this is what must fit in the item.
        data = json.dumps(response, sort_keys=True)
        with store_errors("saving an idempotent answer"):
            if len(data) > PART_BYTES:
                packed = json.dumps(response, separators=(",", ":"), ensure_ascii=False)
                parts = self._write_parts(key, fingerprint, packed.encode(), now)
                data = json.dumps({PARTS_FIELD: parts}, sort_keys=True)
            self._client.update_item(
                TableName=self._table,
                Key=self._key(key),
                UpdateExpression=(
                    "SET #response_data = :response_data, #expiry = :expiry,"
                    " #status = :status, #validation_key = :validation_key"
                ),
                ExpressionAttributeNames={
                    "#response_data": "data",
                    "#expiry": "expiration",
                    "#status": "status",
                    "#validation_key": "validation",
                },
                ExpressionAttributeValues={
                    ":response_data": text(data),
                    ":expiry": integer(int(now + self._retention_s)),
                    ":status": text(COMPLETED),
                    ":validation_key": text(powertools_hash(fingerprint)),
                },
            )

    def release(self, key: str, fingerprint: str) -> None:
        with store_errors("releasing an idempotency key"):
            self._client.delete_item(TableName=self._table, Key=self._key(key))

    def _part_id(self, key: str, fingerprint: str, index: int) -> str:
        digest = hashlib.sha256(f"{key}\n{fingerprint}".encode()).hexdigest()
        return f"{KEY_PREFIX}.part#{digest}#{index}"

    def _write_parts(self, key: str, fingerprint: str, data: bytes, now: float) -> int:
        packed = zlib.compress(data, 6)
        parts = [packed[i : i + PART_BYTES] for i in range(0, len(packed), PART_BYTES)]
        expiration = integer(int(now + self._retention_s))
        for index, part in enumerate(parts):
            self._client.put_item(
                TableName=self._table,
                Item={
                    "id": text(self._part_id(key, fingerprint, index)),
                    "expiration": expiration,
                    "data": blob(part),
                },
            )
        return len(parts)

    def _read_parts(self, key: str, fingerprint: str, count: int) -> dict[str, Any]:
        packed = b""
        for index in range(count):
            item = self._client.get_item(
                TableName=self._table,
                Key={"id": text(self._part_id(key, fingerprint, index))},
                ConsistentRead=True,
            ).get("Item")
            if item is None:  # expired between the record and its parts
                raise StoreUnavailable("a part of an idempotent answer is gone")
            packed += get_blob(item, "data")
        answer: dict[str, Any] = json.loads(zlib.decompress(packed))
        return answer
