"""``cps-engine ledger ...``: record events into a ledger, read balances and statements, export it
(beancount) and print its schema (SQL DDL for a backend's own migrations).

Mounted by the main CLI as ``cps-engine ledger`` (``ledger_app``).  ``--db`` is a SQLite file, or a
SQLAlchemy URL (``postgresql+psycopg://...``, ``mysql+pymysql://...``).  Bad input exits with status
2 and a message naming the record and field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from cps_engine.cli_common import (
    BINDING_MODES,
    CSV_JSON,
    TABLE_JSON_CSV,
    bad_input_exits,
    cell,
    choice,
    console,
    err,
    events_source,
    fail,
    format_option,
    output_file,
    parse_when,
    safe,
    time_option,
    write_stdout,
)
from cps_engine.errors import CpsError, InvalidInput
from cps_engine.ledger.export import EXPORT_FORMATS, write_beancount
from cps_engine.ledger.hashing import iso_us
from cps_engine.ledger.ledger import DEFAULT_HORIZON_DAYS, Ledger, sqlite_engine
from cps_engine.ledger.schema import SCHEMA_VERSION, ledger_ddl
from cps_engine.ledger.statement import build_statement, parse_zone, recorded_zone, zone_label
from cps_engine.limits import MAX_DAYS, check_time
from cps_engine.models import iter_events
from cps_engine.textio import CsvWriter

__all__ = ["ledger_app", "open_ledger", "parse_when"]

ledger_app = typer.Typer(name="ledger", help="Commission ledger: record events, balances, statements, export, "
                         "schema.",
                         no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
DbOpt = Annotated[str, typer.Option("--db", help="SQLite file or SQLAlchemy URL")]
KeyOpt = Annotated[Path | None, typer.Option("--key-file", help="the chain key of a keyed ledger (HMAC-SHA256; "
                                             "a new ledger becomes keyed); never stored in the ledger")]
PrefixOpt = Annotated[str, typer.Option("--prefix", help="table name prefix")]


def open_ledger(db: str, policy: Path | None = None, *, prefix: str = "cps_", **terms: object) -> Ledger:
    """A ledger on a SQLite path or a database URL; a new one needs ``policy``."""
    kwargs = {k: v for k, v in terms.items() if v is not None or k == "horizon_days"}
    if "://" in db:
        return Ledger(db, policy, prefix=prefix, **kwargs)  # type: ignore[arg-type]
    if policy is None and not Path(db).exists():
        raise FileNotFoundError(f"{db}: no such ledger (record into it with --policy first)")
    return Ledger(sqlite_engine(db), policy, prefix=prefix, **kwargs)  # type: ignore[arg-type]


def read_key(path: Path | None) -> bytes | None:
    """The chain key in ``path`` (its bytes, a trailing newline dropped), at least 16 bytes."""
    if path is None:
        return None
    key = path.read_bytes().rstrip(b"\r\n")
    if len(key) < 16:
        raise InvalidInput(f"{path}: a chain key needs at least 16 bytes", field="--key-file")
    return key


@contextmanager
def database_errors(db: str) -> Iterator[None]:
    """A database error (not ours) as one sentence naming the database and what to do, exit 1."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        first = str(exc.orig).strip().splitlines()[0][:300] if exc.orig is not None else type(exc).__name__
        hint = ("another process holds the write lock for too long: retry" if "locked" in first else
                "check the database is reachable and the URL and rights are right, then retry")
        where = db if "://" not in db else sa.make_url(db).render_as_string(hide_password=True)
        err.print(f"error: database {safe(where)}: {safe(first)} ({hint})", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


@ledger_app.command("record")
def record_cmd(
    events: Annotated[Path, typer.Argument(help="events, JSON Lines ('-': standard input)")],
    db: DbOpt,
    policy: Annotated[Path | None, typer.Option("--policy", help="policy config (TOML/JSON); required "
                                                "for a new ledger, a different one adds a policy version")] = None,
    hold_days: Annotated[int | None, typer.Option("--hold-days", min=0, max=MAX_DAYS,
                                                  help="days before commission is available")] = None,
    min_payout: Annotated[list[str] | None, typer.Option("--min-payout", help="e.g. '10.00 CNY'")] = None,
    payout_fee: Annotated[list[str] | None, typer.Option("--payout-fee", help="'1%' or '2.00 CNY'")] = None,
    binding: Annotated[str | None, choice("--binding", BINDING_MODES, "binding mode (new ledger only)")] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="events per transaction")] = 1000,
    horizon: Annotated[int, typer.Option("--horizon-days", min=0, max=MAX_DAYS,
                                         help="refuse events dated more than this after the latest event")]
    = DEFAULT_HORIZON_DAYS,
    key_file: KeyOpt = None,
    prefix: PrefixOpt = "cps_",
) -> None:
    """Record an events file (idempotent: re-recording the same file changes nothing).

    The whole file is read and checked first (every line parses; no id conflicts with the ledger or
    within the file; no event dated beyond the horizon): a problem anywhere commits nothing.  Events
    are then committed in batches; if recording stops (an error, Ctrl-C) the message says how many
    were kept, and re-running the file is safe (they are recognised as duplicates)."""
    with bad_input_exits(ValueError), database_errors(db):
        led = open_ledger(db, policy, prefix=prefix, hold_days=hold_days, min_payout=min_payout or None,
                          payout_fee=payout_fee or None, binding=binding, chain_key=read_key(key_file),
                          horizon_days=horizon or None)
        try:
            if led.new_terms is not None:
                t = led.new_terms
                err.print(f"new terms version {t.version} (policy {safe(t.policy.label)}, config "
                          f"{t.config_hash[:12]}…, hold {t.rules.hold_days} days) take effect from "
                          f"{iso_us(t.effective_us)}: events dated from then on use them, earlier ones keep theirs",
                          highlight=False, soft_wrap=True)
            evs = list(iter_events(events_source(events)))  # every line parsed before the first commit
            problems = led.preflight(evs)
            if problems:
                shown = "\n".join(f"  - {p}" for p in problems[:20])
                more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
                fail(f"{events}: nothing recorded: {len(problems)} event(s) would be refused:\n{shown}{more}")
            done = 0
            with Progress(TextColumn("recording"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                          console=err, transient=True, disable=len(evs) < 20_000 or not err.is_terminal) as bar:
                task = bar.add_task("record", total=len(evs))

                def progress(n: int) -> None:
                    nonlocal done
                    done += n
                    bar.advance(task, n)

                try:
                    summary = led.record_many(evs, batch_size=batch, progress=progress)
                except KeyboardInterrupt:
                    err.print(f"interrupted: {done} of {len(evs)} events of {safe(events)} were recorded and are kept "
                              f"(committed in batches of {batch}; the batch in progress was rolled back). Re-running "
                              "the same file is safe: recorded events are recognised as duplicates.", highlight=False,
                              soft_wrap=True)
                    raise typer.Exit(130) from None
                except BaseException:
                    err.print(f"recording stopped: {done} of {len(evs)} events of {safe(events)} were committed and "
                              "are kept; the failing batch was rolled back. Re-running the file is safe once the "
                              "cause is fixed (recorded events are recognised as duplicates).", highlight=False,
                              soft_wrap=True)
                    raise
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


BALANCE_COLUMNS = ("payee", "currency", "pending", "available", "paid", "fee")


@ledger_app.command("balance")
def balance_cmd(
    db: DbOpt,
    payee: Annotated[str | None, typer.Option("--payee", help="one payee")] = None,
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="date or ISO time (default: now (UTC), the wall clock of this machine)")] = None,
    fmt: Annotated[str, format_option(TABLE_JSON_CSV, "table | json | csv (formula cells neutralised)")] = "table",
    prefix: PrefixOpt = "cps_",
) -> None:
    """Pending, available and paid balances per payee and currency (JSON, CSV: decimal strings)."""
    when = time_option(as_of, "--as-of") if as_of else datetime.now(UTC)
    with bad_input_exits(ValueError), database_errors(db):
        led = open_ledger(db, prefix=prefix)
        try:
            rows = led.balances(payee, as_of=when)
        finally:
            led.close()
        if fmt == "json":
            write_stdout("".join(json.dumps(b.as_json(), sort_keys=True, ensure_ascii=False) + "\n" for b in rows))
            return
        if fmt == "csv":
            with output_file(None) as out:
                writer = CsvWriter(out, fieldnames=BALANCE_COLUMNS)
                writer.writeheader()
                for b in rows:
                    j = b.as_json()
                    writer.writerow({k: j[k] for k in BALANCE_COLUMNS})
            return
    table = Table(title=f"Balances as of {when.isoformat()}{'' if as_of else ' (now, UTC)'}")
    for col in BALANCE_COLUMNS:
        table.add_column(col, justify="left" if col in ("payee", "currency") else "right")
    for b in rows:
        j = b.as_json()
        table.add_row(*(cell(j[k]) for k in BALANCE_COLUMNS))
    console().print(table)


def statement_time(text: str, flag: str, zone: tzinfo, *, end_of_day: bool = False) -> datetime:
    """``--from``/``--to``: a plain date is midnight in ``zone`` (``end_of_day``: the next midnight); a
    time without a zone is in ``zone``; a time with one is that time."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        pass
    else:
        try:
            found = datetime.combine(day + timedelta(days=1) if end_of_day else day, time(0), tzinfo=zone)
            return check_time(found, field=flag)
        except OverflowError:
            fail(f"{flag}: {text.strip()!r} is outside the supported range of dates")
        except CpsError as exc:
            fail(f"{flag}: {exc}")
    if isinstance(zone, timezone):  # a fixed offset: the common parser, with its messages
        label = zone_label(zone)
        return time_option(text, flag, end_of_day=end_of_day, tz="Z" if label == "UTC" else label.removeprefix("UTC"))
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return time_option(text, flag)  # names the flag and what is expected
    return when if when.tzinfo is not None else when.replace(tzinfo=zone)


@ledger_app.command("statement")
def statement_cmd(
    db: DbOpt,
    payee: Annotated[str, typer.Option("--payee", help="the payee")],
    start: Annotated[str, typer.Option("--from", help="first day (or ISO time), inclusive")],
    end: Annotated[str, typer.Option("--to", help="last day (inclusive) or ISO time (exclusive)")],
    fmt: Annotated[str, format_option(CSV_JSON)] = "csv",
    tz: Annotated[str | None, typer.Option(
        "--tz", help="the payee's zone: times are shown in it and plain dates are days in it (+08:00, UTC or an "
        "IANA name such as Asia/Shanghai; default: the UTC offset the payee's events were recorded with, else "
        "UTC)")] = None,
    key_file: KeyOpt = None,
    prefix: PrefixOpt = "cps_",
) -> None:
    """A payee's statement for a period: opening, every movement, closing (CSV or JSON), times in the
    payee's zone (named in the header: ``tz`` in JSON, the ``tz`` column in CSV).

    The ledger is verified first (chain, payloads, replay): a ledger that does not verify gets no
    statement (exit 1), since its figures may not be what was posted."""
    with bad_input_exits(ValueError), database_errors(db):
        zone = parse_zone(tz) if tz is not None else None
        for text, flag in ((start, "--from"), (end, "--to")):  # syntax first: name the flag before any database
            statement_time(text, flag, zone or UTC)
        led = open_ledger(db, prefix=prefix, chain_key=read_key(key_file))
        try:
            zone, why = (zone, "given") if zone is not None else recorded_zone(led, payee)
            begin = statement_time(start, "--from", zone)
            until = statement_time(end, "--to", zone, end_of_day=True)
            check_before_statement(led)
            st = build_statement(led, payee, begin, until, tz=zone)
            st.tz_source = why
        finally:
            led.close()
        with output_file(None) as out:
            if fmt == "json":
                st.write_json(out)
            else:
                st.write_csv(out)  # formula cells neutralised, numbers kept


@ledger_app.command("export")
def export_cmd(
    db: DbOpt,
    fmt: Annotated[str, format_option(EXPORT_FORMATS, "beancount (plain-text double entry; check it with "
                                      "bean-check)")] = "beancount",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="file to write (default or '-': stdout)")]
    = None,
    tz: Annotated[str | None, typer.Option(
        "--tz", help="zone whose days date the transactions (+08:00, UTC or an IANA name; default: the UTC offset "
        "the events were recorded with, else UTC)")] = None,
    assertions: Annotated[bool, typer.Option(
        "--assertions/--no-assertions", help="end with balance assertions holding the ledger's own balances")] = True,
    key_file: KeyOpt = None,
    prefix: PrefixOpt = "cps_",
) -> None:
    """The whole ledger as a beancount file: accounts per payee (pending, available, paid, fee) and the
    merchant's expense, one transaction per event with its id and entry hashes in metadata.

    The ledger is verified first, as for a statement: a ledger that does not verify is not exported."""
    with bad_input_exits(ValueError), database_errors(db):
        zone = parse_zone(tz) if tz is not None else None
        led = open_ledger(db, prefix=prefix, chain_key=read_key(key_file))
        try:
            check_before_statement(led, "export")
            with output_file(output) as out:
                write_beancount(led, out, tz=zone, assertions=assertions)
        finally:
            led.close()


SCHEMA_DIALECTS = ("sqlite", "postgresql", "mysql", "mariadb")


@ledger_app.command("schema")
def schema_cmd(
    dialect: Annotated[str, choice("--dialect", SCHEMA_DIALECTS, "the database the SQL is for")],
    prefix: PrefixOpt = "cps_",
    schema: Annotated[str | None, typer.Option("--schema", help="a PostgreSQL schema to create the tables in "
                                               "(it must exist)")] = None,
    tables: Annotated[bool, typer.Option("--tables/--no-tables", help="CREATE TABLE and CREATE INDEX statements "
                                         "(--no-tables: only what comes after them, for a migration whose tables "
                                         "an autogenerate wrote)")] = True,
    protect: Annotated[bool, typer.Option("--protect/--no-protect", help="the triggers refusing UPDATE and DELETE "
                                          "on the append-only tables")] = True,
) -> None:
    """The SQL creating a ledger (tables, indexes, append-only triggers, its first rows), compiled for a
    dialect without any database: for a backend that creates its tables through its own migrations.

    A ledger opened on a database where this ran finds its schema complete and creates nothing."""
    with bad_input_exits(ValueError):
        statements = ledger_ddl(dialect, prefix=prefix, schema=schema, tables=tables, protect=protect)
    parts = ["tables and indexes"] * tables + ["append-only triggers"] * protect + ["lock row, schema_version last"]
    head = (f"-- cps-engine ledger schema {SCHEMA_VERSION} for {dialect}, prefix {prefix}"
            f"{f', schema {schema}' if schema else ''}: {', '.join(parts)}\n")
    write_stdout(head + "".join(f"\n{statement};\n" for statement in statements))


@ledger_app.command("parked")
def parked_cmd(db: DbOpt, prefix: PrefixOpt = "cps_") -> None:
    """Events kept but not applied: waiting for a predecessor, or rejected (JSON Lines)."""
    with bad_input_exits(ValueError), database_errors(db):
        led = open_ledger(db, prefix=prefix)
        try:
            rows = led.parked()
        finally:
            led.close()
        write_stdout("".join(json.dumps({"type": p.kind, "id": p.id, "status": p.status, "waits_for": p.waits_for,
                                         "reason": p.reason}, ensure_ascii=False) + "\n" for p in rows))


def check_before_statement(led: Ledger, what: str = "statement") -> None:
    """Refuse (exit 1) a statement (or an export) from a ledger that does not verify; warn when a keyed
    chain could not be checked for want of its key (the events and entries were still checked by replay)."""
    v = led.verify()
    for p in v.problems[:10]:
        err.print(f"- {safe(p)}", highlight=False, soft_wrap=True)
    if v.problems:
        err.print(f"error: the ledger does not verify (see `cps-engine ledger verify`): no {what} is issued from it",
                  highlight=False)
        raise typer.Exit(1)
    for u in v.unchecked:
        err.print(f"warning: {safe(u)}", highlight=False, soft_wrap=True)


@ledger_app.command("verify")
def verify_cmd(
    db: DbOpt,
    expect_head: Annotated[str | None, typer.Option(
        "--expect-head", help="SEQ:HASH of a head published before (a statement's manifest): it must still be "
        "in the chain")] = None,
    key_file: KeyOpt = None,
    quick: Annotated[bool, typer.Option("--quick", help="skip the replay of the events")] = False,
    prefix: PrefixOpt = "cps_",
) -> None:
    """Check the ledger: hash chain (keyed with --key-file), balanced postings, every stored payload
    against its hash, and a replay of the events against every entry, order snapshot and refund.
    Exit 0 ok, 1 a problem found, 2 could not check (e.g. a keyed chain without its key)."""
    with bad_input_exits(ValueError), database_errors(db):
        pin: tuple[int, str] | None = None
        if expect_head is not None:
            seq, _, h = expect_head.partition(":")
            if not (seq.isdigit() and len(h) == 64 and all(c in "0123456789abcdefABCDEF" for c in h)):
                raise InvalidInput(f"{expect_head[:80]!r} is not SEQ:HASH (e.g. 42:9f86d0…, 64 hex digits)",
                                   field="--expect-head")
            pin = (int(seq), h.lower())
        led = open_ledger(db, prefix=prefix, chain_key=read_key(key_file))
        try:
            v = led.verify(expect_head=pin, replay=not quick)
        finally:
            led.close()
    for p in v.problems:
        err.print(f"- {safe(p)}", highlight=False, soft_wrap=True)
    if v.problems:
        raise typer.Exit(1)
    if v.unchecked:
        for u in v.unchecked:
            err.print(f"cannot check: {safe(u)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    err.print(f"ok: {v.entries} entries, head {v.head.seq}:{v.head.hash}", highlight=False, soft_wrap=True)
