"""The planner: what to post for one event, decided from the state it reads through a small store
interface (:class:`Store`), never from SQL.  It holds no state of its own: the share graph and the
terms come from the ledger that owns it, and every write goes through the store's unit of work
(buffered rows, flushed at commit).

The rules it applies (see :mod:`cps_engine.ledger` for the lifecycle): an order posts its accrual on
the gross base with the rate snapshot taken at its time; a refund recomputes the lines on the new net
base and posts the difference; a late share, bind or refund restates the order's life so the result
equals delivery in time order; parked events are released when what they wait for is applied.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cps_engine.engine import CommissionLine, compute
from cps_engine.errors import (
    CpsError,
    IdempotencyConflict,
    InvalidEvent,
    UnknownReference,
    ValueOutOfRange,
)
from cps_engine.graph import to_micros
from cps_engine.ledger.errors import BelowMinimumPayout, InsufficientBalance, PayeeHeld, PayeeNotHeld
from cps_engine.ledger.graphs import LedgerGraph, Missing, Refused
from cps_engine.ledger.hashing import iso_us, payload_and_hash
from cps_engine.ledger.holds import HOLD_ACCOUNT, HOLD_CURRENCY, HoldEvent, LedgerEvent, ReleaseEvent, held_since
from cps_engine.ledger.postings import (
    CAPPED,
    DAY_US,
    LedgerRules,
    Leg,
    awards_to_json,
    line_amounts,
    payout_legs,
)
from cps_engine.ledger.types import Outcome, Recorded, TermsVersion
from cps_engine.models import (
    BindEvent,
    OrderEvent,
    PayoutEvent,
    RefundEvent,
    RoleEvent,
    ShareEvent,
)
from cps_engine.money import Money, Rounding, parse_amount
from cps_engine.policies.base import Award

__all__ = ["Planner", "Store", "resolve_refunds"]


@dataclass(frozen=True, slots=True)
class _Park:
    waits_for: str | None
    reason: str
    error: type[CpsError]
    field: str | None = None

    @property
    def status(self) -> str:
        return "parked" if self.waits_for is not None else "rejected"


@dataclass(slots=True)
class _OrderState:
    order_id: str
    origin_seq: int  # the order event's seq
    revision: int
    event_seq: int
    buyer: str
    at_us: int
    currency: str
    amount_minor: int
    gross_base: int
    terms_version: int
    config_hash: str
    policy_label: str
    rounding: Rounding
    available_us: int
    awards: tuple[Award, ...]
    awards_json: str
    refunds: list[tuple[int, str, int, bool]]  # (at_us, refund id, minor, amount-less), canonical order
    posted: list[int]
    #: per line, the most the payee caps leave it (``None``: not capped); empty: the order is not capped
    caps: list[int | None] = field(default_factory=list)
    #: per line, the capped excess posted (account ``capped``)
    excess: list[int] = field(default_factory=list)

    @property
    def refunded(self) -> int:
        return sum(r[2] for r in self.refunds)

    def resolve(self) -> None:
        """Re-resolve every amount-less refund to what was left *at its time* (posting rules 2)."""
        self.refunds = resolve_refunds(self.refunds, self.amount_minor)

    def amounts(self, refunded: int) -> list[int]:
        return line_amounts(self.order_id, self.currency, self.gross_base, refunded, self.awards,
                            self.policy_label, self.config_hash, self.rounding)

    def capped(self, amounts: list[int]) -> list[int]:
        """The line amounts the payee caps leave: ``min(amount, cap)`` per capped line."""
        if not self.caps:
            return amounts
        return [a if c is None else min(a, c) for a, c in zip(amounts, self.caps, strict=True)]

    def row(self) -> dict[str, Any]:
        return {"order_id": self.order_id, "revision": self.revision, "event_seq": self.event_seq,
                "origin_seq": self.origin_seq, "buyer": self.buyer, "at_us": self.at_us, "currency": self.currency,
                "amount_minor": self.amount_minor, "gross_base": self.gross_base,
                "terms_version": self.terms_version, "config_hash": self.config_hash,
                "policy_label": self.policy_label, "rounding": self.rounding.value,
                "available_us": self.available_us, "awards": self.awards_json}


def resolve_refunds(refunds: Sequence[tuple[int, str, int, bool]], paid: int) -> list[tuple[int, str, int, bool]]:
    """Refunds in (time, id) order with each amount-less one resolved to what is left *at its time*:
    ``paid`` less the refunds dated before it, and less the partial refunds dated after it (already
    applied, they are never undone), never below zero.

    >>> resolve_refunds([(1, "a", 0, True), (0, "b", 30, False)], 100)
    [(0, 'b', 30, False), (1, 'a', 70, True)]
    """
    items = sorted(refunds)
    later = sum(minor for _, _, minor, full in items if not full)
    out: list[tuple[int, str, int, bool]] = []
    done = 0
    for at, rid, minor, full in items:
        if full:
            minor = max(0, paid - done - later)
        else:
            later -= minor
        out.append((at, rid, minor, full))
        done += minor
    return out


@dataclass(frozen=True, slots=True)
class _OrderPlan:
    terms: TermsVersion
    awards: tuple[Award, ...]
    base: int
    amounts: list[int]  # per award on the gross base
    lines: tuple[CommissionLine, ...]  # the engine's lines, with provenance


_Plan = _Park | _OrderPlan | tuple[_OrderState, int] | int | None


class Store(Protocol):
    """What the planner reads and writes: one write transaction of the SQL store
    (:class:`cps_engine.ledger.store.UnitOfWork`)."""

    cache_touched: bool
    parked_live: int
    legs: list[Leg]
    capped: list[Leg]
    event_seq: int
    latest_event: int | None

    def lookup(self, key: tuple[str, str]) -> tuple[int, str] | None: ...
    def insert_event(self, ev: LedgerEvent, h: str, payload: str | None = None) -> int: ...
    def event_at(self, seq: int) -> LedgerEvent: ...
    def order_event(self, seq: int) -> OrderEvent: ...
    def post(self, event_seq: int, ev: LedgerEvent, legs: Sequence[Leg]) -> None: ...
    def hold_markers(self, payee: str) -> list[tuple[str, int]]: ...
    def insert_order(self, st: _OrderState) -> None: ...
    def insert_refund(self, seq: int, ev: RefundEvent, at: int, minor: int) -> None: ...
    def order_state(self, order_id: str) -> _OrderState | None: ...
    def revision_legs(self, st: _OrderState) -> list[tuple[Any, ...]]: ...
    def period_commission(self, payee: str, currency: str, start: int, end: int, order_id: str) -> int: ...
    def payout_funds(self, payee: str, currency: str, at: int) -> int: ...
    def orders_from(self, at: int, buyer: str | None) -> list[str]: ...
    def park(self, seq: int, ev: LedgerEvent, plan: _Park) -> None: ...
    def unpark(self, seq: int, live: bool) -> None: ...
    def parked_waiting(self, keys: Sequence[str]) -> list[tuple[int, str]]: ...


class Planner:
    """Decides and posts what each event means, given the ledger's graph and terms."""

    def __init__(self, graph: Callable[[], LedgerGraph], terms_at: Callable[[int], TermsVersion],
                 fault: Callable[[str], None]) -> None:
        self._graph_of = graph
        self.terms_at = terms_at
        self.fault = fault
        #: the first event sequence number recorded under posting rules 2 (see :mod:`cps_engine.ledger.verify`)
        self.postings_from = 1
        #: refuse an event dated more than this after the latest event (None: no limit)
        self.horizon_us: int | None = None
        self._v2 = True

    @property
    def graph(self) -> LedgerGraph:
        return self._graph_of()

    def record_one(self, tx: Store, ev: LedgerEvent, strict: bool) -> Recorded:
        payload, h = payload_and_hash(ev)
        seen = tx.lookup(ev.key)
        if seen is not None:
            if seen[1] == h:
                return Recorded(ev.type, ev.id, Outcome.DUPLICATE)
            raise IdempotencyConflict(f"{ev.type} {ev.id!r} was recorded before with a different payload",
                                      record=ev.id, field="id")
        self.check_horizon(ev, tx.latest_event)
        self._v2 = tx.event_seq + 1 >= self.postings_from
        plan = self._plan(tx, ev)
        if isinstance(plan, _Park) and strict:
            raise plan.error(plan.reason, record=ev.id, field=plan.field)
        seq = tx.insert_event(ev, h, payload)
        self.fault("event")
        if isinstance(plan, _Park):
            tx.park(seq, ev, plan)
            if isinstance(ev, ShareEvent) and plan.waits_for is None:  # its waiting re-shares are refused too
                self.graph.refuse_share(ev, plan.reason)
                tx.cache_touched = True
                released = self._cascade(tx, [f"share:{ev.id}"])
                return Recorded(ev.type, ev.id, Outcome.REJECTED, plan.reason, tuple(released))
            if isinstance(ev, ShareEvent):  # parked behind its parent: another writer may release it
                self.graph.wait_for_parent(ev)
                tx.cache_touched = True
            return Recorded(ev.type, ev.id, Outcome.PARKED if plan.waits_for else Outcome.REJECTED, plan.reason)
        mark, mark_capped = len(tx.legs), len(tx.capped)
        keys = self._apply(tx, seq, ev, plan)
        released = self._cascade(tx, keys)
        lines = plan.lines if isinstance(plan, _OrderPlan) else ()
        return Recorded(ev.type, ev.id, Outcome.APPLIED, None, tuple(released), lines, tuple(tx.legs[mark:]),
                        tuple(tx.capped[mark_capped:]))

    def check_horizon(self, ev: LedgerEvent, latest: int | None) -> None:
        """Refuse (typed, nothing stored) an event dated beyond the horizon after the latest event: a
        typo such as 2062 would otherwise become the ledger's "latest event", and new terms could only
        take effect after it."""
        if self.horizon_us is None or latest is None:
            return
        at = to_micros(ev.at)
        if at > latest + self.horizon_us:
            raise ValueOutOfRange(f"dated {iso_us(at)}, more than {self.horizon_us // DAY_US} days after the latest "
                                  f"event recorded ({iso_us(latest)}): refused as a probable typo (open the "
                                  "ledger with a larger horizon_days, or None, to record it)", record=ev.id, field="at")

    # ------------------------------------------------------------------ planning (no writes)
    def _plan(self, tx: Store, ev: LedgerEvent) -> _Plan:
        if isinstance(ev, HoldEvent):  # a hold always applies (holding a held payee adds its reason)
            return None
        if isinstance(ev, ReleaseEvent):
            at = to_micros(ev.at)
            if held_since(tx.hold_markers(ev.payee), at) is None:
                return _Park(None, f"payee {ev.payee!r} is not held at {iso_us(at)}: nothing to release",
                             PayeeNotHeld, "payee")
            return None
        if isinstance(ev, ShareEvent):
            share = self.graph.check_share(ev)
            if isinstance(share, Missing):
                return _Park(share.waits_for, share.reason, UnknownReference, "parent")
            if isinstance(share, Refused):
                return _Park(None, share.reason, share.error, share.field)
            return None
        if isinstance(ev, BindEvent):  # the graph decides by applying it (undone with the graph on rollback)
            tx.cache_touched = True
            refused = self.graph.add_bind(ev)
            if refused is not None:
                return _Park(None, refused.reason, refused.error, refused.field)
            return None
        if isinstance(ev, OrderEvent):
            return self._plan_order(ev)
        if isinstance(ev, RefundEvent):
            return self._plan_refund(tx, ev)
        if isinstance(ev, PayoutEvent):
            return self._plan_payout(tx, ev)
        return None

    def _plan_order(self, ev: OrderEvent) -> _Park | _OrderPlan:
        terms = self.terms_at(to_micros(ev.at))
        policy = terms.policy
        chain = self.graph.chain_for(ev, self_purchase=policy.self_purchase)
        if isinstance(chain, Missing):
            return _Park(chain.waits_for, chain.reason, UnknownReference, "share")
        if isinstance(chain, Refused):
            return _Park(None, chain.reason, chain.error, chain.field)
        try:
            settlement = compute(ev, policy, chain=chain)
        except CpsError as exc:
            return _Park(None, str(exc), type(exc), exc.field)
        amounts = [0] * len(settlement.awards)
        lines = settlement.lines
        j = 0
        for i, a in enumerate(settlement.awards):  # lines follow the awards, zero amounts left out
            if j < len(lines) and (lines[j].payee, lines[j].level, lines[j].rate) == (a.payee, a.level, a.rate):
                amounts[i] = lines[j].amount.minor
                j += 1
        return _OrderPlan(terms, settlement.awards, settlement.gross_base, amounts, settlement.lines)

    def _order_state(self, tx: Store, order_id: str) -> _OrderState | None:
        st = tx.order_state(order_id)
        if st is not None and self._v2 and any(full for *_, full in st.refunds):
            st.resolve()
        return st

    def _plan_refund(self, tx: Store, ev: RefundEvent) -> _Park | tuple[_OrderState, int]:
        st = self._order_state(tx, ev.order)
        if st is None:
            return _Park(f"order:{ev.order}", f"order {ev.order!r} has not been applied yet", UnknownReference, "order")
        try:
            amount = ev.amount_minor(st.currency)
        except CpsError as exc:
            return _Park(None, exc.message, InvalidEvent, exc.field)
        if self._v2:
            return self._plan_refund_v2(ev, st, amount)
        minor = st.amount_minor - st.refunded if amount is None else amount  # no amount: all that is left
        if minor <= 0:
            return _Park(None, f"order {ev.order!r} is already fully refunded", InvalidEvent, "amount")
        if st.refunded + minor > st.amount_minor:
            paid = Money(st.amount_minor, st.currency)
            return _Park(None, f"refunds of order {ev.order!r} would exceed the {paid} paid "
                               f"({Money(st.refunded, st.currency)} refunded before)", InvalidEvent, "amount")
        return (st, minor)

    def _plan_refund_v2(self, ev: RefundEvent, st: _OrderState, amount: int | None) -> _Park | tuple[_OrderState, int]:
        """The refund as in time order: an amount-less one refunds what is left at its time, and the
        amount-less refunds dated after a late one shrink to what it leaves (:func:`resolve_refunds`)."""
        entry = (to_micros(ev.at), ev.id, 0 if amount is None else amount, amount is None)
        items = resolve_refunds([*st.refunds, entry], st.amount_minor)
        minor = next(m for at, rid, m, _ in items if (at, rid) == entry[:2])
        if minor <= 0:
            return _Park(None, f"order {ev.order!r} is already fully refunded", InvalidEvent, "amount")
        before = sum(m for at, rid, m, _ in resolve_refunds(st.refunds, st.amount_minor) if (at, rid) < entry[:2])
        if (amount is not None and before + amount > st.amount_minor) \
                or sum(m for _, _, m, full in items if not full) > st.amount_minor:
            paid = Money(st.amount_minor, st.currency)
            return _Park(None, f"refunds of order {ev.order!r} would exceed the {paid} paid "
                               f"({Money(st.refunded, st.currency)} refunded before)", InvalidEvent, "amount")
        return (st, minor)

    def _plan_payout(self, tx: Store, ev: PayoutEvent) -> _Park | int:
        at = to_micros(ev.at)
        rules = self.terms_at(at).rules
        since = held_since(tx.hold_markers(ev.payee), at)
        if since is not None:
            return _Park(None, f"payee {ev.payee!r} is held since {iso_us(since)}: no payout to them until they "
                               "are released", PayeeHeld, "payee")
        minor = parse_amount(ev.amount, ev.currency)
        low = rules.minimum(ev.currency)
        if minor < low:
            return _Park(None, f"{Money(minor, ev.currency)} is below the minimum payout {Money(low, ev.currency)}",
                         BelowMinimumPayout, "amount")
        available = tx.payout_funds(ev.payee, ev.currency, at)
        if available < minor:
            return _Park(f"funds:{ev.currency}:{ev.payee}",
                         f"{Money(available, ev.currency)} available to {ev.payee!r} at {ev.at.isoformat()}, "
                         f"{Money(minor, ev.currency)} requested", InsufficientBalance, "amount")
        return rules.fee(minor, ev.currency)

    # ------------------------------------------------------------------ applying
    def _apply(self, tx: Store, seq: int, ev: LedgerEvent, plan: _Plan) -> list[str]:
        if isinstance(ev, (HoldEvent, ReleaseEvent)):  # one marker entry on the chain, no money
            tx.post(seq, ev, [Leg(ev.type, HOLD_ACCOUNT, ev.payee, HOLD_CURRENCY, 0, to_micros(ev.at))])
            return []
        if isinstance(ev, ShareEvent):
            self.graph.add_share(ev)
            tx.cache_touched = True
            return [f"share:{ev.id}", *self._recompute_after(tx, seq, ev, to_micros(ev.at), ev.sharer)]
        if isinstance(ev, BindEvent):  # already in the graph (planning applied it)
            return self._recompute_after(tx, seq, ev, to_micros(ev.at), None)
        if isinstance(ev, OrderEvent):
            assert isinstance(plan, _OrderPlan)
            return self._apply_order(tx, seq, ev, plan)
        if isinstance(ev, RefundEvent):
            assert isinstance(plan, tuple)
            return self._apply_refund(tx, seq, ev, plan[0], plan[1])
        if isinstance(ev, RoleEvent):  # kept for the compliance report; posts nothing
            return []
        assert isinstance(ev, PayoutEvent) and isinstance(plan, int)
        minor = parse_amount(ev.amount, ev.currency)
        tx.post(seq, ev, payout_legs(ev.payee, ev.currency, minor, plan, to_micros(ev.at)))
        return []

    def _apply_order(self, tx: Store, seq: int, ev: OrderEvent, plan: _OrderPlan) -> list[str]:
        at = to_micros(ev.at)
        terms = plan.terms
        policy = terms.policy
        caps = self._caps_for(tx, ev.id, ev.currency, at, plan.awards, plan.amounts, terms.rules)
        st = _OrderState(ev.id, seq, 0, seq, ev.buyer, at, ev.currency, ev.amount_minor, plan.base, terms.version,
                         policy.config_hash, policy.label, policy.rounding, at + terms.rules.hold_days * DAY_US,
                         plan.awards, awards_to_json(plan.awards, caps), [], [0] * len(plan.awards), caps,
                         [0] * len(plan.awards))
        tx.insert_order(st)
        legs = self._timeline(st, plan.amounts)
        tx.post(seq, ev, legs)
        for leg in legs:
            if leg.line is not None:
                (st.posted if leg.account == "commission" else st.excess)[leg.line] += leg.amount
        return [f"order:{ev.id}", *sorted({f"funds:{ev.currency}:{leg.payee}" for leg in legs
                                           if leg.account == "commission" and leg.amount > 0})]

    def _timeline(self, st: _OrderState, gross: list[int] | None = None) -> list[Leg]:
        """Commission legs of the order's whole life so far: accrual on the gross base at the order's
        time, then one step per refund in (time, id) order.  ``gross``: the amounts on the gross base
        when already known."""
        legs: list[Leg] = []
        prev = [0] * len(st.awards)
        prev_paid = prev
        refunded = 0
        steps: list[tuple[str, int, int]] = [("accrual", st.at_us, 0)]
        steps += [("refund", max(at, st.at_us), minor) for at, _, minor, _ in st.refunds]
        for kind, eff, minor in steps:
            refunded += minor
            now = gross if gross is not None and refunded == 0 else st.amounts(refunded)
            paid = st.capped(now)
            for i, (a, old, new) in enumerate(zip(st.awards, prev_paid, paid, strict=True)):
                if new != old:
                    legs.append(self._leg(st, kind, i, a, new - old, eff))
                if st.caps:  # what the caps withheld, beside the commission (see PayeeCaps)
                    excess = (now[i] - new) - (prev[i] - old)
                    if excess:
                        legs.append(self._leg(st, kind, i, a, excess, eff, CAPPED))
            prev, prev_paid = now, paid
        return legs

    def _leg(self, st: _OrderState, kind: str, line: int, a: Award, amount: int, eff: int,
             account: str = "commission") -> Leg:
        return Leg(kind, account, a.payee, st.currency, amount, eff, st.available_us, st.order_id,
                   st.revision, line, a.level, str(a.rate), st.config_hash)

    def _caps_for(self, tx: Store, order_id: str, currency: str, at: int, awards: Sequence[Award],
                  gross: Sequence[int], rules: LedgerRules) -> list[int | None]:
        """Each line's ceiling under the payee caps of ``rules`` (empty: none apply): in line order, the
        line's amount on the gross base, at most what the per-order cap leaves the payee in this order
        and what the per-period cap leaves them after their commission on the other orders of the period
        (as recorded so far: a refund frees room for later orders, never for earlier ones)."""
        caps = rules.caps
        if not caps:
            return []
        per_order = caps.order_cap(currency)
        per_period = caps.period_cap(currency) if caps.period_days else None
        if per_order is None and per_period is None:
            return []
        used: dict[str, int] = {}
        room: dict[str, int] = {}
        out: list[int | None] = []
        for a, amount in zip(awards, gross, strict=True):
            allow = amount
            if per_order is not None:
                allow = min(allow, per_order - used.get(a.payee, 0))
            if per_period is not None:
                if a.payee not in room:
                    start, end = caps.period_of(at)
                    room[a.payee] = per_period - tx.period_commission(a.payee, currency, start, end, order_id)
                allow = min(allow, room[a.payee])
                room[a.payee] -= max(0, allow)
            allow = max(0, allow)
            used[a.payee] = used.get(a.payee, 0) + allow
            out.append(allow)
        return out

    def _apply_refund(self, tx: Store, seq: int, ev: RefundEvent, st: _OrderState, minor: int) -> list[str]:
        at = to_micros(ev.at)
        tx.insert_refund(seq, ev, at, minor)
        entry = (at, ev.id, minor, ev.amount is None)
        late = bool(st.refunds) and entry < st.refunds[-1]
        if late:  # an earlier refund arrived after later ones: restate the order's life in order
            bisect.insort(st.refunds, entry)
            if self._v2:
                st.resolve()
            return self._restate(tx, seq, ev, st, st.awards, st.awards_json, st.caps)
        st.refunds.append(entry)
        now = st.amounts(st.refunded)
        paid = st.capped(now)
        eff = max(at, st.at_us)
        legs = []
        for i, (a, old, new) in enumerate(zip(st.awards, st.posted, paid, strict=True)):
            if new != old:
                legs.append(self._leg(st, "refund", i, a, new - old, eff))
            if st.caps and now[i] - new != st.excess[i]:  # the capped excess reverses with it
                legs.append(self._leg(st, "refund", i, a, now[i] - new - st.excess[i], eff, CAPPED))
        tx.post(seq, ev, legs)
        st.posted = paid
        if st.caps:
            st.excess = [n - p for n, p in zip(now, paid, strict=True)]
        return sorted({f"funds:{st.currency}:{leg.payee}" for leg in legs if leg.amount > 0})

    def _restate(self, tx: Store, seq: int, ev: LedgerEvent, st: _OrderState, awards: tuple[Award, ...],
                 awards_json: str, caps: list[int | None]) -> list[str]:
        """Make the order's positions what in-order delivery would have posted: a new revision (the new
        rate snapshot) whose timeline -- accrual, then each refund in time order -- replaces the old.

        Posting rules 2 post only the difference between the positions already posted (every revision,
        netted per payee, line, level, rate, config hash, effective time and hold end) and the new
        timeline's: a late refund costs the few legs it changes, not the order's whole life again
        (rules 1 reversed every leg and posted the whole timeline each time)."""
        old = tx.revision_legs(st)
        prev_revision = st.revision
        st.revision += 1
        st.awards, st.awards_json, st.caps = awards, awards_json, caps
        st.event_seq = seq
        tx.insert_order(st)
        new = self._timeline(st)
        if not self._v2:
            legs = [Leg("correction", acc, payee, st.currency, -amount, eff, avail, st.order_id,
                        prev_revision, line, level, rate, chash)
                    for payee, line, level, rate, chash, eff, avail, acc, amount in old if amount]
            tx.post(seq, ev, legs + new)
        else:
            # positions per account: the commission, then (capped orders) the capped excess
            have = {(eff, line, payee, level, rate, chash, avail, acc): amount
                    for payee, line, level, rate, chash, eff, avail, acc, amount in old if amount}
            want: dict[tuple[Any, ...], list[Any]] = {}
            for leg in new:
                k = (leg.effective_us, leg.line, leg.payee, leg.level, leg.rate, leg.config_hash, leg.available_us,
                     leg.account)
                slot = want.setdefault(k, [0, leg.kind])
                slot[0] += leg.amount
            posted = []
            for k in sorted(set(have) | set(want), key=lambda k: (k[0], k[1], k[2], k[3], str(k[4]), str(k[5]), k[6],
                                                                   k[7] != "commission")):
                target, kind = want.get(k, [0, "correction"])
                delta = target - have.get(k, 0)
                if delta:
                    eff, line, payee, level, rate, chash, avail, acc = k
                    posted.append(Leg(kind if k not in have else "correction", acc, payee, st.currency,
                                      delta, eff, avail, st.order_id, st.revision, line, level, rate, chash))
            tx.post(seq, ev, posted)
        st.posted = [0] * len(awards)
        st.excess = [0] * len(awards)
        for leg in new:
            assert leg.line is not None
            (st.posted if leg.account == "commission" else st.excess)[leg.line] += leg.amount
        return sorted({f"funds:{st.currency}:{leg.payee}" for leg in new if leg.amount > 0
                       and leg.account == "commission"})

    def _recompute_after(self, tx: Store, seq: int, ev: LedgerEvent, at_us: int, buyer: str | None) -> list[str]:
        """A share or bind dated at or before applied orders arrived: recompute those orders' chains;
        restate the ones whose awards changed.  Returns the keys the new commissions satisfy."""
        keys: list[str] = []
        for order_id in tx.orders_from(at_us, buyer):
            st = self._order_state(tx, order_id)
            assert st is not None
            order = tx.order_event(st.origin_seq)
            plan = self._plan_order(order)
            if not isinstance(plan, _OrderPlan):  # pragma: no cover - an applied order's share stays known
                continue
            js = awards_to_json(plan.awards)
            if js != (awards_to_json(st.awards) if st.caps else st.awards_json):
                caps = self._caps_for(tx, st.order_id, st.currency, st.at_us, plan.awards, plan.amounts,
                                      self.terms_at(st.at_us).rules)
                keys += self._restate(tx, seq, ev, st, plan.awards, awards_to_json(plan.awards, caps), caps)
        return keys

    def _cascade(self, tx: Store, keys: list[str]) -> list[tuple[str, str]]:
        released: list[tuple[str, str]] = []
        queue = keys
        while queue and tx.parked_live > 0:
            rows = tx.parked_waiting(queue)
            queue = []
            for seq, waits in rows:
                ev = tx.event_at(seq)
                plan = self._plan(tx, ev)
                if isinstance(plan, _Park):
                    if plan.waits_for != waits:
                        tx.unpark(seq, waits is not None)
                        tx.park(seq, ev, plan)
                    continue
                tx.unpark(seq, True)
                queue += self._apply(tx, seq, ev, plan)
                released.append(ev.key)
        return released

    # ------------------------------------------------------------------ transactions
