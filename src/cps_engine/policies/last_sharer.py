"""``last_sharer``: the nearest sharer — whose link the buyer used — is paid ("last click").

>>> LastSharer(rate="8%").rate
Fraction(2, 25)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from cps_engine.policies.base import Award, OrderView, PolicyConfig, Spec, fast_new

if TYPE_CHECKING:
    from cps_engine.graph.chains import Chain

__all__ = ["LastSharer"]

_award = fast_new(Award)  # Award(...) with every field, built faster (the hot path)


class LastSharer(PolicyConfig):
    """Pay ``rate`` of the base to level 1 (the nearest eligible person) only."""

    kind: Literal["last_sharer"] = "last_sharer"
    rate: Spec
    max_levels: ClassVar[int | None] = 1

    def awards(self, chain: Chain, order: OrderView) -> list[Award]:
        found = self.levels(chain, 1)
        if not found:
            return []
        link, level, path = found[0]
        rate, rule = self.resolve_rate(link.payee, 1, order, lambda _: self.rate)
        return self.capped([_award(link.payee, level, rate, f"last sharer, {rule}", path, None)])
