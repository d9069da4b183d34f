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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from cps_engine.engine import settle
from cps_engine.errors import InvalidPolicyConfig
from cps_engine.limits import MAX_DAYS
from cps_engine.money import Money, Rounding, apply_rate, format_rate, parse_rate
from cps_engine.policies.base import Award, Fixed, parse_spec

__all__ = [
    "DAY_US",
    "LedgerRules",
    "Leg",
    "awards_from_json",
    "awards_to_json",
    "line_amounts",
    "merchant_legs",
    "payout_legs",
]

DAY_US = 86_400_000_000


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

    @classmethod
    def of(cls, *, hold_days: int = 7, min_payout: str | Money | Iterable[str | Money] | None = None,
           payout_fee: str | Fraction | Money | Iterable[str | Fraction | Money] | None = None) -> LedgerRules:
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
        return cls(hold_days, tuple(sorted(mins.items())), rate, tuple(sorted(fixed.items())))

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
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> LedgerRules:
        data = json.loads(text)
        return cls.of(hold_days=data["hold_days"], min_payout=data["min_payout"], payout_fee=data["payout_fee"])


def _many(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, Money, Fraction)):
        return [value]
    return list(value)


def awards_to_json(awards: Sequence[Award]) -> str:
    """Canonical JSON of a rate snapshot (rates as exact ``p/q`` text)."""
    return json.dumps([{"payee": a.payee, "level": a.level, "rate": str(a.rate), "rule": a.rule,
                        "path": list(a.path), "pool": a.pool} for a in awards],
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))


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
    groups: dict[tuple[str, str | None, int | None, str, int], int] = {}
    for leg in legs:
        if leg.account == "commission" and leg.kind != "payout":
            k = (leg.kind, leg.order, leg.revision, leg.currency, leg.effective_us)
            groups[k] = groups.get(k, 0) - leg.amount
    return [Leg(kind, "expense", None, cur, amount, eff, None, order, rev)
            for (kind, order, rev, cur, eff), amount in groups.items() if amount]


def payout_legs(payee: str, currency: str, amount: int, fee: int, at_us: int) -> list[Leg]:
    """``-amount`` from the payee's commission (available at ``at_us``), ``amount - fee`` paid, ``fee``."""
    return [Leg("payout", "commission", payee, currency, -amount, at_us, at_us),
            Leg("payout", "paid", payee, currency, amount - fee, at_us),
            Leg("payout", "fee", payee, currency, fee, at_us)]
