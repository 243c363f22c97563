"""Idempotency records in DynamoDB through Powertools' idempotency persistence layer (its
table schema, its conditional writes, its expiry of in-progress claims).

The Powertools decorator cannot wrap an async function, so the service drives the
persistence layer itself: save_inprogress to claim a key, get_record (which validates the
payload) when it is taken, save_success and delete_record after."""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from iris_exec.adapters.awsapi import AwsError, AwsUnreachable
from iris_exec.adapters.dynamodb import store_errors as dynamodb_errors
from iris_exec.domain.models import IdempotencyHit

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


@contextmanager
def store_errors(what: str) -> Iterator[None]:
    """Powertools calls DynamoDB through botocore: its errors are read as the service's own
    client's (``AwsError``, ``AwsUnreachable``), so the adapters' one rule decides what is
    ``StoreUnavailable``."""
    from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    with dynamodb_errors(what):
        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            message = str(exc.response.get("Error", {}).get("Message", ""))
            raise AwsError(exc.operation_name, status, code, message, exc.response) from exc
        except (BotoConnectionError, ReadTimeoutError, ConnectionClosedError) as exc:
            raise AwsUnreachable(str(exc)) from exc


#: A DynamoDB item holds at most 400 KB: an answer longer than this (as JSON) is stored
#: compressed, in parts of this size next to its record, which keeps only where they are.
PART_BYTES = 300 * 1024
PARTS_FIELD = "$irisParts"


class PowertoolsIdempotencyStore:
    def __init__(self, client: DynamoDBClient, table_name: str, retention_s: float) -> None:
        self._client = client
        self._table = table_name
        self._retention_s = retention_s
        # Powertools imports boto3: only requests that carry an Idempotency-Key pay for it.
        from aws_lambda_powertools.utilities.idempotency import (
            DynamoDBPersistenceLayer,
            IdempotencyConfig,
        )

        self._layer = DynamoDBPersistenceLayer(table_name=table_name, boto3_client=client)
        self._layer.configure(
            IdempotencyConfig(
                event_key_jmespath="key",
                payload_validation_jmespath="fingerprint",
                expires_after_seconds=int(retention_s),
                use_local_cache=False,
            ),
            key_prefix="iris-exec.execute",
        )

    def begin(self, key: str, fingerprint: str, now: float, lock_s: float) -> IdempotencyHit | None:
        from aws_lambda_powertools.utilities.idempotency.exceptions import (
            IdempotencyItemAlreadyExistsError,
            IdempotencyValidationError,
        )

        data = {"key": key, "fingerprint": fingerprint}
        with store_errors("claiming an idempotency key"):
            try:
                self._layer.save_inprogress(data, remaining_time_in_millis=int(lock_s * 1000))
                return None
            except IdempotencyItemAlreadyExistsError:
                pass
            except IdempotencyValidationError:  # taken, by another body
                return IdempotencyHit("mismatch")
            try:
                record = self._layer.get_record(data)
            except IdempotencyValidationError:
                return IdempotencyHit("mismatch")
        if record is None or record.status != "COMPLETED":
            return IdempotencyHit("in_progress")
        response: dict[str, Any] = record.response_json_as_dict() or {}
        if PARTS_FIELD in response:
            response = self._read_parts(key, fingerprint, response[PARTS_FIELD])
        return IdempotencyHit("completed", response)

    def complete(self, key: str, fingerprint: str, response: dict[str, Any], now: float) -> None:
        text = json.dumps(response, separators=(",", ":"), ensure_ascii=False).encode()
        # Sized as Powertools stores it (json.dumps' ASCII escapes: a CJK character is 6
        # bytes there, an emoji 12), or text under the threshold could overflow an item.
        stored = len(json.dumps(response, sort_keys=True))
        with store_errors("saving an idempotent answer"):
            if stored > PART_BYTES:
                response = {PARTS_FIELD: self._write_parts(key, fingerprint, text, now)}
            self._layer.save_success({"key": key, "fingerprint": fingerprint}, response)

    def _part_id(self, key: str, fingerprint: str, index: int) -> str:
        digest = hashlib.sha256(f"{key}\n{fingerprint}".encode()).hexdigest()
        return f"iris-exec.execute.part#{digest}#{index}"

    def _write_parts(self, key: str, fingerprint: str, text: bytes, now: float) -> int:
        packed = zlib.compress(text, 6)
        parts = [packed[i : i + PART_BYTES] for i in range(0, len(packed), PART_BYTES)]
        expiration = str(int(now + self._retention_s))
        for index, part in enumerate(parts):
            self._client.put_item(
                TableName=self._table,
                Item={
                    "id": {"S": self._part_id(key, fingerprint, index)},
                    "expiration": {"N": expiration},
                    "data": {"B": part},
                },
            )
        return len(parts)

    def _read_parts(self, key: str, fingerprint: str, count: int) -> dict[str, Any]:
        packed = b""
        with store_errors("reading an idempotent answer"):
            for index in range(count):
                item = self._client.get_item(
                    TableName=self._table,
                    Key={"id": {"S": self._part_id(key, fingerprint, index)}},
                    ConsistentRead=True,
                ).get("Item")
                if item is None:  # expired between the record and its parts
                    raise AwsError("GetItem", 500, "MissingPart", "an answer part is gone", {})
                packed += bytes(item["data"]["B"])
        answer: dict[str, Any] = json.loads(zlib.decompress(packed))
        return answer

    def release(self, key: str, fingerprint: str) -> None:
        with store_errors("releasing an idempotency key"):
            self._layer.delete_record(
                {"key": key, "fingerprint": fingerprint}, RuntimeError("request failed")
            )
