"""What every policy shares: rate specs, the order as a policy sees it, awards, and the config base.

A policy answers one question — *given this chain and this order, who gets what fraction of the
commissionable base?* — and returns :class:`Award` objects with exact ``Fraction`` rates.  It never
touches money rounding or storage: the engine turns awards into money.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, NamedTuple, TypeAlias

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationError, WithJsonSchema
from pydantic.json_schema import SkipJsonSchema

from cps_engine.errors import CpsError, CurrencyMismatch, InvalidPolicyConfig, InvalidRate
from cps_engine.money import Money, Rounding, format_rate, parse_rate

if TYPE_CHECKING:
    from cps_engine.graph.chains import Chain, Link
    from cps_engine.models import OrderEvent

__all__ = [
    "Award",
    "BaseConfig",
    "Fixed",
    "OrderView",
    "PolicyConfig",
    "Rate",
    "RateSpec",
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


class OrderView:
    """An order as a policy sees it: the commissionable ``base`` in minor units and its lines."""

    __slots__ = ("__dict__", "base", "event")

    def __init__(self, event: OrderEvent, base: int) -> None:
        self.event = event
        self.base = base

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
        base = order.amount_minor
        if not self.include_shipping:
            base -= order.shipping_minor
        if not self.include_tax:
            base -= order.tax_minor
        return base


class PolicyConfig(BaseModel):
    """Base of every policy config: ``kind`` plus the options all policies share.

    - ``distributors``: who may earn (``None``: everyone, 人人分销; a list: only those, 指定分销);
      people not allowed are skipped, and ``ineligible`` says whether the next person moves up a
      level (``compress``) or keeps their own (``keep_level``).
    - ``payee_rates`` > ``product_rates`` > ``category_rates`` > the policy's own rates: overrides,
      each a spec or a list of specs per level.
    - ``cap``: ceiling on the total rate of an order (rates scaled down proportionally above it).
    - ``self_purchase``: the buyer earns on their own order, as level 1 (自购返佣).
    - ``base``: what is commissionable; ``rounding``: the one rounding rule (default ``down``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True,
                              use_enum_values=False)

    kind: str
    name: str | None = None
    distributors: frozenset[str] | None = None
    ineligible: Literal["compress", "keep_level"] = "compress"
    payee_rates: dict[str, LevelSpecs] = Field(default_factory=dict)
    product_rates: dict[str, LevelSpecs] = Field(default_factory=dict)
    category_rates: dict[str, LevelSpecs] = Field(default_factory=dict)
    cap: Rate | None = None
    self_purchase: bool = False
    base: BaseConfig = Field(default_factory=BaseConfig)
    rounding: Rounding = Rounding.DOWN
    #: programmatic eligibility test (not serialised, not part of the config hash)
    eligible: SkipJsonSchema[Callable[[str], bool] | None] = Field(default=None, exclude=True)

    #: levels this policy can pay at most (None: unbounded); used by compliance reports
    max_levels: ClassVar[int | None] = None

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise from_validation(exc) from None

    # ---------------------------------------------------------------- identity
    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able data (rates as exact strings)."""
        data = self.model_dump(mode="json", exclude_none=True)
        if "distributors" in data:
            data["distributors"] = sorted(data["distributors"])
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
    def awards(self, chain: Chain, order: OrderView) -> list[Award]:  # pragma: no cover - abstract
        """Who gets what fraction of ``order.base``; implemented by each policy."""
        raise NotImplementedError

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
        level = 0
        path: list[str] = []
        filters = self._filters
        keep = self.ineligible == "keep_level"
        for link in chain.walk():
            path.append(link.via)
            if filters and not self.is_eligible(link.payee):
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
        for link, level, path in self.levels(chain, len(rates)):
            rate, rule = self.resolve_rate(link.payee, level, order, lambda lv: rates[lv - 1])
            if rate:
                out.append(Award(link.payee, level, rate, rule, path))
        return out

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
        """Rate of ``payee`` at rate tier ``level`` with precedence payee > product > category >
        default (override lists are read at ``level``; a single spec applies at every level)."""
        if payee is not None and payee in self.payee_rates:
            return self.spec_rate(_at_level(self.payee_rates[payee], level), order), "payee rate"
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
        """Scale rates down proportionally when they exceed ``cap`` (and never above 100%)."""
        total = sum((a.rate for a in awards), Fraction(0))
        ceiling = min(self.cap, Fraction(1)) if self.cap is not None else Fraction(1)
        if total <= ceiling or total == 0:
            return awards
        factor = ceiling / total
        return [Award(a.payee, a.level, a.rate * factor, f"{a.rule}, scaled to cap", a.path, a.pool)
                for a in awards]


def from_validation(exc: ValidationError) -> CpsError:
    """The typed error for a pydantic ``ValidationError`` of a config (the original CpsError when a
    validator raised one, else :class:`InvalidPolicyConfig` naming the field)."""
    err = exc.errors()[0]
    original = (err.get("ctx") or {}).get("error")
    if isinstance(original, CpsError):
        loc = ".".join(str(p) for p in err["loc"]) or None
        if original.field is None and loc:
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
