"""The chaos run itself: four gateways, a broker, two anchor workers on PostgreSQL (one with the
live reconciler), the bank's witness and a loan officer's webhook receiver, with a seeded
thread that ``kill -9``s the broker, an anchor worker and a gateway and restarts them.

``ChaosRun.run()`` returns once the system is quiet (every gateway outbox empty, every event
stored and logged, the log checkpointed, witnessed and anchored, every webhook delivered) and
every process has been stopped; the checks in ``chaos_checks`` then read only the raw tables,
the gateways' state files, the witness's state file and proof files.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from alerts_rig import Receiver
from anchor_rig import AnchorRig, Proc, cli
from chaos_rig import (
    GATEWAYS,
    SKUS,
    Feeder,
    Kill,
    Killer,
    Truth,
    book_files,
    committed_heads,
    ground_truth,
    scenario_text,
)
from gateway_rig import WAREHOUSE, GatewayRig
from servers import MosquittoServer

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
RECONCILER = "worker-1"  # the worker with [reconcile] enabled; worker-2 only ingests


@dataclass(frozen=True)
class Params:
    days: int = 3  # simulated days (sets the event count with ``interval``)
    interval: str = "100s"  # load-cell period: 3 days at 100 s ≈ 22,300 events
    feed_s: float = 90.0  # readings are offered over this long; kills happen in it
    broker_kills: int = 2
    anchor_kills: int = 3
    gateway_kills: int = 3
    settle_s: float = 300.0  # deadline for quiescence after the feed


@dataclass
class ChaosRun:
    workdir: Path
    broker: MosquittoServer
    store: str
    seed: int
    params: Params = field(default_factory=Params)
    log: Callable[[str], None] = print
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The drain's WEIGHT_MISMATCH needs 24 h of simulated disagreement (see below).
        assert self.params.days >= 2, f"days: got {self.params.days}, want >= 2"
        self.rng = random.Random(self.seed)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.scenario_path = self.workdir / "scenario.toml"
        end_ms = time.time_ns() // 1_000_000 - 3_600_000
        self.scenario_path.write_text(
            scenario_text(self.seed % 2**31, self.params.days, self.params.interval, end_ms)
        )
        self.truth: Truth = ground_truth(self.scenario_path)
        self.receiver = Receiver()
        self.receiver.up()
        self.receiver.down()  # the loan officer's system is down when the run starts
        # Up again at a seeded moment, but not before a delivery has failed against it.
        self.receiver_up_s = self.rng.uniform(0.3, 0.6) * self.params.feed_s
        self.receiver_is_up = threading.Event()
        self.anchor = AnchorRig(
            self.workdir / "anchor",
            self.broker.port,
            witness=True,
            store=self.store,
            extra_toml=self._anchor_extra(),
        )
        self.workers: dict[str, Proc] = {}
        self.gateways: dict[str, GatewayRig] = {}
        self.feeders: dict[str, Feeder] = {}
        self.locks = {name: threading.Lock() for name in (*GATEWAYS, RECONCILER, "worker-2")}
        for gw in GATEWAYS:
            rig = GatewayRig(
                self.workdir / gw,
                self.broker.port,
                anchor_key=self.anchor.key,
                gateway=gw,
                resend_after_s=5,
            )
            self.anchor.enrol(WAREHOUSE, gw, rig.key.public_key)
            self.gateways[gw] = rig
            self.feeders[gw] = Feeder(self.truth.lines[gw])
        self.killer = Killer(
            self.seed,
            self.params.feed_s,
            {
                "broker": self.params.broker_kills,
                "anchor": self.params.anchor_kills,
                "gateway": self.params.gateway_kills,
            },
            {"broker": self._kill_broker, "anchor": self._kill_worker, "gateway": self._kill_gw},
        )

    def _anchor_extra(self) -> str:
        grams = ", ".join(f'"{sku}" = {g}' for sku, g in SKUS.items())
        retries = ", ".join(["1"] + ["2"] * 90)  # ~3 minutes of retries, no jitter
        return "\n".join(
            [
                "[reconcile]",
                "every_ms = 200",
                "silent_after_s = 2592000",  # 30 days: beyond the scenario (see chaos_rig)
                # Scaled to compressed time: a message a kill delays by ~5-10 s wall (until
                # the gateway's go-back-N resend) lands hours of simulated time late; a
                # 2 h threshold would turn that into a WEIGHT_MISMATCH that then resolves.
                "weight_mismatch_for_s = 86400",
                f"unit_grams = {{ {grams} }}",
                "",
                "[alerts]",
                "deliver_every_ms = 200",
                f"retry_schedule_s = [{retries}]",
                "jitter = false",
                "",
                "[[webhooks]]",
                'name = "credit-desk"',
                f'url = "{self.receiver.url()}"',
                f'secret = "{SECRET}"',
                "",
            ]
        )

    # ---- the processes ---------------------------------------------------------------------

    def _start_workers(self) -> None:
        self.anchor.start()  # the witness and worker-1 (reconciler)
        self.workers[RECONCILER] = self.anchor.anchor_proc
        config = self.anchor.write_config("worker-2")
        config.write_text(
            config.read_text().replace("[reconcile]\n", "[reconcile]\nenabled = false\n", 1)
        )
        second = Proc(
            ["anchor", "run", "--config", str(config)], self.anchor.workdir / "anchor-worker-2.log"
        )
        second.start()
        self.anchor.procs.append(second)
        self.workers["worker-2"] = second
        self.anchor.wait_subscribed(timeout=60)

    def _start_gateway(self, gw: str) -> None:
        rig = self.gateways[gw]
        heads = committed_heads(rig.workdir / "state" / "gateway.db")
        rig.source_path = self.feeders[gw].new_file(rig.workdir, heads)
        rig.start()

    def _kill_broker(self, kill: Kill) -> None:
        self.log(f"chaos {kill.at_s:6.1f}s: kill -9 broker, down {kill.down_s:.1f}s")
        self.broker.kill()
        time.sleep(kill.down_s)
        self.broker.start()

    def _kill_worker(self, kill: Kill) -> None:
        self.log(f"chaos {kill.at_s:6.1f}s: kill -9 anchor {kill.detail}, down {kill.down_s:.1f}s")
        proc = self.workers[kill.detail]
        with self.locks[kill.detail]:
            proc.check_alive()
            proc.kill()
            time.sleep(kill.down_s)
            proc.start()

    def _kill_gw(self, kill: Kill) -> None:
        self.log(f"chaos {kill.at_s:6.1f}s: kill -9 gateway {kill.detail}, down {kill.down_s:.1f}s")
        rig = self.gateways[kill.detail]
        with self.locks[kill.detail]:
            rig.check_alive()
            rig.kill()
            time.sleep(kill.down_s)
            self._start_gateway(kill.detail)

    def check_alive(self) -> None:
        """Every process that is not being killed and restarted right now is running."""
        checks: list[tuple[str, Callable[[], None]]] = [
            *((name, proc.check_alive) for name, proc in self.workers.items()),
            *((gw, rig.check_alive) for gw, rig in self.gateways.items()),
        ]
        for name, check in checks:
            if self.locks[name].acquire(blocking=False):
                try:
                    check()
                finally:
                    self.locks[name].release()
        for proc in self.anchor.procs:
            if proc.argv[0] == "witness":
                proc.check_alive()

    # ---- the run ---------------------------------------------------------------------------

    def run(self) -> None:
        started = time.monotonic()
        try:
            self._start_workers()
            self._opening()
            self.timings["setup_s"] = time.monotonic() - started
            self._feed_under_fire()
            self._quiesce()
        finally:
            self.stop()
        self.timings["run_s"] = time.monotonic() - started

    def _opening(self) -> None:
        """Opening stocktakes first, then the loan book (else every pledge starts short)."""
        for gw, feeder in self.feeders.items():
            self._start_gateway(gw)
            feeder.feed_to(self.truth.opening[gw])
        want = sum(
            1
            for gw, lines in self.truth.lines.items()
            for _, line in lines[: self.truth.opening[gw]]
            if '"kind": "COUNT"' in line
        )
        self.wait(
            lambda: (
                self.scalar(
                    "SELECT COUNT(*) FROM events WHERE kind = 'COUNT' AND leaf_index IS NOT NULL"
                )
                >= want
            ),
            60,
            "the opening stocktakes in the log",
        )
        config = str(self.anchor.config_path)
        cli(
            "loans",
            "import",
            "--config",
            config,
            *book_files(self.workdir / "book", self.truth.scenario),
        )

    def _receiver_schedule(self, t0: float) -> None:
        failed = "SELECT COUNT(*) FROM webhook_outbox WHERE attempts > 0 AND delivered_ms IS NULL"
        while not self.killer.stopped:
            elapsed = time.monotonic() - t0
            if elapsed >= self.receiver_up_s and self.scalar(failed) > 0:
                self.log(f"chaos {elapsed:6.1f}s: webhook receiver up")
                self.receiver.up()
                self.receiver_is_up.set()
                return
            time.sleep(0.5)

    def _feed_under_fire(self) -> None:
        feed_s = self.params.feed_s
        self.killer.start()
        t0 = time.monotonic()
        threading.Thread(target=self._receiver_schedule, args=(t0,), daemon=True).start()
        while True:
            elapsed = time.monotonic() - t0
            share = min(1.0, elapsed / feed_s)
            for gw, feeder in self.feeders.items():
                if self.locks[gw].acquire(blocking=False):  # else: being restarted, next round
                    try:
                        feeder.feed_to(max(self.truth.opening[gw], int(share * len(feeder.lines))))
                    finally:
                        self.locks[gw].release()
            self.check_alive()
            if share >= 1.0 and all(f.done for f in self.feeders.values()):
                break
            time.sleep(0.25)
        self.killer.join(timeout=feed_s)
        self.timings["feed_s"] = time.monotonic() - t0

    def _quiesce(self) -> None:
        t0 = time.monotonic()
        deadline = self.params.settle_s
        self.wait(self._gateways_drained, deadline, "every reading taken, every outbox empty")
        # Receipts go out only after the anchor committed, so with every outbox empty the
        # anchor has stored all that was generated; wait until all of it is in the log too.
        # (Whether that is exactly what was generated is for chaos_checks to say.)
        self.wait(
            lambda: self.scalar("SELECT COUNT(*) FROM events WHERE leaf_index IS NULL") == 0,
            deadline,
            "every stored event in the log",
        )
        self.wait(self._checkpointed, deadline, "the whole log checkpointed, witnessed, anchored")
        self.wait(self.receiver_is_up.is_set, deadline, "a failed delivery, then the receiver up")
        self.wait(self._delivered, deadline, "every webhook delivered")
        time.sleep(2)  # a late duplicate delivery would land here
        self.timings["settle_s"] = time.monotonic() - t0

    def _gateways_drained(self) -> bool:
        """Every gateway committed every line it was offered, and has nothing unreceipted."""
        for gw, rig in self.gateways.items():
            heads = committed_heads(rig.workdir / "state" / "gateway.db")
            taken = sum(seq for device, (seq, _) in heads.items() if device != gw)
            if taken != len(self.feeders[gw].lines):
                return False
            with self.locks[gw]:
                conn = sqlite3.connect(
                    f"file:{rig.workdir / 'state' / 'gateway.db'}?mode=ro", uri=True
                )
                try:
                    (depth,) = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()
                finally:
                    conn.close()
            if depth:
                return False
        return True

    def _checkpointed(self) -> bool:
        size = self.scalar("SELECT size FROM log_state WHERE id = 1")
        top = self.anchor.query(
            "SELECT MAX(size) FROM checkpoints "
            "WHERE cosigned_note IS NOT NULL AND ledger_receipt IS NOT NULL"
        )[0][0]
        return top is not None and top == size

    def _delivered(self) -> bool:
        pending = self.scalar(
            "SELECT COUNT(*) FROM alert_transitions WHERE routed = 0"
        ) + self.scalar("SELECT COUNT(*) FROM webhook_outbox WHERE delivered_ms IS NULL")
        alerts = self.scalar("SELECT COUNT(*) FROM alerts")
        return pending == 0 and alerts > 0 and not self.receiver.busy()

    def stop(self) -> None:
        self.killer.stop()
        for gw, rig in self.gateways.items():
            with self.locks[gw]:
                rig.stop()
        self.anchor.stop()
        self.receiver.down()

    # ---- helpers ---------------------------------------------------------------------------

    def scalar(self, sql: str) -> int:
        return int(self.anchor.query(sql)[0][0])  # type: ignore[call-overload]

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if predicate():
                return
            time.sleep(0.5)
        raise AssertionError(f"seed {self.seed}: timed out after {timeout:.0f}s waiting for {what}")
