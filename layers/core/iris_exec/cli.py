"""`iris-exec`: serve the local API, manage keys, run a file.

Output meant for people goes to stderr; what a script captures (a key, a JSON answer)
goes to stdout."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iris_exec import __version__
from iris_exec.composition import Container, build_local
from iris_exec.domain.errors import AlreadyExists, ConfigurationError, IrisError
from iris_exec.domain.models import Language, Principal
from iris_exec.domain.ports import KeyStore
from iris_exec.services.auth import AuthService, validate_project_id
from iris_exec.services.clock import system_clock
from iris_exec.services.requests import ExecuteCommand
from iris_exec.services.sandboxes import validate_sandbox_id
from iris_exec.settings import Settings

if TYPE_CHECKING:
    from iris_exec.adapters.apigateway import UsagePlanKeys

LOCAL_PROJECT = "local"


def _err(*parts: object) -> None:
    print(*parts, file=sys.stderr)  # noqa: T201 - the CLI talks to people


def _out(*parts: object) -> None:
    print(*parts)  # noqa: T201


def _settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _container(settings: Settings) -> Container:
    return build_local(settings)


# -- serve ------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from iris_exec.local.server import create_local_app, engine_lock, write_server_info

    settings = _settings(host=args.host, port=args.port)
    with engine_lock(settings):
        container = _container(settings)
        if not container.auth.has_keys():
            key, _ = container.auth.create_key(LOCAL_PROJECT, name="created by the first serve")
            _err(f"Created project '{LOCAL_PROJECT}' and its API key (shown once, keep it):")
            _out(key)
        url = f"http://{settings.host}:{settings.port}"
        write_server_info(settings, url)
        app = create_local_app(settings, container)
        _err(f"IRIS code execution service {__version__} on {url} (data in {settings.data_dir})")
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


def aws_region() -> str:
    """The Region the AWS CLI would use: AWS_REGION, else AWS_DEFAULT_REGION, else the
    profile's (``aws configure``: ~/.aws/config, AWS_CONFIG_FILE, AWS_PROFILE)."""
    import os

    import botocore.session

    region = os.environ.get("AWS_REGION") or botocore.session.get_session().get_config_variable(
        "region"
    )
    if not region:
        raise ConfigurationError(
            "no AWS Region: run `aws configure` or export AWS_REGION=<the stack's Region>"
        )
    return str(region)


def _key_store(args: argparse.Namespace) -> KeyStore:
    """The keys of the local data directory, or of the AWS deployment's DynamoDB table."""
    settings = _settings()
    if args.backend == "dynamodb":
        settings = _settings(aws_region=aws_region())
        table = args.keys_table or settings.keys_table
        _err(f"keys table {table} in {settings.aws_region}")
        from iris_exec.adapters.dynamodb.keys import DynamoKeyStore
        from iris_exec.aws.composition import dynamodb_client

        return DynamoKeyStore(dynamodb_client(settings), table)
    from iris_exec.adapters.sqlite.database import Database
    from iris_exec.adapters.sqlite.keys import SqliteKeyStore

    return SqliteKeyStore(Database(settings.database_path))


def _auth(args: argparse.Namespace) -> AuthService:
    return AuthService(_key_store(args), system_clock)


def _usage_plan(args: argparse.Namespace) -> UsagePlanKeys | None:
    if not getattr(args, "usage_plan_id", None):
        return None
    if args.backend != "dynamodb":
        raise ConfigurationError("--usage-plan-id goes with --backend dynamodb")
    import boto3

    from iris_exec.adapters.apigateway import UsagePlanKeys

    client = boto3.client("apigateway", region_name=aws_region())
    return UsagePlanKeys(client, args.usage_plan_id)


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
    from iris_exec.adapters.postgres.legacy_keys import read_legacy_keys

    auth, plan = _auth(args), _usage_plan(args)
    imported = skipped = 0
    for legacy in read_legacy_keys(args.database_url, args.table):
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
        import boto3

        from iris_exec.adapters.apigateway import UsagePlanKeys

        client = boto3.client("apigateway", region_name=aws_region())
        UsagePlanKeys(client, args.usage_plan_id or "").retire(record.key_id)
    _err(f"revoked {record.key_id} ({record.prefix}...) of project '{record.project_id}'")
    return 0


# -- run --------------------------------------------------------------------------------


def _print_result(answer: dict[str, Any], as_json: bool) -> int:
    if as_json:
        _out(json.dumps(answer, indent=2))
        return 0 if answer.get("success") else 1
    if "error" in answer and "result" not in answer:
        _err(f"error {answer.get('statusCode')}: {answer.get('error')}: {answer.get('message')}")
        return 1
    result = answer["result"]
    _out(result["output"])
    meta = result["metadata"]
    status = "ok" if result["success"] else f"failed: {result['error']['name']}"
    created = "new" if meta.get("sandboxCreated") else "reused"
    _err(
        f"\n-- {status} | code {result['executionTime']} ms, setup {meta.get('setupTime', 0)} ms"
        f" | sandbox {answer['sandboxId']} ({created}) | project {meta['projectId']}"
    )
    return 0 if result["success"] else 1


async def _run_in_process(
    settings: Settings, project: str, command: ExecuteCommand
) -> dict[str, Any]:
    from iris_exec.local.server import local_engine, mcp_endpoint

    container = _container(settings)
    async with local_engine(container, mcp_endpoint(container)):
        principal = Principal(project_id=project, key_id="cli")
        try:
            return await container.executions.execute(principal, command)
        except IrisError as exc:
            return {"error": exc.title, "message": exc.message, "statusCode": exc.status}


def _run_via_server(
    settings: Settings, url: str, project: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """A server owns this data directory: run there (so --sandbox can reuse its sandboxes),
    with a key made for this one call and revoked after it."""
    container = _container(settings)
    key, record = container.auth.create_key(project, name="iris-exec run (temporary)")
    try:
        request = urllib.request.Request(  # noqa: S310 - our own local server
            f"{url}/api/iris/execute",
            data=json.dumps(payload).encode(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=settings.execution_timeout_s + 60) as resp:  # noqa: S310
                answer: dict[str, Any] = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            answer = json.loads(exc.read())
        return answer
    finally:
        container.auth.revoke(record.key_id)


def cmd_run(args: argparse.Namespace) -> int:
    from iris_exec.local.server import engine_lock, running_server

    path = Path(args.file)
    try:
        code = path.read_text(encoding="utf-8")
    except OSError as exc:
        _err(f"cannot read {path}: {exc.strerror}")
        return 2
    project = validate_project_id(args.project)
    if args.sandbox:
        validate_sandbox_id(args.sandbox)
    settings = _settings()
    language: Language = (
        "python"
        if path.suffix == ".py"
        else "javascript"
        if path.suffix in {".js", ".mjs", ".cjs"}
        else "typescript"
    )
    server = running_server(settings)
    if server is not None:
        payload: dict[str, Any] = {"code": code, "language": language}
        if args.sandbox:
            payload["sandboxId"] = args.sandbox
        if args.timeout_ms:
            payload["timeoutMs"] = args.timeout_ms
        return _print_result(_run_via_server(settings, server["url"], project, payload), args.json)
    if args.sandbox:
        _err(
            "note: no local server is running, so no sandbox outlives this command;"
            " start `iris-exec serve` to reuse sandboxes between runs"
        )
    command = ExecuteCommand(
        code=code,
        language=language,
        timeout_s=(args.timeout_ms / 1000) if args.timeout_ms else settings.execution_timeout_s,
        sandbox_id=args.sandbox,
    )
    with engine_lock(settings):
        answer = asyncio.run(_run_in_process(settings, project, command))
    return _print_result(answer, args.json)


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

    run = sub.add_parser("run", help="run a file in a sandbox and show the result")
    run.add_argument("file")
    run.add_argument("--project", default=LOCAL_PROJECT)
    run.add_argument("--sandbox", default=None, help="reuse this sandbox (needs a running server)")
    run.add_argument("--timeout-ms", type=int, default=None)
    run.add_argument("--json", action="store_true", help="print the API's JSON answer")
    run.set_defaults(func=cmd_run)

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
        _err(f"iris-exec: {exc.message}")
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
