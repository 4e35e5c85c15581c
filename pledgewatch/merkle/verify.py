"""Verifying inclusion and consistency proofs: RFC 9162 §2.1.3.2 and §2.1.4.2.

Everything here takes untrusted input and raises only ``ProofError`` (with "got X, want Y"
messages, and ``expected`` / ``computed`` set to what was compared); success returns. Hashes
must be ``bytes`` of exactly 32 bytes, sizes and indexes ints in ``[0, 2**64)``, proofs a
sequence (list, tuple) of hashes. Hashes are those of ``rfc6962``: ``SHA-256(0x00 || data)``
for a leaf and ``SHA-256(0x01 || left || right)`` for a node.

Edge cases follow transparency-dev/merkle ``proof/verify.go``: a consistency proof between equal
sizes must be empty and the two roots equal; one from size 0 to a larger size is rejected
(every tree extends the empty tree, so there is nothing to prove).

The proof's length is checked against the one the sizes require before any hashing, for a
clear message; the RFC loops below keep their own length checks as well.
"""

from __future__ import annotations

from collections.abc import Sequence

from pledgewatch.errors import ProofError
from pledgewatch.merkle import _check
from pledgewatch.merkle.rfc6962 import node_hash


def inclusion_proof_length(index: int, size: int) -> int:
    """The number of hashes in the inclusion proof of leaf ``index < size``.

    ``inner`` levels up, the paths to ``index`` and to the last leaf ``size - 1`` meet; below
    that each level contributes one sibling. Above it the path runs along the right border and
    contributes a left sibling for each one bit of ``index >> inner``.
    """
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def consistency_proof_length(size1: int, size2: int) -> int:
    """The number of hashes in the consistency proof for ``0 < size1 < size2``.

    It is the inclusion proof of the old tree's last perfect subtree (``2**shift`` leaves,
    ``shift`` the trailing zeros of ``size1``) in the new tree, so the lowest ``shift`` levels
    drop out, plus that subtree's own hash unless it is the whole old tree.
    """
    shift = (size1 & -size1).bit_length() - 1
    seed = 0 if size1 == 1 << shift else 1
    return seed + inclusion_proof_length(size1 - 1, size2) - shift


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root that ``proof`` proves leaf ``index`` (with hash ``leaf_hash``) is under.

    RFC 9162 §2.1.3.2 steps 1 to 4 and the ``sn == 0`` check of step 5; requires
    ``0 <= index < size`` and ``len(proof) == inclusion_proof_length(index, size)``.
    """
    leaf = _check.digest(leaf_hash, "leaf hash")
    index = _check.count(index, "leaf index")
    size = _check.count(size, "tree size")
    path = _check.digests(proof, "inclusion proof")
    if index >= size:
        raise ProofError(
            f"leaf index: got {index}, want < tree size {size}", expected=size, computed=index
        )
    _check.length(path, inclusion_proof_length(index, size), "inclusion proof")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise ProofError("inclusion proof: too long (RFC 9162 §2.1.3.2 step 4a)")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # fn is the last node on its level: skip the levels where it has no sibling.
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof: too short (RFC 9162 §2.1.3.2 step 5)")
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that leaf ``index`` of the tree of ``size`` leaves with ``root`` has ``leaf_hash``.

    ``leaf_hash`` is ``SHA-256(0x00 || data)``, not the raw data. Returns ``None`` on success;
    raises ``ProofError`` on any failure, ``expected=root, computed=<root from the proof>``
    when the proof is well formed but leads elsewhere.
    """
    want = _check.digest(root, "root")
    got = root_from_inclusion_proof(leaf_hash, index, size, proof)
    _match(got, want, "root")


def root_from_consistency_proof(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes
) -> bytes:
    """The new root that ``proof`` proves extends the tree of ``size1`` leaves with ``root1``.

    RFC 9162 §2.1.4.2, including its check that the proof rebuilds ``root1``. Requires
    ``0 < size1 <= size2``, or ``size1 == size2`` with an empty proof (which returns ``root1``).
    """
    size1 = _check.count(size1, "size1")
    size2 = _check.count(size2, "size2")
    path = _check.digests(proof, "consistency proof")
    old = _check.digest(root1, "root1")
    if size1 > size2:
        raise ProofError(
            f"size1: got {size1}, want <= size2 {size2}", expected=size2, computed=size1
        )
    if size1 == size2:
        _check.length(path, 0, "consistency proof between equal sizes")
        return old
    if size1 == 0:
        raise ProofError("size1: got 0, want > 0 (no consistency proof from the empty tree)")
    _check.length(path, consistency_proof_length(size1, size2), "consistency proof")
    # Step 2: if size1 is a power of two the old root is itself a node of the new tree, the
    # seed of both hash chains, and the proof omits it.
    if size1 & (size1 - 1) == 0:
        path = [old, *path]
    return _chain_consistency(size1, size2, path, old)


def _chain_consistency(size1: int, size2: int, path: list[bytes], root1: bytes) -> bytes:
    """RFC 9162 §2.1.4.2 steps 3 to 7: check ``fr == root1``, return ``sr``.

    ``fr`` chains only the hashes left of the path to leaf ``size1 - 1``, so it rebuilds the old
    root; ``sr`` chains all of them and rebuilds the new root.
    """
    fn, sn = size1 - 1, size2 - 1
    # Start at the top of the old tree's last perfect subtree, the seed path[0].
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof: too long (RFC 9162 §2.1.4.2 step 6a)")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof: too short (RFC 9162 §2.1.4.2 step 7)")
    _match(fr, root1, "root1")
    return sr


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree of ``size2`` leaves with ``root2`` extends ``size1`` with ``root1``.

    Returns ``None`` on success; raises ``ProofError`` on any failure. When ``size1 == size2``
    the proof must be empty and ``root1 == root2``; ``size1 == 0 < size2`` is rejected.
    """
    want = _check.digest(root2, "root2")
    got = root_from_consistency_proof(size1, size2, proof, root1)
    _match(got, want, "root2")


def _match(computed: bytes, expected: bytes, what: str) -> None:
    if computed != expected:
        raise ProofError(
            f"{what}: got {computed.hex()} from the proof, want {expected.hex()}",
            expected=expected,
            computed=computed,
        )
