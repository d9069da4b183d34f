"""Pool policies on the batch kernel (issue 10): linear, position-based and time-decay.

The kernel splits a pool without sorting all members: integer weights (a table by chain length for
``equal``/``position``, the rounded time-decay contract for ``decay``), floors in int64 and the
units left ranked within groups of one chain length.  Each piece is checked against the per-order
engine (the reference), against hand computations, and against a plain re-statement of the rule;
the last section shows that the checks fail on deliberately broken kernels.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cps_engine import CpsError, Event, compute_events, load_policy, parse_event
from cps_engine.batch import _plan, compute_batch
from cps_engine.graph import BindingConfig
from cps_engine.money import format_rate
from cps_engine.policies.plan import DECAY_SCALE, Weights
from tests.strategies import Programme, policy_configs, programmes

Row = tuple[str, str, int, int, str]
T0 = datetime(2026, 3, 1, tzinfo=UTC)
DAY_US = 86_400_000_000
POOL_KINDS = ("linear", "position_based", "time_decay")


def _events(*raw: dict[str, Any]) -> list[Event]:
    return [parse_event(r) for r in raw]


def _share(sid: str, who: str, parent: str | None, day: float) -> dict[str, Any]:
    return {"type": "share", "id": sid, "sharer": who, "parent": parent, "at": T0 + timedelta(days=day)}


def _order(oid: str, buyer: str, share: str | None, amount: str, day: float) -> dict[str, Any]:
    return {"type": "order", "id": oid, "buyer": buyer, "share": share, "amount": amount, "currency": "CNY",
            "at": T0 + timedelta(days=day)}


def reference(events: list[Event], policy: Any, binding: Any = "first_wins") -> list[Row]:
    return [(ln.order, ln.payee, ln.level, ln.amount.minor, format_rate(ln.rate))
            for s in compute_events(events, policy, binding=binding) for ln in s.lines]


def batch(events: list[Event], policy: Any, binding: Any = "first_wins") -> list[Row]:
    frame = compute_batch(events, graph=None, policy=policy, binding=binding)
    assert frame.attrs["cps_engine"]["per_order"] == 0  # every order on the kernel
    return [tuple(r) for r in frame[["order", "payee", "level", "amount_minor", "rate"]]  # type: ignore[misc]
            .itertuples(index=False, name=None)]


def outcome(fn: Any) -> tuple[str, Any]:
    """The result, or the type of the typed error (a fixed amount in another currency)."""
    try:
        return "ok", fn()
    except CpsError as exc:
        return "error", type(exc).__name__


def both(events: list[Event], cfg: dict[str, Any]) -> list[Row]:
    """The lines of ``events`` under ``cfg``, the same per order and in batch (asserted)."""
    policy = load_policy(cfg)
    got = batch(events, policy)
    assert got == reference(events, policy)
    return got


# ------------------------------------------------------------------------------ hand examples
CHAIN4 = (_share("s1", "amy", None, 0), _share("s2", "bob", "s1", 1), _share("s3", "cat", "s2", 2),
          _share("s4", "dan", "s3", 3))


def test_linear_unit_left_goes_to_the_farthest_link() -> None:
    """10% of 100.00 = 1000 fen over three equal members: 333.33 each, floors 999, the one unit left
    ties on remainder (1/3 each) and goes to the farthest link, amy."""
    evs = _events(*CHAIN4[:3], _order("o1", "eve", "s3", "100.00", 5))
    assert both(evs, {"kind": "linear", "rate": "10%"}) == [
        ("o1", "cat", 1, 333, "1/30"), ("o1", "bob", 2, 333, "1/30"), ("o1", "amy", 3, 334, "1/30")]


def test_position_based_units_left_go_to_the_largest_remainders() -> None:
    """10% of 0.99 = 9.9 fen, rounded down to 9, over four members 40/10/10/40%: exact 3.96, 0.99,
    0.99, 3.96; floors 3, 0, 0, 3 leave 3 units.  The remainders .99 (levels 2, 3) come first, the
    farther (3) before the nearer; the third unit goes to .96, tied between levels 1 and 4: to 4."""
    evs = _events(*CHAIN4, _order("o1", "eve", "s4", "0.99", 5))
    assert both(evs, {"kind": "position_based", "rate": "10%"}) == [
        ("o1", "dan", 1, 3, "0.04"), ("o1", "cat", 2, 1, "0.01"), ("o1", "bob", 3, 1, "0.01"),
        ("o1", "amy", 4, 4, "0.04")]


def test_position_based_two_members_split_first_to_last() -> None:
    """Two members split ``first : last`` (here 30 : 50 of 10% of 10.00 = 100 fen): amy, the first
    sharer, 37.5 -> 37, bob 62.5 -> 62; one unit left, remainders tie at .5: to amy, the farther."""
    evs = _events(*CHAIN4[:2], _order("o1", "eve", "s2", "10.00", 5))
    assert both(evs, {"kind": "position_based", "rate": "10%", "first": "30%", "middle": "20%",
                      "last": "50%"}) == [("o1", "bob", 1, 62, "0.0625"), ("o1", "amy", 2, 38, "0.0375")]


def test_time_decay_hand_example_with_rounded_weights() -> None:
    """Half-life 1 day: bob's link is 1 day old (weight 5 * 10^8), amy's 2 days (2.5 * 10^8); bob
    2/3, amy 1/3 of 10% of 1.00 = 10 fen: 6.67 -> 6 and 3.33 -> 3, the unit left to the larger
    remainder (bob's .67)."""
    evs = _events(*CHAIN4[:2], _order("o1", "eve", "s2", "1.00", 3))
    assert both(evs, {"kind": "time_decay", "rate": "10%", "half_life_days": "1"}) == [
        ("o1", "bob", 1, 7, "1/15"), ("o1", "amy", 2, 3, "1/30")]


def test_time_decay_weights_are_rounded_half_even_to_nine_places() -> None:
    """Ten half-lives weigh 2^-10 = 0.0009765625, exactly half-way at 9 places: half-even keeps
    976562 (not ...563, not the unrounded value).  With self-purchase the buyer's own link weighs
    10^9, so amy's rate is 10% x 976562 / 1000976562, exactly, in both engines."""
    evs = _events(_share("s1", "amy", None, 0), _order("o1", "eve", "s1", "1000.00", 10))
    got = both(evs, {"kind": "time_decay", "rate": "10%", "half_life_days": "1", "self_purchase": True})
    w = 976_562
    assert [(r[1], r[4]) for r in got] == [
        ("eve", format_rate(Fraction(1, 10) * DECAY_SCALE / (DECAY_SCALE + w))),
        ("amy", format_rate(Fraction(1, 10) * w / (DECAY_SCALE + w)))]
    assert sum(r[3] for r in got) == 10_000


def test_time_decay_links_older_than_31_half_lives_weigh_nothing() -> None:
    """2^-31 x 10^9 = 0.47 rounds to 0: amy (31 days, half-life 1 day) takes no share, bob (fresh)
    the whole pool.  If every link weighs 0 the pool pays nobody."""
    evs = _events(_share("s1", "amy", None, 0), _share("s2", "bob", "s1", 30.5),
                  _order("o1", "eve", "s2", "10.00", 31), _order("o2", "eve", "s1", "10.00", 31))
    assert both(evs, {"kind": "time_decay", "rate": "10%", "half_life_days": "1"}) == [
        ("o1", "bob", 1, 100, "0.1")]
    assert Weights("decay", half_life_us=Decimal(DAY_US)).decay_units(30 * DAY_US) == 1


def test_pools_beyond_int64_stay_exact() -> None:
    """A base near the largest amount with decay weights near 10^9 leaves int64 for
    ``base x rate x weight``: those orders take the exact integer split, still equal per order."""
    big = "9000000000000.00"  # 9 * 10^14 minor units, near the largest amount
    evs = _events(*CHAIN4, _order("o1", "eve", "s4", big, 3.3), _order("o2", "eve", "s3", "12.34", 3.3))
    for kind in POOL_KINDS:
        cfg: dict[str, Any] = {"kind": kind, "rate": "1/7"}
        if kind == "time_decay":
            cfg["half_life_days"] = "0.3"
        lines = both(evs, cfg)
        assert sum(r[3] for r in lines if r[0] == "o1") == 900_000_000_000_000 // 7


# ------------------------------------------------------------------------------ the pieces
@settings(max_examples=300)
@given(age=st.one_of(st.integers(0, 40 * 10 * DAY_US), st.integers(0, 2**62),
                     st.integers(0, 60).map(lambda n: n * DAY_US)),
       half_life=st.sampled_from(["0.5", "1", "7", "30", "2.25", "0.001", "36500"]))
def test_vectorised_decay_weights_equal_the_contract(age: int, half_life: str) -> None:
    """The kernel's float64 candidate, corrected near halves, is the plan's decimal weight."""
    w = Weights("decay", half_life_us=Decimal(half_life) * DAY_US)
    ages = np.asarray([age, age // 2, age // 3 + 1, 0], dtype=np.int64)
    assert _plan._decay_units(w, ages).tolist() == [w.decay_units(int(a)) for a in ages.tolist()]


def test_vectorised_decay_weights_near_halves() -> None:
    """Ages whose weight is within a hair of a half unit (found by bisection on the exact value):
    the ones a float could round the wrong way."""
    w = Weights("decay", half_life_us=Decimal(7 * DAY_US))
    ages = []
    for target in (123_456_789.5, 500_000_000.5, 1_234.5, 999_999_999.5, 0.5):
        lo, hi = 0, 40 * 7 * DAY_US  # weight falls with age: find the last age above target
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if Decimal(2) ** (-Decimal(mid) / w.half_life_us) * DECAY_SCALE > Decimal(target):
                lo = mid
            else:
                hi = mid
        ages += [lo - 1, lo, hi, hi + 1]
    arr = np.asarray(ages, dtype=np.int64)
    assert _plan._decay_units(w, arr).tolist() == [w.decay_units(a) for a in ages]


def _bumps_by_sorting(rem: list[int], sizes: list[int], rest: list[int]) -> list[bool]:
    """The rule restated per group: sort by (remainder, position) descending, take ``rest``."""
    out = [False] * len(rem)
    start = 0
    for k, r in zip(sizes, rest, strict=True):
        ranked = sorted(range(start, start + k), key=lambda i: (-rem[i], -i))
        for i in ranked[:r]:
            out[i] = True
        start += k
    return out


@given(groups=st.lists(st.tuples(st.lists(st.integers(0, 5), min_size=1, max_size=12), st.integers(0, 12)),
                       min_size=1, max_size=30))
def test_units_left_go_to_the_largest_remainders_ties_to_the_farther(
        groups: list[tuple[list[int], int]]) -> None:
    rem = [r for g, _ in groups for r in g]
    sizes = [len(g) for g, _ in groups]
    rest = [min(r, len(g)) for g, r in groups]
    starts = np.cumsum([0, *sizes[:-1]])
    got = _plan._ranked_bumps(np.asarray(rem, dtype=np.int64), starts.astype(np.int64),
                              np.asarray(sizes, dtype=np.int64), np.asarray(rest, dtype=np.int64))
    assert got.tolist() == _bumps_by_sorting(rem, sizes, rest)


# ------------------------------------------------------------------------------ the property
pool_bindings = st.sampled_from([BindingConfig(), BindingConfig(mode="overwrite"),
                                 BindingConfig(mode="expiring", expire_days=1)])


@given(prog=programmes(max_people=8, max_shares=40, max_orders=25, currencies=("CNY", "JPY")),
       cfg=policy_configs(kinds=POOL_KINDS), binding=pool_bindings)
def test_pools_equal_per_order_with_every_option(prog: Programme, cfg: dict[str, Any],
                                                 binding: BindingConfig) -> None:
    """Every pool kind with every option (max_depth, position weights, half-lives, caps, filters and
    ineligible modes, product/category rates, fixed amounts, self-purchase, rounding): the same
    lines as the per-order engine, or the same typed error."""
    policy = load_policy(cfg)

    def got() -> list[Row]:
        frame = compute_batch(prog.events, graph=None, policy=policy, binding=binding)
        return [tuple(r) for r in frame[["order", "payee", "level", "amount_minor", "rate"]]  # type: ignore[misc]
                .itertuples(index=False, name=None)]

    assert outcome(got) == outcome(lambda: reference(prog.events, policy, binding))


@settings(max_examples=40)
@given(lengths=st.lists(st.integers(1, 30), min_size=1, max_size=6), amounts=st.lists(
    st.integers(1, 10**9), min_size=1, max_size=8), kind=st.sampled_from(POOL_KINDS),
       rate=st.sampled_from(["10%", "1/3", "7/9", "0.01%"]), rounding=st.sampled_from(["down", "half_even", "up"]))
def test_long_chains_equal_per_order(lengths: list[int], amounts: list[int], kind: str, rate: str,
                                     rounding: str) -> None:
    """Chains of many lengths in one run (one rank group per length), many remainders."""
    raw: list[dict[str, Any]] = []
    tips = []
    for c, n in enumerate(lengths):
        for i in range(n):
            raw.append(_share(f"c{c}s{i}", f"c{c}p{i}", f"c{c}s{i - 1}" if i else None, i * 0.37))
        tips.append(f"c{c}s{n - 1}")
    for o, a in enumerate(amounts):
        raw.append(_order(f"o{o}", "buyer", tips[o % len(tips)], f"{a // 100}.{a % 100:02d}", 12 + o / 7))
    cfg: dict[str, Any] = {"kind": kind, "rate": rate, "rounding": rounding}
    if kind == "time_decay":
        cfg["half_life_days"] = "2.25"
    both(_events(*raw), cfg)


# ------------------------------------------------------------------------------ the tests can fail
def test_a_tie_to_the_nearer_link_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation: ranking ties to the nearer member breaks the hand example and the restated rule."""
    evs = _events(*CHAIN4[:3], _order("o1", "eve", "s3", "100.00", 5))
    policy = load_policy({"kind": "linear", "rate": "10%"})
    original = _plan._ranked_bumps

    def nearer(rem: Any, starts: Any, size: Any, rest: Any) -> Any:
        flipped = np.concatenate([rem[s:s + k][::-1] for s, k in zip(starts, size, strict=True)])
        bump = original(flipped, starts, size, rest)
        return np.concatenate([bump[s:s + k][::-1] for s, k in zip(starts, size, strict=True)])

    monkeypatch.setattr(_plan, "_ranked_bumps", nearer)
    assert batch(evs, policy) != reference(evs, policy)
    assert nearer(np.zeros(3, dtype=np.int64), np.zeros(1, dtype=np.int64), np.asarray([3]),
                  np.asarray([1])).tolist() != _bumps_by_sorting([0, 0, 0], [3], [1])


def test_unrounded_or_misrounded_decay_weights_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation: a kernel rounding weights half-up (976563 at ten half-lives) differs from the
    contract the per-order engine follows."""
    evs = _events(_share("s1", "amy", None, 0), _order("o1", "eve", "s1", "1000.00", 10))
    policy = load_policy({"kind": "time_decay", "rate": "10%", "half_life_days": "1", "self_purchase": True})
    monkeypatch.setattr(_plan, "_decay_units", lambda w, age: np.floor(
        np.exp2(-age / float(w.half_life_us)) * DECAY_SCALE + 0.5).astype(np.int64))
    assert batch(evs, policy) != reference(evs, policy)


def test_a_wrong_position_table_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation: a position table that swaps first and last is caught by the hand example."""
    evs = _events(*CHAIN4[:2], _order("o1", "eve", "s2", "10.00", 5))
    policy = load_policy({"kind": "position_based", "rate": "10%", "first": "30%", "middle": "20%",
                          "last": "50%"})
    original = _plan._position_table

    def swapped(w: Weights, sizes: Any) -> Any:
        wt, tot = original(w, sizes)
        return wt[:, ::-1].copy(), tot

    monkeypatch.setattr(_plan, "_position_table", swapped)
    assert batch(evs, policy) != reference(evs, policy)
