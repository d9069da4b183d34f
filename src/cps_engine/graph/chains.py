"""Chains: the ordered payees of one order, walked lazily from the compact index.

A :class:`Chain` never materialises more than a policy asks for: :meth:`Chain.walk` yields links
nearest-first and stops when the policy stops; :meth:`Chain.first` answers "who is ``chain[0]``"
in O(1) from cached roots when the path has no repeated person.  Rules:

- each person appears once, at the occurrence nearest the buyer;
- the buyer is removed, unless self-purchase earns: then the buyer is level 1 and the others shift
  up one level;
- a share chain runs from the root share down to the order's share; a binding chain is the buyer's
  uplines as they stood at the order's time.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Literal, NamedTuple

from cps_engine.graph.binding import to_micros

if TYPE_CHECKING:
    from cps_engine.graph import ShareGraph

__all__ = ["Chain", "Link"]


class Link(NamedTuple):
    """One person in a chain and the record that puts them there (share id, bind id or order id)."""

    payee: str
    via: str


Source = Literal["share", "binding", "none"]

_link = tuple.__new__  # ``_link(Link, (payee, via))``: a Link without the NamedTuple ``__new__`` call


class Chain:
    """The payees of one order, nearest first when walked.  Created by ``ShareGraph.chain_for``."""

    __slots__ = ("_at", "_buyer", "_g", "_node", "_self", "_t", "buyer", "order_id", "source")

    def __init__(self, graph: ShareGraph, source: Source, node: int, buyer: str, buyer_id: int,
                 self_purchase: bool, t: int, order_id: str, at: datetime | int | None = None) -> None:
        self._g = graph
        self.source: Source = source
        self._node = node
        self.buyer = buyer
        self._buyer = buyer_id
        self._self = self_purchase
        self._t = t  # the order's time in µs where the chain needed it (binding chains), else 0
        self._at = at  # the order's time as given: converted only if a question needs it
        self.order_id = order_id

    def walk(self) -> Iterator[Link]:
        """Links nearest-first: level 1, 2, ... (lazy; stop early to pay for only what you read)."""
        if self._self:
            yield Link(self.buyer, self.order_id)
        g = self._g
        names = g._people.names
        buyer = self._buyer
        if self.source == "share":
            idx = g._shares
            sid = idx.share_ids.names
            parent, sharer = idx.parent, idx.sharer
            n = self._node
            if idx.repeat[n]:
                seen = {buyer}
                while n >= 0:
                    p = sharer[n]
                    if p not in seen:
                        seen.add(p)
                        yield Link(names[p], sid[n])
                    n = parent[n]
            else:
                while n >= 0:
                    p = sharer[n]
                    if p != buyer:
                        yield Link(names[p], sid[n])
                    n = parent[n]
        elif self.source == "binding":
            store = g._bindings
            t = self._t
            u = buyer
            a = store.upline(u, t)
            while a >= 0:
                yield Link(names[a], store.bind_id(u, t))
                u = a
                a = store.upline(u, t)

    def nearest(self, n: int) -> list[Link]:
        """The first ``n`` links (levels 1..n), or fewer when the chain is shorter.  O(n)."""
        out: list[Link] = []
        if n <= 0:
            return out
        if self.source == "share" and not self._self:
            # hot path (same links as ``walk``): a plain loop, no generator, no ``seen`` set when
            # no person repeats on the path
            g = self._g
            idx = g._shares
            node = self._node
            if not idx.repeat[node]:
                names = g._people.names
                sid = idx.share_ids.names
                parent, sharer = idx.parent, idx.sharer
                buyer = self._buyer
                while node >= 0:
                    p = sharer[node]
                    if p != buyer:
                        out.append(_link(Link, (names[p], sid[node])))
                        if len(out) == n:
                            break
                    node = parent[node]
                return out
        for link in self.walk():
            out.append(link)
            if len(out) == n:
                break
        return out

    def nearest_columns(self, n: int) -> tuple[list[str], list[str]]:
        """``nearest(n)`` as two columns, payees and vias, without building :class:`Link` objects
        (the multi-level hot path reads nothing else).  The loop is ``nearest``'s twin on purpose:
        sharing it (one walker returning columns, ``nearest`` zipping them into links) measured
        +0.6 µs on ``nearest(1)``, 1.04 -> 1.67 µs, the last-sharer hot path."""
        if n > 0 and self.source == "share" and not self._self:
            g = self._g
            idx = g._shares
            node = self._node
            if not idx.repeat[node]:
                names, sid = g._people.names, idx.share_ids.names
                parent, sharer = idx.parent, idx.sharer
                buyer = self._buyer
                payees: list[str] = []
                vias: list[str] = []
                while node >= 0:
                    p = sharer[node]
                    if p != buyer:
                        payees.append(names[p])
                        vias.append(sid[node])
                        if len(vias) == n:
                            break
                    node = parent[node]
                return payees, vias
        links = self.nearest(n)
        return [link.payee for link in links], [link.via for link in links]

    def all(self) -> list[Link]:
        """Every link, nearest first.  O(depth): policies that split a pool over the chain need it."""
        return list(self.walk())

    def first(self) -> Link | None:
        """``chain[0]``: the person farthest from the buyer (the first sharer / top upline)."""
        g = self._g
        if self.source == "share":
            idx = g._shares
            n = self._node
            if not idx.repeat[n]:
                root = idx.root[n]
                p = idx.sharer[root]
                if p != self._buyer:
                    return Link(g._people.names[p], idx.share_ids.names[root])
                sec = idx.second[n]
                if sec >= 0:
                    return Link(g._people.names[idx.sharer[sec]], idx.share_ids.names[sec])
                return Link(self.buyer, self.order_id) if self._self else None
        elif self.source == "binding":
            top = g._top_upline(self._buyer, self._t)[0]
            if top is not None:
                return top
            return Link(self.buyer, self.order_id) if self._self else None
        links = self.all()
        return links[-1] if links else None

    def __len__(self) -> int:
        """Number of links (the level of ``first()``).  O(1) from the index except on paths where a
        person repeats, which are walked."""
        g = self._g
        extra = 1 if self._self else 0
        if self.source == "share":
            idx = g._shares
            n = self._node
            if not idx.repeat[n]:
                return idx.depth[n] + 1 - idx.on_path(self._buyer, n) + extra
            return len(self.all())
        if self.source == "binding":
            return g._top_upline(self._buyer, self._t)[1] + extra
        return extra

    def time_of(self, link: Link) -> datetime:
        """When ``link``'s person joined the chain: the share's time, or the binding's start."""
        return self._g._link_time(self, link)

    def buyer_is_participant(self) -> bool:
        """Whether the buyer took part in the programme at the order's time (had shared, or had a
        bound downline): a share or downline gained later never changes an earlier order."""
        at = self._at
        t = self._t if self.source == "binding" else None if at is None else at if isinstance(at, int) \
            else to_micros(at)
        return self._g.is_participant_id(self._buyer, t)

    def __repr__(self) -> str:
        return f"Chain({self.source}, order={self.order_id!r}, buyer={self.buyer!r})"
