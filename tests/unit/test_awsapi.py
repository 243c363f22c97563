"""The service's own AWS client signs requests exactly as botocore does (botocore is the
reference: AWS accepts its signatures), and reads AWS's error answers by their code.
Its round trips against a real DynamoDB Local are in tests/contract."""

from __future__ import annotations

import datetime
import functools
import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from iris_exec.adapters.awsapi import (
    AwsError,
    AwsHttp,
    Credentials,
    DynamoDB,
    LambdaApi,
    SecretsManager,
    default_credentials,
    regional_endpoint,
    sign,
)

WHEN = datetime.datetime(2026, 11, 26, 18, 40, 46, tzinfo=datetime.UTC)
AMZ_DATE = "20261126T184046Z"
KEYS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SESSION = Credentials("ASIAEXAMPLE", "c2VjcmV0", "FQoGZXIvYXdzEJr//////////token+/=")


def botocore_headers(
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    headers: dict[str, str],
    body: bytes,
    service: str,
    region: str,
    credentials: Credentials,
) -> dict[str, str]:
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: WHEN)
    request = AWSRequest(method="POST", url=url, headers=dict(headers), data=body)
    boto = BotoCredentials(credentials.access_key, credentials.secret_key, credentials.token)
    SigV4Auth(boto, service, region).add_auth(request)
    return dict(request.headers.items())


CASES = [
    pytest.param(
        "https://dynamodb.us-east-1.amazonaws.com/",
        {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "DynamoDB_20120810.GetItem"},
        json.dumps({"TableName": "iris-sandboxes", "Key": {"sandboxId": {"S": "sb_1"}}}).encode(),
        "dynamodb", "us-east-1", KEYS,
        id="dynamodb",
    ),
    pytest.param(
        "https://dynamodb.eu-west-1.amazonaws.com/",
        {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "DynamoDB_20120810.Query"},
        "{\"ExpressionAttributeValues\":{\":p\":{\"S\":\"é  two  spaces\"}}}".encode(),
        "dynamodb", "eu-west-1", SESSION,
        id="dynamodb-session-token-utf8",
    ),
    pytest.param(
        "http://127.0.0.1:8123/",
        {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "DynamoDB_20120810.Scan"},
        b"{}",
        "dynamodb", "us-east-1", KEYS,
        id="port-in-host",
    ),
    pytest.param(
        "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/"
        "arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Airis-worker/invocations",
        {"X-Amz-Invocation-Type": "Event"},
        b'{"projectId":"p1","executionId":"ex_1"}',
        "lambda", "us-east-1", SESSION,
        id="lambda-arn-in-path",
    ),
    pytest.param(
        "https://lambda.cn-north-1.amazonaws.com.cn/2015-03-31/functions/w/invocations",
        {"X-Amz-Invocation-Type": "Event"},
        b"",
        "lambda", "cn-north-1", KEYS,
        id="empty-body",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("url", "headers", "body", "service", "region", "credentials"), CASES)
def test_signatures_are_botocores(
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    headers: dict[str, str],
    body: bytes,
    service: str,
    region: str,
    credentials: Credentials,
) -> None:
    ours = sign(
        "POST", url, headers, body,
        service=service, region=region, credentials=credentials, amz_date=AMZ_DATE,
    )  # fmt: skip
    theirs = botocore_headers(monkeypatch, url, headers, body, service, region, credentials)
    assert ours["Authorization"] == theirs["Authorization"]
    assert ours["X-Amz-Date"] == theirs["X-Amz-Date"] == AMZ_DATE
    assert ours.get("X-Amz-Security-Token") == theirs.get("X-Amz-Security-Token")


def test_a_different_secret_or_body_gives_another_signature() -> None:
    url, headers = "https://dynamodb.us-east-1.amazonaws.com/", {"X-Amz-Target": "x"}

    def signature(body: bytes, credentials: Credentials) -> str:
        signed = sign(
            "POST", url, headers, body,
            service="dynamodb", region="us-east-1", credentials=credentials, amz_date=AMZ_DATE,
        )  # fmt: skip
        return signed["Authorization"]

    assert signature(b"{}", KEYS) != signature(b"{ }", KEYS)
    assert signature(b"{}", KEYS) != signature(b"{}", Credentials(KEYS.access_key, "other"))


def test_regional_endpoints() -> None:
    assert regional_endpoint("dynamodb", "eu-west-1") == "https://dynamodb.eu-west-1.amazonaws.com"
    assert regional_endpoint("lambda", "cn-north-1") == "https://lambda.cn-north-1.amazonaws.com.cn"


@functools.cache
def boto_session() -> Any:
    """One session for every client (it caches the services' models)."""
    import boto3

    return boto3.session.Session(aws_access_key_id="a", aws_secret_access_key="b")


@pytest.mark.parametrize("service", ["dynamodb", "secretsmanager", "lambda"])
@pytest.mark.parametrize(
    "region",
    ["us-east-1", "us-gov-west-1", "cn-north-1", "us-iso-east-1", "us-isob-east-1",
     "us-isof-south-1", "eu-isoe-west-1", "eusc-de-east-1"],
)  # fmt: skip
@pytest.mark.parametrize(("fips", "dualstack"), [(False, False), (True, False), (False, True)])
def test_endpoints_are_those_botocore_resolves(
    monkeypatch: pytest.MonkeyPatch, service: str, region: str, fips: bool, dualstack: bool
) -> None:
    """In every partition, and with the SDKs' FIPS and dual-stack settings (a deployment
    that must use FIPS endpoints sets AWS_USE_FIPS_ENDPOINT): botocore's endpoint rules
    are the reference."""
    from botocore.exceptions import EndpointVariantError

    for name in ("AWS_ENDPOINT_URL", f"AWS_ENDPOINT_URL_{service.upper()}"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_USE_FIPS_ENDPOINT", str(fips).lower())
    monkeypatch.setenv("AWS_USE_DUALSTACK_ENDPOINT", str(dualstack).lower())
    try:
        theirs = boto_session().client(service, region_name=region).meta.endpoint_url
    except EndpointVariantError:
        pytest.skip("botocore knows no such endpoint")
    assert regional_endpoint(service, region) == theirs


def test_credentials_come_from_the_lambda_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-from-env")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token-from-env")
    credentials = default_credentials()()
    assert credentials == Credentials("ASIAFROMENV", "secret-from-env", "token-from-env")
    assert "secret-from-env" not in repr(credentials)
    assert "token-from-env" not in repr(credentials)


class Recorder:
    """An HTTP server that answers every POST with the next of ``answers``."""

    def __init__(self, answers: list[tuple[int, dict[str, str], bytes]]) -> None:
        self.answers = answers
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        #: Close each connection after answering, without saying so (as servers do with
        #: idle keep-alive connections).
        self.hang_up = False
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                recorder.requests.append((self.path, dict(self.headers.items()), body))
                status, headers, answer = recorder.answers.pop(0)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                self.close_connection = recorder.hang_up

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder([])
    thread = Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def lambda_api(recorder: Recorder, attempts: int = 3) -> LambdaApi:
    return LambdaApi(
        AwsHttp("lambda", "us-east-1", recorder.url, credentials=lambda: SESSION,
                max_attempts=attempts)
    )  # fmt: skip


def test_an_event_invocation_is_sent_signed_with_its_payload(recorder: Recorder) -> None:
    recorder.answers.append((202, {}, b""))
    function = "arn:aws:lambda:us-east-1:123456789012:function:iris-worker"
    assert lambda_api(recorder).invoke_event(function, b'{"executionId":"ex_1"}') == 202
    [(path, headers, body)] = recorder.requests
    assert path == (
        "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction"
        "%3Airis-worker/invocations"
    )
    assert headers["X-Amz-Invocation-Type"] == "Event"
    assert headers["X-Amz-Security-Token"] == SESSION.token
    assert (
        headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/")
        and "/us-east-1/lambda/aws4_request" in headers["Authorization"]
    )
    assert body == b'{"executionId":"ex_1"}'


def test_rest_errors_are_read_from_their_header(recorder: Recorder) -> None:
    error = {"Type": "User", "Message": "Function not found: arn:...:missing"}
    recorder.answers.append(
        (404, {"x-amzn-ErrorType": "ResourceNotFoundException:http://internal.amazon.com/"},
         json.dumps(error).encode())
    )  # fmt: skip
    with pytest.raises(AwsError) as raised:
        lambda_api(recorder).invoke_event("missing", b"{}")
    assert (raised.value.status, raised.value.code) == (404, "ResourceNotFoundException")
    assert raised.value.message == "Function not found: arn:...:missing"
    assert len(recorder.requests) == 1  # not retried: it would not change


def test_throttling_is_retried_then_reported(recorder: Recorder) -> None:
    throttled = (429, {"x-amzn-ErrorType": "TooManyRequestsException"}, b'{"message":"Rate"}')
    recorder.answers.extend([throttled, (202, {}, b"")])
    assert lambda_api(recorder).invoke_event("w", b"{}") == 202
    recorder.answers.extend([throttled, throttled])
    with pytest.raises(AwsError, match="TooManyRequestsException"):
        lambda_api(recorder, attempts=2).invoke_event("w", b"{}")
    assert len(recorder.requests) == 4
    # Each attempt is signed afresh (its own X-Amz-Date), over one kept-alive connection.
    assert all("Signature=" in headers["Authorization"] for _, headers, _ in recorder.requests)


def test_a_connection_the_server_closed_while_idle_is_not_reused(recorder: Recorder) -> None:
    """Without retries: the second call must not be sent down the closed connection."""
    recorder.hang_up = True
    recorder.answers.extend([(202, {}, b""), (202, {}, b""), (202, {}, b"")])
    api = lambda_api(recorder, attempts=1)
    assert api.invoke_event("w", b"{}") == 202
    time.sleep(0.2)  # the server's close reaches the idle connection
    assert api.invoke_event("w", b"{}") == 202
    time.sleep(0.2)
    assert api.invoke_event("w", b"{}") == 202
    assert len(recorder.requests) == 3


def test_secrets_manager_internal_errors_are_retried_though_they_come_as_400(
    recorder: Recorder,
) -> None:
    """Secrets Manager's documented InternalServiceError has HTTP status 400 (its Common
    Errors page): retried by its code, then reported as unavailable, not as a bad request."""
    body = b'{"__type":"InternalServiceError","Message":"An error occurred"}'
    error: tuple[int, dict[str, str], bytes] = (400, {}, body)
    recorder.answers.extend([error, error])
    client = SecretsManager(
        AwsHttp("secretsmanager", "us-east-1", recorder.url, credentials=lambda: KEYS,
                max_attempts=2)
    )  # fmt: skip
    with pytest.raises(AwsError) as raised:
        client.get_secret_value(SecretId="iris/e2b")
    assert raised.value.unavailable and not raised.value.condition_failed
    assert len(recorder.requests) == 2
    path, headers, body = recorder.requests[0]
    assert path == "/"
    assert headers["X-Amz-Target"] == "secretsmanager.GetSecretValue"
    assert headers["Content-Type"] == "application/x-amz-json-1.1"
    assert "/us-east-1/secretsmanager/aws4_request" in headers["Authorization"]
    assert json.loads(body) == {"SecretId": "iris/e2b"}


def test_a_failed_condition_is_neither_retried_nor_unavailable(recorder: Recorder) -> None:
    failed = b'{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"}'
    recorder.answers.append((400, {}, failed))
    client = DynamoDB(AwsHttp("dynamodb", "us-east-1", recorder.url, credentials=lambda: KEYS))
    with pytest.raises(AwsError) as raised:
        client.put_item(TableName="t", Item={}, ConditionExpression="attribute_not_exists(id)")
    assert raised.value.condition_failed and not raised.value.unavailable
    assert len(recorder.requests) == 1


def test_endpoints_come_from_the_sdks_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As the AWS SDKs read them: the service's own variable, then the global one, unless
    configured endpoints are ignored."""
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    ):
        monkeypatch.delenv(name, raising=False)  # fmt: skip
    assert SecretsManager.connect("eu-west-1").transport.endpoint == (
        "https://secretsmanager.eu-west-1.amazonaws.com"
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:9000")
    assert SecretsManager.connect("eu-west-1").transport.endpoint == "http://127.0.0.1:9000"
    assert DynamoDB.connect("eu-west-1").transport.endpoint == "http://127.0.0.1:4566"
    assert DynamoDB.connect("eu-west-1", "http://x:1").transport.endpoint == "http://x:1"
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    assert DynamoDB.connect("eu-west-1").transport.endpoint == (
        "https://dynamodb.eu-west-1.amazonaws.com"
    )


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        pytest.param(
            400,
            b'{"__type":"com.amazonaws.dynamodb.v20120810#TransactionConflictException",'
            b'"message":"Transaction is ongoing for the item"}',
            "TransactionConflictException",
            id="item-in-a-transaction",
        ),
        pytest.param(
            409,
            b'{"__type":"com.amazonaws.dynamodb.v20120810#ReplicatedWriteConflictException"}',
            "ReplicatedWriteConflictException",
            id="global-table-write-conflict",
        ),
        pytest.param(429, b"", "429", id="too-many-requests-without-a-code"),
        pytest.param(
            400,
            b'{"__type":"com.amazon.coral.availability#ThrottlingException:http://internal/"}',
            "ThrottlingException",
            id="type-with-a-detail-suffix",
        ),
    ],
)
def test_what_aws_says_to_retry_is_retried_then_unavailable(
    recorder: Recorder, status: int, body: bytes, code: str
) -> None:
    """DynamoDB's error table says to retry a TransactionConflictException; botocore retries
    ReplicatedWriteConflictException for DynamoDB and any 429, and reads ``__type`` up to a
    ``:``. Each is sent again, then a 503 (unavailable), never a 500."""
    recorder.answers.extend([(status, {}, body), (status, {}, body)])
    client = DynamoDB(
        AwsHttp("dynamodb", "us-east-1", recorder.url, credentials=lambda: KEYS, max_attempts=2)
    )
    with pytest.raises(AwsError) as raised:
        client.update_item(TableName="t", Key={"id": {"S": "a"}}, UpdateExpression="SET x = :x")
    assert raised.value.code == code
    assert raised.value.unavailable and not raised.value.condition_failed
    assert len(recorder.requests) == 2
