"""Webhook delivery against a real HTTP receiver on loopback, with an injected clock.

`Deliverer.step(now_ms)` is driven over days of fake time in milliseconds of real time; the
receiver really refuses connections when down, answers 500, 429 + Retry-After, or 410. A
message counts as delivered when the receiver acked it with a 2xx; each webhook-id must be
delivered exactly once (replays excepted, which are explicit).
"""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate

import nacl.signing
import pytest
import standardwebhooks

from anchor.alerts import outbox
from anchor.alerts.backoff import RetrySchedule
from anchor.alerts.config import DEFAULT_SCHEDULE_S, WebhookEndpoint
from anchor.alerts.deliver import Deliverer, Outcome
from anchor.alerts.lifecycle import acknowledge, apply_conditions
from anchor.alerts.model import Scope
from anchor.alerts.webhooks import EvidenceLinks, message_body, public_key_text
from anchor.reconcile.conditions import Category, Rule, Severity
from anchor.store.db import Database
from pledgewatch.signing import SigningKey

from alerts_rig import T0, Receiver, condition
from store_rig import open_store

SECRET_TEXT = "whsec_" + base64.b64encode(b"pledgewatch-test-secret-32-bytes").decode()
SECRET = base64.b64decode(SECRET_TEXT[6:])
KEY = SigningKey(bytes([9]) * 32)
SCOPE = Scope.of(["wh-1", "wh-2"])
HOUR = 3_600_000
DAY = 24 * HOUR


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    database = open_store(store_url)
    yield database
    database.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.up()
    yield r
    r.down()


def endpoint(receiver: Receiver, name: str = "desk", **options: object) -> WebhookEndpoint:
    return WebhookEndpoint(
        name=name,
        url=receiver.url(f"/{name}"),
        secret=SECRET,
        timeout_s=2,
        **options,  # type: ignore[arg-type]
    )


def deliverer(
    db: Database, *endpoints: WebhookEndpoint, steps: tuple[int, ...] = DEFAULT_SCHEDULE_S
) -> Deliverer:
    return Deliverer(
        db,
        endpoints,
        RetrySchedule.from_seconds(steps),
        key=KEY,
        rng=random.Random(7),
    )


def next_due(db: Database) -> int | None:
    row = db.read().one(
        "SELECT MIN(next_attempt_ms) FROM webhook_outbox WHERE delivered_ms IS NULL AND dead = 0 "
        "AND endpoint NOT IN (SELECT name FROM webhook_endpoints WHERE disabled_ms IS NOT NULL)"
    )
    paused = db.read().one("SELECT MAX(paused_until_ms) FROM webhook_endpoints")
    if row[0] is None:
        return None
    return max(int(row[0]), int(paused[0] or 0))


def drive(
    d: Deliverer,
    db: Database,
    now: int,
    until: int,
    hook: Callable[[int], None] | None = None,
) -> int:
    """Step at every due time (at least 1 s apart) until nothing is pending or ``until``."""
    while now < until:
        if hook is not None:
            hook(now)
        d.step(now)
        due = next_due(db)
        if due is None and hook is None:
            break
        now = max(now + 1000, due or now + HOUR)
    return now


def all_webhook_ids(db: Database) -> set[str]:
    return {r[0] for r in db.read().all("SELECT webhook_id FROM alert_transitions")}


def test_receiver_down_then_erroring_then_back_gets_every_alert_exactly_once(
    db: Database, receiver: Receiver
) -> None:
    d = deliverer(db, endpoint(receiver))
    receiver.down()
    shortfall = condition(subject="WR-1")
    release = condition(Rule.UNAUTHORIZED_RELEASE, Severity.MAJOR, subject="WR-2")
    silent = condition(Rule.DEVICE_SILENT, subject="scale-1", loan_id=None)
    apply_conditions(db, [shortfall, release, silent], T0, scope=SCOPE)
    events: dict[str, bool] = {}

    def outage(now: int) -> None:
        if now >= T0 + 30 * 60_000 and not events.get("changed"):
            events["changed"] = True  # while down: an escalation, a resolution, an ack
            worse = condition(subject="WR-1", severity=Severity.CRITICAL)
            apply_conditions(db, [worse, release], now, scope=SCOPE)
            acknowledge(db, 2, "officer li", now)
        if now >= T0 + 6 * HOUR and not events.get("up"):
            events["up"] = True
            receiver.mode = "error"  # back, but failing with 500 for two more hours
            receiver.up()
        if now >= T0 + 8 * HOUR:
            receiver.mode = "ok"

    end = drive(d, db, T0, T0 + 4 * DAY, outage)
    drive(d, db, end, end + 4 * DAY)

    wanted = all_webhook_ids(db)
    assert len(wanted) == 6  # 3 opened, 1 escalated, 1 resolved, 1 acknowledged
    delivered = receiver.delivered()
    assert set(delivered) == wanted
    assert all(count == 1 for count in delivered.values()), delivered
    assert any(r.status == 500 for r in receiver.requests())  # the erroring phase was hit
    assert outbox.list_rows(db) == []  # nothing pending, nothing dead
    attempts = [r.attempts for r in outbox.list_rows(db, undelivered_only=False)]
    assert max(attempts) > 2


def test_retry_after_seconds_and_http_date_are_honoured_for_the_endpoint(
    db: Database, receiver: Receiver
) -> None:
    d = deliverer(db, endpoint(receiver))
    receiver.mode, receiver.retry_after = "throttle", "120"
    apply_conditions(db, [condition(subject="WR-1"), condition(subject="WR-2")], T0, scope=SCOPE)
    report = d.step(T0)
    assert [a.status for a in report.attempts] == [429]  # the other one waits for the pause
    receiver.mode = "ok"
    assert d.step(T0 + 119_999).attempts == ()
    assert len(receiver.requests()) == 1
    report = d.step(T0 + 120_000)
    assert report.count(Outcome.DELIVERED) == 2

    at = T0 + 200_000
    receiver.mode = "throttle"
    receiver.retry_after = formatdate(at / 1000 + 3600, usegmt=True)
    still = [condition(subject=f"WR-{i}") for i in (1, 2, 3)]
    apply_conditions(db, still, at, scope=SCOPE)  # WR-3 opens, nothing resolves
    assert [a.status for a in d.step(at).attempts] == [429]
    receiver.mode = "ok"
    assert d.step(at + HOUR - 1000).attempts == ()
    assert d.step(at + HOUR).count(Outcome.DELIVERED) == 1
    assert all(c == 1 for c in receiver.delivered().values())
    assert set(receiver.delivered()) == all_webhook_ids(db)


def test_410_disables_the_endpoint_until_enabled_and_nothing_is_lost(
    db: Database, receiver: Receiver
) -> None:
    gone, fine = endpoint(receiver, "gone"), endpoint(receiver, "fine")
    d = deliverer(db, gone, fine)
    receiver.modes_by_path["/gone"] = "gone"
    apply_conditions(db, [condition(subject="WR-1"), condition(subject="WR-2")], T0, scope=SCOPE)
    report = d.step(T0)
    assert report.count(Outcome.DISABLED) == 1 and report.count(Outcome.DELIVERED) == 2
    state = outbox.endpoint_states(db)["gone"]
    assert state.disabled_for(gone.url) and "410" in (state.disabled_reason or "")

    apply_conditions(db, [condition(subject="WR-1")], T0 + DAY, scope=SCOPE)  # resolves WR-2
    drive(d, db, T0 + DAY, T0 + 3 * DAY)
    assert len(receiver.requests("/gone")) == 1  # nothing more went to the disabled endpoint
    assert len(receiver.delivered("/fine")) == 3

    receiver.modes_by_path["/gone"] = "ok"
    assert outbox.enable_endpoint(db, "gone", T0 + 3 * DAY) == 3
    d.step(T0 + 3 * DAY)
    assert receiver.delivered("/gone") == receiver.delivered("/fine")
    assert set(receiver.delivered("/gone")) == all_webhook_ids(db)


def test_filters_route_each_alert_to_the_endpoints_that_want_it(
    db: Database, receiver: Receiver
) -> None:
    hooks = [
        endpoint(receiver, "critical", min_severity=Severity.CRITICAL),
        endpoint(receiver, "tamper", categories=frozenset({Category.TAMPER})),
        endpoint(receiver, "infra", rules=frozenset({Rule.DEVICE_SILENT})),
        endpoint(receiver, "loan-2", loans=frozenset({"L-2"})),
        endpoint(receiver, "wh-2", warehouses=frozenset({"wh-2"})),
        endpoint(receiver, "all"),
    ]
    d = deliverer(db, *hooks)
    conditions = {
        "shortfall": condition(subject="WR-1", loan_id="L-1"),
        "tamper": condition(Rule.TAMPER, Severity.CRITICAL, subject="scale-1", loan_id=None),
        "silent": condition(Rule.DEVICE_SILENT, subject="scale-2", loan_id=None),
        "loan2": condition(warehouse="wh-2", subject="WR-9", loan_id="L-2"),
    }
    opened = apply_conditions(db, list(conditions.values()), T0, scope=SCOPE)
    ids = dict(zip(conditions, (t.webhook_id for t in opened), strict=True))
    d.step(T0)
    got = {h.name: set(receiver.delivered(f"/{h.name}")) for h in hooks}
    assert got == {
        "critical": {ids["tamper"]},
        "tamper": {ids["tamper"]},
        "infra": {ids["silent"]},
        "loan-2": {ids["loan2"]},
        "wh-2": {ids["loan2"]},
        "all": set(ids.values()),
    }
    # an escalation to critical reaches the critical desk, and so does its resolution
    [up] = apply_conditions(
        db,
        [condition(subject="WR-1", severity=Severity.CRITICAL), *list(conditions.values())[1:]],
        T0 + 1000,
        scope=SCOPE,
    )
    [down] = apply_conditions(db, list(conditions.values())[1:], T0 + 2000, scope=SCOPE)
    d.step(T0 + 2000)
    assert set(receiver.delivered("/critical")) == {ids["tamper"], up.webhook_id, down.webhook_id}
    assert receiver.requests("/critical")[-1].body == message_body(down, EvidenceLinks())


def test_replay_sends_the_same_webhook_id_and_body(db: Database, receiver: Receiver) -> None:
    d = deliverer(db, endpoint(receiver))
    [opened] = apply_conditions(db, [condition()], T0, scope=SCOPE)
    [resolved] = apply_conditions(db, [], T0 + 1000, scope=SCOPE)
    d.step(T0 + 1000)
    first = {r.webhook_id: r.body for r in receiver.requests()}
    assert set(first) == {opened.webhook_id, resolved.webhook_id}

    queued = outbox.replay(db, opened.alert.id, [endpoint(receiver)], EvidenceLinks(), T0 + 5000)
    assert [q[0] for q in queued] == [opened.webhook_id, resolved.webhook_id]
    d.step(T0 + 5000)
    again = receiver.requests()[2:]
    assert {r.webhook_id: r.body for r in again} == first
    assert receiver.delivered() == {opened.webhook_id: 2, resolved.webhook_id: 2}


def test_schedule_runs_out_then_dead_and_replay_revives(db: Database, receiver: Receiver) -> None:
    d = deliverer(db, endpoint(receiver), steps=(5, 10))
    receiver.mode = "error"
    [opened] = apply_conditions(db, [condition()], T0, scope=SCOPE)
    drive(d, db, T0, T0 + HOUR)
    assert len(receiver.requests()) == 3  # first try + one per schedule step
    [dead] = outbox.list_rows(db)
    assert dead.dead and dead.attempts == 3 and dead.last_status == 500
    assert d.step(T0 + DAY).attempts == ()  # dead rows are not retried ...

    receiver.mode = "ok"  # ... until someone replays them
    outbox.replay(db, opened.alert.id, [endpoint(receiver)], EvidenceLinks(), T0 + DAY)
    d.step(T0 + DAY)
    assert receiver.delivered() == {opened.webhook_id: 1}


def test_signatures_of_real_requests_verify(db: Database, receiver: Receiver) -> None:
    d = deliverer(db, endpoint(receiver))
    apply_conditions(db, [condition()], T0, scope=SCOPE)
    d.step(time.time_ns() // 1_000_000)
    [request] = receiver.requests()
    assert request.headers["content-type"] == "application/json"
    parsed = standardwebhooks.Webhook(SECRET_TEXT).verify(request.body, request.headers)
    assert parsed["type"] == "alert.opened"

    public = base64.b64decode(public_key_text(KEY.public_key).removeprefix("whpk_"))
    signed = (
        f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}.".encode()
        + request.body
    )
    v1a = [s for s in request.headers["webhook-signature"].split(" ") if s.startswith("v1a,")]
    nacl.signing.VerifyKey(public).verify(signed, base64.b64decode(v1a[0][4:]))


def test_a_failing_endpoint_does_not_hold_up_the_others(db: Database, receiver: Receiver) -> None:
    bad, good = endpoint(receiver, "bad"), endpoint(receiver, "good")
    receiver.modes_by_path["/bad"] = "error"
    d = deliverer(db, bad, good)
    apply_conditions(db, [condition(subject=f"WR-{i}") for i in range(5)], T0, scope=SCOPE)
    report = d.step(T0)
    assert len(receiver.requests("/bad")) == 1  # one failure, then the endpoint waits
    assert len(receiver.delivered("/good")) == 5
    assert report.held == 4
