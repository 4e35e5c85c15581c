"""Our code reproduces, byte for byte, the vectors made from docs/PROTOCOL.md alone."""

from __future__ import annotations

import json
from pathlib import Path

from pledgewatch import canonical
from pledgewatch.events import Event, SignedEvent
from pledgewatch.receipts import ReceiptStatus, parse_receipt
from pledgewatch.signing import SigningKey, sign_event, verify_event

V = json.loads((Path(__file__).parent / "vectors" / "protocol.json").read_text())


def test_events_are_reproduced_exactly() -> None:
    key = SigningKey(bytes.fromhex(V["seed_hex"]))
    assert key.public_key.hex() == V["public_key_hex"]
    assert key.key_id == V["key_id"]
    for vector in V["events"]:
        event = Event.from_dict(canonical.decode(vector["canonical"].encode()))
        assert event.canonical().decode() == vector["canonical"]
        assert event.event_id() == vector["event_id"]
        signed = sign_event(event, key)
        assert signed.signature.hex() == vector["signature"]
        assert signed.to_wire().decode() == vector["wire"]
        verify_event(SignedEvent.from_wire(vector["wire"].encode()), key.public_key)


def test_receipt_vector_parses_and_verifies() -> None:
    public = bytes.fromhex(V["public_key_hex"])
    receipt = parse_receipt(V["receipt_wire"].encode(), public)
    assert [i.status for i in receipt.items] == [
        ReceiptStatus.STORED,
        ReceiptStatus.DUPLICATE,
        ReceiptStatus.QUARANTINED,
    ]
    assert receipt.items[2].reason == "unknown release"
