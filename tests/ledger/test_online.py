"""The online path: refused graph records are rejected with their reason, re-shares wait for their
parent, one share graph per database is caught up by sequence number, and ``record`` returns the
lines and legs it posted.  Every test runs on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from cps_engine.errors import GraphError, SelfReferralError
from cps_engine.ledger import Ledger, Outcome
from cps_engine.models import BindEvent, RoleEvent
from tests.ledger.conftest import MakeLedger
from tests.ledger.helpers import POLICY, bal, day, order, share


def bind(bid: str, user: str, upline: str, at: float) -> BindEvent:
    return BindEvent(id=bid, user=user, upline=upline, at=day(at))


def outcomes(led: Ledger, events: list[Any]) -> list[tuple[str, str | None]]:
    out = []
    for e in events:
        r = led.record(e)
        out.append((r.outcome.value, r.reason))
    return out


def test_bind_cycle_under_overwrite_is_rejected_and_the_statement_still_builds(make_ledger: MakeLedger) -> None:
    led = make_ledger(POLICY, binding="overwrite", hold_days=0)
    res = outcomes(led, [bind("b1", "bob", "amy", 0), bind("b2", "amy", "bob", 1),
                         order("o1", None, "100.00", 2, buyer="bob")])
    assert res[0] == ("applied", None) and res[2] == ("applied", None)
    assert res[1][0] == "rejected" and "cycle" in (res[1][1] or "")
    assert [(p.id, p.status) for p in led.parked()] == [("b2", "rejected")]
    assert bal(led, "amy", 3) == ("0.00", "10.00", "0.00", "0.00")
    from cps_engine.audit import statement_from_ledger
    assert statement_from_ledger(led, "2026-03").totals  # replaying the applied events works


def test_refused_shares_are_rejected_and_so_are_their_re_shares(make_ledger: MakeLedger) -> None:
    led = make_ledger(POLICY, hold_days=0)
    res = outcomes(led, [
        share("s1", "amy", None, 1),
        share("s2", "bob", "s1", 0),       # dated before its parent
        share("s3", "cat", "s2", 2),       # child of a refused share
        share("s4", "dan", "s4", 2),       # its own parent
        order("o1", "s3", "100.00", 3),    # through a refused share
    ])
    assert [r[0] for r in res] == ["applied", "rejected", "rejected", "rejected", "rejected"]
    assert "before its parent" in (res[1][1] or "") and "s2" in (res[2][1] or "")
    with pytest.raises(SelfReferralError):
        led.record(share("s5", "eve", "s5", 2), strict=True)
    with pytest.raises(GraphError):
        led.record(order("o2", "s2", "1.00", 3), strict=True)


def test_a_re_share_waits_for_its_parent_and_is_rejected_when_the_parent_is(make_ledger: MakeLedger) -> None:
    led = make_ledger(POLICY, hold_days=0)
    assert outcomes(led, [share("s2", "bob", "s1", 2), order("o1", "s2", "100.00", 3)]) == [
        ("parked", "parent share 's1' is not a known share"),
        ("parked", "the order's share 's2' has not been recorded")]
    r = led.record(share("s1", "amy", None, 1))
    assert r.outcome is Outcome.APPLIED and set(r.released) == {("share", "s2"), ("order", "o1")}
    assert bal(led, "bob", 4)[1] == "10.00" and bal(led, "amy", 4)[1] == "5.00"
    led2 = make_ledger(POLICY, hold_days=0)
    outcomes(led2, [share("t2", "bob", "t1", 2)])
    r = led2.record(share("t1", "amy", "t1", 1))  # refused: its waiting re-share is refused with it
    assert r.outcome is Outcome.REJECTED and r.released == ()
    assert {(p.id, p.status) for p in led2.parked()} == {("t1", "rejected"), ("t2", "rejected")}


def test_record_returns_the_lines_and_legs_it_posted(make_ledger: MakeLedger) -> None:
    led = make_ledger(POLICY, hold_days=0)
    led.record(share("s1", "amy"))
    led.record(share("s2", "bob", "s1"))
    r = led.record(order("o1", "s2", "100.00", 1))
    assert [(ln.payee, ln.level, str(ln.amount), ln.provenance.path) for ln in r.lines] == [
        ("bob", 1, "10.00 CNY", ("s2",)), ("amy", 2, "5.00 CNY", ("s2", "s1"))]
    assert [(leg.payee, leg.amount, leg.kind) for leg in r.legs] == [("bob", 1000, "accrual"), ("amy", 500, "accrual")]
    assert led.record(RoleEvent(id="r1", person="bob", role="distributor", at=day(2))).outcome is Outcome.APPLIED


def test_ledgers_on_one_database_share_one_graph_caught_up_by_seq(make_ledger: MakeLedger) -> None:
    led = make_ledger(POLICY, hold_days=0)
    led.record(share("s1", "amy"))
    engine = led._engine
    assert engine is not None
    with engine.begin() as conn:  # a backend's own transaction, a new Ledger object each time
        inner = Ledger(conn, prefix=led.tables.prefix)
        assert inner.graph is led.graph
        assert inner.record(share("s2", "bob", "s1", 1)).outcome is Outcome.APPLIED
    g = led.graph
    assert g.graph.n_shares == 2 and g.token[0] == 2
    # another process's writer: the rows after our token are read, the graph is not rebuilt
    other = Ledger(sa.create_engine(engine.url), prefix=led.tables.prefix)
    try:
        assert other.graph is not g
        other.record(share("s3", "cat", "s2", 2))
    finally:
        other.close()
        other._engine.dispose()  # type: ignore[union-attr]
    r = led.record(order("o1", "s3", "100.00", 3, buyer="zed"))
    assert led.graph is g and g.graph.n_shares == 3
    assert [ln.payee for ln in r.lines] == ["cat", "bob"]


def test_a_rolled_back_outer_transaction_leaves_the_graph_consistent(make_ledger: MakeLedger) -> None:
    led = make_ledger(POLICY, hold_days=0)
    led.record(share("s1", "amy"))
    engine = led._engine
    assert engine is not None
    with engine.connect() as conn:
        tx = conn.begin()
        Ledger(conn, prefix=led.tables.prefix).record(share("s2", "bob", "s1", 1))
        tx.rollback()
    r = led.record(order("o1", "s2", "1.00", 2))  # s2 was rolled back: the order waits for it
    assert r.outcome is Outcome.PARKED
    assert led.record(share("s2", "bob", "s1", 1)).released == (("order", "o1"),)


def test_a_ledger_reopened_per_transaction_sees_new_terms_from_another_object(make_ledger: MakeLedger) -> None:
    led = make_ledger(POLICY, hold_days=0)
    led.record(share("s1", "amy"))
    engine = led._engine
    assert engine is not None
    with engine.begin() as conn:
        assert Ledger(conn, prefix=led.tables.prefix).policy.config_hash == led.policy.config_hash
    newer = Ledger(engine, {"kind": "first_sharer", "rate": "20%"}, prefix=led.tables.prefix)
    assert len(newer.terms) == 2
    with engine.begin() as conn:
        reopened = Ledger(conn, prefix=led.tables.prefix)
        assert [t.version for t in reopened.terms] == [1, 2]
        r = reopened.record(order("o1", "s1", "100.00", 30, buyer="zed"))
    assert [(ln.payee, str(ln.amount)) for ln in r.lines] == [("amy", "20.00 CNY")]


def test_record_many_can_return_every_recorded_in_input_order(make_ledger: MakeLedger) -> None:
    led = make_ledger(POLICY, hold_days=0)
    evs = [share("s1", "amy"), order("o1", "s1", "100.00", 1, buyer="zed"), share("s1", "amy"),
           order("o2", "s9", "1.00", 2)]
    summary = led.record_many(evs, batch_size=3, results=True)
    assert [(r.id, r.outcome.value) for r in summary.recorded] == [
        ("s1", "applied"), ("o1", "applied"), ("s1", "duplicate"), ("o2", "parked")]
    assert [(ln.payee, str(ln.amount)) for ln in summary.recorded[1].lines] == [("amy", "10.00 CNY")]
    assert led.record_many(evs[:1]).recorded == []  # off by default: nothing kept for a large file


def test_a_share_parked_here_and_released_by_another_writer_is_in_this_writers_graph(
        make_ledger: MakeLedger) -> None:
    """Two writers (two processes: two engines, two graphs) on one database.  Writer 1 parks re-share
    s2 (its parent s1 has not arrived); writer 2 records s1, which releases s2 there without writing a
    row for the release.  Writer 1's catch-up reads s1's row and must place s2 too, else an order
    through s2 recorded by writer 1 waits forever (found by the concurrent-writers test)."""
    led = make_ledger(POLICY, hold_days=0)
    engine = led._engine
    assert engine is not None
    led.record(share("s0", "zoe"))  # both writers have seen the start of the log
    other = Ledger(sa.create_engine(engine.url), prefix=led.tables.prefix)
    try:
        assert other.record(share("s0", "zoe")).outcome is Outcome.DUPLICATE
        assert led.record(share("s2", "bob", "s1", 2)).outcome is Outcome.PARKED
        assert other.record(share("s1", "amy", None, 1)).released == (("share", "s2"),)
    finally:
        other.close()
        other._engine.dispose()  # type: ignore[union-attr]
    r = led.record(order("o1", "s2", "100.00", 3, buyer="zed"))
    assert r.outcome is Outcome.APPLIED and [ln.payee for ln in r.lines] == ["bob", "amy"]
