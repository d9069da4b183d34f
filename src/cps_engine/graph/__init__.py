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

import importlib
from bisect import bisect_right, insort
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np

from cps_engine.errors import CpsError, DuplicateEvent, SelfReferralError, UnknownReference
from cps_engine.graph.binding import (
    BindingConfig,
    BindingMode,
    BindingRecord,
    BindingStore,
    to_micros,
)
from cps_engine.graph.chains import Chain, Link
from cps_engine.graph.index import NO_TIME, Interner, ShareIndex, arrow_strings
from cps_engine.models import BindEvent, Event, OrderEvent, ShareEvent
from cps_engine.times import from_micros, iso_micros

if TYPE_CHECKING:
    import networkx as nx
    from numpy.typing import NDArray

__all__ = ["NEVER", "BindingConfig", "BindingMode", "BindingRecord", "Chain", "Link", "ShareGraph", "to_micros"]

#: "never" as µs: later than any time an event can carry
NEVER: Final = 2**62
_NEVER: Final = NEVER


def _intern(names: Any) -> tuple[Interner, Sequence[int] | NDArray[np.int64]]:
    """The :class:`Interner` of ``names`` (ids in order of first appearance, as ``Interner.add`` gives
    them one by one) and each name's id: one Arrow dictionary encoding when pyarrow is installed
    (the interner then keeps the Arrow dictionary; its dict is built on first lookup by name)."""
    people = Interner()
    arr = arrow_strings(names)
    if arr is None or arr.null_count:  # no pyarrow, not strings, or a missing name: one by one
        return people, [people.add(s) for s in names]
    enc = arr.dictionary_encode()
    return Interner.of_arrow(enc.dictionary), np.asarray(enc.indices, dtype=np.int64)


_iso = iso_micros


class ShareGraph:
    """Share forest plus binding history over interned people; answers ``chain_for(order)``.

    One appendable structure serves a backend recording events one at a time (:meth:`add_share`,
    :meth:`add_bind`: amortised O(1) per share, O(log) per bind in time order), the ledger, and the
    batch kernels (whose arrays are built lazily from it).  :meth:`from_events` and
    :meth:`from_columns` are the bulk forms of the same structure.

    >>> from cps_engine.models import parse_event
    >>> g = ShareGraph()
    >>> g.add_share(parse_event({"type": "share", "id": "s1", "sharer": "amy", "at": "2026-03-01T10:00:00Z"}))
    0
    >>> g.add_share(parse_event({"type": "share", "id": "s2", "sharer": "bob", "parent": "s1",
    ...                          "at": "2026-03-01T11:00:00Z"}))
    1
    >>> o = parse_event({"type": "order", "id": "o1", "buyer": "cat", "share": "s2", "amount": "100.00",
    ...                  "currency": "CNY", "at": "2026-03-01T12:00:00Z"})
    >>> [link.payee for link in g.chain_for(o).walk()], g.version
    (['bob', 'amy'], 2)
    """

    def __init__(self, binding: BindingConfig | BindingMode | str = BindingMode.FIRST_WINS, *,
                 people: Interner | None = None, shares: ShareIndex | None = None) -> None:
        config = BindingConfig.of(binding)
        self._people = people if people is not None else Interner()
        self._shares = shares if shares is not None else ShareIndex()
        self._bindings = BindingStore(config)
        self._tops: dict[tuple[int, int], tuple[Link | None, int]] = {}
        self._bind_us: dict[str, int] = {}
        #: every bind offered, in (time, id) order: (µs, id, user, upline, registration, at)
        self._bind_log: list[tuple[int, str, int, int, bool, datetime]] = []
        self._refused: dict[str, CpsError] = {}
        self._first_share: dict[int, int] = {}
        #: grows with every share or bind added: caches of derived arrays compare it
        self.version = 0
        if len(self._shares):  # each person's earliest share, keyed in order of first appearance
            sharer = self._shares.np("sharer").astype(np.int64)
            at = np.frombuffer(self._shares.at_us, dtype=np.int64)
            by = np.lexsort((at, sharer))
            s_by = sharer[by]
            head = np.flatnonzero(np.r_[True, s_by[1:] != s_by[:-1]])
            persons, earliest = s_by[head], at[by[head]]
            _, first_index = np.unique(sharer, return_index=True)  # persons come out sorted, as s_by
            keyed = np.argsort(first_index, kind="stable")
            self._first_share = dict(zip(persons[keyed].tolist(), earliest[keyed].tolist(), strict=True))

    @property
    def binding(self) -> BindingConfig:
        return self._bindings.config

    # ------------------------------------------------------------------ growing
    def add_share(self, ev: ShareEvent) -> int:
        """Append one share and return its index (the same index again for a repeat delivery).

        Raises :class:`UnknownReference` when its parent is not in the graph (yet) or the share is
        dated before its parent, :class:`SelfReferralError` for a share re-shared from itself and
        :class:`DuplicateEvent` for a known share id with another sharer, parent or time.  Nothing is
        changed when it raises.  A share cycle can never be appended: each share needs its parent first.
        """
        node, parent = self.check_share(ev)
        if node >= 0:
            return node
        idx = self._shares
        t = to_micros(ev.at)
        person = self._people.add(ev.sharer)
        node = idx.append(ev.id, person, parent, t)
        if t < self._first_share.get(person, _NEVER):
            self._first_share[person] = t
        self.version += 1
        return node

    def check_share(self, ev: ShareEvent) -> tuple[int, int]:
        """What :meth:`add_share` would do, without changing anything: ``(node, parent)`` where
        ``node`` is the share's index when it is already known (a repeat delivery) or -1, and
        ``parent`` its parent's index (-1 for a root share).  Raises as :meth:`add_share` does."""
        idx = self._shares
        t = to_micros(ev.at)
        node = idx.share_ids.get(ev.id)
        if node >= 0:
            par = idx.parent[node]
            same = (self._people.names[idx.sharer[node]] == ev.sharer and idx.at_us[node] in (t, NO_TIME)
                    and (idx.share_ids.names[par] if par >= 0 else None) == ev.parent)
            if not same:
                raise DuplicateEvent("share id used twice with different payloads", record=ev.id, field="id")
            return node, par
        parent = -1
        if ev.parent is not None:
            if ev.parent == ev.id:
                raise SelfReferralError("a share cannot be re-shared from itself", record=ev.id, field="parent")
            parent = idx.share_ids.get(ev.parent)
            if parent < 0:
                raise UnknownReference(f"parent share {ev.parent!r} is not a known share", record=ev.id,
                                       field="parent")
            pt = idx.at_us[parent]
            if pt != NO_TIME and t < pt:
                raise UnknownReference("re-shared before its parent share existed "
                                       f"({ev.at.isoformat()} < {_iso(pt)})", record=ev.id, field="at")
        return -1, parent

    def add_bind(self, ev: BindEvent) -> BindingRecord:
        """Apply one bind under the graph's binding mode and return its history record (``accepted``
        or ``ignored``).  In time order this is one append; a bind dated before binds already offered
        replays only the binds of the users it can affect (its user and the users of every later bind,
        refused ones included), so the result equals delivery in time order.

        Raises :class:`CycleError` (it would close a loop of uplines at its time) or
        :class:`SelfReferralError`; a refused bind changes no chain.  A repeat delivery of a known
        bind id returns its record (or raises its refusal) again.
        """
        t = to_micros(ev.at)
        if ev.id in self._bind_us:
            return self._known_bind(ev)
        if ev.user == ev.upline:
            raise SelfReferralError("a user cannot be bound to themselves", record=ev.id, field="upline")
        people = self._people
        entry = (t, ev.id, people.add(ev.user), people.add(ev.upline), ev.registration, ev.at)
        log = self._bind_log
        self._bind_us[ev.id] = t
        self.version += 1
        if log and entry[:2] < log[-1][:2]:
            return self._replay_late(entry)
        store = self._bindings
        changes = store.changes
        shifted = bool(changes) and t < changes[-1]
        log.append(entry)
        try:
            rec = store.add(entry[2], entry[3], t, ev.at, ev.id, ev.registration, people.names)
        except CpsError as exc:
            self._refused[ev.id] = exc
            raise
        if shifted:  # a change inserted before later ones renumbers the epochs
            self._tops.clear()
        return rec

    def _known_bind(self, ev: BindEvent) -> BindingRecord:
        refused = self._refused.get(ev.id)
        if refused is not None:
            raise refused
        for rec in self.binding_history(ev.user):
            if rec.bind_id == ev.id:
                return rec
        raise DuplicateEvent("bind id used twice with different payloads", record=ev.id, field="id")

    def _replay_late(self, entry: tuple[int, str, int, int, bool, datetime]) -> BindingRecord:
        """Insert a bind dated before others: reset the users whose history it can change (its own user
        and the user of every later bind) and replay their binds in time order."""
        log = self._bind_log
        insort(log, entry, key=lambda e: e[:2])
        pos = bisect_right(log, entry[:2], key=lambda e: e[:2])
        users = {e[2] for e in log[pos - 1:]}
        store = self._bindings
        store.reset(users)
        names = self._people.names
        rec: BindingRecord | None = None
        for e in log:
            if e[2] not in users:
                continue
            try:
                r = store.add(e[2], e[3], e[0], e[5], e[1], e[4], names)
            except CpsError as exc:
                self._refused[e[1]] = exc
                continue
            self._refused.pop(e[1], None)
            if e is entry:
                rec = r
        store.rebuild_changes()
        self._tops.clear()
        if rec is None:
            raise self._refused[entry[1]]
        return rec

    @property
    def refused_binds(self) -> dict[str, str]:
        """Binds the graph refuses as things stand (bind id -> reason): a late bind can make a later
        one a cycle, or free one that was refused."""
        return {bid: str(exc) for bid, exc in self._refused.items()}

    def participant_since(self) -> NDArray[np.int64]:
        """Per person id, the earliest time (µs) they took part in the programme (first share, or first
        accepted downline); :data:`NEVER` for people who never did.  What the batch kernels read."""
        since = np.full(len(self._people), _NEVER, dtype=np.int64)
        for person, us in self._first_share.items():
            since[person] = us
        for person, us in self._bindings.first_downlines().items():
            if us < since[person]:
                since[person] = us
        return since

    # ------------------------------------------------------------------ building in bulk
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
        graph = cls(binding, people=people, shares=cls._build_shares(shares, people, fail))
        graph._add_binds(sorted(binds.values(), key=lambda e: (to_micros(e.at), e.id)), fail)
        return graph

    def _add_binds(self, binds: Iterable[BindEvent], fail: Callable[[CpsError], None]) -> None:
        for b in binds:  # in time order: each is an append
            try:
                self.add_bind(b)
            except CpsError as exc:
                fail(exc)

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
        if not (len(share_ids) == len(sharers) == len(parents)):
            raise ValueError("share_ids, sharers and parents must have the same length")
        people, pid = _intern(sharers)
        at_us = None if times is None else [to_micros(t) for t in times]
        try:
            shares = ShareIndex.build(share_ids, pid, parents, at_us)
        except ValueError as exc:
            if isinstance(exc, CpsError) or len(set(share_ids)) == len(share_ids):
                raise
            dup = next(s for s, c in Counter(share_ids).items() if c > 1)
            raise DuplicateEvent("share id used twice", record=dup, field="id") from None
        if times is None:  # every sharer's first share has no time: counted from the beginning
            graph = cls(binding, people=people)
            graph._shares = shares
            graph._first_share = dict.fromkeys(range(len(people)), NO_TIME)  # every person here has shared
        else:
            graph = cls(binding, people=people, shares=shares)

        def fail(exc: CpsError) -> None:
            raise exc

        graph._add_binds(sorted(binds, key=lambda e: (to_micros(e.at), e.id)), fail)
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
                                        [shares[i].parent for i in ids], [to_micros(shares[i].at) for i in ids])
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

    def encode(self, ids: Any, kind: Literal["share", "user"] = "share") -> NDArray[np.int64]:
        """Integer codes of ``ids`` in the graph's own dictionary: share indexes (``kind="share"``) or
        person ids (``kind="user"``), ``-1`` for an id the graph does not know or a missing one (None).

        ``ids``: a list, numpy array, pandas or polars Series or Arrow array of strings.  The codes
        are what :func:`~cps_engine.batch.compute_batch` reads from integer ``share`` and ``buyer``
        columns, with no string hashing at all; they are valid for this graph (appending keeps the
        codes already given).  One Arrow hash lookup when pyarrow is installed, else a dict.

        >>> g = ShareGraph.from_columns(["s1", "s2"], ["amy", "bob"], [None, "s1"])
        >>> g.encode(["s2", "nope", None]).tolist(), g.encode(["bob", "cat"], kind="user").tolist()
        ([1, -1, -1], [1, -1])
        """
        if kind not in ("share", "user"):
            raise ValueError(f"kind must be 'share' or 'user', not {kind!r}")
        interned = self._shares.share_ids if kind == "share" else self._people
        arr = arrow_strings(ids)
        names = interned.arrow() if arr is not None else None
        if arr is not None and names is not None:
            pc: Any = importlib.import_module("pyarrow.compute")
            found = pc.index_in(arr, value_set=names).fill_null(-1)
            return np.asarray(found.to_numpy(zero_copy_only=False), dtype=np.int64)
        get = interned.ids.get
        values = ids.to_list() if hasattr(ids, "to_list") else list(ids)
        return np.fromiter((get(v, -1) if isinstance(v, str) else -1 for v in values), dtype=np.int64,
                           count=len(values))

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
        us = NO_TIME
        if chain.source == "share":
            node = self._shares.share_ids.get(link.via)
            us = self._shares.at_us[node] if node >= 0 else NO_TIME
        elif chain.source == "binding":
            us = self._bind_us.get(link.via, NO_TIME)
        if us == NO_TIME:
            raise UnknownReference("no time for this link", record=link.via)
        return from_micros(us)

    def is_participant_id(self, person: int, t: int | None = None) -> bool:
        """Whether ``person`` has shared or has a bound downline: ever, or by time ``t`` (µs).  Shares
        without a known time (built from columns without times) count from the beginning."""
        if person < 0:
            return False
        if self._bindings.has_downline(person, t):
            return True
        first = self._first_share.get(person)
        return first is not None and (t is None or first <= t)

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
        import networkx as nx  # only the analysis helpers need it: the core import stays light

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
        import networkx as nx

        t: nx.DiGraph[Any] = nx.DiGraph()
        idx = self._shares
        sid = idx.share_ids.names
        names = self._people.names
        for i in range(len(idx)):
            t.add_node(sid[i], sharer=names[idx.sharer[i]], depth=idx.depth[i])
            if idx.parent[i] >= 0:
                t.add_edge(sid[idx.parent[i]], sid[i])
        return t
