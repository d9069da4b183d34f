"""A compiled policy plan (:mod:`cps_engine.policies.plan`) executed over arrays.

One path for every built-in policy and every plugin that compiles to a plan:

1. **Chains** — every order's links, nearest first, are read from the compact index one vector step
   per level (share chains by parent pointers, binding chains by the interval search of
   :class:`~cps_engine.batch._kernels.BindIndex`), stopping where the plan stops reading (``depth``
   levels, or ``depth`` eligible people under ``compress``).  ``first`` without eligibility filters
   needs no walk: cached roots answer it in O(1).
2. **Selection** — eligibility (``distributors``/``eligible``, ``compress``, ``keep_level`` or ``stop``) gives
   each link its level; the plan picks levels 1..depth, chain[0], level 1, or a pool's members.
3. **Rates** — each line's spec by precedence payee > product/category > default; fixed amounts
   become exact ``amount / base`` fractions per order (vectorised, reduced by gcd, interned), and
   orders whose item lines carry product/category rates ask :meth:`Plan.resolve` once per tier.
   A pool has one rate per order and integer weights: ``equal``/``position`` from a table by chain
   length, ``decay`` per link under the rounded-weight contract (:meth:`Weights.decay_units`).
4. **Cap** — each order's total rate, exactly, on one common denominator (int64 when it fits, else
   exact Python integers per order), scaled to the ceiling by :meth:`Plan.cap_scale`'s rule.
5. **Money** — ``round(base × rate)`` per line; a pool rounded once and split by floors plus
   largest remainders, ties to the farther link, as :func:`cps_engine.engine._split` does: floors
   in int64, the units left ranked within the orders of one chain length at a time (no sort over
   all members).

Every Fraction is computed by the plan's own scalar code once per distinct value; what remains
per line is integer numpy.  Orders the arrays cannot decide exactly (a person repeated on a share
path, a time needed but unknown, a fixed amount in another currency, rounding up past the base)
are returned for the per-order engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from cps_engine.engine import _split
from cps_engine.graph.index import NO_TIME
from cps_engine.money import MAX_MINOR
from cps_engine.policies.base import Fixed, OrderView, RateSpec
from cps_engine.policies.plan import DECAY_SCALE, Gate, Plan, Weights

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from cps_engine.batch._kernels import GraphArrays, _Chains, _Rates
    from cps_engine.batch._orders import OrderColumns

__all__ = ["PlanLines", "execute"]

_I64 = np.int64
SELF = -2
NONE = -1
_BIG = 2**62


@dataclass
class PlanLines:
    """Lines of the vectorised orders (amounts final, zero lines kept) and the orders handed back."""

    pos: NDArray[np.int64]
    level: NDArray[np.int64]
    payee: NDArray[np.int64]  # person id or SELF
    rate: NDArray[np.int64]  # index into the run's rate table
    amount: NDArray[np.int64]
    rule: NDArray[np.int64]  # index into ``rules``
    rules: list[str]
    redo: NDArray[np.int64]  # positions (into cols) to compute per order
    #: provenance: for each line the link it was read from (index into ``links``) and whether its
    #: path is the whole prefix of links read (levels, pools) or that one link (first sharer)
    link: NDArray[np.int64]
    links: Links | None
    prefix: bool

    def take(self, keep: NDArray[np.bool_]) -> PlanLines:
        return PlanLines(self.pos[keep], self.level[keep], self.payee[keep], self.rate[keep], self.amount[keep],
                         self.rule[keep], self.rules, self.redo, self.link[keep], self.links, self.prefix)


@dataclass
class Links:
    """Every link read, nearest first per order: ``row`` (into the chains), raw index, person (or
    SELF), and what it was read through: a share node, or a binding (downline user, at ``t``)."""

    row: NDArray[np.int64]
    raw: NDArray[np.int64]
    person: NDArray[np.int64]
    node: NDArray[np.int64]
    down: NDArray[np.int64]

    def take(self, idx: NDArray[np.int64]) -> Links:
        return Links(self.row[idx], self.raw[idx], self.person[idx], self.node[idx], self.down[idx])


# ---------------------------------------------------------------------------- 1. chains
def _eligible_people(ga: GraphArrays, plan: Plan) -> NDArray[np.bool_] | None:
    """Per person id, whether they may earn (None: everyone)."""
    if not plan.filters:
        return None
    policy = plan.policy
    names = ga.people_names
    if policy.eligible is None and policy.distributors is not None:
        out = np.zeros(len(names), dtype=bool)
        ids = [ga.people_ids[d] for d in policy.distributors if d in ga.people_ids]
        out[ids] = True
        return out
    return np.fromiter((policy.is_eligible(n) for n in names), dtype=bool, count=len(names))


def _walk(ga: GraphArrays, ch: _Chains, selfp: bool, limit: int | None, want: int | None,
          pel: NDArray[np.bool_] | None, self_ok: NDArray[np.bool_]) -> Links:
    """Links of every chain, nearest first: at most ``limit`` links, or (``want``) until that many
    eligible ones were read."""
    n = len(ch.pos)
    rows_l: list[NDArray[np.int64]] = []
    raw_l: list[NDArray[np.int64]] = []
    who_l: list[NDArray[np.int64]] = []
    node_l: list[NDArray[np.int64]] = []
    down_l: list[NDArray[np.int64]] = []
    count = np.zeros(n, dtype=_I64)
    good = np.zeros(n, dtype=_I64)
    all_rows = np.arange(n, dtype=_I64)
    if selfp and (limit is None or limit > 0) and (want is None or want > 0):
        rows_l.append(all_rows)
        raw_l.append(np.zeros(n, dtype=_I64))
        who_l.append(np.full(n, SELF, dtype=_I64))
        node_l.append(np.full(n, -1, dtype=_I64))
        down_l.append(np.full(n, -1, dtype=_I64))
        count += 1
        good += self_ok

    def more(rows: NDArray[np.int64]) -> NDArray[np.bool_]:
        ok = np.ones(len(rows), dtype=bool)
        if limit is not None:
            ok &= count[rows] < limit
        if want is not None:
            ok &= good[rows] < want
        return ok

    cur = ch.node.copy()
    live = all_rows[cur >= 0]
    live = live[more(live)]
    while live.size:
        c = cur[live]
        who = ga.sharer[c].astype(_I64)
        take = who != ch.buyer[live]
        rows = live[take]
        if rows.size:
            rows_l.append(rows)
            raw_l.append(count[rows])
            w = who[take]
            who_l.append(w)
            node_l.append(c[take])
            down_l.append(np.full(rows.size, -1, dtype=_I64))
            count[rows] += 1
            if pel is not None:
                good[rows] += pel[w]
            else:
                good[rows] += 1
        nxt = ga.parent[c].astype(_I64)
        cur[live] = nxt
        live = live[nxt >= 0]
        live = live[more(live)]
    brow = all_rows[ch.bind]
    if brow.size:
        bi = ga.binds
        user = ch.buyer.copy()
        live = brow[more(brow)]
        while live.size:
            a = bi.upline(user[live], ch.t[live])
            found = a >= 0
            live, a = live[found], a[found]
            if not live.size:
                break
            rows_l.append(live)
            raw_l.append(count[live])
            who_l.append(a)
            node_l.append(np.full(live.size, -1, dtype=_I64))
            down_l.append(user[live].copy())
            count[live] += 1
            good[live] += pel[a] if pel is not None else 1
            user[live] = a
            live = live[more(live)]
    if not rows_l:
        z = np.zeros(0, dtype=_I64)
        return Links(z, z, z, z, z)
    row = np.concatenate(rows_l)
    order = np.argsort(row, kind="stable")  # step-major -> by row, then raw
    return Links(row[order], np.concatenate(raw_l)[order], np.concatenate(who_l)[order],
                 np.concatenate(node_l)[order], np.concatenate(down_l)[order])


def _first_fast(ga: GraphArrays, ch: _Chains, selfp: bool) -> tuple[Links, NDArray[np.int64]]:
    """chain[0] of every order without eligibility filters, in O(1) for share chains (cached roots)
    and one walk for binding chains: the link and its level (the chain's length)."""
    from cps_engine.batch._kernels import _bind_walk_links, _on_path

    n = len(ch.pos)
    node, b = ch.node, ch.buyer
    has = node >= 0
    nd = np.where(has, node, 0)
    person = np.full(n, SELF if selfp else NONE, dtype=_I64)
    via = np.full(n, -1, dtype=_I64)
    level = np.ones(n, dtype=_I64)
    down = np.full(n, -1, dtype=_I64)
    if len(ga.parent) and has.any():
        root = ga.root[nd].astype(_I64)
        top = ga.sharer[root].astype(_I64)
        sec = ga.second[nd].astype(_I64)
        top_is_buyer = top == b
        alt = np.where(sec >= 0, ga.sharer[np.where(sec >= 0, sec, 0)].astype(_I64), SELF if selfp else NONE)
        first = np.where(top_is_buyer, alt, top)
        person = np.where(has, first, person)
        via = np.where(has, np.where(top_is_buyer, np.where(sec >= 0, sec, -1), root), -1)
        length = ga.depth[nd].astype(_I64) + 1 - _on_path(ga, b, np.where(has, node, -1)) + int(selfp)
        level = np.where(has, length, level)
    rows = np.flatnonzero(ch.bind)
    if len(rows):  # chain[0] of a binding chain: the top upline; its level is the chain's length
        found, top_b, below = _bind_walk_links(ga, ch, rows)
        person[rows] = np.where(found > 0, top_b, SELF if selfp else NONE)
        down[rows] = np.where(found > 0, below, -1)
        level[rows] = np.where(found > 0, found + int(selfp), 1)
    keep = person != NONE
    idx = np.flatnonzero(keep)
    links = Links(idx.astype(_I64), level[idx] - 1, person[idx], np.where(person[idx] == SELF, -1, via[idx]),
                  down[idx])
    return links, level[idx]


# ---------------------------------------------------------------------------- 3. rates
class _Specs:
    """The distinct specs of one run, indexed by small ints."""

    def __init__(self) -> None:
        self.values: list[RateSpec] = []
        self._index: dict[RateSpec, int] = {}

    def add(self, spec: RateSpec) -> int:
        i = self._index.get(spec)
        if i is None:
            i = self._index[spec] = len(self.values)
            self.values.append(spec)
        return i


def _line_rates(plan: Plan, cols: OrderColumns, gross: NDArray[np.int64], pos: NDArray[np.int64],
                tier: NDArray[np.int64], payee_name: Any, rates: _Rates, rules: dict[str, int],
                *, overrides: bool) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_]]:
    """Pre-cap rate (index into ``rates``) and base rule (index into ``rules``) of every line, and
    the orders that need the per-order engine (a fixed amount in another currency)."""
    policy = plan.policy
    m = len(pos)
    specs = _Specs()
    spec_id = np.empty(m, dtype=_I64)
    rule_id = np.empty(m, dtype=_I64)
    tiers = np.unique(tier) if m else np.zeros(0, dtype=_I64)
    for t in tiers.tolist():
        sel = tier == t
        spec_id[sel] = specs.add(plan.default(t))
        rule_id[sel] = rules.setdefault(f"level {t} rate", len(rules))
    direct = np.full(m, -1, dtype=_I64)  # a rate already resolved (blended item lines)
    # payee overrides (highest precedence)
    over = np.zeros(m, dtype=bool)
    if overrides and policy.payee_rates and m:
        names = payee_name()
        hit = np.fromiter((nm in policy.payee_rates for nm in names), dtype=bool, count=m)
        for i in np.flatnonzero(hit).tolist():
            spec = plan.payee_spec(names[i], int(tier[i]))
            assert spec is not None
            spec_id[i] = specs.add(spec)
        rule_id[hit] = rules.setdefault("payee rate", len(rules))
        over = hit
    # product / category rates on orders with item lines: the plan resolves them once per tier
    if (policy.product_rates or policy.category_rates) and m and cols.has_lines.any():
        blend = ~over & cols.has_lines[pos] & (gross[pos] > 0)
        memo: dict[tuple[int, int], tuple[Fraction, str]] = {}
        for i in np.flatnonzero(blend).tolist():
            o, t = int(pos[i]), int(tier[i])
            hit2 = memo.get((o, t))
            if hit2 is None:
                view = OrderView(cols.event(o), int(gross[o]))
                if not view.line_bases:
                    memo[(o, t)] = hit2 = (Fraction(-1), "")
                else:
                    try:
                        hit2 = memo[(o, t)] = plan.resolve(None, t, view)
                    except Exception:  # e.g. a fixed amount in another currency: the engine raises it
                        memo[(o, t)] = hit2 = (Fraction(-2), "")
            r, rule = hit2
            if r == -1:
                continue
            if r == -2:
                direct[i] = -2
                continue
            direct[i] = rates.add(r)
            rule_id[i] = rules.setdefault(rule, len(rules))
    # specs -> exact rates
    out = np.full(m, rates.add(Fraction(0)), dtype=_I64)  # lines handed back keep a zero rate
    bad = np.zeros(m, dtype=bool)
    cur_codes = cols.currency.objects if any(isinstance(s, Fixed) for s in specs.values) else None
    for s, spec in enumerate(specs.values):
        sel = np.flatnonzero((spec_id == s) & (direct == -1))
        if not sel.size:
            continue
        if isinstance(spec, Fraction):
            out[sel] = rates.add(spec)
            continue
        assert cur_codes is not None
        p = pos[sel]
        wrong = cur_codes[p] != spec.currency
        if wrong.any():
            bad[sel[wrong]] = True
            sel, p = sel[~wrong], p[~wrong]
        g = gross[p]
        mult = cols.items[p] if spec.per_item else np.ones(len(p), dtype=_I64)
        if spec.minor and int(mult.max(initial=0)) > MAX_MINOR // max(spec.minor, 1):
            for i, o in zip(sel.tolist(), p.tolist(), strict=True):  # beyond int64: exact Python integers
                gi = int(gross[o])
                out[i] = rates.add(Fraction(0) if gi <= 0 else
                                   min(Fraction(spec.minor * int(cols.items[o] if spec.per_item else 1), gi),
                                       Fraction(1)))
            continue
        num = mult * spec.minor
        zero = g <= 0
        num = np.where(zero, 0, num)
        den = np.where(zero, 1, g)
        full = num >= den
        num = np.where(full, 1, num)
        den = np.where(full, 1, den)
        gcd = np.gcd(num, den)
        gcd[gcd == 0] = 1
        pairs = np.stack([num // gcd, den // gcd], axis=1)
        uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
        ids = np.asarray([rates.add(Fraction(int(a), int(b))) for a, b in uniq.tolist()], dtype=_I64)
        out[sel] = ids[inv.reshape(-1)]
    blended = direct >= 0
    out[blended] = direct[blended]
    bad |= direct == -2
    return out, rule_id, bad


# ---------------------------------------------------------------------------- 4. cap
def _totals(pos: NDArray[np.int64], rate: NDArray[np.int64], values: list[Fraction], n: int
            ) -> tuple[NDArray[np.int64], int] | None:
    """Each order's total rate as ``num / D`` on one common denominator, when int64 holds it."""
    used = np.unique(rate)
    if not used.size:
        return np.zeros(n, dtype=_I64), 1
    dens = [values[i].denominator for i in used.tolist()]
    d = math.lcm(*dens)
    if d > _BIG:
        return None
    scaled = np.zeros(len(values), dtype=_I64)
    top = 0
    for i in used.tolist():
        v = values[i]
        k = v.numerator * (d // v.denominator)
        if k > _BIG:
            return None
        scaled[i] = k
        top = max(top, k)
    counts = np.bincount(pos, minlength=n)
    if top * int(counts.max(initial=0)) > _BIG:
        return None
    total = np.zeros(n, dtype=_I64)
    np.add.at(total, pos, scaled[rate])
    return total, d


def _cap(plan: Plan, pos: NDArray[np.int64], rate: NDArray[np.int64], rates: _Rates, n: int
         ) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """The capped rate of every line and whether it was scaled (``PolicyConfig.capped``)."""
    values = rates.values
    scaled = np.zeros(len(pos), dtype=bool)
    if not len(pos):
        return rate, scaled
    ceiling = plan.ceiling
    got = _totals(pos, rate, values, n)
    if got is not None:
        total, d = got
        over = total * ceiling.denominator > ceiling.numerator * d if d * ceiling.numerator <= _BIG and \
            int(total.max(initial=0)) * ceiling.denominator <= _BIG else None
    else:
        total, d, over = np.zeros(n, dtype=_I64), 1, None
    if over is None:  # exact Python integers, order by order
        over = np.zeros(n, dtype=bool)
        sums: dict[int, Fraction] = {}
        for p, r in zip(pos.tolist(), rate.tolist(), strict=True):
            sums[p] = sums.get(p, Fraction(0)) + values[r]
        keys = {}
        for p, s in sums.items():
            if s > ceiling and s != 0:
                over[p] = True
                keys[p] = s
        lines = np.flatnonzero(over[pos])
        out = rate.copy()
        for i in lines.tolist():
            s = keys[int(pos[i])]
            out[i] = rates.add(values[int(rate[i])] * ceiling / s)
        scaled[lines] = True
        return out, scaled
    lines = np.flatnonzero(over[pos])
    if not lines.size:
        return rate, scaled
    out = rate.copy()
    pairs = np.stack([rate[lines], total[pos[lines]]], axis=1)
    uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
    ids = np.asarray([rates.add(values[r] * ceiling / Fraction(t, d)) for r, t in uniq.tolist()], dtype=_I64)
    out[lines] = ids[inv.reshape(-1)]
    scaled[lines] = True
    return out, scaled


# ---------------------------------------------------------------------------- the plan
def execute(plan: Plan, ga: GraphArrays, ch: _Chains, cols: OrderColumns, gross: NDArray[np.int64],
            net: NDArray[np.int64], rates: _Rates) -> PlanLines:
    """Lines of the orders in ``ch`` under ``plan``; see the module docstring."""
    from cps_engine.batch._kernels import _amounts

    policy = plan.policy
    n_cols = len(cols)
    n = len(ch.pos)
    rules: dict[str, int] = {}
    gate = plan.gate
    pel = _eligible_people(ga, plan)
    buyer_names = cols.buyer.objects

    def buyer_ok(rows: NDArray[np.int64]) -> NDArray[np.bool_]:
        if not plan.filters:
            return np.ones(len(rows), dtype=bool)
        b = ch.buyer[rows]
        out = np.zeros(len(rows), dtype=bool)
        known = b >= 0
        if pel is not None:
            out[known] = pel[b[known]]
        for i in np.flatnonzero(~known).tolist():
            out[i] = policy.is_eligible(buyer_names[int(ch.pos[rows[i]])])
        return out

    active = np.ones(n, dtype=bool)
    rebate_lines: tuple[NDArray[np.int64], ...] | None = None
    if gate is not None:
        if gate.entry_skus and cols.has_lines.any():
            for i in np.flatnonzero(cols.has_lines[ch.pos]).tolist():
                lines = cols.event(int(ch.pos[i])).lines or ()
                if any(line.sku in gate.entry_skus for line in lines):
                    active[i] = False  # CN-FEE: an entry purchase earns nobody anything
        member = np.zeros(n, dtype=bool)
        known = ch.buyer >= 0
        member[known] = ga.participant_since[ch.buyer[known]] <= ch.t[known]
        member &= active
        active &= ~member
        spr = gate.self_purchase_rate
        rows = np.flatnonzero(member)
        if spr and rows.size:
            rows = rows[buyer_ok(rows)]
            scale = plan.cap_scale([spr])
            spr_rate = spr if scale is None else spr * Fraction(*scale)
            spr_rule = Gate.REBATE_RULE if scale is None else f"{Gate.REBATE_RULE}, scaled to cap"
            k = rows.size
            rebate_lines = (ch.pos[rows], np.ones(k, dtype=_I64), np.full(k, SELF, dtype=_I64),
                            np.full(k, rates.add(spr_rate), dtype=_I64),
                            np.full(k, rules.setdefault(spr_rule, len(rules)), dtype=_I64),
                            np.full(k, -1, dtype=_I64))
    sub = ch.sub(active)
    act_rows = np.flatnonzero(active)
    select = plan.select
    selfp = plan.self_purchase
    # 1. chains
    self_ok = buyer_ok(act_rows) if selfp else np.zeros(len(act_rows), dtype=bool)
    prefix = select != "first"
    if select == "first" and not plan.filters:
        links, first_level = _first_fast(ga, sub, selfp)
        eligible = np.ones(len(links.row), dtype=bool)
    else:
        depth = plan.depth if select != "first" else None
        keep = plan.keep_level or not plan.filters
        links = _walk(ga, sub, selfp, depth if keep else None, None if keep else depth, pel, self_ok)
        eligible = np.ones(len(links.row), dtype=bool)
        if pel is not None:
            person = links.person
            eligible = np.zeros(len(person), dtype=bool)
            real = person >= 0
            eligible[real] = pel[person[real]]
            s = person == SELF
            eligible[s] = self_ok[links.row[s]]
            if plan.stop and len(eligible):  # only the run of eligible links nearest the buyer counts
                row_start = np.searchsorted(links.row, links.row, side="left")
                bad = np.cumsum(~eligible)
                before = bad - (bad[row_start] - (~eligible[row_start]).astype(bad.dtype))
                eligible &= before == 0
        first_level = None
    # 2. selection -> lines (index into links, level, tier)
    row = links.row
    m = len(row)
    starts = np.searchsorted(row, row, side="left") if m else np.zeros(0, dtype=_I64)
    if first_level is not None:
        li = np.arange(m, dtype=_I64)
        level = first_level
        tier = np.ones(m, dtype=_I64)
    else:
        el = np.flatnonzero(eligible)
        if plan.keep_level:
            lvl = links.raw[el] + 1
        else:
            cum = np.cumsum(eligible.astype(_I64))
            lvl = cum[el] - (cum[starts[el]] - eligible[starts[el]].astype(_I64))
        if select == "first":  # the last eligible link of each order
            last = np.r_[row[el][1:] != row[el][:-1], True] if el.size else np.zeros(0, dtype=bool)
            li, level = el[last], lvl[last]
            tier = np.ones(len(li), dtype=_I64)
        else:
            cap_depth = plan.depth if select != "last" else 1
            ok = np.ones(el.size, dtype=bool) if cap_depth is None else lvl <= cap_depth
            li, level = el[ok], lvl[ok]
            tier = level if select in ("levels", "last") else np.ones(len(li), dtype=_I64)
    lrow = row[li]
    pos = sub.pos[lrow]
    person = links.person[li]

    def payee_names() -> list[str]:
        names = ga.people_names
        return [buyer_names[int(p)] if who == SELF else names[who]
                for who, p in zip(person.tolist(), pos.tolist(), strict=True)]

    redo_sub = np.zeros(len(sub.pos), dtype=bool)
    if select == "pool":  # 3.-5. for a pool: one rate per order, weights, cap, the exact split
        pl = _pool(plan, ga, sub, cols, gross, net, rates, rules, lrow, pos, li, level, links)
        redo_sub[pl.redo_rows] = True
        paid = pl.keep
        li, lrow, pos, person, level = li[paid], lrow[paid], pos[paid], person[paid], level[paid]
        rate, rule_id, scaled, amount = pl.rate, pl.rule, pl.scaled, pl.amount
    else:
        # 3. rates
        base_rate, rule_id, bad = _line_rates(plan, cols, gross, pos, tier, payee_names, rates, rules,
                                              overrides=True)
        if bad.any():
            redo_sub[lrow[bad]] = True
        # 4. cap
        rate, scaled = _cap(plan, pos, base_rate, rates, n_cols)
        # 5. money
        amount = _amounts(net[pos], rate, rates.values, policy.rounding)
    # rules: prefix + base rule (+ scaled)
    names = list(rules)
    final: dict[str, int] = {}
    rmap = np.zeros((max(len(names), 1), 2), dtype=_I64)
    for j, nm in enumerate(names):
        full_name = nm if nm.startswith(Gate.REBATE_RULE) else f"{plan.rule}{nm}"
        rmap[j, 0] = final.setdefault(full_name, len(final))
        rmap[j, 1] = final.setdefault(f"{full_name}, scaled to cap", len(final))
    rule = rmap[rule_id, scaled.astype(_I64)] if len(rule_id) else np.zeros(0, dtype=_I64)
    link_idx = li.copy()
    if rebate_lines is not None:
        rp, rl, rw, rr, ru, rk = rebate_lines
        rebate_rule = rmap[ru, 0]
        pos = np.concatenate([pos, rp])
        level = np.concatenate([level, rl])
        person = np.concatenate([person, rw])
        rate = np.concatenate([rate, rr])
        amount = np.concatenate([amount, _amounts(net[rp], rr, rates.values, policy.rounding)])
        rule = np.concatenate([rule, rebate_rule])
        link_idx = np.concatenate([link_idx, rk])
    redo = np.unique(sub.pos[np.flatnonzero(redo_sub)])
    if rebate_lines is None and (len(pos) < 2 or bool(np.all(
            (pos[1:] > pos[:-1]) | ((pos[1:] == pos[:-1]) & (level[1:] > level[:-1]))))):
        # already by order, then level (links are read nearest first): no sort
        return PlanLines(pos, level, person, rate, amount, rule, list(final), redo, link_idx,
                         _with_rows(links, sub), prefix)
    order = np.lexsort((level, pos))
    return PlanLines(pos[order], level[order], person[order], rate[order], amount[order], rule[order],
                     list(final), redo, link_idx[order], _with_rows(links, sub), prefix)


def _with_rows(links: Links, sub: _Chains) -> Links:
    """Links with ``row`` turned into order positions."""
    return Links(sub.pos[links.row] if len(links.row) else links.row, links.raw, links.person, links.node,
                 links.down)


# ---------------------------------------------------------------------------- pools (3.-5.)
@dataclass
class _PoolLines:
    """What a pool pays: of the member lines given, which are kept (a non-zero share), and for
    those the rate (index into the run's rates), base rule, whether it was scaled to the cap and
    the amount; ``redo_rows`` are chain rows the per-order engine must compute."""

    keep: NDArray[np.bool_]
    rate: NDArray[np.int64]
    rule: NDArray[np.int64]
    scaled: NDArray[np.bool_]
    amount: NDArray[np.int64]
    redo_rows: NDArray[np.int64]


def _decay_units(w: Weights, age: NDArray[np.int64]) -> NDArray[np.int64]:
    """:meth:`Weights.decay_units` of every age, vectorised: ``10^9 × 2^(-age / half_life)`` in
    float64 is within 1e-5 of the 28-digit value (relative error below 1e-14 while the weight can
    round to non-zero, age / half_life < 31), so rounding it gives the contract's integer unless it
    lies within 1e-3 of a half; those few (exact halves included: 2^-n × 10^9 for n ≥ 10) ask the
    plan's own decimal code."""
    if not len(age):
        return np.zeros(0, dtype=_I64)
    x = age.astype(np.float64) / float(w.half_life_us)
    v = np.exp2(-np.minimum(x, 64.0)) * float(DECAY_SCALE)
    out = np.rint(v).astype(_I64)
    near = np.flatnonzero(np.abs(v - np.floor(v) - 0.5) < 1e-3)
    if near.size:
        memo: dict[int, int] = {}
        for i in near.tolist():
            a = int(age[i])
            got = memo.get(a)
            if got is None:
                got = memo[a] = w.decay_units(a)
            out[i] = got
    return out


def _position_table(w: Weights, sizes: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Integer weights of ``equal``/``position`` pools by chain length: ``wt[k, c]`` for class ``c``
    (0 nearest, 1 middle, 2 farthest) and the total ``tot[k]`` of ``k`` members, on one denominator
    per ``k`` (so a member's share is ``wt / tot`` exactly, as :meth:`Weights.of` says)."""
    top = int(sizes.max(initial=0))
    wt = np.zeros((top + 1, 3), dtype=_I64)
    tot = np.zeros(top + 1, dtype=_I64)
    for k in np.flatnonzero(np.bincount(sizes, minlength=top + 1)).tolist():
        near, far = w.of(k, 0), w.of(k, k - 1)
        mid = w.of(k, 1) if k > 2 else Fraction(0)
        total = near + (far + (k - 2) * mid if k > 2 else far if k == 2 else 0)
        d = math.lcm(near.denominator, far.denominator, mid.denominator, total.denominator)
        ints = [int(f * d) for f in (near, mid, far, total)]
        if max(ints) > _BIG:
            raise OverflowError  # pragma: no cover - weights of a percent config never get there
        wt[k] = ints[:3]
        tot[k] = ints[3]
    return wt, tot


def _ranked_bumps(rem: NDArray[np.int64], starts: NDArray[np.int64], size: NDArray[np.int64],
                  rest: NDArray[np.int64]) -> NDArray[np.bool_]:
    """The members that get one more unit: in each group (``starts``, ``size``; members nearest
    first) the ``rest`` largest remainders, ties to the farther member.  Groups of one length are
    ranked together as a matrix (a stable sort of each row, farthest first), so there is no sort
    over all members."""
    bump = np.zeros(len(rem), dtype=bool)
    give = rest > 0
    starts, size, rest = starts[give], size[give], rest[give]
    if not len(starts):
        return bump
    full = rest >= size  # every member gets one more
    if full.any():
        bump[np.repeat(starts[full], size[full]) + _ramp(size[full])] = True
        starts, size, rest = starts[~full], size[~full], rest[~full]
        if not len(starts):
            return bump
    by = np.argsort(size, kind="stable")
    sizes = size[by]
    cut = np.flatnonzero(np.r_[True, sizes[1:] != sizes[:-1], True])
    for a, b in zip(cut[:-1].tolist(), cut[1:].tolist(), strict=True):
        k = int(sizes[a])
        g = by[a:b]
        idx = starts[g][:, None] + np.arange(k - 1, -1, -1, dtype=_I64)  # farthest first
        order = np.argsort(-rem[idx], axis=1, kind="stable")  # largest first, ties: farther first
        take = np.arange(k, dtype=_I64) < rest[g][:, None]
        bump[np.take_along_axis(idx, order, axis=1)[take]] = True
    return bump


def _ramp(k: NDArray[np.int64]) -> NDArray[np.int64]:
    """``0..k[i]-1`` for each group, concatenated."""
    total = int(k.sum())
    return np.arange(total, dtype=_I64) - np.repeat(np.cumsum(k) - k, k)


def _pool(plan: Plan, ga: GraphArrays, sub: _Chains, cols: OrderColumns, gross: NDArray[np.int64],
          net: NDArray[np.int64], rates: _Rates, rules: dict[str, int], lrow: NDArray[np.int64],
          pos: NDArray[np.int64], li: NDArray[np.int64], level: NDArray[np.int64], links: Links) -> _PoolLines:
    """A pool policy over the members of every order (``pos`` grouped by order, nearest first).

    Per order: the pool's rate (one spec, no payee override: :func:`_line_rates` on one line per
    order), capped to the ceiling (the members' rates add up to the pool's, so the cap scales the
    pool); integer weights (``equal``/``position`` from a table by chain length, ``decay`` per link
    by :func:`_decay_units`), a member's rate ``R × w / W``; the pool ``round(base × R)``, each member
    ``floor(base × R × w / W)`` and the units left to the largest remainders, ties to the farther
    link (:func:`_ranked_bumps`), as :func:`cps_engine.engine._split` does per order."""
    from cps_engine.batch._kernels import _amounts

    w = plan.weights
    assert w is not None
    m = len(pos)
    z = np.zeros(0, dtype=_I64)
    if not m:
        return _PoolLines(np.zeros(0, dtype=bool), z, z, np.zeros(0, dtype=bool), z, z)
    starts = np.flatnonzero(np.r_[True, pos[1:] != pos[:-1]])
    n_o = len(starts)
    k = np.diff(np.r_[starts, m])
    opos = pos[starts]
    # the pool's rate and rule, once per order
    prate, prule, redo_o = _line_rates(plan, cols, gross, opos, np.ones(n_o, dtype=_I64), list, rates, rules,
                                       overrides=False)
    # integer weights per member, their total per order
    oi = np.repeat(np.arange(n_o, dtype=_I64), k)  # the order of each member
    cls = None
    if w.kind == "decay":
        t = cols.micros(opos)
        if t is None:  # times not all known: the per-order engine decides
            return _PoolLines(np.zeros(m, dtype=bool), z, z, np.zeros(0, dtype=bool), z, np.unique(lrow))
        tl = t[oi]
        node, down, person = links.node[li], links.down[li], links.person[li]
        lt = np.full(m, NO_TIME, dtype=_I64)
        shares = node >= 0
        if shares.any():
            at = np.frombuffer(ga.graph().index.at_us, dtype=np.int64)  # type: ignore[union-attr]
            lt[shares] = at[node[shares]]
        binds = down >= 0
        if binds.any():
            lt[binds] = ga.binds.start_of(down[binds], tl[binds])
        selfs = person == SELF  # the buyer's own link joined the chain with the order: age 0
        unknown = ~selfs & (lt == NO_TIME)
        if unknown.any():
            redo_o |= np.add.reduceat(unknown.astype(_I64), starts) > 0
        wi = _decay_units(w, np.where(selfs | unknown, 0, np.maximum(0, tl - lt)))
        wsum = np.add.reduceat(wi, starts)
    elif w.kind == "equal":
        wi = np.ones(m, dtype=_I64)
        wsum = k.astype(_I64)
    else:
        cls = np.ones(m, dtype=_I64)  # 0 the nearest member, 2 the farthest, 1 between
        cls[starts + k - 1] = 2
        cls[starts] = 0
        wt, tot = _position_table(w, k)
        wi = wt[k[oi], cls]
        wsum = tot[k]
    # the pool's rate after the cap, per distinct pool rate
    values = rates.values
    ceiling = plan.ceiling
    used = np.flatnonzero(np.bincount(prate, minlength=len(values)))
    dense = np.zeros(len(values), dtype=_I64)
    dense[used] = np.arange(len(used), dtype=_I64)
    pools: list[Fraction] = []
    scaled_u = np.zeros(len(used), dtype=bool)
    zero_u = np.zeros(len(used), dtype=bool)
    rn_u = np.zeros(len(used), dtype=_I64)
    rd_u = np.zeros(len(used), dtype=_I64)
    for j, r in enumerate(used.tolist()):
        v = values[r]
        over = plan.cap_scale([v]) is not None
        pr = ceiling if over else v  # the members' rates add up to v: the cap scales them to the ceiling
        pools.append(pr)
        scaled_u[j] = over
        zero_u[j] = pr == 0
        if pr.numerator <= _BIG and pr.denominator <= _BIG:
            rn_u[j], rd_u[j] = pr.numerator, pr.denominator  # else 0: exact integers below
    pj = dense[prate]  # per order
    ok_o = ~redo_o & ~zero_u[pj] & (wsum > 0)
    keep = ok_o[oi] & (wi > 0)
    every = bool(keep.all())  # the usual case: no member dropped, no gathers
    kept = np.flatnonzero(keep)

    def pick(a: NDArray[Any]) -> NDArray[Any]:
        return a if every else a[kept]

    koi = pick(oi)
    oj = pj[koi]
    # member rates: equal/position once per (pool, length, class); decay once per member
    if cls is not None or w.kind == "equal":
        c = pick(cls) if cls is not None else np.zeros(len(koi), dtype=_I64)
        kx = k[koi]
        span = int(k.max(initial=0)) + 1
        key = (oj * span + kx) * 3 + c
        size = len(used) * span * 3
        if size <= 4 * m + 4096:
            present = np.zeros(size, dtype=bool)
            present[key] = True
            ukeys = np.flatnonzero(present)
            lookup = np.zeros(size, dtype=_I64)
            lookup[ukeys] = np.arange(len(ukeys), dtype=_I64)
            inv = lookup[key]
        else:
            ukeys, inv = np.unique(key, return_inverse=True)
            inv = inv.reshape(-1)
        ids = []
        for uk in ukeys.tolist():
            jj, rem3 = divmod(uk, span * 3)
            kv, cc = divmod(rem3, 3)
            wv = 1 if w.kind == "equal" else int(wt[kv, cc])
            tv = kv if w.kind == "equal" else int(tot[kv])
            ids.append(rates.add(pools[jj] * wv / tv))
        rate = np.asarray(ids, dtype=_I64)[inv] if ids else z
    else:  # one rate per member: R × w / W reduced in int64, one Fraction each, no dedup by hash
        rate = _member_rates(rates, pools, rn_u, rd_u, oj, pick(wi), wsum[koi])
    # money: the pool rounded once per order, split by floors plus largest remainders
    kept_o = np.flatnonzero(ok_o)
    total = np.zeros(n_o, dtype=_I64)
    total[kept_o] = _amounts(net[opos[kept_o]], pj[kept_o], pools, plan.policy.rounding)
    kw = k if every else np.bincount(koi, minlength=n_o)  # members kept
    kstart = np.cumsum(kw) - kw
    base = net[opos]
    wk_arr = pick(wi)
    wmax = np.maximum.reduceat(wk_arr, kstart[kept_o]) if len(kept_o) else z
    # int64 holds base × Rn × w and Rd × W (checked in float64 with a wide margin)
    lim = float(2**60)
    fits = np.zeros(n_o, dtype=bool)
    rn_o, rd_o = rn_u[pj], rd_u[pj]
    fits[kept_o] = ((base[kept_o].astype(np.float64) * rn_o[kept_o] * wmax < lim)
                    & (rd_o[kept_o].astype(np.float64) * wsum[kept_o] < lim) & (rd_o[kept_o] > 0))
    amount = np.zeros(len(koi), dtype=_I64)
    of = fits[koi]
    if of.any():
        fo = np.flatnonzero(fits)
        fm = koi if bool(of.all()) else koi[of]
        num = (base * rn_o)[fm] * (wk_arr if len(fm) == len(koi) else wk_arr[of])
        den = (rd_o * wsum)[fm]
        floor = num // den
        rem = num - floor * den
        fk = kw[fo]
        fstart = np.cumsum(fk) - fk
        rest = total[fo] - np.add.reduceat(floor, fstart)
        amount[of] = floor + _ranked_bumps(rem, fstart, fk, rest)
    slow = np.flatnonzero(~fits & ok_o)
    if slow.size:  # beyond int64: the engine's split, order by order
        lvl = pick(level)
        for o in slow.tolist():
            a, b = int(kstart[o]), int(kstart[o] + kw[o])
            bo, pr, wo = int(base[o]), pools[int(pj[o])], int(wsum[o])
            parts = [(i, pr * int(wk_arr[i]) / wo * bo, int(lvl[i])) for i in range(a, b)]
            split = _split(int(total[o]), parts)
            for i in range(a, b):
                amount[i] = split[i]
    rule = prule[koi]
    scaled = scaled_u[oj]
    redo_rows = np.unique(lrow[redo_o[oi]]) if redo_o.any() else z
    return _PoolLines(keep, rate, rule, scaled, amount, redo_rows)


def _member_rates(rates: _Rates, pools: list[Fraction], rn_u: NDArray[np.int64], rd_u: NDArray[np.int64],
                  j: NDArray[np.int64], wi: NDArray[np.int64], ws: NDArray[np.int64]) -> NDArray[np.int64]:
    """Rates ``pools[j] × wi / ws`` of members that each have their own (time decay), appended to
    the run's rates: numerator and denominator in int64 reduced by one vectorised gcd when they fit
    (checked in float64 with a wide margin), exact Fraction arithmetic otherwise."""
    m = len(j)
    out = np.empty(m, dtype=_I64)
    if not m:
        return out
    rn, rd = rn_u[j], rd_u[j]
    lim = float(2**60)
    fits = (rd > 0) & (rn.astype(np.float64) * wi < lim) & (rd.astype(np.float64) * ws < lim)
    values = rates.values
    if fits.any():
        num = rn[fits] * wi[fits]
        den = rd[fits] * ws[fits]
        g = np.gcd(num, den)
        made = _coprime_fractions((num // g).tolist(), (den // g).tolist())
        out[fits] = np.arange(len(values), len(values) + len(made), dtype=_I64)
        values.extend(made)  # distinct per member almost always: hashing each (for dedup) costs more
    for i in np.flatnonzero(~fits).tolist():
        out[i] = rates.add(pools[int(j[i])] * int(wi[i]) / int(ws[i]))
    return out


def _coprime_fractions(num: list[int], den: list[int]) -> list[Fraction]:
    """``Fraction(n, d)`` of coprime pairs with ``d > 0``, without normalising again: the slots
    filled directly (the object ``Fraction`` builds; checked once, else the constructor is used)."""
    if not num:
        return []
    new = object.__new__
    probe = new(Fraction)
    try:
        probe._numerator, probe._denominator = num[0], den[0]  # type: ignore[attr-defined]
        ok = probe == Fraction(num[0], den[0]) and hash(probe) == hash(Fraction(num[0], den[0]))
    except AttributeError:  # pragma: no cover - a Python whose Fraction keeps other slots
        ok = False
    if not ok:  # pragma: no cover
        return [Fraction(a, b) for a, b in zip(num, den, strict=True)]
    out = []
    for a, b in zip(num, den, strict=True):
        f = new(Fraction)
        f._numerator = a  # type: ignore[attr-defined]
        f._denominator = b  # type: ignore[attr-defined]
        out.append(f)
    return out
