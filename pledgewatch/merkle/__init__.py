"""Merkle log: RFC 6962 / RFC 9162 hashing, proofs, verification and compact ranges.

Stable public names (others script against them; hashes are 32-byte ``bytes``, indexes are
0-based, every deliberate error is ``pledgewatch.errors.ProofError``):

* ``leaf_hash(data: bytes) -> bytes``: ``SHA-256(0x00 || data)``.
* ``node_hash(left: bytes, right: bytes) -> bytes``: ``SHA-256(0x01 || left || right)``.
* ``EMPTY_ROOT``: ``SHA-256("")``, the root of the empty tree.
* ``root(leaves: Sequence[bytes]) -> bytes``: root over the RAW leaf entries.
* ``inclusion_proof(leaves: Sequence[bytes], index: int, size: int | None = None)
  -> list[bytes]``: raw entries in, proof for leaf ``index`` in the tree of ``size`` leaves.
* ``consistency_proof(leaves: Sequence[bytes], size1: int, size2: int | None = None)
  -> list[bytes]``: raw entries in, proof that ``size2`` extends ``size1``.
* ``verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes],
  root: bytes) -> None``: takes the leaf HASH; raises ``ProofError`` unless valid.
* ``verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes,
  root2: bytes) -> None``: raises ``ProofError`` unless valid.
* ``MerkleTree``: in-memory tree for serving many proofs (``from_leaves``, ``append``,
  ``root(size=None)``, ``inclusion_proof(index, size=None)``, ``consistency_proof(size1,
  size2=None)``).
* ``CompactRange``: O(log n) append-only state (``append(leaf_hash)``, ``root()``, ``size``,
  ``hashes`` / ``from_hashes``, ``to_bytes`` / ``from_bytes``).

The building blocks live in ``rfc6962`` (hashing), ``nodes`` (node ids), ``proof`` (which
nodes a proof needs, then ``rehash``), ``verify``, ``compact`` and ``tree``.
"""

from __future__ import annotations

from pledgewatch.merkle.compact import CompactRange
from pledgewatch.merkle.leaves import consistency_proof, inclusion_proof, root
from pledgewatch.merkle.rfc6962 import EMPTY_ROOT, leaf_hash, node_hash
from pledgewatch.merkle.tree import MerkleTree
from pledgewatch.merkle.verify import verify_consistency, verify_inclusion

__all__ = [
    "EMPTY_ROOT",
    "CompactRange",
    "MerkleTree",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]
