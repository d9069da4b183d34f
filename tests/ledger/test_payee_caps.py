"""Per-payee caps per order and per period (issue 13): a payee's commission above a cap is reduced when
recorded, the excess stays with the merchant and is recorded (account ``capped``), refunds reverse it
symmetrically, and for any history: recorded commission + excess == the engine's commission, caps are
never exceeded, re-recording changes nothing."""

from __future__ import annotations

import random
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cps_engine.engine import compute_events
from cps_engine.errors import InvalidPolicyConfig
from cps_engine.graph import to_micros
from cps_engine.ledger import Ledger, Outcome
from cps_engine.ledger.postings import CAPPED, DAY_US, PayeeCaps
from cps_engine.models import BindEvent, Event
from tests.ledger.conftest import MakeLedger
from tests.ledger.helpers import POLICY, day, order, refund, share

CAPS = {"per_order": "5.00 CNY", "per_period": {"days": 30, "max": "12.00 CNY"}}
SHARES = [share("s1", "amy"), share("s2", "bob", "s1", at=0.01), share("s3", "cid", "s2", at=0.02)]


def positions(led: Ledger) -> dict[tuple[str, str], list[int]]:
    """``(order, payee) -> [commission, capped excess]`` from the stored entries."""
    out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for e in led.entries(memo=True):
        if e.order is not None and e.payee is not None and e.account in ("commission", CAPPED):
            out[(e.order, e.payee)][e.account == CAPPED] += e.amount
    return dict(out)


def test_caps_reduce_report_and_reverse(make_ledger: MakeLedger) -> None:
    led = make_ledger(POLICY, hold_days=1, payee_caps=CAPS)
    s = led.record_many([*SHARES[:2], order("o1", "s2", "80.00", at=1), order("o2", "s2", "80.00", at=2),
                         order("o3", "s2", "80.00", at=3)], results=True)
    # bob: 8.00 per order on the engine; 5.00 per order at most, 12.00 in the period: 5 + 5 + 2
    assert [[(leg.payee, leg.amount) for leg in r.legs] for r in s.recorded[2:]] == [
        [("bob", 500), ("amy", 400)], [("bob", 500), ("amy", 400)], [("bob", 200), ("amy", 400)]]
    assert [[(leg.payee, leg.amount) for leg in r.capped] for r in s.recorded[2:]] == [
        [("bob", 300)], [("bob", 300)], [("bob", 600)]]
    assert s.capped == {"CNY": 1200} and "payee caps withheld 12.00 CNY" in str(s)
    b = led.balance("bob", "CNY", as_of=day(9))
    assert (str(b.available), str(b.capped), b.as_json()["capped"]) == ("12.00 CNY", "12.00 CNY", "12.00")
    assert led.balance("amy", "CNY", as_of=day(9)).capped is None
    # the merchant keeps the excess: expense is the capped commission, and the postings balance
    expense = sum(e.amount for e in led.entries() if e.account == "expense")
    assert expense == -(1200 + 1200)
    assert led.statement("bob", day(0), day(9)).manifest["capped"] == {"CNY": "12.00"}
    # refunds reverse symmetrically: half of o1 -> bob's 4.00 fits the cap, the excess goes
    r = led.record(refund("r1", "o1", "40.00", at=4))
    assert [(leg.payee, leg.amount) for leg in r.legs] == [("bob", -100), ("amy", -200)]
    assert [(leg.payee, leg.amount) for leg in r.capped] == [("bob", -300)]
    led.record(refund("r3", "o3", None, at=5))  # all of o3
    assert positions(led)[("o3", "bob")] == [0, 0] and positions(led)[("o1", "bob")] == [400, 0]
    assert positions(led)[("o2", "bob")] == [500, 300]
    # a refund frees room for later orders of the period (never for earlier ones)
    led.record(order("o4", "s2", "80.00", at=6))
    assert positions(led)[("o4", "bob")] == [300, 500]  # 12.00 - 4.00 - 5.00 = 3.00 left
    led.record(order("o5", "s2", "80.00", at=31))  # the next 30-day period
    assert positions(led)[("o5", "bob")] == [500, 300]
    v = led.verify()
    assert v.ok, v.problems
    assert led.entries(event=("order", "o1")) and all(e.account != CAPPED for e in led.entries())


def test_caps_are_typed_and_name_the_field(tmp_path: Any) -> None:
    bad: list[tuple[Any, str]] = [
        ({"per_order": 50.0}, "payee_caps.per_order"),
        ({"per_order": "-1.00 CNY"}, "payee_caps.per_order"),
        ({"per_order": "5 CNY", "per_oder": "5 CNY"}, "payee_caps.per_oder"),
        ({"per_order": ["5 CNY", "6 CNY"]}, "payee_caps.per_order"),
        ({"per_order": "5"}, "payee_caps.per_order"),
        ({"per_order": 5}, "payee_caps.per_order"),
        ({"per_period": {"days": 30.0, "max": "5 CNY"}}, "payee_caps.per_period.days"),
        ({"per_period": {"days": 0, "max": "5 CNY"}}, "payee_caps.per_period.days"),
        ({"per_period": {"days": 30}}, "payee_caps.per_period.max"),
        ({"per_period": {"days": 30, "max": 5.5}}, "payee_caps.per_period.max"),
        ({"per_period": {"days": 30, "max": "5 CNY", "anchor": 1}}, "payee_caps.per_period.anchor"),
        ({"per_period": "500 CNY"}, "payee_caps.per_period"),
        ("50 CNY", "payee_caps"),
    ]
    for value, field in bad:
        with pytest.raises(InvalidPolicyConfig) as exc:
            Ledger.open(tmp_path / "c.db", POLICY, payee_caps=value)
        assert exc.value.field == field, (value, exc.value)
    assert not (tmp_path / "c.db").exists() or Ledger.open(tmp_path / "c.db", POLICY).terms[0].rules.caps is None
    assert PayeeCaps.of({"per_order": ["5 CNY", "1 USD"]}).order_cap("USD") == 100


def test_caps_are_terms_versions(tmp_path: Any) -> None:
    path = tmp_path / "v.db"
    Ledger.open(path, POLICY, hold_days=1).record_many([*SHARES[:2], order("o1", "s2", "80.00", at=1)])
    led = Ledger.open(path, payee_caps={"per_order": "5.00 CNY"})  # a new terms version, after o1
    assert led.new_terms is not None and led.terms[-1].rules.caps == PayeeCaps.of({"per_order": "5.00 CNY"})
    assert led.terms[0].rules.to_json() == '{"hold_days":1,"min_payout":[],"payout_fee":[]}'  # unchanged text
    led.record(order("o2", "s2", "80.00", at=2))
    assert positions(led)[("o1", "bob")] == [800, 0] and positions(led)[("o2", "bob")] == [500, 300]
    same = Ledger.open(path)  # reopening keeps the caps
    assert same.new_terms is None and same.terms[-1].rules.caps is not None
    off = Ledger.open(path, payee_caps={})  # removed from a later version
    assert off.terms[-1].rules.caps is None
    off.record(order("o3", "s2", "80.00", at=3))
    assert positions(off)[("o3", "bob")] == [800, 0]
    assert off.verify().ok


def test_a_late_bind_restates_a_capped_order(make_ledger: MakeLedger) -> None:
    led = make_ledger(POLICY, hold_days=1, payee_caps=CAPS)
    led.record_many([*SHARES, BindEvent(id="b0", user="cid", upline="bob", at=day(0.4)),
                     order("o1", None, "200.00", at=1, buyer="zed"), refund("r1", "o1", "20.00", at=2)])
    assert positions(led) == {}
    led.record(BindEvent(id="b1", user="zed", upline="cid", at=day(0.5)))  # cid 10%, bob 5% of 180.00
    pos = positions(led)
    assert pos[("o1", "cid")] == [500, 1300] and pos[("o1", "bob")] == [500, 400]
    assert led.verify().ok


# ---------------------------------------------------------------------- the property
ORDER = st.tuples(st.sampled_from(["s1", "s2", "s3", None]), st.integers(1, 50_000), st.floats(0.5, 75),
                  st.sampled_from([None, "part", "full"]))


def history(orders: list[tuple[str | None, int, float, str | None]]) -> list[Event]:
    events: list[Event] = [*SHARES, BindEvent(id="b1", user="zed", upline="bob", at=day(0.3))]
    for i, (sh, minor, at, ref) in enumerate(orders):
        events.append(order(f"o{i}", sh, str(Decimal(minor).scaleb(-2)), at=at, buyer="zed"))
        if ref == "part":
            events.append(refund(f"r{i}", f"o{i}", str(Decimal(max(1, minor // 3)).scaleb(-2)), at=at + 1))
        elif ref == "full":
            events.append(refund(f"r{i}", f"o{i}", None, at=at + 2))
    return events


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(orders=st.lists(ORDER, min_size=1, max_size=12), seed=st.integers(0, 10**6),
       per_order=st.integers(0, 3000), per_period=st.integers(0, 9000), days=st.sampled_from([7, 30]))
def test_recorded_plus_excess_is_the_engine_and_caps_hold(orders: list[Any], seed: int, per_order: int,
                                                          per_period: int, days: int) -> None:
    events = history(orders)
    caps = {"per_order": f"{Decimal(per_order).scaleb(-2)} CNY",
            "per_period": {"days": days, "max": f"{Decimal(per_period).scaleb(-2)} CNY"}}
    engine: dict[tuple[str, str], int] = defaultdict(int)
    for s in compute_events(events, POLICY):
        for line in s.lines:
            engine[(s.order, line.payee)] += line.amount.minor
    arrival = events[:]
    random.Random(seed).shuffle(arrival)  # parked orders, late binds (restatements), late refunds
    led = Ledger.open(":memory:", POLICY, hold_days=1, payee_caps=caps)
    led.record_many(arrival, batch_size=4)
    pos = positions(led)
    for key in set(pos) | {k for k, v in engine.items() if v}:
        got, excess = pos.get(key, [0, 0])
        assert got + excess == engine.get(key, 0), key
        assert 0 <= got <= per_order and excess >= 0, key
    at = {e.id: to_micros(e.at) for e in events if e.type == "order"}
    size = days * DAY_US
    period: dict[tuple[str, int], int] = defaultdict(int)
    for (oid, payee), (got, _) in pos.items():
        period[(payee, at[oid] // size)] += got
    assert all(v <= per_period for v in period.values()), period
    v = led.verify()
    assert v.ok, v.problems
    head = led.chain_head()
    again = led.record_many(arrival)
    assert again.counts[Outcome.DUPLICATE] == len(arrival) and led.chain_head() == head


def test_cli_caps(tmp_path: Any) -> None:
    import typer
    from typer.testing import CliRunner

    from cps_engine.cli_hold import register_hold_commands

    app = typer.Typer(add_completion=False)
    register_hold_commands(app)
    runner = CliRunner()
    db = str(tmp_path / "c.db")
    with Ledger.open(db, POLICY, hold_days=1) as led:
        led.record_many([*SHARES[:2], order("o1", "s2", "80.00", at=1)])
    r = runner.invoke(app, ["caps", "--db", db])
    assert r.exit_code == 0 and r.stdout == "terms 1 from the start: payee caps none\n"
    r = runner.invoke(app, ["caps", "--db", db, "--per-order", "5.00 CNY", "--period-days", "30",
                            "--period-max", "12.00 CNY"])
    assert r.exit_code == 0, r.output
    assert "new terms version 2" in r.stderr
    assert r.stdout.splitlines()[1].endswith(
        'payee caps {"per_order": ["5.00 CNY"], "per_period": {"days": 30, "max": ["12.00 CNY"]}}')
    r = runner.invoke(app, ["caps", "--db", db, "--per-order", "5.00 CNY", "--period-days", "30",
                            "--period-max", "12.00 CNY"])
    assert r.exit_code == 0 and "nothing changed" in r.stderr
    for bad, says in ((["--per-order", "5.0"], "payee_caps.per_order"), (["--period-days", "30"], "go together"),
                      (["--per-order", "-1 CNY"], "negative"), (["--off", "--per-order", "1 CNY"], "--off")):
        r = runner.invoke(app, ["caps", "--db", db, *bad])
        assert r.exit_code == 2 and says in r.stderr, (bad, r.output)
    with Ledger.open(db) as led:
        led.record(order("o2", "s2", "80.00", at=2))
        assert positions(led)[("o2", "bob")] == [400, 400]  # 12.00 in the period, o1 took 8.00
    r = runner.invoke(app, ["caps", "--db", db, "--off"])
    assert r.exit_code == 0 and r.stdout.splitlines()[-1].endswith("payee caps none")


def test_a_payee_with_two_lines_in_one_order_shares_one_room() -> None:
    """Policies give a payee one line per order today; the caps do not rely on it."""
    from fractions import Fraction

    from cps_engine.ledger.planner import Planner
    from cps_engine.ledger.postings import LedgerRules
    from cps_engine.policies.base import Award

    class Store:
        def period_commission(self, payee: str, currency: str, start: int, end: int, order_id: str) -> int:
            return 100

    awards = [Award("bob", 1, Fraction(1, 10), "r"), Award("amy", 2, Fraction(1, 10), "r"),
              Award("bob", 3, Fraction(1, 10), "r")]
    planner = Planner(lambda: None, lambda _: None, lambda _: None)  # type: ignore[arg-type, return-value]
    rules = LedgerRules.of(payee_caps={"per_order": "6.00 CNY", "per_period": {"days": 30, "max": "9.00 CNY"}})
    caps = planner._caps_for(Store(), "o1", "CNY", 0, awards, [400, 400, 400], rules)  # type: ignore[arg-type]
    assert caps == [400, 400, 200]  # bob: 6.00 per order, 4.00 + 2.00; amy: her own room
    rules = LedgerRules.of(payee_caps={"per_period": {"days": 30, "max": "6.00 CNY"}})
    assert planner._caps_for(Store(), "o1", "CNY", 0, awards, [400, 400, 400], rules) == [  # type: ignore[arg-type]
        400, 400, 100]  # bob: 5.00 of room left in the period after 1.00 elsewhere
    assert planner._caps_for(Store(), "o1", "USD", 0, awards, [400, 400, 400], rules) == []  # type: ignore[arg-type]


def test_a_restated_order_keeps_its_own_room(make_ledger: MakeLedger) -> None:
    """A late bind adds bob to an order already capped for cid: the order is restated, and cid's room
    in the period is what in-order delivery gives (the order's own old commission is not counted)."""
    caps = {"per_period": {"days": 30, "max": "12.00 CNY"}}
    bind_zed = BindEvent(id="b1", user="zed", upline="cid", at=day(0.3))
    bind_cid = BindEvent(id="b0", user="cid", upline="bob", at=day(0.2))
    events: list[Any] = [*SHARES, bind_zed, order("o1", None, "200.00", at=1, buyer="zed")]
    late = make_ledger(POLICY, hold_days=1, payee_caps=caps)
    late.record_many(events)
    assert positions(late)[("o1", "cid")] == [1200, 800]
    late.record(bind_cid)  # restates o1: cid 10%, bob 5%
    in_order = make_ledger(POLICY, hold_days=1, payee_caps=caps)
    in_order.record_many([*SHARES, bind_cid, *events[3:]])
    assert positions(late) == positions(in_order) == {("o1", "cid"): [1200, 800], ("o1", "bob"): [1000, 0]}
    assert late.verify().ok
