"""cps_engine — exact distribution commissions (CPS) over share chains.

The flow of one order: events -> graph -> chain -> policy -> awards -> commission lines.

>>> from cps_engine import Money, load_events, ShareGraph, load_policy, compute
>>> Money.of("19.90", "CNY")
Money(minor=1990, currency='CNY')
"""

from importlib.metadata import PackageNotFoundError, version

from cps_engine.engine import (
    CommissionLine,
    Provenance,
    Settlement,
    compute,
    compute_events,
    net_base,
    refunds_by_order,
    settle,
)
from cps_engine.errors import (
    ComplianceViolation,
    CpsError,
    CurrencyMismatch,
    CycleError,
    DuplicateEvent,
    EventValidationError,
    FloatRejected,
    GraphError,
    IdempotencyConflict,
    InvalidEvent,
    InvalidMoney,
    InvalidPolicyConfig,
    InvalidRate,
    PolicyRegistrationError,
    SelfReferralError,
    UnknownCurrency,
    UnknownReference,
)
from cps_engine.graph import BindingConfig, BindingMode, BindingRecord, Chain, Link, ShareGraph
from cps_engine.models import (
    BindEvent,
    Event,
    OrderEvent,
    OrderLine,
    PayoutEvent,
    RefundEvent,
    ShareEvent,
    dump_events,
    iter_events,
    load_events,
    parse_event,
    validate_events,
)
from cps_engine.money import CURRENCIES, Money, Rounding, apply_rate, format_rate, parse_rate
from cps_engine.policies import (
    Award,
    BaseConfig,
    CappedMultilevel,
    Compliant,
    FirstSharer,
    LastSharer,
    Linear,
    OrderView,
    PolicyConfig,
    PositionBased,
    TimeDecay,
    dump_policy,
    load_policy,
    policy_kinds,
    policy_schema,
    register,
)
from cps_engine.rules import PROFILES, RULES

try:
    __version__ = version("cps-engine")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "CURRENCIES",
    "PROFILES",
    "RULES",
    "Award",
    "BaseConfig",
    "BindEvent",
    "BindingConfig",
    "BindingMode",
    "BindingRecord",
    "CappedMultilevel",
    "Chain",
    "CommissionLine",
    "ComplianceViolation",
    "Compliant",
    "CpsError",
    "CurrencyMismatch",
    "CycleError",
    "DuplicateEvent",
    "Event",
    "EventValidationError",
    "FirstSharer",
    "FloatRejected",
    "GraphError",
    "IdempotencyConflict",
    "InvalidEvent",
    "InvalidMoney",
    "InvalidPolicyConfig",
    "InvalidRate",
    "LastSharer",
    "Linear",
    "Link",
    "Money",
    "OrderEvent",
    "OrderLine",
    "OrderView",
    "PayoutEvent",
    "PolicyConfig",
    "PolicyRegistrationError",
    "PositionBased",
    "Provenance",
    "RefundEvent",
    "Rounding",
    "SelfReferralError",
    "Settlement",
    "ShareEvent",
    "ShareGraph",
    "TimeDecay",
    "UnknownCurrency",
    "UnknownReference",
    "__version__",
    "apply_rate",
    "compute",
    "compute_events",
    "dump_events",
    "dump_policy",
    "format_rate",
    "iter_events",
    "load_events",
    "load_policy",
    "net_base",
    "parse_event",
    "parse_rate",
    "policy_kinds",
    "policy_schema",
    "refunds_by_order",
    "register",
    "settle",
    "validate_events",
]
