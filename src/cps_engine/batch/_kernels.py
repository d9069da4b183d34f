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
import warnings
import weakref
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from cps_engine.batch._strings import Strings, pyarrow
from cps_engine.engine import compute
from cps_engine.errors import CpsError, InvalidEvent, UnknownReference
from cps_engine.graph import NEVER, ShareGraph
from cps_engine.graph.binding import to_micros
from cps_engine.graph.index import Interner
from cps_engine.money import MAX_MINOR, Rounding, apply_rate, format_rate
from cps_engine.policies.base import PolicyConfig

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from cps_engine.batch._orders import OrderColumns
    from cps_engine.batch._plan import PlanLines

__all__ = ["BatchFallbackWarning", "GraphArrays", "Lines", "graph_arrays", "run"]

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
    shares_interned: Interner
    people_interned: Interner
    arrow_sets: dict[Any, Any]
    graph: weakref.ReferenceType[ShareGraph]
    version: int
    _people: Strings | None = None
    _binds: BindIndex | None = None

    @property
    def share_ids(self) -> dict[str, int]:
        return self.shares_interned.ids

    @property
    def share_names(self) -> list[str]:
        return self.shares_interned.names

    @property
    def people_ids(self) -> dict[str, int]:
        return self.people_interned.ids

    @property
    def people_names(self) -> list[str]:
        return self.people_interned.names

    @property
    def n_people(self) -> int:
        return len(self.people_interned)

    def arrow_names(self, which: str) -> Any:
        """Share ids (``which='share'``) or people (``'people'``) as an Arrow array (index = id), or
        None without pyarrow."""
        return (self.shares_interned if which == "share" else self.people_interned).arrow()

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
            arr = self.people_interned.arrow() if pyarrow() is not None else None
            self._people = Strings(arrow=arr) if arr is not None else Strings.of(self.people_names)
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
        self.ids: list[str] = []
        for u in sorted(store.users()):
            for s, e, a, bid in store.intervals(u):  # in time order, never overlapping
                owner.append(u)
                start.append(s)
                end.append(e)
                up.append(a)
                self.ids.append(bid)
        self.start = np.asarray(start, dtype=_I64)
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
        at = self.interval(user, t)
        ok = at >= 0
        out[ok] = self.up[at[ok]]
        return out

    def interval(self, user: NDArray[np.int64], t: NDArray[np.int64]) -> NDArray[np.int64]:
        """Index of the binding interval of ``user[i]`` holding at ``t[i]``, or -1."""
        out = np.full(len(user), -1, dtype=_I64)
        if not len(self.key) or not len(user):
            return out
        rank = np.searchsorted(self.times, t, side="right") - 1  # last start at or before t
        at = np.searchsorted(self.key, user * self.width + rank, side="right") - 1
        atc = np.maximum(at, 0)
        ok = (at >= 0) & (self.owner[atc] == user) & (t < self.end[atc]) & (user >= 0)
        out[ok] = atc[ok]
        return out

    def start_of(self, user: NDArray[np.int64], t: NDArray[np.int64]) -> NDArray[np.int64]:
        """When the binding of ``user[i]`` holding at ``t[i]`` started (its bind's time)."""
        return self.start[self.interval(user, t)]

    def bind_ids(self, user: NDArray[np.int64], t: NDArray[np.int64]) -> list[str]:
        """The bind id of the binding of ``user[i]`` holding at ``t[i]`` (a path record)."""
        ids = self.ids
        return [ids[i] for i in self.interval(user, t).tolist()]


_CACHE: weakref.WeakKeyDictionary[ShareGraph, GraphArrays] = weakref.WeakKeyDictionary()


def graph_arrays(graph: ShareGraph) -> GraphArrays:
    """The cached :class:`GraphArrays` of ``graph`` (built on first use: O(shares + people))."""
    hit = _CACHE.get(graph)
    if hit is not None and hit.version == graph.version:
        return hit
    idx = graph.index
    n_people = graph.n_people
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
        second=idx.np("second"), repeat=repeat, participant_since=since, bound=bound,
        path_key=key, path_max=reach, path_owner=owner, tin=tin, tout=tout, solo=solo, many=counts > 1,
        span=span,
        shares_interned=idx.share_ids, people_interned=graph._people, arrow_sets={}, graph=weakref.ref(graph),
        version=graph.version,
    )
    _CACHE[graph] = arrays
    return arrays


def _lookup(ga: GraphArrays, which: str, values: Strings) -> NDArray[np.int64]:
    """Index of each value in the graph's share ids (``which='share'``) or people (``'people'``),
    -1 when absent or missing.  Arrow's hash lookup when pyarrow is installed, else a dict.  A
    dictionary-encoded column (a categorical) resolves its dictionary only, once per dictionary and
    graph version (kept on the graph's arrays), then maps its codes."""
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=_I64)
    enc = values.dictionary
    if enc is not None:
        codes, dictionary = enc
        key = ("dictionary", which, id(dictionary))
        hit = ga.arrow_sets.get(key)
        if hit is None or hit[0] is not dictionary:
            if dictionary is ga.arrow_names(which):  # the graph's own dictionary: nothing to resolve
                mapped = np.arange(len(dictionary), dtype=_I64)
            else:
                pa = pyarrow()
                vals = Strings.of(np.asarray(list(dictionary), dtype=object)) if pa is None or not isinstance(
                    dictionary, (pa.Array, pa.ChunkedArray)) else Strings.of_arrow(dictionary)
                mapped = _lookup(ga, which, vals)
            hit = ga.arrow_sets[key] = (dictionary, mapped)  # the reference keeps the id valid
        mapped = hit[1]
        if not len(mapped):
            return np.full(n, -1, dtype=_I64)
        return np.where(codes >= 0, mapped[np.maximum(codes, 0)], -1)
    pa = pyarrow()
    arr = values.arrow if pa is not None else None
    if arr is not None:
        vs = ga.arrow_names(which)
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


def _bind_walk_links(ga: GraphArrays, ch: _Chains, rows: NDArray[np.int64]
                     ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """The whole binding chains of ``rows``: per row the number of uplines, the top one, and the
    user just below it (whose binding names the top)."""
    bi = ga.binds
    found = np.zeros(len(rows), dtype=_I64)
    last = np.full(len(rows), NONE, dtype=_I64)
    below = np.full(len(rows), NONE, dtype=_I64)
    cur = ch.buyer[rows].copy()
    t = ch.t[rows]
    live = np.arange(len(rows), dtype=_I64)
    while live.size:
        a = bi.upline(cur[live], t[live])
        live = live[a >= 0]
        a = a[a >= 0]
        found[live] += 1
        below[live] = cur[live]
        last[live] = a
        cur[live] = a
    return found, last, below


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
    rule: Strings | None = None
    path: Strings | None = None
    #: the payees as person ids of the graph (None when some payee is not in it, or without pyarrow)
    payee_code: NDArray[np.int64] | None = None


def _resolve(cols: OrderColumns, graph: ShareGraph, ga: GraphArrays, which: str) -> NDArray[np.int64]:
    """Share node or buyer id of every order (memoised on ``cols`` per graph)."""
    hit = cols.memo.get((id(graph), which))
    if hit is not None and hit[0] is graph:
        return hit[1]  # type: ignore[no-any-return]
    given = cols.share_code if which == "share" else cols.buyer_code
    if given is not None:  # codes in the graph's dictionary: checked, not looked up
        names = ga.shares_interned if which == "share" else ga.people_interned
        bad = given >= len(names)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            field = "share" if which == "share" else "buyer"
            raise UnknownReference(f"{field} code {int(given[i])} is not in the graph ({len(names)} "
                                   f"{'shares' if which == 'share' else 'people'})", record=str(cols.ids[i]),
                                   field=field)
        col = Strings.of_codes(given, ga.arrow_names(which) if pyarrow() is not None else names.names)
        if which == "share":
            cols.share = col
        else:
            cols.buyer = col
        cols.memo[(id(graph), which)] = (graph, given)
        return given
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


def run(cols: OrderColumns, graph: ShareGraph, policy: PolicyConfig, *, provenance: bool = False) -> Result:
    """Commission lines of every order in ``cols`` under ``policy``: the policy's compiled plan
    executed over arrays (:mod:`cps_engine.batch._plan`), per order where it has no plan or an
    order's chain cannot be read from the arrays (a person repeated on its share path, a time
    needed but unknown).  ``provenance`` adds each line's rule and path of records."""
    from cps_engine.batch._plan import execute

    n = len(cols)
    ga = graph_arrays(graph)
    gross = cols.base(policy.base.include_shipping, policy.base.include_tax)
    net = np.maximum(gross - cols.refunded, 0)
    node = _resolve(cols, graph, ga, "share")
    if cols.buyer_code is not None:
        _resolve(cols, graph, ga, "people")  # names the coded buyers (self-purchase lines, per-order orders)
    unknown = cols.has_share & (node < 0)
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise UnknownReference(f"share {cols.share[i]!r} is not a known share", record=str(cols.ids[i]),
                               field="share")
    plan = policy.compiled()
    rates = _Rates()
    per_order = np.ones(n, dtype=bool) if plan is None else np.zeros(n, dtype=bool)
    if plan is None and n:
        warnings.warn(f"policy {policy.label!r} ({type(policy).__name__}) compiles to no plan: its {n} orders are "
                      "computed one at a time", BatchFallbackWarning, stacklevel=3)
    pl = None
    if plan is not None:
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
        if plan.gate is not None:  # "is the buyer a participant" is asked at the order's time
            rows = np.flatnonzero(known & ~per_order)
            rows = rows[ga.participant_since[buyer[rows]] != _NEVER]
            times = cols.micros(rows) if len(rows) else None
            if times is None:
                per_order[rows] = True
            else:
                t[rows] = times
        vec = np.flatnonzero(~per_order) if per_order.any() else np.arange(n, dtype=_I64)
        pl = execute(plan, ga, _Chains(vec, node[vec], buyer[vec], bind[vec], t[vec]), cols, gross, net, rates)
        redo = np.zeros(n, dtype=bool)
        redo[pl.redo] = True
        if len(pl.pos) and policy.rounding is not Rounding.DOWN:
            total = np.zeros(n, dtype=_I64)
            np.add.at(total, pl.pos, pl.amount)
            redo |= total > net  # rounding up past the base: the engine trims those
        keep = (pl.amount != 0) & ~redo[pl.pos]
        per_order |= redo
        pl = pl.take(keep)
    lines_pos = pl.pos if pl is not None else np.zeros(0, dtype=_I64)
    p = pl.payee if pl is not None else np.zeros(0, dtype=_I64)
    is_self = p == SELF
    code: NDArray[np.int64] | None = p
    if is_self.any():
        code = np.where(is_self, _resolve(cols, graph, ga, "people")[lines_pos], p)
    if code is not None and (code < 0).any():  # a buyer paid on a self-purchase who is not in the graph
        if cols.buyer_code is not None:  # given as code -1: no name to pay
            i = int(lines_pos[np.flatnonzero(code < 0)[0]])
            raise InvalidEvent("this order pays its buyer, whose code is -1 (not in the graph): give buyers "
                               "unknown to the graph by name", record=str(cols.ids[i]), field="buyer")
        code = None
    people = ga.people_interned.arrow() if pyarrow() is not None else None
    if code is not None and people is not None:
        payee = Strings.of_codes(code, people)  # decoded only if read as text
    else:
        payee = ga.people.take(np.where(is_self, 0, p)) if ga.n_people else Strings.of(np.full(len(p), None))
        if is_self.any():
            payee = payee.replace(is_self, cols.buyer.take(lines_pos))
    rate_text = rates.texts().take(pl.rate if pl is not None else np.zeros(0, dtype=_I64))
    level = pl.level if pl is not None else np.zeros(0, dtype=_I64)
    amount = pl.amount if pl is not None else np.zeros(0, dtype=_I64)
    rule = path = None
    if provenance:
        rule = Strings.of(pl.rules).take(pl.rule) if pl is not None and len(pl.rules) else \
            Strings.of(np.full(len(lines_pos), None))
        path = _paths(pl, ga, cols) if pl is not None else Strings.of([])
    slow = np.flatnonzero(per_order)
    if not len(slow):
        return Result(lines_pos, level, payee, amount, rate_text, net, n, 0, rule, path,
                      code if people is not None else None)
    x = _per_order(cols, graph, policy, slow, provenance=provenance)
    pos = np.concatenate([lines_pos, x.pos])
    order = np.argsort(pos, kind="stable")
    prov: tuple[Strings | None, Strings | None] = (None, None)
    if provenance:
        assert rule is not None and path is not None and x.rule is not None and x.path is not None
        prov = (Strings.concat([rule, x.rule]).take(order), Strings.concat([path, x.path]).take(order))
    slow_code = _lookup(ga, "people", x.payee) if code is not None and people is not None else None
    all_code = None
    if code is not None and slow_code is not None and not (slow_code < 0).any():
        all_code = np.concatenate([code, slow_code])[order]
    return Result(pos[order], np.concatenate([level, x.level])[order],
                  Strings.of_codes(all_code, people) if all_code is not None else
                  Strings.concat([payee, x.payee]).take(order), np.concatenate([amount, x.amount])[order],
                  Strings.concat([rate_text, x.rate]).take(order), net, n - len(slow), len(slow), *prov,
                  payee_code=all_code)


class BatchFallbackWarning(UserWarning):
    """A policy without a plan: the batch engine computes its orders one at a time."""


def _paths(pl: PlanLines, ga: GraphArrays, cols: OrderColumns) -> Strings:
    """Each line's path of records (share / bind / order ids, nearest first, joined by '/'): the
    links read up to its own (levels, pools), or its own link alone (first sharer)."""
    links = pl.links
    m = len(pl.pos)
    if links is None or not m:
        return Strings.of(np.full(m, "", dtype=object) if m else [])
    order_ids = cols.ids.objects
    share_names = ga.share_names
    via: list[str] = []
    binds = links.down >= 0
    bind_ids: dict[int, str] = {}
    if binds.any():
        rows = np.flatnonzero(binds)
        t = cols.micros(links.row[rows])
        assert t is not None
        bind_ids = dict(zip(rows.tolist(), ga.binds.bind_ids(links.down[rows], t), strict=True))
    for i, (nd, p) in enumerate(zip(links.node.tolist(), links.row.tolist(), strict=True)):
        via.append(share_names[nd] if nd >= 0 else bind_ids[i] if i in bind_ids else order_ids[p])
    out: list[str] = []
    if pl.prefix:
        starts = np.searchsorted(links.row, links.row, side="left").tolist()
        joined: dict[int, str] = {}
        for li in pl.link.tolist():
            if li < 0:
                out.append("")
                continue
            text = joined.get(li)
            if text is None:
                s = starts[li]
                text = "/".join(via[s:li + 1])
                joined[li] = text
            out.append(text)
    else:
        out = [via[li] if li >= 0 else "" for li in pl.link.tolist()]
    rebate = pl.link < 0
    if rebate.any():
        for i in np.flatnonzero(rebate).tolist():
            out[i] = str(order_ids[int(pl.pos[i])])
    return Strings.of(out)


def _over_paid(lines: Lines, net: NDArray[np.int64], n: int) -> NDArray[np.bool_]:
    """Orders where rounding up made the lines exceed the base (the engine trims those)."""
    assert lines.amount is not None
    total = np.zeros(n, dtype=_I64)
    np.add.at(total, lines.pos, lines.amount)
    return total > net


@dataclass
class _Slow:
    pos: NDArray[np.int64]
    level: NDArray[np.int64]
    payee: Strings
    amount: NDArray[np.int64]
    rate: Strings
    rule: Strings | None
    path: Strings | None


def _per_order(cols: OrderColumns, graph: ShareGraph, policy: PolicyConfig, rows: NDArray[np.int64], *,
               provenance: bool = False) -> _Slow:
    """Lines of ``rows`` by the per-order engine (the reference semantics)."""
    pos: list[int] = []
    level: list[int] = []
    payee: list[str] = []
    amount: list[int] = []
    rate: list[str] = []
    rule: list[str] = []
    path: list[str] = []
    texts: dict[Fraction, str] = {}
    for i in rows.tolist():
        order = cols.event(i)
        try:
            s = compute(order, policy, graph=graph, refunded=int(cols.refunded[i]))
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
            if provenance:
                rule.append(line.provenance.rule)
                path.append("/".join(line.provenance.path))
    return _Slow(np.asarray(pos, dtype=_I64), np.asarray(level, dtype=_I64), Strings.of(payee),
                 np.asarray(amount, dtype=_I64), Strings.of(rate), Strings.of(rule) if provenance else None,
                 Strings.of(path) if provenance else None)
