"""One policy plan: what a policy pays, as data that the per-order engine and the numpy kernels both run.

A built-in policy compiles (:meth:`PolicyConfig.plan`) to a :class:`Plan`:

- ``select``: which positions of the chain are paid — ``"levels"`` (levels 1..``depth``, nearest
  first), ``"last"`` (level 1 only), ``"first"`` (``chain[0]``, the farthest eligible person) or
  ``"pool"`` (levels 1..``depth``, all when None, splitting one pool by ``weights``);
- ``rates``: the default spec of each rate tier (level ``i`` reads ``rates[i - 1]``; ``first`` and
  pools read tier 1), with ``rule`` the prefix of every award's rule;
- the options every policy has, read from the config: eligibility (``distributors``, ``eligible``,
  ``ineligible``), the rate precedence payee > product > category > default, the ``cap``, and
  ``self_purchase``;
- ``gate``: the compliant profile's order-time rules (entry SKUs pay nobody; a participant's own
  purchase pays only a disclosed rebate).

:meth:`Plan.awards` is the per-order execution (the reference semantics, used by ``compute``);
:mod:`cps_engine.batch` executes the same plan over arrays and calls back into :meth:`Plan.resolve`,
:meth:`Plan.cap_scale`, :meth:`Plan.pool_weights` for the exact arithmetic, so neither restates it.
A plugin that returns a plan from ``plan()`` is vectorised for free; one that returns None is
computed per order by the batch engine (with a warning).

>>> from cps_engine.policies import load_policy
>>> p = load_policy({"kind": "capped_multilevel", "rates": ["10%", "5%"], "cap": "12%"}).plan()
>>> p.select, p.depth, [str(r) for r in p.rates], p.ceiling
('levels', 2, ['1/10', '1/20'], Fraction(3, 25))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from fractions import Fraction
from typing import TYPE_CHECKING, Literal

from cps_engine.policies.base import Award, OrderView, RateSpec, _at_level, fast_new

if TYPE_CHECKING:
    from cps_engine.graph.chains import Chain, Link
    from cps_engine.policies.base import PolicyConfig

__all__ = ["DECAY_DIGITS", "DECAY_SCALE", "Gate", "Plan", "Weights"]

_award = fast_new(Award)
_DAY_US = 86_400_000_000


#: time-decay weights are whole multiples of ``10**-DECAY_DIGITS`` (see :meth:`Weights.decay_units`)
DECAY_DIGITS = 9
DECAY_SCALE = 10**DECAY_DIGITS
_DECAY_CONTEXT = Context(prec=28, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class Weights:
    """How a pool is split over its members (nearest first): ``equal``; ``position`` (``first`` to
    the farthest, ``last`` to the nearest, ``middle`` shared by the rest; one member takes all, two
    split ``first : last``); ``decay`` (``2^(-age / half_life)``, age from the link's share or binding
    to the order, rounded to ``DECAY_DIGITS`` decimal places: :meth:`decay_units`)."""

    kind: Literal["equal", "position", "decay"]
    first: Fraction = Fraction(0)
    middle: Fraction = Fraction(0)
    last: Fraction = Fraction(0)
    half_life_us: Decimal = Decimal(0)

    def of(self, k: int, i: int) -> Fraction:
        """Weight of member ``i`` (0 = nearest) of ``k`` for ``equal`` and ``position``."""
        if self.kind == "equal" or k == 1:
            return Fraction(1)
        if k == 2:
            return self.last if i == 0 else self.first
        if i == 0:
            return self.last
        if i == k - 1:
            return self.first
        return self.middle / (k - 2)

    def decay_units(self, age_us: int) -> int:
        """The time-decay weight of a link ``age_us`` µs old, in units of ``10**-DECAY_DIGITS``.

        The contract, identical per order and in the batch kernel: ``2^(-age / half_life)`` computed
        in 28-significant-digit decimal arithmetic (ROUND_HALF_EVEN, the same on every platform),
        then rounded half-even to ``DECAY_DIGITS`` (9) decimal places.  The weight is that integer
        count: age 0 weighs ``10**9``, one half-life ``5 * 10**8``; a link older than about 30.9
        half-lives weighs 0 and takes no share of the pool.

        >>> w = Weights("decay", half_life_us=Decimal(86_400_000_000))
        >>> w.decay_units(0), w.decay_units(86_400_000_000), w.decay_units(10 * 86_400_000_000)
        (1000000000, 500000000, 976562)
        >>> w.decay_units(43_200_000_000)  # 2^-0.5 = 0.70710678118...
        707106781
        """
        with localcontext(_DECAY_CONTEXT):
            x = Decimal(2) ** (-Decimal(age_us) / self.half_life_us)
            return int(x.scaleb(DECAY_DIGITS).to_integral_value(rounding=ROUND_HALF_EVEN))

    def decay(self, age_us: int) -> Fraction:
        """The time-decay weight of a link ``age_us`` µs old, exactly: ``decay_units / 10**9``."""
        return Fraction(self.decay_units(age_us), DECAY_SCALE)


@dataclass(frozen=True)
class Gate:
    """The compliant profile's order-time rules: an order with an ``entry_skus`` item pays nobody
    (CN-FEE); a participant's own purchase pays no upline, at most ``self_purchase_rate`` to the
    buyer when the buyer may earn (CN-SELF)."""

    entry_skus: frozenset[str] = frozenset()
    self_purchase_rate: Fraction | None = None

    REBATE_RULE = "self-purchase rebate (CN-SELF)"


@dataclass(frozen=True, eq=False)
class Plan:
    """A compiled policy (see the module docstring).  Built by ``policy.plan()``, cached on it."""

    policy: PolicyConfig
    select: Literal["levels", "first", "last", "pool"]
    rates: tuple[RateSpec, ...]
    depth: int | None
    rule: str = ""
    weights: Weights | None = None
    gate: Gate | None = None
    #: pool name of pool awards (the policy kind)
    pool: str | None = None
    _default: object = field(default=None, repr=False)

    # ------------------------------------------------------------------ the config's shared options
    @property
    def ceiling(self) -> Fraction:
        """The most one order may pay, as a rate: ``cap`` (never above 1), else 1."""
        cap = self.policy.cap
        return min(cap, Fraction(1)) if cap is not None else Fraction(1)

    @property
    def filters(self) -> bool:
        return self.policy.distributors is not None or self.policy.eligible is not None

    @property
    def keep_level(self) -> bool:
        return self.policy.ineligible == "keep_level"

    @property
    def stop(self) -> bool:
        """The chain ends at its first ineligible person (``ineligible = "stop"``)."""
        return self.policy.ineligible == "stop"

    @property
    def self_purchase(self) -> bool:
        return self.policy.self_purchase

    @property
    def uses_lines(self) -> bool:
        """Whether an order's item lines can change what it pays (product/category rates, entry SKUs)."""
        p = self.policy
        return bool(p.product_rates or p.category_rates or (self.gate is not None and self.gate.entry_skus))

    def default(self, tier: int) -> RateSpec:
        """The policy's own spec at rate tier ``tier``."""
        rates = self.rates
        return rates[tier - 1] if tier <= len(rates) else Fraction(0)

    def payee_spec(self, payee: str, tier: int) -> RateSpec | None:
        """The per-payee spec of ``payee`` at ``tier`` (None: no override)."""
        specs = self.policy.payee_rates.get(payee)
        return None if specs is None else _at_level(specs, tier)

    def resolve(self, payee: str | None, tier: int, order: OrderView) -> tuple[Fraction, str]:
        """Rate and rule of ``payee`` at ``tier``: payee > product > category > default."""
        return self.policy.resolve_rate(payee, tier, order, self.default)

    def cap_scale(self, rates: Sequence[Fraction]) -> tuple[int, int] | None:
        """``None`` when the rates fit under the ceiling, else the factor ``(num, den)``."""
        return self.policy._cap_scale(rates)

    # ------------------------------------------------------------------ per order
    def awards(self, chain: Chain, order: OrderView) -> list[Award]:
        """The awards of one order: the reference execution of the plan."""
        policy = self.policy
        gate = self.gate
        if gate is not None:
            lines = order.event.lines
            if gate.entry_skus and lines and any(line.sku in gate.entry_skus for line in lines):
                return []  # CN-FEE: an entry purchase earns nobody anything
            if chain.buyer_is_participant():  # CN-SELF
                spr = gate.self_purchase_rate
                if spr and policy.is_eligible(order.buyer):
                    return policy.capped([Award(order.buyer, 1, spr, Gate.REBATE_RULE, (order.id,))])
                return []
        if self.select == "levels":
            if gate is not None:
                return policy.capped(policy.level_awards(chain, order, self.rates))
            return policy.capped_level_awards(chain, order, self.rates)
        if self.select == "first":
            return self._first(chain, order)
        if self.select == "last":
            return self._last(chain, order)
        return self._pool(chain, order)

    def _last(self, chain: Chain, order: OrderView) -> list[Award]:
        policy = self.policy
        found = policy.levels(chain, 1)
        if not found:
            return []
        link, level, path = found[0]
        rate, rule = self.resolve(link.payee, 1, order)
        return policy.capped([_award(link.payee, level, rate, f"{self.rule}{rule}", path, None)])

    def _first(self, chain: Chain, order: OrderView) -> list[Award]:
        policy = self.policy
        if self.filters:
            links = policy.levels(chain, None)
            if not links:
                return []
            link, level, _ = links[-1]
        else:
            first = chain.first()
            if first is None:
                return []
            link, level = first, len(chain)
        rate, rule = self.resolve(link.payee, 1, order)
        return policy.capped([_award(link.payee, level, rate, f"{self.rule}{rule}", (link.via,), None)])

    def _pool(self, chain: Chain, order: OrderView) -> list[Award]:
        policy = self.policy
        found = policy.levels(chain, self.depth)
        if not found:
            return []
        pool, rule = self.resolve(None, 1, order)  # one pool: no payee override
        weights = self.pool_weights(chain, order, [f[0] for f in found])
        total = sum(weights, Fraction(0))
        if total == 0 or pool == 0:
            return []
        out = [Award(link.payee, level, pool * w / total, f"{self.rule}{rule}", path, pool=self.pool)
               for (link, level, path), w in zip(found, weights, strict=True) if w]
        return policy.capped(out)

    def pool_weights(self, chain: Chain, order: OrderView, links: Sequence[Link]) -> list[Fraction]:
        """Weights of the pool's members (nearest first), as the plan's ``weights`` say."""
        w = self.weights
        assert w is not None
        k = len(links)
        if w.kind != "decay":
            return [w.of(k, i) for i in range(k)]
        from cps_engine.graph.binding import to_micros

        t = to_micros(order.at)
        out = []
        for link in links:
            # the buyer's own link (self-purchase) joined the chain with the order: age 0
            age = 0 if link.via == chain.order_id else max(0, t - to_micros(chain.time_of(link)))
            out.append(Fraction(w.decay_units(age)))  # integer weights: the pool split is their ratio
        return out
