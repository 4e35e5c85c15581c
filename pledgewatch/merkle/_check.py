"""Guard clauses shared by the Merkle modules: untrusted values in, typed values or ProofError out.

They take ``object`` on purpose: callers may hand over anything a JSON decoder produced, and the
only exception that may escape is ``ProofError`` with a "got X, want Y" message.
"""

from __future__ import annotations

from collections.abc import Sequence

from pledgewatch.errors import ProofError
from pledgewatch.merkle.rfc6962 import HASH_SIZE

# RFC 9162 encodes tree sizes and leaf indexes as uint64.
MAX_SIZE = (1 << 64) - 1


def count(value: object, what: str) -> int:
    """Return ``value`` if it is an int in ``[0, 2**64)`` (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProofError(f"{what}: got {type(value).__name__}, want int")
    if value < 0 or value > MAX_SIZE:
        raise ProofError(f"{what}: got {value}, want 0 <= {what} < 2**64", computed=value)
    return value


def digest(value: object, what: str) -> bytes:
    """Return ``value`` if it is ``bytes`` of exactly ``HASH_SIZE`` (32) bytes."""
    if not isinstance(value, bytes):
        raise ProofError(f"{what}: got {type(value).__name__}, want bytes")
    if len(value) != HASH_SIZE:
        raise ProofError(
            f"{what}: got {len(value)} bytes, want {HASH_SIZE}",
            expected=HASH_SIZE,
            computed=len(value),
        )
    return value


def sequence(value: object, what: str) -> Sequence[object]:
    """Return ``value`` if it is a sequence of items (a list, a tuple...), not a str or bytes."""
    if not isinstance(value, Sequence) or isinstance(value, str | bytes | bytearray):
        raise ProofError(f"{what}: got {type(value).__name__}, want a list")
    return value


def digests(value: object, what: str) -> list[bytes]:
    """Return ``value`` as a new list if it is a sequence of 32-byte ``bytes``."""
    checked: list[bytes] = []
    for i, item in enumerate(sequence(value, what)):
        if isinstance(item, bytes) and len(item) == HASH_SIZE:
            checked.append(item)
        else:
            checked.append(digest(item, f"{what}[{i}]"))  # raises, naming the bad element
    return checked


def length(hashes: list[bytes], want: int, what: str) -> None:
    """Raise unless ``len(hashes) == want``."""
    if len(hashes) != want:
        raise ProofError(
            f"{what} length: got {len(hashes)} hashes, want {want}",
            expected=want,
            computed=len(hashes),
        )
