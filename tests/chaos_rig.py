"""The chaos run's parts: a four-gateway scenario with known faults, its ground truth, feeders
that survive ``kill -9`` of their gateway, a seeded killer, and checks from raw tables and files.

Shared by ``tests/test_chaos.py`` (bounded, in the suite) and ``bench/bench_chaos.py`` (soak).

Ground truth. The simulator is seeded and never reads the wall clock, so every reading and
therefore every event id is known before the run: a gateway turns the n-th reading of a device
into ``reading.to_event(warehouse, gateway, n, id of reading n-1)`` and signs it; the event id
is the SHA-256 of that body, whatever key signs it. The only events not known in advance are
the gateways' own HEARTBEATs (device = the gateway id, wall-clock time, one per start): their
chain is checked against the head the gateway's own state database holds after the run.

Feeding. Each gateway reads JSON lines from a file (the ``jsonl`` driver, which re-reads its
file from the start on every start). The feeder appends the scenario's readings to the file in
slices over the run. After a ``kill -9`` it reads the gateway's chain heads from its state
database (what the gateway committed: ``seq`` per device) and starts the gateway on a fresh
file holding exactly the readings not yet committed, in order: like a reader that keeps its
own buffer and re-sends what the gateway did not take. Readings a killed gateway had read but
not committed are therefore re-offered, never lost and never doubled.

Time. Scenario time is compressed (days of readings in minutes) and ends about an hour before
the wall clock, because the live reconciler evaluates at wall-clock time: ``silent_after_s``
is set beyond the scenario's span (a backlog of days would otherwise make every device
"silent" while the run catches up), and the faults chosen are those whose alerts do not
depend on the wall clock: a theft (UNAUTHORIZED_RELEASE + SHORTFALL), a tamper alarm (TAMPER)
and a slow drain (WEIGHT_MISMATCH). The drain's threshold (``weight_mismatch_for_s``) is
scaled up to 24 h: one simulated hour passes in about a second of the run, so a message a
kill holds back for a few seconds (until the gateway re-sends it) arrives hours late in
simulated time, and with the default 2 h a late LOAD opened a WEIGHT_MISMATCH that resolved
once it arrived (seen in the first runs). Device silence (``dropout``) is not injected.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from devices.sim import Scenario, load_scenario, simulate
from pledgewatch.events import ZERO_HASH, Kind

from gateway_rig import WAREHOUSE

GATEWAYS = ("gw-1", "gw-2", "gw-3", "gw-4")
LOAN = "LN-CHAOS"
SKUS = {"steel-coil-2mm": 25_000, "soybeans-bag-50kg": 50_000}
THEFT_LOT = "wr-1-0001"
THEFT_QTY = 6
TAMPER_DEVICE = "door-2"
DRAIN_BAY = "b3-1"
UNIT_PRICE = "1000.00"


def scenario_text(seed: int, days: int, interval: str, end_ms: int) -> str:
    """Four gateways, two bays (one load cell each) per gateway, two pledged lots per gateway.

    Faults: a theft on gw-1 at 30 % of the run, a tamper alarm on gw-2 at 50 %, a slow drain
    of bay b3-1 on gw-3 from 20 % for 10 % of the run (it stays down: WEIGHT_MISMATCH).
    """
    start = dt.datetime.fromtimestamp((end_ms - days * 86_400_000) // 1000, dt.UTC)
    start = start.replace(minute=0, second=0, microsecond=0)
    hours = days * 24
    lines = [
        f"seed = {seed}",
        f'start = "{start:%Y-%m-%dT%H:%M:%SZ}"',
        f'duration = "{days}d"',
        f'warehouse = "{WAREHOUSE}"',
        "",
        "[traffic]",
        "arrivals_per_day = 4",
        "departures_per_day = 0",
        "pallet_qty_min = 2",
        "pallet_qty_max = 6",
        'door_open = "3m"',
        'stocktake_interval = "12h"',
        "",
        "[load_cells]",
        f'interval = "{interval}"',
        "noise_grams = 200",
        "drift_grams_per_day = 0",
        "",
    ]
    for sku, grams in SKUS.items():
        lines += ["[[skus]]", f'id = "{sku}"', f"unit_grams = {grams}", ""]
    for n, gw in enumerate(GATEWAYS, 1):
        for b in (1, 2):
            lines += ["[[bays]]", f'id = "b{n}-{b}"', f'gateway = "{gw}"', ""]
    for n, gw in enumerate(GATEWAYS, 1):
        lines += ["[[gateways]]", f'id = "{gw}"', 'heartbeat = "1h"', ""]
        devices = [
            (f"portal-in-{n}", "rfid-in", None),
            (f"portal-out-{n}", "rfid-out", None),
            (f"door-{n}", "door", f"dock-{n}"),
            (f"cell-{n}-1", "load-cell", f"b{n}-1"),
            (f"cell-{n}-2", "load-cell", f"b{n}-2"),
        ]
        for device, kind, bay in devices:
            lines += ["[[gateways.devices]]", f'id = "{device}"', f'type = "{kind}"']
            if bay is not None:
                lines.append(f'bay = "{bay}"')
            lines.append("")
    for n in range(1, len(GATEWAYS) + 1):
        for b, sku in ((1, "steel-coil-2mm"), (2, "soybeans-bag-50kg")):
            qty = 60 if b == 1 else 40
            lines += [
                "[[lots]]",
                f'id = "wr-{n}-000{b}"',
                f'sku = "{sku}"',
                f'bay = "b{n}-{b}"',
                f"qty = {qty}",
                "pledged = true",
                "",
            ]
    lines += [
        "[[faults]]",
        'kind = "theft"',
        f'at = "{hours * 3 // 10}h"',
        f'lot = "{THEFT_LOT}"',
        f"qty = {THEFT_QTY}",
        "",
        "[[faults]]",
        'kind = "tamper-alarm"',
        f'at = "{hours // 2}h"',
        f'device = "{TAMPER_DEVICE}"',
        'reason = "door contact housing opened"',
        "",
        "[[faults]]",
        'kind = "slow-drain"',
        f'at = "{hours * 2 // 10}h"',
        f'for = "{max(hours // 10, 1)}h"',
        f'bay = "{DRAIN_BAY}"',
        "grams = 300_000",
        "",
    ]
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Truth:
    """What the simulator says each gateway must deliver, as lines and as event ids."""

    scenario: Scenario
    lines: dict[str, list[tuple[str, str]]]  # gateway -> [(device, JSON line)] in reading order
    chains: dict[tuple[str, str], list[str]]  # (gateway, device) -> event ids by seq
    theft_event: str  # the stolen pallet's UNLOAD
    tamper_event: str
    opening: dict[str, int]  # gateway -> how many of its lines happen at the scenario start

    @property
    def events(self) -> int:
        return sum(len(ids) for ids in self.chains.values())


def ground_truth(path: Path) -> Truth:
    scenario = load_scenario(path)
    lines: dict[str, list[tuple[str, str]]] = {g: [] for g in GATEWAYS}
    opening = dict.fromkeys(GATEWAYS, 0)
    chains: dict[tuple[str, str], list[str]] = {}
    theft = tamper = ""
    for sr in simulate(scenario):
        reading = sr.reading
        chain = chains.setdefault((sr.gateway, reading.device), [])
        event = reading.to_event(WAREHOUSE, sr.gateway, len(chain) + 1, _last(chain))
        event_id = event.event_id()
        chain.append(event_id)
        lines[sr.gateway].append((reading.device, json.dumps(reading.to_dict())))
        if sr.at_ms == scenario.start_ms:
            opening[sr.gateway] += 1
        if sr.faults and event.kind is Kind.UNLOAD and event.lot == THEFT_LOT:
            theft = event_id
        if sr.faults and event.kind is Kind.TAMPER:
            tamper = event_id
    assert theft and tamper, "the scenario's theft and tamper alarm must both happen"
    return Truth(scenario, lines, chains, theft, tamper, opening)


def _last(chain: list[str]) -> str:
    return chain[-1] if chain else ZERO_HASH


def expected_alerts(truth: Truth) -> set[tuple[str, str | None, str]]:
    """(rule, loan, subject) of every alert the injected faults must raise, and no other."""
    return {
        ("UNAUTHORIZED_RELEASE", LOAN, f"unload:{truth.theft_event}"),
        ("SHORTFALL", LOAN, f"lot:{THEFT_LOT}"),
        ("TAMPER", None, f"tamper-signal:gw-2/{TAMPER_DEVICE}"),
        ("WEIGHT_MISMATCH", None, f"bay:{DRAIN_BAY}"),
    }


def book_files(folder: Path, scenario: Scenario) -> list[str]:
    """The loan book for ``pledgewatch loans import``: one static loan over every pledged lot,
    in force from the day before the scenario to 30 days from now, well covered."""
    start = dt.datetime.fromtimestamp(scenario.start_ms // 1000, dt.UTC).date()
    today = dt.datetime.now(dt.UTC).date()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "loans.csv").write_text(
        "loan_id,borrower,warehouse_id,currency,outstanding,start,end,pledge_type,"
        "advance_rate,warning_ratio,liquidation_ratio,min_value\n"
        f"{LOAN},Jinhai Steel Trading Co.,{WAREHOUSE},USD,10000.00,"
        f"{start - dt.timedelta(days=1)},{today + dt.timedelta(days=30)},static,"
        "0.70,1.50,1.20,0\n"
    )
    pledged = [lot for lot in scenario.lots if lot.pledged]
    (folder / "pledges.csv").write_text(
        "loan_id,lot,sku,qty\n" + "".join(f"{LOAN},{p.id},{p.sku},{p.qty}\n" for p in pledged)
    )
    (folder / "prices.csv").write_text(
        "sku,date,unit_price\n"
        + "".join(f"{sku},{start - dt.timedelta(days=1)},{UNIT_PRICE}\n" for sku in SKUS)
    )
    return [
        "--loans",
        str(folder / "loans.csv"),
        "--pledges",
        str(folder / "pledges.csv"),
        "--prices",
        str(folder / "prices.csv"),
    ]


def committed_heads(state_db: Path) -> dict[str, tuple[int, str]]:
    """device -> (seq, head event id) the gateway committed (read-only, gateway stopped)."""
    if not state_db.exists():
        return {}
    conn = sqlite3.connect(f"file:{state_db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT device, seq, head FROM chain").fetchall()
    finally:
        conn.close()
    return {str(d): (int(s), str(h)) for d, s, h in rows}


@dataclass
class Feeder:
    """Appends one gateway's readings to its jsonl file in slices; re-bases after a kill."""

    lines: list[tuple[str, str]]
    fed: int = 0  # how many of ``lines`` the gateway has been offered so far
    file_no: int = 0
    path: Path | None = None

    def new_file(self, folder: Path, heads: dict[str, tuple[int, str]]) -> Path:
        """A fresh source file with every offered line the gateway has not committed."""
        self.file_no += 1
        self.path = folder / f"readings-{self.file_no}.jsonl"
        done = {device: seq for device, (seq, _) in heads.items()}
        seen: dict[str, int] = {}
        keep = []
        for device, line in self.lines[: self.fed]:
            seen[device] = seen.get(device, 0) + 1
            if seen[device] > done.get(device, 0):
                keep.append(line)
        self.path.write_text("".join(line + "\n" for line in keep))
        return self.path

    def feed_to(self, upto: int) -> None:
        assert self.path is not None
        upto = min(upto, len(self.lines))
        if upto <= self.fed:
            return
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for _, line in self.lines[self.fed : upto]))
        self.fed = upto

    @property
    def done(self) -> bool:
        return self.fed >= len(self.lines)


@dataclass
class Kill:
    at_s: float
    target: str  # "broker", "anchor", "gateway"
    detail: str
    down_s: float


@dataclass
class Killer:
    """kill -9 at seeded random moments; each target's restart is the caller's callback.

    The schedule is drawn up front from the seed (times, targets, which gateway or worker,
    how long it stays down), so a failing seed replays the same kills at the same moments
    of the run (the machine's load decides the rest).
    """

    seed: int
    duration_s: float
    kills: dict[str, int]  # target -> how many
    actions: dict[str, Callable[[Kill], None]]
    gateways: tuple[str, ...] = GATEWAYS
    workers: tuple[str, ...] = ("worker-1", "worker-2")
    done: list[Kill] = field(default_factory=list)
    error: BaseException | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def plan(self) -> list[Kill]:
        rng = random.Random(self.seed ^ 0x6B696C6C)
        kills = []
        for target, count in sorted(self.kills.items()):
            for _ in range(count):
                detail = ""
                if target == "gateway":
                    detail = rng.choice(self.gateways)
                elif target == "anchor":
                    detail = rng.choice(self.workers)
                at = rng.uniform(0.05, 0.85) * self.duration_s
                kills.append(Kill(at, target, detail, rng.uniform(0.2, 3.0)))
        return sorted(kills, key=lambda k: k.at_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="chaos-killer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        started = time.monotonic()
        try:
            for kill in self.plan():
                if self._stop.wait(max(0.0, started + kill.at_s - time.monotonic())):
                    return
                self.actions[kill.target](kill)
                self.done.append(kill)
        except BaseException as exc:  # reported by join(); the test must see it
            self.error = exc

    def join(self, timeout: float) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError("the chaos thread did not finish its schedule")
        if self.error is not None:
            raise AssertionError(f"a kill or restart failed: {self.error!r}") from self.error

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for kill in self.done:
            out[kill.target] = out.get(kill.target, 0) + 1
        return out


def events_of(rows: list[tuple[object, ...]]) -> dict[tuple[str, str], list[tuple[int, str, str]]]:
    """(gateway, device) -> [(seq, event_id, prev)] sorted by seq, from raw event rows."""
    out: dict[tuple[str, str], list[tuple[int, str, str]]] = {}
    for gateway, device, seq, event_id, prev in rows:
        out.setdefault((str(gateway), str(device)), []).append(
            (int(seq), str(event_id), str(prev))  # type: ignore[call-overload]
        )
    for chain in out.values():
        chain.sort()
    return out
