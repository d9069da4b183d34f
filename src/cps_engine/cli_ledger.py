"""``cps-engine ledger ...``: record events into a ledger and read balances and statements.

Mounted by the main CLI as ``cps-engine ledger`` (``ledger_app``).  ``--db`` is a SQLite file, or a
SQLAlchemy URL (``postgresql+psycopg://...``, ``mysql+pymysql://...``).  Bad input exits with status
2 and a message naming the record and field.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, time, timezone
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from cps_engine.cli_common import bad_input_exits, cell, console, err, fail, output_file, safe, write_stdout
from cps_engine.errors import InvalidInput, ValueOutOfRange
from cps_engine.ledger.ledger import Ledger, sqlite_engine
from cps_engine.ledger.statement import build_statement
from cps_engine.limits import MAX_DAYS, add_days, check_time
from cps_engine.models import iter_events
from cps_engine.textio import CsvWriter

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


def parse_when(text: str, *, end_of_day: bool = False, tz: str = "Z", field: str = "--as-of") -> datetime:
    """``2026-03-31`` (midnight in ``tz``; with ``end_of_day`` the next midnight) or a full ISO time,
    within the supported range (:mod:`cps_engine.limits`); a typed error naming ``field`` otherwise.

    >>> parse_when("2026-03-31", end_of_day=True).isoformat()
    '2026-04-01T00:00:00+00:00'
    >>> parse_when("2026-03-01T08:00:00+08:00").isoformat()
    '2026-03-01T08:00:00+08:00'
    >>> parse_when("9999-12-31", end_of_day=True, field="--to")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cps_engine.errors.ValueOutOfRange: field '--to': time 9999-12-31T00:00:00+00:00 is outside the supported range ...
    """
    try:
        zone = UTC if tz in ("Z", "UTC") else datetime.fromisoformat(f"2000-01-01T00:00:00{tz}").tzinfo
    except ValueError:
        raise InvalidInput(f"time zone {tz!r} is not Z, UTC or an offset such as +08:00", field="--tz") from None
    if not isinstance(zone, timezone):
        raise InvalidInput(f"time zone {tz!r} is not Z, UTC or an offset such as +08:00", field="--tz")
    text = text.strip()
    try:
        if len(text) == 10:
            when = datetime.combine(date.fromisoformat(text), time(0), tzinfo=zone)
        else:
            when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
            if when.tzinfo is None:
                when = when.replace(tzinfo=zone)
    except ValueError:
        raise InvalidInput(f"{text[:80]!r} is not a date (2026-03-31) or an ISO-8601 time", field=field) from None
    except OverflowError:
        raise ValueOutOfRange(f"{text[:80]!r} is outside the supported range of times", field=field) from None
    check_time(when, field=field)
    return add_days(when, 1, field=field) if end_of_day and len(text) == 10 else when


@ledger_app.command("record")
def record_cmd(
    events: Annotated[Path, typer.Argument(help="events, JSON Lines")],
    db: DbOpt,
    policy: Annotated[Path | None, typer.Option("--policy", help="policy config (TOML/JSON); required "
                                                "for a new ledger, a different one adds a policy version")] = None,
    hold_days: Annotated[int | None, typer.Option("--hold-days", min=0, max=MAX_DAYS,
                                                  help="days before commission is available")] = None,
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
                with open(events, "rb") as fh:  # bytes: the events reader reports bad text by line
                    total = sum(1 for line in fh if line.strip())
                task = bar.add_task("record", total=total)
                summary = led.record_many(iter_events(events), batch_size=batch,
                                          progress=lambda n: bar.advance(task, n))
            head = led.chain_head()
            parked = led.parked()
        finally:
            led.close()
    err.print(f"{safe(events)}: {safe(summary)}; chain head #{head.seq} {safe(head.hash[:16])}…", highlight=False,
              soft_wrap=True)
    waiting = [p for p in parked if p.status == "parked"]
    if parked:
        err.print(f"{len(waiting)} parked, {len(parked) - len(waiting)} rejected "
                   f"(see `cps-engine ledger parked --db {safe(db)}`)", highlight=False)


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
        when = parse_when(as_of) if as_of else None
        led = open_ledger(db, prefix=prefix)
        try:
            rows = led.balances(payee, as_of=when)
        finally:
            led.close()
        if fmt == "json":
            write_stdout("".join(json.dumps(b.as_json(), sort_keys=True, ensure_ascii=False) + "\n" for b in rows))
            return
    table = Table(title=f"Balances as of {when.isoformat() if when else 'now'}")
    for col in ("payee", "currency", "pending", "available", "paid", "fee"):
        table.add_column(col, justify="left" if col in ("payee", "currency") else "right")
    for b in rows:
        j = b.as_json()
        table.add_row(*(cell(j[k]) for k in ("payee", "currency", "pending", "available", "paid", "fee")))
    console().print(table)


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
        begin, until = parse_when(start, tz=tz, field="--from"), parse_when(end, end_of_day=True, tz=tz, field="--to")
        led = open_ledger(db, prefix=prefix)
        try:
            st = build_statement(led, payee, begin, until)
        finally:
            led.close()
        with output_file(None) as out:
            if fmt == "json":
                st.write_json(out)
            else:
                raw = io.StringIO()
                st.write_csv(raw)
                writer = CsvWriter(out, (), lineterminator="\n")  # formula cells neutralised, numbers kept
                for row in csv.reader(io.StringIO(raw.getvalue(), newline="")):
                    writer.write_cells(row)


@ledger_app.command("parked")
def parked_cmd(db: DbOpt, prefix: PrefixOpt = "cps_") -> None:
    """Events kept but not applied: waiting for a predecessor, or rejected (JSON Lines)."""
    with bad_input_exits(ValueError):
        led = open_ledger(db, prefix=prefix)
        try:
            rows = led.parked()
        finally:
            led.close()
        write_stdout("".join(json.dumps({"type": p.kind, "id": p.id, "status": p.status, "waits_for": p.waits_for,
                                         "reason": p.reason}, ensure_ascii=False) + "\n" for p in rows))


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
        err.print(f"- {safe(p)}", highlight=False)
    if not v.ok:
        raise typer.Exit(1)
    err.print(f"ok: {v.entries} entries, head {v.head.hash}", highlight=False, soft_wrap=True)
