"""DynamoDB adapters for the sandbox registry, API keys, rate-limit windows, the audit trail,
idempotency records and asynchronous executions.

They call DynamoDB through ``iris_exec.adapters.awsapi.DynamoDB`` (one per process,
thread-safe; botocore's request shapes without botocore's import cost) and translate its
errors: a failed condition is the adapter's ``False`` or ``AlreadyExists``; throttling,
DynamoDB's own 5xx answers and connection trouble are ``StoreUnavailable``. Tables are
declared in ``tables.py``; the SAM template declares the same key schemas."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from iris_exec.adapters.awsapi import AwsError, AwsUnreachable
from iris_exec.domain.errors import AlreadyExists, StoreUnavailable

if TYPE_CHECKING:
    from iris_exec.adapters.awsapi import DynamoDB

#: One attribute value in DynamoDB's JSON: ``{"S": "text"}``, ``{"N": "12"}``, ...
type Value = dict[str, Any]
#: An item: attribute name -> value.
type Item = dict[str, Value]

log = logging.getLogger(__name__)


def is_condition_failure(exc: AwsError) -> bool:
    return exc.condition_failed


@contextmanager
def store_errors(what: str) -> Iterator[None]:
    """Turn DynamoDB's unavailability (``AwsError.unavailable``: throttling, a transient
    code or a 5xx answer, already retried by the client) and connection trouble into
    ``StoreUnavailable``; anything else propagates."""
    try:
        yield
    except AwsError as exc:
        if not exc.unavailable:
            raise
        log.warning("DynamoDB refused %s: %s", what, exc.code)
        raise StoreUnavailable(f"DynamoDB is unavailable ({exc.code}) for {what}") from exc
    except AwsUnreachable as exc:
        log.warning("DynamoDB unreachable for %s: %s", what, exc)
        raise StoreUnavailable(f"DynamoDB is unreachable for {what}") from exc


def num(value: float) -> Value:
    """A float as DynamoDB's N: ``repr`` is the shortest text that reads back to the same
    float, well within DynamoDB's 38 digits, so records round-trip exactly."""
    return {"N": repr(float(value))}


def integer(value: int) -> Value:
    return {"N": str(int(value))}


def text(value: str) -> Value:
    return {"S": value}


def blob(data: bytes) -> Value:
    """Binary: base64 text on the wire (botocore would encode it the same way)."""
    return {"B": base64.b64encode(data).decode()}


def get_blob(item: Item, name: str) -> bytes:
    return base64.b64decode(item[name]["B"])


def get_float(item: Item, name: str) -> float:
    return float(item[name]["N"])


def get_opt_float(item: Item, name: str) -> float | None:
    value = item.get(name)
    return float(value["N"]) if value is not None else None


def get_opt_str(item: Item, name: str) -> str | None:
    value = item.get(name)
    return value["S"] if value is not None else None


def query_all(client: DynamoDB, request: dict[str, Any]) -> Iterator[Item]:
    """Every item a Query matches, page after page (a page stops at 1 MB)."""
    return _pages(client.query, dict(request))


def scan_all(client: DynamoDB, request: dict[str, Any]) -> Iterator[Item]:
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


def query_page(
    client: DynamoDB, request: dict[str, Any], limit: int
) -> tuple[list[Item], Item | None]:
    """At most ``limit`` items a Query matches (its FilterExpression applied), and the key
    to start the next page from (None when no item is left). Each call asks for no more
    than still wanted, so the returned key is exactly where the page stopped."""
    request = dict(request)
    found: list[Item] = []
    while True:
        page = client.query(**request, Limit=limit - len(found))
        found += page["Items"]
        last: Item | None = page.get("LastEvaluatedKey") or None
        if last is None or len(found) >= limit:
            return found, last
        request["ExclusiveStartKey"] = last


def _canonical(value: Any) -> Any:
    """An attribute value as DynamoDB compares it: numbers by value (DynamoDB gives back
    ``"3600"`` for a ``"3600.0"`` it was sent), maps and lists member by member."""
    if isinstance(value, dict) and len(value) == 1:
        [(kind, inner)] = value.items()
        if kind == "N":
            return ("N", Decimal(inner))
        if kind == "M":
            return ("M", {name: _canonical(member) for name, member in inner.items()})
        if kind == "L":
            return ("L", [_canonical(member) for member in inner])
        if kind == "NS":
            return ("NS", {Decimal(number) for number in inner})
        if kind in ("SS", "BS"):
            return (kind, set(inner))
    return value


def put_new(client: DynamoDB, table: str, item: Item, key: str, what: str, ident: str) -> None:
    """Put ``item`` unless one with its key attribute ``key`` exists: then
    ``AlreadyExists(ident)``. An item in the way equal to ``item`` is this put's own, done
    by an attempt whose answer was lost (the client sent the PutItem again): success."""
    with store_errors(what):
        try:
            client.put_item(
                TableName=table,
                Item=item,
                ConditionExpression=f"attribute_not_exists({key})",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except AwsError as exc:
            if not is_condition_failure(exc):
                raise
            held = (exc.data or {}).get("Item") or {}
            if _canonical({"M": held}) != _canonical({"M": item}):
                raise AlreadyExists(ident) from exc
