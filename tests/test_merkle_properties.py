"""Hypothesis properties: any input either verifies correctly or raises ProofError.

"Correctly" is decided by the oracle of tests/vectors/generate.py (the naive RFC 9162
definitions): the verifier must accept exactly the claims that hold — never another exception,
never a false accept, never a false reject.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pledgewatch import merkle
from pledgewatch.errors import ProofError
from pledgewatch.merkle import CompactRange, MerkleTree
from pledgewatch.merkle.verify import root_from_consistency_proof, root_from_inclusion_proof

VECTORS = Path(__file__).parent / "vectors"


def _load_reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("merkle_reference", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ref = _load_reference()
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A fixed pool of distinct leaves and the trees over its prefixes, so examples stay cheap.
POOL = [b"pool %d" % i for i in range(96)]
TREE = MerkleTree.from_leaves(POOL)
NAIVE = ref.NaiveTree(POOL)

hashes = st.binary(min_size=32, max_size=32)
junk: st.SearchStrategy[Any] = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=3),
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.lists(st.integers(0, 255), max_size=3),
)
hash_or_junk = st.one_of(hashes, hashes, junk)
count_or_junk = st.one_of(st.integers(-3, 130), st.integers(), junk)
proof_or_junk = st.one_of(
    st.lists(hash_or_junk, max_size=9), st.tuples(hashes, hashes), st.just(range(3)), junk
)


def verdict(call: Any, *args: Any) -> bool:
    """True if ``call(*args)`` returned, False if it raised ProofError; anything else escapes."""
    try:
        call(*args)
    except ProofError:
        return False
    return True


def well_typed(counts: list[Any], digests: list[Any], proof: Any) -> bool:
    ints = all(type(c) is int and 0 <= c < 2**64 for c in counts)
    hashes_ok = all(isinstance(h, bytes) and len(h) == 32 for h in digests)
    proof_ok = (
        isinstance(proof, Sequence)
        and not isinstance(proof, str | bytes)
        and all(isinstance(h, bytes) and len(h) == 32 for h in proof)
    )
    return ints and hashes_ok and proof_ok


@FAST
@given(
    leaf=hash_or_junk,
    index=count_or_junk,
    size=count_or_junk,
    proof=proof_or_junk,
    root=hash_or_junk,
)
def test_verify_inclusion_on_arbitrary_input(
    leaf: Any, index: Any, size: Any, proof: Any, root: Any
) -> None:
    accepted = verdict(merkle.verify_inclusion, leaf, index, size, proof, root)
    if accepted or well_typed([index, size], [leaf, root], proof):
        assert accepted == ref.inclusion_claim_holds(leaf, index, size, tuple(proof), root)


@FAST
@given(
    size1=count_or_junk,
    size2=count_or_junk,
    proof=proof_or_junk,
    root1=hash_or_junk,
    root2=hash_or_junk,
)
def test_verify_consistency_on_arbitrary_input(
    size1: Any, size2: Any, proof: Any, root1: Any, root2: Any
) -> None:
    accepted = verdict(merkle.verify_consistency, size1, size2, proof, root1, root2)
    if accepted or well_typed([size1, size2], [root1, root2], proof):
        assert accepted == ref.consistency_claim_holds(size1, size2, tuple(proof), root1, root2)


@st.composite
def inclusion_claims(draw: st.DrawFn) -> tuple[bytes, int, int, list[bytes], bytes]:
    """A good inclusion claim over POOL, then (usually) one field replaced at random."""
    size = draw(st.integers(1, len(POOL)))
    index = draw(st.integers(0, size - 1))
    leaf, proof, root = TREE.node(0, index), TREE.inclusion_proof(index, size), TREE.root(size)
    field = draw(st.sampled_from(["none", "leaf", "index", "size", "proof", "root"]))
    if field == "leaf":
        leaf = draw(st.sampled_from([TREE.node(0, i) for i in range(len(POOL))]))
    elif field == "index":
        index = draw(st.integers(-2, size + 2))
    elif field == "size":
        size = draw(st.integers(0, 2 * len(POOL)))
    elif field == "proof":
        proof = draw(st.lists(st.sampled_from([*proof, *TREE.inclusion_proof(0)]), max_size=9))
    elif field == "root":
        root = TREE.root(draw(st.integers(0, len(POOL))))
    return leaf, index, size, proof, root


@FAST
@given(inclusion_claims())
def test_verify_inclusion_on_recombined_good_parts(
    claim: tuple[bytes, int, int, list[bytes], bytes],
) -> None:
    leaf, index, size, proof, root = claim
    accepted = verdict(merkle.verify_inclusion, leaf, index, size, proof, root)
    assert accepted == ref.inclusion_claim_holds(leaf, index, size, tuple(proof), root)


@st.composite
def consistency_claims(draw: st.DrawFn) -> tuple[int, int, list[bytes], bytes, bytes]:
    """A good consistency claim over POOL, then (usually) one field replaced at random."""
    size2 = draw(st.integers(1, len(POOL)))
    size1 = draw(st.integers(1, size2))
    proof = TREE.consistency_proof(size1, size2)
    root1, root2 = TREE.root(size1), TREE.root(size2)
    field = draw(st.sampled_from(["none", "size1", "size2", "proof", "root1", "root2"]))
    if field == "size1":
        size1 = draw(st.integers(0, size2 + 1))
    elif field == "size2":
        size2 = draw(st.integers(max(size1 - 1, 0), 2 * len(POOL)))
    elif field == "proof":
        pool = [*proof, *TREE.consistency_proof(1)]
        proof = draw(st.lists(st.sampled_from(pool), max_size=9)) if pool else []
    elif field == "root1":
        root1 = TREE.root(draw(st.integers(0, len(POOL))))
    elif field == "root2":
        root2 = TREE.root(draw(st.integers(0, len(POOL))))
    return size1, size2, proof, root1, root2


@FAST
@given(consistency_claims())
def test_verify_consistency_on_recombined_good_parts(
    claim: tuple[int, int, list[bytes], bytes, bytes],
) -> None:
    size1, size2, proof, root1, root2 = claim
    accepted = verdict(merkle.verify_consistency, size1, size2, proof, root1, root2)
    assert accepted == ref.consistency_claim_holds(size1, size2, tuple(proof), root1, root2)


@FAST
@given(
    leaves=st.lists(st.binary(max_size=12), min_size=1, max_size=140, unique=True),
    data=st.data(),
)
def test_built_proofs_verify_and_match_the_naive_definition(
    leaves: list[bytes], data: st.DataObject
) -> None:
    tree = MerkleTree.from_leaves(leaves)
    naive = ref.NaiveTree(leaves)
    size2 = data.draw(st.integers(1, len(leaves)), label="size2")
    size1 = data.draw(st.integers(1, size2), label="size1")
    index = data.draw(st.integers(0, size2 - 1), label="index")
    leaf = merkle.leaf_hash(leaves[index])
    proof = tree.inclusion_proof(index, size2)
    assert proof == naive.path(index, size2) == merkle.inclusion_proof(leaves, index, size2)
    assert root_from_inclusion_proof(leaf, index, size2, proof) == naive.root(size2)
    consistency = tree.consistency_proof(size1, size2)
    assert consistency == (naive.proof(size1, size2) if size1 < size2 else [])
    assert root_from_consistency_proof(size1, size2, consistency, naive.root(size1)) == (
        naive.root(size2)
    )


@FAST
@given(
    chunks=st.lists(st.integers(0, 40), min_size=1, max_size=8),
    restore=st.sampled_from(["keep", "hashes", "bytes"]),
)
def test_compact_range_resumed_anywhere_tracks_the_tree(chunks: list[int], restore: str) -> None:
    compact = CompactRange()
    size = 0
    for chunk in chunks:
        for data in POOL[size : size + chunk]:
            compact.append_data(data)
        size = min(size + chunk, len(POOL))
        assert compact.size == size
        assert compact.root() == NAIVE.root(size)
        if restore == "hashes":
            compact = CompactRange.from_hashes(compact.size, compact.hashes)
        elif restore == "bytes":
            compact = CompactRange.from_bytes(compact.to_bytes())


@FAST
@given(blob=st.binary(max_size=200))
def test_compact_range_from_arbitrary_bytes(blob: bytes) -> None:
    try:
        compact = CompactRange.from_bytes(blob)
    except ProofError:
        return
    assert compact.to_bytes() == blob
