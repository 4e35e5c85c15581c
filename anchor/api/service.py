"""The API's operations over one store: what each route does once the caller is known.

One ``Database`` connection serves every request, under one lock: requests are short reads
(a statement is the longest), the single connection keeps PostgreSQL connection counts low,
and neither sqlite3 nor psycopg promise safe concurrent use of one connection. The coverage
follower and the leaf mirror are kept between requests so each only reads what is new.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from anchor.alerts import lifecycle
from anchor.alerts.errors import AlertError, AlertNotFound
from anchor.alerts.webhooks import alert_data
from anchor.api import views
from anchor.api.coverage import CoverageView
from anchor.api.query import Query, path_int
from anchor.api.tokens import Caller
from anchor.api.views import LINKS, ApiProblem
from anchor.loans import LoanBookError
from anchor.publish import LeafMirror
from anchor.reconcile.snapshot import StateConfig
from anchor.statement import (
    LogTrust,
    PeriodError,
    StatementError,
    UnknownLoan,
    build_statement,
    daily_csv,
    render_html,
)
from anchor.store.db import Database

JSON = "application/json"
MAX_PAGE = 500  # the largest ``limit`` of a list request (as openapi.json says)


@dataclass(frozen=True, slots=True)
class Reply:
    body: bytes
    content_type: str = JSON
    status: HTTPStatus = HTTPStatus.OK
    headers: tuple[tuple[str, str], ...] = field(default=())


def json_reply(value: object, status: HTTPStatus = HTTPStatus.OK) -> Reply:
    return Reply(json.dumps(value, indent=1, sort_keys=True).encode(), JSON, status)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class ApiService:
    def __init__(
        self,
        db: Database,
        state: StateConfig,
        trust: LogTrust,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.db = db
        self.trust = trust
        self.clock = clock
        self.lock = threading.RLock()
        self._coverage = CoverageView(db, state)
        self._mirror = LeafMirror()

    def me(self, caller: Caller, params: dict[str, str], query: Query) -> Reply:
        return json_reply({"user": caller.user, "role": caller.role.value})

    def loans(self, caller: Caller, params: dict[str, str], query: Query) -> Reply:
        return json_reply(views.loans(self.db, self._coverage.at(self.clock())))

    def loan(self, caller: Caller, params: dict[str, str], query: Query) -> Reply:
        view = self._coverage.at(self.clock())
        return json_reply(views.one_loan(self.db, view, params["loan_id"]))

    def statement(self, caller: Caller, params: dict[str, str], query: Query) -> Reply:
        start, end = query.date("from"), query.date("to")
        kind = query.choice("format", ("csv", "html"), "csv")
        try:
            made = build_statement(self.db, params["loan_id"], start, end, self.trust, self.clock())
        except PeriodError as exc:
            raise ApiProblem(HTTPStatus.BAD_REQUEST, str(exc)) from None
        except (UnknownLoan, LoanBookError) as exc:
            raise ApiProblem(HTTPStatus.NOT_FOUND, str(exc)) from None
        except StatementError as exc:
            raise ApiProblem(HTTPStatus.CONFLICT, str(exc)) from None
        name = f"statement-{made.loan.loan_id}-{start}-{end}.{kind}"
        disposition = (("Content-Disposition", f'attachment; filename="{_safe(name)}"'),)
        if kind == "html":
            return Reply(render_html(made).encode(), "text/html; charset=utf-8")
        return Reply(daily_csv(made).encode(), "text/csv; charset=utf-8", headers=disposition)

    def alerts(self, caller: Caller, params: dict[str, str], query: Query) -> Reply:
        f = views.AlertFilter(
            state=query.choice("state", views.STATES, "active") or "active",
            rule=query.choice("rule", views.RULES, None),
            loan=query.text("loan"),
            severity=query.choice("severity", views.SEVERITIES, None),
            limit=query.integer("limit", 1, MAX_PAGE) or 100,
            before=query.integer("before", 1),
        )
        return json_reply(views.alerts(self.db, f))

    def alert(self, caller: Caller, params: dict[str, str], query: Query) -> Reply:
        alert_id = path_int("alert_id", params["alert_id"])
        try:
            return json_reply(alert_data(lifecycle.get_alert(self.db, alert_id), LINKS))
        except AlertNotFound as exc:
            raise ApiProblem(HTTPStatus.NOT_FOUND, str(exc)) from None

    def acknowledge(self, caller: Caller, params: dict[str, str], query: Query) -> Reply:
        alert_id = path_int("alert_id", params["alert_id"])
        try:
            transition = lifecycle.acknowledge(self.db, alert_id, caller.user, self.clock())
            alert = lifecycle.get_alert(self.db, alert_id)
        except AlertNotFound as exc:
            raise ApiProblem(HTTPStatus.NOT_FOUND, str(exc)) from None
        except AlertError as exc:
            raise ApiProblem(HTTPStatus.CONFLICT, str(exc)) from None
        body: dict[str, Any] = alert_data(alert, LINKS)
        body["changed"] = transition is not None
        return json_reply(body)

    def proof(self, caller: Caller, params: dict[str, str], query: Query) -> Reply:
        event_id = params["event_id"]
        data = views.event_proof(self.db, event_id, self._mirror)
        disposition = ("Content-Disposition", f'attachment; filename="{event_id}.proof.json"')
        return Reply(data, JSON, headers=(disposition,))

    def checkpoint(self, caller: Caller, params: dict[str, str], query: Query) -> Reply:
        return json_reply(views.latest_checkpoint(self.db))

    def consistency(self, caller: Caller, params: dict[str, str], query: Query) -> Reply:
        first = query.integer("first", 1)
        if first is None:
            raise ApiProblem(HTTPStatus.BAD_REQUEST, "first: missing (want a tree size >= 1)")
        second = query.integer("second", 1)
        return json_reply(views.consistency(self.db, self._mirror, first, second))


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
