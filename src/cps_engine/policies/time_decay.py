"""``time_decay``: the pool is split by weights that halve every ``half_life_days`` of age.

A link's age is the time from its share (or binding) to the order.  Weights are computed with
28-digit decimal arithmetic (deterministic on every platform) and then used as exact fractions.

>>> TimeDecay(rate="10%", half_life_days="7").half_life_days
Decimal('7')
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from cps_engine.graph.binding import to_micros
from cps_engine.models import ExactDecimal
from cps_engine.policies.base import OrderView
from cps_engine.policies.pool import PoolPolicy

if TYPE_CHECKING:
    from cps_engine.graph.chains import Chain, Link

__all__ = ["TimeDecay"]

_DAY_US = 86_400_000_000


class TimeDecay(PoolPolicy):
    kind: Literal["time_decay"] = "time_decay"
    half_life_days: ExactDecimal = Field(gt=0)

    def weights(self, chain: Chain, order: OrderView, links: Sequence[Link]) -> list[Fraction]:
        t = to_micros(order.at)
        half = self.half_life_days * _DAY_US
        out = []
        with localcontext() as ctx:
            ctx.prec = 28
            for link in links:
                # the buyer's own link (self-purchase) joined the chain with the order: age 0
                age = 0 if link.via == chain.order_id else max(0, t - to_micros(chain.time_of(link)))
                out.append(Fraction(Decimal(2) ** (-Decimal(age) / half)))
        return out
