"""One anchor worker process for the two-worker store test (tests/test_store_workers.py).

    python tests/store_worker.py PLAN_JSON

The plan names the store URL, this worker's name, its message batches (hex payloads), an
anchor key seed and log origin, a key to enrol after a given batch, and a directory for the
start barrier. The worker opens its OWN `Database`, writes `<name>.ready` there and waits
for `go`, so both workers really run at the same time. Then, per batch, exactly what the
anchor service does: one transaction `Ingestor.process`, then `Sequencer.step`; at the end
it steps until nothing is pending and prints a JSON summary on stdout. A short pause after
each batch stands for the wait for the next MQTT batch; without it one SQLite worker tends
to run through all its batches before the other's busy handler wakes up.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

from anchor.config import LogSection
from anchor.ingest import Ingestor, Message
from anchor.log import Sequencer
from anchor.registry import enrol, load_keys
from anchor.store.db import Database
from pledgewatch.signing import SigningKey


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        time.sleep(0.005)


def main(plan_path: str) -> int:
    plan = json.loads(Path(plan_path).read_text())
    name = plan["name"]
    db = Database(plan["url"])
    db.open()
    ingestor = Ingestor(load_keys(db.read()), name)
    config = LogSection(
        checkpoint_interval_ms=10**9,
        checkpoint_max_entries=plan["checkpoint_max_entries"],
        gap_timeout_s=3600,
    )
    sequencer = Sequencer(db, plan["origin"], SigningKey(bytes.fromhex(plan["seed"])), config)
    barrier = Path(plan["barrier"])
    (barrier / f"{name}.ready").touch()
    wait_for(barrier / "go")

    counts: Counter[str] = Counter()
    appended = steps = 0
    for number, batch in enumerate(plan["batches"]):
        messages = [Message(m["topic"], bytes.fromhex(m["payload"])) for m in batch]
        with db.transaction() as tx:
            counts.update(ingestor.process(tx, messages, now_ms()).counts)
        if number == plan["enrol"]["after_batch"]:
            extra = plan["enrol"]
            enrol(
                db,
                extra["warehouse"],
                extra["gateway"],
                bytes.fromhex(extra["public_key"]),
                now_ms=now_ms(),
            )
        appended += sequencer.step(now_ms())
        steps += 1
        time.sleep(plan["pause_s"])  # as a service waits for its next batch: let the other in
    while (more := sequencer.step(now_ms())) > 0:
        appended += more
        steps += 1
    db.close()
    print(json.dumps({"name": name, "counts": dict(counts), "appended": appended, "steps": steps}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
