"""The chaos run (issue 6 §2): four gateways publish ~22,300 simulated events to a real
Mosquitto while a seeded thread ``kill -9``s the broker, an anchor worker (two on PostgreSQL,
one running the reconciler) and a gateway at random moments and restarts them; the loan
officer's webhook receiver is down until a seeded moment 30-60 % into the feed (and until a
delivery has failed against it). Faults injected by the simulator: a theft, a tamper alarm, a
slow drain (``chaos_rig``); the kills must raise no alert of their own. At the end, from raw
tables, state files and proof files (see ``chaos_checks``): every generated event stored once
in its gapless chain, a verified proof file for each, one append-only log the witness never
disputed, and exactly the alerts of the injected faults, each webhook delivered once.

Replay a failure with ``CHAOS_SEED=<the printed seed>``; the scenario, the kill schedule and
the receiver's downtime all derive from it (the machine's load decides the rest).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from chaos_checks import check_all
from chaos_run import ChaosRun, Params
from servers import MosquittoServer

pytestmark = pytest.mark.slow


def chaos_seed() -> int:
    text = os.environ.get("CHAOS_SEED")
    return int(text) if text else random.SystemRandom().randrange(2**32)


def test_chaos_kill_9_broker_anchor_and_gateways_loses_nothing_doubles_nothing(
    tmp_path: Path, mosquitto: MosquittoServer, pg_url: str
) -> None:
    seed = chaos_seed()
    print(f"\nchaos seed {seed} (replay: CHAOS_SEED={seed})")
    run = ChaosRun(tmp_path, mosquitto, pg_url, seed, Params())
    try:
        run.run()
        started = time.monotonic()
        figures = check_all(run, tmp_path / "proofs")
        run.timings["checks_s"] = time.monotonic() - started
    except Exception as exc:  # whatever broke, the message names the seed to replay
        raise AssertionError(f"seed {seed} (replay: CHAOS_SEED={seed}): {exc}") from exc
    assert figures.kills == {"broker": 2, "anchor": 3, "gateway": 3}, f"seed {seed}"
    print(figures.line())
    print(f"seed {seed}: timings " + ", ".join(f"{k} {v:.1f}" for k, v in run.timings.items()))
