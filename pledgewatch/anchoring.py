"""What a ledger stores for a checkpoint: a short, versioned, self-describing payload.

    payload = LEDGER_DOMAIN || canonical({"origin": <text>, "root": <64 hex>, "size": <int>,
                                          "v": 1})

with ``LEDGER_DOMAIN = b"pledgewatch/ledger-anchor/v1\\n"``. On Ethereum the payload is the
transaction's calldata (a zero-value transaction); in the embedded SQLite ledger it is the
entry's payload. Anyone who finds the payload can tell what it commits to, and a verifier
compares it byte for byte with the one it rebuilds from a checkpoint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pledgewatch import canonical
from pledgewatch.errors import ValidationError

LEDGER_DOMAIN = b"pledgewatch/ledger-anchor/v1\n"
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class AnchoredRoot:
    origin: str
    size: int
    root: bytes


def anchor_payload(origin: str, size: int, root: bytes) -> bytes:
    if len(root) != 32:
        raise ValidationError("root: want 32 bytes")
    body = {"origin": origin, "root": root.hex(), "size": size, "v": 1}
    return LEDGER_DOMAIN + canonical.encode(body)


def parse_anchor_payload(payload: bytes) -> AnchoredRoot:
    if not payload.startswith(LEDGER_DOMAIN):
        raise ValidationError("ledger payload: missing pledgewatch/ledger-anchor/v1 prefix")
    value = canonical.decode(payload[len(LEDGER_DOMAIN) :])
    if not isinstance(value, dict) or set(value) != {"origin", "root", "size", "v"}:
        raise ValidationError("ledger payload: want keys origin, root, size, v")
    if value["v"] != 1 or not isinstance(value["origin"], str):
        raise ValidationError("ledger payload: want v = 1 and a text origin")
    if not isinstance(value["root"], str) or _HEX64.fullmatch(value["root"]) is None:
        raise ValidationError("ledger payload root: want 64 lowercase hex digits")
    size = value["size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValidationError("ledger payload size: want an integer >= 0")
    return AnchoredRoot(value["origin"], size, bytes.fromhex(value["root"]))
