"""The alert lifecycle: reconciler conditions in, alert transitions out (one transaction).

Per fingerprint (``Condition.fingerprint``) at most one alert is active (open or
acknowledged). ``apply_conditions`` compares what a reconciler run reported with the active
alerts inside the run's ``Scope``:

- a fingerprint without an active alert → a new alert, ``OPENED``;
- a higher severity than the alert's highest so far → ``ESCALATED`` (an acknowledged alert
  goes back to open);
- same or lower severity → no transition; message and evidence are refreshed silently;
- an active alert in scope whose fingerprint was not reported → ``RESOLVED``, with a
  resolution message that keeps the last condition text.

A condition that comes back after its alert was resolved opens a new alert (new id, new
webhook ids). Each transition is a row of ``alert_transitions``, written in the same
transaction as the alert; the outbox router (``anchor.alerts.outbox``) turns it into
messages later, so a crash cannot record a transition without its messages, or the reverse.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Sequence

from anchor.alerts.errors import AlertError, AlertNotFound
from anchor.alerts.model import (
    ALERT_COLUMNS,
    TRANSITION_COLUMNS,
    Alert,
    AlertState,
    Scope,
    Transition,
    TransitionKind,
    alert_from_row,
    snapshot_of,
    transition_from_row,
)
from anchor.alerts.webhooks import rfc3339, webhook_id
from anchor.reconcile.conditions import Condition
from anchor.store.alerts_schema import ALERTS_LOCK_ID
from anchor.store.db import Database, Tx

MAX_EVIDENCE = 64  # event ids kept per alert: the first half and the newest
MAX_NAME = 200


def apply_conditions(
    db: Database, conditions: Sequence[Condition], now_ms: int, *, scope: Scope
) -> list[Transition]:
    """Open, escalate and resolve alerts for one reconciler run over ``scope``.

    Every condition must lie inside ``scope`` (else ``AlertError``, nothing written).
    Returns the transitions made: openings and escalations in the order of ``conditions``,
    then resolutions by alert id.
    """
    reported = _merge(conditions, scope)
    transitions: list[Transition] = []
    with db.transaction() as tx:
        tx.lock(ALERTS_LOCK_ID)
        active = {a.fingerprint: a for a in _active_in(tx, scope)}
        for fingerprint, condition in reported.items():
            alert = active.get(fingerprint)
            if alert is None:
                transitions.append(_open(tx, condition, now_ms))
            elif condition.severity > alert.severity:
                transitions.append(_escalate(tx, alert, condition, now_ms))
            else:
                _refresh(tx, alert, condition, now_ms)
        for alert in sorted(active.values(), key=lambda a: a.id):
            if alert.fingerprint not in reported:
                transitions.append(_resolve(tx, alert, now_ms))
    return transitions


def acknowledge(db: Database, alert_id: int, by: str, now_ms: int) -> Transition | None:
    """Mark an active alert as taken by ``by``. ``None`` if it already was acknowledged (no
    new message); ``AlertNotFound`` / ``AlertError`` for unknown or resolved alerts."""
    name = by.strip()
    if not name or len(name) > MAX_NAME or any(c in name for c in "\r\n\t"):
        raise AlertError(f"acknowledged by: got {by!r}, want a name (1..{MAX_NAME} chars)")
    with db.transaction() as tx:
        tx.lock(ALERTS_LOCK_ID)
        alert = _get(tx, alert_id)
        if alert.state is AlertState.RESOLVED:
            raise AlertError(f"alert {alert_id} is resolved; nothing to acknowledge")
        if alert.state is AlertState.ACKNOWLEDGED:
            return None
        acked = dataclasses.replace(
            alert, state=AlertState.ACKNOWLEDGED, acked_by=name, updated_ms=now_ms
        )
        _write(tx, acked)
        return _record(tx, acked, TransitionKind.ACKNOWLEDGED, now_ms, by=name)


def get_alert(db: Database, alert_id: int) -> Alert:
    return _get(db.read(), alert_id)


def list_alerts(
    db: Database, states: Collection[AlertState] | None = None, limit: int = 1000
) -> list[Alert]:
    """Alerts, newest first; ``states=None`` means all."""
    wanted = [s.value for s in (AlertState if states is None else states)]
    if not wanted:
        return []
    marks = ", ".join("?" for _ in wanted)
    rows = db.read().all(
        f"SELECT {ALERT_COLUMNS} FROM alerts WHERE state IN ({marks}) "  # noqa: S608
        "ORDER BY id DESC LIMIT ?",
        (*wanted, limit),
    )
    return [alert_from_row(r) for r in rows]


def transitions_of(db: Database, alert_id: int) -> list[Transition]:
    rows = db.read().all(
        f"SELECT {TRANSITION_COLUMNS} FROM alert_transitions "  # noqa: S608
        "WHERE alert_id = ? ORDER BY n",
        (alert_id,),
    )
    return [transition_from_row(r) for r in rows]


def _merge(conditions: Sequence[Condition], scope: Scope) -> dict[str, Condition]:
    """One condition per fingerprint: the most severe, with the evidence of all."""
    merged: dict[str, Condition] = {}
    for condition in conditions:
        if not scope.covers(condition.warehouse, condition.rule, condition.loan_id):
            raise AlertError(
                f"condition {condition.rule.value} on {condition.subject!r} (warehouse "
                f"{condition.warehouse!r}, loan {condition.loan_id!r}) is outside the scope "
                "that was evaluated"
            )
        if not condition.subject:
            raise AlertError(f"condition {condition.rule.value}: empty subject")
        seen = merged.get(condition.fingerprint)
        if seen is None:
            merged[condition.fingerprint] = condition
            continue
        top = condition if condition.severity > seen.severity else seen
        evidence = _evidence(seen.evidence, condition.evidence)
        merged[condition.fingerprint] = dataclasses.replace(top, evidence=evidence)
    return merged


def _evidence(old: Sequence[str], new: Sequence[str]) -> tuple[str, ...]:
    """Old then new event ids, without repeats; over ``MAX_EVIDENCE`` the first half of them
    and the newest are kept (what established the alert, and what shows it now)."""
    combined = tuple(dict.fromkeys((*old, *new)))
    if len(combined) <= MAX_EVIDENCE:
        return combined
    head = combined[: MAX_EVIDENCE // 2]
    return head + combined[len(combined) - (MAX_EVIDENCE - len(head)) :]


def _active_in(tx: Tx, scope: Scope) -> list[Alert]:
    if not scope.warehouses:
        return []
    marks = ", ".join("?" for _ in scope.warehouses)
    rows = tx.all(
        f"SELECT {ALERT_COLUMNS} FROM alerts "  # noqa: S608
        f"WHERE state <> 'resolved' AND warehouse IN ({marks})",
        sorted(scope.warehouses),
    )
    alerts = [alert_from_row(r) for r in rows]
    return [a for a in alerts if scope.covers(a.warehouse, a.rule, a.loan_id)]


def _get(tx: Tx, alert_id: int) -> Alert:
    row = tx.one(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?", (alert_id,))  # noqa: S608
    if row is None:
        raise AlertNotFound(f"no alert {alert_id}")
    return alert_from_row(row)


def _open(tx: Tx, c: Condition, now_ms: int) -> Transition:
    evidence = _evidence((), c.evidence)
    row = tx.one(
        "INSERT INTO alerts (fingerprint, rule, category, severity, state, warehouse, loan_id, "
        "lot, device, subject, message, evidence, observed_ms, opened_ms, updated_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            c.fingerprint,
            c.rule.value,
            c.rule.category.value,
            int(c.severity),
            AlertState.OPEN.value,
            c.warehouse,
            c.loan_id,
            c.lot,
            c.device,
            c.subject,
            c.message,
            json.dumps(list(evidence)),
            c.observed_ms,
            now_ms,
            now_ms,
        ),
    )
    alert = _get(tx, int(row[0]))
    return _record(tx, alert, TransitionKind.OPENED, now_ms)


def _escalate(tx: Tx, alert: Alert, c: Condition, now_ms: int) -> Transition:
    worse = dataclasses.replace(
        alert,
        severity=c.severity,
        state=AlertState.OPEN,
        acked_by=None,
        message=c.message,
        evidence=_evidence(alert.evidence, c.evidence),
        observed_ms=c.observed_ms,
        lot=c.lot or alert.lot,
        device=c.device or alert.device,
        updated_ms=now_ms,
    )
    _write(tx, worse)
    return _record(tx, worse, TransitionKind.ESCALATED, now_ms, previous=alert)


def _refresh(tx: Tx, alert: Alert, c: Condition, now_ms: int) -> None:
    evidence = _evidence(alert.evidence, c.evidence)
    if c.message == alert.message and evidence == alert.evidence:
        return
    _write(
        tx,
        dataclasses.replace(
            alert,
            message=c.message,
            evidence=evidence,
            observed_ms=c.observed_ms,
            updated_ms=now_ms,
        ),
    )


def _resolve(tx: Tx, alert: Alert, now_ms: int) -> Transition:
    message = f"No longer reported by the evaluation at {rfc3339(now_ms)}; was: {alert.message}"
    done = dataclasses.replace(
        alert, state=AlertState.RESOLVED, message=message, resolved_ms=now_ms, updated_ms=now_ms
    )
    _write(tx, done)
    return _record(tx, done, TransitionKind.RESOLVED, now_ms)


def _write(tx: Tx, a: Alert) -> None:
    tx.execute(
        "UPDATE alerts SET severity = ?, state = ?, message = ?, evidence = ?, observed_ms = ?, "
        "updated_ms = ?, lot = ?, device = ?, resolved_ms = ?, acked_by = ? WHERE id = ?",
        (
            int(a.severity),
            a.state.value,
            a.message,
            json.dumps(list(a.evidence)),
            a.observed_ms,
            a.updated_ms,
            a.lot,
            a.device,
            a.resolved_ms,
            a.acked_by,
            a.id,
        ),
    )


def _record(
    tx: Tx,
    alert: Alert,
    kind: TransitionKind,
    now_ms: int,
    *,
    previous: Alert | None = None,
    by: str | None = None,
) -> Transition:
    last = tx.one("SELECT MAX(n) FROM alert_transitions WHERE alert_id = ?", (alert.id,))
    n = 1 if last is None or last[0] is None else int(last[0]) + 1
    transition = Transition(
        id=0,
        alert=alert,
        n=n,
        kind=kind,
        at_ms=now_ms,
        webhook_id=webhook_id(alert.fingerprint, alert.id, kind, n),
        previous_severity=None if previous is None else previous.severity,
        by=by,
    )
    row = tx.one(
        "INSERT INTO alert_transitions (alert_id, n, kind, severity, previous_severity, state, "
        "message, by_name, at_ms, webhook_id, snapshot, routed) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0) RETURNING id",
        (
            alert.id,
            n,
            kind.value,
            int(alert.severity),
            None if previous is None else int(previous.severity),
            alert.state.value,
            alert.message,
            by,
            now_ms,
            transition.webhook_id,
            snapshot_of(alert),
        ),
    )
    return dataclasses.replace(transition, id=int(row[0]))
