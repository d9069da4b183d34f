"""The compact share index: integer ids and flat arrays for the hot path.

Each share gets an integer index; ``parent``, ``sharer``, ``depth``, ``root`` (the share at depth 0
of its tree), ``second`` (the share at depth 1 on its path, or -1) and ``repeat`` (some person
appears twice on the path root..share) are ``array('i')``/``bytearray`` columns, 4 bytes or less
per share.  They answer "who is the first / last / n-th sharer" in O(1) or O(n), never O(depth),
and are exposed as numpy views for the vectorised batch engine.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from cps_engine.errors import CycleError, SelfReferralError, UnknownReference

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["Interner", "ShareIndex"]


class Interner:
    """Maps string ids to dense integers and back."""

    __slots__ = ("ids", "names")

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.names: list[str] = []

    def add(self, name: str) -> int:
        """The id of ``name``, interning it if new.

        >>> it = Interner()
        >>> it.add("amy"), it.add("bob"), it.add("amy"), it.names
        (0, 1, 0, ['amy', 'bob'])
        """
        names = self.names
        i = self.ids.setdefault(name, len(names))  # one hash probe, new or not
        if i == len(names):
            names.append(name)
        return i

    def get(self, name: str) -> int:
        return self.ids.get(name, -1)

    def __len__(self) -> int:
        return len(self.names)


class ShareIndex:
    """Share forest over integer ids.  Build with :meth:`build`; read the arrays directly."""

    __slots__ = (
        "depth",
        "parent",
        "person_ptr",
        "person_shares",
        "repeat",
        "root",
        "second",
        "share_ids",
        "sharer",
        "tin",
        "tout",
    )

    share_ids: Interner
    parent: array[int]
    sharer: array[int]
    depth: array[int]
    root: array[int]
    second: array[int]
    repeat: bytearray
    tin: array[int]
    tout: array[int]
    person_ptr: array[int]
    person_shares: array[int]

    @classmethod
    def build(
        cls,
        share_ids: Sequence[str],
        sharers: Sequence[int],
        parents: Sequence[str | None],
    ) -> ShareIndex:
        """Build from columns: share id, sharer (person index), parent share id (or None).

        Raises :class:`UnknownReference` for an unknown parent, :class:`SelfReferralError` for a
        share re-shared from itself and :class:`CycleError` for a loop of shares.
        """
        self = cls()
        ids = self.share_ids = Interner()
        lookup = ids.ids = {sid: i for i, sid in enumerate(share_ids)}  # (dict(zip(...)) over-allocates)
        n = len(lookup)
        if n != len(share_ids):
            raise ValueError("share ids must be unique; deduplicate before building the index")
        ids.names = list(share_ids)
        if len(parents) == n:
            # one pass of dict lookups, then vectorised checks; the first bad share in order is reported
            get = lookup.get
            parent = np.array([-1 if p is None else get(p, -2) for p in parents], dtype=np.int64)
            bad = np.flatnonzero((parent == -2) | (parent == np.arange(n)))
            if bad.size:
                i = int(bad[0])
                if parent[i] == -2:
                    raise UnknownReference(f"parent share {parents[i]!r} is not a known share",
                                           record=share_ids[i], field="parent")
                raise SelfReferralError("a share cannot be re-shared from itself",
                                        record=share_ids[i], field="parent")
        else:
            parent = np.full(n, -1, dtype=np.int64)
            for i, p in enumerate(parents):
                if p is not None:
                    j = lookup.get(p)
                    if j is None:
                        raise UnknownReference(f"parent share {p!r} is not a known share",
                                               record=share_ids[i], field="parent")
                    if j == i:
                        raise SelfReferralError("a share cannot be re-shared from itself",
                                                record=share_ids[i], field="parent")
                    parent[i] = j
        sharer = np.asarray(sharers, dtype=np.int64)
        depth, root, second = _forest(parent, share_ids)
        tin, tout = _euler(parent, depth)
        # shares of each person (CSR), sorted by preorder so ancestors come before descendants
        n_people = int(sharer.max()) + 1 if n else 0
        by_person = np.lexsort((tin, sharer)) if n else np.zeros(0, dtype=np.int64)
        ptr = np.zeros(n_people + 1, dtype=np.int64)
        np.cumsum(np.bincount(sharer, minlength=n_people), out=ptr[1:])
        repeat = _repeats(parent, sharer, tin, tout, ptr, by_person)

        def col(a: NDArray[np.int64]) -> array[int]:
            return array("i", a.astype(np.int32).tobytes())

        self.parent, self.sharer, self.depth = col(parent), col(sharer), col(depth)
        self.root, self.second, self.tin, self.tout = col(root), col(second), col(tin), col(tout)
        self.person_ptr, self.person_shares = col(ptr), col(by_person)
        self.repeat = bytearray(repeat.astype(np.uint8).tobytes())
        return self

    def __len__(self) -> int:
        return len(self.parent)

    def np(self, name: str) -> NDArray[np.int32]:
        """Zero-copy numpy view of one int column (``parent``, ``sharer``, ``depth``, ...)."""
        return np.frombuffer(getattr(self, name), dtype=np.int32)

    def path(self, node: int) -> list[int]:
        """Shares from ``node`` up to its root (nearest first).  O(depth): not for the hot path."""
        out = []
        parent = self.parent
        while node >= 0:
            out.append(node)
            node = parent[node]
        return out

    def on_path(self, person: int, node: int) -> bool:
        """Whether ``person`` shared ``node`` or one of its ancestors.  O(shares of person)."""
        ptr = self.person_ptr
        if person < 0 or person + 1 >= len(ptr):
            return False
        t = self.tin[node]
        tin, tout, mine = self.tin, self.tout, self.person_shares
        for k in range(ptr[person], ptr[person + 1]):
            s = mine[k]
            if tin[s] > t:
                break
            if t <= tout[s]:
                return True
        return False

    def nbytes(self) -> int:
        """Bytes held by the array columns (not counting the id dictionary)."""
        cols = (self.parent, self.sharer, self.depth, self.root, self.second, self.tin, self.tout,
                self.person_ptr, self.person_shares)
        return sum(a.itemsize * len(a) for a in cols) + len(self.repeat)


def _forest(parent: NDArray[np.int64], names: Sequence[str]) -> tuple[
        NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Depth, root and depth-1 ancestor of every share, by pointer doubling; refuses cycles."""
    n = len(parent)
    idx = np.arange(n, dtype=np.int64)
    root = _roots(np.where(parent < 0, idx, parent))
    stuck = parent[root] >= 0  # never reached a share without a parent: on or below a cycle
    if stuck.any():
        node = int(np.flatnonzero(stuck)[0])
        seen: set[int] = set()
        while node not in seen:  # walk into the loop itself, to name a share on it
            seen.add(node)
            node = int(parent[node])
        raise CycleError("shares form a cycle through their parents", record=names[node], field="parent")
    depth = _exact_depth(parent)
    # second: the ancestor at depth 1 = the root of the forest cut below depth 1
    second = _roots(np.where((parent < 0) | (depth == 1), idx, parent))
    second = np.where(depth >= 1, second, -1)
    return depth, root, second


def _roots(up: NDArray[np.int64]) -> NDArray[np.int64]:
    """Follow ``up`` (roots point to themselves) to the end, in O(log depth) vector steps."""
    jump = up.copy()
    for _ in range(64):
        nxt = jump[jump]
        if np.array_equal(nxt, jump):
            break
        jump = nxt
    return jump


def _exact_depth(parent: NDArray[np.int64]) -> NDArray[np.int64]:
    """Depth of every share: hops to its root, by pointer doubling with summed distances."""
    n = len(parent)
    idx = np.arange(n, dtype=np.int64)
    jump = np.where(parent < 0, idx, parent)
    dist = (parent >= 0).astype(np.int64)
    while True:
        nxt = jump[jump]
        if np.array_equal(nxt, jump):
            return dist
        dist = dist + dist[jump] * (jump != idx)
        jump = nxt


def _euler(parent: NDArray[np.int64], depth: NDArray[np.int64]) -> tuple[
        NDArray[np.int64], NDArray[np.int64]]:
    """Preorder entry time and last preorder time in the subtree of every share (vectorised by level)."""
    n = len(parent)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    idx = np.arange(n, dtype=np.int64)
    order = np.lexsort((idx, parent, depth))  # by depth, then parent, then id
    bounds = np.searchsorted(depth[order], np.arange(int(depth.max()) + 2))
    size = np.ones(n, dtype=np.int64)
    for d in range(len(bounds) - 2, 0, -1):
        lvl = order[bounds[d]:bounds[d + 1]]
        np.add.at(size, parent[lvl], size[lvl])
    tin = np.zeros(n, dtype=np.int64)
    for d in range(len(bounds) - 1):
        lvl = order[bounds[d]:bounds[d + 1]]
        s = size[lvl]
        excl = np.cumsum(s) - s
        if d == 0:
            tin[lvl] = excl
            continue
        par = parent[lvl]
        first = np.r_[True, par[1:] != par[:-1]]
        group_start = np.maximum.accumulate(np.where(first, np.arange(len(lvl)), 0))
        tin[lvl] = tin[par] + 1 + excl - excl[group_start]
    return tin, tin + size - 1


def _repeats(parent: NDArray[np.int64], sharer: NDArray[np.int64], tin: NDArray[np.int64],
             tout: NDArray[np.int64], ptr: NDArray[np.int64],
             by_person: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Whether any person appears twice on the path root..share, for every share.

    A share is a repeat on its own when one of its sharer's other shares is an ancestor of it
    (a stack sweep over that person's shares in preorder); the flag is then inherited downward.
    """
    n = len(parent)
    own = np.zeros(n, dtype=bool)
    counts = np.diff(ptr)
    for person in np.flatnonzero(counts > 1).tolist():
        stack: list[int] = []
        for s in by_person[ptr[person]:ptr[person + 1]].tolist():
            while stack and tout[stack[-1]] < tin[s]:
                stack.pop()
            if stack:
                own[s] = True
            stack.append(s)
    rep = own
    if own.any():  # OR of ``own`` over all ancestors, by pointer doubling
        idx = np.arange(n, dtype=np.int64)
        jump = np.where(parent < 0, idx, parent)
        rep = own.copy()
        for _ in range(64):
            rep |= rep[jump]
            nxt = jump[jump]
            if np.array_equal(nxt, jump):
                break
            jump = nxt
    return rep
