"""Release tokens: the bank's signed consent for pledged goods to leave the warehouse.

The warehouse puts the token's ``id`` in the ``release`` field of the UNLOAD event. The
reconciler accepts the unload only if a token with that id verifies with the bank's release
key and names the same warehouse, lot and a loan that pledges that lot, the unload happened
before ``expires_ms``, and the unloads citing the token add up to at most ``qty``.

Token body (canonical JSON)::

    {"expires_ms": <int>, "id": <text: rel-…>, "issued_ms": <int>, "loan_id": <text>,
     "lot": <text>, "qty": <int > 0>, "v": 1, "warehouse": <warehouse id>}

Wire bytes: canonical JSON of ``{"sig": <128 hex>, "token": <body>}``, with
``sig = Ed25519(bank key, RELEASE_DOMAIN || canonical(body))``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pledgewatch import canonical
from pledgewatch.errors import ValidationError
from pledgewatch.signing import SigningKey, verify
from pledgewatch.topics import check_id

RELEASE_DOMAIN = b"pledgewatch/release/v1\n"
TOKEN_VERSION = 1
_SIG = re.compile(r"[0-9a-f]{128}")
_ID = re.compile(r"rel-[A-Za-z0-9._-]{1,60}")


@dataclass(frozen=True, slots=True)
class ReleaseToken:
    id: str
    warehouse: str
    loan_id: str
    lot: str
    qty: int
    issued_ms: int
    expires_ms: int

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.id, str) or _ID.fullmatch(self.id) is None:
            problems.append(f"id: got {self.id!r}, want rel- followed by 1-60 of [A-Za-z0-9._-]")
        try:
            check_id("warehouse", self.warehouse)
        except ValidationError as exc:
            problems.append(str(exc))
        for name in ("loan_id", "lot"):
            value = getattr(self, name)
            if not isinstance(value, str) or not 1 <= len(value) <= 128:
                problems.append(f"{name}: want 1-128 characters")
        for name in ("qty", "issued_ms", "expires_ms"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                problems.append(f"{name}: got {value!r}, want an integer >= 0")
        if isinstance(self.qty, int) and self.qty <= 0:
            problems.append(f"qty: got {self.qty}, want > 0")
        if not problems and self.expires_ms <= self.issued_ms:
            problems.append("expires_ms must be after issued_ms")
        if problems:
            raise ValidationError("invalid release token: " + "; ".join(problems))

    def body(self) -> dict[str, Any]:
        return {
            "expires_ms": self.expires_ms,
            "id": self.id,
            "issued_ms": self.issued_ms,
            "loan_id": self.loan_id,
            "lot": self.lot,
            "qty": self.qty,
            "v": TOKEN_VERSION,
            "warehouse": self.warehouse,
        }


def sign_token(token: ReleaseToken, key: SigningKey) -> bytes:
    body = canonical.encode(token.body())
    sig = key.sign(RELEASE_DOMAIN, body)
    return canonical.encode({"sig": sig.hex(), "token": token.body()})


def parse_token(data: bytes, bank_public_key: bytes) -> ReleaseToken:
    """Decode strictly and verify the bank's signature; raise our errors on anything off."""
    value = canonical.decode(data, max_bytes=4096)
    if not isinstance(value, dict) or set(value) != {"sig", "token"}:
        raise ValidationError("release token: want keys sig, token")
    sig, body = value["sig"], value["token"]
    if not isinstance(sig, str) or _SIG.fullmatch(sig) is None:
        raise ValidationError("release token sig: want 128 lowercase hex digits")
    want = {"expires_ms", "id", "issued_ms", "loan_id", "lot", "qty", "v", "warehouse"}
    if (
        not isinstance(body, dict)
        or set(body) != want
        or body["v"] != TOKEN_VERSION
        or isinstance(body["v"], bool)  # true == 1 in Python
    ):
        raise ValidationError(f"release token body: want keys {sorted(want)} and v = 1")
    verify(bank_public_key, RELEASE_DOMAIN, canonical.encode(body), bytes.fromhex(sig))
    return ReleaseToken(
        body["id"],
        body["warehouse"],
        body["loan_id"],
        body["lot"],
        body["qty"],
        body["issued_ms"],
        body["expires_ms"],
    )
