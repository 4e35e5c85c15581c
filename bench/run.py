"""Run every benchmark in bench/ and write one report; never fails because a target was missed.

    .venv/bin/python bench/run.py [--quick] [--only merkle,gateway]

Every ``bench/bench_*.py`` that has a ``run()`` is run in this process, in name order, with
the sizes below (``--quick``: smaller sizes, for a smoke run; the report says so). Modules
without ``run()``, or whose ``run()`` needs arguments we do not know, are listed as skipped.

Writes ``bench/results/latest.json`` (every figure each benchmark returned) and
``bench/results/latest.md`` (one Markdown table: figure, value, in-run peer / limit, ratio,
target, met?) and prints the Markdown. Exit status: 0 when every benchmark ran, whatever the
timings; 1 only when a benchmark crashed (its traceback is in the report).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import inspect
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"

# module -> (full sizes, quick sizes); arguments run() does not take are dropped.
SIZES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "bench_merkle": (
        {"leaves": 1_000_000, "proofs": 10_000, "repeats": 3},
        {"leaves": 100_000, "proofs": 2_000, "repeats": 1},
    ),
    "bench_gateway": ({"events": 20_000, "repeats": 3}, {"events": 5_000, "repeats": 1}),
    # sizes live in bench_anchor.FULL / QUICK (events 20,000, 3 repeats, 1M-leaf proofs)
    "bench_anchor": ({"quick": False}, {"quick": True}),
    # sizes live in bench_reconcile.FULL_SIZES / QUICK_SIZES (1M, 3M, 10M events, 3 repeats)
    "bench_reconcile": ({"quick": False}, {"quick": True}),
    # sizes live in bench_alerts.FULL / QUICK (1,000 events/s for 30 s / 8 s)
    "bench_alerts": ({"quick": False}, {"quick": True}),
    # sizes live in bench_metrics.FULL / QUICK (200,000 / 50,000 points, 3 / 1 repeats)
    "bench_metrics": ({"quick": False}, {"quick": True}),
    # sizes live in bench_growth.FULL / QUICK (100k and 1M stored / 10k and 30k)
    "bench_growth": ({"quick": False}, {"quick": True}),
}


def discover() -> list[str]:
    return sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))


def arguments(name: str, fn: Any, quick: bool) -> tuple[dict[str, Any] | None, str | None]:
    """The keyword arguments to call ``fn`` with, or None and why it cannot be called."""
    full, small = SIZES.get(name, ({}, {"quick": True}))
    wanted = small if quick else full
    params = inspect.signature(fn).parameters
    kwargs = {k: v for k, v in wanted.items() if k in params}
    missing = [
        p.name
        for p in params.values()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.name not in kwargs
    ]
    if missing:
        return None, f"run() needs {missing}; add sizes for {name} to bench/run.py"
    return kwargs, None


def run_one(name: str, quick: bool) -> dict[str, Any]:
    """Import and run one benchmark; the outcome is recorded, a crash included."""
    try:
        module = importlib.import_module(name)
    except Exception:
        return {"status": "crashed", "kwargs": {}, "traceback": traceback.format_exc()}
    fn = getattr(module, "run", None)
    if not callable(fn):
        return {"status": "skipped", "reason": f"{name}.py has no run()"}
    kwargs, why = arguments(name, fn, quick)
    if kwargs is None:
        return {"status": "skipped", "reason": why}
    print(f"running {name}.run({_kwargs_text(kwargs)}) ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        result = fn(**kwargs)
    except Exception:
        return {"status": "crashed", "kwargs": kwargs, "traceback": traceback.format_exc()}
    seconds = time.perf_counter() - start
    print(f"  {name} done in {seconds:.1f} s", file=sys.stderr, flush=True)
    return {"status": "ok", "kwargs": kwargs, "seconds": seconds, "result": result}


def _kwargs_text(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def make_row(
    figure: str,
    value: float | None,
    unit: str = "",
    *,
    peer: str | None = None,
    peer_value: float | None = None,
    ratio: float | None = None,
    target: str | None = None,
    met: bool | None = None,
) -> dict[str, Any]:
    if ratio is None and value is not None and peer_value:
        ratio = value / peer_value
    return {"figure": figure, "value": value, "unit": unit, "peer": peer,
            "peer_value": peer_value, "ratio": ratio, "target": target, "met": met}  # fmt: skip


def merkle_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """bench_merkle reports ratios only; put each beside the figures it was made from."""
    seconds, ratios = result.get("seconds", {}), result.get("ratios", [])
    if len(ratios) != 3 or "ours_build" not in seconds or "hashlib_floor" not in seconds:
        return generic_rows(result)
    build, proofs, pymerkle = ratios
    ours_total = seconds.get("ours_build_at_pymerkle_size", seconds["ours_build"]) + seconds.get(
        "ours_proofs_at_pymerkle_size", seconds["ours_proofs"]
    )
    theirs = seconds.get("pymerkle_build", 0.0) + seconds.get("pymerkle_proofs", 0.0)
    return [
        make_row(f"merkle: {build['name']}", seconds["ours_build"], "s",
                 peer="hashlib floor s", peer_value=seconds["hashlib_floor"],
                 target=build["target"], met=build["met"]),
        make_row(f"merkle: {proofs['name']}", proofs["value"], "proofs/s",
                 peer="target", peer_value=_number(proofs["target"]),
                 target=proofs["target"], met=proofs["met"]),
        make_row(f"merkle: {pymerkle['name']}", ours_total if theirs else None, "s (ours)",
                 peer="pymerkle s", peer_value=theirs or None, ratio=pymerkle["value"],
                 target=pymerkle["target"], met=pymerkle["met"]),
    ]  # fmt: skip


def _number(target: str) -> float | None:
    digits = "".join(c for c in target if c.isdigit() or c == ".")
    return float(digits) if digits else None


def generic_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Any ``ratios`` list of {name, value, target, met}, as information where unknown."""
    return [
        make_row(r.get("name", "?"), r.get("value"), ratio=r.get("value"),
                 target=r.get("target"), met=r.get("met"))
        for r in result.get("ratios", [])
    ]  # fmt: skip


def rows_of(name: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    if isinstance(result.get("rows"), list):
        return list(result["rows"])
    if name == "bench_merkle":
        return merkle_rows(result)
    return generic_rows(result)


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100 or value == int(value):
        return f"{value:,.0f}"
    if abs(value) < 0.01:
        return f"{value:.2g}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    mode = (
        "**QUICK run** (smaller sizes; figures are indicative only)"
        if report["quick"]
        else "full run"
    )
    lines = [
        "# pledgewatch benchmarks",
        "",
        f"{report['generated']} · {mode} · Python {env['python']} · {env['platform']} · "
        f"{env['cpus']} CPUs · {report['seconds']:.0f} s in all",
        "",
        "Each ratio is value ÷ the peer or limit measured or set in the same run. "
        "A missed target is reported, never an error.",
        "",
        "| figure | value | in-run peer / limit | ratio | target | met? |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in report["rows"]:
        value = f"{fmt(r['value'])} {r['unit']}".strip()
        peer = "—" if r["peer_value"] is None else f"{r['peer']}: {fmt(r['peer_value'])}"
        met = "info" if r["met"] is None else ("yes" if r["met"] else "**NO**")
        lines.append(
            f"| {r['figure']} | {value} | {peer} | {fmt(r['ratio'])} | "
            f"{r['target'] or '—'} | {met} |"
        )
    lines += ["", *summary_lines(report)]
    return "\n".join(lines) + "\n"


def summary_lines(report: dict[str, Any]) -> list[str]:
    judged = [r for r in report["rows"] if r["met"] is not None]
    missed = [r["figure"] for r in judged if not r["met"]]
    lines = [f"Targets met: {len(judged) - len(missed)} of {len(judged)}."]
    lines += [f"- NOT MET: {figure}" for figure in missed]
    for name, outcome in report["benchmarks"].items():
        if outcome["status"] == "skipped":
            lines.append(f"- {name}: skipped — {outcome['reason']}")
        elif outcome["status"] == "crashed":
            last = outcome["traceback"].strip().splitlines()[-1]
            lines.append(f"- {name}: CRASHED — {last} (traceback in latest.json)")
        else:
            params = _kwargs_text(outcome["kwargs"]) or "defaults"
            lines.append(f"- {name}: {params}; {outcome['seconds']:.0f} s")
            notes = outcome["result"].get("notes", [])
            lines += [f"  - note: {note}" for note in notes]
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    parser.add_argument("--only", help="comma-separated names, e.g. merkle,gateway")
    args = parser.parse_args(argv)
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    names = discover()
    if args.only:
        wanted = {f"bench_{n.strip().removeprefix('bench_')}" for n in args.only.split(",")}
        names = [n for n in names if n in wanted]
    start = time.perf_counter()
    outcomes = {name: run_one(name, args.quick) for name in names}
    report = {
        "generated": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "seconds": time.perf_counter() - start,
        "environment": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "rows": [
            {"benchmark": name, **row}
            for name, outcome in outcomes.items()
            if outcome["status"] == "ok"
            for row in rows_of(name, outcome["result"])
        ],
        "benchmarks": outcomes,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "latest.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    text = markdown(report)
    (RESULTS_DIR / "latest.md").write_text(text)
    print(text)
    return 1 if any(o["status"] == "crashed" for o in outcomes.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
