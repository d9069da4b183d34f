"""Pure posting rules: which legs each event posts, payout rules, and line amounts on a net base.

Accounts (each leg is one signed amount on one account, in one currency):

- ``expense``: the merchant's commission expense (no payee);
- ``commission``: what the ledger owes a payee and has not paid out.  A commission leg carries
  ``effective`` (when it happened) and ``available`` (when its hold ends): as of a time ``T`` it is
  counted only if ``effective <= T``, and it is **pending** while ``T < available``, **available**
  after;
- ``paid``: what was paid out to the payee (net of fees); ``fee``: payout fees withheld.

Every posting balances per currency: an accrual is ``+x`` on the payee's ``commission`` against
``-x`` on ``expense``; a payout of ``A`` with fee ``F`` is ``-A`` commission, ``+(A-F)`` paid,
``+F`` fee.  So for each payee ``earned - reversed == pending + available + paid + fee``.

>>> rules = LedgerRules.of(hold_days=7, min_payout="10.00 CNY", payout_fee=["1%", "0.50 CNY"])
>>> rules.fee(10_000, "CNY"), rules.minimum("CNY"), rules.minimum("USD")
(150, 1000, 0)
>>> [(leg.account, leg.amount) for leg in payout_legs("bob", "CNY", 10_000, 150, 0)]
[('commission', -10000), ('paid', 9850), ('fee', 150)]
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from cps_engine.engine import settle
from cps_engine.errors import CpsError, FloatRejected, InvalidPolicyConfig
from cps_engine.limits import MAX_DAYS
from cps_engine.money import Money, Rounding, apply_rate, format_rate, parse_rate
from cps_engine.policies.base import Award, Fixed, parse_spec

__all__ = [
    "CAPPED",
    "DAY_US",
    "RETAINED",
    "LedgerRules",
    "Leg",
    "PayeeCaps",
    "awards_from_json",
    "awards_to_json",
    "caps_from_json",
    "line_amounts",
    "merchant_legs",
    "payout_legs",
]

DAY_US = 86_400_000_000
#: the memo account of the commission a payee cap withheld (its counter-leg: ``retained``, the merchant's)
CAPPED = "capped"
RETAINED = "retained"


@dataclass(frozen=True, slots=True)
class PayeeCaps:
    """Per-payee maximum commission, per currency: ``per_order`` (one payee's lines in one order) and
    ``per_period`` (one payee's commission on the orders dated in one period of ``period_days`` days,
    periods counted from 1970-01-01T00:00Z).  Minor units; a currency not listed is not capped.

    >>> caps = PayeeCaps.of({"per_order": "50.00 CNY",
    ...                      "per_period": {"days": 30, "max": ["500.00 CNY", "80 USD"]}})
    >>> caps.order_cap("CNY"), caps.period_cap("USD"), caps.period_cap("EUR"), caps.period_of(31 * DAY_US)
    (5000, 8000, None, (2592000000000, 5184000000000))
    >>> PayeeCaps.of({"per_order": 50.0})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cps_engine.errors.InvalidPolicyConfig: field 'payee_caps.per_order': 50.0 is a float; give ... "50.00 CNY"
    """

    per_order: tuple[tuple[str, int], ...] = ()
    period_days: int | None = None
    per_period: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(cls, value: Any) -> PayeeCaps:
        """From ``{"per_order": "50.00 CNY" | [...], "per_period": {"days": 30, "max": "500.00 CNY" | [...]}}``
        (either key optional); every problem a typed :class:`~cps_engine.errors.InvalidPolicyConfig`
        naming the field (``payee_caps.per_period.days``, ...)."""
        if isinstance(value, PayeeCaps):
            return value
        if not isinstance(value, Mapping):
            raise InvalidPolicyConfig("payee caps are a mapping with per_order and/or per_period",
                                      field="payee_caps")
        value = dict(value)
        unknown = sorted(set(value) - {"per_order", "per_period"})
        if unknown:
            raise InvalidPolicyConfig(f"unknown key {unknown[0]!r} (per_order, per_period)",
                                      field=f"payee_caps.{unknown[0]}")
        per_order = _caps_amounts(value.get("per_order"), "payee_caps.per_order")
        days: int | None = None
        per_period: tuple[tuple[str, int], ...] = ()
        period = value.get("per_period")
        if period is not None:
            if not isinstance(period, Mapping):
                raise InvalidPolicyConfig('give {"days": N, "max": "500.00 CNY"}', field="payee_caps.per_period")
            extra = sorted(set(period) - {"days", "max"})
            if extra:
                raise InvalidPolicyConfig(f"unknown key {extra[0]!r} (days, max)",
                                          field=f"payee_caps.per_period.{extra[0]}")
            days = period.get("days")
            if type(days) is not int or not 1 <= days <= MAX_DAYS:
                raise InvalidPolicyConfig(f"days must be an int within [1, {MAX_DAYS}]",
                                          field="payee_caps.per_period.days")
            per_period = _caps_amounts(period.get("max"), "payee_caps.per_period.max")
            if not per_period:
                raise InvalidPolicyConfig("a period cap needs a max", field="payee_caps.per_period.max")
        return cls(per_order, days, per_period)

    def __bool__(self) -> bool:
        return bool(self.per_order or self.per_period)

    def order_cap(self, currency: str) -> int | None:
        return dict(self.per_order).get(currency)

    def period_cap(self, currency: str) -> int | None:
        return dict(self.per_period).get(currency)

    def period_of(self, at_us: int) -> tuple[int, int]:
        """``[start, end)`` of the period holding ``at_us`` (µs)."""
        assert self.period_days is not None
        size = self.period_days * DAY_US
        start = (at_us // size) * size
        return start, start + size

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.per_order:
            out["per_order"] = [str(Money(m, c)) for c, m in self.per_order]
        if self.per_period:
            out["per_period"] = {"days": self.period_days, "max": [str(Money(m, c)) for c, m in self.per_period]}
        return out


def _caps_amounts(value: Any, field: str) -> tuple[tuple[str, int], ...]:
    out: dict[str, int] = {}
    items = [value] if not isinstance(value, (list, tuple)) and value is not None else _many(value)
    for item in items:
        if isinstance(item, float):
            raise InvalidPolicyConfig(f'{item!r} is a float; give an amount as text such as "50.00 CNY"', field=field)
        try:
            money = item if isinstance(item, Money) else Money.parse(item) if isinstance(item, str) else None
        except (CpsError, FloatRejected) as exc:
            raise InvalidPolicyConfig(getattr(exc, "message", str(exc)), field=field) from None
        if money is None:
            raise InvalidPolicyConfig(f'{str(item)[:40]!r} is not an amount such as "50.00 CNY"', field=field)
        if money.minor < 0:
            raise InvalidPolicyConfig("a cap must not be negative", field=field)
        if money.currency in out:
            raise InvalidPolicyConfig(f"{money.currency} is given twice", field=field)
        out[money.currency] = money.minor
    return tuple(sorted(out.items()))


@dataclass(frozen=True, slots=True)
class Leg:
    """One signed amount on one account (see the module docstring)."""

    kind: str
    account: str
    payee: str | None
    currency: str
    amount: int
    effective_us: int
    available_us: int | None = None
    order: str | None = None
    revision: int | None = None
    line: int | None = None
    level: int | None = None
    rate: str | None = None
    config_hash: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "account": self.account, "payee": self.payee, "currency": self.currency,
                "amount": self.amount, "effective_us": self.effective_us, "available_us": self.available_us,
                "order": self.order, "revision": self.revision, "line": self.line, "level": self.level,
                "rate": self.rate, "config_hash": self.config_hash}


@dataclass(frozen=True, slots=True)
class LedgerRules:
    """The ledger's own terms besides the policy: hold days, minimum payout, payout fee.

    ``min_payout`` and ``fee_fixed`` are minor units per currency; ``fee_rate`` a rate of the payout
    (rounded down).  The fee is ``round_down(amount × fee_rate) + fee_fixed[currency]``, at most the
    amount.
    """

    hold_days: int = 7
    min_payout: tuple[tuple[str, int], ...] = ()
    fee_rate: Fraction | None = None
    fee_fixed: tuple[tuple[str, int], ...] = ()
    #: per-payee caps (``None``: none); see :class:`PayeeCaps`
    caps: PayeeCaps | None = None

    @classmethod
    def of(cls, *, hold_days: int = 7, min_payout: str | Money | Iterable[str | Money] | None = None,
           payout_fee: str | Fraction | Money | Iterable[str | Fraction | Money] | None = None,
           payee_caps: PayeeCaps | Mapping[str, Any] | None = None) -> LedgerRules:
        """Build from friendly values: ``min_payout="10.00 CNY"``, ``payout_fee=["1%", "2.00 CNY"]``.

        >>> LedgerRules.of(hold_days=0, payout_fee="2%").fee_rate
        Fraction(1, 50)
        """
        if type(hold_days) is not int or not 0 <= hold_days <= MAX_DAYS:  # the limits' day bound
            raise InvalidPolicyConfig(f"hold_days must be an int within [0, {MAX_DAYS}]", field="hold_days")
        mins: dict[str, int] = {}
        for item in _many(min_payout):
            money = item if isinstance(item, Money) else Money.parse(str(item))
            if money.minor < 0:
                raise InvalidPolicyConfig("a minimum payout must not be negative", field="min_payout")
            mins[money.currency] = money.minor
        rate: Fraction | None = None
        fixed: dict[str, int] = {}
        for item in _many(payout_fee):
            if isinstance(item, Money):
                spec: Fraction | Fixed = Fixed(item.minor, item.currency)
            elif isinstance(item, Fraction):
                spec = parse_rate(item, field="payout_fee")
            else:
                spec = parse_spec(item)
            if isinstance(spec, Fixed):
                if spec.per_item or spec.minor < 0:
                    raise InvalidPolicyConfig("a fixed payout fee is a plain non-negative amount", field="payout_fee")
                fixed[spec.currency] = spec.minor
            else:
                rate = spec
        caps = PayeeCaps.of(payee_caps) if payee_caps is not None else None
        return cls(hold_days, tuple(sorted(mins.items())), rate, tuple(sorted(fixed.items())), caps or None)

    def minimum(self, currency: str) -> int:
        return dict(self.min_payout).get(currency, 0)

    def fee(self, amount: int, currency: str) -> int:
        fee = apply_rate(amount, self.fee_rate, Rounding.DOWN) if self.fee_rate else 0
        fee += dict(self.fee_fixed).get(currency, 0)
        return min(fee, amount)

    def to_json(self) -> str:
        data = {"hold_days": self.hold_days,
                "min_payout": [str(Money(m, c)) for c, m in self.min_payout],
                "payout_fee": ([format_rate(self.fee_rate)] if self.fee_rate is not None else [])
                + [str(Money(m, c)) for c, m in self.fee_fixed]}
        if self.caps:  # only when set: the settings of terms without caps keep their text
            data["payee_caps"] = self.caps.to_dict()
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> LedgerRules:
        data = json.loads(text)
        return cls.of(hold_days=data["hold_days"], min_payout=data["min_payout"], payout_fee=data["payout_fee"],
                      payee_caps=data.get("payee_caps"))


def _many(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, Money, Fraction)):
        return [value]
    return list(value)


def awards_to_json(awards: Sequence[Award], caps: Sequence[int | None] | None = None) -> str:
    """Canonical JSON of a rate snapshot (rates as exact ``p/q`` text); with ``caps``, each capped line's
    ceiling (minor units: what the payee caps left it, see :class:`PayeeCaps`) as ``cap``."""
    rows: list[dict[str, Any]] = [{"payee": a.payee, "level": a.level, "rate": str(a.rate), "rule": a.rule,
                                   "path": list(a.path), "pool": a.pool} for a in awards]
    for row, cap in zip(rows, caps or (), strict=False):
        if cap is not None:
            row["cap"] = cap
    return json.dumps(rows, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def caps_from_json(text: str) -> list[int | None]:
    """The ``cap`` of every line of a stored rate snapshot (``None``: not capped)."""
    return [d.get("cap") for d in json.loads(text)]


def awards_from_json(text: str) -> tuple[Award, ...]:
    return tuple(Award(d["payee"], d["level"], Fraction(d["rate"]), d["rule"], tuple(d["path"]), d["pool"])
                 for d in json.loads(text))


def line_amounts(order_id: str, currency: str, gross_base: int, refunded: int, awards: Sequence[Award],
                 policy: str, config_hash: str, rounding: Rounding) -> list[int]:
    """Minor units of every award (by index, zeros kept) on the net base ``gross_base - refunded``,
    exactly as :meth:`cps_engine.engine.Settlement.rebase` computes them.

    >>> a = [Award("bob", 1, Fraction(1, 10), "r"), Award("amy", 2, Fraction(1, 20), "r")]
    >>> line_amounts("o1", "CNY", 18999, 0, a, "p", "h", Rounding.DOWN)
    [1899, 949]
    >>> line_amounts("o1", "CNY", 18999, 18999, a, "p", "h", Rounding.DOWN)
    [0, 0]
    """
    base = max(0, gross_base - refunded)
    s = settle(order_id, currency, base, awards, policy, config_hash, rounding, gross_base=gross_base)
    out = [0] * len(awards)
    j = 0
    lines = s.lines
    for i, a in enumerate(awards):
        if j < len(lines) and (lines[j].payee, lines[j].level, lines[j].rate) == (a.payee, a.level, a.rate):
            out[i] = lines[j].amount.minor
            j += 1
    if j != len(lines):  # pragma: no cover - settle keeps award order
        raise AssertionError("settlement lines do not follow the awards")
    return out


def merchant_legs(legs: Sequence[Leg]) -> list[Leg]:
    """The merchant's ``expense`` legs balancing payee ``commission`` legs (payouts balance on their own),
    one per (kind, order, revision, currency, effective time)."""
    groups: dict[tuple[str, str, str | None, int | None, str, int], int] = {}
    for leg in legs:
        if (leg.account == "commission" and leg.kind != "payout") or leg.account == CAPPED:
            counter = "expense" if leg.account == "commission" else RETAINED
            k = (counter, leg.kind, leg.order, leg.revision, leg.currency, leg.effective_us)
            groups[k] = groups.get(k, 0) - leg.amount
    return [Leg(kind, account, None, cur, amount, eff, None, order, rev)
            for (account, kind, order, rev, cur, eff), amount in groups.items() if amount]


def payout_legs(payee: str, currency: str, amount: int, fee: int, at_us: int) -> list[Leg]:
    """``-amount`` from the payee's commission (available at ``at_us``), ``amount - fee`` paid, ``fee``."""
    return [Leg("payout", "commission", payee, currency, -amount, at_us, at_us),
            Leg("payout", "paid", payee, currency, amount - fee, at_us),
            Leg("payout", "fee", payee, currency, fee, at_us)]
