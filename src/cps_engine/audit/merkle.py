"""RFC 6962 Merkle trees over statement lines: roots, inclusion proofs and their verification.

The implementation lives in :mod:`cps_engine.merkle` (a lower layer the ledger imports too, so the
ledger's statement roots and the audit statements' roots come from one tree); this module re-exports it.

>>> hashes = [leaf_hash(x) for x in (b"", b"\\x00", b"\\x10")]
>>> verify_inclusion(hashes[2], 2, 3, inclusion_proof(hashes, 2), root_of(hashes))
True
"""

from __future__ import annotations

from cps_engine.merkle import (
    EMPTY_ROOT,
    LEAF_PREFIX,
    NODE_PREFIX,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    node_hash,
    root_from_proof,
    root_of,
    verify_inclusion,
)

__all__ = [
    "EMPTY_ROOT",
    "LEAF_PREFIX",
    "NODE_PREFIX",
    "inclusion_proof",
    "leaf_hash",
    "merkle_root",
    "node_hash",
    "root_from_proof",
    "root_of",
    "verify_inclusion",
]
