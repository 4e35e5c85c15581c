"""The read API over HTTP: a stdlib ``ThreadingHTTPServer``, like the bank's witness.

Every route is listed in ``ROUTES`` with its OpenAPI path template, the role it needs and the
query parameters it takes; ``openapi.json`` beside this file documents exactly these routes
(a test holds the two together). Three routes are public because they carry no data:
``/healthz`` (liveness), ``/openapi.json`` (the document) and ``/officer`` (a static page that
asks for a token). Every other route needs ``Authorization: Bearer <token>``:

- 401 ``WWW-Authenticate: Bearer``: no header, another scheme, a malformed, unknown or
  revoked token (the body does not say which of the last three: nothing to probe);
- 403: a valid token whose role is too low (a viewer acknowledging an alert);
- then 400 for a bad parameter, 404 unknown loan/alert/event, 405 a known path with another
  method (``Allow`` lists the right one), 409 not possible now (e.g. not yet provable).

Errors are RFC 9457 problem objects (``application/problem+json``): ``type``, ``title``,
``status``, ``detail`` naming what is wrong. Auth failures never echo the token.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import cast

from anchor.api import tokens
from anchor.api.query import Query
from anchor.api.service import ApiService, Reply, json_reply
from anchor.api.tokens import Caller, Role
from anchor.api.views import ApiProblem
from anchor.errors import AnchorError
from pledgewatch.errors import PledgewatchError

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"
MAX_BODY = 4096
# The officer page may run its own inline script and talk to this origin, nothing else.
CSP = (
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline';"
        " connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
)
Handler = Callable[[ApiService, Caller, dict[str, str], Query], Reply]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str  # as in openapi.json
    handler: Handler | None  # None: a public static route served by the HTTP layer
    role: Role | None  # None: public
    query: tuple[str, ...] = ()

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template)))


V, OFFICER = Role.VIEWER, Role.OFFICER
STATEMENT_QUERY = ("from", "to", "format")
ALERTS_QUERY = ("state", "rule", "loan", "severity", "limit", "before")
ROUTES = (
    Route("GET", "/healthz", None, None),
    Route("GET", "/openapi.json", None, None),
    Route("GET", "/officer", None, None),
    Route("GET", "/v1/me", ApiService.me, V),
    Route("GET", "/v1/loans", ApiService.loans, V),
    Route("GET", "/v1/loans/{loan_id}", ApiService.loan, V),
    Route("GET", "/v1/loans/{loan_id}/statement", ApiService.statement, V, STATEMENT_QUERY),
    Route("GET", "/v1/alerts", ApiService.alerts, V, ALERTS_QUERY),
    Route("GET", "/v1/alerts/{alert_id}", ApiService.alert, V),
    Route("POST", "/v1/alerts/{alert_id}/acknowledge", ApiService.acknowledge, OFFICER),
    Route("GET", "/v1/events/{event_id}/proof", ApiService.proof, V),
    Route("GET", "/v1/checkpoints/latest", ApiService.checkpoint, V),
    Route("GET", "/v1/consistency", ApiService.consistency, V, ("first", "second")),
)  # fmt: skip
_PATTERNS = [(route, route.pattern) for route in ROUTES]


def static_file(name: str) -> bytes:
    return resources.files("anchor.api").joinpath(name).read_bytes()


def problem(status: HTTPStatus, detail: str) -> Reply:
    body = {"type": "about:blank", "title": status.phrase, "status": int(status), "detail": detail}
    return Reply(json.dumps(body).encode(), PROBLEM, status)


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | Reply:
    """The route for ``method path`` with its decoded path parameters, or a 404/405 reply."""
    allowed = []
    for route, pattern in _PATTERNS:
        found = pattern.fullmatch(path)
        if found is None:
            continue
        if route.method != method:
            allowed.append(route.method)
            continue
        params = {k: urllib.parse.unquote(v, errors="strict") for k, v in found.groupdict().items()}
        return route, params
    if allowed:
        reply = problem(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} {path}: use {', '.join(allowed)}")
        return Reply(reply.body, reply.content_type, reply.status, (("Allow", ", ".join(allowed)),))
    return problem(HTTPStatus.NOT_FOUND, f"no such resource: {path} (see /openapi.json)")


def authenticate(service: ApiService, header: str | None, need: Role) -> Caller | Reply:
    challenge = (("WWW-Authenticate", 'Bearer realm="pledgewatch"'),)
    if header is None:
        reply = problem(HTTPStatus.UNAUTHORIZED, "missing Authorization: Bearer <token> header")
        return Reply(reply.body, reply.content_type, reply.status, challenge)
    scheme, _, text = header.strip().partition(" ")
    caller = None
    if scheme.lower() == "bearer":
        with service.lock:
            caller = tokens.authenticate(service.db, text.strip())
    if caller is None:
        detail = "want Authorization: Bearer <token> with an active API token"
        reply = problem(HTTPStatus.UNAUTHORIZED, detail)
        return Reply(reply.body, reply.content_type, reply.status, challenge)
    if not caller.role.allows(need):
        return problem(
            HTTPStatus.FORBIDDEN, f"role {caller.role.value} may not do this; want {need.value}"
        )
    return caller


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], service: ApiService) -> None:
        self.service = service
        self.static = {
            "/openapi.json": Reply(static_file("openapi.json"), "application/json"),
            "/officer": Reply(static_file("officer.html"), "text/html; charset=utf-8", headers=CSP),
            "/healthz": json_reply({"status": "ok"}),
        }
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def answer(self, method: str, target: str, authorization: str | None) -> tuple[Reply, str]:
        """The reply to one request, and who made it (for the access log)."""
        path, _, raw_query = target.partition("?")
        try:
            found = match(method, path)
        except UnicodeDecodeError:
            return problem(HTTPStatus.BAD_REQUEST, "path: not valid percent-encoded UTF-8"), "-"
        if isinstance(found, Reply):
            return found, "-"
        route, params = found
        if route.handler is None or route.role is None:
            return self.static[route.template], "-"
        caller = authenticate(self.service, authorization, route.role)
        if isinstance(caller, Reply):
            return caller, "-"
        try:
            query = Query(raw_query, route.query)
            with self.service.lock:
                return route.handler(self.service, caller, params, query), caller.user
        except ApiProblem as exc:
            return problem(exc.status, exc.detail), caller.user
        except (AnchorError, PledgewatchError) as exc:
            log.error("api: %s %s failed: %s", method, path, exc)
            return problem(
                HTTPStatus.SERVICE_UNAVAILABLE, "the store could not answer"
            ), caller.user


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pledgewatch-api/1"
    timeout = 30

    def _serve(self) -> None:
        server = cast(ApiServer, self.server)
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit() or int(length) > MAX_BODY or self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._send(problem(HTTPStatus.BAD_REQUEST, f"want a body of at most {MAX_BODY} bytes"))
            return
        self.rfile.read(int(length))  # no route takes a body; read it to keep the connection
        reply, user = server.answer(self.command, self.path, self.headers.get("Authorization"))
        log.info("%s %s %s %s", user, self.command, self.path.partition("?")[0], reply.status)
        self._send(reply)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def __getattr__(self, name: str) -> Callable[[], None]:
        """Any other method (TRACE, CONNECT, made-up ones) gets the same routing: a 405 on a
        known path (with ``Allow``), a 404 elsewhere; never the stdlib's HTML 501."""
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)
