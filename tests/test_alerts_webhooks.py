"""Standard Webhooks messages: body, deterministic ids, and signatures checked by others.

v1 (HMAC-SHA256) is verified with the `standardwebhooks` package's own `Webhook.verify`;
v1a (Ed25519) with PyNaCl directly, over the signed content built here from the spec
(`{id}.{timestamp}.{body}`). standardwebhooks 1.1.0 has no v1a verifier: it skips `v1a`
entries, which is also checked (a receiver using it still verifies our v1 signature).
"""

from __future__ import annotations

import base64
import json
import random
import re
import time
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing
import pytest
import standardwebhooks

from anchor.alerts.backoff import RetrySchedule, parse_retry_after
from anchor.alerts.config import WebhookEndpoint, parse_alerts, parse_webhooks
from anchor.alerts.errors import AlertError
from anchor.alerts.model import Alert, AlertState, Transition, TransitionKind
from anchor.alerts.webhooks import (
    EvidenceLinks,
    message_body,
    new_secret,
    parse_secret,
    public_key_text,
    rfc3339,
    webhook_headers,
    webhook_id,
)
from anchor.reconcile.conditions import Category, Rule, Severity
from pledgewatch.signing import SigningKey
from pledgewatch.tomlconf import Fields

from alerts_rig import EVENT_A, T0

SECRET_TEXT = "whsec_" + base64.b64encode(bytes(range(32))).decode()
SECRET = parse_secret(SECRET_TEXT)
KEY = SigningKey(bytes([7]) * 32)


def transition(kind: TransitionKind = TransitionKind.OPENED, n: int = 1) -> Transition:
    alert = Alert(
        id=17,
        fingerprint="0123456789abcdef0123456789abcdef",
        rule=Rule.SHORTFALL,
        severity=Severity.CRITICAL,
        state=AlertState.OPEN,
        warehouse="wh-1",
        subject="WR-1",
        message="账物不符: lot WR-1 short by 6 units",
        evidence=(EVENT_A,),
        observed_ms=T0 - 5000,
        opened_ms=T0,
        updated_ms=T0,
        loan_id="L-7",
        lot="WR-1",
    )
    return Transition(
        id=1,
        alert=alert,
        n=n,
        kind=kind,
        at_ms=T0 + 123,
        webhook_id=webhook_id(alert.fingerprint, alert.id, kind, n),
        previous_severity=Severity.WARNING if kind is TransitionKind.ESCALATED else None,
    )


def test_body_follows_the_standard_webhooks_payload_shape() -> None:
    body = message_body(transition(TransitionKind.ESCALATED, 2), EvidenceLinks())
    assert body.isascii()
    parsed = json.loads(body)
    assert parsed["type"] == "alert.escalated"
    assert parsed["timestamp"] == "2026-01-01T00:00:00.123Z"
    data = parsed["data"]
    assert data["schema"] == "pledgewatch/alert/v1"
    assert (data["alert_id"], data["rule"], data["category"], data["severity"]) == (
        17,
        "SHORTFALL",
        "business",
        "critical",
    )
    assert data["transition"] == {
        "n": 2,
        "kind": "escalated",
        "previous_severity": "warning",
        "by": None,
    }
    assert data["message"].startswith("账物不符")
    assert data["evidence"] == [
        {
            "event_id": EVENT_A,
            "proof_command": f"pledgewatch proof {EVENT_A} -o {EVENT_A}.proof.json "
            "--config anchor.toml",
        }
    ]
    linked = json.loads(message_body(transition(), EvidenceLinks("https://a.example/p/{event_id}")))
    assert linked["data"]["evidence"] == [
        {"event_id": EVENT_A, "proof_url": f"https://a.example/p/{EVENT_A}"}
    ]
    # same transition → same bytes (a replay sends what was sent)
    assert message_body(transition(), EvidenceLinks()) == message_body(
        transition(), EvidenceLinks()
    )


def test_webhook_id_is_deterministic_per_transition() -> None:
    t = transition(TransitionKind.RESOLVED, 4)
    assert t.webhook_id == "0123456789abcdef0123456789abcdef.17.resolved.4"
    assert webhook_id("0123456789abcdef0123456789abcdef", 17, TransitionKind.RESOLVED, 4) == (
        t.webhook_id
    )


def test_v1_verifies_with_the_standardwebhooks_package() -> None:
    body = message_body(transition(), EvidenceLinks())
    now = int(time.time())
    headers = webhook_headers(transition().webhook_id, now, body, secret=SECRET, key=KEY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    versions = [s.split(",", 1)[0] for s in headers["webhook-signature"].split(" ")]
    assert versions == ["v1", "v1a"]

    verified = standardwebhooks.Webhook(SECRET_TEXT).verify(body, headers)
    assert verified["type"] == "alert.opened"
    # the package's own signer produces our v1 entry exactly
    theirs = standardwebhooks.Webhook(SECRET_TEXT).sign(
        headers["webhook-id"], datetime.fromtimestamp(now, UTC), body.decode()
    )
    assert headers["webhook-signature"].split(" ")[0] == theirs

    for field, value in (
        ("webhook-id", headers["webhook-id"] + "x"),
        ("webhook-timestamp", str(now - 1)),
    ):
        with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
            standardwebhooks.Webhook(SECRET_TEXT).verify(body, {**headers, field: value})
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SECRET_TEXT).verify(body.replace(b"WR-1", b"WR-2"), headers)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(new_secret()).verify(body, headers)


def verify_v1a(public_key_whpk: str, body: bytes, headers: dict[str, str]) -> None:
    """What the bank does with only the whpk_ public key (PyNaCl)."""
    public = base64.b64decode(public_key_whpk.removeprefix("whpk_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    entries = [s.split(",", 1) for s in headers["webhook-signature"].split(" ")]
    signatures = [base64.b64decode(sig) for version, sig in entries if version == "v1a"]
    assert signatures, "no v1a signature"
    nacl.signing.VerifyKey(public).verify(signed, signatures[0])


def test_v1a_verifies_with_pynacl_and_only_the_public_key() -> None:
    body = message_body(transition(), EvidenceLinks())
    headers = webhook_headers("m.1.opened.1", int(time.time()), body, secret=None, key=KEY)
    assert headers["webhook-signature"].startswith("v1a,")
    whpk = public_key_text(KEY.public_key)
    assert whpk.startswith("whpk_") and len(base64.b64decode(whpk[5:])) == 32
    verify_v1a(whpk, body, headers)
    for tampered_body, tampered in (
        (body + b" ", headers),
        (body, {**headers, "webhook-id": "m.1.opened.2"}),
        (body, {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 1)}),
    ):
        with pytest.raises(nacl.exceptions.BadSignatureError):
            verify_v1a(whpk, tampered_body, tampered)
    other = public_key_text(SigningKey(bytes([8]) * 32).public_key)
    with pytest.raises(nacl.exceptions.BadSignatureError):
        verify_v1a(other, body, headers)
    # the package (1.1.0) knows only v1: a v1a-only message is not verifiable with it
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SECRET_TEXT).verify(body, headers)


def test_unsigned_messages_are_refused() -> None:
    with pytest.raises(AlertError, match="unsigned"):
        webhook_headers("m", 1, b"{}", secret=None, key=None)


def test_secrets_are_whsec_base64_of_24_to_64_bytes() -> None:
    assert len(parse_secret(new_secret())) == 32
    for bad in (
        "whsec_" + base64.b64encode(b"x" * 23).decode(),
        "whsec_" + base64.b64encode(b"x" * 65).decode(),
        "whsec_not base64!",
        base64.b64encode(b"x" * 32).decode(),
    ):
        with pytest.raises(AlertError, match="webhook secret"):
            parse_secret(bad)


def test_rfc3339_is_exact_to_the_millisecond() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(T0 + 999) == "2026-01-01T00:00:00.999Z"


class Top(random.Random):
    """Jitter that always picks the top of the range."""

    def randint(self, a: int, b: int) -> int:
        return b


def test_retry_schedule_full_jitter_and_end() -> None:
    schedule = RetrySchedule.from_seconds((5, 300, 1800))
    rng = random.Random(1)
    for failures, step_ms in ((1, 5000), (2, 300_000), (3, 1_800_000)):
        for _ in range(50):
            at = schedule.next_attempt_ms(failures, T0, None, rng)
            assert at is not None and T0 + 1000 <= at <= T0 + step_ms
    assert schedule.next_attempt_ms(4, T0, None, rng) is None  # ran out: dead
    flat = RetrySchedule.from_seconds((5, 300), jitter=False)
    assert flat.next_attempt_ms(2, T0, None, rng) == T0 + 300_000


def test_retry_after_is_a_floor_and_capped() -> None:
    schedule = RetrySchedule.from_seconds((5, 300), max_retry_after_s=3600)
    assert schedule.next_attempt_ms(1, T0, 120_000, Top()) == T0 + 120_000
    assert schedule.next_attempt_ms(2, T0, 1000, Top()) == T0 + 300_000
    assert schedule.next_attempt_ms(1, T0, 10**12, Top()) == T0 + 3_600_000


def test_parse_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("120", T0) == 120_000
    assert parse_retry_after(" 0 ", T0) == 0
    date = formatdate(T0 / 1000 + 3600, usegmt=True)
    assert parse_retry_after(date, T0) == 3_600_000
    assert parse_retry_after(formatdate(T0 / 1000 - 60, usegmt=True), T0) == 0
    for bad in (None, "", "soon", "-5", "1.5"):
        assert parse_retry_after(bad, T0) is None


def test_webhooks_config_parses_filters_and_reports_every_problem() -> None:
    problems: list[str] = []
    good = {
        "name": "credit-desk",
        "url": "https://bank.example/hook",
        "secret": SECRET_TEXT,
        "min_severity": "major",
        "rules": ["SHORTFALL", "DOUBLE_PLEDGE"],
        "categories": ["business"],
        "loans": ["L-7"],
    }
    bad = {
        "name": "Bad Name",
        "url": "http://bank.example/hook",
        "secret": "whsec_short",
        "min_severity": "urgent",
        "rules": ["NOPE"],
        "categories": [],
        "loans": [7],
        "colour": "red",
    }
    [endpoint, _] = parse_webhooks(
        [Fields(good, "webhooks[0]", problems), Fields(bad, "webhooks[1]", problems)]
    )
    assert endpoint == WebhookEndpoint(
        name="credit-desk",
        url="https://bank.example/hook",
        secret=SECRET,
        min_severity=Severity.MAJOR,
        rules=frozenset({Rule.SHORTFALL, Rule.DOUBLE_PLEDGE}),
        categories=frozenset({Category.BUSINESS}),
        loans=frozenset({"L-7"}),
    )
    assert SECRET_TEXT[6:] not in repr(endpoint) and repr(SECRET) not in repr(endpoint)
    joined = "\n".join(problems)
    for expected in (
        "webhooks[1].name",
        "webhooks[1].url",
        "webhooks[1].secret",
        "webhooks[1].min_severity",
        "webhooks[1].rules",
        "webhooks[1].categories",
        "webhooks[1].loans",
        "webhooks[1].colour: unknown key",
    ):
        assert expected in joined, (expected, problems)
    assert not any(p.startswith("webhooks[0]") for p in problems)


def test_alerts_section_defaults_and_problems(tmp_path: Path) -> None:
    problems: list[str] = []
    section = parse_alerts(Fields({}, "alerts", problems), tmp_path)
    assert problems == []
    assert section.retry_schedule_s[:3] == (5, 300, 1800) and section.jitter
    parse_alerts(
        Fields(
            {"proof_url": "ftp://x", "retry_schedule_s": [5, 0], "jitter": "yes"},
            "alerts",
            problems,
        ),
        tmp_path,
    )
    assert len(problems) == 3, problems


def docs_verifier() -> Any:
    """The bank's verification snippet, exactly as docs/alerts.md shows it."""
    text = (Path(__file__).parent.parent / "docs" / "alerts.md").read_text()
    [code] = re.findall(r"```python\n(.*?)```", text, re.S)
    scope: dict[str, Any] = {}
    exec(compile(code, "docs/alerts.md", "exec"), scope)
    return scope["verify_pledgewatch_webhook"]


def test_the_verification_snippet_in_the_docs_works() -> None:
    verify = docs_verifier()
    body = message_body(transition(), EvidenceLinks())
    whpk = public_key_text(KEY.public_key)
    now = int(time.time())
    both = webhook_headers("m.1.opened.1", now, body, secret=SECRET, key=KEY)
    only_v1a = webhook_headers("m.1.opened.1", now, body, secret=None, key=KEY)
    verify(body, both, secret=SECRET_TEXT)
    verify(body, both, public_key=whpk)
    verify(body, only_v1a, public_key=whpk)
    for args, kwargs in (
        ((body + b" ", both), {"secret": SECRET_TEXT, "public_key": whpk}),
        ((body, only_v1a), {"secret": SECRET_TEXT}),
        ((body, {**both, "webhook-timestamp": str(now - 301)}), {"public_key": whpk}),
        ((body, both), {"public_key": public_key_text(SigningKey(bytes(32)).public_key)}),
    ):
        with pytest.raises(ValueError):
            verify(*args, **kwargs)
