"""`iris-exec`: serve the local API, manage keys, run a file.

Output meant for people goes to stderr; what a script captures (a key, a JSON answer)
goes to stdout."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from iris_exec import __version__
from iris_exec.composition import Services
from iris_exec.composition.local import build_local
from iris_exec.domain.errors import AlreadyExists, ConfigurationError, IrisError
from iris_exec.domain.models import Principal
from iris_exec.domain.ports import UsageKeys
from iris_exec.services.auth import AuthService, validate_project_id
from iris_exec.services.clock import system_clock
from iris_exec.services.commands import ExecuteCommand
from iris_exec.services.sandboxes import validate_sandbox_id
from iris_exec.settings import Settings

if TYPE_CHECKING:
    from iris_exec.cli_client import Api

LOCAL_PROJECT = "local"


def _err(*parts: object) -> None:
    print(*parts, file=sys.stderr)  # noqa: T201 - the CLI talks to people


def _out(*parts: object, end: str = "\n") -> None:
    print(*parts, end=end)  # noqa: T201


def _settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _services(settings: Settings) -> Services:
    return build_local(settings)


# -- serve ------------------------------------------------------------------------------


def _check_port(host: str, port: int) -> None:
    from iris_exec.doctor import check_port

    finding = check_port(host, port, ours=None)
    if not finding.ok:
        raise ConfigurationError(
            f"{finding.detail}; {finding.fix}" if finding.fix else finding.detail
        )


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from iris_exec.local.server import create_local_app, engine_lock, write_server_info

    settings = _settings(host=args.host, port=args.port)
    _check_port(settings.host, settings.port)  # before a key is made for a server that can't start
    with engine_lock(settings):
        services = _services(settings)
        if not services.auth.has_keys():
            key, _ = services.auth.create_key(LOCAL_PROJECT, name="created by the first serve")
            _err(f"Created project '{LOCAL_PROJECT}' and its API key (shown once, keep it):")
            _out(key)
        url = f"http://{settings.host}:{settings.port}"
        write_server_info(settings, url)
        app = create_local_app(settings, services)
        _err(
            f"IRIS code execution service {__version__} on {url}"
            f" (data in {settings.data_dir.resolve()}, IRIS_DATA_DIR)"
        )
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            # asyncio's own loop: uvloop has fd races between subprocesses started from
            # threads and from the loop (uvloop#414), which this server does both of.
            loop="asyncio",
            http="httptools",
            log_level="info",
            access_log=args.access_log,
            timeout_graceful_shutdown=5,
        )
    return 0


# -- keys -------------------------------------------------------------------------------


def _auth(args: argparse.Namespace) -> AuthService:
    """The keys of the local data directory, or of the AWS deployment's DynamoDB table."""
    from iris_exec.composition.admin import key_admin

    auth, where = key_admin(args.backend, args.keys_table)
    _err(where)
    return auth


def _usage_plan(args: argparse.Namespace) -> UsageKeys | None:
    if not getattr(args, "usage_plan_id", None):
        return None
    if args.backend != "dynamodb":
        raise ConfigurationError("--usage-plan-id goes with --backend dynamodb")
    from iris_exec.composition.admin import usage_keys

    return usage_keys(args.usage_plan_id)


def cmd_keys_create(args: argparse.Namespace) -> int:
    plan = _usage_plan(args)
    usage = (lambda key_id: plan.issue(key_id, args.project)) if plan else None
    key, record = _auth(args).create_key(args.project, name=args.name, usage_key=usage)
    metered = " (metered on its usage-plan key)" if record.usage_key else ""
    _err(
        f"API key {record.key_id} for project '{record.project_id}'{metered} (shown once, keep it):"
    )
    _out(key)
    return 0


def cmd_keys_import(args: argparse.Namespace) -> int:
    from iris_exec.composition.admin import legacy_keys

    auth, plan = _auth(args), _usage_plan(args)
    imported = skipped = 0
    for legacy in legacy_keys(args.database_url, args.table):
        try:
            record = auth.import_key(
                legacy.key_hash,
                legacy.project_id,
                name=legacy.name,
                prefix=legacy.prefix,
                created_at=legacy.created_at,
                revoked_at=legacy.revoked_at or (None if legacy.active else system_clock()),
            )
        except AlreadyExists:
            skipped += 1
            continue
        if plan is not None and record.active:
            _err(f"note: {record.key_id} has no usage-plan key yet; create keys anew to meter them")
        imported += 1
    _err(f"imported {imported} key(s) from {args.table}; {skipped} were already here")
    return 0


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def cmd_keys_list(args: argparse.Namespace) -> int:
    records = _auth(args).list_keys(args.project)
    if args.json:
        _out(
            json.dumps(
                [
                    {
                        "keyId": r.key_id,
                        "prefix": r.prefix,
                        "projectId": r.project_id,
                        "name": r.name,
                        "createdAt": r.created_at,
                        "revokedAt": r.revoked_at,
                    }
                    for r in records
                ],
                indent=2,
            )
        )
        return 0
    if not records:
        _err("no keys; create one with: iris-exec keys create --project NAME")
        return 0
    _out(f"{'KEY ID':<16} {'PREFIX':<18} {'PROJECT':<20} {'CREATED':<17} STATUS")
    for r in records:
        status = "active" if r.active else f"revoked {_when(r.revoked_at)}"
        prefix = r.prefix + "..."
        _out(f"{r.key_id:<16} {prefix:<18} {r.project_id:<20} {_when(r.created_at):<17} {status}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    record = _auth(args).revoke(args.key)
    if record.usage_key and args.backend == "dynamodb":
        # Its API Gateway key is found by name: no usage-plan id needed to delete it.
        from iris_exec.composition.admin import usage_keys

        usage_keys(args.usage_plan_id or "").retire(record.key_id)
    _err(f"revoked {record.key_id} ({record.prefix}...) of project '{record.project_id}'")
    return 0


# -- run --------------------------------------------------------------------------------


@contextlib.contextmanager
def _service(args: argparse.Namespace, settings: Settings, project: str) -> Iterator[Api | None]:
    """The HTTP API to use: --url (IRIS_URL) with IRIS_API_KEY; else the local server of
    this data directory, with IRIS_API_KEY or a key of ``project`` made for this command
    and deleted after it (nothing is left in `keys list`); else None."""
    import os

    from iris_exec.cli_client import Api, UsageError, checked_url
    from iris_exec.local.server import running_server

    url = getattr(args, "url", None) or os.environ.get("IRIS_URL", "").strip() or None
    key = os.environ.get("IRIS_API_KEY", "").strip() or None
    if url is not None:
        if key is None:
            raise UsageError("--url (IRIS_URL) needs a project API key in IRIS_API_KEY")
        yield Api(checked_url(url), key)
        return
    server = running_server(settings)
    if server is None:
        yield None
        return
    if key is not None:
        yield Api(server["url"], key)
        return
    auth = _services(settings).auth
    temporary, record = auth.create_key(project, name="iris-exec (temporary)")
    try:
        yield Api(server["url"], temporary)
    finally:
        auth.delete_key(record.key_id)


def cmd_service(args: argparse.Namespace) -> int:
    """sandboxes, executions and audit: read and close through the HTTP API."""
    from iris_exec import cli_client as client

    settings = _settings()
    name = f"iris-exec {args.command}"
    try:
        with _service(args, settings, validate_project_id(args.project)) as api:
            if api is None:
                _err(f"{name}: no server runs for this data directory; start one"
                     " (iris-exec serve) or set IRIS_URL and IRIS_API_KEY")  # fmt: skip
                return client.EXIT_USAGE
            action = getattr(args, "action", None)
            if args.command == "audit":
                return client.audit(api, args.since, args.until, args.limit, args.json)
            if args.command == "sandboxes" and action == "list":
                return client.sandboxes_list(api, args.status, args.json)
            if args.command == "sandboxes" and action == "close":
                if bool(args.sandbox_id) == bool(args.all):
                    raise client.UsageError("give a sandbox id or --all, not both")
                return client.sandboxes_close(api, args.sandbox_id, args.all)
            if action == "list":
                return client.executions_list(api, args.sandbox, args.status, args.json)
            if action == "show":
                return client.executions_show(api, args.execution_id)
            return client.executions_follow(api, args.execution_id)
    except client.UsageError as exc:
        _err(f"{name}: {exc}")
        return client.EXIT_USAGE
    except client.ServiceError as exc:
        _err(f"{name}: {exc}")
        return client.EXIT_SERVICE


async def _run_in_process(
    settings: Settings, project: str, command: ExecuteCommand, *, stream: bool
) -> dict[str, Any]:
    from iris_exec.cli_client import show_chunk
    from iris_exec.local.server import local_engine, mcp_endpoint

    services = _services(settings)
    async with local_engine(services, mcp_endpoint(services)):
        principal = Principal(project_id=project, key_id="cli")
        answer = await services.executions.execute(
            principal, command, on_output=show_chunk if stream else None
        )
        return answer.wire()


def cmd_run(args: argparse.Namespace) -> int:
    from iris_exec import cli_client as runner
    from iris_exec.local.server import engine_lock

    try:
        language = runner.language_of(args.file, args.language)
        code = runner.read_code(args.file)
        context = runner.parse_context(args.context)
    except runner.UsageError as exc:
        _err(f"iris-exec run: {exc}")
        return runner.EXIT_USAGE
    project = validate_project_id(args.project)
    if args.sandbox:
        validate_sandbox_id(args.sandbox)
    payload: dict[str, Any] = {"code": code, "language": language}
    for name, value in (
        ("sessionId", args.session), ("context", context), ("sandboxId", args.sandbox),
        ("timeoutMs", args.timeout_ms), ("keepState", args.keep_state or None),
    ):  # fmt: skip
        if value is not None:
            payload[name] = value
    settings = _settings()
    try:
        with _service(args, settings, project) as api:
            if api is not None:
                return runner.run_on_server(api, payload, as_json=args.json)
    except runner.UsageError as exc:
        _err(f"iris-exec run: {exc}")
        return runner.EXIT_USAGE
    except runner.ServiceError as exc:
        _err(f"iris-exec run: {exc}")
        return runner.EXIT_SERVICE
    if args.sandbox:
        _err(
            "note: no local server is running, so no sandbox outlives this command;"
            " start `iris-exec serve` to reuse sandboxes between runs"
        )
    from iris_exec.services.commands import parse_execute

    command = parse_execute(json.dumps(payload).encode(), Principal(project, "cli"), settings)
    with engine_lock(settings):
        try:
            answer = asyncio.run(_run_in_process(settings, project, command, stream=not args.json))
        except IrisError as exc:
            # The CLI's reader runs this machine: a store's or provider's own words help.
            _err(f"iris-exec run: {exc.detail}")
            return runner.EXIT_SERVICE
    if args.json:
        _out(json.dumps(answer, indent=2))
        return runner.EXIT_OK if answer.get("success") else runner.EXIT_CODE_FAILED
    return runner.show_answer(answer, streamed=True)


# -- doctor -------------------------------------------------------------------------------


def cmd_doctor(args: argparse.Namespace) -> int:
    from iris_exec.doctor import diagnose

    findings = diagnose()
    width = max(len(f.check) for f in findings)
    for finding in findings:
        mark = "ok  " if finding.ok else "FAIL"
        _out(f"{mark} {finding.check:<{width}}  {finding.detail}")
        if finding.fix:
            _out(f"     {'':<{width}}  fix: {finding.fix}")
    failed = [f.check for f in findings if not f.ok]
    _err(f"{len(failed)} problem(s): {', '.join(failed)}" if failed else "all checks passed")
    return 1 if failed else 0


# -- mcp ----------------------------------------------------------------------------------


def cmd_mcp(args: argparse.Namespace) -> int:
    """MCP over stdio for desktop clients, forwarding to the service's /mcp."""
    import os

    from iris_exec.cli_client import UsageError, checked_url
    from iris_exec.local.server import running_server
    from iris_exec.mcp.bridge import serve

    key = os.environ.get("IRIS_API_KEY", "").strip()
    if not key:
        _err(
            "iris-exec mcp: set IRIS_API_KEY to a project API key (sk_live_...); it is read"
            " from the environment only, so that it never shows in a process list"
        )
        return 2
    url = args.url or os.environ.get("IRIS_URL", "").strip()
    if not url:
        # Only the server of our own data directory: never a guessed port another user of
        # this machine could be listening on.
        local = running_server(_settings())
        if local is None:
            _err(
                "iris-exec mcp: no local server runs for this data directory; start one"
                " (iris-exec serve) or set IRIS_URL to the service"
            )
            return 2
        url = local["url"]
    try:
        url = checked_url(url)
    except UsageError as exc:
        _err(f"iris-exec mcp: {exc}")
        return 2
    tools = args.tools or os.environ.get("IRIS_MCP_TOOLS", "").strip() or "all"
    if tools not in ("all", "code"):
        _err("iris-exec mcp: --tools (IRIS_MCP_TOOLS) must be 'all' or 'code'")
        return 2
    try:
        asyncio.run(serve(url, key, tools))
    except Exception as exc:  # the service is down, or refused the key
        cause: BaseException = exc
        while isinstance(cause, BaseExceptionGroup) and cause.exceptions:
            cause = cause.exceptions[0]
        _err(f"iris-exec mcp: cannot serve {url}: {cause}")
        return 1
    return 0


# -- completion ---------------------------------------------------------------------------


def _commands(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:  # argparse keeps its subcommands here, and only here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def bash_completion(p: argparse.ArgumentParser) -> str:
    """A bash completion script for ``p``: commands, their actions, then their options."""

    def options(q: argparse.ArgumentParser) -> str:
        return " ".join(o for a in q._actions for o in a.option_strings if o.startswith("--"))

    cases = []
    top = _commands(p)
    for name, command in top.items():
        actions = _commands(command)
        if actions:
            per_action = " ".join(
                f'{action}) opts="{options(q)}";;' for action, q in actions.items()
            )
            cases.append(
                f'    {name}) if [ "$COMP_CWORD" -eq 2 ]; then words="{" ".join(actions)}"; '
                f'else case "$sub" in {per_action} esac; fi;;'
            )
        else:
            cases.append(f'    {name}) opts="{options(command)}";;')
    body = "\n".join(cases)
    return f"""# bash completion for iris-exec: eval "$(iris-exec completion bash)"
_iris_exec() {{
  local cur="${{COMP_WORDS[COMP_CWORD]}}" cmd="${{COMP_WORDS[1]}}" sub="${{COMP_WORDS[2]}}"
  local words="" opts=""
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=( $(compgen -W "{" ".join(top)} --help --version" -- "$cur") ); return
  fi
  case "$cmd" in
{body}
  esac
  if [ -n "$words" ]; then COMPREPLY=( $(compgen -W "$words" -- "$cur") )
  elif [[ "$cur" == -* ]]; then COMPREPLY=( $(compgen -W "$opts" -- "$cur") )
  else COMPREPLY=( $(compgen -f -- "$cur") ); fi
}}
complete -o filenames -F _iris_exec iris-exec
"""


def cmd_completion(args: argparse.Namespace) -> int:
    _out(bash_completion(parser()), end="")
    return 0


# -- smoke ------------------------------------------------------------------------------


def cmd_smoke(args: argparse.Namespace) -> int:
    from iris_exec.smoke import smoke

    ok, table = smoke(args.url, args.key, args.origin, args.timeout)
    _out(table)
    return 0 if ok else 1


# -- entry point --------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="iris-exec", description="IRIS code execution service")
    p.add_argument("--version", action="version", version=f"iris-exec {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the local API (all routes)")
    serve.add_argument("--host", default=None, help="default 127.0.0.1 (IRIS_HOST)")
    serve.add_argument("--port", type=int, default=None, help="default 8000 (IRIS_PORT)")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(func=cmd_serve)

    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="keys", required=True)
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--backend",
        choices=["local", "dynamodb"],
        default="local",
        help="local: the data directory's SQLite file; dynamodb: the AWS deployment's keys table",
    )
    where.add_argument("--keys-table", default=None, help="DynamoDB table (IRIS_KEYS_TABLE)")
    plan = argparse.ArgumentParser(add_help=False)
    plan.add_argument(
        "--usage-plan-id", default=None, help="API Gateway usage plan (stack output UsagePlanId)"
    )
    create = keys.add_parser(
        "create", parents=[where, plan], help="create a key; prints it as the last line"
    )
    create.add_argument("--project", required=True)
    create.add_argument("--name", default=None)
    create.set_defaults(func=cmd_keys_create)
    listing = keys.add_parser("list", parents=[where], help="list keys (prefixes only)")
    listing.add_argument("--project", default=None)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_keys_list)
    revoke = keys.add_parser(
        "revoke", parents=[where, plan], help="revoke a key by key, key id or prefix"
    )
    revoke.add_argument("key", metavar="KEY_OR_PREFIX")
    revoke.set_defaults(func=cmd_keys_revoke)
    imports = keys.add_parser(
        "import", parents=[where, plan], help="take over the keys of an iris_api_keys table"
    )
    imports.add_argument("--database-url", required=True, help="PostgreSQL (Supabase) URL")
    imports.add_argument("--table", default="iris_api_keys")
    imports.set_defaults(func=cmd_keys_import)

    run = sub.add_parser(
        "run",
        help="run a file (or - for stdin) in a sandbox, its output shown as it is printed",
        description="Exit codes: 0 the code succeeded, 1 it failed, 2 a usage error,"
        " 3 the service refused or failed.",
    )
    run.add_argument("file", help="a .ts/.js/.py file, or - to read the code from stdin")
    run.add_argument(
        "--language", choices=["typescript", "javascript", "python"], default=None,
        help="default: from the file's suffix (stdin: typescript)",
    )  # fmt: skip
    run.add_argument("--project", default=LOCAL_PROJECT)
    run.add_argument("--session", default=None, help="sessionId (groups records for patterns)")
    run.add_argument("--context", default=None, help="a JSON object, or @file.json")
    run.add_argument("--sandbox", default=None, help="reuse this sandbox (needs a running server)")
    run.add_argument("--timeout-ms", type=int, default=None)
    run.add_argument(
        "--keep-state", action="store_true",
        help="run in the sandbox's live runner: with --sandbox, what earlier --keep-state runs"
        " declared is there (needs a running server to outlive the command)",
    )  # fmt: skip
    run.add_argument("--url", default=None, help="run on this service (IRIS_URL) with IRIS_API_KEY")
    run.add_argument("--json", action="store_true", help="print the API's JSON answer")
    run.set_defaults(func=cmd_run)

    service = argparse.ArgumentParser(add_help=False)
    service.add_argument(
        "--project", default=LOCAL_PROJECT, help="for the local server's temporary key"
    )
    service.add_argument("--url", default=None, help="the service (IRIS_URL) with IRIS_API_KEY")
    listed = argparse.ArgumentParser(add_help=False)
    listed.add_argument("--status", default=None)
    listed.add_argument("--json", action="store_true")
    sandboxes = sub.add_parser("sandboxes", help="list or close your sandboxes")
    sandbox_actions = sandboxes.add_subparsers(dest="action", required=True)
    sandbox_actions.add_parser("list", parents=[service, listed], help="newest first")
    closing = sandbox_actions.add_parser("close", parents=[service], help="close one, or --all")
    closing.add_argument("sandbox_id", nargs="?", default=None)
    closing.add_argument("--all", action="store_true")
    sandboxes.set_defaults(func=cmd_service)
    executions = sub.add_parser("executions", help="list, show or follow executions")
    execution_actions = executions.add_subparsers(dest="action", required=True)
    listing_runs = execution_actions.add_parser("list", parents=[service, listed])
    listing_runs.add_argument("--sandbox", default=None)
    for action, text in (("show", "one execution as JSON"), ("follow", "its lines, live")):
        one = execution_actions.add_parser(action, parents=[service], help=text)
        one.add_argument("execution_id")
    executions.set_defaults(func=cmd_service)
    trail = sub.add_parser("audit", parents=[service], help="your project's audit trail")
    trail.add_argument("--since", default=None, help="ISO 8601 time or epoch ms")
    trail.add_argument("--until", default=None)
    trail.add_argument("--limit", type=int, default=100)
    trail.add_argument("--json", action="store_true")
    trail.set_defaults(func=cmd_service)

    doctor = sub.add_parser(
        "doctor",
        help="check this machine for the local server: what is wrong and how to fix it",
        description="Exit 0 when every check passes, 1 otherwise.",
    )
    doctor.set_defaults(func=cmd_doctor)

    completion = sub.add_parser(
        "completion", help='shell completion: eval "$(iris-exec completion bash)"'
    )
    completion.add_argument("shell", choices=["bash"])
    completion.set_defaults(func=cmd_completion)

    bridge = sub.add_parser(
        "mcp",
        help="serve MCP over stdio for desktop clients, forwarding to the service",
        description="An MCP server on stdin/stdout that forwards to the service's /mcp. The"
        " API key is read from IRIS_API_KEY.",
    )
    bridge.add_argument(
        "--url", default=None, help="the service (IRIS_URL; default: the local server)"
    )
    bridge.add_argument(
        "--tools",
        choices=["all", "code"],
        default=None,
        help="all: IRIS tools and code execution; code: code execution only (IRIS_MCP_TOOLS)",
    )
    bridge.set_defaults(func=cmd_mcp)

    check = sub.add_parser(
        "smoke", help="check a deployment: every route once; exit 0 only if all pass"
    )
    check.add_argument("--url", required=True, help="the API's base URL (stack output ApiUrl)")
    check.add_argument("--key", required=True, help="an API key of a project to test with")
    check.add_argument(
        "--origin",
        default="https://console.example.com",
        help="the dashboard's origin, for the CORS preflight (stack parameter CorsAllowOrigin)",
    )
    check.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    check.set_defaults(func=cmd_smoke)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.command != "serve" else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The MCP SDK logs every stateless request at INFO.
    for noisy in (
        "mcp.server.streamable_http",
        "mcp.server.streamable_http_manager",
        "mcp.server.mcpserver.server",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        code: int = args.func(args)
    except ConfigurationError as exc:
        _err(f"iris-exec: {exc}")
        return 2
    except IrisError as exc:
        _err(f"iris-exec: {exc.detail}")
        return 1
    except Exception as exc:
        # AWS's refusals (botocore's ClientError): its message, not a traceback.
        if type(exc).__name__ != "ClientError":
            raise
        _err(f"iris-exec: AWS refused: {exc}")
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
