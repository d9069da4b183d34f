"""``ledger export --format beancount``: the file passes beancount's checks and its balances are the ledger's."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cps_engine.ledger import Ledger
from cps_engine.ledger.export import _all_entries, account_component, payee_accounts, payee_of_component, to_beancount
from cps_engine.ledger.statement import parse_zone
from cps_engine.times import to_micros
from tests.ledger.conftest import MakeLedger
from tests.ledger.helpers import POLICY, day, order, payout, refund, share

loader = pytest.importorskip("beancount.loader")
from beancount.core import account as bc_account  # noqa: E402
from beancount.core import data as bc_data  # noqa: E402

HOSTILE = ["amy", '=HYPERLINK("http://x","y")', "<script>alert(1)</script>", "\x1b[31mred\x1b[0m", "张三",
           "a:b", "P-x", "a-2d", "a\u202eb", "x\ny", "-", "Bob"]


def events() -> list[Any]:
    """Orders in four currencies (exponents 0, 2 and 3) through shares of hostile payees, refunds
    before and after the hold, a full refund, and payouts with fees."""
    evs: list[Any] = []
    for i, who in enumerate(HOSTILE):
        evs.append(share(f"s{i}", who, f"s{i - 1}" if i % 3 else None, at=i * 0.01))
    currencies = ["CNY", "USD", "JPY", "BHD"]
    amounts = {"CNY": "188.88", "USD": "19.99", "JPY": "12345", "BHD": "7.125"}
    for i in range(len(HOSTILE)):
        cur = currencies[i % 4]
        oid = "o3\x1b[2J=cmd|' /C calc'!A0\n" if i == 3 else f"o{i}"  # a hostile event id too
        evs.append(order(oid, f"s{i}", amounts[cur], at=1 + i * 0.3, currency=cur, buyer=f"buyer{i}"))
    evs += [refund("r1", "o1", "5.00", at=2.5),       # before the hold ends
            refund("r2", "o2", None, at=3),           # full refund
            refund("r5", "o5", "1.000", at=12)]       # after the hold: claws back available
    return evs


def payouts(led: Ledger) -> list[Any]:
    """Half the available balance of every funded payee and currency, with a fee."""
    funded = [b for b in led.balances(as_of=day(19)) if b.available.minor >= 2]
    assert len({b.currency for b in funded}) >= 3
    exp = {"JPY": 0, "BHD": 3}
    return [payout(f"p{i}", b.payee, str(Decimal(b.available.minor // 2).scaleb(-exp.get(b.currency, 2))),
                   at=19 + i * 0.1, currency=b.currency) for i, b in enumerate(funded)]


def day_balances(entries: list[Any], before: date) -> dict[tuple[str, str], int]:
    """(account, currency) -> minor units of every posting dated before ``before`` (beancount's view)."""
    out: dict[tuple[str, str], int] = defaultdict(int)
    for e in entries:
        if isinstance(e, bc_data.Transaction) and e.date < before:
            for p in e.postings:
                exp = {"JPY": 0, "BHD": 3}.get(p.units.currency, 2)
                minor = p.units.number.scaleb(exp)
                assert minor == minor.to_integral_value(), p  # exact minor units
                out[(p.account, p.units.currency)] += int(minor)
    return out


def check_export(led: Ledger, tz: str | None) -> str:
    text = to_beancount(led, tz=tz)
    assert all(ch.isprintable() or ch == "\n" for ch in text), "a raw control character reached the file"
    entries, errors, _ = loader.load_string(text)
    assert errors == [], [e.message for e in errors][:5]  # bean-check: syntax, balance, and balance assertions

    # every account is valid, and maps back to its payee; the real id is kept in metadata
    opens = [e for e in entries if isinstance(e, bc_data.Open)]
    ids: dict[str, str] = {}
    for o in opens:
        assert bc_account.is_valid(o.account), o.account
        parts = o.account.split(":")
        if o.account != "Expenses:Cps:Commissions":
            component = parts[3] if parts[0] == "Liabilities" else parts[-1]
            real = o.meta["payee"] if "payee" in o.meta else json.loads(o.meta["payee-json"])
            assert payee_of_component(component) == real
            assert ids.setdefault(component, real) == real
    assert sorted(ids.values()) == sorted(HOSTILE)  # one distinct component per payee

    # every leg is exported exactly once, with its event and hash
    legs = {e.seq: e for e in _all_entries(led)}  # hold markers included
    seen: dict[int, str] = {}
    for t in (e for e in entries if isinstance(e, bc_data.Transaction)):
        for p in t.postings:
            if p.meta and "seq" in p.meta:
                seq = int(p.meta["seq"])
                assert seq not in seen
                seen[seq] = p.meta["hash"]
                ev = t.meta["event"] if "event" in t.meta else json.loads(t.meta["event-json"])
                assert ev == legs[seq].event
    for n in (e for e in entries if isinstance(e, bc_data.Note)):  # holds and releases: zero markers
        seen[int(n.meta["seq"])] = n.meta["hash"]
    assert seen == {s: e.hash for s, e in legs.items()}

    # at every day boundary, minus each account's balance is the ledger's balance
    zone = parse_zone(tz or "+08:00")
    txn_dates = sorted({e.date for e in entries if isinstance(e, bc_data.Transaction)})
    days = [txn_dates[0] + timedelta(days=n) for n in range((txn_dates[-1] - txn_dates[0]).days + 2)]
    for d in days:
        as_of = to_micros(datetime.combine(d, time(0), tzinfo=zone)) - 1
        bean = day_balances(entries, d)
        expected: dict[tuple[str, str], int] = defaultdict(int)
        for b in led.balances(as_of=as_of):
            accts = payee_accounts(b.payee)
            for state in ("pending", "available", "paid", "fee"):
                expected[(accts[state], b.currency)] = getattr(b, state).minor
        payee_bean = {k: -v for k, v in bean.items() if k[0] != "Expenses:Cps:Commissions" and v}
        assert payee_bean == {k: v for k, v in expected.items() if v}, d
        # the merchant's expense is what the payees were credited, net (every transaction balances)
        merchant = {k[1]: v for k, v in bean.items() if k[0] == "Expenses:Cps:Commissions"}
        for cur, v in merchant.items():
            assert v == sum(x for (a, c), x in expected.items() if c == cur), (d, cur)
    return text


def test_export_passes_bean_check_and_equals_balances(make_ledger: MakeLedger) -> None:
    led = make_ledger(POLICY, hold_days=7, payout_fee=["1%", "0.50 CNY"])
    led.record_many(events())
    pending = sorted({b.payee for b in led.balances(as_of=day(2.5)) if b.pending.minor > 0})
    assert len(pending) >= 2
    led.hold(pending[0], "ring\x1b[0m", at=day(3), id="h1")  # released after its commissions' hold ends
    led.release(pending[0], at=day(15), id="h1r")
    led.hold(pending[1], "never released", at=day(4), id="h2")
    pays = payouts(led)
    led.record_many(pays)
    assert led.parked() == [], led.parked()
    assert len(pays) >= 4 and any(e.kind == "payout" and e.account == "fee" and e.amount > 0 for e in led.entries())
    text = check_export(led, None)  # default: the offset the events were recorded with (+08:00)
    assert "+08:00" in text.splitlines()[1]
    assert "event-json: " in text and "payee-json: " in text  # the hostile ids went the exact, escaped way
    check_export(led, "America/New_York")  # another zone with DST: other days, same balances at each
    check_export(led, "UTC")


def test_export_of_an_empty_ledger_loads() -> None:
    with Ledger.open(":memory:", POLICY) as led:
        entries, errors, _ = loader.load_string(to_beancount(led))
        assert errors == [] and entries == []


@given(st.text(max_size=12))
def test_account_component_is_valid_and_injective(payee: str) -> None:
    c = account_component(payee)
    assert bc_account.is_valid(f"Liabilities:Cps:Payees:{c}:Pending")
    assert c.isascii()
    assert payee_of_component(c) == payee  # so two payees never share an account


def test_account_component_examples() -> None:
    assert account_component("a-2d") != account_component("a-")
    assert account_component("A") == "P-A" and account_component("") == "P-"
    with pytest.raises(ValueError):
        payee_of_component("P-a-zz")
    with pytest.raises(ValueError):
        payee_of_component("amy")
