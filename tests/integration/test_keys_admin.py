"""Key management for AWS: keys in the deployment's DynamoDB table, metered on API Gateway
usage-plan keys, and the import of the earlier implementation's `iris_api_keys` table."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from moto.core.config import DefaultConfig

from iris_exec import cli
from iris_exec.adapters.dynamodb.keys import DynamoKeyStore
from iris_exec.adapters.dynamodb.tables import create_tables
from iris_exec.adapters.sqlite.database import Database
from iris_exec.adapters.sqlite.keys import SqliteKeyStore
from iris_exec.domain.errors import Unauthorized
from iris_exec.services.auth import AuthService, new_api_key
from iris_exec.services.clock import system_clock
from tests.support.dynamodb_local import DynamoDBLocal
from tests.support.postgres import PostgresServer

REGION = "us-east-1"


@pytest.fixture
def keys_table(dynamodb_local: DynamoDBLocal, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"keys-{uuid.uuid4().hex[:8]}"
    create_tables(dynamodb_local.client(), {"keys": name})
    for var, value in {
        "IRIS_DYNAMODB_ENDPOINT": dynamodb_local.endpoint_url,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "x",
    }.items():
        monkeypatch.setenv(var, value)
    return name


@pytest.fixture
def usage_plan() -> Iterator[str]:
    """API Gateway, mocked by moto (it cannot run here); DynamoDB goes to DynamoDB Local."""
    # Keep our credentials: DynamoDB Local keeps one database per access key.
    config: DefaultConfig = {
        "core": {"mock_credentials": False, "passthrough": {"services": ["dynamodb"]}}
    }
    with mock_aws(config=config):
        apigateway = boto3.client("apigateway", region_name=REGION)
        api = apigateway.create_rest_api(name="iris")["id"]
        plan = apigateway.create_usage_plan(name="customers", apiStages=[])["id"]
        assert api
        yield plan


def test_keys_create_in_dynamodb_metered_on_a_usage_plan_key(
    keys_table: str,
    usage_plan: str,
    dynamodb_local: DynamoDBLocal,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["keys", "create", "--project", "acme", "--backend", "dynamodb"]
    assert cli.main([*args, "--keys-table", keys_table, "--usage-plan-id", usage_plan]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    store = DynamoKeyStore(dynamodb_local.client(), keys_table)
    principal = AuthService(store, system_clock).authenticate(f"Bearer {key}")
    assert principal.project_id == "acme"
    record = store.find_by_hash(hashlib.sha256(key.encode()).hexdigest())
    assert record is not None and record.usage_key is not None
    apigateway = boto3.client("apigateway", region_name=REGION)
    issued = apigateway.get_api_keys(includeValues=True)["items"]
    (mine,) = [k for k in issued if k["name"] == f"iris-{record.key_id}"]
    assert mine["value"] == record.usage_key
    in_plan = apigateway.get_usage_plan_keys(usagePlanId=usage_plan)["items"]
    assert [k["id"] for k in in_plan] == [mine["id"]]
    # Revoking the key retires its usage-plan key too (found by name: no plan id needed).
    revoke = ["keys", "revoke", record.key_id, "--backend", "dynamodb"]
    assert cli.main([*revoke, "--keys-table", keys_table]) == 0
    with pytest.raises(Unauthorized):
        AuthService(store, system_clock).authenticate(f"Bearer {key}")
    assert apigateway.get_api_keys()["items"] == []


def test_keys_list_reads_the_dynamodb_table(
    keys_table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for project in ("one", "two"):
        base = ["keys", "create", "--project", project, "--backend", "dynamodb"]
        assert cli.main([*base, "--keys-table", keys_table]) == 0
    capsys.readouterr()
    base = ["keys", "list", "--backend", "dynamodb", "--keys-table", keys_table]
    assert cli.main([*base, "--project", "two"]) == 0
    listing = capsys.readouterr().out
    assert "two" in listing and "one" not in listing


def test_a_usage_plan_needs_the_dynamodb_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IRIS_DATA_DIR", str(tmp_path))
    code = cli.main(["keys", "create", "--project", "p", "--usage-plan-id", "abc"])
    assert code == 2
    assert "--backend dynamodb" in capsys.readouterr().err


def test_keys_import_takes_over_an_iris_api_keys_table(
    postgres: PostgresServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    table = f"iris_api_keys_{uuid.uuid4().hex[:6]}"
    keys = {name: new_api_key() for name in ("active-a", "active-b", "disabled")}
    rows = ",".join(
        f"('{hashlib.sha256(key.encode()).hexdigest()}', 'legacy-{name[-1]}', '{name}',"
        f" {'false' if name == 'disabled' else 'true'}, now() - interval '3 days')"
        for name, key in keys.items()
    )
    postgres.psql(
        "-c",
        f"CREATE TABLE {table} (id serial PRIMARY KEY, key_hash text NOT NULL, project_id text"
        " NOT NULL, name text, is_active boolean NOT NULL DEFAULT true, created_at timestamptz"
        f" NOT NULL DEFAULT now()); INSERT INTO {table} (key_hash, project_id, name, is_active,"
        f" created_at) VALUES {rows};",
    )
    monkeypatch.setenv("IRIS_DATA_DIR", str(tmp_path))
    args = ["keys", "import", "--database-url", postgres.dsn, "--table", table]
    assert cli.main(args) == 0
    assert "imported 3 key(s)" in capsys.readouterr().err
    assert cli.main(args) == 0  # again: nothing twice
    again = capsys.readouterr().err
    assert "imported 0 key(s)" in again and "3 were already here" in again
    auth = AuthService(SqliteKeyStore(Database(tmp_path / "iris.db")), system_clock)
    assert auth.authenticate(f"Bearer {keys['active-a']}").project_id == "legacy-a"
    assert auth.authenticate(f"Bearer {keys['active-b']}").project_id == "legacy-b"
    with pytest.raises(Unauthorized, match="Invalid or inactive"):
        auth.authenticate(f"Bearer {keys['disabled']}")


def test_the_cli_uses_the_region_aws_configure_set(
    dynamodb_local: DynamoDBLocal,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No AWS_REGION: the Region comes from the AWS CLI's config file, as the AWS CLI's own
    would (the stack, its keys table and its usage plan are there, not in us-east-1)."""
    from iris_exec.adapters.awsapi import DynamoDB

    region = "eu-west-1"
    config_file = tmp_path / "config"
    config_file.write_text(f"[default]\nregion = {region}\n")
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    for var, value in {
        "AWS_CONFIG_FILE": str(config_file),
        "IRIS_DYNAMODB_ENDPOINT": dynamodb_local.endpoint_url,
        "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "x",
    }.items():
        monkeypatch.setenv(var, value)
    table = f"keys-{uuid.uuid4().hex[:8]}"
    create_tables(DynamoDB.connect(region, dynamodb_local.endpoint_url), {"keys": table})
    config: DefaultConfig = {
        "core": {"mock_credentials": False, "passthrough": {"services": ["dynamodb"]}}
    }
    with mock_aws(config=config):
        apigateway = boto3.client("apigateway", region_name=region)
        plan = apigateway.create_usage_plan(name="customers", apiStages=[])["id"]
        args = ["keys", "create", "--project", "eu", "--backend", "dynamodb"]
        assert cli.main([*args, "--keys-table", table, "--usage-plan-id", plan]) == 0
        assert f"{table} in {region}" in capsys.readouterr().err
        assert len(apigateway.get_usage_plan_keys(usagePlanId=plan)["items"]) == 1
