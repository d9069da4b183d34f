"""``cps-engine ledger ...``: record events into a ledger and read balances and statements.

Mounted by the main CLI as ``cps-engine ledger`` (``ledger_app``).  ``--db`` is a SQLite file, or a
SQLAlchemy URL (``postgresql+psycopg://...``, ``mysql+pymysql://...``).  Bad input exits with status
2 and a message naming the record and field.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from cps_engine.cli_common import bad_input_exits, err, fail
from cps_engine.ledger.ledger import Ledger, sqlite_engine
from cps_engine.ledger.statement import build_statement
from cps_engine.models import iter_events

__all__ = ["ledger_app", "open_ledger", "parse_when"]

ledger_app = typer.Typer(name="ledger", help="Commission ledger: record events, balances, statements.",
                         no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
DbOpt = Annotated[str, typer.Option("--db", help="SQLite file or SQLAlchemy URL")]
PrefixOpt = Annotated[str, typer.Option("--prefix", help="table name prefix")]


def open_ledger(db: str, policy: Path | None = None, *, prefix: str = "cps_", **terms: object) -> Ledger:
    """A ledger on a SQLite path or a database URL; a new one needs ``policy``."""
    kwargs = {k: v for k, v in terms.items() if v is not None}
    if "://" in db:
        return Ledger(db, policy, prefix=prefix, **kwargs)  # type: ignore[arg-type]
    if policy is None and not Path(db).exists():
        raise FileNotFoundError(f"{db}: no such ledger (record into it with --policy first)")
    return Ledger(sqlite_engine(db), policy, prefix=prefix, **kwargs)  # type: ignore[arg-type]


def parse_when(text: str, *, end_of_day: bool = False, tz: str = "Z") -> datetime:
    """``2026-03-31`` (midnight in ``tz``; with ``end_of_day`` the next midnight) or a full ISO time.

    >>> parse_when("2026-03-31", end_of_day=True).isoformat()
    '2026-04-01T00:00:00+00:00'
    >>> parse_when("2026-03-01T08:00:00+08:00").isoformat()
    '2026-03-01T08:00:00+08:00'
    """
    zone = UTC if tz in ("Z", "UTC") else datetime.fromisoformat(f"2000-01-01T00:00:00{tz}").tzinfo
    assert isinstance(zone, timezone)
    text = text.strip()
    if len(text) == 10:
        d = date.fromisoformat(text)
        when = datetime.combine(d, time(0), tzinfo=zone)
        return when + timedelta(days=1) if end_of_day else when
    when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone)
    return when


@ledger_app.command("record")
def record_cmd(
    events: Annotated[Path, typer.Argument(help="events, JSON Lines")],
    db: DbOpt,
    policy: Annotated[Path | None, typer.Option("--policy", help="policy config (TOML/JSON); required "
                                                "for a new ledger, a different one adds a policy version")] = None,
    hold_days: Annotated[int | None, typer.Option("--hold-days", help="days before commission is available")] = None,
    min_payout: Annotated[list[str] | None, typer.Option("--min-payout", help="e.g. '10.00 CNY'")] = None,
    payout_fee: Annotated[list[str] | None, typer.Option("--payout-fee", help="'1%' or '2.00 CNY'")] = None,
    binding: Annotated[str | None, typer.Option("--binding", help="binding mode (new ledger only)")] = None,
    batch: Annotated[int, typer.Option("--batch", help="events per transaction")] = 1000,
    prefix: PrefixOpt = "cps_",
) -> None:
    """Record an events file (idempotent: re-recording the same file changes nothing)."""
    with bad_input_exits(ValueError):
        led = open_ledger(db, policy, prefix=prefix, hold_days=hold_days, min_payout=min_payout or None,
                          payout_fee=payout_fee or None, binding=binding)
        try:
            size = events.stat().st_size
            with Progress(TextColumn("recording"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                          console=err, transient=True, disable=size < 1_000_000 or not err.is_terminal) as bar:
                with open(events, encoding="utf-8") as fh:
                    total = sum(1 for line in fh if line.strip())
                task = bar.add_task("record", total=total)
                summary = led.record_many(iter_events(events), batch_size=batch,
                                          progress=lambda n: bar.advance(task, n))
            head = led.chain_head()
            parked = led.parked()
        finally:
            led.close()
    err.print(f"{events}: {summary}; chain head #{head.seq} {head.hash[:16]}…", highlight=False, soft_wrap=True)
    waiting = [p for p in parked if p.status == "parked"]
    if parked:
        err.print(f"{len(waiting)} parked, {len(parked) - len(waiting)} rejected "
                   f"(see `cps-engine ledger parked --db {db}`)", highlight=False)


@ledger_app.command("balance")
def balance_cmd(
    db: DbOpt,
    payee: Annotated[str | None, typer.Option("--payee", help="one payee")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="ISO time (default: now)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table | json")] = "table",
    prefix: PrefixOpt = "cps_",
) -> None:
    """Pending, available and paid balances per payee and currency (JSON: decimal strings)."""
    if fmt not in ("table", "json"):
        fail("--format must be table or json")
    with bad_input_exits(ValueError):
        led = open_ledger(db, prefix=prefix)
        try:
            when = parse_when(as_of) if as_of else None
            rows = led.balances(payee, as_of=when)
        finally:
            led.close()
    if fmt == "json":
        for b in rows:
            sys.stdout.write(json.dumps(b.as_json(), sort_keys=True, ensure_ascii=False) + "\n")
        return
    table = Table(title=f"Balances as of {when.isoformat() if when else 'now'}")
    for col in ("payee", "currency", "pending", "available", "paid", "fee"):
        table.add_column(col, justify="left" if col in ("payee", "currency") else "right")
    for b in rows:
        j = b.as_json()
        table.add_row(j["payee"], j["currency"], j["pending"], j["available"], j["paid"], j["fee"])
    Console().print(table)


@ledger_app.command("statement")
def statement_cmd(
    db: DbOpt,
    payee: Annotated[str, typer.Option("--payee", help="the payee")],
    start: Annotated[str, typer.Option("--from", help="first day (or ISO time), inclusive")],
    end: Annotated[str, typer.Option("--to", help="last day (inclusive) or ISO time (exclusive)")],
    fmt: Annotated[str, typer.Option("--format", help="csv | json")] = "csv",
    tz: Annotated[str, typer.Option("--tz", help="zone of plain dates, e.g. +08:00")] = "Z",
    prefix: PrefixOpt = "cps_",
) -> None:
    """A payee's statement for a period: opening, every movement, closing (CSV or JSON)."""
    if fmt not in ("csv", "json"):
        fail("--format must be csv or json")
    with bad_input_exits(ValueError):
        led = open_ledger(db, prefix=prefix)
        try:
            st = build_statement(led, payee, parse_when(start, tz=tz), parse_when(end, end_of_day=True, tz=tz))
        finally:
            led.close()
    if fmt == "json":
        st.write_json(sys.stdout)
    else:
        st.write_csv(sys.stdout)


@ledger_app.command("parked")
def parked_cmd(db: DbOpt, prefix: PrefixOpt = "cps_") -> None:
    """Events kept but not applied: waiting for a predecessor, or rejected (JSON Lines)."""
    with bad_input_exits(ValueError):
        led = open_ledger(db, prefix=prefix)
        try:
            rows = led.parked()
        finally:
            led.close()
    for p in rows:
        sys.stdout.write(json.dumps({"type": p.kind, "id": p.id, "status": p.status, "waits_for": p.waits_for,
                                     "reason": p.reason}, ensure_ascii=False) + "\n")


@ledger_app.command("verify")
def verify_cmd(db: DbOpt, prefix: PrefixOpt = "cps_") -> None:
    """Recompute the hash chain and check every posting balances (exit 1 if not)."""
    with bad_input_exits(ValueError):
        led = open_ledger(db, prefix=prefix)
        try:
            v = led.verify()
        finally:
            led.close()
    for p in v.problems:
        err.print(f"- {p}", highlight=False)
    if not v.ok:
        raise typer.Exit(1)
    err.print(f"ok: {v.entries} entries, head {v.head.hash}", highlight=False, soft_wrap=True)
