"""Labelled programmes for the compliance report: a seeded generator, half of them pyramid-shaped.

Each builder takes a ``random.Random`` and returns a :class:`Programme`: its events, its policy, the
label (``pyramid`` or ``legitimate``), the legal test it is drawn from and, for pyramids, the rules
expected to catch it.  The same seed gives the same events.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from cps_engine import Event
from cps_engine.models import parse_event

T0 = datetime(2026, 3, 1, tzinfo=timezone(timedelta(hours=8)))
SKUS = [("tea", "food", "59.00"), ("cup", "home", "35.00"), ("soap", "care", "22.50"), ("rice", "food", "88.00"),
        ("pen", "office", "12.00"), ("lamp", "home", "149.00"), ("oil", "food", "66.60"), ("towel", "home", "29.90")]


@dataclass
class Programme:
    name: str
    label: str  # "pyramid" | "legitimate"
    test: str  # the legal test it is drawn from
    policy: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    entry_skus: tuple[str, ...] = ()
    expect: tuple[str, ...] = ()  # rules expected to fail (pyramids)


class _B:
    """Event builder with a clock in minutes after T0."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.raw: list[dict[str, Any]] = []
        self.n = 0

    def _id(self, p: str) -> str:
        self.n += 1
        return f"{p}{self.n}"

    @staticmethod
    def at(minutes: float) -> str:
        return (T0 + timedelta(minutes=int(minutes))).isoformat()

    def share(self, who: str, m: float, parent: str | None = None) -> str:
        sid = self._id("s")
        self.raw.append({"type": "share", "id": sid, "sharer": who, "at": self.at(m),
                         **({"parent": parent} if parent else {})})
        return sid

    def bind(self, user: str, upline: str, m: float) -> None:
        self.raw.append({"type": "bind", "id": self._id("b"), "user": user, "upline": upline, "at": self.at(m)})

    def role(self, who: str, role: str, m: float, via: str | None = None) -> None:
        self.raw.append({"type": "role", "id": self._id("r"), "person": who, "role": role, "at": self.at(m),
                         **({"via": via} if via else {})})

    def order(self, buyer: str, m: float, share: str | None = None, sku: tuple[str, str, str] | None = None,
              qty: int = 1) -> str:
        sku = sku or self.rng.choice(SKUS)
        oid = self._id("o")
        cents = int(sku[2].replace(".", "")) * qty
        self.raw.append({"type": "order", "id": oid, "buyer": buyer, "amount": f"{cents // 100}.{cents % 100:02d}",
                         "currency": "CNY", "at": self.at(m), **({"share": share} if share else {}),
                         "lines": [{"sku": sku[0], "category": sku[1], "quantity": qty, "unit_price": sku[2]}]})
        return oid

    def refund(self, order: str, m: float, amount: str | None = None, kind: str = "refund") -> None:
        self.raw.append({"type": "refund", "id": self._id("r"), "order": order, "at": self.at(m), "kind": kind,
                         **({"amount": amount} if amount else {})})

    def payout(self, who: str, amount_minor: int, m: float) -> None:
        self.raw.append({"type": "payout", "id": self._id("p"), "payee": who, "currency": "CNY", "at": self.at(m),
                         "amount": f"{amount_minor // 100}.{amount_minor % 100:02d}"})

    def events(self) -> list[Event]:
        return [parse_event(r) for r in self.raw]


def _tree(b: _B, root: str, depth: int, fan: int, start: float, step: float, pack: tuple[str, str, str] | None,
          via_share: bool = False, role: str | None = None) -> list[tuple[str, int, str | None]]:
    """A recruitment tree: each member recruits ``fan`` others; a recruit binds (or buys through the
    recruiter's share) and, if ``pack``, buys it minutes later.  Returns (person, level, own share)."""
    out: list[tuple[str, int, str | None]] = [(root, 1, b.share(root, start) if via_share else None)]
    frontier = [out[0]]
    m = start
    for level in range(2, depth + 1):
        nxt = []
        for boss, _, boss_share in frontier:
            for _k in range(fan if level < depth else b.rng.randint(fan - 1, fan)):
                m += step
                who = f"{boss}.{_k}" if len(boss) < 12 else f"m{b.n}"
                if role:
                    b.role(who, "distributor", m, role)
                if via_share:
                    assert boss_share is not None
                    if pack:
                        b.order(who, m + 3, share=boss_share, sku=pack)
                    own = b.share(who, m + 8, parent=boss_share)
                else:
                    b.bind(who, boss, m)
                    if pack:
                        b.order(who, m + 5, sku=pack)
                    own = None
                nxt.append((who, level, own))
        out += nxt
        frontier = nxt
    return out


def _payouts(b: _B, policy: dict[str, Any], m: float) -> None:
    """Pay everyone exactly what the policy earned them so far (the ledger's job, done here)."""
    from cps_engine import compute_events, load_policy

    earned: dict[str, int] = {}
    for s in compute_events(b.events(), load_policy(policy)):
        for ln in s.lines:
            earned[ln.payee] = earned.get(ln.payee, 0) + ln.amount.minor
    for who, v in sorted(earned.items()):
        if v > 0:
            b.payout(who, v, m)


# ------------------------------------------------------------------------------------------ legitimate
def first_sharer_deep(rng: random.Random) -> Programme:
    """(a) first-sharer CPS on re-shared links: share paths 6 long, one payee per order; customers who
    re-shared buy again later."""
    p = Programme("first-sharer over deep re-shares", "legitimate", "WeChat 二级分销: one paid level",
                  {"kind": "first_sharer", "rate": "10%"})
    b = _B(rng)
    m = 0.0
    for i in range(8):
        path = b.share(f"kol{i}", m)
        chain = [path]
        for d in range(5):
            m += 7
            path = b.share(f"c{i}_{d}", m, parent=path)
            chain.append(path)
        for k in range(12):
            m += 11
            b.order(f"buyer{i}_{k}", m, share=rng.choice(chain))
        for d in range(5):
            if rng.random() < 0.6:
                b.order(f"c{i}_{d}", m + 3000, share=rng.choice(chain))
    p.events = b.events()
    return p


def two_level_capped(rng: random.Random) -> Programme:
    """(b) two levels 10/5 capped 15%: distributors sell to bound customers; a few own-use purchases."""
    pol = {"kind": "capped_multilevel", "rates": ["10%", "5%"], "cap": "15%"}
    p = Programme("two levels 10/5 capped 15%", "legitimate", "WeChat 二级分销; 禁止传销条例 art. 7(3) at 2 levels",
                  pol)
    b = _B(rng)
    m = 0.0
    dists = []
    for lead in ("lead0", "lead1"):
        for k in range(5):
            m += 13
            d = f"{lead}_d{k}"
            b.bind(d, lead, m)
            dists.append(d)
    for d in dists:
        for c in range(rng.randint(6, 9)):
            m += 17
            cust = f"{d}_c{c}"
            b.bind(cust, d, m)
            for r in range(rng.randint(1, 3)):
                b.order(cust, m + 10 + 900 * r)
    for d in rng.sample(dists, 3):
        b.order(d, m + 5000, sku=SKUS[4])  # own use, small
    p.events = b.events()
    return p


def affiliate_late_chargeback(rng: random.Random) -> Programme:
    """(c) affiliates on last-sharer CPS, paid out in full, then one small chargeback after the payout."""
    pol = {"kind": "last_sharer", "rate": "8%"}
    p = Programme("affiliate with a late chargeback", "legitimate", "FTC guidance: pay on retail sales", pol)
    b = _B(rng)
    m = 0.0
    orders = []
    for a in range(12):
        s = b.share(f"aff{a}", m)
        for k in range(rng.randint(8, 14)):
            m += 9
            orders.append(b.order(f"cust{a}_{k}", m, share=s, sku=SKUS[5], qty=rng.randint(1, 3)))
    _payouts(b, pol, m + 60 * 24 * 10)
    b.refund(orders[3], m + 60 * 24 * 20, amount="10.00", kind="chargeback")
    p.events = b.events()
    return p


def compliant_cn_shares(rng: random.Random) -> Programme:
    """The compliant cn policy on share chains of customers, disclosed self rebate."""
    pol = {"kind": "compliant", "profile": "cn", "rates": ["10%", "5%"], "cap": "15%", "self_purchase_rate": "3%"}
    p = Programme("compliant cn over share chains", "legitimate", "cn profile: 2 levels, capped", pol)
    b = _B(rng)
    m = 0.0
    for i in range(6):
        s = b.share(f"shop{i}", m)
        s2 = b.share(f"fan{i}", m + 30, parent=s)
        for k in range(10):
            m += 13
            b.order(f"u{i}_{k}", m, share=rng.choice([s, s2]))
    p.events = b.events()
    return p


def cashback_last_sharer(rng: random.Random) -> Programme:
    """Last-sharer CPS over long re-share paths (unpaid re-sharers are customers)."""
    p = Programme("last-sharer over deep re-shares", "legitimate", "one paid level", {"kind": "last_sharer",
                                                                                      "rate": "5%"})
    b = _B(rng)
    m = 0.0
    for i in range(5):
        path = b.share(f"r{i}_0", m)
        for d in range(1, 8):
            m += 5
            path = b.share(f"r{i}_{d}", m, parent=path)
            for k in range(2):
                b.order(f"x{i}_{d}_{k}", m + 2, share=path)
    p.events = b.events()
    return p


def direct_selling(rng: random.Random) -> Programme:
    """Licensed direct selling: distributors (signed up) sell to customers, one level at 25%."""
    pol = {"kind": "compliant", "profile": "cn_direct", "rates": ["25%"], "cap": "25%"}
    p = Programme("direct selling, one level", "legitimate", "直销管理条例 art. 24", pol)
    b = _B(rng)
    m = 0.0
    for d in range(8):
        b.role(f"ds{d}", "distributor", m, "signup")
        for c in range(8):
            m += 21
            cust = f"ds{d}_c{c}"
            b.role(cust, "customer", m)
            b.bind(cust, f"ds{d}", m)
            b.order(cust, m + 30)
    p.events = b.events()
    return p


def compliant_cn_roles(rng: random.Random) -> Programme:
    """Two levels, distributors signed up by role events, customers marked as customers, retail-driven."""
    pol = {"kind": "compliant", "profile": "cn", "rates": ["10%", "5%"], "cap": "15%"}
    p = Programme("compliant cn with roles", "legitimate", "FTC: retail ratio above 80%", pol)
    b = _B(rng)
    m = 0.0
    for lead in range(2):
        L = f"L{lead}"
        b.role(L, "distributor", m, "signup")
        for d in range(4):
            m += 40
            D = f"{L}d{d}"
            b.role(D, "distributor", m, "qualification")
            b.bind(D, L, m)
            for c in range(6):
                m += 15
                C = f"{D}c{c}"
                b.bind(C, D, m)
                b.role(C, "customer", m)
                b.order(C, m + 200)
                b.order(C, m + 40000)
    p.events = b.events()
    return p


def returns_before_payout(rng: random.Random) -> Programme:
    """Two levels with ordinary returns inside the hold period, paid out afterwards."""
    pol = {"kind": "capped_multilevel", "rates": ["8%", "4%"], "cap": "12%"}
    p = Programme("two levels with ordinary returns", "legitimate", "refunds before payout", pol)
    b = _B(rng)
    m = 0.0
    for d in range(6):
        D = f"seller{d}"
        b.bind(D, "brand", m)
        for c in range(8):
            m += 19
            C = f"{D}_c{c}"
            b.bind(C, D, m)
            o = b.order(C, m + 5)
            if rng.random() < 0.15:
                b.refund(o, m + 600)
    _payouts(b, pol, m + 60 * 24 * 30)
    p.events = b.events()
    return p


def large_affiliate_network(rng: random.Random) -> Programme:
    """Forty affiliates, one level, no recruiting: big but flat."""
    p = Programme("large flat affiliate network", "legitimate", "2013 opinion: 30 people but one level",
                  {"kind": "last_sharer", "rate": "6%"})
    b = _B(rng)
    m = 0.0
    for a in range(40):
        s = b.share(f"af{a}", m)
        for k in range(rng.randint(2, 4)):
            m += 3
            b.order(f"cu{a}_{k}", m, share=s)
    p.events = b.events()
    return p


def single_product_shop(rng: random.Random) -> Programme:
    """A one-product shop: customers scan, bind and buy at once; a few later share and earn at one level."""
    tea = SKUS[0]
    pol = {"kind": "compliant", "profile": "cn", "rates": ["10%"], "cap": "10%"}
    p = Programme("single-product shop", "legitimate", "entry-package look-alike: one SKU, but retail", pol)
    b = _B(rng)
    m = 0.0
    for s in range(4):
        S = f"store{s}"
        for c in range(15):
            m += 23
            C = f"{S}_c{c}"
            b.bind(C, S, m)
            b.order(C, m + 4, sku=tea)
            if c % 5 == 0:  # a fan who brings friends, one level
                for f in range(3):
                    m += 9
                    F = f"{C}_f{f}"
                    b.bind(F, C, m)
                    b.order(F, m + 4, sku=tea)
    p.events = b.events()
    return p


def deep_distributor_tree(rng: random.Random) -> Programme:
    """Two paid levels on a three-level distributor tree of 30+ people; sales to customers only."""
    pol = {"kind": "compliant", "profile": "cn", "rates": ["10%", "5%"], "cap": "15%"}
    p = Programme("deep distributor tree, two paid levels", "legitimate",
                  "2013 opinion shape, no prohibited act", pol)
    b = _B(rng)
    m = 0.0
    for s in range(4):
        S = f"sub{s}"
        b.bind(S, "founder", m)
        for d in range(8):
            m += 11
            D = f"{S}_d{d}"
            b.bind(D, S, m)
            for c in range(3):
                m += 7
                C = f"{D}_c{c}"
                b.bind(C, D, m)
                b.order(C, m + 60)
    p.events = b.events()
    return p


# ------------------------------------------------------------------------------------------ pyramids
PACK = ("starter-pack", "pack", "999.00")


def entry_package(rng: random.Random) -> Programme:
    """(1) recruits bind, buy one pack at one price within minutes, then recruit; a two-level plan."""
    pol = {"kind": "capped_multilevel", "rates": ["10%", "5%"], "cap": "15%"}
    p = Programme("entry package via binding", "pyramid", "禁止传销条例 art. 7(2) 入门费", pol,
                  expect=("CN-FEE", "US-INTERNAL"))
    b = _B(rng)
    people = _tree(b, "boss", 4, 3, 0, 30, PACK)
    for who, _, _ in rng.sample(people, 8):
        b.order(f"{who}_retail", 9000 + rng.random() * 100)
        b.bind(f"{who}_retail", who, 8990)
    p.events = b.events()
    return p


def entry_package_declared_elsewhere(rng: random.Random) -> Programme:
    """(1') a compliant cn policy that declares an entry SKU never sold; the real pack is another SKU."""
    pol = {"kind": "compliant", "profile": "cn", "rates": ["10%", "5%"], "cap": "15%", "entry_skus": ["kit-2024"]}
    p = Programme("entry package, other SKU declared", "pyramid", "禁止传销条例 art. 7(2)", pol,
                  expect=("CN-FEE", "US-INTERNAL"))
    b = _B(rng)
    _tree(b, "org", 4, 3, 0, 20, ("vip-box", "pack", "1299.00"))
    p.events = b.events()
    return p


def membership_card_shares(rng: random.Random) -> Programme:
    """(3) share-chain membership card under the cn profile: buy the card through a share, re-share."""
    pol = {"kind": "compliant", "profile": "cn", "rates": ["20%", "10%"], "cap": "30%"}
    p = Programme("membership card over share chains", "pyramid", "禁止传销条例 art. 7(2); UCPD Annex I.14", pol,
                  expect=("CN-FEE", "US-INTERNAL"))
    b = _B(rng)
    _tree(b, "host", 4, 3, 0, 25, ("card", "member", "399.00"), via_share=True)
    p.events = b.events()
    return p


def autoship_no_outside(rng: random.Random) -> Programme:
    """(2) auto-ship with no outside buyers: everyone subscribes (role events), the bottom never earns."""
    pol = {"kind": "capped_multilevel", "rates": ["10%", "5%"], "cap": "15%"}
    p = Programme("auto-ship, no outside buyers", "pyramid", "Koscot; FTC 2018 guidance; Herbalife 80%", pol,
                  expect=("US-RETAIL",))
    b = _B(rng)
    people = _tree(b, "top", 3, 4, 0, 45, None, role="autoship")
    box = ("monthly-box", "food", "199.00")
    for month in range(3):
        for who, level, _ in people:
            if level > 1:
                b.order(who, 2000 + month * 43200 + rng.random() * 600, sku=box)
    p.events = b.events()
    return p


def inventory_loading(rng: random.Random) -> Programme:
    """Distributors load stock to qualify, uplines are paid out, the stock is returned after payout."""
    pol = {"kind": "capped_multilevel", "rates": ["10%", "5%"], "cap": "15%"}
    p = Programme("inventory loading", "pyramid", "FTC 2018 guidance: inventory loading; Amway 70% rule", pol,
                  expect=("US-INVENTORY",))
    b = _B(rng)
    people = _tree(b, "head", 3, 4, 0, 40, None)
    loads = []
    for who, level, _ in people:
        if level > 1:
            loads.append(b.order(who, 3000 + rng.random() * 100, sku=SKUS[3], qty=20))
        for c in range(2):
            b.bind(f"{who}_k{c}", who, 2500)
            b.order(f"{who}_k{c}", 2600)
    _payouts(b, pol, 60 * 24 * 10)
    for o in loads:
        b.refund(o, 60 * 24 * 15 + rng.random() * 100)
    p.events = b.events()
    return p


def headcount_bounty(rng: random.Random) -> Programme:
    """Pay per recruit: payouts carry a bounty for each bind beyond the commission on sales."""
    pol = {"kind": "last_sharer", "rate": "10%"}
    p = Programme("recruit bounty", "pyramid", "禁止传销条例 art. 7(1) 拉人头", pol, expect=("CN-HEADCOUNT",))
    b = _B(rng)
    people = _tree(b, "chief", 3, 4, 0, 30, None)
    for who, _, _ in people:
        b.order(f"{who}_cust", 5000, share=b.share(who, 4990))
    _payouts(b, pol, 60 * 24 * 10)
    kids: dict[str, int] = {}
    for who, _, _ in people:
        if "." in who:
            kids[who.rsplit(".", 1)[0]] = kids.get(who.rsplit(".", 1)[0], 0) + 1
    for boss, n in sorted(kids.items()):
        b.payout(boss, 5000 * n, 60 * 24 * 11)
    p.events = b.events()
    return p


def deep_multilevel(rng: random.Random) -> Programme:
    """Five paid levels over the binding tree, retail customers at the bottom."""
    pol = {"kind": "capped_multilevel", "rates": ["10%", "5%", "3%", "2%", "1%"]}
    p = Programme("five paid levels", "pyramid", "禁止传销条例 art. 7(3) 团队计酬; WeChat 2 levels", pol,
                  expect=("CN-DEPTH",))
    b = _B(rng)
    people = _tree(b, "apex", 5, 2, 0, 20, None)
    for who, _, _ in people:
        b.bind(f"{who}_cust", who, 3000)
        b.order(f"{who}_cust", 3100)
    p.events = b.events()
    return p


def pool_over_share_chain(rng: random.Random) -> Programme:
    """Every sharer on the path paid from one pool: team pay to any depth."""
    p = Programme("pool over the whole share path", "pyramid", "禁止传销条例 art. 7(3)",
                  {"kind": "linear", "rate": "20%"}, expect=("CN-DEPTH",))
    b = _B(rng)
    people = _tree(b, "lead", 4, 3, 0, 15, None, via_share=True)
    for who, _, own in people:
        b.order(f"{who}_buyer", 4000, share=own)
    p.events = b.events()
    return p


def third_upline_override(rng: random.Random) -> Programme:
    """Only the third upline is paid (an 'override'): one payee per order, three levels up."""
    p = Programme("third-upline override", "pyramid", "团队计酬 at 3 levels; 2013 opinion",
                  {"kind": "capped_multilevel", "rates": ["0%", "0%", "12%"]}, expect=("CN-DEPTH",))
    b = _B(rng)
    people = _tree(b, "crown", 4, 3, 0, 20, None)
    for who, _, _ in people:
        b.bind(f"{who}_buyer", who, 3000)
        b.order(f"{who}_buyer", 3100)
    p.events = b.events()
    return p


def own_consumption(rng: random.Random) -> Programme:
    """Koscot-style: members buy for themselves and recruit; almost no outside customers; no roles."""
    pol = {"kind": "capped_multilevel", "rates": ["10%", "5%"], "cap": "15%"}
    p = Programme("own consumption", "pyramid", "Koscot; Herbalife 80% end users", pol, expect=("US-INTERNAL",))
    b = _B(rng)
    people = _tree(b, "root", 4, 3, 0, 30, None)
    for month in range(3):
        for who, _, _ in people:
            b.order(who, 2000 + month * 43200 + rng.random() * 500)
    p.events = b.events()
    return p


def small_joining_fee(rng: random.Random) -> Programme:
    """A 9.90 'membership' bought through the recruiter's share is the consideration for earning."""
    pol = {"kind": "last_sharer", "rate": "40%"}
    p = Programme("small joining fee", "pyramid", "UCPD Annex I.14; CJEU 4finance: any consideration", pol,
                  expect=("CN-FEE", "EU-INTRO"))
    b = _B(rng)
    _tree(b, "club", 4, 3, 0, 12, ("membership", "member", "9.90"), via_share=True)
    p.events = b.events()
    return p


BUILDERS: list[Callable[[random.Random], Programme]] = [
    first_sharer_deep, two_level_capped, affiliate_late_chargeback, compliant_cn_shares, cashback_last_sharer,
    direct_selling, compliant_cn_roles, returns_before_payout, large_affiliate_network, single_product_shop,
    deep_distributor_tree,
    entry_package, entry_package_declared_elsewhere, membership_card_shares, autoship_no_outside, inventory_loading,
    headcount_bounty, deep_multilevel, pool_over_share_chain, third_upline_override, own_consumption,
    small_joining_fee,
]


def programmes(seed: int = 2026) -> list[Programme]:
    """Every labelled programme, built from one seed (each builder gets its own derived stream)."""
    return [build(random.Random(f"{seed}:{build.__name__}")) for build in BUILDERS]
