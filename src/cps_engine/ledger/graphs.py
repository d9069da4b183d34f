"""What the ledger adds to the one appendable :class:`~cps_engine.graph.ShareGraph`: refusals it
remembers, waiting (parked) shares, and the catch-up from the database.

The ledger keeps **one** graph per database and table prefix in the process (shared by every
:class:`~cps_engine.ledger.Ledger` opened on the same SQLAlchemy engine), appended to as shares and
binds are recorded.  Another writer's events are read by sequence number: only rows after the last
one this graph has seen.  A share whose parent has not arrived is parked by the ledger and placed
when the parent arrives; a share or bind the graph refuses (re-shared from itself, dated before its
parent, a child of a refused share, a bind that closes a loop of uplines) is rejected with its reason.

An order's chain is answered by the graph as of the order's time, so binds and shares dated after an
order never change it; the ledger restates an applied order when a share or bind dated at or before
it arrives late.
"""

from __future__ import annotations

from dataclasses import dataclass

from cps_engine.errors import CpsError, GraphError, UnknownReference
from cps_engine.graph import BindingConfig, ShareGraph
from cps_engine.graph.chains import Chain
from cps_engine.models import BindEvent, OrderEvent, ShareEvent

__all__ = ["ChainResult", "LedgerGraph", "Missing", "Refused"]


@dataclass(frozen=True, slots=True)
class Missing:
    """Cannot be placed yet: ``waits_for`` (``share:<id>``) has not arrived."""

    waits_for: str
    reason: str


@dataclass(frozen=True, slots=True)
class Refused:
    """Refused by the graph, with the typed error that says why."""

    reason: str
    error: type[CpsError] = GraphError
    field: str | None = None


ChainResult = Chain | Missing | Refused


class LedgerGraph:
    """The ledger's share graph and what it refused; ``token`` is the ``(seq, payload hash)`` of the
    last event row it has seen."""

    def __init__(self, binding: BindingConfig) -> None:
        self.graph = ShareGraph(binding)
        self.refused_shares: dict[str, str] = {}
        self.token: tuple[int, str] = (0, "")
        self._waiting: dict[str, list[ShareEvent]] = {}  # catch-up only: parent id -> shares

    # ------------------------------------------------------------------ shares
    def check_share(self, ev: ShareEvent) -> Missing | Refused | None:
        """Whether ``ev`` can be placed now (None), must wait for its parent, or is refused."""
        if ev.parent is not None and ev.parent in self.refused_shares:
            return Refused(f"its parent share {ev.parent!r} was refused: {self.refused_shares[ev.parent]}",
                           GraphError, "parent")
        try:
            self.graph.check_share(ev)
        except UnknownReference as exc:
            if exc.field == "parent" and ev.parent is not None:
                return Missing(f"share:{ev.parent}", exc.message)
            return Refused(exc.message, type(exc), exc.field)
        except CpsError as exc:
            return Refused(exc.message, type(exc), exc.field)
        return None

    def add_share(self, ev: ShareEvent) -> None:
        """Place ``ev`` (the planner's path: re-shares parked behind it are released by the ledger's
        cascade in the same transaction, so they are not kept waiting here)."""
        self.graph.add_share(ev)
        self._waiting.pop(ev.id, None)

    def refuse_share(self, ev: ShareEvent, reason: str) -> None:
        self.refused_shares[ev.id] = reason
        self._waiting.pop(ev.id, None)

    def wait_for_parent(self, ev: ShareEvent) -> None:
        """``ev`` was stored parked, waiting for its parent: if another writer (another process) records
        the parent and releases ``ev`` there, the catch-up that reads the parent's row places ``ev``
        here too (the release writes no row of its own)."""
        if ev.parent is not None:
            self._waiting.setdefault(ev.parent, []).append(ev)

    # ------------------------------------------------------------------ binds
    def add_bind(self, ev: BindEvent) -> Refused | None:
        """Apply ``ev`` (None) or say why the graph refuses it."""
        try:
            self.graph.add_bind(ev)
        except CpsError as exc:
            return Refused(exc.message, type(exc), exc.field)
        return None

    # ------------------------------------------------------------------ catch-up
    def catch_up(self, ev: ShareEvent | BindEvent) -> None:
        """Replay one stored event (in sequence order) as the writer that recorded it did."""
        if isinstance(ev, BindEvent):
            self.add_bind(ev)
            return
        problem = self.check_share(ev)
        if isinstance(problem, Missing):  # recorded before its parent; placed when the parent is
            self._waiting.setdefault(problem.waits_for[len("share:"):], []).append(ev)
            return
        children = self._waiting.pop(ev.id, [])
        if isinstance(problem, Refused):
            self.refused_shares[ev.id] = problem.reason
        else:
            self.graph.add_share(ev)
        for child in children:
            self.catch_up(child)

    # ------------------------------------------------------------------ chains
    def chain_for(self, order: OrderEvent, *, self_purchase: bool) -> ChainResult:
        """The order's chain as of its time, or why it cannot be computed (yet)."""
        share = order.share
        if share is not None and self.graph.index.share_ids.get(share) < 0:
            if share in self.refused_shares:
                return Refused(f"share {share!r} was refused: {self.refused_shares[share]}", GraphError, "share")
            return Missing(f"share:{share}", f"the order's share {share!r} has not been recorded")
        return self.graph.chain_for(order, self_purchase=self_purchase)
