"""An in-memory Merkle log tree that stores every perfect node, for serving many proofs.

``levels[k][i]`` is the hash of the perfect node ``(k, i)`` (see ``nodes``): level 0 holds the
leaf hashes ``SHA-256(0x00 || data)``, and ``levels[k + 1][i] = SHA-256(0x01 || levels[k][2i] ||
levels[k][2i + 1])``. Only perfect nodes are stored, so appending never rewrites a stored
hash and the tree answers for every earlier size too: the root or the right-border
("ephemeral") node of any size is rebuilt from at most ``log2(size)`` stored nodes.

Memory is about 2 hashes per leaf (some 150 MB for a million leaves). Appending costs O(1)
amortised hashing; a root or an inclusion proof O(log n).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from pledgewatch.errors import ProofError
from pledgewatch.merkle import _check
from pledgewatch.merkle.proof import consistency_nodes, rehash
from pledgewatch.merkle.rfc6962 import EMPTY_ROOT, LEAF_PREFIX, NODE_PREFIX, node_hash


class MerkleTree:
    """An append-only RFC 9162 Merkle tree held in memory as lists of hashes, one per level.

    Build with ``MerkleTree.from_leaves(raw_entries)`` (or ``MerkleTree()`` then ``append`` /
    ``extend``). Indexes are 0-based. Every method raises only ``ProofError``.
    """

    __slots__ = ("_levels",)

    def __init__(self) -> None:
        """An empty tree."""
        self._levels: list[list[bytes]] = [[]]

    @classmethod
    def from_leaves(cls, leaves: Iterable[bytes]) -> MerkleTree:
        """A tree over the raw leaf entries ``leaves`` (each hashed as ``0x00 || data``)."""
        tree = cls()
        tree.extend(leaves)
        return tree

    @classmethod
    def from_leaf_hashes(cls, leaf_hashes: Iterable[bytes]) -> MerkleTree:
        """A tree whose leaves have these (32-byte) hashes."""
        tree = cls()
        tree.extend_leaf_hashes(leaf_hashes)
        return tree

    @property
    def size(self) -> int:
        """The number of leaves."""
        return len(self._levels[0])

    def append(self, data: bytes) -> int:
        """Append one raw leaf entry; return its index."""
        self.extend((data,))
        return self.size - 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Append raw leaf entries in order."""
        sha256 = hashlib.sha256
        prefix = LEAF_PREFIX
        try:
            hashes = [sha256(prefix + data).digest() for data in leaves]
        except TypeError as exc:
            raise ProofError(f"leaf data: {exc}, want bytes") from exc
        self._add(hashes)

    def extend_leaf_hashes(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append leaves given by their hashes; raises ``ProofError`` unless all are 32 bytes."""
        self._add(_check.digests(list(leaf_hashes), "leaf hashes"))

    def _add(self, leaf_hashes: list[bytes]) -> None:
        # Appending to level k completes the parents of pairs (2i, 2i+1) for i from
        # len(levels[k+1]) up to len(levels[k]) // 2; nothing above changes once a level
        # gains no new node.
        sha256 = hashlib.sha256
        prefix = NODE_PREFIX
        levels = self._levels
        levels[0].extend(leaf_hashes)
        k = 0
        while len(levels[k]) > 1:
            if k + 1 == len(levels):
                levels.append([])
            below, above = levels[k], levels[k + 1]
            start, stop = len(above), len(below) // 2
            if start == stop:
                break
            pairs = iter(below[2 * start : 2 * stop])
            above.extend(
                [sha256(prefix + a + b).digest() for a, b in zip(pairs, pairs, strict=False)]
            )
            k += 1

    def node(self, level: int, index: int) -> bytes:
        """The hash of the perfect node ``(level, index)``; ``node(0, i)`` is leaf ``i``'s hash."""
        level = _check.count(level, "level")
        index = _check.count(index, "index")
        if level >= len(self._levels) or index >= len(self._levels[level]):
            raise ProofError(
                f"node ({level}, {index}): not a perfect node of a tree of {self.size}"
            )
        return self._levels[level][index]

    def root(self, size: int | None = None) -> bytes:
        """The root of the tree of the first ``size`` leaves (default: all of them)."""
        size = self._size_arg(size)
        if size == 0:
            return EMPTY_ROOT
        return self._cover_hash(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size`` leaves.

        ``size`` defaults to the current size. Requires ``0 <= index < size <= self.size``.
        """
        size = self._size_arg(size)
        index = _check.count(index, "leaf index")
        if index >= size:
            raise ProofError(
                f"leaf index: got {index}, want < tree size {size}", expected=size, computed=index
            )
        levels = self._levels
        # Paths to leaf `index` and to the last leaf `size - 1` split `inner` levels up. Below
        # that every sibling is perfect; at level inner-1 the sibling is the right-border node
        # over [begin, size), perfect only if it is full; above, the path follows the right
        # border and a proof element exists only where the path comes from a right child.
        inner = (index ^ (size - 1)).bit_length()
        proof = [levels[k][(index >> k) ^ 1] for k in range(inner - 1)]
        if inner:
            begin = ((index >> (inner - 1)) ^ 1) << (inner - 1)
            proof.append(self._cover_hash(begin, size))
        position = index >> inner
        k = inner
        while position:
            if position & 1:
                proof.append(levels[k][position - 1])
            position >>= 1
            k += 1
        return proof

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """The RFC 9162 consistency proof from the tree of ``size1`` leaves to ``size2``.

        ``size2`` defaults to the current size. Requires ``0 < size1 <= size2 <= self.size``;
        ``size1 == size2`` gives ``[]``.
        """
        size2 = self._size_arg(size2)
        nodes = consistency_nodes(size1, size2)
        levels = self._levels
        return rehash(nodes, [levels[node.level][node.index] for node in nodes.ids])

    def _size_arg(self, size: int | None) -> int:
        if size is None:
            return self.size
        size = _check.count(size, "tree size")
        if size > self.size:
            raise ProofError(
                f"tree size: got {size}, want <= {self.size} (the tree's size)",
                expected=self.size,
                computed=size,
            )
        return size

    def _cover_hash(self, begin: int, end: int) -> bytes:
        """The hash of leaves ``[begin, end)``, a root or a right-border node.

        Requires ``begin`` to be a multiple of the smallest power of two ``>= end - begin``.
        Then the range splits into perfect nodes of decreasing sizes, one per set bit of
        ``end - begin``, each aligned to its size, and its hash folds them from the right.
        """
        levels = self._levels
        covering = []
        rest = end - begin
        while rest:
            k = rest.bit_length() - 1
            covering.append(levels[k][begin >> k])
            begin += 1 << k
            rest ^= 1 << k
        acc = covering.pop()
        while covering:
            acc = node_hash(covering.pop(), acc)
        return acc
