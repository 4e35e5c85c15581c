"""The dashboards as code: the committed JSON is what the code builds, the structure is what
Grafana 11 imports, the provisioning files point at the same data source, and
`pledgewatch dashboards build` writes the files. (Queries: test_dashboards_queries.py, against
a real InfluxDB 1.x; push: test_dashboards_push.py, against a stand-in Grafana API.)
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import build, influxql
from dashboards.errors import DashboardsError
from pledgewatch import cli

PROVISIONING = Path(build.__file__).parent / "provisioning"


def test_committed_json_is_what_the_code_builds(tmp_path: Path) -> None:
    """Regenerate with `pledgewatch dashboards build` when this fails."""
    written = build.write_all(tmp_path)
    committed = sorted(p.name for p in build.JSON_DIR.glob("*.json"))
    assert sorted(p.name for p in written) == committed
    for path in written:
        assert path.read_text() == (build.JSON_DIR / path.name).read_text(), path.name


def test_boards_use_the_grafana_11_schema_and_unique_uids() -> None:
    boards = build.models()
    assert [b["uid"] for b in boards] == list(build.BOARDS)
    for board in boards:
        assert board["schemaVersion"] == 41  # Grafana 11.6's dashboard schema
        assert board["title"].startswith("pledgewatch · ")
        names = [v["name"] for v in board["templating"]["list"]]
        assert names[0] == "datasource"
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                query = target["query"]
                assert "$timeFilter" in query, (panel["title"], query)  # never unbounded
                used = set(re.findall(r"\$(\w+)", query))
                assert used <= {*names, "timeFilter", "__interval"}, (panel["title"], used)


def test_risk_variables_are_multi_value_with_all() -> None:
    (coverage,) = [b for b in build.models() if b["uid"] == "pledgewatch-loan-coverage"]
    variables = {v["name"]: v for v in coverage["templating"]["list"]}
    assert set(variables) == {"datasource", "warehouse", "loan"}
    for name in ("warehouse", "loan"):
        assert (variables[name]["multi"], variables[name]["includeAll"]) == (True, True)
        assert variables[name]["datasource"] == {"type": "influxdb", "uid": "${datasource}"}
    assert "$warehouse" in variables["loan"]["query"]  # loans of the picked warehouses only
    assert variables["datasource"]["query"] == "influxdb"


def broken(board: dict[str, Any], change: str) -> dict[str, Any]:
    bad = copy.deepcopy(board)
    panel = bad["panels"][1]
    if change == "duplicate id":
        panel["id"] = bad["panels"][0]["id"]
    elif change == "unknown type":
        panel["type"] = "graph"  # the pre-Grafana-7 panel, gone in 11
    elif change == "too wide":
        panel["gridPos"]["x"] = 20
    elif change == "no query":
        panel["targets"][0]["query"] = ""
    elif change == "fixed datasource":
        panel["targets"][0]["datasource"] = {"type": "influxdb", "uid": "abc"}
    elif change == "no panels":
        del bad["panels"]
    return bad


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("duplicate id", "panel ids not unique"),
        ("unknown type", "type 'graph'"),
        ("too wide", "not inside 24 columns"),
        ("no query", "lacks refId, rawQuery or query"),
        ("fixed datasource", "$datasource variable"),
        ("no panels", "missing 'panels'"),
    ],
)
def test_check_names_what_grafana_would_refuse(change: str, message: str) -> None:
    board = build.model("pledgewatch-loan-coverage")
    build.check(board)
    with pytest.raises(DashboardsError, match="pledgewatch-loan-coverage") as caught:
        build.check(broken(board, change))
    assert message in str(caught.value)


def test_provisioning_files_match_the_dashboards() -> None:
    sources = yaml.safe_load((PROVISIONING / "datasources" / "pledgewatch.yaml").read_text())
    (source,) = sources["datasources"]
    assert (source["uid"], source["type"]) == (influxql.PROVISIONED_UID, "influxdb")
    assert source["name"] == influxql.PROVISIONED_NAME
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "pledgewatch.yaml").read_text())
    (provider,) = providers["providers"]
    assert (provider["type"], provider["folder"]) == ("file", "pledgewatch")
    for board in build.models():
        (variable,) = [v for v in board["templating"]["list"] if v["name"] == "datasource"]
        assert variable["current"]["value"] == influxql.PROVISIONED_UID


def test_cli_build_writes_the_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert cli.main(["dashboards", "build", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    for uid in build.BOARDS:
        path = out / f"{uid}.json"
        assert json.loads(path.read_text())["uid"] == uid
        assert str(path) in printed


def test_cli_build_refuses_a_file_as_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    assert cli.main(["dashboards", "build", "-o", str(target)]) == 2
    assert "is not a directory" in capsys.readouterr().err
