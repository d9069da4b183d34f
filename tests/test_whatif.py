"""Policy comparison: metrics agree with the per-order engine, deltas add up, figures render,
and ``cps-engine whatif`` prints the table and writes the plot."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
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
from cps_engine.whatif import METRICS, Comparison, compare, gini, ratio
from tests.strategies import Programme, policy_configs, programmes

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
    assert list(c.metrics.columns) == ["policy", "currency", *METRICS]
    assert c.policies == ["first", "three"]
    first, three = _row(c, "first"), _row(c, "three")
    # CNY net bases: o1 8000 (after the refund), o2 20000, o3 5000
    assert first["gmv_minor"] == three["gmv_minor"] == 33000
    # first: o1 amy 800 (level 3); o2 amy 2000 (level 2: bob is the buyer); o3 eve's only upline cat 500
    assert first["commission_minor"] == 3300 and first["payees"] == 2
    assert first["effective_rate"] == Decimal("0.100000")
    assert first["merchant_net_minor"] == 33000 - 3300
    # three: o1 cat 800, bob 400, amy 160; o2 cat 2000, amy 1000; o3 cat 500
    assert three["commission_minor"] == 4860 and three["payees"] == 3
    assert (three["lines_level_1"], three["lines_level_2"], three["lines_level_3plus"]) == (3, 2, 1)
    assert three["max_level"] == 3 and first["max_level"] == 3
    # bob is a participant (he shared): o2 is a participant's own purchase
    assert first["self_purchase_share"] == ratio(2000, 3300)
    assert three["self_purchase_share"] == ratio(3000, 4860)
    assert three["beyond_level_2_share"] == ratio(160, 4860)
    # direct sellers: cat (o1, o2 nearest link) and cat again (o3, binding) and amy (o4, JPY)
    assert three["no_direct_sales_share"] == ratio(400, 4860)
    assert first["no_direct_sales_share"] == Decimal("0.000000")  # amy sold o4 directly
    # payees mostly paid at level >= 2: amy (first: all of it), bob and amy (three)
    assert first["downline_payees"] == 1 and three["downline_payees"] == 2
    # payouts cat 3300, amy 1160, bob 400: sum |xi - xj| over ordered pairs / (2 n total)
    assert gini([3300, 400, 1160]) == Fraction(2 * (2900 + 2140 + 760), 2 * 3 * 4860)
    assert three["gini"] == ratio(gini([3300, 400, 1160]), 1) == Decimal("0.397805")
    assert three["top1_share"] == three["top10_share"] == ratio(3300, 4860)
    assert three["median_payout_minor"] == 1160
    jpy = _row(c, "first", "JPY")
    assert (jpy["orders"], jpy["commission_minor"], jpy["lines_level_1"]) == (1, 100, 1)


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
            assert row["gini"] == ratio(gini(list(mine.values())), 1)
            levels = c.by_level[(c.by_level["policy"] == name) & (c.by_level["currency"] == cur)]
            assert int(levels["commission_minor"].sum()) == row["commission_minor"]
            assert int(levels["lines"].sum()) == row["lines"]
            for share in ("self_purchase_share", "beyond_level_2_share", "no_direct_sales_share", "top1_share",
                          "top10_share", "effective_rate"):
                assert Decimal(0) <= row[share] <= Decimal(1)
            assert row["top1_share"] <= row["top10_share"]
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
