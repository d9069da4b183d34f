"""``position_based``: the first and last sharers get fixed shares of the pool, the middle the rest.

Defaults 40/20/40.  With one person they get the whole pool; with two, first and last split it in
the ratio ``first : last``.

>>> PositionBased(rate="10%").first
Fraction(2, 5)
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Literal

from pydantic import model_validator

from cps_engine.policies.base import OrderView, Rate
from cps_engine.policies.plan import Weights
from cps_engine.policies.pool import PoolPolicy

if TYPE_CHECKING:
    from cps_engine.graph.chains import Chain, Link

__all__ = ["PositionBased"]


class PositionBased(PoolPolicy):
    kind: Literal["position_based"] = "position_based"
    first: Rate = Fraction(2, 5)
    middle: Rate = Fraction(1, 5)
    last: Rate = Fraction(2, 5)

    @model_validator(mode="after")
    def _sums_to_one(self) -> PositionBased:
        if self.first + self.middle + self.last != 1:
            raise ValueError("first + middle + last must add up to 100%")
        return self

    def plan_weights(self) -> Weights:
        return Weights("position", first=self.first, middle=self.middle, last=self.last)

    def weights(self, chain: Chain, order: OrderView, links: Sequence[Link]) -> list[Fraction]:
        w = self.plan_weights()  # links are nearest first: [last, middle..., first]
        return [w.of(len(links), i) for i in range(len(links))]
