"""KeyStore and RateLimitStore contracts."""

from __future__ import annotations

import threading

import pytest

from iris_exec.domain.errors import AlreadyExists
from iris_exec.domain.models import ApiKeyRecord
from iris_exec.domain.ports import KeyStore, RateLimitStore


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
