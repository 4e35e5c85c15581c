"""``pledgewatch alerts …``: list, acknowledge and replay alerts; deliver webhooks; export
evidence. Every subcommand but ``keygen`` and ``new-secret`` takes the anchor's config file.

Exit codes: 0 success, 1 runtime failure (or evidence not all provable yet), 2 bad
configuration or arguments.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from anchor import keyfile
from anchor.alerts import config as alerts_config
from anchor.alerts import deliver, lifecycle, outbox
from anchor.alerts.config import AlertsConfig
from anchor.alerts.evidence import INDEX_NAME, export_evidence
from anchor.alerts.model import Alert, AlertState
from anchor.alerts.webhooks import EvidenceLinks, alert_data, new_secret, public_key_text
from anchor.errors import AnchorError, ConfigError
from anchor.store.db import Database
from anchor.store.schema import open_store
from pledgewatch.errors import PledgewatchError
from pledgewatch.process import handle_signals

STATES = {
    "open": (AlertState.OPEN,),
    "acknowledged": (AlertState.ACKNOWLEDGED,),
    "resolved": (AlertState.RESOLVED,),
    "active": (AlertState.OPEN, AlertState.ACKNOWLEDGED),
    "all": tuple(AlertState),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="alerts_command", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", type=Path, required=True, help="the anchor's config")
        return p

    listing = command("list", "alerts, newest first")
    listing.add_argument("--state", choices=sorted(STATES), default="active")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true")
    show = command("show", "one alert with its transitions and deliveries")
    show.add_argument("alert_id", type=int)
    show.add_argument("--json", action="store_true")
    ack = command("ack", "acknowledge an alert (it stays open for escalation)")
    ack.add_argument("alert_id", type=int)
    ack.add_argument("--by", required=True, help="who takes it")
    replay = command("replay", "send an alert's messages again, with their original ids")
    replay.add_argument("alert_id", type=int)
    replay.add_argument("--endpoint", help="only this [[webhooks]] name")
    evidence = command("evidence", "write a proof file per evidence event, and an index")
    evidence.add_argument("alert_id", type=int)
    evidence.add_argument("-o", "--output", type=Path, required=True, help="a folder")
    run = command("deliver", "send due webhooks (until SIGTERM/SIGINT, or --once)")
    run.add_argument("--once", action="store_true")
    box = command("outbox", "undelivered messages: pending, held and dead")
    box.add_argument("--all", action="store_true", help="delivered ones too")
    box.add_argument("--limit", type=int, default=100)
    box.add_argument("--json", action="store_true")
    ends = command("endpoints", "configured endpoints and their state (410-disabled, paused)")
    ends.add_argument("--json", action="store_true")
    enable = command("enable", "re-enable an endpoint disabled by a 410 Gone")
    enable.add_argument("name")
    command("public-key", "the alert signing key's public key for the bank (whpk_…)")
    keygen = sub.add_parser("keygen", help="create the alert signing key (Ed25519, mode 0600)")
    keygen.add_argument("--key", type=Path, required=True)
    sub.add_parser("new-secret", help="print a fresh whsec_ secret for a [[webhooks]] table")


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    handlers = {
        "list": _list,
        "show": _show,
        "ack": _ack,
        "replay": _replay,
        "evidence": _evidence,
        "deliver": _deliver,
        "outbox": _outbox,
        "endpoints": _endpoints,
        "enable": _enable,
        "public-key": _public_key,
        "keygen": _keygen,
        "new-secret": _new_secret,
    }
    try:
        return handlers[args.alerts_command](args, out)
    except ConfigError as exc:
        print(f"error: {exc}", file=err)
        return 2
    except (AnchorError, PledgewatchError) as exc:
        print(f"error: {exc}", file=err)
        return 1


def _open(args: argparse.Namespace) -> tuple[AlertsConfig, Database]:
    config = alerts_config.load(args.config)
    return config, open_store(config.store)  # the anchor's tables too: evidence needs them


def _summary(alert: Alert) -> dict[str, object]:
    data = alert_data(alert, EvidenceLinks())
    data["evidence"] = list(alert.evidence)
    return data


def _list(args: argparse.Namespace, out: TextIO) -> int:
    _, db = _open(args)
    try:
        alerts = lifecycle.list_alerts(db, STATES[args.state], args.limit)
    finally:
        db.close()
    if args.json:
        print(json.dumps([_summary(a) for a in alerts], indent=2, sort_keys=True), file=out)
        return 0
    for a in alerts:
        who = f" (ack: {a.acked_by})" if a.acked_by else ""
        print(
            f"#{a.id} {a.state.value:12} {a.severity.name.lower():8} {a.category.value:14} "
            f"{a.rule.value} {a.warehouse}/{a.loan_id or '-'}/{a.subject}: {a.message}{who}",
            file=out,
        )
    return 0


def _show(args: argparse.Namespace, out: TextIO) -> int:
    _, db = _open(args)
    try:
        alert = lifecycle.get_alert(db, args.alert_id)
        transitions = lifecycle.transitions_of(db, args.alert_id)
        sent = outbox.rows_of_alert(db, args.alert_id)
    finally:
        db.close()
    report = {
        "alert": _summary(alert),
        "transitions": [
            {"n": t.n, "kind": t.kind.value, "at_ms": t.at_ms, "webhook_id": t.webhook_id}
            for t in transitions
        ],
        "deliveries": [_row_dict(r) for r in sent],
    }
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True), file=out)
        return 0
    print(json.dumps(report["alert"], indent=2, sort_keys=True), file=out)
    for t in transitions:
        print(f"  {t.n}. {t.kind.value} at {t.at_ms} id={t.webhook_id}", file=out)
    for r in sent:
        print("  " + "  ".join(f"{k}={v}" for k, v in _row_dict(r).items()), file=out)
    return 0


def _ack(args: argparse.Namespace, out: TextIO) -> int:
    _, db = _open(args)
    try:
        transition = lifecycle.acknowledge(db, args.alert_id, args.by, deliver.now_ms())
    finally:
        db.close()
    if transition is None:
        print(f"alert {args.alert_id} was already acknowledged", file=out)
    else:
        print(f"acknowledged alert {args.alert_id} ({transition.webhook_id})", file=out)
    return 0


def _replay(args: argparse.Namespace, out: TextIO) -> int:
    config, db = _open(args)
    endpoints = [e for e in config.webhooks if args.endpoint in (None, e.name)]
    if args.endpoint is not None and not endpoints:
        db.close()
        raise ConfigError(str(args.config), [f"no [[webhooks]] named {args.endpoint!r}"])
    try:
        links = EvidenceLinks(config.alerts.proof_url)
        queued = outbox.replay(db, args.alert_id, endpoints, links, deliver.now_ms())
    finally:
        db.close()
    for message_id, endpoint in queued:
        print(f"queued {message_id} for {endpoint}", file=out)
    print(f"{len(queued)} message(s) queued; the deliverer sends them", file=out)
    return 0


def _evidence(args: argparse.Namespace, out: TextIO) -> int:
    _, db = _open(args)
    try:
        alert = lifecycle.get_alert(db, args.alert_id)
        results = export_evidence(db, alert, args.output)
    finally:
        db.close()
    missing = [r for r in results if r.file is None]
    for r in results:
        state = r.file if r.file is not None else f"not provable yet: {r.reason}"
        print(f"{r.event_id}: {state}", file=out)
    print(
        f"wrote {len(results) - len(missing)} proof file(s) and {args.output / INDEX_NAME}",
        file=out,
    )
    return 1 if missing else 0


def _deliver(args: argparse.Namespace, out: TextIO) -> int:
    config, db = _open(args)
    if not args.once:
        db.close()
        stop = threading.Event()
        handle_signals(stop)
        deliver.serve(config, stop)
        return 0
    try:
        report = deliver.build(db, config).step(deliver.now_ms())
    finally:
        db.close()
    for a in report.attempts:
        print(
            f"{a.outcome.value:9} {a.message_id} -> {a.endpoint} "
            f"{a.status or ''} {a.error or ''}".rstrip(),
            file=out,
        )
    print(
        f"routed {report.routed}, attempted {len(report.attempts)}, held {report.held}",
        file=out,
    )
    return 0


def _row_dict(r: outbox.OutboxRow) -> dict[str, object]:
    state = "delivered" if r.delivered_ms else "dead" if r.dead else "pending"
    return {
        "webhook_id": r.message_id,
        "endpoint": r.endpoint,
        "state": state,
        "replay": r.replay,
        "attempts": r.attempts,
        "next_attempt_ms": r.next_attempt_ms,
        "last_status": r.last_status,
        "last_error": r.last_error,
        "delivered_ms": r.delivered_ms,
    }


def _outbox(args: argparse.Namespace, out: TextIO) -> int:
    _, db = _open(args)
    try:
        rows = outbox.list_rows(db, undelivered_only=not args.all, limit=args.limit)
    finally:
        db.close()
    _print(out, [_row_dict(r) for r in rows], args.json)
    return 0


def _endpoints(args: argparse.Namespace, out: TextIO) -> int:
    config, db = _open(args)
    try:
        states = outbox.endpoint_states(db)
        counts = outbox.undelivered_counts(db)
    finally:
        db.close()
    rows = []
    for e in config.webhooks:
        state = states.get(e.name)
        disabled = state is not None and state.disabled_for(e.url)
        rows.append(
            {
                "name": e.name,
                "url": e.url,
                "disabled": disabled,
                "disabled_reason": state.disabled_reason if state and disabled else None,
                "paused_until_ms": state.paused_until_ms if state else None,
                "pending": counts.get((e.name, False), 0),
                "dead": counts.get((e.name, True), 0),
            }
        )
    _print(out, rows, args.json)
    return 0


def _enable(args: argparse.Namespace, out: TextIO) -> int:
    config, db = _open(args)
    try:
        if args.name not in {e.name for e in config.webhooks}:
            raise ConfigError(str(args.config), [f"no [[webhooks]] named {args.name!r}"])
        held = outbox.enable_endpoint(db, args.name, deliver.now_ms())
    finally:
        db.close()
    print(f"endpoint {args.name} enabled; {held} message(s) pending for it", file=out)
    return 0


def _public_key(args: argparse.Namespace, out: TextIO) -> int:
    config = alerts_config.load(args.config)
    if config.alerts.signing_key_file is None:
        raise ConfigError(str(args.config), ["alerts.signing_key_file: not set"])
    key = keyfile.load(config.alerts.signing_key_file, what="alert signing key")
    print(public_key_text(key.public_key), file=out)
    return 0


def _keygen(args: argparse.Namespace, out: TextIO) -> int:
    key = keyfile.generate(args.key, what="alert signing key")
    print(f"key file:   {args.key}\npublic key: {public_key_text(key.public_key)}", file=out)
    return 0


def _new_secret(args: argparse.Namespace, out: TextIO) -> int:
    print(new_secret(), file=out)
    return 0


def _print(out: TextIO, rows: Sequence[dict[str, object]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(list(rows), indent=2, sort_keys=True), file=out)
        return
    for row in rows:
        print("  ".join(f"{k}={v}" for k, v in row.items()), file=out)
