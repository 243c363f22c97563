"""Request counters in DynamoDB: one item per (subject, window); services/ratelimit.py adds
the recent ones up into a sliding window."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from iris_exec.adapters.dynamodb import integer, query_all, store_errors, text

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

    def recent(self, subject: str, since: int) -> dict[int, int]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "subject = :s AND windowStart >= :since",
            "ExpressionAttributeValues": {":s": text(subject), ":since": integer(since)},
            "ConsistentRead": True,
        }
        with store_errors("counting recent requests"):
            return {
                int(item["windowStart"]["N"]): int(item["count"]["N"])
                for item in query_all(self._client, request)
            }

    def unhit(self, subject: str, window_start: int) -> None:
        with store_errors("counting a request"):
            self._client.update_item(
                TableName=self._table,
                Key={"subject": text(subject), "windowStart": integer(window_start)},
                UpdateExpression="ADD #c :minus",
                ExpressionAttributeNames={"#c": "count"},
                ExpressionAttributeValues={":minus": integer(-1)},
            )
