"""Statements: opening + movements == closing, and both ends equal the ledger's balances."""

from __future__ import annotations

import json
import random
from io import StringIO

import pytest

from cps_engine.graph import to_micros
from cps_engine.ledger import Ledger
from cps_engine.ledger.statement import STATES
from tests.ledger.helpers import POLICY, history, with_payouts


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
