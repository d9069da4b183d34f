"""Command line of the audit tools: ``cps-engine statement`` and ``cps-engine audit ...``.

``audit_app`` is mounted as ``cps-engine audit`` (``verify``, ``explain``, ``check-integrity``,
``prove``, ``verify-proof``, ``compliance``, ``abuse``); :func:`statement` as ``cps-engine statement``.

Exit status, everywhere: **0** the check passed (the statement matches, is intact, the proof holds,
the programme is compliant), **1** it found problems (non-compliant), **2** the input is unusable
(unreadable file, bad record, unknown column, missing period) with a message naming the record and
field; ``audit compliance`` alone also exits **3** for a verdict of *review* (a rule warns, none fails);
``audit abuse`` exits **1** when any abuse signal is flagged.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace as dc_replace
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cps_engine.audit.compliance import compliance_report
from cps_engine.audit.explain import explain_order
from cps_engine.audit.integrity import check_integrity, prove, verify_proof
from cps_engine.audit.report import render_verification_html
from cps_engine.audit.statement import (
    ColumnMap,
    InvalidStatement,
    Period,
    Statement,
    Steps,
    build_statement,
    cut_events,
    parse_tz,
    read_statement,
    statement_from_ledger,
    statement_paths,
    zone_of,
)
from cps_engine.audit.verify import KIND_TITLES, VerificationReport, verify_statement
from cps_engine.cli_common import (
    JSON_CSV,
    TABLE_JSON,
    TEXT_JSON,
    OptionalBindingOpt,
    bad_input_exits,
    console,
    err,
    events_source,
    fail,
    format_option,
    output_file,
    progress,
    safe,
    time_option,
    write_stdout,
)
from cps_engine.errors import CpsError
from cps_engine.graph import BindingConfig, BindingMode
from cps_engine.limits import MAX_DAYS
from cps_engine.models import Event, OrderEvent, load_events
from cps_engine.money import Money
from cps_engine.policies import PolicyConfig, load_policy
from cps_engine.rules import Thresholds
from cps_engine.textio import loads_json, read_text

__all__ = ["audit_app", "statement"]

audit_app = typer.Typer(name="audit", help="Verify, explain and check payout statements; compliance report.",
                        no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
EXIT_OK, EXIT_FOUND = 0, 1


def _console() -> Console:
    return console(highlight=False, soft_wrap=False)


def _binding(mode: str | None, expire_days: int | None) -> BindingConfig | None:
    if mode is None:
        return None if expire_days is None else BindingConfig(mode=BindingMode.EXPIRING, expire_days=expire_days)
    try:
        return BindingConfig(mode=BindingMode(mode), expire_days=expire_days)
    except ValueError as exc:
        fail(f"--binding: {exc}")


def _as_of(text: str | None) -> datetime | None:
    return None if text is None else time_option(text, "--as-of", dates=False)


def _load(events: Path, policy: Path, steps: Steps | None = None) -> tuple[list[Event], PolicyConfig]:
    if steps is not None:
        steps.stage("reading the events")
    return load_events(events_source(events)), load_policy(policy)


def _tz(tz: str | None) -> str | None:
    """``--tz`` checked before any work: exit 2 naming the flag when it is not a zone."""
    if tz is not None:
        try:
            parse_tz(tz)
        except CpsError as exc:
            fail(f"--tz: {exc.message}")
    return tz


def _columns(columns: Path | None, maps: list[str] | None, currency: str | None) -> ColumnMap:
    base = ColumnMap.load(columns) if columns is not None else None
    opts = list(maps or [])
    cmap = ColumnMap.parse_options(opts, base) if opts or base is None else base
    if currency is not None:  # the option, never a header: `--map currency=X` names a column
        cmap = dataclasses.replace(cmap, currency=currency)
    return cmap


EventsOpt = Annotated[Path, typer.Option("--events", help="events, JSON Lines ('-': standard input)")]
PolicyOpt = Annotated[Path, typer.Option("--policy", help="policy config, TOML or JSON")]
BindingOpt = OptionalBindingOpt
ExpireOpt = Annotated[int | None, typer.Option("--expire-days", min=0, max=MAX_DAYS, help="with --binding expiring")]
TzOpt = Annotated[str | None, typer.Option(
    "--tz", help="time zone of the period: UTC, +08:00 or Asia/Shanghai (default: the offset every event carries "
    "when they agree, else UTC; statements: the zone used is in the manifest)")]
AsOfOpt = Annotated[str | None, typer.Option("--as-of", help="only events up to this time (ISO-8601 with zone)")]
HoldOpt = Annotated[int | None, typer.Option("--hold-days", min=0, max=MAX_DAYS,
                                             help="hold period (冻结天数) for line states")]


# ---------------------------------------------------------------------------------------------- statement
def statement(
    period: Annotated[str, typer.Option("--period", help="YYYY-MM or YYYY-MM-DD..YYYY-MM-DD")],
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="directory: writes statement-<period>.json, .csv and .manifest.json")] = None,
    fmt: Annotated[str, format_option(JSON_CSV, "without -o: json | csv to stdout")] = "json",
    tz: TzOpt = None,
    as_of: AsOfOpt = None,
    hold_days: HoldOpt = None,
    previous: Annotated[Path | None, typer.Option(
        "--previous", help="the previous statement (JSON) to chain to; default with -o: the latest earlier "
        "statement in the directory")] = None,
    binding: BindingOpt = None,
    expire_days: ExpireOpt = None,
    events: Annotated[Path | None, typer.Option("--events", help="events, JSON Lines ('-': standard input)")] = None,
    policy: Annotated[Path | None, typer.Option(
        "--policy", help="policy config, TOML or JSON (with --db: default the ledger's)")] = None,
    db: Annotated[str | None, typer.Option(
        "--db", help="instead of --events: a ledger (SQLite file or SQLAlchemy URL); its applied events, "
        "policy, hold days and binding mode")] = None,
    replace: Annotated[bool, typer.Option(
        "--replace", help="with -o: replace a statement already issued for the period (recorded in the new "
        "manifest as 'replaces'; statements of later periods chained to it must be issued again)")] = False,
) -> None:
    """Payout statement for a period: per-payee lines, totals and a manifest with a Merkle root.

    With ``-o DIR`` a statement already issued for the period is never overwritten silently (the next
    period's chain check depends on it): ``--replace`` replaces it and records so in the manifest.
    With ``--db`` the ledger is verified first; a ledger that does not verify gets no statement (exit 1).
    The period is read in ``--tz``; without it in the zone of the data (the offset every event carries,
    when they agree; else UTC): the zone used is printed and recorded in the manifest (``tz``)."""
    tz = _tz(tz)
    if (events is None) == (db is None):
        fail("give either --events (with --policy) or --db")
    if db is not None and (binding is not None or expire_days is not None or hold_days is not None):
        fail("with --db the ledger's binding mode and hold days are used; drop --binding/--expire-days/--hold-days")
    config = _binding(binding, expire_days) or BindingConfig()
    when = _as_of(as_of)
    zone_from = "--tz" if tz is not None else "the data's zone, else UTC"
    with bad_input_exits(ValueError), progress("statement") as steps:
        prev: Statement | None = read_statement(previous) if previous is not None else None
        if prev is None and output is not None:
            prev = _latest_before(output, period)
        if db is not None:
            from cps_engine.cli_ledger import check_before_statement, open_ledger

            with open_ledger(db) as led:
                steps.stage("verifying the ledger")
                check_before_statement(led)
                st = statement_from_ledger(led, period, tz=tz, as_of=when, previous=prev, steps=steps,
                                           policy=load_policy(policy) if policy is not None else None)
        else:
            assert events is not None
            if policy is None:
                fail("--events needs --policy")
            evs, pol = _load(events, policy, steps)
            if tz is None:
                tz, zone_from = zone_of(cut_events(evs, when), pol)
            st = build_statement(evs, pol, period, tz=tz, as_of=when, hold_days=hold_days,
                                 binding=config, previous=prev, steps=steps)
        assert st.manifest is not None
        err.print(f"period {safe(st.manifest.period)} in time zone {safe(st.manifest.tz)} ({safe(zone_from)}): "
                  f"{safe(st.manifest.period_start)} to {safe(st.manifest.period_end)}", highlight=False,
                  soft_wrap=True)
        if output is None:
            write_stdout(st.to_json() if fmt == "json" else st.to_csv())
            return
        assert st.manifest is not None
        issued = statement_paths(output, st.manifest.period)["json"]
        if issued.exists():  # an issued statement is never overwritten silently: later ones chain to it
            if not replace:
                fail(f"{issued}: a statement for {period} was already issued; it is not overwritten (later "
                     "statements chain to it). Give --replace to issue a replacement, recorded in its manifest")
            old = read_statement(issued)
            if old.manifest is not None:
                fresh = dc_replace(st.manifest, replaces=old.manifest.chain_root)
                st = dc_replace(st, manifest=dc_replace(fresh, chain_root=fresh.computed_chain_root()))
        paths = st.write(output)
    man = st.manifest
    assert man is not None
    _summary(st)
    err.print(f"{len(st.lines)} lines for {len({ln.payee for ln in st.lines})} payees "
               f"-> {safe(paths['json'])}, {safe(paths['csv'])}, {safe(paths['manifest'])}", highlight=False)
    err.print(f"merkle_root {safe(man.merkle_root)}\nchain_root  {safe(man.chain_root)}"
               + (f" (chained to {safe(man.previous_period)})" if man.previous_period else " (first statement)"),
               highlight=False)


def _latest_before(directory: Path, period: str) -> Statement | None:
    """The statement in ``directory`` with the latest period starting before ``period`` (None: none)."""
    if not directory.is_dir():
        return None
    start = Period.parse(period).start
    best: tuple[datetime, Path] | None = None
    for path in directory.glob("statement-*.json"):
        if path.name.endswith(".manifest.json"):
            continue
        try:
            st = read_statement(path)
        except CpsError:
            continue
        if st.manifest is None or st.manifest.period == period:
            continue
        began = datetime.fromisoformat(st.manifest.period_start)
        if began < start and (best is None or began > best[0]):
            best = (began, path)
    return read_statement(best[1]) if best is not None else None


def _summary(st: Statement) -> None:
    zone = f" ({st.manifest.tz})" if st.manifest is not None else ""
    table = Table(title=f"Statement {safe(st.period)}{safe(zone)}: totals per payee (top 20)")
    table.add_column("payee")
    table.add_column("lines", justify="right")
    table.add_column("amount", justify="right")
    rows = []
    for cur, data in st.totals.items():
        for payee, t in data["payees"].items():
            rows.append((Money.of(t["amount"], cur), payee, t["lines"], cur))
    rows.sort(key=lambda r: (-r[0].minor, r[1]))
    for money, payee, n, _ in rows[:20]:
        table.add_row(safe(payee), str(n), str(money))
    for cur, data in st.totals.items():
        table.add_row(f"[bold]total {cur}[/]", str(data["lines"]), f"[bold]{data['amount']} {cur}[/]")
    err.print(table)


# ---------------------------------------------------------------------------------------------- verify
@audit_app.command()
def verify(
    events: EventsOpt,
    policy: PolicyOpt,
    statement_file: Annotated[Path, typer.Option("--statement", help="statement: CSV or JSON (ours or a platform's)")],
    period: Annotated[str | None, typer.Option("--period", help="period it covers (default: the manifest's)")] = None,
    tz: TzOpt = None,
    as_of: AsOfOpt = None,
    hold_days: HoldOpt = None,
    binding: BindingOpt = None,
    expire_days: ExpireOpt = None,
    columns: Annotated[Path | None, typer.Option("--columns", help="column map file (TOML or JSON)")] = None,
    maps: Annotated[list[str] | None, typer.Option(
        "--map", help="FIELD=HEADER (order, payee, level, base, rate, amount, currency, state) or OPTION=VALUE "
        "(amount_unit, rate_unit, currency, decimal, delimiter, encoding); repeatable")] = None,
    currency: Annotated[str | None, typer.Option("--currency", help="currency when the file has no column")] = None,
    manifest: Annotated[Path | None, typer.Option("--manifest", help="manifest file of a CSV statement")] = None,
    fmt: Annotated[str, format_option(TABLE_JSON)] = "table",
    html: Annotated[Path | None, typer.Option("--html", help="also write an HTML report here")] = None,
) -> None:
    """Recompute every line; report missing, extra, wrong and duplicated lines with the money at stake.

    Exit 0 when the statement matches, 1 when it has discrepancies, 2 when the input is unusable.
    """
    tz = _tz(tz)
    config = _binding(binding, expire_days)
    when = _as_of(as_of)
    with bad_input_exits(), progress("verify") as steps:
        evs, pol = _load(events, policy, steps)
        orders = {ev.id: ev.currency for ev in evs if isinstance(ev, OrderEvent)}
        only = next(iter(set(orders.values()))) if len(set(orders.values())) == 1 else None
        cmap = _columns(columns, maps, currency)
        steps.stage("reading the statement")
        st = read_statement(statement_file, cmap, currency_of=lambda o: orders.get(o, only), manifest=manifest)
        report = verify_statement(st, evs, pol, period=period, tz=tz, as_of=when, hold_days=hold_days,
                                  binding=config, steps=steps)
        if html is not None:
            steps.stage("writing the HTML report")
            with output_file(html) as out:
                out.write(render_verification_html(report))
        if fmt == "json":
            write_stdout(report.to_json())
    if fmt != "json":
        _print_verification(report)
    if html is not None:
        err.print(f"HTML report -> {safe(html)}", highlight=False)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_FOUND)


def _print_verification(report: VerificationReport) -> None:
    con = _console()
    con.print(f"[bold]Statement[/] {safe(report.source or '-')} · period {safe(report.period)} · policy "
              f"{safe(report.policy)} · {report.lines_stated} lines stated, {report.lines_expected} owed")
    for note in report.notes:
        con.print(f"[dim]note: {safe(note)}[/]")
    if report.ok:
        con.print("[bold green]OK[/]: every line matches the recomputation; nothing missing, nothing extra.")
        return
    stake = report.at_stake()
    table = Table(title="Discrepancies by kind (money at stake)")
    for col, just in (("kind", "left"), ("count", "right"), ("currency", "left"), ("overpaid", "right"),
                      ("underpaid", "right")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for kind, ds in report.by_kind().items():
        for cur in sorted({d.currency or "-" for d in ds}):
            row = stake[cur][kind.value]
            table.add_row(KIND_TITLES[kind], str(row["count"]), cur, _fmt(row["overpaid"], cur),
                          _fmt(row["underpaid"], cur))
    for cur, kinds in sorted(stake.items()):
        if cur != "-":
            t = kinds["total"]
            table.add_row("[bold]total[/]", str(t["count"]), cur, f"[bold]{_fmt(t['overpaid'], cur)}[/]",
                          f"[bold]{_fmt(t['underpaid'], cur)}[/]")
    con.print(table)
    detail = Table(title="Discrepancies (first 50; --format json or --html for all)")
    for col in ("kind", "line", "order", "payee", "stated", "owed", "detail"):
        detail.add_column(col)
    for d in report.discrepancies[:50]:
        detail.add_row(d.kind.value, str(d.line) if d.line is not None else "—", safe(d.order or ""),
                       safe(d.payee or ""), str(d.stated.amount) if d.stated else "",
                       str(d.expected.amount) if d.expected else "", safe(d.detail))
    con.print(detail)
    for pattern in report.patterns():
        con.print(f"[bold yellow]pattern:[/] {safe(pattern.text)}")
    con.print(f"[bold red]{len(report.discrepancies)} discrepanc{'y' if len(report.discrepancies) == 1 else 'ies'}[/]")


def _fmt(minor: int, cur: str) -> str:
    return str(Money(minor, cur).amount) if cur != "-" else "-"


# ---------------------------------------------------------------------------------------------- explain
@audit_app.command()
def explain(
    events: EventsOpt,
    policy: PolicyOpt,
    order: Annotated[str, typer.Option("--order", help="order id")],
    payee: Annotated[str | None, typer.Option("--payee", help="explain this payee's line (or its absence)")] = None,
    binding: BindingOpt = None,
    expire_days: ExpireOpt = None,
    as_of: AsOfOpt = None,
    fmt: Annotated[str, format_option(TEXT_JSON)] = "text",
) -> None:
    """Why each line of an order is what it is: chain, level, rule, rate, base, refunds, rounding."""
    config = _binding(binding, expire_days) or BindingConfig()
    when = _as_of(as_of)
    with bad_input_exits(), progress("explain") as steps:
        evs, pol = _load(events, policy, steps)
        steps.stage("explaining the order")
        ex = explain_order(evs, pol, order, payee, binding=config, as_of=when)
        if fmt == "json":
            write_stdout(ex.to_json())
            return
    _console().print(safe(ex.render(), newlines=True))


# ---------------------------------------------------------------------------------------------- integrity
@audit_app.command("check-integrity")
def check_integrity_cmd(
    statement_file: Annotated[Path, typer.Argument(help="statement JSON, or CSV with its .manifest.json")],
    previous: Annotated[Path | None, typer.Option("--previous", help="the previous statement of the chain")] = None,
    manifest: Annotated[Path | None, typer.Option("--manifest", help="manifest of a CSV statement")] = None,
    fmt: Annotated[str, format_option(TABLE_JSON)] = "table",
) -> None:
    """Recompute the Merkle root and the chain; locate every edited, inserted, removed or moved line.

    Exit 0 when intact, 1 when tampered with, 2 when the statement cannot be read or has no manifest.
    """
    with bad_input_exits():
        st = read_statement(statement_file, manifest=manifest)
        prev = read_statement(previous) if previous is not None else None
        report = check_integrity(st, prev)
        if fmt == "json":
            write_stdout(report.to_json())
    if fmt != "json":
        con = _console()
        con.print(f"[bold]Statement[/] {safe(str(statement_file))} · period {safe(report.period)} · "
                  f"{report.line_count} lines")
        con.print(f"merkle_root stated  {safe(report.merkle_root)}\nmerkle_root lines   {safe(report.computed_root)}")
        con.print(f"chain to previous: {safe(report.previous)}")
        for note in report.notes:
            con.print(f"[dim]note: {safe(note)}[/]")
        for p in report.problems:
            con.print(f"[red]- {safe(p)}[/]")
        if report.changes:
            table = Table(title="Changed lines")
            for col in ("change", "line now", "line issued", "file row", "detail"):
                table.add_column(col)
            for c in report.changes:
                table.add_row(c.kind, str(c.line or "—"), str(c.original or "—"), str(c.row or "—"),
                              safe(c.detail))
            con.print(table)
        con.print("[bold green]INTACT[/]" if report.intact else "[bold red]TAMPERED[/] (or not the issued statement)")
    raise typer.Exit(EXIT_OK if report.intact else EXIT_FOUND)


@audit_app.command("prove")
def prove_cmd(
    statement_file: Annotated[Path, typer.Argument(help="statement JSON, or CSV with its .manifest.json")],
    payee: Annotated[str, typer.Option("--payee", help="whose lines")],
    order: Annotated[str | None, typer.Option("--order", help="only this order's line")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="file to write (default stdout)")] = None,
) -> None:
    """Inclusion proofs for one payee's lines: they can check them without seeing anyone else's."""
    with bad_input_exits():
        st = read_statement(statement_file)
        try:
            doc = prove(st, payee, order)
        except KeyError as exc:
            fail(str(exc.args[0]))
        text = json.dumps(doc, ensure_ascii=False, indent=1) + "\n"
        with output_file(output) as out:
            out.write(text)
    if output is not None:
        err.print(f"{len(doc['proofs'])} proof(s) for {safe(payee)} -> {safe(output)}", highlight=False)


@audit_app.command("verify-proof")
def verify_proof_cmd(
    proof: Annotated[Path, typer.Argument(help="proof document from 'audit prove'")],
    root: Annotated[str | None, typer.Option(
        "--root", help="the merkle_root or chain_root the issuer published")] = None,
    fmt: Annotated[str, format_option(TABLE_JSON)] = "table",
) -> None:
    """Check a payee's inclusion proof (exit 0 valid, 1 invalid, 2 unreadable)."""
    with bad_input_exits():
        # UTF-8 (a BOM dropped), strict JSON: duplicate keys and deep nesting refused by name
        doc = loads_json(read_text(proof, error=InvalidStatement), source=str(proof), error=InvalidStatement)
        result = verify_proof(doc, root=root)
        if fmt == "json":
            write_stdout(result.to_json())
            raise typer.Exit(EXIT_OK if result.ok else EXIT_FOUND)
    con = _console()
    for line, good in result.lines:
        mark = "[green]in the statement[/]" if good else "[red]NOT in the statement[/]"
        con.print(f"{safe(line.payee)} · order {safe(line.order)} · {line.amount}: {mark}")
    for p in result.problems:
        con.print(f"[red]- {safe(p)}[/]")
    con.print(f"merkle_root {safe(result.merkle_root)}"
              + ("" if root else "  (give --root to pin it to the published root)"))
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FOUND)


# ---------------------------------------------------------------------------------------------- compliance
EXIT_REVIEW = 3


@audit_app.command()
def compliance(
    events: EventsOpt,
    policy: PolicyOpt,
    entry_sku: Annotated[list[str] | None, typer.Option("--entry-sku", help="SKU sold as an entry purchase "
                                                                          "(starter kit); repeatable")] = None,
    jurisdiction: Annotated[list[str] | None, typer.Option("--jurisdiction", help="CN, US or EU; repeatable "
                                                                                "(default: all)")] = None,
    thresholds_file: Annotated[Path | None, typer.Option(
        "--thresholds", help="materiality thresholds: a TOML or JSON file of name = value")] = None,
    threshold: Annotated[list[str] | None, typer.Option(
        "--threshold", help="NAME=VALUE, e.g. internal_fail=25% (after --thresholds); repeatable")] = None,
    binding: BindingOpt = None,
    expire_days: ExpireOpt = None,
    fmt: Annotated[str, format_option(TABLE_JSON)] = "table",
) -> None:
    """Is this programme a pyramid?  The policy and the history against the rules (an aid, not legal advice).

    Exit 0 compliant, 1 non-compliant (a rule fails), 3 review (a rule warns, none fails),
    2 unusable input.
    """
    config = _binding(binding, expire_days) or BindingConfig()
    if jurisdiction:
        bad = [j for j in jurisdiction if j.upper() not in ("CN", "US", "EU")]
        if bad:
            fail(f"--jurisdiction {bad[0]!r}: use CN, US or EU")
    with bad_input_exits(), progress("compliance") as steps:
        limits = Thresholds.load(thresholds_file) if thresholds_file is not None else Thresholds()
        if threshold:
            limits = limits.replace(threshold)
        evs, pol = _load(events, policy, steps)
        steps.stage("measuring the programme")
        rep = compliance_report(evs, pol, binding=config, entry_skus=entry_sku or (), jurisdictions=jurisdiction,
                                thresholds=limits)
        if fmt == "json":
            write_stdout(rep.to_json())
    if fmt != "json":
        con = _console()
        con.print(f"[bold yellow]{safe(rep.disclaimer)}[/]", soft_wrap=True)
        table = Table(title=f"Compliance: {safe(rep.policy)} ({rep.policy_kind})")
        for col in ("status", "rule", "measure", "figure", "limit", "detail"):
            table.add_column(col)
        colour = {"pass": "green", "warn": "yellow", "fail": "bold red", "info": "blue"}
        for f in rep.findings:
            table.add_row(f"[{colour[f.status]}]{f.status.upper()}[/]", f.rule, safe(f.measure), safe(f.figure),
                          safe(f.limit), safe(f.detail))
        con.print(table)
        sources = Table(title="Rules cited")
        sources.add_column("rule")
        sources.add_column("title")
        sources.add_column("source")
        for rid in dict.fromkeys(f.rule for f in rep.findings):
            r = rep.findings[[f.rule for f in rep.findings].index(rid)].source
            sources.add_row(rid, safe(r.title), safe(r.source))
        con.print(sources)
        limits_table = Table(title="Thresholds (--thresholds FILE, --threshold NAME=VALUE)")
        for col in ("name", "value", "rule", "source"):
            limits_table.add_column(col)
        shown = {f.rule for f in rep.findings}
        for row in (r for r in rep.thresholds.as_rows() if r["rule"] in shown):
            limits_table.add_row(row["name"], safe(row["value"]), row["rule"], safe(row["source"]))
        con.print(limits_table)
        tone = {"compliant": "bold green", "review": "bold yellow", "non-compliant": "bold red"}[rep.verdict]
        con.print(f"Verdict: [{tone}]{rep.verdict.upper()}[/]")
        for f in rep.evidence:
            con.print(f"  because {f.rule} {safe(f.measure)}: {safe(f.figure)} (limit {safe(f.limit)})")
        con.print("How each figure is recomputed: --format json, field 'how' of each finding.")
        con.print(f"[bold yellow]{safe(rep.disclaimer)}[/]", soft_wrap=True)
    raise typer.Exit({"compliant": EXIT_OK, "review": EXIT_REVIEW, "non-compliant": EXIT_FOUND}[rep.verdict])


# ---------------------------------------------------------------------------------------------- abuse
@audit_app.command()
def abuse(
    events: EventsOpt,
    policy: PolicyOpt,
    threshold: Annotated[list[str] | None, typer.Option(
        "--threshold", help="NAME=VALUE, e.g. refund_ratio=20% or burst_min_shares=10; repeatable")] = None,
    binding: BindingOpt = None,
    expire_days: ExpireOpt = None,
    fmt: Annotated[str, format_option(TABLE_JSON)] = "table",
) -> None:
    """Abuse signals: purchase rings, self-dealing fingerprint clusters, refunds after payout, share bursts.

    Each finding with its evidence (people, orders, events) and the commission at stake.  Exit 0 when
    nothing is flagged, 1 when something is, 2 unusable input.
    """
    from cps_engine.audit.abuse import AbuseThresholds, abuse_report

    config = _binding(binding, expire_days) or BindingConfig()
    with bad_input_exits(), progress("abuse") as steps:
        limits = AbuseThresholds().replace(threshold) if threshold else AbuseThresholds()
        evs, pol = _load(events, policy, steps)
        steps.stage("looking for abuse signals")
        rep = abuse_report(evs, pol, binding=config, thresholds=limits)
        if fmt == "json":
            write_stdout(rep.to_json())
    if fmt != "json":
        con = _console()
        table = Table(title=f"Abuse signals: {safe(rep.policy)} ({safe(rep.policy_kind)})")
        for col in ("signal", "figure", "people", "orders", "events", "at stake", "detail"):
            table.add_column(col)
        for f in rep.findings:
            stake = ", ".join(f"{v} {c}" for c, v in f.at_stake_text().items()) or "0"
            table.add_row(f.signal, safe(f.figure), safe(", ".join(f.people)), safe(", ".join(f.orders)),
                          safe(", ".join(f.events)), safe(stake), safe(f.detail))
        con.print(table)
        limits_table = Table(title="Thresholds (--threshold NAME=VALUE)")
        for col in ("name", "value", "meaning"):
            limits_table.add_column(col)
        for row in rep.thresholds.as_rows():
            limits_table.add_row(row["name"], safe(row["value"]), safe(row["meaning"]))
        con.print(limits_table)
        counts = ", ".join(f"{k} {v}" for k, v in rep.counts().items())
        con.print(f"{'[bold red]FLAGGED[/]' if rep.flagged else '[bold green]nothing flagged[/]'}: {counts}")
        con.print("How each figure is recomputed: --format json, field 'how' of each finding; docs/abuse.md.")
    raise typer.Exit(EXIT_FOUND if rep.flagged else EXIT_OK)
