"""Compliance report: every finding cites a rule of cps_engine.rules, with a measured figure and status."""

from __future__ import annotations

from fractions import Fraction

import pytest

from cps_engine import load_events, load_policy
from cps_engine.audit import compliance as comp
from cps_engine.audit.compliance import compliance_report, rule_limit
from cps_engine.errors import EventValidationError as InvalidEvent
from cps_engine.rules import DISCLAIMER, RULES, THRESHOLDS, Thresholds

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
    assert {f.rule for f in rep.findings} == set(RULES)
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
    can = f["CN-DEPTH", "payees the policy can pay per order"]
    assert (can.figure, can.status) == ("3", "fail")
    assert f["CN-DEPTH", "most payees paid on one order"].figure == "3"
    # o1: cat 10, bob 5, amy 2; o2 (cat buys through bob's share): bob 10, amy 5; o3: amy 10 -> 42.00
    assert f["CN-DIRECT", "commission as a share of sales"].figure == "14.00%"
    # beyond the nearest payee: bob 5 + amy 2 on o1, amy 5 on o2 = 12 of 42
    assert f["CN-TEAM", "commission paid beyond the nearest payee (on a downline's sale)"].figure == "28.57%"
    # cat earned 10.00 on o1 (2 March) before buying o2 (3 March): the 15.00 to her uplines is CN-SELF
    self_up = f["CN-SELF", "commission to uplines on participants' own purchases"]
    assert (self_up.figure, self_up.status) == ("35.71%", "fail")
    assert f["US-INTERNAL", "commission on insiders' purchases (in hindsight)"].figure == "35.71%"
    assert f["US-INTERNAL", "commission on insiders' purchases (in hindsight)"].status == "fail"
    # amy earned 17.00 but was paid out 500.00: 483.00 no order explains
    bonus = f["CN-RECRUIT-BONUS", "payouts not tied to any order"]
    assert (bonus.figure, bonus.status) == ("483.00 CNY", "fail") and "amy 483.00 CNY" in bonus.detail
    assert f["EU-INTRO", "largest recruitment-derived share of one payee's income"].status == "fail"
    fee = f["CN-FEE", "declared entry purchases"]
    assert (fee.figure, fee.status) == ("1 order(s)", "fail")
    assert rep.worst == "fail" and rep.verdict == "non-compliant"
    assert {e.rule for e in rep.evidence} >= {"CN-DEPTH", "CN-HEADCOUNT", "CN-FEE"}


def test_a_compliant_programme_passes_the_hard_rules() -> None:
    evs = load_events(EVENTS[:-1])  # no unexplained payout
    rep = compliance_report(evs, load_policy({"kind": "compliant", "profile": "cn", "rates": ["10%", "5%"],
                                              "cap": "15%", "entry_skus": ["kit"]}))
    f = _by(rep)
    assert {x.status for x in rep.findings if x.rule in ("CN-DEPTH", "CN-HEADCOUNT", "CN-RECRUIT-BONUS",
                                                          "US-RETAIL", "EU-INTRO")} <= {"pass", "info"}
    assert f["CN-SELF", "commission to uplines on participants' own purchases"].status == "pass"
    assert f["CN-FEE", "declared entry purchases"].status == "warn"  # seen, but it paid nobody
    assert rep.worst != "fail" and rep.verdict == "review"
    assert [x.rule for x in compliance_report(evs, load_policy({"kind": "last_sharer", "rate": "10%"}),
                                              jurisdictions=["US"]).findings] == [
        "US-RETAIL", "US-RETAIL", "US-INTERNAL", "US-INVENTORY", "US-DOWNLINE"]


def test_thresholds_are_named_sourced_and_in_the_report() -> None:
    assert rule_limit("internal_fail") == Fraction(1, 5)
    assert rule_limit("downline_warn") == rule_limit("eu_intro_fail") == Fraction(1, 2)
    assert rule_limit("org_people") == 30 and rule_limit("org_levels") == 3
    with pytest.raises(LookupError):
        rule_limit("CN-FEE")
    assert set(THRESHOLDS) == set(Thresholds.model_fields)
    assert all(info.rule in RULES and info.source for info in THRESHOLDS.values())
    rep = compliance_report(load_events(EVENTS[:-1]), load_policy({"kind": "last_sharer", "rate": "10%"}))
    rows = rep.as_dict()["thresholds"]
    assert [r["name"] for r in rows] == list(THRESHOLDS) and rows[0]["source"]
    assert "internal_fail = 20%: US-INTERNAL" in rep.render() and all(f.how for f in rep.findings)


def test_the_report_can_fail_and_thresholds_decide() -> None:
    evs = load_events(EVENTS[:-1])
    pol = load_policy({"kind": "last_sharer", "rate": "10%"})
    key = ("US-INTERNAL", "commission on insiders' purchases (in hindsight)")
    # o2 (cat, who earned on o1 before) pays bob 10.00 of 30.00: 33.33% > 20%
    assert _by(compliance_report(evs, pol))[key].status == "fail"
    assert compliance_report(evs, pol).verdict == "non-compliant"
    loose = Thresholds.parse({"internal_fail": "50%"})
    assert _by(compliance_report(evs, pol, thresholds=loose))[key].status == "warn"
    looser = loose.replace(["internal_warn=40%", "self_warn=50%", "self_fail=50%"])
    rep = compliance_report(evs, pol, thresholds=looser)
    assert _by(rep)[key].status == "pass" and rep.verdict == "compliant"


def test_first_sharer_depth_is_one_paid_level_however_long_the_share_path() -> None:
    lines = ['{"type":"share","id":"s0","sharer":"kol","at":"2026-03-01T10:00:00+08:00"}']
    for i in range(1, 7):
        lines.append(f'{{"type":"share","id":"s{i}","sharer":"c{i}","parent":"s{i - 1}",'
                     f'"at":"2026-03-01T1{i}:00:00+08:00"}}')
    lines.append('{"type":"order","id":"o1","buyer":"zed","share":"s6","amount":"100.00","currency":"CNY",'
                 '"at":"2026-03-02T12:00:00+08:00"}')
    lines.append('{"type":"order","id":"o2","buyer":"c3","share":"s6","amount":"100.00","currency":"CNY",'
                 '"at":"2026-03-03T12:00:00+08:00"}')  # a re-sharer buys: a customer, not a participant
    rep = compliance_report(load_events(lines), load_policy({"kind": "first_sharer", "rate": "10%"}))
    f = _by(rep)
    assert f["CN-DEPTH", "payees the policy can pay per order"].figure == "1"
    assert f["CN-DEPTH", "most payees paid on one order"].figure == "1"
    assert f["CN-SELF", "commission to uplines on participants' own purchases"].figure == "0.00%"
    assert rep.verdict == "compliant"


def test_a_late_chargeback_is_a_clawback_not_recruitment_pay() -> None:
    lines = [*EVENTS[:6],
             '{"type":"payout","id":"p1","payee":"amy","amount":"17.00","currency":"CNY",'
             '"at":"2026-03-31T12:00:00+08:00"}',
             '{"type":"refund","id":"r1","order":"o3","amount":"50.00","kind":"chargeback",'
             '"at":"2026-04-05T12:00:00+08:00"}']
    pol = load_policy({"kind": "capped_multilevel", "rates": ["10%", "5%", "2%"]})
    f = _by(compliance_report(load_events(lines), pol))
    # amy: 2 + 5 + 10 = 17.00 paid out, then o3 halved: net 12.00; the 5.00 is a clawback
    assert f["CN-HEADCOUNT", "pay not derived from an order (e.g. per recruit)"].figure == "0.00%"
    headcount = f["CN-HEADCOUNT", "pay not derived from an order (e.g. per recruit)"]
    assert "clawbacks netted out: 5.00 CNY" in headcount.detail
    assert compliance_report(load_events(lines), pol).summary["clawed_back"] == {"CNY": "5.00"}
    # the same overpayment with the refund *before* the payout is pay no order explains
    early = [ln.replace("2026-04-05", "2026-03-30") for ln in lines]
    f = _by(compliance_report(load_events(early), pol))
    assert f["CN-RECRUIT-BONUS", "payouts not tied to any order"].figure == "5.00 CNY"


def test_role_events_feed_the_retail_ratio_and_nothing_else() -> None:
    base = ['{"type":"bind","id":"b1","user":"cat","upline":"amy","at":"2026-03-01T09:00:00+08:00"}',
            '{"type":"order","id":"o1","buyer":"cat","amount":"100.00","currency":"CNY",'
            '"at":"2026-03-01T12:00:00+08:00"}']
    pol = load_policy({"kind": "last_sharer", "rate": "10%"})
    plain = compliance_report(load_events(base), pol)
    key = ("US-RETAIL", "commission from non-members' purchases (retail ratio)")
    assert _by(plain)[key].status == "info" and plain.verdict == "compliant"
    role = ('{"type":"role","id":"r1","person":"cat","role":"distributor","via":"autoship",'
            '"at":"2026-03-01T09:30:00+08:00"}')
    rep = compliance_report(load_events([*base, role]), pol)
    assert (_by(rep)[key].figure, _by(rep)[key].status) == ("0.00%", "fail")
    assert rep.summary["commission"] == plain.summary["commission"]
    customer = role.replace('"distributor","via":"autoship"', '"customer"')
    assert _by(compliance_report(load_events([*base, customer]), pol))[key].status == "pass"


def test_role_event_errors_name_record_and_field() -> None:
    with pytest.raises(InvalidEvent) as exc:
        load_events(['{"type":"role","id":"r9","person":"bob","role":"distributor","via":"fax",'
                     '"at":"2026-03-01T09:30:00+08:00"}'])
    assert "record 'r9', field 'via'" in str(exc.value)
    with pytest.raises(InvalidEvent) as exc:
        load_events(['{"type":"role","id":"r9","person":"bob","role":"distributor","at":"2026-03-01T09:30:00"}'])
    assert "record 'r9', field 'at'" in str(exc.value)
