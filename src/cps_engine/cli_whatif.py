"""``cps-engine whatif``: compare policies on an events file — a table, and optionally a figure.

Mount with ``app.command("whatif")(whatif)`` on the main Typer app.  Bad input exits with status 2
and a message naming the record and field, like every other command.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from cps_engine.cli_common import (
    BindingOpt,
    ExpireOpt,
    bad_input_exits,
    binding_config,
    cell,
    console,
    err,
    fail,
    output_file,
    progress,
    safe,
)
from cps_engine.money import Money
from cps_engine.rules import DISCLAIMER

if TYPE_CHECKING:
    from cps_engine.whatif import Comparison

__all__ = ["render", "whatif"]

def _percent(value: Decimal) -> str:
    return f"{(value * 100).quantize(Decimal('0.01'))}%"


_ROWS: tuple[tuple[str, str, str], ...] = (
    ("orders", "orders", "int"),
    ("gmv_minor", "GMV (net of refunds)", "money"),
    ("commission_minor", "commission", "money"),
    ("effective_rate", "effective rate", "pct"),
    ("merchant_net_minor", "merchant net", "money"),
    ("payees", "payees paid", "int"),
    ("median_payout_minor", "median payout", "money"),
    ("top1_share", "top 1% of payees get", "pct"),
    ("top10_share", "top 10% of payees get", "pct"),
    ("gini", "Gini of payouts", "dec"),
    ("lines_level_1", "lines at level 1", "int"),
    ("lines_level_2", "lines at level 2", "int"),
    ("lines_level_3plus", "lines at level 3+", "int"),
    ("max_level", "deepest level paid", "int"),
    ("self_purchase_share", "on participants' own purchases", "pct"),
    ("beyond_level_2_share", "paid beyond level 2", "pct"),
    ("no_direct_sales_share", "to payees without direct sales", "pct"),
    ("downline_payees", "payees mostly paid on downline", "int"),
)


def _cell(value: Any, kind: str, currency: str) -> str:
    if kind == "money":
        minor = value if isinstance(value, Decimal) else Decimal(int(value))
        exp = Money(0, currency).exponent
        return str(minor.scaleb(-exp).quantize(Decimal(1).scaleb(-exp)))
    if kind == "pct":  # the exact ratio (a Fraction or Decimal); never the float column meant for plots
        if isinstance(value, Fraction):
            value = Decimal(value.numerator) / Decimal(value.denominator)
        return _percent(value if isinstance(value, Decimal) else Decimal(str(value)))
    if kind == "dec" and isinstance(value, Fraction):  # as before: half-even to 6 places
        return str(Decimal(round(value * 10**6)).scaleb(-6))
    return str(value)


def render(comparison: Comparison, *, top: int = 5) -> list[Table]:
    """Rich tables: metrics (one column per policy, per currency) and, with two or more policies,
    the biggest winners and losers from the first policy to the last."""
    tables = []
    m = comparison.metrics
    names = comparison.policies
    for cur in sorted(set(m["currency"])):
        table = Table(title=cell(f"Policy what-if ({cur})"))
        table.add_column("")
        for name in names:
            table.add_column(cell(name), justify="right")  # policy names come from the user's files
        for key, label, kind in _ROWS:
            cells = []
            for name in names:
                row = m[(m["policy"] == name) & (m["currency"] == cur)]
                exact = f"{key}_exact" if kind in ("pct", "dec") and f"{key}_exact" in row.columns else key
                cells.append(_cell(row[exact].iloc[0], kind, cur) if len(row) else "-")
            table.add_row(label, *cells)
        tables.append(table)
    if len(names) >= 2 and top > 0:
        before, after = names[0], names[-1]
        deltas = comparison.deltas(before, after)
        table = Table(title=cell(f"Who wins, who loses: {before} → {after}"))
        for col in ("payee", before, after, "change"):
            table.add_column(cell(col), justify="left" if col == "payee" else "right")
        picked = deltas.head(top) if len(deltas) <= 2 * top else deltas.iloc[list(range(top)) +
                                                                               list(range(len(deltas) - top,
                                                                                          len(deltas)))]
        for r in picked.to_dict("records"):
            cur, delta = str(r["currency"]), int(r["delta_minor"])
            table.add_row(cell(r["payee"]), _cell(r["before_minor"], "money", cur),
                          _cell(r["after_minor"], "money", cur),
                          f"{'+' if delta > 0 else ''}{_cell(delta, 'money', cur)} {cur}")
        tables.append(table)
    return tables


def whatif(
    events: Annotated[Path, typer.Option("--events", help="events, JSON Lines ('-': standard input)")],
    policy: Annotated[list[Path], typer.Option("--policy", help="policy config, TOML or JSON (repeat)")],
    plot: Annotated[Path | None, typer.Option("--plot", help="write the 2×2 figure here (png, svg, pdf)")] = None,
    top: Annotated[int, typer.Option("--top", help="winners and losers to list")] = 5,
    binding: BindingOpt = "first_wins",
    expire_days: ExpireOpt = None,
) -> None:
    """Compare policies on one history: cost, who earns what, depth, compliance indicators.

    The events are read in columns (:mod:`cps_engine.columnar`) and every policy runs on the batch
    path over one share graph and one set of order columns; the tables are those of
    :func:`cps_engine.whatif.compare` on the same file."""
    from cps_engine.policies import load_policy

    if not policy:
        fail("give at least one --policy")
    config = binding_config(binding, expire_days)
    with bad_input_exits(), progress("reading events", err=err) as steps:
        from cps_engine.columnar import order_columns, read_events, share_graph
        from cps_engine.whatif import _assemble, _direct_sellers, _evaluate, _named

        cols = read_events(events, progress=lambda stage, n: steps.stage(stage))
        cols.raise_errors()
        policies = [load_policy(p) for p in policy]
        steps.stage("building the share graph")
        graph = share_graph(cols, binding=config)
        orders = order_columns(cols)
        named = _named(policies)
        steps.stage("computing policies", len(named) + 1)
        direct = _direct_sellers(orders, graph)
        steps.advance()
        runs = []
        for name, pol in named.items():
            runs.append(_evaluate(name, orders, graph, pol, direct))
            steps.advance()
        comparison = _assemble(runs)
        tables = render(comparison, top=top)
    out = console()
    for table in tables:
        out.print(table)
    out.print(f"[dim]{DISCLAIMER}[/]")
    if plot is not None:
        try:
            with bad_input_exits(), output_file(plot, newline=None) as fh:
                fh.close()  # the figure is binary: written by matplotlib beside the target, then renamed
                comparison.plot().savefig(fh.name, dpi=110, format=plot.suffix.lstrip(".") or "png")
        except ValueError as exc:
            fail(f"--plot {plot}: {exc}")
        err.print(f"figure -> {safe(plot)}")
