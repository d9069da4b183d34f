"""Statements: golden hash vectors, building from events, CSV/JSON round trips, platform column maps."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cps_engine import Money, load_events, load_policy
from cps_engine.audit.merkle import leaf_hash, root_of
from cps_engine.audit.statement import (
    ColumnMap,
    InvalidStatement,
    Manifest,
    Period,
    Statement,
    StatementLine,
    build_statement,
    canonical_event,
    canonical_json,
    events_digest,
    read_statement,
    seal_lines,
)
from tests.strategies import Programme, programmes

GOLDEN_EVENTS = [
    '{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00+08:00","campaign":"春季"}',
    '{"type":"bind","id":"b1","user":"bob","upline":"amy","at":"2026-03-01T10:30:00+08:00"}',
    '{"type":"order","id":"o1","buyer":"cat","share":"s1","amount":"199.90","currency":"CNY","shipping":"10.0",'
    '"at":"2026-03-01T12:00:00+08:00","lines":[{"sku":"tea","quantity":2,"unit_price":"94.95"}]}',
    '{"type":"refund","id":"r1","order":"o1","amount":"20.00","at":"2026-03-02T12:00:00Z"}',
    '{"type":"payout","id":"p1","payee":"amy","amount":"5","currency":"CNY","at":"2026-03-31T12:00:00+08:00"}',
]
GOLDEN_CANONICAL = [
    '{"at":"2026-03-01T02:00:00Z","campaign":"春季","id":"s1","sharer":"amy","type":"share"}',
    '{"at":"2026-03-01T02:30:00Z","id":"b1","registration":false,"type":"bind","upline":"amy","user":"bob"}',
    '{"amount":"199.9","at":"2026-03-01T04:00:00Z","buyer":"cat","currency":"CNY","id":"o1","lines":[{"quantity":2,'
    '"sku":"tea","unit_price":"94.95"}],"share":"s1","shipping":"10","type":"order"}',
    '{"amount":"20","at":"2026-03-02T12:00:00Z","id":"r1","kind":"refund","order":"o1","type":"refund"}',
    '{"amount":"5","at":"2026-03-31T04:00:00Z","currency":"CNY","id":"p1","payee":"amy","type":"payout"}',
]
GOLDEN_EVENTS_SHA256 = "887d4ff4c0fa4329f63428d6e49db0b9ef00e864a0fc774849399fa600389e77"

GOLDEN_LINES = [
    StatementLine("amy", "o1", Money(1899, "CNY"), 2, Money(18999, "CNY"), Fraction(1, 10), "accrued"),
    StatementLine("bob", "o1", Money(949, "CNY"), 1, Money(18999, "CNY"), Fraction(1, 20), "pending"),
    StatementLine("张三", "o2", Money(5, "JPY"), 1, Money(100, "JPY"), Fraction(1, 20), "available"),
]
GOLDEN_LINE_BYTES = [
    '{"amount":"18.99","base":"189.99","currency":"CNY","level":2,"order":"o1","payee":"amy","rate":"0.1",'
    '"state":"accrued"}',
    '{"amount":"9.49","base":"189.99","currency":"CNY","level":1,"order":"o1","payee":"bob","rate":"0.05",'
    '"state":"pending"}',
    '{"amount":"5","base":"100","currency":"JPY","level":1,"order":"o2","payee":"张三","rate":"0.05",'
    '"state":"available"}',
]


def test_golden_canonical_events_and_digest() -> None:
    evs = load_events(GOLDEN_EVENTS)
    assert [canonical_event(e).decode() for e in evs] == GOLDEN_CANONICAL
    assert events_digest(evs) == GOLDEN_EVENTS_SHA256
    # the digest is sha256 over the sorted canonical lines, each ended by a newline
    joined = b"".join(c + b"\n" for c in sorted(x.encode() for x in GOLDEN_CANONICAL))
    assert hashlib.sha256(joined).hexdigest() == GOLDEN_EVENTS_SHA256


def test_events_digest_ignores_file_order_formatting_and_repeats() -> None:
    evs = load_events(GOLDEN_EVENTS)
    reformatted = [
        GOLDEN_EVENTS[4], GOLDEN_EVENTS[0],
        '{"at":"2026-03-01T02:30:00Z","id":"b1","user":"bob","upline":"amy","type":"bind","registration":false}',
        GOLDEN_EVENTS[2].replace('"199.90"', '"199.9000"'), GOLDEN_EVENTS[3], GOLDEN_EVENTS[3]]
    assert events_digest(load_events(reformatted)) == GOLDEN_EVENTS_SHA256
    assert events_digest([*evs, *evs]) == GOLDEN_EVENTS_SHA256
    changed = load_events([*GOLDEN_EVENTS[:3], GOLDEN_EVENTS[3].replace("20.00", "20.01"), GOLDEN_EVENTS[4]])
    assert events_digest(changed) != GOLDEN_EVENTS_SHA256


def test_golden_line_encoding_and_merkle_root() -> None:
    assert [ln.canonical().decode() for ln in GOLDEN_LINES] == GOLDEN_LINE_BYTES
    leaves = [hashlib.sha256(b"\x00" + b.encode()).hexdigest() for b in GOLDEN_LINE_BYTES]
    assert [ln.leaf_hash().hex() for ln in GOLDEN_LINES] == leaves
    assert leaves[0] == "0d4e7b89c933523133168fe94c642da1ecf50d14783d0f533802b937d137d10a"
    root = root_of([bytes.fromhex(h) for h in leaves]).hex()
    assert root == "511a3ef72facc42a462229b0a1aec5547d741b7545d766befa0327b378ae263b"
    assert seal_lines(GOLDEN_LINES, "2026-03").manifest.merkle_root == root  # type: ignore[union-attr]


def test_golden_chain_root() -> None:
    m = Manifest(period="2026-03", tz="+08:00", period_start="2026-03-01T00:00:00+08:00",
                 period_end="2026-04-01T00:00:00+08:00", as_of="2026-03-31T12:00:00+08:00", events_sha256="0" * 64,
                 policy="p", policy_kind="first_sharer", policy_config_hash="1" * 64, rounding="down",
                 binding="first_wins", expire_days=None, hold_days=7, library_version="0.1.0", line_count=0,
                 merkle_root=root_of([]).hex(), previous_period=None, previous_root=None, chain_root="")
    header = canonical_json(m.header())
    assert header.startswith(b'{"as_of":"2026-03-31T12:00:00+08:00","binding":"first_wins","events_sha256":"000')
    assert b"leaf_hashes" not in header and b"chain_root" not in header
    assert m.computed_chain_root() == hashlib.sha256(b"\x02" + header).hexdigest()
    assert m.computed_chain_root() == "046a6b09d773be6eef1ad50b0d3c9674ac93bd5998bee3d7cbc71b9f10436f4d"


# ------------------------------------------------------------------------------------------ building
EVENTS = [
    '{"type":"share","id":"s1","sharer":"amy","at":"2026-02-27T10:00:00+08:00"}',
    '{"type":"share","id":"s2","sharer":"bob","parent":"s1","at":"2026-02-27T11:00:00+08:00"}',
    '{"type":"order","id":"o0","buyer":"cat","share":"s2","amount":"50.00","currency":"CNY",'
    '"at":"2026-02-28T12:00:00+08:00"}',
    '{"type":"order","id":"o1","buyer":"cat","share":"s2","amount":"199.99","currency":"CNY","shipping":"10.00",'
    '"at":"2026-03-01T02:00:00+08:00"}',
    '{"type":"order","id":"o2","buyer":"dan","share":"s1","amount":"80.00","currency":"CNY",'
    '"at":"2026-03-20T12:00:00+08:00"}',
    '{"type":"order","id":"o3","buyer":"eve","share":"s2","amount":"30.00","currency":"CNY",'
    '"at":"2026-03-21T12:00:00+08:00"}',
    '{"type":"refund","id":"r3","order":"o3","at":"2026-03-22T12:00:00+08:00"}',
]
POLICY = {"kind": "capped_multilevel", "rates": ["10%", "5%"]}


def test_build_statement_lines_totals_and_manifest() -> None:
    evs = load_events(EVENTS)
    pol = load_policy(POLICY)
    st = build_statement(evs, pol, "2026-03", tz="+08:00", hold_days=7)
    rows = [(ln.payee, ln.order, ln.level, str(ln.amount), ln.state) for ln in st.lines]
    assert rows == [("amy", "o1", 2, "9.49 CNY", "available"), ("amy", "o2", 1, "8.00 CNY", "pending"),
                    ("bob", "o1", 1, "18.99 CNY", "available")]  # o0 is February, o3 fully refunded
    assert st.lines[0].base == Money(18999, "CNY") and st.lines[0].rate == Fraction(1, 20)
    assert st.totals["CNY"]["amount"] == "36.48"
    assert st.totals["CNY"]["payees"]["amy"] == {"amount": "17.49", "lines": 2}
    m = st.manifest
    assert m is not None
    assert m.events_sha256 == events_digest(evs) and m.policy_config_hash == pol.config_hash
    assert m.rounding == "down" and m.line_count == 3 and m.hold_days == 7
    assert m.as_of == "2026-03-22T12:00:00+08:00"
    assert m.merkle_root == root_of([ln.leaf_hash() for ln in st.lines]).hex()
    assert m.chain_root == m.computed_chain_root() and m.previous_root is None
    # in UTC, o1 (1 March 02:00 +08:00) belongs to February
    utc = build_statement(evs, pol, "2026-03", tz="UTC")
    assert {ln.order for ln in utc.lines} == {"o2"}
    # without tz, the zone the events carry (+08:00 on every one): o1 is in March, and the manifest says so
    own = build_statement(evs, pol, "2026-03")
    assert {ln.order for ln in own.lines} == {"o1", "o2"}
    assert own.manifest is not None and own.manifest.tz == "+08:00"
    # without a hold period every line is accrued; as_of cuts the events (o3 not refunded yet)
    early = build_statement(evs, pol, "2026-03", tz="+08:00", as_of=datetime(2026, 3, 21, 23, tzinfo=UTC))
    assert {ln.state for ln in early.lines} == {"accrued"}
    assert {ln.order for ln in early.lines} == {"o1", "o2", "o3"}


def test_statements_chain() -> None:
    evs = load_events(EVENTS)
    pol = load_policy(POLICY)
    feb = build_statement(evs, pol, "2026-02", tz="+08:00")
    mar = build_statement(evs, pol, "2026-03", tz="+08:00", previous=feb)
    assert mar.manifest is not None and feb.manifest is not None
    assert mar.manifest.previous_root == feb.manifest.chain_root and mar.manifest.previous_period == "2026-02"
    alone = build_statement(evs, pol, "2026-03", tz="+08:00")
    assert alone.manifest is not None
    assert alone.manifest.merkle_root == mar.manifest.merkle_root
    assert alone.manifest.chain_root != mar.manifest.chain_root


def test_periods() -> None:
    p = Period.parse("2026-12", "Asia/Shanghai")
    assert p.end.year == 2027 and p.end.month == 1
    r = Period.parse("2026-03-01..2026-03-15", "UTC")
    assert datetime(2026, 3, 15, 23, 59, tzinfo=UTC) in r
    assert datetime(2026, 3, 16, tzinfo=UTC) not in r
    assert datetime(2026, 3, 1, tzinfo=timezone(timedelta(hours=8))) not in r  # 28 Feb 16:00 UTC
    for bad in ("2026-13", "March", "2026-03-05..2026-03-01"):
        with pytest.raises(InvalidStatement) as exc:
            Period.parse(bad)
        assert exc.value.field == "period"
    with pytest.raises(InvalidStatement) as exc2:
        Period.parse("2026-03", "Mars/Olympus")
    assert exc2.value.field == "tz"


# ------------------------------------------------------------------------------------------ files
@settings(max_examples=15)
@given(programmes(max_orders=10))
def test_csv_and_json_round_trip_exactly(tmp_path_factory: pytest.TempPathFactory, prog: Programme) -> None:
    pol = load_policy({"kind": "capped_multilevel", "rates": ["1/3", "12.5%", "1%"], "rounding": "half_even"})
    st = build_statement(prog.events, pol, "2026-03", tz="+08:00", hold_days=1)
    out = tmp_path_factory.mktemp("st")
    paths = st.write(out)
    for kind in ("json", "csv"):
        back = read_statement(paths[kind])
        assert back.lines == st.lines
        assert back.manifest == st.manifest
        assert back.stated_totals == st.totals


def test_json_output_is_valid_and_one_line_per_statement_line(tmp_path: Path) -> None:
    st = seal_lines(GOLDEN_LINES, "2026-03")
    text = st.to_json()
    doc = json.loads(text)
    assert doc["format"] == "cps-engine-statement/1" and len(doc["lines"]) == 3
    assert sum(1 for x in text.splitlines() if x.startswith('{"payee"')) == 3
    empty = seal_lines([], "2026-03")
    path = tmp_path / "e.json"
    path.write_text(empty.to_json(), encoding="utf-8")
    assert read_statement(path).lines == ()


PLATFORM_EVENTS = [
    '{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00+08:00"}',
    '{"type":"share","id":"s2","sharer":"bob","parent":"s1","at":"2026-03-01T11:00:00+08:00"}',
    '{"type":"order","id":"o1","buyer":"cat","share":"s2","amount":"1234.56","currency":"CNY",'
    '"at":"2026-03-02T12:00:00+08:00"}',
]


def test_chinese_platform_csv_in_gbk_with_minor_units(tmp_path: Path) -> None:
    text = ("订单编号,分销员ID,分销层级,佣金比例(%),佣金(分),结算状态\n"
            "o1,bob,一级,10,12345,冻结中\n"
            "o1,amy,二级,5,6172,已结算\n")
    path = tmp_path / "platform.csv"
    path.write_bytes(text.encode("gbk"))
    cmap = ColumnMap(encoding="gbk", currency="CNY")
    st = read_statement(path, cmap)
    assert [(ln.order, ln.payee, ln.level, ln.rate, ln.amount, ln.state) for ln in st.lines] == [
        ("o1", "bob", 1, Fraction(1, 10), Money(12345, "CNY"), "pending"),
        ("o1", "amy", 2, Fraction(1, 20), Money(6172, "CNY"), "available")]
    assert st.rows == (2, 3) and st.manifest is None
    with pytest.raises(InvalidStatement) as exc:
        read_statement(path)  # read as UTF-8
    assert exc.value.field == "encoding"


def test_english_platform_csv_semicolons_decimal_comma_and_explicit_map(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("Order No;Affiliate;Commission (EUR);Payout Status;Notes\n"
                    "o1;bob;\u20ac1.234,50;settled;x\n", encoding="utf-8")
    st = read_statement(path, ColumnMap(decimal=",", currency="EUR"))
    assert st.lines[0].amount == Money(123450, "EUR") and st.lines[0].state == "available"
    path2 = tmp_path / "odd.csv"
    path2.write_text("ref,who,value,ccy\no1,bob,12.34,usd\n", encoding="utf-8")
    with pytest.raises(InvalidStatement) as exc:
        read_statement(path2)
    assert "order" in str(exc.value) and "--map" in str(exc.value)
    cmap = ColumnMap.parse_options(["order=ref", "payee=who", "amount=value"])
    st2 = read_statement(path2, cmap)
    assert st2.lines[0] == StatementLine("bob", "o1", Money(1234, "USD"))


def test_platform_json_records(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"lines": [{"order_id": "o1", "user_id": "bob", "commission": "18.99",
                                           "currency": "CNY", "level": 1}]}), encoding="utf-8")
    assert read_statement(path).lines == (StatementLine("bob", "o1", Money(1899, "CNY"), 1),)
    path.write_text('[{"order_id": "o1", "user_id": "bob", "commission": 18.99, "currency": "CNY"}]',
                    encoding="utf-8")
    with pytest.raises(InvalidStatement) as exc:
        read_statement(path)
    assert "float" in str(exc.value) and exc.value.line == 1


def test_every_bad_row_is_reported_with_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("order,payee,amount,currency,rate\n"
                    "o1,bob,1.999,CNY,10%\n"
                    "o2,amy,abc,CNY,10%\n"
                    "o3,cat,1.00,XXX,10%\n"
                    "o4,dan,1.00,CNY,150%\n"
                    "o5,,1.00,CNY,1%\n"
                    "o6,eve,1.00,CNY,1%\n", encoding="utf-8")
    with pytest.raises(InvalidStatement) as exc:
        read_statement(path)
    errs = exc.value.errors
    assert [(e.line, e.field) for e in errs] == [(2, "amount"), (3, "amount"), (4, "currency"), (5, "rate"),
                                                 (6, "payee")]


def test_column_map_file_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "map.toml"
    f.write_text('amount_unit = "minor"\ncurrency = "CNY"\n[columns]\norder = "单号"\n[states]\n"审核中" = "pending"\n',
                 encoding="utf-8")
    cmap = ColumnMap.load(f)
    assert cmap.columns == {"order": "单号"} and cmap.amount_unit == "minor"
    assert cmap.states == {"审核中": "pending"}
    for bad in ({"colums": {}}, {"columns": {"orderid": "x"}}, {"states": {"x": "gone"}}, {"amount_unit": "kg"}):
        with pytest.raises(InvalidStatement):
            ColumnMap.from_mapping(bad)
    with pytest.raises(InvalidStatement):
        ColumnMap.parse_options(["nonsense"])


def test_replacing_lines_requires_dropping_rows() -> None:
    st = Statement(tuple(GOLDEN_LINES), rows=(2, 3, 4))
    with pytest.raises(ValueError):
        replace(st, lines=st.lines[:1])
    assert replace(st, lines=st.lines[:1], rows=None).row_of(0) == 1


def test_leaf_hash_changes_with_every_field() -> None:
    ln = GOLDEN_LINES[0]
    variants = [replace(ln, payee="amz"), replace(ln, order="o2"), replace(ln, amount=Money(1898, "CNY")),
                replace(ln, amount=Money(1899, "USD")), replace(ln, level=3), replace(ln, level=None),
                replace(ln, base=Money(18998, "CNY")), replace(ln, rate=Fraction(1, 11)), replace(ln, state="paid")]
    hashes = {v.leaf_hash() for v in variants} | {ln.leaf_hash()}
    assert len(hashes) == len(variants) + 1
    assert ln.leaf_hash() == leaf_hash(ln.canonical())


@given(st.text(min_size=1, max_size=20).map(str.strip).filter(bool))
def test_canonical_encoding_is_utf8_json_and_round_trips(name: str) -> None:
    ln = replace(GOLDEN_LINES[0], payee=name)
    data = json.loads(ln.canonical().decode("utf-8"))
    assert data["payee"] == name
    assert StatementLine.from_dict(data) == ln
