"""Fixed-window request counters in DynamoDB: one item per (subject, window)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from iris_exec.adapters.dynamodb import integer, store_errors, text

if TYPE_CHECKING:
    from iris_exec.adapters.awsapi import DynamoDB


class DynamoRateLimitStore:
    """``RateLimitStore`` over one DynamoDB table (see ``tables.TABLES["rate"]``).

    One atomic ``ADD`` per request: it creates the window's item on the first hit and
    returns the new count, so concurrent callers each get a distinct count. TTL removes
    a window's item once it is two windows old."""

    def __init__(self, client: DynamoDB, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def hit(self, subject: str, window_start: int, window_s: int) -> int:
        with store_errors("counting a request"):
            answer = self._client.update_item(
                TableName=self._table,
                Key={"subject": text(subject), "windowStart": integer(window_start)},
                UpdateExpression="ADD #c :one SET #ttl = :ttl",
                ExpressionAttributeNames={"#c": "count", "#ttl": "ttl"},
                ExpressionAttributeValues={
                    ":one": integer(1),
                    ":ttl": integer(window_start + 2 * window_s),
                },
                ReturnValues="UPDATED_NEW",
            )
        return int(answer["Attributes"]["count"]["N"])
