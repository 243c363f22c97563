"""A small client for the AWS APIs this service calls at run time: DynamoDB and Secrets
Manager (their JSON protocols) and Lambda's Invoke, signed with Signature Version 4.

Why not botocore: importing it and building one client takes ~150 ms of every Lambda cold
start (the session alone imports ~80 ms of modules, and a client loads and parses its
service's model), which is half of what the sandbox routes may take in all. What the
service needs is small: sign a POST, send it over a kept-alive connection, retry what AWS
says to retry, and report errors by AWS's code. The requests and answers have exactly the
shapes of botocore's low-level client (``client.get_item(TableName=..., Key=...)``), as
both are the services' own wire format, except that binary values stay base64 text.

One client, one error vocabulary: every table (idempotency records included) and every
secret goes through it, and every AWS error is an ``AwsError`` that says whether it is a
failed condition (``condition_failed``) or AWS being unavailable for now (``unavailable``:
throttling, a transient code, a 5xx answer; the client has already retried those).

What it deliberately does not do: query strings, pagination helpers, botocore's model
validation of requests. botocore stays for what is off the request path: the admin CLI and
the credential chain when the environment holds no keys (on Lambda it always does). Tests
check the signatures against botocore's own signer."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import logging
import os
import random
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import quote, urlsplit

from iris_exec.adapters.httppool import TRANSPORT_ERRORS, ConnectionPool, Reply

log = logging.getLogger(__name__)

USER_AGENT = "iris-exec"
#: Error codes that mean "too much, slow down": botocore's "standard" retry mode retries the
#: same ones (``botocore/retries/standard.py``), and DynamoDB's error table marks its own
#: (ProvisionedThroughputExceeded, RequestLimitExceeded, Throttling, LimitExceeded) "OK to
#: retry".
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
    }
)
#: Codes of a request that may succeed if sent again (botocore's transient codes, the codes
#: AWS services give their own 5xx answers, and DynamoDB's write conflicts: an item in an
#: ongoing transaction (TransactionConflictException, "OK to retry" in DynamoDB's error
#: table) or written in another region of a global table (ReplicatedWriteConflictException,
#: which botocore's DynamoDB retry policy retries).
TRANSIENT_CODES = frozenset(
    {
        "TransactionConflictException",
        "ReplicatedWriteConflictException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "InternalServiceError",
        "ServiceUnavailable",
    }
)
#: 429 is "too many requests" whatever the code (botocore's throttling status); the rest are
#: botocore's transient statuses.
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
#: Full-jitter exponential backoff between attempts: up to 50 ms, then 100 ms, ...
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 2.0


class AwsError(Exception):
    """AWS answered with an error: ``code`` is AWS's error code
    (``ConditionalCheckFailedException``, ``ResourceNotFoundException``, ...)."""

    def __init__(self, operation: str, status: int, code: str, message: str, data: Any) -> None:
        super().__init__(f"{operation}: {code} ({status}): {message}")
        self.operation = operation
        self.status = status
        self.code = code
        self.message = message
        #: The answer's JSON body (DynamoDB puts CancellationReasons or Item there).
        self.data = data

    @property
    def condition_failed(self) -> bool:
        """A conditional write's condition was false (DynamoDB); never retried."""
        return self.code == "ConditionalCheckFailedException"

    @property
    def throttled(self) -> bool:
        return self.code in THROTTLING_CODES

    @property
    def retryable(self) -> bool:
        """Worth sending again at once, with backoff (what botocore's standard mode retries)."""
        return self.throttled or self.code in TRANSIENT_CODES or self.status in RETRYABLE_STATUS

    @property
    def unavailable(self) -> bool:
        """AWS cannot serve this now (throttled, a transient code, any 5xx answer): once the
        client has retried it, a 503 to the caller, not a 500."""
        return self.retryable or self.status >= 500


class AwsUnreachable(Exception):
    """No answer from AWS after every attempt: connection refused or reset, timeout, TLS
    failure, or a corrupted answer."""


class NoCredentials(Exception):
    """Neither the environment nor botocore's credential chain gave AWS credentials."""


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)


CredentialSource = Callable[[], Credentials]


def default_credentials() -> CredentialSource:
    """The Lambda runtime's credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    AWS_SESSION_TOKEN); elsewhere, botocore's whole chain (profiles, SSO, instance roles),
    imported on first use and refreshed as botocore refreshes them."""
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        static = Credentials(key, secret, os.environ.get("AWS_SESSION_TOKEN") or None)
        return lambda: static
    chain: Any = None

    def from_botocore() -> Credentials:
        nonlocal chain
        if chain is None:
            import botocore.session

            chain = botocore.session.get_session().get_credentials()
            if chain is None:
                raise NoCredentials("no AWS credentials in the environment or botocore's chain")
        frozen = chain.get_frozen_credentials()
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)

    return from_botocore


#: Each partition's DNS suffix, and its dual-stack one, by the prefix of its regions
#: (botocore's ``data/partitions.json``); any other region is in ``aws`` (GovCloud too).
PARTITIONS = (
    ("cn-", "amazonaws.com.cn", "api.amazonwebservices.com.cn"),
    ("us-iso-", "c2s.ic.gov", "api.aws"),
    ("us-isob-", "sc2s.sgov.gov", "api.aws"),
    ("us-isof-", "csp.hci.ic.gov", "api.aws.hci.ic.gov"),
    ("eu-isoe-", "cloud.adc-e.uk", "api.cloud-aws.adc-e.uk"),
    ("eusc-", "amazonaws.eu", "api.amazonwebservices.eu"),
)


def _enabled(variable: str) -> bool:
    return os.environ.get(variable, "").strip().lower() == "true"


def regional_endpoint(service: str, region: str) -> str:
    """The service's endpoint in ``region``, as the AWS SDKs resolve it: in the region's
    partition, FIPS (``service-fips.``) when AWS_USE_FIPS_ENDPOINT is true, dual-stack when
    AWS_USE_DUALSTACK_ENDPOINT is (the SDKs' variables for these settings)."""
    suffix, dual_suffix = next(
        ((plain, dual) for prefix, plain, dual in PARTITIONS if region.startswith(prefix)),
        ("amazonaws.com", "api.aws"),
    )
    host = f"{service}-fips" if _enabled("AWS_USE_FIPS_ENDPOINT") else service
    if _enabled("AWS_USE_DUALSTACK_ENDPOINT"):
        suffix = dual_suffix
    return f"https://{host}.{region}.{suffix}"


def configured_endpoint(service_id: str) -> str | None:
    """The endpoint the environment sets for a service, as the AWS SDKs read it:
    ``AWS_ENDPOINT_URL_<SERVICE ID>`` (``AWS_ENDPOINT_URL_SECRETS_MANAGER``), else
    ``AWS_ENDPOINT_URL``, unless ``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS`` is true."""
    if os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return None
    variable = "AWS_ENDPOINT_URL_" + service_id.upper().replace(" ", "_")
    return os.environ.get(variable) or os.environ.get("AWS_ENDPOINT_URL") or None


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _host(url: str) -> str:
    """The Host header of ``url``: lowercase, without a default port."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    service: str,
    region: str,
    credentials: Credentials,
    amz_date: str,
) -> dict[str, str]:
    """``headers`` plus Host, X-Amz-Date, X-Amz-Security-Token and Authorization: a request
    signed with Signature Version 4 at ``amz_date`` (``20261126T184046Z``). Every header
    given is signed; ``url`` has no query string (none of these APIs needs one)."""
    parts = urlsplit(url)
    if parts.query:
        raise ValueError("query strings are not supported")
    signed = {"Host": _host(url), **headers, "X-Amz-Date": amz_date}
    if credentials.token:
        signed["X-Amz-Security-Token"] = credentials.token
    canonical = sorted((k.lower(), " ".join(v.split())) for k, v in signed.items())
    names = ";".join(name for name, _ in canonical)
    # Services other than S3 sign the path encoded once more than it is sent.
    request = "\n".join(
        [
            method,
            quote(parts.path or "/", safe="/~"),
            "",
            "".join(f"{name}:{value}\n" for name, value in canonical),
            names,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    day = amz_date[:8]
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(request.encode()).hexdigest()]
    )
    key = f"AWS4{credentials.secret_key}".encode()
    for part in (day, region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    signed["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope},"
        f" SignedHeaders={names}, Signature={signature}"
    )
    return signed


def _error(operation: str, reply: Reply) -> AwsError:
    """AWS's error code: the x-amzn-ErrorType header (REST APIs) or the body's ``__type``
    (JSON APIs: ``com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException``)."""
    code = reply.headers.get("x-amzn-errortype", "").split(":")[0]
    message, data = "", None
    with contextlib.suppress(ValueError):
        data = json.loads(reply.body) if reply.body else None
    if isinstance(data, dict):
        # As botocore reads it: ``namespace#Code``, possibly followed by ``:<detail>``.
        body_code = str(data.get("__type") or data.get("code") or "")
        code = code or body_code.split(":", 1)[0].rsplit("#", 1)[-1]
        message = str(data.get("message") or data.get("Message") or "")
    return AwsError(operation, reply.status, code or str(reply.status), message, data)


class AwsHttp:
    """Signed requests to one AWS service endpoint, over kept-alive connections.
    Connection failures, throttling and 5xx answers are retried up to ``max_attempts`` in
    all, with jittered backoff; then ``AwsUnreachable`` or ``AwsError``."""

    def __init__(
        self,
        service: str,
        region: str,
        endpoint: str | None = None,
        *,
        credentials: CredentialSource | None = None,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        max_attempts: int = 3,
    ) -> None:
        self.service, self.region = service, region
        self.endpoint = (endpoint or regional_endpoint(service, region)).rstrip("/")
        self._pool = ConnectionPool(
            self.endpoint,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            ca_bundle_variable="AWS_CA_BUNDLE",
        )
        self._credentials = credentials or default_credentials()
        self._max_attempts = max(1, max_attempts)

    def send(self, operation: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """POST ``body`` to ``path``; a 2xx reply, else ``AwsError`` or ``AwsUnreachable``."""
        url = self.endpoint + path
        for attempt in range(1, self._max_attempts + 1):
            signed = sign(
                "POST", url, headers, body,
                service=self.service, region=self.region, credentials=self._credentials(),
                amz_date=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
            )  # fmt: skip
            signed["User-Agent"] = USER_AGENT  # unsigned, as proxies may rewrite it
            last = attempt == self._max_attempts
            try:
                reply = self._exchange(path, signed, body)
            except TRANSPORT_ERRORS as exc:
                log.info("%s %s: attempt %d failed: %r", self.service, operation, attempt, exc)
                if last:
                    raise AwsUnreachable(
                        f"{self.service} at {self.endpoint} did not answer {operation}:"
                        f" {type(exc).__name__}: {exc}"
                    ) from exc
            else:
                if reply.status < 300:
                    return reply
                error = _error(operation, reply)
                if last or not error.retryable:
                    raise error
                log.info("%s %s: attempt %d: %s", self.service, operation, attempt, error.code)
            ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1))
            time.sleep(random.uniform(0, ceiling))  # noqa: S311 (jitter, not a secret)
        raise AssertionError("unreachable")

    def _exchange(self, path: str, headers: dict[str, str], body: bytes) -> Reply:
        reply = self._pool.exchange("POST", path, headers, body)
        crc = reply.headers.get("x-amz-crc32")  # DynamoDB's checksum of the body
        if crc is not None and zlib.crc32(reply.body) & 0xFFFFFFFF != int(crc):
            raise http.client.HTTPException("the answer does not match its x-amz-crc32")
        return reply

    def close(self) -> None:
        self._pool.close()


class JsonApi:
    """An AWS API of the JSON protocol: every operation a POST to ``/`` naming itself in
    X-Amz-Target, its request and answer JSON objects."""

    #: The SDKs' service id (its endpoint variable), X-Amz-Target's prefix, the JSON version.
    SERVICE_ID = ""
    TARGET = ""
    CONTENT_TYPE = "application/x-amz-json-1.0"
    SIGNING_NAME = ""

    def __init__(self, transport: AwsHttp) -> None:
        self.transport = transport

    @classmethod
    def connect(cls, region: str, endpoint: str | None = None, **options: Any) -> Self:
        """A client of the service in ``region``; its endpoint ``endpoint``, else the
        environment's (``configured_endpoint``), else the regional one."""
        endpoint = endpoint or configured_endpoint(cls.SERVICE_ID)
        return cls(AwsHttp(cls.SIGNING_NAME, region, endpoint, **options))

    def call(self, operation: str, request: Mapping[str, Any]) -> dict[str, Any]:
        reply = self.transport.send(
            operation,
            "/",
            {"Content-Type": self.CONTENT_TYPE, "X-Amz-Target": self.TARGET + operation},
            json.dumps(request, separators=(",", ":")).encode(),
        )
        answer: dict[str, Any] = json.loads(reply.body) if reply.body else {}
        return answer

    def close(self) -> None:
        self.transport.close()


def _operation(name: str) -> Callable[..., dict[str, Any]]:
    """A method named as botocore's (``put_item(TableName=...)``) that calls ``name``."""

    def method(self: JsonApi, **request: Any) -> dict[str, Any]:
        return self.call(name, request)

    method.__doc__ = f"{name} (the API's request fields as keyword arguments)"
    return method


class DynamoDB(JsonApi):
    """DynamoDB's API: ``call("PutItem", {...})``, or botocore's low-level method names
    (``put_item(TableName=..., Item=...)``) for the operations this service uses."""

    SERVICE_ID = "DynamoDB"
    TARGET = "DynamoDB_20120810."
    SIGNING_NAME = "dynamodb"

    get_item = _operation("GetItem")
    put_item = _operation("PutItem")
    update_item = _operation("UpdateItem")
    delete_item = _operation("DeleteItem")
    query = _operation("Query")
    scan = _operation("Scan")
    create_table = _operation("CreateTable")
    delete_table = _operation("DeleteTable")
    describe_table = _operation("DescribeTable")
    describe_time_to_live = _operation("DescribeTimeToLive")
    update_time_to_live = _operation("UpdateTimeToLive")
    list_tables = _operation("ListTables")


class SecretsManager(JsonApi):
    """Secrets Manager's GetSecretValue (``get_secret_value(SecretId=..., VersionStage=...)``:
    the answer's ``SecretString``, or ``SecretBinary`` as base64 text)."""

    SERVICE_ID = "Secrets Manager"
    TARGET = "secretsmanager."
    CONTENT_TYPE = "application/x-amz-json-1.1"
    SIGNING_NAME = "secretsmanager"

    get_secret_value = _operation("GetSecretValue")


class LambdaApi:
    """Lambda's Invoke, for events (InvocationType=Event: Lambda queues it, answers 202)."""

    def __init__(self, transport: AwsHttp) -> None:
        self.transport = transport

    @classmethod
    def connect(cls, region: str, endpoint: str | None = None, **options: Any) -> LambdaApi:
        endpoint = endpoint or configured_endpoint("Lambda")
        return cls(AwsHttp("lambda", region, endpoint, **options))

    def invoke_event(self, function: str, payload: bytes) -> int:
        """Queue one invocation of ``function`` (a name or an ARN); Lambda's status code."""
        path = f"/2015-03-31/functions/{quote(function, safe='-_.~')}/invocations"
        reply = self.transport.send("Invoke", path, {"X-Amz-Invocation-Type": "Event"}, payload)
        return reply.status

    def close(self) -> None:
        self.transport.close()
