"""The ledger part of ``cps-engine demo``: record a programme into a SQLite ledger and show balances."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from cps_engine.ledger.ledger import Balance, Ledger, RecordSummary, as_micros
from cps_engine.models import Event
from cps_engine.money import Money
from cps_engine.policies import PolicyConfig

__all__ = ["LedgerDemo", "demo_summary", "run_demo"]


@dataclass
class LedgerDemo:
    """What the demo recorded: the outcome, balances as of the last event, totals per currency."""

    path: Path
    summary: RecordSummary
    as_of_us: int
    balances: list[Balance]
    totals: dict[str, dict[str, Money]]
    parked: int
    rejected: int
    entries: int
    head: str
    verified: bool

    def renderable(self, top: int = 10) -> Group:
        """A rich renderable: a line about the ledger, totals per currency, the top payees."""
        from cps_engine.ledger.hashing import iso_us

        info = Text(f"Ledger {self.path.name}: {self.summary}; {self.entries} entries, chain head "
                    f"{self.head[:16]}… ({'verified' if self.verified else 'VERIFY FAILED'}); "
                    f"{self.parked} parked, {self.rejected} rejected.  Balances as of {iso_us(self.as_of_us)}")
        totals = Table(title="Ledger totals (all payees)")
        for col in ("currency", "pending", "available", "paid", "fee"):
            totals.add_column(col, justify="left" if col == "currency" else "right")
        for cur, row in sorted(self.totals.items()):
            totals.add_row(Text(cur), *(str(row[k].amount) for k in ("pending", "available", "paid", "fee")))
        best = sorted(self.balances, key=lambda b: (-b.earned.minor, b.payee))[:top]
        payees = Table(title=f"Top {len(best)} payees by commission earned")
        for col in ("payee", "currency", "earned", "reversed", "pending", "available", "paid"):
            payees.add_column(col, justify="left" if col in ("payee", "currency") else "right")
        for b in best:
            payees.add_row(Text(b.payee), Text(b.currency), *(str(m.amount) for m in (b.earned, b.reversed, b.pending,
                                                                          b.available, b.paid)))
        return Group(info, totals, payees)


def run_demo(events: Iterable[Event], policy: PolicyConfig | Mapping[str, Any], path: str | Path, *,
             hold_days: int = 7, min_payout: str | None = None) -> LedgerDemo:
    """Record ``events`` into the SQLite ledger at ``path`` (idempotent if it already holds them)."""
    evs = list(events)
    path = Path(path)
    with Ledger.open(path, policy, hold_days=hold_days, min_payout=min_payout, synchronous="NORMAL") as led:
        summary = led.record_many(evs)
        as_of = max((as_micros(e.at) for e in evs), default=0)
        balances = led.balances(as_of=as_of)
        totals: dict[str, dict[str, Money]] = {}
        for b in balances:
            row = totals.setdefault(b.currency, {k: Money(0, b.currency) for k in ("pending", "available", "paid",
                                                                                     "fee")})
            row["pending"] += b.pending
            row["available"] += b.available
            row["paid"] += b.paid
            row["fee"] += b.fee
        parked = led.parked()
        v = led.verify()
        return LedgerDemo(path, summary, as_of, balances, totals, sum(p.status == "parked" for p in parked),
                          sum(p.status == "rejected" for p in parked), v.entries, v.head.hash, v.ok)


def demo_summary(events: Iterable[Event], policy: PolicyConfig | Mapping[str, Any], path: str | Path, *,
                 hold_days: int = 7, top: int = 10) -> Group:
    """Record the programme into a SQLite ledger at ``path`` and return a rich renderable of its balances
    (``console.print(demo_summary(events, policy, "demo-ledger.db"))``)."""
    return run_demo(events, policy, path, hold_days=hold_days).renderable(top)
