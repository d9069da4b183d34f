"""``cps-engine ledger hold | release | holds | caps``: hold flagged payees, release them, list who is
held, and set the per-payee caps of a ledger's terms (issue 13).

The commands are plain functions registered on a Typer app by :func:`register_hold_commands`; the
ledger CLI mounts them with ``register_hold_commands(ledger_app)`` (``hold_app`` is a stand-alone
app with the same commands, for tests and embedding).  Like every ledger command, ``--db`` is a
SQLite file or a SQLAlchemy URL and bad input exits with status 2 and a message naming the field.

- ``hold --payee P --reason R [--at T] [--id ID]``: while held, the payee's commission whose hold
  period ends stays pending and payouts are refused.  Recorded as a ``hold`` event: give ``--id`` to
  make re-running the command idempotent (the default id is ``hold:<payee>:<time>``).
- ``release --payee P [--at T] [--id ID]``: ends the hold (exit 2 when the payee is not held then).
- ``holds [--as-of T] [--format table|json]``: the payees held, since when and why.
- ``caps [--per-order '50.00 CNY' ...] [--period-days 30 --period-max '500.00 CNY' ...] [--off]``:
  without options, show the caps of every terms version; with them, add a terms version with these
  caps (in force after every event recorded so far, or from ``--effective-from``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from cps_engine.cli_common import (
    TABLE_JSON,
    bad_input_exits,
    cell,
    console,
    err,
    fail,
    format_option,
    safe,
    time_option,
    write_stdout,
)
from cps_engine.cli_ledger import DbOpt, KeyOpt, PrefixOpt, database_errors, open_ledger, read_key
from cps_engine.graph import to_micros
from cps_engine.ledger.hashing import iso_us
from cps_engine.limits import MAX_DAYS

__all__ = ["caps_cmd", "hold_app", "hold_cmd", "holds_cmd", "register_hold_commands", "release_cmd"]

PayeeOpt = Annotated[str, typer.Option("--payee", help="the payee")]
AtOpt = Annotated[str | None, typer.Option("--at", help="when (ISO time with its zone; default: now)")]
IdOpt = Annotated[str | None, typer.Option("--id", help="event id (re-running with the same id changes nothing; "
                                           "default: <kind>:<payee>:<time>)")]


def _at(text: str | None) -> datetime:
    return datetime.now(UTC) if text is None else time_option(text, "--at", dates=False)


def hold_cmd(
    db: DbOpt,
    payee: PayeeOpt,
    reason: Annotated[str, typer.Option("--reason", help="why (kept in the hold event, shown by `holds`)")],
    at: AtOpt = None,
    id: IdOpt = None,
    key_file: KeyOpt = None,
    prefix: PrefixOpt = "cps_",
) -> None:
    """Hold a payee: their commission whose hold period ends while held stays pending; payouts are refused."""
    when = _at(at)
    with bad_input_exits(ValueError), database_errors(db):
        led = open_ledger(db, prefix=prefix, chain_key=read_key(key_file))
        try:
            r = led.hold(payee, reason, at=when, id=id or f"hold:{payee}:{iso_us(to_micros(when))}")
            held = led.holds(payee, as_of=when)
        finally:
            led.close()
    since = iso_us(held[0].since_us) if held else iso_us(to_micros(when))
    what = "already recorded" if r.outcome.value == "duplicate" else "recorded"
    err.print(f"hold {safe(r.id)} {what}: {safe(payee)} is held since {since}", highlight=False, soft_wrap=True)


def release_cmd(
    db: DbOpt,
    payee: PayeeOpt,
    at: AtOpt = None,
    id: IdOpt = None,
    reason: Annotated[str | None, typer.Option("--reason", help="why (optional)")] = None,
    key_file: KeyOpt = None,
    prefix: PrefixOpt = "cps_",
) -> None:
    """Release a held payee: what the hold kept pending becomes available at the release's time."""
    when = _at(at)
    with bad_input_exits(ValueError), database_errors(db):
        led = open_ledger(db, prefix=prefix, chain_key=read_key(key_file))
        try:
            r = led.release(payee, at=when, reason=reason,
                            id=id or f"release:{payee}:{iso_us(to_micros(when))}")
        finally:
            led.close()
    what = "already recorded" if r.outcome.value == "duplicate" else "recorded"
    err.print(f"release {safe(r.id)} {what}: {safe(payee)} is released from {iso_us(to_micros(when))}",
              highlight=False, soft_wrap=True)


def holds_cmd(
    db: DbOpt,
    as_of: Annotated[str | None, typer.Option("--as-of", help="time (ISO, or a date: its midnight; default now)")]
    = None,
    payee: Annotated[str | None, typer.Option("--payee", help="only this payee")] = None,
    fmt: Annotated[str, format_option(TABLE_JSON)] = "table",
    prefix: PrefixOpt = "cps_",
) -> None:
    """The payees held as of a time: since when, and the hold events' ids and reasons."""
    when = None if as_of is None else time_option(as_of, "--as-of")
    with bad_input_exits(ValueError), database_errors(db):
        led = open_ledger(db, prefix=prefix)
        try:
            rows = led.holds(payee, as_of=when)
        finally:
            led.close()
    if fmt == "json":
        write_stdout("".join(json.dumps(h.as_json(), sort_keys=True, ensure_ascii=False) + "\n" for h in rows))
        return
    table = Table(title=f"Held as of {(when or datetime.now(UTC)).isoformat()}")
    for col in ("payee", "since", "reason", "holds"):
        table.add_column(col)
    for h in rows:
        j = h.as_json()
        table.add_row(cell(j["payee"]), cell(j["since"]), cell(j["reason"]), cell(", ".join(j["holds"])))
    console().print(table)


def caps_cmd(
    db: DbOpt,
    per_order: Annotated[list[str] | None, typer.Option("--per-order", help="most one payee gets from one "
                                                        "order, e.g. '50.00 CNY' (repeat per currency)")] = None,
    period_days: Annotated[int | None, typer.Option("--period-days", min=1, max=MAX_DAYS,
                                                    help="length of a cap period (days from 1970-01-01 UTC)")] = None,
    period_max: Annotated[list[str] | None, typer.Option("--period-max", help="most one payee gets from the orders "
                                                         "of one period, e.g. '500.00 CNY'")] = None,
    off: Annotated[bool, typer.Option("--off", help="remove the caps (from a new terms version)")] = False,
    effective_from: Annotated[str | None, typer.Option("--effective-from", help="when the new caps take effect "
                                                       "(default: after every event recorded so far)")] = None,
    key_file: KeyOpt = None,
    prefix: PrefixOpt = "cps_",
) -> None:
    """Show the per-payee caps of each terms version, or set new ones (a new terms version)."""
    caps: dict[str, Any] | None = None
    if off:
        if per_order or period_days or period_max:
            fail("--off: give either --off or caps, not both")
        caps = {}
    elif per_order or period_days is not None or period_max:
        caps = {}
        if per_order:
            caps["per_order"] = list(per_order)
        if period_days is not None or period_max:
            if period_days is None or not period_max:
                fail("--period-days and --period-max go together")
            caps["per_period"] = {"days": period_days, "max": list(period_max)}
    start = None if effective_from is None else time_option(effective_from, "--effective-from", dates=False)
    with bad_input_exits(ValueError), database_errors(db):
        led = open_ledger(db, prefix=prefix, chain_key=read_key(key_file), payee_caps=caps, effective_from=start)
        try:
            terms, new = led.terms, led.new_terms
        finally:
            led.close()
    if caps is not None and new is None:
        err.print("the caps are already these: nothing changed", highlight=False)
    elif new is not None:
        err.print(f"new terms version {new.version} with these caps takes effect from {iso_us(new.effective_us)}",
                  highlight=False)
    lines = []
    for t in terms:
        shown = json.dumps(t.rules.caps.to_dict(), sort_keys=True) if t.rules.caps else "none"
        lines.append(f"terms {t.version} from {iso_us(t.effective_us) if t.version > 1 else 'the start'}: "
                     f"payee caps {shown}\n")
    write_stdout("".join(lines))


def register_hold_commands(app: typer.Typer) -> typer.Typer:
    """Add ``hold``, ``release``, ``holds`` and ``caps`` to ``app`` (the ledger CLI: ``cps-engine ledger``)."""
    app.command("hold")(hold_cmd)
    app.command("release")(release_cmd)
    app.command("holds")(holds_cmd)
    app.command("caps")(caps_cmd)
    return app


#: the commands on an app of their own (tests, embedding); the main CLI mounts them on ``ledger``
hold_app = register_hold_commands(typer.Typer(name="ledger", help="Hold and release payees; payee caps.",
                                              no_args_is_help=True, add_completion=False,
                                              pretty_exceptions_enable=False))
