"""Fakes for the parts a unit test does not need for real (never for what is under test)."""

from __future__ import annotations

import asyncio

from iris_exec.domain.errors import SandboxLost
from iris_exec.domain.models import (
    CreatedSandbox,
    ExecutionJob,
    OutputChunk,
    ProviderSandbox,
    RunOutcome,
)


class MovableClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeProvider:
    """A SandboxProvider that 'runs' code by echoing it; faults can be injected."""

    name = "fake"

    def __init__(self) -> None:
        self.alive: set[str] = set()
        self.killed: list[str] = []
        self.created = 0
        self.fail_run: Exception | None = None
        self.fail_create: Exception | None = None
        self.fail_kill: Exception | None = None
        self.owners: dict[str, tuple[str, str]] = {}
        self.run_delay = 0.0

    async def start(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def create(self, sandbox_id: str, project_id: str, lifetime_s: float) -> CreatedSandbox:
        if self.fail_create is not None:
            raise self.fail_create
        self.created += 1
        ref = f"fake-{self.created}"
        self.alive.add(ref)
        self.owners[ref] = (sandbox_id, project_id)
        return CreatedSandbox(ref, "fake")

    async def run(self, provider_ref: str, job: ExecutionJob) -> RunOutcome:
        if provider_ref not in self.alive:
            raise SandboxLost("gone")
        if self.fail_run is not None:
            raise self.fail_run
        if self.run_delay:
            await asyncio.sleep(self.run_delay)
        return RunOutcome(
            output=[OutputChunk("stdout", job.source + "\n")], succeeded=True, execution_ms=1.0
        )

    async def kill(self, provider_ref: str) -> None:
        if self.fail_kill is not None:
            raise self.fail_kill
        self.alive.discard(provider_ref)
        self.killed.append(provider_ref)

    async def is_alive(self, provider_ref: str) -> bool:
        return provider_ref in self.alive

    async def list_sandboxes(self) -> list[ProviderSandbox]:
        return [ProviderSandbox(ref, *self.owners[ref]) for ref in sorted(self.alive)]
