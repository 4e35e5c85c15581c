"""The compact range ``[0, size)``: the whole state an append-only log needs to keep its root.

After transparency-dev/merkle ``compact/range.go`` (restricted to ranges starting at leaf 0).
The leaves ``[0, size)`` split uniquely into perfect subtrees, one of ``2**k`` leaves for each
set bit ``k`` of ``size``, largest (leftmost) first. Their hashes are the whole state: a new
leaf is appended in O(log n) hashing and the root is the fold of the hashes from the right.

Persisted form (version 1), ``to_bytes``::

    0x01                      format version
    size                      8 bytes, unsigned big-endian
    hash[0] ... hash[c-1]     32 bytes each, c = popcount(size), largest subtree first
"""

from __future__ import annotations

from collections.abc import Sequence

from pledgewatch.errors import ProofError
from pledgewatch.merkle import _check
from pledgewatch.merkle.rfc6962 import EMPTY_ROOT, HASH_SIZE, leaf_hash, node_hash

FORMAT_VERSION = 1
_HEADER_SIZE = 1 + 8


class CompactRange:
    """The perfect-subtree hashes covering leaves ``[0, size)`` of an append-only log.

    Invariant: ``len(hashes) == size.bit_count()`` and ``hashes[j]`` is the root of the ``j``-th
    largest perfect subtree, left to right. Every method raises only ``ProofError``.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        """The empty range (size 0)."""
        self._size = 0
        self._hashes: list[bytes] = []

    @classmethod
    def from_hashes(cls, size: int, hashes: Sequence[bytes]) -> CompactRange:
        """Resume from a persisted ``size`` and ``hashes`` (as returned by ``hashes``)."""
        size = _check.count(size, "size")
        checked = _check.digests(hashes, "compact range hashes")
        _check.length(checked, size.bit_count(), "compact range hashes")
        compact = cls()
        compact._size = size
        compact._hashes = checked
        return compact

    @classmethod
    def from_bytes(cls, blob: bytes) -> CompactRange:
        """Resume from the output of ``to_bytes`` (format documented in the module)."""
        if not isinstance(blob, bytes):
            raise ProofError(f"compact range: got {type(blob).__name__}, want bytes")
        if len(blob) < _HEADER_SIZE or blob[0] != FORMAT_VERSION:
            head = blob[:1].hex() or "nothing"
            raise ProofError(
                f"compact range version: got {head}, want {FORMAT_VERSION:02x}",
                expected=FORMAT_VERSION,
            )
        size = int.from_bytes(blob[1:_HEADER_SIZE], "big")
        want = _HEADER_SIZE + HASH_SIZE * size.bit_count()
        if len(blob) != want:
            raise ProofError(
                f"compact range of size {size}: got {len(blob)} bytes, want {want}",
                expected=want,
                computed=len(blob),
            )
        body = blob[_HEADER_SIZE:]
        hashes = [body[i : i + HASH_SIZE] for i in range(0, len(body), HASH_SIZE)]
        return cls.from_hashes(size, hashes)

    @property
    def size(self) -> int:
        """The number of leaves covered."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The perfect-subtree hashes, largest subtree first (persist with ``size``)."""
        return tuple(self._hashes)

    def to_bytes(self) -> bytes:
        """The version-1 persisted form (see the module docstring)."""
        return bytes([FORMAT_VERSION]) + self._size.to_bytes(8, "big") + b"".join(self._hashes)

    def append(self, leaf_hash: bytes) -> None:
        """Append one leaf by its 32-byte hash.

        The new leaf is a perfect subtree of one leaf. While the two rightmost subtrees have
        the same size they merge into their parent; the number of merges is the number of
        trailing one bits of the old size (the carries of ``size + 1``).
        """
        checked = _check.digest(leaf_hash, "leaf hash")
        if self._size == _check.MAX_SIZE:
            raise ProofError(f"size: got {self._size + 1}, want < 2**64")
        hashes = self._hashes
        hashes.append(checked)
        carries = self._size
        while carries & 1:
            right = hashes.pop()
            hashes[-1] = node_hash(hashes[-1], right)
            carries >>= 1
        self._size += 1

    def append_data(self, data: bytes) -> None:
        """Append one raw leaf entry, hashed as ``SHA-256(0x00 || data)``."""
        if not isinstance(data, bytes):
            raise ProofError(f"leaf data: got {type(data).__name__}, want bytes")
        self.append(leaf_hash(data))

    def root(self) -> bytes:
        """The RFC 9162 root of leaves ``[0, size)``: fold the hashes from the right."""
        if not self._hashes:
            return EMPTY_ROOT
        acc = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            acc = node_hash(left, acc)
        return acc

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()})"
