"""Policy comparison: metrics agree with the per-order engine, deltas add up, the metrics are numeric
(exact values beside them), the summary has one row per policy, figures render with room for their
labels, totals convert to one reporting currency, and ``cps-engine whatif`` prints the table and
writes the plot."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cps_engine import Event, ShareGraph, compute_events, load_policy, parse_event
from cps_engine.cli_whatif import whatif
from cps_engine.fx import FxTable, MissingRate
from cps_engine.whatif import EXACT, METRICS, RATIOS, REPORT, Comparison, compare, gini, ratio
from tests.strategies import Programme, policy_configs, programmes

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DATA = Path(__file__).resolve().parent.parent / "src" / "cps_engine" / "data"


def _ev(**raw: Any) -> Event:
    raw.setdefault("at", T0)
    return parse_event(raw)


# amy -> bob -> cat share chain; dan buys through cat's share; bob buys through his own share;
# eve (bound to cat) buys without a link; a JPY order through amy's share.
HISTORY = [
    _ev(type="share", id="s1", sharer="amy", at=T0),
    _ev(type="share", id="s2", sharer="bob", parent="s1", at=T0 + timedelta(minutes=1)),
    _ev(type="share", id="s3", sharer="cat", parent="s2", at=T0 + timedelta(minutes=2)),
    _ev(type="bind", id="b1", user="eve", upline="cat", at=T0 + timedelta(minutes=3)),
    _ev(type="order", id="o1", buyer="dan", share="s3", amount="100.00", currency="CNY",
        at=T0 + timedelta(hours=1)),
    _ev(type="order", id="o2", buyer="bob", share="s3", amount="200.00", currency="CNY",
        at=T0 + timedelta(hours=2)),
    _ev(type="order", id="o3", buyer="eve", amount="50.00", currency="CNY", at=T0 + timedelta(hours=3)),
    _ev(type="order", id="o4", buyer="gus", share="s1", amount="1000", currency="JPY", at=T0 + timedelta(hours=4)),
    _ev(type="refund", id="r1", order="o1", amount="20.00", at=T0 + timedelta(days=1)),
]
POLICIES = {
    "first": {"kind": "first_sharer", "rate": "10%"},
    "three": {"kind": "capped_multilevel", "rates": ["10%", "5%", "2%"]},
}


def _row(c: Comparison, policy: str, currency: str = "CNY") -> dict[str, Any]:
    m = c.metrics
    rows = m[(m["policy"] == policy) & (m["currency"] == currency)].to_dict("records")
    assert len(rows) == 1
    return rows[0]


def test_hand_example_metrics() -> None:
    c = compare(HISTORY, POLICIES)
    assert list(c.metrics.columns) == ["policy", "currency", *METRICS, *EXACT]
    assert c.policies == ["first", "three"]
    first, three = _row(c, "first"), _row(c, "three")
    # CNY net bases: o1 8000 (after the refund), o2 20000, o3 5000
    assert first["gmv_minor"] == three["gmv_minor"] == 33000
    # first: o1 amy 800 (level 3); o2 amy 2000 (level 2: bob is the buyer); o3 eve's only upline cat 500
    assert first["commission_minor"] == 3300 and first["payees"] == 2
    assert first["effective_rate_exact"] == Fraction(1, 10) and first["effective_rate"] == 0.1
    assert first["merchant_net_minor"] == 33000 - 3300
    # three: o1 cat 800, bob 400, amy 160; o2 cat 2000, amy 1000; o3 cat 500
    assert three["commission_minor"] == 4860 and three["payees"] == 3
    assert three["effective_rate_exact"] == Fraction(4860, 33000)
    assert (three["lines_level_1"], three["lines_level_2"], three["lines_level_3plus"]) == (3, 2, 1)
    assert three["max_level"] == 3 and first["max_level"] == 3
    # bob is a participant (he shared): o2 is a participant's own purchase
    assert first["self_purchase_share_exact"] == Fraction(2000, 3300)
    assert three["self_purchase_share_exact"] == Fraction(3000, 4860)
    assert three["beyond_level_2_share_exact"] == Fraction(160, 4860)
    # direct sellers: cat (o1, o2 nearest link) and cat again (o3, binding) and amy (o4, JPY)
    assert three["no_direct_sales_share_exact"] == Fraction(400, 4860)
    assert first["no_direct_sales_share_exact"] == 0  # amy sold o4 directly
    # payees mostly paid at level >= 2: amy (first: all of it), bob and amy (three)
    assert first["downline_payees"] == 1 and three["downline_payees"] == 2
    # payouts cat 3300, amy 1160, bob 400: sum |xi - xj| over ordered pairs / (2 n total)
    assert gini([3300, 400, 1160]) == Fraction(2 * (2900 + 2140 + 760), 2 * 3 * 4860)
    assert three["gini_exact"] == gini([3300, 400, 1160])
    assert ratio(three["gini_exact"], 1) == Decimal("0.397805")
    assert three["top1_share_exact"] == three["top10_share_exact"] == Fraction(3300, 4860)
    assert three["median_payout_minor"] == 1160 and three["median_payout_exact"] == 1160
    # first: payouts amy 2800, cat 500: the median is 1650 exactly
    assert first["median_payout_minor"] == 1650 and first["median_payout_exact"] == 1650
    for row in (first, three):  # each float is the exact value, to the nearest double
        for name in RATIOS:
            assert row[name] == float(row[f"{name}_exact"])
    jpy = _row(c, "first", "JPY")
    assert (jpy["orders"], jpy["commission_minor"], jpy["lines_level_1"]) == (1, 100, 1)


def test_metrics_are_numeric_and_plot_directly() -> None:
    import numpy as np

    c = compare(HISTORY, POLICIES)
    m = c.metrics
    for col in METRICS:
        want = np.float64 if col in RATIOS else np.int64
        assert m[col].dtype == want, (col, m[col].dtype)
    assert set(m.select_dtypes("number").columns) == set(METRICS)
    for col in EXACT:
        assert all(isinstance(v, Fraction) for v in m[col]), col
    assert c.by_level["share"].dtype == np.float64
    assert all(isinstance(v, Fraction) for v in c.by_level["share_exact"])
    assert (c.by_level["share"] == [float(v) for v in c.by_level["share_exact"]]).all()
    for col in ("level", "lines", "commission_minor"):
        assert c.by_level[col].dtype == np.int64
    # pandas plots the numeric columns as they are (no conversion by the analyst)
    cny = m[m["currency"] == "CNY"].set_index("policy")
    ax = cny[["effective_rate", "gini", "top10_share"]].plot.bar()
    assert len(ax.patches) == 3 * len(POLICIES)
    heights = sorted(float(p.get_height()) for p in ax.patches)
    assert heights == sorted(float(v) for col in ("effective_rate", "gini", "top10_share") for v in cny[col])
    assert Fraction(2800, 3300) == pytest.approx(heights[-1])  # first: amy gets 2800 of 3300
    import matplotlib.pyplot as plt

    plt.close("all")


def test_categorical_payees_give_the_same_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch frame may hand payees over as a categorical column with many categories (looking
    a payee up in such an index once overflowed in pandas): the metrics are the same."""
    import pandas as pd

    import cps_engine.whatif as whatif

    plain = compare(HISTORY, POLICIES)
    original = whatif._frame

    def categorical(*args: Any, **kwargs: Any) -> pd.DataFrame:
        lines = original(*args, **kwargs)
        names = sorted({*(f"A{k:03d}" for k in range(300)), *lines["payee"].astype(str)})  # real ones last
        return lines.assign(payee=pd.Categorical(lines["payee"].astype(str), categories=names))

    monkeypatch.setattr(whatif, "_frame", categorical)
    c = compare(HISTORY, POLICIES)
    assert c.metrics.equals(plain.metrics)
    assert c.payouts.astype({"payee": str}).equals(plain.payouts.astype({"payee": str}))
    assert c.deltas("first", "three").values.tolist() == plain.deltas("first", "three").values.tolist()


def test_the_median_payout_rounds_half_even_and_keeps_the_exact_value() -> None:
    # last-sharer 10%: payees get 3 and 4 (minor): the median is 3.5 -> 4 (half-even); 2.5 -> 2
    evs = [_ev(type="share", id="sa", sharer="amy"), _ev(type="share", id="sb", sharer="bob"),
           _ev(type="order", id="oa", buyer="x", share="sa", amount="0.30", currency="CNY"),
           _ev(type="order", id="ob", buyer="y", share="sb", amount="0.40", currency="CNY")]
    row = _row(compare(evs, {"p": {"kind": "last_sharer", "rate": "10%"}}), "p")
    assert row["median_payout_exact"] == Fraction(7, 2) and row["median_payout_minor"] == 4
    evs[3] = _ev(type="order", id="ob", buyer="y", share="sb", amount="0.20", currency="CNY")
    row = _row(compare(evs, {"p": {"kind": "last_sharer", "rate": "10%"}}), "p")
    assert row["median_payout_exact"] == Fraction(5, 2) and row["median_payout_minor"] == 2


def test_summary_is_one_row_per_policy() -> None:
    import numpy as np

    c = compare(HISTORY, POLICIES)
    s = c.summary()
    assert list(s["policy"]) == ["first", "three"] and (s["currency"] == "CNY").all()
    assert list(s.columns) == ["policy", "currency", "orders", "gmv", "commission", "merchant_net", "median_payout",
                               "effective_rate", "payees", "top10_share", "gini", "max_level", "self_purchase_share",
                               "beyond_level_2_share", "no_direct_sales_share"]
    first = s.set_index("policy").loc["first"]
    assert (first["orders"], first["gmv"], first["commission"]) == (3, Decimal("330.00"), Decimal("33.00"))
    assert first["merchant_net"] == Decimal("297.00") and first["median_payout"] == Decimal("16.50")
    assert first["effective_rate"] == 0.1
    for col in ("orders", "payees", "max_level"):
        assert s[col].dtype == np.int64
    for col in ("effective_rate", "top10_share", "gini", "self_purchase_share", "beyond_level_2_share"):
        assert s[col].dtype == np.float64
    jpy = c.summary("JPY").set_index("policy")
    assert jpy.loc["first", "commission"] == Decimal(100) and jpy.loc["first", "orders"] == 1


def test_deltas_say_who_wins_and_who_loses() -> None:
    c = compare(HISTORY, POLICIES)
    d = c.deltas("first", "three", currency="CNY")
    assert d[["payee", "before_minor", "after_minor", "delta_minor"]].values.tolist() == [
        ["cat", 500, 3300, 2800], ["bob", 0, 400, 400], ["amy", 2800, 1160, -1640]]
    assert c.deltas("first", "first").empty
    with pytest.raises(KeyError, match="no policy"):
        c.deltas("first", "nope")


def _reference_totals(events: list[Event], policy: Any) -> dict[str, Any]:
    out: dict[str, Any] = defaultdict(int)
    payees: dict[tuple[str, str], int] = defaultdict(int)
    for s in compute_events(events, policy):
        cur = s.base.currency
        out[("gmv", cur)] += s.base.minor
        out[("orders", cur)] += 1
        for ln in s.lines:
            out[("commission", cur)] += ln.amount.minor
            out[("lines", cur)] += 1
            payees[(cur, ln.payee)] += ln.amount.minor
    out["payees"] = payees
    return out


@given(prog=programmes(currencies=("CNY", "JPY")),
       cfgs=st.lists(policy_configs(fixed=False), min_size=1, max_size=3))
@settings(max_examples=20)
def test_metrics_agree_with_the_per_order_engine(prog: Programme, cfgs: list[dict[str, Any]]) -> None:
    named = {f"p{i}": load_policy(cfg) for i, cfg in enumerate(cfgs)}
    c = compare(prog.events, named)
    for name, policy in named.items():
        ref = _reference_totals(prog.events, policy)
        lines = c.lines[name]
        for cur in {o.currency for o in prog.orders}:
            row = _row(c, name, cur)
            assert row["orders"] == ref[("orders", cur)]
            assert row["gmv_minor"] == ref[("gmv", cur)]
            assert row["commission_minor"] == ref[("commission", cur)]
            assert row["merchant_net_minor"] == ref[("gmv", cur)] - ref[("commission", cur)]
            assert row["lines"] == ref[("lines", cur)] == len(lines[lines["currency"] == cur])
            mine = {p: a for (cc, p), a in ref["payees"].items() if cc == cur and a}
            assert row["payees"] == len(mine)
            assert row["gini_exact"] == gini(list(mine.values()))
            assert row["gini"] == float(row["gini_exact"])
            levels = c.by_level[(c.by_level["policy"] == name) & (c.by_level["currency"] == cur)]
            assert int(levels["commission_minor"].sum()) == row["commission_minor"]
            assert int(levels["lines"].sum()) == row["lines"]
            for share in ("self_purchase_share", "beyond_level_2_share", "no_direct_sales_share", "top1_share",
                          "top10_share", "effective_rate"):
                assert 0 <= row[f"{share}_exact"] <= 1 and 0.0 <= row[share] <= 1.0
            assert row["top1_share_exact"] <= row["top10_share_exact"]
    a, b = next(iter(named)), list(named)[-1]
    d = c.deltas(a, b)
    for cur in {o.currency for o in prog.orders}:
        mine = d[d["currency"] == cur]
        assert int(mine["delta_minor"].sum()) == (_row(c, b, cur)["commission_minor"]
                                                   - _row(c, a, cur)["commission_minor"])


@given(xs=st.lists(st.integers(0, 10**9), max_size=30))
def test_gini_is_the_mean_absolute_difference_formula(xs: list[int]) -> None:
    """Gini = sum |xi - xj| / (2 n^2 mean), computed the slow way."""
    g = gini(xs)
    total = sum(xs)
    if not xs or total == 0:
        assert g == 0
        return
    n = len(xs)
    assert g == Fraction(sum(abs(a - b) for a in xs for b in xs), 2 * n * total)
    assert 0 <= g < 1
    assert gini([3 * x for x in xs]) == g


def test_figures_render_and_save(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    c = compare(HISTORY, POLICIES)
    for fig in (c.plot_cost(), c.plot_lorenz(), c.plot_levels(), c.plot_depth(), c.plot(currency="JPY")):
        assert isinstance(fig, Figure)
        out = tmp_path / "f.png"
        fig.savefig(out)
        assert out.stat().st_size > 1000
    assert len(c.plot().axes) == 4
    lorenz = c.plot_lorenz()
    assert len(lorenz.axes[0].lines) == 1 + len(POLICIES)  # equality line + one curve per policy


def _drawn(fig: Any) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _inside(inner: Any, outer: Any, tol: float = 0.5) -> bool:
    return bool(inner.x0 >= outer.x0 - tol and inner.x1 <= outer.x1 + tol
                and inner.y0 >= outer.y0 - tol and inner.y1 <= outer.y1 + tol)


def _disjoint(boxes: list[Any]) -> bool:
    boxes = sorted(boxes, key=lambda b: b.x0)
    return all(a.x1 <= b.x0 for a, b in itertools.pairwise(boxes))


def test_the_cost_figure_has_room_for_its_labels() -> None:
    c = compare(HISTORY, POLICIES)
    fig = c.plot_cost()
    renderer = _drawn(fig)
    ax = fig.axes[0]
    tallest = max(p.get_height() for p in ax.patches)
    assert tallest == pytest.approx(48.60)  # three: 4860 fen
    bottom, top = ax.get_ylim()
    assert bottom == 0 and top >= tallest * 1.15
    assert [t.get_text() for t in ax.texts] == ["10.00%", "14.73%"]  # 4860 / 33000, half-even
    frame = ax.get_window_extent(renderer)
    for label in ax.texts:  # every rate label is drawn inside the axes, not clipped at the top
        assert _inside(label.get_window_extent(renderer), frame), label.get_text()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["first", "three"]


def test_long_policy_names_do_not_overlap() -> None:
    names = {f"three levels {k}/5/2, capped at 15% (proposal {k})": {"kind": "capped_multilevel",
                                                                     "rates": [f"{k}%", "5%", "2%"], "cap": "15%"}
             for k in range(4, 10)}
    c = compare(HISTORY, names)
    for fig in (c.plot_cost(), c.plot_levels()):
        renderer = _drawn(fig)
        ax = fig.axes[0]
        labels = ax.get_xticklabels()
        assert len(labels) == len(names) and all("proposal" in t.get_text() for t in labels)
        assert _disjoint([t.get_window_extent(renderer) for t in labels])


def test_the_levels_figure_keeps_its_legend_off_the_bars() -> None:
    c = compare(HISTORY, POLICIES)
    fig = c.plot_levels()
    renderer = _drawn(fig)
    ax = fig.axes[0]
    stacks: dict[float, float] = defaultdict(float)
    for p in ax.patches:
        stacks[p.get_x()] += p.get_height()
    assert max(stacks.values()) == pytest.approx(48.60)
    assert ax.get_ylim()[1] >= 48.60 * 1.25
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["level 1", "level 2", "level 3", "level 4+"]
    box = legend.get_window_extent(renderer)
    assert _inside(box, ax.get_window_extent(renderer))
    for p in ax.patches:
        if p.get_height() > 0:
            assert not box.overlaps(p.get_window_extent(renderer))


def _depth_ticks(c: Comparison) -> tuple[Any, list[str], list[float]]:
    fig = c.plot_depth()
    _drawn(fig)
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    return ax, [t.get_text() for t in ax.get_xticklabels()], ticks


def test_the_depth_axis_counts_levels_in_whole_numbers() -> None:
    ax, labels, ticks = _depth_ticks(compare(HISTORY, POLICIES))  # chains of 1, 2 and 3 sharers
    assert labels == ["1", "2", "3"] and ticks == [1, 2, 3]
    assert "level 1, 2" in ax.get_xlabel()
    assert sorted(int(p.get_x() + p.get_width() / 2) for p in ax.patches) == [1, 2, 3]
    deep = [_ev(type="share", id="d0", sharer="p0")] + [
        _ev(type="share", id=f"d{k}", sharer=f"p{k}", parent=f"d{k - 1}", at=T0 + timedelta(minutes=k))
        for k in range(1, 60)]
    ax, labels, ticks = _depth_ticks(compare(deep, POLICIES))
    assert labels[0] == "1" and all(t.isdigit() for t in labels) and len(labels) <= 12
    assert all(float(t).is_integer() and t >= 1 for t in ticks)
    assert ax.get_xlim() == (0.5, 60.5)


def test_figures_render_with_the_sample_history() -> None:
    from cps_engine.cli import sample_path

    c = compare(sample_path(), POLICIES)
    fig = c.plot()
    renderer = _drawn(fig)
    depth = fig.axes[3]
    labels = depth.get_xticklabels()
    assert labels[0].get_text() == "1" and all(t.get_text().isdigit() for t in labels)
    assert _disjoint([t.get_window_extent(renderer) for t in labels])
    cost = fig.axes[0]
    for label in cost.texts:
        assert _inside(label.get_window_extent(renderer), cost.get_window_extent(renderer))


# ------------------------------------------------------------------------------ one reporting currency
FX = FxTable.from_mapping({"JPY/CNY": {"2026-02-27": "0.0480", "2026-03-01": "0.0483", "2026-03-02": "0.05"},
                           "CNY/JPY": {"2026-03-01": "20.7"}})


def test_totals_convert_to_one_reporting_currency() -> None:
    import numpy as np

    c = compare(HISTORY, POLICIES, fx=FX, report_currency="CNY")
    assert list(c.metrics.columns) == ["policy", "currency", *METRICS, *EXACT, *REPORT]
    jpy = _row(c, "first", "JPY")
    assert jpy["fx_day"] == jpy["fx_rate_day"] == date(2026, 3, 1)  # the UTC day of the last order
    assert jpy["fx_rate_exact"] == Decimal("0.0483") and jpy["fx_rate"] == 0.0483
    # 1000 JPY at 0.0483 = 48.30 CNY = 4830 fen; commission 100 JPY = 483 fen; net 900 JPY = 4347 fen
    assert (jpy["gmv_report_minor"], jpy["commission_report_minor"], jpy["merchant_net_report_minor"]) == (
        4830, 483, 4347)
    cny = _row(c, "three")
    assert cny["fx_rate_exact"] == 1 and cny["commission_report_minor"] == cny["commission_minor"] == 4860
    for col in ("gmv_report_minor", "commission_report_minor", "merchant_net_report_minor"):
        assert c.metrics[col].dtype == np.int64
    assert c.metrics["fx_rate"].dtype == np.float64
    # the metrics in their own currencies are unchanged
    plain = compare(HISTORY, POLICIES)
    assert c.metrics[["policy", "currency", *METRICS]].equals(plain.metrics[["policy", "currency", *METRICS]])
    s = c.summary().set_index("policy")
    assert s.loc["first", "report_currency"] == "CNY"
    assert (s.loc["first", "gmv_report"], s.loc["first", "commission_report"]) == (Decimal("378.30"), Decimal("37.83"))
    assert s.loc["first", "merchant_net_report"] == Decimal("340.47")
    assert s.loc["first", "effective_rate_report"] == float(Fraction(3783, 37830))
    # another day, another rate; reporting in JPY shifts the exponent the other way (fen -> yen)
    later = compare(HISTORY, POLICIES, fx=FX, report_currency="CNY", fx_day=date(2026, 3, 2))
    assert _row(later, "first", "JPY")["gmv_report_minor"] == 5000
    yen = compare(HISTORY, POLICIES, fx=FX, report_currency="JPY")
    assert _row(yen, "first")["gmv_report_minor"] == 6831  # 330.00 CNY x 20.7
    assert _row(yen, "first", "JPY")["gmv_report_minor"] == 1000


def test_a_total_is_rounded_once_not_line_by_line() -> None:
    # three 10-yen orders, 10% each: three 1-yen lines.  3 x round(4.83 fen) = 15, round(3 x 4.83) = 14.
    evs = [_ev(type="share", id="s1", sharer="amy")] + [
        _ev(type="order", id=f"o{k}", buyer=f"b{k}", share="s1", amount="10", currency="JPY") for k in range(3)]
    c = compare(evs, {"p": {"kind": "first_sharer", "rate": "10%"}}, fx=FX, report_currency="CNY")
    row = _row(c, "p", "JPY")
    assert row["commission_minor"] == 3 and row["commission_report_minor"] == 14
    assert row["gmv_report_minor"] == 145  # 30 x 4.83 = 144.9
    assert c.summary("JPY").loc[0, "commission_report"] == Decimal("0.14")


def test_a_missing_rate_names_the_currency_and_the_day(tmp_path: Path) -> None:
    with pytest.raises(MissingRate, match=r"JPY->CNY rate dated on or before 2026-03-01") as err:
        compare(HISTORY, POLICIES, report_currency="CNY")  # no table: only CNY converts (to itself)
    assert isinstance(err.value, LookupError) and err.value.day == date(2026, 3, 1)
    early = FxTable.from_mapping({"JPY/CNY": {"2026-03-05": "0.05"}})
    with pytest.raises(MissingRate, match="earliest: 2026-03-05"):
        compare(HISTORY, POLICIES, fx=early, report_currency="CNY")
    with pytest.raises(ValueError, match="report_currency"):
        compare(HISTORY, POLICIES, fx=FX)
    only_cny = [e for e in HISTORY if e.type != "order" or getattr(e, "currency", None) == "CNY"]
    assert _row(compare(only_cny, POLICIES, report_currency="CNY"), "first")["gmv_report_minor"] == 33000


def test_the_fx_table_can_be_a_file(tmp_path: Path) -> None:
    path = tmp_path / "rates.csv"
    path.write_text("date,base,quote,rate\n2026-03-01,JPY,CNY,0.0483\n", encoding="utf-8")
    a = compare(HISTORY, POLICIES, fx=path, report_currency="CNY")
    b = compare(HISTORY, POLICIES, fx=FX, report_currency="CNY")
    assert a.metrics["gmv_report_minor"].tolist() == b.metrics["gmv_report_minor"].tolist()


def test_policies_as_a_list_are_named_by_label() -> None:
    p = load_policy(POLICIES["first"])
    c = compare(HISTORY, [p, p, load_policy(POLICIES["three"])])
    assert c.policies == ["first_sharer", "first_sharer (2)", "capped_multilevel"]
    with pytest.raises(ValueError):
        compare(HISTORY, {})


def test_compare_reads_a_path_and_a_prebuilt_graph(tmp_path: Path) -> None:
    from cps_engine import dump_events

    path = tmp_path / "events.jsonl"
    dump_events(HISTORY, path)
    a = compare(path, POLICIES)
    b = compare(HISTORY, POLICIES, graph=ShareGraph.from_events(HISTORY))
    assert a.metrics.equals(b.metrics)
    assert "commission" in a.summary().columns


# ------------------------------------------------------------------------------ the CLI
def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("whatif")(whatif)

    @app.command()
    def noop() -> None:  # a second command so "whatif" stays a subcommand
        pass

    return app


def test_cli_prints_the_table_and_writes_the_plot(tmp_path: Path) -> None:
    from cps_engine.cli import sample_path

    out = tmp_path / "whatif.png"
    result = CliRunner().invoke(_app(), ["whatif", "--events", str(sample_path()),
                                         "--policy", str(DATA / "first_sharer.toml"),
                                         "--policy", str(DATA / "compliant_cn.toml"), "--plot", str(out)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "first-sharer 10%" in result.output and "cn compliant" in result.output
    assert "effective rate" in result.output and "Who wins" in result.output
    assert "not legal advice" in result.output
    assert out.stat().st_size > 10_000


def test_cli_prints_the_rates_as_percentages() -> None:
    from cps_engine.cli import sample_path

    result = CliRunner().invoke(_app(), ["whatif", "--events", str(sample_path()),
                                         "--policy", str(DATA / "first_sharer.toml")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rate = next(line for line in result.output.splitlines() if "effective rate" in line)
    assert "10.00%" in rate
    gini = next(line for line in result.output.splitlines() if "Gini" in line)
    cell = gini.split("│")[2].strip()  # the exact Gini, half-even to 6 places (not the float column)
    assert len(cell.split(".")[1]) == 6, gini


def test_cli_bad_input_exits_2(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = tmp_path / "bad.toml"
    bad.write_text('kind = "first_sharer"\nrate = 0.1\n', encoding="utf-8")
    from cps_engine.cli import sample_path

    r = runner.invoke(_app(), ["whatif", "--events", str(sample_path()), "--policy", str(bad)])
    assert r.exit_code == 2 and "float" in r.output
    r = runner.invoke(_app(), ["whatif", "--events", str(tmp_path / "missing.jsonl"),
                               "--policy", str(DATA / "first_sharer.toml")])
    assert r.exit_code == 2
    r = runner.invoke(_app(), ["whatif", "--events", str(sample_path()), "--policy", str(DATA / "first_sharer.toml"),
                               "--binding", "sideways"])
    assert r.exit_code == 2
