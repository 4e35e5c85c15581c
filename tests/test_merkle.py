"""The Merkle package against the RFC 6962 vectors, our generated vectors and the naive RFC.

The reference (``tests/vectors/generate.py``) computes MTH / PATH / PROOF by the recursive
definitions of RFC 9162 §2.1 with hashlib alone; every structure here (``MerkleTree``,
``CompactRange``, the node-id builders plus ``rehash``, the one-call functions) must agree with
it and with the published vectors.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pledgewatch import merkle
from pledgewatch.errors import PledgewatchError, ProofError
from pledgewatch.merkle import CompactRange, MerkleTree
from pledgewatch.merkle.nodes import NodeID, decompose, range_nodes, range_size
from pledgewatch.merkle.proof import (
    ProofNodes,
    consistency_nodes,
    consistency_proof_from_leaf_hashes,
    inclusion_nodes,
    inclusion_proof_from_leaf_hashes,
    rehash,
)
from pledgewatch.merkle.rfc6962 import HASH_SIZE, root_from_leaf_hashes
from pledgewatch.merkle.verify import (
    consistency_proof_length,
    inclusion_proof_length,
    root_from_consistency_proof,
    root_from_inclusion_proof,
)

VECTORS = Path(__file__).parent / "vectors"
PACKAGE = Path(merkle.__file__).parent


def _load_reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("merkle_reference", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ref = _load_reference()
RFC: dict[str, Any] = json.loads((VECTORS / "rfc6962.json").read_text())
GEN: dict[str, Any] = json.loads((VECTORS / "merkle_generated.json").read_text())
RFC_LEAVES = [bytes.fromhex(x) for x in RFC["leaf_inputs_hex"]]
GEN_LEAVES = [bytes.fromhex(x) for x in GEN["leaf_inputs_hex"]]


def unhex(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


def compact_of(leaves: list[bytes]) -> CompactRange:
    compact = CompactRange()
    for data in leaves:
        compact.append_data(data)
    return compact


# --- the generator -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ref.GENERATORS))
def test_committed_vectors_equal_generator_output(name: str) -> None:
    committed = (VECTORS / name).read_text(encoding="utf-8")
    assert committed == ref.render(ref.GENERATORS[name]()), (
        f"tests/vectors/{name} is stale: run python tests/vectors/generate.py"
    )


def test_generator_is_independent_of_the_code_under_test() -> None:
    tree = ast.parse((VECTORS / "generate.py").read_text(encoding="utf-8"))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(name.startswith("pledgewatch") for name in imported)


# --- RFC 6962 vectors (transparency-dev) ---------------------------------------------------


def test_rfc_empty_root() -> None:
    empty = bytes.fromhex(RFC["empty_root"])
    assert empty == merkle.EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert merkle.root([]) == empty
    assert MerkleTree().root() == empty
    assert CompactRange().root() == empty
    assert root_from_leaf_hashes([]) == empty


@pytest.mark.parametrize("size", sorted(int(s) for s in RFC["root_hashes_by_size"]))
def test_rfc_root_for_every_size(size: int) -> None:
    want = bytes.fromhex(RFC["root_hashes_by_size"][str(size)])
    leaves = RFC_LEAVES[:size]
    assert merkle.root(leaves) == want
    assert MerkleTree.from_leaves(RFC_LEAVES).root(size) == want
    assert MerkleTree.from_leaves(leaves).root() == want
    assert compact_of(leaves).root() == want
    assert ref.NaiveTree(RFC_LEAVES).root(size) == want


def test_rfc_node_hashes_by_level() -> None:
    levels = [unhex(level) for level in RFC["node_hashes_by_level"]]
    tree = MerkleTree.from_leaves(RFC_LEAVES)
    assert levels[0] == [merkle.leaf_hash(data) for data in RFC_LEAVES]
    for level, hashes in enumerate(levels):
        for index, want in enumerate(hashes):
            assert tree.node(level, index) == want
            if level:
                below = levels[level - 1]
                assert merkle.node_hash(below[2 * index], below[2 * index + 1]) == want
    with pytest.raises(ProofError):
        tree.node(len(levels), 0)
    with pytest.raises(ProofError):
        tree.node(0, len(levels[0]))


@pytest.mark.parametrize("vector", RFC["inclusion_proofs"], ids=lambda v: str(v["tree_size"]))
def test_rfc_inclusion_proofs(vector: dict[str, Any]) -> None:
    check_inclusion_vector(RFC_LEAVES, vector)


@pytest.mark.parametrize("vector", RFC["consistency_proofs"], ids=lambda v: str(v["size2"]))
def test_rfc_consistency_proofs(vector: dict[str, Any]) -> None:
    check_consistency_vector(RFC_LEAVES, vector)


def check_inclusion_vector(leaves: list[bytes], vector: dict[str, Any]) -> None:
    index, size, want = vector["leaf_index"], vector["tree_size"], unhex(vector["proof"])
    hashes = [merkle.leaf_hash(data) for data in leaves]
    tree = MerkleTree.from_leaves(leaves)
    assert merkle.inclusion_proof(leaves, index, size) == want
    assert merkle.inclusion_proof(leaves[:size], index) == want
    assert tree.inclusion_proof(index, size) == want
    assert MerkleTree.from_leaves(leaves[:size]).inclusion_proof(index) == want
    assert inclusion_proof_from_leaf_hashes(hashes, index, size) == want
    root = merkle.root(leaves[:size])
    merkle.verify_inclusion(hashes[index], index, size, want, root)
    assert root_from_inclusion_proof(hashes[index], index, size, want) == root
    assert len(want) == inclusion_proof_length(index, size)


def check_consistency_vector(leaves: list[bytes], vector: dict[str, Any]) -> None:
    size1, size2, want = vector["size1"], vector["size2"], unhex(vector["proof"])
    hashes = [merkle.leaf_hash(data) for data in leaves]
    tree = MerkleTree.from_leaves(leaves)
    assert merkle.consistency_proof(leaves, size1, size2) == want
    assert merkle.consistency_proof(leaves[:size2], size1) == want
    assert tree.consistency_proof(size1, size2) == want
    assert consistency_proof_from_leaf_hashes(hashes, size1, size2) == want
    root1, root2 = merkle.root(leaves[:size1]), merkle.root(leaves[:size2])
    merkle.verify_consistency(size1, size2, want, root1, root2)
    assert root_from_consistency_proof(size1, size2, want, root1) == root2
    if size1 < size2:
        assert len(want) == consistency_proof_length(size1, size2)


# --- our generated vectors -------------------------------------------------------------------


def test_generated_roots_and_leaf_hashes() -> None:
    tree = MerkleTree.from_leaves(GEN_LEAVES)
    compact = CompactRange()
    assert [merkle.leaf_hash(d) for d in GEN_LEAVES] == unhex(GEN["leaf_hashes"])
    for size in range(len(GEN_LEAVES) + 1):
        want = bytes.fromhex(GEN["root_hashes_by_size"][str(size)])
        assert tree.root(size) == want
        assert merkle.root(GEN_LEAVES[:size]) == want
        assert compact.root() == want
        if size < len(GEN_LEAVES):
            compact.append_data(GEN_LEAVES[size])


def test_generated_inclusion_proofs() -> None:
    for vector in GEN["inclusion_proofs"]:
        check_inclusion_vector(GEN_LEAVES[: vector["tree_size"]], vector)


def test_generated_consistency_proofs() -> None:
    for vector in GEN["consistency_proofs"]:
        check_consistency_vector(GEN_LEAVES[: vector["size2"]], vector)


# --- cross-checks against the naive RFC definition -----------------------------------------

CROSS_MAX = 70


@pytest.fixture(scope="module")
def cross() -> tuple[list[bytes], MerkleTree, Any]:
    leaves = [f"cross {i}".encode() for i in range(CROSS_MAX)]
    return leaves, MerkleTree.from_leaves(leaves), ref.NaiveTree(leaves)


def test_roots_agree_for_every_size_up_to_70(cross: tuple[list[bytes], MerkleTree, Any]) -> None:
    leaves, tree, naive = cross
    compact = CompactRange()
    incremental = MerkleTree()
    for size in range(CROSS_MAX + 1):
        want = naive.root(size)
        assert tree.root(size) == want
        assert compact.root() == want
        assert incremental.root() == want
        assert root_from_leaf_hashes([merkle.leaf_hash(d) for d in leaves[:size]]) == want
        assert len(compact.hashes) == size.bit_count()
        if size < CROSS_MAX:
            compact.append_data(leaves[size])
            assert incremental.append(leaves[size]) == size


def test_inclusion_proofs_agree_for_every_size_up_to_70(
    cross: tuple[list[bytes], MerkleTree, Any],
) -> None:
    leaves, tree, naive = cross
    hashes = [merkle.leaf_hash(d) for d in leaves]
    for size in range(1, CROSS_MAX + 1):
        root = naive.root(size)
        for index in range(size):
            want = naive.path(index, size)
            assert tree.inclusion_proof(index, size) == want
            assert inclusion_proof_from_leaf_hashes(hashes, index, size) == want
            merkle.verify_inclusion(hashes[index], index, size, want, root)


def test_consistency_proofs_agree_for_every_size_up_to_70(
    cross: tuple[list[bytes], MerkleTree, Any],
) -> None:
    _, tree, naive = cross
    for size2 in range(1, CROSS_MAX + 1):
        for size1 in range(1, size2 + 1):
            want = naive.proof(size1, size2) if size1 < size2 else []
            assert tree.consistency_proof(size1, size2) == want
            merkle.verify_consistency(size1, size2, want, naive.root(size1), naive.root(size2))


def test_random_sizes_agree_with_the_naive_definition() -> None:
    rng = random.Random(6962)
    sizes = [127, 128, 129, 255, 256, 257, 1023, 1024, 1025, *rng.sample(range(71, 3000), 4)]
    leaves = [rng.randbytes(rng.randrange(0, 48)) + i.to_bytes(4, "big") for i in range(3000)]
    tree = MerkleTree()
    chunks = iter(rng.randrange(1, 400) for _ in range(10_000))
    while tree.size < len(leaves):
        tree.extend(leaves[tree.size : tree.size + next(chunks)])
    naive = ref.NaiveTree(leaves)
    hashes = [merkle.leaf_hash(d) for d in leaves]
    for size in sizes:
        root = naive.root(size)
        assert tree.root(size) == root
        assert compact_of(leaves[:size]).root() == root
        for index in [0, size - 1, *rng.sample(range(size), 6)]:
            proof = tree.inclusion_proof(index, size)
            assert proof == naive.path(index, size)
            merkle.verify_inclusion(hashes[index], index, size, proof, root)
        for size1 in [1, size - 1, *rng.sample(range(1, size), 4)]:
            proof = tree.consistency_proof(size1, size)
            assert proof == naive.proof(size1, size)
            merkle.verify_consistency(size1, size, proof, naive.root(size1), root)


def test_bulk_and_incremental_trees_store_the_same_nodes() -> None:
    leaves = [f"n{i}".encode() for i in range(300)]
    bulk = MerkleTree.from_leaves(leaves)
    one_by_one = MerkleTree()
    for data in leaves:
        one_by_one.append(data)
    by_hash = MerkleTree.from_leaf_hashes([merkle.leaf_hash(d) for d in leaves])
    for level in range(9):
        for index in range(300 >> level):
            assert one_by_one.node(level, index) == bulk.node(level, index)
            assert by_hash.node(level, index) == bulk.node(level, index)


# --- proof building: node ids (cases from transparency-dev/merkle proof/proof_test.go) --------

# (index, size) -> (ids as (level, index), begin, end)
INCLUSION_NODES = {
    (0, 1): ([], 0, 0),
    (0, 2): ([(0, 1)], 0, 0),
    (1, 2): ([(0, 0)], 0, 0),
    (1, 3): ([(0, 0), (0, 2)], 0, 0),
    (0, 7): ([(0, 1), (1, 1), (0, 6), (1, 2)], 2, 4),
    (3, 7): ([(0, 2), (1, 0), (0, 6), (1, 2)], 2, 4),
    (4, 7): ([(0, 5), (0, 6), (2, 0)], 0, 0),
    (6, 7): ([(1, 2), (2, 0)], 0, 0),
    (2, 4): ([(0, 3), (1, 0)], 0, 0),
    (3, 5): ([(0, 2), (1, 0), (0, 4)], 0, 0),
    (4, 6): ([(0, 5), (2, 0)], 0, 0),
    (10, 15): ([(0, 11), (1, 4), (0, 14), (1, 6), (3, 0)], 2, 4),
    (24, 31): ([(0, 25), (1, 13), (0, 30), (1, 14), (3, 2), (4, 0)], 2, 4),
    (81, 95): ([(0, 80), (1, 41), (2, 21), (0, 94), (1, 46), (2, 22), (4, 4), (6, 0)], 3, 6),
}
# (size1, size2) -> (ids, begin, end)
CONSISTENCY_NODES = {
    (1, 2): ([(0, 1)], 0, 0),
    (1, 4): ([(0, 1), (1, 1)], 0, 0),
    (1, 6): ([(0, 1), (1, 1), (1, 2)], 0, 0),
    (2, 3): ([(0, 2)], 0, 0),
    (2, 8): ([(1, 1), (2, 1)], 0, 0),
    (3, 7): ([(0, 2), (0, 3), (1, 0), (0, 6), (1, 2)], 3, 5),
    (4, 7): ([(0, 6), (1, 2)], 0, 2),
    (5, 7): ([(0, 4), (0, 5), (0, 6), (2, 0)], 0, 0),
    (6, 7): ([(1, 2), (0, 6), (2, 0)], 0, 0),
    (7, 8): ([(0, 6), (0, 7), (1, 2), (2, 0)], 0, 0),
    (5, 5): ([], 0, 0),
    (2, 4): ([(1, 1)], 0, 0),
    (3, 5): ([(0, 2), (0, 3), (1, 0), (0, 4)], 0, 0),
    (1, 7): ([(0, 1), (1, 1), (0, 6), (1, 2)], 2, 4),
    (10, 15): ([(1, 4), (1, 5), (0, 14), (1, 6), (3, 0)], 2, 4),
    (24, 31): ([(3, 2), (0, 30), (1, 14), (2, 6), (4, 0)], 1, 4),
    (81, 95): (
        [(0, 80), (0, 81), (1, 41), (2, 21), (0, 94), (1, 46), (2, 22), (4, 4), (6, 0)],
        4,
        7,
    ),
}


def as_nodes(ids: list[tuple[int, int]], begin: int, end: int) -> tuple[Any, ...]:
    return tuple(NodeID(level, index) for level, index in ids), begin, end


@pytest.mark.parametrize(("index", "size"), sorted(INCLUSION_NODES))
def test_inclusion_nodes(index: int, size: int) -> None:
    got = inclusion_nodes(index, size)
    assert (got.ids, got.begin, got.end) == as_nodes(*INCLUSION_NODES[(index, size)])
    assert (got.ephem is None) == (got.begin == got.end)


@pytest.mark.parametrize(("size1", "size2"), sorted(CONSISTENCY_NODES))
def test_consistency_nodes(size1: int, size2: int) -> None:
    got = consistency_nodes(size1, size2)
    assert (got.ids, got.begin, got.end) == as_nodes(*CONSISTENCY_NODES[(size1, size2)])


def test_ephemeral_node_is_the_fork_sibling() -> None:
    # In the tree of 7 the right half l = (2, 1) covers leaves 4..6 and is not perfect; the
    # proof for leaf 0 rebuilds it from j = (0, 6) and i = (1, 2).
    assert inclusion_nodes(0, 7).ephem == NodeID(2, 1)
    assert inclusion_nodes(4, 7).ephem is None


@pytest.mark.parametrize(
    ("index", "size"), [(0, 0), (1, 0), (2, 1), (3, 0), (8, 7), (-1, 5), (True, 5), (0, 2**64)]
)
def test_inclusion_nodes_rejects_impossible_requests(index: Any, size: Any) -> None:
    with pytest.raises(ProofError):
        inclusion_nodes(index, size)


@pytest.mark.parametrize(("size1", "size2"), [(5, 0), (9, 8), (0, 3), (-1, 3), (1, "2")])
def test_consistency_nodes_rejects_impossible_requests(size1: Any, size2: Any) -> None:
    with pytest.raises(ProofError):
        consistency_nodes(size1, size2)


def test_consistency_nodes_between_equal_sizes_is_empty() -> None:
    assert consistency_nodes(0, 0) == ProofNodes(())
    assert consistency_nodes(9, 9) == ProofNodes(())


def test_rehash_folds_the_ephemeral_block() -> None:
    h = [merkle.leaf_hash(f"Hash {i}".encode()) for i in range(1, 6)]
    assert rehash(inclusion_nodes(3, 8), h[:3]) == h[:3]
    assert rehash(inclusion_nodes(9, 15), h[:5]) == [h[0], h[1], merkle.node_hash(h[3], h[2]), h[4]]
    assert rehash(inclusion_nodes(2, 7), h[:4]) == [h[0], h[1], merkle.node_hash(h[3], h[2])]
    with pytest.raises(ProofError, match="got 2 hashes, want 3"):
        rehash(inclusion_nodes(3, 8), h[:2])
    with pytest.raises(ProofError, match="got 31 bytes, want 32"):
        rehash(inclusion_nodes(3, 8), [h[0], h[1], h[2][:31]])


def test_range_nodes_cover_every_range_exactly() -> None:
    for begin in range(40):
        for end in range(begin, 80):
            ids = range_nodes(begin, end)
            assert len(ids) == range_size(begin, end)
            position = begin
            for node in ids:
                first, last = node.coverage()
                assert first == position
                position = last
            assert position == end
            left, right = decompose(begin, end)
            assert left.bit_count() + right.bit_count() == len(ids)


# --- one-call API, CompactRange and MerkleTree specifics ----------------------------------


def test_public_names() -> None:
    for name in [
        "leaf_hash",
        "root",
        "inclusion_proof",
        "verify_inclusion",
        "consistency_proof",
        "verify_consistency",
        "node_hash",
        "EMPTY_ROOT",
        "MerkleTree",
        "CompactRange",
    ]:
        assert name in merkle.__all__ and hasattr(merkle, name)


def test_exact_bytes_hashed() -> None:
    assert merkle.leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    left, right = b"L" * 32, b"R" * 32
    assert merkle.node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert len(merkle.EMPTY_ROOT) == HASH_SIZE


def test_a_node_cannot_pose_as_a_leaf() -> None:
    # Second-preimage attack on unprefixed trees: the 64 bytes left||right as a leaf entry
    # must not hash to the node over left and right.
    a, b = merkle.leaf_hash(b"a"), merkle.leaf_hash(b"b")
    assert merkle.root([a + b]) != merkle.root([b"a", b"b"])


def test_one_call_api_rejects_bad_arguments() -> None:
    leaves = [b"a", b"b", b"c"]
    calls: list[Callable[[], object]] = [
        lambda: merkle.inclusion_proof(leaves, 3),
        lambda: merkle.inclusion_proof(leaves, 0, 4),
        lambda: merkle.inclusion_proof(leaves, -1),
        lambda: merkle.consistency_proof(leaves, 0, 2),
        lambda: merkle.consistency_proof(leaves, 3, 2),
        lambda: merkle.consistency_proof(leaves, 1, 4),
        lambda: merkle.root([b"a", "b"]),  # type: ignore[list-item]
        lambda: merkle.root(b"ab"),  # type: ignore[arg-type]
        lambda: MerkleTree.from_leaves([b"a", 1]),  # type: ignore[list-item]
        lambda: MerkleTree().append("text"),  # type: ignore[arg-type]
        lambda: MerkleTree.from_leaf_hashes([b"short"]),
        lambda: MerkleTree.from_leaves(leaves).root(4),
        lambda: MerkleTree.from_leaves(leaves).inclusion_proof(0, 0),
        lambda: MerkleTree.from_leaves(leaves).consistency_proof(2, 4),
        lambda: MerkleTree.from_leaves(leaves).node(-1, 0),
    ]
    for call in calls:
        with pytest.raises(ProofError):
            call()
    assert merkle.consistency_proof(leaves, 2, 2) == []
    assert merkle.consistency_proof([], 0) == []


def test_compact_range_persists_and_resumes() -> None:
    leaves = [f"c{i}".encode() for i in range(100)]
    naive = ref.NaiveTree(leaves)
    compact = CompactRange()
    for size, data in enumerate(leaves):
        for restored in (
            CompactRange.from_hashes(compact.size, compact.hashes),
            CompactRange.from_bytes(compact.to_bytes()),
        ):
            assert (restored.size, restored.hashes) == (compact.size, compact.hashes)
            restored.append_data(data)
            assert restored.root() == naive.root(size + 1)
        compact.append(merkle.leaf_hash(data))
    blob = compact.to_bytes()
    assert blob[0] == 1 and int.from_bytes(blob[1:9], "big") == 100
    assert len(blob) == 9 + 32 * (100).bit_count()
    assert "size=100" in repr(compact)


def test_compact_range_rejects_corrupt_state() -> None:
    good = compact_of([b"x", b"y", b"z"])
    blob = good.to_bytes()
    hashes = list(good.hashes)
    calls: list[Callable[[], object]] = [
        lambda: CompactRange.from_hashes(3, hashes[:1]),
        lambda: CompactRange.from_hashes(4, hashes),
        lambda: CompactRange.from_hashes(3, [hashes[0], hashes[1][:31]]),
        lambda: CompactRange.from_hashes(-3, hashes),
        lambda: CompactRange.from_hashes(3, "ab"),  # type: ignore[arg-type]
        lambda: CompactRange.from_bytes(b""),
        lambda: CompactRange.from_bytes(b"\x02" + blob[1:]),
        lambda: CompactRange.from_bytes(blob[:-1]),
        lambda: CompactRange.from_bytes(blob + b"\x00"),
        lambda: CompactRange.from_bytes(bytearray(blob)),  # type: ignore[arg-type]
        lambda: good.append(b"\x00" * 31),
        lambda: good.append_data("text"),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(ProofError):
            call()
    assert good.size == 3 and good.hashes == tuple(hashes)


def test_compact_range_stops_at_uint64() -> None:
    full = CompactRange.from_hashes(2**64 - 1, [merkle.leaf_hash(b"%d" % i) for i in range(64)])
    with pytest.raises(ProofError, match="want < 2\\*\\*64"):
        full.append(merkle.leaf_hash(b"one more"))
    assert full.size == 2**64 - 1


# --- verification guard clauses ------------------------------------------------------------

H = merkle.leaf_hash(b"h")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((H, 0, 0, [], H), "leaf index: got 0, want < tree size 0"),
        ((H, 5, 5, [H] * 3, H), "leaf index: got 5, want < tree size 5"),
        ((H, -1, 5, [H] * 3, H), "leaf index: got -1"),
        ((H, 0, 2**64, [H], H), "tree size: got 18446744073709551616"),
        ((H, 0.0, 5, [H] * 3, H), "leaf index: got float, want int"),
        ((H, False, 5, [H] * 3, H), "leaf index: got bool, want int"),
        ((H[:31], 0, 5, [H] * 3, H), "leaf hash: got 31 bytes, want 32"),
        ((H.hex(), 0, 5, [H] * 3, H), "leaf hash: got str, want bytes"),
        ((H, 0, 5, [H, H, H[:1]], H), r"inclusion proof\[2\]: got 1 bytes, want 32"),
        ((H, 0, 5, [H, H, None], H), r"inclusion proof\[2\]: got NoneType, want bytes"),
        ((H, 0, 5, H, H), "inclusion proof: got bytes, want a list"),
        ((H, 0, 5, [H] * 2, H), "inclusion proof length: got 2 hashes, want 3"),
        ((H, 0, 5, [H] * 4, H), "inclusion proof length: got 4 hashes, want 3"),
        ((H, 0, 5, [H] * 3, b""), "root: got 0 bytes, want 32"),
        ((H, 0, 1, [], merkle.EMPTY_ROOT), "root: got .* from the proof, want e3b0c442"),
    ],
)
def test_verify_inclusion_guard_clauses(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ProofError, match=message):
        merkle.verify_inclusion(*args)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((5, 3, [H], H, H), "size1: got 5, want <= size2 3"),
        ((0, 3, [H], H, H), "size1: got 0, want > 0"),
        ((3, 3, [H], H, H), "consistency proof between equal sizes length: got 1 hashes, want 0"),
        ((0, 0, [], H, merkle.EMPTY_ROOT), "root2: got .* from the proof, want e3b0"),
        ((3, 3, [], H, merkle.EMPTY_ROOT), "root2: got"),
        ((3, 7, [H] * 5, H, H), "consistency proof length: got 5 hashes, want 4"),
        ((4, 7, [H] * 2, H, H), "consistency proof length: got 2 hashes, want 1"),
        ((3, 7, [], H, H), "consistency proof length: got 0 hashes, want 4"),
        ((2, 4, [H], H, H), "root2: got .* from the proof, want"),
        ((1, 2, [H], H[:5], H), "root1: got 5 bytes, want 32"),
        ((1, 2, [H], H, None), "root2: got NoneType, want bytes"),
        ((1, 2, (H,), H, H), "root2: got"),
        ((1, 2, "ab", H, H), "consistency proof: got str, want a list"),
        (("1", 2, [H], H, H), "size1: got str, want int"),
        ((1, 2**64, [H], H, H), "size2: got 18446744073709551616"),
    ],
)
def test_verify_consistency_guard_clauses(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ProofError, match=message):
        merkle.verify_consistency(*args)


def test_proof_error_carries_expected_and_computed() -> None:
    leaves = [b"a", b"b", b"c"]
    proof = merkle.inclusion_proof(leaves, 1)
    wrong_root = merkle.root(leaves[:2])
    with pytest.raises(ProofError) as caught:
        merkle.verify_inclusion(merkle.leaf_hash(b"b"), 1, 3, proof, wrong_root)
    assert caught.value.expected == wrong_root
    assert caught.value.computed == merkle.root(leaves)
    with pytest.raises(ProofError) as caught:
        merkle.verify_inclusion(merkle.leaf_hash(b"b"), 1, 3, proof[:1], wrong_root)
    assert (caught.value.expected, caught.value.computed) == (2, 1)
    assert isinstance(caught.value, PledgewatchError)


def test_consistency_checks_the_old_root_when_it_is_not_a_node() -> None:
    leaves = [b"a", b"b", b"c", b"d"]
    proof = merkle.consistency_proof(leaves, 3)
    with pytest.raises(ProofError, match=r"root1: got .* from the proof, want") as caught:
        merkle.verify_consistency(3, 4, proof, merkle.root(leaves[:2]), merkle.root(leaves))
    assert caught.value.computed == merkle.root(leaves[:3])


def test_equal_sizes_need_equal_roots_and_no_proof() -> None:
    root = merkle.root([b"a"])
    merkle.verify_consistency(0, 0, [], merkle.EMPTY_ROOT, merkle.EMPTY_ROOT)
    merkle.verify_consistency(1, 1, [], root, root)
    assert root_from_consistency_proof(1, 1, [], root) == root


# --- the core's rules: stdlib only, no I/O, no logging, no clocks ------------------------

ALLOWED_IMPORTS = {"__future__", "hashlib", "collections.abc", "dataclasses", "typing"}


def test_merkle_package_imports_only_pure_stdlib_modules() -> None:
    for source in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name in ALLOWED_IMPORTS or name.startswith("pledgewatch."), (source, name)
        assert "open(" not in source.read_text(encoding="utf-8"), source


def test_merkle_package_loads_in_a_fresh_interpreter_without_third_party_modules() -> None:
    # -S keeps site hooks (.pth files of the venv) out, so sys.modules shows only what
    # importing the package pulls in. PyNaCl is the one dependency the core may use.
    code = "import sys, pledgewatch.merkle; print(' '.join(sys.modules))"
    repo = str(PACKAGE.parent.parent)
    loaded = subprocess.run(
        [sys.executable, "-S", "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": repo},
    ).stdout.split()
    allowed = {"pledgewatch", "__main__", "nacl", "cffi", "_cffi_backend"}
    foreign = {
        top
        for top in (name.split(".")[0] for name in loaded)
        if top not in sys.stdlib_module_names and top not in allowed
    }
    assert "pledgewatch.merkle.tree" in loaded
    assert not foreign
