"""KeyStore and RateLimitStore contracts."""

from __future__ import annotations

import math
import threading

import pytest

from iris_exec.domain.errors import AlreadyExists, TooManyRequests
from iris_exec.domain.models import ApiKeyRecord, Principal
from iris_exec.domain.ports import KeyStore, RateLimitStore
from iris_exec.services.ratelimit import RateLimiter


def key(key_id: str = "key_1", project: str = "p1", key_hash: str = "h" * 64) -> ApiKeyRecord:
    return ApiKeyRecord(key_id, key_hash, "sk_live_abcdef", project, 1.0, None, "test")


def test_keys_are_found_by_hash_and_revoked(key_store: KeyStore) -> None:
    key_store.add(key())
    assert key_store.find_by_hash("h" * 64) == key()
    assert key_store.find_by_hash("x" * 64) is None
    assert key_store.revoke("key_1", 5.0)
    assert not key_store.revoke("key_1", 6.0)
    found = key_store.find_by_hash("h" * 64)
    assert found is not None and found.revoked_at == 5.0 and not found.active


def test_a_deleted_key_is_gone(key_store: KeyStore) -> None:
    key_store.add(key("key_1", "p1", "a" * 64))
    key_store.add(key("key_2", "p1", "b" * 64))
    assert key_store.delete("key_1")
    assert not key_store.delete("key_1")
    assert key_store.find_by_hash("a" * 64) is None
    assert [k.key_id for k in key_store.list("p1")] == ["key_2"]


def test_the_same_hash_cannot_be_stored_twice(key_store: KeyStore) -> None:
    key_store.add(key())
    with pytest.raises(AlreadyExists):
        key_store.add(key("key_2"))


def test_list_by_project(key_store: KeyStore) -> None:
    key_store.add(key("key_1", "p1", "a" * 64))
    key_store.add(key("key_2", "p2", "b" * 64))
    assert [k.key_id for k in key_store.list("p2")] == ["key_2"]
    assert {k.key_id for k in key_store.list()} == {"key_1", "key_2"}


def test_rate_counts_are_exact_under_concurrency(rate_store: RateLimitStore) -> None:
    counts: list[int] = []
    lock = threading.Lock()

    def hit() -> None:
        for _ in range(25):
            value = rate_store.hit("key:k1", 600, 60)
            with lock:
                counts.append(value)

    threads = [threading.Thread(target=hit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(counts) == list(range(1, 101))
    assert rate_store.hit("key:k1", 660, 60) == 1  # a new window starts over
    assert rate_store.hit("key:k2", 600, 60) == 1  # another key has its own count


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_key_cannot_get_twice_its_limit_across_a_minute_boundary(
    rate_store: RateLimitStore,
) -> None:
    """A fixed window let 10 requests pass at 0:59.9 and 10 more at 1:00.1; the sliding
    window refuses the 11th within any 60 seconds, says when one more passes, and does not
    count what it refuses."""
    clock = Clock(1_800_000_059.9)
    limiter = RateLimiter(rate_store, 10, clock)
    who = Principal("p1", "key_boundary")
    states = [limiter.check(who) for _ in range(10)]
    assert [s.remaining for s in states] == list(range(9, -1, -1))
    clock.now = 1_800_000_060.1  # a new minute
    for _ in range(3):
        with pytest.raises(TooManyRequests) as refused:
            limiter.check(who)
        headers = refused.value.headers
        assert headers["X-RateLimit-Remaining"] == "0"
        # The requests of 0:55-1:00 leave the window at 2:00 (bucket 0:55 + 60 s + 5 s).
        assert headers["X-RateLimit-Reset"] == str(1_800_000_055 + 65)
        assert headers["Retry-After"] == str(math.ceil(1_800_000_120 - clock.now))
    assert limiter.check(Principal("p1", "key_other")).remaining == 9  # another key
    clock.now = 1_800_000_119.9
    with pytest.raises(TooManyRequests):
        limiter.check(who)  # still within 60 s of the ten
    clock.now = 1_800_000_120.0
    assert limiter.check(who).remaining == 9  # the refused ones were never counted
