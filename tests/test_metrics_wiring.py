"""The running services write their metrics: gateway and anchor processes with a [metrics]
section, real Mosquitto and a real VictoriaMetrics (InfluxDB v2 write API)."""

from __future__ import annotations

from pathlib import Path

import pytest

from anchor_rig import AnchorRig, wait_until
from gateway_rig import WAREHOUSE, GatewayRig, weight_lines
from servers import MosquittoServer, VictoriaMetricsServer

pytestmark = pytest.mark.slow


def names(vm: VictoriaMetricsServer, prefix: str) -> set[str]:
    return {s["metric"]["__name__"] for s in vm.export(f'{{__name__=~"{prefix}.*"}}')}


def test_gateway_and_anchor_metrics_land(
    tmp_path: Path, mosquitto: MosquittoServer, victoriametrics: VictoriaMetricsServer
) -> None:
    section = (
        f'[metrics]\nurl = "{victoriametrics.url}"\norg = "bank"\nbucket = "pw"\n'
        "flush_interval_ms = 100\n"
    )
    anchor = AnchorRig(
        tmp_path / "anchor",
        mosquitto.port,
        witness=False,
        extra_toml=section + "\n[reconcile]\nevery_ms = 100\n",
    )
    gateway = GatewayRig(tmp_path / "gw", mosquitto.port, anchor_key=anchor.key, extra_toml=section)
    anchor.enrol(WAREHOUSE, "gw-1", gateway.key.public_key)
    try:
        anchor.start()
        anchor.wait_subscribed()
        gateway.feed(weight_lines(["lc-a1"], 50))
        gateway.start()
        wait_until(lambda: anchor.status()["events"] == 51, 30, "events stored")
        wait_until(
            lambda: (
                {"pw_gateway_outbox_depth", "pw_ingest_stored", "pw_log_size"}
                <= names(victoriametrics, "pw_")
            ),
            30,
            "metrics in VictoriaMetrics",
        )
        # Store-wide points come from the reconciler thread every 5 s.
        wait_until(
            lambda: "pw_device_last_seen_ms" in names(victoriametrics, "pw_device"),
            30,
            "device metrics",
        )
    finally:
        gateway.stop()
        anchor.stop()
