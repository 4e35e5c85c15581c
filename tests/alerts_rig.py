"""Helpers for the alert tests: a real webhook receiver and condition makers.

`Receiver` is a stdlib `ThreadingHTTPServer` on a random loopback port, in a thread. Its
`mode` decides every answer: "ok" (200), "error" (500), "throttle" (429 + `Retry-After`),
"gone" (410), and `down()` closes the listening socket so senders get *connection refused*
until `up()` binds the same port again. It records every request it answered, with the
status it sent and whether that status was written out completely ("acked"), so tests can
count deliveries per `webhook-id`: a message is delivered when the receiver acked a 2xx.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from anchor.reconcile.conditions import Condition, Rule, Severity

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
EVENT_A = "a" * 64
EVENT_B = "b" * 64


def condition(
    rule: Rule = Rule.SHORTFALL,
    severity: Severity = Severity.WARNING,
    *,
    warehouse: str = "wh-1",
    subject: str = "WR-1",
    loan_id: str | None = "L-1",
    message: str = "lot WR-1 short by 6 units",
    evidence: tuple[str, ...] = (EVENT_A,),
    observed_ms: int = T0,
) -> Condition:
    return Condition(
        rule=rule,
        severity=severity,
        warehouse=warehouse,
        subject=subject,
        message=message,
        evidence=evidence,
        observed_ms=observed_ms,
        loan_id=loan_id,
        lot=subject if rule is Rule.SHORTFALL else None,
    )


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    acked: bool  # the status line and headers were written out without error

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    mode: str = "ok"
    retry_after: str = "120"
    delay_s: float = 0.0
    modes_by_path: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    in_flight: set[str] = field(default_factory=set)  # webhook-ids being answered now
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        message_id = request.headers.get("webhook-id", "")
        with self._lock:
            self.in_flight.add(message_id)
        try:
            length = int(request.headers.get("Content-Length", "0"))
            body = request.rfile.read(length)
            if self.delay_s:
                time.sleep(self.delay_s)
            mode = self.modes_by_path.get(request.path, self.mode)
            status = {"ok": 200, "error": 500, "throttle": 429, "gone": 410}[mode]
            headers = {k.lower(): v for k, v in request.headers.items()}
            # Recorded BEFORE the answer goes out: a sender that has the answer must find the
            # request here. If writing the answer fails, the record says it was not acked.
            record = Received(request.path, headers, body, status, acked=True)
            with self._lock:
                self.received.append(record)
            try:
                request.send_response(status)
                if mode == "throttle":
                    request.send_header("Retry-After", self.retry_after)
                request.send_header("Content-Length", "0")
                request.end_headers()
                request.wfile.flush()
            except OSError:
                with self._lock:
                    index = next(i for i, r in enumerate(self.received) if r is record)
                    self.received[index] = Received(request.path, headers, body, status, False)
        finally:
            with self._lock:
                self.in_flight.discard(message_id)

    def delivered(self, path: str | None = None) -> Counter[str]:
        """webhook-id → how many times this receiver acked it with a 2xx."""
        with self._lock:
            return Counter(
                r.webhook_id
                for r in self.received
                if r.acked and 200 <= r.status <= 299 and path in (None, r.path)
            )

    def busy(self) -> set[str]:
        with self._lock:
            return set(self.in_flight)

    def requests(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if path in (None, r.path)]
