"""The real-server fixtures, tested against a real Mosquitto with paho-mqtt 2.x.

Besides checking the fixtures, these pin the broker behaviour pledgewatch is designed around:
the default queue limit drops QoS 1 messages, a PUBACK is not durability (kill -9 loses what
came after the last snapshot), MQTT 5 shows an ACL refusal as PUBACK 0x87 while MQTT 3.1.1
hides it, and Mosquitto does not persist a session opened with clean start.
"""

from __future__ import annotations

import os
import pwd
import socket
import ssl
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

import servers
from servers import (
    PLEDGEWATCH_ACL,
    MosquittoFactory,
    MosquittoServer,
    MqttProbe,
    ServerError,
    find_binary,
    free_port,
    require_binary,
    stop_all,
)

NOT_AUTHORIZED = 0x87
MANY = 5000
GATEWAY_USERS = {"gw-a": "pw-a", "gw-b": "pw-b", "anchor": "pw-anchor"}


def port_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def payloads(count: int) -> list[str]:
    return [str(i) for i in range(count)]


def received(probe: MqttProbe, *, settle: float = 0.0) -> list[str]:
    """Payloads received so far; with `settle`, first wait until none arrived for that long."""
    messages = probe.wait_quiet(settle) if settle else probe.messages
    return [message.payload.decode() for message in messages]


def park_persistent_subscriber(server: MosquittoServer, client_id: str, topic: str) -> None:
    """Open a durable MQTT 5 session subscribed to `topic`, then go offline."""
    with MqttProbe(server, client_id, clean_start=False, session_expiry=3600) as probe:
        assert probe.connect().ok
        assert probe.subscribe(topic)[0].value == 1


def test_free_port_is_bindable_and_find_binary_searches_sbin_and_globs(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    tool = tmp_path / "v9" / "bin" / "pw-fake-tool"
    tool.parent.mkdir(parents=True)
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)

    assert find_binary("pw-fake-tool", [tmp_path / "*" / "bin"]) == str(tool)
    assert find_binary("pw-no-such-binary") is None
    if Path("/usr/sbin/mosquitto").exists():
        assert find_binary("mosquitto") is not None


def test_require_binary_skips_locally_and_fails_when_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="make test"):
        require_binary("pw-no-such-server")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_binary("pw-no-such-server")


def test_start_failure_reports_exit_and_log_tail(mosquitto_factory: MosquittoFactory) -> None:
    broker = mosquitto_factory(start=False, extra_config=["pw_no_such_option true"])
    with pytest.raises(ServerError, match="pw_no_such_option"):
        broker.start()
    assert not broker.running


def test_round_trip_qos1(mosquitto: MosquittoServer) -> None:
    with (
        MqttProbe(mosquitto, "test-servers-roundtrip-sub") as sub,
        MqttProbe(mosquitto, "test-servers-roundtrip-pub") as pub,
    ):
        assert sub.connect().ok
        assert pub.connect().ok
        assert sub.subscribe("pw/test/#")[0].value == 1

        assert pub.publish("pw/test/a", b"hello").value == 0

        [message] = sub.wait_for_messages(1)
        assert (message.topic, message.payload, message.qos) == ("pw/test/a", b"hello", 1)
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"


def test_offline_persistent_subscriber_receives_all_5000_queued_messages(
    mosquitto: MosquittoServer,
) -> None:
    park_persistent_subscriber(mosquitto, "test-servers-queue-sub", "pw/queue")
    with MqttProbe(mosquitto, "test-servers-queue-pub") as pub:
        assert pub.connect().ok
        codes = pub.publish_many("pw/queue", payloads(MANY))
    assert {code.value for code in codes} == {0}

    with MqttProbe(
        mosquitto, "test-servers-queue-sub", clean_start=False, session_expiry=3600
    ) as sub:
        assert sub.connect().session_present
        sub.wait_for_messages(MANY)
        assert received(sub, settle=0.3) == payloads(MANY), "all, once each, in order"


def test_default_max_queued_messages_1000_drops_newest_qos1_for_offline_subscriber(
    mosquitto_factory: MosquittoFactory,
) -> None:
    broker = mosquitto_factory(max_queued_messages=1000)
    park_persistent_subscriber(broker, "test-servers-limit-sub", "pw/limit")
    with MqttProbe(broker, "test-servers-limit-pub") as pub:
        assert pub.connect().ok
        codes = pub.publish_many("pw/limit", payloads(MANY))
    assert {code.value for code in codes} == {0}, "every dropped message was still PUBACKed"

    with MqttProbe(broker, "test-servers-limit-sub", clean_start=False, session_expiry=3600) as sub:
        assert sub.connect().session_present
        got = received(sub, settle=0.5)
    assert got == payloads(1000), f"got {len(got)} of {MANY}"


def test_kill9_and_restart_keep_the_same_port(mosquitto: MosquittoServer) -> None:
    port, first_pid = mosquitto.port, mosquitto.pid

    mosquitto.kill()
    assert not mosquitto.running
    assert not port_accepts(mosquitto.host, port)
    mosquitto.start()

    assert (mosquitto.port, mosquitto.running) == (port, True)
    assert mosquitto.pid != first_pid
    with MqttProbe(mosquitto, "test-servers-restart") as probe:
        assert probe.connect().ok
    mosquitto.restart(crash=True)
    assert mosquitto.port == port
    assert "running" in mosquitto.log_since_start()


@pytest.mark.parametrize("crash", [False, True], ids=["sigterm", "kill9-after-save"])
def test_persistent_session_and_queue_survive_restart(
    mosquitto: MosquittoServer, crash: bool
) -> None:
    park_persistent_subscriber(mosquitto, "test-servers-durable-sub", "pw/durable")
    with MqttProbe(mosquitto, "test-servers-durable-pub") as pub:
        assert pub.connect().ok
        pub.publish_many("pw/durable", payloads(100))
    if crash:
        mosquitto.save()
    mosquitto.restart(crash=crash)

    with MqttProbe(
        mosquitto, "test-servers-durable-sub", clean_start=False, session_expiry=3600
    ) as sub:
        assert sub.connect().session_present
        sub.wait_for_messages(100)
        assert received(sub, settle=0.3) == payloads(100)


def test_kill9_loses_messages_pubacked_after_the_last_snapshot(
    mosquitto_factory: MosquittoFactory,
) -> None:
    # A PUBACK means "in broker memory", not "on disk": why only the anchor's receipt
    # releases an event from the gateway outbox.
    broker = mosquitto_factory(autosave_interval=3600)
    park_persistent_subscriber(broker, "test-servers-lossy-sub", "pw/lossy")
    broker.save()
    with MqttProbe(broker, "test-servers-lossy-pub") as pub:
        assert pub.connect().ok
        assert {code.value for code in pub.publish_many("pw/lossy", payloads(100))} == {0}

    broker.restart(crash=True)

    with MqttProbe(broker, "test-servers-lossy-sub", clean_start=False, session_expiry=3600) as sub:
        assert sub.connect().session_present, "the session itself was in the snapshot"
        assert received(sub, settle=0.5) == []


def test_mqtt5_session_opened_with_clean_start_is_not_persisted(
    mosquitto: MosquittoServer,
) -> None:
    # Mosquitto writes only sessions whose latest CONNECT had clean start 0; paho's default
    # MQTT_CLEAN_START_FIRST_ONLY sends clean start 1 on the first connect.
    with MqttProbe(
        mosquitto, "test-servers-cleanstart-sub", clean_start=True, session_expiry=3600
    ) as probe:
        assert probe.connect().ok
        probe.subscribe("pw/cleanstart")
    with MqttProbe(mosquitto, "test-servers-cleanstart-pub") as pub:
        assert pub.connect().ok
        pub.publish("pw/cleanstart", b"queued")

    mosquitto.restart()  # a clean SIGTERM restart, full save on exit

    with MqttProbe(
        mosquitto, "test-servers-cleanstart-sub", clean_start=False, session_expiry=3600
    ) as sub:
        assert not sub.connect().session_present
        assert received(sub, settle=0.3) == []


def test_tls_listener_with_generated_ca(mosquitto_factory: MosquittoFactory) -> None:
    broker = mosquitto_factory(tls=True)
    assert broker.ca_path.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert broker.tls_url == f"mqtts://127.0.0.1:{broker.tls_port}"

    with MqttProbe(broker, "test-servers-tls", use_tls=True) as probe:
        assert probe.connect().ok
        assert probe.subscribe("pw/tls")[0].value == 1
        assert probe.publish("pw/tls", b"over tls").value == 0
        assert probe.wait_for_messages(1)[0].payload == b"over tls"

    untrusting = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="test-servers-tls-untrusted",
        protocol=mqtt.MQTTv5,
    )
    untrusting.tls_set()  # system CAs only: our throwaway CA must not verify
    with pytest.raises(ssl.SSLCertVerificationError):
        untrusting.connect(broker.host, broker.tls_port)


def acl_broker(factory: MosquittoFactory) -> MosquittoServer:
    return factory(users=dict(GATEWAY_USERS), acl=PLEDGEWATCH_ACL, verbose=True)


def login(broker: MosquittoServer, client_id: str, user: str, **options: Any) -> MqttProbe:
    """A probe logged in as one of GATEWAY_USERS (not yet connected)."""
    return MqttProbe(broker, client_id, username=user, password=GATEWAY_USERS[user], **options)


def test_acl_refuses_publish_to_another_gateways_topic_with_0x87(
    mosquitto_factory: MosquittoFactory,
) -> None:
    broker = acl_broker(mosquitto_factory)
    own = "pledgewatch/v1/wh-1/gw-a/events"
    other = "pledgewatch/v1/wh-1/gw-b/events"
    with (
        login(broker, "test-servers-acl-anchor", "anchor") as anchor,
        login(broker, "test-servers-acl-gw-a", "gw-a") as gw_a,
    ):
        assert anchor.connect().ok
        assert gw_a.connect().ok
        assert anchor.subscribe("pledgewatch/#")[0].value == 1

        allowed = gw_a.publish(own, b"first")
        refused = gw_a.publish(other, b"forged")
        after = gw_a.publish(own, b"after")

        assert (allowed.value, after.value) == (0, 0)
        assert refused.value == NOT_AUTHORIZED
        assert refused.is_failure
        # The broker handles one client's packets in order: once "after" has arrived, the
        # refused message would have arrived before it.
        anchor.wait_for_messages(2)
        assert [(m.topic, m.payload) for m in anchor.messages] == [
            (own, b"first"),
            (own, b"after"),
        ]
        assert gw_a.disconnects == 0, "a refused publish must not cost the connection"
    assert "Denied PUBLISH from test-servers-acl-gw-a" in broker.log_since_start()


def test_acl_refusal_is_invisible_under_mqtt311(mosquitto_factory: MosquittoFactory) -> None:
    broker = acl_broker(mosquitto_factory)
    with (
        login(broker, "test-servers-acl311-anchor", "anchor") as anchor,
        login(broker, "test-servers-acl311-gw-a", "gw-a", protocol=mqtt.MQTTv311) as gw_a,
    ):
        assert anchor.connect().ok
        assert gw_a.connect().ok
        anchor.subscribe("pledgewatch/#")

        refused = gw_a.publish("pledgewatch/v1/wh-1/gw-b/events", b"forged")
        gw_a.publish("pledgewatch/v1/wh-1/gw-a/events", b"after")

        assert refused.value == 0, "MQTT 3.1.1 PUBACK has no reason code"
        anchor.wait_for_messages(1)
        assert [m.payload for m in anchor.messages] == [b"after"]


def test_acl_gateway_reads_only_its_own_receipts(mosquitto_factory: MosquittoFactory) -> None:
    broker = acl_broker(mosquitto_factory)
    with (
        login(broker, "test-servers-rcpt-anchor", "anchor") as anchor,
        login(broker, "test-servers-rcpt-gw-a", "gw-a") as gw_a,
    ):
        assert anchor.connect().ok
        assert gw_a.connect().ok
        # Mosquitto grants the wildcard SUBSCRIBE and applies the read ACL per message.
        assert gw_a.subscribe("pledgewatch/v1/wh-1/+/receipts")[0].value == 1

        anchor.publish("pledgewatch/v1/wh-1/gw-b/receipts", b"for b")
        anchor.publish("pledgewatch/v1/wh-1/gw-a/receipts", b"for a")

        gw_a.wait_for_messages(1)
        assert [m.payload for m in gw_a.messages] == [b"for a"]


def test_password_required_and_add_user_reloads(mosquitto_factory: MosquittoFactory) -> None:
    broker = acl_broker(mosquitto_factory)
    anonymous = MqttProbe(broker, "test-servers-auth-anon").connect()
    wrong = MqttProbe(broker, "test-servers-auth-wrong", username="gw-a", password="nope")
    assert not anonymous.ok
    assert not wrong.connect().ok

    broker.add_user("gw-c", "pw-c")

    with MqttProbe(broker, "test-servers-auth-gw-c", username="gw-c", password="pw-c") as gw_c:
        assert gw_c.connect().ok
        assert gw_c.publish("pledgewatch/v1/wh-2/gw-c/events", b"x").value != NOT_AUTHORIZED


@pytest.mark.skipif(os.geteuid() != 0, reason="privilege drop happens only when run as root")
def test_broker_started_as_root_drops_to_mosquitto_user(
    mosquitto_factory: MosquittoFactory,
) -> None:
    require_binary("mosquitto_passwd")
    broker = acl_broker(mosquitto_factory)
    status = Path(f"/proc/{broker.pid}/status").read_text()
    uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    user = broker.effective_user()
    assert user is not None
    assert int(uid) == pwd.getpwnam(user).pw_uid
    assert (broker.password_file.stat().st_mode & 0o777) == 0o640


def test_stop_all_stops_servers_left_running(
    mosquitto_factory: MosquittoFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = mosquitto_factory()
    # Only this test's broker: the real registry also holds session-wide servers (PostgreSQL)
    # that later tests still need. (Regression: this test once stopped them.)
    monkeypatch.setattr(servers, "_LIVE", {broker})
    stop_all()
    assert not broker.running
    assert not port_accepts(broker.host, broker.port)


def test_first_start_retries_when_its_free_port_was_taken(
    mosquitto_factory: MosquittoFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken, free_port()])
        monkeypatch.setattr(servers, "free_port", lambda host="127.0.0.1": next(ports))

        broker = mosquitto_factory()

    assert broker.running
    assert broker.port != taken
    assert "Address already in use" in broker.log_tail()
