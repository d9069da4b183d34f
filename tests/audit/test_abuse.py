"""Abuse signals (``cps_engine.audit.abuse_report``, ``cps-engine audit abuse``): hand-checked examples
of each signal, independence of event order, monotonicity under unrelated honest orders, hostile ids in
the table, the exit status."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import cps_engine
from cps_engine.audit import AbuseReport, AbuseThresholds, abuse_report
from cps_engine.cli_audit import audit_app
from cps_engine.errors import InvalidEvent, InvalidInput
from cps_engine.models import Event, dump_events, parse_event
from cps_engine.policies import load_policy

POLICY = {"kind": "first_sharer", "rate": "10%"}
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def at(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).isoformat()


def share(sid: str, sharer: str, h: float, parent: str | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"type": "share", "id": sid, "sharer": sharer, "at": at(h)}
    if parent is not None:
        d["parent"] = parent
    return d


def order(oid: str, buyer: str, h: float, sh: str | None = None, amount: str = "100.00", **fp: str) -> dict[str, Any]:
    d: dict[str, Any] = {"type": "order", "id": oid, "buyer": buyer, "amount": amount, "currency": "CNY",
                         "at": at(h), **fp}
    if sh is not None:
        d["share"] = sh
    return d


def payout(pid: str, payee: str, h: float, amount: str = "10.00") -> dict[str, Any]:
    return {"type": "payout", "id": pid, "payee": payee, "amount": amount, "currency": "CNY", "at": at(h)}


def refund(rid: str, oid: str, h: float, amount: str | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"type": "refund", "id": rid, "order": oid, "at": at(h)}
    if amount is not None:
        d["amount"] = amount
    return d


def report(raw: list[dict[str, Any]], **kw: Any) -> AbuseReport:
    return abuse_report([parse_event(r) for r in raw], load_policy(POLICY), **kw)


def signals(rep: AbuseReport) -> list[str]:
    return [f.signal for f in rep.findings]


# ------------------------------------------------------------------------------------------ the signals
def test_purchase_ring_of_two() -> None:
    raw = [share("sa", "amy", 0), share("sb", "bob", 0), share("sc", "cat", 0),
           order("o1", "bob", 1, "sa"), order("o2", "amy", 2, "sb"),
           order("o3", "dan", 3, "sc")]  # dan → cat: no way back, no ring
    rep = report(raw)
    assert signals(rep) == ["ring"]
    f = rep.findings[0]
    assert f.people == ("amy", "bob") and f.orders == ("o1", "o2")
    assert f.at_stake == {"CNY": 2000} and f.at_stake_text() == {"CNY": "20.00"}
    assert "amy → bob → amy" in f.detail
    assert report(raw[:3] + raw[4:]).findings == []  # one direction alone is no ring


def test_ring_of_three_and_the_length_threshold() -> None:
    raw = [share("sa", "amy", 0), share("sb", "bob", 0), share("sc", "cat", 0),
           order("o1", "amy", 1, "sb"), order("o2", "bob", 1, "sc"), order("o3", "cat", 1, "sa", amount="50.00")]
    rep = report(raw)
    assert [(f.people, f.at_stake) for f in rep.findings] == [(("amy", "bob", "cat"), {"CNY": 2500})]
    assert report(raw, thresholds=AbuseThresholds(ring_max_length=2)).findings == []


def test_self_dealing_through_a_shared_fingerprint() -> None:
    raw = [share("sa", "amy", 0),
           order("o0", "amy", 1, device="dev-1"),  # amy's own order, no share: her fingerprint
           order("o1", "bob", 2, "sa", phone_hash="ph-7", device="dev-1"),  # bob: amy's device
           order("o2", "eve", 3, "sa", amount="50.00", phone_hash="ph-7"),  # eve: bob's phone, so amy's cluster
           order("o3", "cat", 4, "sa", device="dev-2")]  # cat: a stranger
    rep = report(raw)
    assert signals(rep) == ["self_dealing"]
    f = rep.findings[0]
    assert f.people == ("amy", "bob", "eve") and f.orders == ("o1", "o2")
    assert f.at_stake == {"CNY": 1500}  # 10.00 + 5.00; cat's 10.00 is honest
    assert "device=dev-1" in f.detail and "phone_hash=ph-7" in f.detail
    assert report(raw, thresholds=AbuseThresholds(self_dealing_min_orders=3)).findings == []
    no_fp = [{k: v for k, v in r.items() if k not in ("device", "phone_hash")} for r in raw]
    assert report(no_fp).findings == []


def test_refund_after_payout_ratio() -> None:
    raw = [share("sa", "amy", 0), share("sb", "ben", 0),
           order("o1", "cat", 1, "sa"), order("o2", "dan", 1, "sa"),
           payout("p1", "amy", 2, "20.00"),
           refund("r1", "o1", 3),  # after amy's payout: 10.00 of her 20.00 clawed back
           order("o3", "eve", 1, "sb"), refund("r2", "o3", 2),  # before ben's payout: not counted
           payout("p2", "ben", 5, "1.00")]
    rep = report(raw)
    assert signals(rep) == ["refund_after_payout"]
    f = rep.findings[0]
    assert f.people == ("amy",) and f.orders == ("o1",) and set(f.events) == {"r1", "p1"}
    assert f.at_stake == {"CNY": 1000} and f.figure == "50% of 20.00 CNY"
    assert report(raw, thresholds=AbuseThresholds.parse({"refund_ratio": "60%"})).findings == []


def test_partial_refunds_after_payout_add_up() -> None:
    raw = [share("sa", "amy", 0), order("o1", "cat", 1, "sa"), payout("p1", "amy", 2),
           refund("r1", "o1", 3, "20.00"), refund("r2", "o1", 4, "30.00")]
    (f,) = report(raw).findings
    assert f.at_stake == {"CNY": 500} and f.events == ("p1", "r1", "r2")


def test_share_burst_from_new_accounts() -> None:
    burst = [share(f"n{i}", f"new{i}", 24 + i / 10) for i in range(5)]  # 5 new accounts, one hour
    raw = [share("old", "amy", 0), *burst,
           share("re", "zed", 30, parent="n1"), order("o1", "cat", 31, "re"),  # flows through n1
           order("o2", "dan", 31, "old")]
    rep = report(raw)
    assert signals(rep) == ["share_burst"]
    f = rep.findings[0]
    assert f.people == tuple(f"new{i}" for i in range(5)) and f.events == tuple(f"n{i}" for i in range(5))
    assert f.orders == ("o1",) and f.at_stake == {"CNY": 1000}
    assert report(raw[:1] + raw[2:]).findings == []  # four are not a burst
    seen_before = [order("x", "new0", 1), *raw]  # new0 was first seen a day earlier
    assert report(seen_before).findings == []
    assert report(raw, thresholds=AbuseThresholds(burst_min_shares=6)).findings == []


def test_fingerprints_are_optional_bounded_and_ignored_by_the_engine() -> None:
    ev = parse_event(order("o1", "bob", 1, device="d", payment_hash="p"))
    assert ev.device == "d" and ev.payment_hash == "p" and ev.phone_hash is None  # type: ignore[union-attr]
    with pytest.raises(InvalidEvent, match="device"):
        parse_event(order("o1", "bob", 1, device="x" * 257))
    plain = [share("sa", "amy", 0), order("o1", "bob", 1, "sa")]
    marked = [plain[0], order("o1", "bob", 1, "sa", device="d", phone_hash="h", payment_hash="p")]
    pol = load_policy(POLICY)
    a = cps_engine.compute_events([parse_event(r) for r in plain], pol)
    b = cps_engine.compute_events([parse_event(r) for r in marked], pol)
    assert [s.lines for s in a] == [s.lines for s in b]


def test_thresholds_are_validated_by_name() -> None:
    assert AbuseThresholds().replace(["refund_ratio=1/4"]).refund_ratio == AbuseThresholds.parse(
        {"refund_ratio": "25%"}).refund_ratio
    with pytest.raises(InvalidInput, match="unknown threshold"):
        AbuseThresholds().replace(["nope=1"])
    with pytest.raises(InvalidInput) as exc:
        AbuseThresholds().replace(["burst_min_shares=0"])
    assert exc.value.field == "burst_min_shares"


def test_public_names() -> None:
    assert cps_engine.abuse_report is abuse_report and cps_engine.AbuseThresholds is AbuseThresholds


# ------------------------------------------------------------------------------------------ properties
@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    people = [f"p{i}" for i in range(draw(st.integers(2, 6)))]
    raw: list[dict[str, Any]] = []
    shares: list[str] = []
    for i in range(draw(st.integers(1, 8))):
        sid = f"s{i}"
        parent = draw(st.sampled_from([None, *shares]))
        raw.append(share(sid, draw(st.sampled_from(people)), i / 16, parent))  # a parent is older
        shares.append(sid)
    orders = []
    for i in range(draw(st.integers(0, 10))):
        fp = {}
        if draw(st.booleans()):
            fp["device"] = draw(st.sampled_from(["d1", "d2", "d3"]))
        raw.append(order(f"o{i}", draw(st.sampled_from(people)), 2 + i, draw(st.sampled_from(shares)), **fp))
        orders.append(f"o{i}")
    for i in range(draw(st.integers(0, 3))):
        raw.append(payout(f"pay{i}", draw(st.sampled_from(people)), draw(st.integers(2, 14)), "1.00"))
    for oid in draw(st.lists(st.sampled_from(orders), unique=True, max_size=3)) if orders else []:
        raw.append(refund(f"r-{oid}", oid, 15 + len(raw)))
    return raw


LOW = AbuseThresholds(burst_min_shares=2, refund_ratio="1/10")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.randoms(use_true_random=False))
def test_the_report_does_not_depend_on_event_order(raw: list[dict[str, Any]], rnd: random.Random) -> None:
    shuffled = list(raw)
    rnd.shuffle(shuffled)
    assert report(raw, thresholds=LOW).as_dict() == report(shuffled, thresholds=LOW).as_dict()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.integers(1, 6))
def test_unrelated_honest_orders_never_remove_a_finding(raw: list[dict[str, Any]], n: int) -> None:
    extra: list[dict[str, Any]] = []
    for i in range(n):
        extra += [share(f"hs{i}", f"honest-sharer{i}", 1 + i), order(f"ho{i}", f"honest{i}", 3 + i, f"hs{i}",
                                                                         device=f"hd{i}")]
    before = {f.key for f in report(raw, thresholds=LOW).findings}
    after = {f.key for f in report(raw + extra, thresholds=LOW).findings}
    assert before <= after


# ------------------------------------------------------------------------------------------ the command
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.add_typer(audit_app, name="audit")
runner = CliRunner()


def _files(tmp_path: Path, raw: list[dict[str, Any]]) -> list[str]:
    ev, pol = tmp_path / "events.jsonl", tmp_path / "policy.json"
    evs: list[Event] = [parse_event(r) for r in raw]
    dump_events(evs, ev)
    pol.write_text(json.dumps(POLICY), encoding="utf-8")
    return ["audit", "abuse", "--events", str(ev), "--policy", str(pol)]


HOSTILE_A = "[bold red]amy[/]\x1b[31m"
HOSTILE_B = "bob\u202e\x07"


def test_cli_exit_status_and_hostile_ids(tmp_path: Path) -> None:
    ring = [share("sa", HOSTILE_A, 0), share("sb", HOSTILE_B, 0),
            order("o[1]", HOSTILE_B, 1, "sa"), order("o2", HOSTILE_A, 2, "sb")]
    res = runner.invoke(app, [*_files(tmp_path, ring)], env={"COLUMNS": "400"})
    assert res.exit_code == 1, res.output
    assert "\x1b" not in res.stdout and "\x07" not in res.stdout and "\u202e" not in res.stdout
    assert "[bold red]amy[/]" in res.stdout and "o[1]" in res.stdout and "FLAGGED" in res.stdout
    assert "ring_max_length" in res.stdout and "20.00" in res.stdout
    res = runner.invoke(app, [*_files(tmp_path, ring), "--format", "json"])
    data = json.loads(res.stdout)
    assert res.exit_code == 1 and data["flagged"] and data["findings"][0]["people"] == sorted([HOSTILE_A, HOSTILE_B])
    assert data["findings"][0]["at_stake"] == {"CNY": "20.00"}
    assert {t["name"] for t in data["thresholds"]} == set(AbuseThresholds.model_fields)

    honest = [share("sa", "amy", 0), order("o1", "cat", 1, "sa")]
    res = runner.invoke(app, _files(tmp_path, honest))
    assert res.exit_code == 0 and "nothing flagged" in res.stdout
    res = runner.invoke(app, [*_files(tmp_path, ring), "--threshold", "ring_max_length=1"])
    assert res.exit_code == 2 and "ring_max_length" in res.output
    res = runner.invoke(app, [*_files(tmp_path, ring), "--threshold", "bogus"])
    assert res.exit_code == 2
    res = runner.invoke(app, [*_files(tmp_path, ring), "--format", "xml"])
    assert res.exit_code == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type":"order","id":"o1"}\n', encoding="utf-8")
    res = runner.invoke(app, ["audit", "abuse", "--events", str(bad), "--policy", str(tmp_path / "policy.json")])
    assert res.exit_code == 2 and "o1" in res.output
