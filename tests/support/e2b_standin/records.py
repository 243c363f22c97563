"""What the stand-in remembers, for tests to inspect.

These are plain records: the server fills them in, tests read them. Their
fields hold what the SDK sent (request bodies as JSON, envs as given) so that a
test can assert on the wire, not on an interpretation of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

EndReason = Literal["killed", "timeout", "killed_behind_our_back", "stand_in_stopped"]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class CommandRecord:
    """One ``process.Process/Start`` call, as envd received it."""

    pid: int
    #: The command line the SDK user gave (``args[-1]`` of ``/bin/bash -l -c <cmd>``).
    cmd: str
    #: The full ``ProcessConfig.cmd`` + ``args`` as sent.
    argv: list[str]
    #: ``ProcessConfig.envs`` as sent (not merged with the sandbox's envs).
    envs: dict[str, str]
    #: Working directory as a sandbox path (after envd's default and ``~`` handling).
    cwd: str
    user: str
    tag: str | None
    stdin: bool
    #: The ``Connect-Timeout-Ms`` the SDK sent (its ``timeout``), in seconds.
    timeout_s: float | None
    started_at: datetime = field(default_factory=utcnow)
    ended_at: datetime | None = None
    #: The end event's exit code (-1 when ended by a signal, as envd reports it).
    exit_code: int | None = None
    #: The end event's status, e.g. ``exit status 3`` or ``signal: killed``.
    status: str | None = None
    #: Killed because its ``timeout`` passed (envd kills it at the deadline).
    timed_out: bool = False
    #: Signals received through ``process.Process/SendSignal``, e.g. ``["SIGKILL"]``.
    signals: list[str] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.ended_at is None


@dataclass
class SandboxRecord:
    """One sandbox, as the control plane and its envd know it."""

    sandbox_id: str
    #: ``templateID`` as the create request gave it (the stand-in has no template registry).
    template_id: str
    metadata: dict[str, str]
    #: ``envVars`` given at create; every command gets them.
    envs: dict[str, str]
    #: The create request's ``timeout`` in seconds (300 when omitted, as the API defaults).
    timeout_s: int
    started_at: datetime
    end_at: datetime
    #: ``network`` as received at create (then as replaced by ``PUT /sandboxes/{id}/network``).
    network: dict[str, Any] | None
    allow_internet_access: bool | None
    #: The whole create request body as received.
    request: dict[str, Any]
    idempotency_key: str | None
    envd_access_token: str
    envd_version: str
    #: Host directory that is this sandbox's ``/`` (``/home/user`` is ``root/home/user``).
    root: Path
    alive: bool = True
    end_reason: EndReason | None = None
    #: Sandbox paths written through envd's ``POST /files``, in order.
    files_written: list[str] = field(default_factory=list)
    #: (sandbox path, bytes) of every file written through envd, in order.
    file_contents: list[tuple[str, bytes]] = field(default_factory=list)
    commands: list[CommandRecord] = field(default_factory=list)
    #: Bodies of ``PUT /sandboxes/{id}/network``, in order.
    network_updates: list[dict[str, Any]] = field(default_factory=list)
    #: ``X-Metadata-*`` given on upload, per sandbox path (envd keeps them as xattrs).
    file_metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    #: The sandbox's users (name -> uid): E2B's base ones and its template's.
    users: dict[str, int] = field(default_factory=lambda: {"root": 0, "user": 1000})
    #: Whether its commands run in a jail with those users (``jail.py``).
    jailed: bool = False
    #: The loopback address its egress goes to (``egress.py``), if any.
    egress_address: str | None = None

    def chown(self, host_path: Path, user: str) -> None:
        """Files envd makes belong to the user it made them for (in a jail: for real)."""
        if self.jailed:
            uid = self.users[user]
            os.chown(host_path, uid, uid, follow_symlinks=False)

    def host_path(self, sandbox_path: str) -> Path:
        """Where a sandbox path is on this host: ``/home/user/a`` is ``root/home/user/a``."""
        return self.root / sandbox_path.lstrip("/")

    def command(self, cmd: str) -> CommandRecord:
        """The last command run with exactly this command line."""
        for record in reversed(self.commands):
            if record.cmd == cmd:
                return record
        raise KeyError(f"no command {cmd!r} ran in sandbox {self.sandbox_id}")


@dataclass
class CreateRequestRecord:
    """One ``POST /v2/sandboxes`` (or ``/sandboxes``) that reached the stand-in."""

    path: str
    #: Request headers, names lower-cased.
    headers: dict[str, str]
    #: Parsed JSON body (``None`` if it was not JSON).
    body: dict[str, Any] | None
    #: The status the stand-in answered with.
    status: int
    #: The sandbox the answer named (or created, for an injected failure after creation).
    sandbox_id: str | None
    #: Answered from the idempotency record instead of creating a sandbox.
    replayed: bool
    at: datetime = field(default_factory=utcnow)

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")
