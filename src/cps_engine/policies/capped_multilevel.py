"""``capped_multilevel``: levels 1..N up the chain get their own rate, with a total cap.

Level 1 is the nearest sharer.  When the rates paid on one order add up to more than ``cap`` they
are all scaled down by the same factor, so the order costs at most ``cap`` of its base.

>>> p = CappedMultilevel(rates=["10%", "5%", "2%"], cap="15%")
>>> p.max_depth, p.cap
(3, Fraction(3, 20))
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cps_engine.policies.base import PolicyConfig, Spec
from cps_engine.policies.plan import Plan

__all__ = ["CappedMultilevel"]


class CappedMultilevel(PolicyConfig):
    """``rates[i]`` for level ``i + 1``; at most ``len(rates)`` levels; total scaled to ``cap``."""

    kind: Literal["capped_multilevel"] = "capped_multilevel"
    rates: list[Spec] = Field(min_length=1, max_length=100)

    @property
    def max_depth(self) -> int:
        return len(self.rates)

    def plan(self) -> Plan:
        return Plan(self, "levels", tuple(self.rates), len(self.rates))
