"""A backend engineer's view: record commissions in the same transaction as the order.

A web handler (framework-free here: a plain function taking a JSON-like payload) inserts the order
into the application's own table and records the commission event through ``Ledger(conn)`` on the
*same* connection, inside the *same* ``engine.begin()`` transaction. Either both are written or
neither is: a failure after ``record`` rolls the commissions back with the order.

Run it from anywhere (it writes ``shop.db`` in the current directory)::

    python examples/backend_handler.py
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert

from cps_engine import Ledger, Money
from cps_engine.ledger import sqlite_engine

DB = Path("shop.db")

#: the application's own table, next to the ledger's ``cps_*`` tables in the same database
metadata = sa.MetaData()
orders = sa.Table(
    "shop_orders", metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("buyer", sa.String, nullable=False),
    sa.Column("amount", sa.String, nullable=False),
)

POLICY = {"kind": "capped_multilevel", "rates": ["10%", "5%", "2%"], "cap": "17%"}


def set_up(engine: sa.Engine) -> None:
    """Once, at deploy time: the app's tables and the ledger with its terms (policy, hold days)."""
    metadata.create_all(engine)
    Ledger(engine, POLICY, hold_days=7).close()


def handle_event(engine: sa.Engine, payload: dict[str, Any]) -> dict[str, Any]:
    """POST /events: one share, bind or order, in one transaction with the app's own writes."""
    with engine.begin() as conn:
        if payload["type"] == "order":
            # a retried request must not fail on the app's side either
            conn.execute(insert(orders).values(id=payload["id"], buyer=payload["buyer"], amount=payload["amount"])
                         .on_conflict_do_nothing())
        recorded = Ledger(conn).record(payload)   # cheap per request: schema, terms and graph are cached
        # the transaction commits when the block ends; an exception here rolls back both writes
    return {
        "event": recorded.id,
        "outcome": recorded.outcome.value,
        "lines": [{"payee": line.payee, "level": line.level, "amount": str(line.amount),
                   "rate": f"{line.rate * 100}%", "path": "/".join(line.provenance.path)}
                  for line in recorded.lines],
        "legs": [{"account": leg.account, "payee": leg.payee, "amount": str(Money(leg.amount, leg.currency))}
                 for leg in recorded.legs],
    }


def main() -> None:
    DB.unlink(missing_ok=True)
    engine = sqlite_engine(DB)
    set_up(engine)
    requests = [
        {"type": "share", "id": "s1", "sharer": "amy", "at": "2026-03-01T10:00:00+08:00"},
        {"type": "share", "id": "s2", "sharer": "bob", "parent": "s1", "at": "2026-03-01T11:00:00+08:00"},
        {"type": "share", "id": "s3", "sharer": "cy", "parent": "s2", "at": "2026-03-01T11:30:00+08:00"},
        {"type": "order", "id": "o1", "buyer": "dan", "share": "s3", "amount": "199.00", "currency": "CNY",
         "shipping": "10.00", "at": "2026-03-01T12:00:00+08:00"},
    ]
    for payload in requests:
        response = handle_event(engine, payload)
        print(f"{response['event']}: {response['outcome']}")
        for line in response["lines"]:
            print(f"  line  level {line['level']}  {line['payee']:<4} {line['amount']:>12}  at {line['rate']:>4}"
                  f"  via {line['path']}")
        for leg in response["legs"]:
            print(f"  leg   {leg['account']:<28} {leg['payee'] or '-':<4} {leg['amount']:>12}")

    # the same event again (a retried request) is a no-op: nothing is posted twice
    print(f"retry o1: {handle_event(engine, requests[-1])['outcome']}")

    # a failing handler rolls back the order *and* its commissions
    try:
        with engine.begin() as conn:
            conn.execute(orders.insert().values(id="o2", buyer="eve", amount="50.00"))
            Ledger(conn).record({"type": "order", "id": "o2", "buyer": "eve", "share": "s2", "amount": "50.00",
                                 "currency": "CNY", "at": "2026-03-02T09:00:00+08:00"})
            raise RuntimeError("payment gateway timed out")
    except RuntimeError as exc:
        print(f"o2 rolled back ({exc})")
    with engine.connect() as conn:
        print("orders in the shop table:", [r.id for r in conn.execute(sa.select(orders.c.id))])

    with Ledger(engine) as ledger:
        for b in ledger.balances(as_of="2026-03-10T00:00:00+08:00"):
            print(f"balance {b.payee}: pending {b.pending}, available {b.available}")
    engine.dispose()


if __name__ == "__main__":
    main()
