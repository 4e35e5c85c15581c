"""`pledgewatch dashboards push` against a local stand-in of the Grafana HTTP API.

The stand-in is NOT Grafana: no Grafana server can be installed on these machines. It is a
stdlib `http.server` that answers the four requests grafana-client makes for a push, the way
Grafana 11 documents them — `GET /api/frontend/settings` (build info; 401 without the right
bearer token), `GET /api/folders`, `POST /api/folders`, `POST /api/dashboards/db` (overwrite
by uid, version + 1) — and records what it received, so the tests can check the dashboards
that arrived, the folder handling, and each failure path (bad token, server gone, too old,
permission denied, server error). Whether Grafana renders the panels is not tested here; the
queries are tested against a real InfluxDB in test_dashboards_queries.py.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from dashboards import build
from pledgewatch import cli

TOKEN = "glsa_test_token"


@dataclass
class StandIn:
    """State of the stand-in Grafana; tests tweak `version` and `fail` before pushing."""

    version: str = "11.6.0"
    fail: dict[str, int] = field(default_factory=dict)  # "METHOD /path" -> status to answer
    folders: list[dict[str, Any]] = field(default_factory=list)
    saved: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> request body
    versions: dict[str, int] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    url: str = ""


def handler_for(state: StandIn) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def _route(self, method: str) -> None:
            path = self.path.split("?", 1)[0]
            key = f"{method} {path}"
            state.requests.append(key)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._answer(401, {"message": "Unauthorized"})
            if key in state.fail:
                return self._answer(state.fail[key], {"message": f"stand-in refuses {key}"})
            if key == "GET /api/frontend/settings":
                return self._answer(200, {"buildInfo": {"version": state.version}})
            if key == "GET /api/folders":
                return self._answer(200, state.folders)
            if key == "POST /api/folders":
                folder = {"id": len(state.folders) + 1, "uid": f"f{len(state.folders) + 1}",
                          "title": body["title"]}  # fmt: skip
                state.folders.append(folder)
                return self._answer(200, folder)
            if key == "POST /api/dashboards/db":
                return self._save(body)
            return self._answer(404, {"message": "Not found"})

        def _save(self, body: dict[str, Any]) -> None:
            if body.get("folderUid") not in {f["uid"] for f in state.folders}:
                return self._answer(400, {"message": "folder not found"})
            uid = body["dashboard"]["uid"]
            if uid in state.saved and not body.get("overwrite"):
                return self._answer(412, {"message": "version-mismatch"})
            state.saved[uid] = body
            state.versions[uid] = state.versions.get(uid, 0) + 1
            self._answer(200, {"id": len(state.saved), "uid": uid, "status": "success",
                               "url": f"/d/{uid}/x", "version": state.versions[uid]})  # fmt: skip

        def _answer(self, status: int, data: object) -> None:
            raw = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def grafana() -> Iterator[StandIn]:
    state = StandIn()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_for(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


def push(url: str, *extra: str, token: str = TOKEN) -> list[str]:
    return ["dashboards", "push", "--url", url, "--token", token, *extra]


def test_push_creates_the_folder_and_saves_every_dashboard(
    grafana: StandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(push(grafana.url, "--folder", "Risk")) == 0
    assert grafana.folders == [{"id": 1, "uid": "f1", "title": "Risk"}]
    assert list(grafana.saved) == list(build.BOARDS)
    for model in build.models():
        body = grafana.saved[model["uid"]]
        assert (body["folderUid"], body["overwrite"]) == ("f1", True)
        assert body["dashboard"] == {**model, "id": None}  # Grafana assigns its own id
    out = capsys.readouterr().out
    assert "Grafana 11.6.0" in out and "created folder 'Risk'" in out
    assert out.count("version 1 ") == len(build.BOARDS)


def test_second_push_reuses_the_folder_and_overwrites(
    grafana: StandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(push(grafana.url)) == 0
    assert cli.main(push(grafana.url)) == 0
    assert [f["title"] for f in grafana.folders] == ["pledgewatch"]
    assert grafana.requests.count("POST /api/folders") == 1
    assert set(grafana.versions.values()) == {2}
    assert "existing folder 'pledgewatch'" in capsys.readouterr().out.splitlines()[-5]


def test_token_from_the_environment(
    grafana: StandIn, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    assert cli.main(["dashboards", "push", "--url", grafana.url]) == 0
    assert len(grafana.saved) == len(build.BOARDS)


def test_bad_token_is_named_and_nothing_is_saved(
    grafana: StandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(push(grafana.url, token="wrong")) == 1
    err = capsys.readouterr().err
    assert "refused the token (401)" in err and "Unauthorized" in err
    assert grafana.saved == {} and grafana.folders == []


def test_unreachable_grafana(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert cli.main(push(f"http://127.0.0.1:{port}")) == 1
    assert f"cannot reach Grafana at http://127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ({"version": "10.4.2"}, "version 10.4.2; these dashboards need Grafana 11"),
        ({"fail": {"POST /api/folders": 403}}, "refused creating folder 'pledgewatch' (403)"),
        ({"fail": {"POST /api/dashboards/db": 500}}, "failed while saving dashboard"),
    ],
)
def test_refusals_and_server_errors_fail_with_their_reason(
    grafana: StandIn, setup: dict[str, Any], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in setup.items():
        setattr(grafana, name, value)
    assert cli.main(push(grafana.url)) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (push("grafana.bank:3000"), "want http:// or https://"),
        (push("http://127.0.0.1:9", token=" "), "Grafana token is empty"),
        (["dashboards", "push", "--url", "http://127.0.0.1:9"], "no Grafana token"),
    ],
)
def test_bad_arguments_exit_2(
    argv: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
