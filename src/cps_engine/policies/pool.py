"""Pool policies: one pool (``rate`` of the base) split over the chain by weights.

The engine rounds the pool once and splits it exactly by largest remainder, so the payees of one
order always receive exactly the rounded pool.  Subclasses only say how to weigh the links.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING

from pydantic import Field

from cps_engine.policies.base import Award, OrderView, PolicyConfig, Spec
from cps_engine.policies.plan import Plan, Weights

if TYPE_CHECKING:
    from cps_engine.graph.chains import Chain, Link

__all__ = ["PoolPolicy"]


class PoolPolicy(PolicyConfig):
    """``rate`` of the base is one pool, split over levels 1..``max_depth`` (all when None)."""

    rate: Spec
    max_depth: int | None = Field(default=None, ge=1, le=100_000)

    def weights(self, chain: Chain, order: OrderView, links: Sequence[Link]) -> list[Fraction]:
        """Non-negative weights, one per link (nearest first); normalised by the caller."""
        raise NotImplementedError  # pragma: no cover

    def plan_weights(self) -> Weights | None:
        """The built-in weighting as data (None: ``weights`` is this class's own, computed per order)."""
        return None

    def plan(self) -> Plan | None:
        weights = self.plan_weights()
        if weights is None:
            return None
        return Plan(self, "pool", (self.rate,), self.max_depth, rule=f"{self.kind} share of pool, ",
                    weights=weights, pool=self.kind)

    def awards(self, chain: Chain, order: OrderView) -> list[Award]:
        plan = self.compiled()
        if plan is not None:
            return plan.awards(chain, order)
        found = self.levels(chain, self.max_depth)
        if not found:
            return []
        pool, rule = self.resolve_rate(None, 1, order, lambda _: self.rate)  # one pool: no payee override
        weights = self.weights(chain, order, [f[0] for f in found])
        total = sum(weights, Fraction(0))
        if total == 0 or pool == 0:
            return []
        out = [Award(link.payee, level, pool * w / total, f"{self.kind} share of pool, {rule}", path,
                     pool=self.kind)
               for (link, level, path), w in zip(found, weights, strict=True) if w]
        return self.capped(out)
