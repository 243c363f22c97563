"""Idempotency records in DynamoDB through Powertools' idempotency persistence layer (its
table schema, its conditional writes, its expiry of in-progress claims).

The Powertools decorator cannot wrap an async function, so the service drives the
persistence layer itself: save_inprogress to claim a key, get_record (which validates the
payload) when it is taken, save_success and delete_record after."""

from __future__ import annotations

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


class PowertoolsIdempotencyStore:
    def __init__(self, client: DynamoDBClient, table_name: str, retention_s: float) -> None:
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
        return IdempotencyHit("completed", response)

    def complete(self, key: str, fingerprint: str, response: dict[str, Any], now: float) -> None:
        with store_errors("saving an idempotent answer"):
            self._layer.save_success({"key": key, "fingerprint": fingerprint}, response)

    def release(self, key: str, fingerprint: str) -> None:
        with store_errors("releasing an idempotency key"):
            self._layer.delete_record(
                {"key": key, "fingerprint": fingerprint}, RuntimeError("request failed")
            )
