"""The share graph as the ledger needs it: every order's chain as of the order's time, kept up to date
incrementally while shares and binds keep arriving.

Rebuilding a :class:`~cps_engine.graph.ShareGraph` from all shares and binds for every order costs
O(programme) per order.  The ledger instead keeps

- **share paths**: an order bought through share ``s`` only depends on ``s`` and its ancestors (the
  chain, the repeated-person rule, ``first()`` and the link times are all path-local).  The ledger
  builds a small :class:`ShareGraph` from that path alone and caches it per share; a share never
  changes once recorded, so the cache never goes stale.  Paths deeper than :data:`PATH_LIMIT` use
  one graph of all shares instead, rebuilt only when an order needs a share it does not hold.
- **bindings**: one :class:`ShareGraph` of all binds.  A bind later than every bind it holds is
  appended in place (the binding store is built in time order); an earlier one (a late delivery)
  rebuilds it.  Binding chains are read "as of" the order's time, so binds after an order never
  change its chain.
- **participation** (the compliant policy's "is the buyer a participant?") as of the order's time:
  the buyer had shared, or had an accepted downline, at or before the order.  The full-history
  answer of ``ShareGraph`` would let a later share change an earlier order's commission.

So an order's chain is a function of the shares and binds dated at or before it, whatever order they
arrived in; the ledger re-computes an applied order when a share or bind dated at or before it
arrives late.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from cps_engine.errors import CpsError
from cps_engine.graph import BindingConfig, ShareGraph, to_micros
from cps_engine.graph.chains import Chain
from cps_engine.models import BindEvent, OrderEvent, ShareEvent

__all__ = ["PATH_LIMIT", "ChainResult", "LedgerGraph", "Missing", "Refused"]

#: share paths longer than this use the graph of all shares instead of a per-share path graph
PATH_LIMIT: Final = 256
_CACHE: Final = 4096
_NEVER: Final = 2**62


@dataclass(frozen=True, slots=True)
class Missing:
    """The order cannot be placed yet: ``waits_for`` (``share:<id>``) has not arrived."""

    waits_for: str
    reason: str


@dataclass(frozen=True, slots=True)
class Refused:
    """The order's share was refused by the graph (cycle, re-shared before its parent, ...)."""

    reason: str


ChainResult = Chain | Missing | Refused


class _AsOfChain(Chain):
    """A chain whose ``buyer_is_participant`` is answered as of the order's time."""

    __slots__ = ("_participant",)

    _participant: bool

    def buyer_is_participant(self) -> bool:
        return self._participant


class LedgerGraph:
    """Shares, binds and participation times, answering ``chain_for(order)`` as of the order."""

    def __init__(self, binding: BindingConfig) -> None:
        self.binding = binding
        self.shares: dict[str, ShareEvent] = {}
        self._paths: OrderedDict[str, ShareGraph | Refused] = OrderedDict()
        self._all_shares: ShareGraph | None = None
        self._all_problems: dict[str, str] = {}
        self._binds: dict[str, BindEvent] = {}
        self._bind_graph: ShareGraph | None = None
        self._bind_last: tuple[int, str] = (-_NEVER, "")
        self.bind_problems: dict[str, str] = {}
        self._first_share: dict[str, int] = {}
        self._first_down: dict[str, int] = {}
        self.rebuilds = 0

    # ------------------------------------------------------------------ input
    def add_share(self, ev: ShareEvent) -> None:
        if ev.id in self.shares:
            return
        self.shares[ev.id] = ev
        t = to_micros(ev.at)
        if t < self._first_share.get(ev.sharer, _NEVER):
            self._first_share[ev.sharer] = t

    def add_bind(self, ev: BindEvent) -> None:
        if ev.id in self._binds:
            return
        self._binds[ev.id] = ev
        key = (to_micros(ev.at), ev.id)
        g = self._bind_graph
        if g is None or key < self._bind_last:
            self._bind_graph = None  # rebuilt on next use
            return
        self._bind_last = key
        try:
            rec = g._bindings.add(g._people.add(ev.user), g._people.add(ev.upline), key[0], ev.at, ev.id,
                                  ev.registration, g._people.names)
        except CpsError as exc:
            self.bind_problems[ev.id] = str(exc)
            return
        g._bindings.finish()
        g._tops.clear()
        g._bind_times[ev.id] = ev.at
        if rec.status == "accepted" and key[0] < self._first_down.get(rec.upline, _NEVER):
            self._first_down[rec.upline] = key[0]

    # ------------------------------------------------------------------ graphs
    def _binding_graph(self) -> ShareGraph:
        g = self._bind_graph
        if g is not None:
            return g
        problems: list[CpsError] = []
        binds = list(self._binds.values())
        g = ShareGraph.from_events(binds, binding=self.binding, on_error=problems.append)
        self.rebuilds += 1
        self.bind_problems = {str(p.record): str(p) for p in problems}
        self._first_down = {}
        for name in g.people:
            for rec in g.binding_history(name):
                if rec.status == "accepted":
                    t = to_micros(rec.at)
                    if t < self._first_down.get(rec.upline, _NEVER):
                        self._first_down[rec.upline] = t
        self._bind_last = max(((to_micros(b.at), b.id) for b in binds), default=(-_NEVER, ""))
        self._bind_graph = g
        return g

    def _path(self, share_id: str, limit: int | None = PATH_LIMIT) -> list[ShareEvent] | Missing | Refused:
        path: list[ShareEvent] = []
        seen: set[str] = set()
        sid: str | None = share_id
        while sid is not None:
            if sid in seen:
                return Refused(f"share {sid!r} is on a cycle of parent shares")
            seen.add(sid)
            ev = self.shares.get(sid)
            if ev is None:
                what = "the order's share" if sid == share_id else f"ancestor share of {share_id!r}"
                return Missing(f"share:{sid}", f"{what} {sid!r} has not been recorded")
            path.append(ev)
            if limit is not None and len(path) > limit:
                break
            sid = ev.parent
        return path

    def _share_graph(self, share_id: str) -> ShareGraph | Missing | Refused:
        cached = self._paths.get(share_id)
        if cached is not None:
            self._paths.move_to_end(share_id)
            return cached
        path = self._path(share_id)
        if isinstance(path, (Missing, Refused)):
            return path
        result: ShareGraph | Refused
        if len(path) > PATH_LIMIT:
            full = self._path(share_id, None)
            if isinstance(full, (Missing, Refused)):
                return full
            return self._deep(share_id)
        problems: list[CpsError] = []
        g = ShareGraph.from_events(path, on_error=problems.append)
        if g.index.share_ids.get(share_id) < 0:
            result = Refused("; ".join(str(p) for p in problems) or f"share {share_id!r} could not be placed")
        else:
            result = g
        self._paths[share_id] = result
        if len(self._paths) > _CACHE:
            self._paths.popitem(last=False)
        return result

    def _deep(self, share_id: str) -> ShareGraph | Refused:
        g = self._all_shares
        if g is None or g.index.share_ids.get(share_id) < 0:
            problems: list[CpsError] = []
            g = self._all_shares = ShareGraph.from_events(list(self.shares.values()), on_error=problems.append)
            self.rebuilds += 1
            self._all_problems = {str(p.record): str(p) for p in problems}
        if g.index.share_ids.get(share_id) < 0:
            return Refused(self._all_problems.get(share_id, f"share {share_id!r} could not be placed"))
        return g

    # ------------------------------------------------------------------ chains
    def participant(self, person: str, t: int) -> bool:
        """Whether ``person`` had shared, or had an accepted downline, at or before ``t`` (µs)."""
        if self._bind_graph is None and self._binds:
            self._binding_graph()
        return self._first_share.get(person, _NEVER) <= t or self._first_down.get(person, _NEVER) <= t

    def chain_for(self, order: OrderEvent, *, self_purchase: bool) -> ChainResult:
        """The order's chain as of its time, or why it cannot be computed (yet)."""
        if order.share is not None:
            g = self._share_graph(order.share)
            if isinstance(g, (Missing, Refused)):
                return g
        else:
            g = self._binding_graph()
        c = g.chain(order.id, order.buyer, order.share, order.at, self_purchase=self_purchase)
        out = _AsOfChain(c._g, c.source, c._node, c.buyer, c._buyer, c._self, c._t, c.order_id)
        out._participant = self.participant(order.buyer, to_micros(order.at))
        return out
