"""The demo's last step, as the bank would do it: a proof file for the theft's UNLOAD, checked
with ``pledgewatch verify`` against the anchor's and the witness's public keys; a statement
of the robbed loan over the month; the anchor's status and its alert list. All through the
CLI, the independent commands side by side."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from gateway.demo import configs
from gateway.demo.errors import DemoFailed
from gateway.demo.summary import Outcome
from gateway.demo.world import THEFT_LOAN, World

Cli = Callable[..., str]  # (log file name, *pledgewatch arguments) -> stdout


@dataclass(frozen=True, slots=True)
class Keys:
    anchor: str  # 64 hex
    witness: str  # 64 hex


def collect(
    cli: Cli, folder: Path, world: World, config: Path, keys: Keys, theft_event: str | None
) -> Outcome:
    outcome = Outcome(folder, "")
    statement_dir = folder / f"statement-{THEFT_LOAN}"
    period = ("--from", f"{world.start.date()}", "--to", f"{world.end.date()}")
    conf = ("--config", str(config))
    with ThreadPoolExecutor(4) as pool:
        proof = None
        if theft_event is not None:
            outcome.proof = folder / "proof-theft.json"
            proof = pool.submit(_proof, cli, theft_event, outcome.proof, config, keys)
        statement = pool.submit(
            cli, "statement.log", "statement", THEFT_LOAN, *period, *conf, "-o", str(statement_dir)
        )
        status = pool.submit(cli, "status.log", "anchor", "status", "--json", *conf)
        alerts = pool.submit(cli, "alerts.log", "alerts", "list", "--state", "all", "--json", *conf)
        outcome.status = json.loads(status.result())
        outcome.alerts = json.loads(alerts.result())
        outcome.statement_summary = statement.result().strip()
        if proof is not None:
            outcome.proof_verified, outcome.proof_report = proof.result()
    outcome.statement = tuple(sorted(statement_dir.glob("statement.*")))
    return outcome


def _proof(cli: Cli, event_id: str, path: Path, config: Path, keys: Keys) -> tuple[bool, str]:
    """Write the proof file, then verify it offline: (verified, ``verify``'s verdict)."""
    cli("proof.log", "proof", event_id, "-o", str(path), "--config", str(config))
    witness = f"{configs.WITNESS_NAME}:{keys.witness}"
    try:
        report = cli(
            "verify.log", "verify", str(path), "--anchor-key", keys.anchor, "--witness-key", witness
        )
    except DemoFailed as exc:  # the verdict belongs in the summary, not in a traceback
        return False, str(exc)
    return True, report.strip().splitlines()[-1]
