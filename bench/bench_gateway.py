"""Benchmark the edge gateway end to end against a local Mosquitto; never fails on a timing.

    .venv/bin/python bench/bench_gateway.py [--events 20000] [--repeats 3] [--json PATH]
                                            [--profile PATH]

One repeat, on a fresh broker (``tests/servers.py`` ``MosquittoServer``, the test defaults):

1. the in-run peers, in this (otherwise idle) process:
   * bare PyNaCl: ``SigningKey.sign`` over exactly the bytes the gateway signs for one event
     (domain + canonical body), ``events`` times;
   * bare paho-mqtt 2.x: one MQTT 5 client publishes ``events`` messages of exactly one event's
     wire size at QoS 1 (same ``max_inflight`` as the gateway) to a topic nobody subscribes
     to, and waits for every PUBACK;
2. the receipt responder (``tests/receipt_responder.py``, the anchor's stand-in) starts in its
   own process (``bench_gateway.py _responder ...``), so its signature checks do not take this
   process's GIL, and reports when it holds the first and all events;
3. ``events`` WEIGHT readings over four devices are written to a jsonl file, then the real
   gateway (``python -m pledgewatch.cli gateway run``) starts as a subprocess with the
   production defaults (batch 500, max_inflight 1000, WAL + synchronous=FULL);
4. the clock runs from just before the gateway is spawned until the responder holds every
   event (the readings plus the one HEARTBEAT the gateway signs for itself at start) **and**
   the gateway's outbox is empty — read from its state database, read-only, every 5 ms.
   Nothing is subtracted: interpreter start-up, imports and the MQTT connect are in it.

Figures are medians over the repeats: end-to-end events/s; steady state (events receipted
between 10 % and 90 % of the total ÷ the time between); start-up (time to the first receipt
the gateway stored); the gateway's peak RSS (``VmHWM``); CPU seconds of the gateway (main
thread and other threads), the responder and the broker. Targets: >= 5,000 events/s end to
end and <= 60 MB RSS. Every figure is printed beside the peers measured in the same repeat.

``--profile PATH`` adds one run with the gateway under ``python -m cProfile -o PATH`` (main
thread only; paho's network thread is not profiled) and prints where its time went.
``run()`` returns everything as a JSON-able dict (with ``rows`` for bench/run.py).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import pstats
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.signing
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from report import write_json

TESTS_DIR = Path(__file__).resolve().parent.parent / "tests"
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from devices.base import Reading  # noqa: E402
from gateway import config as gateway_config  # noqa: E402
from pledgewatch.signing import EVENT_DOMAIN, SigningKey, sign_event  # noqa: E402

from gateway_rig import GATEWAY, WAREHOUSE, GatewayRig, assert_chains, weight_lines  # noqa: E402
from receipt_responder import ReceiptResponder  # noqa: E402
from servers import MosquittoServer  # noqa: E402

TARGET_EVENTS_PER_S = 5_000.0
TARGET_RSS_MB = 60.0
DEVICES = ("lc-a1", "lc-a2", "lc-b1", "lc-b2")
ANCHOR_SEED = bytes([9]) * 32
POLL_S = 0.005
PEER_TOPIC = "bench/peer/events"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchRig(GatewayRig):
    """The test rig with the production defaults (the rig's own config tunes for tests).

    Only what the bench needs is set: no periodic heartbeats during the run (so the event
    count is exact) and an outbox that holds every reading.
    """

    profile_path: Path | None = None

    def write_config(self) -> None:
        lines = [
            "[gateway]",
            f'id = "{GATEWAY}"',
            f'warehouse = "{WAREHOUSE}"',
            'key_file = "gateway.key"',
            'state_db = "state/gateway.db"',
            "heartbeat_interval_s = 3600",
            "",
            "[anchor]",
            f'public_key = "{self.anchor_key.public_key.hex()}"',
            "",
            "[mqtt]",
            'host = "127.0.0.1"',
            f"port = {self.broker_port}",
            "",
            "[outbox]",
            f"max_events = {self.outbox_max}",
            "",
            "[[sensors]]",
            'device = "feed"',
            'driver = "jsonl"',
            f'options = {{ path = "{self.source_path}", any_device = true }}',
        ]
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        self.write_config()
        self.source_path.touch()
        prefix = (
            [] if self.profile_path is None else ["-m", "cProfile", "-o", str(self.profile_path)]
        )
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *prefix, "-m", "pledgewatch.cli", "gateway", "run",
                 "--config", str(self.config_path)],
                stdout=log,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip

    @property
    def state_db(self) -> Path:
        return self.workdir / "state" / "gateway.db"


def reading_lines(events: int) -> list[str]:
    """``events`` WEIGHT readings, round-robin over DEVICES, as jsonl lines."""
    per_device = -(-events // len(DEVICES))
    return weight_lines(list(DEVICES), per_device)[:events]


def chain_lengths(events: int) -> dict[str, int]:
    """Events per device the responder must hold: the readings plus the gateway's heartbeat."""
    counts = {device: 0 for device in DEVICES}
    for i in range(events):
        counts[DEVICES[i % len(DEVICES)]] += 1
    return {**{d: n for d, n in counts.items() if n}, GATEWAY: 1}


def sample_event(key: SigningKey, line: str) -> tuple[bytes, bytes]:
    """(bytes the gateway signs, wire bytes it publishes) for one reading, as seq 2."""
    reading = Reading.from_dict(json.loads(line))
    event = reading.to_event(WAREHOUSE, GATEWAY, 2, "ab" * 32)
    return EVENT_DOMAIN + event.canonical(), sign_event(event, key).to_wire()


def sign_rate(message: bytes, count: int) -> float:
    """Bare PyNaCl: Ed25519 signatures per second over ``message``."""
    key = nacl.signing.SigningKey(bytes(range(32)))
    sign = key.sign
    start = time.perf_counter()
    for _ in range(count):
        sign(message)
    return count / (time.perf_counter() - start)


def publish_rate(port: int, payload: bytes, count: int, max_inflight: int) -> float:
    """Bare paho-mqtt 2.x, MQTT 5, QoS 1: messages per second until the last PUBACK."""
    connected, done = threading.Event(), threading.Event()
    acked = [0, 0]  # PUBACKs, failures; only paho's network thread writes

    def on_publish(_c: object, _u: object, _mid: int, reason: Any, _p: object) -> None:
        acked[0] += 1
        acked[1] += bool(reason.is_failure)
        if acked[0] == count:
            done.set()

    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="pledgewatch-bench-peer",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.max_inflight_messages_set(max_inflight)
    client.max_queued_messages_set(0)
    client.on_connect = lambda *_: connected.set()
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise RuntimeError("peer publisher: no CONNACK within 10 s")
        start = time.perf_counter()
        for _ in range(count):
            client.publish(PEER_TOPIC, payload, qos=1)
        if not done.wait(max(30.0, count / 500)):
            raise RuntimeError(f"peer publisher: {acked[0]} of {count} PUBACKs")
        elapsed = time.perf_counter() - start
    finally:
        client.disconnect()
        client.loop_stop()
    if acked[1]:
        raise RuntimeError(f"peer publisher: broker refused {acked[1]} publishes")
    return count / elapsed


def cpu_seconds(pid: int | None, *, main_thread_only: bool = False) -> float:
    """utime + stime of a process (or its main thread) from /proc; 0 if it is gone."""
    if pid is None:
        return 0.0
    where = f"/proc/{pid}/task/{pid}/stat" if main_thread_only else f"/proc/{pid}/stat"
    try:
        text = Path(where).read_text()
    except OSError:
        return 0.0
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of a live process, in MB (10^6 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no VmHWM for pid {pid}")


class ResponderProcess:
    """The receipt responder in a child process; reports JSON lines with monotonic times.

    ``time.monotonic()`` is CLOCK_MONOTONIC on Linux: one clock for every process.
    """

    def __init__(self, port: int, gateway_key: bytes, chains: dict[str, int]) -> None:
        self.argv = [
            sys.executable, str(Path(__file__).resolve()), "_responder",
            "--port", str(port), "--anchor-seed", ANCHOR_SEED.hex(),
            "--gateway-key", gateway_key.hex(), "--chains", json.dumps(chains),
        ]  # fmt: skip
        self.marks: dict[str, Any] = {}
        self._cond = threading.Condition()
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 15.0) -> None:
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

    def mark(self, name: str) -> Any:
        with self._cond:
            return self.marks.get(name)

    def wait(self, name: str, timeout: float) -> Any:
        with self._cond:
            self._cond.wait_for(lambda: name in self.marks or "eof" in self.marks, timeout)
            if name not in self.marks:
                raise RuntimeError(f"receipt responder: no {name!r} within {timeout} s")
            return self.marks[name]

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def finish(self) -> dict[str, Any]:
        """Stop it (close its stdin) and return its final ledger summary."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.close()
        final: dict[str, Any] = self.wait("final", 30)
        self.proc.wait(10)
        return final

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def responder_main(argv: list[str]) -> int:
    """Child-process entry: run a ReceiptResponder until stdin closes; print JSON lines."""
    parser = argparse.ArgumentParser(prog="bench_gateway.py _responder")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--anchor-seed", required=True)
    parser.add_argument("--gateway-key", required=True)
    parser.add_argument("--chains", required=True, help="JSON: device -> events expected")
    args = parser.parse_args(argv)
    chains: dict[str, int] = json.loads(args.chains)
    expect = sum(chains.values())
    public = bytes.fromhex(args.gateway_key)
    emit = _emitter()
    responder = ReceiptResponder(
        "127.0.0.1",
        args.port,
        SigningKey(bytes.fromhex(args.anchor_seed)),
        {GATEWAY: public},
        client_id="pledgewatch-bench-anchor",
    )
    subscribed = threading.Event()
    # The responder offers no "subscribed" hook; without one, events published before the
    # SUBACK would have no subscriber on a fresh broker.
    responder._client.on_subscribe = lambda *_: subscribed.set()
    responder.start()
    if not subscribed.wait(15):
        emit(error="no SUBACK within 15 s")
        return 1
    emit(ready=time.monotonic())
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    stored = responder.ledger.stored  # len() of a dict is atomic; no lock needed to count
    first_seen = all_seen = False
    while not stop.wait(POLL_S):
        held = len(stored)
        if not first_seen and held:
            first_seen = True
            emit(first=time.monotonic())
        if not all_seen and held >= expect:
            all_seen = True
            emit(all=time.monotonic())
    responder.stop()
    emit(final=_ledger_summary(responder, public, chains))
    return 0


def _emitter() -> Any:
    def emit(**values: Any) -> None:
        print(json.dumps(values), flush=True)

    return emit


def _ledger_summary(
    responder: ReceiptResponder, public: bytes, chains: dict[str, int]
) -> dict[str, Any]:
    ledger = responder.snapshot()
    problem = None
    try:
        assert_chains(ledger, public, chains)
    except AssertionError as exc:
        problem = str(exc)[:500] or "chain check failed"
    return {
        "stored": len(ledger.stored),
        "deliveries": ledger.deliveries,
        "rejected": len(ledger.rejected),
        "forks": len(ledger.forks),
        "chains_ok": problem is None,
        "problem": problem,
    }


@dataclass
class Timeline:
    """What the read-only poll of the gateway's state database saw (monotonic seconds)."""

    expect: int
    first_receipt: float | None = None
    all_stored: float | None = None
    p10: tuple[float, int] | None = None
    p90: tuple[float, int] | None = None
    outbox_empty: float | None = None
    polls: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def see(self, now: float, built: int, receipted: int) -> None:
        self.polls += 1
        if self.first_receipt is None and receipted:
            self.first_receipt = now
        if self.all_stored is None and built >= self.expect:
            self.all_stored = now
        if self.p10 is None and receipted >= 0.1 * self.expect:
            self.p10 = (now, receipted)
        if self.p90 is None and receipted >= 0.9 * self.expect:
            self.p90 = (now, receipted)
        if self.outbox_empty is None and receipted >= self.expect and built == receipted:
            self.outbox_empty = now


def read_counters(conn: sqlite3.Connection) -> tuple[int, int]:
    """(events built, events receipted): their difference is the outbox depth."""
    counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
    return counters.get("events_built", 0), counters.get("receipted", 0)


def watch(rig: BenchRig, responder: ResponderProcess, timeline: Timeline, timeout: float) -> None:
    """Poll until the responder holds every event and the outbox is empty."""
    deadline = time.monotonic() + timeout
    conn: sqlite3.Connection | None = None
    try:
        while timeline.outbox_empty is None or responder.mark("all") is None:
            now = time.monotonic()
            if now > deadline:
                raise RuntimeError(
                    f"not done within {timeout:.0f} s: {timeline}, responder {responder.marks}"
                    f"\n--- gateway log ---\n{rig.log()[-3000:]}"
                )
            rig.check_alive()
            if conn is None and rig.state_db.exists():
                conn = sqlite3.connect(f"file:{rig.state_db}?mode=ro", uri=True)
            if conn is not None:
                with contextlib.suppress(sqlite3.OperationalError):  # schema not there yet
                    timeline.see(now, *read_counters(conn))
            time.sleep(POLL_S)
        if conn is not None:
            (timeline.extra["outbox_rows_at_end"],) = conn.execute(
                "SELECT COUNT(*) FROM outbox"
            ).fetchone()
    finally:
        if conn is not None:
            conn.close()


def one_run(events: int, workdir: Path, profile: Path | None = None) -> dict[str, Any]:
    """One repeat on a fresh broker: peers first, then the gateway end to end."""
    lines = reading_lines(events)
    chains = chain_lengths(events)
    broker = MosquittoServer(max_inflight_messages=1000)  # as docs/OPERATIONS.md sets it
    broker.start()
    rig = BenchRig(workdir, broker.port, anchor_key=SigningKey(ANCHOR_SEED))
    rig.profile_path = profile
    rig.outbox_max = max(100_000, events + 100)
    responder = ResponderProcess(broker.port, rig.key.public_key, chains)
    try:
        rig.write_config()
        max_inflight = gateway_config.load(rig.config_path).mqtt.max_inflight
        signed, wire = sample_event(rig.key, lines[0])
        run: dict[str, Any] = {
            "sign_per_s": sign_rate(signed, events),
            "publish_per_s": publish_rate(broker.port, wire, events, max_inflight),
            "signed_bytes": len(signed),
            "wire_bytes": len(wire),
            "max_inflight": max_inflight,
        }
        rig.feed(lines)
        responder.start()
        run |= gateway_run(rig, broker, responder, sum(chains.values()))
    finally:
        rig.stop()
        responder.kill()
        broker.close()
    return run


def gateway_run(
    rig: BenchRig, broker: MosquittoServer, responder: ResponderProcess, expect: int
) -> dict[str, Any]:
    timeline = Timeline(expect)
    cpu_before = {"broker": cpu_seconds(broker.pid), "responder": cpu_seconds(responder.pid)}
    t0 = time.monotonic()
    rig.start()
    assert rig.proc is not None
    pid = rig.proc.pid
    watch(rig, responder, timeline, timeout=60 + expect / 100)
    end = max(timeline.outbox_empty or 0.0, responder.mark("all"))
    rss = peak_rss_mb(pid)
    cpu = {
        "gateway_main_thread": cpu_seconds(pid, main_thread_only=True),
        "gateway": cpu_seconds(pid),
        "responder": cpu_seconds(responder.pid) - cpu_before["responder"],
        "broker": cpu_seconds(broker.pid) - cpu_before["broker"],
    }
    code = rig.stop()
    final = responder.finish()
    if code != 0 or not final["chains_ok"] or final["rejected"]:
        raise RuntimeError(f"bad run: gateway exit {code}, responder {final}\n{rig.log()[-2000:]}")
    assert timeline.first_receipt is not None and timeline.p10 and timeline.p90
    (t10, n10), (t90, n90) = timeline.p10, timeline.p90
    wall = end - t0
    return {
        "events": expect,
        "wall_s": wall,
        "end_to_end_per_s": expect / wall,
        "steady_per_s": (n90 - n10) / (t90 - t10),
        "first_receipt_s": timeline.first_receipt - t0,
        "first_held_s": responder.mark("first") - t0,
        "all_stored_s": (timeline.all_stored or end) - t0,
        "all_held_s": responder.mark("all") - t0,
        "outbox_empty_s": (timeline.outbox_empty or end) - t0,
        "peak_rss_mb": rss,
        "cpu_s": cpu,
        "cpu_ceiling_per_s": expect / cpu["gateway"],
        "db_polls": timeline.polls,
        "outbox_rows_at_end": timeline.extra.get("outbox_rows_at_end"),
        "responder": final,
    }


def run(events: int = 20_000, repeats: int = 3, profile: str | None = None) -> dict[str, Any]:
    """Measure ``repeats`` times and return medians, per-run figures and ``rows``."""
    if events < 10 or repeats < 1:
        raise ValueError("events must be at least 10 and repeats at least 1")
    runs = []
    with tempfile.TemporaryDirectory(prefix="pw-bench-gateway-") as tmp:
        for i in range(repeats):
            runs.append(one_run(events, Path(tmp) / f"run{i}"))
        profiled = None
        if profile is not None:
            profiled = one_run(events, Path(tmp) / "profiled", Path(profile))
    result = summarize(events, runs)
    if profiled is not None:
        result["profile"] = {
            "path": profile,
            "run": profiled,
            "breakdown": profile_breakdown(Path(profile)),
        }
    return result


def summarize(events: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    med = statistics.median
    keys = ("end_to_end_per_s", "steady_per_s", "sign_per_s", "publish_per_s",
            "first_receipt_s", "first_held_s", "all_stored_s", "wall_s", "peak_rss_mb",
            "cpu_ceiling_per_s")  # fmt: skip
    median = {k: med(r[k] for r in runs) for k in keys}
    median["cpu_s"] = {k: med(r["cpu_s"][k] for r in runs) for k in runs[0]["cpu_s"]}
    first = runs[0]
    return {
        "benchmark": "gateway",
        "params": {
            "readings": events,
            "events": first["events"],
            "repeats": len(runs),
            "devices": len(DEVICES),
            "signed_bytes": first["signed_bytes"],
            "wire_bytes": first["wire_bytes"],
            "max_inflight": first["max_inflight"],
            "broker": "mosquitto, persistence on, max_inflight_messages 1000 (docs/OPERATIONS.md)",
        },
        "environment": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        },
        "median": median,
        "runs": runs,
        "rows": rows(median),
        "notes": [f"median of {len(runs)} repeat(s), each on a fresh broker"],
    }


def row(
    figure: str,
    value: float,
    unit: str,
    *,
    peer: str | None = None,
    peer_value: float | None = None,
    target: str | None = None,
    met: bool | None = None,
) -> dict[str, Any]:
    """One line of the report; ``ratio`` is value ÷ peer_value; ``met`` None: information."""
    ratio = None if peer_value is None else value / peer_value
    return {"figure": figure, "value": value, "unit": unit, "peer": peer,
            "peer_value": peer_value, "ratio": ratio, "target": target, "met": met}  # fmt: skip


def rows(m: dict[str, Any]) -> list[dict[str, Any]]:
    e2e, rss, rate = m["end_to_end_per_s"], m["peak_rss_mb"], TARGET_EVENTS_PER_S
    target = {"peer": "target", "peer_value": rate}
    return [
        row("gateway end to end (signed, stored, published, receipted)", e2e, "events/s",
            **target, target=f">= {rate:,.0f}/s", met=e2e >= rate),
        row("gateway end to end ÷ bare PyNaCl sign", e2e, "events/s",
            peer="PyNaCl sign/s", peer_value=m["sign_per_s"]),
        row("gateway end to end ÷ bare paho QoS 1 publish", e2e, "events/s",
            peer="paho QoS 1 msgs/s", peer_value=m["publish_per_s"]),
        row("gateway steady state (10% → 90% receipted)", m["steady_per_s"], "events/s",
            **target),
        row("gateway CPU ceiling: events ÷ gateway CPU seconds", m["cpu_ceiling_per_s"],
            "events/s", **target),
        row("gateway start-up: spawn → first receipt stored", m["first_receipt_s"], "s"),
        row("gateway peak RSS (VmHWM)", rss, "MB", peer="limit", peer_value=TARGET_RSS_MB,
            target=f"<= {TARGET_RSS_MB:g} MB", met=rss <= TARGET_RSS_MB),
    ]  # fmt: skip


# (label, file name, function, only when called from this function or None); cProfile times
# are wall time of the main thread, so they include waits for the GIL and for fsync.
PROFILE_PARTS = (
    ("main loop total (GatewayService.run)", "service.py", "run", None),
    ("sign + store readings (EventBuilder.append)", "builder.py", "append", None),
    ("  Ed25519 sign incl. canonical body (sign_event)", "signing.py", "sign_event", None),
    ("  reading → event + validation (Reading.to_event)", "base.py", "to_event", "append"),
    ("  event id, canonical again (Event.event_id)", "events.py", "event_id", "append"),
    ("  wire bytes, canonical again (SignedEvent.to_wire)", "events.py", "to_wire", "append"),
    ("  SQLite commit of the batch (EventBuilder._commit)", "builder.py", "_commit", None),
    ("publish (_send: peek + paho publish())", "service.py", "_send", None),
    ("  outbox peek (SELECT)", "outbox.py", "peek", None),
    ("  paho Client.publish", "client.py", "publish", "publish"),
    ("receipts (_receipt: parse, verify, ack)", "service.py", "_receipt", None),
    ("  parse + verify receipt (parse_receipt)", "receipts.py", "parse_receipt", None),
    ("  outbox ack: DELETE + commit (Outbox.ack)", "outbox.py", "ack", None),
    ("sensor poll: jsonl read + parse + probe", "service.py", "_poll_sensors", None),
    ("health (file + publish)", "service.py", "_health", None),
    ("idle: blocked in inbox.get(timeout=0.02)", "~",
     "<method 'get' of '_queue.SimpleQueue' objects>", None),
    ("(all callers) canonical JSON encode", "canonical.py", "encode", None),
    ("(all callers) SQLite BEGIN/COMMIT incl. fsync", "store.py", "transaction", None),
)  # fmt: skip


def profile_breakdown(path: Path) -> dict[str, Any]:
    """Inclusive seconds of the main-thread parts that matter, and the top functions."""
    stats = pstats.Stats(str(path))
    table: dict[tuple[str, int, str], Any] = stats.stats  # type: ignore[attr-defined]
    parts: dict[str, float] = {}
    for label, file_suffix, name, caller in PROFILE_PARTS:
        total = 0.0
        for (file, _line, func), (_cc, _nc, _tt, ct, callers) in table.items():
            if func != name or not (file == file_suffix or file.endswith("/" + file_suffix)):
                continue
            if caller is None:
                total += ct
            else:
                total += sum(c[3] for (_f, _l, fn), c in callers.items() if fn == caller)
        parts[label] = total
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(20)
    return {"inclusive_s": parts, "top_tottime": out.getvalue()}


def table(result: dict[str, Any]) -> str:
    p, m = result["params"], result["median"]
    lines = [
        f"gateway benchmark: {p['readings']:,} WEIGHT readings over {p['devices']} devices "
        f"(+1 gateway heartbeat = {p['events']:,} events), {p['wire_bytes']} wire bytes each, "
        f"median of {p['repeats']} ({result['environment']['python']}, "
        f"{result['environment']['cpus']} CPUs)",
        "",
        f"{'figure':<58}{'value':>12}  {'in-run peer / limit':<18}{'peer':>12}"
        f"{'ratio':>8}  {'target':<14}result",
    ]
    for r in result["rows"]:
        peer = "" if r["peer_value"] is None else f"{r['peer_value']:>12,.1f}"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:>8.2f}"
        verdict = "(information)" if r["met"] is None else ("met" if r["met"] else "NOT MET")
        lines.append(
            f"{r['figure']:<58}{r['value']:>12,.1f}  {r['peer'] or '':<18}{peer:>12}{ratio:>8}"
            f"  {r['target'] or '':<14}{verdict}"
        )
    cpu = m["cpu_s"]
    lines += [
        "",
        f"wall {m['wall_s']:.2f} s; first event held by responder {m['first_held_s']:.2f} s; "
        f"all {p['events']:,} signed + stored {m['all_stored_s']:.2f} s; "
        f"CPU s: gateway {cpu['gateway']:.2f} (main thread {cpu['gateway_main_thread']:.2f}), "
        f"responder {cpu['responder']:.2f}, broker {cpu['broker']:.2f}",
    ]
    lines += [f"note: {note}" for note in result["notes"]]
    if "profile" in result:
        lines += ["", profile_table(result["profile"])]
    return "\n".join(lines)


def profile_table(profile: dict[str, Any]) -> str:
    run = profile["run"]
    parts = profile["breakdown"]["inclusive_s"]
    total = parts[PROFILE_PARTS[0][0]] or 1.0
    lines = [
        f"profiled run (cProfile, main thread only; {profile['path']}): "
        f"{run['end_to_end_per_s']:,.0f} events/s under the profiler, wall {run['wall_s']:.2f} s",
        f"{'part (inclusive; indented parts are inside the one above)':<62}{'s':>8}{'%':>7}",
    ]
    lines += [f"{label:<62}{s:>8.2f}{100 * s / total:>6.1f}%" for label, s in parts.items()]
    return "\n".join([*lines, "", profile["breakdown"]["top_tottime"].strip()])


def main(argv: list[str]) -> int:
    if argv[:1] == ["_responder"]:
        return responder_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="readings per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", metavar="PATH", help="one extra run under cProfile")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON (- = stdout)")
    args = parser.parse_args(argv)
    result = run(args.events, args.repeats, args.profile)
    print(table(result))
    write_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
