"""The webhook deliverer: routes new transitions, then sends due outbox rows over HTTP.

``Deliverer.step(now_ms)`` is one pass (the clock is injected: tests drive days of retries
in milliseconds). It goes endpoint by endpoint, so one endpoint's backlog cannot starve the
others:

- an endpoint disabled by a 410 or paused by a Retry-After is skipped; rows of an endpoint
  no longer in the config are kept, untouched (held);
- the endpoint's due rows, oldest schedule first, are claimed, signed (Standard Webhooks,
  timestamp = the attempt's time), POSTed and the result recorded: 2xx delivered; 410
  disables the endpoint; anything else (3xx are not followed, timeouts, refused
  connections) is retried on the schedule, honouring Retry-After, until it runs out (dead);
- after the first failure the endpoint's other rows wait for the next pass: a receiver that
  is down gets one request per pass, not one per message.

``serve`` runs passes until told to stop, with its own database connection.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.client import HTTPException
from typing import Any, Protocol

from anchor import keyfile
from anchor.alerts import outbox
from anchor.alerts.backoff import RetrySchedule, parse_retry_after
from anchor.alerts.config import AlertsConfig, WebhookEndpoint
from anchor.alerts.webhooks import EvidenceLinks, webhook_headers
from anchor.errors import AnchorError
from anchor.store.alerts_schema import migrate_alerts
from anchor.store.db import Database
from pledgewatch.signing import SigningKey

log = logging.getLogger(__name__)

BATCH = 100
STEP_BUDGET_S = 30.0  # start no new request after this long in one pass
LEASE_MARGIN_MS = 5000  # claim → request and response → record take milliseconds
USER_AGENT = "pledgewatch-alerts/1"
MAX_READ = 512


@dataclass(frozen=True, slots=True)
class HttpResult:
    status: int | None  # None: no HTTP response (refused, reset, timeout, …)
    retry_after: str | None = None
    error: str | None = None


class Transport(Protocol):
    def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> HttpResult: ...


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Standard Webhooks: a 3xx is a failure (fix the URL), never followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class UrllibTransport:
    """POST with the standard library (honours the usual ``https_proxy``/``no_proxy``)."""

    def __init__(self) -> None:
        self._opener = urllib.request.build_opener(_NoRedirects)

    def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> HttpResult:
        request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310
        request.add_header("Content-Type", "application/json")
        request.add_header("User-Agent", USER_AGENT)
        for name, value in headers.items():
            request.add_header(name, value)
        try:
            with self._opener.open(request, timeout=timeout_s) as response:
                response.read(MAX_READ)
                return HttpResult(int(response.status))
        except urllib.error.HTTPError as exc:
            with exc:
                text = _snippet(exc.read(MAX_READ))
                return HttpResult(
                    exc.code, exc.headers.get("Retry-After"), f"HTTP {exc.code}{text}"
                )
        except urllib.error.URLError as exc:
            return HttpResult(None, None, f"no response: {exc.reason}")
        except (OSError, HTTPException, ValueError) as exc:
            return HttpResult(None, None, f"no response: {type(exc).__name__}: {exc}")


def _snippet(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    return f": {text[:200]}" if text else ""


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"
    DISABLED = "disabled"  # 410 Gone


@dataclass(frozen=True, slots=True)
class Attempt:
    message_id: str
    endpoint: str
    outcome: Outcome
    status: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class StepReport:
    routed: int = 0
    attempts: tuple[Attempt, ...] = ()
    held: int = 0  # still due after the pass (endpoint disabled, paused, unknown or failing)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for a in self.attempts if a.outcome is outcome)


@dataclass
class Deliverer:
    """Routes and sends. ``db`` must be open; no I/O happens in the constructor."""

    db: Database
    endpoints: Sequence[WebhookEndpoint]
    schedule: RetrySchedule
    links: EvidenceLinks = field(default_factory=EvidenceLinks)
    key: SigningKey | None = None  # v1a signatures when set
    transport: Transport = field(default_factory=UrllibTransport)
    rng: random.Random = field(default_factory=random.Random)
    batch: int = BATCH

    def step(self, now_ms: int) -> StepReport:
        routed = outbox.route(self.db, self.endpoints, self.links, now_ms)
        states = outbox.endpoint_states(self.db)
        attempts: list[Attempt] = []
        started = time.monotonic()
        for endpoint in self.endpoints:
            state = states.get(endpoint.name)
            if state is not None and (
                state.disabled_for(endpoint.url) or (state.paused_until_ms or 0) > now_ms
            ):
                continue
            for row in outbox.due(self.db, now_ms, self.batch, endpoint.name):
                if time.monotonic() - started > STEP_BUDGET_S:
                    break
                attempt = self._attempt(row, endpoint, now_ms, started)
                if attempt is None:
                    continue  # another deliverer has it
                attempts.append(attempt)
                if attempt.outcome is not Outcome.DELIVERED:
                    break  # one failure per endpoint per pass: the rest wait
        return StepReport(routed, tuple(attempts), outbox.count_due(self.db, now_ms))

    def _attempt(
        self, row: outbox.OutboxRow, endpoint: WebhookEndpoint, now_ms: int, started: float
    ) -> Attempt | None:
        lease_ms = endpoint.timeout_s * 1000 + LEASE_MARGIN_MS
        if not outbox.claim(self.db, row, now_ms, lease_ms):
            return None
        # The attempt's own time: a slow pass must not send stale webhook-timestamps.
        sent_ms = now_ms + int((time.monotonic() - started) * 1000)
        headers = webhook_headers(
            row.message_id, sent_ms // 1000, row.body, secret=endpoint.secret, key=self.key
        )
        result = self.transport.post(endpoint.url, row.body, headers, endpoint.timeout_s)
        return self._settle(row, endpoint, result, now_ms)

    def _settle(
        self, row: outbox.OutboxRow, endpoint: WebhookEndpoint, result: HttpResult, now_ms: int
    ) -> Attempt:
        status = result.status
        if status is not None and 200 <= status <= 299:
            outbox.mark_delivered(self.db, row.id, status, now_ms)
            return Attempt(row.message_id, endpoint.name, Outcome.DELIVERED, status, None)
        error = result.error or f"HTTP {status}"
        if status == 410:
            reason = f"410 Gone from {endpoint.url} for {row.message_id}"
            outbox.mark_failed(self.db, row.id, status, error, now_ms)
            outbox.disable_endpoint(self.db, endpoint.name, endpoint.url, reason, now_ms)
            log.warning("webhook endpoint %s disabled: %s", endpoint.name, reason)
            return Attempt(row.message_id, endpoint.name, Outcome.DISABLED, status, error)
        wait_ms = None if status is None else parse_retry_after(result.retry_after, now_ms)
        failures = row.attempts + 1  # claim counted this attempt
        next_ms = self.schedule.next_attempt_ms(failures, now_ms, wait_ms, self.rng)
        outbox.mark_failed(self.db, row.id, status, error, next_ms)
        if wait_ms is not None:
            pause = min(wait_ms, self.schedule.max_retry_after_ms)
            outbox.pause_endpoint(self.db, endpoint.name, endpoint.url, now_ms + pause)
        if next_ms is None:
            log.error(
                "webhook %s to %s is dead after %d attempts: %s",
                row.message_id,
                endpoint.name,
                failures,
                error,
            )
            return Attempt(row.message_id, endpoint.name, Outcome.DEAD, status, error)
        return Attempt(row.message_id, endpoint.name, Outcome.RETRY, status, error)


def build(db: Database, config: AlertsConfig, **options: Any) -> Deliverer:
    """A deliverer for ``config`` (reads the alert signing key, if one is configured)."""
    section = config.alerts
    key = None
    if section.signing_key_file is not None:
        key = keyfile.load(section.signing_key_file, what="alert signing key")
    schedule = RetrySchedule.from_seconds(
        section.retry_schedule_s,
        jitter=section.jitter,
        max_retry_after_s=section.max_retry_after_s,
    )
    return Deliverer(
        db, config.webhooks, schedule, EvidenceLinks(section.proof_url), key, **options
    )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def serve(
    config: AlertsConfig, stop: threading.Event, nudge: threading.Event | None = None
) -> None:
    """Run delivery passes every ``deliver_every_ms`` until ``stop`` is set, and at once when
    ``nudge`` is set (the live reconciler in the same process sets it when an alert changes,
    so a new alert leaves within milliseconds rather than up to ``deliver_every_ms`` later)."""
    db = Database(config.store)
    db.open()
    try:
        migrate_alerts(db)
        deliverer = build(db, config)
        while not stop.is_set():
            try:
                report = deliverer.step(now_ms())
            except AnchorError as exc:  # e.g. the store is briefly unreachable: next pass
                log.error("webhook delivery pass failed: %s", exc)
                _pause(stop, nudge, config.alerts.deliver_every_ms / 1000)
                continue
            if report.attempts:
                log.info(
                    "webhooks: %d delivered, %d to retry, %d dead, %d disabled",
                    report.count(Outcome.DELIVERED),
                    report.count(Outcome.RETRY),
                    report.count(Outcome.DEAD),
                    report.count(Outcome.DISABLED),
                )
            _pause(stop, nudge, config.alerts.deliver_every_ms / 1000)
    finally:
        db.close()


NUDGE_SLICE_S = 0.1  # how often a pause waiting on a nudge looks at ``stop``


def _pause(stop: threading.Event, nudge: threading.Event | None, seconds: float) -> None:
    """Wait ``seconds``, or until ``stop`` or ``nudge`` is set (``nudge`` is then cleared)."""
    if nudge is None:
        stop.wait(seconds)
        return
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0 or nudge.wait(min(left, NUDGE_SLICE_S)):
            break
    nudge.clear()
