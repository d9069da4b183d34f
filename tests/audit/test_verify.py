"""Verification: honest statements verify clean; every single-line mutation is found at its line."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from cps_engine import Money, load_events, load_policy
from cps_engine.audit.statement import (
    ColumnMap,
    InvalidStatement,
    Statement,
    StatementLine,
    build_statement,
    read_statement,
)
from cps_engine.audit.verify import Kind, rate_matches, verify_statement
from tests.audit.helpers import TZ, Case, cases


def _platform(st_: Statement, lines: list[StatementLine]) -> Statement:
    """The statement as a platform would send it: the lines only, no manifest."""
    return Statement(tuple(lines))


def _verify(case: Case, lines: list[StatementLine]):  # type: ignore[no-untyped-def]
    return verify_statement(_platform(case.statement, lines), case.events, case.policy, period=case.period, tz=TZ,
                            hold_days=case.hold_days)


@given(cases())
def test_honest_statements_verify_with_zero_discrepancies(case: Case) -> None:
    report = verify_statement(case.statement, case.events, case.policy)
    assert report.ok, [d.as_dict() for d in report.discrepancies]
    assert report.lines_stated == report.lines_expected == len(case.statement.lines)
    assert report.stated_totals == report.expected_totals
    # the same lines without a manifest (a platform's statement), in any order, also verify
    shuffled = list(reversed(case.statement.lines))
    assert _verify(case, shuffled).ok


@given(cases(), st.data())
def test_honest_statements_verify_through_csv_and_json_files(tmp_path_factory: pytest.TempPathFactory, case: Case,
                                                             data: st.DataObject) -> None:
    paths = case.statement.write(tmp_path_factory.mktemp("v"))
    kind = data.draw(st.sampled_from(["csv", "json"]))
    back = read_statement(paths[kind])
    assert verify_statement(back, case.events, case.policy).ok


MUTATIONS = ("amount+1", "amount-1", "wrong_payee", "drop", "duplicate", "wrong_rate", "swap_amounts")


@given(cases(min_lines=1), st.sampled_from(MUTATIONS), st.data())
def test_every_single_line_mutation_is_reported_at_its_line(case: Case, mutation: str, data: st.DataObject) -> None:
    lines = list(case.statement.lines)
    assume(lines)
    i = data.draw(st.integers(0, len(lines) - 1), label="line")
    orig = lines[i]
    where: set[int | None]  # 1-based positions where the discrepancy may be reported
    if mutation in ("amount+1", "amount-1"):
        delta = 1 if mutation == "amount+1" else -1
        lines[i] = replace(orig, amount=Money(orig.amount.minor + delta, orig.currency))
        where, kinds = {i + 1}, {Kind.AMOUNT, Kind.REFUNDED_ORDER}
    elif mutation == "wrong_payee":
        other = data.draw(st.sampled_from(["p0", "p1", "p2", "p3", "walkin1", "intruder"]).filter(
            lambda p: p != orig.payee), label="payee")
        lines[i] = replace(orig, payee=other)
        where, kinds = {i + 1}, {Kind.WRONG_PAYEE, Kind.SELF_PURCHASE, Kind.EXTRA, Kind.DUPLICATE}
    elif mutation == "drop":
        del lines[i]
        where, kinds = {None}, {Kind.MISSING}
    elif mutation == "duplicate":
        j = data.draw(st.integers(0, len(lines)), label="insert at")
        lines.insert(j, orig)
        # either copy may be called the duplicate
        where, kinds = {j + 1, (i + 1 if j > i else i + 2)}, {Kind.DUPLICATE}
    elif mutation == "wrong_rate":
        assert orig.rate is not None
        bump = Fraction(1, 1000)
        lines[i] = replace(orig, rate=orig.rate + bump if orig.rate + bump <= 1 else orig.rate - bump)
        where, kinds = {i + 1}, {Kind.RATE}
    else:  # swap the amounts of two lines
        j = data.draw(st.integers(0, len(lines) - 1).filter(lambda k: lines[k].amount != orig.amount), label="j")
        lines[i], lines[j] = replace(orig, amount=lines[j].amount), replace(lines[j], amount=orig.amount)
        where, kinds = {i + 1, j + 1}, {Kind.AMOUNT, Kind.RATE, Kind.REFUNDED_ORDER, Kind.CURRENCY}
    report = _verify(case, lines)
    assert not report.ok
    hits = [d for d in report.discrepancies if d.line in where and d.kind in kinds]
    assert hits, [d.as_dict() for d in report.discrepancies]
    if mutation == "drop":
        assert [(d.order, d.payee) for d in report.discrepancies] == [(orig.order, orig.payee)]
        assert report.discrepancies[0].underpaid == orig.amount.minor
    elif mutation == "swap_amounts":
        assert {d.line for d in report.discrepancies} == where
    else:
        # exactly the mutated line is blamed, plus (for a wrong payee) the rightful payee's missing line
        assert {d.line for d in report.discrepancies} <= where | {None}
        assert len([d for d in report.discrepancies if d.line is not None]) == 1


@given(cases(min_lines=2), st.data())
def test_swapping_two_lines_does_not_change_the_verification(case: Case, data: st.DataObject) -> None:
    lines = list(case.statement.lines)
    assume(len(lines) >= 2)
    i, j = data.draw(st.lists(st.integers(0, len(lines) - 1), min_size=2, max_size=2, unique=True))
    lines[i], lines[j] = lines[j], lines[i]
    # verification compares content, not position (check-integrity catches reordering)
    assert _verify(case, lines).ok


# ------------------------------------------------------------------------------------------ examples
EVENTS = [
    '{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00+08:00"}',
    '{"type":"share","id":"s2","sharer":"bob","parent":"s1","at":"2026-03-01T11:00:00+08:00"}',
    '{"type":"share","id":"s3","sharer":"cat","parent":"s2","at":"2026-03-01T11:30:00+08:00"}',
    '{"type":"order","id":"o1","buyer":"dan","share":"s2","amount":"100.00","currency":"CNY",'
    '"at":"2026-03-02T12:00:00+08:00"}',
    '{"type":"order","id":"o2","buyer":"eve","share":"s2","amount":"200.00","currency":"CNY",'
    '"at":"2026-03-03T12:00:00+08:00"}',
    '{"type":"refund","id":"r2","order":"o2","at":"2026-03-04T12:00:00+08:00"}',
    '{"type":"order","id":"o3","buyer":"fay","share":"s2","amount":"300.00","currency":"CNY",'
    '"at":"2026-03-05T12:00:00+08:00"}',
    '{"type":"refund","id":"r3","order":"o3","amount":"100.00","at":"2026-03-06T12:00:00+08:00"}',
    '{"type":"order","id":"o4","buyer":"cat","share":"s3","amount":"50.00","currency":"CNY",'
    '"at":"2026-03-07T12:00:00+08:00"}',
    '{"type":"order","id":"o5","buyer":"gus","share":"s1","amount":"10.00","currency":"CNY",'
    '"at":"2026-04-01T12:00:00+08:00"}',
]


def _line(payee: str, order: str, amount: str, level: int, rate: str = "0.1") -> StatementLine:
    return StatementLine(payee, order, Money.of(amount, "CNY"), level, None, Fraction(rate))


def test_each_kind_is_classified_with_money_at_stake() -> None:
    evs = load_events(EVENTS)
    pol = load_policy({"kind": "capped_multilevel", "rates": ["10%", "5%"]})
    honest = build_statement(evs, pol, "2026-03", tz=TZ)
    owed = {(ln.order, ln.payee): ln for ln in honest.lines}
    assert set(owed) == {("o1", "bob"), ("o1", "amy"), ("o3", "bob"), ("o3", "amy"), ("o4", "bob"), ("o4", "amy")}
    stated = [
        _line("bob", "o1", "10.00", 1),            # right
        _line("bob", "o1", "10.00", 1),            # duplicate
        _line("zed", "o1", "5.00", 2, "0.05"),     # amy's line paid to zed
        _line("bob", "o2", "20.00", 1),            # o2 fully refunded
        _line("bob", "o3", "30.00", 1),            # partial refund not applied (owed 20.00)
        _line("amy", "o3", "10.01", 2, "0.05"),    # owed 10.00
        _line("cat", "o4", "5.00", 1),             # cat bought o4 herself
        _line("bob", "o5", "1.00", 1),             # April order
        _line("bob", "o9", "1.00", 1),             # no such order
        _line("amy", "o4", "2.50", 2, "0.06"),     # right amount, wrong rate
    ]
    report = verify_statement(Statement(tuple(stated)), evs, pol, period="2026-03", tz=TZ)
    got = [(d.kind, d.line, d.order, d.payee, d.overpaid, d.underpaid) for d in report.discrepancies]
    assert got == [
        (Kind.MISSING, None, "o4", "bob", 0, 500),
        (Kind.DUPLICATE, 2, "o1", "bob", 1000, 0),
        (Kind.WRONG_PAYEE, 3, "o1", "zed", 500, 500),
        (Kind.SELF_PURCHASE, 7, "o4", "cat", 500, 0),
        (Kind.REFUNDED_ORDER, 4, "o2", "bob", 2000, 0),
        (Kind.REFUNDED_ORDER, 5, "o3", "bob", 1000, 0),
        (Kind.OUT_OF_PERIOD, 8, "o5", "bob", 100, 0),
        (Kind.UNKNOWN_ORDER, 9, "o9", "bob", 100, 0),
        (Kind.AMOUNT, 6, "o3", "amy", 1, 0),
        (Kind.RATE, 10, "o4", "amy", 0, 0),
    ]
    stake = report.at_stake()["CNY"]
    assert stake["total"] == {"count": 10, "overpaid": 5201, "underpaid": 1000}
    assert stake["refunded_order"] == {"count": 2, "overpaid": 3000, "underpaid": 0}
    data = report.as_dict()
    assert data["at_stake"]["CNY"]["total"]["at_stake"] == "62.01"
    assert list(data["groups"]) == [k.value for k in report.by_kind()]


def test_manifest_mismatches_are_reported() -> None:
    evs = load_events(EVENTS)
    pol = load_policy({"kind": "capped_multilevel", "rates": ["10%", "5%"]})
    st_ = build_statement(evs, pol, "2026-03", tz=TZ)
    other = load_policy({"kind": "capped_multilevel", "rates": ["10%", "5%"], "name": "renamed"})
    report = verify_statement(st_, evs, other)
    assert [d.kind for d in report.discrepancies] == [Kind.MANIFEST]
    assert "policy_config_hash" in report.discrepancies[0].detail
    report2 = verify_statement(st_, evs[:-1], pol)  # an event missing from the auditor's copy
    assert any(d.kind is Kind.MANIFEST and "events_sha256" in d.detail for d in report2.discrepancies)


def test_states_are_checked_only_with_a_hold_period() -> None:
    evs = load_events(EVENTS)
    pol = load_policy({"kind": "capped_multilevel", "rates": ["10%", "5%"]})
    st_ = build_statement(evs, pol, "2026-03", tz=TZ, hold_days=30)
    lines = list(st_.lines)
    pending = next(k for k, ln in enumerate(lines) if ln.state == "pending")
    lines[pending] = replace(lines[pending], state="paid")
    report = verify_statement(Statement(tuple(lines)), evs, pol, period="2026-03", tz=TZ, hold_days=30)
    assert [(d.kind, d.line) for d in report.discrepancies] == [(Kind.STATE, pending + 1)]
    unknown = verify_statement(Statement(tuple(lines)), evs, pol, period="2026-03", tz=TZ)
    assert unknown.ok and unknown.notes


def test_rate_display_precision() -> None:
    assert rate_matches(Fraction(882, 10000), Fraction(3, 34))
    assert not rate_matches(Fraction(881, 10000), Fraction(3, 34))
    assert rate_matches(Fraction(1, 8), Fraction(1, 8))
    assert not rate_matches(Fraction(13, 100), Fraction(1, 8))  # 12.5% is exact: 13% is wrong
    assert not rate_matches(Fraction(12, 100), Fraction(1, 8))  # 12.5% has an exact 3-decimal form
    assert not rate_matches(Fraction(5, 100), Fraction(49, 1000))  # too coarse to be a display rounding
    assert rate_matches(Fraction(1176, 10000), Fraction(2, 17))    # 11.76% for 2/17 (0.117647...)
    assert not rate_matches(Fraction(1, 3), Fraction(333, 1000))


def test_platform_csv_verifies_with_mapping(tmp_path: Path) -> None:
    evs = load_events(EVENTS)
    pol = load_policy({"kind": "capped_multilevel", "rates": ["10%", "5%"]})
    honest = build_statement(evs, pol, "2026-03", tz=TZ)
    rows = ["订单号,推广员,层级,佣金比例,佣金金额"]
    rows += [f"{ln.order},{ln.payee},{ln.level}级,{ln.rate * 100}%,¥{ln.amount.amount}" for ln in honest.lines]
    path = tmp_path / "平台.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8-sig")
    st_ = read_statement(path, ColumnMap(currency="CNY"))
    assert verify_statement(st_, evs, pol, period="2026-03", tz=TZ).ok
    rows[2] = rows[2].replace("¥", "¥1")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8-sig")
    report = verify_statement(read_statement(path, ColumnMap(currency="CNY")), evs, pol, period="2026-03", tz=TZ)
    assert [(d.kind, d.line, d.row) for d in report.discrepancies] == [(Kind.AMOUNT, 2, 3)]


def test_a_platform_statement_needs_a_period() -> None:
    evs = load_events(EVENTS)
    pol = load_policy({"kind": "capped_multilevel", "rates": ["10%", "5%"]})
    with pytest.raises(InvalidStatement) as exc:
        verify_statement(Statement(()), evs, pol)
    assert exc.value.field == "period"


def test_a_wrong_payee_on_a_partly_refunded_order_is_a_wrong_payee_not_a_refund() -> None:
    # found by the mutation property: p2 is owed level 1 on o0; p0's level-2 line re-addressed to p2
    # used to be called "order refunded; nothing is owed any more" because o0 had a partial refund
    at = "2026-03-01T00:00:{:02d}+08:00"
    events = load_events([
        f'{{"type":"share","id":"s0","sharer":"p0","at":"{at.format(1)}"}}',
        f'{{"type":"bind","id":"b0","user":"p2","upline":"p0","at":"{at.format(2)}"}}',
        f'{{"type":"bind","id":"b1","user":"p5","upline":"p2","at":"{at.format(3)}"}}',
        f'{{"type":"order","id":"o0","buyer":"p5","amount":"0.63","currency":"CNY","at":"{at.format(4)}"}}',
        '{"type":"refund","id":"r0","order":"o0","amount":"0.04","kind":"chargeback",'
        '"at":"2026-03-01T00:05:39+08:00"}'])
    policy = load_policy({"kind": "linear", "rate": "3.5%", "max_depth": 5})
    honest = build_statement(events, policy, "2026-03", tz=TZ)
    assert [(ln.payee, ln.level, ln.amount.minor) for ln in honest.lines] == [("p0", 2, 1), ("p2", 1, 1)]
    lines = [replace(honest.lines[0], payee="p2"), honest.lines[1]]
    report = verify_statement(_platform(honest, lines), events, policy, period="2026-03", tz=TZ)
    assert [(d.kind, d.line) for d in report.discrepancies] == [(Kind.WRONG_PAYEE, 1)]
