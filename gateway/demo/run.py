"""``pledgewatch demo``: the whole pipeline on embedded defaults, a month in seconds.

Nothing to install: the broker is Mosquitto when it is on PATH, else amqtt in this process;
the store and the ledger are SQLite files; the bank's witness, the anchor and the three
gateways are child processes started with the same ``pledgewatch`` commands an operator runs,
on config files written into the output folder; the loan officer's webhook receiver runs in
this process and prints each alert as its signed webhook arrives.

Steps: keys and configs → anchor store, gateway enrolment → witness and anchor → the gateways
replay their part of the month (``gateway.demo.world``) → the loan book is imported once the
opening stocktake is stored (earlier, every pledged lot would look empty) → the anchor is
restarted with the production silence threshold (``gateway.demo.configs`` says why) → proof,
verification, statement (``gateway.demo.finish``) → summary with expected vs fired alerts.
Every child is stopped and reaped whatever happens, Ctrl-C and SIGTERM included.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TextIO

from devices.sim.model import simulate
from devices.sim.scenario import load_scenario
from gateway import keystore
from gateway.demo import brokers, configs
from gateway.demo.children import Children, cli_argv, leftovers, wait_for
from gateway.demo.errors import DemoFailed
from gateway.demo.finish import Keys, collect
from gateway.demo.progress import StoreCounts, read_counts
from gateway.demo.receiver import Delivered, Receiver, new_secret
from gateway.demo.summary import Outcome, compare, print_summary
from gateway.demo.world import GATEWAYS, LOTS, WAREHOUSE, World

REPLAY_S = 10  # wall seconds the month should take (the sim sensors are paced to it)
REPLAY_DEADLINE_S = 150


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwind like Ctrl-C: every child is stopped on the way out


@dataclass
class Demo:
    out: TextIO
    folder: Path
    broker_kind: str
    children: Children = field(default_factory=Children)
    started: float = field(default_factory=time.monotonic)
    theft_event: str | None = None  # the UNLOAD behind the first UNAUTHORIZED_RELEASE
    ports: list[int] = field(default_factory=list)  # all must be closed at the end

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f}s] {text}", file=self.out, flush=True)

    def cli(self, log_name: str, *args: str) -> str:
        return self.children.cli(*args, log_path=self.folder / "logs" / log_name)

    def on_alert(self, item: Delivered) -> None:
        d = item.data
        loan = f" loan {d['loan_id']}" if d.get("loan_id") else ""
        self.say(
            f"ALERT {item.type.removeprefix('alert.')} {str(d.get('severity')).upper()} "
            f"{d.get('rule')}{loan}: {d.get('message')}"
        )
        if d.get("rule") == "UNAUTHORIZED_RELEASE" and self.theft_event is None:
            self.theft_event = str((d.get("evidence") or [{}])[0].get("event_id"))

    def run(self) -> Outcome:
        world = World.ending(dt.datetime.now(dt.UTC))
        self.say(f"month    {world.start:%Y-%m-%d %H:%M} .. {world.end:%Y-%m-%d %H:%M} UTC")
        broker = brokers.choose(self.broker_kind, self.folder / "broker", self.children)
        receiver = Receiver(new_secret(), self.on_alert)
        receiver.start()
        self.ports += [broker.port, receiver.port]
        try:
            broker.start()
            self.say(f"broker   {broker.name} on 127.0.0.1:{broker.port}")
            self.say(f"webhooks the loan officer's receiver on {receiver.url}")
            outcome = self._pipeline(world, broker, receiver)
        finally:
            with _signals_ignored():  # a second Ctrl-C must not leave children behind
                self.children.stop_all()
                broker.stop()
                receiver.stop()
        outcome.broker = broker.name
        outcome.delivered = len(receiver.opened())
        outcome.refused_webhooks = receiver.refused
        outcome.leftovers = leftovers(self.folder, self.ports)
        return outcome

    def _pipeline(self, world: World, broker: brokers.Broker, receiver: Receiver) -> Outcome:
        scenario, *book = world.write(self.folder / "inputs")
        bank = self.folder / "bank"
        bank.mkdir(parents=True)
        keys = self._bank_keys(bank)
        side = configs.BankSide(
            bank,
            broker.port,
            broker.protocol,
            brokers.free_port(),
            keys.witness,
            receiver.url,
            receiver.secret,
        )
        self.ports.append(side.witness_port)
        replay_config, config = bank / "anchor-replay.toml", bank / "anchor.toml"
        replay_config.write_text(side.anchor_toml(configs.REPLAY_SILENT_AFTER_S))
        config.write_text(side.anchor_toml(configs.SILENT_AFTER_S))
        (bank / "witness.toml").write_text(side.witness_toml(keys.anchor))
        witness_argv = cli_argv("witness", "run", "--config", str(bank / "witness.toml"))
        self.children.spawn("witness", witness_argv, self.folder / "logs" / "witness.log")
        self.cli("anchor-init.log", "anchor", "init", "--config", str(replay_config))
        speed = world.duration_ms // (REPLAY_S * 1000)
        with ThreadPoolExecutor(len(GATEWAYS)) as pool:
            for done in [
                pool.submit(self._gateway, g, broker, keys.anchor, scenario, speed, replay_config)
                for g in GATEWAYS
            ]:
                done.result()
        self.say(f"keys     anchor {keys.anchor[:16]}…, witness {configs.WITNESS_NAME}")
        self._start_anchor(replay_config)
        expected = _simulated_events(scenario) + len(GATEWAYS)  # + each gateway's start beat
        for g in GATEWAYS:
            argv = cli_argv("gateway", "run", "--config", str(self.folder / g / "gateway.toml"))
            self.children.spawn(f"gateway {g}", argv, self.folder / "logs" / f"gateway-{g}.log")
        self.say(f"replay   {len(GATEWAYS)} gateways, 15 devices, {expected:,} events, {speed:,}x")
        self._replay(world, expected, replay_config, book)
        self.say(f"restart  anchor with the production silence threshold ({config.name})")
        self.children.stop("anchor")
        self._start_anchor(config)
        self._settle(receiver)
        outcome = collect(self.cli, self.folder, world, config, keys, self.theft_event)
        self.say(f"proof    {outcome.proof}: {outcome.proof_report}")
        self.say(f"statement {outcome.statement_summary.splitlines()[0]}")
        return outcome

    def _bank_keys(self, bank: Path) -> Keys:
        with ThreadPoolExecutor(2) as pool:
            anchor = pool.submit(
                self.cli, "anchor-keygen.log", "anchor", "keygen", "--key", str(bank / "anchor.key")
            )
            witness = pool.submit(
                self.cli,
                "witness-keygen.log",
                "witness",
                "keygen",
                "--key",
                str(bank / "witness.key"),
                "--name",
                configs.WITNESS_NAME,
            )
            return Keys(_public_key(anchor), _public_key(witness))

    def _gateway(
        self,
        gateway: str,
        broker: brokers.Broker,
        anchor_key: str,
        scenario: Path,
        speed: int,
        anchor_config: Path,
    ) -> None:
        """The gateway's key and config, and its enrolment at the anchor."""
        folder = self.folder / gateway
        folder.mkdir(parents=True)
        key = keystore.generate(folder / "gateway.key")
        (folder / "gateway.toml").write_text(
            configs.gateway_toml(gateway, broker.port, broker.protocol, anchor_key, scenario, speed)
        )
        self.cli(
            f"enrol-{gateway}.log",
            *("anchor", "enrol", "--config", str(anchor_config), "--warehouse", WAREHOUSE),
            *("--gateway", gateway, "--public-key", key.public_key.hex()),
        )

    def _start_anchor(self, config: Path) -> None:
        log = self.folder / "logs" / "anchor.log"
        before = log.read_text(errors="replace").count("subscribed to") if log.exists() else 0
        self.children.spawn("anchor", cli_argv("anchor", "run", "--config", str(config)), log)

        def subscribed() -> bool:
            self.children.check_alive("anchor")
            return log.read_text(errors="replace").count("subscribed to") > before

        wait_for(subscribed, 30, "the anchor's subscription")

    def _replay(self, world: World, expected: int, config: Path, book: list[Path]) -> None:
        """Progress lines until every event is stored and sequenced and the book is in."""
        db = self.folder / "bank" / "anchor.db"
        loans, pledges, prices = book
        imported: Future[str] | None = None
        deadline = time.monotonic() + REPLAY_DEADLINE_S
        shown = 0.0
        with ThreadPoolExecutor(1) as pool:
            while True:
                c = read_counts(db, world.start_ms)
                if imported is None and c.opening >= len(LOTS):
                    self.say("book     opening stocktake stored: importing the 4 loans")
                    imported = pool.submit(
                        self.cli,
                        "loans-import.log",
                        *("loans", "import", "--config", str(config), "--loans", str(loans)),
                        *("--pledges", str(pledges), "--prices", str(prices)),
                        *("--valid-from", f"{world.start.date()}"),
                    )
                done = c.events >= expected and c.sequenced == c.events
                if done and imported is not None and imported.done():
                    imported.result()
                    self._progress(c, expected)
                    return
                if time.monotonic() - shown >= 1.5:
                    shown = time.monotonic()
                    self._progress(c, expected)
                for name in ("anchor", "witness", *(f"gateway {g}" for g in GATEWAYS)):
                    self.children.check_alive(name)
                if time.monotonic() > deadline:
                    raise DemoFailed(f"replay unfinished: {c.events} of {expected} events stored")
                time.sleep(0.2)

    def _progress(self, c: StoreCounts, expected: int) -> None:
        self.say(
            f"progress {c.events:6,}/{expected:,} events stored, {c.checkpoints} checkpoints, "
            f"witnessed {c.witnessed_size:,}, on the ledger {c.anchored_size:,}"
        )

    def _settle(self, receiver: Receiver) -> None:
        """Until every expected alert has arrived and a witnessed, anchored checkpoint covers
        the whole log (or 30 s: the summary then shows what is missing)."""
        db = self.folder / "bank" / "anchor.db"

        def settled() -> bool:
            self.children.check_alive("anchor")
            c = read_counts(db, 0)
            arrived = compare([d.data for d in receiver.opened()]).ok
            return arrived and c.anchored_size == c.witnessed_size == c.log_size

        try:
            wait_for(settled, 30, "the expected alerts and a checkpoint covering the log")
        except DemoFailed as exc:
            self.say(f"warning  {exc}")
        time.sleep(0.5)  # an unexpected alert still in flight shows up in the summary


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _public_key(future: Future[str]) -> str:
    """The ``public key: HEX`` line of a keygen command's output."""
    for line in future.result().splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "public key":
            return value.strip()
    raise DemoFailed("keygen printed no 'public key:' line")


def _simulated_events(scenario: Path) -> int:
    """How many readings the gateways will sign: the same scenario, simulated here."""
    loaded = load_scenario(scenario)
    return sum(1 for g in GATEWAYS for _ in simulate(loaded, g))


def run_demo(out: TextIO, folder: Path, broker_kind: str) -> int:
    """Run the demo into ``folder``; 0 only if everything matched, else 1."""
    demo = Demo(out, folder, broker_kind)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        outcome = demo.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    outcome.elapsed_s = time.monotonic() - demo.started
    print_summary(outcome, out)
    return 0 if outcome.ok else 1
