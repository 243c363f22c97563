"""The console: the built page and its two files (console/build.mjs writes them into the
assets), served at ``/`` on the API's own origin under a strict Content-Security-Policy.

The page only loads its own script and stylesheet and talks to this origin; it reads
everything through the public API, with the key the user typed (kept in sessionStorage)."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from iris_exec.domain.errors import NotFound

CONSOLE_DIR = Path(__file__).resolve().parents[1] / "assets" / "console"

#: No inline script, nothing from elsewhere, no framing, no forms posting away. The one
#: inline thing allowed is the editor's own <style> element, by a nonce made per page load
#: (CodeMirror mounts its styles that way; the page hands it the nonce from a meta tag).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'nonce-{nonce}'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
NONCE_PLACEHOLDER = b"{{style-nonce}}"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
#: The files the page is made of (the script is split in a few, named by esbuild), and
#: their types. Nothing else is served.
FILE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}\.(js|css)$")
TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
}


def _file(name: str, directory: Path) -> Response:
    path = directory / name
    if not (name == "index.html" or FILE_NAME.match(name)) or not path.is_file():
        raise NotFound(
            "The console is not built here; run `make assets`"
            if name == "index.html"
            else f"No console file {name}"
        )
    body = path.read_bytes()
    nonce = secrets.token_urlsafe(18)
    # The page itself is always fetched fresh (it carries its nonce); the script and the
    # stylesheet may be cached briefly.
    if name == "index.html":
        body = body.replace(NONCE_PLACEHOLDER, nonce.encode())
        cache = "no-store"
    else:
        cache = "public, max-age=300"
    return Response(
        body,
        media_type=TYPES[name.rpartition(".")[2]],
        headers={
            **SECURITY_HEADERS,
            "Content-Security-Policy": CONTENT_SECURITY_POLICY.format(nonce=nonce),
            "Cache-Control": cache,
        },
    )


def add_console_routes(app: FastAPI, directory: Path = CONSOLE_DIR) -> None:
    @app.get("/", include_in_schema=False)
    async def console_page(request: Request) -> Response:
        # Behind API Gateway the page is https://host/<stage>: without the final slash its
        # relative files would resolve outside the stage (a blank page), so add it.
        event = request.scope.get("aws.event") or {}
        path = str((event.get("requestContext") or {}).get("path") or "")
        if path and not path.endswith("/"):
            return RedirectResponse(path + "/", status_code=301)
        return _file("index.html", directory)

    @app.get("/console/{name}", include_in_schema=False)
    async def console_file(name: str) -> Response:
        return _file(name, directory)


# -- the API reference ------------------------------------------------------------------

DOCS_DIR = Path(__file__).resolve().parents[1] / "assets" / "docs"
DOCS_FILES = {"swagger-ui-bundle.js", "swagger-ui.css", "docs.js"}
#: Swagger UI sets styles inline; nothing else is loosened.
DOCS_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def add_docs_routes(app: FastAPI, directory: Path = DOCS_DIR) -> None:
    """`/docs`: Swagger UI served from this server (offline, and behind any firewall)."""

    def serve(name: str) -> Response:
        path = directory / name
        if not path.is_file():
            raise NotFound("The API reference is not built here; run `make assets`")
        return Response(
            path.read_bytes(),
            media_type=TYPES[name.rpartition(".")[2]],
            headers={
                **SECURITY_HEADERS,
                "Content-Security-Policy": DOCS_SECURITY_POLICY,
                "Cache-Control": "no-store" if name == "index.html" else "public, max-age=300",
            },
        )

    @app.get("/docs", include_in_schema=False)
    async def docs_page() -> Response:
        return serve("index.html")

    @app.get("/docs/{name}", include_in_schema=False)
    async def docs_file(name: str) -> Response:
        if name not in DOCS_FILES:
            raise NotFound(f"No file {name} in the API reference")
        return serve(name)
