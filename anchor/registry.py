"""The gateway key registry: enrolment, rotation and revocation, each also logged as a leaf.

A key is accepted for an event only if it is enrolled for the event's warehouse and gateway,
and the event's ``ts_ms`` lies in ``[valid_from_ms, valid_until_ms)``. Revoking a key sets
``valid_until_ms`` (default: now), so events the key signed afterwards are refused while
proofs of earlier events stay checkable. Rotation = enrol the new key, revoke the old one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from nacl.bindings import crypto_core_ed25519_is_valid_point

from anchor.errors import RegistryError
from anchor.store.db import Database, Tx
from pledgewatch.logentry import KeyAction, KeyRecord, key_leaf
from pledgewatch.signing import key_id


@dataclass(frozen=True, slots=True)
class RegisteredKey:
    key_id: str
    warehouse: str
    gateway: str
    public_key: bytes
    valid_from_ms: int
    valid_until_ms: int | None


class KeyProblem(enum.Enum):
    UNKNOWN_KEY = "unknown_key"
    KEY_GATEWAY_MISMATCH = "key_gateway_mismatch"
    KEY_NOT_YET_VALID = "key_not_yet_valid"
    KEY_REVOKED = "key_revoked"


def check_key(
    key: RegisteredKey | None, warehouse: str, gateway: str, ts_ms: int
) -> KeyProblem | None:
    if key is None:
        return KeyProblem.UNKNOWN_KEY
    if (key.warehouse, key.gateway) != (warehouse, gateway):
        return KeyProblem.KEY_GATEWAY_MISMATCH
    if ts_ms < key.valid_from_ms:
        return KeyProblem.KEY_NOT_YET_VALID
    if key.valid_until_ms is not None and ts_ms >= key.valid_until_ms:
        return KeyProblem.KEY_REVOKED
    return None


def enrol(
    db: Database,
    warehouse: str,
    gateway: str,
    public_key: bytes,
    *,
    now_ms: int,
    valid_from_ms: int = 0,
) -> KeyRecord:
    # An enrolment is a permanent log leaf: refuse a key nothing could ever sign for (not a
    # point on the curve, or of small order, e.g. 32 zero bytes).
    if len(public_key) != 32 or not crypto_core_ed25519_is_valid_point(public_key):
        raise RegistryError(
            f"public key {public_key.hex()} is not a valid Ed25519 public key (not a point of "
            "the curve's prime-order subgroup); use the one `gateway keygen` printed"
        )
    record = KeyRecord(KeyAction.ENROL, warehouse, gateway, public_key, valid_from_ms, None, now_ms)
    with db.transaction() as tx:
        if tx.one("SELECT key_id FROM keys WHERE key_id = ?", (record.key_id,)) is not None:
            raise RegistryError(f"key {record.key_id} is already enrolled")
        tx.execute(
            "INSERT INTO keys (key_id, warehouse, gateway, public_key, valid_from_ms, "
            "valid_until_ms, enrolled_ms, revoked_ms) VALUES (?, ?, ?, ?, ?, NULL, ?, NULL)",
            (record.key_id, warehouse, gateway, public_key, valid_from_ms, now_ms),
        )
        _log_record(tx, record)
    return record


def revoke(db: Database, kid: str, *, now_ms: int, valid_until_ms: int | None = None) -> KeyRecord:
    until = now_ms if valid_until_ms is None else valid_until_ms
    with db.transaction() as tx:
        row = tx.one(
            "SELECT warehouse, gateway, public_key, valid_from_ms, revoked_ms "
            "FROM keys WHERE key_id = ?",
            (kid,),
        )
        if row is None:
            raise RegistryError(f"no enrolled key {kid}")
        if row[4] is not None:
            raise RegistryError(f"key {kid} was already revoked")
        record = KeyRecord(KeyAction.REVOKE, row[0], row[1], bytes(row[2]), row[3], until, now_ms)
        tx.execute(
            "UPDATE keys SET valid_until_ms = ?, revoked_ms = ? WHERE key_id = ?",
            (until, now_ms, kid),
        )
        _log_record(tx, record)
    return record


def _log_record(tx: Tx, record: KeyRecord) -> None:
    tx.execute(
        "INSERT INTO key_records (key_id, leaf, leaf_index) VALUES (?, ?, NULL)",
        (record.key_id, key_leaf(record)),
    )


def load_keys(tx: Tx) -> dict[str, RegisteredKey]:
    rows = tx.all(
        "SELECT key_id, warehouse, gateway, public_key, valid_from_ms, valid_until_ms FROM keys"
    )
    return {r[0]: RegisteredKey(r[0], r[1], r[2], bytes(r[3]), r[4], r[5]) for r in rows}


def list_keys(db: Database) -> list[RegisteredKey]:
    return sorted(load_keys(db.read()).values(), key=lambda k: (k.warehouse, k.gateway, k.key_id))


__all__ = [
    "KeyProblem",
    "RegisteredKey",
    "check_key",
    "enrol",
    "key_id",
    "list_keys",
    "load_keys",
    "revoke",
]
