"""Statements from a ledger database: the same statement as from the events the ledger applied."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cps_engine import Ledger, load_policy, statement_from_ledger
from cps_engine.audit.statement import InvalidStatement, build_statement
from cps_engine.cli import app
from tests.strategies import Programme, programmes

POLICY = load_policy({"kind": "capped_multilevel", "rates": ["10%", "5%"], "cap": "12%"})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programmes(), st.integers(0, 10))
def test_a_ledger_statement_equals_the_statement_of_its_events(prog: Programme, hold: int) -> None:
    with Ledger.open(":memory:", POLICY, hold_days=hold) as led:
        led.record_many(prog.events)
        # what the ledger could not apply (e.g. a refund beyond what was paid) is not in its statement
        applied = led.applied_events()
        assert len(applied) + len(led.parked()) == led.event_count()
        from_db = statement_from_ledger(led, "2026-03", tz="+08:00")
        net = {(b.payee, b.currency): b.earned.minor - b.reversed.minor for b in led.balances()}
    from_events = build_statement(applied, POLICY, "2026-03", tz="+08:00", hold_days=hold)
    assert from_db.lines == from_events.lines
    assert from_db.manifest is not None and from_events.manifest is not None
    assert from_db.manifest.merkle_root == from_events.manifest.merkle_root
    # and the statement's money is the ledger's: per payee, lines == earned - reversed
    if all(ev.at.strftime("%Y-%m") == "2026-03" for ev in applied):
        stated: dict[tuple[str, str], int] = {}
        for ln in from_db.lines:
            key = (ln.payee, ln.amount.currency)
            stated[key] = stated.get(key, 0) + ln.amount.minor
        assert {k: v for k, v in stated.items() if v} == {k: v for k, v in net.items() if v}


def test_a_ledger_whose_policy_changed_needs_the_policy(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    share = {"type": "share", "id": "s1", "sharer": "amy", "at": "2026-03-01T10:00:00+08:00"}
    with Ledger.open(db, POLICY) as led:
        led.record(share)
    with Ledger.open(db, load_policy({"kind": "first_sharer", "rate": "5%"})) as led:
        assert len(led.terms) == 2
        with pytest.raises(InvalidStatement) as info:
            statement_from_ledger(led, "2026-03")
        assert info.value.field == "policy"
        assert statement_from_ledger(led, "2026-03", policy=POLICY).lines == ()


def test_cli_statement_from_db_matches_statement_from_events(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(e) for e in [
        {"type": "share", "id": "s1", "sharer": "amy", "at": "2026-03-01T10:00:00+08:00"},
        {"type": "share", "id": "s2", "sharer": "bob", "parent": "s1", "at": "2026-03-01T11:00:00+08:00"},
        {"type": "order", "id": "o1", "buyer": "cat", "share": "s2", "amount": "100.00", "currency": "CNY",
         "at": "2026-03-02T12:00:00+08:00"},
        {"type": "refund", "id": "r1", "order": "o1", "amount": "40.00", "at": "2026-03-03T12:00:00+08:00"},
    ]) + "\n")
    policy = tmp_path / "p.json"
    policy.write_text(json.dumps({"kind": "capped_multilevel", "rates": ["10%", "5%"], "cap": "12%"}))
    db = tmp_path / "l.db"
    runner = CliRunner()
    rec = runner.invoke(app, ["ledger", "record", "--db", str(db), "--policy", str(policy), "--hold-days", "3",
                              str(events)])
    assert rec.exit_code == 0, rec.output
    a = runner.invoke(app, ["statement", "--db", str(db), "--period", "2026-03"])
    b = runner.invoke(app, ["statement", "--events", str(events), "--policy", str(policy), "--hold-days", "3",
                            "--period", "2026-03"])
    assert a.exit_code == b.exit_code == 0, a.output + b.output
    assert json.loads(a.stdout) == json.loads(b.stdout)
    assert [(ln["payee"], ln["amount"]) for ln in json.loads(a.stdout)["lines"]] == [("amy", "2.40"), ("bob", "4.80")]
    both = runner.invoke(app, ["statement", "--db", str(db), "--events", str(events), "--period", "2026-03"])
    assert both.exit_code == 2 and "either --events" in both.output
