"""Tamper evidence: every edit is detected and located; untouched statements are always intact."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from cps_engine import Money, load_events, load_policy
from cps_engine.audit.integrity import check_integrity, locate, prove, verify_proof
from cps_engine.audit.statement import (
    InvalidStatement,
    Manifest,
    Statement,
    StatementLine,
    build_statement,
    read_statement,
    seal_lines,
)
from tests.audit.helpers import Case, cases


def _lines(n: int) -> list[StatementLine]:
    return [StatementLine(f"p{i % 4}", f"o{i}", Money(100 + i, "CNY"), 1 + i % 2, Money(1000 + 10 * i, "CNY"),
                          Fraction(1, 10), "accrued") for i in range(n)]


def _edited(st_: Statement, lines: list[StatementLine]) -> Statement:
    return replace(st_, lines=tuple(lines), rows=None)


def _field_edit(line: StatementLine, field: str) -> StatementLine:
    if field == "payee":
        return replace(line, payee=line.payee + "x")
    if field == "order":
        return replace(line, order=line.order + "x")
    if field == "amount":
        return replace(line, amount=Money(line.amount.minor + 1, line.currency))
    if field == "currency":
        return replace(line, amount=Money(line.amount.minor, "USD" if line.currency != "USD" else "EUR"),
                       base=None)
    if field == "level":
        return replace(line, level=(line.level or 0) + 1)
    if field == "base":
        return replace(line, base=Money((line.base.minor if line.base else 0) + 1, line.currency))
    if field == "rate":
        rate = line.rate or Fraction(0)
        return replace(line, rate=rate + Fraction(1, 7) if rate + Fraction(1, 7) <= 1 else rate / 2)
    return replace(line, state="paid" if line.state != "paid" else "pending")


FIELDS = ("payee", "order", "amount", "currency", "level", "base", "rate", "state")


@given(cases())
def test_untouched_statements_are_intact(case: Case) -> None:
    report = check_integrity(case.statement)
    assert report.intact, report.as_dict()
    assert report.computed_root == report.merkle_root


@given(cases(), st.sampled_from(["csv", "json"]))
def test_untouched_statement_files_are_intact(tmp_path_factory: pytest.TempPathFactory, case: Case, kind: str) -> None:
    paths = case.statement.write(tmp_path_factory.mktemp("i"))
    assert check_integrity(read_statement(paths[kind])).intact


EDITS = ("field", "insert", "remove", "move", "swap", "duplicate")


@given(cases(min_lines=1), st.sampled_from(EDITS), st.data())
def test_every_edit_is_detected_and_located(case: Case, edit: str, data: st.DataObject) -> None:
    lines = list(case.statement.lines)
    assume(lines)
    n = len(lines)
    i = data.draw(st.integers(0, n - 1), label="i")
    expect: set[tuple[str, int | None, int | None]] | None  # exact changes, when unambiguous
    allowed: set[tuple[str, int | None, int | None]] | None = None
    if edit == "field":
        field = data.draw(st.sampled_from(FIELDS), label="field")
        lines[i] = _field_edit(lines[i], field)
        assume(lines[i] not in case.statement.lines)
        expect = {("edited", i + 1, i + 1)}
    elif edit == "insert":
        j = data.draw(st.integers(0, n), label="at")
        new = StatementLine("intruder", "o-new", Money(1, "CNY"))
        lines.insert(j, new)
        expect = {("inserted", j + 1, None)}
    elif edit == "remove":
        del lines[i]
        expect = {("removed", None, i + 1)}
    elif edit == "move":
        j = data.draw(st.integers(0, n - 1).filter(lambda k: k != i), label="to") if n > 1 else i
        assume(j != i)
        line = lines.pop(i)
        lines.insert(j, line)
        # moving to a neighbouring slot is the same as swapping the two: either may be named
        expect = {("moved", j + 1, i + 1)} if abs(i - j) > 1 else None
        allowed = {("moved", j + 1, i + 1), ("moved", i + 1, j + 1)}
    elif edit == "swap":
        j = data.draw(st.integers(0, n - 1).filter(lambda k: k != i), label="with") if n > 1 else i
        assume(j != i and lines[i] != lines[j])
        lines[i], lines[j] = lines[j], lines[i]
        expect = {("moved", i + 1, j + 1), ("moved", j + 1, i + 1)} if abs(i - j) > 1 else None
        allowed = {("moved", i + 1, j + 1), ("moved", j + 1, i + 1)}
    else:
        j = data.draw(st.integers(0, n), label="at")
        lines.insert(j, lines[i])
        copy = j + 1
        expect = {("inserted", copy, None)} if abs(j - i) > 1 else None
        allowed = {("inserted", copy, None), ("inserted", copy + 1, None), ("inserted", copy - 1, None)}
    report = check_integrity(_edited(case.statement, lines))
    assert not report.intact
    got = {(c.kind, c.line, c.original) for c in report.changes}
    assert got, report.as_dict()
    if expect is not None:
        assert got == expect, report.as_dict()
    else:
        assert allowed is not None and got <= allowed and got, report.as_dict()


def test_several_edits_at_once_are_all_located() -> None:
    st_ = seal_lines(_lines(12), "2026-03")
    lines = list(st_.lines)
    lines[2] = _field_edit(lines[2], "amount")
    del lines[5]                                      # issued line 6
    lines.insert(8, StatementLine("x", "oX", Money(1, "CNY")))
    lines.append(lines.pop(0))                        # issued line 1 moved to the end
    report = check_integrity(_edited(st_, lines))
    assert [(c.kind, c.line, c.original) for c in report.changes] == [
        ("edited", 2, 3), ("removed", None, 6), ("inserted", 8, None), ("moved", 12, 1)]


def test_locate_against_reference_diff() -> None:
    issued = [bytes([i]) * 32 for i in range(6)]
    lines = tuple(StatementLine("p", f"o{i}", Money(i, "CNY")) for i in range(7))
    actual = [issued[0], issued[3], issued[2], issued[1], issued[4], issued[5]]  # swap 2nd and 4th
    assert [(c.kind, c.line, c.original) for c in locate(issued, actual, lines)] == [
        ("moved", 2, 4), ("moved", 4, 2)]
    actual = [issued[0], issued[1], issued[1], issued[2], issued[3], issued[4], issued[5]]
    assert [(c.kind, c.line) for c in locate(issued, actual, lines)] == [("inserted", 3)]


def test_manifest_leaf_list_and_totals_edits_are_detected(tmp_path: Path) -> None:
    st_ = seal_lines(_lines(5), "2026-03")
    m = st_.manifest
    assert m is not None
    for name, value in (("events_sha256", "f" * 64), ("period", "2026-04"), ("policy_config_hash", "0" * 64),
                        ("rounding", "up"), ("hold_days", 3), ("previous_root", "a" * 64)):
        report = check_integrity(replace(st_, manifest=replace(m, **{name: value})))
        assert not report.intact and "manifest was edited" in report.problems[0], name
    forged = replace(m, merkle_root="b" * 64)
    assert not check_integrity(replace(st_, manifest=replace(forged, chain_root=forged.computed_chain_root()))).intact
    hashes = list(m.leaf_hashes)
    hashes[1] = "c" * 64
    report = check_integrity(replace(st_, manifest=replace(m, leaf_hashes=tuple(hashes))))
    assert not report.intact and "leaf_hashes" in report.problems[0]
    # an editor who rewrites the line and its leaf hash is still caught by the root, but cannot be located
    lines = list(st_.lines)
    lines[1] = _field_edit(lines[1], "amount")
    hashes = list(m.leaf_hashes)
    hashes[1] = lines[1].leaf_hash().hex()
    report = check_integrity(Statement(tuple(lines), replace(m, leaf_hashes=tuple(hashes))))
    assert not report.intact and not report.changes and "cannot be located" in " ".join(report.problems)
    # the stated totals
    path = tmp_path / "s.json"
    doc = json.loads(st_.to_json())
    doc["totals"]["CNY"]["amount"] = "0.01"
    path.write_text(json.dumps(doc), encoding="utf-8")
    report = check_integrity(read_statement(path))
    assert report.problems == ["the stated totals were edited: they do not add up from the (intact) lines"]


def test_chain_to_the_previous_statement(tmp_path: Path) -> None:
    feb = seal_lines(_lines(3), "2026-02")
    mar = seal_lines(_lines(4), "2026-03", previous=feb)
    assert check_integrity(mar, feb).previous == "ok (2026-02)"
    other = seal_lines(_lines(2), "2026-02")
    report = check_integrity(mar, other)
    assert not report.intact and "chain to the previous statement broken" in report.problems[0]
    assert feb.manifest is not None
    edited_feb = replace(feb, manifest=replace(feb.manifest, events_sha256="e" * 64))
    assert not check_integrity(mar, edited_feb).intact
    report = check_integrity(mar)
    assert report.intact and report.previous.startswith("not checked")
    # next to each other in a directory, the previous statement is found by its period
    feb.write(tmp_path)
    paths = mar.write(tmp_path)
    assert check_integrity(read_statement(paths["csv"])).previous == "ok (2026-02)"
    (tmp_path / "statement-2026-02.json").write_text(other.to_json(), encoding="utf-8")
    assert not check_integrity(read_statement(paths["json"])).intact


def test_no_manifest_is_unusable() -> None:
    with pytest.raises(InvalidStatement):
        check_integrity(Statement(tuple(_lines(2))))


@given(cases(min_lines=1), st.data())
def test_csv_cell_edits_are_located_at_their_row(tmp_path_factory: pytest.TempPathFactory, case: Case,
                                                 data: st.DataObject) -> None:
    assume(case.statement.lines)
    paths = case.statement.write(tmp_path_factory.mktemp("c"))
    rows = list(csv.reader(io.StringIO(paths["csv"].read_text(encoding="utf-8"))))
    r = data.draw(st.integers(1, len(rows) - 1), label="row")
    col = data.draw(st.sampled_from(["payee", "order", "level", "base", "rate", "amount", "state"]), label="col")
    c = rows[0].index(col)
    old = rows[r][c]
    cur = case.statement.lines[r - 1].currency
    if col in ("payee", "order"):
        new = old + "_"
    elif col == "level":
        new = str(int(old) + 1)
    elif col == "state":
        new = "paid" if old != "paid" else "pending"
    elif col == "rate":
        new = "1/7" if old != "1/7" else "1/9"
    else:  # an amount: one minor unit more, written with the currency's decimals
        new = format((Money.of(old, cur) + Money(1, cur)).amount, "f")
    rows[r][c] = new
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    paths["csv"].write_text(buf.getvalue(), encoding="utf-8")
    report = check_integrity(read_statement(paths["csv"]))
    assert not report.intact
    assert [(c.kind, c.line, c.row) for c in report.changes] == [("edited", r, r + 1)]


# ------------------------------------------------------------------------------------------ proofs
def test_a_payee_can_check_their_own_lines() -> None:
    st_ = seal_lines(_lines(11), "2026-03")
    assert st_.manifest is not None
    for payee in ("p0", "p1", "p2", "p3"):
        doc = prove(st_, payee)
        assert "leaf_hashes" not in doc["manifest"]
        assert all(p["line"]["payee"] == payee for p in doc["proofs"])
        others = {ln.order for ln in st_.lines if ln.payee != payee}
        assert not any(o in json.dumps(doc) for o in others if len(o) > 2)  # no other payee's orders leak
        check = verify_proof(json.loads(json.dumps(doc)), root=st_.manifest.chain_root)
        assert check.ok and all(good for _, good in check.lines)
        assert verify_proof(doc, root=st_.manifest.merkle_root).ok
    one = prove(st_, "p1", "o5")
    assert [p["index"] for p in one["proofs"]] == [5]
    with pytest.raises(KeyError):
        prove(st_, "nobody")


def test_tampered_proofs_fail() -> None:
    st_ = seal_lines(_lines(9), "2026-03")
    doc = prove(st_, "p2")
    bad = json.loads(json.dumps(doc))
    bad["proofs"][0]["line"]["amount"] = "9.99"
    assert not verify_proof(bad).ok
    bad = json.loads(json.dumps(doc))
    bad["proofs"][0]["index"] += 1
    assert not verify_proof(bad).ok
    bad = json.loads(json.dumps(doc))
    bad["manifest"]["merkle_root"] = "0" * 64
    result = verify_proof(bad)
    assert not result.ok and any("chain_root" in p for p in result.problems)
    assert not verify_proof(doc, root="1" * 64).ok
    other = seal_lines(_lines(9)[:-1], "2026-03")
    assert other.manifest is not None
    assert not verify_proof(doc, root=other.manifest.chain_root).ok


def test_statement_from_events_round_trip_and_proof(tmp_path: Path) -> None:
    evs = load_events([
        '{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00+08:00"}',
        '{"type":"share","id":"s2","sharer":"bob","parent":"s1","at":"2026-03-01T11:00:00+08:00"}',
        '{"type":"order","id":"o1","buyer":"cat","share":"s2","amount":"100.00","currency":"CNY",'
        '"at":"2026-03-02T12:00:00+08:00"}'])
    st_ = build_statement(evs, load_policy({"kind": "capped_multilevel", "rates": ["10%", "5%"]}), "2026-03")
    paths = st_.write(tmp_path)
    back = read_statement(paths["csv"])
    assert check_integrity(back).intact
    assert back.manifest is not None and verify_proof(prove(back, "amy"), root=back.manifest.chain_root).ok
    assert isinstance(Manifest.from_dict(json.loads(paths["manifest"].read_text())["manifest"]), Manifest)
