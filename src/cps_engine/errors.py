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

Hostile input never makes a hostile message: every message echoes at most :data:`MAX_ECHO`
characters of a bad value (:func:`shorten`, :func:`brief`), and :class:`CpsError` itself shortens the
record, the field and any over-long word of a message, so a 50 MB id gives a one-line error.

>>> print(InvalidEvent("too long", record="x" * 100_000, field="id"))  # doctest: +ELLIPSIS
record 'xxx...'… (100000 chars), field 'id': too long
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

__all__ = [
    "MAX_ECHO",
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
    "InvalidInput",
    "InvalidMoney",
    "InvalidPolicyConfig",
    "InvalidRate",
    "OutputError",
    "PolicyRegistrationError",
    "SelfReferralError",
    "UnknownCurrency",
    "UnknownReference",
    "ValueOutOfRange",
    "brief",
    "shorten",
]

#: most characters of a bad value an error message echoes (then ``… (N chars)``)
MAX_ECHO: Final = 80
#: a run of non-blank characters longer than this in a message is shortened to :data:`MAX_ECHO`
_MAX_WORD: Final = 200
#: a message longer than this keeps its head and tail around a ``… (N chars) …`` marker
_MAX_MESSAGE: Final = 2000
_LONG_WORD = re.compile(r"\S{" + str(_MAX_WORD + 1) + ",}")


def shorten(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` itself when it has at most ``limit`` characters, else its first ``limit`` and the length.

    >>> shorten("abc"), shorten("x" * 1000, 5)
    ('abc', 'xxxxx… (1000 chars)')
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} chars)"


def brief(value: object, limit: int = MAX_ECHO) -> str:
    """``repr(value)`` for a message, cut to about ``limit`` characters without ever building the
    repr of a huge string.

    >>> brief("ab"), brief("y" * 10**6, 3)
    ("'ab'", "'yyy'… (1000000 chars)")
    """
    if isinstance(value, str):
        return repr(value) if len(value) <= limit else f"{value[:limit]!r}… ({len(value)} chars)"
    if isinstance(value, (bytes, bytearray)) and len(value) > limit:
        return f"{bytes(value[:limit])!r}… ({len(value)} bytes)"
    return shorten(repr(value), limit)


def _clip(message: str) -> str:
    """The message with over-long words shortened and the whole bounded (see the module docs)."""
    if len(message) <= _MAX_WORD:
        return message
    message = _LONG_WORD.sub(lambda m: shorten(m.group()), message)
    if len(message) > _MAX_MESSAGE:
        n = len(message)
        message = f"{message[:_MAX_MESSAGE - 400]}… ({n} chars) …{message[-300:]}"
    return message


class CpsError(Exception):
    """Base class of every error cps_engine raises on purpose.

    ``record`` names the offending record (event id), ``field`` the field, ``line`` the 1-based
    line number in the source file when there is one.  The rendered message shortens each of them
    (:func:`shorten`): errors echo at most a short prefix of any value.
    """

    #: shorten the message itself (subclasses that list other, already short, errors turn it off)
    _clip_message: bool = True

    def __init__(
        self,
        message: str,
        *,
        record: str | None = None,
        field: str | None = None,
        line: int | None = None,
    ) -> None:
        self.message = _clip(message) if self._clip_message and isinstance(message, str) else message
        self.record = record
        self.field = field
        self.line = line
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.record is not None:
            where.append(f"record {brief(self.record)}")
        if self.field is not None:
            where.append(f"field {brief(self.field)}")
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

    _clip_message = False  # a list of errors, each already shortened

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


class InvalidInput(CpsError, ValueError):
    """An input file that cannot be read as the text or JSON it must be (not UTF-8, nested too
    deep, a duplicate key); the message names the file or line, and the byte offset when it has one."""


class ValueOutOfRange(CpsError, ValueError, OverflowError):
    """A time, day count or amount outside the range cps_engine supports (see :mod:`cps_engine.limits`);
    also an ``OverflowError`` so callers guarding date arithmetic catch it."""


class OutputError(CpsError, OSError):
    """An output (a file, or standard output) that cannot be written: full disk, closed pipe, no
    permission.  The message names the output."""
