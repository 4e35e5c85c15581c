"""Events, signatures, receipts and topics of the shared core."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pledgewatch import canonical
from pledgewatch.errors import PledgewatchError, SignatureError, ValidationError
from pledgewatch.events import ZERO_HASH, DoorState, Event, Kind, SignedEvent
from pledgewatch.receipts import Receipt, ReceiptItem, ReceiptStatus, parse_receipt, sign_receipt
from pledgewatch.signing import (
    EVENT_DOMAIN,
    SigningKey,
    ed25519_sign,
    ed25519_verify,
    key_id,
    sign_event,
    verify,
    verify_event,
)
from pledgewatch.topics import events_topic, parse_topic

# RFC 8032 section 7.1, TEST 1-3: (secret key, public key, message, signature), hex.
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]


@pytest.mark.parametrize(("sk", "pk", "msg", "sig"), RFC8032)
def test_rfc8032_vectors_through_our_wrapper(sk: str, pk: str, msg: str, sig: str) -> None:
    key = SigningKey(bytes.fromhex(sk))
    assert key.public_key.hex() == pk
    assert ed25519_sign(key._key, bytes.fromhex(msg)).hex() == sig
    ed25519_verify(bytes.fromhex(pk), bytes.fromhex(msg), bytes.fromhex(sig))
    bad = bytearray(bytes.fromhex(sig))
    bad[0] ^= 1
    with pytest.raises(SignatureError):
        ed25519_verify(bytes.fromhex(pk), bytes.fromhex(msg), bytes(bad))


def test_domain_separation_is_a_plain_prefix() -> None:
    key = SigningKey(bytes(range(32)))
    sig = key.sign(EVENT_DOMAIN, b"{}")
    ed25519_verify(key.public_key, EVENT_DOMAIN + b"{}", sig)
    with pytest.raises(SignatureError):
        verify(key.public_key, b"pledgewatch/receipt/v1\n", b"{}", sig)


def event(**overrides: object) -> Event:
    base: dict[str, object] = {
        "kind": Kind.LOAD,
        "warehouse": "wh-1",
        "gateway": "gw-1",
        "device": "portal-in",
        "seq": 1,
        "prev": ZERO_HASH,
        "ts_ms": 1_700_000_000_000,
        "bay": "A1",
        "sku": "steel-coil",
        "lot": "WR-2026-0001",
        "qty": 4,
    }
    base.update(overrides)
    return Event(**base)  # type: ignore[arg-type]


def test_event_round_trip_through_the_wire() -> None:
    key = SigningKey(bytes(32))
    signed = sign_event(event(), key)
    back = SignedEvent.from_wire(signed.to_wire())
    assert back == signed
    assert back.body == signed.event.canonical()  # the slice from the wire is the body
    verify_event(back, key.public_key)
    assert back.event_id == signed.event.event_id()


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"kind": Kind.WEIGHT}, "grams: required"),
        ({"qty": 0}, "qty: got 0"),
        ({"qty": 1.5}, "qty: got 1.5"),
        ({"seq": 2}, "seq 1 and only seq 1"),
        ({"prev": "AB" * 32, "seq": 2}, "prev: got"),
        ({"warehouse": "WH 1"}, "warehouse"),
        ({"door": DoorState.OPEN}, "door: must be null"),
        ({"sku": "x\n"}, "control"),
        ({"release": "rel-1"}, "release: must be null for LOAD"),
        ({"ts_ms": True}, "ts_ms"),
    ],
)
def test_event_validation_names_the_problem(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        event(**overrides)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ValidationError) as info:
        event(warehouse="", seq=0, qty=None, ts_ms=-5)
    message = str(info.value)
    for name in ("warehouse", "seq", "qty", "ts_ms"):
        assert name in message


def test_each_kind_has_a_valid_form() -> None:
    forms = [
        event(kind=Kind.UNLOAD, release="rel-7"),
        event(kind=Kind.COUNT, qty=0),
        event(kind=Kind.WEIGHT, sku=None, lot=None, qty=None, grams=-3),
        event(kind=Kind.DOOR, sku=None, lot=None, qty=None, door=DoorState.CLOSED),
        event(kind=Kind.HEARTBEAT, bay=None, sku=None, lot=None, qty=None),
        event(kind=Kind.TAMPER, sku=None, lot=None, qty=None, reason="cover opened"),
    ]
    for e in forms:
        assert Event.from_dict(canonical.decode(e.canonical())) == e


def test_tampered_wire_fails_verification() -> None:
    key = SigningKey(bytes(32))
    wire = sign_event(event(), key).to_wire()
    tampered = wire.replace(b'"qty":4', b'"qty":3')
    with pytest.raises(SignatureError):
        verify_event(SignedEvent.from_wire(tampered), key.public_key)
    stranger = SigningKey(bytes([7]) * 32)
    with pytest.raises(SignatureError, match="key id"):
        verify_event(SignedEvent.from_wire(wire), stranger.public_key)


def test_envelope_rejects_extra_keys_and_bad_signature_text() -> None:
    key = SigningKey(bytes(32))
    value = canonical.decode(sign_event(event(), key).to_wire())
    for bad in ({**value, "x": 1}, {**value, "sig": value["sig"].upper()}, {**value, "v": 2}):
        with pytest.raises(ValidationError):
            SignedEvent.from_wire(canonical.encode(bad))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_wire_never_verifies_as_something_else(data: st.DataObject) -> None:
    key = SigningKey(bytes(32))
    wire = bytearray(sign_event(event(), key).to_wire())
    i = data.draw(st.integers(0, len(wire) - 1))
    wire[i] = data.draw(st.integers(0, 255).filter(lambda b: b != wire[i]))
    try:
        verify_event(SignedEvent.from_wire(bytes(wire)), key.public_key)
    except PledgewatchError:
        return
    pytest.fail(f"mutation at byte {i} still verified")


def test_key_id_and_repr_do_not_leak_the_seed() -> None:
    key = SigningKey(bytes(range(32)))
    assert key.key_id == key_id(key.public_key)
    assert bytes(range(32)).hex() not in repr(key)


def test_receipt_round_trip_and_forgery() -> None:
    anchor = SigningKey(bytes([1]) * 32)
    receipt = Receipt(
        anchor.key_id,
        "wh-1",
        "gw-1",
        5,
        (
            ReceiptItem("a" * 64, ReceiptStatus.STORED),
            ReceiptItem("b" * 64, ReceiptStatus.QUARANTINED, "bad signature"),
        ),
    )
    wire = sign_receipt(receipt, anchor)
    assert parse_receipt(wire, anchor.public_key) == receipt
    with pytest.raises(SignatureError):
        parse_receipt(wire, SigningKey(bytes([2]) * 32).public_key)
    forged = wire.replace(b"a" * 64, b"c" * 64)
    with pytest.raises(SignatureError):
        parse_receipt(forged, anchor.public_key)


def test_topics_round_trip_and_refuse_wildcards() -> None:
    topic = events_topic("wh-1", "gw-1")
    assert parse_topic(topic) == dataclasses.replace(parse_topic(topic))
    assert parse_topic(topic).gateway == "gw-1"
    for bad in ("pledgewatch/v1/wh-1/+/events", "pledgewatch/v1/wh-1/gw-1/other", "x/y"):
        with pytest.raises(ValidationError):
            parse_topic(bad)
    with pytest.raises(ValidationError):
        events_topic("wh/1", "gw-1")
