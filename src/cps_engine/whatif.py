"""What-if: one history, several policies — what each would cost, who would earn what, and how.

:func:`compare` computes an event history under several policies with the batch engine and returns
a :class:`Comparison`: a tidy DataFrame of metrics per policy (and currency), commission by level,
payouts per payee, per-payee deltas between two policies ("who wins, who loses"), a one-row-per-policy
:meth:`~Comparison.summary`, and matplotlib figures (cost per policy, Lorenz curves of payouts,
commission by level, depth histogram of the share graph).

Every column of :attr:`Comparison.metrics` named in :data:`METRICS` is numeric and plots directly:
counts and money are ``int64`` (money in integer minor units of the row's currency), ratios are
``float64`` in [0, 1].  The exact values behind the float columns (and behind the rounded median) are
kept beside them as ``Fraction`` in the columns of :data:`EXACT` (``effective_rate_exact``, ...).

- ``orders``, ``gmv_minor`` (commissionable base net of refunds), ``commission_minor``,
  ``effective_rate`` (commission / GMV), ``merchant_net_minor`` (GMV - commission);
- ``payees`` (people paid anything), ``median_payout_minor`` (rounded half-even to a minor unit;
  exact in ``median_payout_exact``), ``top1_share`` / ``top10_share`` (share of all payouts going
  to the top 1% / 10% of payees, at least one payee), ``gini`` (Gini coefficient of payouts over the
  payees);
- ``lines``, ``lines_level_1``, ``lines_level_2``, ``lines_level_3plus``, ``max_level`` (the
  deepest level paid — CN-DEPTH);
- compliance indicators (docs/compliance.md): ``self_purchase_share`` (commission on orders
  bought by participants — people who shared or have a bound downline; CN-SELF, US-INTERNAL),
  ``beyond_level_2_share`` (commission paid at level 3 or deeper; CN-DEPTH), ``no_direct_sales_share``
  (commission to payees with no direct sale — no order whose nearest link is them; US-DOWNLINE,
  EU-INTRO) and ``downline_payees`` (payees earning more than half from level 2 or deeper;
  US-DOWNLINE).  These indicators are an aid, not legal advice.

**One reporting currency.** ``compare(..., fx=table, report_currency="CNY")`` adds the columns of
:data:`REPORT`: each row's GMV, commission and merchant net converted with an exact
:class:`~cps_engine.fx.FxTable` at the rate in force on one day (``fx_day``: by default the UTC day of
the latest order), each total converted exactly and rounded once, half-even, to the reporting
currency's minor unit (never line by line).  Nothing else changes currency.

>>> from cps_engine.models import load_events
>>> evs = load_events([
...   '{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00+08:00"}',
...   '{"type":"share","id":"s2","sharer":"bob","parent":"s1","at":"2026-03-01T11:00:00+08:00"}',
...   '{"type":"order","id":"o1","buyer":"cat","share":"s2","amount":"100.00","currency":"CNY",'
...   '"at":"2026-03-01T12:00:00+08:00"}'])
>>> c = compare(evs, {"first": {"kind": "first_sharer", "rate": "10%"},
...                   "two-level": {"kind": "capped_multilevel", "rates": ["10%", "5%"]}})
>>> c.metrics[["policy", "commission_minor", "effective_rate", "payees"]].values.tolist()
[['first', 1000, 0.1, 1], ['two-level', 1500, 0.15, 2]]
>>> c.metrics["effective_rate_exact"].tolist()
[Fraction(1, 10), Fraction(3, 20)]
>>> c.deltas("first", "two-level")[["payee", "delta_minor"]].values.tolist()
[['bob', 1000], ['amy', -500]]
"""

from __future__ import annotations

import inspect
import itertools
import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cps_engine.batch import _frame
from cps_engine.batch._kernels import participants, run
from cps_engine.batch._orders import OrderColumns, order_columns
from cps_engine.errors import ValueOutOfRange
from cps_engine.fx import FxTable, round_half_even
from cps_engine.graph import BindingConfig, BindingMode, ShareGraph
from cps_engine.models import Event, load_events
from cps_engine.money import Money
from cps_engine.policies import LastSharer, PolicyConfig, load_policy
from cps_engine.rules import DISCLAIMER

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from numpy.typing import NDArray

__all__ = ["DISCLAIMER", "EXACT", "METRICS", "RATIOS", "REPORT", "Comparison", "compare", "compare_histories", "gini",
           "ratio"]

PolicyLike = PolicyConfig | Mapping[str, Any] | str | Path
# the batch frame builder is gaining a ``graph`` argument (the compute_batch API change): work with both
_FRAME_TAKES_GRAPH = "graph" in inspect.signature(_frame).parameters

#: Metric columns of :attr:`Comparison.metrics`, after ``policy`` and ``currency``: all numeric
#: (``int64`` counts and minor units, ``float64`` ratios).
METRICS: tuple[str, ...] = (
    "orders", "gmv_minor", "commission_minor", "effective_rate", "merchant_net_minor", "payees",
    "median_payout_minor", "top1_share", "top10_share", "gini", "lines", "lines_level_1", "lines_level_2",
    "lines_level_3plus", "max_level", "self_purchase_share", "beyond_level_2_share", "no_direct_sales_share",
    "downline_payees",
)
#: The ``float64`` ratio columns of :data:`METRICS`; each one's exact value is in ``<name>_exact``.
RATIOS: tuple[str, ...] = (
    "effective_rate", "top1_share", "top10_share", "gini", "self_purchase_share", "beyond_level_2_share",
    "no_direct_sales_share",
)
#: Exact columns (``Fraction``) after :data:`METRICS`: the ratios, and the median payout in minor units
#: (half a unit when the number of payees is even).
EXACT: tuple[str, ...] = (
    "effective_rate_exact", "median_payout_exact", "top1_share_exact", "top10_share_exact", "gini_exact",
    "self_purchase_share_exact", "beyond_level_2_share_exact", "no_direct_sales_share_exact",
)
#: Columns added after :data:`EXACT` when :func:`compare` is given a ``report_currency``: the
#: lookup day, the rate used (its own date, ``float64`` and exact ``Decimal``), and the row's totals
#: in minor units of the reporting currency (``int64``; each converted exactly and rounded once,
#: half-even).
REPORT: tuple[str, ...] = (
    "report_currency", "fx_day", "fx_rate_day", "fx_rate", "fx_rate_exact", "gmv_report_minor",
    "commission_report_minor", "merchant_net_report_minor",
)
_INTS: tuple[str, ...] = (
    "orders", "gmv_minor", "commission_minor", "merchant_net_minor", "payees", "median_payout_minor", "lines",
    "lines_level_1", "lines_level_2", "lines_level_3plus", "max_level", "downline_payees",
)
_REPORTED: tuple[str, ...] = ("gmv", "commission", "merchant_net")
_PLACES = 6
_INT64_MAX = 2**63 - 1


def ratio(num: int | Fraction, den: int | Fraction) -> Decimal:
    """``num / den`` as a Decimal rounded half-even to 6 places (0 when ``den`` is 0).

    >>> ratio(1, 3), ratio(2, 0)
    (Decimal('0.333333'), Decimal('0.000000'))
    """
    if den == 0:
        return Decimal(0).scaleb(-_PLACES)
    q = Fraction(num) / Fraction(den)
    return Decimal(round(q * 10**_PLACES)).scaleb(-_PLACES)


def _exact(num: int | Fraction, den: int | Fraction) -> Fraction:
    """``num / den`` exactly (0 when ``den`` is 0)."""
    return Fraction(0) if den == 0 else Fraction(num) / Fraction(den)


def _percent(x: Fraction) -> str:
    """``x`` as a percentage with two decimals, rounded half-even (display)."""
    return f"{Decimal(round_half_even(x * 10_000)).scaleb(-2)}%"


def gini(amounts: Sequence[int] | NDArray[np.int64]) -> Fraction:
    """Exact Gini coefficient of non-negative amounts (0: all equal; near 1: one takes all).

    >>> gini([5, 5, 5, 5]), gini([0, 0, 0, 12])
    (Fraction(0, 1), Fraction(3, 4))
    """
    xs = sorted(int(x) for x in amounts)
    n, total = len(xs), sum(xs)
    if n == 0 or total == 0:
        return Fraction(0)
    weighted = sum((2 * i - n - 1) * x for i, x in enumerate(xs, start=1))
    return Fraction(weighted, n * total)


def _median(xs: list[int]) -> Fraction:
    if not xs:
        return Fraction(0)
    k = len(xs)
    mid = k // 2
    if k % 2:
        return Fraction(xs[mid])
    return Fraction(xs[mid - 1] + xs[mid], 2)


def _top_share(desc: list[int], fraction: Fraction, total: int) -> Fraction:
    k = max(1, math.ceil(len(desc) * fraction)) if desc else 0
    return _exact(sum(desc[:k]), total)


def _int64(value: int, what: str) -> int:
    if abs(value) > _INT64_MAX:
        raise ValueOutOfRange(f"{what} {value} does not fit a 64-bit column", field=what)
    return value


@dataclass
class _Run:
    """One policy evaluated on one history."""

    name: str
    policy: PolicyConfig
    lines: pd.DataFrame
    cols: OrderColumns
    net: NDArray[np.int64]
    participant: NDArray[np.bool_]
    direct: set[str]
    graph: ShareGraph


def _evaluate(name: str, cols: OrderColumns, graph: ShareGraph, policy: PolicyConfig,
              direct: set[str] | None = None) -> _Run:
    res = run(cols, graph, policy)
    lines = _frame(cols, res, policy, graph) if _FRAME_TAKES_GRAPH else _frame(cols, res, policy)
    participant = participants(cols, graph)
    if direct is None:
        direct = _direct_sellers(cols, graph)
    return _Run(name, policy, lines, cols, res.net, participant, direct, graph)


def _direct_sellers(cols: OrderColumns, graph: ShareGraph) -> set[str]:
    """People who are the nearest link of at least one order with a positive net base."""
    nearest = LastSharer(rate=Fraction(1))
    res = run(cols, graph, nearest)
    return set(res.payee.distinct())


def _totals(lines: pd.DataFrame) -> dict[str, int]:
    """Amount per payee (payees as text, sorted)."""
    sums = lines.groupby("payee", sort=False, observed=True)["amount_minor"].sum()
    return dict(sorted((str(k), int(v)) for k, v in sums.items()))


def _metrics(r: _Run) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    lines = r.lines
    rows: list[dict[str, Any]] = []
    levels: list[dict[str, Any]] = []
    payouts: list[dict[str, Any]] = []
    order_cur = r.cols.currency.objects
    participant_orders = set(r.cols.ids.take(np.flatnonzero(r.participant)).tolist())
    for cur in sorted(set(order_cur.tolist())):
        mine = order_cur == cur
        gmv = int(r.net[mine].sum())
        ln = lines[lines["currency"] == cur]
        commission = int(ln["amount_minor"].sum())
        # plain dicts of payee -> total (the payee column may be categorical: never look up in its index)
        per_payee = _totals(ln)
        deep = _totals(ln[ln["level"] >= 2])
        amounts = sorted((v for v in per_payee.values() if v), reverse=True)
        level_counts = ln.groupby("level")["amount_minor"].agg(["size", "sum"])
        for level, row in level_counts.iterrows():
            levels.append({"policy": r.name, "currency": cur, "level": int(level), "lines": int(row["size"]),
                           "commission_minor": int(row["sum"]), "share_exact": _exact(int(row["sum"]), commission)})
        for payee, amount in per_payee.items():
            d = deep.get(payee, 0)
            payouts.append({"policy": r.name, "currency": cur, "payee": payee, "amount_minor": amount,
                            "level_1_minor": amount - d, "downline_minor": d})
        self_paid = int(ln.loc[ln["order"].isin(participant_orders), "amount_minor"].sum())
        beyond = int(ln.loc[ln["level"] >= 3, "amount_minor"].sum())
        no_direct = int(ln.loc[~ln["payee"].isin(r.direct), "amount_minor"].sum())
        downline = sum(1 for payee, amount in per_payee.items() if amount and 2 * deep.get(payee, 0) > amount)
        lv = ln["level"].to_numpy()
        median = _median(sorted(amounts))
        rows.append({
            "policy": r.name, "currency": cur, "orders": int(mine.sum()), "gmv_minor": gmv,
            "commission_minor": commission, "effective_rate_exact": _exact(commission, gmv),
            "merchant_net_minor": gmv - commission, "payees": len(amounts),
            "median_payout_minor": round_half_even(median), "median_payout_exact": median,
            "top1_share_exact": _top_share(amounts, Fraction(1, 100), commission),
            "top10_share_exact": _top_share(amounts, Fraction(1, 10), commission),
            "gini_exact": gini(amounts), "lines": len(ln),
            "lines_level_1": int((lv == 1).sum()), "lines_level_2": int((lv == 2).sum()),
            "lines_level_3plus": int((lv >= 3).sum()), "max_level": int(lv.max()) if len(lv) else 0,
            "self_purchase_share_exact": _exact(self_paid, commission),
            "beyond_level_2_share_exact": _exact(beyond, commission),
            "no_direct_sales_share_exact": _exact(no_direct, commission), "downline_payees": downline,
        })
        for name in RATIOS:
            rows[-1][name] = float(rows[-1][f"{name}_exact"])  # ok: display (the exact value is beside it)
    return rows, levels, payouts


@dataclass
class Comparison:
    """Policies compared on a history: metrics, payouts, deltas, a summary and figures.

    ``report_currency``, ``fx`` and ``fx_day`` are set when :func:`compare` was given a reporting
    currency: the :data:`REPORT` columns of :attr:`metrics` and the ``*_report`` columns of
    :meth:`summary` come from them.
    """

    metrics: pd.DataFrame
    by_level: pd.DataFrame
    payouts: pd.DataFrame
    lines: dict[str, pd.DataFrame]
    graphs: dict[str, ShareGraph] = field(repr=False)
    report_currency: str | None = None
    fx: FxTable | None = field(default=None, repr=False)
    fx_day: date | None = None

    @property
    def policies(self) -> list[str]:
        return list(self.lines)

    def _currency(self, currency: str | None) -> str:
        if currency is not None:
            return currency
        if not len(self.metrics):
            return self.report_currency or "CNY"
        totals = self.metrics.groupby("currency")["gmv_minor"].sum()
        return str(totals.sort_values(ascending=False, kind="stable").index[0])

    def deltas(self, before: str, after: str, *, currency: str | None = None) -> pd.DataFrame:
        """Per-payee change from policy ``before`` to ``after``: ``payee``, ``currency``,
        ``before_minor``, ``after_minor``, ``delta_minor``; winners first, losers last (ties by payee)."""
        import pandas as pd

        for name in (before, after):
            if name not in self.lines:
                raise KeyError(f"no policy named {name!r}; known: {', '.join(self.lines)}")
        pay = self.payouts
        if currency is not None:
            pay = pay[pay["currency"] == currency]
        a = pay[pay["policy"] == before].set_index(["payee", "currency"])["amount_minor"]
        b = pay[pay["policy"] == after].set_index(["payee", "currency"])["amount_minor"]
        both = pd.concat({"before_minor": a, "after_minor": b}, axis=1).fillna(0).astype("int64")
        both["delta_minor"] = both["after_minor"] - both["before_minor"]
        both = both.reset_index()
        both = both.sort_values(["delta_minor", "payee"], ascending=[False, True], kind="stable")
        return both[both["delta_minor"] != 0].reset_index(drop=True)[
            ["payee", "currency", "before_minor", "after_minor", "delta_minor"]]

    def summary(self, currency: str | None = None) -> pd.DataFrame:
        """One row per policy: the key figures in one currency (``currency``, by default the one with
        the most GMV).

        ``orders``, ``payees``, ``max_level`` (``int64``); ``gmv``, ``commission``, ``merchant_net``,
        ``median_payout`` in major units (exact ``Decimal``); ``effective_rate``, ``top10_share``,
        ``gini`` and the compliance shares (``float64`` ratios).  With a reporting currency, also
        ``report_currency`` and ``gmv_report``, ``commission_report``, ``merchant_net_report``: the
        policy's totals over *all* its currencies, the exact sum of the exact conversions rounded
        once (half-even) to the reporting currency's minor unit, in major units; and
        ``effective_rate_report`` (``float64``, from the exact converted totals).
        """
        import pandas as pd

        cur = self._currency(currency)
        m = self.metrics
        rows = []
        for name in self.policies:
            mine = m[(m["policy"] == name) & (m["currency"] == cur)]
            r: dict[Any, Any] = mine.iloc[0].to_dict() if len(mine) else {}
            row: dict[str, Any] = {"policy": name, "currency": cur, "orders": r.get("orders", 0)}
            for col in ("gmv", "commission", "merchant_net", "median_payout"):
                row[col] = Money(int(r.get(f"{col}_minor", 0)), cur).amount
            row["effective_rate"] = r.get("effective_rate", 0.0)
            row["payees"] = r.get("payees", 0)
            for col in ("top10_share", "gini"):
                row[col] = r.get(col, 0.0)
            row["max_level"] = r.get("max_level", 0)
            for col in ("self_purchase_share", "beyond_level_2_share", "no_direct_sales_share"):
                row[col] = r.get(col, 0.0)
            if self.report_currency is not None:
                row.update(self._report_totals(name))
            rows.append(row)
        out = pd.DataFrame(rows)
        for col in ("orders", "payees", "max_level"):
            out[col] = out[col].astype("int64")
        for col in ("effective_rate", "top10_share", "gini", "self_purchase_share", "beyond_level_2_share",
                    "no_direct_sales_share", *(["effective_rate_report"] if self.report_currency else [])):
            out[col] = out[col].astype("float64")
        return out

    def _report_totals(self, name: str) -> dict[str, Any]:
        """A policy's GMV, commission and merchant net over all its currencies, in the reporting
        currency: exact sum of exact conversions, rounded once."""
        assert self.report_currency is not None and self.fx is not None and self.fx_day is not None
        rep, m = self.report_currency, self.metrics
        mine = m[m["policy"] == name]
        exact = dict.fromkeys(_REPORTED, Fraction(0))
        for cur, *values in zip(mine["currency"], *(mine[f"{k}_minor"] for k in _REPORTED), strict=True):
            factor = self.fx.rate(str(cur), rep, self.fx_day).minor_factor()
            for key, v in zip(_REPORTED, values, strict=True):
                exact[key] += int(v) * factor
        out: dict[str, Any] = {"report_currency": rep}
        for key in _REPORTED:
            out[f"{key}_report"] = Money(round_half_even(exact[key]), rep).amount
        out["effective_rate_report"] = float(_exact(exact["commission"], exact["gmv"]))  # ok: display
        return out

    # ------------------------------------------------------------------ figures
    def plot_cost(self, ax: Axes | None = None, *, currency: str | None = None) -> Figure:
        """Bar chart: commission per policy, labelled with the effective rate (room left above the
        tallest bar for its label)."""
        fig, ax = _axes(ax)
        cur = self._currency(currency)
        m = self.metrics[self.metrics["currency"] == cur]
        exp = Money(0, cur).exponent
        heights = [float(Decimal(int(v)).scaleb(-exp)) for v in m["commission_minor"]]  # ok: display
        pos = list(range(len(heights)))
        bars = ax.bar(pos, heights, color=_colours(len(m)), width=0.6)
        for bar, rate in zip(bars, m["effective_rate_exact"], strict=True):
            ax.annotate(_percent(rate), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=9)
        _policy_ticks(ax, list(m["policy"]))
        _headroom(ax, max(heights, default=0.0), 0.18)
        _money_axis(ax, max(heights, default=0.0))
        ax.set_title(f"Commission cost per policy ({cur})")
        ax.set_ylabel(f"commission ({cur})")
        return fig

    def plot_lorenz(self, ax: Axes | None = None, *, currency: str | None = None) -> Figure:
        """Lorenz curves of payouts per payee (the diagonal is perfect equality)."""
        fig, ax = _axes(ax)
        cur = self._currency(currency)
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="equality")
        for colour, name in zip(_colours(len(self.lines)), self.lines, strict=True):
            pay = self.payouts[(self.payouts["policy"] == name) & (self.payouts["currency"] == cur)]
            xs = np.sort(pay["amount_minor"].to_numpy(dtype=np.int64))
            if not len(xs) or xs.sum() == 0:
                continue
            cum = np.concatenate([[0], np.cumsum(xs)]) / xs.sum()  # ok: display
            share = np.linspace(0, 1, len(cum))  # ok: display
            g = gini(xs.tolist())
            ax.plot(share, cum, color=colour, label=f"{name} (Gini {ratio(g, 1).quantize(Decimal('0.001'))})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"Lorenz curve of payouts ({cur})")
        ax.set_xlabel("share of payees (poorest first)")
        ax.set_ylabel("share of commission")
        ax.legend(fontsize=7, loc="upper left")
        return fig

    def plot_levels(self, ax: Axes | None = None, *, currency: str | None = None, max_level: int = 4) -> Figure:
        """Stacked bars: commission by level per policy (levels beyond ``max_level`` grouped); the
        legend sits in the room left above the bars."""
        if max_level < 1:
            raise ValueError("max_level must be at least 1")
        fig, ax = _axes(ax)
        cur = self._currency(currency)
        exp = Money(0, cur).exponent
        names = self.policies
        pos = list(range(len(names)))
        bottoms = [0.0] * len(names)  # ok: display
        labels = [*(str(k) for k in range(1, max_level)), f"{max_level}+"]
        for k, colour in zip(range(1, max_level + 1), _colours(max_level), strict=True):
            heights = []
            for name in names:
                lv = self.by_level[(self.by_level["policy"] == name) & (self.by_level["currency"] == cur)]
                sel = lv["level"] >= k if k == max_level else lv["level"] == k
                heights.append(float(Decimal(int(lv.loc[sel, "commission_minor"].sum())).scaleb(-exp)))  # ok: display
            ax.bar(pos, heights, bottom=bottoms, color=colour, label=f"level {labels[k - 1]}", width=0.6)
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
        _policy_ticks(ax, names)
        _headroom(ax, max(bottoms, default=0.0), 0.3)
        _money_axis(ax, max(bottoms, default=0.0))
        ax.set_title(f"Commission by level ({cur})")
        ax.set_ylabel(f"commission ({cur})")
        ax.legend(fontsize=7, loc="upper center", ncols=min(max_level, 4), frameon=False)
        return fig

    def plot_depth(self, ax: Axes | None = None) -> Figure:
        """Histogram of share chains by length in levels (a share re-shared from no one is level 1;
        each re-share adds one), with the CN 3-level limit marked (CN-DEPTH)."""
        fig, ax = _axes(ax)
        graph = next(iter(self.graphs.values()), None)
        hist = {int(d) + 1: int(n) for d, n in graph.depth_histogram().items()} if graph is not None else {}
        deepest = max([3, *hist])
        if hist:
            ax.bar(list(hist), list(hist.values()), color="#4c72b0", width=0.8 if deepest <= 40 else 1.0)
            ax.set_yscale("log")
            ax.set_ylim(0.7, max(hist.values()) * 4)  # log scale: room above the tallest bar for the legend
        ax.axvline(3.5, color="#c44e52", linestyle="--", linewidth=1, label="right of the line: more than 3 levels "
                   "(CN limit)")
        ax.set_xlim(0.5, deepest + 0.5)
        ticks = _level_ticks(deepest)
        ax.set_xticks(ticks, labels=[str(t) for t in ticks])
        ax.set_title("Share graph: share chains by length")
        ax.set_xlabel("levels in the share chain (level 1, 2, … from the sharer up to the first sharer)")
        ax.set_ylabel("shares (log)" if hist else "shares")
        ax.legend(fontsize=7, loc="upper right")
        return fig

    def plot(self, *, currency: str | None = None) -> Figure:
        """All four figures on one 2 × 2 page (what ``cps-engine whatif --plot`` writes)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(12, 9), layout="constrained")
        axes = fig.subplots(2, 2)
        self.plot_cost(axes[0][0], currency=currency)
        self.plot_lorenz(axes[0][1], currency=currency)
        self.plot_levels(axes[1][0], currency=currency)
        self.plot_depth(axes[1][1])
        fig.suptitle("Policy what-if")
        return fig


def _headroom(ax: Axes, top: float, fraction: float) -> None:
    """y from 0 to ``fraction`` above the tallest bar, so labels and legends above it are not clipped."""
    ax.set_ylim(0, top * (1 + fraction) if top > 0 else 1)


def _money_axis(ax: Axes, top: float) -> None:
    from matplotlib.ticker import StrMethodFormatter

    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}" if top >= 10 else "{x:,.2f}"))


def _policy_ticks(ax: Axes, names: list[str]) -> None:
    """Policy names under their bars, wrapped so that neighbours do not overlap."""
    width = 14 if len(names) > 3 else 22
    ax.set_xticks(list(range(len(names))), labels=[textwrap.fill(str(n), width) for n in names], fontsize=8)
    ax.set_xlim(-0.5, len(names) - 0.5)


def _level_ticks(deepest: int) -> list[int]:
    """Integer level ticks from 1: every level up to 15, else 1 and about eight round ones."""
    if deepest <= 15:
        return list(range(1, deepest + 1))
    from matplotlib.ticker import MaxNLocator

    picked = MaxNLocator(nbins=8, integer=True, steps=[1, 2, 5, 10]).tick_values(1, deepest)
    round_ones = sorted(int(t) for t in picked if 1 <= t <= deepest)
    step = min((b - a for a, b in itertools.pairwise(round_ones)), default=deepest)
    return sorted({1, *(t for t in round_ones if t >= max(2, step // 2))})


def _axes(ax: Axes | None) -> tuple[Figure, Axes]:
    if ax is not None:
        fig = ax.get_figure()
        assert fig is not None
        return fig, ax  # type: ignore[return-value]
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    return fig, fig.add_subplot()


def _colours(n: int) -> list[str]:
    base = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
    return [base[i % len(base)] for i in range(n)]


def _named(policies: Mapping[str, PolicyLike] | Sequence[PolicyLike]) -> dict[str, PolicyConfig]:
    if isinstance(policies, Mapping):
        return {str(k): load_policy(v) for k, v in policies.items()}
    out: dict[str, PolicyConfig] = {}
    for p in policies:
        pol = load_policy(p)
        name, k = pol.label, 2
        while name in out:
            name, k = f"{pol.label} ({k})", k + 1
        out[name] = pol
    return out


def _assemble(runs: list[_Run], *, fx: FxTable | None = None, report_currency: str | None = None,
              fx_day: date | None = None) -> Comparison:
    import pandas as pd

    rows: list[dict[str, Any]] = []
    levels: list[dict[str, Any]] = []
    payouts: list[dict[str, Any]] = []
    for r in runs:
        a, b, c = _metrics(r)
        rows += a
        levels += b
        payouts += c
    columns = ["policy", "currency", *METRICS, *EXACT]
    if report_currency is not None:
        assert fx is not None and fx_day is not None
        columns += REPORT
        for row in rows:
            rate = fx.rate(row["currency"], report_currency, fx_day)
            factor = rate.minor_factor()
            row.update({"report_currency": report_currency, "fx_day": fx_day, "fx_rate_day": rate.day,
                        "fx_rate": float(rate.rate), "fx_rate_exact": rate.rate})  # ok: display (exact beside)
            for key in _REPORTED:
                row[f"{key}_report_minor"] = _int64(round_half_even(row[f"{key}_minor"] * factor),
                                                    f"{key}_report_minor")
    metrics = pd.DataFrame(rows, columns=columns)
    by_level = pd.DataFrame(levels, columns=["policy", "currency", "level", "lines", "commission_minor", "share",
                                             "share_exact"])
    by_level["share"] = [float(x) for x in by_level["share_exact"]]  # ok: display (the exact value is beside it)
    pay = pd.DataFrame(payouts, columns=["policy", "currency", "payee", "amount_minor", "level_1_minor",
                                         "downline_minor"])
    metric_ints = _INTS + (tuple(f"{k}_report_minor" for k in _REPORTED) if report_currency is not None else ())
    for frame, ints, floats in ((metrics, metric_ints, RATIOS + (("fx_rate",) if report_currency else ())),
                                (by_level, ("level", "lines", "commission_minor"), ("share",)),
                                (pay, ("amount_minor", "level_1_minor", "downline_minor"), ())):
        for col in ints:
            frame[col] = frame[col].astype("int64")
        for col in floats:
            frame[col] = frame[col].astype("float64")
    return Comparison(metrics, by_level, pay, {r.name: r.lines for r in runs}, {r.name: r.graph for r in runs},
                      report_currency, fx if report_currency is not None else None, fx_day)


def _reporting(fx: FxTable | Any | None, report_currency: str | None, fx_day: date | None,
               events: Iterable[list[Event]]) -> tuple[FxTable | None, str | None, date | None]:
    """Check the reporting arguments; the day defaults to the UTC day of the latest order."""
    if report_currency is None:
        if fx is not None or fx_day is not None:
            raise ValueError("fx= and fx_day= need report_currency= (the currency to report in)")
        return None, None, None
    Money(0, report_currency)  # an unknown code is refused here, by name
    table = FxTable() if fx is None else FxTable.load(fx)
    if fx_day is None:
        times = [e.at for evs in events for e in evs if e.type == "order"]
        fx_day = max(times).astimezone(UTC).date() if times else None
    elif not isinstance(fx_day, date) or hasattr(fx_day, "hour"):
        raise TypeError("fx_day must be a datetime.date (a day), not a datetime")
    return table, report_currency, fx_day


def compare(events: Iterable[Event] | str | Path, policies: Mapping[str, PolicyLike] | Sequence[PolicyLike], *,
            graph: ShareGraph | None = None,
            binding: BindingConfig | BindingMode | str = BindingMode.FIRST_WINS,
            fx: FxTable | Mapping[Any, Any] | str | Path | None = None, report_currency: str | None = None,
            fx_day: date | None = None) -> Comparison:
    """Compute one history under each policy (a mapping ``name -> policy``, or a list named by the
    policies' labels) and compare them.  ``events``: events or a JSON Lines path.

    ``report_currency`` (with ``fx``, an :class:`~cps_engine.fx.FxTable` or what
    :meth:`FxTable.load <cps_engine.fx.FxTable.load>` reads) adds the :data:`REPORT` columns: totals
    converted at the rates in force on ``fx_day`` (default: the UTC day of the latest order).
    Without ``fx`` only rows already in the reporting currency convert; any other raises
    :class:`~cps_engine.fx.MissingRate`."""
    evs = load_events(events) if isinstance(events, (str, Path)) else list(events)
    table, report, day = _reporting(fx, report_currency, fx_day, [evs])
    if graph is None:
        graph = ShareGraph.from_events(evs, binding=binding)
    cols = order_columns(evs)
    named = _named(policies)
    if not named:
        raise ValueError("compare needs at least one policy")
    direct = _direct_sellers(cols, graph)
    return _assemble([_evaluate(name, cols, graph, pol, direct) for name, pol in named.items()],
                     fx=table, report_currency=report, fx_day=day)


def compare_histories(runs: Mapping[str, tuple[Iterable[Event], PolicyLike]], *,
                      binding: BindingConfig | BindingMode | str = BindingMode.FIRST_WINS,
                      fx: FxTable | Mapping[Any, Any] | str | Path | None = None, report_currency: str | None = None,
                      fx_day: date | None = None) -> Comparison:
    """Compare policies each on its own history (``name -> (events, policy)``): e.g. simulated
    launches where sharing responds to the commission offered (:func:`cps_engine.simulate.launch`).
    ``fx``, ``report_currency``, ``fx_day``: as in :func:`compare` (the default day is the latest
    order of all the histories)."""
    histories = {name: (list(events), policy) for name, (events, policy) in runs.items()}
    table, report, day = _reporting(fx, report_currency, fx_day, [evs for evs, _ in histories.values()])
    out = []
    for name, (evs, policy) in histories.items():
        graph = ShareGraph.from_events(evs, binding=binding)
        out.append(_evaluate(name, order_columns(evs), graph, load_policy(policy)))
    return _assemble(out, fx=table, report_currency=report, fx_day=day)
