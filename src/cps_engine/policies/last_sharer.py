"""``last_sharer``: the nearest sharer — whose link the buyer used — is paid ("last click").

>>> LastSharer(rate="8%").rate
Fraction(2, 25)
"""

from __future__ import annotations

from typing import ClassVar, Literal

from cps_engine.policies.base import PolicyConfig, Spec
from cps_engine.policies.plan import Plan

__all__ = ["LastSharer"]


class LastSharer(PolicyConfig):
    """Pay ``rate`` of the base to level 1 (the nearest eligible person) only."""

    kind: Literal["last_sharer"] = "last_sharer"
    rate: Spec
    max_levels: ClassVar[int | None] = 1

    def plan(self) -> Plan:
        return Plan(self, "last", (self.rate,), 1, rule="last sharer, ")
