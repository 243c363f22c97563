"""Per-execution tool tokens."""

from __future__ import annotations

import pytest

from iris_exec.domain.errors import Unauthorized
from iris_exec.services.tokens import ExecutionTokens
from tests.support.fakes import MovableClock

KEY = b"k" * 32


def test_a_token_carries_its_grant_until_its_deadline() -> None:
    clock = MovableClock()
    tokens = ExecutionTokens(KEY, clock)
    grant = tokens.mint("alpha", "sb_1", "ex_1", "s-1", clock() + 10)
    verified = tokens.verify(grant.token)
    assert (verified.project_id, verified.sandbox_id, verified.execution_id, verified.session_id) == (
        "alpha", "sb_1", "ex_1", "s-1",
    )  # fmt: skip
    clock.advance(10)
    with pytest.raises(Unauthorized, match="expired"):
        tokens.verify(grant.token)


def test_a_forged_or_altered_token_is_rejected() -> None:
    clock = MovableClock()
    tokens = ExecutionTokens(KEY, clock)
    grant = tokens.mint("alpha", "sb_1", "ex_1", None, clock() + 60)
    other_key = ExecutionTokens(b"x" * 32, clock).mint("alpha", "sb_1", "ex_1", None, clock() + 60)
    body, signature = grant.token.split(".")
    altered = tokens.mint("beta", "sb_1", "ex_1", None, clock() + 60).token.split(".")[0]
    for forged in (other_key.token, f"{altered}.{signature}", f"{body}.", "iet_garbage", "iet_"):
        with pytest.raises(Unauthorized):
            tokens.verify(forged)


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        ExecutionTokens(b"short", MovableClock())
