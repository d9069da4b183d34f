"""The vectorised twin of ``engine.compute``: chains, awards and rounding over numpy arrays.

Orders are classified by their chain:

- a share chain with no person repeated on its path is read from the compact index in O(1)
  (first sharer: cached roots) or O(levels) vector steps (last sharer, multi-level);
- a binding chain (no share, the buyer bound at the order's time) is walked upline by upline, one
  vector step per level, each step a binary search over every binding interval (:class:`BindIndex`);
- an order with neither has the empty chain (or only the buyer, when self-purchase earns);
- everything else — share paths where a person repeats, orders whose time is not known as a zoned
  timestamp, per-payee overrides, product/category rates on orders with lines, eligibility
  filters, fixed amounts, pool policies, plugin policies — is computed by the per-order engine, so
  results are identical by construction.

Money stays exact: a rate ``p/q`` becomes ``(base * p) // q`` (with the policy's rounding mode) in
int64 when ``max(base) * p`` fits, else in Python integers.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from cps_engine.batch._strings import Strings, pyarrow
from cps_engine.engine import compute
from cps_engine.errors import CpsError, UnknownReference
from cps_engine.graph import NEVER, ShareGraph
from cps_engine.graph.binding import to_micros
from cps_engine.money import MAX_MINOR, Rounding, apply_rate, format_rate
from cps_engine.policies.base import PolicyConfig
from cps_engine.policies.capped_multilevel import CappedMultilevel
from cps_engine.policies.compliant import Compliant
from cps_engine.policies.first_sharer import FirstSharer
from cps_engine.policies.last_sharer import LastSharer

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from cps_engine.batch._orders import OrderColumns

__all__ = ["GraphArrays", "Lines", "graph_arrays", "run"]

SELF = -2  # payee: the buyer of the order (who may be unknown to the graph)
NONE = -1  # no payee
_I64 = np.int64


# ---------------------------------------------------------------------------- graph arrays
_NEVER = NEVER  # the graph's "never" (µs)


@dataclass
class GraphArrays:
    """numpy views and derived arrays of one graph, built once and cached per graph."""

    parent: NDArray[np.int32]
    sharer: NDArray[np.int32]
    depth: NDArray[np.int32]
    root: NDArray[np.int32]
    second: NDArray[np.int32]
    repeat: NDArray[np.bool_]
    names: NDArray[np.object_]
    #: time (µs) from which each person takes part (first share or first bound downline); graph.NEVER: never
    participant_since: NDArray[np.int64]
    bound: NDArray[np.bool_]
    # "is person b on the path root..node" for paths without repeats, by one binary search:
    # (owner, tin) keys of every share sorted, and the running max of (owner, tout)
    path_key: NDArray[np.int64]
    path_max: NDArray[np.int64]
    path_owner: NDArray[np.int32]
    tin: NDArray[np.int32]
    tout: NDArray[np.int32]
    #: the one share of people who shared once (-1 otherwise), and who shared more than once
    solo: NDArray[np.int64]
    many: NDArray[np.bool_]
    span: int
    share_ids: dict[str, int]
    share_names: list[str]
    people_ids: dict[str, int]
    people_names: list[str]
    arrow_sets: dict[str, Any]
    graph: weakref.ReferenceType[ShareGraph]
    version: int
    _people: Strings | None = None
    _binds: BindIndex | None = None

    @property
    def binds(self) -> BindIndex:
        """The binding intervals, indexed (built on first use)."""
        if self._binds is None:
            graph = self.graph()
            assert graph is not None
            self._binds = BindIndex(graph)
        return self._binds

    @property
    def people(self) -> Strings:
        """People's names as a string column (index = person id)."""
        if self._people is None:
            self._people = Strings.of(self.names)
        return self._people


class BindIndex:
    """Every accepted binding interval ``[start, end)`` of every user, searchable in one vector
    step: "whose downline was user ``u`` at time ``t``" for many (u, t) at once."""

    def __init__(self, graph: ShareGraph) -> None:
        store = graph._bindings
        owner: list[int] = []
        start: list[int] = []
        end: list[int] = []
        up: list[int] = []
        for u in sorted(store.users()):
            for s, e, a, _ in store.intervals(u):  # in time order, never overlapping
                owner.append(u)
                start.append(s)
                end.append(e)
                up.append(a)
        self.owner = np.asarray(owner, dtype=_I64)
        self.end = np.asarray(end, dtype=_I64)
        self.up = np.asarray(up, dtype=_I64)
        starts = np.asarray(start, dtype=_I64)
        self.times = np.unique(starts)
        self.width = len(self.times) + 1
        self.key = self.owner * self.width + np.searchsorted(self.times, starts)

    def upline(self, user: NDArray[np.int64], t: NDArray[np.int64]) -> NDArray[np.int64]:
        """Upline of ``user[i]`` at ``t[i]`` (µs), or -1 (``BindingStore.upline``, vectorised)."""
        out = np.full(len(user), -1, dtype=_I64)
        if not len(self.key) or not len(user):
            return out
        rank = np.searchsorted(self.times, t, side="right") - 1  # last start at or before t
        at = np.searchsorted(self.key, user * self.width + rank, side="right") - 1
        atc = np.maximum(at, 0)
        ok = (at >= 0) & (self.owner[atc] == user) & (t < self.end[atc]) & (user >= 0)
        out[ok] = self.up[atc[ok]]
        return out


_CACHE: weakref.WeakKeyDictionary[ShareGraph, GraphArrays] = weakref.WeakKeyDictionary()


def graph_arrays(graph: ShareGraph) -> GraphArrays:
    """The cached :class:`GraphArrays` of ``graph`` (built on first use: O(shares + people))."""
    hit = _CACHE.get(graph)
    if hit is not None and hit.version == graph.version:
        return hit
    idx = graph.index
    n_people = graph.n_people
    names = np.empty(n_people, dtype=object)
    names[:] = graph.people
    ptr = idx.np("person_ptr").astype(_I64)
    counts = np.zeros(n_people, dtype=_I64)
    if len(ptr) > 1:
        k = min(len(ptr) - 1, n_people)
        counts[:k] = np.diff(ptr)[:k]
    since = graph.participant_since()  # shares without times count from the beginning
    store = graph._bindings
    bound = np.zeros(n_people, dtype=bool)
    bound[[u for u in store.users() if 0 <= u < n_people]] = True
    tin, tout, sharer = idx.np("tin"), idx.np("tout"), idx.np("sharer")
    span = len(idx) + 1
    shares = idx.np("person_shares")
    owner = sharer[shares]
    key = owner.astype(_I64) * span + tin[shares]
    reach = np.maximum.accumulate(owner.astype(_I64) * span + tout[shares]) if len(shares) else key
    solo = np.full(n_people, -1, dtype=_I64)
    once = np.flatnonzero(counts == 1)
    solo[once] = shares[ptr[once]]
    repeat = np.frombuffer(idx.repeat, dtype=np.uint8).astype(bool) if len(idx) else np.zeros(0, dtype=bool)
    arrays = GraphArrays(
        parent=idx.np("parent"), sharer=sharer, depth=idx.np("depth"), root=idx.np("root"),
        second=idx.np("second"), repeat=repeat, names=names, participant_since=since, bound=bound,
        path_key=key, path_max=reach, path_owner=owner, tin=tin, tout=tout, solo=solo, many=counts > 1,
        span=span,
        share_ids=idx.share_ids.ids, share_names=idx.share_ids.names, people_ids=graph._people.ids,
        people_names=graph.people, arrow_sets={}, graph=weakref.ref(graph), version=graph.version,
    )
    _CACHE[graph] = arrays
    return arrays


def _lookup(ga: GraphArrays, which: str, values: Strings) -> NDArray[np.int64]:
    """Index of each value in the graph's share ids (``which='share'``) or people (``'people'``),
    -1 when absent or missing.  Arrow's hash lookup when pyarrow is installed, else a dict."""
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=_I64)
    pa = pyarrow()
    arr = values.arrow if pa is not None else None
    if arr is not None:
        vs = ga.arrow_sets.get(which)
        if vs is None:
            names = ga.share_names if which == "share" else ga.people_names
            vs = ga.arrow_sets[which] = pa.array(names, type=pa.large_string())
        found = pa.compute.index_in(arr, value_set=vs).fill_null(-1)
        return np.asarray(found.to_numpy(zero_copy_only=False), dtype=_I64)
    get = (ga.share_ids if which == "share" else ga.people_ids).get
    return np.fromiter((get(v, -1) if isinstance(v, str) else -1 for v in values.objects.tolist()), dtype=_I64,
                       count=n)


def _on_path(ga: GraphArrays, buyer: NDArray[np.int64], node: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Whether ``buyer[i]`` shared ``node[i]`` or one of its ancestors: an interval test when the
    buyer shared once, one binary search when more than once."""
    out = np.zeros(len(node), dtype=bool)
    ok = (buyer >= 0) & (node >= 0)
    if not ok.any() or len(ga.path_key) == 0:
        return out
    rows = np.flatnonzero(ok)
    b = buyer[rows]
    t = ga.tin[node[rows]]
    s = ga.solo[b]
    one = s >= 0
    sc = np.where(one, s, 0)
    out[rows] = one & (ga.tin[sc] <= t) & (t <= ga.tout[sc])
    many = np.flatnonzero(ga.many[b])
    if len(many):
        bm, tm = b[many], t[many].astype(_I64)
        at = np.searchsorted(ga.path_key, bm * ga.span + tm, side="right") - 1
        valid = at >= 0
        atc = np.where(valid, at, 0)
        out[rows[many]] = valid & (ga.path_owner[atc] == bm) & (ga.path_max[atc] - bm * ga.span >= tm)
    return out


# ---------------------------------------------------------------------------- lines
@dataclass
class Lines:
    """Commission lines as columns; ``payee`` holds person ids, :data:`SELF` or names."""

    pos: NDArray[np.int64]
    level: NDArray[np.int64]
    payee: NDArray[Any]
    rate: NDArray[np.int64]  # index into the run's rate table
    amount: NDArray[np.int64] | None = None

    @classmethod
    def empty(cls) -> Lines:
        z = np.zeros(0, dtype=_I64)
        return cls(z, z.copy(), z.copy(), z.copy(), z.copy())

    def take(self, keep: NDArray[np.bool_]) -> Lines:
        return Lines(self.pos[keep], self.level[keep], self.payee[keep], self.rate[keep],
                     None if self.amount is None else self.amount[keep])


class _Rates:
    """The distinct rates of one run (a policy pays a handful), indexed by small ints."""

    def __init__(self) -> None:
        self.values: list[Fraction] = []
        self._index: dict[Fraction, int] = {}

    def add(self, rate: Fraction) -> int:
        i = self._index.get(rate)
        if i is None:
            i = self._index[rate] = len(self.values)
            self.values.append(rate)
        return i

    def texts(self) -> Strings:
        return Strings.of([format_rate(r) for r in self.values])


def _ceiling(policy: PolicyConfig) -> Fraction:
    return min(policy.cap, Fraction(1)) if policy.cap is not None else Fraction(1)


def _capped(rates: list[Fraction], ceiling: Fraction) -> list[Fraction]:
    """``PolicyConfig.capped`` on bare rates: scaled by ``ceiling / total`` when above it."""
    total = sum(rates, Fraction(0))
    if total <= ceiling or total == 0:
        return rates
    factor = ceiling / total
    return [r * factor for r in rates]


# ---------------------------------------------------------------------------- policy kernels
@dataclass
class _Chains:
    """The vectorisable orders: positions, share node (-1: no share), buyer id, and for binding
    chains (``bind``) the order's time in µs.  No share and no binding: the empty chain."""

    pos: NDArray[np.int64]
    node: NDArray[np.int64]
    buyer: NDArray[np.int64]
    bind: NDArray[np.bool_]
    t: NDArray[np.int64]

    def sub(self, mask: NDArray[np.bool_]) -> _Chains:
        return _Chains(self.pos[mask], self.node[mask], self.buyer[mask], self.bind[mask], self.t[mask])


def _bind_walk(ga: GraphArrays, ch: _Chains, rows: NDArray[np.int64], depth: int | None
               ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64] | None]:
    """Walk the binding chains of ``rows`` up to ``depth`` levels (all when None): per row the
    number of uplines found, the last one, and (with a depth) the ``rows × depth`` grid of them."""
    bi = ga.binds
    found = np.zeros(len(rows), dtype=_I64)
    last = np.full(len(rows), NONE, dtype=_I64)
    grid = np.full((len(rows), depth), NONE, dtype=_I64) if depth is not None else None
    cur = ch.buyer[rows].copy()
    t = ch.t[rows]
    live = np.arange(len(rows), dtype=_I64) if depth is None or depth > 0 else np.zeros(0, dtype=_I64)
    while live.size:
        a = bi.upline(cur[live], t[live])
        live = live[a >= 0]
        a = a[a >= 0]
        if grid is not None:
            grid[live, found[live]] = a
        found[live] += 1
        last[live] = a
        cur[live] = a
        if depth is not None:
            live = live[found[live] < depth]
    return found, last, grid


def _single(ch: _Chains, payee: NDArray[np.int64], level: NDArray[np.int64], rate: Fraction,
            rates: _Rates) -> Lines:
    keep = payee != NONE  # zero-rate lines stay until the override check; their amount is 0
    r = rates.add(rate)
    return Lines(ch.pos[keep], level[keep], payee[keep], np.full(int(keep.sum()), r, dtype=_I64))


def _first_sharer(ga: GraphArrays, ch: _Chains, policy: FirstSharer, rates: _Rates) -> Lines:
    node, b = ch.node, ch.buyer
    selfp = policy.self_purchase
    has = node >= 0
    nd = np.where(has, node, 0)
    payee = np.full(len(node), SELF if selfp else NONE, dtype=_I64)
    level = np.ones(len(node), dtype=_I64)
    if len(ga.parent):
        top = ga.sharer[ga.root[nd]].astype(_I64)
        sec = ga.second[nd].astype(_I64)
        top_is_buyer = top == b
        alt = np.where(sec >= 0, ga.sharer[np.where(sec >= 0, sec, 0)].astype(_I64), SELF if selfp else NONE)
        first = np.where(top_is_buyer, alt, top)
        payee = np.where(has, first, payee)
        length = ga.depth[nd].astype(_I64) + 1 - _on_path(ga, b, np.where(has, node, -1)) + int(selfp)
        level = np.where(has, length, level)
    rows = np.flatnonzero(ch.bind)
    if len(rows):  # chain[0] of a binding chain: the top upline; its level is the chain's length
        found, top, _ = _bind_walk(ga, ch, rows, None)
        payee[rows] = np.where(found > 0, top, SELF if selfp else NONE)
        level[rows] = np.where(found > 0, found + int(selfp), 1)
    assert isinstance(policy.rate, Fraction)
    return _single(ch, payee, level, min(policy.rate, _ceiling(policy)), rates)


def _last_sharer(ga: GraphArrays, ch: _Chains, policy: LastSharer, rates: _Rates) -> Lines:
    node, b = ch.node, ch.buyer
    n = len(node)
    if policy.self_purchase:
        payee = np.full(n, SELF, dtype=_I64)
    else:
        payee = np.full(n, NONE, dtype=_I64)
        has = node >= 0
        if has.any():
            nd = node[has]
            near = ga.sharer[nd].astype(_I64)
            up = ga.parent[nd].astype(_I64)
            upper = np.where(up >= 0, ga.sharer[np.where(up >= 0, up, 0)].astype(_I64), NONE)
            payee[has] = np.where(near != b[has], near, upper)
        rows = np.flatnonzero(ch.bind)
        if len(rows):
            payee[rows] = ga.binds.upline(b[rows], ch.t[rows])
    assert isinstance(policy.rate, Fraction)
    return _single(ch, payee, np.ones(n, dtype=_I64), min(policy.rate, _ceiling(policy)), rates)


def _levels(ga: GraphArrays, ch: _Chains, depth: int, selfp: bool) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Payees of levels 1..depth (``n × depth``, NONE-padded) and the number found per order."""
    n = len(ch.node)
    grid = np.full((n, depth), NONE, dtype=_I64)
    found = np.zeros(n, dtype=_I64)
    if selfp:
        grid[:, 0] = SELF
        found[:] = 1
    cur = ch.node.copy()
    live = np.flatnonzero((cur >= 0) & (found < depth))
    while live.size:
        c = cur[live]
        who = ga.sharer[c].astype(_I64)
        take = who != ch.buyer[live]
        rows = live[take]
        grid[rows, found[rows]] = who[take]
        found[rows] += 1
        nxt = ga.parent[c].astype(_I64)
        cur[live] = nxt
        live = live[(nxt >= 0) & (found[live] < depth)]
    rows = np.flatnonzero(ch.bind)
    if len(rows):
        start = 1 if selfp else 0
        more, _, up = _bind_walk(ga, ch, rows, depth - start)
        assert up is not None
        grid[rows, start:] = up
        found[rows] += more
    return grid, found


def _multilevel(ga: GraphArrays, ch: _Chains, specs: list[Fraction], ceiling: Fraction, selfp: bool,
                rates: _Rates) -> Lines:
    depth = len(specs)
    grid, found = _levels(ga, ch, depth, selfp)
    # the scaled rate of level j when k levels were found: awards are the non-zero rates of 1..k
    # (zero-rate levels keep a zero line until the override check; their amount is 0)
    table = np.full((depth + 1, depth), rates.add(Fraction(0)), dtype=_I64)
    for k in range(depth + 1):
        paid = [r for r in specs[:k] if r]
        scaled = iter(_capped(paid, ceiling))
        for j in range(k):
            if specs[j]:
                table[k, j] = rates.add(next(scaled))
    # lines by order, then level: order i has found[i] lines at levels 1..found[i]
    keep = (np.arange(depth)[None, :] < found[:, None]).ravel()
    level = np.broadcast_to(np.arange(1, depth + 1, dtype=_I64), (len(found), depth)).ravel()[keep]
    return Lines(np.repeat(ch.pos, found), level, grid.ravel()[keep], table[found].ravel()[keep])


def _compliant(ga: GraphArrays, ch: _Chains, policy: Compliant, rates: _Rates) -> Lines:
    ceiling = _ceiling(policy)
    member = np.zeros(len(ch.buyer), dtype=bool)
    known = ch.buyer >= 0
    member[known] = ga.participant_since[ch.buyer[known]] <= ch.t[known]  # as of the order's time
    parts = []
    spr = policy.self_purchase_rate
    if spr and member.any():
        sub = ch.sub(member)
        parts.append(_single(sub, np.full(len(sub.pos), SELF, dtype=_I64), np.ones(len(sub.pos), dtype=_I64),
                             min(spr, ceiling), rates))
    rest = ~member
    specs = [r for r in policy.rates if isinstance(r, Fraction)]
    parts.append(_multilevel(ga, ch.sub(rest), specs, ceiling, False, rates))
    return _concat(parts, sort=True)


def _concat(parts: list[Lines], *, sort: bool) -> Lines:
    if not parts:
        return Lines.empty()
    if len(parts) == 1:
        return parts[0]
    out = Lines(np.concatenate([p.pos for p in parts]), np.concatenate([p.level for p in parts]),
                np.concatenate([p.payee for p in parts]), np.concatenate([p.rate for p in parts]),
                None if any(p.amount is None for p in parts)
                else np.concatenate([p.amount for p in parts if p.amount is not None]))
    if sort:
        order = np.argsort(out.pos, kind="stable")
        out = Lines(out.pos[order], out.level[order], out.payee[order], out.rate[order],
                    None if out.amount is None else out.amount[order])
    return out


Kernel = Callable[[GraphArrays, _Chains, _Rates], Lines]


def _kernel(policy: PolicyConfig) -> Kernel | None:
    """The vectorised form of ``policy``, or None when it has none (computed per order)."""
    if policy.distributors is not None or policy.eligible is not None:
        return None
    cls = type(policy)
    if cls is FirstSharer or cls is LastSharer:
        assert isinstance(policy, (FirstSharer, LastSharer))
        if not isinstance(policy.rate, Fraction):
            return None
        if isinstance(policy, FirstSharer):
            fs = policy
            return lambda ga, ch, rates: _first_sharer(ga, ch, fs, rates)
        ls = policy
        return lambda ga, ch, rates: _last_sharer(ga, ch, ls, rates)
    if cls is CappedMultilevel:
        assert isinstance(policy, CappedMultilevel)
        if not all(isinstance(r, Fraction) for r in policy.rates):
            return None
        specs = [r for r in policy.rates if isinstance(r, Fraction)]
        ceiling, selfp = _ceiling(policy), policy.self_purchase
        return lambda ga, ch, rates: _multilevel(ga, ch, specs, ceiling, selfp, rates)
    if cls is Compliant:
        assert isinstance(policy, Compliant)
        if not all(isinstance(r, Fraction) for r in policy.rates) or policy.self_purchase:
            return None
        cp = policy
        return lambda ga, ch, rates: _compliant(ga, ch, cp, rates)
    return None


# ---------------------------------------------------------------------------- money
def _amounts(base: NDArray[np.int64], rate_idx: NDArray[np.int64], rates: list[Fraction],
             rounding: Rounding) -> NDArray[np.int64]:
    """``apply_rate(base[i], rates[rate_idx[i]], rounding)`` for every line, exactly.

    The rates are brought to one common denominator ``d`` so the division is by a scalar; when
    ``max(base) × numerator`` could leave int64, exact Python integers take over.
    """
    if len(base) == 0:
        return np.zeros(0, dtype=_I64)
    top = int(base.max())
    d = math.lcm(*(r.denominator for r in rates))
    if d <= 2**61 and top * max(r.numerator * (d // r.denominator) for r in rates) <= MAX_MINOR:
        p = np.asarray([r.numerator * (d // r.denominator) for r in rates], dtype=_I64)[rate_idx]
        num = base * p
        quot = num // d
        if rounding is Rounding.DOWN or d == 1:
            return quot
        rem = num - quot * d
    else:
        nums = [r.numerator for r in rates]
        dens = [r.denominator for r in rates]
        if top * max(nums) > MAX_MINOR or max(dens) > 2**61:
            # beyond int64: exact Python integers, one line at a time
            return np.fromiter((apply_rate(b, rates[r], rounding) for b, r in
                                zip(base.tolist(), rate_idx.tolist(), strict=True)), dtype=_I64, count=len(base))
        q = np.asarray(dens, dtype=_I64)[rate_idx]
        quot, rem = np.divmod(base * np.asarray(nums, dtype=_I64)[rate_idx], q)
        if rounding is Rounding.DOWN:
            return quot
        d = q  # type: ignore[assignment]
    if rounding is Rounding.UP:
        up = rem > 0
    elif rounding is Rounding.HALF_UP:
        up = 2 * rem >= d
    else:
        twice = 2 * rem
        up = (twice > d) | ((twice == d) & (quot % 2 == 1))
    return np.asarray(quot + up, dtype=_I64)


# ---------------------------------------------------------------------------- the run
@dataclass
class Result:
    """Lines of one run, as columns, before they become a DataFrame."""

    pos: NDArray[np.int64]
    level: NDArray[np.int64]
    payee: Strings
    amount: NDArray[np.int64]
    rate: Strings
    net: NDArray[np.int64]
    vectorised: int
    per_order: int


def _fallback_mask(cols: OrderColumns, policy: PolicyConfig) -> NDArray[np.bool_]:
    """Orders whose lines depend on their items (product/category rates, compliant entry SKUs)."""
    uses_lines = bool(policy.product_rates or policy.category_rates)
    if isinstance(policy, Compliant) and policy.entry_skus:
        uses_lines = True
    if uses_lines:
        return cols.has_lines.copy()
    return np.zeros(len(cols), dtype=bool)


def _resolve(cols: OrderColumns, graph: ShareGraph, ga: GraphArrays, which: str) -> NDArray[np.int64]:
    """Share node or buyer id of every order (memoised on ``cols`` per graph)."""
    hit = cols.memo.get((id(graph), which))
    if hit is not None and hit[0] is graph:
        return hit[1]  # type: ignore[no-any-return]
    if which == "share":
        out = _lookup(ga, "share", cols.share) if cols.has_share.any() else np.full(len(cols), -1, dtype=_I64)
    else:
        out = _lookup(ga, "people", cols.buyer)
    cols.memo[(id(graph), which)] = (graph, out)
    return out


def participants(cols: OrderColumns, graph: ShareGraph) -> NDArray[np.bool_]:
    """Whether each order's buyer took part in the programme (had shared, or had a bound downline)
    at the order's time, as the compliant policy asks it."""
    ga = graph_arrays(graph)
    ids = _resolve(cols, graph, ga, "people")
    out = np.zeros(len(cols), dtype=bool)
    rows = np.flatnonzero(ids >= 0)
    rows = rows[ga.participant_since[ids[rows]] != _NEVER]
    if not len(rows):
        return out
    times = cols.micros(rows)
    if times is None:  # times not vectorisable: one by one (an order without a time is refused)
        times = np.fromiter((to_micros(cols.event(i).at) for i in rows.tolist()), dtype=_I64, count=len(rows))
    out[rows] = ga.participant_since[ids[rows]] <= times
    return out


def run(cols: OrderColumns, graph: ShareGraph, policy: PolicyConfig) -> Result:
    """Commission lines of every order in ``cols`` under ``policy``: vectorised where the policy
    and the order's chain allow it, per order otherwise."""
    n = len(cols)
    ga = graph_arrays(graph)
    gross = cols.base(policy.base.include_shipping, policy.base.include_tax)
    net = np.maximum(gross - cols.refunded, 0)
    node = _resolve(cols, graph, ga, "share")
    unknown = cols.has_share & (node < 0)
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise UnknownReference(f"share {cols.share[i]!r} is not a known share", record=str(cols.ids[i]),
                               field="share")
    kernel = _kernel(policy)
    rates = _Rates()
    per_order = np.ones(n, dtype=bool) if kernel is None else _fallback_mask(cols, policy)
    lines = Lines.empty()
    if kernel is not None:
        buyer = _resolve(cols, graph, ga, "people")
        has = node >= 0
        if len(ga.repeat):
            per_order |= has & ga.repeat[np.where(has, node, 0)]
        known = buyer >= 0
        bind = np.zeros(n, dtype=bool)
        t = np.zeros(n, dtype=_I64)
        if ga.bound.any():  # binding chains: the buyer's uplines at the order's time
            bound = np.zeros(n, dtype=bool)
            bound[known] = ga.bound[buyer[known]]
            maybe = np.flatnonzero(~cols.has_share & bound & ~per_order)
            times = cols.micros(maybe) if len(maybe) else None
            if times is None:
                per_order[maybe] = True  # no usable times: the per-order engine decides
            else:
                t[maybe] = times
                bind[maybe] = ga.binds.upline(buyer[maybe], times) >= 0
        if isinstance(policy, Compliant):  # "is the buyer a participant" is asked at the order's time
            rows = np.flatnonzero(known & ~per_order)
            rows = rows[ga.participant_since[buyer[rows]] != _NEVER]
            times = cols.micros(rows) if len(rows) else None
            if times is None:
                per_order[rows] = True
            else:
                t[rows] = times
        vec = np.flatnonzero(~per_order) if per_order.any() else np.arange(n, dtype=_I64)
        lines = kernel(ga, _Chains(vec, node[vec], buyer[vec], bind[vec], t[vec]), rates)
        redo = _override_orders(lines, cols, ga, policy)
        if len(lines.pos) and policy.rounding is not Rounding.DOWN:
            lines.amount = _amounts(net[lines.pos], lines.rate, rates.values, policy.rounding)
            redo |= _over_paid(lines, net, n)
        if redo.any():
            per_order |= redo
            lines = lines.take(~redo[lines.pos])
        if lines.amount is None or len(lines.amount) != len(lines.pos):
            lines.amount = _amounts(net[lines.pos], lines.rate, rates.values, policy.rounding)
        paid = lines.amount != 0
        if not paid.all():
            lines = lines.take(paid)
    assert lines.amount is not None
    p = lines.payee
    is_self = p == SELF
    payee = ga.people.take(np.where(is_self, 0, p)) if len(ga.names) else Strings.of(np.full(len(p), None))
    if is_self.any():
        payee = payee.replace(is_self, cols.buyer.take(lines.pos))
    rate_text = rates.texts().take(lines.rate)
    slow = np.flatnonzero(per_order)
    if not len(slow):
        return Result(lines.pos, lines.level, payee, lines.amount, rate_text, net, n, 0)
    x_pos, x_level, x_payee, x_amount, x_rate = _per_order(cols, graph, policy, slow)
    pos = np.concatenate([lines.pos, x_pos])
    order = np.argsort(pos, kind="stable")
    return Result(pos[order], np.concatenate([lines.level, x_level])[order],
                  Strings.concat([payee, x_payee]).take(order), np.concatenate([lines.amount, x_amount])[order],
                  Strings.concat([rate_text, x_rate]).take(order), net, n - len(slow), len(slow))


def _override_orders(lines: Lines, cols: OrderColumns, ga: GraphArrays, policy: PolicyConfig) -> NDArray[np.bool_]:
    """Orders with a line to a payee who has a per-payee rate (resolved per order)."""
    redo = np.zeros(len(cols), dtype=bool)
    if not policy.payee_rates or not len(lines.pos):
        return redo
    if isinstance(policy, Compliant) and not policy.rates:  # pragma: no cover - rates is never empty
        return redo
    special = set(policy.payee_rates)
    ids = np.asarray(sorted(ga.people_ids[name] for name in special if name in ga.people_ids), dtype=_I64)
    p = lines.payee.astype(_I64)
    hit = np.isin(p, ids) if len(ids) else np.zeros(len(p), dtype=bool)
    selfs = np.flatnonzero(p == SELF)
    if len(selfs):
        names = cols.buyer.take(lines.pos[selfs])
        hit[selfs] = np.fromiter((x in special for x in names.tolist()), dtype=bool, count=len(selfs))
    redo[lines.pos[hit]] = True
    return redo


def _over_paid(lines: Lines, net: NDArray[np.int64], n: int) -> NDArray[np.bool_]:
    """Orders where rounding up made the lines exceed the base (the engine trims those)."""
    assert lines.amount is not None
    total = np.zeros(n, dtype=_I64)
    np.add.at(total, lines.pos, lines.amount)
    return total > net


def _per_order(cols: OrderColumns, graph: ShareGraph, policy: PolicyConfig, rows: NDArray[np.int64]
               ) -> tuple[NDArray[np.int64], NDArray[np.int64], Strings, NDArray[np.int64], Strings]:
    """Lines of ``rows`` by the per-order engine (the reference semantics)."""
    pos: list[int] = []
    level: list[int] = []
    payee: list[str] = []
    amount: list[int] = []
    rate: list[str] = []
    texts: dict[Fraction, str] = {}
    for i in rows.tolist():
        order = cols.event(i)
        try:
            s = compute(order, graph, policy, refunded=int(cols.refunded[i]))
        except CpsError as exc:
            raise exc.located(record=order.id) from None
        for line in s.lines:
            pos.append(i)
            level.append(line.level)
            payee.append(line.payee)
            amount.append(line.amount.minor)
            t = texts.get(line.rate)
            if t is None:
                t = texts[line.rate] = format_rate(line.rate)
            rate.append(t)
    return (np.asarray(pos, dtype=_I64), np.asarray(level, dtype=_I64), Strings.of(payee),
            np.asarray(amount, dtype=_I64), Strings.of(rate))
