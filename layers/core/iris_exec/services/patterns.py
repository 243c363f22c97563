"""Association-rule mining for `discoverPatterns`.

Frequent itemsets by Eclat over transaction-id bitsets (Python ints: an intersection
and a popcount per candidate), then rules antecedent -> consequent from every frequent
itemset. Chosen over Apriori and over a library by measurement (`bench/patterns.py`):
it is the fastest of them here and adds no dependency to the Lambda layer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from iris_exec.domain.tools import MiningRecord, ToolLimitError

#: Longest itemset considered (rules have at most this many items in all).
MAX_ITEMSET_SIZE = 4
#: Past this many frequent itemsets the thresholds are too low for the data.
MAX_ITEMSETS = 50_000
#: The cost budget of one call, besides its time: frequent single items, and work, counted
#: in machine words of transaction bitsets intersected (a candidate pair costs one word
#: per 64 transactions). 2 000 frequent items over 20 000 transactions would be ~600 M.
MAX_ITEMS = 2_000
MAX_WORK = 50_000_000


class Budget:
    """What one mining call may spend: ``seconds`` of time and ``work`` words intersected.
    Past either, or when the first level alone would pass it, the call fails at once as the
    caller's tool error (ToolLimitError), before the server spends it."""

    def __init__(self, seconds: float, work: int = MAX_WORK) -> None:
        self.seconds = seconds
        self._deadline = time.monotonic() + seconds
        self._work = work
        self._left = work

    def afford(self, pairs: int, words: int) -> None:
        """Fail unless ``pairs`` intersections of ``words`` words each fit what is left."""
        if pairs * words > self._left:
            raise ToolLimitError(
                f"discoverPatterns: this data needs over {self._work} words of work at this"
                " minSupport; raise minSupport (or record fewer distinct items)"
            )

    def spend(self, pairs: int, words: int) -> None:
        self.afford(pairs, words)
        self._left -= pairs * words
        if time.monotonic() > self._deadline:
            raise ToolLimitError(
                f"discoverPatterns ran out of its {self.seconds:g} s budget on this data;"
                " raise minSupport (IRIS_MINING_BUDGET_S)"
            )


@dataclass(frozen=True, slots=True)
class Rule:
    antecedent: tuple[str, ...]
    consequent: tuple[str, ...]
    support: float
    confidence: float
    lift: float
    count: int


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float | str):
        return str(value)
    return None


def items_of(record: MiningRecord) -> list[str]:
    """The items a record contributes to its transaction (CONTRACT.md, discoverPatterns)."""
    if record.kind == "event":
        items = [f"event:{record.name}"]
        for key, value in (record.metadata or {}).items():
            text = _scalar(value)
            if text is not None:
                items.append(f"event:{record.name}.{key}={text}")
        return items
    prefix = {"evaluation": "verdict", "vote": "vote", "metric": "metric"}[record.kind]
    return [f"{prefix}:{record.name}"]


def transactions(records: Iterable[MiningRecord]) -> list[frozenset[str]]:
    grouped: dict[str, set[str]] = {}
    for record in records:
        grouped.setdefault(record.transaction, set()).update(items_of(record))
    return [frozenset(items) for _, items in sorted(grouped.items())]


def frequent_itemsets(
    baskets: list[frozenset[str]],
    min_count: int,
    max_size: int = MAX_ITEMSET_SIZE,
    budget: Budget | None = None,
) -> dict[tuple[str, ...], int]:
    """Every itemset (sorted tuple) present in at least ``min_count`` baskets, with its count."""
    budget = budget or Budget(float("inf"))
    tids: dict[str, int] = {}
    for index, basket in enumerate(baskets):
        bit = 1 << index
        for item in basket:
            tids[item] = tids.get(item, 0) | bit
    singles = sorted((item, bits) for item, bits in tids.items() if bits.bit_count() >= min_count)
    if len(singles) > MAX_ITEMS:
        raise ToolLimitError(
            f"discoverPatterns: {len(singles)} distinct items meet minSupport; at most"
            f" {MAX_ITEMS} can be mined in one call: raise minSupport"
        )
    words = max(1, (len(baskets) + 63) // 64)
    budget.afford(len(singles) * (len(singles) - 1) // 2, words)  # the pairs, up front
    found: dict[tuple[str, ...], int] = {}

    def extend(prefix: tuple[str, ...], candidates: list[tuple[str, int]]) -> None:
        for position, (item, bits) in enumerate(candidates):
            itemset = (*prefix, item)
            found[itemset] = bits.bit_count()
            if len(found) > MAX_ITEMSETS:
                raise ToolLimitError(
                    f"discoverPatterns: minSupport is too low for this data (over"
                    f" {MAX_ITEMSETS} frequent item sets); raise it"
                )
            if len(itemset) == max_size:
                continue
            deeper = []
            budget.spend(len(candidates) - position - 1, words)
            for other, other_bits in candidates[position + 1 :]:
                joint = bits & other_bits
                if joint.bit_count() >= min_count:
                    deeper.append((other, joint))
            if deeper:
                extend(itemset, deeper)

    extend((), singles)
    return found


def rules(
    baskets: list[frozenset[str]],
    min_support: float,
    min_confidence: float,
    max_rules: int,
    budget: Budget | None = None,
) -> list[Rule]:
    """Rules meeting both thresholds, by lift, then confidence, then support (best first)."""
    total = len(baskets)
    if total == 0:
        return []
    # A tiny epsilon keeps e.g. 0.3 * 10 from needing 4 transactions through rounding.
    min_count = max(1, math.ceil(min_support * total - 1e-9))
    counts = frequent_itemsets(baskets, min_count, budget=budget)
    found: list[Rule] = []
    for itemset, count in counts.items():
        if len(itemset) < 2:
            continue
        for size in range(1, len(itemset)):
            for antecedent in combinations(itemset, size):
                confidence = count / counts[antecedent]
                if confidence < min_confidence - 1e-12:
                    continue
                consequent = tuple(i for i in itemset if i not in antecedent)
                lift = confidence / (counts[consequent] / total)
                found.append(Rule(antecedent, consequent, count / total, confidence, lift, count))
    found.sort(key=lambda r: (-r.lift, -r.confidence, -r.support, r.antecedent, r.consequent))
    return found[:max_rules]
