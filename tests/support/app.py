"""The real services over SQLite with a given provider (a fake one, or E2B's), in-process:
the composition root's local build, with the provider, clock and signing key overridden."""

from __future__ import annotations

from pathlib import Path

from iris_exec.composition import Services
from iris_exec.composition.local import build_local
from iris_exec.domain.ports import SandboxProvider
from iris_exec.services.clock import Clock, system_clock
from iris_exec.settings import Settings


def sqlite_container(
    settings: Settings, provider: SandboxProvider, clock: Clock = system_clock
) -> Services:
    return build_local(settings, provider=provider, clock=clock, signing_key=b"s" * 32)


def fake_container(
    tmp_path: Path, provider: SandboxProvider, clock: Clock, **settings: object
) -> Services:
    return sqlite_container(Settings(data_dir=tmp_path, **settings), provider, clock)
