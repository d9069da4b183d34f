"""``first_sharer``: only ``chain[0]`` — the first person in the chain — is paid (the original CPS).

>>> p = FirstSharer(rate="10%")
>>> p.to_dict()["rate"], p.rounding
('0.1', <Rounding.DOWN: 'down'>)
"""

from __future__ import annotations

from typing import ClassVar, Literal

from cps_engine.policies.base import PolicyConfig, Spec
from cps_engine.policies.plan import Plan

__all__ = ["FirstSharer"]


class FirstSharer(PolicyConfig):
    """Pay ``rate`` of the base to the first sharer (the farthest eligible person) only."""

    kind: Literal["first_sharer"] = "first_sharer"
    rate: Spec
    max_levels: ClassVar[int | None] = None  # one payee, but at any depth

    def plan(self) -> Plan:
        return Plan(self, "first", (self.rate,), None, rule="first sharer, ")
