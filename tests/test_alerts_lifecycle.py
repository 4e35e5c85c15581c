"""The alert lifecycle on both store backends (SQLite file, real PostgreSQL 15).

One alert per active fingerprint; OPENED, ESCALATED (severity up only), ACKNOWLEDGED (stays
active), RESOLVED only inside the evaluated scope; a condition that comes back opens a new
alert. Every transition is recorded with a deterministic webhook id.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from anchor.alerts.errors import AlertError, AlertNotFound
from anchor.alerts.lifecycle import (
    MAX_EVIDENCE,
    acknowledge,
    apply_conditions,
    get_alert,
    list_alerts,
    transitions_of,
)
from anchor.alerts.model import AlertState, Scope, TransitionKind
from anchor.reconcile.conditions import Category, Rule, Severity
from anchor.store.db import Database

from alerts_rig import EVENT_A, EVENT_B, T0, condition
from store_rig import open_store

WH1 = Scope.of(["wh-1"])


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    database = open_store(store_url)
    yield database
    database.close()


def kinds(transitions: list) -> list[TransitionKind]:  # type: ignore[type-arg]
    return [t.kind for t in transitions]


def test_open_escalate_acknowledge_resolve_reopen(db: Database) -> None:
    warn = condition(severity=Severity.WARNING)
    [opened] = apply_conditions(db, [warn], T0, scope=WH1)
    assert opened.kind is TransitionKind.OPENED and opened.n == 1
    alert = opened.alert
    assert (alert.state, alert.severity, alert.category) == (
        AlertState.OPEN,
        Severity.WARNING,
        Category.BUSINESS,
    )
    assert opened.webhook_id == f"{warn.fingerprint}.{alert.id}.opened.1"

    # the same condition again (same or lower severity): no transition, one alert
    assert apply_conditions(db, [warn], T0 + 1, scope=WH1) == []
    assert len(list_alerts(db)) == 1

    [ack] = apply_acknowledge(db, alert.id, "officer li", T0 + 2)
    assert ack.kind is TransitionKind.ACKNOWLEDGED and ack.by == "officer li"
    assert get_alert(db, alert.id).state is AlertState.ACKNOWLEDGED
    assert acknowledge(db, alert.id, "officer wu", T0 + 3) is None  # already taken

    worse = condition(severity=Severity.CRITICAL, message="short by 60", evidence=(EVENT_B,))
    [escalated] = apply_conditions(db, [worse], T0 + 4, scope=WH1)
    assert escalated.kind is TransitionKind.ESCALATED
    assert escalated.previous_severity is Severity.WARNING
    after = get_alert(db, alert.id)
    assert (after.state, after.severity, after.acked_by) == (
        AlertState.OPEN,
        Severity.CRITICAL,
        None,
    )
    assert after.evidence == (EVENT_A, EVENT_B)
    assert after.message == "short by 60"

    # lower severity later: still one alert at its peak severity, no message
    assert apply_conditions(db, [warn], T0 + 5, scope=WH1) == []
    assert get_alert(db, alert.id).severity is Severity.CRITICAL

    [resolved] = apply_conditions(db, [], T0 + 6, scope=WH1)
    assert resolved.kind is TransitionKind.RESOLVED
    done = get_alert(db, alert.id)
    assert done.state is AlertState.RESOLVED and done.resolved_ms == T0 + 6
    assert done.message.startswith("No longer reported") and "short by 6" in done.message

    history = transitions_of(db, alert.id)
    assert [t.n for t in history] == [1, 2, 3, 4]
    assert kinds(history) == [
        TransitionKind.OPENED,
        TransitionKind.ACKNOWLEDGED,
        TransitionKind.ESCALATED,
        TransitionKind.RESOLVED,
    ]
    assert len({t.webhook_id for t in history}) == 4

    [again] = apply_conditions(db, [warn], T0 + 7, scope=WH1)
    assert again.kind is TransitionKind.OPENED and again.alert.id != alert.id
    assert again.webhook_id == f"{warn.fingerprint}.{again.alert.id}.opened.1"
    with pytest.raises(AlertError, match="resolved"):
        acknowledge(db, alert.id, "officer li", T0 + 8)


def apply_acknowledge(db: Database, alert_id: int, by: str, now: int) -> list:  # type: ignore[type-arg]
    transition = acknowledge(db, alert_id, by, now)
    return [] if transition is None else [transition]


def test_resolution_only_inside_the_evaluated_scope(db: Database) -> None:
    a = condition(warehouse="wh-1")
    b = condition(warehouse="wh-2", loan_id="L-2")
    silent = condition(Rule.DEVICE_SILENT, warehouse="wh-1", subject="scale-1", loan_id=None)
    apply_conditions(db, [a, b, silent], T0, scope=Scope.of(["wh-1", "wh-2"]))

    # evaluating wh-2 alone must not resolve wh-1's alerts
    assert apply_conditions(db, [b], T0 + 1, scope=Scope.of(["wh-2"])) == []
    # evaluating only the device rule of wh-1 resolves only that alert
    [gone] = apply_conditions(db, [], T0 + 2, scope=Scope.of(["wh-1"], [Rule.DEVICE_SILENT]))
    assert gone.kind is TransitionKind.RESOLVED and gone.alert.rule is Rule.DEVICE_SILENT
    # evaluating loan L-9 of wh-1 touches nothing of loan L-1
    assert apply_conditions(db, [], T0 + 3, scope=Scope.of(["wh-1"], loans=["L-9"])) == []
    active = list_alerts(db, [AlertState.OPEN])
    assert sorted(x.warehouse for x in active) == ["wh-1", "wh-2"]


def test_a_condition_outside_the_scope_is_refused_and_nothing_is_written(db: Database) -> None:
    inside = condition()
    outside = condition(warehouse="wh-2")
    with pytest.raises(AlertError, match="outside the scope"):
        apply_conditions(db, [inside, outside], T0, scope=WH1)
    assert list_alerts(db) == []
    with pytest.raises(AlertError, match="outside the scope"):
        apply_conditions(
            db, [condition(Rule.TAMPER)], T0, scope=Scope.of(["wh-1"], [Rule.SHORTFALL])
        )


def test_one_alert_per_fingerprint_most_severe_wins(db: Database) -> None:
    low = condition(severity=Severity.WARNING, evidence=(EVENT_A,))
    high = condition(severity=Severity.MAJOR, evidence=(EVENT_B,), message="worse")
    [opened] = apply_conditions(db, [low, high], T0, scope=WH1)
    assert opened.alert.severity is Severity.MAJOR
    assert opened.alert.evidence == (EVENT_A, EVENT_B)
    assert opened.alert.message == "worse"


def test_at_most_one_active_alert_per_fingerprint_in_the_schema(db: Database) -> None:
    """The partial unique index holds even against a writer that skips the lifecycle."""
    [opened] = apply_conditions(db, [condition()], T0, scope=WH1)
    copy = (
        "INSERT INTO alerts (fingerprint, rule, category, severity, state, warehouse, subject, "
        "message, evidence, observed_ms, opened_ms, updated_ms) "
        "SELECT fingerprint, rule, category, severity, 'open', warehouse, subject, message, "
        "evidence, observed_ms, opened_ms, updated_ms FROM alerts WHERE id = ?"
    )
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"), db.transaction() as tx:
        tx.execute(copy, (opened.alert.id,))
    apply_conditions(db, [], T0 + 1, scope=WH1)  # resolved: a resolved copy is fine
    with db.transaction() as tx:
        tx.execute(copy, (opened.alert.id,))


def test_acknowledge_guards(db: Database) -> None:
    with pytest.raises(AlertNotFound):
        acknowledge(db, 999, "officer li", T0)
    [opened] = apply_conditions(db, [condition()], T0, scope=WH1)
    for bad in ("", "   ", "two\nlines", "x" * 201):
        with pytest.raises(AlertError, match="acknowledged by"):
            acknowledge(db, opened.alert.id, bad, T0)


def test_evidence_is_capped_keeping_the_first_and_the_newest(db: Database) -> None:
    ids = [f"{i:064x}" for i in range(200)]
    apply_conditions(db, [condition(evidence=tuple(ids[:10]))], T0, scope=WH1)
    apply_conditions(
        db,
        [condition(severity=Severity.CRITICAL, evidence=tuple(ids[10:]))],
        T0 + 1,
        scope=WH1,
    )
    [alert] = list_alerts(db)
    assert len(alert.evidence) == MAX_EVIDENCE
    assert alert.evidence[:10] == tuple(ids[:10])
    assert alert.evidence[-1] == ids[-1]
