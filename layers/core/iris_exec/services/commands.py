"""The execute command: the request body's every rule of CONTRACT.md (one clear message each),
shared by the HTTP API, MCP and the CLI, and the command the services run."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from iris_exec.domain.errors import BadRequest, Forbidden, PayloadTooLarge
from iris_exec.domain.models import Language, Principal
from iris_exec.services.sandboxes import SANDBOX_ID_PATTERN
from iris_exec.settings import Settings

SESSION_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: JSON escaping can make code up to 6x larger on the wire (\uXXXX); context adds its own.
WIRE_FACTOR = 6


class ExecuteBody(BaseModel):
    """The JSON body of POST /api/iris/execute (unknown fields are rejected)."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=False)

    code: str = Field(description="Source in `language`, 1 byte to 100 KiB of UTF-8")
    projectId: str | None = Field(None, description="Must equal the API key's project")
    sessionId: str | None = Field(
        None, description="1-128 characters of [A-Za-z0-9._:-]", pattern=SESSION_PATTERN.pattern
    )
    context: dict[str, Any] | None = Field(None, description="JSON object, at most 64 KiB")
    sandboxId: str | None = Field(
        None, description="Reuse this sandbox of your project", pattern=SANDBOX_ID_PATTERN.pattern
    )
    language: Literal["typescript", "javascript", "python"] = Field(
        "typescript", description="Language of `code`"
    )
    timeoutMs: int | None = Field(
        None, description="Lower time limit for this run, in ms (at most the configured one)", ge=1
    )
    keepState: bool = Field(
        False,
        description="Run in the sandbox's live runner of this language: top-level names,"
        " imports and globals of one execution are there in the next (docs/CONTRACT.md)",
    )
    async_: bool = Field(
        False,
        alias="async",
        description="Answer 202 at once and run in the background (poll GET"
        " /api/iris/executions/{executionId})",
    )


@dataclass(frozen=True, slots=True)
class ExecuteCommand:
    code: str
    language: Language
    timeout_s: float
    session_id: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    sandbox_id: str | None = None
    wait: bool = True
    #: Answer 202 at once and run in the background.
    background: bool = False
    #: Whether the caller chose timeout_s (timeoutMs) or got the default.
    timeout_given: bool = False
    #: Run in the sandbox's kept runner (state kept between executions).
    keep_state: bool = False


#: How deeply `context` (and the body) may nest; JSON this deep is never a real context.
MAX_DEPTH = 64


def _no_constant(name: str) -> Any:
    raise ValueError(
        f"{name} is not a JSON value; numbers ('timeoutMs', those in 'context') must be finite"
    )


def _check_value(value: Any, where: str, depth: int = 0) -> None:
    """Refuse nesting deeper than MAX_DEPTH and strings that are not Unicode text (a lone
    surrogate escape such as \\ud800 decodes to one, and no UTF-8 can carry it)."""
    if depth > MAX_DEPTH:
        raise BadRequest(f"'{where}' nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BadRequest(
                f"'{where}' holds text that is not valid Unicode (a lone surrogate"
                f" \\u{ord(value[exc.start]):04x}); send well-formed text"
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_value(key, where, depth + 1)
            _check_value(item, where, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_value(item, where, depth + 1)


def parse_json_body(raw: bytes) -> Any:
    """JSON as the contract means it: no NaN/Infinity, no lone surrogates, bounded depth."""
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise BadRequest(
            f"Request body nests deeper than {MAX_DEPTH} levels; 'context' must be a shallow"
            " JSON object"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"Request body is not valid JSON: {exc}") from exc
    if isinstance(data, dict):
        for key, value in data.items():
            _check_value(key, "body")
            _check_value(value, str(key) if str(key).isidentifier() else "body", 1)
    else:
        _check_value(data, "body")
    return data


def max_body_bytes(settings: Settings) -> int:
    return WIRE_FACTOR * (settings.max_code_bytes + settings.max_context_bytes) + 64 * 1024


#: The contract's words for a value of the right type that breaks its field's rule.
_RULES = {
    "sessionId": "'sessionId' must be 1-128 characters of letters, digits and . _ : -",
    "sandboxId": "sandboxId must look like 'sb_' followed by 8-64 letters or digits",
    "timeoutMs": "'timeoutMs' must be between 1 and {limit_ms}",
}
_RULE_ERRORS = frozenset({"string_pattern_mismatch", "greater_than_equal"})


def _describe(exc: ValidationError, limit_ms: int) -> str:
    messages = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        if err["type"] in _RULE_ERRORS and where in _RULES:
            messages.append(_RULES[where].format(limit_ms=limit_ms))
        elif err["type"] == "extra_forbidden":
            messages.append(f"unknown field '{where}'")
        elif err["type"] == "missing":
            messages.append(f"'{where}' is required")
        else:
            messages.append(f"'{where}': {err['msg']}")
    return "; ".join(messages)


def parse_execute(raw: bytes, principal: Principal, settings: Settings) -> ExecuteCommand:
    """Bytes of the request body -> a valid command, or the contract's 400/403/413."""
    if len(raw) > max_body_bytes(settings):
        raise PayloadTooLarge(
            f"Request body is {len(raw)} bytes; code may be at most {settings.max_code_bytes}"
            " bytes (UTF-8)"
        )
    data = parse_json_body(raw)
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object with at least a 'code' field")
    code = data.get("code")
    if isinstance(code, str):
        size = len(code.encode("utf-8", "surrogatepass"))
        if size > settings.max_code_bytes:
            raise PayloadTooLarge(
                f"code is {size} bytes; the limit is {settings.max_code_bytes} bytes (UTF-8)"
            )
    limit_ms = int(settings.execution_timeout_s * 1000)
    try:
        body = ExecuteBody.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(_describe(exc, limit_ms)) from exc
    if not body.code.strip():
        raise BadRequest("'code' must not be empty")
    if "\x00" in body.code:
        raise BadRequest("'code' must not contain NUL characters")
    if body.projectId is not None and body.projectId != principal.project_id:
        raise Forbidden(
            "projectId does not match your API key's project; omit it or use your own project"
        )
    context = body.context or {}
    if len(json.dumps(context, separators=(",", ":"))) > settings.max_context_bytes:
        raise BadRequest(f"'context' is larger than {settings.max_context_bytes} bytes as JSON")
    if body.timeoutMs is not None and body.timeoutMs > limit_ms:  # (the least is the schema's)
        raise BadRequest(_RULES["timeoutMs"].format(limit_ms=limit_ms))
    timeout_s = body.timeoutMs / 1000 if body.timeoutMs else settings.execution_timeout_s
    return ExecuteCommand(
        code=body.code,
        language=body.language,
        timeout_s=timeout_s,
        session_id=body.sessionId,
        context=context,
        sandbox_id=body.sandboxId,
        background=body.async_,
        timeout_given=body.timeoutMs is not None,
        keep_state=body.keepState,
    )


def within_sync_limit(command: ExecuteCommand, settings: Settings) -> ExecuteCommand:
    """A synchronous run must end while its caller still waits (settings.sync_timeout_limit_ms,
    the gateway's integration timeout): a longer timeoutMs is a 400 that points at async
    mode, and without one the run's limit is lowered to fit."""
    if command.background or settings.sync_timeout_limit_ms is None:
        return command
    budget_ms = max(1000, settings.sync_timeout_limit_ms - settings.sync_timeout_margin_ms)
    if command.timeout_s * 1000 <= budget_ms:
        return command
    if command.timeout_given:
        raise BadRequest(
            f"'timeoutMs' {round(command.timeout_s * 1000)} is longer than a synchronous"
            f" execution may take here ({budget_ms} ms: the API gateway stops waiting after"
            f" {settings.sync_timeout_limit_ms} ms). Run it asynchronously: send"
            ' "async": true (or the header Prefer: respond-async) and read the result with'
            " GET /api/iris/executions/{executionId}"
        )
    return replace(command, timeout_s=budget_ms / 1000)


def command_to_dict(command: ExecuteCommand) -> dict[str, Any]:
    """A command as stored with an asynchronous execution (JSON-safe)."""
    return {
        "code": command.code,
        "language": command.language,
        "timeoutS": command.timeout_s,
        "sessionId": command.session_id,
        "context": command.context,
        "sandboxId": command.sandbox_id,
        "wait": command.wait,
        "keepState": command.keep_state,
    }


def command_from_dict(data: dict[str, Any]) -> ExecuteCommand:
    return ExecuteCommand(
        code=data["code"],
        language=data["language"],
        timeout_s=float(data["timeoutS"]),
        session_id=data.get("sessionId"),
        context=data.get("context") or {},
        sandbox_id=data.get("sandboxId"),
        wait=bool(data.get("wait", True)),
        keep_state=bool(data.get("keepState", False)),
    )
