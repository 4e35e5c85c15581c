"""Benchmark the Merkle tree: build + inclusion proofs, against hashlib's floor and pymerkle.

    .venv/bin/python bench/bench_merkle.py [--leaves 1000000] [--proofs 10000] [--json PATH]

One run measures, as medians of ``--repeats`` runs (gc enabled, as in production):

* ours: ``MerkleTree.from_leaves`` over the raw entries, then ``--proofs`` inclusion proofs for
  random leaves of the full tree (and as many consistency proofs, for information);
* the floor: a bare hashlib loop doing exactly the SHA-256 calls the build does, over the same
  entries: one ``0x00 || entry`` per leaf and one ``0x01 || h || h`` (65 bytes) per perfect
  interior node, ``n - popcount(n)`` of them;
* pymerkle (v7 ``InmemoryTree``): the same entries and the same proofs, at ``--pymerkle-leaves``
  (default: the same size; if smaller, ours is measured again at that size, like for like).

It prints a table and the three targets (met / not met) and never fails on a timing. ``run()``
returns the same figures as a dict for a bench runner. ``--json PATH`` writes them (``-``:
stdout).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from report import write_json

from pledgewatch.merkle import MerkleTree, verify_consistency, verify_inclusion

ENTRY_BYTES = 100  # about the size of a signed sensor event
TARGET_FLOOR_RATIO = 1.6  # our build time / hashlib floor, at most
TARGET_PYMERKLE_RATIO = 5.0  # pymerkle time / ours, at least
TARGET_PROOFS_PER_S = 10_000.0  # inclusion proofs per second from the full tree, at least


def entries(count: int) -> list[bytes]:
    """Distinct ``ENTRY_BYTES``-byte leaf entries."""
    filler = b"\xa5" * (ENTRY_BYTES - 8)
    return [i.to_bytes(8, "big") + filler for i in range(count)]


def timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """Run ``fn`` ``repeats`` times; return the wall times and the last result."""
    samples = []
    result = None
    for _ in range(repeats):
        result = None  # let the previous tree go before building the next
        gc.collect()
        start = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - start)
    return samples, result


def hashlib_floor(data: list[bytes]) -> None:
    """The SHA-256 calls of a tree build and nothing else."""
    sha256 = hashlib.sha256
    leaf, node = b"\x00", b"\x01"
    for entry in data:
        sha256(leaf + entry).digest()
    child = sha256(b"child").digest()
    for _ in range(len(data) - len(data).bit_count()):
        sha256(node + child + child).digest()


def measure_ours(data: list[bytes], indexes: list[int], repeats: int) -> dict[str, Any]:
    build, tree = timed(lambda: MerkleTree.from_leaves(data), repeats)
    proofs, made = timed(lambda: [tree.inclusion_proof(i) for i in indexes], repeats)
    size = tree.size
    root = tree.root()
    for index, proof in zip(indexes, made, strict=True):
        verify_inclusion(tree.node(0, index), index, size, proof, root)
    olds = [max(1, i) for i in indexes]
    consistency, made = timed(lambda: [tree.consistency_proof(m) for m in olds], repeats)
    for old, proof in zip(olds[:1000], made, strict=False):
        verify_consistency(old, size, proof, tree.root(old), root)
    return {"build": build, "proofs": proofs, "consistency": consistency, "root": root.hex()}


def measure_pymerkle(data: list[bytes], indexes: list[int], repeats: int) -> dict[str, Any]:
    import pymerkle

    build, tree = timed(lambda: pymerkle.InmemoryTree.init_from_entries(data), repeats)
    # pymerkle numbers leaves from 1.
    proofs, _ = timed(lambda: [tree.prove_inclusion(i + 1) for i in indexes], repeats)
    return {
        "version": pymerkle.__version__,
        "build": build,
        "proofs": proofs,
        "root": tree.get_root().hex(),
    }


def ratio(name: str, value: float, target: float, at_least: bool, unit: str) -> dict[str, Any]:
    met = value >= target if at_least else value <= target
    return {
        "name": name,
        "value": value,
        "target": f"{'>=' if at_least else '<='} {target:g}{unit}",
        "met": met,
    }


def run(
    leaves: int, proofs: int, repeats: int = 3, pymerkle_leaves: int | None = None
) -> dict[str, Any]:
    """Measure everything once; return figures, ratios and targets as a JSON-able dict."""
    if leaves < 1 or proofs < 1 or repeats < 1:
        raise ValueError("leaves, proofs and repeats must be at least 1")
    rng = random.Random(20240917)
    data = entries(leaves)
    indexes = [rng.randrange(leaves) for _ in range(proofs)]
    med = statistics.median
    ours = measure_ours(data, indexes, repeats)
    floor, _ = timed(lambda: hashlib_floor(data), repeats)
    result: dict[str, Any] = {
        "benchmark": "merkle",
        "params": {"leaves": leaves, "proofs": proofs, "repeats": repeats},
        "environment": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "machine": platform.machine(),
        },
        "seconds": {
            "ours_build": med(ours["build"]),
            "ours_proofs": med(ours["proofs"]),
            "ours_consistency_proofs": med(ours["consistency"]),
            "hashlib_floor": med(floor),
        },
        "samples": {"ours_build": ours["build"], "hashlib_floor": floor},
        "notes": [],
    }
    seconds = result["seconds"]
    proofs_per_s = proofs / seconds["ours_proofs"]
    ratios = [
        ratio(
            "ours build / hashlib floor",
            seconds["ours_build"] / seconds["hashlib_floor"],
            TARGET_FLOOR_RATIO,
            at_least=False,
            unit="x",
        ),
        ratio(
            f"inclusion proofs/s at {leaves:,} leaves",
            proofs_per_s,
            TARGET_PROOFS_PER_S,
            at_least=True,
            unit="/s",
        ),
    ]
    ratios.append(
        _pymerkle_ratio(
            result,
            data=data,
            indexes=indexes,
            ours=ours,
            repeats=repeats,
            pymerkle_leaves=pymerkle_leaves,
        )
    )
    result["ratios"] = ratios
    return result


def _pymerkle_ratio(
    result: dict[str, Any],
    *,
    data: list[bytes],
    indexes: list[int],
    ours: dict[str, Any],
    repeats: int,
    pymerkle_leaves: int | None,
) -> dict[str, Any]:
    """Measure pymerkle (at the same size as ours unless told otherwise) and compare."""
    size = len(data) if pymerkle_leaves is None else min(pymerkle_leaves, len(data))
    name = f"pymerkle / ours (build + {len(indexes):,} proofs, {size:,} leaves)"
    try:
        import pymerkle  # noqa: F401
    except ImportError:
        result["notes"].append("pymerkle is not installed: comparison not measured")
        return {
            "name": name,
            "value": None,
            "target": f">= {TARGET_PYMERKLE_RATIO:g}x",
            "met": None,
        }
    small = [i % size for i in indexes]
    theirs = measure_pymerkle(data[:size], small, repeats)
    if size != len(data):
        ours = measure_ours(data[:size], small, repeats)
        result["notes"].append(f"pymerkle measured at {size:,} leaves; ours re-measured there")
    if theirs["root"] != ours["root"]:
        result["notes"].append("pymerkle's root differs from ours: comparison is not like for like")
    med = statistics.median
    seconds = result["seconds"]
    seconds["pymerkle_build"] = med(theirs["build"])
    seconds["pymerkle_proofs"] = med(theirs["proofs"])
    ours_build, ours_proofs = med(ours["build"]), med(ours["proofs"])
    if size != len(data):
        seconds["ours_build_at_pymerkle_size"] = ours_build
        seconds["ours_proofs_at_pymerkle_size"] = ours_proofs
    result["params"]["pymerkle_leaves"] = size
    result["params"]["pymerkle_version"] = theirs["version"]
    theirs_total = seconds["pymerkle_build"] + seconds["pymerkle_proofs"]
    ours_total = ours_build + ours_proofs
    result["roots_agree_with_pymerkle"] = theirs["root"] == ours["root"]
    result["details"] = {
        "pymerkle build / ours build": seconds["pymerkle_build"] / ours_build,
        "pymerkle proofs / ours proofs": seconds["pymerkle_proofs"] / ours_proofs,
        "hashlib floor, SHA-256 calls per second": (
            (2 * len(data) - len(data).bit_count()) / seconds["hashlib_floor"]
        ),
    }
    return ratio(name, theirs_total / ours_total, TARGET_PYMERKLE_RATIO, at_least=True, unit="x")


def table(result: dict[str, Any]) -> str:
    """The human-readable summary."""
    params, seconds = result["params"], result["seconds"]
    details = result.get("details", {})
    lines = [
        f"merkle benchmark: {params['leaves']:,} leaves of {ENTRY_BYTES} bytes, "
        f"{params['proofs']:,} proofs, median of {params['repeats']} "
        f"({result['environment']['python']}, {result['environment']['machine']})",
        "",
        f"{'measurement':<44}{'seconds':>10}",
    ]
    lines += [f"{name:<44}{value:>10.3f}" for name, value in seconds.items()]
    lines += ["", f"{'ratio':<58}{'value':>11}  {'target':<11}result"]
    for item in result["ratios"]:
        if item["value"] is None:
            lines.append(f"{item['name']:<58}{'-':>11}  {item['target']:<11}not measured")
            continue
        verdict = "met" if item["met"] else "NOT MET"
        lines.append(f"{item['name']:<58}{item['value']:>11,.2f}  {item['target']:<11}{verdict}")
    lines += [f"{name:<58}{value:>11,.2f}  (information)" for name, value in details.items()]
    lines += [f"note: {note}" for note in result["notes"]]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pymerkle-leaves", type=int, default=None)
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON (- = stdout)")
    args = parser.parse_args(argv)
    result = run(args.leaves, args.proofs, args.repeats, args.pymerkle_leaves)
    print(table(result))
    write_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
