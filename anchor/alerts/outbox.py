"""The durable webhook outbox: one row per message per endpoint, never dropped.

Life of a row::

    route ──► pending ──claim──► in flight ──2xx──► delivered       (never sent again)
                 ▲                   │
                 └── failure ────────┤ schedule ran out ──► dead     (listed, replayable)
                    (next attempt)   └ 410 Gone ──► pending, endpoint disabled (held)

``route`` turns every transition not yet routed into rows for the endpoints that want it,
in ONE transaction with marking it routed: a transition is routed exactly once. ``claim``
bumps ``attempts`` and pushes ``next_attempt_ms`` past a lease before the HTTP request, in
its own transaction, so two deliverers never send the same row at once, and a deliverer
killed mid-request leaves the row due again once the lease expires: delivery is
at-least-once, and the receiver deduplicates on ``webhook-id``. A row is delivered only when
a 2xx response came back and ``delivered_ms`` was committed; after that it is never resent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from anchor.alerts.config import WebhookEndpoint
from anchor.alerts.errors import AlertNotFound
from anchor.alerts.model import TRANSITION_COLUMNS, transition_from_row
from anchor.alerts.webhooks import EvidenceLinks, message_body
from anchor.store.alerts_schema import ALERTS_LOCK_ID
from anchor.store.db import Database, Tx

ROUTE_BATCH = 500
MAX_ERROR = 300

_ROW_COLUMNS = (
    "id, message_id, endpoint, transition_id, body, replay, created_ms, attempts, "
    "next_attempt_ms, last_attempt_ms, last_status, last_error, delivered_ms, dead"
)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    message_id: str  # the webhook-id
    endpoint: str
    transition_id: int
    body: bytes
    replay: bool
    created_ms: int
    attempts: int
    next_attempt_ms: int
    last_attempt_ms: int | None
    last_status: int | None
    last_error: str | None
    delivered_ms: int | None
    dead: bool


@dataclass(frozen=True, slots=True)
class EndpointState:
    name: str
    url: str
    disabled_ms: int | None
    disabled_reason: str | None
    paused_until_ms: int | None

    def disabled_for(self, url: str) -> bool:
        """A 410 disables the URL that sent it; a new URL in the config starts enabled."""
        return self.disabled_ms is not None and self.url == url


def _row(r: Sequence[Any]) -> OutboxRow:
    return OutboxRow(
        id=int(r[0]),
        message_id=r[1],
        endpoint=r[2],
        transition_id=int(r[3]),
        body=str(r[4]).encode(),
        replay=bool(r[5]),
        created_ms=int(r[6]),
        attempts=int(r[7]),
        next_attempt_ms=int(r[8]),
        last_attempt_ms=r[9],
        last_status=r[10],
        last_error=r[11],
        delivered_ms=r[12],
        dead=bool(r[13]),
    )


def route(
    db: Database, endpoints: Sequence[WebhookEndpoint], links: EvidenceLinks, now_ms: int
) -> int:
    """Enqueue the messages of every transition not yet routed; returns rows enqueued."""
    if db.read().one("SELECT id FROM alert_transitions WHERE routed = 0 LIMIT 1") is None:
        return 0  # the common case: no write transaction (no write lock) per pass
    enqueued = 0
    with db.transaction() as tx:
        tx.lock(ALERTS_LOCK_ID)
        rows = tx.all(
            f"SELECT {TRANSITION_COLUMNS} FROM alert_transitions WHERE routed = 0 "  # noqa: S608
            "ORDER BY id LIMIT ?",
            (ROUTE_BATCH,),
        )
        for r in rows:
            transition = transition_from_row(r)
            body = message_body(transition, links)
            for endpoint in endpoints:
                if endpoint.wants(transition.alert):
                    _insert(tx, transition.webhook_id, endpoint.name, transition.id, body, now_ms)
                    enqueued += 1
            tx.execute("UPDATE alert_transitions SET routed = 1 WHERE id = ?", (transition.id,))
    return enqueued


def replay(
    db: Database,
    alert_id: int,
    endpoints: Sequence[WebhookEndpoint],
    links: EvidenceLinks,
    now_ms: int,
) -> list[tuple[str, str]]:
    """Send every message of the alert again, with its ORIGINAL webhook-id, to each endpoint
    that wants it: a row still pending is just made due now, else a new row is added.
    Returns (webhook-id, endpoint) pairs."""
    done: list[tuple[str, str]] = []
    with db.transaction() as tx:
        tx.lock(ALERTS_LOCK_ID)
        if tx.one("SELECT id FROM alerts WHERE id = ?", (alert_id,)) is None:
            raise AlertNotFound(f"no alert {alert_id}")
        rows = tx.all(
            f"SELECT {TRANSITION_COLUMNS} FROM alert_transitions "  # noqa: S608
            "WHERE alert_id = ? ORDER BY n",
            (alert_id,),
        )
        for r in rows:
            transition = transition_from_row(r)
            body = message_body(transition, links)
            for endpoint in endpoints:
                if not endpoint.wants(transition.alert):
                    continue
                pending = tx.one(
                    "SELECT id FROM webhook_outbox WHERE message_id = ? AND endpoint = ? "
                    "AND delivered_ms IS NULL AND dead = 0",
                    (transition.webhook_id, endpoint.name),
                )
                if pending is not None:
                    tx.execute(
                        "UPDATE webhook_outbox SET next_attempt_ms = ? WHERE id = ?",
                        (now_ms, pending[0]),
                    )
                else:
                    _insert(
                        tx, transition.webhook_id, endpoint.name, transition.id, body, now_ms, True
                    )
                done.append((transition.webhook_id, endpoint.name))
    return done


def _insert(
    tx: Tx,
    message_id: str,
    endpoint: str,
    transition_id: int,
    body: bytes,
    now_ms: int,
    is_replay: bool = False,
) -> None:
    tx.execute(
        "INSERT INTO webhook_outbox (message_id, endpoint, transition_id, body, replay, "
        "created_ms, attempts, next_attempt_ms, dead) VALUES (?, ?, ?, ?, ?, ?, 0, ?, 0)",
        (message_id, endpoint, transition_id, body.decode(), int(is_replay), now_ms, now_ms),
    )


def due(db: Database, now_ms: int, limit: int, endpoint: str) -> list[OutboxRow]:
    """The endpoint's pending rows whose next attempt is due, oldest schedule first."""
    rows = db.read().all(
        f"SELECT {_ROW_COLUMNS} FROM webhook_outbox "  # noqa: S608
        "WHERE endpoint = ? AND delivered_ms IS NULL AND dead = 0 AND next_attempt_ms <= ? "
        "ORDER BY next_attempt_ms, id LIMIT ?",
        (endpoint, now_ms, limit),
    )
    return [_row(r) for r in rows]


def count_due(db: Database, now_ms: int) -> int:
    """Pending rows due at ``now_ms`` (all endpoints, including disabled or unknown ones)."""
    row = db.read().one(
        "SELECT COUNT(*) FROM webhook_outbox WHERE delivered_ms IS NULL AND dead = 0 "
        "AND next_attempt_ms <= ?",
        (now_ms,),
    )
    return int(row[0])


def claim(db: Database, row: OutboxRow, now_ms: int, lease_ms: int) -> bool:
    """Take ``row`` for one attempt; ``False`` if another deliverer took it first."""
    with db.transaction() as tx:
        cursor = tx.execute(
            "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_ms = ?, "
            "last_attempt_ms = ? WHERE id = ? AND next_attempt_ms = ? AND attempts = ? "
            "AND delivered_ms IS NULL AND dead = 0",
            (now_ms + lease_ms, now_ms, row.id, row.next_attempt_ms, row.attempts),
        )
        return bool(cursor.rowcount == 1)


def mark_delivered(db: Database, row_id: int, status: int, now_ms: int) -> None:
    with db.transaction() as tx:
        tx.execute(
            "UPDATE webhook_outbox SET delivered_ms = ?, last_status = ?, last_error = NULL "
            "WHERE id = ?",
            (now_ms, status, row_id),
        )


def mark_failed(
    db: Database, row_id: int, status: int | None, error: str, next_attempt_ms: int | None
) -> None:
    """Record a failed attempt: due again at ``next_attempt_ms``, or dead when ``None``."""
    with db.transaction() as tx:
        tx.execute(
            "UPDATE webhook_outbox SET last_status = ?, last_error = ?, next_attempt_ms = "
            "COALESCE(?, next_attempt_ms), dead = ? WHERE id = ?",
            (
                status,
                error[:MAX_ERROR],
                next_attempt_ms,
                int(next_attempt_ms is None),
                row_id,
            ),
        )


def endpoint_states(db: Database) -> dict[str, EndpointState]:
    rows = db.read().all(
        "SELECT name, url, disabled_ms, disabled_reason, paused_until_ms FROM webhook_endpoints"
    )
    return {r[0]: EndpointState(*r) for r in rows}


def _upsert_endpoint(tx: Tx, name: str, url: str) -> None:
    tx.execute(
        "INSERT INTO webhook_endpoints (name, url) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        (name, url),
    )


def disable_endpoint(db: Database, name: str, url: str, reason: str, now_ms: int) -> None:
    with db.transaction() as tx:
        _upsert_endpoint(tx, name, url)
        tx.execute(
            "UPDATE webhook_endpoints SET url = ?, disabled_ms = ?, disabled_reason = ? "
            "WHERE name = ?",
            (url, now_ms, reason[:MAX_ERROR], name),
        )


def enable_endpoint(db: Database, name: str, now_ms: int) -> int:
    """Re-enable an endpoint; its held rows become due now. Returns how many."""
    with db.transaction() as tx:
        tx.execute(
            "UPDATE webhook_endpoints SET disabled_ms = NULL, disabled_reason = NULL, "
            "paused_until_ms = NULL WHERE name = ?",
            (name,),
        )
        tx.execute(
            "UPDATE webhook_outbox SET next_attempt_ms = ? WHERE endpoint = ? "
            "AND delivered_ms IS NULL AND dead = 0 AND next_attempt_ms > ?",
            (now_ms, name, now_ms),
        )
        held = tx.one(
            "SELECT COUNT(*) FROM webhook_outbox WHERE endpoint = ? AND delivered_ms IS NULL "
            "AND dead = 0",
            (name,),
        )
        return int(held[0])


def pause_endpoint(db: Database, name: str, url: str, until_ms: int) -> None:
    """A ``Retry-After``: no message goes to this endpoint before ``until_ms``."""
    with db.transaction() as tx:
        _upsert_endpoint(tx, name, url)
        tx.execute(
            "UPDATE webhook_endpoints SET paused_until_ms = ? WHERE name = ? AND "
            "(paused_until_ms IS NULL OR paused_until_ms < ?)",
            (until_ms, name, until_ms),
        )


def list_rows(db: Database, *, undelivered_only: bool = True, limit: int = 1000) -> list[OutboxRow]:
    """Outbox rows, newest first (by default only those not delivered: pending and dead)."""
    where = "WHERE delivered_ms IS NULL" if undelivered_only else ""
    found = db.read().all(
        f"SELECT {_ROW_COLUMNS} FROM webhook_outbox {where} ORDER BY id DESC LIMIT ?",  # noqa: S608
        (limit,),
    )
    return [_row(r) for r in found]


def rows_of_alert(db: Database, alert_id: int) -> list[OutboxRow]:
    found = db.read().all(
        f"SELECT {_ROW_COLUMNS} FROM webhook_outbox WHERE transition_id IN "  # noqa: S608
        "(SELECT id FROM alert_transitions WHERE alert_id = ?) ORDER BY id",
        (alert_id,),
    )
    return [_row(r) for r in found]


def undelivered_counts(db: Database) -> dict[tuple[str, bool], int]:
    """(endpoint, dead) → number of rows not delivered."""
    found = db.read().all(
        "SELECT endpoint, dead, COUNT(*) FROM webhook_outbox WHERE delivered_ms IS NULL "
        "GROUP BY endpoint, dead"
    )
    return {(r[0], bool(r[1])): int(r[2]) for r in found}
