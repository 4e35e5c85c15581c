"""Chaos soak: the chaos run of ``tests/test_chaos.py``, longer, with more events and kills.

    .venv/bin/python bench/bench_chaos.py [--seed N] [--days 12] [--interval 2m]
                                         [--feed-s 300] [--broker-kills 6]
                                         [--anchor-kills 10] [--gateway-kills 10]
                                         [--keep DIR]

Four gateways (real ``pledgewatch gateway run`` processes) publish a seeded simulated
warehouse (``tests/chaos_rig.py``: a theft, a tamper alarm and a slow drain among ordinary
traffic) to a fresh Mosquitto; two anchor workers on a fresh PostgreSQL (one running the
reconciler), the bank's witness and a webhook receiver that is down for part of the run. A
seeded thread ``kill -9``s the broker, an anchor worker and a gateway at random moments and
restarts them. At the end everything is checked from raw rows and files
(``tests/chaos_checks.py``): each generated event stored once in its gapless chain, a proof
file per event that the verifier accepts, consistent checkpoints the witness never refused,
exactly the injected faults' alerts, each webhook delivered once.

Not a timing benchmark (STYLE.md §14): it prints the seed and a summary (events, kills of
each kind, lost 0 / duplicated 0, time) and exits 1 only if a check failed, so a failing
seed can be replayed with ``--seed``. It has no ``run()``: ``bench/run.py`` lists it as
skipped, because a soak does not belong in the timed suite. Needs Mosquitto and PostgreSQL
(``make servers``). With the defaults (~89,000 events, 26 kills) it takes ~10 minutes on the
2-core dev machine.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent / "tests"
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from chaos_checks import check_all  # noqa: E402
from chaos_run import ChaosRun, Params  # noqa: E402
from servers import MosquittoServer, PostgresServer  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=None, help="replay this seed")
    parser.add_argument(
        "--days", type=int, default=12, help="simulated days, >= 2 (~7,400 events a day)"
    )
    parser.add_argument(
        "--interval", default=Params.interval, help="load-cell period in the scenario"
    )
    parser.add_argument("--feed-s", type=float, default=300.0, help="seconds of feeding")
    parser.add_argument("--broker-kills", type=int, default=6)
    parser.add_argument("--anchor-kills", type=int, default=10)
    parser.add_argument("--gateway-kills", type=int, default=10)
    parser.add_argument("--settle-s", type=float, default=900.0, help="quiescence deadline")
    parser.add_argument("--keep", type=Path, default=None, help="work in DIR and keep it")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    params = Params(
        days=args.days,
        interval=args.interval,
        feed_s=args.feed_s,
        broker_kills=args.broker_kills,
        anchor_kills=args.anchor_kills,
        gateway_kills=args.gateway_kills,
        settle_s=args.settle_s,
    )
    print(f"chaos soak seed {seed} (replay: --seed {seed}); {params}", flush=True)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        return _soak(args.keep, seed, params)
    with tempfile.TemporaryDirectory(prefix="pledgewatch-chaos-") as tmp:
        return _soak(Path(tmp), seed, params)


def _soak(workdir: Path, seed: int, params: Params) -> int:
    started = time.monotonic()
    broker = MosquittoServer()
    postgres = PostgresServer()
    try:
        broker.start()
        postgres.start()
        store = postgres.create_database("chaos")
        run = ChaosRun(workdir / "run", broker, store, seed, params, log=_log)
        print(f"seed {seed}: {run.truth.events} simulated events to deliver", flush=True)
        try:
            run.run()
            figures = check_all(run, workdir / "proofs")
        except AssertionError as exc:
            print(f"FAILED (seed {seed}): {exc}", flush=True)
            return 1
    finally:
        broker.close()
        postgres.close()
    total = time.monotonic() - started
    planned = {"broker": params.broker_kills, "anchor": params.anchor_kills}
    planned["gateway"] = params.gateway_kills
    print(figures.line())
    print(
        f"seed {seed}: kills done {figures.kills} of {planned}; lost 0, duplicated 0; "
        f"timings {{{', '.join(f'{k} {v:.1f}s' for k, v in run.timings.items())}}}, "
        f"total with checks {total:.1f}s"
    )
    return 0


def _log(line: str) -> None:
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
