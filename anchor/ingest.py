"""Verified ingest: every message on an events topic is stored once, or quarantined with why.

Per message, in order (the first failure decides):

1. the topic must be ``pledgewatch/v1/{warehouse}/{gateway}/events``     → ``bad_topic``
2. the payload must be a canonical signed-event envelope (≤ 4 KiB)         → ``malformed``
3. the event's warehouse and gateway must equal the topic's                → ``topic_mismatch``
4. the signing key must be enrolled for that gateway and valid at ``ts_ms`` → ``unknown_key``,
   ``key_gateway_mismatch``, ``key_not_yet_valid``, ``key_revoked``
5. the Ed25519 signature must verify                                        → ``bad_signature``
6. stored by event id: a second copy is a harmless ``duplicate``.

Then the device's chain is checked (``anchor.chain``). Refused messages go to ``quarantine``
with their raw bytes. A receipt answers every stored or duplicate event, and every refused
event whose signature verified against the key it names — never an unverified message: its
event id (a hash of the body alone) could be a copy of an honest event the anchor has not yet
seen, and a receipt for it would release that event from its gateway's outbox.
"""

from __future__ import annotations

import enum
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from anchor.chain import check_chain
from anchor.registry import KeyProblem, RegisteredKey, check_key
from anchor.store.db import CHAIN_LOCK_ID, Tx
from pledgewatch.errors import PledgewatchError, SignatureError
from pledgewatch.events import SignedEvent
from pledgewatch.receipts import ReceiptItem, ReceiptStatus
from pledgewatch.signing import verify_event
from pledgewatch.topics import parse_topic

MAX_MESSAGE = 4096


class Reject(enum.Enum):
    BAD_TOPIC = "bad_topic"
    MALFORMED = "malformed"
    TOPIC_MISMATCH = "topic_mismatch"
    UNKNOWN_KEY = "unknown_key"
    KEY_GATEWAY_MISMATCH = "key_gateway_mismatch"
    KEY_NOT_YET_VALID = "key_not_yet_valid"
    KEY_REVOKED = "key_revoked"
    BAD_SIGNATURE = "bad_signature"


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    mid: int = 0
    qos: int = 0


@dataclass
class BatchResult:
    """What one batch did: receipts to send per (warehouse, gateway), counts by outcome."""

    receipts: dict[tuple[str, str], list[ReceiptItem]] = field(
        default_factory=lambda: defaultdict(list)
    )
    counts: Counter[str] = field(default_factory=Counter)
    stored: list[SignedEvent] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Refusal:
    reason: Reject
    detail: str
    event_id: str | None
    answerable: bool  # the signature verified: safe to send a "quarantined" receipt


class Ingestor:
    def __init__(self, keys: dict[str, RegisteredKey], worker: str) -> None:
        self.keys = keys
        self.worker = worker

    def verify_all(self, messages: list[Message]) -> list[SignedEvent | _Refusal]:
        """Decode and check every message (no database): do this before the transaction, so
        the cross-worker chain lock is held only for the writes."""
        return [self._verify(message) for message in messages]

    def process(
        self,
        tx: Tx,
        messages: list[Message],
        now_ms: int,
        verified: list[SignedEvent | _Refusal] | None = None,
    ) -> BatchResult:
        """Store or quarantine every message, all inside the caller's transaction.
        ``verified`` is ``verify_all(messages)`` when the caller already ran it."""
        outcomes = self.verify_all(messages) if verified is None else verified
        result = BatchResult()
        if messages:
            # One batch at a time across workers (PostgreSQL; SQLite writers are serial
            # anyway): the chain check must see every event stored before, or a FORK split
            # over two workers goes unseen, and two batches sharing events would insert them
            # in opposite orders and deadlock.
            tx.lock(CHAIN_LOCK_ID)
        for message, outcome in zip(messages, outcomes, strict=True):
            if isinstance(outcome, _Refusal):
                self._quarantine(tx, message, outcome, now_ms, result)
            else:
                self._store(tx, message, outcome, now_ms, result)
        return result

    def _verify(self, message: Message) -> SignedEvent | _Refusal:
        try:
            address = parse_topic(message.topic)
            if address.channel != "events":
                raise PledgewatchError(f"channel {address.channel!r} is not events")
        except PledgewatchError as exc:
            return _Refusal(Reject.BAD_TOPIC, str(exc), None, False)
        if len(message.payload) > MAX_MESSAGE:
            return _Refusal(
                Reject.MALFORMED, f"{len(message.payload)} bytes > {MAX_MESSAGE}", None, False
            )
        try:
            signed = SignedEvent.from_wire(message.payload)
        except PledgewatchError as exc:
            return _Refusal(Reject.MALFORMED, str(exc)[:500], None, False)
        event = signed.event
        if (event.warehouse, event.gateway) != (address.warehouse, address.gateway):
            return _Refusal(
                Reject.TOPIC_MISMATCH,
                f"event is {event.warehouse}/{event.gateway},"
                f" topic is {address.warehouse}/{address.gateway}",
                signed.event_id,
                False,
            )
        key = self.keys.get(signed.key_id)
        problem = check_key(key, event.warehouse, event.gateway, event.ts_ms)
        if key is None:
            return _Refusal(
                Reject.UNKNOWN_KEY, f"key {signed.key_id} is not enrolled", signed.event_id, False
            )
        try:
            verify_event(signed, key.public_key)
        except SignatureError as exc:
            return _Refusal(Reject.BAD_SIGNATURE, str(exc), signed.event_id, False)
        if problem is not None:
            # The gateway itself signed it (the signature verified): a "quarantined" receipt
            # is safe, except when the key belongs to another gateway.
            answerable = problem is not KeyProblem.KEY_GATEWAY_MISMATCH
            return _Refusal(
                _REJECT_FOR[problem],
                _explain(problem, key, event.ts_ms),
                signed.event_id,
                answerable,
            )
        return signed

    def _quarantine(
        self, tx: Tx, message: Message, refusal: _Refusal, now_ms: int, result: BatchResult
    ) -> None:
        tx.execute(
            "INSERT INTO quarantine (received_ms, topic, reason, detail, event_id, raw) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                now_ms,
                _text(message.topic[:512]),
                refusal.reason.value,
                _text(refusal.detail),
                refusal.event_id,
                message.payload,
            ),
        )
        result.counts[f"rejected:{refusal.reason.value}"] += 1
        if refusal.answerable and refusal.event_id is not None:
            address = parse_topic(message.topic)
            result.receipts[(address.warehouse, address.gateway)].append(
                ReceiptItem(refusal.event_id, ReceiptStatus.QUARANTINED, refusal.reason.value)
            )

    def _store(
        self, tx: Tx, message: Message, signed: SignedEvent, now_ms: int, result: BatchResult
    ) -> None:
        event = signed.event
        event_id = signed.event_id
        cursor = tx.execute(
            "INSERT INTO events (event_id, warehouse, gateway, device, seq, prev, kind, ts_ms, "
            "wire, received_ms, worker, leaf_index) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL) ON CONFLICT (event_id) DO NOTHING",
            (
                event_id,
                event.warehouse,
                event.gateway,
                event.device,
                event.seq,
                event.prev,
                event.kind.value,
                event.ts_ms,
                message.payload,
                now_ms,
                self.worker,
            ),
        )
        inserted = cursor.rowcount == 1
        status = ReceiptStatus.STORED if inserted else ReceiptStatus.DUPLICATE
        result.receipts[(event.warehouse, event.gateway)].append(ReceiptItem(event_id, status))
        result.counts[status.value] += 1
        if inserted:
            result.stored.append(signed)
            check_chain(tx, signed, now_ms)


_REJECT_FOR = {
    KeyProblem.UNKNOWN_KEY: Reject.UNKNOWN_KEY,
    KeyProblem.KEY_GATEWAY_MISMATCH: Reject.KEY_GATEWAY_MISMATCH,
    KeyProblem.KEY_NOT_YET_VALID: Reject.KEY_NOT_YET_VALID,
    KeyProblem.KEY_REVOKED: Reject.KEY_REVOKED,
}


def _text(untrusted: str) -> str:
    """Untrusted text for a TEXT column: PostgreSQL refuses NUL there, so NUL becomes the
    four characters ``\\x00`` (the payload itself is kept verbatim in the ``raw`` BLOB)."""
    return untrusted.replace("\x00", "\\x00")


def _explain(problem: KeyProblem, key: RegisteredKey, ts_ms: int) -> str:
    if problem is KeyProblem.KEY_GATEWAY_MISMATCH:
        return f"key {key.key_id} is enrolled for {key.warehouse}/{key.gateway}"
    window = f"[{key.valid_from_ms}, {key.valid_until_ms})"
    return f"event ts_ms {ts_ms} outside key {key.key_id} validity {window}"
