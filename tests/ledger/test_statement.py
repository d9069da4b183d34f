"""Statements: opening + movements == closing, and both ends equal the ledger's balances."""

from __future__ import annotations

import csv
import json
import random
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest

from cps_engine.errors import InvalidInput
from cps_engine.graph import to_micros
from cps_engine.ledger import Ledger, build_statement
from cps_engine.ledger.hashing import canonical_json, merkle_root
from cps_engine.ledger.statement import STATES
from tests.ledger.helpers import POLICY, day, history, order, refund, share, with_payouts


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_statements_reconcile_with_balances(seed: int) -> None:
    events = with_payouts(history(seed, n_orders=30, payouts=False), 7)
    rnd = random.Random(seed)
    shuffled = events[:]
    rnd.shuffle(shuffled)  # out of order: parked events, restated orders
    led = Ledger.open(":memory:", POLICY, hold_days=7)
    led.record_many(shuffled, batch_size=5)
    assert led.parked() == []
    times = sorted(to_micros(e.at) for e in events)
    start, end = times[len(times) // 3], times[-1] + 8 * 86_400_000_000
    payees = {b.payee for b in led.balances(as_of=end)}
    assert payees
    for payee in sorted(payees):
        st = led.statement(payee, start, end)
        assert st.balanced(), payee
        for at, side in ((start - 1, st.opening), (end - 1, st.closing)):
            for b in led.balances(payee, as_of=at):
                assert {s: side.get(b.currency, {}).get(s, 0) for s in STATES} == {
                    "pending": b.pending.minor, "available": b.available.minor, "paid": b.paid.minor,
                    "fee": b.fee.minor}
        doc = st.to_json()
        assert json.loads(json.dumps(doc)) == doc and doc["merkle_root"] == st.merkle_root
        out = StringIO()
        st.write_csv(out)
        assert out.getvalue().count("\n") == len(st.lines) + 1 + 2 * len(set(st.opening) | set(st.closing))


def zoned_ledger() -> Ledger:
    led = Ledger.open(":memory:", POLICY, hold_days=7)
    led.record_many([share("s1", "amy"), share("s2", "bob", "s1", at=0.01), order("o1", "s2", "100.00", at=1),
                     refund("r1", "o1", "40.00", at=2).model_copy(update={"at": day(2) + timedelta(microseconds=1)})])
    return led


def test_statement_times_in_the_recorded_zone_without_zero_microseconds() -> None:
    led = zoned_ledger()  # every event recorded at +08:00
    st = build_statement(led, "bob", "2026-03-01T00:00:00+08:00", "2026-04-01T00:00:00+08:00")
    doc = st.to_json()
    assert (doc["tz"], doc["from"], doc["to"]) == ("UTC+08:00", "2026-03-01T00:00:00+08:00",
                                                   "2026-04-01T00:00:00+08:00")
    assert "recorded" in doc["tz_source"]
    assert [(x["kind"], x["at"]) for x in doc["lines"]] == [
        ("accrual", "2026-03-02T10:00:00+08:00"), ("refund", "2026-03-03T10:00:00.000001+08:00"),
        ("release", "2026-03-09T10:00:00+08:00")]
    for line, row in zip(st.lines, doc["lines"], strict=True):  # the same instants, only shown in the zone
        assert to_micros(datetime.fromisoformat(row["at"])) == line.at_us
    # the root is over the lines as printed: recomputable from the document alone
    assert merkle_root(canonical_json(row) for row in doc["lines"]) == doc["merkle_root"]
    out = StringIO()
    st.write_csv(out)
    rows = list(csv.DictReader(StringIO(out.getvalue())))
    assert {r["tz"] for r in rows} == {"UTC+08:00"} and rows[0]["at"] == "2026-03-01T00:00:00+08:00"


def test_statement_in_a_given_zone_with_daylight_saving() -> None:
    led = zoned_ledger()
    st = build_statement(led, "bob", "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z", tz="America/New_York")
    doc = st.to_json()
    assert doc["tz"] == "America/New_York" and doc["tz_source"] == "given"
    # US daylight saving starts 2026-03-08: -05:00 before, -04:00 after
    assert [x["at"] for x in doc["lines"]] == ["2026-03-01T21:00:00-05:00", "2026-03-02T21:00:00.000001-05:00",
                                               "2026-03-08T22:00:00-04:00"]
    utc = build_statement(led, "bob", "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z", tz="UTC").to_json()
    assert utc["lines"][0]["at"] == "2026-03-02T02:00:00Z" and utc["tz"] == "UTC"
    assert utc["merkle_root"] != doc["merkle_root"]  # another rendering, another root
    with pytest.raises(InvalidInput, match="IANA"):
        build_statement(led, "bob", 0, 10**15, tz="Mars/Olympus")


def test_statement_of_events_recorded_in_several_zones_is_in_utc() -> None:
    led = zoned_ledger()
    led.record(order("o2", "s2", "10.00", at=3).model_copy(update={"at": datetime(2026, 3, 4, tzinfo=UTC)}))
    doc = build_statement(led, "bob", "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z").to_json()
    assert doc["tz"] == "UTC" and "several" in doc["tz_source"]
    assert doc["lines"][0]["at"] == "2026-03-02T02:00:00Z"
    assert led.statement("bob", 0, 10**16).to_json()["tz"] == "UTC"  # Ledger.statement: UTC unless told
