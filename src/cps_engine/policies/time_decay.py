"""``time_decay``: the pool is split by weights that halve every ``half_life_days`` of age.

A link's age is the time from its share (or binding) to the order; the buyer's own link (with
``self_purchase``) is age 0.  **Weight contract:** a link's weight is ``2^(-age / half_life)``
computed in 28-significant-digit decimal arithmetic (deterministic on every platform) and rounded
half-even to 9 decimal places, used as the exact integer ``round(10^9 × 2^(-age / half_life))``
(:meth:`cps_engine.policies.plan.Weights.decay_units`).  A member's share of the pool is its
integer weight over the sum of the members' weights, exactly; the per-order engine and
``compute_batch`` compute the same integers.  A link older than about 30.9 half-lives weighs 0 and
takes nothing; when every link does, the pool pays nobody.

>>> TimeDecay(rate="10%", half_life_days="7").half_life_days
Decimal('7')
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from cps_engine.models import ExactDecimal
from cps_engine.policies.base import OrderView
from cps_engine.policies.plan import Weights
from cps_engine.policies.pool import PoolPolicy

if TYPE_CHECKING:
    from cps_engine.graph.chains import Chain, Link

__all__ = ["TimeDecay"]

_DAY_US = 86_400_000_000


class TimeDecay(PoolPolicy):
    kind: Literal["time_decay"] = "time_decay"
    half_life_days: ExactDecimal = Field(gt=0)

    def plan_weights(self) -> Weights:
        return Weights("decay", half_life_us=self.half_life_days * _DAY_US)

    def weights(self, chain: Chain, order: OrderView, links: Sequence[Link]) -> list[Fraction]:
        plan = self.compiled()
        assert plan is not None
        return plan.pool_weights(chain, order, links)
