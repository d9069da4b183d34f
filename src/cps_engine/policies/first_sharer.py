"""``first_sharer``: only ``chain[0]`` — the first person in the chain — is paid (the original CPS).

>>> p = FirstSharer(rate="10%")
>>> p.to_dict()["rate"], p.rounding
('0.1', <Rounding.DOWN: 'down'>)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from cps_engine.policies.base import Award, OrderView, PolicyConfig, Spec, fast_new

if TYPE_CHECKING:
    from cps_engine.graph.chains import Chain

__all__ = ["FirstSharer"]

_award = fast_new(Award)  # Award(...) with every field, built faster (the hot path)


class FirstSharer(PolicyConfig):
    """Pay ``rate`` of the base to the first sharer (the farthest eligible person) only."""

    kind: Literal["first_sharer"] = "first_sharer"
    rate: Spec
    max_levels: ClassVar[int | None] = None  # one payee, but at any depth

    def awards(self, chain: Chain, order: OrderView) -> list[Award]:
        if self._filters:
            links = self.levels(chain, None)
            if not links:
                return []
            link, level, _ = links[-1]
        else:
            first = chain.first()
            if first is None:
                return []
            link, level = first, len(chain)
        rate, rule = self.resolve_rate(link.payee, 1, order, lambda _: self.rate)
        return self.capped([_award(link.payee, level, rate, f"first sharer, {rule}", (link.via,), None)])
