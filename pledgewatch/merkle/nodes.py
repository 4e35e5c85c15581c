"""Node addressing in a Merkle log tree, after transparency-dev/merkle ``compact/nodes.go``.

A node is named by ``(level, index)``: leaves are at level 0, and node ``(level, index)`` is the
root of the *perfect* subtree over leaves ``[index * 2**level, (index + 1) * 2**level)``. In a
tree whose size is not a power of two, the right border also has "ephemeral" nodes that cover
fewer leaves; they never get an id, their hashes are recomputed from perfect nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class LeafRange(NamedTuple):
    """The half-open leaf index range ``[begin, end)``."""

    begin: int
    end: int


class Borders(NamedTuple):
    """Bit masks of the perfect subtrees covering a range (see ``decompose``)."""

    left: int
    right: int


@dataclass(frozen=True, slots=True)
class NodeID:
    """The perfect subtree ``[index << level, (index + 1) << level)``."""

    level: int
    index: int

    def parent(self) -> NodeID:
        """The node one level up whose subtree contains this one."""
        return NodeID(self.level + 1, self.index >> 1)

    def sibling(self) -> NodeID:
        """The other child of this node's parent."""
        return NodeID(self.level, self.index ^ 1)

    def coverage(self) -> LeafRange:
        """The leaves under this node."""
        return LeafRange(self.index << self.level, (self.index + 1) << self.level)


def decompose(begin: int, end: int) -> Borders:
    """Split ``[begin, end)`` into its left and right "border" bit masks.

    The range ``[begin, end)`` is covered by a unique minimal list of perfect subtrees. Set bit
    ``k`` of the first mask means one subtree of ``2**k`` leaves on the left part (sizes
    increasing from ``begin``); set bit ``k`` of the second means one on the right part (sizes
    decreasing towards ``end``). Requires ``0 <= begin <= end``.
    """
    if begin == 0:
        return Borders(0, end)
    # Paths from the root to leaves begin-1 and end diverge at level d. Only nodes strictly
    # below d can lie inside the range: to the right of the path to begin-1 they are the zero
    # bits of begin-1, to the left of the path to end they are the one bits of end.
    xbegin = begin - 1
    d = (xbegin ^ end).bit_length() - 1
    mask = (1 << d) - 1
    return Borders(~xbegin & mask, end & mask)


def range_size(begin: int, end: int) -> int:
    """The number of perfect subtrees that exactly cover ``[begin, end)``."""
    left, right = decompose(begin, end)
    return left.bit_count() + right.bit_count()


def range_nodes(begin: int, end: int) -> list[NodeID]:
    """The perfect subtrees that exactly cover ``[begin, end)``, ordered left to right."""
    left, right = decompose(begin, end)
    ids: list[NodeID] = []
    pos = begin
    while left:
        # Lowest set bit first: the left border grows towards the middle of the range.
        level = (left & -left).bit_length() - 1
        ids.append(NodeID(level, pos >> level))
        pos += 1 << level
        left ^= 1 << level
    while right:
        # Highest set bit first: the right border shrinks towards end.
        level = right.bit_length() - 1
        ids.append(NodeID(level, pos >> level))
        pos += 1 << level
        right ^= 1 << level
    return ids
