"""The loan officer's end of the demo: a webhook receiver on a free loopback port.

It checks each message's Standard Webhooks ``v1`` signature with the stdlib alone —
HMAC-SHA256 over ``{webhook-id}.{webhook-timestamp}.{body}`` keyed with the base64 part of
the ``whsec_`` secret, base64-encoded, compared in constant time — answers 401 to a message
that does not verify (the anchor retries it) and 200 otherwise, deduplicates on
``webhook-id`` (delivery is at-least-once) and prints one line per alert as it arrives.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def new_secret() -> str:
    """A ``whsec_`` secret: 32 random bytes, base64 (the anchor wants 24–64 bytes)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def signature_ok(secret: str, headers: dict[str, str], body: bytes) -> bool:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers.get('webhook-id', '')}.{headers.get('webhook-timestamp', '')}."
    mac = hmac.new(key, signed.encode() + body, hashlib.sha256).digest()
    want = base64.b64encode(mac).decode()
    for part in headers.get("webhook-signature", "").split():
        version, _, value = part.partition(",")
        if version == "v1" and hmac.compare_digest(value, want):
            return True
    return False


@dataclass(frozen=True, slots=True)
class Delivered:
    webhook_id: str
    type: str
    data: dict[str, Any]


@dataclass
class Receiver:
    secret: str
    on_alert: Callable[[Delivered], None]
    delivered: dict[str, Delivered] = field(default_factory=dict)
    refused: int = 0
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver.handle(headers, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass  # one line per alert is printed by on_alert instead

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        if not signature_ok(self.secret, headers, body):
            with self._lock:
                self.refused += 1
            return 401
        try:
            message = json.loads(body)
            item = Delivered(headers["webhook-id"], str(message["type"]), dict(message["data"]))
        except (ValueError, KeyError, TypeError):
            with self._lock:
                self.refused += 1
            return 400
        with self._lock:
            if item.webhook_id in self.delivered:
                return 200  # a retry of one we have: process once
            self.delivered[item.webhook_id] = item
        self.on_alert(item)
        return 200

    def opened(self) -> list[Delivered]:
        with self._lock:
            return [d for d in self.delivered.values() if d.type == "alert.opened"]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
