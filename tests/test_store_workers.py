"""Two anchor workers, one store: the log stays one gapless, append-only sequence.

Two separate processes (tests/store_worker.py), each with its own `Database` connection,
ingest overlapping batches of the same signed events — about a third of the events go to
both workers, and the second worker gets everything in reverse order, so the workers insert
shared rows in opposite orders — and each runs `Sequencer.step` after every batch, while
also enrolling a key mid-run. Afterwards, recomputed from the raw rows (`check_log`):

- every event is stored exactly once and answered `stored` by exactly one worker;
- events and key records hold leaf indexes 0..N-1, each once; `leaves` and `log_state`
  agree; the compact-range root equals the root recomputed from the leaf data;
- every checkpoint verifies and names the root of the tree at its size;
- the per-device chain check saw every chain complete and recorded nothing.

On PostgreSQL this is what the advisory locks buy (sequencer lock: one writer of log
positions; chain lock: one writer of the per-device chain state); on SQLite it is WAL plus
`BEGIN IMMEDIATE` and the busy timeout set in `Database.open`.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anchor.chain import gap_scan
from anchor.ingest import Ingestor
from anchor.registry import enrol, load_keys
from anchor.store.db import Database, Dialect, Tx
from anchor.store.schema import SCHEMA_VERSION, migrate
from pledgewatch.events import SignedEvent
from pledgewatch.signing import SigningKey

from store_rig import BASE_MS, Gateway, check_log, open_store

ORIGIN = "bank.example/pledgewatch-workers"
WORKER = Path(__file__).with_name("store_worker.py")
REPO = Path(__file__).resolve().parent.parent
DEVICES = ("scale-1", "scale-2", "door-1")
PER_DEVICE = 30
BATCH = 8


def _batches(gateways: dict[str, Gateway], events: list[SignedEvent]) -> list[list[Any]]:
    messages = [
        {"topic": gateways[e.event.gateway].topic, "payload": e.to_wire().hex()} for e in events
    ]
    return [messages[i : i + BATCH] for i in range(0, len(messages), BATCH)]


def _run_workers(plans: list[dict[str, Any]], barrier: Path) -> list[dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = []
    for plan in plans:
        path = barrier / f"{plan['name']}.json"
        path.write_text(json.dumps(plan))
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), str(path)],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    deadline = time.monotonic() + 30
    while not all((barrier / f"{p['name']}.ready").exists() for p in plans):
        assert all(proc.poll() is None for proc in procs), "a worker died before the start"
        assert time.monotonic() < deadline, "workers did not get ready"
        time.sleep(0.01)
    (barrier / "go").touch()
    summaries = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"worker failed:\n{err.decode()}"
        summaries.append(json.loads(out))
    return summaries


def test_two_workers_share_one_gapless_log(store_url: str, tmp_path: Path) -> None:
    db = open_store(store_url)
    gateways = {name: Gateway("wh-1", name) for name in ("gw-1", "gw-2")}
    for gw in gateways.values():
        enrol(db, gw.warehouse, gw.gateway, gw.key.public_key, now_ms=0)
    events = [e for gw in gateways.values() for d in DEVICES for e in gw.chain(d, PER_DEVICE)]
    random.Random(7).shuffle(events)  # devices interleave, chains arrive out of order
    share = [random.Random(i).random() for i in range(len(events))]
    to_a = [e for e, r in zip(events, share, strict=True) if r < 2 / 3]
    to_b = [e for e, r in zip(events, share, strict=True) if r >= 1 / 3][::-1]
    both = {e.event_id for e in to_a} & {e.event_id for e in to_b}
    assert {e.event_id for e in to_a} | {e.event_id for e in to_b} == {e.event_id for e in events}

    anchor_key = SigningKey.generate()
    plans = [
        {
            "name": name,
            "url": store_url,
            "origin": ORIGIN,
            "seed": anchor_key.seed().hex(),
            "checkpoint_max_entries": 16,
            "pause_s": 0.002,
            "barrier": str(tmp_path),
            "batches": _batches(gateways, mine),
            "enrol": {
                "after_batch": 3,
                "warehouse": "wh-1",
                "gateway": f"gw-extra-{name}",
                "public_key": SigningKey.generate().public_key.hex(),
            },
        }
        for name, mine in (("worker-a", to_a), ("worker-b", to_b))
    ]
    summaries = _run_workers(plans, tmp_path)

    stored = sum(s["counts"].get("stored", 0) for s in summaries)
    duplicate = sum(s["counts"].get("duplicate", 0) for s in summaries)
    rejected = sum(n for s in summaries for k, n in s["counts"].items() if k.startswith("rej"))
    assert (stored, duplicate, rejected) == (len(events), len(both), 0)
    read = db.read()
    rows = read.all("SELECT event_id, worker FROM events")
    assert sorted(r[0] for r in rows) == sorted(e.event_id for e in events)
    assert {r[1] for r in rows} == {"worker-a", "worker-b"}

    audit = check_log(db, ORIGIN, anchor_key.public_key)
    key_records = 4  # two gateways before the run, one enrolment by each worker during it
    assert (audit.event_leaves, audit.key_leaves) == (len(events), key_records)
    assert audit.size == len(events) + key_records
    assert sum(s["appended"] for s in summaries) == audit.size
    assert audit.checkpoints >= audit.size // 16 // 2

    assert read.all("SELECT kind, device, seq_from FROM chain_records") == []
    heads = read.all("SELECT complete_seq, max_seq, gap_since_ms FROM chain_heads")
    assert heads == [(PER_DEVICE, PER_DEVICE, None)] * len(gateways) * len(DEVICES)
    print(
        f"\n{db.dialect.value}: {len(events)} events ({len(both)} sent to both workers), "
        f"{key_records} key records, log size {audit.size}, {audit.checkpoints} checkpoints; "
        + "; ".join(
            f"{s['name']}: {s['counts']}, appended {s['appended']} in {s['steps']} steps"
            for s in summaries
        )
    )
    db.close()


def _wait_until_waiting_for_lock(db: Database, thread: threading.Thread) -> None:
    """Until the other worker queues for the chain lock (PostgreSQL shows it in pg_locks;
    a SQLite writer waits inside its busy handler, invisible, so give it a moment)."""
    if db.dialect is Dialect.SQLITE:
        time.sleep(0.2)
        return
    deadline = time.monotonic() + 10
    query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    while db.read().one(query) != (1,):
        assert thread.is_alive() and time.monotonic() < deadline, "never waited for the lock"
        time.sleep(0.01)


def _second_waits_for_first(
    store_url: str, first: Callable[[Tx], object], second: Callable[[Tx], object]
) -> tuple[Database, list[object]]:
    """Run `first` in a transaction on one connection and, while it is still open, `second`
    in a transaction on another (a second worker); check that `second` waited for `first`
    to commit. Returns an open observer connection and what `second` returned.
    """
    db_a, db_b, observer = Database(store_url), Database(store_url), Database(store_url)
    for db in (db_a, db_b, observer):
        db.open()
    outcome: list[object] = []

    def other_worker() -> None:
        try:
            with db_b.transaction() as tx_b:
                outcome.append(second(tx_b))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=other_worker)
    with db_a.transaction() as tx_a:
        first(tx_a)
        thread.start()
        _wait_until_waiting_for_lock(observer, thread)
        assert thread.is_alive(), "the second worker did not wait for the first"
    thread.join(10)
    db_a.close()
    db_b.close()
    assert not any(isinstance(o, BaseException) for o in outcome), outcome
    return observer, outcome


def test_fork_split_over_two_workers_is_recorded(store_url: str) -> None:
    """regression: two PostgreSQL workers storing the two versions of a forked seq at the
    same time each missed the other's uncommitted row, and no FORK was recorded."""
    db = open_store(store_url)
    gw = Gateway("wh-1", "gw-1")
    enrol(db, "wh-1", "gw-1", gw.key.public_key, now_ms=BASE_MS)
    first = gw.event("door-1")
    x = gw.event("door-1", seq=2, prev=first.event_id)
    y = gw.event("door-1", seq=2, prev=first.event_id, grams=1)
    keys = load_keys(db.read())
    with db.transaction() as tx:
        Ingestor(keys, "worker-a").process(tx, [gw.message(first)], BASE_MS)
    db.close()

    observer, _ = _second_waits_for_first(
        store_url,
        lambda tx: Ingestor(keys, "worker-a").process(tx, [gw.message(x)], BASE_MS + 1),
        lambda tx: Ingestor(keys, "worker-b").process(tx, [gw.message(y)], BASE_MS + 2),
    )
    records = observer.read().all("SELECT kind, seq_from, event_ids FROM chain_records")
    assert records == [("FORK", 2, f"{x.event_id},{y.event_id}")]
    observer.close()


def test_gap_scan_waits_for_the_batch_that_fills_the_gap(store_url: str) -> None:
    """regression: on PostgreSQL a gap scan running while another worker's batch filled the
    gap (not yet committed) recorded a GAP that nothing would ever resolve."""
    db = open_store(store_url)
    gw = Gateway("wh-1", "gw-1")
    enrol(db, "wh-1", "gw-1", gw.key.public_key, now_ms=BASE_MS)
    events = gw.chain("scale-1", 4)
    keys = load_keys(db.read())
    with db.transaction() as tx:
        Ingestor(keys, "worker-a").process(tx, [gw.message(events[i]) for i in (0, 1, 3)], BASE_MS)
    db.close()

    observer, made = _second_waits_for_first(
        store_url,
        lambda tx: Ingestor(keys, "worker-a").process(tx, [gw.message(events[2])], BASE_MS + 1),
        lambda tx: gap_scan(tx, BASE_MS + 2, 0),
    )
    assert made == [0]
    assert observer.read().all("SELECT kind FROM chain_records") == []
    observer.close()


def test_two_workers_migrate_a_fresh_store_at_once(store_url: str) -> None:
    stores = [Database(store_url) for _ in range(2)]
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def run(db: Database) -> None:
        try:
            db.open()
            start.wait(5)
            migrate(db)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(db,)) for db in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []
    assert stores[0].read().all("SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    assert stores[1].read().all("SELECT id, size FROM log_state") == [(1, 0)]
    for db in stores:
        db.close()
