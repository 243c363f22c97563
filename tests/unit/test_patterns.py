"""Association rules against an example computed by hand."""

from __future__ import annotations

from fractions import Fraction

import pytest

from iris_exec.domain.tools import MiningRecord, ToolInputError, ToolLimitError
from iris_exec.services import patterns
from iris_exec.services.patterns import items_of, rules, transactions

PRO = "event:checkout.plan=pro"
CHECKOUT = "event:checkout"
UPGRADE = "event:upgrade"

# Five sessions: s1, s2 and s5 check out on the pro plan and upgrade; s3 checks out on the
# free plan; s4 only browses. (s5 also has a correct evaluation.)
RECORDS = [
    *(MiningRecord(s, "event", "checkout", {"plan": "pro"}) for s in ("s1", "s2", "s5")),
    *(MiningRecord(s, "event", "upgrade") for s in ("s1", "s2", "s5")),
    MiningRecord("s3", "event", "checkout", {"plan": "free"}),
    MiningRecord("s4", "event", "browse"),
    MiningRecord("s5", "evaluation", "correct"),
]


def test_rules_match_the_hand_computed_example() -> None:
    # Counts: checkout 4, pro 3, upgrade 3 (of 5); every pair and the triple of these: 3.
    # minSupport 0.6 needs 3 transactions; minConfidence 0.9 drops checkout -> x (3/4).
    found = rules(transactions(RECORDS), 0.6, 0.9, 20)
    five_thirds, five_quarters = float(Fraction(5, 3)), float(Fraction(5, 4))
    expected = [
        ((CHECKOUT, PRO), (UPGRADE,), five_thirds),
        ((CHECKOUT, UPGRADE), (PRO,), five_thirds),
        ((PRO,), (CHECKOUT, UPGRADE), five_thirds),
        ((PRO,), (UPGRADE,), five_thirds),
        ((UPGRADE,), (CHECKOUT, PRO), five_thirds),
        ((UPGRADE,), (PRO,), five_thirds),
        ((PRO,), (CHECKOUT,), five_quarters),
        ((PRO, UPGRADE), (CHECKOUT,), five_quarters),
        ((UPGRADE,), (CHECKOUT,), five_quarters),
    ]
    assert [(r.antecedent, r.consequent) for r in found] == [(a, c) for a, c, _ in expected]
    for rule, (_, _, lift) in zip(found, expected, strict=True):
        assert rule.lift == pytest.approx(lift, rel=1e-12)
        assert rule.confidence == 1.0
        assert rule.support == 0.6
        assert rule.count == 3


def test_lower_confidence_admits_the_weaker_rules() -> None:
    found = rules(transactions(RECORDS), 0.6, 0.7, 50)
    weaker = [r for r in found if r.antecedent == (CHECKOUT,)]
    assert {r.consequent for r in weaker} == {(PRO,), (UPGRADE,), (PRO, UPGRADE)}
    for rule in weaker:
        assert rule.confidence == 0.75
        assert rule.lift == pytest.approx(1.25)


def test_max_patterns_keeps_the_best() -> None:
    found = rules(transactions(RECORDS), 0.6, 0.9, 2)
    assert [(r.antecedent, r.consequent) for r in found] == [
        ((CHECKOUT, PRO), (UPGRADE,)),
        ((CHECKOUT, UPGRADE), (PRO,)),
    ]


def test_items_of_each_kind_of_record() -> None:
    event = MiningRecord("t", "event", "run", {"ok": True, "n": 3, "who": "x", "nested": {"a": 1}})
    assert items_of(event) == ["event:run", "event:run.ok=true", "event:run.n=3", "event:run.who=x"]
    assert items_of(MiningRecord("t", "vote", "approve")) == ["vote:approve"]
    assert items_of(MiningRecord("t", "metric", "latency")) == ["metric:latency"]
    assert items_of(MiningRecord("t", "evaluation", "partial")) == ["verdict:partial"]


def test_no_data_no_rules() -> None:
    assert rules([], 0.3, 0.7, 10) == []


def test_support_too_low_for_the_data_is_a_clear_error() -> None:
    baskets = [frozenset(f"i{j}" for j in range(40))] * 3  # 102,090 item sets of up to 4
    with pytest.raises(ToolInputError, match="minSupport is too low"):
        rules(baskets, 0.1, 0.1, 10)


def test_mining_stops_at_its_time_budget_as_the_callers_tool_error() -> None:
    baskets = [frozenset({"a", "b", "c"})] * 10
    with pytest.raises(ToolLimitError, match="budget"):
        patterns.rules(baskets, 0.5, 0.5, 10, patterns.Budget(0.0))


def test_mining_refuses_up_front_what_would_pass_its_work_budget() -> None:
    """3000 items that each meet minSupport and never meet each other: 4.5 M pairs to
    intersect, refused before the first one."""
    baskets = [frozenset({f"i{n % 3000}"}) for n in range(6000)]
    with pytest.raises(ToolLimitError, match="3000 distinct items"):
        patterns.rules(baskets, 2 / 6000, 0.5, 10, patterns.Budget(60.0))
    fewer = [frozenset({f"i{n % 1500}"}) for n in range(20_000)]
    with pytest.raises(ToolLimitError, match="words of work"):
        patterns.rules(fewer, 13 / 20_000, 0.5, 10, patterns.Budget(60.0))
