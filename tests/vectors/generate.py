"""Generate pledgewatch's own test vectors: ``python tests/vectors/generate.py``.

Vectors are data. Each file under tests/vectors/ that we make ourselves is produced by one entry
of ``GENERATORS`` (file name -> function returning a JSON-able object), and a test checks that
the committed file equals ``render(GENERATORS[name]())``, so regenerate after changing one.

The Merkle vectors are computed by the naive, recursive definitions of RFC 9162 §2.1 written out
below with hashlib alone. This module must never import pledgewatch: it is the independent
reference the package is tested against. The tests also use its ``NaiveTree`` and its
``*_claim_holds`` oracles, which decide from the RFC definitions alone whether a (possibly
mutated) proof proves what it claims.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent

Range = tuple[int, int]


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 §2.1.1: ``SHA-256(0x00 || data)``."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """The largest power of two ``k`` with ``k < n`` (requires ``n > 1``)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def path_ranges(m: int, begin: int, end: int) -> list[Range]:
    """RFC 9162 §2.1.3.1 ``PATH(m, D[begin:end])``, as the leaf ranges whose MTH it lists."""
    n = end - begin
    if n == 1:
        return []
    k = split(n)
    if m < k:
        return [*path_ranges(m, begin, begin + k), (begin + k, end)]
    return [*path_ranges(m - k, begin + k, end), (begin, begin + k)]


def subproof_ranges(m: int, begin: int, end: int, b: bool) -> list[Range]:
    """RFC 9162 §2.1.4.1 ``SUBPROOF(m, D[begin:end], b)``, as leaf ranges."""
    n = end - begin
    if m == n:
        return [] if b else [(begin, end)]
    k = split(n)
    if m <= k:
        return [*subproof_ranges(m, begin, begin + k, b), (begin + k, end)]
    return [*subproof_ranges(m - k, begin + k, end, False), (begin, begin + k)]


def consistency_ranges(m: int, n: int) -> list[Range]:
    """RFC 9162 §2.1.4.1 ``PROOF(m, D[n]) = SUBPROOF(m, D[n], true)`` for ``0 < m <= n``."""
    return subproof_ranges(m, 0, n, True)


class NaiveTree:
    """The RFC's recursive ``MTH``, ``PATH`` and ``PROOF`` over a list of raw leaf entries.

    ``MTH`` of each range is memoised (a pure function of the range), nothing else is clever.
    """

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.leaves = list(leaves)
        self._memo: dict[Range, bytes] = {}

    def mth(self, begin: int, end: int) -> bytes:
        """RFC 9162 §2.1.1 ``MTH(D[begin:end])``."""
        if (begin, end) not in self._memo:
            n = end - begin
            if n == 0:
                value = hashlib.sha256(b"").digest()
            elif n == 1:
                value = leaf_hash(self.leaves[begin])
            else:
                k = split(n)
                value = node_hash(self.mth(begin, begin + k), self.mth(begin + k, end))
            self._memo[(begin, end)] = value
        return self._memo[(begin, end)]

    def root(self, size: int) -> bytes:
        return self.mth(0, size)

    def path(self, m: int, size: int) -> list[bytes]:
        return [self.mth(a, b) for a, b in path_ranges(m, 0, size)]

    def proof(self, m: int, size: int) -> list[bytes]:
        return [self.mth(a, b) for a, b in consistency_ranges(m, size)]


def derive(target: Range, known: dict[Range, bytes]) -> bytes | None:
    """``MTH`` of ``target`` computed only from the subtree hashes in ``known``, or ``None``."""
    if target in known:
        return known[target]
    begin, end = target
    if end - begin <= 1:
        return None
    k = split(end - begin)
    left = derive((begin, begin + k), known)
    right = derive((begin + k, end), known)
    if left is None or right is None:
        return None
    return node_hash(left, right)


def inclusion_claim_holds(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether ``proof`` proves, by the RFC definitions, leaf ``index`` of ``size`` is ``leaf``.

    The proof's i-th hash stands for ``MTH`` of the i-th range of ``PATH(index, D[size])``;
    together with the leaf they determine the root, which must equal ``root``. This accepts
    exactly the claims a correct verifier must accept (barring SHA-256 collisions).
    """
    if not 0 <= index < size:
        return False
    ranges = path_ranges(index, 0, size)
    if len(ranges) != len(proof):
        return False
    known = dict(zip(ranges, proof, strict=True))
    known[(index, index + 1)] = leaf
    return derive((0, size), known) == root


def consistency_claim_holds(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> bool:
    """Whether ``proof`` proves, by the RFC definitions, that ``root2`` extends ``root1``.

    Equal sizes need an empty proof and equal roots; size 0 to a larger size has no proof (the
    convention of transparency-dev/merkle). Otherwise the hashes stand for ``MTH`` of the ranges
    of ``PROOF(size1, D[size2])``, and when ``size1`` is a power of two (the proof omits
    ``[0, size1)``) that node is ``root1`` itself. Both roots must follow from them.
    """
    if not 0 <= size1 <= size2:
        return False
    if size1 == size2:
        return not proof and root1 == root2
    if size1 == 0:
        return False
    ranges = consistency_ranges(size1, size2)
    if len(ranges) != len(proof):
        return False
    known = dict(zip(ranges, proof, strict=True))
    # [0, size1) is a node of the new tree iff size1 is a power of two (the left spine is
    # [0, 1), [0, 2), [0, 4), ...); SUBPROOF then omits it, the verifier knows it as root1.
    if size1 & (size1 - 1) == 0:
        known[(0, size1)] = root1
    return derive((0, size1), known) == root1 and derive((0, size2), known) == root2


def merkle_leaves(count: int) -> list[bytes]:
    """Distinct deterministic leaf entries; leaf 0 is empty, an edge case worth covering."""
    return [b""] + [f"pledgewatch leaf {i}".encode() for i in range(1, count)]


MERKLE_MAX_SIZE = 70
# Every size up to 17, then the sizes around powers of two and a few odd ones.
MERKLE_PROOF_SIZES = [*range(1, 18), 31, 32, 33, 47, 63, 64, 65, 70]


def merkle_generated() -> dict[str, object]:
    leaves = merkle_leaves(MERKLE_MAX_SIZE)
    tree = NaiveTree(leaves)
    inclusion = [
        {"leaf_index": i, "tree_size": n, "proof": [h.hex() for h in tree.path(i, n)]}
        for n in MERKLE_PROOF_SIZES
        for i in range(n)
    ]
    consistency = [
        {"size1": m, "size2": n, "proof": [h.hex() for h in tree.proof(m, n)]}
        for n in MERKLE_PROOF_SIZES
        for m in MERKLE_PROOF_SIZES
        if m <= n
    ]
    return {
        "description": (
            "pledgewatch Merkle vectors (RFC 9162 / RFC 6962 hashing, SHA-256), computed by "
            "the naive recursive definitions in tests/vectors/generate.py, not by the code "
            "under test. Indexes are 0-based. Regenerate: python tests/vectors/generate.py"
        ),
        "leaf_inputs_hex": [leaf.hex() for leaf in leaves],
        "leaf_hashes": [leaf_hash(leaf).hex() for leaf in leaves],
        "root_hashes_by_size": {str(n): tree.root(n).hex() for n in range(MERKLE_MAX_SIZE + 1)},
        "inclusion_proofs": inclusion,
        "consistency_proofs": consistency,
    }


# --- events and receipts, written from docs/PROTOCOL.md sections 1-6 alone -----------------

EVENT_DOMAIN = b"pledgewatch/event/v1\n"
RECEIPT_DOMAIN = b"pledgewatch/receipt/v1\n"
KEY_ID_DOMAIN = b"pledgewatch/key-id/v1\n"
EVENT_KEYS = (
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
)


def jcs(value: object) -> bytes:
    """PROTOCOL.md section 1 for our value subset (ASCII keys, safe integers, no floats)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def protocol_vectors() -> dict[str, object]:
    import nacl.signing  # PyNaCl: the only dependency an auditor needs besides hashlib

    seed = bytes(range(32))
    key = nacl.signing.SigningKey(seed)
    public = bytes(key.verify_key)
    kid = hashlib.sha256(KEY_ID_DOMAIN + public).digest()[:16].hex()
    forms: list[dict[str, object]] = [
        {"kind": "COUNT", "bay": "A1", "sku": "steel-coil", "lot": "WR-2026-0001", "qty": 40},
        {
            "kind": "LOAD",
            "bay": "A1",
            "sku": "steel-coil",
            "lot": "WR-2026-0001",
            "qty": 4,
            "grams": 100_000,
        },
        {
            "kind": "UNLOAD",
            "bay": "A1",
            "sku": "steel-coil",
            "lot": "WR-2026-0001",
            "qty": 2,
            "release": "rel-0007",
        },
        {"kind": "WEIGHT", "bay": "A1", "grams": 1_050_123},
        {"kind": "DOOR", "bay": "dock-1", "door": "OPEN"},
        {"kind": "HEARTBEAT"},
        {"kind": "TAMPER", "reason": 'enclosure opened: 账物不符 "check"'},
    ]
    prev = "0" * 64
    events = []
    for seq, form in enumerate(forms, start=1):
        body = dict.fromkeys(EVENT_KEYS)
        body.update(
            {
                "v": 1,
                "warehouse": "wh-1",
                "gateway": "gw-1",
                "device": "dev-1",
                "seq": seq,
                "prev": prev,
                "ts_ms": 1_764_000_000_000 + seq * 1000,
            }
        )
        body.update(form)
        canonical = jcs(body)
        sig = bytes(key.sign(EVENT_DOMAIN + canonical).signature)
        wire = jcs({"event": body, "kid": kid, "sig": sig.hex(), "v": 1})
        event_id = hashlib.sha256(canonical).hexdigest()
        events.append(
            {
                "canonical": canonical.decode(),
                "event_id": event_id,
                "signature": sig.hex(),
                "wire": wire.decode(),
            }
        )
        prev = event_id
    receipt_body = {
        "anchor": kid,
        "gateway": "gw-1",
        "ts_ms": 1_764_000_100_000,
        "v": 1,
        "warehouse": "wh-1",
        "items": [
            {"id": events[0]["event_id"], "reason": None, "status": "stored"},
            {"id": events[1]["event_id"], "reason": None, "status": "duplicate"},
            {"id": events[2]["event_id"], "reason": "unknown release", "status": "quarantined"},
        ],
    }
    receipt_sig = bytes(key.sign(RECEIPT_DOMAIN + jcs(receipt_body)).signature).hex()
    return {
        "description": "Events and a receipt made from docs/PROTOCOL.md with json, hashlib and "
        "PyNaCl only. One key signs both (a test convenience; in production the gateway and "
        "the anchor hold different keys).",
        "seed_hex": seed.hex(),
        "public_key_hex": public.hex(),
        "key_id": kid,
        "events": events,
        "receipt_wire": jcs({"receipt": receipt_body, "sig": receipt_sig}).decode(),
    }


GENERATORS: dict[str, Callable[[], object]] = {
    "merkle_generated.json": merkle_generated,
    "protocol.json": protocol_vectors,
}


def render(value: object) -> str:
    """The committed text of a vector file: stable key order, one value per line."""
    return json.dumps(value, indent=1) + "\n"


def main(argv: Sequence[str]) -> int:
    """Write every file of ``GENERATORS`` (or only those named on the command line)."""
    names = list(argv) or list(GENERATORS)
    for name in names:
        if name not in GENERATORS:
            print(f"unknown vector file {name!r}; known: {', '.join(GENERATORS)}")
            return 2
        (HERE / name).write_text(render(GENERATORS[name]()), encoding="utf-8")
        print(f"wrote {HERE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
