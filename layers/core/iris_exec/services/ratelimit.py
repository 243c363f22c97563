"""Exact per-key request limits (API Gateway usage plans are only best effort).

A sliding window: requests are counted in buckets of ``BUCKET_S`` seconds, and one is let
through only if, with it, the current bucket and those of the ``WINDOW_S`` seconds before
it hold at most the limit. Those buckets cover every 60-second span ending now, so no
60 seconds ever hold more than the limit (a fixed window let a key make twice its limit
across a minute boundary). A refused request is not counted."""

from __future__ import annotations

import math

from iris_exec.domain.errors import TooManyRequests
from iris_exec.domain.models import Principal, RateLimitState
from iris_exec.domain.ports import RateLimitStore
from iris_exec.services.clock import Clock

WINDOW_S = 60
BUCKET_S = 5


class RateLimiter:
    def __init__(self, store: RateLimitStore, per_minute: int, clock: Clock) -> None:
        self._store = store
        self._limit = per_minute
        self._clock = clock

    def check(self, principal: Principal) -> RateLimitState:
        """Count this request; raise 429 (with Retry-After) past the limit."""
        return self.take(f"key:{principal.key_id}", self._limit, "requests")

    def take(self, subject: str, limit: int, what: str) -> RateLimitState:
        """Count one of ``subject``'s ``what`` against ``limit`` per minute; past it, raise
        429 with the seconds until one more would pass."""
        now = self._clock()
        bucket = int(now // BUCKET_S) * BUCKET_S
        self._store.hit(subject, bucket, WINDOW_S)
        counts = self._store.recent(subject, bucket - WINDOW_S)
        used = sum(counts.values())
        oldest = min((start for start, n in counts.items() if n > 0), default=bucket)
        state = RateLimitState(
            limit=limit, remaining=max(0, limit - used), reset_at=oldest + WINDOW_S + BUCKET_S
        )
        if used > limit:
            self._store.unhit(subject, bucket)
            # One more passes once enough of the oldest buckets have left the window.
            over, free_at = used - limit, bucket
            for start in sorted(counts):
                over -= counts[start] - (1 if start == bucket else 0)
                free_at = start + WINDOW_S + BUCKET_S
                if over <= 0:
                    break
            state = RateLimitState(limit=limit, remaining=0, reset_at=free_at)
            raise TooManyRequests(
                f"Rate limit of {limit} {what} per minute exceeded; retry after"
                f" {math.ceil(free_at - now)} s",
                retry_after_s=max(1, math.ceil(free_at - now)),
                headers=state.headers(),
            )
        return state
