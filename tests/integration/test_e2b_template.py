"""The E2B template (infra/e2b/build.py), as E2B's builder would get it: code cannot
tamper with what later executions run, and esbuild is linux-x64 whatever builds it."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from iris_exec.adapters.e2b.provider import CODE_USER, NODE

ROOT = Path(__file__).resolve().parents[2]


def load_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("e2b_build", ROOT / "infra" / "e2b" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = load_build()
#: The first bytes of an aarch64 ELF executable (e_machine 183).
ARM64_ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 9 + b"\x02\x00\xb7\x00" + b"\x00" * 44


def steps(tmp_path: Path) -> list[dict[str, Any]]:
    import json

    staged = build.stage(build.ASSETS, tmp_path)
    rendered: list[dict[str, Any]] = json.loads(build.Template.to_json(build.template(staged)))[
        "steps"
    ]
    return rendered


def test_the_runners_and_esbuild_are_roots(tmp_path: Path) -> None:
    copies = [s for s in steps(tmp_path) if s["type"] == "COPY"]
    assert {a for s in copies for a in s["args"][:1]} == set(build.FILES)
    assert all(s["args"][1].startswith("/opt/iris/") and s["args"][2] == "root" for s in copies)


def test_the_code_has_its_own_user_without_sudo_and_node_leaves_usr_local(
    tmp_path: Path,
) -> None:
    runs = " && ".join(s["args"][0] for s in steps(tmp_path) if s["type"] == "RUN")
    assert f"--user-group {CODE_USER}" in runs and "--shell /usr/sbin/nologin" in runs
    assert "sudo" not in runs and "--groups" not in runs
    assert f"/usr/local/bin/node {NODE}" in runs and "chown -R root:root /opt/iris" in runs
    assert not NODE.startswith("/usr/local/")


def test_an_esbuild_of_another_architecture_is_replaced_by_linux_x64(tmp_path: Path) -> None:
    assets = tmp_path / "assets"
    shutil.copytree(build.ASSETS, assets)
    (assets / "esbuild").write_bytes(ARM64_ELF)  # as `make assets` leaves it on arm64
    x64 = ROOT / "node_modules" / "@esbuild" / "linux-x64" / "bin" / "esbuild"
    if build.elf_machine(x64) != build.EM_X86_64:
        pytest.skip("no linux-x64 esbuild in node_modules on this machine")

    def fetch(into: Path) -> Path:  # what `npm pack @esbuild/linux-x64` gives
        shutil.copyfile(x64, into / "fetched")
        return into / "fetched"

    staged = build.stage(assets, tmp_path / "staged", fetch)
    assert build.elf_machine(staged / "esbuild") == build.EM_X86_64

    def wrong(into: Path) -> Path:
        (into / "fetched").write_bytes(ARM64_ELF)
        return into / "fetched"

    with pytest.raises(SystemExit, match="not an x86-64 binary"):
        build.stage(assets, tmp_path / "again", wrong)
