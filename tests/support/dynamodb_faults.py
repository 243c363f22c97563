"""A proxy in front of DynamoDB Local that answers chosen operations with DynamoDB's own
error answers (throttling, 5xx) a given number of times, or carries a request out and loses
its answer, and forwards everything else.

DynamoDB Local never throttles; this gives the adapters the exact wire answers AWS sends
(HTTP status, ``__type``, ``x-amz-crc32``) through the same client and connections they
use in production."""

from __future__ import annotations

import http.client
import json
import threading
import zlib
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from tests.support.http_standin import HttpStandIn

#: DynamoDB's HTTP status for each error code the tests inject.
STATUS = {
    "ConditionalCheckFailedException": 400,  # without the Item ALL_OLD would return
    "ProvisionedThroughputExceededException": 400,
    "ThrottlingException": 400,
    "RequestLimitExceeded": 400,
    "InternalServerError": 500,
    "ServiceUnavailable": 503,
}


@dataclass
class Fault:
    code: str
    #: How many requests of the operation get the error; then they are forwarded again.
    times: int = 1_000_000


@dataclass
class FaultyDynamoDB(HttpStandIn):
    upstream: str
    #: Operation (``UpdateItem``) -> the error its requests get.
    faults: dict[str, Fault] = field(default_factory=dict)
    #: Requests seen, by operation (forwarded or not).
    seen: Counter[str] = field(default_factory=Counter)
    #: Answer with a body that does not match its x-amz-crc32 this many times.
    corrupt: int = 0
    #: Operation -> how many of its requests DynamoDB carries out but whose answer is lost
    #: (the connection closes before a byte of it: a timeout or reset on the way back).
    lost: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._serve(self._handler())

    def _take_fault(self, operation: str) -> str | None:
        with self._lock:
            self.seen[operation] += 1
            fault = self.faults.get(operation)
            if fault is None or fault.times <= 0:
                return None
            fault.times -= 1
            return fault.code

    def _take_loss(self, operation: str) -> bool:
        with self._lock:
            if self.lost[operation] <= 0:
                return False
            self.lost[operation] -= 1
            return True

    def _take_corruption(self) -> bool:
        with self._lock:
            if self.corrupt <= 0:
                return False
            self.corrupt -= 1
            return True

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self
        upstream = urlsplit(self.upstream)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: bytes, crc: int | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("x-amz-crc32", str(zlib.crc32(body) if crc is None else crc))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                operation = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
                code = proxy._take_fault(operation)
                if code is not None:
                    error = {
                        "__type": f"com.amazonaws.dynamodb.v20120810#{code}",
                        "message": f"injected {code}",
                    }
                    self._answer(STATUS[code], json.dumps(error).encode())
                    return
                connection = http.client.HTTPConnection(
                    upstream.hostname or "", upstream.port, timeout=30
                )
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    connection.request("POST", self.path, body=body, headers=headers)
                    answer = connection.getresponse()
                    data = answer.read()
                finally:
                    connection.close()
                if proxy._take_loss(operation):
                    self.close_connection = True
                    return
                if proxy._take_corruption():
                    self._answer(answer.status, data, crc=(zlib.crc32(data) + 1) & 0xFFFFFFFF)
                else:
                    self._answer(answer.status, data)

        return Handler
