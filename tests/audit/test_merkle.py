"""RFC 6962 Merkle tree: golden vectors from Certificate Transparency, proofs over every small tree."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cps_engine.audit.merkle import (
    EMPTY_ROOT,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    node_hash,
    root_from_proof,
    root_of,
    verify_inclusion,
)

# The leaves and roots of the certificate-transparency reference tests (merkle_tree_test.cc): the
# roots of the trees over the first 1..8 leaves.
CT_LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                        "606162636465666768696a6b6c6d6e6f")]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf index, tree size, audit path) from the same reference tests
CT_PROOFS = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]


def test_empty_tree_and_domain_separation() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_of([]) == EMPTY_ROOT
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    # a leaf can never pose as an inner node: the same 64 bytes hash differently as leaf and as node
    two = [leaf_hash(b"x"), leaf_hash(b"y")]
    assert merkle_root([two[0] + two[1]]) != root_of(two)


@pytest.mark.parametrize("n", range(1, 9))
def test_ct_golden_roots(n: int) -> None:
    assert merkle_root(CT_LEAVES[:n]).hex() == CT_ROOTS[n - 1]


@pytest.mark.parametrize(("index", "size", "path"), CT_PROOFS)
def test_ct_golden_inclusion_proofs(index: int, size: int, path: list[str]) -> None:
    hashes = [leaf_hash(x) for x in CT_LEAVES[:size]]
    assert [h.hex() for h in inclusion_proof(hashes, index)] == path
    assert verify_inclusion(hashes[index], index, size, [bytes.fromhex(h) for h in path],
                            bytes.fromhex(CT_ROOTS[size - 1]))


def _recursive_root(hashes: list[bytes]) -> bytes:
    """RFC 6962 §2.1 written literally, as an independent reference."""
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return node_hash(_recursive_root(hashes[:k]), _recursive_root(hashes[k:]))


@pytest.mark.parametrize("n", range(1, 34))
def test_every_proof_of_every_small_tree(n: int) -> None:
    hashes = [leaf_hash(i.to_bytes(2, "big")) for i in range(n)]
    root = root_of(hashes)
    assert root == _recursive_root(hashes)
    for m in range(n):
        proof = inclusion_proof(hashes, m)
        assert verify_inclusion(hashes[m], m, n, proof, root)
        assert len(proof) <= max(1, (n - 1).bit_length())
        # the proof does not fit another leaf or another index
        assert not verify_inclusion(leaf_hash(b"other"), m, n, proof, root)
        if n > 1:
            assert not verify_inclusion(hashes[m], (m + 1) % n, n, proof, root)


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=40), st.data())
def test_tampered_proof_is_rejected(leaves: list[bytes], data: st.DataObject) -> None:
    hashes = [leaf_hash(x) for x in leaves]
    root = root_of(hashes)
    m = data.draw(st.integers(0, len(leaves) - 1))
    proof = inclusion_proof(hashes, m)
    assert verify_inclusion(hashes[m], m, len(leaves), proof, root)
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1))
        bad = list(proof)
        bad[k] = bytes(b ^ 1 if i == 0 else b for i, b in enumerate(bad[k]))
        assert not verify_inclusion(hashes[m], m, len(leaves), bad, root)
        assert not verify_inclusion(hashes[m], m, len(leaves), proof[:-1], root)
    assert not verify_inclusion(hashes[m], m, len(leaves), [*proof, root], root)


def test_index_out_of_range() -> None:
    with pytest.raises(IndexError):
        inclusion_proof([leaf_hash(b"")], 1)
    assert root_from_proof(leaf_hash(b""), 3, 2, []) is None
