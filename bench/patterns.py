"""How `discoverPatterns` mines frequent itemsets: our Eclat (bitset tid-lists) against a
textbook Apriori and the `efficient-apriori` library, on the same synthetic project data.

Each must find the same itemsets (checked); the figures are the median time of 5 runs and
the peak Python memory of one run."""

from __future__ import annotations

import random
import statistics
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from itertools import combinations

from efficient_apriori import itemsets_from_transactions

from iris_exec.services.patterns import MAX_ITEMSET_SIZE, frequent_itemsets

Itemsets = dict[tuple[str, ...], int]


def synthetic(transactions: int, items: int, seed: int = 7) -> list[frozenset[str]]:
    """Sessions with a few correlated behaviours, like a real project's telemetry."""
    rng = random.Random(seed)
    names = [f"event:e{i}" for i in range(items)]
    groups = [rng.sample(names, 4) for _ in range(6)]
    baskets = []
    for _ in range(transactions):
        basket = set(rng.sample(names, rng.randint(2, 6)))
        for group in groups:
            if rng.random() < 0.25:
                basket.update(group[: rng.randint(2, 4)])
        baskets.append(frozenset(basket))
    return baskets


def apriori(baskets: list[frozenset[str]], min_count: int, max_size: int) -> Itemsets:
    """Textbook Apriori: join frequent (k-1)-sets, prune, count by subset tests."""
    counts: dict[frozenset[str], int] = {}
    for basket in baskets:
        for item in basket:
            key = frozenset([item])
            counts[key] = counts.get(key, 0) + 1
    level = {k: v for k, v in counts.items() if v >= min_count}
    found: Itemsets = {tuple(sorted(k)): v for k, v in level.items()}
    size = 1
    while level and size < max_size:
        size += 1
        previous = list(level)
        candidates = set()
        for a, b in combinations(previous, 2):
            union = a | b
            if len(union) == size and all(
                frozenset(sub) in level for sub in combinations(union, size - 1)
            ):
                candidates.add(union)
        level = {}
        for candidate in candidates:
            count = sum(1 for basket in baskets if candidate <= basket)
            if count >= min_count:
                level[candidate] = count
        found.update({tuple(sorted(k)): v for k, v in level.items()})
    return found


def library(baskets: list[frozenset[str]], min_count: int, max_size: int) -> Itemsets:
    found, _ = itemsets_from_transactions(
        [tuple(sorted(b)) for b in baskets],
        min_support=min_count / len(baskets),
        max_length=max_size,
    )
    return {tuple(sorted(k)): v for sets in found.values() for k, v in sets.items()}


def eclat(baskets: list[frozenset[str]], min_count: int, max_size: int) -> Itemsets:
    return frequent_itemsets(baskets, min_count, max_size)


def measure(fn: Callable[[], Itemsets]) -> tuple[float, float, Itemsets]:
    times = []
    result: Itemsets = {}
    for _ in range(5):
        began = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - began) * 1000)
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return statistics.median(times), peak / 1024 / 1024, result


def main() -> None:
    print("== pattern mining: frequent itemsets (up to 4 items), median of 5 runs")
    print(
        f"{'data':<28} {'minSupport':>10} {'itemsets':>9}   {'eclat (ours)':>18}"
        f" {'apriori':>18} {'efficient-apriori':>20}"
    )
    for transactions, items in ((1000, 40), (5000, 60), (20000, 80)):
        baskets = synthetic(transactions, items)
        for support in (0.2, 0.1, 0.05):
            min_count = max(1, int(support * transactions + 0.999999))
            runs = {
                name: measure(partial(fn, baskets, min_count, MAX_ITEMSET_SIZE))
                for name, fn in (("eclat", eclat), ("apriori", apriori), ("library", library))
            }
            reference = runs["eclat"][2]
            for name, (_, _, found) in runs.items():
                assert found == reference, f"{name} disagrees with eclat"
            cells = [f"{ms:8.1f} ms {mib:5.1f} MiB" for ms, mib, _ in runs.values()]
            data = f"{transactions} sessions, {items} items"
            print(
                f"{data:<28} {support:>10} {len(reference):>9}   {cells[0]:>18} {cells[1]:>18}"
                f" {cells[2]:>20}"
            )


if __name__ == "__main__":
    main()
