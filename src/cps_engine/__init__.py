"""cps_engine — exact distribution commissions (CPS) over share chains.

The flow of one order: events -> graph -> chain -> policy -> awards -> commission lines.

The public API is the names below (``__all__``); second-tier names live in their own module
(``cps_engine.ledger``, ``cps_engine.policies``, ``cps_engine.money``, …) and the 0.x top-level
spellings of them still resolve, with a :class:`DeprecationWarning` that says where they went.

Importing the package is light: the vocabulary (errors, money, events) loads at once, every other
name on first use (PEP 562), so ``from cps_engine import compute`` never loads SQLAlchemy, the
audit tools or pandas; ``from cps_engine import Ledger`` loads the ledger when it is asked for.

>>> from cps_engine import Money, load_events, ShareGraph, load_policy, compute
>>> Money.of("19.90", "CNY")
Money(minor=1990, currency='CNY')
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

from cps_engine._version import library_version

#: public name -> (module, attribute), imported on first use
_LAZY: dict[str, tuple[str, str]] = {
    "AbuseReport": ("cps_engine.audit", "AbuseReport"),
    "AccountLine": ("cps_engine.ledger", "AccountLine"),
    "AccountStatement": ("cps_engine.ledger", "AccountStatement"),
    "Balance": ("cps_engine.ledger", "Balance"),
    "BelowMinimumPayout": ("cps_engine.ledger", "BelowMinimumPayout"),
    "BindEvent": ("cps_engine.models", "BindEvent"),
    "BindingConfig": ("cps_engine.graph", "BindingConfig"),
    "BindingMode": ("cps_engine.graph", "BindingMode"),
    "CURRENCIES": ("cps_engine.money", "CURRENCIES"),
    "CappedMultilevel": ("cps_engine.policies", "CappedMultilevel"),
    "ColumnMap": ("cps_engine.audit", "ColumnMap"),
    "CommissionLine": ("cps_engine.engine", "CommissionLine"),
    "Comparison": ("cps_engine.whatif", "Comparison"),
    "ComplianceViolation": ("cps_engine.errors", "ComplianceViolation"),
    "Compliant": ("cps_engine.policies", "Compliant"),
    "CpsError": ("cps_engine.errors", "CpsError"),
    "CurrencyMismatch": ("cps_engine.errors", "CurrencyMismatch"),
    "CycleError": ("cps_engine.errors", "CycleError"),
    "DuplicateEvent": ("cps_engine.errors", "DuplicateEvent"),
    "Event": ("cps_engine.models", "Event"),
    "EventValidationError": ("cps_engine.errors", "EventValidationError"),
    "EventsLike": ("cps_engine.models", "EventsLike"),
    "FirstSharer": ("cps_engine.policies", "FirstSharer"),
    "FloatRejected": ("cps_engine.errors", "FloatRejected"),
    "GraphError": ("cps_engine.errors", "GraphError"),
    "IdempotencyConflict": ("cps_engine.errors", "IdempotencyConflict"),
    "InsufficientBalance": ("cps_engine.ledger", "InsufficientBalance"),
    "InvalidEvent": ("cps_engine.errors", "InvalidEvent"),
    "InvalidMoney": ("cps_engine.errors", "InvalidMoney"),
    "InvalidPolicyConfig": ("cps_engine.errors", "InvalidPolicyConfig"),
    "InvalidRate": ("cps_engine.errors", "InvalidRate"),
    "LastSharer": ("cps_engine.policies", "LastSharer"),
    "Ledger": ("cps_engine.ledger", "Ledger"),
    "LedgerIntegrityError": ("cps_engine.ledger", "LedgerIntegrityError"),
    "Linear": ("cps_engine.policies", "Linear"),
    "Money": ("cps_engine.money", "Money"),
    "OrderEvent": ("cps_engine.models", "OrderEvent"),
    "OrderLine": ("cps_engine.models", "OrderLine"),
    "PayoutEvent": ("cps_engine.models", "PayoutEvent"),
    "PayoutLine": ("cps_engine.audit", "StatementLine"),
    "PayoutRefused": ("cps_engine.ledger", "PayoutRefused"),
    "PayoutStatement": ("cps_engine.audit", "Statement"),
    "PolicyConfig": ("cps_engine.policies", "PolicyConfig"),
    "PolicyLike": ("cps_engine.policies.registry", "PolicyLike"),
    "PolicyRegistrationError": ("cps_engine.errors", "PolicyRegistrationError"),
    "PolicyTraits": ("cps_engine.policies.traits", "PolicyTraits"),
    "PositionBased": ("cps_engine.policies", "PositionBased"),
    "RecordSummary": ("cps_engine.ledger", "RecordSummary"),
    "RefundEvent": ("cps_engine.models", "RefundEvent"),
    "RoleEvent": ("cps_engine.models", "RoleEvent"),
    "Rounding": ("cps_engine.money", "Rounding"),
    "SelfReferralError": ("cps_engine.errors", "SelfReferralError"),
    "Settlement": ("cps_engine.engine", "Settlement"),
    "ShareEvent": ("cps_engine.models", "ShareEvent"),
    "ShareGraph": ("cps_engine.graph", "ShareGraph"),
    "TimeDecay": ("cps_engine.policies", "TimeDecay"),
    "UnknownCurrency": ("cps_engine.errors", "UnknownCurrency"),
    "UnknownReference": ("cps_engine.errors", "UnknownReference"),
    "abuse_report": ("cps_engine.audit", "abuse_report"),
    "build_statement": ("cps_engine.audit", "build_statement"),
    "cascade": ("cps_engine.simulate", "cascade"),
    "check_integrity": ("cps_engine.audit", "check_integrity"),
    "compare": ("cps_engine.whatif", "compare"),
    "compliance_report": ("cps_engine.audit", "compliance_report"),
    "compute": ("cps_engine.engine", "compute"),
    "compute_batch": ("cps_engine.batch", "compute_batch"),
    "compute_events": ("cps_engine.engine", "compute_events"),
    "dump_events": ("cps_engine.models", "dump_events"),
    "dump_policy": ("cps_engine.policies", "dump_policy"),
    "explain_order": ("cps_engine.audit", "explain_order"),
    "iter_events": ("cps_engine.models", "iter_events"),
    "launch": ("cps_engine.simulate", "launch"),
    "load_events": ("cps_engine.models", "load_events"),
    "load_policy": ("cps_engine.policies", "load_policy"),
    "parse_event": ("cps_engine.models", "parse_event"),
    "policy_kinds": ("cps_engine.policies", "policy_kinds"),
    "policy_schema": ("cps_engine.policies", "policy_schema"),
    "read_statement": ("cps_engine.audit", "read_statement"),
    "register": ("cps_engine.policies", "register"),
    "statement_from_ledger": ("cps_engine.audit", "statement_from_ledger"),
    "validate_events": ("cps_engine.models", "validate_events"),
    "verify_statement": ("cps_engine.audit", "verify_statement"),
}

#: 0.x top-level names -> (module, attribute, where to find it now): still resolved, with a warning
_DEPRECATED: dict[str, tuple[str, str, str]] = {
    "AbuseFinding": ("cps_engine.audit", "AbuseFinding", "import it from cps_engine.audit"),
    "AbuseThresholds": ("cps_engine.audit", "AbuseThresholds", "import it from cps_engine.audit"),
    "Award": ("cps_engine.policies", "Award", "import it from cps_engine.policies"),
    "BaseConfig": ("cps_engine.policies", "BaseConfig", "import it from cps_engine.policies"),
    "BindingRecord": ("cps_engine.graph", "BindingRecord", "import it from cps_engine.graph"),
    "Cascade": ("cps_engine.simulate", "Cascade", "import it from cps_engine.simulate"),
    "Chain": ("cps_engine.graph", "Chain", "import it from cps_engine.graph"),
    "ChainHead": ("cps_engine.ledger", "ChainHead", "import it from cps_engine.ledger"),
    "Entry": ("cps_engine.ledger", "Entry", "import it from cps_engine.ledger"),
    "Launch": ("cps_engine.simulate", "Launch", "import it from cps_engine.simulate"),
    "LedgerRules": ("cps_engine.ledger", "LedgerRules", "import it from cps_engine.ledger"),
    "LedgerStatement": ("cps_engine.ledger", "Statement", "it is cps_engine.AccountStatement now"),
    "LedgerStatementLine": ("cps_engine.ledger", "StatementLine", "it is cps_engine.AccountLine now"),
    "Link": ("cps_engine.graph", "Link", "import it from cps_engine.graph"),
    "OrderView": ("cps_engine.policies", "OrderView", "import it from cps_engine.policies"),
    "Outcome": ("cps_engine.ledger", "Outcome", "import it from cps_engine.ledger"),
    "PROFILES": ("cps_engine.rules", "PROFILES", "import it from cps_engine.rules"),
    "ParkedEvent": ("cps_engine.ledger", "ParkedEvent", "import it from cps_engine.ledger"),
    "Provenance": ("cps_engine.engine", "Provenance", "import it from cps_engine.engine"),
    "RULES": ("cps_engine.rules", "RULES", "import it from cps_engine.rules"),
    "Recorded": ("cps_engine.ledger", "Recorded", "import it from cps_engine.ledger"),
    "Statement": ("cps_engine.audit", "Statement", "it is cps_engine.PayoutStatement now"),
    "StatementLine": ("cps_engine.audit", "StatementLine", "it is cps_engine.PayoutLine now"),
    "TermsVersion": ("cps_engine.ledger", "TermsVersion", "import it from cps_engine.ledger"),
    "Verification": ("cps_engine.ledger", "Verification", "import it from cps_engine.ledger"),
    "apply_rate": ("cps_engine.money", "apply_rate", "import it from cps_engine.money"),
    "build_ledger_statement": ("cps_engine.ledger", "build_statement", "use Ledger.statement(payee, start, end)"),
    "format_rate": ("cps_engine.money", "format_rate", "import it from cps_engine.money"),
    "gini": ("cps_engine.whatif", "gini", "import it from cps_engine.whatif"),
    "net_base": ("cps_engine.engine", "net_base", "import it from cps_engine.engine"),
    "parse_rate": ("cps_engine.money", "parse_rate", "import it from cps_engine.money"),
    "refunds_by_order": ("cps_engine.engine", "refunds_by_order", "import it from cps_engine.engine"),
    "settle": ("cps_engine.engine", "settle", "import it from cps_engine.engine"),
    "sqlite_engine": ("cps_engine.ledger", "sqlite_engine", "import it from cps_engine.ledger"),
}

if TYPE_CHECKING:  # the same names, for type checkers and IDEs
    from cps_engine.audit import (
        AbuseReport,
        ColumnMap,
        abuse_report,
        build_statement,
        check_integrity,
        compliance_report,
        explain_order,
        read_statement,
        statement_from_ledger,
        verify_statement,
    )
    from cps_engine.audit import Statement as PayoutStatement
    from cps_engine.audit import StatementLine as PayoutLine
    from cps_engine.batch import compute_batch
    from cps_engine.engine import CommissionLine, Settlement, compute, compute_events
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
    from cps_engine.graph import BindingConfig, BindingMode, ShareGraph
    from cps_engine.ledger import (
        AccountLine,
        AccountStatement,
        Balance,
        BelowMinimumPayout,
        InsufficientBalance,
        Ledger,
        LedgerIntegrityError,
        PayoutRefused,
        RecordSummary,
    )
    from cps_engine.models import (
        BindEvent,
        Event,
        EventsLike,
        OrderEvent,
        OrderLine,
        PayoutEvent,
        RefundEvent,
        RoleEvent,
        ShareEvent,
        dump_events,
        iter_events,
        load_events,
        parse_event,
        validate_events,
    )
    from cps_engine.money import CURRENCIES, Money, Rounding
    from cps_engine.policies import (
        CappedMultilevel,
        Compliant,
        FirstSharer,
        LastSharer,
        Linear,
        PolicyConfig,
        PositionBased,
        TimeDecay,
        dump_policy,
        load_policy,
        policy_kinds,
        policy_schema,
        register,
    )
    from cps_engine.policies.registry import PolicyLike
    from cps_engine.policies.traits import PolicyTraits
    from cps_engine.simulate import cascade, launch
    from cps_engine.whatif import Comparison, compare

__version__ = library_version()


def __getattr__(name: str) -> Any:
    """Import a public name on first use and keep it (PEP 562); a 0.x name warns where it went."""
    target = _LAZY.get(name)
    if target is None:
        old = _DEPRECATED.get(name)
        if old is None:
            raise AttributeError(f"module 'cps_engine' has no attribute {name!r}")
        warnings.warn(f"cps_engine.{name} is deprecated: {old[2]}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(old[0]), old[1])
    value = getattr(importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "CURRENCIES",
    "AbuseReport",
    "AccountLine",
    "AccountStatement",
    "Balance",
    "BelowMinimumPayout",
    "BindEvent",
    "BindingConfig",
    "BindingMode",
    "CappedMultilevel",
    "ColumnMap",
    "CommissionLine",
    "Comparison",
    "ComplianceViolation",
    "Compliant",
    "CpsError",
    "CurrencyMismatch",
    "CycleError",
    "DuplicateEvent",
    "Event",
    "EventValidationError",
    "EventsLike",
    "FirstSharer",
    "FloatRejected",
    "GraphError",
    "IdempotencyConflict",
    "InsufficientBalance",
    "InvalidEvent",
    "InvalidMoney",
    "InvalidPolicyConfig",
    "InvalidRate",
    "LastSharer",
    "Ledger",
    "LedgerIntegrityError",
    "Linear",
    "Money",
    "OrderEvent",
    "OrderLine",
    "PayoutEvent",
    "PayoutLine",
    "PayoutRefused",
    "PayoutStatement",
    "PolicyConfig",
    "PolicyLike",
    "PolicyRegistrationError",
    "PolicyTraits",
    "PositionBased",
    "RecordSummary",
    "RefundEvent",
    "RoleEvent",
    "Rounding",
    "SelfReferralError",
    "Settlement",
    "ShareEvent",
    "ShareGraph",
    "TimeDecay",
    "UnknownCurrency",
    "UnknownReference",
    "__version__",
    "abuse_report",
    "build_statement",
    "cascade",
    "check_integrity",
    "compare",
    "compliance_report",
    "compute",
    "compute_batch",
    "compute_events",
    "dump_events",
    "dump_policy",
    "explain_order",
    "iter_events",
    "launch",
    "load_events",
    "load_policy",
    "parse_event",
    "policy_kinds",
    "policy_schema",
    "read_statement",
    "register",
    "statement_from_ledger",
    "validate_events",
    "verify_statement",
]
