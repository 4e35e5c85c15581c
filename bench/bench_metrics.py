"""Benchmark the metrics write path against raw line-protocol HTTP; never fails on a timing.

    .venv/bin/python bench/bench_metrics.py [--quick] [--points 200000] [--repeats 3]
                                            [--json PATH]

One fresh VictoriaMetrics (``tests/servers.VictoriaMetricsServer``, Debian
``victoria-metrics``) takes both sides on its ``/api/v2/write`` endpoint, the one an InfluxDB 2
serves. ``points`` points are built once, outside every clock (``Point`` encodes its line at
construction): measurement ``pw_bench``, tags ``run`` (which side and repeat) and ``device``
(100 series), fields ``value`` (int) and ``level`` (float), millisecond timestamps distinct per
series. Per repeat, interleaved, medians:

1. **ours**: the production path, ``pledgewatch.metricpoint.MetricsWriter`` (started: its own
   flusher thread; ``batch_points`` 5,000, the default; ``flush_interval_ms`` 10, the smallest
   the config takes, so the clock measures writing, not the timer) over the anchor's
   ``anchor.metrics.InfluxSink`` (influxdb-client v2 synchronous write API, ms precision). The
   clock runs from the first ``record()`` on this thread until the writer's stats count every
   point written.
2. **the peer**: the same lines, in batches of the same size, POSTed to the same endpoint
   (``/api/v2/write?precision=ms``) over one kept-alive ``http.client`` connection, each
   answer checked (204). This is the cost of the wire and the server alone.

Information rows, from the same repeats:

- ``record()`` on the caller's thread (what ingest pays per point), per point, while the flusher
  writes beside it, beside a bare ``deque.append`` under a ``threading.Lock`` (its floor);
- the p99 and the slowest single ``record()`` call during that run beside the median time of
  one batch POST of the peer: ``record()`` never waits for I/O, so its p99 stays far below one
  request; the slowest call shows what GIL hand-offs to the flusher thread (and, on a shared
  machine, the scheduler) cost the caller at worst.

Checked, not just timed: after each side the server is flushed and ``/api/v1/export`` must hold
exactly ``points`` samples of ``pw_bench_value`` for that run, with the right sum; the writer
must report nothing dropped and no failed write. A broken run raises. ``run(quick)`` returns a
JSON-able dict with ``rows`` for bench/run.py.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import statistics
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from report import print_notes, write_json

TESTS_DIR = Path(__file__).resolve().parent.parent / "tests"
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from anchor.metrics import InfluxSink, MetricsConfig  # noqa: E402
from pledgewatch.metricpoint import MetricsWriter, Point  # noqa: E402

from servers import VictoriaMetricsServer  # noqa: E402

BATCH = 5000  # MetricsWriter's default batch_points
DEVICES = 100
FLUSH_INTERVAL_MS = 10  # the smallest [metrics] flush_interval_ms the config accepts
ORG, BUCKET = "bank", "pledgewatch"


@dataclass(frozen=True)
class Sizes:
    points: int
    repeats: int


FULL = Sizes(points=200_000, repeats=3)
QUICK = Sizes(points=50_000, repeats=1)


def make_points(run_tag: str, count: int, base_ms: int) -> list[Point]:
    """``count`` points over ``DEVICES`` series; sample i has value i (the export check)."""
    return [
        Point(
            "pw_bench",
            {"run": run_tag, "device": f"d{i % DEVICES:03d}"},
            {"value": i, "level": i / 7},
            base_ms + i // DEVICES,
        )
        for i in range(count)
    ]


def ours(vm: VictoriaMetricsServer, points: list[Point]) -> dict[str, Any]:
    """MetricsWriter + InfluxSink, flusher thread started; record every point, wait for all."""
    config = MetricsConfig(vm.url, "", ORG, BUCKET, FLUSH_INTERVAL_MS, len(points) + BATCH)
    writer = MetricsWriter(
        InfluxSink(config),
        buffer_points=config.buffer_points,
        flush_interval_ms=config.flush_interval_ms,
        stats_tags={"component": "bench"},
        batch_points=BATCH,
    )
    writer.start()
    record, clock = writer.record, time.perf_counter
    calls = [0.0] * len(points)
    gc.collect()
    start = clock()
    for i, point in enumerate(points):
        t = clock()
        record(point)
        calls[i] = clock() - t
    recorded = clock()
    deadline = recorded + 120
    while writer.stats().written < len(points):
        if clock() > deadline:
            raise RuntimeError(f"metrics writer: {writer.stats()} after 120 s")
        time.sleep(0.001)
    end = clock()
    writer.close()
    stats = writer.stats()
    if stats.dropped or stats.failed_writes or stats.written != len(points):
        raise RuntimeError(f"metrics writer lost points: {stats}")
    # the record loop's own time includes the two clock reads per point; the floor below is
    # measured with the same two reads, so the ratio compares like with like
    return {
        "seconds": end - start,
        "per_s": len(points) / (end - start),
        "record_loop_s": recorded - start,
        "record_us": (recorded - start) / len(points) * 1e6,
        "p99_record_s": statistics.quantiles(calls, n=100)[98],
        "slowest_record_s": max(calls),
    }


def raw(vm: VictoriaMetricsServer, points: list[Point]) -> dict[str, Any]:
    """The same lines POSTed in batches of BATCH over one kept-alive connection."""
    lines = [p.line for p in points]
    path = f"/api/v2/write?org={ORG}&bucket={BUCKET}&precision=ms"
    conn = http.client.HTTPConnection(vm.host, vm.port, timeout=30)
    posts = []
    gc.collect()
    start = time.perf_counter()
    try:
        for i in range(0, len(lines), BATCH):
            t = time.perf_counter()
            conn.request("POST", path, "\n".join(lines[i : i + BATCH]).encode(),
                         {"Content-Type": "text/plain; charset=utf-8"})  # fmt: skip
            response = conn.getresponse()
            body = response.read()
            if response.status != 204:
                raise RuntimeError(f"raw write: HTTP {response.status}: {body[:200]!r}")
            posts.append(time.perf_counter() - t)
    finally:
        conn.close()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "per_s": len(lines) / seconds,
            "post_s": statistics.median(posts), "posts": len(posts)}  # fmt: skip


def record_floor(count: int) -> float:
    """µs per bare ``deque.append`` under a lock, timed with the same two clock reads."""
    buffer: deque[str] = deque(maxlen=count)
    lock = threading.Lock()
    clock, line = time.perf_counter, "pw_bench value=1i 0"
    gc.collect()
    start = clock()
    for _ in range(count):
        t = clock()
        with lock:
            buffer.append(line)
        _ = clock() - t
    return (clock() - start) / count * 1e6


def check_landed(vm: VictoriaMetricsServer, run_tag: str, count: int) -> None:
    """Every sample is in the export. VictoriaMetrics acknowledged each batch (204) before
    this runs, but a sample can take a moment to become searchable even after a force_flush
    (seen once in a full run: only the last batch visible); poll up to 15 s, then fail."""
    want_sum = count * (count - 1) // 2
    deadline = time.monotonic() + 15
    while True:
        series = vm.export(f'{{__name__="pw_bench_value",run="{run_tag}"}}')
        values = [v for s in series for v in s["values"]]
        whole = sum(int(v) for v in values) == want_sum and len(series) == DEVICES
        if (len(values) == count and whole) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if len(values) != count or not whole:
        raise RuntimeError(
            f"{run_tag}: got {len(values)} samples in {len(series)} series (sum "
            f"{sum(values)}), want {count} in {DEVICES} (sum {want_sum})"
        )


def run(
    quick: bool = False, points: int | None = None, repeats: int | None = None
) -> dict[str, Any]:
    sizes = QUICK if quick else FULL
    sizes = Sizes(points or sizes.points, repeats or sizes.repeats)
    vm = VictoriaMetricsServer()
    vm.start()
    runs: list[dict[str, Any]] = []
    base_ms = time.time_ns() // 1_000_000 - sizes.points
    try:
        # warm both clients once (imports, first connection), checked but not reported
        warm = make_points("warm", 2 * BATCH, base_ms)
        ours(vm, warm)
        raw(vm, make_points("warm-raw", 2 * BATCH, base_ms))
        for r in range(sizes.repeats):
            mine = make_points(f"ours-{r}", sizes.points, base_ms)
            theirs = make_points(f"raw-{r}", sizes.points, base_ms)
            first, second = (("ours", mine), ("raw", theirs))[:: 1 if r % 2 == 0 else -1]
            result: dict[str, Any] = {}
            for side, pts in (first, second):
                result[side] = (ours if side == "ours" else raw)(vm, pts)
                check_landed(vm, f"{side}-{r}", sizes.points)
            result["floor_us"] = record_floor(sizes.points)
            runs.append(result)
    finally:
        vm.close()
    result = {"benchmark": "metrics", "quick": quick, "sizes": sizes.__dict__, "runs": runs}
    result["median"] = {
        "ours_per_s": statistics.median(r["ours"]["per_s"] for r in runs),
        "raw_per_s": statistics.median(r["raw"]["per_s"] for r in runs),
        "ratio": statistics.median(r["ours"]["per_s"] / r["raw"]["per_s"] for r in runs),
        "record_us": statistics.median(r["ours"]["record_us"] for r in runs),
        "floor_us": statistics.median(r["floor_us"] for r in runs),
        "p99_record_s": statistics.median(r["ours"]["p99_record_s"] for r in runs),
        "slowest_record_s": statistics.median(r["ours"]["slowest_record_s"] for r in runs),
        "post_s": statistics.median(r["raw"]["post_s"] for r in runs),
    }
    result["notes"] = [
        f"{sizes.points:,} points per side per repeat, batches of {BATCH:,}, median of "
        f"{sizes.repeats}, sides alternate; every point checked in VictoriaMetrics' export; "
        "our requests also carry the writer's pw_metrics stats line (one per request)",
    ]
    if quick:
        result["notes"].insert(0, "QUICK run: small sizes, figures indicative only")
    result["rows"] = rows(result)
    return result


def row(
    figure: str,
    value: float,
    unit: str,
    *,
    peer: str,
    peer_value: float,
    ratio: float | None = None,
) -> dict[str, Any]:
    """One information line of the report (bench/run.py's shape); ratio = value ÷ peer."""
    ratio = value / peer_value if ratio is None and peer_value else ratio
    return {"figure": figure, "value": value, "unit": unit, "peer": peer,
            "peer_value": peer_value, "ratio": ratio, "target": None, "met": None}  # fmt: skip


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    m = result["median"]
    return [
        row("metric points/s, MetricsWriter + InfluxSink → VictoriaMetrics", m["ours_per_s"],
            "points/s", peer="raw line-protocol POST/s", peer_value=m["raw_per_s"],
            ratio=m["ratio"]),
        row("  record() per point on the caller's thread (flusher running)", m["record_us"],
            "µs", peer="bare locked deque.append µs", peer_value=m["floor_us"]),
        row("  record() call p99 (flusher running)", m["p99_record_s"] * 1e6, "µs",
            peer="one raw batch POST µs", peer_value=m["post_s"] * 1e6),
        row("  slowest record() call during the run", m["slowest_record_s"] * 1000, "ms",
            peer="one raw batch POST ms", peer_value=m["post_s"] * 1000),
    ]  # fmt: skip


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--points", type=int)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON (- = stdout)")
    args = parser.parse_args(argv)
    result = run(args.quick, args.points, args.repeats)
    for r in result["rows"]:
        print(f"{r['figure']:<66} {r['value']:>12,.2f} {r['unit']:<9} {r['peer']}: "
              f"{r['peer_value']:,.2f}  ratio {r['ratio']:.3f}")  # fmt: skip
    print_notes(result)
    write_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
