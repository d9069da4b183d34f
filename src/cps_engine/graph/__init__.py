"""Events -> chains: who shared to whom, who is bound to whom, and the payees of each order.

>>> from cps_engine.models import load_events
>>> evs = load_events([
...   '{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00+08:00"}',
...   '{"type":"share","id":"s2","sharer":"bob","parent":"s1","at":"2026-03-01T11:00:00+08:00"}',
...   '{"type":"order","id":"o1","buyer":"cat","share":"s2","amount":"100.00","currency":"CNY",'
...   '"at":"2026-03-01T12:00:00+08:00"}'])
>>> g = ShareGraph.from_events(evs)
>>> chain = g.chain_for(evs[2])
>>> [link.payee for link in chain.walk()], chain.first().payee
(['bob', 'amy'], 'amy')
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import networkx as nx

from cps_engine.errors import CpsError, DuplicateEvent, UnknownReference
from cps_engine.graph.binding import (
    BindingConfig,
    BindingMode,
    BindingRecord,
    BindingStore,
    to_micros,
)
from cps_engine.graph.chains import Chain, Link
from cps_engine.graph.index import Interner, ShareIndex
from cps_engine.models import BindEvent, Event, OrderEvent, ShareEvent

_MISSING: Any = object()

__all__ = ["BindingConfig", "BindingMode", "BindingRecord", "Chain", "Link", "ShareGraph", "to_micros"]


class ShareGraph:
    """Share forest plus binding history over interned people; answers ``chain_for(order)``."""

    def __init__(self, people: Interner, shares: ShareIndex, bindings: BindingStore,
                 share_events: dict[str, ShareEvent] | None = None) -> None:
        self._people = people
        self._shares = shares
        self._bindings = bindings
        self._share_events = share_events or {}
        self._tops: dict[tuple[int, int], tuple[Link | None, int]] = {}
        self._bind_times: dict[str, datetime] = {}
        self._share_times: dict[str, datetime] = {k: v.at for k, v in self._share_events.items()}
        self._first_share: dict[int, int] | None = None

    # ------------------------------------------------------------------ building
    @classmethod
    def from_events(
        cls,
        events: Iterable[Event],
        *,
        binding: BindingConfig | BindingMode | str = BindingMode.FIRST_WINS,
        on_error: Callable[[CpsError], None] | None = None,
    ) -> ShareGraph:
        """Build from events (any order; other event types are ignored).

        Shares are placed by their ``parent``; binds are applied in time order (ties by id) under
        the ``binding`` mode.  A bad share or bind raises a typed error naming it; with
        ``on_error`` each error is passed to it instead and the record is left out.
        """
        config = binding if isinstance(binding, BindingConfig) else BindingConfig(mode=BindingMode(binding))

        def fail(exc: CpsError) -> None:
            if on_error is None:
                raise exc
            on_error(exc)

        people = Interner()
        shares: dict[str, ShareEvent] = {}
        binds: dict[str, BindEvent] = {}
        for ev in events:
            if isinstance(ev, ShareEvent):
                seen_share = shares.get(ev.id)
                if seen_share is None:
                    shares[ev.id] = ev
                elif seen_share != ev:
                    fail(DuplicateEvent("share id used twice with different payloads", record=ev.id, field="id"))
            elif isinstance(ev, BindEvent):
                seen_bind = binds.get(ev.id)
                if seen_bind is None:
                    binds[ev.id] = ev
                elif seen_bind != ev:
                    fail(DuplicateEvent("bind id used twice with different payloads", record=ev.id, field="id"))
        index = cls._build_shares(shares, people, fail)
        store = BindingStore(config)
        for b in sorted(binds.values(), key=lambda e: (to_micros(e.at), e.id)):
            try:
                store.add(people.add(b.user), people.add(b.upline), to_micros(b.at), b.at, b.id,
                          b.registration, people.names)
            except CpsError as exc:
                fail(exc)
        store.finish()
        graph = cls(people, index, store, shares)
        graph._bind_times = {b.id: b.at for b in binds.values()}
        return graph

    @classmethod
    def from_columns(
        cls,
        share_ids: Sequence[str],
        sharers: Sequence[str],
        parents: Sequence[str | None],
        binds: Iterable[BindEvent] = (),
        *,
        times: Sequence[datetime] | None = None,
        binding: BindingConfig | BindingMode | str = BindingMode.FIRST_WINS,
    ) -> ShareGraph:
        """Build from plain columns (share id, sharer, parent share id or None): the fast path for
        millions of shares (no event objects, no time check between child and parent shares).

        >>> g = ShareGraph.from_columns(["s1", "s2"], ["amy", "bob"], [None, "s1"])
        >>> g.n_shares, g.n_people
        (2, 2)
        """
        config = binding if isinstance(binding, BindingConfig) else BindingConfig(mode=BindingMode(binding))
        if not (len(share_ids) == len(sharers) == len(parents)):
            raise ValueError("share_ids, sharers and parents must have the same length")
        people = Interner()
        pid = [people.add(s) for s in sharers]
        if len(set(share_ids)) != len(share_ids):
            dup = next(s for s, c in Counter(share_ids).items() if c > 1)
            raise DuplicateEvent("share id used twice", record=dup, field="id")
        index = ShareIndex.build(share_ids, pid, parents)
        store = BindingStore(config)
        bind_list = sorted(binds, key=lambda e: (to_micros(e.at), e.id))
        for b in bind_list:
            store.add(people.add(b.user), people.add(b.upline), to_micros(b.at), b.at, b.id,
                      b.registration, people.names)
        store.finish()
        graph = cls(people, index, store)
        graph._bind_times = {b.id: b.at for b in bind_list}
        if times is not None:  # only the time-decay policy reads share times
            graph._share_times = dict(zip(share_ids, times, strict=True))
            graph._first_share = None
        return graph

    @staticmethod
    def _build_shares(shares: dict[str, ShareEvent], people: Interner,
                      fail: Callable[[CpsError], None]) -> ShareIndex:
        while True:
            ids = list(shares)
            try:
                for s in shares.values():
                    if s.parent is not None and s.parent in shares and s.at < shares[s.parent].at:
                        raise UnknownReference("re-shared before its parent share existed "
                                               f"({s.at.isoformat()} < {shares[s.parent].at.isoformat()})",
                                               record=s.id, field="at")
                return ShareIndex.build(ids, [people.add(shares[i].sharer) for i in ids],
                                        [shares[i].parent for i in ids])
            except CpsError as exc:
                fail(exc)  # raises unless collecting; then drop the record and its subtree
                bad = exc.record
                if bad not in shares:
                    raise
                drop = {bad}
                changed = True
                while changed:
                    changed = False
                    for s in shares.values():
                        if s.parent in drop and s.id not in drop:
                            drop.add(s.id)
                            changed = True
                for d in drop:
                    del shares[d]

    # ------------------------------------------------------------------ chains
    def chain_for(self, order: OrderEvent, *, self_purchase: bool = False) -> Chain:
        """The payees of ``order``: its share path, else the buyer's uplines at the order's time."""
        return self.chain(order.id, order.buyer, order.share, order.at, self_purchase=self_purchase)

    def chain(self, order_id: str, buyer: str, share: str | None, at: datetime | int | None,
              *, self_purchase: bool = False) -> Chain:
        """Like :meth:`chain_for` from plain values; ``at`` may be µs since the epoch."""
        buyer_id = self._people.get(buyer)
        if share is not None:
            node = self._shares.share_ids.get(share)
            if node < 0:
                raise UnknownReference(f"share {share!r} is not a known share", record=order_id,
                                       field="share")
            return Chain(self, "share", node, buyer, buyer_id, self_purchase, 0, order_id, at)
        if buyer_id >= 0 and at is not None:
            t = at if isinstance(at, int) else to_micros(at)
            if self._bindings.upline(buyer_id, t) >= 0:
                return Chain(self, "binding", -1, buyer, buyer_id, self_purchase, t, order_id, at)
        return Chain(self, "none", -1, buyer, buyer_id, self_purchase, 0, order_id, at)

    def _top_upline(self, user: int, t: int) -> tuple[Link | None, int]:
        """Top of ``user``'s upline chain at ``t`` and the number of uplines, memoised per
        (user, binding epoch): every node walked learns its answer, so a deep chain is walked once
        per epoch."""
        store = self._bindings
        epoch = bisect_right(store.changes, t)
        tops = self._tops
        key = (user, epoch)
        hit = tops.get(key)
        if hit is not None:
            return hit
        if len(tops) > 4_000_000:
            tops.clear()
        names = self._people.names
        path: list[int] = []
        u = user
        while True:
            a = store.upline(u, t)
            if a < 0:  # u is the top
                top: Link | None = Link(names[u], store.bind_id(path[-1], t)) if path else None
                base = 0
                tops[(u, epoch)] = (None, 0)
                break
            path.append(u)
            cached = tops.get((a, epoch))
            if cached is not None:
                top = cached[0] if cached[0] is not None else Link(names[a], store.bind_id(u, t))
                base = cached[1]
                break
            u = a
        for k, p in enumerate(reversed(path)):
            tops[(p, epoch)] = (top, base + k + 1)
        return tops[key]

    def _link_time(self, chain: Chain, link: Link) -> datetime:
        if chain.source == "share" and link.via in self._share_times:
            return self._share_times[link.via]
        if chain.source == "binding":
            return self._bind_times[link.via]
        raise UnknownReference("no time for this link", record=link.via)

    def is_participant_id(self, person: int, t: int | None = None) -> bool:
        """Whether ``person`` has shared or has a bound downline: ever, or by time ``t`` (µs)."""
        if person < 0:
            return False
        if self._bindings.has_downline(person, t):
            return True
        ptr = self._shares.person_ptr
        if not (person + 1 < len(ptr) and ptr[person + 1] > ptr[person]):
            return False
        if t is None:
            return True
        first = self._first_share_us().get(person)
        return first is None or first <= t  # no share times known (from_columns): count the share

    def _first_share_us(self) -> dict[int, int]:
        if self._first_share is None:
            first: dict[int, int] = {}
            lookup, sharer = self._shares.share_ids.get, self._shares.sharer
            for sid, at in self._share_times.items():
                node = lookup(sid)
                if node >= 0:
                    person, us = sharer[node], to_micros(at)
                    if us < first.get(person, us + 1):
                        first[person] = us
            self._first_share = first
        return self._first_share

    def is_participant(self, name: str, at: datetime | None = None) -> bool:
        """Whether ``name`` has shared anything or has a bound downline (by ``at``, if given)."""
        return self.is_participant_id(self._people.get(name), None if at is None else to_micros(at))

    # ------------------------------------------------------------------ inspection
    @property
    def n_people(self) -> int:
        return len(self._people)

    @property
    def n_shares(self) -> int:
        return len(self._shares)

    @property
    def index(self) -> ShareIndex:
        """The compact share index (numpy views via ``index.np('parent')`` etc.)."""
        return self._shares

    @property
    def people(self) -> list[str]:
        return self._people.names

    def person_id(self, name: str) -> int:
        return self._people.get(name)

    def share_event(self, share_id: str) -> ShareEvent:
        return self._share_events[share_id]

    def upline_at(self, user: str, at: datetime) -> str | None:
        """The upline ``user`` was bound to at ``at`` (None: unbound)."""
        u = self._people.get(user)
        a = self._bindings.upline(u, to_micros(at)) if u >= 0 else -1
        return self._people.names[a] if a >= 0 else None

    def binding_history(self, user: str) -> list[BindingRecord]:
        """Every bind of ``user`` in time order, accepted or ignored, with when it stopped holding."""
        u = self._people.get(user)
        return self._bindings.history(u) if u >= 0 else []

    def depth_histogram(self) -> dict[int, int]:
        """Number of shares at each depth (0 = a root share)."""
        return dict(sorted(Counter(self._shares.depth).items()))

    def to_networkx(self) -> nx.MultiDiGraph[Any]:
        """People as nodes; an edge ``u -> v`` per share of v re-shared from u's share (kind
        ``share``, key the share id) and per accepted binding of v under u (kind ``bind``)."""
        g: nx.MultiDiGraph[Any] = nx.MultiDiGraph()
        names = self._people.names
        idx = self._shares
        sid = idx.share_ids.names
        g.add_nodes_from(names)
        for i in range(len(idx)):
            p = idx.parent[i]
            if p >= 0:
                g.add_edge(names[idx.sharer[p]], names[idx.sharer[i]], key=sid[i], kind="share")
        for u in self._bindings.users():
            for start, end, up, bid in self._bindings.intervals(u):
                g.add_edge(names[up], names[u], key=bid, kind="bind", start=start, end=end)
        return g

    def share_tree(self) -> nx.DiGraph[Any]:
        """Shares as nodes (with their ``sharer``), an edge from each share to its re-shares."""
        t: nx.DiGraph[Any] = nx.DiGraph()
        idx = self._shares
        sid = idx.share_ids.names
        names = self._people.names
        for i in range(len(idx)):
            t.add_node(sid[i], sharer=names[idx.sharer[i]], depth=idx.depth[i])
            if idx.parent[i] >= 0:
                t.add_edge(sid[idx.parent[i]], sid[i])
        return t
