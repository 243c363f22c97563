"""E2B's control-plane REST API (``https://api.e2b.app``), as far as the SDK uses it.

Shapes follow ``spec/openapi.yml`` of e2b-dev/infra and the SDK's generated
client (``e2b/api/client``); behaviour follows the API's handlers:

- every route needs ``X-API-Key``; a missing or unknown key is a 401 with the
  auth middleware's message;
- errors are ``{"code": <status>, "message": <text>}``;
- a sandbox that is not running is 404 ``Sandbox "<id>" doesn't exist or you
  don't have access to it``;
- ``timeout`` is absolute from now: on create, on ``POST /sandboxes/{id}/timeout``
  (which may shorten it) and on connect (which only ever lengthens it).

Injected faults: an armed 429 answers the next request on any route before its
handler runs; an armed create failure answers a create, before or after the
sandbox is made (see ``E2BStandIn.fail_next_create``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.e2b_standin.records import CreateRequestRecord, SandboxRecord
from tests.support.e2b_standin.state import (
    CLIENT_ID,
    DEFAULT_TIMEOUT_S,
    IdempotentCreate,
    StandInState,
)

logger = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]

API_KEY_PREFIX = "e2b_"
INVALID_API_KEY = "Invalid API key, please visit https://e2b.dev/docs/api-key for more information."
IDEMPOTENCY_KEY = re.compile(r"[a-z0-9-]{1,255}")
LIST_DEFAULT_LIMIT = 100
LIST_MAX_LIMIT = 100
CPU_COUNT = 2
MEMORY_MB = 512
DISK_SIZE_MB = 2048
ALL_TRAFFIC = "0.0.0.0/0"
MAX_HEADER_VALUE = 2048


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The API's error body (``apierrors.SendAPIStoreError``)."""
    return JSONResponse({"code": status, "message": message}, status, headers=headers)


def not_found(sandbox_id: str) -> JSONResponse:
    return error(
        404, f"Sandbox {json.dumps(sandbox_id)} doesn't exist or you don't have access to it"
    )


def timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as Go marshals ``time.Time``."""
    return value.isoformat().replace("+00:00", "Z")


def sandbox_json(record: SandboxRecord) -> dict[str, Any]:
    """``Sandbox``: the answer to create and connect."""
    return {
        "templateID": record.template_id,
        "sandboxID": record.sandbox_id,
        "alias": record.template_id,
        "clientID": CLIENT_ID,
        "envdVersion": record.envd_version,
        "envdAccessToken": record.envd_access_token,
        "trafficAccessToken": None,
        "domain": None,
    }


def listed_sandbox_json(record: SandboxRecord) -> dict[str, Any]:
    """``ListedSandbox``: one item of ``GET /v2/sandboxes``."""
    return {
        "templateID": record.template_id,
        "alias": record.template_id,
        "sandboxID": record.sandbox_id,
        "clientID": CLIENT_ID,
        "startedAt": timestamp(record.started_at),
        "endAt": timestamp(record.end_at),
        "cpuCount": CPU_COUNT,
        "memoryMB": MEMORY_MB,
        "diskSizeMB": DISK_SIZE_MB,
        "metadata": record.metadata,
        "state": "running",
        "envdVersion": record.envd_version,
        "volumeMounts": [],
    }


def sandbox_detail_json(record: SandboxRecord) -> dict[str, Any]:
    """``SandboxDetail``: the answer to ``GET /sandboxes/{id}``."""
    detail = listed_sandbox_json(record)
    detail.update(
        envdAccessToken=record.envd_access_token,
        allowInternetAccess=record.allow_internet_access,
        domain=None,
        lifecycle={
            "onTimeout": "pause" if record.request.get("autoPause") else "kill",
            "autoResume": bool((record.request.get("autoResume") or {}).get("enabled")),
        },
    )
    if record.network is not None:
        network = dict(record.network)
        proxy = network.get("egressProxy")
        if isinstance(proxy, dict):
            # The API never returns the proxy password.
            network["egressProxy"] = {k: v for k, v in proxy.items() if k != "password"}
        detail["network"] = network
    return detail


def parse_metadata_filter(query: str) -> dict[str, str]:
    """``utils.parseFilters``: ``k=v&k2=v2``, unescaped once more, then key by key."""
    filters: dict[str, str] = {}
    for pair in unquote_plus(query).split("&"):
        parts = pair.split("=")
        if len(parts) != 2:
            raise ValueError("invalid key value pair in query")
        filters[unquote_plus(parts[0])] = unquote_plus(parts[1])
    return filters


def encode_cursor(record: SandboxRecord, ascending: bool) -> str:
    raw = f"{record.started_at.isoformat()}__{record.sandbox_id}"
    if ascending:
        raw += "__asc"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(token: str) -> tuple[datetime, str]:
    parts = base64.urlsafe_b64decode(token.encode()).decode().split("__")
    if len(parts) not in (2, 3):
        raise ValueError("invalid cursor format")
    return datetime.fromisoformat(parts[0]), parts[1]


class ControlPlane:
    """Route handlers; one instance per stand-in."""

    def __init__(self, state: StandInState) -> None:
        self.state = state

    def app(self) -> Starlette:
        guarded = self._guarded
        create = guarded(self.create, records_creates=True)
        routes = [
            Route("/v2/sandboxes", create, methods=["POST"]),
            Route("/sandboxes", create, methods=["POST"]),
            Route("/v2/sandboxes", guarded(self.list_sandboxes), methods=["GET"]),
            Route("/sandboxes", guarded(self.list_sandboxes), methods=["GET"]),
            Route("/sandboxes/{sandbox_id}", guarded(self.get), methods=["GET"]),
            Route("/sandboxes/{sandbox_id}", guarded(self.kill), methods=["DELETE"]),
            Route("/sandboxes/{sandbox_id}/timeout", guarded(self.set_timeout), methods=["POST"]),
            Route("/v2/sandboxes/{sandbox_id}/connect", guarded(self.connect), methods=["POST"]),
            Route("/sandboxes/{sandbox_id}/connect", guarded(self.connect), methods=["POST"]),
            Route("/sandboxes/{sandbox_id}/network", guarded(self.network), methods=["PUT"]),
        ]
        unsupported = [
            ("/sandboxes/{sandbox_id}/pause", "POST"),
            ("/sandboxes/{sandbox_id}/resume", "POST"),
            ("/sandboxes/{sandbox_id}/refreshes", "POST"),
            ("/sandboxes/{sandbox_id}/fork", "POST"),
            ("/sandboxes/{sandbox_id}/snapshots", "POST"),
            ("/sandboxes/{sandbox_id}/metrics", "GET"),
            ("/sandboxes/{sandbox_id}/logs", "GET"),
            ("/v2/sandboxes/{sandbox_id}/logs", "GET"),
            ("/sandboxes/metrics", "GET"),
        ]
        routes += [Route(p, guarded(self.unsupported), methods=[m]) for p, m in unsupported]

        async def http_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, HTTPException)
            return error(exc.status_code, exc.detail)

        return Starlette(routes=routes, exception_handlers={HTTPException: http_error})

    def _guarded(self, handler: Handler, *, records_creates: bool = False) -> Handler:
        """Authenticate, reap expired sandboxes, then answer an armed 429 or run the handler."""

        async def endpoint(request: Request) -> Response:
            key = request.headers.get("x-api-key")
            if key is None:
                return error(401, "Invalid API key. authorization header is missing")
            if not key.startswith(API_KEY_PREFIX):
                return error(401, "authorization header is malformed")
            if key != self.state.api_key:
                return error(401, f"{INVALID_API_KEY}\nCannot get the team for the given API key")
            self.state.reap_expired()
            limit = self.state.take_rate_limit()
            if limit is not None:
                logger.info("injected 429 for %s %s", request.method, request.url.path)
                headers = (
                    {} if limit.retry_after is None else {"Retry-After": str(limit.retry_after)}
                )
                response = error(429, "Rate limit exceeded, please try again later.", headers)
                if records_creates:
                    await self._record_create(request, response.status_code, None, False)
                return response
            return await handler(request)

        return endpoint

    async def _json(self, request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError as e:
            raise HTTPException(400, f"Error when parsing request: {e}") from e
        if not isinstance(body, dict):
            raise HTTPException(400, "Error when parsing request: expected a JSON object")
        return body

    async def _record_create(
        self, request: Request, status: int, sandbox_id: str | None, replayed: bool
    ) -> None:
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        record = CreateRequestRecord(
            path=request.url.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body if isinstance(body, dict) else None,
            status=status,
            sandbox_id=sandbox_id,
            replayed=replayed,
        )
        with self.state.lock:
            self.state.create_requests.append(record)

    async def create(self, request: Request) -> Response:
        """``POST /v2/sandboxes``: 201 ``Sandbox``; a repeated ``Idempotency-Key`` gets it again."""
        key = request.headers.get("idempotency-key")
        if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
            await self._record_create(request, 400, None, False)
            return error(400, "Invalid Idempotency-Key header")
        try:
            body = await self._json(request)
        except HTTPException as e:
            await self._record_create(request, e.status_code, None, False)
            raise
        if not isinstance(body.get("templateID"), str):
            await self._record_create(request, 400, None, False)
            return error(400, "Error when parsing request: templateID is required")
        failure = self.state.take_create_failure()
        if failure is not None and not failure.after_create:
            logger.info("injected %d for create", failure.status)
            await self._record_create(request, failure.status, None, False)
            return error(failure.status, "Injected failure (E2B stand-in)")
        if key is not None and key in self.state.idempotency:
            earlier = self.state.idempotency[key]
            logger.info("create replayed for idempotency key %s: %s", key, earlier.sandbox_id)
            await self._record_create(request, 201, earlier.sandbox_id, True)
            return JSONResponse(earlier.response, 201)
        timeout = body.get("timeout", DEFAULT_TIMEOUT_S)
        if not isinstance(timeout, int) or timeout <= 0:
            await self._record_create(request, 400, None, False)
            return error(400, "Timeout must be greater than 0")
        team = self.state.team
        if timeout > team.max_lifetime_s:
            await self._record_create(request, 400, None, False)
            return error(400, f"Timeout cannot be greater than {team.max_lifetime_s // 3600} hours")
        invalid = self._invalid_network(body.get("network"))
        if invalid is not None:
            await self._record_create(request, 400, None, False)
            return invalid
        if len(self.state.live_sandboxes()) >= team.max_concurrent:
            # ``sandbox_create.go``: the team's concurrent-instance limit.
            await self._record_create(request, 429, None, False)
            return error(
                429,
                "You have reached the maximum number of concurrent E2B sandboxes "
                f"({team.max_concurrent}). If you need more, please contact us at "
                "'https://e2b.dev/docs/getting-help'",
            )
        record = self.state.create_sandbox(body=body, timeout_s=timeout, idempotency_key=key)
        response = sandbox_json(record)
        if key is not None:
            self.state.idempotency[key] = IdempotentCreate(record.sandbox_id, response)
        if self.state.create_latency_s:
            # E2B lists a sandbox as soon as it exists, before the create call returns.
            await asyncio.sleep(self.state.create_latency_s)
        if failure is not None:
            logger.info(
                "injected %d for create after creating %s", failure.status, record.sandbox_id
            )
            await self._record_create(request, failure.status, record.sandbox_id, False)
            return error(failure.status, "Injected failure (E2B stand-in)")
        await self._record_create(request, 201, record.sandbox_id, False)
        return JSONResponse(response, 201)

    async def list_sandboxes(self, request: Request) -> Response:
        """``GET /v2/sandboxes``: running sandboxes, filtered, newest first, paginated."""
        params = request.query_params
        records = self.state.live_sandboxes()
        if "metadata" in params:
            try:
                wanted = parse_metadata_filter(params["metadata"])
            except ValueError as e:
                return error(400, f"Error parsing metadata: error parsing metadata: {e}")
            records = [r for r in records if all(r.metadata.get(k) == v for k, v in wanted.items())]
        if "state" in params and "running" not in params["state"].split(","):
            records = []
        if "template" in params:
            records = [r for r in records if r.template_id == params["template"]]
        if "startedAfter" in params:
            try:
                after = datetime.fromisoformat(params["startedAfter"])
            except ValueError:
                return error(400, "Invalid startedAfter")
            if after.tzinfo is None:
                after = after.replace(tzinfo=UTC)
            records = [r for r in records if r.started_at >= after]
        ascending = params.get("order") == "asc"
        records.sort(key=lambda r: r.sandbox_id, reverse=ascending)
        records.sort(key=lambda r: r.started_at, reverse=not ascending)
        if "nextToken" in params:
            try:
                at, last_id = decode_cursor(params["nextToken"])
            except ValueError as e:
                return error(400, f"Invalid next token: {e}")
            if ascending:
                records = [
                    r
                    for r in records
                    if r.started_at > at or (r.started_at == at and r.sandbox_id < last_id)
                ]
            else:
                records = [
                    r
                    for r in records
                    if r.started_at < at or (r.started_at == at and r.sandbox_id > last_id)
                ]
        try:
            limit = min(max(int(params.get("limit", LIST_DEFAULT_LIMIT)), 1), LIST_MAX_LIMIT)
        except ValueError:
            return error(400, "Invalid limit")
        page, rest = records[:limit], records[limit:]
        headers = {"X-Total-Running": str(len(self.state.live_sandboxes()))}
        if rest:
            headers["X-Next-Token"] = encode_cursor(page[-1], ascending)
        return JSONResponse([listed_sandbox_json(r) for r in page], 200, headers=headers)

    async def get(self, request: Request) -> Response:
        """``GET /sandboxes/{id}``: 200 ``SandboxDetail`` or 404."""
        sandbox_id = request.path_params["sandbox_id"]
        record = self.state.live(sandbox_id)
        if record is None:
            return not_found(sandbox_id)
        return JSONResponse(sandbox_detail_json(record))

    async def kill(self, request: Request) -> Response:
        """``DELETE /sandboxes/{id}``: 204, or 404 when it is not running."""
        sandbox_id = request.path_params["sandbox_id"]
        if self.state.live(sandbox_id) is None:
            return not_found(sandbox_id)
        self.state.end_sandbox(sandbox_id, "killed")
        return Response(status_code=204)

    async def set_timeout(self, request: Request) -> Response:
        """``POST /sandboxes/{id}/timeout``: end time = now + timeout (may shorten). 204."""
        sandbox_id = request.path_params["sandbox_id"]
        body = await self._json(request)
        timeout = body.get("timeout")
        if not isinstance(timeout, int):
            return error(400, "Error when parsing request: timeout is required")
        record = self.state.live(sandbox_id)
        if record is None:
            return not_found(sandbox_id)
        record.end_at = self._capped_end(record, timeout)
        record.timeout_s = timeout
        logger.info("sandbox %s timeout set to %ds", sandbox_id, timeout)
        return Response(status_code=204)

    def _capped_end(self, record: SandboxRecord, timeout: int) -> datetime:
        """now + timeout, capped at the longest life a sandbox may have (``getMaxAllowedTTL``)."""
        end_at = self.state.now() + timedelta(seconds=max(timeout, 0))
        return min(end_at, record.started_at + timedelta(seconds=self.state.team.max_lifetime_s))

    async def connect(self, request: Request) -> Response:
        """``POST /v2/sandboxes/{id}/connect``: 200 ``Sandbox``; lengthens, never shortens."""
        sandbox_id = request.path_params["sandbox_id"]
        body = await self._json(request)
        timeout = body.get("timeout", DEFAULT_TIMEOUT_S)
        if not isinstance(timeout, int) or timeout < 0:
            return error(400, "Error when parsing request: invalid timeout")
        if timeout > self.state.team.max_lifetime_s:
            hours = self.state.team.max_lifetime_s // 3600
            return error(400, f"Timeout cannot be greater than {hours} hours")
        record = self.state.live(sandbox_id)
        if record is None:
            return not_found(sandbox_id)
        end_at = self._capped_end(record, timeout)
        if end_at > record.end_at:
            record.end_at = end_at
        return JSONResponse(sandbox_json(record), 200)

    async def network(self, request: Request) -> Response:
        """``PUT /sandboxes/{id}/network``: replaces the egress configuration. 204."""
        sandbox_id = request.path_params["sandbox_id"]
        body = await self._json(request)
        record = self.state.live(sandbox_id)
        if record is None:
            return not_found(sandbox_id)
        invalid = self._invalid_network(body)
        if invalid is not None:
            return invalid
        record.network_updates.append(body)
        record.network = body
        return Response(status_code=204)

    def _invalid_network(self, network: Any) -> JSONResponse | None:
        """``validateNetworkRules`` (``sandbox_create.go``, ``sandbox_network_update.go``):
        the team's flag first, then the shape."""
        if not isinstance(network, dict):
            return None
        rules = network.get("rules") or {}
        if rules and not self.state.team.transform_rules:
            return error(400, "Network transform rules are not available for your team.")
        allow = network.get("allowOut") or []
        deny = network.get("denyOut") or []
        domains = [a for a in allow if not re.fullmatch(r"[0-9./]+", a)]
        if domains and ALL_TRAFFIC not in deny:
            return error(
                400,
                "When specifying allowed domains in allow out, you must include "
                "'0.0.0.0/0' in deny out to block all other traffic.",
            )
        for host, host_rules in rules.items():
            if host not in allow:
                return error(400, f"Network rule host '{host}' must be in allow out.")
            if len(host_rules) > 1:
                return error(400, f"At most one transform rule per domain ('{host}').")
            for rule in host_rules:
                headers = (rule.get("transform") or {}).get("headers") or {}
                if any(len(v) > MAX_HEADER_VALUE for v in headers.values()):
                    return error(400, "Header values cannot be longer than 2048 characters.")
        return None

    async def unsupported(self, request: Request) -> Response:
        """Endpoints the SDK has but the stand-in does not model (pause, fork, metrics...)."""
        message = f"{request.method} {request.url.path} is not supported by the E2B stand-in"
        logger.warning(message)
        return error(501, message)
