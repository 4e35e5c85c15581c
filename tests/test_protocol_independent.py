"""An auditor's verifier written from docs/PROTOCOL.md with json, hashlib and PyNaCl only.

This module must not import pledgewatch (a test below checks): it proves the document is
enough to verify our events and receipts without any of our code.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from pathlib import Path

import nacl.exceptions
import nacl.signing
import pytest

HERE = Path(__file__).resolve()
V = json.loads((HERE.parent / "vectors" / "protocol.json").read_text())
EVENT_DOMAIN = b"pledgewatch/event/v1\n"
RECEIPT_DOMAIN = b"pledgewatch/receipt/v1\n"
KEY_ID_DOMAIN = b"pledgewatch/key-id/v1\n"
BODY_KEYS = {
    "v",
    "kind",
    "warehouse",
    "gateway",
    "device",
    "seq",
    "prev",
    "ts_ms",
    "bay",
    "sku",
    "lot",
    "qty",
    "grams",
    "release",
    "door",
    "reason",
}


class Rejected(Exception):
    pass


def strict_decode(data: bytes) -> dict:  # type: ignore[type-arg]
    def pairs(items: list) -> dict:  # type: ignore[type-arg]
        keys = [k for k, _ in items]
        if len(keys) != len(set(keys)):
            raise Rejected("duplicate key")
        return dict(items)

    def no_float(text: str) -> None:
        raise Rejected("float")

    value = json.loads(data.decode("utf-8"), object_pairs_hook=pairs, parse_float=no_float)
    again = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    if again.encode() != data:
        raise Rejected("not canonical")
    return value  # type: ignore[no-any-return]


def verify_signed_event(wire: bytes, public_key: bytes) -> str:
    """Section 5. Returns the event id."""
    env = strict_decode(wire)
    if set(env) != {"event", "kid", "sig", "v"} or env["v"] != 1:
        raise Rejected("envelope")
    body = env["event"]
    if set(body) != BODY_KEYS or body["v"] != 1:
        raise Rejected("body keys")
    if env["kid"] != hashlib.sha256(KEY_ID_DOMAIN + public_key).digest()[:16].hex():
        raise Rejected("key id")
    if not re.fullmatch("[0-9a-f]{128}", env["sig"]):
        raise Rejected("sig text")
    canonical = json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    try:
        nacl.signing.VerifyKey(public_key).verify(
            EVENT_DOMAIN + canonical.encode(), bytes.fromhex(env["sig"])
        )
    except nacl.exceptions.BadSignatureError as exc:
        raise Rejected("signature") from exc
    return hashlib.sha256(canonical.encode()).hexdigest()


def test_this_module_uses_nothing_of_ours() -> None:
    tree = ast.parse(HERE.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(
        n.split(".")[0] in {"pledgewatch", "gateway", "anchor", "devices"} for n in names
    )


def test_independent_verifier_accepts_the_chain() -> None:
    public = bytes.fromhex(V["public_key_hex"])
    prev = "0" * 64
    for vector in V["events"]:
        event_id = verify_signed_event(vector["wire"].encode(), public)
        assert event_id == vector["event_id"]
        assert strict_decode(vector["wire"].encode())["event"]["prev"] == prev
        prev = event_id


def test_independent_verifier_rejects_tampering() -> None:
    public = bytes.fromhex(V["public_key_hex"])
    wire = V["events"][1]["wire"]
    for bad in (
        wire.replace('"qty":4', '"qty":5'),
        wire.replace('"qty":4', '"qty": 4'),
        wire.replace('"gw-1"', '"gw-2"'),
        wire[:-1] + ',"x":1}',
    ):
        with pytest.raises((Rejected, ValueError)):
            verify_signed_event(bad.encode(), public)


def test_independent_receipt_check() -> None:
    public = bytes.fromhex(V["public_key_hex"])
    wire = strict_decode(V["receipt_wire"].encode())
    body = json.dumps(
        wire["receipt"], ensure_ascii=False, separators=(",", ":"), sort_keys=True
    ).encode()
    nacl.signing.VerifyKey(public).verify(RECEIPT_DOMAIN + body, bytes.fromhex(wire["sig"]))
    assert [i["id"] for i in wire["receipt"]["items"]] == [e["event_id"] for e in V["events"][:3]]
