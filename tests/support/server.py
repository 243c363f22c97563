"""A real local server (`iris-exec serve`) in a subprocess, for integration tests."""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

ROOT = Path(__file__).resolve().parents[2]
IRIS_EXEC = ROOT / ".venv" / "bin" / "iris-exec"
KEY_PATTERN = re.compile(r"^sk_live_[A-Za-z0-9_-]{43}$")
#: Put into the server's environment: it must never be visible inside a sandbox.
CANARY = "canary-secret-6f1c2b"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalServer:
    """Starts `iris-exec serve` on a free port with its own data directory."""

    def __init__(self, data_dir: Path, **settings: Any) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "IRIS_DATA_DIR": str(data_dir),
            "IRIS_PORT": str(self.port),
            "IRIS_TEST_CANARY": CANARY,
            "AWS_SECRET_ACCESS_KEY": CANARY,
            # One server serves a whole test session, dozens of projects' sandboxes live at
            # once: the host-memory admission cap (tests/integration/test_tenants.py tests
            # it with its own budget) would refuse them long before the tests end.
            "IRIS_SANDBOX_MEMORY_BUDGET_MB": "10000000",
            **{f"IRIS_{k.upper()}": str(v) for k, v in settings.items()},
        }
        self.proc: subprocess.Popen[str] | None = None
        self.first_key = ""
        self.log_path = data_dir / "server.log"

    def start(self) -> Self:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [str(IRIS_EXEC), "serve"],
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"server did not start: {self.log_path.read_text()}")
        # `serve` prints the first key on stdout (before it listens) when it created one.
        if select.select([self.proc.stdout], [], [], 0)[0]:
            self.first_key = self.proc.stdout.readline().strip()
        return self

    def create_key(self, project: str) -> str:
        done = subprocess.run(
            [str(IRIS_EXEC), "keys", "create", "--project", project],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip().splitlines()[-1]

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(IRIS_EXEC), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def client(self, key: str | None, timeout: float = 120) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def rss_kib(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def python() -> str:
    return sys.executable


def processes_with(marker: bytes) -> list[int]:
    """Host pids whose command line holds ``marker`` (a jail's processes seen from outside)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def wait_until_gone(marker: bytes) -> list[int]:
    """The pids of ``processes_with(marker)`` still there after up to 10 s of waiting."""
    deadline = time.monotonic() + 10
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    return processes_with(marker)
