"""Holds on flagged payees (issue 13): while held, a payee's commissions stay pending and payouts are
refused; hold and release are events on the hash chain, idempotent, replay-verified, on every backend."""

from __future__ import annotations

import json
import multiprocessing
import random
import traceback
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from cps_engine.audit.abuse import AbuseFinding, AbuseReport
from cps_engine.errors import IdempotencyConflict, InvalidEvent
from cps_engine.ledger import Ledger, Outcome
from cps_engine.ledger.errors import PayeeHeld, PayeeNotHeld, PayoutRefused
from cps_engine.ledger.holds import HOLD_ACCOUNT, parse_ledger_event
from cps_engine.models import event_to_json
from cps_engine.money import Money
from tests.ledger import workers
from tests.ledger.conftest import BACKENDS, MakeLedger, Server, new_prefix
from tests.ledger.helpers import bal, day, order, payout, refund, share

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

POLICY = {"kind": "first_sharer", "rate": "10%"}
BASE = [share("s1", "amy"), share("s2", "bob", at=0.1),
        order("o1", "s1", "100.00", at=1), order("o2", "s1", "50.00", at=4), order("o3", "s2", "30.00", at=4.5)]


def iso(n: float) -> str:
    return day(n).isoformat()


def hold_ev(hid: str, payee: str, at: float, reason: str = "ring") -> dict[str, Any]:
    return {"type": "hold", "id": hid, "payee": payee, "reason": reason, "at": iso(at)}


def release_ev(rid: str, payee: str, at: float) -> dict[str, Any]:
    return {"type": "release", "id": rid, "payee": payee, "at": iso(at)}


@pytest.fixture
def held(make_ledger: MakeLedger) -> Ledger:
    """amy earns 10.00 (o1, available at day 3) and 5.00 (o2, pending until day 6); held from day 3.5."""
    led = make_ledger(POLICY, hold_days=2)
    led.record_many(BASE)
    assert led.hold("amy", "ring finding", at=iso(3.5), id="h1").outcome is Outcome.APPLIED
    return led


def test_held_commission_stays_pending_and_payouts_are_refused(held: Ledger) -> None:
    # o1 was available before the hold: it stays available; o2's hold period ends at day 6, inside the hold
    assert bal(held, "amy", 5) == ("5.00", "10.00", "0.00", "0.00")
    assert bal(held, "amy", 30) == ("5.00", "10.00", "0.00", "0.00")  # never released: stays pending
    assert bal(held, "bob", 30) == ("0.00", "3.00", "0.00", "0.00")   # another payee is not affected
    b = held.balance("amy", "CNY", as_of=day(30))
    assert b.held_since_us is not None and b.as_json()["held_since"] == "2026-03-04T14:00:00.000000Z"
    assert "held_since" not in held.balance("bob", "CNY", as_of=day(30)).as_json()
    assert held.balance("amy", "CNY", as_of=day(3)).held_since_us is None  # before the hold
    with pytest.raises(PayeeHeld, match="payee 'amy' is held since") as exc:
        held.request_payout("amy", Money.parse("1.00 CNY"), at=day(7), id="p1")
    assert isinstance(exc.value, PayoutRefused) and exc.value.field == "payee"
    r = held.record(payout("p2", "amy", "1.00", at=8))  # not strict: kept, rejected with the reason
    assert r.outcome is Outcome.REJECTED and "held" in (r.reason or "")
    assert [p.id for p in held.parked() if p.status == "rejected"] == ["p2"]
    held.request_payout("bob", Money.parse("1.00 CNY"), at=day(7), id="p3")  # bob is paid
    held.request_payout("amy", Money.parse("2.00 CNY"), at=day(3.4), id="p0")  # dated before the hold: paid
    # the release makes what the hold kept available at the release's time
    assert held.release("amy", at=iso(9), id="r1").outcome is Outcome.APPLIED
    assert bal(held, "amy", 8.9) == ("5.00", "8.00", "2.00", "0.00")
    assert bal(held, "amy", 9) == ("0.00", "13.00", "2.00", "0.00")
    assert held.balance("amy", "CNY", as_of=day(9)).held_since_us is None
    held.request_payout("amy", Money.parse("13.00 CNY"), at=day(10), id="p4")
    assert bal(held, "amy", 10) == ("0.00", "0.00", "15.00", "0.00")
    assert held.verify().ok


def test_new_orders_and_refunds_during_a_hold(held: Ledger) -> None:
    held.record_many([order("o4", "s1", "20.00", at=5), refund("x1", "o2", "50.00", at=7)])
    # o4 (2.00) earned while held stays pending; the refund of o2 reverses what the hold kept
    assert bal(held, "amy", 8) == ("2.00", "10.00", "0.00", "0.00")
    held.release("amy", at=iso(9), id="r1")
    assert bal(held, "amy", 9) == ("0.00", "12.00", "0.00", "0.00")
    assert held.verify().ok


def test_hold_and_release_are_idempotent_events_on_the_chain(held: Ledger) -> None:
    head = held.chain_head()
    assert held.hold("amy", "ring finding", at=iso(3.5), id="h1").outcome is Outcome.DUPLICATE
    assert held.chain_head() == head
    with pytest.raises(IdempotencyConflict):
        held.hold("amy", "another reason", at=iso(3.5), id="h1")
    marker = held.entries(memo=True, event=("hold", "h1"))
    assert [(e.account, e.kind, e.payee, e.amount, e.currency) for e in marker] == [
        (HOLD_ACCOUNT, "hold", "amy", 0, "XXX")]
    assert marker[0].seq == head.seq  # the last entry of the chain
    assert held.entries(event=("hold", "h1")) == []  # money entries only by default
    held.release("amy", at=iso(9), id="r1")
    assert held.release("amy", at=iso(9), id="r1").outcome is Outcome.DUPLICATE
    with pytest.raises(PayeeNotHeld, match="'amy' is not held"):
        held.release("amy", at=iso(10), id="r2")  # already released
    with pytest.raises(PayeeNotHeld):
        held.release("cat", at=iso(10), id="r3")
    assert held.record(release_ev("r4", "amy", 11)).outcome is Outcome.REJECTED
    # a second hold of a held payee adds its reason; the hold began at the first
    held.hold("bob", "share burst", at=iso(5), id="h2")
    held.record(hold_ev("h3", "bob", 6, "self dealing"))
    [h] = held.holds("bob", as_of=day(7))
    assert (h.payee, h.reason, [i for i, _ in h.holds]) == ("bob", "share burst; self dealing", ["h2", "h3"])
    assert h.since_us == held.balance("bob", "CNY", as_of=day(7)).held_since_us
    assert held.holds(as_of=day(4)) == [h.__class__("amy", held.holds("amy", as_of=day(4))[0].since_us,
                                                     (("h1", "ring finding"),))]
    v = held.verify()
    assert v.ok, v.problems
    assert {e.type for e in held.applied_events()} <= {"share", "order", "refund", "payout"}  # no holds


def test_typed_errors_for_bad_holds(held: Ledger) -> None:
    with pytest.raises(InvalidEvent) as exc:
        held.hold("", "why", at=iso(5), id="h9")
    assert exc.value.field == "payee"
    with pytest.raises(InvalidEvent) as exc:
        held.hold("amy", "", at=iso(5), id="h9")
    assert exc.value.field == "reason"
    with pytest.raises(InvalidEvent):
        held.hold("amy", "why", at="2026-03-05T00:00:00", id="h9")  # no zone
    with pytest.raises(InvalidEvent):
        parse_ledger_event({"type": "hold", "id": "h", "payee": "a", "reason": "r", "at": iso(1), "x": 1})


def test_release_dated_before_the_hold_is_refused(held: Ledger) -> None:
    with pytest.raises(PayeeNotHeld):
        held.release("amy", at=iso(3), id="r0")
    assert bal(held, "amy", 30) == ("5.00", "10.00", "0.00", "0.00")


def test_verify_replays_holds_and_names_a_tampered_hold(held: Ledger) -> None:
    from tests.ledger.test_tamper import tamper

    held.release("amy", at=iso(9), id="r1")
    assert held.verify().ok
    # an insider moves the release earlier in the payload (hash recomputed): the replay disagrees
    t = held.tables
    with held._read() as conn:
        seq, payload = conn.execute(sa.select(t.events.c.seq, t.events.c.payload)
                                    .where(t.events.c.kind == "release")).one()
    data = json.loads(payload)
    data["at"] = iso(4)
    from cps_engine.ledger.hashing import payload_hash
    new = json.dumps(data, sort_keys=True)
    h = payload_hash(parse_ledger_event(data))  # type: ignore[arg-type]
    tamper(held, [f"UPDATE {{p}}events SET payload = '{new}', payload_hash = '{h}' WHERE seq = {seq}"])
    v = held.verify()
    assert not v.ok
    assert any("release:r1" in p for p in v.problems), v.problems


def test_a_removed_marker_breaks_the_chain(held: Ledger) -> None:
    from tests.ledger.test_tamper import tamper

    [m] = held.entries(memo=True, event=("hold", "h1"))
    tamper(held, [f"DELETE FROM {{p}}entries WHERE seq = {m.seq}"])
    v = held.verify()
    assert not v.ok and any("missing" in p for p in v.problems), v.problems


def test_hold_survives_reopening(backend: str, servers: dict[str, Server], tmp_path: Any) -> None:
    if backend == "sqlite":
        path = str(tmp_path / "h.db")
        led = Ledger.open(path, POLICY, hold_days=2)
    else:
        engine, prefix = servers[backend].get(), new_prefix()
        url = engine.url.render_as_string(hide_password=False)
        led = Ledger(url, POLICY, hold_days=2, prefix=prefix)
    led.record_many(BASE)
    led.hold("amy", "ring", at=iso(3.5), id="h1")
    led.close()
    # a new engine: nothing cached in this process about it
    again = Ledger.open(path) if backend == "sqlite" else Ledger(url, prefix=prefix)
    assert bal(again, "amy", 30) == ("5.00", "10.00", "0.00", "0.00")
    with pytest.raises(PayeeHeld):
        again.request_payout("amy", Money.parse("1.00 CNY"), at=day(31), id="p1")
    again.release("amy", at=iso(32), id="r1")
    assert bal(again, "amy", 32) == ("0.00", "15.00", "0.00", "0.00")
    assert again.verify().ok
    again.close()


def test_statement_shows_the_hold(held: Ledger) -> None:
    st = held.statement("amy", day(0), day(20))
    assert st.balanced()
    assert st.closing["CNY"]["pending"] == 500 and st.closing["CNY"]["available"] == 1000
    assert [m.kind for m in st.lines if m.order == "o2"] == ["accrual"]  # no release while held
    assert st.manifest["holds"] == [{"since": "2026-03-04T14:00:00.000000Z", "until": None,
                                     "reasons": ["ring finding"]}]
    held.release("amy", at=iso(9), id="r1")
    st = held.statement("amy", day(0), day(20))
    released = [m for m in st.lines if m.order == "o2" and m.kind == "release"]
    assert [(m.at_us, m.amount("available")) for m in released] == [(st.manifest["holds"][0]["until"] and
                                                                     released[0].at_us, 500)]
    assert st.manifest["holds"][0]["until"] == "2026-03-10T02:00:00.000000Z"
    assert st.closing["CNY"] == {"pending": 0, "available": 1500, "paid": 0, "fee": 0}
    assert "holds" not in held.statement("bob", day(0), day(20)).manifest


def test_a_parked_payout_is_refused_once_its_payee_is_held(make_ledger: MakeLedger) -> None:
    led = make_ledger(POLICY, hold_days=0)
    led.record_many([share("s1", "amy"), payout("p1", "amy", "5.00", at=3)])
    assert [p.status for p in led.parked()] == ["parked"]  # waiting for funds
    led.hold("amy", "ring", at=iso(2), id="h1")
    led.record(order("o1", "s1", "100.00", at=1))  # funds arrive: the payout is replanned, and refused
    assert [(p.id, p.status) for p in led.parked()] == [("p1", "rejected")]
    assert bal(led, "amy", 5) == ("0.00", "10.00", "0.00", "0.00")  # available before the hold, not paid
    assert led.verify().ok


def test_arrival_order_of_holds_does_not_change_balances(make_ledger: MakeLedger) -> None:
    events: list[Any] = [*BASE, hold_ev("h1", "amy", 3.5), order("o4", "s1", "20.00", at=5),
                         release_ev("r1", "amy", 9), hold_ev("h2", "amy", 12), refund("x1", "o1", "10.00", at=13)]
    ref = make_ledger(POLICY, hold_days=2)
    ref.record_many(events)
    rnd = random.Random(5)
    for _ in range(3):
        shuffled = events[:]
        rnd.shuffle(shuffled)
        # a release recorded before its hold is refused: deliver releases after holds (documented)
        shuffled.sort(key=lambda e: isinstance(e, dict) and e["type"] == "release")
        led = make_ledger(POLICY, hold_days=2)
        led.record_many(shuffled)
        assert led.state_digest() == ref.state_digest()
        for t in (3, 6, 10, 12.5, 20):
            assert led.balances(as_of=day(t)) == ref.balances(as_of=day(t))
        assert led.verify().ok


def test_hold_flagged_holds_the_people_of_each_finding(held: Ledger) -> None:
    f = AbuseFinding("ring", "ring:bob+cat", ("bob", "cat"), ("o3",), (), {"CNY": 300}, "2 people")
    g = AbuseFinding("share_burst", "share_burst:dan", ("dan",), (), (), {}, "9 shares")
    report = AbuseReport("p", "first_sharer", [f, g])
    summary = held.hold_flagged(report, at=iso(5), signals=["ring"])
    assert summary.counts[Outcome.APPLIED] == 2
    assert [h.payee for h in held.holds(as_of=day(6))] == ["amy", "bob", "cat"]
    assert held.holds("bob", as_of=day(6))[0].reason == "abuse report: ring ring:bob+cat"
    assert held.hold_flagged(report, at=iso(5), signals=["ring"]).counts[Outcome.DUPLICATE] == 2
    assert bal(held, "bob", 30) == ("3.00", "0.00", "0.00", "0.00")  # o3's hold period ended during the hold


def test_a_ledger_without_holds_keeps_its_digest_and_statement(make_ledger: MakeLedger) -> None:
    """Nothing changes for ledgers that never hold anyone (the digest and statement manifest keys)."""
    led = make_ledger(POLICY, hold_days=2)
    led.record_many(BASE)
    import hashlib

    from cps_engine.ledger.hashing import canonical_json
    t = led.tables.entries
    with led._read() as conn:
        q = (sa.select(t.c.order_id, t.c.payee, t.c.account, t.c.currency, t.c.effective_us, t.c.available_us,
                       sa.func.sum(t.c.amount))
             .group_by(t.c.order_id, t.c.payee, t.c.account, t.c.currency, t.c.effective_us, t.c.available_us))
        rows = sorted((tuple("" if v is None else v for v in r[:6]), int(r[6])) for r in conn.execute(q))
    positions = [[*k, total] for k, total in rows if total]
    old = hashlib.sha256(canonical_json({"positions": positions, "parked": []}).encode()).hexdigest()
    assert led.state_digest() == old
    assert "holds" not in led.statement("amy", day(0), day(9)).manifest


# ---------------------------------------------------------------------- concurrent writers
def _worker(target: str, prefix: str, payloads: list[str], seed: int, errors: Any) -> None:
    try:
        engine, kw = workers.open_store(target, prefix)
        led = Ledger(engine, POLICY, hold_days=2, **kw)
        rnd = random.Random(seed)
        events = [parse_ledger_event(json.loads(p)) for p in payloads]
        deliveries = [e for e in events for _ in range(rnd.randint(1, 2))]
        rnd.shuffle(deliveries)
        i = 0
        while i < len(deliveries):
            n = rnd.randint(1, 3)
            led.record_many(deliveries[i:i + n], batch_size=n)
            i += n
        engine.dispose()
    except BaseException:
        errors.put(traceback.format_exc())
        raise


@pytest.mark.parametrize("kind", BACKENDS)
def test_concurrent_writers_record_each_hold_once(kind: str, servers: dict[str, Server], tmp_path: Any,
                                                 engine_for: Callable[[str], sa.Engine]) -> None:
    people = ["amy", "bob", "cat", "dan"]
    events: list[Any] = [share(f"s{i}", p, at=0.01 * i) for i, p in enumerate(people)]
    events += [order(f"o{i}", f"s{i % 4}", f"{10 + i}.00", at=1 + 0.3 * i, buyer="zed") for i in range(20)]
    events += [parse_ledger_event(hold_ev(f"h{i}", people[i], 2 + i)) for i in range(3)]
    reference = Ledger.open(":memory:", POLICY, hold_days=2)
    reference.record_many(events)
    if kind == "sqlite":
        target, prefix = str(tmp_path) + "/shared.db", "cps_"
        shared = Ledger.open(target, POLICY, hold_days=2)
    else:
        engine = servers[kind].get()
        target, prefix = engine.url.render_as_string(hide_password=False), new_prefix()
        shared = Ledger(engine, POLICY, hold_days=2, prefix=prefix)
    payloads = [event_to_json(e) for e in events]  # type: ignore[arg-type]
    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(target, prefix, payloads, 7 + i, errors)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    problems = [errors.get() for _ in range(errors.qsize())] if not errors.empty() else []
    assert not problems, problems[0]
    assert shared.event_count() == len(events)
    markers = [e for e in shared.entries(memo=True) if e.account == HOLD_ACCOUNT]
    assert sorted(e.event for e in markers) == ["hold:h0", "hold:h1", "hold:h2"]
    assert shared.state_digest() == reference.state_digest()
    for t in (2.5, 4, 30):
        assert shared.balances(as_of=day(t)) == reference.balances(as_of=day(t))
    assert shared.verify().ok
    shared.close()


# ---------------------------------------------------------------------- the command line
def cli_app() -> Any:
    """The commands on a small app of the test's own, as the lead mounts them on ``ledger``."""
    import typer

    from cps_engine.cli_hold import register_hold_commands

    app = typer.Typer(add_completion=False)
    register_hold_commands(app)
    return app


def test_cli_hold_release_holds(tmp_path: Any) -> None:
    from typer.testing import CliRunner

    runner = CliRunner()
    db = str(tmp_path / "c.db")
    with Ledger.open(db, POLICY, hold_days=2) as led:
        led.record_many(BASE)
    app = cli_app()
    args = ["hold", "--db", db, "--payee", "amy", "--reason", "ring finding", "--at", iso(3.5), "--id", "h1"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "hold h1 recorded: amy is held since 2026-03-04T14:00:00.000000Z" in r.stderr
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and "already recorded" in r.stderr
    r = runner.invoke(app, ["hold", "--db", db, "--payee", "amy", "--reason", "other", "--at", iso(3.5), "--id", "h1"])
    assert r.exit_code == 2 and "different payload" in r.stderr
    r = runner.invoke(app, ["holds", "--db", db, "--as-of", iso(5), "--format", "json"])
    assert r.exit_code == 0
    assert [json.loads(line) for line in r.stdout.splitlines()] == [
        {"payee": "amy", "since": "2026-03-04T14:00:00.000000Z", "reason": "ring finding", "holds": ["h1"]}]
    r = runner.invoke(app, ["holds", "--db", db, "--as-of", iso(5)])
    assert r.exit_code == 0 and "ring finding" in r.stdout
    r = runner.invoke(app, ["release", "--db", db, "--payee", "bob", "--at", iso(9), "--id", "r0"])
    assert r.exit_code == 2 and "'bob' is not held" in r.stderr
    r = runner.invoke(app, ["release", "--db", db, "--payee", "amy", "--at", iso(9), "--id", "r1"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["hold", "--db", db, "--payee", "amy", "--reason", "x", "--at", "2026-03-05"])
    assert r.exit_code == 2 and "--at" in r.stderr  # a time needs its zone
    r = runner.invoke(app, ["holds", "--db", db, "--as-of", iso(10), "--format", "json"])
    assert r.exit_code == 0 and r.stdout == ""
    with Ledger.open(db) as led:
        assert bal(led, "amy", 9) == ("0.00", "15.00", "0.00", "0.00")
        assert led.verify().ok
