"""A stand-in for AWS Lambda's Invoke API, for asynchronous invocations
(``InvocationType=Event``) of the worker function: the real botocore client calls it over
HTTP, and each invocation runs the function's real handler in a process of its own, as
Lambda runs each invocation in an execution environment of its own. A test can kill that
process, as Lambda kills a worker at its timeout or on a crash.

Only what the service uses is implemented: ``POST /2015-03-31/functions/<name>/invocations``
with ``X-Amz-Invocation-Type: Event`` (202, empty body), and Lambda's 404 for an unknown
function."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from tests.support.http_standin import HttpStandIn

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "/2015-03-31/functions/"


@dataclass
class Invocation:
    function: str
    payload: dict[str, Any]
    process: subprocess.Popen[bytes]
    log: Path

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)


@dataclass
class LambdaStandIn(HttpStandIn):
    #: Function name -> its code directory (functions/<name>).
    functions: dict[str, Path]
    log_dir: Path
    invocations: list[Invocation] = field(default_factory=list)
    #: When False, invocations are accepted (202) but nothing runs (a lost event).
    run_workers: bool = True

    def __post_init__(self) -> None:
        self._serve(self._handler())

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                path = self.path.split("?")[0]
                name = unquote(path[len(PREFIX) : -len("/invocations")])
                if not (path.startswith(PREFIX) and path.endswith("/invocations")):
                    self._error(404, "UnknownOperationException", "Unknown operation")
                elif name not in standin.functions:
                    self._error(404, "ResourceNotFoundException", f"Function not found: {name}")
                elif self.headers.get("X-Amz-Invocation-Type") != "Event":
                    self._error(400, "InvalidParameterValueException", "Event only")
                else:
                    standin.run_worker(name, json.loads(body or b"{}"))
                    self._accepted()

            def _accepted(self) -> None:
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.send_header("x-amzn-RequestId", "00000000-0000-4000-8000-000000000000")
                self.end_headers()

            def _error(self, status: int, kind: str, message: str) -> None:
                data = json.dumps({"Type": "User", "message": message}).encode()
                self.send_response(status)
                self.send_header("x-amzn-ErrorType", kind)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def run_worker(self, name: str, payload: dict[str, Any]) -> None:
        if not self.run_workers:
            return
        log = self.log_dir / f"{name}-{len(self.invocations)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.support.lambda_worker", str(self.functions[name])],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
            )
        assert process.stdin is not None
        process.stdin.write(json.dumps(payload).encode())
        process.stdin.close()
        self.invocations.append(Invocation(name, payload, process, log))

    def stop(self) -> None:
        super().stop()
        for invocation in self.invocations:
            if invocation.process.poll() is None:
                invocation.process.kill()
                invocation.process.wait()
