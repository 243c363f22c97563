"""Exact per-key request limits (API Gateway usage plans are only best effort)."""

from __future__ import annotations

import math

from iris_exec.domain.errors import TooManyRequests
from iris_exec.domain.models import Principal, RateLimitState
from iris_exec.domain.ports import RateLimitStore
from iris_exec.services.clock import Clock

WINDOW_S = 60


class RateLimiter:
    def __init__(self, store: RateLimitStore, per_minute: int, clock: Clock) -> None:
        self._store = store
        self._limit = per_minute
        self._clock = clock

    def check(self, principal: Principal) -> RateLimitState:
        """Count this request; raise 429 (with Retry-After) past the limit."""
        now = self._clock()
        window = int(now // WINDOW_S) * WINDOW_S
        count = self._store.hit(f"key:{principal.key_id}", window, WINDOW_S)
        state = RateLimitState(
            limit=self._limit, remaining=max(0, self._limit - count), reset_at=window + WINDOW_S
        )
        if count > self._limit:
            raise TooManyRequests(
                f"Rate limit of {self._limit} requests per minute exceeded; retry after the"
                " window resets",
                retry_after_s=math.ceil(window + WINDOW_S - now),
                headers=state.headers(),
            )
        return state
