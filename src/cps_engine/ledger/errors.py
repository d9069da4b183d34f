"""Typed errors of the ledger (all :class:`~cps_engine.errors.CpsError`, naming record and field).

>>> raise InsufficientBalance("12.00 CNY available, 20.00 CNY requested", record="p1", field="amount")
Traceback (most recent call last):
...
cps_engine.ledger.errors.InsufficientBalance: record 'p1', field 'amount': 12.00 CNY available, 20.00 CNY requested
"""

from __future__ import annotations

from cps_engine.errors import CpsError

__all__ = ["BelowMinimumPayout", "InsufficientBalance", "LedgerIntegrityError", "PayeeHeld", "PayeeNotHeld",
           "PayoutRefused"]


class PayoutRefused(CpsError, ValueError):
    """A payout that cannot be made."""


class InsufficientBalance(PayoutRefused):
    """A payout larger than the payee's available balance at the payout's time."""


class BelowMinimumPayout(PayoutRefused):
    """A payout below the minimum payout threshold of its currency."""


class PayeeHeld(PayoutRefused):
    """A payout to a payee held at the payout's time (:meth:`Ledger.hold`): the message names the
    payee, since when and why; ``field`` is ``payee``."""


class PayeeNotHeld(CpsError, ValueError):
    """A release of a payee who is not held at the release's time."""


class LedgerIntegrityError(CpsError, RuntimeError):
    """The stored log does not verify: a broken hash chain, an unbalanced posting, a gap."""
