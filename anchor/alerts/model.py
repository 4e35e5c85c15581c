"""Named types of the alert lifecycle: states, transitions, the evaluated scope, an alert.

An alert is ``open`` when opened (or escalated), ``acknowledged`` once a person took it,
``resolved`` when its condition is no longer reported. Acknowledged alerts still escalate
(back to ``open``: a worse condition needs a fresh acknowledgement) and still resolve.

A transition's snapshot is the alert right after it, as a JSON object (``snapshot_of``); the
webhook body of the transition is built from it, so a replay sends the same content.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from anchor.reconcile.conditions import Category, Rule, Severity


class AlertState(enum.Enum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class TransitionKind(enum.Enum):
    OPENED = "opened"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"

    @property
    def event_type(self) -> str:
        """The Standard Webhooks ``type`` of its messages: ``alert.opened``, …"""
        return f"alert.{self.value}"


def severity_name(severity: Severity) -> str:
    return severity.name.lower()


def parse_severity(name: str) -> Severity:
    return Severity[name.upper()]


@dataclass(frozen=True, slots=True)
class Scope:
    """What one reconciler run evaluated. Only alerts inside it can be resolved by the run:
    evaluating warehouse A must not resolve warehouse B's alerts. ``loans=None`` means every
    loan (and no loan) in those warehouses."""

    warehouses: frozenset[str]
    rules: frozenset[Rule] = frozenset(Rule)
    loans: frozenset[str] | None = None

    @classmethod
    def of(
        cls,
        warehouses: Iterable[str],
        rules: Iterable[Rule] | None = None,
        loans: Iterable[str] | None = None,
    ) -> Scope:
        return cls(
            frozenset(warehouses),
            frozenset(Rule) if rules is None else frozenset(rules),
            None if loans is None else frozenset(loans),
        )

    def covers(self, warehouse: str, rule: Rule, loan_id: str | None) -> bool:
        if warehouse not in self.warehouses or rule not in self.rules:
            return False
        return self.loans is None or (loan_id is not None and loan_id in self.loans)


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    fingerprint: str
    rule: Rule
    severity: Severity  # the highest severity the alert reached
    state: AlertState
    warehouse: str
    subject: str
    message: str
    evidence: tuple[str, ...]  # event ids
    observed_ms: int
    opened_ms: int
    updated_ms: int
    loan_id: str | None = None
    lot: str | None = None
    device: str | None = None
    resolved_ms: int | None = None
    acked_by: str | None = None

    @property
    def category(self) -> Category:
        return self.rule.category


@dataclass(frozen=True, slots=True)
class Transition:
    id: int
    alert: Alert  # right after the transition
    n: int  # 1, 2, … per alert
    kind: TransitionKind
    at_ms: int
    webhook_id: str
    previous_severity: Severity | None = None  # set for ESCALATED
    by: str | None = None  # set for ACKNOWLEDGED


ALERT_COLUMNS = (
    "id, fingerprint, rule, severity, state, warehouse, subject, message, evidence, "
    "observed_ms, opened_ms, updated_ms, loan_id, lot, device, resolved_ms, acked_by"
)


def alert_from_row(row: Sequence[Any]) -> Alert:
    """An ``Alert`` from a row of ``SELECT {ALERT_COLUMNS} FROM alerts``."""
    return Alert(
        id=int(row[0]),
        fingerprint=row[1],
        rule=Rule(row[2]),
        severity=Severity(int(row[3])),
        state=AlertState(row[4]),
        warehouse=row[5],
        subject=row[6],
        message=row[7],
        evidence=tuple(json.loads(row[8])),
        observed_ms=int(row[9]),
        opened_ms=int(row[10]),
        updated_ms=int(row[11]),
        loan_id=row[12],
        lot=row[13],
        device=row[14],
        resolved_ms=None if row[15] is None else int(row[15]),
        acked_by=row[16],
    )


def snapshot_of(alert: Alert) -> str:
    """The alert as a JSON object (stored with each transition)."""
    fields = {
        "id": alert.id,
        "fingerprint": alert.fingerprint,
        "rule": alert.rule.value,
        "severity": severity_name(alert.severity),
        "state": alert.state.value,
        "warehouse": alert.warehouse,
        "subject": alert.subject,
        "message": alert.message,
        "evidence": list(alert.evidence),
        "observed_ms": alert.observed_ms,
        "opened_ms": alert.opened_ms,
        "updated_ms": alert.updated_ms,
        "loan_id": alert.loan_id,
        "lot": alert.lot,
        "device": alert.device,
        "resolved_ms": alert.resolved_ms,
        "acked_by": alert.acked_by,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def alert_from_snapshot(text: str) -> Alert:
    raw = json.loads(text)
    return Alert(
        id=raw["id"],
        fingerprint=raw["fingerprint"],
        rule=Rule(raw["rule"]),
        severity=parse_severity(raw["severity"]),
        state=AlertState(raw["state"]),
        warehouse=raw["warehouse"],
        subject=raw["subject"],
        message=raw["message"],
        evidence=tuple(raw["evidence"]),
        observed_ms=raw["observed_ms"],
        opened_ms=raw["opened_ms"],
        updated_ms=raw["updated_ms"],
        loan_id=raw["loan_id"],
        lot=raw["lot"],
        device=raw["device"],
        resolved_ms=raw["resolved_ms"],
        acked_by=raw["acked_by"],
    )


TRANSITION_COLUMNS = "id, n, kind, at_ms, webhook_id, previous_severity, by_name, snapshot"


def transition_from_row(row: Sequence[Any]) -> Transition:
    """A ``Transition`` from ``SELECT {TRANSITION_COLUMNS} FROM alert_transitions``."""
    return Transition(
        id=int(row[0]),
        alert=alert_from_snapshot(row[7]),
        n=int(row[1]),
        kind=TransitionKind(row[2]),
        at_ms=int(row[3]),
        webhook_id=row[4],
        previous_severity=None if row[5] is None else Severity(int(row[5])),
        by=row[6],
    )
