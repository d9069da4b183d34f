"""``linear``: the pool is split equally over the chain (multi-touch, for analysts).

>>> Linear(rate="9%").kind
'linear'
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Literal

from cps_engine.policies.base import OrderView
from cps_engine.policies.plan import Weights
from cps_engine.policies.pool import PoolPolicy

if TYPE_CHECKING:
    from cps_engine.graph.chains import Chain, Link

__all__ = ["Linear"]


class Linear(PoolPolicy):
    kind: Literal["linear"] = "linear"

    def plan_weights(self) -> Weights:
        return Weights("equal")

    def weights(self, chain: Chain, order: OrderView, links: Sequence[Link]) -> list[Fraction]:
        return [Fraction(1)] * len(links)
