"""What the DynamoDB adapters do beyond the shared contracts: the items and TTLs they
write, lazy TTL, project-scoped conditions, error translation, atomic counters under load.
Everything runs against real DynamoDB Local; throttling and 5xx answers, which DynamoDB
Local never gives, come from a proxy in front of it that answers as DynamoDB does."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest

from iris_exec.adapters.awsapi import AwsError, AwsUnreachable
from iris_exec.adapters.dynamodb import query_all, scan_all
from iris_exec.adapters.dynamodb.executions import DynamoExecutionStore
from iris_exec.adapters.dynamodb.idempotency import DynamoIdempotencyStore
from iris_exec.adapters.dynamodb.keys import DynamoKeyStore
from iris_exec.adapters.dynamodb.ratelimit import DynamoRateLimitStore
from iris_exec.adapters.dynamodb.registry import DynamoSandboxRegistry
from iris_exec.adapters.dynamodb.tables import TABLES, create_tables
from iris_exec.domain.errors import StoreUnavailable
from iris_exec.domain.models import ApiKeyRecord, GoneReason, SandboxStatus
from tests.contract.conftest import DynamoTables
from tests.contract.test_execution_store import record as execution_record
from tests.contract.test_registry import NOW, record
from tests.support.dynamodb_faults import Fault, FaultyDynamoDB
from tests.support.dynamodb_local import DynamoDBLocal, make_client
from tests.support.server import free_port

if TYPE_CHECKING:
    from iris_exec.adapters.awsapi import DynamoDB

WEEK_S = 7 * 24 * 3600
#: DynamoDB's "not now" answers: throttling, and its own 5xx.
UNAVAILABLE = [
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
]


def registry_of(tables: DynamoTables, clock: float = NOW) -> DynamoSandboxRegistry:
    return DynamoSandboxRegistry(tables.client, tables.names["sandboxes"], clock=lambda: clock)


def raw_sandbox(tables: DynamoTables, sandbox_id: str) -> dict[str, Any]:
    answer = tables.client.get_item(
        TableName=tables.names["sandboxes"],
        Key={"sandboxId": {"S": sandbox_id}},
        ConsistentRead=True,
    )
    return dict(answer["Item"])


# -- tables ---------------------------------------------------------------------------------


def test_tables_have_the_declared_keys_indexes_and_ttl(dynamodb_tables: DynamoTables) -> None:
    client, names = dynamodb_tables.client, dynamodb_tables.names
    sandboxes = client.describe_table(TableName=names["sandboxes"])["Table"]
    assert sandboxes["KeySchema"] == [{"AttributeName": "sandboxId", "KeyType": "HASH"}]
    indexes = {i["IndexName"]: i["KeySchema"] for i in sandboxes.get("GlobalSecondaryIndexes", [])}
    assert indexes == {
        "byProject": [
            {"AttributeName": "projectId", "KeyType": "HASH"},
            {"AttributeName": "lastUsedAt", "KeyType": "RANGE"},
        ],
        "byProjectCreated": [
            {"AttributeName": "projectId", "KeyType": "HASH"},
            {"AttributeName": "createdAt", "KeyType": "RANGE"},
        ],
        "byStatus": [
            {"AttributeName": "status", "KeyType": "HASH"},
            {"AttributeName": "expiresAt", "KeyType": "RANGE"},
        ],
    }
    keys = client.describe_table(TableName=names["keys"])["Table"]
    assert keys["KeySchema"] == [{"AttributeName": "keyHash", "KeyType": "HASH"}]
    assert [i["IndexName"] for i in keys.get("GlobalSecondaryIndexes", [])] == ["byKeyId"]
    rate = client.describe_table(TableName=names["rate"])["Table"]
    assert rate["KeySchema"] == [
        {"AttributeName": "subject", "KeyType": "HASH"},
        {"AttributeName": "windowStart", "KeyType": "RANGE"},
    ]
    for logical in ("sandboxes", "rate"):
        ttl = client.describe_time_to_live(TableName=names[logical])["TimeToLiveDescription"]
        assert ttl.get("AttributeName") == "ttl"
        assert ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
    create_tables(client, names)  # again: existing tables are left alone


def test_create_tables_refuses_an_unknown_logical_name(dynamodb_tables: DynamoTables) -> None:
    with pytest.raises(ValueError, match="unknown table"):
        create_tables(dynamodb_tables.client, {"sandbox": "x"})
    assert set(TABLES) == {"sandboxes", "keys", "rate", "audit", "idempotency", "executions"}


# -- items and TTL ----------------------------------------------------------------------------


def test_sandbox_items_carry_ttl_a_week_after_the_lifetime(dynamodb_tables: DynamoTables) -> None:
    registry = registry_of(dynamodb_tables)
    registry.create(record(lifetime_deadline=NOW + 3600.75))
    item = raw_sandbox(dynamodb_tables, "sb_aaaaaaaa")
    assert item["ttl"] == {"N": str(int(NOW + 3600.75) + WEEK_S)}
    assert item["createdAt"] == {"N": "1800000000"}
    assert item["status"] == {"S": "running"}
    assert "leaseId" not in item and "closedAt" not in item and "detail" not in item
    assert registry.mark_gone("p1", "sb_aaaaaaaa", GoneReason.CLOSED, NOW + 5)
    assert raw_sandbox(dynamodb_tables, "sb_aaaaaaaa")["ttl"] == item["ttl"]


def test_every_field_round_trips_exactly(dynamodb_tables: DynamoTables) -> None:
    registry = registry_of(dynamodb_tables)
    full = record(
        created_at=NOW + 1 / 3,
        last_used_at=NOW + 0.1,
        expires_at=NOW + 300.123456789,
        lifetime_deadline=NOW + 3600.000001,
        status=SandboxStatus.RUNNING,
        closed_at=NOW + 2.5,
        closed_reason=GoneReason.EVICTED,
        detail="some detail",
        lease_id="ls_1",
        lease_until=NOW + 60.0625,
        executions=7,
    )
    registry.create(full)
    assert registry.get("p1", "sb_aaaaaaaa") == full
    assert registry.mark_gone("p1", "sb_aaaaaaaa", GoneReason.FAILED, NOW + 3)
    gone = registry.get("p1", "sb_aaaaaaaa")
    assert gone == replace(
        full,
        status=SandboxStatus.FAILED,
        closed_at=NOW + 3,
        closed_reason=GoneReason.FAILED,
        detail=None,
        lease_id=None,
        lease_until=None,
    )
    assert "detail" not in raw_sandbox(dynamodb_tables, "sb_aaaaaaaa")


def test_rate_windows_carry_ttl_two_windows_on(dynamodb_tables: DynamoTables) -> None:
    store = DynamoRateLimitStore(dynamodb_tables.client, dynamodb_tables.names["rate"])
    assert store.hit("key:k1", 1_800_000_000, 60) == 1
    assert store.hit("key:k1", 1_800_000_000, 60) == 2
    item = dynamodb_tables.client.get_item(
        TableName=dynamodb_tables.names["rate"],
        Key={"subject": {"S": "key:k1"}, "windowStart": {"N": "1800000000"}},
    )["Item"]
    assert item["ttl"] == {"N": str(1_800_000_000 + 120)}
    assert item["count"] == {"N": "2"}


def test_key_items_omit_missing_name_and_revocation(dynamodb_tables: DynamoTables) -> None:
    store = DynamoKeyStore(dynamodb_tables.client, dynamodb_tables.names["keys"])
    store.add(ApiKeyRecord("key_b", "b" * 64, "sk_live_b", "p1", 20.5, None, None))
    store.add(ApiKeyRecord("key_a", "a" * 64, "sk_live_a", "p1", 10.25, None, "first"))
    item = dynamodb_tables.client.get_item(
        TableName=dynamodb_tables.names["keys"], Key={"keyHash": {"S": "b" * 64}}
    )["Item"]
    assert "name" not in item and "revokedAt" not in item
    assert [k.key_id for k in store.list("p1")] == ["key_a", "key_b"]  # by createdAt
    assert store.find_by_hash("b" * 64) == ApiKeyRecord(
        "key_b", "b" * 64, "sk_live_b", "p1", 20.5, None, None
    )
    assert not store.revoke("key_unknown", 30.0)


def test_an_expired_sandbox_is_not_live_though_ttl_has_not_removed_it(
    dynamodb_tables: DynamoTables,
) -> None:
    registry = registry_of(dynamodb_tables)
    registry.create(record("sb_expired1", expires_at=NOW - 1))
    registry.create(record("sb_fresh001", expires_at=NOW + 1))
    # Still stored, and still readable: the service answers 410 (expired), not 404.
    assert raw_sandbox(dynamodb_tables, "sb_expired1")["expiresAt"] == {"N": str(int(NOW - 1))}
    expired = registry.get("p1", "sb_expired1")
    assert expired is not None and not expired.is_live(NOW)
    assert [r.sandbox_id for r in registry.list_live("p1", NOW)] == ["sb_fresh001"]
    assert [r.sandbox_id for r in registry.list_due(NOW, limit=10)] == ["sb_expired1"]


def test_an_item_past_its_ttl_reads_as_deleted(dynamodb_tables: DynamoTables) -> None:
    registry_of(dynamodb_tables).create(record(lifetime_deadline=NOW + 3600))
    after_ttl = NOW + 3600 + WEEK_S
    late = registry_of(dynamodb_tables, clock=after_ttl)
    assert "sandboxId" in raw_sandbox(dynamodb_tables, "sb_aaaaaaaa")  # TTL has not run
    assert late.get("p1", "sb_aaaaaaaa") is None
    assert late.list_live("p1", after_ttl) == []
    assert registry_of(dynamodb_tables, clock=after_ttl - 1).get("p1", "sb_aaaaaaaa") is not None


# -- project-scoped conditions ----------------------------------------------------------------


def test_another_project_cannot_release_or_close(dynamodb_tables: DynamoTables) -> None:
    registry = registry_of(dynamodb_tables)
    registry.create(record())
    assert registry.acquire_lease("p1", "sb_aaaaaaaa", "ls_1", NOW + 30, NOW)
    registry.release_lease("p2", "sb_aaaaaaaa", "ls_1", NOW + 5, NOW + 305)
    assert not registry.mark_gone("p2", "sb_aaaaaaaa", GoneReason.CLOSED, NOW + 40)
    held = registry.get("p1", "sb_aaaaaaaa")
    assert held is not None and held.lease_id == "ls_1" and held.executions == 0
    assert held.status is SandboxStatus.RUNNING
    registry.release_lease("p1", "sb_aaaaaaaa", "ls_1", NOW + 5, NOW + 305)
    registry.release_lease("p1", "sb_unknown1", "ls_1", NOW + 5, NOW + 305)  # nothing to do


def test_list_running_filters_by_provider_across_projects(dynamodb_tables: DynamoTables) -> None:
    registry = registry_of(dynamodb_tables)
    registry.create(record("sb_local001"))
    registry.create(record("sb_local002", project="p2", expires_at=NOW - 100))
    registry.create(record("sb_e2b00001", provider="e2b"))
    registry.create(record("sb_closed01"))
    assert registry.mark_gone("p1", "sb_closed01", GoneReason.CLOSED, NOW)
    assert sorted(r.sandbox_id for r in registry.list_running("local")) == [
        "sb_local001",
        "sb_local002",
    ]
    assert [r.sandbox_id for r in registry.list_running("e2b")] == ["sb_e2b00001"]


def test_queries_and_scans_follow_every_page(dynamodb_tables: DynamoTables) -> None:
    registry = registry_of(dynamodb_tables)
    for i in range(7):
        registry.create(record(f"sb_page000{i}", last_used_at=NOW + i, expires_at=NOW - 10 + i))
    client, table = dynamodb_tables.client, dynamodb_tables.names["sandboxes"]
    # Limit makes DynamoDB stop every 2 items, as 1 MB pages would with more data.
    pages = query_all(
        client,
        {
            "TableName": table,
            "IndexName": "byProject",
            "KeyConditionExpression": "projectId = :p",
            "ExpressionAttributeValues": {":p": {"S": "p1"}},
            "Limit": 2,
        },
    )
    assert [item["sandboxId"]["S"] for item in pages] == [f"sb_page000{i}" for i in range(7)]
    assert len(list(scan_all(client, {"TableName": table, "Limit": 2}))) == 7
    assert [r.sandbox_id for r in registry.list_due(NOW, limit=3)] == [
        "sb_page0000",
        "sb_page0001",
        "sb_page0002",
    ]
    assert registry.list_due(NOW, limit=0) == []


# -- errors -----------------------------------------------------------------------------------

Operation = Callable[["DynamoDB"], object]

OPERATIONS: dict[str, Operation] = {
    "registry.create": lambda c: DynamoSandboxRegistry(c, "t").create(record()),
    "registry.get": lambda c: DynamoSandboxRegistry(c, "t").get("p1", "sb_aaaaaaaa"),
    "registry.list_live": lambda c: DynamoSandboxRegistry(c, "t").list_live("p1", NOW),
    "registry.list_due": lambda c: DynamoSandboxRegistry(c, "t").list_due(NOW, 10),
    "registry.list_running": lambda c: DynamoSandboxRegistry(c, "t").list_running("local"),
    "registry.acquire_lease": lambda c: DynamoSandboxRegistry(c, "t").acquire_lease(
        "p1", "sb_aaaaaaaa", "ls_1", NOW + 30, NOW
    ),
    "registry.release_lease": lambda c: DynamoSandboxRegistry(c, "t").release_lease(
        "p1", "sb_aaaaaaaa", "ls_1", NOW, NOW + 300
    ),
    "registry.mark_gone": lambda c: DynamoSandboxRegistry(c, "t").mark_gone(
        "p1", "sb_aaaaaaaa", GoneReason.CLOSED, NOW
    ),
    "keys.add": lambda c: DynamoKeyStore(c, "t").add(
        ApiKeyRecord("key_1", "h" * 64, "sk_live_x", "p1", 1.0)
    ),
    "keys.find_by_hash": lambda c: DynamoKeyStore(c, "t").find_by_hash("h" * 64),
    "keys.list": lambda c: DynamoKeyStore(c, "t").list("p1"),
    "keys.revoke": lambda c: DynamoKeyStore(c, "t").revoke("key_1", 2.0),
    "rate.hit": lambda c: DynamoRateLimitStore(c, "t").hit("key:k1", 600, 60),
    "idempotency.begin": lambda c: DynamoIdempotencyStore(c, "t", 3600).begin(
        "p1:k", "fp", NOW, 60
    ),
    "idempotency.complete": lambda c: DynamoIdempotencyStore(c, "t", 3600).complete(
        "p1:k", "fp", {"ok": True}, NOW
    ),
    "idempotency.release": lambda c: DynamoIdempotencyStore(c, "t", 3600).release("p1:k", "fp"),
}

#: The first DynamoDB operation each one calls, for the fault proxy.
FIRST_CALL = {
    "registry.create": "PutItem",
    "registry.get": "GetItem",
    "registry.list_live": "Query",
    "registry.list_due": "Query",
    "registry.list_running": "Query",
    "registry.acquire_lease": "UpdateItem",
    "registry.release_lease": "GetItem",
    "registry.mark_gone": "UpdateItem",
    "keys.add": "PutItem",
    "keys.find_by_hash": "GetItem",
    "keys.list": "Scan",
    "keys.revoke": "Query",
    "rate.hit": "UpdateItem",
    "idempotency.begin": "PutItem",
    "idempotency.complete": "UpdateItem",
    "idempotency.release": "DeleteItem",
}


def failing_fast(endpoint_url: str, **options: Any) -> DynamoDB:
    """A client that gives up at once: short timeouts, no retries."""
    settings: dict[str, Any] = {
        "connect_timeout": 0.5,
        "read_timeout": 0.5,
        "max_attempts": 1,
        **options,
    }
    return make_client(endpoint_url, **settings)


@pytest.fixture
def closed_port_client() -> DynamoDB:
    """A client for a port nobody listens on (bound, then closed again): refused at once."""
    return failing_fast(f"http://127.0.0.1:{free_port()}")


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_connection_errors_are_store_unavailable(
    operation: str, closed_port_client: DynamoDB
) -> None:
    with pytest.raises(StoreUnavailable, match="unreachable") as raised:
        OPERATIONS[operation](closed_port_client)
    assert isinstance(raised.value.__cause__, AwsUnreachable)
    assert isinstance(raised.value.__cause__.__cause__, ConnectionRefusedError)


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("operation", ["registry.get", "rate.hit"])
def test_read_timeouts_are_store_unavailable(operation: str, silent_endpoint: str) -> None:
    client = failing_fast(silent_endpoint, read_timeout=0.3)
    with pytest.raises(StoreUnavailable) as raised:
        OPERATIONS[operation](client)
    assert isinstance(raised.value.__cause__, AwsUnreachable)
    assert isinstance(raised.value.__cause__.__cause__, TimeoutError)


@pytest.mark.parametrize("code", UNAVAILABLE)
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_throttling_and_5xx_are_store_unavailable_after_three_attempts(
    operation: str, code: str, dynamodb_local: DynamoDBLocal
) -> None:
    first = FIRST_CALL[operation]
    with (
        FaultyDynamoDB(dynamodb_local.endpoint_url, {first: Fault(code)}) as proxy,
        pytest.raises(StoreUnavailable, match=code) as raised,
    ):
        OPERATIONS[operation](make_client(proxy.endpoint_url, max_attempts=3))
    assert isinstance(raised.value.__cause__, AwsError)
    assert proxy.seen[first] == 3


@pytest.mark.parametrize("code", UNAVAILABLE)
def test_a_passing_throttle_is_retried_and_the_request_succeeds(
    code: str, dynamodb_tables: DynamoTables
) -> None:
    with FaultyDynamoDB(
        dynamodb_tables.client.transport.endpoint, {"UpdateItem": Fault(code, times=2)}
    ) as proxy:
        client = make_client(proxy.endpoint_url, max_attempts=3)
        store = DynamoRateLimitStore(client, dynamodb_tables.names["rate"])
        assert store.hit("key:k1", 1_800_000_000, 60) == 1
        assert store.hit("key:k1", 1_800_000_000, 60) == 2
    assert proxy.seen["UpdateItem"] == 4


def test_throttling_after_the_first_call_is_store_unavailable(
    dynamodb_tables: DynamoTables,
) -> None:
    # release_lease and revoke read first, then write: the write is translated too.
    names = dynamodb_tables.names
    registry_of(dynamodb_tables).create(record(lease_id="ls_1", lease_until=NOW + 30))
    DynamoKeyStore(dynamodb_tables.client, names["keys"]).add(
        ApiKeyRecord("key_1", "h" * 64, "sk_live_x", "p1", 1.0)
    )
    faults = {"UpdateItem": Fault("ThrottlingException")}
    with FaultyDynamoDB(dynamodb_tables.client.transport.endpoint, faults) as proxy:
        client = make_client(proxy.endpoint_url, max_attempts=2)
        registry = DynamoSandboxRegistry(client, names["sandboxes"], clock=lambda: NOW)
        with pytest.raises(StoreUnavailable, match="ThrottlingException"):
            registry.release_lease("p1", "sb_aaaaaaaa", "ls_1", NOW, NOW + 300)
        assert proxy.seen == {"GetItem": 1, "UpdateItem": 2}
        faults["UpdateItem"] = Fault("ProvisionedThroughputExceededException")
        with pytest.raises(StoreUnavailable, match="ProvisionedThroughputExceededException"):
            DynamoKeyStore(client, names["keys"]).revoke("key_1", 2.0)
        assert proxy.seen["Query"] == 1
    # Nothing was written: the lease is still held, the key still valid.
    assert registry_of(dynamodb_tables).get("p1", "sb_aaaaaaaa").lease_id == "ls_1"  # type: ignore[union-attr]
    found = DynamoKeyStore(dynamodb_tables.client, names["keys"]).find_by_hash("h" * 64)
    assert found is not None and found.revoked_at is None


def test_a_corrupted_answer_is_retried_then_unreachable(dynamodb_tables: DynamoTables) -> None:
    registry_of(dynamodb_tables).create(record())
    with FaultyDynamoDB(dynamodb_tables.client.transport.endpoint, corrupt=1) as proxy:
        client = make_client(proxy.endpoint_url, max_attempts=3)
        registry = DynamoSandboxRegistry(client, dynamodb_tables.names["sandboxes"])
        assert registry.get("p1", "sb_aaaaaaaa") is not None  # the second answer is whole
        proxy.corrupt = 3
        with pytest.raises(StoreUnavailable) as raised:
            registry.get("p1", "sb_aaaaaaaa")
    assert "x-amz-crc32" in str(raised.value.__cause__)
    assert proxy.seen["GetItem"] == 5


def test_other_client_errors_are_not_unavailability(dynamodb_local: DynamoDBLocal) -> None:
    # A missing table is a deployment mistake, not an outage: it must not become a 503.
    client = dynamodb_local.client()
    with pytest.raises(AwsError, match="ResourceNotFoundException") as raised:
        DynamoSandboxRegistry(client, "iris-no-such-table").get("p1", "sb_aaaaaaaa")
    assert raised.value.status == 400
    assert raised.value.code == "ResourceNotFoundException"


def test_a_crashed_server_is_unavailable_until_it_is_back() -> None:
    with DynamoDBLocal() as server:
        names = {logical: f"iris-{logical}-crash" for logical in TABLES}
        create_tables(server.client(), names)
        client = server.client(connect_timeout=0.5, max_attempts=1)
        store = DynamoRateLimitStore(client, names["rate"])
        assert store.hit("key:k1", 600, 60) == 1
        server.kill()
        with pytest.raises(StoreUnavailable):
            store.hit("key:k1", 600, 60)
        server.restart()  # in memory: the tables are gone with the old process
        create_tables(server.client(), names)
        assert store.hit("key:k1", 600, 60) == 1


# -- concurrency ------------------------------------------------------------------------------


def test_200_concurrent_hits_count_exactly(dynamodb_tables: DynamoTables) -> None:
    store = DynamoRateLimitStore(dynamodb_tables.client, dynamodb_tables.names["rate"])
    counts: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(200)

    def hit() -> None:
        try:
            barrier.wait()
            value = store.hit("key:hot", 1_800_000_000, 60)
        except BaseException as exc:
            with lock:
                errors.append(exc)
            return
        with lock:
            counts.append(value)

    threads = [threading.Thread(target=hit) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(counts) == list(range(1, 201))


# -- executions -------------------------------------------------------------------------------


def test_a_log_reader_between_two_part_writes_waits_for_the_whole_batch(
    dynamodb_tables: DynamoTables,
) -> None:
    """A flush bigger than one item is written part after part; a poll that lands between
    two parts must not fail, nor skip lines: it stops before the unfinished batch."""
    store = DynamoExecutionStore(
        dynamodb_tables.client, dynamodb_tables.names["executions"], retention_s=WEEK_S
    )
    ex = execution_record()
    store.create(ex)
    store.append_logs("p1", ex.execution_id, 0, ["[stdout] before"])
    huge = ["[stdout] " + "x" * 400_000, "[stdout] after the huge line"]
    store.append_logs("p1", ex.execution_id, 1, huge)
    store.append_logs("p1", ex.execution_id, 3, ["[stdout] last"])
    key = {"executionId": {"S": ex.execution_id}, "sk": {"S": "log#000000002#001"}}
    table = dynamodb_tables.names["executions"]
    second_part = dynamodb_tables.client.get_item(TableName=table, Key=key, ConsistentRead=True)
    assert second_part["Item"]["parts"] == {"N": "2"}
    dynamodb_tables.client.delete_item(TableName=table, Key=key)  # not written yet
    assert store.logs("p1", ex.execution_id, 0, 100) == ["[stdout] before"]
    dynamodb_tables.client.put_item(TableName=table, Item=second_part["Item"])  # now it is
    assert store.logs("p1", ex.execution_id, 0, 100) == [
        "[stdout] before", *huge, "[stdout] last"
    ]  # fmt: skip
    assert store.logs("p1", ex.execution_id, 2, 100) == [huge[1], "[stdout] last"]


# -- idempotency records: Powertools' format ---------------------------------------------------


def powertools_layer(tables: DynamoTables, dynamodb_local: DynamoDBLocal) -> Any:
    """Powertools' own DynamoDB persistence layer over botocore, configured as the store
    describes its records: key ``key``, payload validation on ``fingerprint``."""
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
    )

    layer = DynamoDBPersistenceLayer(
        table_name=tables.names["idempotency"], boto3_client=dynamodb_local.boto_client()
    )
    config = IdempotencyConfig(
        event_key_jmespath="key", payload_validation_jmespath="fingerprint", use_local_cache=False
    )
    layer.configure(config, key_prefix="iris-exec.execute")
    return layer


def test_an_idempotency_record_is_powertools_record(
    dynamodb_tables: DynamoTables, dynamodb_local: DynamoDBLocal
) -> None:
    """What the store writes, Powertools reads: the same key, status, expiry, payload hash
    and answer, in the attributes its documentation names."""
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyValidationError,
    )

    store = DynamoIdempotencyStore(
        dynamodb_tables.client, dynamodb_tables.names["idempotency"], 3600
    )
    layer = powertools_layer(dynamodb_tables, dynamodb_local)
    now = time.time()
    assert store.begin("p1:job-1", "fp-1", now, 60) is None
    claimed = layer.get_record({"key": "p1:job-1", "fingerprint": "fp-1"})
    assert claimed.status == "INPROGRESS"
    assert claimed.in_progress_expiry_timestamp == int((now + 60) * 1000)
    answer = {"success": True, "result": {"output": "2\n", "logs": ["[stdout] 2"]}}
    store.complete("p1:job-1", "fp-1", answer, now)
    done = layer.get_record({"key": "p1:job-1", "fingerprint": "fp-1"})
    assert done.status == "COMPLETED"
    assert done.response_json_as_dict() == answer
    assert done.expiry_timestamp == int(now + 3600)
    with pytest.raises(IdempotencyValidationError):
        layer.get_record({"key": "p1:job-1", "fingerprint": "another body"})
    items = dynamodb_tables.client.scan(TableName=dynamodb_tables.names["idempotency"])["Items"]
    assert [sorted(item) for item in items] == [
        ["claim", "data", "expiration", "id", "in_progress_expiration", "status", "validation"]
    ]


def test_a_record_powertools_wrote_is_replayed(
    dynamodb_tables: DynamoTables, dynamodb_local: DynamoDBLocal
) -> None:
    """A record Powertools claimed is in progress for the store, and once Powertools saved
    its answer, the store replays it (records left by an older release keep working)."""
    layer = powertools_layer(dynamodb_tables, dynamodb_local)
    store = DynamoIdempotencyStore(
        dynamodb_tables.client, dynamodb_tables.names["idempotency"], 3600
    )
    request = {"key": "p2:job-2", "fingerprint": "fp-2"}
    layer.save_inprogress(request, remaining_time_in_millis=60_000)
    now = time.time()
    running = store.begin("p2:job-2", "fp-2", now, 60)
    assert running is not None and running.state == "in_progress"
    other = store.begin("p2:job-2", "fp-other", now, 60)
    assert other is not None and other.state == "mismatch"
    layer.save_success(request, {"success": True, "sandboxId": "sb_1"})
    replay = store.begin("p2:job-2", "fp-2", now, 60)
    assert replay is not None and replay.state == "completed"
    assert replay.response == {"success": True, "sandboxId": "sb_1"}


def test_a_taken_key_costs_one_request_and_is_read_when_dynamodb_returns_no_item(
    dynamodb_tables: DynamoTables,
) -> None:
    """DynamoDB returns the record in the way (ReturnValuesOnConditionCheckFailure): one
    request answers a retry. A conflict answered without it is read with a GetItem."""
    table = dynamodb_tables.names["idempotency"]
    DynamoIdempotencyStore(dynamodb_tables.client, table, 3600).begin("p3:k", "fp", NOW, 60)
    with FaultyDynamoDB(dynamodb_tables.client.transport.endpoint) as proxy:
        store = DynamoIdempotencyStore(make_client(proxy.endpoint_url), table, 3600)
        taken = store.begin("p3:k", "fp", NOW, 60)
        assert taken is not None and taken.state == "in_progress"
        assert proxy.seen == {"PutItem": 1}
        proxy.faults["PutItem"] = Fault("ConditionalCheckFailedException", times=1)
        other = store.begin("p3:k", "another body", NOW, 60)
        assert other is not None and other.state == "mismatch"
        assert proxy.seen == {"PutItem": 2, "GetItem": 1}


def test_a_claim_whose_answer_was_lost_is_still_the_claimants(
    dynamodb_tables: DynamoTables,
) -> None:
    """DynamoDB wrote the claim but its answer never arrived; the client sends the PutItem
    again (as botocore would), and its condition now fails on the claim itself. That
    request holds the key: it runs, and is not told that it is still running (a 409 for its
    own first try). Another request with the same key still waits."""
    table = dynamodb_tables.names["idempotency"]
    with FaultyDynamoDB(dynamodb_tables.client.transport.endpoint) as proxy:
        store = DynamoIdempotencyStore(make_client(proxy.endpoint_url), table, 3600)
        proxy.lost["PutItem"] = 1
        now = time.time()
        assert store.begin("p4:k", "fp", now, 60) is None
        assert proxy.seen == {"PutItem": 2}
        again = store.begin("p4:k", "fp", now, 60)
        assert again is not None and again.state == "in_progress"
        store.complete("p4:k", "fp", {"success": True}, now)
        replay = store.begin("p4:k", "fp", now, 60)
        assert replay is not None and replay.state == "completed"


def test_a_start_whose_answer_was_lost_is_still_the_workers(
    dynamodb_tables: DynamoTables,
) -> None:
    """The worker's start (queued -> running) was written but its answer lost; the client
    sends the UpdateItem again and its condition fails on that very write. The worker still
    runs the execution (it was not taken by another delivery), and another delivery of the
    same event still does not."""
    table = dynamodb_tables.names["executions"]
    DynamoExecutionStore(dynamodb_tables.client, table, 3600).create(execution_record(7))
    with FaultyDynamoDB(dynamodb_tables.client.transport.endpoint) as proxy:
        store = DynamoExecutionStore(make_client(proxy.endpoint_url), table, 3600)
        proxy.lost["UpdateItem"] = 1
        ex = execution_record(7)
        assert store.start(ex.project_id, ex.execution_id, started_at=NOW, alive_until=NOW + 60)
        assert proxy.seen == {"UpdateItem": 2}
        again = store.start(ex.project_id, ex.execution_id, started_at=NOW, alive_until=NOW + 60)
        assert not again
        found = store.get(ex.project_id, ex.execution_id)
        assert found is not None and found.status == "running"


def test_a_create_whose_answer_was_lost_is_not_a_conflict(dynamodb_tables: DynamoTables) -> None:
    """A new sandbox's record was written but the answer lost; the client sends the PutItem
    again and its attribute_not_exists condition fails on that very item. The create
    succeeded (it is not AlreadyExists, a 500 for a fresh id); another record with the
    same id is still refused."""
    from iris_exec.domain.errors import AlreadyExists

    table = dynamodb_tables.names["sandboxes"]
    with FaultyDynamoDB(dynamodb_tables.client.transport.endpoint) as proxy:
        registry = DynamoSandboxRegistry(make_client(proxy.endpoint_url), table, clock=lambda: NOW)
        proxy.lost["PutItem"] = 1
        registry.create(record("sb_lostans1", lifetime_deadline=NOW + 3600.5))
        assert proxy.seen == {"PutItem": 2}
        with pytest.raises(AlreadyExists):
            registry.create(record("sb_lostans1", project="p2"))
    found = registry_of(dynamodb_tables).get("p1", "sb_lostans1")
    assert found is not None
