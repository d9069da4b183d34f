"""Pyramid-selling rules as named, cited data — the one place the code encodes them.

Each :class:`Rule` has an id (``CN-DEPTH``), its source and what a commission engine checks.  Each
:class:`Profile` is a set of limits that the ``compliant`` policy enforces when its config is built,
citing the rule that refuses a config.  Reports built on these are an aid, not legal advice.

>>> PROFILES["cn"].max_levels, RULES["CN-DEPTH"].source.split(",")[0]
(2, 'WeChat platform rule (微信安全风控中心 2015–2016 announcements)')
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Final

__all__ = ["DISCLAIMER", "PROFILES", "RULES", "Profile", "Rule"]

DISCLAIMER: Final = ("This report is an aid for reviewing a commission programme against published rules; "
                     "it is not legal advice.")


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    jurisdiction: str
    title: str
    source: str
    check: str
    #: the threshold the check holds a measured share to, where the rule states one
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
         "no award derives from a bind or registration; orders flagged as entry purchases earn uplines nothing"),
    Rule("CN-HEADCOUNT", "CN", "No pay per recruit (拉人头)", "禁止传销条例 (2005) art. 7(1)",
         "awards derive only from orders (sales to buyers)"),
    Rule("CN-TEAM", "CN", "Team compensation (团队计酬)", "禁止传销条例 (2005) art. 7(3); 2013 joint opinion art. 5",
         "uplines paid on downline sales is limited by CN-DEPTH"),
    Rule("CN-DEPTH", "CN", "At most two levels counting the distributor (二级分销)",
         "WeChat platform rule (微信安全风控中心 2015–2016 announcements), 2013 joint opinion (30 people / 3 levels)",
         "configs with more than 2 levels are refused; the deepest level paid is reported"),
    Rule("CN-DIRECT", "CN", "Direct selling: own sales only, at most 30%", "直销管理条例 (2005) art. 24",
         "1 level, total rate ≤ 30% of the seller's own sales"),
    Rule("CN-RECRUIT-BONUS", "CN", "No recruit bounty or recruit-count rank", "禁止传销条例 (2005) art. 7(1)",
         "config keys for per-recruit bounties or rates rising with recruits are refused"),
    Rule("CN-SELF", "CN", "Self-purchase earns uplines nothing", "禁止传销条例 (2005) art. 7(2) (disguised entry fee)",
         "a participant's own purchase pays no upline; at most a disclosed self rebate at level 1"),
    Rule("US-RETAIL", "US", "Pay on retail sales, not recruiting",
         "FTC Business Guidance on MLMs (2018, rev. 2024); Koscot (1975)",
         "awards only from orders; recruitment-derived share must be 0"),
    Rule("US-INTERNAL", "US", "Internal consumption reported", "FTC v. Herbalife (2016): ≥ 80% to end users",
         "share of commissionable volume bought by payees; warn above 20%", Fraction(1, 5)),
    Rule("US-DOWNLINE", "US", "Income mostly from own sales", "FTC v. Vemma (2016)",
         "payees whose downline-derived income exceeds 50%", Fraction(1, 2)),
    Rule("EU-INTRO", "EU", "Not derived primarily from introducing others",
         "Directive 2005/29/EC Annex I point 14; CJEU C-515/12 4finance (2014)",
         "recruitment-derived income < 50% per payee (always 0 here), no entry consideration", Fraction(1, 2)),
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
