"""Secrets on AWS, read through the service's own AWS client from a Secrets Manager stand-in
that checks their signatures: a rotation takes effect within the cache's age, tokens minted
before it still verify, a secret that cannot be read is a 503, not an unexpected 500, and
reading one loads neither boto3 nor botocore's client machinery (a cold start's budget)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from iris_exec.adapters.secrets import SecretsManagerSecrets, previous_secret, secret
from iris_exec.domain.errors import StoreUnavailable, Unauthorized
from iris_exec.services.tokens import ExecutionTokens
from tests.support.secrets_standin import ACCESS_KEY, REGION, SECRET_KEY, SecretsStandIn
from tests.support.server import ROOT

NAME = "iris-exec-dev/token-signing-key"


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretsStandIn]:
    with SecretsStandIn({NAME: "a" * 64}) as standin:
        for variable, value in {
            **standin.env,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }.items():
            monkeypatch.setenv(variable, value)
        yield standin


def test_a_rotated_secret_takes_effect_once_its_cache_is_old(secrets: SecretsStandIn) -> None:
    value = secret(
        None, NAME, "TOKEN_SIGNING_KEY", SecretsManagerSecrets.connect(REGION), max_age_s=1
    )
    assert value() == "a" * 64
    secrets.rotate(NAME, "b" * 64)
    assert value() == "a" * 64  # cached
    time.sleep(1.2)
    assert value() == "b" * 64


def test_tokens_minted_before_a_rotation_still_verify(secrets: SecretsStandIn) -> None:
    reader = SecretsManagerSecrets.connect(REGION)
    current = secret(None, NAME, "TOKEN_SIGNING_KEY", reader, max_age_s=1)
    previous = previous_secret(
        secret(None, NAME, "TOKEN_SIGNING_KEY", reader, stage="AWSPREVIOUS", max_age_s=1),
        max_age_s=1,
    )

    def previous_key() -> bytes | None:
        key = previous()
        return key.encode() if key else None

    tokens = ExecutionTokens(lambda: current().encode(), time.time, previous_key)
    before = tokens.mint("p", "sb_1", "ex_1", None, time.time() + 60).token
    reads = len(secrets.reads)
    forged = before[:-4] + ("AAAA" if not before.endswith("AAAA") else "BBBB")
    for _ in range(3):  # never rotated: no previous version, and that answer is kept too
        with pytest.raises(Unauthorized):
            tokens.verify(forged)
    assert len(secrets.reads) == reads + 1
    secrets.rotate(NAME, "b" * 64)
    time.sleep(1.2)
    after = tokens.mint("p", "sb_1", "ex_2", None, time.time() + 60).token
    assert tokens.verify(before).execution_id == "ex_1"  # the previous key
    assert tokens.verify(after).execution_id == "ex_2"  # the new one
    with pytest.raises(Unauthorized):
        tokens.verify(forged)


def test_a_previous_key_secrets_manager_could_not_give_is_asked_again(
    secrets: SecretsStandIn,
) -> None:
    """Right after a rotation, Secrets Manager fails (after every retry) to give the
    previous key: a token minted before the rotation is a 503 that once, not refused as
    forged until the cache ages, and the next request verifies it."""
    reader = SecretsManagerSecrets.connect(REGION)
    current = secret(None, NAME, "TOKEN_SIGNING_KEY", reader, max_age_s=0)
    previous = previous_secret(
        secret(None, NAME, "TOKEN_SIGNING_KEY", reader, stage="AWSPREVIOUS", max_age_s=0)
    )

    def previous_key() -> bytes | None:
        key = previous()
        return key.encode() if key else None

    tokens = ExecutionTokens(lambda: current().encode(), time.time, previous_key)
    before = tokens.mint("p", "sb_1", "ex_1", None, time.time() + 60).token
    secrets.rotate(NAME, "b" * 64)
    secrets.failing["AWSPREVIOUS"] = 3  # each of the client's three attempts
    with pytest.raises(StoreUnavailable):
        tokens.verify(before)
    assert tokens.verify(before).execution_id == "ex_1"


def test_a_secret_that_cannot_be_read_is_a_503(secrets: SecretsStandIn) -> None:
    with pytest.raises(StoreUnavailable):
        secret(
            None, "iris-exec-dev/missing", "E2B_API_KEY", SecretsManagerSecrets.connect(REGION)
        )()


def test_a_request_signed_with_another_key_is_refused(
    secrets: SecretsStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stand-in checks signatures as Secrets Manager does: a wrong secret key is a 503
    here, never a value."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-key")
    with pytest.raises(StoreUnavailable) as raised:
        SecretsManagerSecrets.connect(REGION).read(NAME)
    assert "InvalidSignatureException" in str(raised.value.__cause__)
    assert secrets.reads == []


def test_errors_read_alike_by_botocore_and_our_client(secrets: SecretsStandIn) -> None:
    """The stand-in answers errors as Secrets Manager's JSON protocol does (the code in the
    body's ``__type``): botocore, which reads it from nowhere else, and the service's own
    client see the same ResourceNotFoundException, for a missing secret and for a stage a
    secret never had."""
    import boto3
    from botocore.exceptions import ClientError

    from iris_exec.adapters.awsapi import AwsError, SecretsManager

    boto = boto3.client("secretsmanager", region_name=REGION)
    ours = SecretsManager.connect(REGION)
    for request in (
        {"SecretId": "iris-exec-dev/missing"},
        {"SecretId": NAME, "VersionStage": "AWSPREVIOUS"},
    ):
        with pytest.raises(ClientError) as theirs:
            boto.get_secret_value(**request)
        with pytest.raises(AwsError) as mine:
            ours.get_secret_value(**request)
        assert theirs.value.response["Error"]["Code"] == "ResourceNotFoundException"
        assert mine.value.code == "ResourceNotFoundException"
        assert mine.value.message == theirs.value.response["Error"]["Message"]
    assert boto.get_secret_value(SecretId=NAME)["SecretString"] == "a" * 64


PROBE = """
import sys
from iris_exec.adapters.secrets import SecretsManagerSecrets
value = SecretsManagerSecrets.connect("us-east-1").read(sys.argv[1])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "aws_lambda_powertools")
               or m in ("botocore.session", "botocore.client"))
print(len(value), " ".join(heavy))
"""


def test_reading_a_secret_loads_no_aws_sdk(secrets: SecretsStandIn) -> None:
    """The first request of sandbox_get or sandbox_delete reads the E2B key: in a fresh
    process, that read must not import boto3 or botocore's client (~150 ms of a cold start)."""
    layer = str(ROOT / "layers" / "core")
    done = subprocess.run(
        [sys.executable, "-c", PROBE, NAME],
        env={**os.environ, "PYTHONPATH": layer}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["64"]
