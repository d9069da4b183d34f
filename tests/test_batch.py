"""The vectorised batch engine agrees with the per-order engine to the unit.

The per-order engine (``compute_events``) is the reference: for random histories (share forests
with repeated people, bindings under every mode, self-purchases, item lines, refunds, three
currencies) and random configs of every built-in policy kind, ``compute_batch`` must give the same
lines — order, payee, level, amount, currency and exact rate — in the same order.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cps_engine import (
    CpsError,
    Event,
    FloatRejected,
    InvalidEvent,
    OrderEvent,
    RefundEvent,
    Rounding,
    ShareEvent,
    ShareGraph,
    UnknownReference,
    compute_events,
    load_policy,
)
from cps_engine.batch import _kernels, compute_batch, orders_frame
from cps_engine.graph import BindingConfig
from cps_engine.money import apply_rate, format_rate
from tests.strategies import POLICY_KINDS, Programme, interleaved_programmes, policy_configs, programmes

Row = tuple[str, str, int, int, str, str]
COLS = ["order", "payee", "level", "amount_minor", "currency", "rate"]
VECTOR_KINDS = POLICY_KINDS  # every built-in policy compiles to a plan the kernels execute
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def reference(events: list[Event], policy: Any, binding: Any = "first_wins") -> list[Row]:
    return [(ln.order, ln.payee, ln.level, ln.amount.minor, ln.amount.currency, format_rate(ln.rate))
            for s in compute_events(events, policy, binding=binding) for ln in s.lines]


def rows(frame: pd.DataFrame) -> list[Row]:
    return [tuple(r) for r in frame[COLS].itertuples(index=False, name=None)]  # type: ignore[misc]


def outcome(fn: Any) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except CpsError as exc:
        return "error", type(exc).__name__


bindings = st.sampled_from([BindingConfig(), BindingConfig(mode="overwrite"),
                            BindingConfig(mode="registration_only"),
                            BindingConfig(mode="expiring", expire_days=1)])


# ------------------------------------------------------------------------------ the property
@given(prog=programmes(currencies=("CNY", "JPY", "KWD")), cfg=policy_configs(), binding=bindings)
def test_batch_equals_per_order_for_every_policy(prog: Programme, cfg: dict[str, Any], binding: BindingConfig) -> None:
    """Every kind, every option (overrides, filters, fixed amounts, caps, rounding), refunds,
    bindings and self-purchases: identical lines, or the same typed error."""
    policy = load_policy(cfg)
    expected = outcome(lambda: reference(prog.events, policy, binding))
    got = outcome(lambda: rows(compute_batch(prog.events, policy=policy, binding=binding)))
    assert got == expected


@given(prog=programmes(max_people=8, max_shares=30, max_orders=25),
       cfg=policy_configs(kinds=VECTOR_KINDS), binding=bindings)
def test_batch_equals_per_order_on_the_vectorised_path(prog: Programme, cfg: dict[str, Any],
                                                       binding: BindingConfig) -> None:
    """Every kind with every option (pools, designated distributors under compress and
    keep_level, payee/product/category rates, fixed amounts per order and per item, caps,
    self-purchase, compliant profiles): most orders take the numpy path, the rest (a person
    repeated on a share path, rounding up past the base) are routed per order."""
    policy = load_policy(cfg)
    frame = compute_batch(prog.events, policy=policy, binding=binding)
    assert rows(frame) == reference(prog.events, policy, binding)
    stats = frame.attrs["cps_engine"]
    assert stats["vectorised"] + stats["per_order"] == len(prog.orders)


@given(prog=interleaved_programmes(max_people=8, max_shares=30, max_orders=25),
       cfg=policy_configs(kinds=("compliant",), fixed=False, filters=False), binding=bindings)
def test_compliant_participation_is_taken_at_the_order_time(prog: Programme, cfg: dict[str, Any],
                                                             binding: BindingConfig) -> None:
    """Orders placed before the buyer's first share or first downline pay their uplines; later
    ones do not: the vectorised path asks "participant?" at each order's time, like the engine."""
    policy = load_policy(cfg)
    assert rows(compute_batch(prog.events, policy=policy, binding=binding)) == reference(prog.events, policy, binding)


@given(prog=programmes(max_people=6, max_shares=20, max_orders=20),
       cfg=policy_configs(kinds=VECTOR_KINDS), binding=bindings)
def test_without_repeats_every_order_is_vectorised(prog: Programme, cfg: dict[str, Any],
                                                   binding: BindingConfig) -> None:
    """Share chains without a repeated person, binding chains (every mode) and orders with neither
    never need the per-order engine, whatever the options (overrides, filters, fixed amounts,
    item lines, pools) -- except, when rounding is not down, an order whose rounded lines would
    exceed its base (the engine trims it; found by a soak with up-rounding on a 1-fen base)."""
    policy = load_policy(cfg)
    graph = ShareGraph.from_events(prog.events, binding=binding)
    frame = compute_batch(prog.events, policy, graph=graph)
    assert rows(frame) == reference(prog.events, policy, binding)
    repeats = {s.id for s in prog.shares if graph.index.repeat[graph.index.share_ids.get(s.id)]}
    if policy.rounding is Rounding.DOWN and not any(o.share in repeats for o in prog.orders):
        assert frame.attrs["cps_engine"]["per_order"] == 0


@given(prog=programmes(max_people=12, max_shares=10, max_orders=25, binds=False, lines=False),
       self_purchase=st.booleans())
def test_first_sharer_level_when_the_buyer_is_on_the_path(prog: Programme, self_purchase: bool) -> None:
    """chain[0]'s level is the chain's length: minus one when the buyer shared on the path (once or
    several times), plus one for a self-purchase."""
    policy = load_policy({"kind": "first_sharer", "rate": "10%", "self_purchase": self_purchase})
    assert rows(compute_batch(prog.events, policy=policy)) == reference(prog.events, policy)


@given(prog=programmes(lines=False, currencies=("CNY", "JPY")),
       cfg=policy_configs(kinds=POLICY_KINDS, fixed=False), flavour=st.sampled_from(["pandas", "polars", "arrow"]),
       refunds_as=st.sampled_from(["column", "mapping", "events"]))
@settings(max_examples=25)
def test_frames_give_the_same_lines_as_events(prog: Programme, cfg: dict[str, Any], flavour: str,
                                             refunds_as: str) -> None:
    """pandas, polars and Arrow orders (times as zoned timestamps, so binding chains are
    vectorised too), refunds as a column, a mapping or refund events."""
    policy = load_policy(cfg)
    graph = ShareGraph.from_events(prog.events)
    frame = orders_frame(prog.events)
    refunds: Any = None
    if refunds_as != "column":
        mapping = dict(zip(frame["id"], frame["refunded_minor"], strict=True))
        frame = frame.drop(columns=["refunded_minor"])
        refunds = {k: int(v) for k, v in mapping.items() if v} if refunds_as == "mapping" else prog.refunds
    if flavour == "pandas":
        orders: Any = frame
    else:
        import pyarrow as pa

        table = pa.Table.from_pandas(frame.astype({c: "str" for c in ("id", "buyer", "currency")}),
                                     preserve_index=False)
        orders = table
        if flavour == "polars":
            import polars as pl

            orders = pl.from_arrow(table)
    expected = outcome(lambda: reference(prog.events, policy))
    got = outcome(lambda: rows(compute_batch(orders, policy=policy, graph=graph, refunds=refunds)))
    assert got == expected


@given(prog=programmes(lines=False, max_orders=20), cfg=policy_configs(kinds=VECTOR_KINDS, fixed=False))
@settings(max_examples=15)
def test_without_pyarrow_objects_and_dicts_give_the_same(prog: Programme, cfg: dict[str, Any]) -> None:
    """pyarrow is optional: string columns fall back to numpy objects and lookups to dicts."""
    from unittest import mock

    from cps_engine.batch import _orders, _strings

    policy = load_policy(cfg)
    graph = ShareGraph.from_events(prog.events)
    frame = orders_frame(prog.events).astype({"id": object, "buyer": object, "share": object})
    with mock.patch.object(_strings, "pyarrow", lambda: None), mock.patch.object(_kernels, "pyarrow", lambda: None), \
            mock.patch.object(_orders, "pyarrow", lambda: None):
        got = compute_batch(frame, policy, graph=graph)
        from_events = compute_batch(prog.events, policy, graph=graph)
    assert got["payee"].dtype == object
    assert rows(got) == rows(from_events) == reference(prog.events, policy)


@given(base=st.lists(st.integers(0, 2**62), min_size=1, max_size=40),
       rates=st.lists(st.tuples(st.integers(0, 40), st.sampled_from([1, 2, 3, 4, 8, 10, 20, 40, 7, 97, 2**40])),
                      min_size=1, max_size=5),
       rounding=st.sampled_from(list(Rounding)), data=st.data())
def test_vector_rounding_equals_apply_rate(base: list[int], rates: list[tuple[int, int]], rounding: Rounding,
                                           data: st.DataObject) -> None:
    """Every rounding mode, exact halves included (denominators 2, 4, 8...), small and huge bases
    (the int64 path and the exact Python-integer path)."""
    fracs = [min(Fraction(p, q), Fraction(1)) for p, q in rates]
    idx = data.draw(st.lists(st.integers(0, len(fracs) - 1), min_size=len(base), max_size=len(base)))
    small = data.draw(st.booleans())
    bases = [b % 10_000 if small else b for b in base]
    got = _kernels._amounts(np.asarray(bases, dtype=np.int64), np.asarray(idx, dtype=np.int64), fracs, rounding)
    assert got.tolist() == [apply_rate(b, fracs[i], rounding) for b, i in zip(bases, idx, strict=True)]


# ------------------------------------------------------------------------------ hand examples
def _events(*raw: dict[str, Any]) -> list[Event]:
    from cps_engine import parse_event

    return [parse_event(r) for r in raw]


def _share(sid: str, who: str, parent: str | None, minute: int) -> dict[str, Any]:
    return {"type": "share", "id": sid, "sharer": who, "parent": parent, "at": T0 + timedelta(minutes=minute)}


def _order(oid: str, buyer: str, share: str | None, amount: str, minute: int) -> dict[str, Any]:
    return {"type": "order", "id": oid, "buyer": buyer, "share": share, "amount": amount, "currency": "CNY",
            "at": T0 + timedelta(minutes=minute)}


CHAIN = _events(_share("s1", "amy", None, 0), _share("s2", "bob", "s1", 1), _share("s3", "cat", "s2", 2),
                _share("s4", "dan", "s3", 3),
                _order("o1", "eve", "s4", "100.00", 10), _order("o2", "bob", "s4", "100.00", 11),
                _order("o3", "amy", "s2", "33.33", 12), _order("o4", "zed", None, "50.00", 13))


@pytest.mark.parametrize("cfg, expected", [
    ({"kind": "first_sharer", "rate": "10%"},
     [("o1", "amy", 4, 1000), ("o2", "amy", 3, 1000), ("o3", "bob", 1, 333)]),
    ({"kind": "first_sharer", "rate": "10%", "self_purchase": True},
     [("o1", "amy", 5, 1000), ("o2", "amy", 4, 1000), ("o3", "bob", 2, 333), ("o4", "zed", 1, 500)]),
    ({"kind": "last_sharer", "rate": "10%"},
     [("o1", "dan", 1, 1000), ("o2", "dan", 1, 1000), ("o3", "bob", 1, 333)]),
    ({"kind": "capped_multilevel", "rates": ["10%", "5%", "2%"], "cap": "15%"},
     [("o1", "dan", 1, 882), ("o1", "cat", 2, 441), ("o1", "bob", 3, 176),
      ("o2", "dan", 1, 882), ("o2", "cat", 2, 441), ("o2", "amy", 3, 176), ("o3", "bob", 1, 333)]),
])
def test_hand_examples(cfg: dict[str, Any], expected: list[tuple[str, str, int, int]]) -> None:
    policy = load_policy(cfg)
    frame = compute_batch(CHAIN, policy=policy)
    assert [r[:4] for r in rows(frame)] == expected
    assert rows(frame) == reference(CHAIN, policy)
    assert frame.attrs["cps_engine"]["per_order"] == 0
    assert frame["amount_minor"].dtype == np.int64


BOUND = _events({"type": "bind", "id": "b1", "user": "bob", "upline": "amy", "at": T0},
                {"type": "bind", "id": "b2", "user": "cat", "upline": "bob", "at": T0 + timedelta(minutes=5)},
                _order("o1", "dan", None, "100.00", 1), _order("o2", "cat", None, "100.00", 2),
                _order("o3", "cat", None, "100.00", 6))


@pytest.mark.parametrize("cfg, expected", [
    ({"kind": "first_sharer", "rate": "10%"}, [("o3", "amy", 2, 1000)]),
    ({"kind": "last_sharer", "rate": "10%", "self_purchase": True},
     [("o1", "dan", 1, 1000), ("o2", "cat", 1, 1000), ("o3", "cat", 1, 1000)]),
    ({"kind": "capped_multilevel", "rates": ["10%", "5%"]}, [("o3", "bob", 1, 1000), ("o3", "amy", 2, 500)]),
])
def test_binding_chains_follow_the_uplines_at_the_order_time(cfg: dict[str, Any],
                                                            expected: list[tuple[str, str, int, int]]) -> None:
    """cat is bound to bob only from minute 5: o2 (minute 2) has no chain, o3 (minute 6) has bob, amy."""
    policy = load_policy(cfg)
    frame = compute_batch(BOUND, policy=policy)
    assert [r[:4] for r in rows(frame)] == expected
    assert rows(frame) == reference(BOUND, policy)
    assert frame.attrs["cps_engine"]["per_order"] == 0


def test_expired_bindings_pay_nobody() -> None:
    """Under ``expiring`` bindings a chain exists only while the binding lasts."""
    evs = _events({"type": "bind", "id": "b1", "user": "bob", "upline": "amy", "at": T0},
                  _order("o1", "bob", None, "100.00", 60 * 12), _order("o2", "bob", None, "100.00", 60 * 48))
    binding = BindingConfig(mode="expiring", expire_days=1)
    policy = load_policy({"kind": "last_sharer", "rate": "10%"})
    frame = compute_batch(evs, policy=policy, binding=binding)
    assert [r[:4] for r in rows(frame)] == [("o1", "amy", 1, 1000)]
    assert rows(frame) == reference(evs, policy, binding)
    assert frame.attrs["cps_engine"]["per_order"] == 0


def test_rounding_up_that_would_overpay_is_trimmed_like_the_engine() -> None:
    """base 1, two levels at 1/2 each, rounding up: 1 + 1 > 1, the engine takes the excess back."""
    evs = _events(_share("s1", "amy", None, 0), _share("s2", "bob", "s1", 1), _order("o1", "cy", "s2", "0.01", 5))
    for rounding in ("up", "half_up", "half_even", "down"):
        policy = load_policy({"kind": "capped_multilevel", "rates": ["1/2", "1/2"], "rounding": rounding})
        assert rows(compute_batch(evs, policy=policy)) == reference(evs, policy)


def test_amounts_beyond_int64_products_stay_exact() -> None:
    """base × numerator overflows int64: the exact Python-integer path takes over."""
    big = "10000000000000.00"  # 10**15 minor units, the per-event maximum: base × p overflows int64
    evs = _events(_share("s1", "amy", None, 0), _share("s2", "bob", "s1", 1), _order("o1", "cy", "s2", big, 5))
    for rounding in ("down", "half_even"):
        policy = load_policy({"kind": "capped_multilevel", "rates": ["12345679/100000000", "2/7"], "cap": "3/11",
                              "rounding": rounding})
        assert rows(compute_batch(evs, policy=policy)) == reference(evs, policy)


def test_frame_errors_name_the_order_and_column() -> None:
    graph = ShareGraph.from_events(CHAIN)
    policy = load_policy({"kind": "first_sharer", "rate": "10%"})
    base = {"id": ["o1", "o2"], "buyer": ["eve", "fay"], "share": ["s4", "s1"], "currency": ["CNY", "CNY"]}
    with pytest.raises(FloatRejected):
        compute_batch(pd.DataFrame({**base, "amount": [1.5, 2.0]}), policy, graph=graph)
    with pytest.raises(FloatRejected):
        compute_batch(pd.DataFrame({**base, "amount_minor": [1.5, 2.0]}), policy, graph=graph)
    with pytest.raises(InvalidEvent, match="more decimals") as info:
        compute_batch(pd.DataFrame({**base, "amount": ["1.00", "2.001"]}), policy, graph=graph)
    assert info.value.record == "o2" and info.value.field == "amount"
    with pytest.raises(UnknownReference) as unknown:
        compute_batch(pd.DataFrame({**base, "share": ["s4", "nope"], "amount_minor": [1, 2]}), policy, graph=graph)
    assert unknown.value.record == "o2" and unknown.value.field == "share"
    with pytest.raises(InvalidEvent, match="unknown currency"):
        compute_batch(pd.DataFrame({**base, "currency": ["CNY", "XYZ"], "amount_minor": [1, 2]}), policy, graph=graph)
    with pytest.raises(InvalidEvent, match="negative"):
        compute_batch(pd.DataFrame({**base, "amount_minor": [1, -2]}), policy, graph=graph)
    with pytest.raises(InvalidEvent, match="refunded"):
        compute_batch(pd.DataFrame({**base, "amount_minor": [1, 2]}), policy=policy, graph=graph, refunds={"o1": 5})
    with pytest.raises(InvalidEvent, match="zone"):
        compute_batch(pd.DataFrame({**base, "amount_minor": [1, 2],
                                    "at": pd.to_datetime(["2026-03-01", "2026-03-02"])}), policy=policy, graph=graph)
    with pytest.raises(InvalidEvent, match="strings"):
        compute_batch(pd.DataFrame({**base, "id": [1, 2], "amount_minor": [1, 2]}), policy, graph=graph)
    with pytest.raises(TypeError, match="ShareGraph"):
        compute_batch(pd.DataFrame({**base, "amount_minor": [1, 2]}), policy=policy)


def test_decimal_and_major_unit_amounts() -> None:
    graph = ShareGraph.from_events(CHAIN)
    policy = load_policy({"kind": "last_sharer", "rate": "10%"})
    frame = pd.DataFrame({"id": ["o1", "o2", "o3"], "buyer": ["eve", "fay", "gus"], "share": ["s4", None, "s2"],
                          "amount": [Decimal("10.05"), "7", 3], "currency": ["cny", "CNY", "JPY"],
                          "shipping": [None, "1.00", None]})
    out = compute_batch(frame, policy, graph=graph)
    # o2 has no share and an unknown buyer; o3's 10% of 3 JPY rounds down to 0 (no line)
    assert rows(out) == [("o1", "dan", 1, 100, "CNY", "0.1")]
    assert out["base_minor"].tolist() == [1005]


def test_per_order_orders_need_a_time() -> None:
    """A buyer with a binding needs the order's time: without an 'at' column the per-order engine
    asks for it; with zoned timestamps the binding chain is vectorised."""
    evs = _events({"type": "bind", "id": "b1", "user": "eve", "upline": "amy", "at": T0}, *CHAIN)
    graph = ShareGraph.from_events(evs)
    policy = load_policy({"kind": "last_sharer", "rate": "10%"})
    frame = pd.DataFrame({"id": ["o9"], "buyer": ["eve"], "share": [None], "amount_minor": [1000],
                          "currency": ["CNY"]})
    with pytest.raises(InvalidEvent, match="time"):
        compute_batch(frame, policy, graph=graph)
    frame["at"] = pd.Series([T0 + timedelta(days=1)], dtype="datetime64[ns, UTC]")
    out = compute_batch(frame, policy, graph=graph)
    assert rows(out) == [("o9", "amy", 1, 100, "CNY", "0.1")]
    assert out.attrs["cps_engine"]["per_order"] == 0
    frame["at"] = [(T0 + timedelta(days=1)).isoformat()]  # text times: decided per order
    out = compute_batch(frame, policy, graph=graph)
    assert rows(out) == [("o9", "amy", 1, 100, "CNY", "0.1")]
    assert out.attrs["cps_engine"]["per_order"] == 1


def test_plugin_policy_without_batch_form_runs_per_order() -> None:
    from typing import Literal

    from cps_engine import PolicyConfig
    from cps_engine.policies import Award

    class Everyone(PolicyConfig):
        kind: Literal["batch_test_everyone"] = "batch_test_everyone"

        def awards(self, chain: Any, order: Any) -> list[Award]:
            return [Award(link.payee, level, Fraction(1, 100), "one percent", (link.via,))
                    for level, link in enumerate(chain.walk(), start=1)]

    policy = Everyone()
    with pytest.warns(_kernels.BatchFallbackWarning, match=r"'batch_test_everyone'.* 4 orders"):
        frame = compute_batch(CHAIN, policy=policy)
    assert rows(frame) == reference(CHAIN, policy)
    assert frame.attrs["cps_engine"]["vectorised"] == 0


def test_plugin_policy_with_a_plan_is_vectorised() -> None:
    """A plugin that compiles to a plan gets the numpy path for free, and no warning."""
    import warnings
    from typing import Literal

    from cps_engine import PolicyConfig
    from cps_engine.policies.plan import Plan

    class TopTwo(PolicyConfig):
        kind: Literal["batch_test_top_two"] = "batch_test_top_two"

        def plan(self) -> Plan:
            return Plan(self, "levels", (Fraction(1, 10), Fraction(1, 20)), 2, rule="top two, ")

    policy = TopTwo(distributors=["dan", "bob", "amy"], ineligible="keep_level")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = compute_batch(CHAIN, policy=policy)
    assert rows(frame) == reference(CHAIN, policy)
    assert frame.attrs["cps_engine"]["per_order"] == 0 and len(frame) > 0


def test_duplicate_and_conflicting_orders_are_refused_like_the_engine() -> None:
    other = OrderEvent(id="o1", buyer="zed", amount=Decimal("1.00"), currency="CNY", at=T0)
    with pytest.raises(CpsError) as a:
        compute_events([*CHAIN, other], load_policy({"kind": "first_sharer", "rate": "1%"}))
    with pytest.raises(CpsError) as b:
        compute_batch([*CHAIN, other], policy={"kind": "first_sharer", "rate": "1%"})
    assert type(a.value) is type(b.value)
    refund = RefundEvent(id="r1", order="o1", amount=Decimal("1000.00"), at=T0 + timedelta(days=1))
    with pytest.raises(InvalidEvent):
        compute_batch([*CHAIN, refund], policy={"kind": "first_sharer", "rate": "1%"})


def test_unknown_buyers_and_empty_inputs() -> None:
    policy = load_policy({"kind": "first_sharer", "rate": "10%"})
    empty = compute_batch([], policy=policy)
    assert list(empty.columns) == ["order", "payee", "level", "amount_minor", "currency", "rate", "base_minor"]
    assert len(empty) == 0
    only = [ShareEvent(id="s1", sharer="amy", at=T0)]
    assert len(compute_batch(only, policy=policy)) == 0


def test_dask_and_polars_stay_optional() -> None:
    """The package, the batch engine and the what-if run with dask, distributed and polars missing."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("dask", "distributed", "polars"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        import cps_engine, cps_engine.batch, cps_engine.whatif, cps_engine.simulate, cps_engine.cli_whatif
        assert not any(m in sys.modules for m in ("pandas", "matplotlib", "pyarrow")), "imported eagerly"
        from cps_engine.batch import compute_batch
        from cps_engine.cli import sample_path
        events = cps_engine.load_events(sample_path())
        lines = compute_batch(events, None, {"kind": "first_sharer", "rate": "10%"})
        assert len(lines) > 1000
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_the_property_catches_a_wrong_first_sharer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation check: a first-sharer kernel that forgets to skip the buyer is caught."""
    original = _kernels._on_path
    monkeypatch.setattr(_kernels, "_on_path", lambda ga, b, node: np.zeros(len(node), dtype=bool))
    policy = load_policy({"kind": "first_sharer", "rate": "10%"})
    assert rows(compute_batch(CHAIN, policy=policy)) != reference(CHAIN, policy)
    monkeypatch.setattr(_kernels, "_on_path", original)
    assert rows(compute_batch(CHAIN, policy=policy)) == reference(CHAIN, policy)
