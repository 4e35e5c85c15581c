"""One-call Merkle functions over raw leaf entries, for scripts and tests.

Each takes the raw leaf data (``list[bytes]``, hashed here as ``SHA-256(0x00 || data)``) and
costs O(n) hashing per call; to serve many proofs from one log, build a ``MerkleTree`` once.
Indexes are 0-based. Errors are ``ProofError``.
"""

from __future__ import annotations

from collections.abc import Sequence

from pledgewatch.errors import ProofError
from pledgewatch.merkle import _check
from pledgewatch.merkle.proof import (
    consistency_proof_from_leaf_hashes,
    inclusion_proof_from_leaf_hashes,
)
from pledgewatch.merkle.rfc6962 import leaf_hash, root_from_leaf_hashes


def root(leaves: Sequence[bytes]) -> bytes:
    """``root(leaves: Sequence[bytes]) -> bytes``: the RFC 9162 root of the raw entries.

    ``EMPTY_ROOT`` (``SHA-256("")``) for no leaves.
    """
    return root_from_leaf_hashes(_leaf_hashes(leaves))


def inclusion_proof(leaves: Sequence[bytes], index: int, size: int | None = None) -> list[bytes]:
    """``inclusion_proof(leaves, index, size=None) -> list[bytes]``.

    The proof that ``leaves[index]`` is in the tree of the first ``size`` entries (default all),
    bottom-up, to check with ``verify_inclusion(leaf_hash(leaves[index]), index, size, proof,
    root(leaves[:size]))``. Requires ``0 <= index < size <= len(leaves)``.
    """
    return inclusion_proof_from_leaf_hashes(_leaf_hashes(leaves), index, size)


def consistency_proof(leaves: Sequence[bytes], size1: int, size2: int | None = None) -> list[bytes]:
    """``consistency_proof(leaves, size1, size2=None) -> list[bytes]``.

    The proof that the tree of the first ``size2`` entries (default all) extends the tree of
    the first ``size1``, to check with ``verify_consistency(size1, size2, proof,
    root(leaves[:size1]), root(leaves[:size2]))``. Requires ``0 < size1 <= size2 <=
    len(leaves)``; equal sizes give ``[]``.
    """
    return consistency_proof_from_leaf_hashes(_leaf_hashes(leaves), size1, size2)


def _leaf_hashes(leaves: Sequence[bytes]) -> list[bytes]:
    for i, data in enumerate(_check.sequence(leaves, "leaves")):
        if not isinstance(data, bytes):
            raise ProofError(f"leaves[{i}]: got {type(data).__name__}, want bytes")
    return [leaf_hash(data) for data in leaves]
