"""The proof file: everything an auditor needs to check one event offline, version 1.

A proof file is the canonical JSON (``pledgewatch.canonical``) of exactly these keys::

    {"checkpoint": <text: the signed checkpoint note, anchor signature + witness cosignatures>,
     "event": <the signed-event envelope object, exactly as on the wire>,
     "gateway_key": {"inclusion": [<64 hex>, ...], "leaf_index": <int>,
                     "record": <key record object, see pledgewatch.logentry>},
     "inclusion": [<64 hex>, ...],
     "leaf_index": <int>,
     "ledger": <LedgerReceipt.to_dict()> or null,
     "type": "pledgewatch-proof",
     "v": 1}

Both inclusion proofs (RFC 9162 §2.1.3, at most ``MAX_PROOF_HASHES`` hashes each) are against
the tree of the checkpoint (its size and root). The event's leaf data is
``logentry.event_leaf(signed)``, the key's ``logentry.key_leaf(record)``, each hashed as
``SHA-256(0x00 || leaf data)``. A file is at most ``MAX_PROOF_BYTES`` bytes.

``verify_proof_file`` runs the checks of ``Check`` in their declared order and stops at the
first failure with ``VerificationFailed(check, message)``. It does no I/O itself; an online
ledger look-up is a callable the caller passes in (the ``pledgewatch verify`` command does).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pledgewatch import anchoring, canonical, logentry, merkle, signing
from pledgewatch.anchoring import LedgerReceipt
from pledgewatch.checkpoint import Checkpoint, SignedNote, verify_checkpoint, verify_cosignature
from pledgewatch.errors import PledgewatchError, ProofError, ValidationError
from pledgewatch.events import SignedEvent
from pledgewatch.logentry import KeyAction, KeyRecord

PROOF_TYPE = "pledgewatch-proof"
PROOF_VERSION = 1
MAX_PROOF_BYTES = 1 << 20
MAX_PROOF_HASHES = 64
TOP_KEYS = frozenset(
    {"checkpoint", "event", "gateway_key", "inclusion", "leaf_index", "ledger", "type", "v"}
)
KEY_KEYS = frozenset({"inclusion", "leaf_index", "record"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ETH_TX = re.compile(r"0x[0-9a-f]{64}")


class Check(enum.Enum):
    """The checks, in the order they run. The value is the name printed and documented."""

    FORMAT = "format"  # canonical JSON <= 1 MiB, exact keys, v 1, every field well formed
    EVENT_SIGNATURE = "event-signature"  # kid = the record's key id; Ed25519 over the body
    KEY_RECORD = "key-record"  # enrol; same warehouse/gateway; valid_from <= ts_ms < until
    KEY_INCLUDED = "key-included"  # key index < event index; key leaf in the checkpoint tree
    EVENT_INCLUDED = "event-included"  # event leaf in the checkpoint tree
    CHECKPOINT_SIGNATURE = "checkpoint-signature"  # anchor key, note key name = origin
    WITNESS_COSIGNATURE = "witness-cosignature"  # a valid cosignature/v1 per given witness
    LEDGER = "ledger"  # payload commits to this checkpoint; sqlite entry hash; online look-up


class VerificationFailed(ProofError):
    """A proof file failed ``check``; ``str()`` is ``"<check>: <message>"``."""

    def __init__(
        self, check: Check, message: str, *, expected: object = None, computed: object = None
    ) -> None:
        super().__init__(f"{check.value}: {message}", expected=expected, computed=computed)
        self.check = check
        self.detail = message


@dataclass(frozen=True, slots=True)
class WitnessKey:
    """A witness the verifier trusts: its note key name and 32-byte Ed25519 public key."""

    name: str
    public_key: bytes


@dataclass(frozen=True, slots=True)
class Cosigned:
    """A trusted witness whose cosignature verified, and the time it states it cosigned."""

    name: str
    public_key: bytes
    timestamp_s: int


@dataclass(frozen=True, slots=True)
class ProofFile:
    """A decoded proof file. Construction checks the shape (not the evidence) and limits.

    ``note`` is the signed checkpoint note's exact bytes; ``checkpoint`` is parsed from it.
    Raises ``ValidationError`` (or another ``PledgewatchError``) for a malformed field.
    """

    note: bytes
    signed: SignedEvent
    leaf_index: int
    inclusion: tuple[bytes, ...]
    key_record: KeyRecord
    key_index: int
    key_inclusion: tuple[bytes, ...]
    ledger: LedgerReceipt | None
    checkpoint: Checkpoint = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.note, bytes):
            raise ValidationError("checkpoint: want the signed note's bytes")
        try:
            self.note.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError("checkpoint: note is not valid UTF-8") from None
        object.__setattr__(self, "checkpoint", Checkpoint.parse(SignedNote.parse(self.note).body))
        for name, value in (("leaf_index", self.leaf_index), ("key_index", self.key_index)):
            if not _is_int(value) or not 0 <= value <= canonical.MAX_SAFE_INT:
                raise ValidationError(f"{name}: got {value!r}, want an integer >= 0")
        for name, proof in (("inclusion", self.inclusion), ("key inclusion", self.key_inclusion)):
            _check_hashes(name, proof)
        if not isinstance(self.signed, SignedEvent) or not isinstance(self.key_record, KeyRecord):
            raise ValidationError("event / key record: want a SignedEvent and a KeyRecord")
        if self.ledger is not None and not isinstance(self.ledger, LedgerReceipt):
            raise ValidationError("ledger: want a LedgerReceipt or None")

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.note.decode("utf-8"),
            "event": canonical.decode(self.signed.to_wire()),
            "gateway_key": {
                "inclusion": [h.hex() for h in self.key_inclusion],
                "leaf_index": self.key_index,
                "record": self.key_record.to_dict(),
            },
            "inclusion": [h.hex() for h in self.inclusion],
            "leaf_index": self.leaf_index,
            "ledger": None if self.ledger is None else self.ledger.to_dict(),
            "type": PROOF_TYPE,
            "v": PROOF_VERSION,
        }

    def to_bytes(self) -> bytes:
        data = canonical.encode(self.to_dict())
        if len(data) > MAX_PROOF_BYTES:
            raise ValidationError(f"proof file: {len(data)} bytes, limit {MAX_PROOF_BYTES}")
        return data


def build_proof_file(
    *,
    checkpoint: bytes,
    signed: SignedEvent,
    leaf_index: int,
    inclusion: Sequence[bytes],
    key_record: KeyRecord,
    key_index: int,
    key_inclusion: Sequence[bytes],
    ledger: LedgerReceipt | None,
) -> bytes:
    """The proof file's bytes. Checks the shape only: a wrong proof builds, and fails later."""
    return ProofFile(
        checkpoint,
        signed,
        leaf_index,
        tuple(inclusion),
        key_record,
        key_index,
        tuple(key_inclusion),
        ledger,
    ).to_bytes()


def parse_proof_file(data: bytes) -> ProofFile:
    """Decode a proof file strictly; any problem is ``VerificationFailed(Check.FORMAT, …)``."""
    try:
        return _parse(data)
    except VerificationFailed:
        raise
    except PledgewatchError as exc:
        raise VerificationFailed(Check.FORMAT, str(exc)) from None


def _parse(data: bytes) -> ProofFile:
    value = canonical.decode(data, max_bytes=MAX_PROOF_BYTES)
    if not isinstance(value, dict):
        raise ValidationError(f"proof file: got {type(value).__name__}, want an object")
    if value.get("type") != PROOF_TYPE:
        raise ValidationError(f"type: got {value.get('type')!r}, want {PROOF_TYPE!r}")
    if not _is_int(value.get("v")) or value["v"] != PROOF_VERSION:
        raise ValidationError(f"v: got {value.get('v')!r}, want {PROOF_VERSION}")
    _check_keys("proof file", value, TOP_KEYS)
    if not isinstance(value["checkpoint"], str):
        raise ValidationError("checkpoint: want the signed note as text")
    if not isinstance(value["event"], dict):
        raise ValidationError("event: want the signed-event envelope object")
    key = value["gateway_key"]
    if not isinstance(key, dict):
        raise ValidationError("gateway_key: want an object")
    _check_keys("gateway_key", key, KEY_KEYS)
    ledger = value["ledger"]
    return ProofFile(
        value["checkpoint"].encode("utf-8"),
        SignedEvent.from_wire(canonical.encode(value["event"])),
        value["leaf_index"],
        _hashes("inclusion", value["inclusion"]),
        KeyRecord.from_dict(key["record"]),
        key["leaf_index"],
        _hashes("gateway_key.inclusion", key["inclusion"]),
        None if ledger is None else LedgerReceipt.from_dict(ledger),
    )


def _check_keys(what: str, value: dict[str, Any], want: frozenset[str]) -> None:
    if set(value) != want:
        missing = sorted(want - set(value))
        extra = sorted(set(value) - want)
        raise ValidationError(f"{what} keys: missing {missing}, unexpected {extra}")


def _hashes(what: str, value: object) -> tuple[bytes, ...]:
    if not isinstance(value, list):
        raise ValidationError(f"{what}: want a list of 64-hex hashes")
    if len(value) > MAX_PROOF_HASHES:
        raise ValidationError(f"{what}: {len(value)} hashes, limit {MAX_PROOF_HASHES}")
    for item in value:
        if not isinstance(item, str) or _HEX64.fullmatch(item) is None:
            raise ValidationError(f"{what}: got {item!r}, want 64 lowercase hex digits")
    return tuple(bytes.fromhex(item) for item in value)


def _check_hashes(what: str, proof: object) -> None:
    if not isinstance(proof, tuple):
        raise ValidationError(f"{what}: want a tuple of hashes")
    if len(proof) > MAX_PROOF_HASHES:
        raise ValidationError(f"{what}: {len(proof)} hashes, limit {MAX_PROOF_HASHES}")
    if not all(isinstance(h, bytes) and len(h) == 32 for h in proof):
        raise ValidationError(f"{what}: want 32-byte hashes")


@dataclass(frozen=True, slots=True)
class VerifiedProof:
    """What a proof file proved: ``signed`` is entry ``leaf_index`` of the log ``origin`` at
    ``size`` with ``root``, signed by the anchor key and cosigned by ``witnesses``; ``ledger``
    is where the checkpoint was anchored (``None``: not anchored).
    ``ledger_checked_online`` says whether a ledger look-up confirmed it."""

    signed: SignedEvent
    leaf_index: int
    key_record: KeyRecord
    key_index: int
    origin: str
    size: int
    root: bytes
    witnesses: tuple[Cosigned, ...]
    ledger: LedgerReceipt | None
    ledger_checked_online: bool

    @property
    def event_id(self) -> str:
        return self.signed.event_id

    @property
    def ledger_locator(self) -> str:
        """One line naming where the checkpoint is anchored, or ``"not anchored"``."""
        return ledger_locator(self.ledger)


def ledger_locator(ledger: LedgerReceipt | None) -> str:
    if ledger is None:
        return "not anchored"
    if ledger.backend == "sqlite":
        return f"sqlite ledger {ledger.ledger_id} entry {ledger.block_number} ({ledger.tx_hash})"
    return f"ethereum {ledger.ledger_id} block {ledger.block_number} tx {ledger.tx_hash}"


LedgerLookup = Callable[[LedgerReceipt], None]
"""An online ledger check: returns if the ledger holds the receipt's entry; raises
``ProofError`` if the ledger disagrees, another ``PledgewatchError`` if it cannot be asked."""


def verify_proof_file(
    data: bytes,
    *,
    anchor_key: bytes,
    witness_keys: Sequence[WitnessKey] = (),
    require_ledger: bool = False,
    ledger_lookup: LedgerLookup | None = None,
) -> VerifiedProof:
    """Run every ``Check`` in order; return what was proven or raise ``VerificationFailed``.

    ``anchor_key`` is the anchor's 32-byte checkpoint key (its note key name is the origin);
    each of ``witness_keys`` must have cosigned the checkpoint. ``require_ledger`` makes a file
    without a ledger receipt fail ``LEDGER``; so does passing ``ledger_lookup``, which then
    runs last within ``LEDGER``. A ``PledgewatchError`` that is not a ``ProofError`` from the
    look-up (the ledger could not be asked) propagates unchanged.
    """
    proof = parse_proof_file(data)
    _event_signature(proof)
    _key_record(proof)
    _key_included(proof)
    _event_included(proof)
    _checkpoint_signature(proof, anchor_key)
    witnesses = _witness_cosignatures(proof, witness_keys)
    _ledger(proof, require_ledger or ledger_lookup is not None)
    if proof.ledger is not None and ledger_lookup is not None:
        try:
            ledger_lookup(proof.ledger)
        except ProofError as exc:
            raise VerificationFailed(
                Check.LEDGER,
                f"the ledger does not hold this entry: {exc}",
                expected=exc.expected,
                computed=exc.computed,
            ) from None
    cp = proof.checkpoint
    return VerifiedProof(
        proof.signed,
        proof.leaf_index,
        proof.key_record,
        proof.key_index,
        cp.origin,
        cp.size,
        cp.root,
        witnesses,
        proof.ledger,
        proof.ledger is not None and ledger_lookup is not None,
    )


def _event_signature(proof: ProofFile) -> None:
    record = proof.key_record
    if proof.signed.key_id != record.key_id:
        raise VerificationFailed(
            Check.EVENT_SIGNATURE,
            f"kid: got {proof.signed.key_id}, want {record.key_id} (the key record's key)",
            expected=record.key_id,
            computed=proof.signed.key_id,
        )
    try:
        signing.verify_event(proof.signed, record.public_key)
    except PledgewatchError as exc:
        raise VerificationFailed(
            Check.EVENT_SIGNATURE, f"event {proof.signed.event_id}: {exc}"
        ) from None


def _key_record(proof: ProofFile) -> None:
    record, event = proof.key_record, proof.signed.event
    if record.action is not KeyAction.ENROL:
        raise VerificationFailed(Check.KEY_RECORD, f"action: got {record.action.value}, want enrol")
    for name in ("warehouse", "gateway"):
        want, got = getattr(record, name), getattr(event, name)
        if got != want:
            raise VerificationFailed(
                Check.KEY_RECORD,
                f"event {name}: got {got!r}, want {want!r} (the key record's)",
                expected=want,
                computed=got,
            )
    until = record.valid_until_ms
    if event.ts_ms < record.valid_from_ms or (until is not None and event.ts_ms >= until):
        window = f"[{record.valid_from_ms}, {'open' if until is None else until})"
        raise VerificationFailed(
            Check.KEY_RECORD,
            f"event ts_ms: got {event.ts_ms}, want within the key's validity {window}",
            expected=(record.valid_from_ms, until),
            computed=event.ts_ms,
        )


def _key_included(proof: ProofFile) -> None:
    if proof.key_index >= proof.leaf_index:
        raise VerificationFailed(
            Check.KEY_INCLUDED,
            f"key leaf index: got {proof.key_index}, want < event leaf index {proof.leaf_index}"
            " (the enrolment must precede the event in the log)",
            expected=proof.leaf_index,
            computed=proof.key_index,
        )
    leaf = merkle.leaf_hash(logentry.key_leaf(proof.key_record))
    _included(Check.KEY_INCLUDED, leaf, proof.key_index, proof.key_inclusion, proof)


def _event_included(proof: ProofFile) -> None:
    leaf = merkle.leaf_hash(logentry.event_leaf(proof.signed))
    _included(Check.EVENT_INCLUDED, leaf, proof.leaf_index, proof.inclusion, proof)


def _included(
    check: Check, leaf: bytes, index: int, path: Sequence[bytes], proof: ProofFile
) -> None:
    what = "key" if check is Check.KEY_INCLUDED else "event"
    cp = proof.checkpoint
    try:
        merkle.verify_inclusion(leaf, index, cp.size, path, cp.root)
    except ProofError as exc:
        raise VerificationFailed(
            check,
            f"{what} leaf {index} in tree of size {cp.size}: {exc}",
            expected=exc.expected,
            computed=exc.computed,
        ) from None


def _checkpoint_signature(proof: ProofFile, anchor_key: bytes) -> None:
    origin = proof.checkpoint.origin
    try:
        verify_checkpoint(proof.note, origin, anchor_key, origin=origin)
    except PledgewatchError as exc:
        raise VerificationFailed(
            Check.CHECKPOINT_SIGNATURE,
            f"no valid signature by the anchor key {_short(anchor_key)} named {origin!r}: {exc}",
        ) from None


def _witness_cosignatures(
    proof: ProofFile, witness_keys: Sequence[WitnessKey]
) -> tuple[Cosigned, ...]:
    note = SignedNote.parse(proof.note)
    out: list[Cosigned] = []
    for witness in witness_keys:
        try:
            ts = verify_cosignature(note, witness.name, witness.public_key)
        except PledgewatchError as exc:
            raise VerificationFailed(
                Check.WITNESS_COSIGNATURE,
                f"witness {witness.name!r} ({_short(witness.public_key)}): {exc}",
            ) from None
        out.append(Cosigned(witness.name, witness.public_key, ts))
    return tuple(out)


def _ledger(proof: ProofFile, required: bool) -> None:
    receipt, cp = proof.ledger, proof.checkpoint
    if receipt is None:
        if required:
            raise VerificationFailed(
                Check.LEDGER, "no ledger receipt: the checkpoint is not anchored"
            )
        return
    want = anchoring.anchor_payload(cp.origin, cp.size, cp.root)
    if receipt.payload != want:
        raise VerificationFailed(
            Check.LEDGER,
            f"payload: got {_show(receipt.payload)}, want {_show(want)} (this checkpoint's)",
            expected=want,
            computed=receipt.payload,
        )
    problem = _sqlite_problem(receipt) if receipt.backend == "sqlite" else _eth_problem(receipt)
    if problem:
        raise VerificationFailed(Check.LEDGER, problem)
    if receipt.backend == "sqlite":
        assert receipt.prev_hash is not None  # _sqlite_problem checked it
        computed = anchoring.sqlite_entry_hash(
            bytes.fromhex(receipt.prev_hash),
            receipt.block_number,
            receipt.block_time_ms,
            receipt.payload,
        ).hex()
        if computed != receipt.tx_hash:
            raise VerificationFailed(
                Check.LEDGER,
                f"sqlite entry hash: got {receipt.tx_hash}, recomputed {computed}",
                expected=receipt.tx_hash,
                computed=computed,
            )


def _sqlite_problem(r: LedgerReceipt) -> str | None:
    if r.chain_id is not None:
        return f"sqlite receipt chain_id: got {r.chain_id!r}, want null"
    for name, value in (("ledger_id", r.ledger_id), ("tx_hash", r.tx_hash)):
        if _HEX64.fullmatch(value) is None:
            return f"sqlite receipt {name}: got {value!r}, want 64 lowercase hex digits"
    if r.prev_hash is None or _HEX64.fullmatch(r.prev_hash) is None:
        return f"sqlite receipt prev_hash: got {r.prev_hash!r}, want 64 lowercase hex digits"
    if r.block_number < 1 or r.block_time_ms < 0:
        return (
            f"sqlite receipt: height {r.block_number} / time {r.block_time_ms}: "
            "want height >= 1 (0 is the genesis entry) and time >= 0"
        )
    if r.block_number == 1 and r.prev_hash != r.ledger_id:
        return f"sqlite entry 1: prev_hash {r.prev_hash} is not the genesis {r.ledger_id}"
    return None


def _eth_problem(r: LedgerReceipt) -> str | None:
    if r.chain_id is None or r.chain_id < 1:
        return f"ethereum receipt chain_id: got {r.chain_id!r}, want an integer >= 1"
    if r.ledger_id != f"eip155:{r.chain_id}":
        return f"ethereum receipt ledger_id: got {r.ledger_id!r}, want 'eip155:{r.chain_id}'"
    if _ETH_TX.fullmatch(r.tx_hash) is None:
        return f"ethereum receipt tx_hash: got {r.tx_hash!r}, want 0x + 64 lowercase hex"
    if r.prev_hash is not None:
        return f"ethereum receipt prev_hash: got {r.prev_hash!r}, want null"
    if r.block_number < 0 or r.block_time_ms < 0 or r.block_time_ms % 1000:
        return (
            f"ethereum receipt block {r.block_number} at {r.block_time_ms} ms: want a block "
            ">= 0 and a time in whole seconds"
        )
    return None


def _short(key: object) -> str:
    if isinstance(key, bytes) and len(key) == signing.PUBLIC_KEY_SIZE:
        return "kid " + signing.key_id(key)
    return "(not a 32-byte key)"


def _show(payload: bytes) -> str:
    try:
        return repr(payload.decode("utf-8"))
    except UnicodeDecodeError:
        return payload.hex()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
