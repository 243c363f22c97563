"""DynamoDB adapters for the sandbox registry, API keys and rate-limit windows.

They use the low-level client (one per process, thread-safe) and translate what botocore
raises: a failed condition is the adapter's ``False`` or ``AlreadyExists``; throttling,
DynamoDB's own 5xx answers and connection trouble are ``StoreUnavailable``. Tables are
declared in ``tables.py``; the SAM template declares the same key schemas."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotoConnectionError

from iris_exec.domain.errors import AlreadyExists, StoreUnavailable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        QueryInputTypeDef,
        ScanInputTypeDef,
    )

    type Item = dict[str, AttributeValueTypeDef]

log = logging.getLogger(__name__)

#: Error codes that mean "not now": botocore has already retried them, so give up with a 503.
UNAVAILABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)
#: botocore's ConnectionError covers EndpointConnectionError and ConnectTimeoutError (and
#: proxy/TLS failures); a read timeout or a dropped connection is as much "unreachable".
_NETWORK_ERRORS = (BotoConnectionError, ReadTimeoutError, ConnectionClosedError)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_condition_failure(exc: ClientError) -> bool:
    return error_code(exc) == "ConditionalCheckFailedException"


@contextmanager
def store_errors(what: str) -> Iterator[None]:
    """Turn DynamoDB's unavailability into ``StoreUnavailable``; anything else propagates."""
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        if code not in UNAVAILABLE_CODES:
            raise
        log.warning("DynamoDB refused %s: %s", what, code)
        raise StoreUnavailable(f"DynamoDB is unavailable ({code}) for {what}") from exc
    except _NETWORK_ERRORS as exc:
        log.warning("DynamoDB unreachable for %s: %s", what, exc)
        raise StoreUnavailable(
            f"DynamoDB is unreachable ({type(exc).__name__}) for {what}"
        ) from exc


def num(value: float) -> AttributeValueTypeDef:
    """A float as DynamoDB's N: ``repr`` is the shortest text that reads back to the same
    float, well within DynamoDB's 38 digits, so records round-trip exactly."""
    return {"N": repr(float(value))}


def integer(value: int) -> AttributeValueTypeDef:
    return {"N": str(int(value))}


def text(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def get_float(item: Item, name: str) -> float:
    return float(item[name]["N"])


def get_opt_float(item: Item, name: str) -> float | None:
    value = item.get(name)
    return float(value["N"]) if value is not None else None


def get_opt_str(item: Item, name: str) -> str | None:
    value = item.get(name)
    return value["S"] if value is not None else None


def query_all(client: DynamoDBClient, request: QueryInputTypeDef) -> Iterator[Item]:
    """Every item a Query matches, page after page (a page stops at 1 MB)."""
    return _pages(client.query, dict(request))


def scan_all(client: DynamoDBClient, request: ScanInputTypeDef) -> Iterator[Item]:
    """Every item a Scan matches, page after page."""
    return _pages(client.scan, dict(request))


def _pages(call: Callable[..., Any], request: dict[str, Any]) -> Iterator[Item]:
    while True:
        page = call(**request)
        yield from page["Items"]
        last = page.get("LastEvaluatedKey")
        if not last:
            return
        request["ExclusiveStartKey"] = last


def put_new(
    client: DynamoDBClient, table: str, item: Item, key: str, what: str, ident: str
) -> None:
    """Put ``item`` unless one with its key attribute ``key`` exists: then
    ``AlreadyExists(ident)``."""
    with store_errors(what):
        try:
            client.put_item(
                TableName=table, Item=item, ConditionExpression=f"attribute_not_exists({key})"
            )
        except ClientError as exc:
            if is_condition_failure(exc):
                raise AlreadyExists(ident) from exc
            raise
