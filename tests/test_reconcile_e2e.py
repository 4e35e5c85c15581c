"""Loans, the live reconciler and webhooks end to end, on real Mosquitto.

A gateway reports a stocktake, a theft (no release token), an authorised release and an
over-quantity release. The anchor's live reconciler must raise exactly the expected alerts
(and none for the authorised release), deliver them as signed Standard Webhooks to a loan
officer's receiver that was down at first — exactly once per webhook-id — export their
evidence as proof files that `pledgewatch verify` accepts, and the offline reconciliation of
the exported log must find the same conditions.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from anchor import keyfile
from devices.base import Reading
from pledgewatch.events import Kind, SignedEvent
from pledgewatch.topics import events_topic

from alerts_rig import Receiver
from anchor_rig import AnchorRig, cli, wait_until
from gateway_rig import WAREHOUSE, GatewayRig
from servers import MosquittoServer

pytestmark = pytest.mark.slow
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def book_files(folder: Path) -> list[str]:
    today = dt.datetime.now(dt.UTC).date()
    start, end = today - dt.timedelta(days=30), today + dt.timedelta(days=30)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "loans.csv").write_text(
        "loan_id,borrower,warehouse_id,currency,outstanding,start,end,pledge_type,"
        "advance_rate,warning_ratio,liquidation_ratio,min_value\n"
        f"LN-1,Acme Steel,{WAREHOUSE},USD,10000.00,{start},{end},static,0.70,1.50,1.20,0\n"
    )
    (folder / "pledges.csv").write_text(
        "loan_id,lot,sku,qty\nLN-1,WR-1,steel-coil,40\nLN-1,WR-2,steel-coil,20\n"
    )
    (folder / "prices.csv").write_text(
        f"sku,date,unit_price\nsteel-coil,{today - dt.timedelta(days=1)},1000.00\n"
    )
    return [
        "--loans",
        str(folder / "loans.csv"),
        "--pledges",
        str(folder / "pledges.csv"),
        "--prices",
        str(folder / "prices.csv"),
    ]


def reading(kind: Kind, lot: str, qty: int, release: str | None = None) -> str:
    now = time.time_ns() // 1_000_000
    return json.dumps(
        Reading(
            device="portal-out",
            kind=kind,
            ts_ms=now,
            bay="A1",
            sku="steel-coil",
            lot=lot,
            qty=qty,
            release=release,
        ).to_dict()
    )


def test_theft_and_releases_raise_exactly_the_expected_alerts_delivered_once(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    receiver = Receiver()
    receiver.up()
    port = receiver.port
    receiver.down()  # the loan officer's system is down when the alerts fire
    bank = keyfile.generate(tmp_path / "bank-release.key")
    extra = "\n".join(
        [
            "[reconcile]",
            "every_ms = 100",
            "",
            "[bank]",
            f'release_public_key = "{bank.public_key.hex()}"',
            "",
            "[alerts]",
            "deliver_every_ms = 100",
            "retry_schedule_s = [1, 1, 1, 1, 1, 1, 1, 1]",
            "jitter = false",
            "",
            "[[webhooks]]",
            'name = "credit-desk"',
            f'url = "http://127.0.0.1:{port}/hook"',
            f'secret = "{SECRET}"',
            "",
        ]
    )
    anchor = AnchorRig(tmp_path / "anchor", mosquitto.port, witness=False, extra_toml=extra)
    config = str(anchor.config_path)
    gateway = GatewayRig(tmp_path / "gw", mosquitto.port, anchor_key=anchor.key)
    anchor.enrol(WAREHOUSE, "gw-1", gateway.key.public_key)
    try:
        anchor.start()
        anchor.wait_subscribed()
        gateway.feed([reading(Kind.COUNT, "WR-1", 40), reading(Kind.COUNT, "WR-2", 20)])
        gateway.start()
        wait_until(lambda: anchor.status()["events"] == 3, 30, "the stocktake")
        # The loan is drawn down after the opening stocktake (else the pledge is short).
        cli("loans", "import", "--config", config, *book_files(tmp_path / "book"))
        issued = cli(
            "release",
            "issue",
            "--config",
            config,
            "--key",
            str(tmp_path / "bank-release.key"),
            "--loan",
            "LN-1",
            "--lot",
            "WR-2",
            "--qty",
            "5",
            "--until",
            (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "-o",
            str(tmp_path / "token.json"),
        )
        token_id = re.search(r"rel-[0-9a-f]+", issued.stdout + issued.stderr)[0]  # type: ignore[index]
        time.sleep(0.5)
        assert alert_rules(anchor) == []  # a clean book raises nothing
        gateway.feed(
            [
                reading(Kind.UNLOAD, "WR-1", 6),  # theft
                reading(Kind.UNLOAD, "WR-2", 5, release=token_id),  # authorised
                reading(Kind.UNLOAD, "WR-2", 3, release=token_id),
            ]
        )  # over the token
        forge_a_signature(anchor, mosquitto)  # -> quarantined as bad_signature -> TAMPER
        want = ["SHORTFALL", "SHORTFALL", "TAMPER", "UNAUTHORIZED_RELEASE", "UNAUTHORIZED_RELEASE"]
        wait_until(lambda: alert_rules(anchor) == want, 30, "the five alerts")
        latency = anchor.query(
            "SELECT MAX(a.opened_ms - e.received_ms) FROM alerts a, events e "
            "WHERE e.kind = 'UNLOAD'"
        )[0][0]
        assert latency is not None and latency < 5000  # typically ~0.3 s; loose for CI load

        time.sleep(1.5)  # retries fail while the receiver is down ...
        receiver.up()  # ... then every alert arrives, exactly once per webhook-id
        wait_until(lambda: len(receiver.delivered()) == 5, 30, "five deliveries")
        time.sleep(1.5)
        delivered = receiver.delivered()
        assert sorted(delivered.values()) == [1, 1, 1, 1, 1]
        verifier = Webhook(SECRET)
        for request in receiver.requests():
            payload = verifier.verify(request.body, request.headers)
            assert payload["type"] == "alert.opened"

        unauthorised = anchor.query(
            "SELECT id FROM alerts WHERE rule = 'UNAUTHORIZED_RELEASE' ORDER BY id"
        )
        evidence_dir = tmp_path / "evidence"
        wait_until(
            lambda: (
                cli(
                    "alerts",
                    "evidence",
                    str(unauthorised[0][0]),
                    "-o",
                    str(evidence_dir),
                    "--config",
                    config,
                    check=False,
                ).returncode
                == 0
            ),
            30,
            "provable evidence",
        )
        proofs = sorted(evidence_dir.glob("*.json"))
        proof_files = [p for p in proofs if p.name != "index.json"]
        assert proof_files
        for proof in proof_files:
            verified = cli(
                "verify", str(proof), "--anchor-key", anchor.key.public_key.hex(), check=False
            )
            assert verified.returncode == 0, verified.stdout + verified.stderr

        export = tmp_path / "export"
        wait_until(
            lambda: (
                cli("export", "--config", config, "-o", str(export), check=False).returncode == 0
            ),
            30,
            "an export",
        )
        offline = cli(
            "reconcile",
            "--events",
            str(export / "signed-events.jsonl"),
            "--keys",
            str(export / "gateways.json"),
            *book_files(tmp_path / "book"),
            "--releases",
            str(export / "releases.jsonl"),
            "--quarantine",
            str(export / "quarantine.jsonl"),
            "--bank-key",
            bank.public_key.hex(),
            "--at",
            str(time.time_ns() // 1_000_000),
            "--format",
            "json",
            check=False,
        )
        assert offline.returncode == 1, offline.stderr  # conditions found
        found = sorted((c["rule"], c["fingerprint"]) for c in json.loads(offline.stdout))
        live = sorted(
            anchor.query("SELECT rule, fingerprint FROM alerts WHERE state <> 'resolved'")
        )
        assert found == live
    finally:
        receiver.down()
        gateway.stop()
        anchor.stop()


def forge_a_signature(anchor: AnchorRig, mosquitto: MosquittoServer) -> None:
    """Publish a stored event again with one signature bit flipped, on its own topic."""
    (wire,) = anchor.query("SELECT wire FROM events WHERE kind = 'COUNT' LIMIT 1")[0]
    honest = SignedEvent.from_wire(bytes(wire))  # type: ignore[arg-type]
    bad = bytes([honest.signature[0] ^ 1]) + honest.signature[1:]
    forged = SignedEvent.wire_from_body(honest.body, honest.key_id, bad)
    topic = events_topic(WAREHOUSE, honest.event.gateway)
    subprocess.run(
        ["mosquitto_pub", "-p", str(mosquitto.port), "-q", "1", "-t", topic, "-s"],
        input=forged,
        check=True,
        timeout=10,
    )
    wait_until(
        lambda: anchor.query("SELECT reason FROM quarantine") == [("bad_signature",)],
        30,
        "the forged message quarantined as bad_signature",
    )


def alert_rules(anchor: AnchorRig) -> list[str]:
    return sorted(
        str(r[0]) for r in anchor.query("SELECT rule FROM alerts WHERE state <> 'resolved'")
    )


def write_book(folder: Path, price_today: str) -> list[str]:
    """LN-1 and LN-2 both pledge lot WR-2 over overlapping periods (a double pledge); the
    price of steel-coil was 1000.00 yesterday and ``price_today`` today."""
    today = dt.datetime.now(dt.UTC).date()
    start, end = today - dt.timedelta(days=30), today + dt.timedelta(days=30)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "loans.csv").write_text(
        "loan_id,borrower,warehouse_id,currency,outstanding,start,end,pledge_type,"
        "advance_rate,warning_ratio,liquidation_ratio,min_value\n"
        f"LN-1,Acme Steel,{WAREHOUSE},USD,10000.00,{start},{end},static,0.70,1.50,1.20,0\n"
        f"LN-2,Beta Metals,{WAREHOUSE},USD,2000.00,{today},{end},static,0.70,1.50,1.20,0\n"
    )
    (folder / "pledges.csv").write_text(
        "loan_id,lot,sku,qty\nLN-1,WR-1,steel-coil,40\nLN-1,WR-2,steel-coil,20\n"
        "LN-2,WR-2,steel-coil,20\n"
    )
    (folder / "prices.csv").write_text(
        f"sku,date,unit_price\nsteel-coil,{today - dt.timedelta(days=1)},1000.00\n"
        f"steel-coil,{today},{price_today}\n"
    )
    return [f"--{name}={folder / f'{name}.csv'}" for name in ("loans", "pledges", "prices")]


def test_double_pledge_and_a_price_fall_alert_at_once_and_a_recovery_resolves(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    """Loan-book conditions (no event causes them) over the real pipeline: a lot pledged to
    two loans at once, then a price fall through LN-1's warning line (coverage 60 units x
    230.00 / 10,000.00 = 1.38 < 1.50) and a recovery. The deliverer's own period is a minute
    here: the alerts arrive within seconds only because the reconciler nudges it."""
    receiver = Receiver()
    receiver.up()
    extra = "\n".join(
        [
            "[reconcile]",
            "every_ms = 100",
            "",
            "[alerts]",
            "deliver_every_ms = 60000",
            "",
            "[[webhooks]]",
            'name = "credit-desk"',
            f'url = "{receiver.url()}"',
            f'secret = "{SECRET}"',
            "",
        ]
    )
    anchor = AnchorRig(tmp_path / "anchor", mosquitto.port, witness=False, extra_toml=extra)
    config = str(anchor.config_path)
    gateway = GatewayRig(tmp_path / "gw", mosquitto.port, anchor_key=anchor.key)
    anchor.enrol(WAREHOUSE, "gw-1", gateway.key.public_key)
    verifier = Webhook(SECRET)

    def webhooks() -> list[tuple[str, str, str | None]]:
        out = []
        for request in receiver.requests():
            body = verifier.verify(request.body, request.headers)
            out.append((body["type"], body["data"]["rule"], body["data"].get("loan_id")))
        return sorted(out)

    try:
        anchor.start()
        anchor.wait_subscribed()
        gateway.feed([reading(Kind.COUNT, "WR-1", 40), reading(Kind.COUNT, "WR-2", 20)])
        gateway.start()
        wait_until(lambda: anchor.status()["events"] == 3, 30, "the stocktake")
        cli("loans", "import", "--config", config, *write_book(tmp_path / "v1", "1000.00"))
        wait_until(lambda: alert_rules(anchor) == ["DOUBLE_PLEDGE"], 30, "the double pledge")
        wait_until(lambda: len(receiver.requests()) == 1, 15, "its webhook, nudged")
        assert webhooks() == [("alert.opened", "DOUBLE_PLEDGE", None)]

        cli("loans", "import", "--config", config, *write_book(tmp_path / "v2", "230.00"))
        want = ["COVERAGE_WARNING", "DOUBLE_PLEDGE"]
        wait_until(lambda: alert_rules(anchor) == want, 30, "the price fall")
        wait_until(lambda: len(receiver.requests()) == 2, 15, "the coverage webhook")
        (message,) = anchor.query("SELECT message FROM alerts WHERE rule = 'COVERAGE_WARNING'")
        assert "LN-1 coverage 1.3800" in str(message[0])

        cli("loans", "import", "--config", config, *write_book(tmp_path / "v3", "900.00"))
        wait_until(lambda: alert_rules(anchor) == ["DOUBLE_PLEDGE"], 30, "the recovery")
        wait_until(lambda: len(receiver.requests()) == 3, 15, "the resolution webhook")
        time.sleep(1.0)
        assert webhooks() == [
            ("alert.opened", "COVERAGE_WARNING", "LN-1"),
            ("alert.opened", "DOUBLE_PLEDGE", None),
            ("alert.resolved", "COVERAGE_WARNING", "LN-1"),
        ]
        assert sorted(receiver.delivered().values()) == [1, 1, 1]
    finally:
        receiver.down()
        gateway.stop()
        anchor.stop()
