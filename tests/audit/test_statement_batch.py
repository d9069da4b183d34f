"""Statements and verification on the batch engine: the bytes of the per-order engine.

``statement`` and ``audit verify`` compute the expected lines with ``compute_batch``
(:func:`cps_engine.audit.statement.period_lines`); without pandas they fall back to ``compute_events``,
the engine they used before.  Both are run here on the bundled sample under every built-in policy kind
and on a history of hostile ids, and their JSON, CSV and manifest must be byte for byte the same.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cps_engine import load_events, load_policy
from cps_engine.audit import statement as statement_module
from cps_engine.audit.statement import Period, Statement, build_statement, period_lines
from cps_engine.audit.verify import verify_statement
from cps_engine.cli import sample_path
from cps_engine.cli_audit import audit_app, statement

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.add_typer(audit_app, name="audit")
app.command("statement")(statement)

T0 = datetime(2026, 3, 1, tzinfo=UTC)
HALF = [f"u{i:04d}" for i in range(0, 3000, 2)]
POLICIES: list[dict[str, Any]] = [
    {"kind": "first_sharer", "rate": "10%"},
    {"kind": "first_sharer", "rate": "3.00 CNY", "distributors": [*HALF, "=1+1"]},
    {"kind": "last_sharer", "rate": "8%", "self_purchase": True, "rounding": "half_even"},
    {"kind": "capped_multilevel", "rates": ["10%", "5%", "2%"], "cap": "15%"},
    {"kind": "capped_multilevel", "rates": ["1/3", "0.50 CNY/item"], "cap": "20%", "ineligible": "keep_level",
     "distributors": [*HALF, "u1366", "a,b", "@sum"], "payee_rates": {"u1366": "12%", "u00010": "1%"},
     "rounding": "up"},
    {"kind": "compliant", "profile": "cn", "rates": ["10%", "5%"], "cap": "12%", "self_purchase_rate": "3%"},
    {"kind": "linear", "rate": "9%", "max_depth": 5},
    {"kind": "position_based", "rate": "10%", "category_rates": {"food": "6%"}, "product_rates": {"A1": "1/7"}},
    {"kind": "time_decay", "rate": "10%", "half_life_days": "7", "self_purchase": True},
]
HOSTILE = ["=1+1", "a,b", 'q"uote', "s/1", "名字", "x\u202ey", "@sum", "-2", "+3", " lead", "<b>x</b>",
           "[red]r[/red]", "'=q", "t\tab", "u00010"]


def hostile_events(tmp: Path) -> Path:
    """Shares, a bind, orders and refunds whose ids are formulas, separators, quotes, markup, bidi, CJK."""
    recs: list[dict[str, Any]] = []
    prev: str | None = None
    for i, who in enumerate(HOSTILE):
        sid = f"{who}#{i}"
        recs.append({"type": "share", "id": sid, "sharer": who, "parent": prev,
                     "at": (T0 + timedelta(hours=i)).isoformat()})
        prev = sid if i % 4 != 3 else None
    recs.append({"type": "bind", "id": "=HYPERLINK(1)", "user": "buyer,1", "upline": "@sum", "at": T0.isoformat()})
    for i in range(len(HOSTILE)):
        recs.append({"type": "order", "id": f"=o{i},\"x\"<i>", "buyer": HOSTILE[(i * 3) % len(HOSTILE)],
                     "share": f"{HOSTILE[i]}#{i}", "amount": f"{(i + 1) * 37}.{i:02d}", "currency": "CNY",
                     "at": (T0 + timedelta(days=2, hours=i)).isoformat(),
                     "lines": [{"sku": "A1", "category": "food", "quantity": i + 1, "unit_price": "1.00"}]})
    recs.append({"type": "order", "id": "-bound", "buyer": "buyer,1", "amount": "10.00", "currency": "CNY",
                 "at": (T0 + timedelta(days=3)).isoformat()})
    recs.append({"type": "refund", "id": "r1", "order": "=o2,\"x\"<i>", "amount": "5.00",
                 "at": (T0 + timedelta(days=4)).isoformat()})
    recs.append({"type": "refund", "id": "r2", "order": "=o5,\"x\"<i>", "at": (T0 + timedelta(days=4)).isoformat()})
    path = tmp / "hostile.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    return path


def _files(st: Statement) -> tuple[str, str, str]:
    return st.to_json(), st.to_csv(), st.manifest_json()


def _per_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """No pandas: statements fall back to compute_events, the per-order engine they used before."""
    monkeypatch.setitem(sys.modules, "pandas", None)


@pytest.fixture(scope="module")
def sample() -> list[Any]:
    return load_events(sample_path())


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p["kind"])
def test_batch_statement_is_the_per_order_statement_on_the_sample(
        sample: list[Any], policy: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    pol = load_policy(policy)
    batch = build_statement(sample, pol, "2026-03-10..2026-03-31", tz="+08:00", hold_days=7)
    assert len(batch.lines) > 50
    with monkeypatch.context() as m:
        _per_order(m)
        per_order = build_statement(sample, pol, "2026-03-10..2026-03-31", tz="+08:00", hold_days=7)
    assert _files(batch) == _files(per_order)
    assert verify_statement(batch, sample, pol).ok


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p["kind"])
def test_batch_statement_is_the_per_order_statement_on_hostile_ids(
        tmp_path: Path, policy: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    evs = load_events(hostile_events(tmp_path))
    pol = load_policy(policy)
    batch = build_statement(evs, pol, "2026-03", tz="UTC")
    with monkeypatch.context() as m:
        _per_order(m)
        per_order = build_statement(evs, pol, "2026-03", tz="UTC")
    assert _files(batch) == _files(per_order)
    assert verify_statement(batch, evs, pol).ok


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_cli_statement_and_verify_write_the_per_order_bytes(tmp_path: Path, fmt: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    events = hostile_events(tmp_path)
    pol = tmp_path / "policy.json"
    pol.write_text(json.dumps(POLICIES[4]), encoding="utf-8")
    args = ["statement", "--events", str(events), "--policy", str(pol), "--period", "2026-03", "--format", fmt]
    runner = CliRunner()
    batch = runner.invoke(app, args)
    with monkeypatch.context() as m:
        _per_order(m)
        per_order = runner.invoke(app, args)
    assert batch.exit_code == per_order.exit_code == 0, batch.output
    assert batch.stdout_bytes == per_order.stdout_bytes
    assert "=o2" in batch.stdout
    # verify on the batch path, against the statement and the per-order report
    out = tmp_path / "out"
    assert runner.invoke(app, ["statement", "--events", str(events), "--policy", str(pol), "--period", "2026-03",
                               "-o", str(out)]).exit_code == 0
    verify = ["audit", "verify", "--events", str(events), "--policy", str(pol), "--statement",
              str(out / "statement-2026-03.csv"), "--format", "json"]
    checked = runner.invoke(app, verify)
    with monkeypatch.context() as m:
        _per_order(m)
        checked_per_order = runner.invoke(app, verify)
    assert checked.exit_code == checked_per_order.exit_code == 0, checked.output
    assert checked.stdout_bytes == checked_per_order.stdout_bytes


def test_verify_on_the_batch_path_still_names_an_unapplied_refund(tmp_path: Path) -> None:
    """The amounts before refunds (to tell "refund not applied") come from the batch engine too."""
    from dataclasses import replace

    evs = load_events(hostile_events(tmp_path))
    pol = load_policy(POLICIES[3])
    honest = build_statement(evs, pol, "2026-03", tz="UTC")
    gross = {(ln.order, ln.payee): ln for ln in build_statement(
        [e for e in evs if e.type != "refund"], pol, "2026-03", tz="UTC").lines}
    lines = [replace(ln, amount=gross[ln.key()].amount) if ln.order == '=o2,"x"<i>' else ln for ln in honest.lines]
    report = verify_statement(Statement(tuple(lines)), evs, pol, period="2026-03", tz="UTC")
    assert {d.kind.value for d in report.discrepancies} == {"refunded_order"}
    assert all("not applied" in d.detail for d in report.discrepancies)


def test_the_comparison_catches_a_batch_line_off_by_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation check: a batch frame with one amount changed gives another statement than per order."""
    evs = load_events(hostile_events(tmp_path))
    pol = load_policy(POLICIES[0])
    real = statement_module.batch_frame

    def off_by_one(*args: Any, **kwargs: Any) -> Any:
        frame = real(*args, **kwargs)
        frame.loc[0, "amount_minor"] += 1
        return frame

    monkeypatch.setattr(statement_module, "batch_frame", off_by_one)
    broken = build_statement(evs, pol, "2026-03", tz="UTC")
    monkeypatch.undo()
    assert _files(broken) != _files(build_statement(evs, pol, "2026-03", tz="UTC"))


class Recorder:
    def __init__(self) -> None:
        self.stages: list[tuple[str, int | None]] = []
        self.done: dict[str, int] = {}

    def stage(self, name: str, total: int | None = None) -> None:
        self.stages.append((name, total))
        self.done[name] = 0

    def advance(self, n: int = 1) -> None:
        self.done[self.stages[-1][0]] += n


def test_long_work_reports_its_progress(sample: list[Any]) -> None:
    steps = Recorder()
    st = build_statement(sample, load_policy(POLICIES[3]), "2026-03", tz="+08:00", steps=steps)
    names = [name for name, _ in steps.stages]
    assert names[0] == "building the share graph" and names[1].startswith("computing the commissions of ")
    # every counted stage ends at its total: lines stated, events and lines hashed
    for name, total in steps.stages:
        if total is not None:
            assert steps.done[name] == total, name
    assert ("stating the lines", len(st.lines)) in steps.stages
    assert ("hashing the events", len(sample)) in steps.stages
    assert ("hashing the lines", len(st.lines)) in steps.stages
    recorder = Recorder()
    assert verify_statement(st, sample, load_policy(POLICIES[3]), steps=recorder).ok
    assert ("stating the lines", len(st.lines)) in recorder.stages


def test_the_cli_draws_its_progress_through_cli_common(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from contextlib import contextmanager

    from cps_engine import cli_audit

    seen: list[str] = []
    steps = Recorder()

    @contextmanager
    def progress(what: str, total: int | None = None, **_: Any) -> Any:
        seen.append(what)
        yield steps

    monkeypatch.setattr(cli_audit, "progress", progress)
    events = hostile_events(tmp_path)
    pol = tmp_path / "policy.json"
    pol.write_text(json.dumps(POLICIES[0]), encoding="utf-8")
    res = CliRunner().invoke(app, ["statement", "--events", str(events), "--policy", str(pol), "--period",
                                   "2026-03", "--format", "csv"])
    assert res.exit_code == 0, res.output
    assert seen == ["statement"]
    assert [n for n, _ in steps.stages][:2] == ["reading the events", "building the share graph"]


def test_period_lines_of_an_empty_period() -> None:
    evs = load_events([
        '{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00+08:00"}',
        '{"type":"order","id":"o1","buyer":"cat","share":"s1","amount":"100.00","currency":"CNY",'
        '"at":"2026-03-01T12:00:00+08:00"}'])
    pol = load_policy(POLICIES[0])
    assert period_lines(evs, pol, Period.parse("2026-04", "+08:00")) == []
    assert [ln.order for ln in period_lines(evs, pol, Period.parse("2026-03", "+08:00"))] == ["o1"]
