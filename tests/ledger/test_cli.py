"""``cps-engine ledger record | balance | statement | parked | verify`` on a SQLite file."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cps_engine.cli_ledger import ledger_app
from cps_engine.ledger.export import payee_accounts
from cps_engine.models import dump_events
from tests.ledger.helpers import order, payout, refund, share

runner = CliRunner()
EVENTS = [share("s1", "amy"), share("s2", "bob", "s1", at=0.01), order("o1", "s2", "100.00", at=1),
          refund("r1", "o1", "40.00", at=2), payout("p1", "bob", "5.00", at=10), order("o2", "s9", "1.00", at=3)]


def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    events, pol, db = tmp_path / "ev.jsonl", tmp_path / "p.toml", tmp_path / "l.db"
    dump_events(EVENTS, events)
    pol.write_text('kind = "capped_multilevel"\nrates = ["10%", "5%"]\n')
    return events, pol, db


def test_record_balance_statement_parked_verify(tmp_path: Path) -> None:
    events, pol, db = setup(tmp_path)
    r = runner.invoke(ledger_app, ["record", str(events), "--db", str(db), "--policy", str(pol), "--hold-days", "7",
                                   "--payout-fee", "0.50 CNY"])
    assert r.exit_code == 0, r.output
    assert "6 events: 5 applied, 1 parked" in r.output
    r = runner.invoke(ledger_app, ["record", str(events), "--db", str(db)])  # idempotent
    assert r.exit_code == 0 and "6 duplicate" in r.output
    r = runner.invoke(ledger_app, ["balance", "--db", str(db), "--as-of", "2026-03-20T00:00:00+08:00",
                                   "--format", "json"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert rows == [
        {"payee": "amy", "currency": "CNY", "pending": "0.00", "available": "3.00", "paid": "0.00", "fee": "0.00"},
        {"payee": "bob", "currency": "CNY", "pending": "0.00", "available": "1.00", "paid": "4.50", "fee": "0.50"}]
    r = runner.invoke(ledger_app, ["balance", "--db", str(db), "--payee", "bob", "--as-of", "2026-03-04"])
    assert r.exit_code == 0 and "6.00" in r.stdout and "amy" not in r.stdout
    r = runner.invoke(ledger_app, ["statement", "--db", str(db), "--payee", "bob", "--from", "2026-03-01",
                                   "--to", "2026-03-31", "--tz", "+08:00"])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [(x["kind"], x["pending"], x["available"], x["paid"], x["fee"]) for x in rows] == [
        ("opening", "0.00", "0.00", "0.00", "0.00"), ("accrual", "10.00", "0.00", "0.00", "0.00"),
        ("refund", "-4.00", "0.00", "0.00", "0.00"), ("release", "-6.00", "6.00", "0.00", "0.00"),
        ("payout", "0.00", "-5.00", "0.00", "0.00"), ("payout", "0.00", "0.00", "4.50", "0.00"),
        ("payout", "0.00", "0.00", "0.00", "0.50"), ("closing", "0.00", "1.00", "4.50", "0.50")]
    r = runner.invoke(ledger_app, ["statement", "--db", str(db), "--payee", "bob", "--from", "2026-03-01",
                                   "--to", "2026-03-05", "--format", "json"])
    doc = json.loads(r.stdout)
    assert doc["currencies"]["CNY"]["closing"] == {"pending": "6.00", "available": "0.00", "paid": "0.00",
                                                   "fee": "0.00"}
    assert len(doc["merkle_root"]) == 64 and doc["manifest"]["chain_head"]["seq"] > 0
    r = runner.invoke(ledger_app, ["parked", "--db", str(db)])
    assert json.loads(r.stdout)["waits_for"] == "share:s9"
    r = runner.invoke(ledger_app, ["verify", "--db", str(db)])
    assert r.exit_code == 0 and "ok:" in r.output


def test_bad_input_exits_2(tmp_path: Path) -> None:
    events, pol, db = setup(tmp_path)
    r = runner.invoke(ledger_app, ["balance", "--db", str(db)])
    assert r.exit_code == 2 and "no such ledger" in r.output
    pol.write_text('kind = "first_sharer"\nrate = 0.1\n')
    r = runner.invoke(ledger_app, ["record", str(events), "--db", str(db), "--policy", str(pol)])
    assert r.exit_code == 2 and "float" in r.output
    events.write_text('{"type": "order", "id": "o1"}\n')
    pol.write_text('kind = "first_sharer"\nrate = "10%"\n')
    r = runner.invoke(ledger_app, ["record", str(events), "--db", str(db), "--policy", str(pol)])
    assert r.exit_code == 2 and "line 1" in r.output
    r = runner.invoke(ledger_app, ["balance", "--db", str(db), "--format", "xml"])
    assert r.exit_code == 2


def test_demo_summary_renders_balances(tmp_path: Path) -> None:
    from rich.console import Console

    from cps_engine.ledger import demo_summary, run_demo
    from tests.ledger.helpers import POLICY, history, with_payouts

    events = with_payouts(history(4, n_orders=30, payouts=False))
    console = Console(record=True, width=140)
    console.print(demo_summary(events, POLICY, tmp_path / "demo.db"))
    text = console.export_text()
    assert "(verified)" in text and "Top" in text and "CNY" in text
    again = run_demo(events, POLICY, tmp_path / "demo.db")  # re-running is idempotent
    assert str(again.summary) == f"{len(events)} events: {len(events)} duplicate"
    assert again.verified and again.parked == 0


def recorded(tmp_path: Path) -> Path:
    events, pol, db = setup(tmp_path)
    r = runner.invoke(ledger_app, ["record", str(events), "--db", str(db), "--policy", str(pol), "--hold-days", "7",
                                   "--payout-fee", "0.50 CNY"])
    assert r.exit_code == 0, r.output
    return db


def test_statement_times_in_the_payees_zone(tmp_path: Path) -> None:
    db = recorded(tmp_path)  # the events were recorded at +08:00
    r = runner.invoke(ledger_app, ["statement", "--db", str(db), "--payee", "bob", "--from", "2026-03-01",
                                   "--to", "2026-03-31", "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["tz"] == "UTC+08:00" and doc["from"] == "2026-03-01T00:00:00+08:00"  # plain dates: days in the zone
    assert doc["lines"][0]["at"] == "2026-03-02T10:00:00+08:00"  # no .000000
    r = runner.invoke(ledger_app, ["statement", "--db", str(db), "--payee", "bob", "--from", "2026-03-01",
                                   "--to", "2026-03-31", "--tz", "America/New_York"])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert rows[0]["at"] == "2026-03-01T00:00:00-05:00" and rows[1]["at"] == "2026-03-01T21:00:00-05:00"
    assert {x["tz"] for x in rows} == {"America/New_York"}
    r = runner.invoke(ledger_app, ["statement", "--db", str(db), "--payee", "bob", "--from", "2026-03-01",
                                   "--to", "2026-03-31", "--tz", "Nowhere/Else"])
    assert r.exit_code == 2 and "IANA" in r.output


def test_export_beancount_passes_bean_check_and_matches_balance(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    loader = pytest.importorskip("beancount.loader")
    db = recorded(tmp_path)
    out = tmp_path / "ledger.beancount"
    r = runner.invoke(ledger_app, ["export", "--db", str(db), "--format", "beancount", "-o", str(out)])
    assert r.exit_code == 0, r.output
    bean_check = shutil.which("bean-check", path=str(Path(sys.executable).parent)) or shutil.which("bean-check")
    if bean_check is None:
        pytest.skip("bean-check is not installed (dev dependency group)")
    done = subprocess.run([bean_check, str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    entries, errors, _ = loader.load_file(str(out))
    assert errors == []
    totals: dict[str, Decimal] = {}
    for e in entries:
        for p in getattr(e, "postings", []):
            totals[p.account] = totals.get(p.account, Decimal(0)) + p.units.number
    r = runner.invoke(ledger_app, ["balance", "--db", str(db), "--as-of", "2026-04-01", "--format", "json"])
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert rows
    for row in rows:
        accounts = payee_accounts(row["payee"])
        for state in ("pending", "available", "paid", "fee"):
            assert -totals.get(accounts[state], Decimal(0)) == Decimal(row[state]), (row, state)
    r = runner.invoke(ledger_app, ["export", "--db", str(db)])  # default format, standard output
    assert r.exit_code == 0 and r.stdout == out.read_text(encoding="utf-8")
    r = runner.invoke(ledger_app, ["export", "--db", str(db), "--format", "ledger"])
    assert r.exit_code == 2
