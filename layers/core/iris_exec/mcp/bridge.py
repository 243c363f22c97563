"""`iris-exec mcp`: an MCP server over stdio that forwards every request to the service's
`/mcp`, so a desktop client (Claude Desktop, Claude Code, Cursor) adds the service with one
JSON snippet. The API key comes from the environment, never from the command line (which
other users of the machine can read)."""

from __future__ import annotations

import logging
from typing import Any

import httpx2
import mcp_types as types
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from iris_exec import __version__

log = logging.getLogger(__name__)

#: Connecting and plain requests; a tool call may last as long as its execution.
CONNECT_TIMEOUT_S = 10.0


def endpoint(url: str, tools: str) -> str:
    """The /mcp address of the service at ``url``, for the ``tools`` surface."""
    base = url.rstrip("/")
    if not base.endswith("/mcp"):
        base += "/mcp"
    return base + ("?tools=code" if tools == "code" else "")


class BridgeError(Exception):
    """The service cannot be used: unreachable, or it refused the key."""


async def check(http: httpx2.AsyncClient, address: str) -> None:
    """One plain request first, so that a wrong URL or key is said in the service's words
    (the MCP client only knows that "the server returned an error")."""
    probe = {"jsonrpc": "2.0", "id": 0, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream"}
    try:
        response = await http.post(address, json=probe, headers=headers)
    except httpx2.HTTPError as exc:
        raise BridgeError(f"cannot reach {address}: {exc}") from exc
    if response.status_code != 200:
        try:
            message = str(response.json().get("message"))
        except ValueError:
            message = response.text[:200]
        raise BridgeError(f"{address} answered {response.status_code}: {message}")


async def serve(url: str, api_key: str, tools: str) -> None:
    """Serve MCP on stdin/stdout, forwarding to ``url`` with ``api_key`` until stdin ends."""
    headers = {"Authorization": f"Bearer {api_key}", "User-Agent": f"iris-exec-mcp/{__version__}"}
    timeout = httpx2.Timeout(CONNECT_TIMEOUT_S, read=None)
    address = endpoint(url, tools)
    async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
        await check(http, address)
        await _forward(http, address, url)


async def _forward(http: httpx2.AsyncClient, address: str, url: str) -> None:
    async with (
        streamable_http_client(address, http_client=http) as (read, write),
        ClientSession(read, write) as upstream,
    ):
        hello = await upstream.initialize()

        async def list_tools(
            ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
        ) -> types.ListToolsResult:
            return await upstream.list_tools(params=params)

        async def call_tool(
            ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
        ) -> types.CallToolResult:
            meta: dict[str, object] = dict(ctx.meta or {})
            wants_progress = (meta.get("progress_token") or meta.get("progressToken")) is not None

            async def progress(progress: float, total: float | None, message: str | None) -> None:
                await ctx.session.report_progress(progress, total, message)

            try:
                return await upstream.call_tool(
                    params.name,
                    params.arguments or {},
                    progress_callback=progress if wants_progress else None,
                )
            except Exception as exc:  # the service refused or could not be reached
                log.warning("forwarding %s failed: %s", params.name, exc)
                text = f"The IRIS service at {url} did not answer {params.name}: {exc}"
                return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)

        server: Server[Any] = Server(
            hello.server_info.name,
            version=hello.server_info.version,
            instructions=hello.instructions,
            on_list_tools=list_tools,
            on_call_tool=call_tool,
        )
        async with stdio_server() as (stdin, stdout):
            await server.run(stdin, stdout, server.create_initialization_options())
