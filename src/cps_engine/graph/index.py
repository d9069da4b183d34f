"""The compact share index: integer ids and flat arrays, appendable one share at a time.

Each share gets an integer index; ``parent``, ``sharer``, ``depth``, ``root`` (the share at depth 0
of its tree), ``second`` (the share at depth 1 on its path, or -1), ``jump`` (a skew-binary jump
pointer), ``at_us`` (the share's time, or :data:`NO_TIME`) and ``repeat`` (some person appears twice on
the path root..share) are ``array`` columns of 8 bytes or less per share.  Every column of a new share
is known from its parent alone, so :meth:`ShareIndex.append` is O(1) amortised, except ``repeat``,
which asks whether the new sharer already shared an ancestor: O(log depth) per earlier share of that
person *in the same tree* (jump pointers answer "the ancestor at depth d" in O(log depth)).

Columns that only the vectorised batch engine reads (an Euler tour ``tin``/``tout`` and the shares of
each person in preorder, ``person_ptr``/``person_shares``) are built lazily, on first read after the
last append, so the online path never pays for them.

>>> idx = ShareIndex()
>>> idx.append("s1", 0, -1), idx.append("s2", 1, 0), idx.append("s3", 0, 1)
(0, 1, 2)
>>> list(idx.depth), list(idx.root), list(idx.second), bytes(idx.repeat)
([0, 1, 2], [0, 0, 0], [-1, 1, 1], b'\\x00\\x00\\x01')
>>> idx.ancestor_at(2, 0), idx.on_path(1, 2), idx.on_path(1, 0)
(0, True, False)
"""

from __future__ import annotations

import importlib
from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from cps_engine.errors import CycleError, SelfReferralError, UnknownReference

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["NO_TIME", "Interner", "ShareIndex"]

#: ``at_us`` of a share whose time is not known (built from columns without times)
NO_TIME: Final = -(2**62)


class Interner:
    """Maps string ids to dense integers and back.

    Built in bulk from an Arrow dictionary (:meth:`of_arrow`), it keeps only that array: the Python
    list of names and the name -> id dict are built on first use (a lookup by name, an append), so
    a graph built from columns and used by the batch engine never pays for them.
    """

    __slots__ = ("_arrow", "_ids", "_names")

    def __init__(self) -> None:
        self._ids: dict[str, int] | None = {}
        self._names: list[str] | None = []
        self._arrow: Any = None

    @classmethod
    def of_arrow(cls, names: Any) -> Interner:
        """From an Arrow string array of distinct names (id = position)."""
        it = cls()
        it._ids = it._names = None
        it._arrow = names
        return it

    @property
    def names(self) -> list[str]:
        """Names by id (built from the Arrow dictionary on first use)."""
        if self._names is None:
            self._names = self._arrow.to_pylist()
        return self._names

    @names.setter
    def names(self, value: list[str]) -> None:
        self._names, self._ids, self._arrow = value, None, None

    @property
    def ids(self) -> dict[str, int]:
        """Name -> id (built on first use)."""
        if self._ids is None:
            names = self.names
            self._ids = dict(zip(names, range(len(names)), strict=True))
        return self._ids

    @ids.setter
    def ids(self, value: dict[str, int]) -> None:
        self._ids = value

    def arrow(self) -> Any:
        """The names as an Arrow ``large_string`` array (index = id), or None without pyarrow;
        kept, and extended by the names added since."""
        cached = self._arrow
        n = len(self)
        if cached is not None and len(cached) == n:
            return cached
        try:
            pa: Any = importlib.import_module("pyarrow")
        except ImportError:  # pragma: no cover - exercised without pyarrow
            return None
        names = self.names
        if cached is None:
            arr = pa.array(names, type=pa.large_string())
        else:  # append-only: only the tail is new
            arr = pa.concat_arrays([cached, pa.array(names[len(cached):], type=pa.large_string())])
        self._arrow = arr
        return arr

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
        if self._names is None:
            return len(self._arrow)
        return len(self._names)


class _Derived:
    """The lazily built batch columns, valid for the first ``n`` shares."""

    __slots__ = ("n", "person_ptr", "person_shares", "tin", "tout")

    def __init__(self, n: int, tin: array[int], tout: array[int], ptr: array[int], shares: array[int]) -> None:
        self.n, self.tin, self.tout, self.person_ptr, self.person_shares = n, tin, tout, ptr, shares


def _col(a: NDArray[np.int64]) -> array[int]:
    return array("i", a.astype(np.int32).tobytes())


class ShareIndex:
    """Share forest over integer ids: grow it with :meth:`append` (or :meth:`build` in bulk) and read
    the arrays directly."""

    __slots__ = (
        "_derived",
        "_multi",
        "at_us",
        "depth",
        "jump",
        "parent",
        "person_first",
        "repeat",
        "root",
        "second",
        "share_ids",
        "sharer",
    )

    def __init__(self) -> None:
        self.share_ids = Interner()
        self.parent: array[int] = array("i")
        self.sharer: array[int] = array("i")
        self.depth: array[int] = array("i")
        self.root: array[int] = array("i")
        self.second: array[int] = array("i")
        self.jump: array[int] = array("i")
        self.at_us: array[int] = array("q")
        self.repeat = bytearray()
        #: one share of each person (index = person id), -1 for people without shares
        self.person_first: array[int] = array("i")
        #: the shares of each person who shared more than once, grouped by root share
        self._multi: dict[int, dict[int, list[int]]] = {}
        self._derived: _Derived | None = None

    # ------------------------------------------------------------------ growing
    def append(self, share_id: str, sharer: int, parent: int, at_us: int = NO_TIME) -> int:
        """Add one share (``parent`` is a share index or -1) and return its index.  O(1) amortised.

        The caller checks that ``share_id`` is new and ``parent`` exists (``ShareGraph.add_share``).
        """
        n = len(self.parent)
        ids = self.share_ids
        ids.ids[share_id] = n
        ids.names.append(share_id)
        if parent < 0:
            depth, root, second, jump, rep = 0, n, -1, n, 0
        else:
            dep, jmp = self.depth, self.jump
            depth = dep[parent] + 1
            root = self.root[parent]
            second = n if depth == 1 else self.second[parent]
            j = jmp[parent]
            jump = jmp[j] if dep[parent] - dep[j] == dep[j] - dep[jmp[j]] else parent
            rep = 1 if self.repeat[parent] or self.on_path(sharer, parent) else 0
        self.parent.append(parent)
        self.sharer.append(sharer)
        self.depth.append(depth)
        self.root.append(root)
        self.second.append(second)
        self.jump.append(jump)
        self.at_us.append(at_us)
        self.repeat.append(rep)
        self._index_person(sharer, n, root)
        return n

    def _index_person(self, person: int, node: int, root: int) -> None:
        first = self.person_first
        if person >= len(first):
            first.extend([-1] * (person + 1 - len(first)))
        prev = first[person]
        if prev < 0:
            first[person] = node
            return
        groups = self._multi.get(person)
        if groups is None:
            groups = self._multi[person] = {self.root[prev]: [prev]}
        groups.setdefault(root, []).append(node)

    @classmethod
    def build(
        cls,
        share_ids: Sequence[str],
        sharers: Sequence[int] | NDArray[np.int64],
        parents: Sequence[str | None],
        at_us: Sequence[int] | None = None,
    ) -> ShareIndex:
        """Build from columns in bulk (vectorised): share id, sharer (person index), parent share id
        (or None), and optionally each share's time in µs.  The result is the same as appending the
        shares one by one, parents first.

        Raises :class:`UnknownReference` for an unknown parent, :class:`SelfReferralError` for a
        share re-shared from itself and :class:`CycleError` for a loop of shares.
        """
        self = cls()
        fast = _encode_shares(share_ids, parents)
        if fast is not None:
            self.share_ids, parent = fast
            n = len(parent)
        else:
            ids = self.share_ids
            lookup = ids.ids = {sid: i for i, sid in enumerate(share_ids)}  # (dict(zip(...)) over-allocates)
            n = len(lookup)
            if n != len(share_ids):
                raise ValueError("share ids must be unique; deduplicate before building the index")
            ids.names = list(share_ids)
            ids.ids = lookup
            parent = _parents(parents, share_ids, lookup)
        if len(parent) != n:
            raise ValueError("share_ids and parents must have the same length")
        bad = np.flatnonzero((parent == -2) | (parent == np.arange(n)))
        if bad.size:
            i = int(bad[0])
            if parent[i] == -2:
                raise UnknownReference(f"parent share {_item(parents, i)!r} is not a known share",
                                       record=_item(share_ids, i), field="parent")
            raise SelfReferralError("a share cannot be re-shared from itself", record=_item(share_ids, i),
                                    field="parent")
        sharer = np.asarray(sharers, dtype=np.int64)
        if len(sharer) != n:
            raise ValueError("share_ids and sharers must have the same length")
        depth, root, second = _forest(parent, self.share_ids)
        tin, tout = _euler(parent, depth)
        n_people = int(sharer.max()) + 1 if n else 0
        ptr, by_person = _person_csr(sharer, tin, n_people)
        repeat = _repeats(parent, sharer, tin, tout, ptr, by_person)
        self.parent, self.sharer, self.depth = _col(parent), _col(sharer), _col(depth)
        self.root, self.second, self.jump = _col(root), _col(second), _col(_jumps(parent, depth))
        self.at_us = array("q", np.asarray(at_us if at_us is not None else np.full(n, NO_TIME), dtype=np.int64)
                           .tobytes())
        if len(self.at_us) != n:
            raise ValueError("at_us must have one time per share")
        self.repeat = bytearray(repeat.astype(np.uint8).tobytes())
        first = np.full(n_people, -1, dtype=np.int64)
        first[sharer[::-1]] = np.arange(n - 1, -1, -1)  # each person's first share by index
        self.person_first = _col(first)
        counts = np.diff(ptr)
        for person in np.flatnonzero(counts > 1).tolist():
            groups: dict[int, list[int]] = {}
            for s in sorted(by_person[ptr[person]:ptr[person + 1]].tolist()):
                groups.setdefault(int(root[s]), []).append(s)
            self._multi[person] = groups
        self._derived = _Derived(n, _col(tin), _col(tout), _col(ptr), _col(by_person))
        return self

    # ------------------------------------------------------------------ queries
    def __len__(self) -> int:
        return len(self.parent)

    def ancestor_at(self, node: int, depth: int) -> int:
        """The ancestor of ``node`` at ``depth`` (``node`` itself at its own depth).  O(log depth).

        >>> idx = ShareIndex()
        >>> for i in range(100):
        ...     _ = idx.append(f"s{i}", i, i - 1)
        >>> idx.ancestor_at(99, 0), idx.ancestor_at(99, 37), idx.ancestor_at(5, 5)
        (0, 37, 5)
        """
        dep, jmp, parent = self.depth, self.jump, self.parent
        if not 0 <= depth <= dep[node]:
            raise ValueError(f"depth {depth} is not on the path of share {node} (depth {dep[node]})")
        while dep[node] > depth:
            j = jmp[node]
            node = j if dep[j] >= depth else parent[node]
        return node

    def is_ancestor(self, a: int, node: int) -> bool:
        """Whether share ``a`` is ``node`` or one of its ancestors.  O(log depth)."""
        d = self.depth[a]
        return self.root[a] == self.root[node] and d <= self.depth[node] and self.ancestor_at(node, d) == a

    def on_path(self, person: int, node: int) -> bool:
        """Whether ``person`` shared ``node`` or one of its ancestors.  O(log depth) per share of that
        person in the same tree."""
        first = self.person_first
        if person < 0 or person >= len(first) or first[person] < 0:
            return False
        groups = self._multi.get(person)
        if groups is None:
            return self.is_ancestor(first[person], node)
        return any(self.is_ancestor(s, node) for s in groups.get(self.root[node], ()))

    def path(self, node: int) -> list[int]:
        """Shares from ``node`` up to its root (nearest first).  O(depth): not for the hot path."""
        out = []
        parent = self.parent
        while node >= 0:
            out.append(node)
            node = parent[node]
        return out

    def time_known(self, node: int) -> bool:
        return self.at_us[node] != NO_TIME

    # ------------------------------------------------------------------ batch columns (lazy)
    def _batch(self) -> _Derived:
        d = self._derived
        n = len(self.parent)
        if d is None or d.n != n:
            parent, sharer = self.np("parent").astype(np.int64), self.np("sharer").astype(np.int64)
            depth = self.np("depth").astype(np.int64)
            tin, tout = _euler(parent, depth)
            ptr, by_person = _person_csr(sharer, tin, len(self.person_first))
            d = self._derived = _Derived(n, _col(tin), _col(tout), _col(ptr), _col(by_person))
        return d

    @property
    def tin(self) -> array[int]:
        """Preorder entry time of each share (built on first read after an append)."""
        return self._batch().tin

    @property
    def tout(self) -> array[int]:
        """Last preorder time in each share's subtree."""
        return self._batch().tout

    @property
    def person_ptr(self) -> array[int]:
        """CSR offsets into :attr:`person_shares` by person id."""
        return self._batch().person_ptr

    @property
    def person_shares(self) -> array[int]:
        """Each person's shares in preorder (ancestors before descendants)."""
        return self._batch().person_shares

    def np(self, name: str) -> NDArray[np.int32]:
        """Zero-copy numpy view of one int32 column (``parent``, ``sharer``, ``depth``, ``tin``, ...)."""
        return np.frombuffer(getattr(self, name), dtype=np.int32)

    def nbytes(self) -> int:
        """Bytes held by the array columns (not counting the id dictionary)."""
        cols = (self.parent, self.sharer, self.depth, self.root, self.second, self.jump, self.at_us,
                self.person_first)
        extra = 0
        if self._derived is not None:
            d = self._derived
            extra = sum(a.itemsize * len(a) for a in (d.tin, d.tout, d.person_ptr, d.person_shares))
        return sum(a.itemsize * len(a) for a in cols) + len(self.repeat) + extra


def _pyarrow() -> Any:
    try:
        pa = importlib.import_module("pyarrow")
        importlib.import_module("pyarrow.compute")
    except ImportError:  # pragma: no cover - exercised without pyarrow
        return None
    return pa


def arrow_strings(values: Any) -> Any:
    """``values`` (a list, numpy array, pandas or polars Series, Arrow array) as one Arrow
    ``large_string`` array, nulls kept; None without pyarrow or when the values are not all strings."""
    pa = _pyarrow()
    if pa is None:
        return None
    try:
        if not isinstance(values, (pa.Array, pa.ChunkedArray)) and type(values).__module__.startswith("polars"):
            values = values.to_arrow()
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
        if isinstance(values, pa.Array):
            arr = values.dictionary_decode() if pa.types.is_dictionary(values.type) else values
        elif type(values).__module__.startswith("pandas"):
            arr = pa.array(values, from_pandas=True)
        else:
            arr = pa.array(values, type=pa.large_string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return None
    t = arr.type
    if pa.types.is_large_string(t):
        return arr
    if pa.types.is_string(t) or pa.types.is_string_view(t) or pa.types.is_null(t):
        return arr.cast(pa.large_string())
    return None


def _item(values: Any, i: int) -> Any:
    """``values[i]`` as a Python value (Arrow scalars unwrapped)."""
    v = values[i]
    as_py = getattr(v, "as_py", None)
    return as_py() if as_py is not None else v


def _encode_shares(share_ids: Any, parents: Any) -> tuple[Interner, NDArray[np.int64]] | None:
    """The share ids' :class:`Interner` and each parent's index (-1: a root, -2: unknown) by one
    Arrow dictionary encoding of ids and parents together (ids come first, so share ``i`` gets code
    ``i`` exactly when no id repeats); None without pyarrow or for values that are not strings."""
    ids = arrow_strings(share_ids)
    if ids is None or ids.null_count:
        return None
    par = arrow_strings(parents)
    if par is None:
        return None
    pa = _pyarrow()
    n = len(ids)
    enc = pa.concat_arrays([ids, par]).dictionary_encode()
    codes = np.asarray(enc.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
    own = codes[:n]
    if not np.array_equal(own, np.arange(n)):
        counts = np.bincount(own, minlength=1)
        dup = int(np.flatnonzero(counts > 1)[0])  # codes follow first appearance: the earliest repeated id
        from cps_engine.errors import DuplicateEvent

        raise DuplicateEvent("share id used twice", record=str(enc.dictionary[dup].as_py()), field="id")
    parent = codes[n:]
    parent[parent >= n] = -2
    return Interner.of_arrow(enc.dictionary.slice(0, n)), parent


def _parents(parents: Sequence[str | None], share_ids: Sequence[str], lookup: dict[str, int]) -> NDArray[np.int64]:
    """Index of every parent share id (-1: a root, -2: unknown), by one Arrow hash lookup when
    pyarrow is installed."""
    pa: Any = None
    try:
        pa = importlib.import_module("pyarrow")
        pc: Any = importlib.import_module("pyarrow.compute")
    except ImportError:  # pragma: no cover - exercised without pyarrow
        pa = None
    if pa is not None and len(parents):
        try:
            arr = pa.array(parents, type=pa.large_string())
            found = pc.index_in(arr, value_set=pa.array(share_ids, type=pa.large_string()))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
        else:
            out = np.asarray(found.fill_null(-2).to_numpy(zero_copy_only=False), dtype=np.int64)
            if arr.null_count:
                out[np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)] = -1
            return out
    get = lookup.get
    return np.array([-1 if p is None else get(p, -2) for p in parents], dtype=np.int64)


def _person_csr(sharer: NDArray[np.int64], tin: NDArray[np.int64], n_people: int) -> tuple[
        NDArray[np.int64], NDArray[np.int64]]:
    """Shares of each person (CSR), sorted by preorder so ancestors come before descendants."""
    n = len(sharer)
    by_person = np.argsort(sharer * max(n, 1) + tin, kind="stable") if n else np.zeros(0, dtype=np.int64)
    ptr = np.zeros(n_people + 1, dtype=np.int64)
    if n:
        np.cumsum(np.bincount(sharer, minlength=n_people), out=ptr[1:])
    return ptr, by_person


def _jump_depths(max_depth: int) -> NDArray[np.int64]:
    """Depth of the jump target of a share at each depth (skew-binary jump pointers depend on the
    depth alone): ``jd[d] = jd[jd[d-1]]`` when the last two jumps from ``d - 1`` are equal, else
    ``d - 1``."""
    jd = [0] * (max_depth + 1)
    for d in range(1, max_depth + 1):
        p = d - 1
        j = jd[p]
        jd[d] = jd[j] if p - j == j - jd[j] else p
    return np.asarray(jd, dtype=np.int64)


def _jumps(parent: NDArray[np.int64], depth: NDArray[np.int64]) -> NDArray[np.int64]:
    """The jump pointer of every share: its ancestor at ``jd[depth]``, by binary lifting."""
    n = len(parent)
    idx = np.arange(n, dtype=np.int64)
    if n == 0:
        return idx
    k = depth - _jump_depths(int(depth.max()))[depth]  # how many steps up
    cur = idx.copy()
    up = np.where(parent < 0, idx, parent)
    bit = 0
    while (k >> bit).any():
        sel = ((k >> bit) & 1).astype(bool)
        cur[sel] = up[cur[sel]]
        up = up[up]
        bit += 1
    return cur
def _forest(parent: NDArray[np.int64], names: Interner) -> tuple[
        NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Depth, root and depth-1 ancestor of every share, by pointer doubling; refuses cycles."""
    n = len(parent)
    idx = np.arange(n, dtype=np.int64)
    root, depth, stuck = _root_depth(parent)
    if stuck.size:  # never reached a share without a parent: on or below a cycle
        node = int(stuck.min())
        seen: set[int] = set()
        while node not in seen:  # walk into the loop itself, to name a share on it
            seen.add(node)
            node = int(parent[node])
        raise CycleError("shares form a cycle through their parents", record=names.names[node], field="parent")
    # second: the ancestor at depth 1 = the root of the forest cut below depth 1
    second = _roots(np.where((parent < 0) | (depth == 1), idx, parent))
    second = np.where(depth >= 1, second, -1)
    return depth, root, second


def _root_depth(parent: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Root and depth (hops to the root) of every node of the forest ``parent`` (-1: a root), by
    pointer doubling over the nodes not yet done (a node is done when it points at a root), so a
    deep chain costs O(log depth) steps over its own nodes only.  Also the nodes that never reach
    a root (on or below a cycle; empty for a forest)."""
    n = len(parent)
    idx = np.arange(n, dtype=np.int64)
    has = parent >= 0
    jump = np.where(has, parent, idx)
    dist = has.astype(np.int64)
    active = np.flatnonzero(has)
    active = active[has[jump[active]]]
    for _ in range(64):
        if not active.size:
            break
        j = jump[active]
        dist[active] += dist[j]
        jump[active] = jump[j]
        active = active[has[jump[active]]]
    return jump, dist, active


def _roots(up: NDArray[np.int64]) -> NDArray[np.int64]:
    """Follow ``up`` (roots point to themselves) to the end, in O(log depth) vector steps over the
    nodes not yet done."""
    jump = up.copy()
    active = np.flatnonzero(jump != np.arange(len(jump)))
    for _ in range(64):
        nxt = jump[jump[active]]
        moved = nxt != jump[active]
        jump[active] = nxt
        active = active[moved]
        if not active.size:
            break
    return jump


def _exact_depth(parent: NDArray[np.int64]) -> NDArray[np.int64]:
    """Depth of every share: hops to its root, by pointer doubling with summed distances."""
    return _root_depth(parent)[1]


def _euler(parent: NDArray[np.int64], depth: NDArray[np.int64]) -> tuple[
        NDArray[np.int64], NDArray[np.int64]]:
    """Preorder entry time and last preorder time in the subtree of every share (children in id
    order), with no Python loop over the depth of a chain.

    Runs of only children (a share whose parent has exactly one child) are collapsed first, by
    pointer jumping: inside a run, preorder times just count down the run and every share ends
    where the run's head ends.  The level-by-level sweep then runs over the collapsed forest, whose
    depth counts only the branching shares on a path (one level for a 100k-deep chain).
    """
    n = len(parent)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    idx = np.arange(n, dtype=np.int64)
    has_parent = parent >= 0
    kids = np.bincount(parent[has_parent], minlength=n)
    only = has_parent & (kids[np.where(has_parent, parent, 0)] == 1)  # the only child of its parent
    head = _roots(np.where(only, parent, idx))  # top of each run of only children
    heads = np.flatnonzero(~only)
    offset = depth - depth[head]
    run_len = np.zeros(n, dtype=np.int64)
    np.maximum.at(run_len, head, offset + 1)
    # the collapsed forest: a head's parent run is the run of its parent share
    ph = np.where(has_parent[heads], head[np.where(has_parent[heads], parent[heads], 0)], -1)
    slot = np.full(n, -1, dtype=np.int64)
    slot[heads] = np.arange(len(heads))
    cparent = np.where(ph >= 0, slot[np.maximum(ph, 0)], -1)
    cdepth = _exact_depth(cparent)
    ctin, csize = _euler_runs(cparent, cdepth, run_len[heads])
    tin = ctin[slot[head]] + offset
    tout = ctin[slot[head]] + csize[slot[head]] - 1
    return tin, tout


def _euler_runs(parent: NDArray[np.int64], depth: NDArray[np.int64], length: NDArray[np.int64]) -> tuple[
        NDArray[np.int64], NDArray[np.int64]]:
    """Preorder entry time of the head of every run and the size of its subtree (shares), where
    run ``i`` holds ``length[i]`` shares and its children hang below its last share: one vector step
    per level of the collapsed forest."""
    n = len(parent)
    order = np.argsort(depth * (n + 1) + (parent + 1), kind="stable")  # by depth, parent, then id
    bounds = np.searchsorted(depth[order], np.arange(int(depth.max()) + 2))
    size = length.copy()
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
        tin[lvl] = tin[par] + length[par] + excl - excl[group_start]
    return tin, size


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
