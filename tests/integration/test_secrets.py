"""Secrets on AWS, read through Powertools and boto3 from a Secrets Manager stand-in: a
rotation takes effect within the cache's age, tokens minted before it still verify, and a
secret that cannot be read is a 503, not an unexpected 500."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from iris_exec.composition.aws import previous_secret, secret
from iris_exec.domain.errors import StoreUnavailable, Unauthorized
from iris_exec.services.tokens import ExecutionTokens
from tests.support.secrets_standin import REGION, SecretsStandIn

NAME = "iris-exec-dev/token-signing-key"


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretsStandIn]:
    with SecretsStandIn({NAME: "a" * 64}) as standin:
        for variable, value in {
            **standin.env,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "x",
        }.items():
            monkeypatch.setenv(variable, value)
        yield standin


def test_a_rotated_secret_takes_effect_once_its_cache_is_old(secrets: SecretsStandIn) -> None:
    value = secret(None, NAME, "TOKEN_SIGNING_KEY", max_age_s=1)
    assert value() == "a" * 64
    secrets.rotate(NAME, "b" * 64)
    assert value() == "a" * 64  # cached
    time.sleep(1.2)
    assert value() == "b" * 64


def test_tokens_minted_before_a_rotation_still_verify(secrets: SecretsStandIn) -> None:
    current = secret(None, NAME, "TOKEN_SIGNING_KEY", max_age_s=1)
    previous = previous_secret(
        secret(None, NAME, "TOKEN_SIGNING_KEY", stage="AWSPREVIOUS", max_age_s=1), max_age_s=1
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


def test_a_secret_that_cannot_be_read_is_a_503(secrets: SecretsStandIn) -> None:
    with pytest.raises(StoreUnavailable):
        secret(None, "iris-exec-dev/missing", "E2B_API_KEY")()
