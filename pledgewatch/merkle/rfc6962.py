"""RFC 6962 / RFC 9162 §2.1.1 hashing for the pledgewatch Merkle log (SHA-256).

The exact bytes hashed:

* leaf hash:  ``SHA-256(0x00 || data)`` where ``data`` is the raw leaf entry;
* node hash:  ``SHA-256(0x01 || left || right)`` where ``left`` and ``right`` are the 32-byte
  hashes of the two children;
* empty tree: ``SHA-256("")``, the hash of zero bytes.

The one-byte prefixes separate the two domains, so no leaf can be passed off as an interior
node (the second-preimage attack on unprefixed Merkle trees).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """Return ``SHA-256(0x00 || data)``, the hash of one raw leaf entry."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return ``SHA-256(0x01 || left || right)``, the hash of an interior node.

    ``left`` and ``right`` are the children's hashes; callers that take them from untrusted
    input check they are 32 bytes first (see ``verify``), this function does not.
    """
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the RFC 9162 §2.1.1 root ``MTH`` of the tree whose leaves have these hashes.

    ``EMPTY_ROOT`` for no leaves, ``leaf_hashes[0]`` for one. Computed bottom-up, one level at a
    time: adjacent pairs are hashed with ``node_hash`` and an odd last node moves up unchanged.
    That equals the RFC's top-down split at the largest power of two ``k < n``, because the left
    part of every split is a perfect subtree, so pairing from the left never straddles it.
    The hashes are trusted (not checked to be 32 bytes).
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    sha256 = hashlib.sha256
    prefix = NODE_PREFIX
    level = list(leaf_hashes)
    while len(level) > 1:
        pairs = iter(level)
        above = [
            sha256(prefix + left + right).digest()
            for left, right in zip(pairs, pairs, strict=False)
        ]
        if len(level) & 1:
            above.append(level[-1])
        level = above
    return level[0]
