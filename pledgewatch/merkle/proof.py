"""Building inclusion and consistency proofs, after transparency-dev/merkle ``proof/proof.go``.

Building a proof is split in three so that storage stays outside the core:

1. ``inclusion_nodes`` / ``consistency_nodes`` say which perfect nodes the proof needs
   (a ``ProofNodes``), from the sizes and index alone;
2. the caller fetches those nodes' hashes from wherever it keeps them;
3. ``rehash`` combines the fetched hashes into the proof, a pure function.

A proof lists hashes bottom-up, as RFC 9162 §2.1.3.1 (``PATH``) and §2.1.4.1 (``PROOF``) define
them. One proof element may be an *ephemeral* node: the right-border node of a tree whose size
is not a power of two, which is not perfect, so is stored nowhere; its hash is rebuilt from the
perfect nodes ``ids[begin:end]`` under it (ordered from the lowest level up).

``inclusion_proof_from_leaf_hashes`` and ``consistency_proof_from_leaf_hashes`` run the three
steps over an in-memory list of leaf hashes; for many proofs from one big tree use
``MerkleTree``, which stores every perfect node.

All errors are ``ProofError`` (a request for a proof that cannot exist is bad evidence too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pledgewatch.errors import ProofError
from pledgewatch.merkle import _check
from pledgewatch.merkle.nodes import NodeID, range_nodes
from pledgewatch.merkle.rfc6962 import node_hash, root_from_leaf_hashes


@dataclass(frozen=True, slots=True)
class ProofNodes:
    """How to build one proof: the node ids to fetch, and which of them to rehash.

    ``ids`` are perfect nodes, in proof order. If ``begin < end`` then ``ids[begin:end]`` (at
    least two nodes) are the perfect nodes under the ephemeral node ``ephem``, lowest level
    first, and are folded into one proof element by ``rehash``; otherwise ``begin == end == 0``,
    ``ephem`` is ``None`` and every id is one proof element.
    """

    ids: tuple[NodeID, ...]
    begin: int = 0
    end: int = 0
    ephem: NodeID | None = None

    def skip_first(self) -> ProofNodes:
        """The same nodes without ``ids[0]``, the seed the verifier already knows."""
        if self.begin < self.end:
            return ProofNodes(self.ids[1:], self.begin - 1, self.end - 1, self.ephem)
        return ProofNodes(self.ids[1:])


def inclusion_nodes(index: int, size: int) -> ProofNodes:
    """The nodes of the inclusion proof of leaf ``index`` in the tree of ``size`` leaves.

    Requires ``0 <= index < size``; raises ``ProofError`` otherwise.
    """
    index = _check.count(index, "leaf index")
    size = _check.count(size, "tree size")
    if index >= size:
        raise ProofError(
            f"leaf index: got {index}, want < tree size {size}", expected=size, computed=index
        )
    return _nodes(index, 0, size).skip_first()


def consistency_nodes(size1: int, size2: int) -> ProofNodes:
    """The nodes of the consistency proof from the tree of ``size1`` leaves to ``size2``.

    Requires ``0 < size1 <= size2``, or ``size1 == size2 == 0``; the proof between equal sizes
    is empty. Raises ``ProofError`` otherwise (from the empty tree no proof is meaningful).
    """
    size1 = _check.count(size1, "size1")
    size2 = _check.count(size2, "size2")
    if size1 > size2:
        raise ProofError(
            f"size1: got {size1}, want <= size2 {size2}", expected=size2, computed=size1
        )
    if size1 == size2:
        return ProofNodes(())
    if size1 == 0:
        raise ProofError("size1: got 0, want > 0 (no consistency proof from the empty tree)")
    # The old tree's rightmost perfect subtree has 2**level leaves and ends at leaf size1-1;
    # the proof is that node (the seed) followed by its inclusion proof in the new tree.
    level = ((size1 & -size1).bit_length()) - 1
    seed_index = (size1 - 1) >> level
    nodes = _nodes(seed_index, level, size2)
    if size1 & (size1 - 1) == 0:
        # size1 is a power of two: the seed is the old root itself, which the verifier has.
        return nodes.skip_first()
    return nodes


def _nodes(index: int, level: int, size: int) -> ProofNodes:
    """The seed ``(level, index)`` followed by the nodes proving it is in the tree of ``size``."""
    # The path from the seed up to the root and the path to the last leaf (the right border)
    # meet at `fork`, `inner` levels above the seed. Below the fork every sibling on the path
    # is perfect. The fork's sibling is the ephemeral node covering [end, size), rebuilt from
    # the perfect nodes of that range; above the fork the path runs along the right border,
    # whose left siblings are the perfect nodes covering [0, begin).
    inner = (index ^ (size >> level)).bit_length() - 1
    fork = NodeID(level + inner, index >> inner)
    begin, end = fork.coverage()

    node = NodeID(level, index)
    ids = [node]
    while node.level < fork.level:
        ids.append(node.sibling())
        node = node.parent()
    len1 = len(ids)
    ids.extend(reversed(range_nodes(end, size)))
    len2 = len(ids)
    ids.extend(reversed(range_nodes(0, begin)))
    if len2 - len1 < 2:
        # Zero or one node right of the fork: nothing to rehash, the one node (if any) is
        # perfect and is the proof element itself.
        return ProofNodes(tuple(ids))
    return ProofNodes(tuple(ids), len1, len2, fork.sibling())


def rehash(nodes: ProofNodes, hashes: Sequence[bytes]) -> list[bytes]:
    """Combine the fetched hashes of ``nodes.ids`` (same order) into the proof.

    The ephemeral block ``hashes[begin:end]`` is folded right to left, each lower node being
    the right child: ``h = hashes[begin]``, then ``h = node_hash(hashes[i], h)`` for each
    following ``i``. Raises ``ProofError`` on a wrong count or a hash that is not 32 bytes.
    """
    fetched = _check.digests(hashes, "node hashes")
    _check.length(fetched, len(nodes.ids), "node hashes")
    if nodes.begin >= nodes.end:
        return fetched
    acc = fetched[nodes.begin]
    for left in fetched[nodes.begin + 1 : nodes.end]:
        acc = node_hash(left, acc)
    return [*fetched[: nodes.begin], acc, *fetched[nodes.end :]]


def inclusion_proof_from_leaf_hashes(
    leaf_hashes: Sequence[bytes], index: int, size: int | None = None
) -> list[bytes]:
    """The inclusion proof of leaf ``index`` in the tree of the first ``size`` leaf hashes.

    ``size`` defaults to ``len(leaf_hashes)``. Costs O(size) hashing; raises ``ProofError``
    unless ``0 <= index < size <= len(leaf_hashes)``.
    """
    size = _size_within(leaf_hashes, size)
    nodes = inclusion_nodes(index, size)
    return rehash(nodes, [_perfect_hash(leaf_hashes, node) for node in nodes.ids])


def consistency_proof_from_leaf_hashes(
    leaf_hashes: Sequence[bytes], size1: int, size2: int | None = None
) -> list[bytes]:
    """The consistency proof between the trees of the first ``size1`` and ``size2`` leaves.

    ``size2`` defaults to ``len(leaf_hashes)``. Costs O(size2) hashing; raises ``ProofError``
    unless ``0 < size1 <= size2 <= len(leaf_hashes)`` (or ``size1 == size2``, giving ``[]``).
    """
    size2 = _size_within(leaf_hashes, size2)
    nodes = consistency_nodes(size1, size2)
    return rehash(nodes, [_perfect_hash(leaf_hashes, node) for node in nodes.ids])


def _size_within(leaf_hashes: Sequence[bytes], size: int | None) -> int:
    if size is None:
        return len(leaf_hashes)
    size = _check.count(size, "tree size")
    if size > len(leaf_hashes):
        raise ProofError(
            f"tree size: got {size}, want <= {len(leaf_hashes)} (the leaves available)",
            expected=len(leaf_hashes),
            computed=size,
        )
    return size


def _perfect_hash(leaf_hashes: Sequence[bytes], node: NodeID) -> bytes:
    begin, end = node.coverage()
    return root_from_leaf_hashes(leaf_hashes[begin:end])
