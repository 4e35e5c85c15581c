"""Standard Webhooks (v1.0.0) messages for alert transitions: body, id, headers, signatures.

Body (UTF-8 JSON, ASCII-only, keys sorted, no spaces)::

    {"data": {...alert fields, "evidence": [{"event_id": …, "proof_url"|"proof_command": …}]},
     "timestamp": "2026-01-01T00:00:00.000Z", "type": "alert.opened"}

``type`` is ``alert.opened | alert.escalated | alert.acknowledged | alert.resolved`` and
``timestamp`` (RFC 3339, UTC) is when the transition happened. ``data.schema`` versions the
``data`` object (``SCHEMA``).

Headers of every attempt:

- ``webhook-id``: ``<fingerprint>.<alert id>.<transition kind>.<n>``, the same on every retry
  and replay (receivers deduplicate on it). It holds nothing a user controls: a 32-hex
  fingerprint, two integers and a fixed word, as the spec asks of ids that contain ``.``.
- ``webhook-timestamp``: the attempt's time, integer Unix seconds.
- ``webhook-signature``: space-separated signatures over the exact bytes

      SIGNED = webhook-id || "." || webhook-timestamp || "." || body

  ``v1,<base64(HMAC-SHA256(key, SIGNED))>`` where ``key`` is the base64 after ``whsec_`` of
  the endpoint's secret, and ``v1a,<base64(Ed25519-sign(SIGNED))>`` (RFC 8032, 64 bytes, no
  domain prefix: the spec fixes the signed bytes) with the anchor's alert key, whose public
  key the bank holds as ``whpk_<base64 of the 32 raw bytes>``. Use a dedicated key for this:
  these signatures carry no pledgewatch domain separation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime

from anchor.alerts.errors import AlertError
from anchor.alerts.model import Alert, Transition, TransitionKind, severity_name
from pledgewatch.signing import PUBLIC_KEY_SIZE, SigningKey

SCHEMA = "pledgewatch/alert/v1"
HMAC_VERSION = "v1"
ED25519_VERSION = "v1a"
SECRET_PREFIX = "whsec_"  # noqa: S105
PUBLIC_KEY_PREFIX = "whpk_"
MIN_SECRET_BYTES = 24  # the spec: at least 24 bytes (192 bits) ...
MAX_SECRET_BYTES = 64  # ... at most 512 bits
NEW_SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class EvidenceLinks:
    """How a message points at the proof of an evidence event: a URL template holding
    ``{event_id}``, else the CLI command that writes the proof file."""

    proof_url: str | None = None

    def entry(self, event_id: str) -> dict[str, str]:
        if self.proof_url is not None:
            return {"event_id": event_id, "proof_url": self.proof_url.format(event_id=event_id)}
        command = f"pledgewatch proof {event_id} -o {event_id}.proof.json --config anchor.toml"
        return {"event_id": event_id, "proof_command": command}


def webhook_id(fingerprint: str, alert_id: int, kind: TransitionKind, n: int) -> str:
    """The message id of a transition: deterministic, so retries and replays repeat it."""
    return f"{fingerprint}.{alert_id}.{kind.value}.{n}"


def rfc3339(ms: int) -> str:
    """``ms`` since the epoch as RFC 3339 UTC with milliseconds (exact integer arithmetic)."""
    moment = datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=(ms % 1000) * 1000)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _opt_time(ms: int | None) -> str | None:
    return None if ms is None else rfc3339(ms)


def alert_data(alert: Alert, links: EvidenceLinks) -> dict[str, object]:
    return {
        "schema": SCHEMA,
        "alert_id": alert.id,
        "fingerprint": alert.fingerprint,
        "rule": alert.rule.value,
        "category": alert.category.value,
        "severity": severity_name(alert.severity),
        "state": alert.state.value,
        "warehouse": alert.warehouse,
        "loan_id": alert.loan_id,
        "lot": alert.lot,
        "device": alert.device,
        "subject": alert.subject,
        "message": alert.message,
        "evidence": [links.entry(event_id) for event_id in alert.evidence],
        "observed_at": rfc3339(alert.observed_ms),
        "opened_at": rfc3339(alert.opened_ms),
        "updated_at": rfc3339(alert.updated_ms),
        "resolved_at": _opt_time(alert.resolved_ms),
        "acknowledged_by": alert.acked_by,
    }


def message_body(transition: Transition, links: EvidenceLinks) -> bytes:
    """The exact body bytes of a transition's message (same input → same bytes)."""
    data = alert_data(transition.alert, links)
    data["transition"] = {
        "n": transition.n,
        "kind": transition.kind.value,
        "previous_severity": (
            None
            if transition.previous_severity is None
            else severity_name(transition.previous_severity)
        ),
        "by": transition.by,
    }
    body = {
        "type": transition.kind.event_type,
        "timestamp": rfc3339(transition.at_ms),
        "data": data,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def parse_secret(text: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; raises ``AlertError`` if malformed."""
    if not text.startswith(SECRET_PREFIX):
        raise AlertError(f"webhook secret: want {SECRET_PREFIX}<base64>")
    try:
        raw = base64.b64decode(text.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise AlertError("webhook secret: not valid base64 after whsec_") from None
    if not MIN_SECRET_BYTES <= len(raw) <= MAX_SECRET_BYTES:
        raise AlertError(
            f"webhook secret: got {len(raw)} bytes, want {MIN_SECRET_BYTES}..{MAX_SECRET_BYTES}"
        )
    return raw


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(os.urandom(NEW_SECRET_BYTES)).decode()


def public_key_text(public_key: bytes) -> str:
    """``whpk_<base64>``: how the bank is given the alert key's public half."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise AlertError(f"public key: got {len(public_key)} bytes, want {PUBLIC_KEY_SIZE}")
    return PUBLIC_KEY_PREFIX + base64.b64encode(public_key).decode()


def signed_content(msg_id: str, timestamp_s: int, body: bytes) -> bytes:
    if not msg_id or timestamp_s < 0:
        raise AlertError(f"cannot sign: got id {msg_id!r} and timestamp {timestamp_s}")
    return f"{msg_id}.{timestamp_s}.".encode() + body


def sign_hmac(secret: bytes, content: bytes) -> str:
    mac = hmac.new(secret, content, hashlib.sha256).digest()
    return f"{HMAC_VERSION},{base64.b64encode(mac).decode()}"


def sign_ed25519(key: SigningKey, content: bytes) -> str:
    signature = key.sign(b"", content)  # no domain: the spec fixes the signed bytes
    return f"{ED25519_VERSION},{base64.b64encode(signature).decode()}"


def webhook_headers(
    msg_id: str,
    timestamp_s: int,
    body: bytes,
    *,
    secret: bytes | None,
    key: SigningKey | None,
) -> dict[str, str]:
    """The three Standard Webhooks headers; refuses to produce an unsigned message."""
    if secret is None and key is None:
        raise AlertError("refusing to send an unsigned webhook: no secret and no signing key")
    content = signed_content(msg_id, timestamp_s, body)
    signatures = []
    if secret is not None:
        signatures.append(sign_hmac(secret, content))
    if key is not None:
        signatures.append(sign_ed25519(key, content))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": " ".join(signatures),
    }
