"""The 1.0 argument family: data first, the policy next (a config, a mapping or a file), the graph
optional and keyword; the 0.x orders still work with a DeprecationWarning; policies declare their
traits instead of tools guessing them."""

from __future__ import annotations

import json
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
from hypothesis import HealthCheck, given, settings

from cps_engine import ShareGraph, compute, compute_events, load_policy
from cps_engine.audit.compliance import compliance_report
from cps_engine.audit.explain import explain_order
from cps_engine.engine import Settlement
from cps_engine.errors import CpsError, InvalidEvent, UnknownReference
from cps_engine.models import load_events
from cps_engine.policies import PolicyConfig
from cps_engine.policies.traits import PolicyTraits
from cps_engine.simulate import offered_commission
from tests.strategies import Programme, policy_configs, programmes

EVENTS = load_events([
    '{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00+08:00"}',
    '{"type":"share","id":"s2","sharer":"bob","parent":"s1","at":"2026-03-01T11:00:00+08:00"}',
    '{"type":"share","id":"s3","sharer":"cat","parent":"s2","at":"2026-03-01T11:30:00+08:00"}',
    '{"type":"order","id":"o1","buyer":"dan","share":"s3","amount":"100.00","currency":"CNY",'
    '"at":"2026-03-01T12:00:00+08:00"}',
    '{"type":"order","id":"o2","buyer":"eve","amount":"50.00","currency":"CNY","at":"2026-03-01T13:00:00+08:00"}',
])
THREE = {"kind": "capped_multilevel", "rates": ["10%", "5%", "2%"], "cap": "15%"}


def lines(s: object) -> list[tuple[str, int, int]]:
    return [(ln.payee, ln.level, ln.amount.minor) for ln in s.lines]  # type: ignore[attr-defined]


class TestOneArgumentOrder:
    def test_compute_takes_the_policy_second_and_the_graph_as_keyword(self) -> None:
        g = ShareGraph.from_events(EVENTS)
        s = compute(EVENTS[3], THREE, graph=g)
        assert lines(s) == [("cat", 1, 882), ("bob", 2, 441), ("amy", 3, 176)]

    def test_policy_as_config_mapping_or_file_gives_the_same_lines(self, tmp_path: Path) -> None:
        f = tmp_path / "p.toml"
        f.write_text('kind = "capped_multilevel"\nrates = ["10%", "5%", "2%"]\ncap = "15%"\n')
        g = ShareGraph.from_events(EVENTS)
        want = lines(compute(EVENTS[3], load_policy(THREE), graph=g))
        assert lines(compute(EVENTS[3], THREE, graph=g)) == want
        assert lines(compute(EVENTS[3], f, graph=g)) == want
        assert lines(compute(EVENTS[3], str(f), graph=g)) == want
        assert [lines(s) for s in compute_events(EVENTS, f)] == [want, []]

    def test_a_chain_can_be_given_instead_of_the_graph(self) -> None:
        g = ShareGraph.from_events(EVENTS)
        chain = g.chain_for(EVENTS[3])
        assert lines(compute(EVENTS[3], THREE, chain=chain)) == lines(compute(EVENTS[3], THREE, graph=g))

    def test_without_graph_a_direct_sale_computes_and_a_shared_order_names_its_share(self) -> None:
        assert lines(compute(EVENTS[4], THREE)) == []
        with pytest.raises(UnknownReference) as info:
            compute(EVENTS[3], THREE)
        assert info.value.field == "share"

    def test_compute_events_reads_a_file_of_events(self, tmp_path: Path) -> None:
        from cps_engine.models import dump_events

        f = tmp_path / "e.jsonl"
        dump_events(EVENTS, f)
        assert [lines(s) for s in compute_events(f, THREE)] == [lines(s) for s in compute_events(EVENTS, THREE)]

    def test_the_old_orders_still_work_and_warn(self) -> None:
        g = ShareGraph.from_events(EVENTS)
        pol = load_policy(THREE)
        want = lines(compute(EVENTS[3], pol, graph=g))
        with pytest.warns(DeprecationWarning, match=r"compute\(order, policy, graph=graph\)"):
            assert lines(compute(EVENTS[3], g, pol)) == want  # type: ignore[arg-type]
        with pytest.warns(DeprecationWarning, match="graph=graph"):
            assert lines(compute_events(EVENTS, pol, g)[0]) == want
        with pytest.raises(TypeError):
            compute(EVENTS[3], pol, pol)

    def test_the_new_orders_do_not_warn(self) -> None:
        g = ShareGraph.from_events(EVENTS)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            compute(EVENTS[3], THREE, graph=g)
            compute_events(EVENTS, THREE, graph=g)


class TestDeclaredTraits:
    @pytest.mark.parametrize(("config", "payees", "level", "rate"), [
        ({"kind": "first_sharer", "rate": "5%"}, 1, None, Fraction(1, 20)),
        ({"kind": "last_sharer", "rate": "5%"}, 1, 1, Fraction(1, 20)),
        (THREE, 3, 3, Fraction(1, 10)),
        ({"kind": "linear", "rate": "9%", "max_depth": 4}, 4, 4, Fraction(9, 100)),
        ({"kind": "linear", "rate": "9%"}, None, None, Fraction(9, 100)),
        ({"kind": "compliant", "rates": ["8%", "2%"], "cap": "10%", "entry_skus": ["kit"]}, 2, 2, Fraction(2, 25)),
    ])
    def test_built_ins_declare_their_shape(self, config: dict[str, object], payees: int | None,
                                           level: int | None, rate: Fraction) -> None:
        t = load_policy(config).traits()
        assert (t.max_payees, t.max_level, t.headline_rate) == (payees, level, rate)

    def test_compliant_declares_entry_skus_and_the_self_purchase_rule(self) -> None:
        t = load_policy({"kind": "compliant", "rates": ["8%"], "cap": "8%", "entry_skus": ["kit"]}).traits()
        assert t.entry_skus == frozenset({"kit"}) and not t.participant_self_purchase_pays_uplines
        assert load_policy(THREE).traits().participant_self_purchase_pays_uplines

    def test_tools_ask_the_policy_not_its_attributes(self) -> None:
        """A plugin that names its fields differently but declares its traits is read correctly by
        the compliance report, the explainer and the simulator (the old getattr guessing read
        ``max_depth`` / ``rates`` / ``entry_skus`` and got None)."""

        class Bonus(PolicyConfig):
            kind: Literal["bonus_test"] = "bonus_test"  # type: ignore[assignment]
            levels_paid: int = 2
            max_levels: ClassVar[int | None] = None

            def awards(self, chain, order):  # type: ignore[no-untyped-def]
                from cps_engine.policies.base import Award

                return [Award(link.payee, k, Fraction(1, 10), "bonus", (link.via,))
                        for k, link in enumerate(chain.nearest(self.levels_paid), start=1)]

            def traits(self) -> PolicyTraits:
                return PolicyTraits(self.kind, self.levels_paid, self.levels_paid, Fraction(1, 10), None,
                                    frozenset({"kit"}))

        pol = Bonus()
        assert offered_commission(pol) == Fraction(1, 10)
        report = compliance_report(EVENTS, pol)
        assert [p.items for p in report.entry_packages if p.declared] == [("kit",)]
        depth = next(f for f in report.findings if f.rule == "CN-DEPTH")
        assert depth.figure == "2"
        exp = explain_order(EVENTS, pol, "o1", "amy")
        assert "at most 2 levels" in exp.render()


class TestJsonForms:
    """Settlements and lines serialise to JSON with exact values, and read back to equal objects."""

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(prog=programmes(currencies=("CNY", "JPY", "KWD")), cfg=policy_configs())
    def test_every_settlement_round_trips_through_json(self, prog: Programme, cfg: dict[str, object]) -> None:
        try:
            settlements = compute_events(prog.events, cfg)
        except CpsError:
            return
        for s in settlements:
            text = s.to_json()
            assert all(isinstance(v, int) for ln in json.loads(text)["lines"]
                       for k, v in ln.items() if k.endswith("_minor")), "minor units are JSON integers"
            back = Settlement.from_dict(json.loads(text))
            assert back == s
            d = json.loads(text)
            assert sum(int(ln["amount_minor"]) for ln in d["lines"]) + d["merchant_net_minor"] == d["base_minor"]

    def test_a_refunded_settlement_round_trips(self) -> None:
        s = compute(EVENTS[3], THREE, graph=ShareGraph.from_events(EVENTS), refunded=2_501)
        assert s.base.minor == 7_499 and Settlement.from_dict(json.loads(s.to_json())) == s

    @pytest.mark.parametrize(("path", "value"), [
        (("lines", 0, "amount_minor"), 883), (("lines", 0, "payee"), "mallory"), (("merchant_net_minor",), 1),
        (("awards", 0, "rate"), "0.2"), (("lines", 0, "rate"), "0.2"), (("awards", 0, "rate"), 0.1),
    ])
    def test_a_changed_figure_is_refused_naming_the_field(self, path: tuple[object, ...], value: object) -> None:
        d = json.loads(compute(EVENTS[3], THREE, graph=ShareGraph.from_events(EVENTS)).to_json())
        node: Any = d
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
        with pytest.raises(InvalidEvent) as info:
            Settlement.from_dict(d)
        assert info.value.field is not None

    def test_line_to_dict_names_exact_values(self) -> None:
        ln = compute(EVENTS[3], {"kind": "last_sharer", "rate": "1/3"}, graph=ShareGraph.from_events(EVENTS)).lines[0]
        d = ln.to_dict()
        assert (d["amount"], d["amount_minor"], d["currency"], d["rate"]) == ("33.33", 3333, "CNY", "1/3")
        assert d["provenance"]["path"] == ["s3"] and d["provenance"]["base_minor"] == 10_000  # type: ignore[index]
