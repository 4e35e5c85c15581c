"""Ed25519 signatures with domain separation, and key ids.

Every signature pledgewatch makes is Ed25519 (RFC 8032, pure, no pre-hash) over

    DOMAIN || message

where DOMAIN is one of the constants below (ASCII, ending in a newline) and ``message`` is the
canonical bytes of the signed structure. A signature for one purpose therefore never verifies
for another. Public keys are the 32-byte RFC 8032 encoding; a **key id** is

    hex(SHA-256(KEY_ID_DOMAIN || public_key)[:16])      (32 lowercase hex digits)

PyNaCl (libsodium) does the curve arithmetic; this module hands it raw bytes only and turns
every failure into ``SignatureError``.
"""

from __future__ import annotations

import hashlib
import os

import nacl.exceptions
import nacl.signing

from pledgewatch.errors import SignatureError
from pledgewatch.events import Event, SignedEvent

EVENT_DOMAIN = b"pledgewatch/event/v1\n"
RECEIPT_DOMAIN = b"pledgewatch/receipt/v1\n"
KEY_ID_DOMAIN = b"pledgewatch/key-id/v1\n"
PUBLIC_KEY_SIZE = 32
SEED_SIZE = 32
SIGNATURE_SIZE = 64


def key_id(public_key: bytes) -> str:
    """Key id of a 32-byte Ed25519 public key (see module docstring)."""
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
        raise SignatureError(f"public key: want {PUBLIC_KEY_SIZE} bytes")
    return hashlib.sha256(KEY_ID_DOMAIN + public_key).digest()[:16].hex()


class SigningKey:
    """An Ed25519 private key. Holds the 32-byte RFC 8032 seed; never logs or reprs it."""

    __slots__ = ("_key", "key_id", "public_key")

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes) or len(seed) != SEED_SIZE:
            raise SignatureError(f"seed: want {SEED_SIZE} bytes")
        self._key = nacl.signing.SigningKey(seed)
        self.public_key: bytes = bytes(self._key.verify_key)
        self.key_id: str = key_id(self.public_key)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(os.urandom(SEED_SIZE))

    def seed(self) -> bytes:
        return bytes(self._key)

    def sign(self, domain: bytes, message: bytes) -> bytes:
        """64-byte Ed25519 signature over ``domain || message``."""
        return ed25519_sign(self._key, domain + message)

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"


def ed25519_sign(key: nacl.signing.SigningKey, message: bytes) -> bytes:
    """Plain RFC 8032 Ed25519 signature (no domain): the primitive the RFC vectors test."""
    return bytes(key.sign(message).signature)


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Plain RFC 8032 Ed25519 verification; raises ``SignatureError`` on any failure."""
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
        raise SignatureError(f"public key: want {PUBLIC_KEY_SIZE} bytes")
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
        raise SignatureError(f"signature: want {SIGNATURE_SIZE} bytes")
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError):
        raise SignatureError("Ed25519 signature does not verify") from None


def verify(public_key: bytes, domain: bytes, message: bytes, signature: bytes) -> None:
    """Verify a signature over ``domain || message``; raise ``SignatureError`` if it fails."""
    ed25519_verify(public_key, domain + message, signature)


def sign_event(event: Event, key: SigningKey) -> SignedEvent:
    return SignedEvent(event, key.key_id, key.sign(EVENT_DOMAIN, event.canonical()))


def verify_event(signed: SignedEvent, public_key: bytes) -> None:
    """Check that ``public_key`` is the named signer and that its signature verifies."""
    want = key_id(public_key)
    if signed.key_id != want:
        raise SignatureError(f"key id: got {signed.key_id}, want {want}")
    verify(public_key, EVENT_DOMAIN, signed.body, signed.signature)
