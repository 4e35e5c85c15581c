"""Benchmark the anchor: ingest, workers, checkpoint latency, proofs, verify; never fails on timing.

    .venv/bin/python bench/bench_anchor.py [--quick] [--events 20000] [--repeats 3]
                                           [--json PATH] [--profile PATH]

One message set is signed first, in this process: ``events`` WEIGHT events from 4 gateways of
one warehouse, 4 devices each (16 hash chains, seq from 1, ``prev`` linked), interleaved over
gateways and devices, signed with the gateways' keys exactly as a gateway signs them. Every
measurement uses those bytes. Figures are printed beside a peer or limit measured (or set) in
the **same run**, as a ratio:

1. **ingest ÷ bare PyNaCl verify.** The peer: ``nacl.signing.VerifyKey.verify`` over exactly
   the bytes each message's signature covers (domain + event body), one loop, measured right
   before each repeat. Two ways:

   a. *in process*: the service's own ``AnchorWorker.ingest`` (``Ingestor.process`` in one
      transaction: decode, key check, verify, store, chain check; then the receipts are built
      and signed; ack and publish are no-ops without a broker) on batches of ``BATCH`` (500)
      messages, each followed by ``Sequencer.step`` until nothing is pending and
      ``checkpoint_if_due``, on a real SQLite store (WAL, ``synchronous=FULL``);
   b. *end to end*: a fresh Mosquitto (``tests/servers.py``, with the broker setting
      docs/OPERATIONS.md prescribes, ``max_inflight_messages 1000``), the real
      ``pledgewatch anchor run`` (SQLite, no witness, ledger ``sqlite:`` every checkpoint,
      ``checkpoint_interval_ms = 1000``), and once it has subscribed a separate publisher
      process that publishes every message at QoS 1 as fast as the broker acknowledges
      (``max_inflight`` 1000). The clock runs from "go" to the read-only poll (every 10 ms)
      of the store seeing every event stored **and** sequenced (``log_state.size``).

2. **two workers ÷ one worker** on one PostgreSQL (``tests/servers.PostgresServer``, a fresh
   database per run), the same as 1b otherwise: one ``anchor run`` vs two (``worker-1``,
   ``worker-2``, the shared subscription), alternating, same messages.
3. **event → checkpoint latency** at a paced ``rate`` (1,000 events/s for ``latency_s``):
   per event, ``checkpoints.created_ms`` of the first checkpoint with ``size > leaf_index``
   minus the wall-clock time the publisher called ``publish()`` for it; p50 / p99 against
   ``checkpoint_interval_ms + 0.5 s``. The same run has the bank's witness
   (``pledgewatch witness run``) and gives two more latencies: **event → receipt**, the
   arrival at the publisher (subscribed to the receipts topics) of the first signed receipt
   naming the event, beside its PUBACK (the broker's round trip); **event → witnessed**,
   ``witnessed_ms`` of the first cosigned checkpoint covering it, beside event → checkpoint.
   Receipts are verified and every event must have a ``stored`` one.
4. **inclusion proofs** through the anchor's own path: ``leaves`` leaf hashes written to a real
   ``leaves`` table, ``anchor.publish.LeafMirror.sync`` (timed; its peer: one fetch of the same
   rows plus one ``MerkleTree.from_leaf_hashes``), then ``tree.inclusion_proof`` for random
   leaves (a sample is verified) against the target rate; again at ``small_leaves`` to show
   how proofs and the sync grow with the log.
5. **``pledgewatch verify``** of one proof file (built by ``anchor.proofs.build_event_proof``
   from the first 1b store) as a subprocess, interpreter start included, median of
   ``verify_runs``, interleaved with ``python -c pass``.

Every stream run is checked, not just timed: ``anchor status`` shows every event stored and
sequenced and nothing quarantined, no chain record (GAP/FORK/TAMPER) exists, leaf indexes are
gapless, every worker took a share, and the publisher got no refused PUBACK; a broken run
raises. Each anchor's exit status on SIGTERM is recorded afterwards, and a note flags any
worker that did not stop cleanly (the figures stand: they were taken before). CPU seconds of every
process (each anchor and its main thread, publisher, broker, PostgreSQL with its backends,
this poller) are read from /proc over the measured window, beside the whole machine's busy
CPU split into interrupts (loopback networking, which no process is charged for) and other
processes (not ours: on a shared machine a note says which runs they slowed).

``--profile PATH`` adds one in-process ingest run under cProfile and prints where time went.
``run(quick)`` returns a JSON-able dict with ``rows`` for bench/run.py.
"""

from __future__ import annotations

import argparse
import bisect
import cProfile
import dataclasses
import gc
import hashlib
import io
import json
import os
import platform
import pstats
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.signing
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from report import write_json

TESTS_DIR = Path(__file__).resolve().parent.parent / "tests"
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from anchor import config as anchor_config  # noqa: E402
from anchor import registry  # noqa: E402
from anchor.ingest import Message  # noqa: E402
from anchor.proofs import build_event_proof  # noqa: E402
from anchor.publish import LeafMirror  # noqa: E402
from anchor.service import BATCH, AnchorWorker, now_ms  # noqa: E402
from anchor.store.db import Database  # noqa: E402
from anchor.store.schema import migrate  # noqa: E402
from devices.base import Reading  # noqa: E402
from pledgewatch.events import ZERO_HASH, Kind  # noqa: E402
from pledgewatch.merkle import MerkleTree, verify_inclusion  # noqa: E402
from pledgewatch.receipts import ReceiptStatus, parse_receipt  # noqa: E402
from pledgewatch.signing import EVENT_DOMAIN, SigningKey, sign_event  # noqa: E402
from pledgewatch.topics import ROOT, events_topic  # noqa: E402

from anchor_rig import ORIGIN, WITNESS_NAME, AnchorRig, Proc, cli  # noqa: E402
from servers import MosquittoServer, PostgresServer  # noqa: E402

TARGET_INGEST_RATIO = 0.7  # ingest events/s ÷ bare verify/s, at least
TARGET_SCALE = 1.5  # two workers ÷ one worker, at least
LATENCY_SLACK_S = 0.5  # p99 event → checkpoint, at most checkpoint interval + this
TARGET_PROOFS_PER_S = 10_000.0
TARGET_VERIFY_S = 0.3
CHECKPOINT_INTERVAL_MS = 1000
BROKER_INFLIGHT = 1000  # docs/OPERATIONS.md's broker config (Mosquitto's default is 20)
WAREHOUSE = "wh-1"
GATEWAYS = ("gw-1", "gw-2", "gw-3", "gw-4")
DEVICES = ("lc-a1", "lc-a2", "lc-b1", "lc-b2")
POLL_S = 0.01
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sizes:
    events: int
    repeats: int
    rate: int
    latency_s: int
    leaves: int
    proofs: int
    verify_runs: int
    small_leaves: int  # the proof figures again at this log size, to show growth


FULL = Sizes(events=20_000, repeats=3, rate=1000, latency_s=20, leaves=1_000_000,
             proofs=20_000, verify_runs=21, small_leaves=100_000)  # fmt: skip
QUICK = Sizes(events=3_000, repeats=1, rate=1000, latency_s=4, leaves=100_000,
              proofs=5_000, verify_runs=5, small_leaves=10_000)  # fmt: skip


@dataclass
class Workload:
    """Signed messages (in publishing order) and what the peers need for the same bytes."""

    keys: dict[str, SigningKey]
    messages: list[Message]
    event_ids: list[str]
    covered: list[tuple[nacl.signing.VerifyKey, bytes, bytes]]  # (key, domain+body, sig)

    def write(self, path: Path) -> Path:
        with path.open("w", encoding="utf-8") as out:
            for m in self.messages:
                out.write(json.dumps([m.topic, m.payload.decode("utf-8")]) + "\n")
        return path


def make_workload(events: int) -> Workload:
    """``events`` chained WEIGHT events, round-robin over gateways, then devices."""
    keys = {gw: SigningKey(bytes([i + 1]) * 32) for i, gw in enumerate(GATEWAYS)}
    verify_keys = {gw: nacl.signing.VerifyKey(k.public_key) for gw, k in keys.items()}
    heads: dict[tuple[str, str], tuple[int, str]] = {}
    messages, event_ids, covered = [], [], []
    for i in range(events):
        gateway = GATEWAYS[i % len(GATEWAYS)]
        device = DEVICES[(i // len(GATEWAYS)) % len(DEVICES)]
        seq, prev = heads.get((gateway, device), (0, ZERO_HASH))
        reading = Reading(device=device, kind=Kind.WEIGHT, ts_ms=1_700_000_000_000 + i,
                          bay="A1", grams=i)  # fmt: skip
        event = reading.to_event(WAREHOUSE, gateway, seq + 1, prev)
        signed = sign_event(event, keys[gateway])
        event_id = signed.event_id
        heads[(gateway, device)] = (seq + 1, event_id)
        messages.append(Message(events_topic(WAREHOUSE, gateway), signed.to_wire(), i + 1, 1))
        event_ids.append(event_id)
        covered.append((verify_keys[gateway], EVENT_DOMAIN + event.canonical(), signed.signature))
    return Workload(keys, messages, event_ids, covered)


def verify_rate(workload: Workload) -> float:
    """Bare PyNaCl: signatures verified per second over the workload's exact bytes."""
    gc.collect()
    start = time.perf_counter()
    for key, message, signature in workload.covered:
        key.verify(message, signature)
    return len(workload.covered) / (time.perf_counter() - start)


def cpu_seconds(pid: int | None, *, main_thread_only: bool = False) -> float:
    """utime + stime of a process (all its threads, or its main thread) from /proc; 0 if it
    is gone."""
    if pid is None:
        return 0.0
    where = f"/proc/{pid}/task/{pid}/stat" if main_thread_only else f"/proc/{pid}/stat"
    try:
        text = Path(where).read_text()
    except OSError:
        return 0.0
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu(root: int | None) -> dict[int, float]:
    """CPU seconds of ``root`` and each of its children (PostgreSQL: postmaster + backends)."""
    if root is None:
        return {}
    out = {root: cpu_seconds(root)}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text.rsplit(")", 1)[1].split()[1]) == root:
            out[int(stat.parent.name)] = cpu_seconds(int(stat.parent.name))
    return out


def machine_busy_s() -> tuple[float, float]:
    """CPU seconds the whole machine spent not idle (all processes, ours or not), and of
    those in hard and soft interrupts (loopback networking; attributed to no process)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK, (values[5] + values[6]) / CLK_TCK


def status_kb(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {name} for pid {pid}")


class BenchAnchorRig(AnchorRig):
    """The test rig with production-like settings: ``checkpoint_interval_ms`` 1000 (the test
    rig uses 200), every other value the anchor's default; no witness unless ``witness=True``
    (then ``start_witness()`` runs the real ``pledgewatch witness run`` of the test rig)."""

    checkpoint_interval_ms: int = CHECKPOINT_INTERVAL_MS

    def start_witness(self, timeout: float = 30.0) -> Proc:
        """The bank's witness (config as the test rig writes it), once it accepts connections."""
        path = self.workdir / "witness.toml"
        path.write_text("\n".join([
            "[witness]", f'name = "{WITNESS_NAME}"', 'key_file = "witness.key"',
            'state_db = "witness.db"', "",
            "[listen]", 'host = "127.0.0.1"', f"port = {self.witness_port}", "",
            "[[logs]]", f'origin = "{ORIGIN}"', f'public_key = "{self.key.public_key.hex()}"', "",
        ]))  # fmt: skip
        proc = Proc(["witness", "run", "--config", str(path)], self.workdir / "witness.log")
        proc.start()
        self.procs.append(proc)
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.witness_port), timeout=1).close()
                return proc
            except OSError:
                proc.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"witness not listening within {timeout} s") from None
                time.sleep(0.05)

    def write_config(self, worker: str | None = None) -> Path:
        """The config of ``worker`` (default: the rig's own, at ``config_path``)."""
        worker = worker or self.worker
        path = self.config_path if worker == self.worker else self.workdir / f"{worker}.toml"
        path.write_text(self.config_text(worker))
        return path

    def config_text(self, worker: str) -> str:
        return "\n".join([
            "[anchor]", f'origin = "{ORIGIN}"', 'key_file = "anchor.key"',
            f'store = "{self.store}"', f'worker = "{worker}"', "",
            "[mqtt]", 'host = "127.0.0.1"', f"port = {self.broker_port}", "",
            "[log]", f"checkpoint_interval_ms = {self.checkpoint_interval_ms}", "",
            "[ledger]", 'url = "sqlite:ledger.db"', "every = 1", "",
            *([
                "[witness]", f'url = "http://127.0.0.1:{self.witness_port}"',
                f'name = "{WITNESS_NAME}"',
                f'public_key = "{self.witness_key.public_key.hex()}"', "",
            ] if self.witness else []),
        ])  # fmt: skip

    def start_worker(self, worker: str) -> Proc:
        """``anchor run`` for ``worker``: same store and broker, its own MQTT client id."""
        path = self.write_config(worker)
        proc = Proc(["anchor", "run", "--config", str(path)], self.workdir / f"anchor-{worker}.log")
        proc.start()
        self.procs.append(proc)
        return proc

    @property
    def store_url(self) -> str:
        return anchor_config.load(self.config_path).anchor.store


def enrol_gateways(store_url: str, workload: Workload) -> None:
    """Enrol every gateway key with the registry code ``anchor enrol`` runs (one leaf each)."""
    db = Database(store_url)
    db.open()
    try:
        for gateway, key in workload.keys.items():
            registry.enrol(db, WAREHOUSE, gateway, key.public_key, now_ms=now_ms())
    finally:
        db.close()


def pipeline_run(workload: Workload, workdir: Path, profile: Path | None = None) -> dict[str, Any]:
    """AnchorWorker.ingest + Sequencer.step over every message, in batches of BATCH."""
    rig = BenchAnchorRig(workdir, 1, witness=False)
    enrol_gateways(rig.store_url, workload)
    worker = AnchorWorker(anchor_config.load(rig.config_path), rig.key)
    worker.db.open()
    try:
        worker.ingestor.keys = registry.load_keys(worker.db.read())
        while worker.sequencer.step(now_ms()) > 0:  # the key leaves, before the clock
            pass
        batches = [
            workload.messages[i : i + BATCH] for i in range(0, len(workload.messages), BATCH)
        ]
        profiler = cProfile.Profile() if profile else None
        gc.collect()
        cpu0, start = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        for batch in batches:
            worker.ingest(batch)
            while worker.sequencer.step(now_ms()) > 0:
                pass
            worker.sequencer.checkpoint_if_due(now_ms())
        if profiler:
            profiler.disable()
            profiler.dump_stats(str(profile))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu0
        tx = worker.db.read()
        size = tx.one("SELECT size FROM log_state WHERE id = 1")[0]
        records = tx.one("SELECT COUNT(*) FROM chain_records")[0]
    finally:
        worker.db.close()
    events = len(workload.messages)
    if dict(worker.counts) != {"stored": events} or size != events + len(GATEWAYS) or records:
        raise RuntimeError(f"bad in-process run: {dict(worker.counts)}, log size {size}, "
                           f"{records} chain records")  # fmt: skip
    return {"per_s": events / seconds, "seconds": seconds, "cpu_s": cpu, "batches": len(batches)}


class PublisherProcess:
    """The publisher in a child process (``bench_anchor.py _publish``); JSON lines out."""

    def __init__(
        self,
        port: int,
        messages: Path,
        count: int,
        rate: int,
        times: Path | None,
        receipts: Path | None = None,
    ):
        self.argv = [sys.executable, str(Path(__file__).resolve()), "_publish",
                     "--port", str(port), "--messages", str(messages), "--count", str(count),
                     "--rate", str(rate)]  # fmt: skip
        if times is not None:
            self.argv += ["--times", str(times)]
        if receipts is not None:
            self.argv += ["--receipts", str(receipts)]
        self.marks: dict[str, Any] = {}
        self._cond = threading.Condition()
        self.proc: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self, timeout: float = 30.0) -> None:
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.wait("ready", timeout)

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.marks.update(json.loads(line))
                self._cond.notify_all()
        with self._cond:
            self.marks["eof"] = True
            self._cond.notify_all()

    def go(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def wait(self, name: str, timeout: float) -> Any:
        with self._cond:
            self._cond.wait_for(lambda: name in self.marks or "eof" in self.marks, timeout)
            if name not in self.marks:
                raise RuntimeError(f"publisher: no {name!r} within {timeout} s: {self.marks}")
            return self.marks[name]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def publisher_main(argv: list[str]) -> int:
    """Child process: connect, say ready, wait for "go", publish (paced or not), report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--messages", type=Path, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument(
        "--rate", type=int, default=0, help="messages/s; 0 = as fast as QoS 1 allows"
    )
    parser.add_argument("--times", type=Path, help="write each publish() wall time (s) here")
    parser.add_argument(
        "--receipts",
        type=Path,
        help="subscribe to the warehouse's receipts topics; write each receipt's arrival wall "
        "time and bytes, and each message's PUBACK wall time, here",
    )
    args = parser.parse_args(argv)
    with args.messages.open(encoding="utf-8") as fh:
        lines = [json.loads(line) for _, line in zip(range(args.count), fh, strict=False)]
    messages = [(topic, payload.encode("utf-8")) for topic, payload in lines]
    connected, done, subscribed = threading.Event(), threading.Event(), threading.Event()
    acked = [0, 0]  # PUBACKs, refusals; only paho's network thread writes
    puback_at: dict[int, float] = {}  # mid -> wall time of its PUBACK
    receipts: list[tuple[float, bytes]] = []  # (arrival wall time, receipt bytes)
    receipted = [0]  # receipt items seen (each item has one "status" key)

    def on_publish(_c: object, _u: object, mid: int, reason: Any, _p: object) -> None:
        puback_at[mid] = time.time()
        acked[0] += 1
        acked[1] += bool(reason.is_failure)
        if acked[0] == len(messages):
            done.set()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        receipts.append((time.time(), bytes(msg.payload)))
        receipted[0] += msg.payload.count(b'"status"')

    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id="pledgewatch-bench-publisher",
                         protocol=MQTTProtocolVersion.MQTTv5)  # fmt: skip
    client.max_inflight_messages_set(BROKER_INFLIGHT)
    client.max_queued_messages_set(0)
    client.on_connect = lambda *_: connected.set()
    client.on_publish = on_publish
    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect("127.0.0.1", args.port)
    client.loop_start()

    def emit(**values: Any) -> None:
        print(json.dumps(values), flush=True)

    try:
        if not connected.wait(10):
            raise RuntimeError("publisher: no CONNACK within 10 s")
        if args.receipts is not None:
            if len(messages) > 65_000:  # MQTT message ids wrap at 65,535: PUBACKs would mix
                raise RuntimeError("publisher: --receipts takes at most 65,000 messages")
            client.subscribe(f"{ROOT}/{WAREHOUSE}/+/receipts", qos=1)
            if not subscribed.wait(10):
                raise RuntimeError("publisher: no SUBACK within 10 s")
        emit(ready=time.monotonic())
        sys.stdin.readline()
        start = time.monotonic()
        times, mids = _publish_all(client, messages, args.rate)
        emit(published=time.monotonic(), publish_calls_s=time.monotonic() - start)
        if not done.wait(60 + len(messages) / 200):
            raise RuntimeError(f"publisher: {acked[0]} of {len(messages)} PUBACKs")
        emit(acked=time.monotonic(), refused=acked[1],
             first_to_last_publish_s=times[-1] - times[0])  # fmt: skip
        if args.times is not None:
            args.times.write_text(json.dumps(times))
        if args.receipts is not None:
            deadline = time.monotonic() + 60
            while receipted[0] < len(messages) and time.monotonic() < deadline:
                time.sleep(0.05)
            got = list(receipts)
            args.receipts.write_text(json.dumps({
                "puback": [puback_at[mid] for mid in mids],
                "receipts": [[at, payload.decode("utf-8")] for at, payload in got],
            }))  # fmt: skip
            emit(receipted=receipted[0])
    finally:
        client.disconnect()
        client.loop_stop()
    emit(final=True)
    return 0


def _publish_all(
    client: mqtt.Client, messages: list[tuple[str, bytes]], rate: int
) -> tuple[list[float], list[int]]:
    """Publish every message at QoS 1; with ``rate``, message i no earlier than start + i/rate.
    Returns the wall-clock time (time.time()) just before each ``publish()`` call, and each
    message's MQTT message id."""
    publish, wall, mono, sleep = client.publish, time.time, time.monotonic, time.sleep
    times, mids = [], []
    start = mono()
    for i, (topic, payload) in enumerate(messages):
        if rate:
            delay = start + i / rate - mono()
            if delay > 0:
                sleep(delay)
        times.append(wall())
        mids.append(publish(topic, payload, qos=1).mid)
    return times, mids


class StoreReader:
    """Read-only view of the anchor store for polling and checks (SQLite ``mode=ro``)."""

    def __init__(self, url: str) -> None:
        self.db: Database | None = None
        self.conn: sqlite3.Connection | None = None
        if url.startswith("sqlite:"):
            path = Database(url).sqlite_path
            self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        else:
            self.db = Database(url)
            self.db.open()

    def all(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        if self.conn is not None:
            return self.conn.execute(sql, params).fetchall()
        assert self.db is not None
        return self.db.read().all(sql, params)

    def progress(self) -> tuple[int, int | None]:
        """(log size, events stored); stored only on SQLite, where MAX(rowid) is O(log n)."""
        if self.conn is not None:
            size, stored = self.all(
                "SELECT (SELECT size FROM log_state WHERE id = 1), (SELECT MAX(rowid) FROM events)"
            )[0]
            return size, stored or 0
        return self.all("SELECT size FROM log_state WHERE id = 1")[0][0], None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        if self.db is not None:
            self.db.close()


@dataclass
class Progress:
    """What the poll saw, in monotonic seconds."""

    events: int
    keys: int
    all_stored: float | None = None
    first_sequenced: float | None = None
    p10: tuple[float, int] | None = None
    p90: tuple[float, int] | None = None
    done: float | None = None
    polls: int = 0

    def see(self, now: float, size: int, stored: int | None) -> None:
        self.polls += 1
        sequenced = size - self.keys
        if self.all_stored is None and stored is not None and stored >= self.events:
            self.all_stored = now
        if self.first_sequenced is None and sequenced > 0:
            self.first_sequenced = now
        if self.p10 is None and sequenced >= 0.1 * self.events:
            self.p10 = (now, sequenced)
        if self.p90 is None and sequenced >= 0.9 * self.events:
            self.p90 = (now, sequenced)
        if self.done is None and sequenced >= self.events:
            self.done = now


@dataclass
class StreamSpec:
    name: str
    events: int
    workers: int = 1
    rate: int = 0  # 0: as fast as the broker takes them
    postgres: PostgresServer | None = None
    database: str | None = None
    await_checkpoint: bool = False
    witness: bool = False  # run the bank's witness; await and time the cosigned checkpoints
    receipts: bool = False  # the publisher times every event's receipt (and PUBACK)


def stream_run(
    spec: StreamSpec, workload: Workload, messages: Path, workdir: Path
) -> dict[str, Any]:
    """One run: fresh broker, real anchor worker(s), separate publisher; timed and checked."""
    store = "sqlite:anchor.db"
    if spec.postgres is not None:
        assert spec.database is not None
        store = spec.postgres.create_database(spec.database)
    broker = MosquittoServer(max_inflight_messages=BROKER_INFLIGHT)
    broker.start()
    rig: BenchAnchorRig | None = None
    publisher: PublisherProcess | None = None
    reader: StoreReader | None = None
    try:
        rig = BenchAnchorRig(workdir, broker.port, witness=spec.witness, store=store)
        enrol_gateways(rig.store_url, workload)
        if spec.witness:
            rig.start_witness()
        procs = [rig.start_worker(f"worker-{i + 1}") for i in range(spec.workers)]
        for proc in procs:
            _wait_log(proc, "subscribed to $share/", 30)
        times = workdir / "publish-times.json" if spec.rate else None
        receipts = workdir / "receipts.json" if spec.receipts else None
        publisher = PublisherProcess(broker.port, messages, spec.events, spec.rate, times,
                                     receipts)  # fmt: skip
        publisher.start()
        reader = StoreReader(rig.store_url)
        result = _timed(spec, rig, procs, broker, publisher, reader)
        if spec.await_checkpoint:
            _await_checkpoint(reader, spec.events + len(GATEWAYS), procs, spec.witness)
        publisher.wait("final", 90)
        if publisher.marks["refused"]:
            raise RuntimeError(f"broker refused {publisher.marks['refused']} publishes")
        result["publisher"] = {k: v for k, v in publisher.marks.items() if k != "eof"}
        result["publisher_acked_s"] = publisher.marks["acked"] - result["t0"]
        result["anchor_key"] = rig.key.public_key.hex()
        result["checks"] = _check_store(rig, reader, spec)
        if times is not None:
            ids = workload.event_ids[: spec.events]
            result |= _all_latencies(spec, reader, ids, times, receipts, rig.key.public_key)
        result["store_url"] = rig.store_url
        # Everything measured and checked is in by now; a worker that does not stop cleanly
        # on SIGTERM is a defect of its own, reported as a note rather than losing the run.
        result["exit_codes"] = [proc.stop() for proc in reversed(procs)]
        return result
    finally:
        if reader is not None:
            reader.close()
        if publisher is not None:
            publisher.kill()
        if rig is not None:
            for proc in rig.procs:
                proc.kill()
        broker.close()


def _timed(
    spec: StreamSpec,
    rig: BenchAnchorRig,
    procs: list[Proc],
    broker: MosquittoServer,
    publisher: PublisherProcess,
    reader: StoreReader,
) -> dict[str, Any]:
    pids: dict[str, int | None] = {p.log_path.stem: p.proc.pid for p in procs if p.proc}
    pids |= {"publisher": publisher.pid, "broker": broker.pid}
    pids |= {p.log_path.stem: p.proc.pid for p in rig.procs if p.argv[0] == "witness" and p.proc}
    progress = Progress(spec.events, len(GATEWAYS))
    pg_root = None if spec.postgres is None else spec.postgres.pid
    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    main0 = {n: cpu_seconds(pid, main_thread_only=True) for n, pid in pids.items()}
    pg0, busy0, own0 = tree_cpu(pg_root), machine_busy_s(), time.process_time()
    t0 = time.monotonic()
    publisher.go()
    deadline = t0 + 60 + spec.events / 200
    next_check = t0
    while progress.done is None:
        now = time.monotonic()
        progress.see(now, *reader.progress())
        if now >= next_check:
            next_check = now + 0.5
            for proc in procs:
                proc.check_alive()
            if now > deadline:
                raise RuntimeError(f"not done within {deadline - t0:.0f} s: {progress}\n"
                                   f"{_logs(procs)}")  # fmt: skip
        time.sleep(POLL_S)
    wall = progress.done - t0
    cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
    if pg_root is not None:
        pg1 = tree_cpu(pg_root)
        cpu["postgres (all backends)"] = sum(v - pg0.get(pid, 0.0) for pid, v in pg1.items())
    cpu["bench poller (this process)"] = time.process_time() - own0
    busy, irq = (b - a for a, b in zip(busy0, machine_busy_s(), strict=True))
    anchors = {n: pid for n, pid in pids.items() if n.startswith("anchor") and pid is not None}
    steady = None
    if progress.p10 and progress.p90 and progress.p90[0] > progress.p10[0]:
        (t10, n10), (t90, n90) = progress.p10, progress.p90
        steady = (n90 - n10) / (t90 - t10)
    anchor_cpu = sum(cpu[n] for n in anchors)
    main = {n: cpu_seconds(pid, main_thread_only=True) - main0[n] for n, pid in anchors.items()}
    return {
        "name": spec.name,
        "t0": t0,
        "events": spec.events,
        "workers": spec.workers,
        "rate": spec.rate,
        "wall_s": wall,
        "per_s": spec.events / wall,
        "steady_per_s": steady,
        "all_stored_s": None if progress.all_stored is None else progress.all_stored - t0,
        "first_sequenced_s": (progress.first_sequenced or t0) - t0,
        "cpu_s": cpu,
        "anchor_cpu_s": anchor_cpu,
        "anchor_main_thread_cpu_s": main,
        "cpu_ceiling_per_s": spec.events / anchor_cpu if anchor_cpu else None,
        "machine_busy_s": busy,
        "machine_capacity_s": wall * (os.cpu_count() or 1),
        "irq_cpu_s": irq,
        "others_cpu_s": max(0.0, busy - irq - sum(cpu.values())),
        "anchor_peak_rss_mb": {
            n: status_kb(pid, "VmHWM") * 1024 / 1e6 for n, pid in anchors.items()
        },
        "polls": progress.polls,
    }


def _wait_log(proc: Proc, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in proc.log_path.read_text(errors="replace"):
        proc.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {text!r} in {proc.log_path} within {timeout} s")
        time.sleep(0.05)


def _logs(procs: list[Proc]) -> str:
    return "\n".join(
        f"--- {p.log_path.name} ---\n{p.log_path.read_text(errors='replace')[-2000:]}"
        for p in procs
    )


def _await_checkpoint(
    reader: StoreReader, size: int, procs: list[Proc], witnessed: bool = False
) -> None:
    """Until a checkpoint (a cosigned one, with ``witnessed``) covers ``size`` leaves."""
    sql = "SELECT MAX(size) FROM checkpoints" + (
        " WHERE cosigned_note IS NOT NULL" if witnessed else ""
    )
    deadline = time.monotonic() + 10 + CHECKPOINT_INTERVAL_MS / 1000
    while (reader.all(sql)[0][0] or 0) < size:
        if time.monotonic() > deadline:
            what = "cosigned checkpoint" if witnessed else "checkpoint"
            raise RuntimeError(f"no {what} of size {size} within 10 s\n{_logs(procs)}")
        time.sleep(0.05)


def _check_store(rig: BenchAnchorRig, reader: StoreReader, spec: StreamSpec) -> dict[str, Any]:
    """The anchor's own status plus raw-table checks; raises on anything wrong."""
    status = json.loads(cli("anchor", "status", "--json", "--config", str(rig.config_path)).stdout)
    keys = len(GATEWAYS)
    ((low, high, count),) = reader.all(
        "SELECT MIN(leaf_index), MAX(leaf_index), COUNT(*) FROM events"
    )
    records = reader.all("SELECT COUNT(*) FROM chain_records")[0][0]
    by_worker = dict(reader.all("SELECT worker, COUNT(*) FROM events GROUP BY worker"))
    problems = []
    want = {"events": spec.events, "unsequenced": 0, "quarantined": 0,
            "log_size": spec.events + keys}  # fmt: skip
    problems += [
        f"status {k}: got {status[k]}, want {v}" for k, v in want.items() if status[k] != v
    ]
    if (low, high, count) != (keys, spec.events + keys - 1, spec.events):
        problems.append(f"event leaf indexes: got {low}..{high} x{count}, want gapless")
    if records:
        problems.append(f"{records} chain records (GAP/FORK/TAMPER)")
    if spec.workers > 1 and len(by_worker) != spec.workers:
        problems.append(f"events by worker {by_worker}: not every worker took a share")
    if problems:
        raise RuntimeError("bad stream run: " + "; ".join(problems))
    return {"status": status, "events_by_worker": by_worker}


def _latencies(
    reader: StoreReader, event_ids: list[str], times_path: Path, witnessed: bool = False
) -> dict[str, Any]:
    """Per event: ``created_ms`` of the first checkpoint with size > its leaf index − publish
    time; with ``witnessed``, ``witnessed_ms`` (the anchor's clock when it stored the witness's
    cosignature) of the first cosigned checkpoint with size > its leaf index. The witness
    cosigns the newest checkpoint each time, so cosigned sizes rise with ``witnessed_ms``."""
    published = json.loads(times_path.read_text())
    leaf_of = dict(reader.all("SELECT event_id, leaf_index FROM events"))
    checkpoints = reader.all(
        "SELECT size, witnessed_ms FROM checkpoints WHERE cosigned_note IS NOT NULL ORDER BY size"
        if witnessed
        else "SELECT size, created_ms FROM checkpoints ORDER BY size"
    )
    if witnessed and [t for _, t in checkpoints] != sorted(t for _, t in checkpoints):
        raise RuntimeError("cosigned checkpoints: witnessed_ms does not rise with size")
    sizes = [size for size, _ in checkpoints]
    samples = []
    for event_id, at in zip(event_ids, published, strict=True):
        k = bisect.bisect_right(sizes, leaf_of[event_id])
        samples.append(checkpoints[k][1] / 1000 - at)
    return {**_spread(samples), "checkpoints": len(checkpoints),
            "achieved_rate": (len(published) - 1) / (published[-1] - published[0])}  # fmt: skip


def _all_latencies(
    spec: StreamSpec,
    reader: StoreReader,
    event_ids: list[str],
    times: Path,
    receipts: Path | None,
    anchor_key: bytes,
) -> dict[str, Any]:
    out = {"latency": _latencies(reader, event_ids, times)}
    if spec.witness:
        out["witnessed"] = _latencies(reader, event_ids, times, witnessed=True)
    if receipts is not None:
        out |= _receipt_latencies(event_ids, times, receipts, anchor_key)
    return out


def _receipt_latencies(
    event_ids: list[str], times_path: Path, receipts_path: Path, anchor_key: bytes
) -> dict[str, Any]:
    """Per event: arrival of the first receipt naming it at the publisher − its publish time
    (each receipt's signature verified; every event must have a ``stored`` receipt), and
    its PUBACK − publish time (the broker's round trip, the peer)."""
    published = json.loads(times_path.read_text())
    seen = json.loads(receipts_path.read_text())
    first: dict[str, float] = {}
    for at, payload in seen["receipts"]:
        for item in parse_receipt(payload.encode("utf-8"), anchor_key).items:
            if item.status is not ReceiptStatus.STORED:
                raise RuntimeError(f"receipt for {item.event_id}: {item.status} {item.reason}")
            first.setdefault(item.event_id, at)
    missing = [e for e in event_ids if e not in first]
    if missing:
        raise RuntimeError(f"{len(missing)} of {len(event_ids)} events got no receipt")
    receipt = [first[e] - at for e, at in zip(event_ids, published, strict=True)]
    puback = [b - a for a, b in zip(published, seen["puback"], strict=True)]
    return {"receipt": {**_spread(receipt), "receipts": len(seen["receipts"])},
            "puback": _spread(puback)}  # fmt: skip


def _spread(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100)
    return {
        "p50_s": statistics.median(samples),
        "p90_s": cuts[89],
        "p99_s": cuts[98],
        "max_s": max(samples),
        "min_s": min(samples),
    }


def proofs_run(leaves: int, proofs: int, repeats: int, workdir: Path) -> dict[str, Any]:
    """LeafMirror.sync of ``leaves`` rows of a real leaves table, then inclusion proofs."""
    db = Database(f"sqlite:///{workdir / 'proofs.db'}")
    db.open()
    try:
        migrate(db)
        sha256 = hashlib.sha256
        hashes = [sha256(b"\x00" + i.to_bytes(8, "big")).digest() for i in range(leaves)]
        with db.transaction() as tx:
            tx.executemany("INSERT INTO leaves (leaf_index, leaf_hash) VALUES (?, ?)",
                           list(enumerate(hashes)))  # fmt: skip
        gc.collect()
        rss0 = status_kb(os.getpid(), "VmRSS")
        start = time.perf_counter()
        mirror = LeafMirror()
        mirror.sync(db)
        sync_s = time.perf_counter() - start
        gc.collect()
        rss1 = status_kb(os.getpid(), "VmRSS")
        peer = _batched_sync(db)
        tree = mirror.tree
        if tree.size != leaves or tree.root() != peer.pop("tree").root():
            raise RuntimeError("LeafMirror and the batched peer disagree")
    finally:
        db.close()
    rng = random.Random(7)
    indexes = [rng.randrange(leaves) for _ in range(proofs)]
    samples, made = [], []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        made = [tree.inclusion_proof(i, leaves) for i in indexes]
        samples.append(time.perf_counter() - start)
    root = tree.root()
    for i, proof in list(zip(indexes, made, strict=True))[:200]:
        verify_inclusion(hashes[i], i, leaves, proof, root)  # raises if wrong
    return {
        "leaves": leaves,
        "sync_s": sync_s,
        "sync_rss_growth_mb": (rss1 - rss0) * 1024 / 1e6,
        **peer,
        "proofs": proofs,
        "proof_samples_s": samples,
        "proofs_per_s": proofs / statistics.median(samples),
        "verified_sample": min(200, proofs),
    }


def _batched_sync(db: Database) -> dict[str, Any]:
    """The peer: the same rows in one fetch, then one ``MerkleTree.from_leaf_hashes``."""
    gc.collect()
    start = time.perf_counter()
    rows = db.read().all(
        "SELECT leaf_index, leaf_hash FROM leaves WHERE leaf_index >= ? ORDER BY leaf_index", (0,)
    )
    fetched = time.perf_counter()
    tree = MerkleTree.from_leaf_hashes([bytes(h) for _, h in rows])
    end = time.perf_counter()
    return {"batched_sync_s": end - start, "fetch_s": fetched - start, "tree": tree}


def make_proof(store_url: str, event_id: str, path: Path) -> Path:
    db = Database(store_url)
    db.open()
    try:
        path.write_bytes(build_event_proof(db, event_id))
    finally:
        db.close()
    return path


def verify_cli_run(proof: Path, anchor_key: bytes, runs: int) -> dict[str, Any]:
    """Wall time of ``pledgewatch verify FILE`` and of ``python -c pass``, interleaved."""
    script = Path(sys.executable).with_name("pledgewatch")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "pledgewatch.cli"]
    verify = [*command, "verify", str(proof), "--anchor-key", anchor_key.hex()]
    bare = [sys.executable, "-c", "pass"]
    samples: dict[str, list[float]] = {"verify": [], "bare": []}
    for _ in range(runs):
        for name, argv in (("verify", verify), ("bare", bare)):
            start = time.perf_counter()
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            samples[name].append(time.perf_counter() - start)
            if done.returncode != 0:
                raise RuntimeError(
                    f"{argv[:3]} exited {done.returncode}: {done.stdout}{done.stderr}"
                )
    return {
        "command": "pledgewatch verify" if script.exists() else "python -m pledgewatch.cli verify",
        "runs": runs,
        "samples_s": samples,
        "verify_s": statistics.median(samples["verify"]),
        "bare_python_s": statistics.median(samples["bare"]),
        "proof_bytes": proof.stat().st_size,
    }


def run(
    quick: bool = False,
    events: int | None = None,
    repeats: int | None = None,
    profile: str | None = None,
) -> dict[str, Any]:
    """Measure everything (``quick``: small sizes); returns medians, per-run figures, ``rows``."""
    sizes = dataclasses.replace(
        QUICK if quick else FULL,
        **{k: v for k, v in {"events": events, "repeats": repeats}.items() if v is not None},
    )
    if sizes.events < 100 or sizes.repeats < 1:
        raise ValueError("events must be at least 100 and repeats at least 1")
    started = time.perf_counter()
    signed_at = time.perf_counter()
    workload = make_workload(max(sizes.events, sizes.rate * sizes.latency_s))
    sign_s = time.perf_counter() - signed_at
    n = sizes.events
    part = Workload(workload.keys, workload.messages[:n], workload.event_ids[:n],
                    workload.covered[:n])  # fmt: skip
    out: dict[str, Any] = {"pipeline": [], "e2e": [], "pg_one": [], "pg_two": []}
    with tempfile.TemporaryDirectory(prefix="pw-bench-anchor-") as name:
        tmp = Path(name)
        messages = workload.write(tmp / "messages.jsonl")
        for r in range(sizes.repeats):
            peer = verify_rate(part)
            inproc = pipeline_run(part, tmp / f"inproc-{r}")
            peer_e2e = verify_rate(part)
            e2e = stream_run(StreamSpec("e2e sqlite", n, await_checkpoint=r == 0), part,
                             messages, tmp / f"e2e-{r}")  # fmt: skip
            out["pipeline"].append({"verify_per_s": peer, **inproc})
            out["e2e"].append({"verify_per_s": peer_e2e, **e2e})
        proof_path = make_proof(out["e2e"][0]["store_url"], part.event_ids[n // 2],
                                tmp / "proof.json")  # fmt: skip
        anchor_key = bytes.fromhex(out["e2e"][0]["anchor_key"])
        postgres = PostgresServer()
        postgres.start()
        try:
            for r in range(sizes.repeats):
                for workers, key in ((1, "pg_one"), (2, "pg_two")):
                    spec = StreamSpec(f"pg {workers} worker(s)", n, workers=workers,
                                      postgres=postgres, database=f"bench_{key}_{r}")  # fmt: skip
                    res = stream_run(spec, part, messages, tmp / f"{key}-{r}")
                    out[key].append({"verify_per_s": verify_rate(part), **res})
        finally:
            postgres.close()
        count = sizes.rate * sizes.latency_s
        out["latency"] = stream_run(
            StreamSpec("latency sqlite", count, rate=sizes.rate, await_checkpoint=True,
                       witness=True, receipts=True),
            workload, messages, tmp / "latency",
        )  # fmt: skip
        (tmp / "small").mkdir()
        out["proofs_small"] = proofs_run(sizes.small_leaves, sizes.proofs, sizes.repeats,
                                         tmp / "small")  # fmt: skip
        out["proofs"] = proofs_run(sizes.leaves, sizes.proofs, sizes.repeats, tmp)
        out["verify_cli"] = verify_cli_run(proof_path, anchor_key, sizes.verify_runs)
        if profile is not None:
            pipeline_run(part, tmp / "profiled", Path(profile))
            out["profile"] = {"path": profile, "breakdown": profile_breakdown(Path(profile))}
    result = summarize(sizes, quick, out, len(part.messages[0].payload))
    result["seconds"] = {"signing": sign_s, "total": time.perf_counter() - started}
    return result


def med(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median rate (the lower middle one for an even count)."""
    return sorted(runs, key=lambda r: r["per_s"])[(len(runs) - 1) // 2]


def cpu_view(run: dict[str, Any]) -> dict[str, Any]:
    """Where the CPU of one stream run went: per process, anchors' main threads, the rest."""
    keys = ("wall_s", "per_s", "cpu_s", "anchor_main_thread_cpu_s", "machine_busy_s",
            "machine_capacity_s", "irq_cpu_s", "others_cpu_s")  # fmt: skip
    return {k: run[k] for k in keys}


def summarize(sizes: Sizes, quick: bool, out: dict[str, Any], wire_bytes: int) -> dict[str, Any]:
    pipe, e2e, one, two = out["pipeline"], out["e2e"], out["pg_one"], out["pg_two"]
    pg_ratios = [b["per_s"] / a["per_s"] for a, b in zip(one, two, strict=True)]
    median = {
        "pipeline_per_s": med(pipe, "per_s"),
        "pipeline_verify_per_s": med(pipe, "verify_per_s"),
        "pipeline_ratio": statistics.median(r["per_s"] / r["verify_per_s"] for r in pipe),
        "e2e_per_s": med(e2e, "per_s"),
        "e2e_verify_per_s": med(e2e, "verify_per_s"),
        "e2e_ratio": statistics.median(r["per_s"] / r["verify_per_s"] for r in e2e),
        "e2e_cpu_ceiling_per_s": med(e2e, "cpu_ceiling_per_s"),
        "e2e_publisher_per_s": statistics.median(r["events"] / r["publisher_acked_s"] for r in e2e),
        "e2e_anchor_rss_mb": statistics.median(
            max(r["anchor_peak_rss_mb"].values()) for r in e2e),
        "pg_one_per_s": med(one, "per_s"),
        "pg_two_per_s": med(two, "per_s"),
        "pg_ratio": statistics.median(pg_ratios),
        "pg_ratios": pg_ratios,
        "pg_one_verify_per_s": med(one, "verify_per_s"),
        "pg_one_ceiling_per_s": med(one, "cpu_ceiling_per_s"),
        "pg_two_ceiling_per_s": med(two, "cpu_ceiling_per_s"),
        "pg_two_shares": [r["checks"]["events_by_worker"] for r in two],
    }  # fmt: skip
    cpu = {
        "e2e 1 worker SQLite": cpu_view(median_run(e2e)),
        "PG 1 worker": cpu_view(median_run(one)),
        "PG 2 workers": cpu_view(median_run(two)),
        "latency run (paced)": cpu_view(out["latency"]),
    }
    result = {
        "benchmark": "anchor",
        "quick": quick,
        "params": {
            **dataclasses.asdict(sizes),
            "gateways": len(GATEWAYS),
            "devices_per_gateway": len(DEVICES),
            "batch": BATCH,
            "wire_bytes": wire_bytes,
            "checkpoint_interval_ms": CHECKPOINT_INTERVAL_MS,
            "broker": f"mosquitto, tests/servers.py defaults + max_inflight_messages "
            f"{BROKER_INFLIGHT} (docs/OPERATIONS.md)",
        },
        "environment": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "median": median,
        "cpu_of_median_runs": cpu,
        "latency": out["latency"],
        "proofs": out["proofs"],
        "proofs_small": out["proofs_small"],
        "verify_cli": out["verify_cli"],
        "runs": {k: out[k] for k in ("pipeline", "e2e", "pg_one", "pg_two")},
        "notes": notes(sizes, quick, [*e2e, *one, *two, out["latency"]]),
    }
    if "profile" in out:
        result["profile"] = out["profile"]
    result["rows"] = rows(result)
    return result


def notes(sizes: Sizes, quick: bool, streams: list[dict[str, Any]]) -> list[str]:
    out = [
        f"median of {sizes.repeats} repeat(s) for the ingest and worker figures; each stream "
        "run on a fresh broker; one-worker and two-worker runs alternate",
        "anchor RSS at 100k / 1M stored events is bench_growth's; here: anchor VmHWM after the "
        "e2e run and the LeafMirror's RSS growth at the proof size (VmRSS after − before the "
        "sync, after gc: an upper bound, freed rows may stay with the allocator)",
        "the latency run (event → receipt / checkpoint / witnessed) runs the bank's witness "
        "(`pledgewatch witness run`) as production does; witnessed_ms is the anchor's clock "
        "when it stored the cosignature; receipt times are the publisher's clock when each "
        "signed receipt arrived on the receipts topic (one machine, one clock)",
    ]
    unclean = [f"{r['name']}: {r['exit_codes']}" for r in streams if any(r["exit_codes"])]
    if unclean:
        out.append(
            f"ANCHOR DID NOT STOP CLEANLY on SIGTERM in {len(unclean)} of {len(streams)} stream "
            f"runs (exit codes; -15 = killed by the signal): {'; '.join(unclean)}. The figures "
            "stand (measured and checked before the stop); the shutdown is a bug to fix"
        )
    shared = [r for r in streams if r["others_cpu_s"] > 0.1 * r["machine_capacity_s"]]
    if shared:
        worst = max(shared, key=lambda r: r["others_cpu_s"] / r["machine_capacity_s"])
        out.append(
            f"the machine was shared: in {len(shared)} of {len(streams)} stream runs other "
            f"processes (not ours) used > 10 % of all CPU time, up to "
            f"{100 * worst['others_cpu_s'] / worst['machine_capacity_s']:.0f} % "
            f"({worst['name']}); those runs are slower than this code is"
        )
    if quick:
        out.insert(0, "QUICK run: small sizes, figures indicative only")
    return out


def row(
    figure: str,
    value: float | None,
    unit: str,
    *,
    peer: str | None = None,
    peer_value: float | None = None,
    ratio: float | None = None,
    target: str | None = None,
    met: bool | None = None,
) -> dict[str, Any]:
    """One line of the report; ``ratio`` defaults to value ÷ peer_value; ``met`` None: info."""
    if ratio is None and value is not None and peer_value:
        ratio = value / peer_value
    return {"figure": figure, "value": value, "unit": unit, "peer": peer,
            "peer_value": peer_value, "ratio": ratio, "target": target, "met": met}  # fmt: skip


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    m, lat, pr, vc = result["median"], result["latency"], result["proofs"], result["verify_cli"]
    small = result["proofs_small"]
    limit = CHECKPOINT_INTERVAL_MS / 1000 + LATENCY_SLACK_S
    want = f">= {TARGET_INGEST_RATIO}x verify"
    leaves = f"{pr['leaves']:,}"
    return [
        row("anchor ingest in process (ingest + sequence, SQLite)", m["pipeline_per_s"],
            "events/s", peer="PyNaCl verify/s", peer_value=m["pipeline_verify_per_s"],
            ratio=m["pipeline_ratio"], target=want,
            met=m["pipeline_ratio"] >= TARGET_INGEST_RATIO),
        row("anchor end to end, 1 worker, SQLite", m["e2e_per_s"], "events/s",
            peer="PyNaCl verify/s", peer_value=m["e2e_verify_per_s"], ratio=m["e2e_ratio"],
            target=want, met=m["e2e_ratio"] >= TARGET_INGEST_RATIO),
        row("  e2e CPU ceiling: events ÷ anchor CPU s", m["e2e_cpu_ceiling_per_s"], "events/s",
            peer="PyNaCl verify/s", peer_value=m["e2e_verify_per_s"]),
        row("  e2e ÷ publisher's rate (go → last PUBACK)", m["e2e_per_s"], "events/s",
            peer="published/s", peer_value=m["e2e_publisher_per_s"]),
        row("anchor 2 workers ÷ 1 worker, PostgreSQL, e2e", m["pg_two_per_s"], "events/s",
            peer="1 worker/s", peer_value=m["pg_one_per_s"], ratio=m["pg_ratio"],
            target=f">= {TARGET_SCALE}x", met=m["pg_ratio"] >= TARGET_SCALE),
        row("  1 worker PostgreSQL ÷ verify", m["pg_one_per_s"], "events/s",
            peer="PyNaCl verify/s", peer_value=m["pg_one_verify_per_s"]),
        row("  CPU ceiling 1 worker PG: events ÷ anchor CPU s", m["pg_one_ceiling_per_s"],
            "events/s", peer="PyNaCl verify/s", peer_value=m["pg_one_verify_per_s"]),
        row("  CPU ceiling 2 workers PG: events ÷ anchors' CPU s", m["pg_two_ceiling_per_s"],
            "events/s", peer="1 worker ceiling", peer_value=m["pg_one_ceiling_per_s"]),
        row(f"event → checkpoint p99 at {lat['rate']:,}/s", lat["latency"]["p99_s"], "s",
            peer="interval + 0.5 s", peer_value=limit, target=f"<= {limit:g} s",
            met=lat["latency"]["p99_s"] <= limit),
        row(f"event → checkpoint p50 at {lat['rate']:,}/s", lat["latency"]["p50_s"], "s",
            peer="interval", peer_value=CHECKPOINT_INTERVAL_MS / 1000),
        *(row(f"event → receipt at the publisher {q} at {lat['rate']:,}/s",
              lat["receipt"][f"{q}_s"], "s", peer=f"PUBACK {q} s",
              peer_value=lat["puback"][f"{q}_s"]) for q in ("p50", "p99")),
        *(row(f"event → witnessed (cosigned checkpoint) {q} at {lat['rate']:,}/s",
              lat["witnessed"][f"{q}_s"], "s", peer=f"event → checkpoint {q} s",
              peer_value=lat["latency"][f"{q}_s"]) for q in ("p50", "p99")),
        row(f"inclusion proofs/s, LeafMirror of {leaves} leaves", pr["proofs_per_s"], "proofs/s",
            peer="target", peer_value=TARGET_PROOFS_PER_S,
            target=f">= {TARGET_PROOFS_PER_S:,.0f}/s",
            met=pr["proofs_per_s"] >= TARGET_PROOFS_PER_S),
        row(f"LeafMirror.sync of {leaves} leaves", pr["sync_s"], "s",
            peer="1 fetch + from_leaf_hashes s", peer_value=pr["batched_sync_s"]),
        row(f"  inclusion proofs/s at {small['leaves']:,} leaves", small["proofs_per_s"],
            "proofs/s", peer="target", peer_value=TARGET_PROOFS_PER_S),
        row(f"  growth: proofs/s at {leaves} ÷ at {small['leaves']:,} leaves",
            pr["proofs_per_s"], "proofs/s", peer=f"at {small['leaves']:,}",
            peer_value=small["proofs_per_s"]),
        row(f"  growth: LeafMirror.sync at {leaves} ÷ at {small['leaves']:,} leaves",
            pr["sync_s"], "s", peer=f"at {small['leaves']:,} s", peer_value=small["sync_s"]),
        row("pledgewatch verify (1 proof file, subprocess)", vc["verify_s"], "s",
            peer="python -c pass s", peer_value=vc["bare_python_s"],
            target=f"< {TARGET_VERIFY_S} s", met=vc["verify_s"] < TARGET_VERIFY_S),
        row("anchor peak RSS (VmHWM) after the e2e run", m["e2e_anchor_rss_mb"], "MB"),
        row(f"LeafMirror RSS growth at {leaves} leaves", pr["sync_rss_growth_mb"], "MB"),
    ]  # fmt: skip


# (label, file path suffix, function name); inclusive wall seconds of the main thread.
PROFILE_PARTS = (
    ("ingest total (AnchorWorker.ingest)", "anchor/service.py", "ingest"),
    ("  Ingestor.process (one transaction)", "anchor/ingest.py", "process"),
    ("    decode + validate (SignedEvent.from_wire)", "pledgewatch/events.py", "from_wire"),
    ("      strict canonical decode (canonical.decode)", "pledgewatch/canonical.py", "decode"),
    ("    verify_event (key id + Ed25519)", "pledgewatch/signing.py", "verify_event"),
    ("      PyNaCl VerifyKey.verify", "nacl/signing.py", "verify"),
    ("    chain check (check_chain)", "anchor/chain.py", "check_chain"),
    ("  receipts (sign_receipt)", "pledgewatch/receipts.py", "sign_receipt"),
    ("sequencer (Sequencer.step)", "anchor/log.py", "step"),
    ("(all callers) canonical JSON encode", "pledgewatch/canonical.py", "encode"),
    ("(all callers) commits incl. fsync (Database.transaction)", "anchor/store/db.py",
     "transaction"),
    ("(all callers) sqlite3 execute", "~", "<method 'execute' of 'sqlite3.Connection' objects>"),
)  # fmt: skip


def profile_breakdown(path: Path) -> dict[str, Any]:
    stats = pstats.Stats(str(path))
    table: dict[tuple[str, int, str], Any] = stats.stats  # type: ignore[attr-defined]
    parts = {}
    for label, suffix, name in PROFILE_PARTS:
        parts[label] = sum(
            v[3] for (file, _line, func), v in table.items()
            if func == name and (file == suffix or file.endswith("/" + suffix))
        )  # fmt: skip
    text = io.StringIO()
    stats.stream = text  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(15)
    return {"inclusive_s": parts, "top_tottime": text.getvalue()}


def table(result: dict[str, Any]) -> str:
    p, m = result["params"], result["median"]
    mode = "QUICK run (small sizes; indicative only)" if result["quick"] else "full run"
    lines = [
        f"anchor benchmark, {mode}: {p['events']:,} signed events from {p['gateways']} gateways "
        f"x {p['devices_per_gateway']} devices, batch {p['batch']}, median of {p['repeats']} "
        f"(Python {result['environment']['python']}, {result['environment']['cpus']} CPUs)",
        "",
        f"{'figure':<56}{'value':>11} {'unit':<9}{'in-run peer / limit':<30}{'peer':>10}"
        f"{'ratio':>8}  {'target':<15}result",
    ]
    for r in result["rows"]:
        peer = "" if r["peer_value"] is None else f"{r['peer_value']:>10,.2f}"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:>8.2f}"
        verdict = "(information)" if r["met"] is None else ("met" if r["met"] else "NOT MET")
        lines.append(
            f"{r['figure']:<56}{r['value']:>11,.2f} {r['unit']:<9}{r['peer'] or '':<30}{peer:>10}"
            f"{ratio:>8}  {r['target'] or '':<15}{verdict}"
        )
    cores = result["environment"]["cpus"] or 1
    lines += ["", "CPU seconds over the measured window (the median run of each kind):"]
    for label, v in result["cpu_of_median_runs"].items():
        parts = ", ".join(f"{k} {c:.2f}" for k, c in v["cpu_s"].items())
        mains = ", ".join(f"{k} {c:.2f}" for k, c in v["anchor_main_thread_cpu_s"].items())
        lines.append(
            f"  {label}: wall {v['wall_s']:.2f} s, {v['per_s']:,.0f} events/s; {parts}; "
            f"anchor main thread(s): {mains}; machine busy {v['machine_busy_s']:.2f} of "
            f"{v['wall_s'] * cores:.2f} CPU s, of which interrupts {v['irq_cpu_s']:.2f} and "
            f"other processes {v['others_cpu_s']:.2f}"
        )
    lat = result["latency"]["latency"]
    lines += [
        "two workers ÷ one, per repeat: "
        + ", ".join(f"{x:.2f}" for x in m["pg_ratios"])
        + f"; events per worker: {m['pg_two_shares']}",
        f"latency run: {result['latency']['events']:,} events paced at "
        f"{lat['achieved_rate']:,.0f}/s achieved; p50 {lat['p50_s']:.3f} s, p90 "
        f"{lat['p90_s']:.3f} s, p99 {lat['p99_s']:.3f} s, max {lat['max_s']:.3f} s over "
        f"{lat['checkpoints']} checkpoints",
        *(
            f"  event → {name}: p50 {v['p50_s']:.3f} s, p90 {v['p90_s']:.3f} s, p99 "
            f"{v['p99_s']:.3f} s, max {v['max_s']:.3f} s"
            for name, v in (
                ("receipt", result["latency"]["receipt"]),
                ("PUBACK", result["latency"]["puback"]),
                ("witnessed", result["latency"]["witnessed"]),
            )
        ),
        f"  {result['latency']['receipt']['receipts']} signed receipts verified; "
        f"{result['latency']['witnessed']['checkpoints']} cosigned checkpoints",
        f"proofs: sync {result['proofs']['sync_s']:.2f} s (fetch alone "
        f"{result['proofs']['fetch_s']:.2f} s); {result['proofs']['verified_sample']} proofs "
        "verified against the root",
        f"verify: {result['verify_cli']['command']} …, {result['verify_cli']['runs']} runs, "
        f"{result['verify_cli']['proof_bytes']} byte proof file",
    ]
    lines += [f"note: {note}" for note in result["notes"]]
    if "profile" in result:
        lines += ["", profile_table(result["profile"])]
    return "\n".join(lines)


def profile_table(profile: dict[str, Any]) -> str:
    parts = profile["breakdown"]["inclusive_s"]
    total = parts[PROFILE_PARTS[0][0]] + parts["sequencer (Sequencer.step)"] or 1.0
    lines = [
        f"profiled in-process run (cProfile, {profile['path']}); inclusive seconds, "
        "% of ingest + sequencer:",
        *(f"  {label:<62}{s:>7.2f}{100 * s / total:>6.1f}%" for label, s in parts.items()),
        "",
        profile["breakdown"]["top_tottime"].strip(),
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[:1] == ["_publish"]:
        return publisher_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--events", type=int, help="messages per ingest / worker run")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--profile", metavar="PATH", help="one extra in-process run under cProfile")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON (- = stdout)")
    args = parser.parse_args(argv)
    result = run(args.quick, args.events, args.repeats, args.profile)
    print(table(result))
    write_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
