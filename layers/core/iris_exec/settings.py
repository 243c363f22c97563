"""One settings class, read once from the environment (prefix ``IRIS_``) and validated at start.

The environment is read here rather than by pydantic-settings: that package costs ~35 ms of
imports (dotenv, CLI parsing, cloud secret sources) at every Lambda cold start, for a lookup
of a few names. The rules are pydantic-settings' defaults: a field ``x`` comes from
``IRIS_X`` (any case), keyword arguments win over the environment, and pydantic validates
and converts the text as usual."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo

from iris_exec.domain.errors import ConfigurationError

PREFIX = "IRIS_"
#: Fields read from a variable of another name.
ALIASES = {"aws_region": "AWS_REGION"}


class Backend(StrEnum):
    """Which family of adapters the composition root builds."""

    LOCAL = "local"
    AWS = "aws"


class ToolStoreKind(StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"


def environment(fields: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, str]:
    """The values of ``fields`` set in the environment, by field name."""
    by_name = {k.upper(): v for k, v in (os.environ if env is None else env).items()}
    found = {}
    for name in fields:
        variable = ALIASES.get(name, PREFIX + name.upper())
        if variable in by_name:
            found[name] = by_name[variable]
    return found


def default_data_dir() -> Path:
    """$XDG_DATA_HOME/iris-exec, else ~/.local/share/iris-exec: not relative to the folder a
    command runs in, so `keys list` elsewhere finds the server's keys."""
    base = os.environ.get("XDG_DATA_HOME", "").strip()
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "share"
    return root / "iris-exec"


def allowed(field: FieldInfo) -> str:
    """What a setting accepts, in words: "an integer from 0 to 65535"."""
    annotation = field.annotation
    kinds = {int: "an integer", float: "a number", bool: "true or false", str: "text"}
    if isinstance(annotation, type) and issubclass(annotation, StrEnum):
        return "one of " + ", ".join(repr(member.value) for member in annotation)
    kind = next((words for t, words in kinds.items() if annotation in (t, t | None)), "a value")
    bounds = []
    for rule in field.metadata:
        for attr, words in (("ge", "from"), ("gt", "above"), ("le", "to"), ("lt", "below")):
            if getattr(rule, attr, None) is not None:
                bounds.append(f"{words} {getattr(rule, attr):g}")
    return " ".join([kind, *bounds])


class InvalidSettings(ConfigurationError):
    """Settings that cannot be used, each named with what it accepts, one line each."""

    def __init__(self, exc: ValidationError, fields: dict[str, FieldInfo]) -> None:
        self.errors = exc.errors(include_url=False)
        lines = []
        for error in self.errors:
            name = str(error["loc"][0]) if error["loc"] else ""
            variable = ALIASES.get(name, PREFIX + name.upper())
            field = fields.get(name)
            expected = f"; it must be {allowed(field)}" if field is not None else ""
            value = error.get("input")
            shown = "" if isinstance(value, dict) else f"={value!r}"
            lines.append(f"{variable}{shown} is not valid{expected}")
        super().__init__("\n".join(lines))


class Settings(BaseModel):
    """Every limit of CONTRACT.md is a field here; defaults are the contract's."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    def __init__(self, **values: Any) -> None:
        fields = type(self).model_fields
        try:
            super().__init__(**{**environment(fields), **values})
        except ValidationError as exc:
            raise InvalidSettings(exc, fields) from None

    backend: Backend = Backend.LOCAL

    # Limits (CONTRACT.md, "Limits").
    max_code_bytes: int = Field(100 * 1024, ge=1)
    max_context_bytes: int = Field(64 * 1024, ge=2)
    execution_timeout_s: float = Field(300.0, gt=0)
    sandbox_memory_mb: int = Field(2048, ge=64)
    output_limit_bytes: int = Field(1024 * 1024, ge=1024)
    sandbox_max_processes: int = Field(256, ge=8)
    sandbox_idle_timeout_s: float = Field(300.0, gt=0)
    sandbox_max_lifetime_s: float = Field(3600.0, gt=0)
    max_sandboxes_per_project: int = Field(10, ge=1)
    rate_limit_per_minute: int = Field(100, ge=1)

    # Local mode.
    #: Local state (keys, registry, tool records): the same folder wherever a command runs.
    data_dir: Path = Field(default_factory=lambda: default_data_dir())
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    sandbox_disk_mb: int = Field(512, ge=8)
    sandbox_cpus: float = Field(1.0, gt=0)
    sandbox_warm_pool: int = Field(1, ge=0, le=16)
    # Host uid/gid the jails run as when the server runs as root (never root itself).
    sandbox_host_uid: int = Field(1_999_999, ge=1)
    node_path: str | None = None
    #: Python 3.11+ of `"language": "python"` (default: /usr/bin/python3).
    python_path: str | None = None
    reaper_interval_s: float = Field(5.0, gt=0)

    # Limits between tenants (docs/reliability.md, "Limits between tenants").
    #: Parser threads of the shared compile service, and each parse's deadline: a parse past
    #: it is stopped and fails as its caller's SyntaxError.
    compile_workers: int = Field(2, ge=1, le=16)
    compile_deadline_s: float = Field(2.0, gt=0, le=60)
    #: Tool calls per minute of one project's executions (their tokens), all keys together.
    tool_calls_per_minute: int = Field(1200, ge=1)
    #: Each execution's tool socket (local mode): connections at once, requests in flight,
    #: requests per second, bytes per request and per execution (in and out), the time a
    #: request may take to arrive whole and a connection may stay idle; and the file
    #: descriptors of the server no tool socket may take.
    tool_socket_connections: int = Field(64, ge=1)
    tool_socket_in_flight: int = Field(16, ge=1)
    tool_socket_requests_per_s: float = Field(100.0, gt=0)
    tool_socket_request_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    tool_socket_execution_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    tool_socket_idle_s: float = Field(5.0, gt=0)
    tool_socket_header_s: float = Field(10.0, gt=0)
    tool_socket_fd_reserve: int = Field(1024, ge=64)
    #: The jails' seccomp filter (adapters/local/seccomp.py); off only to diagnose.
    sandbox_seccomp: bool = True
    #: Memory the local sandboxes may reserve together (memory limits of the executions
    #: running, tmpfs of the sandboxes alive), in MiB; unset: the host's RAM. And the share
    #: of it one project may hold. Past either: 503 with Retry-After, for that project.
    sandbox_memory_budget_mb: int | None = Field(None, ge=64)
    sandbox_project_share: float = Field(0.5, gt=0, le=1)
    #: How long an execution waits for memory held by others before its 503.
    sandbox_admission_wait_s: float = Field(30.0, ge=0)

    # HTTP edge.
    cors_origins: str = "*"
    #: How long a request's Idempotency-Key keeps its answer.
    idempotency_ttl_s: float = Field(24 * 3600, gt=0)
    #: How long the audit trail keeps its events.
    audit_retention_days: float = Field(90, gt=0)

    # Asynchronous executions.
    #: A running execution's worker shows a sign of life this often; after three missed
    #: ones the execution is declared failed (its worker died).
    execution_heartbeat_s: float = Field(10.0, gt=0)
    #: How long a queued execution may wait for its worker to start.
    execution_dispatch_grace_s: float = Field(120.0, gt=0)
    #: How often a worker stores the log lines printed since the last time.
    execution_log_flush_s: float = Field(0.25, gt=0)
    #: How long finished executions (status, logs, answer) are kept.
    execution_retention_s: float = Field(7 * 24 * 3600, gt=0)
    #: Server-Sent Events: a comment line this often keeps idle connections open.
    sse_heartbeat_s: float = Field(15.0, gt=0)
    #: How long MCP's executeCode waits for a run before it answers with the executionId
    #: (the run goes on; getExecution reads it). Unset: until the run ends. On AWS, under
    #: API Gateway's 29-second integration timeout.
    mcp_wait_s: float | None = Field(None, gt=0)

    # IRIS tools.
    #: Where tool records live: the local SQLite file, or PostgreSQL (Supabase).
    tool_store: ToolStoreKind = ToolStoreKind.SQLITE
    #: PostgreSQL connection string (Supabase: the pooled one works), for tool_store=postgres.
    database_url: SecretStr | None = None
    #: Key signing per-execution tool tokens (32+ bytes). Local mode makes one in the data
    #: directory when unset; on AWS it comes from Secrets Manager.
    token_signing_key: SecretStr | None = None

    # Tenant limits of the IRIS tools (issue 18; docs/limits.md): what one project's tool
    # calls may make the shared tool store hold and do. Reads are paged by constants of
    # services/tools.py.
    #: Bytes of tool records (arguments as JSON) a project may store in all.
    tool_storage_quota_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    #: Tool writes (evaluateOutput, submitVote, logEvent, savePrompt, trackLineage,
    #: recordMetric) a project may make in any 60 seconds.
    tool_writes_per_minute: int = Field(1200, ge=1)
    #: Server time one discoverPatterns call may spend mining before it fails.
    mining_budget_s: float = Field(1.0, gt=0)

    # AWS deployment (IRIS_BACKEND=aws). Secrets are read from Secrets Manager by name, at
    # cold start, with a cache; their values are never in the template or in samconfig.
    sandbox_table: str = "iris-sandboxes"
    keys_table: str = "iris-api-keys"
    rate_table: str = "iris-rate-windows"
    audit_table: str = "iris-audit"
    idempotency_table: str = "iris-idempotency"
    executions_table: str = "iris-executions"
    #: The Lambda function that runs asynchronous executions (invoked with InvocationType
    #: Event), and an endpoint override for it (tests).
    worker_function: str | None = None
    lambda_endpoint: str | None = None
    e2b_api_key_secret: str | None = None
    token_signing_key_secret: str | None = None
    database_url_secret: str | None = None
    #: Direct E2B key (tests and local experiments); production uses e2b_api_key_secret.
    e2b_api_key: SecretStr | None = None
    #: The E2B template sandboxes are created from (infra/e2b).
    e2b_template: str = "iris-exec"
    #: Where the template keeps the sandbox assets.
    e2b_assets_dir: str = "/opt/iris"
    #: How an E2B sandbox's tool calls carry their token: ``header-rewrite`` (E2B's egress
    #: proxy adds it; the team needs E2B's network transform rules) or ``request-file`` (the
    #: token is in the execution's request file, readable by the code). Shown per sandbox
    #: as ``toolChannel`` in the registry and in the sandbox's E2B metadata.
    e2b_egress_mode: Literal["header-rewrite", "request-file"] = "header-rewrite"
    #: E2B sandboxes younger than this are never taken for orphans: one may be listed by
    #: E2B before its create call has returned and its registry record exists.
    sandbox_create_grace_s: float = Field(default=120.0, ge=0)
    #: Name of this deployment (the CloudFormation stack). Every E2B sandbox carries it in
    #: its metadata, so that stacks sharing one E2B key never reap each other's sandboxes.
    stack_name: str = "local"
    #: Public base URL of this API (API Gateway stage URL); E2B sandboxes reach <url>/mcp.
    public_url: str | None = None
    #: API Gateway key that meters requests without a valid API key (see aws/authorizer.py).
    anonymous_usage_key: str = "iris-exec-anonymous-usage-key"
    #: API Gateway key that meters tool calls of execution tokens naming no caller's key.
    tools_usage_key: str = "iris-exec-tools-usage-key"
    #: DynamoDB endpoint override (DynamoDB Local in tests).
    dynamodb_endpoint: str | None = None
    aws_region: str = "us-east-1"
    #: How long API Gateway waits for a synchronous answer (its integration timeout): a
    #: synchronous run that could outlast it is refused (400, use async mode). Unset: none.
    sync_timeout_limit_ms: int | None = Field(None, ge=1000)
    #: Of that wait, what a synchronous run leaves for the rest: creating a sandbox, E2B's
    #: stop of a run that outlives its limit (the provider waits 10 s for the runner's own
    #: report), and the answer. A synchronous timeoutMs may be at most the difference.
    sync_timeout_margin_ms: int = Field(15000, ge=0)
    #: The largest answer, in bytes as Lambda carries it (6 MB for a synchronous
    #: invocation): longer answers drop log lines, then output. Unset: no limit.
    response_limit_bytes: int | None = Field(None, ge=64 * 1024)

    @property
    def database_path(self) -> Path:
        """The one SQLite file of local mode."""
        return self.data_dir / "iris.db"

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]
