"""What-if: one history, several policies — what each would cost, who would earn what, and how.

:func:`compare` computes an event history under several policies with the batch engine and returns
a :class:`Comparison`: a tidy DataFrame of metrics per policy (and currency), commission by level,
payouts per payee, per-payee deltas between two policies ("who wins, who loses"), and matplotlib
figures (cost per policy, Lorenz curves of payouts, commission by level, depth histogram of the
share graph).

Metrics (money in integer minor units; ratios as ``Decimal`` rounded half-even to 6 places):

- ``orders``, ``gmv_minor`` (commissionable base net of refunds), ``commission_minor``,
  ``effective_rate`` (commission / GMV), ``merchant_net_minor`` (GMV - commission);
- ``payees`` (people paid anything), ``median_payout_minor``, ``top1_share`` / ``top10_share``
  (share of all payouts going to the top 1% / 10% of payees, at least one payee), ``gini``
  (Gini coefficient of payouts over the payees);
- ``lines``, ``lines_level_1``, ``lines_level_2``, ``lines_level_3plus``, ``max_level`` (the
  deepest level paid — CN-DEPTH);
- compliance indicators (docs/compliance.md): ``self_purchase_share`` (commission on orders
  bought by participants — people who shared or have a bound downline; CN-SELF, US-INTERNAL),
  ``beyond_level_2_share`` (commission paid at level 3 or deeper; CN-DEPTH), ``no_direct_sales_share``
  (commission to payees with no direct sale — no order whose nearest link is them; US-DOWNLINE,
  EU-INTRO) and ``downline_payees`` (payees earning more than half from level 2 or deeper;
  US-DOWNLINE).  These indicators are an aid, not legal advice.

>>> from cps_engine.models import load_events
>>> evs = load_events([
...   '{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00+08:00"}',
...   '{"type":"share","id":"s2","sharer":"bob","parent":"s1","at":"2026-03-01T11:00:00+08:00"}',
...   '{"type":"order","id":"o1","buyer":"cat","share":"s2","amount":"100.00","currency":"CNY",'
...   '"at":"2026-03-01T12:00:00+08:00"}'])
>>> c = compare(evs, {"first": {"kind": "first_sharer", "rate": "10%"},
...                   "two-level": {"kind": "capped_multilevel", "rates": ["10%", "5%"]}})
>>> c.metrics[["policy", "commission_minor", "effective_rate", "payees"]].values.tolist()
[['first', 1000, Decimal('0.100000'), 1], ['two-level', 1500, Decimal('0.150000'), 2]]
>>> c.deltas("first", "two-level")[["payee", "delta_minor"]].values.tolist()
[['bob', 1000], ['amy', -500]]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cps_engine.batch import _frame
from cps_engine.batch._kernels import participants, run
from cps_engine.batch._orders import OrderColumns, order_columns
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

__all__ = ["DISCLAIMER", "METRICS", "Comparison", "compare", "compare_histories", "gini", "ratio"]

PolicyLike = PolicyConfig | Mapping[str, Any] | str | Path

#: Metric columns of :attr:`Comparison.metrics`, after ``policy`` and ``currency``.
METRICS: tuple[str, ...] = (
    "orders", "gmv_minor", "commission_minor", "effective_rate", "merchant_net_minor", "payees",
    "median_payout_minor", "top1_share", "top10_share", "gini", "lines", "lines_level_1", "lines_level_2",
    "lines_level_3plus", "max_level", "self_purchase_share", "beyond_level_2_share", "no_direct_sales_share",
    "downline_payees",
)
_PLACES = 6


def ratio(num: int | Fraction, den: int | Fraction) -> Decimal:
    """``num / den`` as a Decimal rounded half-even to 6 places (0 when ``den`` is 0).

    >>> ratio(1, 3), ratio(2, 0)
    (Decimal('0.333333'), Decimal('0.000000'))
    """
    if den == 0:
        return Decimal(0).scaleb(-_PLACES)
    q = Fraction(num) / Fraction(den)
    return Decimal(round(q * 10**_PLACES)).scaleb(-_PLACES)


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


def _median(xs: list[int]) -> Decimal:
    if not xs:
        return Decimal(0)
    k = len(xs)
    mid = k // 2
    if k % 2:
        return Decimal(xs[mid])
    return (Decimal(xs[mid - 1]) + Decimal(xs[mid])) / 2


def _top_share(desc: list[int], fraction: Fraction, total: int) -> Decimal:
    k = max(1, math.ceil(len(desc) * fraction)) if desc else 0
    return ratio(sum(desc[:k]), total)


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
    lines = _frame(cols, res, policy)
    participant = participants(cols, graph)
    if direct is None:
        direct = _direct_sellers(cols, graph)
    return _Run(name, policy, lines, cols, res.net, participant, direct, graph)


def _direct_sellers(cols: OrderColumns, graph: ShareGraph) -> set[str]:
    """People who are the nearest link of at least one order with a positive net base."""
    nearest = LastSharer(rate=Fraction(1))
    res = run(cols, graph, nearest)
    return set(res.payee.distinct())


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
        per_payee = ln.groupby("payee", sort=True)["amount_minor"].sum()
        deep = ln[ln["level"] >= 2].groupby("payee", sort=True)["amount_minor"].sum()
        amounts = sorted((int(v) for v in per_payee.tolist() if v), reverse=True)
        level_counts = ln.groupby("level")["amount_minor"].agg(["size", "sum"])
        for level, row in level_counts.iterrows():
            levels.append({"policy": r.name, "currency": cur, "level": int(level), "lines": int(row["size"]),
                           "commission_minor": int(row["sum"]), "share": ratio(int(row["sum"]), commission)})
        for payee, amount in per_payee.items():
            d = int(deep.get(payee, 0))
            payouts.append({"policy": r.name, "currency": cur, "payee": payee, "amount_minor": int(amount),
                            "level_1_minor": int(amount) - d, "downline_minor": d})
        self_paid = int(ln.loc[ln["order"].isin(participant_orders), "amount_minor"].sum())
        beyond = int(ln.loc[ln["level"] >= 3, "amount_minor"].sum())
        no_direct = int(ln.loc[~ln["payee"].isin(r.direct), "amount_minor"].sum())
        downline = sum(1 for payee, amount in per_payee.items() if amount and 2 * int(deep.get(payee, 0)) > amount)
        lv = ln["level"].to_numpy()
        rows.append({
            "policy": r.name, "currency": cur, "orders": int(mine.sum()), "gmv_minor": gmv,
            "commission_minor": commission, "effective_rate": ratio(commission, gmv),
            "merchant_net_minor": gmv - commission, "payees": len(amounts),
            "median_payout_minor": _median(sorted(amounts)),
            "top1_share": _top_share(amounts, Fraction(1, 100), commission),
            "top10_share": _top_share(amounts, Fraction(1, 10), commission),
            "gini": ratio(gini(amounts), 1), "lines": len(ln),
            "lines_level_1": int((lv == 1).sum()), "lines_level_2": int((lv == 2).sum()),
            "lines_level_3plus": int((lv >= 3).sum()), "max_level": int(lv.max()) if len(lv) else 0,
            "self_purchase_share": ratio(self_paid, commission), "beyond_level_2_share": ratio(beyond, commission),
            "no_direct_sales_share": ratio(no_direct, commission), "downline_payees": downline,
        })
    return rows, levels, payouts


@dataclass
class Comparison:
    """Policies compared on a history: metrics, payouts, deltas and figures."""

    metrics: pd.DataFrame
    by_level: pd.DataFrame
    payouts: pd.DataFrame
    lines: dict[str, pd.DataFrame]
    graphs: dict[str, ShareGraph] = field(repr=False)

    @property
    def policies(self) -> list[str]:
        return list(self.lines)

    def _currency(self, currency: str | None) -> str:
        if currency is not None:
            return currency
        if not len(self.metrics):
            return "CNY"
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

    def summary(self) -> pd.DataFrame:
        """The metrics with money in major units and ratios as percentages (text, for display)."""
        out = self.metrics.copy()
        for col in ("gmv_minor", "commission_minor", "merchant_net_minor"):
            out[col.removesuffix("_minor")] = [str(Money(int(v), c).amount)
                                               for v, c in zip(out[col], out["currency"], strict=True)]
        for col in ("effective_rate", "top1_share", "top10_share", "self_purchase_share", "beyond_level_2_share",
                    "no_direct_sales_share"):
            out[col] = [f"{(v * 100).quantize(Decimal('0.01'))}%" for v in out[col]]
        return out.drop(columns=["gmv_minor", "commission_minor", "merchant_net_minor"])

    # ------------------------------------------------------------------ figures
    def plot_cost(self, ax: Axes | None = None, *, currency: str | None = None) -> Figure:
        """Bar chart: commission per policy, labelled with the effective rate."""
        fig, ax = _axes(ax)
        cur = self._currency(currency)
        m = self.metrics[self.metrics["currency"] == cur]
        exp = Money(0, cur).exponent
        heights = [float(Decimal(int(v)).scaleb(-exp)) for v in m["commission_minor"]]  # ok: display
        bars = ax.bar(list(m["policy"]), heights, color=_colours(len(m)))
        for bar, rate in zip(bars, m["effective_rate"], strict=True):
            ax.annotate(f"{(rate * 100).quantize(Decimal('0.01'))}%", (bar.get_x() + bar.get_width() / 2,
                        bar.get_height()), ha="center", va="bottom", fontsize=8)
        ax.margins(y=0.1)
        ax.set_title(f"Commission cost per policy ({cur})")
        ax.set_ylabel(f"commission ({cur})")
        ax.tick_params(axis="x", labelrotation=15)
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
        ax.set_title(f"Lorenz curve of payouts ({cur})")
        ax.set_xlabel("share of payees (poorest first)")
        ax.set_ylabel("share of commission")
        ax.legend(fontsize=7, loc="upper left")
        return fig

    def plot_levels(self, ax: Axes | None = None, *, currency: str | None = None, max_level: int = 4) -> Figure:
        """Stacked bars: commission by level per policy (levels beyond ``max_level`` grouped)."""
        fig, ax = _axes(ax)
        cur = self._currency(currency)
        exp = Money(0, cur).exponent
        names = self.policies
        bottoms = [0.0] * len(names)  # ok: display
        labels = [*(str(k) for k in range(1, max_level)), f"{max_level}+"]
        for k, colour in zip(range(1, max_level + 1), _colours(max_level), strict=True):
            heights = []
            for name in names:
                lv = self.by_level[(self.by_level["policy"] == name) & (self.by_level["currency"] == cur)]
                sel = lv["level"] >= k if k == max_level else lv["level"] == k
                heights.append(float(Decimal(int(lv.loc[sel, "commission_minor"].sum())).scaleb(-exp)))  # ok: display
            ax.bar(names, heights, bottom=bottoms, color=colour, label=f"level {labels[k - 1]}")
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
        ax.margins(y=0.1)
        ax.set_title(f"Commission by level ({cur})")
        ax.set_ylabel(f"commission ({cur})")
        ax.legend(fontsize=7)
        ax.tick_params(axis="x", labelrotation=15)
        return fig

    def plot_depth(self, ax: Axes | None = None) -> Figure:
        """Histogram of share depth (sharers on the path, root = 1) with the 3-level line (CN-DEPTH)."""
        fig, ax = _axes(ax)
        graph = next(iter(self.graphs.values()), None)
        hist = graph.depth_histogram() if graph is not None else {}
        if hist:
            depths = [d + 1 for d in hist]
            ax.bar(depths, list(hist.values()), color="#4c72b0", width=1.0)
            ax.set_yscale("log")
        ax.axvline(3, color="#c44e52", linestyle="--", linewidth=1, label="3 levels (CN threshold)")
        ax.set_title("Share graph: shares by depth")
        ax.set_xlabel("sharers on the path (depth + 1)")
        ax.set_ylabel("shares (log)")
        ax.legend(fontsize=7)
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


def _assemble(runs: list[_Run]) -> Comparison:
    import pandas as pd

    rows: list[dict[str, Any]] = []
    levels: list[dict[str, Any]] = []
    payouts: list[dict[str, Any]] = []
    for r in runs:
        a, b, c = _metrics(r)
        rows += a
        levels += b
        payouts += c
    metrics = pd.DataFrame(rows, columns=["policy", "currency", *METRICS])
    by_level = pd.DataFrame(levels, columns=["policy", "currency", "level", "lines", "commission_minor", "share"])
    pay = pd.DataFrame(payouts, columns=["policy", "currency", "payee", "amount_minor", "level_1_minor",
                                         "downline_minor"])
    for frame, ints in ((metrics, ("orders", "gmv_minor", "commission_minor", "merchant_net_minor", "payees",
                                   "lines", "lines_level_1", "lines_level_2", "lines_level_3plus", "max_level",
                                   "downline_payees")),
                        (by_level, ("level", "lines", "commission_minor")),
                        (pay, ("amount_minor", "level_1_minor", "downline_minor"))):
        for col in ints:
            frame[col] = frame[col].astype("int64")
    return Comparison(metrics, by_level, pay, {r.name: r.lines for r in runs}, {r.name: r.graph for r in runs})


def compare(events: Iterable[Event] | str | Path, policies: Mapping[str, PolicyLike] | Sequence[PolicyLike], *,
            graph: ShareGraph | None = None,
            binding: BindingConfig | BindingMode | str = BindingMode.FIRST_WINS) -> Comparison:
    """Compute one history under each policy (a mapping ``name -> policy``, or a list named by the
    policies' labels) and compare them.  ``events``: events or a JSON Lines path."""
    evs = load_events(events) if isinstance(events, (str, Path)) else list(events)
    if graph is None:
        graph = ShareGraph.from_events(evs, binding=binding)
    cols = order_columns(evs)
    named = _named(policies)
    if not named:
        raise ValueError("compare needs at least one policy")
    direct = _direct_sellers(cols, graph)
    return _assemble([_evaluate(name, cols, graph, pol, direct) for name, pol in named.items()])


def compare_histories(runs: Mapping[str, tuple[Iterable[Event], PolicyLike]], *,
                      binding: BindingConfig | BindingMode | str = BindingMode.FIRST_WINS) -> Comparison:
    """Compare policies each on its own history (``name -> (events, policy)``): e.g. simulated
    launches where sharing responds to the commission offered (:func:`cps_engine.simulate.launch`)."""
    out = []
    for name, (events, policy) in runs.items():
        evs = list(events)
        graph = ShareGraph.from_events(evs, binding=binding)
        out.append(_evaluate(name, order_columns(evs), graph, load_policy(policy)))
    return _assemble(out)
