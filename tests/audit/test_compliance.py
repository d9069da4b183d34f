"""Compliance report: every finding cites a rule of cps_engine.rules, with a measured figure and status."""

from __future__ import annotations

from fractions import Fraction

import pytest

from cps_engine import load_events, load_policy
from cps_engine.audit import compliance as comp
from cps_engine.audit.compliance import compliance_report, rule_limit
from cps_engine.rules import DISCLAIMER, RULES

EVENTS = [
    '{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00+08:00"}',
    '{"type":"share","id":"s2","sharer":"bob","parent":"s1","at":"2026-03-01T11:00:00+08:00"}',
    '{"type":"share","id":"s3","sharer":"cat","parent":"s2","at":"2026-03-01T11:30:00+08:00"}',
    '{"type":"order","id":"o1","buyer":"dan","share":"s3","amount":"100.00","currency":"CNY",'
    '"at":"2026-03-02T12:00:00+08:00","lines":[{"sku":"tea","unit_price":"100.00"}]}',
    '{"type":"order","id":"o2","buyer":"cat","share":"s2","amount":"100.00","currency":"CNY",'
    '"at":"2026-03-03T12:00:00+08:00","lines":[{"sku":"kit","unit_price":"100.00"}]}',
    '{"type":"order","id":"o3","buyer":"eve","share":"s1","amount":"100.00","currency":"CNY",'
    '"at":"2026-03-04T12:00:00+08:00"}',
    '{"type":"payout","id":"p1","payee":"amy","amount":"500.00","currency":"CNY","at":"2026-03-31T12:00:00+08:00"}',
]


def _by(report: comp.ComplianceReport) -> dict[tuple[str, str], comp.Finding]:
    return {(f.rule, f.measure): f for f in report.findings}


def test_every_finding_cites_a_known_rule_and_the_disclaimer_is_plain() -> None:
    rep = compliance_report(load_events(EVENTS), load_policy({"kind": "capped_multilevel",
                                                                "rates": ["10%", "5%", "2%"]}))
    assert {f.rule for f in rep.findings} <= set(RULES)
    assert {f.rule for f in rep.findings} >= {"CN-DEPTH", "CN-TEAM", "CN-DIRECT", "CN-HEADCOUNT", "CN-FEE",
                                              "CN-SELF", "CN-RECRUIT-BONUS", "US-RETAIL", "US-INTERNAL",
                                              "US-DOWNLINE", "EU-INTRO"}
    assert all(f.status in ("pass", "warn", "fail", "info") for f in rep.findings)
    text = rep.render()
    assert text.startswith(DISCLAIMER) and text.endswith(DISCLAIMER) and "not legal advice" in DISCLAIMER
    data = rep.as_dict()
    assert data["disclaimer"] == DISCLAIMER
    assert all(f["source"] == RULES[f["rule"]].source for f in data["findings"])


def test_measured_figures_of_a_three_level_programme() -> None:
    rep = compliance_report(load_events(EVENTS), load_policy({"kind": "capped_multilevel",
                                                                "rates": ["10%", "5%", "2%"]}),
                            entry_skus=["kit"])
    f = _by(rep)
    assert (f["CN-DEPTH", "levels the policy can pay"].figure, f["CN-DEPTH", "levels the policy can pay"].status) \
        == ("3", "fail")
    assert f["CN-DEPTH", "deepest level actually paid"].figure == "3"
    # o1: cat 10, bob 5, amy 2; o2 (cat buys through bob's share): bob 10, amy 5; o3: amy 10 -> 42.00
    assert f["CN-DIRECT", "commission as a share of sales"].figure == "14.00%"
    assert f["CN-TEAM", "commission paid at level 2 or deeper (on a downline's sales)"].figure == "28.57%"
    # cat is a participant (she shared s3): the 15.00 paid to her uplines on o2 violates CN-SELF
    self_up = f["CN-SELF", "commission to uplines on participants' own purchases"]
    assert (self_up.figure, self_up.status) == ("35.71%", "fail")
    assert f["US-INTERNAL", "sales bought by payees themselves"].figure == "33.33%"
    assert f["US-INTERNAL", "sales bought by payees themselves"].status == "warn"
    # amy earned 17.00 but was paid out 500.00: 483.00 no order explains
    bonus = f["CN-RECRUIT-BONUS", "payouts not tied to any order"]
    assert (bonus.figure, bonus.status) == ("483.00 CNY", "fail") and "amy 483.00 CNY" in bonus.detail
    assert f["EU-INTRO", "largest recruitment-derived share of one payee's income"].status == "fail"
    fee = f["CN-FEE", "entry purchases observed"]
    assert (fee.figure, fee.status) == ("1 order(s)", "fail")
    assert rep.worst == "fail"


def test_a_compliant_programme_passes_the_hard_rules() -> None:
    evs = load_events(EVENTS[:-1])  # no unexplained payout
    rep = compliance_report(evs, load_policy({"kind": "compliant", "profile": "cn", "rates": ["10%", "5%"],
                                              "cap": "15%", "entry_skus": ["kit"]}))
    f = _by(rep)
    assert {x.status for x in rep.findings if x.rule in ("CN-DEPTH", "CN-HEADCOUNT", "CN-RECRUIT-BONUS",
                                                          "US-RETAIL", "EU-INTRO")} == {"pass"}
    assert f["CN-SELF", "commission to uplines on participants' own purchases"].status == "pass"
    assert f["CN-FEE", "entry purchases observed"].status == "warn"  # seen, but it paid nobody
    assert rep.worst != "fail"
    assert [x.rule for x in compliance_report(evs, load_policy({"kind": "last_sharer", "rate": "10%"}),
                                              jurisdictions=["US"]).findings] == ["US-RETAIL", "US-INTERNAL",
                                                                                  "US-DOWNLINE"]


def test_limits_come_from_the_rules() -> None:
    assert rule_limit("US-INTERNAL") == Fraction(1, 5)
    assert rule_limit("US-DOWNLINE") == rule_limit("EU-INTRO") == Fraction(1, 2)
    with pytest.raises(LookupError):
        rule_limit("CN-FEE")


def test_the_report_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    evs = load_events(EVENTS[:-1])
    pol = load_policy({"kind": "last_sharer", "rate": "10%"})
    assert _by(compliance_report(evs, pol))["US-INTERNAL", "sales bought by payees themselves"].status == "warn"
    monkeypatch.setattr(comp, "rule_limit", lambda rule_id: Fraction(1, 2))
    assert _by(compliance_report(evs, pol))["US-INTERNAL", "sales bought by payees themselves"].status == "pass"
