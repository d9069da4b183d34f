"""Tamper evidence that covers everything (issue 11): each edit an insider with write access to the
database could make is caught by ``verify`` and named (event, entry, field), on every backend.

Before issue 11 ``verify`` only recomputed the sha256 chain: every case marked ``# passed before``
verified as ok.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cps_engine.errors import InvalidPolicyConfig
from cps_engine.ledger import Ledger
from cps_engine.ledger.hashing import GENESIS, chain_hash
from tests.ledger.conftest import MakeLedger
from tests.ledger.helpers import POLICY, order, payout, refund, share

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

HISTORY = [share("s1", "amy"), share("s2", "bob", "s1", at=0.01), order("o1", "s2", "100.00", at=1),
           refund("r1", "o1", "50.00", at=2), order("o2", "s2", "10.00", at=3), payout("p1", "bob", "1.00", at=9),
           refund("r9", "o2", "99.00", at=4)]  # r9 is rejected (more than paid)
KEY = b"k" * 32


def tamper(led: Ledger, statements: Sequence[str]) -> None:
    """Run raw SQL as an insider would: with the append-only triggers out of the way."""
    engine = led._engine
    assert engine is not None
    t = led.tables
    names = [tb.name for tb in (t.terms, t.events, t.orders, t.refunds, t.entries)]
    with engine.begin() as conn:
        if led.dialect == "sqlite":
            for name in names:
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}_no_update")
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}_no_delete")
        elif led.dialect == "postgresql":
            for name in names:
                conn.exec_driver_sql(f"ALTER TABLE {name} DISABLE TRIGGER USER")
        else:
            for name in names:
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}_no_update")
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}_no_delete")
        for stmt in statements:
            conn.exec_driver_sql(stmt.replace("{p}", t.prefix))


def rehash(led: Ledger, key: bytes | None = None) -> None:
    """Recompute every entry hash from the stored content (what an insider does after an edit)."""
    prev = GENESIS
    stmts = []
    for e in led.entries():
        prev = chain_hash(prev, e.encodable(), key)
        stmts.append(f"UPDATE {{p}}entries SET hash = '{prev}' WHERE seq = {e.seq}")
    tamper(led, stmts)


def recorded(make_ledger: MakeLedger, **kw: object) -> Ledger:
    led = make_ledger(POLICY, hold_days=7, **kw)
    led.record_many(HISTORY)
    assert led.verify().ok
    return led


def problems(led: Ledger, **kw: object) -> str:
    v = led.verify(**kw)  # type: ignore[arg-type]
    assert not v.ok
    return "\n".join(v.problems + v.unchecked)


def payload_of(led: Ledger, kind: str, event_id: str) -> tuple[int, dict[str, object]]:
    t = led.tables.events
    with led._read() as conn:
        seq, payload = conn.execute(sa.select(t.c.seq, t.c.payload).where(t.c.kind == kind,
                                                                           t.c.event_id == event_id)).one()
    return int(seq), json.loads(payload)


def test_deleting_every_leg_of_the_last_event_is_caught(make_ledger: MakeLedger) -> None:  # passed before
    led = recorded(make_ledger)
    last = led.entries()[-1]
    tamper(led, ["DELETE FROM {p}entries WHERE event_seq = (SELECT MAX(event_seq) FROM "
                 "(SELECT event_seq FROM {p}entries) AS x)"])
    assert led.verify(replay=False).ok  # the chain alone is a valid shorter chain
    text = problems(led)
    assert "are missing: the events post them (from event payout:p1)" in text
    assert f"#{last.seq}" in text


def test_an_edited_order_payload_is_caught(make_ledger: MakeLedger) -> None:  # passed before
    led = recorded(make_ledger)
    seq, payload = payload_of(led, "order", "o1")
    edited = json.dumps({**payload, "amount": "500.00"})
    tamper(led, [f"UPDATE {{p}}events SET payload = '{edited}' WHERE seq = {seq}"])
    text = problems(led)
    assert f"event #{seq} (order:o1): the stored payload does not match its payload hash (edited)" in text
    assert "order snapshot o1/0: amount_minor is '10000', the events give '50000'" in text


def test_an_edited_payload_with_its_hash_recomputed_is_caught_by_replay(make_ledger: MakeLedger) -> None:
    from cps_engine.ledger.hashing import payload_hash
    from cps_engine.models import parse_event

    led = recorded(make_ledger)
    seq, payload = payload_of(led, "order", "o1")
    edited = {**payload, "amount": "500.00"}
    h = payload_hash(parse_event(edited))
    tamper(led, [f"UPDATE {{p}}events SET payload = '{json.dumps(edited)}', payload_hash = '{h}' WHERE seq = {seq}"])
    text = problems(led)
    assert "payload hash" not in text
    assert "amount is 1000, the events give 5000" in text  # bob's accrual, 10% of 500.00
    assert "(event order:o1)" in text


def test_an_edited_rate_snapshot_is_caught(make_ledger: MakeLedger) -> None:  # passed before
    led = recorded(make_ledger)
    t = led.tables.orders
    with led._read() as conn:
        awards = conn.execute(sa.select(t.c.awards).where(t.c.order_id == "o1")).scalar_one()
    edited = awards.replace('"1/10"', '"1/2"')
    assert edited != awards
    tamper(led, [f"UPDATE {{p}}orders SET awards = '{edited}' WHERE order_id = 'o1'"])
    assert "order snapshot o1/0: awards is" in problems(led)


def test_a_redirected_leg_with_the_chain_rehashed_is_caught(make_ledger: MakeLedger) -> None:  # passed before
    led = recorded(make_ledger)
    first = next(e for e in led.entries() if e.payee == "bob")
    tamper(led, [f"UPDATE {{p}}entries SET payee = 'mallory' WHERE seq = {first.seq}"])
    rehash(led)
    assert led.verify(replay=False).ok  # sha256 without a key: the rewrite is a valid chain
    assert f"entry #{first.seq} (event order:o1): payee is 'mallory', the events give 'bob'" in problems(led)


def test_an_edited_refund_and_a_deleted_rejection_are_caught(make_ledger: MakeLedger) -> None:
    led = recorded(make_ledger)
    tamper(led, ["UPDATE {p}refunds SET amount_minor = 1 WHERE refund_id = 'r1'"])
    tamper(led, ["DELETE FROM {p}parked"])
    text = problems(led)
    assert "refund" in text and "amount_minor is '1', the events give '5000'" in text
    assert "parked event" in text and "is missing: the events give it" in text


def test_edited_terms_are_caught(make_ledger: MakeLedger) -> None:
    led = recorded(make_ledger)
    tamper(led, ["""UPDATE {p}terms SET policy = REPLACE(policy, '"0.1"', '"0.5"')"""])
    assert "terms version 1: the stored policy does not match its config hash" in problems(led)


def test_a_pinned_head_catches_a_whole_rewrite(make_ledger: MakeLedger) -> None:
    led = recorded(make_ledger)
    head = led.chain_head()
    # an insider rewrites an entry and re-hashes: every check inside the database can be made to pass
    # except a head published before
    first = next(e for e in led.entries() if e.payee == "bob")
    tamper(led, [f"UPDATE {{p}}entries SET rate = '1/10 ' WHERE seq = {first.seq}"])
    rehash(led)
    text = problems(led, expect_head=head, replay=False)
    assert f"entry #{head.seq} no longer has the pinned hash" in text
    assert led.verify(expect_head=(head.seq, head.hash), replay=False).ok is False
    tamper(led, [f"DELETE FROM {{p}}entries WHERE seq = {head.seq}"])
    assert "beyond the last entry" in problems(led, expect_head=head, replay=False)


def test_a_keyed_chain_cannot_be_rehashed_without_the_key(make_ledger: MakeLedger) -> None:
    led = recorded(make_ledger, chain_key=KEY)
    assert led.verify().ok
    first = next(e for e in led.entries() if e.payee == "bob")
    tamper(led, [f"UPDATE {{p}}entries SET payee = 'mallory' WHERE seq = {first.seq}"])
    rehash(led)  # with sha256 (the insider has no key)
    text = problems(led, replay=False)
    assert f"entry {first.seq}: hash does not match" in text


def test_a_keyed_chain_says_when_it_cannot_check_or_the_key_is_wrong(make_ledger: MakeLedger) -> None:
    keyed = recorded(make_ledger, chain_key=KEY)
    prefix = keyed.tables.prefix
    engine = keyed._engine
    assert engine is not None
    no_key = Ledger(engine, prefix=prefix)
    v = no_key.verify()
    assert not v.ok and v.problems == ()
    assert v.unchecked[0].startswith("the chain is keyed (HMAC-SHA256): without the key its hashes cannot be checked")
    with pytest.raises(InvalidPolicyConfig, match="recording needs its key"):
        no_key.record(share("s7", "eve", at=10))
    wrong = Ledger(engine, prefix=prefix, chain_key=b"w" * 32)
    assert "the chain key given is wrong" in problems(wrong)
    with pytest.raises(InvalidPolicyConfig, match="not the key this ledger was created with"):
        wrong.record(share("s7", "eve", at=10))
    right = Ledger(engine, prefix=prefix, chain_key=KEY)
    right.record(share("s7", "eve", at=10))
    assert right.verify().ok
    plain = make_ledger(POLICY)
    with pytest.raises(InvalidPolicyConfig, match="not keyed"):
        Ledger(plain._engine, prefix=plain.tables.prefix, chain_key=KEY)  # type: ignore[arg-type]


def test_keyed_chain_golden_vector() -> None:
    e = {"seq": 1, "event": "order:o1", "kind": "accrual", "account": "commission", "payee": "bob",
         "currency": "CNY", "amount": 1899, "effective_us": 0}
    assert chain_hash(GENESIS, e, b"k" * 32) == "3424e5800ac071d66e05873ab82e3937d5c0f5aca929a433d2014e607f6a9c75"


def test_cli_verify_key_file_and_expect_head(tmp_path: object) -> None:
    from pathlib import Path

    from cps_engine.cli_ledger import ledger_app
    from cps_engine.models import dump_events

    root = Path(str(tmp_path))
    events, pol, db, key = root / "ev.jsonl", root / "p.toml", root / "l.db", root / "key"
    dump_events(HISTORY, events)
    pol.write_text('kind = "capped_multilevel"\nrates = ["10%", "5%"]\n')
    key.write_bytes(KEY)
    runner = CliRunner()
    r = runner.invoke(ledger_app, ["record", str(events), "--db", str(db), "--policy", str(pol),
                                   "--key-file", str(key)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(ledger_app, ["verify", "--db", str(db)])
    assert r.exit_code == 2 and "without the key" in r.output
    r = runner.invoke(ledger_app, ["verify", "--db", str(db), "--key-file", str(key)])
    assert r.exit_code == 0 and "ok:" in r.output, r.output
    head = r.output.split("head ")[1].split()[0]
    r = runner.invoke(ledger_app, ["verify", "--db", str(db), "--key-file", str(key), "--expect-head", head])
    assert r.exit_code == 0, r.output
    seq = head.split(":")[0]
    r = runner.invoke(ledger_app, ["verify", "--db", str(db), "--key-file", str(key), "--expect-head",
                                   f"{seq}:{'0' * 64}"])
    assert r.exit_code == 1 and "pinned hash" in r.output
    r = runner.invoke(ledger_app, ["verify", "--db", str(db), "--expect-head", "nonsense"])
    assert r.exit_code == 2 and "SEQ:HASH" in r.output


def test_statements_from_an_edited_ledger_are_refused_and_issued_ones_not_overwritten(tmp_path: object) -> None:
    from pathlib import Path

    from cps_engine.cli import app
    from cps_engine.models import dump_events

    root = Path(str(tmp_path))
    events, pol, db, out = root / "ev.jsonl", root / "p.toml", root / "l.db", root / "out"
    dump_events(HISTORY, events)
    pol.write_text('kind = "capped_multilevel"\nrates = ["10%", "5%"]\n')
    runner = CliRunner()
    assert runner.invoke(app, ["ledger", "record", str(events), "--db", str(db), "--policy", str(pol)]).exit_code == 0
    args = ["statement", "--db", str(db), "--period", "2026-03", "-o", str(out)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    first = json.loads((out / "statement-2026-03.manifest.json").read_text())["manifest"]
    r = runner.invoke(app, args)  # before issue 11: silently replaced
    assert r.exit_code == 2 and "already issued" in r.output and "--replace" in r.output
    r = runner.invoke(app, [*args, "--replace"])
    assert r.exit_code == 0, r.output
    second = json.loads((out / "statement-2026-03.manifest.json").read_text())["manifest"]
    assert second["replaces"] == first["chain_root"] and "replaces" not in first
    from cps_engine.audit.statement import read_statement

    assert read_statement(out / "statement-2026-03.json").manifest.computed_chain_root() == second["chain_root"]
    # an edited order payload: the statement would state 50.00/100.00 instead of what was posted
    led = Ledger.open(db)
    seq, payload = payload_of(led, "order", "o1")
    tamper(led, [f"""UPDATE {{p}}events SET payload = '{json.dumps({**payload, "amount": "1000.00"})}' """
                 f"WHERE seq = {seq}"])
    led.close()
    r = runner.invoke(app, ["statement", "--db", str(db), "--period", "2026-03"])
    assert r.exit_code == 1 and "does not verify" in r.output
    r = runner.invoke(app, ["ledger", "statement", "--db", str(db), "--payee", "bob", "--from", "2026-03-01",
                            "--to", "2026-03-31"])
    assert r.exit_code == 1 and "does not verify" in r.output
