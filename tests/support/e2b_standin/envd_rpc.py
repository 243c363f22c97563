"""envd's Connect RPC services (``process.Process``, ``filesystem.Filesystem``).

The wire format (Connect protocol, JSON codec, server-streaming envelopes, end
of stream errors) is connectrpc's own server, driven by the ASGI applications
generated into the SDK (``e2b/envd/*/..._connect.py``); only the handlers are
written here, after ``packages/envd/internal/services`` of e2b-dev/infra.

Not implemented (answered ``unimplemented`` by the generated base classes or
explicitly): PTYs (``Start`` with ``pty``, ``Update``), ``StreamInput``, and
the filesystem watchers.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import posixpath
import pwd
import shutil
import signal
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from e2b.envd.filesystem import filesystem_connect, filesystem_pb
from e2b.envd.process import process_connect, process_pb
from protobuf import Oneof
from protobuf.wkt.google.protobuf.timestamp_pb import Timestamp

from tests.support.e2b_standin.paths import DEFAULT_USER, PathError, SandboxFs, home_of
from tests.support.e2b_standin.processes import ProcessTable, end_message, start_event
from tests.support.e2b_standin.records import CommandRecord, SandboxRecord
from tests.support.e2b_standin.state import StandInState

logger = logging.getLogger(__name__)

#: envd's default when the SDK sends no ``Keepalive-Ping-Interval``.
DEFAULT_KEEPALIVE_S = 60.0
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def sandbox_gone(sandbox_id: str) -> ConnectError:
    return ConnectError(
        Code.UNAVAILABLE,
        f"the connection to sandbox {sandbox_id} ended before the stream completed",
    )


def auth_user(ctx: RequestContext[Any, Any], record: SandboxRecord) -> str:
    """The user of ``Authorization: Basic base64(<user>:)`` (envd ``AuthenticateUsername``)."""
    header = ctx.request_headers.get("authorization")
    if not header:
        return DEFAULT_USER
    scheme, _, encoded = header.partition(" ")
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as e:
        raise ConnectError(Code.UNAUTHENTICATED, "invalid authorization header") from e
    user = decoded.partition(":")[0]
    if scheme.lower() != "basic" or user not in record.users:
        raise ConnectError(Code.UNAUTHENTICATED, f"invalid username: '{user}'")
    return user


def header_seconds(ctx: RequestContext[Any, Any], name: str, scale: float) -> float | None:
    value = ctx.request_headers.get(name)
    if not value:
        return None
    try:
        return int(value) / scale
    except ValueError as e:
        raise ConnectError(Code.INVALID_ARGUMENT, f"invalid {name} header: {value!r}") from e


class _SandboxBound:
    """Finds the sandbox a request is for (the proxy layer put its id in the headers)."""

    def __init__(self, state: StandInState) -> None:
        self.state = state

    def _sandbox(self, ctx: RequestContext[Any, Any]) -> tuple[SandboxRecord, ProcessTable]:
        sandbox_id = ctx.request_headers.get("e2b-sandbox-id", "")
        record = self.state.live(sandbox_id)
        if record is None:
            raise sandbox_gone(sandbox_id)
        return record, self.state.processes[sandbox_id]


class ProcessService(_SandboxBound, process_connect.Process):
    """``process.Process``: commands run for real on this host."""

    async def list(
        self,
        request: process_pb.ListRequest,
        ctx: RequestContext[process_pb.ListRequest, process_pb.ListResponse],
    ) -> process_pb.ListResponse:
        """``List``: the running processes with the config they were started with."""
        _, table = self._sandbox(ctx)
        return process_pb.ListResponse(
            processes=[
                process_pb.ProcessInfo(config=p.config, pid=p.pid, tag=p.tag)
                for p in table.running.values()
            ]
        )

    async def start(
        self,
        request: process_pb.StartRequest,
        ctx: RequestContext[process_pb.StartRequest, process_pb.StartResponse],
    ) -> AsyncIterator[process_pb.StartResponse]:
        """``Start``: a start event with the pid, data events, then the end event."""
        record, table = self._sandbox(ctx)
        if request.pty is not None:
            raise ConnectError(Code.UNIMPLEMENTED, "PTYs are not supported by the E2B stand-in")
        user = auth_user(ctx, record)
        config = request.process or process_pb.ProcessConfig()
        fs = SandboxFs(record.root)
        try:
            cwd, cwd_host = fs.resolve(config.cwd if config.has_field("cwd") else "", user)
        except PathError as e:
            raise ConnectError(Code.INVALID_ARGUMENT, str(e)) from e
        if cwd == home_of(user):
            for created in fs.ensure_dirs(cwd):  # a fresh sandbox has every user's home
                record.chown(created, user)
        if not cwd_host.is_dir():
            raise ConnectError(Code.INVALID_ARGUMENT, f"cwd '{cwd}' does not exist")
        timeout_s = header_seconds(ctx, "connect-timeout-ms", 1000)
        keepalive_s = header_seconds(ctx, "keepalive-ping-interval", 1) or DEFAULT_KEEPALIVE_S
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        stdin = not request.has_field("stdin") or request.stdin
        argv = [config.cmd, *config.args]
        command = CommandRecord(
            pid=0,
            cmd=argv[-1] if argv[:3] == ["/bin/bash", "-l", "-c"] else " ".join(argv),
            argv=argv,
            envs=dict(config.envs),
            cwd=cwd,
            user=user,
            tag=request.tag if request.has_field("tag") else None,
            stdin=stdin,
            timeout_s=timeout_s,
        )
        jail = self.state.jails.get(record.sandbox_id)
        env = {
            "PATH": DEFAULT_PATH if jail else os.environ.get("PATH", DEFAULT_PATH),
            "HOME": home_of(user) if jail else str(fs.host(home_of(user))),
            "USER": user,
            "LOGNAME": user,
            "E2B_SANDBOX": "true",
            "E2B_SANDBOX_ID": record.sandbox_id,
            "E2B_TEMPLATE_ID": record.template_id,
            **record.envs,
            **config.envs,
        }
        if jail is not None:
            argv = jail.argv(user, cwd, argv)
        process = await table.spawn(
            config=config, record=command, argv=argv, cwd=cwd_host, env=env, stdin=stdin
        )
        record.commands.append(command)
        logger.info("sandbox %s: pid %d runs %r", record.sandbox_id, process.pid, command.cmd)
        subscriber = process.subscribe()
        process.run(deadline=deadline)
        try:
            yield process_pb.StartResponse(event=start_event(process.pid))
            async for event in process.events(
                subscriber,
                sandbox_id=record.sandbox_id,
                deadline=deadline,
                keepalive_s=keepalive_s,
            ):
                yield process_pb.StartResponse(event=event)
        finally:
            process.unsubscribe(subscriber)

    async def connect(
        self,
        request: process_pb.ConnectRequest,
        ctx: RequestContext[process_pb.ConnectRequest, process_pb.ConnectResponse],
    ) -> AsyncIterator[process_pb.ConnectResponse]:
        """``Connect``: attach to a running process (or one that ended in the last 30 s)."""
        record, table = self._sandbox(ctx)
        try:
            process = table.find(request.process)
        except ConnectError:
            ended = table.find_ended(request.process)
            if ended is None or ended.end is None:
                raise
            yield process_pb.ConnectResponse(event=start_event(ended.pid))
            yield process_pb.ConnectResponse(event=end_message(ended.end))
            return
        timeout_s = header_seconds(ctx, "connect-timeout-ms", 1000)
        keepalive_s = header_seconds(ctx, "keepalive-ping-interval", 1) or DEFAULT_KEEPALIVE_S
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        subscriber = process.subscribe()
        # Ended but not yet retired: its end event went out before this subscription.
        end = process.end
        try:
            yield process_pb.ConnectResponse(event=start_event(process.pid))
            if end is not None:
                yield process_pb.ConnectResponse(event=end_message(end))
                return
            async for event in process.events(
                subscriber,
                sandbox_id=record.sandbox_id,
                deadline=deadline,
                keepalive_s=keepalive_s,
            ):
                yield process_pb.ConnectResponse(event=event)
        finally:
            process.unsubscribe(subscriber)

    async def send_input(
        self,
        request: process_pb.SendInputRequest,
        ctx: RequestContext[process_pb.SendInputRequest, process_pb.SendInputResponse],
    ) -> process_pb.SendInputResponse:
        """``SendInput``: write to the process's stdin."""
        _, table = self._sandbox(ctx)
        process = table.find(request.process)
        match request.input.input if request.input is not None else None:
            case Oneof(field="stdin", value=data):
                process.write_stdin(data)
            case Oneof(field="pty"):
                raise ConnectError(
                    Code.INTERNAL,
                    "error writing to tty: tty not assigned to process — "
                    "input should be written to the stdin, not the tty",
                )
            case other:
                raise ConnectError(Code.UNIMPLEMENTED, f"invalid input type {other!r}")
        return process_pb.SendInputResponse()

    async def send_signal(
        self,
        request: process_pb.SendSignalRequest,
        ctx: RequestContext[process_pb.SendSignalRequest, process_pb.SendSignalResponse],
    ) -> process_pb.SendSignalResponse:
        """``SendSignal``: SIGKILL or SIGTERM (what ``commands.kill`` sends is SIGKILL)."""
        _, table = self._sandbox(ctx)
        process = table.find(request.process)
        if request.signal == process_pb.Signal.SIGKILL:
            sig = signal.SIGKILL
        elif request.signal == process_pb.Signal.SIGTERM:
            sig = signal.SIGTERM
        else:
            raise ConnectError(Code.UNIMPLEMENTED, f"invalid signal: {request.signal}")
        process.record.signals.append(sig.name)
        process.signal(sig)
        return process_pb.SendSignalResponse()

    async def close_stdin(
        self,
        request: process_pb.CloseStdinRequest,
        ctx: RequestContext[process_pb.CloseStdinRequest, process_pb.CloseStdinResponse],
    ) -> process_pb.CloseStdinResponse:
        """``CloseStdin``: EOF on the process's stdin."""
        _, table = self._sandbox(ctx)
        table.find(request.process).close_stdin()
        return process_pb.CloseStdinResponse()


def go_permissions(mode: int) -> str:
    """Go's ``FileMode.String()`` for the types the SDK sees (``L`` marks a symlink)."""
    text = stat.filemode(mode)
    return "L" + text[1:] if stat.S_ISLNK(mode) else text


def entry_info(
    fs: SandboxFs, record: SandboxRecord, sandbox_path: str, user: str
) -> filesystem_pb.EntryInfo:
    """envd's ``entryInfo``: Lstat, and for a symlink the type and mode of its target."""
    host_path = fs.host(sandbox_path)
    try:
        info = host_path.lstat()
    except FileNotFoundError as e:
        raise ConnectError(Code.NOT_FOUND, f"file not found: {e}") from e
    target_mode = info.st_mode
    symlink_target: str | None = None
    if stat.S_ISLNK(info.st_mode):
        target = Path(os.path.realpath(host_path))
        try:
            symlink_target = fs.sandbox_path(target)
        except ValueError:
            symlink_target = str(target)
        try:
            target_mode = target.stat().st_mode
        except OSError:
            target_mode = 0
    if stat.S_ISDIR(target_mode):
        file_type = filesystem_pb.FileType.DIRECTORY
    elif stat.S_ISREG(target_mode):
        file_type = filesystem_pb.FileType.FILE
    else:
        file_type = filesystem_pb.FileType.UNSPECIFIED
    if record.jailed:
        # Owners are the sandbox's users (its /etc/passwd), not this host's.
        names = {uid: name for name, uid in record.users.items()}
        owner = names.get(info.st_uid, str(info.st_uid))
    else:
        try:
            owner = pwd.getpwuid(info.st_uid).pw_name
        except KeyError:
            owner = str(info.st_uid)
        # Files made through envd belong to the user who made them; on this host the
        # stand-in's own user owns everything, so report the requesting user instead.
        owner = user if owner == pwd.getpwuid(os.getuid()).pw_name else owner
    return filesystem_pb.EntryInfo(
        name=posixpath.basename(sandbox_path) or "/",
        type=file_type,
        path=sandbox_path,
        size=info.st_size,
        mode=stat.S_IMODE(target_mode),
        permissions=go_permissions(info.st_mode),
        owner=owner,
        group=owner,
        modified_time=Timestamp(
            seconds=int(info.st_mtime_ns // 1_000_000_000),
            nanos=int(info.st_mtime_ns % 1_000_000_000),
        ),
        symlink_target=symlink_target,
        metadata=record.file_metadata.get(sandbox_path),
        is_symlink=stat.S_ISLNK(info.st_mode),
    )


class FilesystemService(_SandboxBound, filesystem_connect.Filesystem):
    """``filesystem.Filesystem``: stat, list, make_dir, move, remove in the sandbox's root."""

    def _resolve(
        self, ctx: RequestContext[Any, Any], path: str
    ) -> tuple[SandboxRecord, SandboxFs, str, str]:
        record, _ = self._sandbox(ctx)
        user = auth_user(ctx, record)
        fs = SandboxFs(record.root)
        try:
            sandbox_path, _ = fs.resolve(path, user)
        except PathError as e:
            raise ConnectError(Code.INVALID_ARGUMENT, str(e)) from e
        return record, fs, sandbox_path, user

    async def stat(
        self,
        request: filesystem_pb.StatRequest,
        ctx: RequestContext[filesystem_pb.StatRequest, filesystem_pb.StatResponse],
    ) -> filesystem_pb.StatResponse:
        """``Stat``: entry info, ``not_found`` when missing."""
        record, fs, path, user = self._resolve(ctx, request.path)
        return filesystem_pb.StatResponse(entry=entry_info(fs, record, path, user))

    async def make_dir(
        self,
        request: filesystem_pb.MakeDirRequest,
        ctx: RequestContext[filesystem_pb.MakeDirRequest, filesystem_pb.MakeDirResponse],
    ) -> filesystem_pb.MakeDirResponse:
        """``MakeDir``: with parents; ``already_exists`` for an existing directory."""
        record, fs, path, user = self._resolve(ctx, request.path)
        host = fs.host(path)
        if host.is_dir():
            raise ConnectError(Code.ALREADY_EXISTS, f"directory already exists: {path}")
        if host.exists():
            raise ConnectError(
                Code.INVALID_ARGUMENT, f"path already exists but it is not a directory: {path}"
            )
        try:
            for created in fs.ensure_dirs(path):
                record.chown(created, user)
        except NotADirectoryError as e:
            raise ConnectError(Code.INTERNAL, str(e)) from e
        return filesystem_pb.MakeDirResponse(entry=entry_info(fs, record, path, user))

    async def move(
        self,
        request: filesystem_pb.MoveRequest,
        ctx: RequestContext[filesystem_pb.MoveRequest, filesystem_pb.MoveResponse],
    ) -> filesystem_pb.MoveResponse:
        """``Move``: rename, creating the destination's parents."""
        record, fs, source, user = self._resolve(ctx, request.source)
        _, _, destination, _ = self._resolve(ctx, request.destination)
        try:
            for created in fs.ensure_dirs(posixpath.dirname(destination)):
                record.chown(created, user)
        except NotADirectoryError as e:
            raise ConnectError(Code.INTERNAL, str(e)) from e
        try:
            fs.host(source).rename(fs.host(destination))
        except FileNotFoundError as e:
            raise ConnectError(Code.NOT_FOUND, f"source file not found: {e}") from e
        except OSError as e:
            raise ConnectError(Code.INTERNAL, f"error renaming: {e}") from e
        return filesystem_pb.MoveResponse(entry=entry_info(fs, record, destination, user))

    async def list_dir(
        self,
        request: filesystem_pb.ListDirRequest,
        ctx: RequestContext[filesystem_pb.ListDirRequest, filesystem_pb.ListDirResponse],
    ) -> filesystem_pb.ListDirResponse:
        """``ListDir``: entries down to ``depth`` (default 1), in lexical walk order."""
        record, fs, path, user = self._resolve(ctx, request.path)
        host = fs.host(path)
        if not host.exists():
            raise ConnectError(Code.NOT_FOUND, f"path not found: {path}")
        if not host.is_dir():
            raise ConnectError(Code.INVALID_ARGUMENT, f"path is not a directory: {path}")
        depth = request.depth or 1
        entries: list[filesystem_pb.EntryInfo] = []

        def walk(directory: str, level: int) -> None:
            for name in sorted(os.listdir(fs.host(directory))):
                child = posixpath.join(directory, name)
                entries.append(entry_info(fs, record, child, user))
                if level < depth and fs.host(child).is_dir() and not fs.host(child).is_symlink():
                    walk(child, level + 1)

        walk(path, 1)
        return filesystem_pb.ListDirResponse(entries=entries)

    async def remove(
        self,
        request: filesystem_pb.RemoveRequest,
        ctx: RequestContext[filesystem_pb.RemoveRequest, filesystem_pb.RemoveResponse],
    ) -> filesystem_pb.RemoveResponse:
        """``Remove``: ``os.RemoveAll`` (a missing path is not an error)."""
        _, fs, path, _ = self._resolve(ctx, request.path)
        host = fs.host(path)
        try:
            if host.is_dir() and not host.is_symlink():
                await asyncio.to_thread(shutil.rmtree, host)
            else:
                host.unlink(missing_ok=True)
        except OSError as e:
            raise ConnectError(Code.INTERNAL, f"error removing file or directory: {e}") from e
        return filesystem_pb.RemoveResponse()
