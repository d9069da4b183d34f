"""Pyramid-selling rules as named, cited data — the one place the code encodes them.

Each :class:`Rule` has an id (``CN-DEPTH``), its source and what a commission engine checks.  Each
:class:`Profile` is a set of limits that the ``compliant`` policy enforces when its config is built,
citing the rule that refuses a config.  :class:`Thresholds` holds the materiality thresholds of the
compliance report, each with the rule it serves and where its figure comes from
(:data:`THRESHOLDS`).  Reports built on these are an aid, not legal advice.

>>> PROFILES["cn"].max_levels, RULES["CN-DEPTH"].source.split(",")[0]
(2, 'WeChat platform rule (微信安全风控中心 2015–2016 announcements)')
>>> t = Thresholds.parse({"internal_fail": "30%"})
>>> t.internal_fail, t.internal_warn, THRESHOLDS["internal_fail"].rule
(Fraction(3, 10), Fraction(1, 10), 'US-INTERNAL')
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Final, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationError

from cps_engine.errors import CpsError, InvalidInput
from cps_engine.money import format_rate, parse_rate

__all__ = ["DISCLAIMER", "PROFILES", "RULES", "THRESHOLDS", "Profile", "Rule", "ThresholdInfo", "Thresholds"]

DISCLAIMER: Final = ("This report is an aid for reviewing a commission programme against published rules; "
                     "it is not legal advice.")


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    jurisdiction: str
    title: str
    source: str
    check: str
    #: the rule's own figure, where its source states one (thresholds: :class:`Thresholds`)
    limit: Fraction | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    """Limits a compliant policy must satisfy.  ``None`` means the profile sets no such limit."""

    name: str
    description: str
    max_levels: int
    max_total_rate: Fraction | None
    cap_required: bool
    self_purchase_rebate: bool
    rules: tuple[str, ...]


_RULES = (
    Rule("CN-FEE", "CN", "No entry fee (入门费)", "禁止传销条例 (2005) art. 7(2)",
         "no award derives from a bind or registration; entry purchases (declared SKUs, or found: recruits' "
         "first orders near their bind or first share, concentrated on one SKU and price) earn uplines nothing"),
    Rule("CN-HEADCOUNT", "CN", "No pay per recruit (拉人头)", "禁止传销条例 (2005) art. 7(1)",
         "awards derive only from orders (sales to buyers): payouts beyond commission, net of refunds "
         "that came after the payout, are pay not derived from an order; no promoter tier is reached by "
         "recruits, downline headcount or team sales"),
    Rule("CN-TEAM", "CN", "Team compensation (团队计酬)", "禁止传销条例 (2005) art. 7(3); 2013 joint opinion art. 5",
         "commission paid to a payee farther than the nearest payee of an order (on a downline's sale), "
         "as a share of commission; depth limited by CN-DEPTH"),
    Rule("CN-DEPTH", "CN", "At most two levels counting the distributor (二级分销)",
         "WeChat platform rule (微信安全风控中心 2015–2016 announcements), 2013 joint opinion (30 people / 3 levels)",
         "levels of paid hierarchy: payees the policy can pay per order, most payees paid on one order, "
         "and the binding distance from a payee to the buyer; unpaid re-sharers on a share path are customers, "
         "not levels"),
    Rule("CN-ORG", "CN", "Organisation of 30 or more participants in 3 or more levels",
         "最高法/最高检/公安部 opinion on 组织领导传销活动 cases (2013) art. 1",
         "the recruitment tree of participants (people who recruit or earn) by bind or re-share: its size and "
         "its levels counting the organiser; a prohibited act (CN-FEE, CN-HEADCOUNT, CN-DEPTH) on such a tree "
         "meets the criminal threshold"),
    Rule("CN-DIRECT", "CN", "Direct selling: own sales only, at most 30%", "直销管理条例 (2005) art. 24",
         "1 level, total rate ≤ 30% of the seller's own sales"),
    Rule("CN-RECRUIT-BONUS", "CN", "No recruit bounty or recruit-count rank", "禁止传销条例 (2005) art. 7(1)",
         "config keys for per-recruit bounties or rates rising with recruits are refused; payouts that no "
         "commission (nor a later refund) explains are reported"),
    Rule("CN-SELF", "CN", "Self-purchase earns uplines nothing", "禁止传销条例 (2005) art. 7(2) (disguised entry fee)",
         "commission to uplines on purchases by buyers who, at the order's time, had earned, recruited or held "
         "a distributor role; at most a disclosed self rebate at level 1"),
    Rule("US-RETAIL", "US", "Pay on retail sales, not recruiting",
         "FTC Business Guidance on MLMs (2018, rev. 2024); Koscot (1975)",
         "no recruitment-derived pay; share of commission from non-members' purchases (retail ratio; members "
         "from role events and from the history)"),
    Rule("US-INTERNAL", "US", "Internal consumption", "FTC v. Herbalife (2016) consent order: ≥ 80% to end users",
         "share of commission on purchases by insiders in hindsight: people who ever recruit, earn or hold a "
         "distributor role"),
    Rule("US-INVENTORY", "US", "Inventory loading", "FTC Business Guidance on MLMs (2018, rev. 2024): inventory "
         "loading and buy-backs; Amway (1979) 70% rule",
         "commission clawed back by refunds after the payee's last payout, on insiders' purchases, as a share of "
         "the commission paid out on them"),
    Rule("US-DOWNLINE", "US", "Income mostly from own sales", "FTC v. Vemma (2016)",
         "share of commission received by payees whose downline-derived income exceeds half of their income"),
    Rule("EU-INTRO", "EU", "Not derived primarily from introducing others",
         "Directive 2005/29/EC Annex I point 14; CJEU C-515/12 4finance (2014)",
         "recruitment-derived share of each payee's income below half, and no consideration for entry "
         "(commission on entry purchases)"),
)
RULES: Final[dict[str, Rule]] = {r.id: r for r in _RULES}

PROFILES: Final[dict[str, Profile]] = {
    "cn": Profile("cn", "China social distribution (二级分销): sharer plus one upline, capped total",
                  max_levels=2, max_total_rate=None, cap_required=True, self_purchase_rebate=True,
                  rules=("CN-FEE", "CN-HEADCOUNT", "CN-TEAM", "CN-DEPTH", "CN-RECRUIT-BONUS", "CN-SELF")),
    "cn_direct": Profile("cn_direct", "China licensed direct selling: own sales only, at most 30%",
                         max_levels=1, max_total_rate=Fraction(3, 10), cap_required=True,
                         self_purchase_rebate=False,
                         rules=("CN-FEE", "CN-HEADCOUNT", "CN-DIRECT", "CN-RECRUIT-BONUS", "CN-SELF")),
    "strict": Profile("strict", "Every rule at its strictest: one level, at most 30%, no self rebate",
                      max_levels=1, max_total_rate=Fraction(3, 10), cap_required=True, self_purchase_rebate=False,
                      rules=tuple(RULES)),
}


# ------------------------------------------------------------------------------------ thresholds
def _share(value: Any) -> Fraction:
    return parse_rate(value, field="threshold")


Share = Annotated[Fraction, BeforeValidator(_share), PlainSerializer(format_rate)]


@dataclass(frozen=True, slots=True)
class ThresholdInfo:
    """Where a threshold comes from: the rule it serves and its source (``library choice`` when the
    source states no figure and the value is a materiality convention)."""

    rule: str
    meaning: str
    source: str


#: One entry per :class:`Thresholds` field.
THRESHOLDS: Final[dict[str, ThresholdInfo]] = {
    "max_paid_levels": ThresholdInfo(
        "CN-DEPTH", "most payees paid on one order, and payees a policy may pay per order",
        "WeChat platform rule: two levels counting the distributor (二级分销)"),
    "max_binding_distance": ThresholdInfo(
        "CN-DEPTH", "largest binding distance from a payee up to the buyer (1: the buyer's direct upline)",
        "WeChat platform rule: two levels counting the distributor"),
    "org_people": ThresholdInfo(
        "CN-ORG", "participants in one recruitment tree", "2013 opinion art. 1: 30 people or more (以上 includes 30)"),
    "org_levels": ThresholdInfo(
        "CN-ORG", "levels of that tree, counting the organiser (A → B → C is 3)",
        "2013 opinion art. 1: 3 levels or more"),
    "team_warn": ThresholdInfo(
        "CN-TEAM", "commission paid beyond the nearest payee of an order (on a downline's sale)",
        "library choice: team pay that is most of the commission deserves review (art. 7(3) states no share)"),
    "direct_rate_warn": ThresholdInfo(
        "CN-DIRECT", "commission as a share of sales", "直销管理条例 art. 24: 30% of the seller's own sales"),
    "unexplained_fail": ThresholdInfo(
        "CN-HEADCOUNT", "payouts no commission nor later refund explains, as a share of all pay",
        "禁止传销条例 art. 7(1): any pay per recruit is the act; 0 tolerated"),
    "eu_intro_fail": ThresholdInfo(
        "EU-INTRO", "largest recruitment-derived share of one payee's income",
        "UCPD Annex I point 14: derived *primarily* from introducing others, read as half or more"),
    "internal_warn": ThresholdInfo(
        "US-INTERNAL", "commission on insiders' purchases (review above)",
        "library choice: half the consent order's 20% internal-consumption allowance"),
    "internal_fail": ThresholdInfo(
        "US-INTERNAL", "commission on insiders' purchases (fail above)",
        "FTC v. Herbalife (2016) consent order: at least 80% of sales to end users, so at most 20% internal"),
    "retail_min": ThresholdInfo(
        "US-RETAIL", "commission from non-members' purchases (fail below)",
        "FTC v. Herbalife (2016): 80% to end users; FTC MLM guidance (2018): pay driven by retail demand"),
    "self_warn": ThresholdInfo(
        "CN-SELF", "commission to uplines on participants' own purchases (review above)",
        "library choice: 5% materiality, the usual audit rule of thumb (ISA 320 practice); the regulation "
        "states no tolerance"),
    "self_fail": ThresholdInfo(
        "CN-SELF", "commission to uplines on participants' own purchases (fail above)",
        "library choice: twice the materiality; purchases by participants beyond it are a disguised entry fee "
        "(art. 7(2)) rather than incidental own use"),
    "entry_window_hours": ThresholdInfo(
        "CN-FEE", "a first order this close to the buyer's own bind, first share or sign-up is a joining purchase",
        "library choice: one day covers 'buy the pack at sign-up' (minutes) with margin"),
    "entry_concentration": ThresholdInfo(
        "CN-FEE", "share of recruiting buyers whose joining purchase is the same SKU at the same price",
        "library choice: a majority on one SKU and price is a package, not a shop's range"),
    "entry_min_orders": ThresholdInfo(
        "CN-FEE", "fewest joining purchases of one SKU and price that can make a package", "library choice"),
    "entry_generations": ThresholdInfo(
        "CN-FEE", "a package is passed down: a line of this many joiners, each brought in by the one before",
        "library choice after art. 7(3)'s recruits recruiting others; a shop's product bought by a customer and "
        "the friend they referred is 2"),
    "entry_fail": ThresholdInfo(
        "CN-FEE", "commission on a found (undeclared) entry package, as a share of commission (fail above)",
        "library choice: 5% materiality; commission on a declared entry SKU fails at any amount (art. 7(2))"),
    "clawback_warn": ThresholdInfo(
        "US-INVENTORY", "commission clawed back by refunds after payout on insiders' purchases (review above)",
        "library choice: 5% materiality"),
    "clawback_fail": ThresholdInfo(
        "US-INVENTORY", "the same (fail above)",
        "Amway (1979) 70% rule: stock bought to qualify and sent back is not a sale; above 30% of it returned "
        "the 70% is missed"),
    "downline_warn": ThresholdInfo(
        "US-DOWNLINE", "commission received by payees earning over half from their downline (review above)",
        "FTC v. Vemma (2016): most of a distributor's revenue from non-participants"),
}


def percent_text(x: Fraction) -> str:
    """``20%`` when a whole percentage, else the exact rate (``1/3``, ``0.005``).

    >>> percent_text(Fraction(1, 5)), percent_text(Fraction(1, 3))
    ('20%', '1/3')
    """
    return f"{x * 100}%" if (x * 100).denominator == 1 else format_rate(x)


class ThresholdSet(BaseModel):
    """A set of named thresholds a report is held to: validated by name from a mapping or from the
    CLI's ``NAME=VALUE`` options (the compliance and the abuse reports share this)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Self:
        """Validate a mapping; a bad value raises :class:`~cps_engine.errors.InvalidInput` naming the field."""
        unknown = sorted(set(data) - set(cls.model_fields))
        if unknown:
            raise InvalidInput(f"unknown threshold {unknown[0]!r} (known: {', '.join(cls.model_fields)})",
                               field=unknown[0])
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or None
            cause = (err.get("ctx") or {}).get("error")
            msg = cause.message if isinstance(cause, CpsError) else err["msg"].removeprefix("Value error, ")
            raise InvalidInput(msg, field=field) from None

    def replace(self, options: list[str]) -> Self:
        """These thresholds with ``name=value`` strings applied (the CLI's ``--threshold``)."""
        data: dict[str, Any] = self.model_dump()
        for opt in options:
            name, sep, value = opt.partition("=")
            if not sep:
                raise InvalidInput(f"--threshold {opt!r}: expected NAME=VALUE", field=name.strip() or None)
            data[name.strip()] = value.strip()  # counts are validated as ints, shares as exact rates
        return type(self).parse(data)


class Thresholds(ThresholdSet):
    """Materiality thresholds of the compliance report (shares are exact: ``"20%"``, ``"1/5"``).

    Load from a TOML or JSON file of ``name = value`` pairs (:meth:`load`) or from ``name=value``
    strings (:meth:`parse_options`); every field is documented in :data:`THRESHOLDS`.
    """

    max_paid_levels: int = Field(default=2, ge=1)
    max_binding_distance: int = Field(default=2, ge=1)
    org_people: int = Field(default=30, ge=1)
    org_levels: int = Field(default=3, ge=1)
    team_warn: Share = Fraction(1, 2)
    direct_rate_warn: Share = Fraction(3, 10)
    unexplained_fail: Share = Fraction(0)
    eu_intro_fail: Share = Fraction(1, 2)
    internal_warn: Share = Fraction(1, 10)
    internal_fail: Share = Fraction(1, 5)
    retail_min: Share = Fraction(4, 5)
    self_warn: Share = Fraction(1, 20)
    self_fail: Share = Fraction(1, 10)
    entry_window_hours: int = Field(default=24, ge=0)
    entry_concentration: Share = Fraction(1, 2)
    entry_min_orders: int = Field(default=5, ge=1)
    entry_generations: int = Field(default=3, ge=1)
    entry_fail: Share = Fraction(1, 20)
    clawback_warn: Share = Fraction(1, 20)
    clawback_fail: Share = Fraction(3, 10)
    downline_warn: Share = Fraction(1, 2)

    @classmethod
    def load(cls, path: str | Path) -> Thresholds:
        """From a TOML file, or JSON when the name ends in ``.json``."""
        p = Path(path)
        text = p.read_text(encoding="utf-8")
        try:
            data = json.loads(text) if p.suffix.lower() == ".json" else tomllib.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
            raise InvalidInput(f"{p}: not valid {'JSON' if p.suffix.lower() == '.json' else 'TOML'}: {exc}") \
                from None
        if not isinstance(data, dict):
            raise InvalidInput(f"{p}: expected a table of name = value")
        return cls.parse(data)

    def as_rows(self) -> list[dict[str, str]]:
        """Each threshold with its value (as text), rule, meaning and source, for the report."""
        out = []
        for name, info in THRESHOLDS.items():
            value = getattr(self, name)
            out.append({"name": name, "value": percent_text(value) if isinstance(value, Fraction) else str(value),
                        "rule": info.rule, "meaning": info.meaning, "source": info.source})
        return out
