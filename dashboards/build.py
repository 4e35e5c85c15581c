"""The four dashboards as Grafana 11 JSON: built with grafana-foundation-sdk (the 11.6
schema, `schemaVersion` 41), checked for the structure Grafana's importer needs, written one
file per dashboard (`<uid>.json`) with sorted keys, so the committed files under
`dashboards/json/` diff cleanly and a test can rebuild and compare them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import coverage, evidence, pipeline, warehouse
from dashboards.errors import DashboardsError

# uid -> builder; the order is the order of the files and of a push.
BOARDS: dict[str, Callable[[], dash.Dashboard]] = {
    coverage.UID: coverage.build,
    warehouse.UID: warehouse.build,
    pipeline.UID: pipeline.build,
    evidence.UID: evidence.build,
}
JSON_DIR = Path(__file__).parent / "json"
PANEL_TYPES = {"row", "stat", "table", "timeseries"}


def model(uid: str) -> dict[str, Any]:
    """The dashboard `uid` as Grafana's JSON model, panel ids numbered from 1."""
    built = BOARDS[uid]().build()
    data: dict[str, Any] = json.loads(json.dumps(built, cls=JSONEncoder))
    for number, panel in enumerate(data["panels"], start=1):
        panel["id"] = number
    check(data)
    return data


def models() -> list[dict[str, Any]]:
    return [model(uid) for uid in BOARDS]


def check(data: dict[str, Any]) -> None:
    """Raise `DashboardsError` naming every way `data` departs from what Grafana 11 imports:
    a title, uid and schemaVersion; panels with a unique id, a known type and a full gridPos
    inside 24 columns; every query target with a refId, a raw InfluxQL query and the
    `$datasource` variable; every variable a name that panels may reference."""
    where = data.get("uid", "?")
    problems: list[str] = []
    for key in ("title", "uid", "schemaVersion", "panels", "templating"):
        if key not in data:
            problems.append(f"missing {key!r}")
    ids = [panel.get("id") for panel in data.get("panels", [])]
    if len(set(ids)) != len(ids):
        problems.append(f"panel ids not unique: {ids}")
    for panel in data.get("panels", []):
        problems.extend(_panel_problems(panel))
    if problems:
        raise DashboardsError(f"dashboard {where}: " + "; ".join(problems))


def _panel_problems(panel: dict[str, Any]) -> list[str]:
    name = f"panel {panel.get('id')} ({panel.get('title')!r})"
    problems: list[str] = []
    if panel.get("type") not in PANEL_TYPES:
        problems.append(f"{name}: type {panel.get('type')!r}, want one of {sorted(PANEL_TYPES)}")
    grid = panel.get("gridPos", {})
    if not all(isinstance(grid.get(k), int) for k in "hwxy") or grid["x"] + grid["w"] > 24:
        problems.append(f"{name}: gridPos {grid} is not inside 24 columns")
    if panel.get("type") == "row":
        return problems
    targets = panel.get("targets", [])
    if not targets:
        problems.append(f"{name}: no targets")
    for target in targets:
        if not (target.get("refId") and target.get("rawQuery") and target.get("query")):
            problems.append(f"{name}: target {target} lacks refId, rawQuery or query")
        if target.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"{name}: target does not use the $datasource variable")
    return problems


def render(data: dict[str, Any]) -> str:
    """The file text: sorted keys, two-space indent, trailing newline (stable diffs)."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_all(directory: Path) -> list[Path]:
    """Write every dashboard to `directory/<uid>.json`; returns the paths written."""
    if directory.exists() and not directory.is_dir():
        raise DashboardsError(f"output {directory} exists and is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for data in models():
            path = directory / f"{data['uid']}.json"
            path.write_text(render(data), encoding="utf-8")
            written.append(path)
    except OSError as exc:
        raise DashboardsError(f"cannot write dashboards to {directory}: {exc}") from exc
    return written
