"""``compliant``: the anti-pyramid policy — pay only on real sales, limited depth, capped totals.

Limits come from a named profile in :mod:`cps_engine.rules` (``cn``, ``cn_direct``, ``strict``) and
are checked when the config is built: a config over a limit is refused with
:class:`~cps_engine.errors.ComplianceViolation` citing the rule.  At award time:

- an order containing an ``entry_skus`` item earns nobody anything (CN-FEE);
- a participant's own purchase earns their uplines nothing (CN-SELF); the buyer may receive a
  disclosed ``self_purchase_rate`` at level 1 where the profile allows it;
- awards only ever derive from orders — nothing is paid for a bind or registration (CN-HEADCOUNT).

>>> Compliant(profile="cn", rates=["10%", "5%", "2%"], cap="15%")
Traceback (most recent call last):
...
cps_engine.errors.ComplianceViolation: field 'rates': [CN-DEPTH] profile 'cn' allows at most 2 levels, the config has 3
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from cps_engine.errors import ComplianceViolation
from cps_engine.policies.base import PolicyConfig, Rate, Spec
from cps_engine.policies.plan import Gate, Plan
from cps_engine.rules import PROFILES, Profile

__all__ = ["Compliant"]

#: config keys that would pay for recruiting rather than selling (seen in shipping shop systems)
_RECRUITMENT_KEYS = ("recruit_bonus", "per_recruit", "signup_bonus", "referral_bonus", "bind_bonus",
                     "rank_by_recruits", "recruit_tiers", "team_size_rates", "headcount_bonus", "entry_fee")


class Compliant(PolicyConfig):
    """Multi-level rates limited by a compliance ``profile``; ``cap`` is required."""

    kind: Literal["compliant"] = "compliant"
    profile: Literal["cn", "cn_direct", "strict"] = "cn"
    rates: list[Spec] = Field(min_length=1, max_length=100)
    self_purchase_rate: Rate | None = None
    entry_skus: frozenset[str] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _no_recruitment_pay(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in _RECRUITMENT_KEYS:
                if key in data:
                    raise ComplianceViolation(f"{key!r} pays for recruiting, not for sales",
                                              rule="CN-RECRUIT-BONUS" if key != "entry_fee" else "CN-FEE",
                                              field=key)
        return data

    @model_validator(mode="after")
    def _within_profile(self) -> Compliant:
        prof = self.profile_limits
        if len(self.rates) > prof.max_levels:
            raise ComplianceViolation(
                f"profile {prof.name!r} allows at most {prof.max_levels} level"
                f"{'s' if prof.max_levels > 1 else ''}, the config has {len(self.rates)}",
                rule="CN-DEPTH" if prof.max_levels > 1 else "CN-DIRECT", field="rates")
        if prof.cap_required and self.cap is None:
            raise ComplianceViolation(f"profile {prof.name!r} requires a total cap", rule="CN-DEPTH"
                                      if prof.max_total_rate is None else "CN-DIRECT", field="cap")
        if prof.max_total_rate is not None and self.cap is not None and self.cap > prof.max_total_rate:
            raise ComplianceViolation(f"cap {self.cap} exceeds {prof.max_total_rate} allowed by profile "
                                      f"{prof.name!r}", rule="CN-DIRECT", field="cap")
        if self.self_purchase:
            raise ComplianceViolation("self-purchase cannot earn upline-style commissions; use "
                                      "self_purchase_rate for a disclosed rebate", rule="CN-SELF",
                                      field="self_purchase")
        if self.self_purchase_rate is not None:
            if not prof.self_purchase_rebate:
                raise ComplianceViolation(f"profile {prof.name!r} allows no self-purchase rebate",
                                          rule="CN-SELF", field="self_purchase_rate")
            if self.cap is not None and self.self_purchase_rate > self.cap:
                raise ComplianceViolation("the self-purchase rebate exceeds the cap", rule="CN-SELF",
                                          field="self_purchase_rate")
        return self

    @property
    def profile_limits(self) -> Profile:
        return PROFILES[self.profile]

    @property
    def max_depth(self) -> int:
        return len(self.rates)

    def plan(self) -> Plan:
        return Plan(self, "levels", tuple(self.rates), len(self.rates),
                    gate=Gate(self.entry_skus, self.self_purchase_rate))
