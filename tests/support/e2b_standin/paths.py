"""Sandbox paths as envd resolves them, mapped into one host directory per sandbox.

envd resolves a path the SDK sends like this (``permissions.ExpandAndResolve``):
an empty path is the default working directory (the user's home, ``/home/user``),
``~`` and ``~/x`` expand to the home, a relative path is taken from the home, an
absolute path is used as given. The stand-in does the same and then maps the
resulting sandbox path under the sandbox's own root directory on this host, so
``/home/user/x`` is ``<root>/home/user/x`` and ``/tmp/x`` is ``<root>/tmp/x``.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

DEFAULT_USER = "user"


class PathError(ValueError):
    """A path envd would refuse to resolve (``CodeInvalidArgument`` / 400)."""


def home_of(user: str) -> str:
    """The home directory envd's user lookup gives (``/root`` or ``/home/<user>``)."""
    return "/root" if user == "root" else f"/home/{user}"


def resolve(path: str, user: str) -> str:
    """The absolute, normalised sandbox path for ``path`` as ``user`` sends it."""
    home = home_of(user)
    if not path:
        path = home
    if path.startswith("~"):
        if len(path) > 1 and path[1] != "/":
            raise PathError(
                f"failed to expand path '{path}' for user '{user}': "
                "cannot expand user-specific home dir"
            )
        path = home + path[1:]
    if not path.startswith("/"):
        path = posixpath.join(home, path)
    # normpath cannot climb above "/", so a sandbox path never leaves its root.
    return posixpath.normpath(path).replace("//", "/")


class SandboxFs:
    """Maps sandbox paths to host paths under one sandbox's root directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def host(self, sandbox_path: str) -> Path:
        """The host path of an absolute, normalised sandbox path."""
        return self.root / sandbox_path.lstrip("/")

    def resolve(self, path: str, user: str) -> tuple[str, Path]:
        """Resolve ``path`` like envd does; returns (sandbox path, host path)."""
        sandbox_path = resolve(path, user)
        return sandbox_path, self.host(sandbox_path)

    def sandbox_path(self, host_path: Path) -> str:
        """The sandbox path of a host path inside this sandbox's root."""
        relative = host_path.relative_to(self.root).as_posix()
        return "/" if relative == "." else "/" + relative

    def ensure_dirs(self, sandbox_dir: str) -> list[Path]:
        """Create a sandbox directory and its parents (envd ``EnsureDirs``); the host
        paths of those it created."""
        current = self.root
        created = []
        for part in [p for p in sandbox_dir.split("/") if p]:
            current = current / part
            if current.exists() and not current.is_dir():
                raise NotADirectoryError(f"path is a file: {self.sandbox_path(current)}")
            if not current.exists():
                current.mkdir()
                created.append(current)
        return created
