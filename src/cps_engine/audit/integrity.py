"""Tamper evidence: recompute a statement's Merkle root and chain, locate any edit, prove one line.

:func:`check_integrity` recomputes the leaf hash of every line and the Merkle root, recomputes the
manifest's ``chain_root`` (which commits to the manifest header, the root and the previous
statement's ``chain_root``), and checks the link to the previous statement when it is available.

How an edit is *located*: the manifest keeps the issued leaf hashes in order.  When they still hash to
the stated root (so the list itself is genuine) the recomputed hashes are aligned with them (longest
matching blocks, :mod:`difflib`): a hash that left one position and reappears at another is a
**moved** line, a position whose hash changed is an **edited** line, an issued hash with no
counterpart was **removed**, and a new one was **inserted** (a copy of an issued line says so).
If the leaf-hash list was altered too, the edit is still detected (the root does not match) but it
can no longer be located, and the report says so.

A payee can check their own lines without seeing anyone else's: :func:`prove` gives, for each of
their lines, its position and RFC 6962 audit path; :func:`verify_proof` recomputes the root from it.

>>> from cps_engine.money import Money
>>> from cps_engine.audit.statement import StatementLine, seal_lines
>>> st = seal_lines([StatementLine("amy", f"o{i}", Money(100 + i, "CNY")) for i in range(5)], "2026-03")
>>> check_integrity(st).intact
True
>>> from dataclasses import replace
>>> lines = list(st.lines); lines[1], lines[3] = lines[3], lines[1]
>>> [(c.kind, c.line, c.original) for c in check_integrity(replace(st, lines=tuple(lines))).changes]
[('moved', 2, 4), ('moved', 4, 2)]
"""

from __future__ import annotations

import bisect
import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from cps_engine.audit.merkle import inclusion_proof, root_from_proof, root_of
from cps_engine.audit.statement import (
    FORMAT,
    InvalidStatement,
    Manifest,
    Statement,
    StatementLine,
    read_statement,
    statement_paths,
    totals_of,
)

__all__ = ["PROOF_FORMAT", "Change", "IntegrityReport", "ProofCheck", "check_integrity", "prove", "verify_proof"]

PROOF_FORMAT: Final = "cps-engine-proof/1"
ChangeKind = Literal["edited", "inserted", "removed", "moved"]


@dataclass(frozen=True, slots=True)
class Change:
    """One located edit.  ``line`` is the 1-based position in the statement as it is now (``None`` for a
    removed line); ``original`` the position in the statement as issued (``None`` for an inserted one)."""

    kind: ChangeKind
    line: int | None
    original: int | None
    detail: str
    row: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "line": self.line, "original": self.original, "row": self.row,
                "detail": self.detail}


@dataclass
class IntegrityReport:
    """Outcome of :func:`check_integrity`; ``intact`` when nothing was found."""

    source: str | None
    period: str
    line_count: int
    merkle_root: str
    computed_root: str
    chain_root: str
    computed_chain_root: str
    previous: str
    changes: list[Change] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.changes and not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"intact": self.intact, "statement": self.source, "period": self.period,
                "line_count": self.line_count, "merkle_root": self.merkle_root, "computed_root": self.computed_root,
                "chain_root": self.chain_root, "computed_chain_root": self.computed_chain_root,
                "previous": self.previous, "changes": [c.as_dict() for c in self.changes],
                "problems": self.problems, "notes": self.notes}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), ensure_ascii=False, indent=1) + "\n"


def _hex_list(values: tuple[str, ...]) -> list[bytes] | None:
    try:
        out = [bytes.fromhex(v) for v in values]
    except ValueError:
        return None
    return out if all(len(h) == 32 for h in out) else None


def _describe(line: StatementLine) -> str:
    return f"{line.payee} / order {line.order}: {line.amount}"


def _kept(pos: list[tuple[int, int]], fixed_bonus: int) -> set[int]:
    """Actual indexes of the largest set of lines still in issued order (a longest increasing
    subsequence of issued positions; among equals, the one keeping most lines at their own position).
    ``pos`` is ``(actual index, issued position)`` in actual order.  O(n log n) with a Fenwick tree."""
    if not pos:
        return set()
    size = max(p for _, p in pos) + 1
    tree: list[tuple[int, int]] = [(0, -1)] * (size + 1)  # (best weight, entry) over prefixes
    best: list[int] = []
    back: list[int] = []
    for k, (j, p) in enumerate(pos):
        q, top = p, (0, -1)
        while q > 0:  # prefix max over issued positions < p
            if tree[q] > top:
                top = tree[q]
            q -= q & -q
        weight = fixed_bonus + (1 if j == p else 0)
        best.append(top[0] + weight)
        back.append(top[1])
        q = p + 1
        while q <= size:
            if (best[k], k) > tree[q]:
                tree[q] = (best[k], k)
            q += q & -q
    k = max(range(len(pos)), key=lambda x: best[x])
    out: set[int] = set()
    while k >= 0:
        out.add(pos[k][0])
        k = back[k]
    return out


def _pair_repeats(js: list[int], is_: list[int], issued: list[bytes], actual: list[bytes]) -> dict[int, int]:
    """Match the recomputed occurrences ``js`` of one hash with its issued positions ``is_``.  A hash seen
    once on each side pairs directly; repeats (a duplicated line) pair by their neighbours: an
    occurrence whose neighbours are the issued line's neighbours is the issued line, the others are
    copies."""
    if len(js) == 1 and len(is_) == 1:
        return {js[0]: is_[0]}

    def score(j: int, i: int) -> tuple[int, int, int]:
        same = 0
        if j > 0 and i > 0 and actual[j - 1] == issued[i - 1]:
            same += 1
        if j + 1 < len(actual) and i + 1 < len(issued) and actual[j + 1] == issued[i + 1]:
            same += 1
        return (-same, abs(j - i), j)

    out: dict[int, int] = {}
    used: set[int] = set()
    for _, j, i in sorted((score(j, i), j, i) for j in js for i in is_):
        if j not in out and i not in used:
            out[j] = i
            used.add(i)
    return out


def locate(issued: list[bytes], actual: list[bytes], lines: tuple[StatementLine, ...],
           rows: tuple[int, ...] | None = None) -> list[Change]:
    """Compare the issued leaf hashes with the recomputed ones and name every edited, inserted, removed
    or moved line (see the module docs).

    Each recomputed line whose hash was issued is matched with an issued position (repeats in order).
    The largest set of matched lines still in issued order stays put; any other matched line has
    **moved**.  Between two lines that stayed put, issued lines with no match were **removed** and new
    lines **inserted**, except that they pair up, in order, as **edited** lines.
    """
    slots: dict[bytes, list[int]] = defaultdict(list)
    for i, h in enumerate(issued):
        slots[h].append(i)
    occurs: dict[bytes, list[int]] = defaultdict(list)
    for j, h in enumerate(actual):
        if h in slots:
            occurs[h].append(j)
    match: dict[int, int] = {}
    for h, js in occurs.items():
        match.update(_pair_repeats(js, slots[h], issued, actual))
    kept = _kept(sorted(match.items()), len(actual) + len(issued) + 1)

    def row(j: int) -> int:
        return rows[j] if rows is not None else j + 1

    changes: list[Change] = []
    for j, i in sorted(match.items()):
        if j not in kept:
            changes.append(Change("moved", j + 1, i + 1, f"issued line {i + 1} is now line {j + 1} "
                                  f"({_describe(lines[j])})", row(j)))
    matched_issued = set(match.values())
    removed = [i for i in range(len(issued)) if i not in matched_issued]
    added = [j for j in range(len(actual)) if j not in match]
    # the gap of each unmatched line: the issued position of the nearest kept line before it
    anchor_before_actual: dict[int, int] = {}
    last = -1
    for j in range(len(actual)):
        if j in kept:
            last = match[j]
        elif j not in match:
            anchor_before_actual[j] = last
    kept_issued = sorted(match[j] for j in kept)
    def gap_of_issued(i: int) -> int:
        k = bisect.bisect_left(kept_issued, i)
        return kept_issued[k - 1] if k else -1

    by_gap_removed: dict[int, list[int]] = defaultdict(list)
    for i in removed:
        by_gap_removed[gap_of_issued(i)].append(i)
    issued_pos = {h: ps[0] for h, ps in slots.items()}
    for j in added:
        bucket = by_gap_removed.get(anchor_before_actual[j])
        if bucket:
            i = bucket.pop(0)
            changes.append(Change("edited", j + 1, i + 1, f"line {j + 1} differs from issued line {i + 1} "
                                  f"(now {_describe(lines[j])})", row(j)))
        else:
            copy = issued_pos.get(actual[j])
            what = f"an extra copy of issued line {copy + 1}" if copy is not None else "not in the issued statement"
            changes.append(Change("inserted", j + 1, None, f"line {j + 1} is {what} ({_describe(lines[j])})",
                                  row(j)))
    for bucket in by_gap_removed.values():
        for i in bucket:
            changes.append(Change("removed", None, i + 1, f"issued line {i + 1} is gone"))
    changes.sort(key=lambda c: (c.line if c.line is not None else (c.original or 0), c.kind))
    return changes


def _find_previous(statement: Statement, man: Manifest) -> Statement | None:
    if man.previous_period is None or statement.source is None:
        return None
    paths = statement_paths(Path(statement.source).parent, man.previous_period)
    for kind in ("json", "csv"):
        if paths[kind].exists():
            return read_statement(paths[kind])
    return None


def check_integrity(statement: Statement, previous: Statement | None = None, *,
                    find_previous: bool = True) -> IntegrityReport:
    """Recompute the Merkle root, the chain root and the link to ``previous`` (looked up next to the
    statement file when not given and ``find_previous``); locate every changed line.

    Raises :class:`InvalidStatement` when the statement has no manifest (nothing to check against).
    """
    man = statement.manifest
    if man is None:
        raise InvalidStatement("the statement has no manifest, so there is nothing to check its lines against "
                               "(a CSV needs its .manifest.json next to it)", field="manifest")
    actual = statement.leaf_hashes()
    computed = root_of(actual).hex()
    report = IntegrityReport(statement.source, man.period, len(statement.lines), man.merkle_root, computed,
                             man.chain_root, man.computed_chain_root(), "not chained (first statement)")
    if report.computed_chain_root != man.chain_root:
        report.problems.append("the manifest was edited: its chain_root does not match its contents "
                               "(period, inputs, root, previous root)")
    if man.line_count != len(statement.lines):
        report.problems.append(f"the manifest says {man.line_count} lines, the statement has {len(statement.lines)}")
    issued = _hex_list(man.leaf_hashes)
    issued_ok = issued is not None and len(issued) == man.line_count and root_of(issued).hex() == man.merkle_root
    if computed != man.merkle_root:
        report.problems.append("the lines do not hash to the manifest's merkle_root")
        if issued_ok:
            assert issued is not None
            report.changes.extend(locate(issued, actual, statement.lines, statement.rows))
        else:
            report.problems.append("the leaf-hash list was altered too, so the changed lines cannot be located "
                                   "(compare with the issuer's copy)")
    elif not issued_ok:
        report.problems.append("the manifest's leaf_hashes do not match its merkle_root (the list was edited)")
    if statement.stated_totals is not None and dict(statement.stated_totals) != totals_of(statement.lines):
        if computed == man.merkle_root:
            report.problems.append("the stated totals were edited: they do not add up from the (intact) lines")
        else:
            report.notes.append("the stated totals no longer add up from the lines")

    if man.previous_root is not None:
        prev = previous if previous is not None else (_find_previous(statement, man) if find_previous else None)
        if prev is None:
            report.previous = f"not checked: previous statement {man.previous_period} not given"
            report.notes.append(f"give the {man.previous_period} statement with --previous to check the chain")
        elif prev.manifest is None:
            raise InvalidStatement("the previous statement has no manifest", field="previous")
        else:
            pm = prev.manifest
            broken = []
            if pm.chain_root != man.previous_root:
                broken.append(f"its chain_root {pm.chain_root[:16]}… is not the previous_root "
                              f"{man.previous_root[:16]}… this statement chains to")
            if pm.period != man.previous_period:
                broken.append(f"its period is {pm.period}, not {man.previous_period}")
            if pm.computed_chain_root() != pm.chain_root:
                broken.append("its own manifest was edited")
            if broken:
                report.previous = "broken"
                report.problems.append("chain to the previous statement broken: " + "; ".join(broken))
            else:
                report.previous = f"ok ({pm.period})"
    elif previous is not None:
        report.problems.append("a previous statement was given but this statement is not chained to any")
    return report


# ---------------------------------------------------------------------------------------------- proofs
def prove(statement: Statement, payee: str, order: str | None = None) -> dict[str, Any]:
    """Inclusion proofs for ``payee``'s lines (optionally one ``order``): the manifest without the other
    lines' leaf hashes, and per line its index and audit path.  Raises ``KeyError`` when there is none."""
    man = statement.manifest
    if man is None:
        raise InvalidStatement("only a statement with a manifest can prove its lines", field="manifest")
    hashes = statement.leaf_hashes()
    proofs = []
    for i, line in enumerate(statement.lines):
        if line.payee == payee and (order is None or line.order == order):
            proofs.append({"index": i, "line": line.as_dict(),
                           "audit_path": [h.hex() for h in inclusion_proof(hashes, i)]})
    if not proofs:
        raise KeyError(f"no line for payee {payee!r}" + (f" on order {order!r}" if order else ""))
    return {"format": PROOF_FORMAT, "statement_format": FORMAT, "payee": payee, "tree_size": len(hashes),
            "manifest": man.as_dict(leaf_hashes=False), "proofs": proofs}


@dataclass
class ProofCheck:
    """Outcome of :func:`verify_proof`: ``ok`` when every line is in the tree with the stated root."""

    ok: bool
    lines: list[tuple[StatementLine, bool]]
    problems: list[str]
    merkle_root: str
    chain_root: str

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields (``audit verify-proof --format json``)."""
        return {"ok": self.ok, "merkle_root": self.merkle_root, "chain_root": self.chain_root,
                "lines": [{"line": line.as_dict(), "included": good} for line, good in self.lines],
                "problems": list(self.problems)}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), ensure_ascii=False, indent=1) + "\n"


def verify_proof(doc: Mapping[str, Any], *, root: str | None = None) -> ProofCheck:
    """Check a proof document from :func:`prove`.  ``root`` (the statement's ``merkle_root`` or
    ``chain_root`` as the issuer published it) pins the proof to that statement; without it the proof
    only shows consistency with the manifest it carries.

    >>> from cps_engine.money import Money
    >>> from cps_engine.audit.statement import StatementLine, seal_lines
    >>> st = seal_lines([StatementLine(p, "o1", Money(5, "CNY")) for p in ("amy", "bob", "cat")], "2026-03")
    >>> verify_proof(prove(st, "bob"), root=st.manifest.chain_root).ok
    True
    """
    problems: list[str] = []
    if not isinstance(doc, Mapping) or doc.get("format") != PROOF_FORMAT:
        raise InvalidStatement(f"not a {PROOF_FORMAT} document", field="format")
    man = Manifest.from_dict(doc.get("manifest", {}))
    size = doc.get("tree_size")
    if type(size) is not int or size != man.line_count:
        problems.append(f"tree_size {size!r} is not the manifest's line_count {man.line_count}")
        size = man.line_count
    if man.computed_chain_root() != man.chain_root:
        problems.append("the manifest's chain_root does not match its contents")
    if root is not None and root.lower() not in (man.merkle_root, man.chain_root):
        problems.append(f"the proof is for root {man.merkle_root[:16]}… (chain {man.chain_root[:16]}…), "
                        f"not {root[:16]}…")
    results: list[tuple[StatementLine, bool]] = []
    proofs = doc.get("proofs")
    if not isinstance(proofs, list) or not proofs:
        raise InvalidStatement("the document has no proofs", field="proofs")
    expected = bytes.fromhex(man.merkle_root)
    for p in proofs:
        if not isinstance(p, Mapping):
            raise InvalidStatement("a proof must be an object", field="proofs")
        line = StatementLine.from_dict(p.get("line", {}))
        try:
            path = [bytes.fromhex(h) for h in p.get("audit_path", [])]
            index = p.get("index")
            good = (type(index) is int and root_from_proof(line.leaf_hash(), index, size, path) == expected)
        except (ValueError, TypeError):
            good = False
        if not good:
            problems.append(f"line {_describe(line)} is not in the tree at index {p.get('index')!r}")
        if line.payee != doc.get("payee"):
            problems.append(f"line {_describe(line)} is not a line of payee {doc.get('payee')!r}")
        results.append((line, good))
    return ProofCheck(not problems, results, problems, man.merkle_root, man.chain_root)
