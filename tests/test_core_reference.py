"""A naive reference for chains and bases, written from the rules in docs/design.md only.

The engine's graph uses a compact index, cached roots and binary searches; this module walks
parents one by one with plain dicts and lists, so the property tests can compare the two.  It has
a few tests of its own (hand examples) so that a bug here does not hide a bug there.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cps_engine import BindEvent, Event, OrderEvent, RefundEvent, ShareEvent, parse_event

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY_US = 86_400 * 10**6
FOREVER = 2**62


def micros(at: datetime) -> int:
    return (at - EPOCH) // timedelta(microseconds=1)


@dataclass
class Interval:
    start: int
    end: int
    upline: str
    bind_id: str


@dataclass
class Reference:
    """Shares by id, bindings as intervals per user, accepted bind ids in time order."""

    shares: dict[str, ShareEvent] = field(default_factory=dict)
    intervals: dict[str, list[Interval]] = field(default_factory=lambda: defaultdict(list))
    accepted: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, events: Iterable[Event], mode: str = "first_wins", expire_days: int | None = None) -> Reference:
        ref = cls()
        binds: list[BindEvent] = []
        for ev in events:
            if isinstance(ev, ShareEvent):
                ref.shares[ev.id] = ev
            elif isinstance(ev, BindEvent):
                binds.append(ev)
        for b in sorted(binds, key=lambda b: (micros(b.at), b.id)):
            t = micros(b.at)
            ivs = ref.intervals[b.user]
            current = next((iv for iv in ivs if iv.start <= t < iv.end), None)
            if mode == "first_wins" and ivs:
                continue
            if mode == "registration_only" and (not b.registration or ivs):
                continue
            if mode == "expiring" and current is not None:
                continue
            if mode == "overwrite" and current is not None and current.upline == b.upline:
                continue
            if current is not None:
                current.end = t
            assert expire_days is not None or mode != "expiring"
            ivs.append(Interval(t, t + expire_days * DAY_US if mode == "expiring" else FOREVER,  # type: ignore[operator]
                                b.upline, b.id))
            ref.accepted.append(b.id)
        return ref

    def binding_at(self, user: str, t: int) -> Interval | None:
        found = [iv for iv in self.intervals.get(user, []) if iv.start <= t < iv.end]
        assert len(found) <= 1
        return found[0] if found else None

    def raw_path(self, order: OrderEvent) -> list[tuple[str, str]]:
        """(person, record) nearest first, before removing the buyer and repeats."""
        out: list[tuple[str, str]] = []
        if order.share is not None:
            sid: str | None = order.share
            while sid is not None:
                share = self.shares[sid]
                out.append((share.sharer, share.id))
                sid = share.parent
                assert len(out) <= len(self.shares), "share cycle"
            return out
        t = micros(order.at)
        user = order.buyer
        iv = self.binding_at(user, t)
        while iv is not None:
            out.append((iv.upline, iv.bind_id))
            user = iv.upline
            iv = self.binding_at(user, t)
            assert len(out) <= len(self.intervals) + 1, "binding cycle"
        return out

    def chain(self, order: OrderEvent, self_purchase: bool = False) -> list[tuple[str, str]]:
        """The payees nearest first: each person once (nearest occurrence), buyer removed unless
        self-purchase, which puts the buyer first."""
        seen = {order.buyer}
        out = [(order.buyer, order.id)] if self_purchase else []
        for person, record in self.raw_path(order):
            if person not in seen:
                seen.add(person)
                out.append((person, record))
        return out


def gross_base(order: OrderEvent, include_shipping: bool = False, include_tax: bool = False) -> int:
    base = order.amount_minor
    if not include_shipping:
        base -= order.shipping_minor
    if not include_tax:
        base -= order.tax_minor
    return base


def refunded(events: Iterable[Event], order: OrderEvent) -> int:
    total = 0  # in time order; a refund without an amount takes what is left
    for ev in sorted((e for e in events if isinstance(e, RefundEvent) and e.order == order.id),
                     key=lambda r: (r.at, r.id)):
        amount = ev.amount_minor(order.currency)
        total = order.amount_minor if amount is None else total + amount
    return total


def net_base(events: Iterable[Event], order: OrderEvent, include_shipping: bool = False,
             include_tax: bool = False) -> int:
    return max(0, gross_base(order, include_shipping, include_tax) - refunded(events, order))


# ------------------------------------------------------------------ the reference's own checks

AT = "2026-03-01T{:02d}:00:00+08:00"


def _ev(**kw: object) -> Event:
    return parse_event(kw)


def test_reference_share_chain_dedupes_and_removes_buyer() -> None:
    evs = [_ev(type="share", id="s1", sharer="amy", at=AT.format(1)),
           _ev(type="share", id="s2", sharer="bob", parent="s1", at=AT.format(2)),
           _ev(type="share", id="s3", sharer="amy", parent="s2", at=AT.format(3)),
           _ev(type="share", id="s4", sharer="cat", parent="s3", at=AT.format(4))]
    ref = Reference.build(evs)
    o = _ev(type="order", id="o1", buyer="cat", share="s4", amount="1", currency="CNY", at=AT.format(5))
    assert isinstance(o, OrderEvent)
    assert ref.chain(o) == [("amy", "s3"), ("bob", "s2")]
    assert ref.chain(o, self_purchase=True) == [("cat", "o1"), ("amy", "s3"), ("bob", "s2")]


def test_reference_binding_modes() -> None:
    evs = [_ev(type="bind", id="b1", user="cat", upline="amy", at=AT.format(1)),
           _ev(type="bind", id="b2", user="cat", upline="bob", at=AT.format(5), registration=True),
           _ev(type="bind", id="b3", user="bob", upline="dan", at=AT.format(6))]
    o3, o7 = (_ev(type="order", id=f"o{h}", buyer="cat", amount="1", currency="CNY", at=AT.format(h))
              for h in (3, 7))
    assert isinstance(o3, OrderEvent) and isinstance(o7, OrderEvent)
    first = Reference.build(evs, "first_wins")
    assert first.chain(o3) == [("amy", "b1")] and first.chain(o7) == [("amy", "b1")]
    over = Reference.build(evs, "overwrite")
    assert over.chain(o3) == [("amy", "b1")] and over.chain(o7) == [("bob", "b2"), ("dan", "b3")]
    reg = Reference.build(evs, "registration_only")
    assert reg.chain(o3) == [] and reg.chain(o7) == [("bob", "b2")]
    # expiring after 1 day: not expired by 07:00 (b1 holds; b2 ignored)
    exp = Reference.build(evs, "expiring", 1)
    assert exp.chain(o7) == [("amy", "b1")] and exp.accepted == ["b1", "b3"]
