"""What tools need to know about a policy, declared rather than guessed.

The compliance report, ``audit explain``, the launch simulator and the what-if tools ask a policy
the same questions: how many people can one order pay, how far up the chain, what does the nearest
sharer earn, is there a cap, which products are entry purchases, does a participant's own purchase
pay their uplines.  :meth:`PolicyConfig.traits() <cps_engine.policies.base.PolicyConfig.traits>`
answers them as one :class:`PolicyTraits`, derived from the compiled plan for every built-in; a
plugin without a plan overrides ``traits()`` (the default then says "unbounded", the safe answer
for a compliance check, unless the class sets ``max_levels``).

>>> from cps_engine.policies import load_policy
>>> t = load_policy({"kind": "capped_multilevel", "rates": ["10%", "5%"], "cap": "12%"}).traits()
>>> t.max_payees, t.max_level, t.headline_rate, t.cap
(2, 2, Fraction(1, 10), Fraction(3, 25))
>>> load_policy({"kind": "first_sharer", "rate": "5%"}).traits().max_level is None
True
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cps_engine.policies.base import PolicyConfig, RateSpec

__all__ = ["PolicyTraits", "traits_of"]


@dataclass(frozen=True)
class PolicyTraits:
    """A policy's declared shape.

    - ``max_payees``: people one order can pay at most (``None``: no limit);
    - ``max_level``: the farthest chain level that can be paid (``None``: any — e.g. first-sharer
      pays the farthest sharer however deep);
    - ``headline_rate``: the default rate spec of level 1 (an exact ``Fraction``, or a fixed amount);
    - ``cap``: the ceiling on one order's total rate, if any;
    - ``entry_skus``: products whose purchase earns nobody anything (entry packages);
    - ``participant_self_purchase_pays_uplines``: ``False`` when a participant's own purchase pays
      no upline (the compliant profile's CN-SELF rule);
    - ``pool``: the pool kind when one pool is split over the chain, else ``None``.
    """

    kind: str
    max_payees: int | None
    max_level: int | None
    headline_rate: RateSpec | None
    cap: Fraction | None
    entry_skus: frozenset[str] = frozenset()
    participant_self_purchase_pays_uplines: bool = True
    pool: str | None = None


def traits_of(policy: PolicyConfig) -> PolicyTraits:
    """The traits of ``policy`` read off its compiled plan (the default of ``PolicyConfig.traits``)."""
    plan = policy.compiled()
    if plan is None:
        levels = type(policy).max_levels  # a plugin's own declaration, else unbounded
        return PolicyTraits(policy.kind, levels, levels, None, policy.cap)
    if plan.select in ("first", "last"):
        payees: int | None = 1
        level: int | None = 1 if plan.select == "last" else None
    else:
        payees = level = plan.depth
    gate = plan.gate
    return PolicyTraits(
        kind=policy.kind, max_payees=payees, max_level=level,
        headline_rate=plan.rates[0] if plan.rates else None, cap=policy.cap,
        entry_skus=gate.entry_skus if gate is not None else frozenset(),
        participant_self_purchase_pays_uplines=gate is None, pool=plan.pool)
