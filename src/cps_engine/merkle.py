"""RFC 6962 Merkle trees and the one canonical JSON byte form cps_engine hashes.

The lowest layer both the ledger (:mod:`cps_engine.ledger`) and the audit tools
(:mod:`cps_engine.audit`) import, so there is one tree and one encoder.

Hashes are domain-separated so a leaf can never be passed off as an inner node (RFC 6962 §2.1,
RFC 9162 §2.1.1):

- leaf hash ``= sha256(0x00 || leaf bytes)``;
- node hash ``= sha256(0x01 || left || right)``;
- the root of an empty tree is ``sha256()`` of nothing;
- a tree of ``n > 1`` leaves splits at ``k``, the largest power of two below ``n``.

An odd node is never paired with itself, so ``[a, b, c]`` and ``[a, b, c, c]`` have different roots
(the duplicate-leaf ambiguity of CVE-2012-2459 cannot arise).

An inclusion proof (RFC 6962 §2.1.1 ``PATH(m, D[n])``) lets a payee check that their own line is in
a statement of ``n`` lines with a known root, from ``⌈log2 n⌉`` hashes, without seeing any other
line.

>>> leaves = [b"", b"\\x00", b"\\x10"]
>>> merkle_root(leaves).hex()[:16]
'aeb6bcfe274b70a1'
>>> merkle_root([b"a", b"b", b"c"]) != merkle_root([b"a", b"b", b"c", b"c"])
True
>>> hashes = [leaf_hash(x) for x in leaves]
>>> proof = inclusion_proof(hashes, 2)
>>> verify_inclusion(hashes[2], 2, 3, proof, root_of(hashes))
True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any, Final

__all__ = [
    "EMPTY_ROOT",
    "canonical_json",
    "inclusion_proof",
    "leaf_hash",
    "merkle_root",
    "node_hash",
    "root_from_proof",
    "root_of",
    "verify_inclusion",
]

LEAF_PREFIX: Final = b"\x00"
NODE_PREFIX: Final = b"\x01"
#: Root of a tree with no leaves: sha256 of the empty string (RFC 6962 ``MTH({})``).
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()


def canonical_json(obj: Any) -> bytes:
    """UTF-8 JSON, keys sorted, no whitespace, non-ASCII kept, no NaN: the one byte form that is hashed.

    >>> canonical_json({"b": 1, "a": ["é", None]})
    b'{"a":["\\xc3\\xa9",null],"b":1}'
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def leaf_hash(leaf: bytes) -> bytes:
    """``sha256(0x00 || leaf)``.

    >>> leaf_hash(b"").hex()[:16]
    '6e340b9cffb37a98'
    """
    return hashlib.sha256(LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``sha256(0x01 || left || right)``.

    >>> len(node_hash(bytes(32), bytes(32)))
    32
    """
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly below ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _mth(hashes: Sequence[bytes], lo: int, hi: int) -> bytes:
    n = hi - lo
    if n == 1:
        return hashes[lo]
    k = _split(n)
    return node_hash(_mth(hashes, lo, lo + k), _mth(hashes, lo + k, hi))


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """Merkle tree hash over already-hashed leaves (recursion depth is ``log2 n``).

    >>> root_of([]) == EMPTY_ROOT
    True
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    return _mth(leaf_hashes, 0, len(leaf_hashes))


def merkle_root(leaves: Iterable[bytes]) -> bytes:
    """Merkle tree hash of raw leaves (each hashed with :func:`leaf_hash` first).

    >>> merkle_root([b""]).hex() == leaf_hash(b"").hex()
    True
    """
    return root_of([leaf_hash(x) for x in leaves])


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Audit path of leaf ``index`` in the tree over ``leaf_hashes``, nearest sibling first.

    >>> hs = [leaf_hash(bytes([i])) for i in range(5)]
    >>> len(inclusion_proof(hs, 0)), len(inclusion_proof(hs, 4))
    (3, 1)
    """
    n = len(leaf_hashes)
    if not 0 <= index < n:
        raise IndexError(f"leaf index {index} outside a tree of {n} leaves")
    path: list[bytes] = []
    lo, hi, m = 0, n, index
    frames: list[bytes] = []
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            frames.append(_mth(leaf_hashes, lo + k, hi))
            hi = lo + k
        else:
            frames.append(_mth(leaf_hashes, lo, lo + k))
            lo, m = lo + k, m - k
    path.extend(reversed(frames))
    return path


def root_from_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes | None:
    """The root that ``proof`` implies for leaf hash ``leaf`` at ``index`` of ``size`` leaves, or
    ``None`` when the proof has the wrong shape (RFC 9162 §2.1.3.2).

    >>> root_from_proof(leaf_hash(b""), 0, 1, []) == leaf_hash(b"")
    True
    """
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree of ``size`` with ``root``.

    >>> hs = [leaf_hash(bytes([i])) for i in range(7)]
    >>> verify_inclusion(hs[3], 3, 7, inclusion_proof(hs, 3), root_of(hs))
    True
    >>> verify_inclusion(hs[3], 4, 7, inclusion_proof(hs, 3), root_of(hs))
    False
    """
    return root_from_proof(leaf, index, size, proof) == root
