"""Mutation probes (STYLE.md §12): every good proof in the vectors, checked corrupted.

Each mutated claim goes to the verifier, and the verdict must equal the *oracle's*: the naive
RFC 9162 definitions in tests/vectors/generate.py decide whether the claim really holds (the
proof's hashes are read as the MTH of the ranges PATH / PROOF names for the claimed index and
sizes; the root must follow from them). That is how a mutation can "legitimately still verify":
RFC 6962 hashes do not commit to the tree size, so a proof for leaf 0 of a 3-leaf tree is, hash
for hash, also a proof for leaf 0 of a 4-leaf tree whose right half hashes to leaf 2's hash.
Only the oracle excuses a mutation; nothing is skipped by hand.

For the mutations that can never be valid, the test also asserts the oracle agrees, so the
oracle cannot quietly excuse them:

* index ±1: the leaves in the vectors are distinct, so the first hashing step puts the leaf and
  its neighbour in the other order (or the index is out of range);
* size ×2 or ÷2: the leaf sits one level deeper or shallower, so the proof length differs;
* wrong leaf, wrong root (the root of another size), an extra or a missing hash, two proof
  hashes swapped, any bit of any hash flipped: a SHA-256 input changes, so the root changes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pledgewatch import merkle
from pledgewatch.errors import ProofError

VECTORS = Path(__file__).parent / "vectors"


def _load_reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("merkle_reference", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ref = _load_reference()
EXTRA = merkle.leaf_hash(b"not in any tree")


@dataclass(frozen=True)
class Inclusion:
    leaf: bytes
    index: int
    size: int
    proof: tuple[bytes, ...]
    root: bytes

    def accepted(self) -> bool:
        try:
            merkle.verify_inclusion(self.leaf, self.index, self.size, list(self.proof), self.root)
        except ProofError:
            return False
        return True

    def holds(self) -> bool:
        return bool(
            ref.inclusion_claim_holds(self.leaf, self.index, self.size, self.proof, self.root)
        )


@dataclass(frozen=True)
class Consistency:
    size1: int
    size2: int
    proof: tuple[bytes, ...]
    root1: bytes
    root2: bytes

    def accepted(self) -> bool:
        try:
            merkle.verify_consistency(
                self.size1, self.size2, list(self.proof), self.root1, self.root2
            )
        except ProofError:
            return False
        return True

    def holds(self) -> bool:
        return bool(
            ref.consistency_claim_holds(self.size1, self.size2, self.proof, self.root1, self.root2)
        )


@dataclass(frozen=True)
class VectorSet:
    name: str
    leaves: list[bytes]
    inclusion: list[dict[str, Any]]
    consistency: list[dict[str, Any]]
    every_bit: int  # flip all 256 bits of each hash in proofs up to this tree size


def _vector_sets() -> list[VectorSet]:
    rfc = json.loads((VECTORS / "rfc6962.json").read_text())
    gen = json.loads((VECTORS / "merkle_generated.json").read_text())
    return [
        VectorSet(
            "rfc6962",
            [bytes.fromhex(x) for x in rfc["leaf_inputs_hex"]],
            rfc["inclusion_proofs"],
            rfc["consistency_proofs"],
            every_bit=2**64,
        ),
        VectorSet(
            "generated",
            [bytes.fromhex(x) for x in gen["leaf_inputs_hex"]],
            gen["inclusion_proofs"],
            gen["consistency_proofs"],
            every_bit=8,
        ),
    ]


SETS = _vector_sets()


def test_vector_leaves_are_distinct() -> None:
    # The index ±1 argument above needs this.
    for vectors in SETS:
        assert len({merkle.leaf_hash(d) for d in vectors.leaves}) == len(vectors.leaves)


def flips(value: bytes, every_bit: bool) -> Iterator[bytes]:
    """``value`` with one bit flipped: every bit, or one per byte (bit ``i % 8`` of byte ``i``)."""
    for bit in range(len(value) * 8):
        if every_bit or bit % 8 == (bit // 8) % 8:
            flipped = bytearray(value)
            flipped[bit // 8] ^= 0x80 >> (bit % 8)
            yield bytes(flipped)


def proof_edits(
    proof: tuple[bytes, ...], every_bit: bool
) -> Iterator[tuple[str, tuple[bytes, ...]]]:
    """Proofs that differ from ``proof`` by one edit, all of them invalid."""
    yield "extra hash at the end", (*proof, EXTRA)
    yield "extra hash at the start", (EXTRA, *proof)
    for i, value in enumerate(proof):
        yield f"hash {i} missing", proof[:i] + proof[i + 1 :]
        yield f"hash {i} repeated", proof[: i + 1] + proof[i:]
        if i + 1 < len(proof):
            yield (
                f"hashes {i} and {i + 1} swapped",
                (*proof[:i], proof[i + 1], value, *proof[i + 2 :]),
            )
        for flipped in flips(value, every_bit):
            yield f"hash {i} bit flipped", (*proof[:i], flipped, *proof[i + 1 :])


def inclusion_mutations(
    good: Inclusion, tree: merkle.MerkleTree, leaves: list[bytes], every_bit: bool
) -> Iterator[tuple[str, bool, Inclusion]]:
    """``(name, never_valid, claim)`` for each corruption of a good inclusion claim."""
    yield "index+1", True, replace(good, index=good.index + 1)
    yield "index-1", True, replace(good, index=good.index - 1)
    yield "size*2", True, replace(good, size=good.size * 2)
    yield "size//2", True, replace(good, size=good.size // 2)
    # A size ±1 can be genuinely valid (see the module docstring); the oracle decides.
    yield "size+1", False, replace(good, size=good.size + 1)
    yield "size-1", False, replace(good, size=good.size - 1)
    other = leaves[(good.index + 1) % len(leaves)]
    data = leaves[good.index]
    for name, leaf in [
        ("another leaf's hash", merkle.leaf_hash(other)),
        ("hash of other data", merkle.leaf_hash(data + b"!")),
        ("unprefixed SHA-256 of the data", hashlib.sha256(data).digest()),
    ]:
        if leaf != good.leaf:
            yield name, True, replace(good, leaf=leaf)
    for size in (good.size - 1, good.size + 1):
        if 0 <= size <= tree.size:
            yield f"root of size {size}", True, replace(good, root=tree.root(size))
    for flipped in flips(good.root, every_bit):
        yield "root bit flipped", True, replace(good, root=flipped)
    for flipped in flips(good.leaf, every_bit):
        yield "leaf bit flipped", True, replace(good, leaf=flipped)
    for name, proof in proof_edits(good.proof, every_bit):
        yield name, True, replace(good, proof=proof)


def consistency_mutations(
    good: Consistency, tree: merkle.MerkleTree, every_bit: bool
) -> Iterator[tuple[str, bool, Consistency]]:
    """``(name, never_valid, claim)`` for each corruption of a good consistency claim."""
    # Size changes can be genuinely valid: e.g. the proof from 2 to 4 (the hash of leaves 2..3)
    # is also the proof from 2 to 3 of a tree whose leaf 2 has that hash. The oracle decides.
    for name, size1, size2 in [
        ("size1+1", good.size1 + 1, good.size2),
        ("size1-1", good.size1 - 1, good.size2),
        ("size2+1", good.size1, good.size2 + 1),
        ("size2-1", good.size1, good.size2 - 1),
        ("size1*2", good.size1 * 2, good.size2),
        ("size1//2", good.size1 // 2, good.size2),
        ("size2*2", good.size1, good.size2 * 2),
        ("size2//2", good.size1, good.size2 // 2),
        ("size1=0", 0, good.size2),
    ]:
        if size1 >= 0 and size2 >= 0:
            yield name, False, replace(good, size1=size1, size2=size2)
    # Swapped roots are valid exactly when they are equal (size1 == size2).
    yield "roots swapped", False, replace(good, root1=good.root2, root2=good.root1)
    for size in (good.size1 - 1, good.size1 + 1):
        if 0 <= size <= tree.size and size != good.size1:
            yield f"root1 of size {size}", True, replace(good, root1=tree.root(size))
    for size in (good.size2 - 1, good.size2 + 1):
        if 0 <= size <= tree.size:
            yield f"root2 of size {size}", True, replace(good, root2=tree.root(size))
    for flipped in flips(good.root1, every_bit):
        yield "root1 bit flipped", True, replace(good, root1=flipped)
    for flipped in flips(good.root2, every_bit):
        yield "root2 bit flipped", True, replace(good, root2=flipped)
    for name, proof in proof_edits(good.proof, every_bit):
        yield name, True, replace(good, proof=proof)


@pytest.mark.parametrize("vectors", SETS, ids=lambda v: v.name)
def test_corrupted_inclusion_proofs_are_rejected(vectors: VectorSet) -> None:
    tree = merkle.MerkleTree.from_leaves(vectors.leaves)
    probes = legit = 0
    for vector in vectors.inclusion:
        index, size = vector["leaf_index"], vector["tree_size"]
        good = Inclusion(
            tree.node(0, index),
            index,
            size,
            tuple(bytes.fromhex(h) for h in vector["proof"]),
            tree.root(size),
        )
        assert good.accepted() and good.holds()
        every_bit = size <= vectors.every_bit
        for name, never_valid, bad in inclusion_mutations(good, tree, vectors.leaves, every_bit):
            probes += 1
            # Bit flips are far too many to re-derive one by one; a flipped hash can never be
            # valid (module docstring), so only the verifier runs on them.
            holds = False if "flipped" in name and not every_bit else bad.holds()
            assert not (never_valid and holds), f"oracle excused {name}: {bad}"
            assert bad.accepted() == holds, f"{name}: {bad}"
            legit += holds
    assert probes > 1000
    # Some size ±1 mutations really are valid; if none were, the oracle would be suspect.
    assert legit > 0 or vectors.name == "rfc6962"


@pytest.mark.parametrize("vectors", SETS, ids=lambda v: v.name)
def test_corrupted_consistency_proofs_are_rejected(vectors: VectorSet) -> None:
    tree = merkle.MerkleTree.from_leaves(vectors.leaves)
    probes = 0
    for vector in vectors.consistency:
        size1, size2 = vector["size1"], vector["size2"]
        good = Consistency(
            size1,
            size2,
            tuple(bytes.fromhex(h) for h in vector["proof"]),
            tree.root(size1),
            tree.root(size2),
        )
        assert good.accepted() and good.holds()
        every_bit = size2 <= vectors.every_bit
        for name, never_valid, bad in consistency_mutations(good, tree, every_bit):
            probes += 1
            holds = False if "flipped" in name and not every_bit else bad.holds()
            assert not (never_valid and holds), f"oracle excused {name}: {bad}"
            assert bad.accepted() == holds, f"{name}: {bad}"
    assert probes > 1000


def test_a_size_change_that_is_genuinely_valid() -> None:
    # PATH(0, D[3]) = [MTH(D[1:2]), MTH(D[2:3])] and PATH(0, D[4]) = [MTH(D[1:2]), MTH(D[2:4])]
    # hash in the same order, so the 3-leaf proof also proves leaf 0 of a 4-leaf tree whose
    # right half has hash MTH(D[2:3]). The verifier cannot tell, and must not pretend to.
    leaves = [b"a", b"b", b"c"]
    proof = merkle.inclusion_proof(leaves, 0)
    claim = Inclusion(merkle.leaf_hash(b"a"), 0, 4, tuple(proof), merkle.root(leaves))
    assert claim.holds() and claim.accepted()
    # And the consistency example of consistency_mutations.
    leaves = [b"a", b"b", b"c", b"d"]
    proof = merkle.consistency_proof(leaves, 2, 4)
    cons = Consistency(2, 3, tuple(proof), merkle.root(leaves[:2]), merkle.root(leaves))
    assert cons.holds() and cons.accepted()


def test_oracle_rejects_what_the_rfc_rejects() -> None:
    # The oracle is itself checked: it accepts the good claims above and, here, refuses
    # claims outside the RFC's domain.
    h = merkle.leaf_hash(b"x")
    assert not ref.inclusion_claim_holds(h, 1, 1, (), h)
    assert ref.inclusion_claim_holds(h, 0, 1, (), h)
    assert not ref.consistency_claim_holds(0, 1, (), merkle.EMPTY_ROOT, h)
    assert not ref.consistency_claim_holds(2, 1, (), h, h)
    assert ref.consistency_claim_holds(1, 1, (), h, h)
    assert not ref.consistency_claim_holds(1, 1, (h,), h, h)
