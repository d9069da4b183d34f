"""The one error hierarchy of cps_engine.

Every error raised for bad *data* is a :class:`CpsError`; each subclass also inherits the matching
built-in exception so callers that only know ``ValueError``/``KeyError``/``TypeError`` still catch
it.  Errors about one record carry ``record`` (the event id or line) and ``field`` so a message
always says *which* input was wrong.

>>> try:
...     raise InvalidEvent("must not be negative", record="o1", field="amount", line=3)
... except ValueError as exc:
...     print(exc)
line 3, record 'o1', field 'amount': must not be negative
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ComplianceViolation",
    "CpsError",
    "CurrencyMismatch",
    "CycleError",
    "DuplicateEvent",
    "EventValidationError",
    "FloatRejected",
    "GraphError",
    "IdempotencyConflict",
    "InvalidEvent",
    "InvalidMoney",
    "InvalidPolicyConfig",
    "InvalidRate",
    "PolicyRegistrationError",
    "SelfReferralError",
    "UnknownCurrency",
    "UnknownReference",
]


class CpsError(Exception):
    """Base class of every error cps_engine raises on purpose.

    ``record`` names the offending record (event id), ``field`` the field, ``line`` the 1-based
    line number in the source file when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        record: str | None = None,
        field: str | None = None,
        line: int | None = None,
    ) -> None:
        self.message = message
        self.record = record
        self.field = field
        self.line = line
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.record is not None:
            where.append(f"record {self.record!r}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message

    def located(self, *, record: str | None = None, line: int | None = None) -> CpsError:
        """Return the same error with record/line filled in where they were unknown."""
        if record is not None and self.record is None:
            self.record = record
        if line is not None and self.line is None:
            self.line = line
        self.args = (self._render(),)
        return self


class InvalidMoney(CpsError, ValueError):
    """An amount that cannot be represented exactly in its currency."""


class FloatRejected(InvalidMoney, TypeError):
    """A float was given where money or a rate must be exact."""


class UnknownCurrency(InvalidMoney):
    """A currency code that is not in the ISO-4217 table cps_engine knows."""


class CurrencyMismatch(CpsError, ValueError):
    """Arithmetic or comparison across two currencies."""


class InvalidRate(CpsError, ValueError):
    """A rate that is not an exact number in [0, 1]."""


class InvalidEvent(CpsError, ValueError):
    """One event record is malformed (wrong type, missing or bad field)."""


class EventValidationError(CpsError, ValueError):
    """Validating a whole file found one or more bad records; ``errors`` lists every one."""

    def __init__(self, errors: Sequence[CpsError]) -> None:
        self.errors: list[CpsError] = list(errors)
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"{len(self.errors)} bad record(s):\n{lines}")


class DuplicateEvent(CpsError, ValueError):
    """Two different records carry the same event id."""


class GraphError(CpsError, ValueError):
    """A share or binding event that cannot be placed in the graph."""


class CycleError(GraphError):
    """A share or bind that would close a cycle."""


class SelfReferralError(GraphError):
    """A share re-shared from itself, or a user bound to themselves."""


class UnknownReference(GraphError, KeyError):
    """A record names a share, order or user that does not exist."""

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return self._render()


class InvalidPolicyConfig(CpsError, ValueError):
    """A policy configuration that cannot be built (bad keys, rates, or limits)."""


class ComplianceViolation(InvalidPolicyConfig):
    """A policy configuration refused by a compliance profile; ``rule`` names the rule."""

    def __init__(self, message: str, *, rule: str, field: str | None = None) -> None:
        self.rule = rule
        super().__init__(f"[{rule}] {message}", field=field)


class PolicyRegistrationError(CpsError, TypeError):
    """A third-party policy that does not satisfy the policy protocol."""


class IdempotencyConflict(CpsError, ValueError):
    """An event id seen before arrives again with a different payload."""
