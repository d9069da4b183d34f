"""A deterministic, realistic sample programme: one month of social-commerce share commissions.

The bundled ``data/sample_events.jsonl`` is produced by :func:`write` with the default seed; run
``python -m cps_engine.sample PATH [SEED]`` to regenerate it.  Only ``random.Random(seed)`` is used,
so the same seed always yields byte-identical output.

The programme, March 2026 (all times ``+08:00``):

* **Users** ``u0000``–``u2999``.  Ids are shuffled, so they say nothing about who joined first.
* **Shares** (2,500).  150 seed sharers post root shares between 1 and 20 March, each under a
  campaign (``spring`` or ``womens-day``) that its re-shares inherit.  149 cascades grow as a
  branching process: a seed share draws a log-normal number of re-shares (some none, a few
  hundreds), and each re-share is re-shared again with a mean that decays with depth, scaled by
  the re-sharer's heavy-tailed reach, so most cascades are shallow with a long tail (depth ~10).
  The 150th is a single chain of 200 consecutive re-shares by 201 distinct users (depth 200).  A
  few users share more than once, some of them again inside their own cascade, so one person can
  appear twice on a share path.  A re-share is always later than its parent.
* **Binds** (~1,500).  A user registers through the first share they meet (the share they re-share
  or buy through) and is bound to its sharer, at a moment between that share and their own first
  action.  So an upline always acted before the bind, every user's upline joined earlier, and the
  upline forest has no cycle.  Every user of the deep chain is bound to the one before, giving a
  200-level binding chain too.  A handful of bound users later re-bind (``registration: false``)
  to the sharer of a link they met later, always to someone who joined before them.
* **Orders** (~4,000), CNY, over five SKUs in three categories.  About 75% come through a share
  (``share`` set, later than the share); the rest carry no ``share`` and are made by bound users
  after their bind, so their binding decides the payees.  ``amount`` is exactly the sum of
  ``quantity × unit_price`` plus ``shipping`` (which is sometimes omitted, meaning none).  A few are
  self-purchases: the buyer is the sharer of the share used, or a sharer further up its path.  A
  few orders come through the last share of the deep chain.
* **Refunds** on about 6% of orders: full (no ``amount``), partial (a few orders get two partial
  refunds, never more than the order in total), a couple given explicitly as the whole amount, and a
  couple of ``kind: chargeback``.  Each is after its order; some land after the payouts.
* **Payouts**: about 20 small payouts at noon on 31 March to the busiest sharers.

Amounts are decimal strings, never floats; the file is sorted by ``at``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Final

__all__ = ["DEFAULT_SEED", "generate", "write"]

DEFAULT_SEED: Final = 20260301

_TZ: Final = timezone(timedelta(hours=8))
_BASE: Final = datetime(2026, 3, 1, tzinfo=_TZ)
_MIN: Final = 60
_HOUR: Final = 3600
_DAY: Final = 86400

_ROOT_FIRST: Final = 8 * _HOUR                 # 1 Mar 08:00
_ROOT_LAST_DAY: Final = 19                     # roots until 20 Mar
_SHARE_END: Final = 27 * _DAY + 23 * _HOUR     # 28 Mar 23:00
_ORDER_END: Final = 29 * _DAY + 23 * _HOUR     # 30 Mar 23:00
_PAYOUT_AT: Final = 30 * _DAY + 12 * _HOUR     # 31 Mar 12:00
_REFUND_END: Final = 30 * _DAY + 22 * _HOUR    # 31 Mar 22:00

_ROOT_RESHARES_MEDIAN: Final = 3.3  # re-shares a seed share draws directly (log-normal)
_ROOT_RESHARES_SIGMA: Final = 1.3
_RESHARE_MEAN: Final = 0.7          # mean re-shares of a first-level re-share ...
_DEPTH_DECAY: Final = 0.9           # ... shrinking by this factor per further level
_INFLUENCE_SIGMA: Final = 1.0       # log-normal spread of a re-sharer's reach
_MAX_CASCADE: Final = 900

_N_USERS: Final = 3000
_N_ROOTS: Final = 150
_CHAIN_LEN: Final = 200
_N_SHARES: Final = 2500
_N_BINDS: Final = 1500
_N_REBINDS: Final = 8
_N_SHARE_ORDERS: Final = 3000
_N_BINDING_ORDERS: Final = 1000
_N_CHAIN_ORDERS: Final = 4
_N_SELF_DIRECT: Final = 5
_N_SELF_UPPATH: Final = 5
_REFUND_RATE: Final = 0.06
_N_PAYOUTS: Final = 20

#: (sku, category, unit price in cents)
_CATALOG: Final[tuple[tuple[str, str, int], ...]] = (
    ("F1", "food", 990),
    ("F2", "food", 3990),
    ("B1", "beauty", 12900),
    ("B2", "beauty", 39900),
    ("H1", "home", 8900),
)
_SKU_WEIGHTS: Final = (30, 25, 18, 7, 20)
_SHIPPING_CENTS: Final = (600, 800, 1000, 1200, 550)

_TYPE_RANK: Final = {"bind": 0, "share": 1, "order": 2, "refund": 3, "payout": 4}


@dataclass(slots=True)
class _Share:
    idx: int
    tree: int
    depth: int
    parent: int | None
    sharer: str = ""
    t: int = 0
    chain: bool = False


@dataclass(slots=True)
class _Order:
    idx: int
    buyer: str
    share: int | None
    t: int
    lines: list[tuple[str, str, int, int]] = field(default_factory=list)  # sku, category, qty, cents
    shipping: int | None = None

    @property
    def amount(self) -> int:
        return sum(q * p for _, _, q, p in self.lines) + (self.shipping or 0)


@dataclass(slots=True)
class _Bind:
    user: str
    upline: str
    t: int
    registration: bool


@dataclass(slots=True)
class _Refund:
    order: int
    t: int
    amount: int | None
    kind: str | None


def _ts(t: int) -> str:
    return (_BASE + timedelta(seconds=t)).isoformat()


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _delay(rng: random.Random, median: float, sigma: float, lo: int) -> int:
    return max(lo, int(rng.lognormvariate(math.log(median), sigma)))


def _later(rng: random.Random, t: int, median: float, sigma: float, end: int) -> int:
    """A moment after ``t`` (at least a minute), lognormally delayed, kept before ``end`` when possible."""
    nxt = t + _delay(rng, median, sigma, _MIN)
    if nxt <= end:
        return nxt
    return rng.randint(t + _MIN, max(t + _MIN, end))


def _poisson(rng: random.Random, lam: float) -> int:
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _grow_cascades(rng: random.Random) -> list[tuple[int, int | None, int]]:
    """The seed cascades as ``(tree, parent position, depth)``, parents listed before children.

    A branching process: a seed share draws a log-normal number of re-shares; a re-share at depth
    ``d`` draws Poisson(_RESHARE_MEAN × _DEPTH_DECAY^(d-1) × influence) more, where influence is a
    log-normal reach of mean 1.  Retried until the total is near the target, then trimmed (dropping
    leaves) or padded (adding leaves, mostly near the top) to hit it exactly.
    """
    target = _N_SHARES - _CHAIN_LEN - _N_ROOTS
    sigma = _INFLUENCE_SIGMA
    while True:
        nodes: list[tuple[int, int | None, int]] = [(tree, None, 0) for tree in range(1, _N_ROOTS)]
        for tree in range(1, _N_ROOTS):
            root = tree - 1
            frontier = [root] * min(int(rng.lognormvariate(math.log(_ROOT_RESHARES_MEDIAN), _ROOT_RESHARES_SIGMA)),
                                    _MAX_CASCADE)
            size, depth = 0, 1
            while frontier and size < _MAX_CASCADE:
                born: list[int] = []
                for parent in frontier[:_MAX_CASCADE - size]:
                    nodes.append((tree, parent, depth))
                    born.append(len(nodes) - 1)
                size += len(born)
                frontier = []
                for node in born:
                    reach = rng.lognormvariate(-sigma * sigma / 2, sigma)
                    frontier += [node] * _poisson(rng, _RESHARE_MEAN * _DEPTH_DECAY ** (depth - 1) * reach)
                depth += 1
        if abs(len(nodes) - (_N_ROOTS - 1) - target) <= target // 12:
            break

    children = [0] * len(nodes)
    for _, up, _ in nodes:
        if up is not None:
            children[up] += 1
    removed: set[int] = set()
    while len(nodes) - len(removed) - (_N_ROOTS - 1) > target:
        leaf = rng.choice([i for i, (_, up, _) in enumerate(nodes)
                           if up is not None and children[i] == 0 and i not in removed])
        removed.add(leaf)
        up = nodes[leaf][1]
        assert up is not None
        children[up] -= 1
    while len(nodes) - len(removed) - (_N_ROOTS - 1) < target:
        live = [i for i in range(len(nodes)) if i not in removed]
        (host,) = rng.choices(live, weights=[0.5 ** nodes[i][2] for i in live])
        nodes.append((nodes[host][0], host, nodes[host][2] + 1))
        children.append(0)
        children[host] += 1

    position: dict[int, int] = {}
    kept: list[tuple[int, int | None, int]] = []
    for i, (tree, up, depth) in enumerate(nodes):
        if i not in removed:
            position[i] = len(kept)
            kept.append((tree, None if up is None else position[up], depth))
    return kept


def _build_shares(rng: random.Random, users: list[str]) -> list[_Share]:
    # Tree 0 is the deep chain: a seed share and 200 re-shares, one after the other.
    shares = [_Share(idx=0, tree=0, depth=0, parent=None, chain=True)]
    for _ in range(_CHAIN_LEN):
        prev = shares[-1]
        shares.append(_Share(idx=len(shares), tree=0, depth=prev.depth + 1, parent=prev.idx, chain=True))
    offset = len(shares)
    for tree, parent, depth in _grow_cascades(rng):
        shares.append(_Share(idx=len(shares), tree=tree, depth=depth,
                             parent=None if parent is None else parent + offset))

    # Times: roots spread over 1–20 March in waking hours; re-shares follow their parent.
    for s in shares:
        if s.parent is None:
            if s.chain:
                s.t = 2 * _DAY + 20 * _HOUR + rng.randint(0, 59 * _MIN)
            else:
                s.t = rng.randint(0, _ROOT_LAST_DAY) * _DAY + rng.randint(_ROOT_FIRST, 23 * _HOUR)
        elif s.chain:
            s.t = shares[s.parent].t + rng.randint(5 * _MIN, 90 * _MIN)
        else:
            s.t = _later(rng, shares[s.parent].t, 3 * _HOUR, 1.4, _SHARE_END)

    # Sharers: distinct users first, then a few repeat sharers.
    for s, user in zip(shares, users[:len(shares)], strict=True):
        s.sharer = user
    touched: set[int] = set()
    chain_users = {s.sharer for s in shares if s.chain}
    plain = [s for s in shares if not s.chain]
    deep = [s for s in plain if s.depth >= 2]
    # Within their own cascade: the same person reappears further down their own path.
    for s in rng.sample(deep, 12):
        path = _ancestors(shares, s)
        s.sharer = rng.choice(path[:1] if len(touched) < 3 else path).sharer
        touched.add(s.idx)
    # Across cascades, including a seed sharer posting a second root share.
    cross = rng.sample([p for p in plain if p.idx not in touched], 20)
    touched.update(p.idx for p in cross)
    for s in cross:
        s.sharer = rng.choice([p for p in plain if p.tree != s.tree and p.idx not in touched]).sharer
    roots = [s for s in plain if s.parent is None and s.idx not in touched]
    a, b = rng.sample(roots, 2)
    b.sharer = a.sharer
    assert not chain_users & {s.sharer for s in plain}
    return shares


def _ancestors(shares: list[_Share], s: _Share) -> list[_Share]:
    """Proper ancestors of ``s``, nearest first."""
    out: list[_Share] = []
    p = s.parent
    while p is not None:
        out.append(shares[p])
        p = shares[p].parent
    return out


def _lines(rng: random.Random) -> list[tuple[str, str, int, int]]:
    (n,) = rng.choices((1, 2, 3), weights=(70, 22, 8))
    picked: list[int] = []
    while len(picked) < n:
        (i,) = rng.choices(range(len(_CATALOG)), weights=_SKU_WEIGHTS)
        if i not in picked:
            picked.append(i)
    out: list[tuple[str, str, int, int]] = []
    for i in sorted(picked):
        sku, category, price = _CATALOG[i]
        (qty,) = rng.choices((1, 2, 3, 5), weights=(75, 18, 5, 2))
        out.append((sku, category, qty, price))
    return out


def _shipping(rng: random.Random) -> int | None:
    r = rng.random()
    if r < 0.15:
        return None
    if r < 0.50:
        return 0
    return rng.choice(_SHIPPING_CENTS)


def _build_share_orders(rng: random.Random, shares: list[_Share], users: list[str],
                        propensity: dict[str, float]) -> list[_Order]:
    orders: list[_Order] = []
    chain_time = {s.sharer: s.t for s in shares if s.chain}
    buyers = list(users)
    buyer_cum = list(itertools.accumulate(propensity[u] for u in buyers))

    def pick_buyer(exclude: set[str], t: int) -> str:
        while True:
            (u,) = rng.choices(buyers, cum_weights=buyer_cum)
            if u in exclude or chain_time.get(u, -1) >= t:
                continue
            return u

    def add(buyer: str, share: _Share, t: int) -> None:
        orders.append(_Order(idx=len(orders), buyer=buyer, share=share.idx, t=t,
                             lines=_lines(rng), shipping=_shipping(rng)))

    def path_sharers(s: _Share) -> set[str]:
        return {s.sharer} | {a.sharer for a in _ancestors(shares, s)}

    plain = [s for s in shares if not s.chain]
    reshared: dict[int, int] = {}
    for s in plain:
        if s.parent is not None:
            reshared[s.parent] = reshared.get(s.parent, 0) + 1
    # A share sells more when it is re-shared more, less when it comes late in the month.
    appeal = [rng.lognormvariate(0.0, 1.0) * (1.0 + reshared.get(s.idx, 0)) ** 0.5
              * min(1.0, (_ORDER_END - s.t) / (3 * _DAY)) for s in plain]
    appeal_cum = list(itertools.accumulate(appeal))

    # Through the last share of the deep chain (buyers off the chain).
    last = shares[_CHAIN_LEN]
    for _ in range(_N_CHAIN_ORDERS):
        t = _later(rng, last.t, 8 * _HOUR, 1.0, _ORDER_END)
        add(pick_buyer(set(chain_time), t), last, t)

    # Self-purchases: the sharer of the share used, or a sharer up its path.
    resharers = [s for s in plain if s.parent is not None]
    for s in rng.sample(resharers, _N_SELF_DIRECT):
        add(s.sharer, s, _later(rng, s.t, 4 * _HOUR, 1.0, _ORDER_END))
    for s in rng.sample([s for s in resharers if s.depth >= 2], _N_SELF_UPPATH):
        ups = [a.sharer for a in _ancestors(shares, s) if a.sharer != s.sharer] or [s.sharer]
        add(rng.choice(ups), s, _later(rng, s.t, 4 * _HOUR, 1.0, _ORDER_END))

    while len(orders) < _N_SHARE_ORDERS:
        (s,) = rng.choices(plain, cum_weights=appeal_cum)
        t = _later(rng, s.t, 6 * _HOUR, 1.3, _ORDER_END)
        add(pick_buyer(path_sharers(s), t), s, t)
    return orders


def _build_binds(rng: random.Random, shares: list[_Share], orders: list[_Order]) -> list[_Bind]:
    # Each user's first action, and the share that brought them (None for a root share).
    first: dict[str, tuple[int, int | None]] = {}

    def see(user: str, t: int, source: int | None) -> None:
        if user not in first or t < first[user][0]:
            first[user] = (t, source)

    for s in shares:
        see(s.sharer, s.t, s.parent)
    for o in orders:
        see(o.buyer, o.t, o.share)

    eligible: list[tuple[str, str, int, int]] = []  # user, upline, window start, window end
    chain_eligible: list[tuple[str, str, int, int]] = []
    chain_users = {s.sharer for s in shares if s.chain}
    for user in sorted(first):
        t, source = first[user]
        if source is None:
            continue
        src = shares[source]
        if src.sharer == user:
            continue
        (chain_eligible if user in chain_users else eligible).append((user, src.sharer, src.t, t))
    assert len(chain_eligible) == _CHAIN_LEN
    chosen = chain_eligible + rng.sample(eligible, _N_BINDS - len(chain_eligible))
    binds = [_Bind(user, upline, rng.randint(lo + 1, hi - 1), True) for user, upline, lo, hi in chosen]

    # A handful of later re-binds to someone who joined before the user (keeps the forest acyclic).
    joined = {b.user: b.t for b in binds}
    by_time = sorted(shares, key=lambda s: s.t)
    candidates = sorted((b for b in binds if b.user not in chain_users and b.t < 24 * _DAY),
                        key=lambda b: b.user)
    rebinds: list[_Bind] = []
    for b in rng.sample(candidates, len(candidates)):
        if len(rebinds) == _N_REBINDS:
            break
        t = rng.randint(b.t + _DAY, 28 * _DAY)
        seen = [s for s in by_time if s.t < t]
        for _ in range(50):
            v = rng.choice(seen).sharer
            if v not in (b.user, b.upline) and joined.get(v, -1) < joined[b.user]:
                rebinds.append(_Bind(b.user, v, t, False))
                break
    return binds + rebinds


def _build_binding_orders(rng: random.Random, binds: list[_Bind], start: int,
                          propensity: dict[str, float]) -> list[_Order]:
    bound = sorted((b.user, b.t) for b in binds if b.registration and b.t + 5 * _MIN < _ORDER_END)
    cum = list(itertools.accumulate(propensity[u] * (_ORDER_END - t) / _DAY for u, t in bound))
    orders: list[_Order] = []
    for i in range(_N_BINDING_ORDERS):
        ((user, t0),) = rng.choices(bound, cum_weights=cum)
        orders.append(_Order(idx=start + i, buyer=user, share=None, t=rng.randint(t0 + 5 * _MIN, _ORDER_END),
                             lines=_lines(rng), shipping=_shipping(rng)))
    return orders


def _build_refunds(rng: random.Random, orders: list[_Order]) -> list[_Refund]:
    refunds: list[_Refund] = []
    picked = rng.sample(orders, round(len(orders) * _REFUND_RATE))
    for n, o in enumerate(picked):
        amount = o.amount
        t = _later(rng, o.t, 2 * _DAY, 1.0, _REFUND_END)
        if n < 3:                                  # chargebacks, for the whole order
            refunds.append(_Refund(o.idx, _later(rng, o.t, 6 * _DAY, 0.4, _REFUND_END), None, "chargeback"))
        elif n < 5:                                # the whole amount, given explicitly
            refunds.append(_Refund(o.idx, t, amount, None))
        elif n % 9 < 5:                            # full refund
            refunds.append(_Refund(o.idx, t, None, None))
        else:                                      # partial: one line, the shipping or a part of it
            lines_total = amount - (o.shipping or 0)
            if len(o.lines) > 1 and rng.random() < 0.5:
                _, _, q, p = rng.choice(o.lines)
                part = q * p
            elif o.shipping and rng.random() < 0.2:
                part = o.shipping
            else:
                part = rng.randint(max(1, lines_total // 10), lines_total - 1) // 10 * 10 or 10
            part = min(part, amount - 1)
            refunds.append(_Refund(o.idx, t, part, None))
            if n % 45 == 8 and amount - part >= 2:  # now and then a second partial refund later on
                rest = rng.randint(1, (amount - part) // 2)
                refunds.append(_Refund(o.idx, _later(rng, t, _DAY, 0.8, _REFUND_END), rest, None))
    return refunds


def generate(seed: int = DEFAULT_SEED) -> list[dict[str, object]]:
    """The sample programme's events as JSON-ready dicts (amounts are strings), sorted by ``at``."""
    rng = random.Random(seed)
    users = [f"u{i:04d}" for i in range(_N_USERS)]
    shuffled = rng.sample(users, len(users))
    propensity = {u: min(rng.paretovariate(1.8), 25.0) for u in users}

    shares = _build_shares(rng, shuffled)
    sharers = {s.sharer for s in shares}
    for u in users:  # customers who never share buy more often
        if u not in sharers:
            propensity[u] *= 4.0
    share_orders = _build_share_orders(rng, shares, users, propensity)
    binds = _build_binds(rng, shares, share_orders)
    orders = share_orders + _build_binding_orders(rng, binds, len(share_orders), propensity)
    refunds = _build_refunds(rng, orders)

    # Payouts to the sharers with the most orders through their own links.
    sold: dict[str, int] = {}
    for o in orders:
        if o.share is not None:
            sharer = shares[o.share].sharer
            sold[sharer] = sold.get(sharer, 0) + 1
    payees = sorted(sold, key=lambda u: (-sold[u], u))[:_N_PAYOUTS]

    # Ids follow time order within each type.
    share_id = {s.idx: f"s{n}" for n, s in enumerate(sorted(shares, key=lambda s: (s.t, s.idx)), 1)}
    order_id = {o.idx: f"o{n}" for n, o in enumerate(sorted(orders, key=lambda o: (o.t, o.idx)), 1)}

    rows: list[tuple[int, int, int, dict[str, object]]] = []

    def emit(t: int, n: int, event: dict[str, object]) -> None:
        rows.append((t, _TYPE_RANK[str(event["type"])], n, event))

    campaigns = {s.tree: "spring" if rng.random() < 0.7 else "womens-day" for s in shares if s.parent is None}
    for s in shares:
        sid = share_id[s.idx]
        emit(s.t, int(sid[1:]), {"type": "share", "id": sid, "sharer": s.sharer,
                                  "parent": None if s.parent is None else share_id[s.parent],
                                  "at": _ts(s.t), "campaign": campaigns[s.tree]})
    for n, b in enumerate(sorted(binds, key=lambda b: (b.t, b.user)), 1):
        emit(b.t, n, {"type": "bind", "id": f"b{n}", "user": b.user, "upline": b.upline,
                      "at": _ts(b.t), "registration": b.registration})
    for o in orders:
        oid = order_id[o.idx]
        event: dict[str, object] = {"type": "order", "id": oid, "buyer": o.buyer}
        if o.share is not None:
            event["share"] = share_id[o.share]
        event.update(amount=_money(o.amount), currency="CNY", at=_ts(o.t))
        if o.shipping is not None:
            event["shipping"] = _money(o.shipping)
        event["lines"] = [{"sku": sku, "category": cat, "quantity": q, "unit_price": _money(p)}
                          for sku, cat, q, p in o.lines]
        emit(o.t, int(oid[1:]), event)
    for n, r in enumerate(sorted(refunds, key=lambda r: (r.t, r.order)), 1):
        refund: dict[str, object] = {"type": "refund", "id": f"r{n}", "order": order_id[r.order]}
        if r.amount is not None:
            refund["amount"] = _money(r.amount)
        refund["at"] = _ts(r.t)
        if r.kind is not None:
            refund["kind"] = r.kind
        emit(r.t, n, refund)
    for n, payee in enumerate(payees, 1):
        emit(_PAYOUT_AT, n, {"type": "payout", "id": f"p{n}", "payee": payee,
                             "amount": _money(rng.randint(2, 60) * 50), "currency": "CNY",
                             "at": _ts(_PAYOUT_AT)})

    rows.sort(key=lambda row: row[:3])
    return [row[3] for row in rows]


def write(path: str | os.PathLike[str], seed: int = DEFAULT_SEED) -> None:
    """Write :func:`generate`'s events to ``path`` as JSON Lines."""
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for event in generate(seed):
            fh.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m cps_engine.sample PATH [SEED]")
    write(sys.argv[1], int(sys.argv[2]) if len(sys.argv) == 3 else DEFAULT_SEED)
