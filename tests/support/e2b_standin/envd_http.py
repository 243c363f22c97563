"""envd's plain HTTP API (``/health``, ``/files``), as ``packages/envd/internal/api`` serves it.

- ``GET /health``: 204, ``Cache-Control: no-store``.
- ``GET /files?path=&username=``: the file's bytes (gzip when the client
  prefers it); 404 ``path '<p>' does not exist``; 400 for a directory.
- ``POST /files?path=&username=``: ``application/octet-stream`` (optionally
  ``Content-Encoding: gzip``, ``path`` required) or ``multipart/form-data``
  (``file`` parts; the part's file name is the path when ``path`` is absent).
  Parent directories are created. Answers ``[{"name", "path", "type": "file"}]``.
- Both accept the sandbox's access token in ``X-Access-Token`` or a ``v1_``
  signature in the query (``signature``, ``signature_expiration``), like envd's
  ``validateSigning``.

Errors are envd's ``{"code": <status>, "message": <text>}``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.e2b_standin.paths import DEFAULT_USER, PathError, SandboxFs, resolve
from tests.support.e2b_standin.records import SandboxRecord
from tests.support.e2b_standin.state import StandInState

logger = logging.getLogger(__name__)

READ_CHUNK = 64 * 1024


class EnvdHttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def envd_error(status: int, message: str) -> JSONResponse:
    """envd's ``jsonError``."""
    return JSONResponse(
        {"code": status, "message": message},
        status,
        headers={"X-Content-Type-Options": "nosniff"},
        media_type="application/json; charset=utf-8",
    )


def signature(path: str, operation: str, user: str, token: str, expiration: int | None) -> str:
    """envd's ``generateSignature`` (what ``e2b.sandbox.signature.get_signature`` computes)."""
    raw = f"{path}:{operation}:{user}:{token}"
    if expiration is not None:
        raw += f":{expiration}"
    digest = hashlib.sha256(raw.encode()).digest()
    return "v1_" + base64.b64encode(digest).rstrip(b"=").decode()


def check_access(request: Request, record: SandboxRecord, operation: str) -> None:
    """envd's ``validateSigning`` for ``/files``."""
    params = request.query_params
    header = request.headers.get("x-access-token")
    if header:
        if not hmac.compare_digest(header, record.envd_access_token):
            raise EnvdHttpError(401, "access token present in header but does not match")
        return
    given = params.get("signature")
    if given is None:
        raise EnvdHttpError(401, "missing signature query parameter")
    raw_expiration = params.get("signature_expiration")
    expiration = int(raw_expiration) if raw_expiration else None
    expected = signature(
        params.get("path", ""),
        operation,
        params.get("username", ""),
        record.envd_access_token,
        expiration,
    )
    if not hmac.compare_digest(given, expected):
        raise EnvdHttpError(401, "invalid signature")
    if expiration is not None and expiration < time.time():
        raise EnvdHttpError(401, "signature is already expired")


def request_user(request: Request, record: SandboxRecord) -> str:
    user = request.query_params.get("username") or DEFAULT_USER
    if user not in record.users:
        raise EnvdHttpError(401, f"error looking up user '{user}': user: unknown user {user}")
    return user


def prefers_gzip(accept_encoding: str) -> bool:
    """envd's ``parseAcceptEncoding``: gzip when it is the best acceptable encoding."""
    best: tuple[float, str] | None = None
    for item in accept_encoding.split(","):
        name, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 1.0
        name = name.strip().lower()
        if (
            quality > 0
            and name in ("gzip", "identity", "*")
            and (best is None or quality > best[0])
        ):
            best = (quality, name)
    return best is not None and best[1] == "gzip"


async def gzip_file(path: anyio.Path) -> AsyncIterator[bytes]:
    compressor = zlib.compressobj(wbits=31)
    async with await anyio.open_file(path, "rb") as f:
        while chunk := await f.read(READ_CHUNK):
            if out := compressor.compress(chunk):
                yield out
    yield compressor.flush()


class EnvdHttp:
    """``/health`` and ``/files`` of one stand-in; the sandbox comes from the proxy layer."""

    def __init__(self, state: StandInState) -> None:
        self.state = state

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/health", self.health, methods=["GET"]),
                Route("/files", self.download, methods=["GET"]),
                Route("/files", self.upload, methods=["POST"]),
            ]
        )

    def _sandbox(self, request: Request) -> SandboxRecord:
        record = self.state.live(request.scope["state"]["sandbox_id"])
        if record is None:  # ended while the request was on its way
            raise EnvdHttpError(502, "The sandbox was not found")
        return record

    async def health(self, request: Request) -> Response:
        """``GET /health``."""
        return Response(status_code=204, headers={"Cache-Control": "no-store"})

    async def download(self, request: Request) -> Response:
        """``GET /files``: read a file."""
        try:
            record = self._sandbox(request)
            check_access(request, record, "read")
            user = request_user(request, record)
            path = request.query_params.get("path", "")
            try:
                sandbox_path = resolve(path, user)
            except PathError as e:
                raise EnvdHttpError(400, f"error expanding and resolving path '{path}': {e}") from e
            host_path = anyio.Path(record.host_path(sandbox_path))
            if not await host_path.exists():
                raise EnvdHttpError(404, f"path '{sandbox_path}' does not exist")
            if await host_path.is_dir():
                raise EnvdHttpError(400, f"path '{sandbox_path}' is a directory")
        except EnvdHttpError as e:
            return envd_error(e.status, e.message)
        if prefers_gzip(request.headers.get("accept-encoding", "")):
            return StreamingResponse(
                gzip_file(host_path),
                media_type="application/octet-stream",
                headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"},
            )
        return FileResponse(host_path, headers={"Vary": "Accept-Encoding"})

    async def upload(self, request: Request) -> Response:
        """``POST /files``: write one file (octet-stream) or several (multipart)."""
        try:
            record = self._sandbox(request)
            check_access(request, record, "write")
            user = request_user(request, record)
            metadata = {
                name[len("x-metadata-") :].lower(): value
                for name, value in request.headers.items()
                if name.lower().startswith("x-metadata-") and len(name) > len("x-metadata-")
            }
            media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if media_type == "application/octet-stream":
                written = [await self._upload_raw(request, record, user, metadata)]
            elif media_type.startswith("multipart/"):
                written = await self._upload_multipart(request, record, user, metadata)
            else:
                raise EnvdHttpError(
                    400,
                    f"unsupported content type: {request.headers.get('content-type', '')}, "
                    "expected multipart/form-data or application/octet-stream",
                )
        except EnvdHttpError as e:
            return envd_error(e.status, e.message)
        return JSONResponse(written)

    def _target(self, record: SandboxRecord, path: str, user: str) -> tuple[str, anyio.Path]:
        fs = SandboxFs(record.root)
        try:
            sandbox_path, host_path = fs.resolve(path, user)
        except PathError as e:
            raise EnvdHttpError(400, f"error resolving path: {e}") from e
        if host_path.is_dir():
            raise EnvdHttpError(400, f"path is a directory: {sandbox_path}")
        try:
            for created in fs.ensure_dirs(sandbox_path.rsplit("/", 1)[0] or "/"):
                record.chown(created, user)
        except NotADirectoryError as e:
            raise EnvdHttpError(500, f"error ensuring directories: {e}") from e
        return sandbox_path, anyio.Path(host_path)

    async def _written(
        self,
        record: SandboxRecord,
        sandbox_path: str,
        host_path: anyio.Path,
        metadata: dict[str, str],
        user: str,
    ) -> dict[str, Any]:
        record.files_written.append(sandbox_path)
        record.chown(Path(host_path), user)
        # What was sent, kept even after the sandbox deletes the file (for secret checks).
        record.file_contents.append((sandbox_path, await host_path.read_bytes()))
        entry: dict[str, Any] = {}
        if metadata:
            record.file_metadata[sandbox_path] = dict(metadata)
            entry["metadata"] = dict(metadata)
        entry.update(name=sandbox_path.rsplit("/", 1)[-1], path=sandbox_path, type="file")
        logger.info("sandbox %s: wrote %s", record.sandbox_id, sandbox_path)
        return entry

    async def _upload_raw(
        self, request: Request, record: SandboxRecord, user: str, metadata: dict[str, str]
    ) -> dict[str, Any]:
        path = request.query_params.get("path")
        if path is None:
            raise EnvdHttpError(400, "path query parameter is required for raw body upload")
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            raise EnvdHttpError(
                400,
                "error decompressing request body: unsupported Content-Encoding: "
                f"{encoding}, supported: [gzip]",
            )
        sandbox_path, host_path = self._target(record, path, user)
        decompressor = zlib.decompressobj(wbits=47) if encoding == "gzip" else None
        try:
            async with await anyio.open_file(host_path, "wb") as f:
                async for chunk in request.stream():
                    await f.write(decompressor.decompress(chunk) if decompressor else chunk)
                if decompressor is not None:
                    await f.write(decompressor.flush())
        except zlib.error as e:
            raise EnvdHttpError(400, f"error decompressing request body: {e}") from e
        return await self._written(record, sandbox_path, host_path, metadata, user)

    async def _upload_multipart(
        self, request: Request, record: SandboxRecord, user: str, metadata: dict[str, str]
    ) -> list[dict[str, Any]]:
        path = request.query_params.get("path")
        written: list[dict[str, Any]] = []
        async with request.form() as form:
            for name, part in form.multi_items():
                if name != "file" or not isinstance(part, UploadFile):
                    continue
                target = path if path is not None else part.filename or ""
                sandbox_path, host_path = self._target(record, target, user)
                if any(entry["path"] == sandbox_path for entry in written):
                    raise EnvdHttpError(
                        400,
                        "you cannot upload multiple files to the same path "
                        f"'{sandbox_path}' in one upload request, only the first "
                        "specified file was uploaded",
                    )
                async with await anyio.open_file(host_path, "wb") as f:
                    while chunk := await part.read(READ_CHUNK):
                        await f.write(chunk)
                written.append(await self._written(record, sandbox_path, host_path, metadata, user))
        return written
