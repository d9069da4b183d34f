"""What every policy shares: rate specs, the order as a policy sees it, awards, and the config base.

A policy answers one question — *given this chain and this order, who gets what fraction of the
commissionable base?* — and returns :class:`Award` objects with exact ``Fraction`` rates.  It never
touches money rounding or storage: the engine turns awards into money.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, NamedTuple, TypeAlias, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from cps_engine.errors import CpsError, CurrencyMismatch, InvalidPolicyConfig, InvalidRate
from cps_engine.models import OrderEvent
from cps_engine.money import Money, Rounding, format_rate, parse_rate
from cps_engine.tiers import Tier

if TYPE_CHECKING:
    from cps_engine.graph.chains import Chain, Link
    from cps_engine.policies.plan import Plan
    from cps_engine.policies.traits import PolicyTraits

T = TypeVar("T")
_UNSET: Any = object()

__all__ = [
    "Award",
    "BaseConfig",
    "Fixed",
    "OrderView",
    "PolicyConfig",
    "Rate",
    "RateSpec",
    "fast_new",
    "parse_spec",
]


class Fixed(NamedTuple):
    """A fixed commission: ``minor`` units of ``currency`` per order, or per item."""

    minor: int
    currency: str
    per_item: bool = False

    def __str__(self) -> str:
        return f"{Money(self.minor, self.currency)}{'/item' if self.per_item else ''}"


RateSpec: TypeAlias = Fraction | Fixed


def parse_spec(value: Any) -> RateSpec:
    """A rate (``"10%"``, ``"0.1"``) or a fixed amount (``"5.00 CNY"``, ``"1.00 CNY/item"``).

    >>> parse_spec("10%"), parse_spec("5.00 CNY"), parse_spec("0.50 USD/item")
    (Fraction(1, 10), Fixed(minor=500, currency='CNY', per_item=False), Fixed(minor=50, currency='USD', per_item=True))
    """
    if isinstance(value, (Fraction, Fixed)):
        return value
    if isinstance(value, str) and any(c.isalpha() for c in value):
        text = value.strip()
        per_item = text.endswith("/item")
        if per_item:
            text = text[: -len("/item")]
        money = Money.parse(text)
        if money.minor < 0:
            raise InvalidRate(f"fixed amount {value!r} is negative")
        return Fixed(money.minor, money.currency, per_item)
    return parse_rate(value)


def _spec_text(spec: RateSpec) -> str:
    return str(spec) if isinstance(spec, Fixed) else format_rate(spec)


_RATE_SCHEMA = {"type": "string", "description": "exact rate: '10%', '0.1' or '1/3'",
                "examples": ["10%", "0.05"]}
_SPEC_SCHEMA = {"type": "string", "description": "a rate ('10%') or a fixed amount ('5.00 CNY', '1.00 CNY/item')",
                "examples": ["10%", "5.00 CNY", "1.00 CNY/item"]}

#: An exact rate field: parsed by :func:`parse_rate`, written back as exact text.
Rate = Annotated[Fraction, BeforeValidator(lambda v: parse_rate(v)), PlainSerializer(format_rate),
                 WithJsonSchema(_RATE_SCHEMA)]
Spec = Annotated[RateSpec, BeforeValidator(parse_spec), PlainSerializer(_spec_text), WithJsonSchema(_SPEC_SCHEMA)]
LevelSpecs = Spec | list[Spec]


@dataclass(frozen=True, slots=True)
class Award:
    """One payee's share of an order, as a fraction of the commissionable base.

    ``pool`` groups awards that split one pool (linear, position-based, time-decay): the engine
    rounds the pool once and splits it exactly.  ``path`` lists the records (share/bind ids) of
    the links read to reach this payee, nearest first.
    """

    payee: str
    level: int
    rate: Fraction
    rule: str
    path: tuple[str, ...] = ()
    pool: str | None = None


def fast_new(cls: type[T]) -> Callable[..., T]:
    """A positional constructor for a frozen, slotted dataclass that fills the slots directly.

    The dataclass ``__init__`` of a frozen class calls ``object.__setattr__`` once per field; on the
    hot path (an award, a commission line and its provenance per order) that is half the cost of
    building the object.  The result is the same object the class would build; every field must be
    passed, in declaration order.  Falls back to the class itself when it has a ``__post_init__``,
    is not slotted, or is not a dataclass.

    >>> make = fast_new(Award)
    >>> make("amy", 1, Fraction(1, 10), "level 1 rate", ("s1",), None) == Award("amy", 1, Fraction(1, 10),
    ...                                                                        "level 1 rate", ("s1",))
    True
    """
    names = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []
    if not names or hasattr(cls, "__post_init__") or "__slots__" not in cls.__dict__ \
            or list(cls.__dict__["__slots__"]) != names:
        return cls
    setters = {f"_s{i}": cls.__dict__[name].__set__ for i, name in enumerate(names)}
    args = ", ".join(f"a{i}" for i in range(len(names)))
    body = "".join(f"    _s{i}(o, a{i})\n" for i in range(len(names)))
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls, **setters}
    exec(f"def make({args}):\n    o = _new(_cls)\n{body}    return o\n", namespace)
    make: Callable[..., T] = namespace["make"]
    make.__doc__ = f"Build one {cls.__name__} from all its fields, positionally."
    return make


_award = fast_new(Award)  # _award(payee, level, rate, rule, path, pool): every field, in order


class OrderView:
    """An order as a policy sees it: the commissionable ``base`` in minor units and its lines."""

    __slots__ = ("__dict__", "base", "event", "tiers")

    def __init__(self, event: OrderEvent, base: int, tiers: Callable[[str], Tier] | None = None) -> None:
        self.event = event
        self.base = base
        #: payee -> their promoter tier as of the order (a tiered policy; see :mod:`cps_engine.tiers`)
        self.tiers = tiers

    @property
    def id(self) -> str:
        return self.event.id

    @property
    def buyer(self) -> str:
        return self.event.buyer

    @property
    def currency(self) -> str:
        return self.event.currency

    @property
    def at(self) -> datetime:
        return self.event.at

    @cached_property
    def items(self) -> int:
        lines = self.event.lines
        return sum(line.quantity for line in lines) if lines else 1

    @cached_property
    def line_bases(self) -> tuple[tuple[str, str | None, int, int], ...]:
        """``(sku, category, quantity, base share)`` per line: the base split over the lines by
        their gross value (largest remainder, ties to the earlier line), summing to ``base``;
        empty when the order has no lines or they are all worth 0."""
        lines = self.event.lines or ()
        gross = [line.quantity * line.unit_price for line in lines]
        total = sum(gross)
        if not lines or total == 0:
            return ()  # nothing to split by: the order-level rate applies
        shares = [Fraction(self.base) * Fraction(g) / Fraction(total) for g in gross]
        floors = [int(s) for s in shares]
        rest = self.base - sum(floors)
        order = sorted(range(len(lines)), key=lambda i: (-(shares[i] - floors[i]), i))
        for i in order[:rest]:
            floors[i] += 1
        return tuple((ln.sku, ln.category, ln.quantity, b) for ln, b in zip(lines, floors, strict=True))


class BaseConfig(BaseModel):
    """What counts as commissionable: the amount paid, less shipping and tax unless included."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    include_shipping: bool = False
    include_tax: bool = False

    def of(self, order: OrderEvent) -> int:
        """Commissionable minor units of ``order``.

        >>> from cps_engine.models import parse_event
        >>> o = parse_event({"type": "order", "id": "o1", "buyer": "b", "amount": "110.00", "currency": "CNY",
        ...                  "shipping": "10.00", "at": "2026-03-01T10:00:00Z"})
        >>> BaseConfig().of(o), BaseConfig(include_shipping=True).of(o)
        (10000, 11000)
        """
        base, shipping, tax = _minor_units(order)
        if not self.include_shipping:
            base -= shipping
        if not self.include_tax:
            base -= tax
        return base


def _minor_units(order: OrderEvent) -> tuple[int, int, int]:
    """``(amount, shipping, tax)`` in minor units.  Hot path: pydantic serves each private-attribute
    property through ``__getattr__`` (~1.4 µs a read), so an exact ``OrderEvent`` is read from its
    private-attribute dict directly (one dict lookup)."""
    if type(order) is OrderEvent:
        private = order.__pydantic_private__
        if private is not None:
            minor: tuple[int, int, int] | None = private.get("_minor")
            if minor is not None:
                return minor
    return order.amount_minor, order.shipping_minor, order.tax_minor


class PolicyConfig(BaseModel):
    """Base of every policy config: ``kind`` plus the options all policies share.

    - ``distributors``: who may earn (``None``: everyone, 人人分销; a list: only those, 指定分销);
      people not allowed are skipped, and ``ineligible`` says whether the next person moves up a
      level (``compress``), keeps their own (``keep_level``), or the chain stops there (``stop``:
      nobody from the first ineligible person up is paid, so an ineligible level-1 payee means the
      order pays nobody, as yudao-cloud's brokerage does).
    - ``payee_rates`` > ``product_rates`` > ``category_rates`` > the policy's own rates: overrides,
      each a spec or a list of specs per level.
    - ``cap``: ceiling on the total rate of an order (rates scaled down proportionally above it).
    - ``self_purchase``: the buyer earns on their own order, as level 1 (自购返佣).
    - ``base``: what is commissionable; ``rounding``: the one rounding rule (default ``down``).
    - ``allow_over_100``: accept rates that can add up to more than 100% of the base without a
      ``cap`` (they are then scaled down to 100%); without it such a config is refused
      (:meth:`max_total_rate`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True,
                              use_enum_values=False)

    kind: str
    name: str | None = None
    distributors: frozenset[str] | None = None
    ineligible: Literal["compress", "keep_level", "stop"] = "compress"
    payee_rates: dict[str, LevelSpecs] = Field(default_factory=dict)
    product_rates: dict[str, LevelSpecs] = Field(default_factory=dict)
    category_rates: dict[str, LevelSpecs] = Field(default_factory=dict)
    cap: Rate | None = None
    self_purchase: bool = False
    base: BaseConfig = Field(default_factory=BaseConfig)
    rounding: Rounding = Rounding.DOWN
    allow_over_100: bool = False
    #: promoter tiers (分销等级): ordered, the first where everyone starts (:mod:`cps_engine.tiers`)
    tiers: list[Tier] | None = None
    #: programmatic eligibility test (not serialised, not part of the config hash)
    eligible: SkipJsonSchema[Callable[[str], bool] | None] = Field(default=None, exclude=True)

    #: levels this policy can pay at most (None: unbounded); used by compliance reports
    max_levels: ClassVar[int | None] = None

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise from_validation(exc) from None

    @model_validator(mode="after")
    def _tiers_fit(self) -> PolicyConfig:
        from cps_engine.tiers import check_tiers

        check_tiers(self)
        return self

    @model_validator(mode="after")
    def _at_most_the_base(self) -> PolicyConfig:
        """Refuse rates that can add up to more than 100% of the base, unless a ``cap`` bounds them
        or ``allow_over_100`` says so explicitly."""
        if self.cap is not None or self.allow_over_100:
            return self
        found = self.max_total_rate()
        if found is not None and found[0] > 1:
            total, field = found
            raise InvalidPolicyConfig(
                f"the rates can add up to {format_rate(total * 100)}% of the base (more than 100%); lower them, "
                "set a cap, or set allow_over_100 = true", field=field)
        return self

    def max_total_rate(self) -> tuple[Fraction, str] | None:
        """An upper bound of the total rate one order can pay, fixed amounts aside, and the field that
        sets it (``None``: this policy cannot pay more than one rate of at most 100%).

        The built-in bound reads ``rates`` (one spec per level) and ``self_purchase_rate`` when the
        policy has them: per level the highest of the default and the product/category overrides,
        plus what payee overrides can add (each payee is paid at one level at most), plus the rebate.
        Plugins with other fields override it.
        """
        rates = getattr(self, "rates", None)
        if not isinstance(rates, (list, tuple)):
            return None
        levels = len(rates)

        def rate(spec: Any) -> Fraction:
            return spec if isinstance(spec, Fraction) else Fraction(0)  # fixed amounts aside

        blended = [self.product_rates, self.category_rates,
                   {t.name: t.rates for t in self.tiers or () if t.rates is not None}]
        base = [max([rate(rates[i])] + [rate(_at_level(specs, i + 1)) for table in blended
                                         for specs in table.values()]) for i in range(levels)]
        total = sum(base, Fraction(0))
        field = "rates"
        if self.payee_rates:
            gains = [[max(Fraction(0), rate(_at_level(specs, i + 1)) - base[i]) for i in range(levels)]
                     for specs in self.payee_rates.values()]
            by_level = sum((max(g[i] for g in gains) for i in range(levels)), Fraction(0))
            by_payee = sum(sorted((max(g) for g in gains), reverse=True)[:levels], Fraction(0))
            extra = min(by_level, by_payee)
            if extra:
                total += extra
                field = "payee_rates"
        rebate = getattr(self, "self_purchase_rate", None)
        if isinstance(rebate, Fraction) and rebate:
            total += rebate
        return total, field

    # ---------------------------------------------------------------- identity
    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able data (rates as exact strings)."""
        data = self.model_dump(mode="json", exclude_none=True)
        if not data.get("allow_over_100", True):  # the default stays out: config hashes do not change
            del data["allow_over_100"]
        for name in data:  # sets dump in hash-seed order: sort them so config_hash is stable
            if isinstance(getattr(self, name, None), (set, frozenset)):
                data[name] = sorted(data[name])
        return data

    @cached_property
    def config_hash(self) -> str:
        """sha256 over the canonical JSON of the config: names the exact policy in provenance."""
        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canon.encode()).hexdigest()

    @property
    def label(self) -> str:
        return self.name or self.kind

    # ---------------------------------------------------------------- the contract
    def awards(self, chain: Chain, order: OrderView) -> list[Award]:
        """Who gets what fraction of ``order.base``: the compiled plan's awards; a policy without a
        plan implements this itself."""
        plan = self.compiled() if self.tiers is None else self._tiered_plan()
        if plan is None:  # pragma: no cover - abstract
            raise NotImplementedError
        return plan.awards(chain, order)

    def plan(self) -> Plan | None:
        """This policy as a :class:`~cps_engine.policies.plan.Plan` (who is paid at which exact rate,
        cap, pool split, eligibility, rate precedence), or None when it has none: then ``awards``
        is the whole story and the batch engine computes it one order at a time."""
        return None

    def traits(self) -> PolicyTraits:
        """What tools need to know about this policy (payees and levels at most, level-1 rate, cap,
        entry SKUs, …): :class:`~cps_engine.policies.traits.PolicyTraits`, read off the plan.  A
        plugin without a plan should override it; the default then declares no limits."""
        from cps_engine.policies.traits import traits_of

        if self.tiers is not None:  # the shape is the untiered policy's; only rates differ per payee
            return traits_of(self.model_copy(update={"tiers": None}))
        return traits_of(self)

    def compiled(self) -> Plan | None:
        """:meth:`plan`, built once per config (memoised on the instance).  None for a tiered policy
        until the batch kernel learns tiers: the batch engine then computes its orders one at a time."""
        if self.tiers is not None:
            return None
        memo = self.__dict__.get("_cps_plan", _UNSET)
        if memo is _UNSET:
            memo = self.__dict__["_cps_plan"] = self.plan()
        return memo  # type: ignore[no-any-return]

    def _tiered_plan(self) -> Plan | None:
        """:meth:`plan` of a tiered policy, memoised (the per-order engine runs it; ``compiled`` is None)."""
        memo = self.__dict__.get("_cps_tier_plan", _UNSET)
        if memo is _UNSET:
            memo = self.__dict__["_cps_tier_plan"] = self.plan()
        return memo  # type: ignore[no-any-return]

    # ---------------------------------------------------------------- helpers for policies
    def is_eligible(self, payee: str) -> bool:
        if self.distributors is not None and payee not in self.distributors:
            return False
        return self.eligible is None or self.eligible(payee)

    @property
    def _filters(self) -> bool:
        return self.distributors is not None or self.eligible is not None

    def levels(self, chain: Chain, n: int | None) -> list[tuple[Link, int, tuple[str, ...]]]:
        """Eligible links with their level, for levels 1..n (all when ``n`` is None), nearest
        first, with the path of records read so far."""
        out: list[tuple[Link, int, tuple[str, ...]]] = []
        if n is not None and n <= 0:
            return out
        if n is not None and self.distributors is None and self.eligible is None:
            # hot path: every link is eligible, so levels are 1..k and each path is a prefix
            links = chain.nearest(n)
            if len(links) == 1:
                link = links[0]
                return [(link, 1, (link.via,))]
            vias = tuple([link.via for link in links])
            return [(link, k + 1, vias[:k + 1]) for k, link in enumerate(links)]
        level = 0
        path: list[str] = []
        filters = self._filters
        keep = self.ineligible == "keep_level"
        stop = self.ineligible == "stop"
        for link in chain.walk():
            path.append(link.via)
            if filters and not self.is_eligible(link.payee):
                if stop:
                    break
                if keep:
                    level += 1
                    if n is not None and level >= n:
                        break
                continue
            level += 1
            out.append((link, level, tuple(path)))
            if n is not None and level >= n:
                break
        return out

    def level_awards(self, chain: Chain, order: OrderView, rates: Sequence[RateSpec]) -> list[Award]:
        """One award per eligible level 1..len(rates), each at its resolved rate (zero rates dropped)."""
        out = []
        default = lambda lv: rates[lv - 1]
        for link, level, path in self.levels(chain, len(rates)):
            rate, rule = self.resolve_rate(link.payee, level, order, default)
            if rate:
                out.append(Award(link.payee, level, rate, rule, path))
        return out

    def capped_level_awards(self, chain: Chain, order: OrderView, rates: Sequence[RateSpec]) -> list[Award]:
        """``capped(level_awards(chain, order, rates))``, building each award once (the hot path of
        the multi-level policies).

        >>> from cps_engine.graph import ShareGraph
        >>> g = ShareGraph.from_columns(["s1", "s2"], ["amy", "bob"], [None, "s1"])
        >>> from cps_engine.models import parse_event
        >>> o = parse_event({"type": "order", "id": "o1", "buyer": "cat", "share": "s2", "amount": "10.00",
        ...                  "currency": "CNY", "at": "2026-03-01T10:00:00Z"})
        >>> p = PolicyConfig(kind="demo", cap="12%")
        >>> rates = [Fraction(1, 10), Fraction(1, 20)]
        >>> view = OrderView(o, 1000)
        >>> p.capped_level_awards(g.chain_for(o), view, rates) == p.capped(p.level_awards(g.chain_for(o), view, rates))
        True
        """
        if self.payee_rates or self.product_rates or self.category_rates or order.tiers is not None:
            return self.capped(self.level_awards(chain, order, rates))
        # without overrides resolve_rate gives each level its own spec, with rule "level N rate"
        if self.distributors is None and self.eligible is None:
            plan = self._level_plan(rates)
            if plan is not None:  # every link eligible, every spec a rate: awards depend only on the depth
                near, via_list = chain.nearest_columns(len(rates))
                if not near:
                    return []
                vias = tuple(via_list)
                return [_award(near[level - 1], level, rate, rule, vias[:level], None)
                        for level, rate, rule in plan[len(near)]]
        payees: list[str] = []
        levels: list[int] = []
        paid: list[Fraction] = []
        paths: list[tuple[str, ...]] = []
        for link, level, path in self.levels(chain, len(rates)):
            spec = rates[level - 1]
            rate = spec if isinstance(spec, Fraction) else self.spec_rate(spec, order)
            if rate:
                payees.append(link.payee)
                levels.append(level)
                paid.append(rate)
                paths.append(path)
        scale = self._cap_scale(paid)
        if scale is None:
            return [_award(payees[i], levels[i], paid[i], f"level {levels[i]} rate", paths[i], None)
                    for i in range(len(paid))]
        num, den = scale
        return [_award(payees[i], levels[i], _scaled(paid[i], num, den), f"level {levels[i]} rate, scaled to cap",
                       paths[i], None) for i in range(len(paid))]

    def spec_rate(self, spec: RateSpec, order: OrderView, quantity: int | None = None) -> Fraction:
        """A spec as a fraction of the order's base (fixed amounts divided by the base)."""
        if isinstance(spec, Fraction):
            return spec
        if spec.currency != order.currency:
            raise CurrencyMismatch(f"fixed amount {spec} does not apply to an order in {order.currency}",
                                   record=order.id, field="currency")
        if order.base <= 0:
            return Fraction(0)
        amount = spec.minor * ((quantity if quantity is not None else order.items) if spec.per_item else 1)
        return min(Fraction(amount, order.base), Fraction(1))

    def resolve_rate(self, payee: str | None, level: int, order: OrderView,
                     default: Callable[[int], RateSpec]) -> tuple[Fraction, str]:
        """Rate of ``payee`` at rate tier ``level`` with precedence payee > promoter tier > product >
        category > default (override lists are read at ``level``; a single spec applies at every
        level).  A promoter tier with rates replaces the product and category rates too."""
        if payee is not None and payee in self.payee_rates:
            return self.spec_rate(_at_level(self.payee_rates[payee], level), order), "payee rate"
        if payee is not None and order.tiers is not None:
            tier = order.tiers(payee)
            if tier.rates is not None:
                return self.spec_rate(_at_level(tier.rates, level), order), f"tier {tier.name} rate"
        lines = order.event.lines
        if lines and (self.product_rates or self.category_rates) and order.base > 0 and order.line_bases:
            total = Fraction(0)
            rules = set()
            for sku, category, qty, base in order.line_bases:
                if sku in self.product_rates:
                    spec, rule = _at_level(self.product_rates[sku], level), "product rate"
                elif category is not None and category in self.category_rates:
                    spec, rule = _at_level(self.category_rates[category], level), "category rate"
                else:
                    spec, rule = default(level), "default rate"
                rules.add(rule)
                if isinstance(spec, Fixed):
                    total += self.spec_rate(spec, order, qty) * order.base
                else:
                    total += base * spec
            return min(total / order.base, Fraction(1)), "+".join(sorted(rules))
        return self.spec_rate(default(level), order), f"level {level} rate"

    def capped(self, awards: list[Award]) -> list[Award]:
        """Scale rates down proportionally when they exceed ``cap`` (and never above 100%).

        >>> p = PolicyConfig(kind="demo", cap="15%")
        >>> [(str(a.rate), a.rule) for a in p.capped([Award("amy", 1, Fraction(1, 10), "level 1 rate"),
        ...                                          Award("bob", 2, Fraction(1, 10), "level 2 rate")])]
        [('3/40', 'level 1 rate, scaled to cap'), ('3/40', 'level 2 rate, scaled to cap')]
        """
        if not awards:
            return awards
        scale = self._cap_scale([a.rate for a in awards])
        if scale is None:
            return awards
        num, den = scale
        return [_award(a.payee, a.level, _scaled(a.rate, num, den), f"{a.rule}, scaled to cap", a.path, a.pool)
                for a in awards]

    def _level_plan(self, rates: Sequence[RateSpec]) -> list[list[tuple[int, Fraction, str]]] | None:
        """For ``k`` = 0..len(rates) links: ``(level, rate, rule)`` of each award that
        ``capped(level_awards(...))`` makes when levels 1..k are all eligible and nothing is
        overridden (zero rates dropped, cap applied).  ``None`` when a spec is a fixed amount (its
        rate depends on the order).  Memoised on the instance, checked against ``rates`` and ``cap``
        on every call."""
        key = tuple(rates)
        cap = self.cap
        memo = self.__dict__.get("_cps_level_plan")
        if memo is not None and memo[0] == key and (memo[1] is cap or memo[1] == cap):
            plan: list[list[tuple[int, Fraction, str]]] | None = memo[2]
            return plan
        plan = None
        fractions = [spec for spec in key if isinstance(spec, Fraction)]
        if len(fractions) == len(key):
            plan = [[]]
            for k in range(1, len(key) + 1):
                paid = [(level, rate) for level, rate in enumerate(fractions[:k], start=1) if rate]
                scale = self._cap_scale([rate for _, rate in paid])
                if scale is None:
                    plan.append([(level, rate, f"level {level} rate") for level, rate in paid])
                else:
                    num, den = scale
                    plan.append([(level, _scaled(rate, num, den), f"level {level} rate, scaled to cap")
                                 for level, rate in paid])
        self.__dict__["_cps_level_plan"] = (key, cap, plan)
        return plan

    def _cap_scale(self, rates: Sequence[Fraction]) -> tuple[int, int] | None:
        """``None`` when the rates add up to at most the ceiling (``cap``, never above 1) or to 0, else
        the factor ``ceiling / total`` as ``(num, den)``, den > 0.  Exact integer arithmetic."""
        cap = self.cap
        if cap is None or cap.numerator >= cap.denominator:
            cn = cd = 1
        else:
            cn, cd = cap.numerator, cap.denominator
        tn, td = 0, 1  # total = tn / td, td > 0
        for rate in rates:
            n, d = rate.numerator, rate.denominator
            if d == td:
                tn += n
            else:
                tn, td = tn * d + n * td, td * d
        if tn * cd <= cn * td or tn == 0:
            return None
        return cn * td, cd * tn  # tn > 0 here (total > ceiling >= 0)


def _scaled(rate: Fraction, num: int, den: int) -> Fraction:
    """``rate * num / den``: the same normalised Fraction as ``rate * Fraction(num, den)``, built once."""
    return Fraction(rate.numerator * num, rate.denominator * den)


def from_validation(exc: ValidationError) -> CpsError:
    """The typed error for a pydantic ``ValidationError`` of a config (the original CpsError when a
    validator raised one, else :class:`InvalidPolicyConfig` naming the field)."""
    err = exc.errors()[0]
    original = (err.get("ctx") or {}).get("error")
    if isinstance(original, CpsError):
        loc = ".".join(str(p) for p in err["loc"]) or None
        if loc:  # the config field beats a parser's generic default (parse_rate says 'rate')
            original.field = loc
            original.args = (original._render(),)
        return original
    loc = ".".join(str(p) for p in err["loc"]) or None
    msg = err["msg"].removeprefix("Value error, ")
    return InvalidPolicyConfig(msg, field=loc)


def _at_level(specs: RateSpec | Sequence[RateSpec], level: int) -> RateSpec:
    if isinstance(specs, (Fraction, Fixed)):
        return specs
    return specs[level - 1] if level <= len(specs) else Fraction(0)


def check_specs(specs: Iterable[RateSpec], what: str) -> None:
    for spec in specs:
        if isinstance(spec, Fraction) and not 0 <= spec <= 1:
            raise InvalidPolicyConfig(f"{what} must be within [0, 1]", field=what)

