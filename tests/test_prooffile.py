"""Proof files: built from a real in-memory log, verified, and rejected when corrupted.

Every good proof file is also checked corrupted (STYLE §12) and each corruption must be
rejected by the RIGHT check: the probes below re-sign what they must so that the failure is
the one under test. ``make_world`` is shared with test_verify_command.py and, through
``emit_vector``, with the independent verifier in test_prooffile_independent.py.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pledgewatch import canonical, merkle
from pledgewatch.anchoring import LedgerReceipt, anchor_payload, sqlite_entry_hash
from pledgewatch.checkpoint import (
    Checkpoint,
    SignedNote,
    cosign,
    sign_checkpoint,
    with_signatures,
)
from pledgewatch.errors import PledgewatchError, ValidationError
from pledgewatch.events import DoorState, Event, Kind, SignedEvent
from pledgewatch.logentry import KeyAction, KeyRecord, event_leaf, key_leaf
from pledgewatch.prooffile import (
    MAX_PROOF_BYTES,
    MAX_PROOF_HASHES,
    Check,
    ProofFile,
    VerificationFailed,
    VerifiedProof,
    WitnessKey,
    build_proof_file,
    parse_proof_file,
    verify_proof_file,
)
from pledgewatch.signing import SigningKey, sign_event

ORIGIN = "anchor.bank.example/wh-1"
WITNESS = "witness.bank.example"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
GENESIS_PAYLOAD = b"pledgewatch/sqlite-ledger/v1 genesis\n"


def key(n: int) -> SigningKey:
    return SigningKey(bytes([n]) * 32)


@dataclass
class World:
    """A log of key records and events, its tree, and the keys that sign checkpoints."""

    anchor: SigningKey = field(default_factory=lambda: key(1))
    witness: SigningKey = field(default_factory=lambda: key(2))
    stranger: SigningKey = field(default_factory=lambda: key(3))
    gateways: dict[str, SigningKey] = field(default_factory=dict)
    leaves: list[bytes] = field(default_factory=list)
    records: dict[str, tuple[int, KeyRecord]] = field(default_factory=dict)
    events: dict[int, SignedEvent] = field(default_factory=dict)
    tree: merkle.MerkleTree = field(default_factory=merkle.MerkleTree)
    witness_ts: int = T0 // 1000 + 3600
    late_event: int = -1

    @property
    def size(self) -> int:
        return len(self.leaves)

    def enrol(self, gateway: str, warehouse: str = "wh-1", seed: int = 0) -> None:
        signer = key(seed or 10 + len(self.gateways))
        self.gateways[gateway] = signer
        record = KeyRecord(KeyAction.ENROL, warehouse, gateway, signer.public_key, T0, None, T0)
        self.records[gateway] = (self._append(key_leaf(record)), record)

    def event(self, gateway: str, **fields: Any) -> int:
        device = fields.pop("device", "portal-in")
        chain = [
            e.event
            for e in self.events.values()
            if (e.event.gateway, e.event.device) == (gateway, device)
        ]
        prev = chain[-1].event_id() if chain else "0" * 64
        warehouse = self.records[gateway][1].warehouse
        body = Event(
            warehouse=warehouse,
            gateway=gateway,
            device=device,
            seq=len(chain) + 1,
            prev=prev,
            **fields,
        )
        signed = sign_event(body, self.gateways[gateway])
        index = self._append(event_leaf(signed))
        self.events[index] = signed
        return index

    def event_before_enrolment(self, gateway: str, seed: int) -> int:
        """Log a gateway's event, then its enrolment (never valid evidence for the event)."""
        signer = key(seed)
        body = Event(
            Kind.TAMPER, "wh-1", gateway, "case", 1, "0" * 64, T0 + 4600, reason="lid open"
        )
        index = self._append(event_leaf(sign_event(body, signer)))
        self.events[index] = sign_event(body, signer)
        self.enrol(gateway, seed=seed)
        return index

    def _append(self, leaf: bytes) -> int:
        self.leaves.append(leaf)
        return self.tree.append(leaf)

    def note(
        self,
        size: int | None = None,
        *,
        root: bytes | None = None,
        signer: SigningKey | None = None,
        name: str | None = None,
        witnesses: tuple[tuple[str, SigningKey], ...] | None = None,
        origin: str = ORIGIN,
    ) -> bytes:
        size = self.size if size is None else size
        root = self.tree.root(min(size, self.size)) if root is None else root
        cp = Checkpoint(origin, size, root)
        note = sign_checkpoint(cp, name or origin, signer or self.anchor)
        for wname, wkey in ((WITNESS, self.witness),) if witnesses is None else witnesses:
            note = with_signatures(note, [cosign(cp.body(), wname, wkey, self.witness_ts)])
        return note.to_bytes()

    def ledger(self, size: int | None = None, *, height: int = 3) -> LedgerReceipt:
        """An sqlite-ledger receipt for the checkpoint of ``size``, at entry ``height``."""
        size = self.size if size is None else size
        payload = anchor_payload(ORIGIN, size, self.tree.root(size))
        return sqlite_receipt(payload, height)

    def proof(
        self,
        index: int,
        *,
        gateway_key: str | None = None,
        note: bytes | None = None,
        ledger: LedgerReceipt | str | None = "default",
    ) -> bytes:
        signed = self.events[index]
        key_index, record = self.records[gateway_key or signed.event.gateway]
        return build_proof_file(
            checkpoint=self.note() if note is None else note,
            signed=signed,
            leaf_index=index,
            inclusion=self.tree.inclusion_proof(index, self.size),
            key_record=record,
            key_index=key_index,
            key_inclusion=self.tree.inclusion_proof(key_index, self.size),
            ledger=self.ledger() if ledger == "default" else ledger,  # type: ignore[arg-type]
        )

    @property
    def anchor_key(self) -> bytes:
        return self.anchor.public_key

    @property
    def witness_keys(self) -> tuple[WitnessKey, ...]:
        return (WitnessKey(WITNESS, self.witness.public_key),)

    def verify(self, data: bytes, **options: Any) -> VerifiedProof:
        options.setdefault("anchor_key", self.anchor_key)
        options.setdefault("witness_keys", self.witness_keys)
        return verify_proof_file(data, **options)


def sqlite_chain(payloads: list[bytes], t0: int = T0 + 7_200_000) -> list[LedgerReceipt]:
    """Receipts of the entries 1.. of an sqlite ledger holding ``payloads`` after genesis."""
    genesis = sqlite_entry_hash(bytes(32), 0, T0, GENESIS_PAYLOAD)
    prev, out = genesis, []
    for height, payload in enumerate(payloads, start=1):
        time_ms = t0 + height
        entry = sqlite_entry_hash(prev, height, time_ms, payload)
        out.append(
            LedgerReceipt(
                "sqlite", genesis.hex(), None, entry.hex(), height, time_ms, prev.hex(), payload
            )
        )
        prev = entry
    return out


def sqlite_receipt(payload: bytes, height: int) -> LedgerReceipt:
    fillers = [b"pledgewatch/ledger-anchor/v1\nfiller %d" % i for i in range(1, height)]
    return sqlite_chain([*fillers, payload])[-1]


def make_world() -> World:
    w = World()
    w.enrol("gw-1")
    w.enrol("gw-2")
    lot = {"sku": "steel-coil", "bay": "A1"}
    w.event("gw-1", kind=Kind.LOAD, ts_ms=T0 + 1000, lot="WR-1", qty=4, **lot)
    w.event("gw-2", kind=Kind.LOAD, ts_ms=T0 + 1500, lot="WR-7", qty=2, sku="copper", bay="B2")
    w.event("gw-1", kind=Kind.WEIGHT, device="scale-a1", ts_ms=T0 + 2000, bay="A1", grams=9_000)
    w.event("gw-1", kind=Kind.LOAD, ts_ms=T0 + 3000, lot="WR-2", qty=3, **lot)
    w.event("gw-1", kind=Kind.HEARTBEAT, device="gw", ts_ms=T0 + 4000)
    w.event("gw-2", kind=Kind.COUNT, ts_ms=T0 + 4500, lot="WR-7", qty=2, sku="copper", bay="B2")
    w.late_event = w.event_before_enrolment("gw-9", seed=19)
    for i in range(8):
        w.event("gw-1", kind=Kind.UNLOAD, ts_ms=T0 + 5000 + i, lot="WR-1", qty=1, **lot)
    w.event(
        "gw-1", kind=Kind.DOOR, device="door-1", ts_ms=T0 + 9000, door=DoorState.OPEN, bay="dock"
    )
    return w


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


def gw1_events(w: World) -> list[int]:
    return [i for i, s in w.events.items() if s.event.gateway == "gw-1"]


def good_indexes(w: World) -> list[int]:
    """A few events: early, middle, the last leaf, and one of another gateway."""
    ones = gw1_events(w)
    gw2 = [i for i, s in w.events.items() if s.event.gateway == "gw-2"]
    return [ones[0], ones[len(ones) // 2], w.size - 1, gw2[-1]]


def edit(data: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    value = json.loads(data)
    change(value)
    return canonical.encode(value)


def failed_check(w: World, data: bytes, **options: Any) -> Check:
    with pytest.raises(VerificationFailed) as info:
        w.verify(data, **options)
    return info.value.check


# ---------------------------------------------------------------------------------------------
# Good proofs


def test_good_proof_files_verify_and_report_what_they_prove(world: World) -> None:
    for index in good_indexes(world):
        data = world.proof(index)
        proven = world.verify(data, require_ledger=True)
        signed = world.events[index]
        assert proven.signed == signed
        assert proven.event_id == signed.event_id
        assert proven.leaf_index == index
        assert (proven.origin, proven.size, proven.root) == (ORIGIN, world.size, world.tree.root())
        assert [(c.name, c.timestamp_s) for c in proven.witnesses] == [(WITNESS, world.witness_ts)]
        assert proven.ledger == world.ledger()
        assert proven.ledger_locator.startswith(f"sqlite ledger {world.ledger().ledger_id} ")
        assert not proven.ledger_checked_online


def test_proof_file_bytes_are_canonical_and_round_trip(world: World) -> None:
    data = world.proof(good_indexes(world)[0])
    assert canonical.encode(json.loads(data)) == data
    value = json.loads(data)
    assert sorted(value) == [
        "checkpoint",
        "event",
        "gateway_key",
        "inclusion",
        "leaf_index",
        "ledger",
        "type",
        "v",
    ]
    assert (value["type"], value["v"]) == ("pledgewatch-proof", 1)
    assert sorted(value["gateway_key"]) == ["inclusion", "leaf_index", "record"]
    proof = parse_proof_file(data)
    assert proof.to_bytes() == data
    assert value["event"] == json.loads(proof.signed.to_wire())
    assert value["checkpoint"].encode() == proof.note
    assert proof.checkpoint.size == world.size


def test_a_file_without_ledger_passes_only_when_not_required(world: World) -> None:
    data = world.proof(good_indexes(world)[0], ledger=None)
    proven = world.verify(data)
    assert proven.ledger is None and proven.ledger_locator == "not anchored"
    assert failed_check(world, data, require_ledger=True) is Check.LEDGER
    with pytest.raises(VerificationFailed, match="not anchored"):
        world.verify(data, require_ledger=True)


def test_no_witness_keys_means_no_witness_check(world: World) -> None:
    data = world.proof(good_indexes(world)[0], note=world.note(witnesses=()))
    assert world.verify(data, witness_keys=()).witnesses == ()
    assert failed_check(world, data) is Check.WITNESS_COSIGNATURE


def test_an_unknown_extra_signature_on_the_note_is_ignored(world: World) -> None:
    extra = ((WITNESS, world.witness), ("someone.else", world.stranger))
    data = world.proof(good_indexes(world)[0], note=world.note(witnesses=extra))
    assert len(world.verify(data).witnesses) == 1


def test_ledger_receipt_at_height_1_must_follow_the_genesis(world: World) -> None:
    receipt = world.ledger(height=1)
    world.verify(world.proof(3, ledger=receipt), require_ledger=True)
    other = replace(receipt, ledger_id="ab" * 32)
    assert failed_check(world, world.proof(3, ledger=other)) is Check.LEDGER


def test_build_refuses_what_parse_would_refuse(world: World) -> None:
    signed = world.events[3]
    _, record = world.records["gw-1"]
    good = {
        "checkpoint": world.note(),
        "signed": signed,
        "leaf_index": 3,
        "inclusion": [],
        "key_record": record,
        "key_index": 0,
        "key_inclusion": [],
        "ledger": None,
    }
    build_proof_file(**good)  # type: ignore[arg-type]
    for bad in (
        {"leaf_index": -1},
        {"key_index": True},
        {"inclusion": [b"\x00" * 31]},
        {"key_inclusion": [b"\x00" * 32] * (MAX_PROOF_HASHES + 1)},
        {"checkpoint": b"not a note\n"},
        {"checkpoint": b"\xff"},
    ):
        with pytest.raises(PledgewatchError):
            build_proof_file(**{**good, **bad})  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Mutation probes: each corruption of each good proof is rejected by the right check.

Probe = Callable[[World, int, bytes], tuple[bytes, Check] | None]
PROBES: dict[str, Probe] = {}


def probe(name: str) -> Callable[[Probe], Probe]:
    def register(fn: Probe) -> Probe:
        PROBES[name] = fn
        return fn

    return register


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for p in parents:
            d = d[p]
        d[last] = value

    return change


@probe("leaf index + 1")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    return edit(good, _set("leaf_index", i + 1)), Check.EVENT_INCLUDED


@probe("leaf index - 1")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    return edit(good, _set("leaf_index", i - 1)), Check.EVENT_INCLUDED


@probe("key leaf index + 1")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    k = json.loads(good)["gateway_key"]["leaf_index"]
    return edit(good, _set("gateway_key.leaf_index", k + 1)), Check.KEY_INCLUDED


@probe("key leaf index - 1")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    k = json.loads(good)["gateway_key"]["leaf_index"]
    return edit(good, _set("gateway_key.leaf_index", k - 1)), (
        Check.FORMAT if k == 0 else Check.KEY_INCLUDED
    )


@probe("tree size x 2, re-signed and cosigned")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    note = w.note(w.size * 2, root=w.tree.root())
    return edit(good, _set("checkpoint", note.decode())), Check.KEY_INCLUDED


@probe("tree size / 2, re-signed and cosigned")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    note = w.note(w.size // 2, root=w.tree.root())
    return edit(good, _set("checkpoint", note.decode())), Check.KEY_INCLUDED


@probe("tree size / 2 with its true root and fresh proofs: the event is not in it")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check] | None:
    half = w.size // 2
    d = json.loads(good)
    k = d["gateway_key"]["leaf_index"]
    if i < half:
        return None  # the event is in the smaller tree; nothing is wrong
    d["checkpoint"] = w.note(half).decode()
    d["gateway_key"]["inclusion"] = [h.hex() for h in w.tree.inclusion_proof(k, half)]
    return canonical.encode(d), Check.EVENT_INCLUDED


@probe("tree size unchanged but not re-signed: size x 2")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    note = json.loads(good)["checkpoint"].replace(f"\n{w.size}\n", f"\n{w.size * 2}\n", 1)
    return edit(good, _set("checkpoint", note)), Check.KEY_INCLUDED


@probe("wrong root, re-signed and cosigned")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    note = w.note(root=w.tree.root(w.size - 1))
    return edit(good, _set("checkpoint", note.decode())), Check.KEY_INCLUDED


@probe("wrong leaf: another event of the same gateway, validly signed")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    gateway = w.events[i].event.gateway
    other = next(s for j, s in w.events.items() if j != i and s.event.gateway == gateway)
    return edit(good, _set("event", json.loads(other.to_wire()))), Check.EVENT_INCLUDED


@probe("event body tampered (qty or ts_ms)")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    d = json.loads(good)
    body = d["event"]["event"]
    if body["qty"] is not None:
        body["qty"] += 1
    else:
        body["ts_ms"] += 1
    return canonical.encode(d), Check.EVENT_SIGNATURE


@probe("event body tampered: another bay")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check] | None:
    d = json.loads(good)
    if d["event"]["event"]["bay"] is None:
        return None
    d["event"]["event"]["bay"] = "Z9"
    return canonical.encode(d), Check.EVENT_SIGNATURE


@probe("signature tampered")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    d = json.loads(good)
    sig = bytearray.fromhex(d["event"]["sig"])
    sig[5] ^= 0x10
    d["event"]["sig"] = sig.hex()
    return canonical.encode(d), Check.EVENT_SIGNATURE


@probe("key id in the envelope changed")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    return edit(good, _set("event.kid", "0" * 32)), Check.EVENT_SIGNATURE


@probe("key record of another gateway (another key), with its valid proof")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    other = "gw-2" if w.events[i].event.gateway == "gw-1" else "gw-1"
    return w.proof(i, gateway_key=other), Check.EVENT_SIGNATURE


@probe("key record of the same key for another gateway")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    return edit(good, _set("gateway_key.record.gateway", "gw-x")), Check.KEY_RECORD


@probe("key record of the same key for another warehouse")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    return edit(good, _set("gateway_key.record.warehouse", "wh-2")), Check.KEY_RECORD


@probe("event before valid_from")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    ts = w.events[i].event.ts_ms
    return edit(good, _set("gateway_key.record.valid_from_ms", ts + 1)), Check.KEY_RECORD


@probe("event at valid_until (exclusive)")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    ts = w.events[i].event.ts_ms
    return edit(good, _set("gateway_key.record.valid_until_ms", ts)), Check.KEY_RECORD


@probe("a revoke record instead of an enrolment")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    return edit(good, _set("gateway_key.record.action", "revoke")), Check.KEY_RECORD


@probe("key record's at_ms changed (not the logged record)")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    return edit(good, _set("gateway_key.record.at_ms", T0 - 1)), Check.KEY_INCLUDED


@probe("checkpoint signed by a stranger (witness cosigned it)")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    note = w.note(signer=w.stranger)
    return edit(good, _set("checkpoint", note.decode())), Check.CHECKPOINT_SIGNATURE


@probe("checkpoint signed by the anchor under another name")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    note = w.note(name="another.origin")
    return edit(good, _set("checkpoint", note.decode())), Check.CHECKPOINT_SIGNATURE


@probe("anchor signature bytes flipped")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    note = SignedNote.parse(w.note())
    sig = note.signatures[0]
    bad = replace(sig, signature=bytes([sig.signature[0] ^ 1]) + sig.signature[1:])
    flipped = SignedNote(note.body, (bad, *note.signatures[1:]))
    return edit(good, _set("checkpoint", flipped.to_bytes().decode())), (Check.CHECKPOINT_SIGNATURE)


@probe("cosignature missing")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    note = w.note(witnesses=())
    return edit(good, _set("checkpoint", note.decode())), Check.WITNESS_COSIGNATURE


@probe("cosignature forged by a stranger under the witness's name")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    note = w.note(witnesses=((WITNESS, w.stranger),))
    return edit(good, _set("checkpoint", note.decode())), Check.WITNESS_COSIGNATURE


@probe("cosignature bytes flipped (timestamp or signature)")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    note = SignedNote.parse(w.note())
    anchor_sig, cosig = note.signatures
    bad = replace(
        cosig, signature=cosig.signature[:7] + bytes([cosig.signature[7] ^ 1]) + cosig.signature[8:]
    )
    flipped = SignedNote(note.body, (anchor_sig, bad))
    return edit(good, _set("checkpoint", flipped.to_bytes().decode())), (Check.WITNESS_COSIGNATURE)


@probe("cosignature of another checkpoint")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    note = SignedNote.parse(w.note())
    other = Checkpoint(ORIGIN, w.size - 1, w.tree.root(w.size - 1)).body()
    cosig = cosign(other, WITNESS, w.witness, w.witness_ts)
    mixed = SignedNote(note.body, (note.signatures[0], cosig))
    return edit(good, _set("checkpoint", mixed.to_bytes().decode())), (Check.WITNESS_COSIGNATURE)


@probe("ledger payload for another root (entry hash recomputed)")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    payload = anchor_payload(ORIGIN, w.size, w.tree.root(w.size - 1))
    receipt = sqlite_receipt(payload, 3)
    return edit(good, _set("ledger", receipt.to_dict())), Check.LEDGER


@probe("ledger payload for another size (entry hash recomputed)")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    receipt = sqlite_receipt(anchor_payload(ORIGIN, w.size - 1, w.tree.root()), 3)
    return edit(good, _set("ledger", receipt.to_dict())), Check.LEDGER


@probe("ledger entry hash does not match the entry")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    return edit(good, _set("ledger.block_time_ms", T0)), Check.LEDGER


@probe("ledger entry's prev_hash changed")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    return edit(good, _set("ledger.prev_hash", "ab" * 32)), Check.LEDGER


@probe("ledger entry hash in upper case")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    return edit(good, _set("ledger.tx_hash", json.loads(good)["ledger"]["tx_hash"].upper())), (
        Check.LEDGER
    )


@probe("extra hash appended to the event proof")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    d = json.loads(good)
    d["inclusion"].append(d["inclusion"][0])
    return canonical.encode(d), Check.EVENT_INCLUDED


@probe("extra hash prepended to the key proof")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    d = json.loads(good)
    d["gateway_key"]["inclusion"].insert(0, "00" * 32)
    return canonical.encode(d), Check.KEY_INCLUDED


@probe("last hash of the event proof missing")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    d = json.loads(good)
    d["inclusion"].pop()
    return canonical.encode(d), Check.EVENT_INCLUDED


@probe("first hash of the key proof missing")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    d = json.loads(good)
    d["gateway_key"]["inclusion"].pop(0)
    return canonical.encode(d), Check.KEY_INCLUDED


@probe("event and key proofs swapped")
def _(w: World, i: int, good: bytes) -> tuple[bytes, Check]:
    d = json.loads(good)
    d["inclusion"], d["gateway_key"]["inclusion"] = d["gateway_key"]["inclusion"], d["inclusion"]
    return canonical.encode(d), Check.KEY_INCLUDED


@pytest.mark.parametrize("name", sorted(PROBES))
def test_mutation_probe_is_rejected_by_the_right_check(world: World, name: str) -> None:
    ran = 0
    for index in good_indexes(world):
        good = world.proof(index)
        world.verify(good, require_ledger=True)
        result = PROBES[name](world, index, good)
        if result is None:
            continue
        bad, want = result
        assert bad != good
        with pytest.raises(VerificationFailed) as info:
            world.verify(bad, require_ledger=True)
        assert info.value.check is want, f"index {index}: {info.value}"
        assert str(info.value).startswith(want.value + ": ")
        ran += 1
    assert ran > 0


def _flip_bits(good: bytes, path: tuple[str, ...], stride: int) -> Iterator[bytes]:
    value = json.loads(good)
    target = value
    for p in path:
        target = target[p]
    for h, text in enumerate(list(target)):
        raw = bytes.fromhex(text)
        for bit in range(h % stride, 256, stride):
            flipped = bytearray(raw)
            flipped[bit // 8] ^= 1 << (bit % 8)
            target[h] = flipped.hex()
            yield canonical.encode(value)
        target[h] = text


@pytest.mark.parametrize(
    ("path", "want"),
    [(("inclusion",), Check.EVENT_INCLUDED), (("gateway_key", "inclusion"), Check.KEY_INCLUDED)],
)
def test_every_bit_of_every_proof_hash_flipped_is_rejected(
    world: World, path: tuple[str, ...], want: Check
) -> None:
    """All bits for the first good proof, every 5th bit (offset per hash) for the others."""
    count = 0
    for n, index in enumerate(good_indexes(world)):
        for bad in _flip_bits(world.proof(index), path, 1 if n == 0 else 5):
            with pytest.raises(VerificationFailed) as info:
                world.verify(bad)
            assert info.value.check is want
            count += 1
    assert count > 1000


def test_key_enrolled_after_the_event_is_refused(world: World) -> None:
    index = world.late_event
    key_index = world.records["gw-9"][0]
    assert key_index > index
    data = world.proof(index)
    with pytest.raises(VerificationFailed) as info:
        world.verify(data)
    assert info.value.check is Check.KEY_INCLUDED
    assert "precede" in info.value.detail
    assert (info.value.expected, info.value.computed) == (index, key_index)


def test_failures_carry_expected_and_computed(world: World) -> None:
    index = good_indexes(world)[0]
    good = world.proof(index)
    bad = edit(good, _set("leaf_index", index + 1))
    with pytest.raises(VerificationFailed) as info:
        world.verify(bad)
    assert info.value.expected == world.tree.root()
    assert isinstance(info.value.computed, bytes) and info.value.computed != world.tree.root()
    payload = anchor_payload(ORIGIN, world.size, world.tree.root(world.size - 1))
    bad = edit(good, _set("ledger", sqlite_receipt(payload, 3).to_dict()))
    with pytest.raises(VerificationFailed) as info:
        world.verify(bad)
    assert info.value.expected == anchor_payload(ORIGIN, world.size, world.tree.root())
    assert info.value.computed == payload


# ---------------------------------------------------------------------------------------------
# FORMAT: strict decoding and limits


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b + b" ",
        lambda b: b.replace(b'"v":1}', b'"v":2}'),
        lambda b: b.replace(b'"type":"pledgewatch-proof"', b'"type":"pledgewatch-proff"'),
        lambda b: b[:-1] + b',"x":1}',
        lambda b: b.replace(b'{"checkpoint":', b'{"checkpoint" :'),
        lambda b: b"[]",
        lambda b: b"",
        lambda b: b"\xff" + b,
        lambda b: edit(b, lambda d: d.pop("ledger")),
        lambda b: edit(b, lambda d: d["gateway_key"].pop("record")),
        lambda b: edit(b, _set("leaf_index", "3")),
        lambda b: edit(b, _set("leaf_index", True)),
        lambda b: edit(b, _set("inclusion", "ab" * 32)),
        lambda b: edit(b, lambda d: d["inclusion"].__setitem__(0, d["inclusion"][0].upper())),
        lambda b: edit(b, lambda d: d["inclusion"].__setitem__(0, d["inclusion"][0][:-2])),
        lambda b: edit(b, _set("inclusion", ["00" * 32] * (MAX_PROOF_HASHES + 1))),
        lambda b: edit(b, _set("checkpoint", "no note here\n")),
        lambda b: edit(b, _set("event.v", 2)),
        lambda b: edit(b, _set("gateway_key.record.key_id", "0" * 32)),
        lambda b: edit(b, _set("ledger.backend", "bitcoin")),
        lambda b: edit(b, _set("ledger", [])),
    ],
)
def test_malformed_files_fail_format(world: World, mutate: Callable[[bytes], bytes]) -> None:
    bad = mutate(world.proof(good_indexes(world)[0]))
    assert failed_check(world, bad) is Check.FORMAT


def test_size_limit_is_1_mib(world: World) -> None:
    good = world.proof(good_indexes(world)[0])
    big = good[:-1] + b',"zz":"' + b"x" * (MAX_PROOF_BYTES - len(good)) + b'"}'
    assert len(big) > MAX_PROOF_BYTES
    with pytest.raises(VerificationFailed, match="limit") as info:
        world.verify(big)
    assert info.value.check is Check.FORMAT


def test_non_bytes_input_fails_format(world: World) -> None:
    with pytest.raises(VerificationFailed) as info:
        world.verify("{}")  # type: ignore[arg-type]
    assert info.value.check is Check.FORMAT


def test_checks_are_declared_in_the_documented_order() -> None:
    assert [c.value for c in Check] == [
        "format",
        "event-signature",
        "key-record",
        "key-included",
        "event-included",
        "checkpoint-signature",
        "witness-cosignature",
        "ledger",
    ]


def test_proof_file_dataclass_refuses_bad_shapes(world: World) -> None:
    proof = parse_proof_file(world.proof(good_indexes(world)[0]))
    with pytest.raises(ValidationError):
        replace(proof, inclusion=list(proof.inclusion))  # type: ignore[arg-type]
    assert isinstance(proof, ProofFile)


# ---------------------------------------------------------------------------------------------
# Hypothesis: hostile input never escapes as another exception and is never falsely accepted


def claim(p: VerifiedProof) -> tuple[object, ...]:
    """What a proof claims (the sqlite ledger id is only checkable online, so not in here)."""
    ledger = None if p.ledger is None else replace(p.ledger, ledger_id="")
    witnesses = tuple((w.name, w.public_key, w.timestamp_s) for w in p.witnesses)
    return (p.signed.to_wire(), p.leaf_index, p.origin, p.size, p.root, witnesses, ledger)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_fail_format(data: bytes) -> None:
    w = WORLD
    with pytest.raises(VerificationFailed) as info:
        w.verify(data)
    assert info.value.check is Check.FORMAT


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=70),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


def _paths(value: object, prefix: tuple[object, ...] = ()) -> Iterator[tuple[object, ...]]:
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    w = WORLD
    value = json.loads(GOOD)
    paths = list(_paths(value))[1:]
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        parent: Any = value
        try:
            for p in path[:-1]:
                parent = parent[p]
            current = parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue
        action = draw(st.sampled_from(["replace", "delete", "nudge", "char", "hex", "hex"]))
        if action == "delete" and isinstance(parent, dict | list):
            del parent[path[-1]]
        elif action == "nudge" and isinstance(current, int) and not isinstance(current, bool):
            parent[path[-1]] = current + draw(st.sampled_from([-1, 1, w.size, -w.size]))
        elif action in ("char", "hex") and isinstance(current, str) and current:
            # "hex" keeps a hex string well formed, so the evidence checks see it
            pos = draw(st.integers(0, len(current) - 1))
            chars = "0123456789abcdef" if action == "hex" else "\n—+= aZ09/"
            char = draw(st.sampled_from(chars) | st.characters(max_codepoint=0x7F))
            parent[path[-1]] = current[:pos] + char + current[pos + 1 :]
        else:
            parent[path[-1]] = draw(json_values)
    try:
        return canonical.encode(value)
    except PledgewatchError:
        return GOOD + b" "


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_files())
def test_random_json_mutations_are_rejected_or_claim_the_same(data: bytes) -> None:
    w = WORLD
    try:
        proven = w.verify(data, require_ledger=True)
    except VerificationFailed:
        return
    assert claim(proven) == GOOD_CLAIM


WORLD = make_world()
GOOD = WORLD.proof(good_indexes(WORLD)[1])
GOOD_CLAIM = claim(WORLD.verify(GOOD))


def emit_vector() -> str:
    """A good proof file and the keys to check it, for the independent verifier."""
    w = make_world()
    index = good_indexes(w)[1]
    return json.dumps(
        {
            "anchor_key": w.anchor_key.hex(),
            "witness": {"name": WITNESS, "key": w.witness.public_key.hex()},
            "proof_file": w.proof(index).decode(),
            "proof_file_no_ledger": w.proof(index, ledger=None).decode(),
            "late_key_proof_file": w.proof(w.late_event).decode(),
            "event_id": w.events[index].event_id,
            "leaf_index": index,
        }
    )


if __name__ == "__main__":
    sys.stdout.write(emit_vector())
