"""Events: JSON Lines in and out, typed errors naming line and field, duplicates, every bad line at once."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cps_engine import (
    BindEvent,
    DuplicateEvent,
    EventValidationError,
    InvalidEvent,
    Money,
    OrderEvent,
    PayoutEvent,
    RefundEvent,
    ShareEvent,
    dump_events,
    iter_events,
    load_events,
    parse_event,
    validate_events,
)
from cps_engine.models import event_to_json
from tests.strategies import programmes

AT = "2026-03-01T10:00:00+08:00"


def order(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"type": "order", "id": "o1", "buyer": "dave", "amount": "199.00", "currency": "CNY",
                            "at": AT}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


def jl(*records: dict[str, Any] | str) -> list[str]:
    return [r if isinstance(r, str) else json.dumps(r) for r in records]


# ------------------------------------------------------------------ parsing each type


def test_each_event_type_parses() -> None:
    share = parse_event({"type": "share", "id": "s2", "sharer": "bob", "parent": "s1", "at": AT,
                         "campaign": "spring", "product": "tea"})
    assert isinstance(share, ShareEvent) and share.parent == "s1" and share.key == ("share", "s2")
    bind = parse_event({"type": "bind", "id": "b1", "user": "cat", "upline": "bob", "at": AT, "registration": True})
    assert isinstance(bind, BindEvent) and bind.registration
    o = parse_event(order(shipping="10.00", tax="2.50", share="s2",
                          lines=[{"sku": "tea", "category": "food", "quantity": 2, "unit_price": "93.25"}]))
    assert isinstance(o, OrderEvent)
    assert (o.amount_minor, o.shipping_minor, o.tax_minor) == (19900, 1000, 250)
    assert o.money == Money(19900, "CNY") and o.lines is not None and o.lines[0].quantity == 2
    refund = parse_event({"type": "refund", "id": "r1", "order": "o1", "amount": "5.00", "at": AT})
    assert isinstance(refund, RefundEvent) and refund.amount_minor("CNY") == 500 and refund.kind == "refund"
    full = parse_event({"type": "refund", "id": "r2", "order": "o1", "at": AT, "kind": "chargeback"})
    assert isinstance(full, RefundEvent) and full.amount_minor("CNY") is None
    payout = parse_event({"type": "payout", "id": "p1", "payee": "bob", "amount": "18.99", "currency": "cny",
                          "at": AT})
    assert isinstance(payout, PayoutEvent) and payout.money == Money(1899, "CNY")


def test_amounts_follow_the_currency_exponent() -> None:
    assert parse_event(order(amount="1999", currency="JPY")).amount_minor == 1999  # type: ignore[union-attr]
    assert parse_event(order(amount="12.345", currency="KWD")).amount_minor == 12345  # type: ignore[union-attr]
    with pytest.raises(InvalidEvent, match="more decimals") as info:
        parse_event(order(amount="1999.5", currency="JPY"))
    assert info.value.field == "amount"


def test_parse_event_passes_models_through() -> None:
    ev = parse_event(order())
    assert parse_event(ev) is ev  # type: ignore[arg-type]


def test_refund_currency_must_match_the_order() -> None:
    refund = parse_event({"type": "refund", "id": "r1", "order": "o1", "amount": "5", "currency": "USD", "at": AT})
    assert isinstance(refund, RefundEvent)
    with pytest.raises(InvalidEvent) as info:
        refund.amount_minor("CNY")
    assert (info.value.record, info.value.field) == ("r1", "currency")
    with pytest.raises(InvalidEvent) as info2:
        parse_event({"type": "refund", "id": "r1", "order": "o1", "amount": "5.001", "at": AT}).amount_minor(  # type: ignore[union-attr]
            "CNY")
    assert info2.value.field == "amount"


# ------------------------------------------------------------------ timestamps


@pytest.mark.parametrize("at", ["2026-03-01T10:00:00+08:00", "2026-03-01T02:00:00Z", "2026-03-01T02:00:00+00:00",
                                "2026-03-01T02:00:00.123456-05:00"])
def test_timestamps_with_a_zone_are_accepted(at: str) -> None:
    ev = parse_event(order(at=at))
    assert ev.at.utcoffset() is not None


@pytest.mark.parametrize("at", ["2026-03-01T10:00:00", "2026-03-01", "yesterday", "", None])
def test_timestamps_without_a_zone_are_refused(at: object) -> None:
    raw = order()
    raw["at"] = at
    with pytest.raises(InvalidEvent) as info:
        parse_event(raw, line=4)
    assert (info.value.field, info.value.line, info.value.record) == ("at", 4, "o1")
    assert "line 4" in str(info.value) and "'at'" in str(info.value)


def test_same_instant_in_two_zones_is_equal() -> None:
    a = parse_event(order(at="2026-03-01T10:00:00+08:00"))
    b = parse_event(order(at="2026-03-01T02:00:00Z"))
    assert a.at == b.at and a.at - b.at == timedelta(0)


# ------------------------------------------------------------------ bad records name line and field

BAD_RECORDS: list[tuple[str, dict[str, Any], str]] = [
    ("float amount", order(amount=199.0), "amount"),
    ("negative amount", order(amount="-1.00"), "amount"),
    ("too many decimals", order(amount="1.001"), "amount"),
    ("unknown currency", order(currency="XXX"), "currency"),
    ("missing buyer", order(buyer=None), "buyer"),
    ("empty buyer", order(buyer="  "), "buyer"),
    ("unknown field", order(coupon="X1"), "coupon"),
    ("unknown field in a line", order(lines=[{"sku": "a", "unit_price": "1", "colour": "red"}]), "lines.0.colour"),
    ("quantity zero", order(lines=[{"sku": "a", "unit_price": "1", "quantity": 0}]), "lines.0.quantity"),
    ("quantity as text", order(lines=[{"sku": "a", "unit_price": "1", "quantity": "2"}]), "lines.0.quantity"),
    ("shipping + tax over the amount", order(amount="10.00", shipping="6.00", tax="5.00"), "amount"),
    ("unknown type", {"type": "gift", "id": "g1", "at": AT}, "type"),
    ("missing type", {"id": "g1", "at": AT}, "type"),
    ("missing id", {"type": "share", "sharer": "amy", "at": AT}, "id"),
    ("share without sharer", {"type": "share", "id": "s1", "at": AT}, "sharer"),
    ("bind without upline", {"type": "bind", "id": "b1", "user": "u", "at": AT}, "upline"),
    ("bind registration not bool", {"type": "bind", "id": "b1", "user": "u", "upline": "v", "at": AT,
                                    "registration": "maybe"}, "registration"),
    ("negative refund", {"type": "refund", "id": "r1", "order": "o1", "amount": "-5", "at": AT}, "amount"),
    ("zero refund", {"type": "refund", "id": "r1", "order": "o1", "amount": "0", "at": AT}, "amount"),
    ("bad refund kind", {"type": "refund", "id": "r1", "order": "o1", "kind": "gift", "at": AT}, "kind"),
    ("zero payout", {"type": "payout", "id": "p1", "payee": "b", "amount": "0", "currency": "CNY", "at": AT},
     "amount"),
    ("float payout", {"type": "payout", "id": "p1", "payee": "b", "amount": 1.5, "currency": "CNY", "at": AT},
     "amount"),
]


@pytest.mark.parametrize(("what", "raw", "field"), BAD_RECORDS, ids=[b[0] for b in BAD_RECORDS])
def test_bad_record_names_line_and_field(what: str, raw: dict[str, Any], field: str) -> None:
    lines = jl({"type": "share", "id": "s0", "sharer": "amy", "at": AT}, raw)
    with pytest.raises(EventValidationError) as info:
        load_events(lines)
    (err,) = info.value.errors
    assert isinstance(err, InvalidEvent) and isinstance(err, ValueError)
    assert err.line == 2
    assert err.field == field, str(err)
    if isinstance(raw.get("id"), str):
        assert err.record == raw["id"]
    with pytest.raises(InvalidEvent) as single:
        list(iter_events(lines))
    assert single.value.line == 2 and single.value.field == field


@pytest.mark.parametrize("amount", ["-0.01", "-100"])
def test_negative_amounts_are_refused_in_orders_but_allowed_as_money(amount: str) -> None:
    assert Money.of(amount, "CNY").minor < 0
    for raw in (order(amount=amount), order(shipping=amount), order(tax=amount),
                order(lines=[{"sku": "a", "unit_price": amount}])):
        with pytest.raises(InvalidEvent, match="negative"):
            parse_event(raw)


def test_shipping_plus_tax_up_to_the_amount_is_fine() -> None:
    ev = parse_event(order(amount="10.00", shipping="6.00", tax="4.00"))
    assert isinstance(ev, OrderEvent) and ev.shipping_minor + ev.tax_minor == ev.amount_minor
    with pytest.raises(InvalidEvent, match="shipping \\+ tax exceed"):
        parse_event(order(amount="10.00", shipping="6.00", tax="4.01"))


def test_refund_without_order_names_the_order_field() -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_event({"type": "refund", "id": "r1", "at": AT})
    assert info.value.field == "order"


def test_bad_shipping_names_the_shipping_field() -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_event(order(shipping="1.001"))
    assert info.value.field == "shipping"


# ------------------------------------------------------------------ whole files


def test_every_bad_line_is_reported_at_once(tmp_path: Path) -> None:
    text = "\n".join([
        json.dumps({"type": "share", "id": "s1", "sharer": "amy", "at": AT}),        # 1 ok
        json.dumps(order(amount=1.5)),                                                 # 2 float
        "",                                                                            # 3 blank: skipped
        json.dumps({"type": "share", "id": "s2", "sharer": "bob", "at": "2026-03-01T10:00:00"}),  # 4 no zone
        "{not json",                                                                   # 5
        "[1, 2]",                                                                      # 6 not an object
        json.dumps({"type": "share", "id": "s1", "sharer": "zed", "at": AT}),          # 7 dup, different
        json.dumps({"type": "share", "id": "s1", "sharer": "amy", "at": AT}),          # 8 exact repeat: ok
        json.dumps(order(id="o9")),                                                    # 9 ok
    ]) + "\n"
    path = tmp_path / "events.jsonl"
    path.write_text(text, encoding="utf-8")
    expected = [(2, "amount", InvalidEvent), (4, "at", InvalidEvent), (5, None, InvalidEvent),
                (6, None, InvalidEvent), (7, "id", DuplicateEvent)]
    for source in (path, str(path), io.StringIO(text), text.splitlines(keepends=True)):
        errors = validate_events(source)
        assert [(e.line, e.field, type(e)) for e in errors] == expected
    with pytest.raises(EventValidationError) as info:
        load_events(path)
    assert [e.line for e in info.value.errors] == [2, 4, 5, 6, 7]
    message = str(info.value)
    assert "5 bad record(s)" in message and "line 7" in message and "'s1'" in message
    with pytest.raises(InvalidEvent) as first:
        list(iter_events(path))
    assert first.value.line == 2


def test_clean_file_validates_empty(tmp_path: Path) -> None:
    assert validate_events(jl(order(), order(id="o2"))) == []
    assert validate_events([]) == [] and load_events([]) == []


def test_duplicate_ids() -> None:
    a = {"type": "share", "id": "s1", "sharer": "amy", "at": AT}
    evs = load_events(jl(a, a, dict(a)))  # at-least-once delivery: kept once
    assert len(evs) == 1
    with pytest.raises(EventValidationError) as info:
        load_events(jl(a, {**a, "sharer": "bob"}))
    (err,) = info.value.errors
    assert isinstance(err, DuplicateEvent) and (err.record, err.field, err.line) == ("s1", "id", 2)
    assert "line 1" in err.message
    # identity is (type, id): a share and an order may share an id string
    assert len(load_events(jl(a, order(id="s1")))) == 2
    # the same instant written in another zone is the same payload
    assert len(load_events(jl(a, {**a, "at": "2026-03-01T02:00:00Z"}))) == 1


# ------------------------------------------------------------------ round trip


def test_dump_is_canonical_and_round_trips(tmp_path: Path) -> None:
    evs = [parse_event(order(shipping="10.00", lines=[{"sku": "tea", "unit_price": "189.00"}])),
           parse_event({"type": "share", "id": "s1", "sharer": "艾米", "at": AT})]
    line = event_to_json(evs[0])
    assert json.loads(line)["amount"] == "199.00" and "tax" not in json.loads(line)
    assert list(json.loads(line)) == sorted(json.loads(line))
    assert "艾米" in event_to_json(evs[1])
    path = tmp_path / "out.jsonl"
    dump_events(evs, path)
    assert load_events(path) == evs
    dump_events(load_events(path), tmp_path / "again.jsonl")
    assert (tmp_path / "again.jsonl").read_bytes() == path.read_bytes()


@given(programmes(currencies=("CNY", "JPY", "KWD")))
def test_round_trip_of_random_programmes(prog: Any) -> None:
    buf = io.StringIO()
    dump_events(prog.events, buf)
    text = buf.getvalue()
    assert text.count("\n") == len(prog.events)
    back = load_events(io.StringIO(text))
    assert back == prog.events
    assert [parse_event(json.loads(t)) for t in text.splitlines()] == prog.events
    assert validate_events(text.splitlines()) == []
    for ev in back:
        if isinstance(ev, OrderEvent):
            assert isinstance(ev.amount, Decimal)


@given(st.decimals(min_value=0, max_value=10**12, places=2, allow_nan=False, allow_infinity=False))
def test_order_amount_round_trips_exactly(amount: Decimal) -> None:
    ev = parse_event(order(amount=str(amount)))
    assert isinstance(ev, OrderEvent)
    assert ev.amount_minor == int(amount * 100)
    assert parse_event(json.loads(event_to_json(ev))) == ev
