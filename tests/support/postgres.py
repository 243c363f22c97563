"""A real PostgreSQL server (Debian's), started by the test suite itself."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.server import ROOT, free_port

MIGRATIONS = sorted((ROOT / "infra" / "sql").glob("*.sql"))


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    path = found[-1] if found else shutil.which(name)
    if not path:
        raise RuntimeError(f"PostgreSQL's {name} not found: `make test` installs postgresql")
    return path


class PostgresServer:
    """initdb + postgres on a free loopback port, as the `postgres` user when we are root."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="iris-pg-"))
        self.port = free_port()
        self.user: str | None = "postgres" if os.geteuid() == 0 else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.dsn = f"postgresql://iris@127.0.0.1:{self.port}/iris"

    def _as_owner(self, *cmd: str) -> list[str]:
        return ["runuser", "-u", self.user, "--", *cmd] if self.user else list(cmd)

    def start(self) -> PostgresServer:
        data = self.dir / "data"
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            self._as_owner(_bin("initdb"), "-D", str(data), "-U", "iris", "-A", "trust", "-E", "UTF8"),
            check=True, capture_output=True,
        )  # fmt: skip
        self.proc = subprocess.Popen(
            self._as_owner(
                _bin("postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self.dir),
                "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
            ),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True
            )
            if ready.returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("PostgreSQL did not start")
        subprocess.run(
            [_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "iris", "iris"],
            check=True, capture_output=True,
        )  # fmt: skip
        return self

    def psql(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [_bin("psql"), self.dsn, "-v", "ON_ERROR_STOP=1", "-q", *args],
            capture_output=True, text=True, check=True,
        )  # fmt: skip

    def migrate(self) -> None:
        """Apply infra/sql with psql, the way an operator would (twice: they are idempotent)."""
        for _ in range(2):
            for migration in MIGRATIONS:
                self.psql("-f", str(migration))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)
