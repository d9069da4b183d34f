"""Attribution policies: one module per policy, plus the registry.

>>> sorted(policy_kinds())
['capped_multilevel', 'compliant', 'first_sharer', 'last_sharer', 'linear', 'position_based', 'time_decay']
"""

from cps_engine.policies.base import Award, BaseConfig, Fixed, OrderView, PolicyConfig, parse_spec
from cps_engine.policies.capped_multilevel import CappedMultilevel
from cps_engine.policies.compliant import Compliant
from cps_engine.policies.first_sharer import FirstSharer
from cps_engine.policies.last_sharer import LastSharer
from cps_engine.policies.linear import Linear
from cps_engine.policies.pool import PoolPolicy
from cps_engine.policies.position_based import PositionBased
from cps_engine.policies.registry import (
    ENTRY_POINT_GROUP,
    dump_policy,
    load_policy,
    policy_kinds,
    policy_schema,
    register,
)
from cps_engine.policies.time_decay import TimeDecay

Policy = PolicyConfig

__all__ = [
    "ENTRY_POINT_GROUP",
    "Award",
    "BaseConfig",
    "CappedMultilevel",
    "Compliant",
    "FirstSharer",
    "Fixed",
    "LastSharer",
    "Linear",
    "OrderView",
    "Policy",
    "PolicyConfig",
    "PoolPolicy",
    "PositionBased",
    "TimeDecay",
    "dump_policy",
    "load_policy",
    "parse_spec",
    "policy_kinds",
    "policy_schema",
    "register",
]
