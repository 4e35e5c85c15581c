"""Deterministic randomness and keys derived from a scenario's seed.

Each purpose gets its own ``random.Random`` stream, seeded with the first 8 bytes of

    SHA-256(RNG_DOMAIN || decimal(seed) || "\\n" || name)

so adding a fault to one device does not shift another device's noise. Only integer draws
(``randrange``, ``randint``, ``choice``) are used: CPython defines them bit for bit from the
Mersenne Twister output, so the same seed gives the same scenario on every platform.

Simulated gateway keys are Ed25519 seeds ``SHA-256(KEY_DOMAIN || decimal(seed) || "\\n" ||
name)``; they are for simulations and tests only.
"""

from __future__ import annotations

import hashlib
import random

from pledgewatch.signing import SigningKey

RNG_DOMAIN = b"pledgewatch/sim/rng/v1\n"
KEY_DOMAIN = b"pledgewatch/sim/key/v1\n"


def _digest(domain: bytes, seed: int, name: str) -> bytes:
    return hashlib.sha256(domain + f"{seed}\n{name}".encode()).digest()


def rng(seed: int, name: str) -> random.Random:
    """The random stream for one purpose, e.g. ``traffic`` or ``noise/cell-a1``."""
    return random.Random(int.from_bytes(_digest(RNG_DOMAIN, seed, name)[:8], "big"))


def derive_key(seed: int, name: str) -> SigningKey:
    """A deterministic simulation key: a gateway id, or ``wrong/<gateway>`` for the impostor."""
    return SigningKey(_digest(KEY_DOMAIN, seed, name))
