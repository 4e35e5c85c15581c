"""The Ed25519 key file format shared by gateways, the anchor, the witness and the bank.

Text, UTF-8, exactly two lines::

    pledgewatch-ed25519-seed-v1
    <64 lowercase hex digits: the 32-byte RFC 8032 seed>

Pure functions only (the core does no I/O): ``gateway.keystore`` and ``anchor.keyfile`` read
and write the files (mode 0600, atomic replace) and call these.
"""

from __future__ import annotations

import re

from pledgewatch.errors import ValidationError
from pledgewatch.signing import SigningKey

HEADER = "pledgewatch-ed25519-seed-v1"
_SEED = re.compile(r"[0-9a-f]{64}")


def encode_seed_file(key: SigningKey) -> bytes:
    return f"{HEADER}\n{key.seed().hex()}\n".encode()


def decode_seed_file(text: str, where: str) -> SigningKey:
    """The key in a key file's text; ``ValidationError`` naming ``where`` otherwise."""
    lines = text.splitlines()
    if len(lines) != 2 or lines[0] != HEADER:
        raise ValidationError(f"{where}: want 2 lines, the first {HEADER!r}")
    if _SEED.fullmatch(lines[1].strip()) is None:
        raise ValidationError(f"{where}: line 2 must be 64 lowercase hex digits")
    return SigningKey(bytes.fromhex(lines[1].strip()))
