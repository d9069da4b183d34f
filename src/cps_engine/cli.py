"""The ``cps-engine`` command line.

Commands: ``demo`` (bundled sample programme under three policies), ``compute`` (commission lines
for an events file), ``validate`` (every bad record at once), ``schema`` (JSON Schema of policies).
Bad input exits with status 2 and a message naming the record and field.
"""

from __future__ import annotations

import importlib
import io
import json
import tempfile
from collections.abc import Iterable
from decimal import Decimal
from fractions import Fraction
from importlib.resources import files
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.table import Table

from cps_engine._version import library_version
from cps_engine.cli_common import (
    CSV_JSONL,
    BindingOpt,
    ExpireOpt,
    Steps,
    bad_input_exits,
    binding_config,
    cell,
    console,
    defang,
    err,
    fail,
    format_option,
    output_file,
    progress,
    safe,
    write_stdout,
)
from cps_engine.engine import Settlement, compute_events
from cps_engine.errors import CpsError
from cps_engine.graph import ShareGraph
from cps_engine.models import Event, load_events
from cps_engine.money import Money
from cps_engine.policies import PolicyConfig, load_policy, policy_schema
from cps_engine.textio import CsvWriter

__all__ = ["app", "main"]

app = typer.Typer(name="cps-engine", help="Exact distribution commissions (CPS) over share chains.",
                  no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False)


def _print_version(value: bool) -> None:
    if value:
        write_stdout(f"cps-engine {library_version()}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="print the library version and exit")] = False,
) -> None:
    """Exact distribution commissions (CPS) over share chains."""

LINE_COLUMNS = ("order", "payee", "level", "amount", "currency", "rate", "rule", "policy", "config_hash",
                "base", "path", "rounding")


def sample_path() -> Path:
    """Path of the bundled sample programme (JSON Lines)."""
    return Path(str(files("cps_engine") / "data" / "sample_events.jsonl"))


def bundled_policy(name: str) -> PolicyConfig:
    return load_policy(Path(str(files("cps_engine") / "data" / f"{name}.toml")))


def write_lines(settlements: list[Settlement], fmt: str, out: IO[str]) -> int:
    """Write every commission line as CSV (formula cells neutralised, :class:`CsvWriter`) or JSON
    Lines; returns the number of lines."""
    n = 0
    writer = CsvWriter(out, fieldnames=LINE_COLUMNS) if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    for s in settlements:
        for line in s.lines:
            row = line.as_row()
            if writer is not None:
                writer.writerow(row)
            else:
                out.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            n += 1
    return n


def write_batch_lines(lines: Any, policy: PolicyConfig, fmt: str, out: IO[str], *, steps: Steps | None = None) -> int:
    """Write the lines frame of ``compute_batch(..., provenance=True)`` exactly as :func:`write_lines`
    writes the same settlements (same columns, same text, same bytes), streaming row by row."""
    writer = CsvWriter(out, fieldnames=LINE_COLUMNS) if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    n = len(lines)
    if not n:
        return 0
    label, config_hash, rounding = policy.label, policy.config_hash, policy.rounding.value
    money: dict[tuple[int, str], str] = {}

    def text(minor: int, cur: str) -> str:
        key = (minor, cur)
        hit = money.get(key)
        if hit is None:
            if len(money) > 1_000_000:
                money.clear()
            hit = money[key] = str(Money(minor, cur).amount)
        return hit

    if writer is not None and _pyarrow() is not None:
        return _write_csv_columns(lines, (label, config_hash, rounding), out, steps)
    cols = [lines[c].tolist() for c in ("order", "payee", "level", "amount_minor", "currency", "rate", "rule",
                                        "base_minor", "path")]
    rows: Iterable[tuple[Any, ...]] = zip(*cols, strict=True)
    for k, (order, payee, level, amount, cur, rate, rule, base, path) in enumerate(rows, 1):
        if steps is not None and not k % 65536:
            steps.advance(65536)
        row = {"order": order, "payee": payee, "level": level, "amount": text(amount, cur), "currency": cur,
               "rate": rate, "rule": rule, "policy": label, "config_hash": config_hash, "base": text(base, cur),
               "path": path, "rounding": rounding}
        if writer is not None:
            writer.writerow(row)
        else:
            out.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
    return n


def _pyarrow() -> Any:
    try:
        return importlib.import_module("pyarrow.compute")
    except ImportError:
        return None


#: a cell :func:`~cps_engine.textio.escape_cell` may change: such rows are written by :class:`CsvWriter`
_TRIGGERS = "=+\\-@\\t\\r\\x{ff1d}\\x{ff0b}\\x{ff0d}\\x{ff20}"
_ESCAPED = f"^(?:[{_TRIGGERS}]|'['{_TRIGGERS}])"
_CSV_CHUNK = 1 << 18


def _csv_cell(value: str) -> str:
    """One cell's text as :class:`CsvWriter` writes it within a row (escaped, quoted when needed)."""
    buf = io.StringIO()
    CsvWriter(buf, fieldnames=("a", "b")).write_cells([value, ""])
    return buf.getvalue()[:-3]  # drop ",\r\n"


def _money_text(pa: Any, pc: Any, minor: Any, exps: Any) -> Any:
    """``str(Money(minor, cur).amount)`` for whole columns: sign, integer part, the currency's decimals."""
    import numpy as np

    mag = np.abs(minor)
    scale = np.power(10, exps, dtype=np.int64)
    whole = pa.array(mag // scale).cast(pa.string())
    frac = pa.array(mag % scale + scale).cast(pa.string())  # "1" + the decimals, zero-padded
    frac = pc.utf8_slice_codeunits(frac, 1)
    text = pc.if_else(pa.array(exps > 0), pc.binary_join_element_wise(whole, frac, "."), whole)
    return pc.if_else(pa.array(minor < 0), pc.binary_join_element_wise("-", text, ""), text)


def _write_csv_columns(lines: Any, constants: tuple[str, str, str], out: IO[str], steps: Steps | None) -> int:
    """The rows of :func:`write_batch_lines` as CSV, built a chunk at a time with Arrow: cells with a
    separator, quote or line break quoted as the csv module quotes them; rows with a cell that
    :func:`~cps_engine.textio.escape_cell` would change are written by :class:`CsvWriter` itself."""
    import numpy as np

    from cps_engine.money import CURRENCIES

    pa, pc = importlib.import_module("pyarrow"), importlib.import_module("pyarrow.compute")

    label, config_hash, rounding = (_csv_cell(c) for c in constants)
    n = len(lines)
    binary = getattr(out, "buffer", None) if str(getattr(out, "encoding", "")).lower().replace("-", "") == "utf8" \
        else None
    for lo in range(0, n, _CSV_CHUNK):
        part = lines.iloc[lo:lo + _CSV_CHUNK]
        def arrow(name: str, part: Any = part) -> Any:
            return pc.cast(pa.array(part[name]), pa.string())  # pandas' Arrow-backed text: no copy to Python

        cur = arrow("currency")
        exps = np.zeros(len(part), dtype=np.int64)
        enc = cur.dictionary_encode()
        codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        for k, code in enumerate(enc.dictionary.to_pylist()):
            exps[codes == k] = CURRENCIES[code]
        text = {c: arrow(c) for c in ("order", "payee", "rate", "rule", "path")}
        text["currency"] = cur
        text["amount"] = _money_text(pa, pc, part["amount_minor"].to_numpy(dtype=np.int64), exps)
        text["base"] = _money_text(pa, pc, part["base_minor"].to_numpy(dtype=np.int64), exps)
        flagged = np.zeros(len(part), dtype=bool)
        cells = {}
        for name, col in text.items():
            flagged |= np.asarray(pc.match_substring_regex(col, _ESCAPED).to_numpy(zero_copy_only=False), dtype=bool)
            quote = pc.match_substring_regex(col, '[,"\\r\\n]')
            quoted = pc.binary_join_element_wise('"', pc.replace_substring(col, '"', '""'), '"', "")
            cells[name] = pc.if_else(quote, quoted, col)
        level = pa.array(part["level"].to_numpy(dtype=np.int64)).cast(pa.string())
        row = pc.binary_join_element_wise(
            cells["order"], cells["payee"], level, cells["amount"], cells["currency"], cells["rate"], cells["rule"],
            label, config_hash, cells["base"], cells["path"], rounding, ",")
        row = pc.binary_join_element_wise(row, "\r\n", "")
        if flagged.any():
            py = []
            cols = {c: part[c].tolist() for c in ("order", "payee", "level", "rate", "rule", "path", "currency")}
            amount, base = text["amount"].to_pylist(), text["base"].to_pylist()
            for i in np.flatnonzero(flagged).tolist():
                buf = io.StringIO()
                CsvWriter(buf, fieldnames=LINE_COLUMNS).writerow({
                    "order": cols["order"][i], "payee": cols["payee"][i], "level": cols["level"][i],
                    "amount": amount[i], "currency": cols["currency"][i], "rate": cols["rate"][i],
                    "rule": cols["rule"][i], "policy": constants[0], "config_hash": constants[1], "base": base[i],
                    "path": cols["path"][i], "rounding": constants[2]})
                py.append(buf.getvalue())
            row = pc.replace_with_mask(row, pa.array(flagged), pa.array(py, pa.string()))
        data = "".join(row.to_pylist()) if binary is None else None
        if binary is None:
            out.write(data or "")
        else:
            chunk = row.cast(pa.large_string()) if not isinstance(row, pa.LargeStringArray) else row
            offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int64)[chunk.offset:chunk.offset + len(chunk) + 1]
            out.flush()
            binary.write(memoryview(chunk.buffers()[2])[int(offsets[0]):int(offsets[-1])])
            binary.flush()  # a closed pipe fails here, inside output_file, not at interpreter exit
        if steps is not None:
            steps.advance(len(part))
    return n


@app.command()
def compute(
    events: Annotated[Path, typer.Option("--events", help="events, JSON Lines ('-': standard input)")],
    policy: Annotated[Path, typer.Option("--policy", help="policy config, TOML or JSON")],
    fmt: Annotated[str, format_option(CSV_JSONL)] = "csv",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="file to write (default or '-': stdout)")]
    = None,
    binding: BindingOpt = "first_wins",
    expire_days: ExpireOpt = None,
) -> None:
    """One row per commission line: order, payee, level, amount, currency, rate (+ provenance).

    The events are read in columns (:mod:`cps_engine.columnar`, needs the ``analysis`` extra) and
    computed on the batch path, written row by row; the bytes are those of the per-order engine
    (``compute_events``) for the same input, and so are the errors."""
    config = binding_config(binding, expire_days)
    with bad_input_exits(), progress("reading events", err=err) as steps:
        from cps_engine.columnar import batch_lines, read_events

        cols = read_events(events, progress=lambda stage, n: steps.stage(stage))
        cols.raise_errors()
        pol = load_policy(policy)
        steps.stage("computing commissions")
        lines = batch_lines(cols, pol, binding=config)
        orders = lines.attrs["cps_engine"]["orders"]
        steps.stage("writing lines", len(lines))
        with output_file(output) as out:
            n = write_batch_lines(lines, pol, fmt, out, steps=steps)
    if output is not None and str(output) != "-":
        err.print(f"{n} commission lines for {orders} orders -> {safe(output)}")


@app.command()
def validate(events: Annotated[Path, typer.Argument(help="events, JSON Lines ('-': standard input)")],
             binding: BindingOpt = "first_wins", expire_days: ExpireOpt = None) -> None:
    """Report everything ``compute`` would refuse, every bad record at once with its line: lines the
    event models refuse, ids reused with another payload, shares and binds the graph refuses, orders
    through an unknown share, refunds of unknown orders or beyond what was paid (exit 0 clean, 2
    otherwise)."""
    config = binding_config(binding, expire_days)
    with bad_input_exits(), progress("reading events", err=err) as steps:
        from cps_engine.columnar import problems, read_events

        cols = read_events(events, progress=lambda stage, n: steps.stage(stage))
        steps.stage("checking the graph and refunds")
        found: list[CpsError] = problems(cols, binding=config)
    for p in found:
        err.print(f"- {safe(p, newlines=True)}", highlight=False, soft_wrap=True)
    name = "standard input" if str(events) == "-" else events
    if found:
        fail(f"{len(found)} bad record(s) in {name}")
    err.print(f"{safe(name)}: ok")


@app.command()
def schema() -> None:
    """Print the JSON Schema of a policy config."""
    with bad_input_exits():
        write_stdout(json.dumps(policy_schema(), indent=2, ensure_ascii=False) + "\n")


def percent(rate: Fraction, places: int = 2) -> str:
    """A rate as a percentage, rounded half-even for display only: ``Fraction(1, 8)`` -> ``'12.50%'``."""
    return f"{(Decimal(rate.numerator) * 100 / Decimal(rate.denominator)).quantize(Decimal(1).scaleb(-places))}%"


def summarize(name: str, settlements: list[Settlement]) -> dict[str, Any]:
    """Totals of one policy run: paid, base, effective rate, payees, top payee (one currency each)."""
    by_cur: dict[str, dict[str, Any]] = {}
    for s in settlements:
        cur = s.base.currency
        row = by_cur.setdefault(cur, {"base": 0, "paid": 0, "payees": {}, "orders": 0})
        row["base"] += s.base.minor
        row["orders"] += 1
        for line in s.lines:
            row["paid"] += line.amount.minor
            row["payees"][line.payee] = row["payees"].get(line.payee, 0) + line.amount.minor
    out: dict[str, Any] = {"policy": name, "currencies": {}}
    for cur, row in by_cur.items():
        top = max(row["payees"].items(), key=lambda kv: (kv[1], kv[0]), default=None)
        out["currencies"][cur] = {
            "orders": row["orders"], "base": Money(row["base"], cur), "paid": Money(row["paid"], cur),
            "effective_rate": Fraction(row["paid"], row["base"]) if row["base"] else Fraction(0),
            "payees": len(row["payees"]),
            "top_payee": (top[0], Money(top[1], cur)) if top else None,
        }
    return out


@app.command()
def demo(
    events: Annotated[Path | None, typer.Option("--events", help="events file (default: bundled sample)")] = None,
    ledger: Annotated[Path | None, typer.Option(
        "--ledger", help="SQLite ledger file to record into (default: a new temporary file)")] = None,
) -> None:
    """The bundled sample under three policies side by side, then recorded into a SQLite ledger.

    First-sharer, capped three-level and cn-compliant; the ledger uses capped three-level with a
    7-day hold and shows the balances."""
    path = events or sample_path()
    with bad_input_exits():
        evs: list[Event] = load_events(path)
        graph = ShareGraph.from_events(evs)
        policies = [bundled_policy(n) for n in ("first_sharer", "three_level", "compliant_cn")]
        results = [summarize(p.label, compute_events(evs, p, graph=graph)) for p in policies]
    out = console()
    out.print(f"[bold]Sample programme[/] {safe(path.name)}: {graph.n_people} people, {graph.n_shares} shares, "
                  f"deepest share chain {max(graph.depth_histogram(), default=0) + 1} sharers")
    table = Table(title="Commission by policy (net of refunds)")
    table.add_column("")
    for r in results:
        table.add_column(cell(r["policy"]), justify="right")
    currencies = sorted({c for r in results for c in r["currencies"]})
    for cur in currencies:
        cells = [r["currencies"].get(cur) for r in results]
        table.add_row(f"[bold]{cur}[/] orders", *[str(c["orders"]) if c else "-" for c in cells])
        table.add_row("commissionable base", *[str(c["base"].amount) if c else "-" for c in cells])
        table.add_row("total paid", *[str(c["paid"].amount) if c else "-" for c in cells])
        table.add_row("effective rate", *[percent(c["effective_rate"]) if c else "-" for c in cells])
        table.add_row("payees", *[str(c["payees"]) if c else "-" for c in cells])
        table.add_row("top payee", *[cell(f"{c['top_payee'][0]} {c['top_payee'][1].amount}") if c and c["top_payee"]
                                      else "-" for c in cells])
    out.print(table)
    from cps_engine.ledger import demo_summary

    with tempfile.TemporaryDirectory(prefix="cps-demo-") as tmp, bad_input_exits():
        out.print(defang(demo_summary(evs, bundled_policy("three_level"), ledger or Path(tmp) / "ledger.db")))


def _mount() -> None:
    """Attach the faces that live in their own modules (each imports only downward)."""
    from cps_engine.cli_audit import audit_app, statement
    from cps_engine.cli_ledger import ledger_app
    from cps_engine.cli_whatif import whatif

    app.add_typer(audit_app, name="audit", help="Verify statements, explain lines, check integrity and compliance.")
    app.command("statement")(statement)
    app.add_typer(ledger_app, name="ledger", help="Commission ledger: record events, balances, statements.")
    from cps_engine.cli_hold import register_hold_commands

    register_hold_commands(ledger_app)  # ledger hold | release | holds | caps
    app.command("whatif")(whatif)
    from cps_engine.service.cli import serve_app

    app.add_typer(serve_app, name="serve", help="The HTTP service and its tenants, keys and webhooks.")


_mount()


def main() -> None:
    """Entry point of the ``cps-engine`` console script.  Standard output is flushed before the exit
    status is decided, so a full disk or a closed pipe there is reported (or ends quietly), never as
    an "Exception ignored" at interpreter exit."""
    try:
        app()
    except SystemExit:
        try:
            with bad_input_exits():
                write_stdout("")
        except typer.Exit as exc:  # outside the app, so no click to turn it into an exit status
            raise SystemExit(exc.exit_code) from None
        raise


if __name__ == "__main__":
    main()
