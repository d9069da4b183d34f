"""Shared strategies for the audit tests: random programmes with a policy and their honest statement."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from cps_engine import Event, PolicyConfig, load_policy
from cps_engine.audit.statement import Statement, build_statement
from tests.strategies import policy_configs, programmes

# Random programmes start on 1 March 2026 at 00:00 +08:00 and stay within a few days.
TZ = "+08:00"


@dataclass
class Case:
    events: list[Event]
    policy: PolicyConfig
    statement: Statement
    hold_days: int | None
    period: str


@st.composite
def cases(draw: st.DrawFn, *, min_lines: int = 0, partial_period: bool = True) -> Case:
    """A random programme, a random valid policy, and the honest statement for a period of it."""
    prog = draw(programmes(max_orders=12))
    policy = load_policy(draw(policy_configs()))
    hold = draw(st.sampled_from([None, None, 0, 1, 2]))
    period = "2026-03"
    if partial_period and draw(st.booleans()):
        period = draw(st.sampled_from(["2026-03-01..2026-03-01", "2026-03-02..2026-03-31"]))
    statement = build_statement(prog.events, policy, period, tz=TZ, hold_days=hold)
    if len(statement.lines) < min_lines:
        # make sure there is something to mutate: a plain two-level policy on the same programme
        policy = load_policy({"kind": "capped_multilevel", "rates": ["10%", "5%"], "self_purchase": True})
        statement = build_statement(prog.events, policy, "2026-03", tz=TZ, hold_days=hold)
        period = "2026-03"
    return Case(prog.events, policy, statement, hold, period)
