"""The loan officers' page (GET /officer) rendered by headless Chromium (Debian `chromium`)
against the live API over a real store: loan rows with coverage colours, the alert feed with
acknowledge buttons for officers, and evidence download links. The DOM is the one Chromium
built after running the page's script (``--dump-dom``), parsed with the stdlib.

The last test drives the page over the DevTools protocol (a websocket): it clicks an evidence
link and checks the downloaded file is the API's proof file and verifies, and clicks
Acknowledge and checks the store recorded it under the officer's name.

A missing chromium skips locally and is an error with CI=true (`servers.require_binary`).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from anchor.alerts import lifecycle
from anchor.alerts.model import AlertState
from pledgewatch.prooffile import verify_proof_file

from api_rig import Api, build_store, call, serve
from servers import require_binary


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    folder = tmp_path_factory.mktemp("api-officer")
    store = build_store(f"sqlite:///{folder / 'anchor.db'}", folder)
    try:
        with serve(store) as running:
            yield running
    finally:
        store.db.close()


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    text: list[str] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def all_text(self) -> str:
        return "".join(self.text) + "".join(c.all_text() for c in self.children)

    def find(self, tag: str, cls: str | None = None) -> list[Node]:
        found = [self] if self.tag == tag and (cls is None or cls in self.classes()) else []
        for child in self.children:
            found.extend(child.find(tag, cls))
        return found


class Tree(HTMLParser):
    VOID = frozenset({"meta", "input", "br", "img", "link", "hr"})

    def __init__(self) -> None:
        super().__init__()
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].text.append(data)


def rendered(url: str, profile: Path) -> Node:
    chromium = require_binary("chromium")
    done = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    tree = Tree()
    tree.feed(done.stdout)
    (body,) = tree.root.find("body")
    return body


@pytest.mark.slow
def test_officer_sees_loans_in_colour_alerts_and_evidence(api: Api, tmp_path: Path) -> None:
    body = rendered(f"{api.url}/officer#token={api.officer}", tmp_path / "profile")
    assert body.attrs.get("data-loaded") == "true", body.find("p")[1].all_text()
    rows = {r.attrs["data-loan-id"]: r for r in body.find("tr", "loan")}
    loans = call(f"{api.url}/v1/loans", api.viewer).json()["loans"]
    assert set(rows) == {loan["loan_id"] for loan in loans} == {"L-OK", "L-WARN", "L-BREACH"}
    for loan in loans:
        row = rows[loan["loan_id"]]
        assert f"coverage-{loan['coverage']['state']}" in row.classes()
        assert row.find("td", "ratio")[0].all_text() == loan["coverage"]["ratio"]
    assert "coverage-ok" in rows["L-OK"].classes()
    assert "coverage-warning" in rows["L-WARN"].classes()
    assert "coverage-breach" in rows["L-BREACH"].classes()
    # The borrower's name is text, not markup: no <b> element was made from it.
    assert 'Jinhai <b>Steel</b> & "Sons"' in rows["L-WARN"].all_text()
    assert not rows["L-WARN"].find("b")

    alerts = call(f"{api.url}/v1/alerts?state=active&limit=200", api.viewer).json()["alerts"]
    items = {int(li.attrs["data-alert-id"]): li for li in body.find("li", "alert")}
    assert set(items) == {a["alert_id"] for a in alerts} and len(items) >= 4
    for a in alerts:
        li = items[a["alert_id"]]
        assert a["message"] in li.all_text()
        assert f"severity-{a['severity']}" in li.classes()
        assert len(li.find("button", "ack")) == (1 if a["state"] == "open" else 0)
        links = [x.attrs["href"] for x in li.find("a", "evidence")]
        assert links == [e["proof_url"] for e in a["evidence"]]
    unload_proof = f"/v1/events/{api.store.unload.event_id}/proof"
    evidence = [x for x in body.find("a", "evidence") if x.attrs["href"] == unload_proof]
    assert evidence and evidence[0].attrs["download"] == f"{api.store.unload.event_id}.proof.json"
    statements = [
        x.attrs["href"] for x in body.find("a", "download") if "statement" in x.attrs["href"]
    ]
    assert len(statements) == 3 and all("format=csv" in s for s in statements)


@pytest.mark.slow
def test_viewer_gets_no_acknowledge_buttons_and_no_token_gets_the_form(
    api: Api, tmp_path: Path
) -> None:
    body = rendered(f"{api.url}/officer#token={api.viewer}", tmp_path / "viewer")
    assert body.attrs.get("data-loaded") == "true"
    assert body.find("li", "alert") and not body.find("button", "ack")
    assert "victor.viewer (viewer)" in body.find("p")[0].all_text()

    anonymous = rendered(f"{api.url}/officer", tmp_path / "anonymous")
    (form,) = anonymous.find("form")
    assert "hidden" not in form.attrs  # the page asks for a token
    assert not anonymous.find("tr", "loan") and not anonymous.find("li", "alert")

    revoked = rendered(f"{api.url}/officer#token={api.revoked}", tmp_path / "revoked")
    assert "401" in revoked.find("p")[1].all_text() and not revoked.find("tr", "loan")


class DevTools:
    """A minimal Chrome DevTools Protocol client over the browser's websocket (flat sessions)."""

    def __init__(self, ws_url: str) -> None:
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=None, open_timeout=30)
        self.next_id = 0

    def send(self, method: str, session: str | None = None, **params: object) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, object] = {"id": self.next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        while True:
            answer = json.loads(self.ws.recv(timeout=60))
            if answer.get("id") == self.next_id:
                assert "error" not in answer, answer
                return dict(answer["result"])

    def evaluate(self, session: str, expression: str) -> Any:
        result = self.send("Runtime.evaluate", session, expression=expression, returnByValue=True)
        return result["result"].get("value")

    def close(self) -> None:
        self.ws.close()


@contextmanager
def browser(profile: Path) -> Iterator[DevTools]:
    chromium = require_binary("chromium")
    process = subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 60
        ws_url = None
        while ws_url is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line and process.poll() is not None:
                break
            if line.startswith("DevTools listening on "):
                ws_url = line.split(" on ", 1)[1].strip()
        assert ws_url is not None, "chromium did not print its DevTools address"
        tools = DevTools(ws_url)
        try:
            yield tools
        finally:
            tools.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.slow
def test_officer_downloads_evidence_and_acknowledges_in_the_browser(
    api: Api, tmp_path: Path
) -> None:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    event_id = api.store.unload.event_id
    (warn,) = call(f"{api.url}/v1/alerts?rule=COVERAGE_WARNING", api.viewer).json()["alerts"]
    with browser(tmp_path / "profile") as tools:
        target = tools.send("Target.createTarget", url="about:blank")["targetId"]
        session = tools.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        tools.send("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(downloads))
        tools.send("Page.navigate", session, url=f"{api.url}/officer#token={api.officer}")
        wait_for(
            "the page", lambda: tools.evaluate(session, "document.body.dataset.loaded") == "true"
        )
        assert tools.evaluate(session, "location.hash") == ""  # the token left the address bar

        link = f'a.evidence[href="/v1/events/{event_id}/proof"]'
        tools.evaluate(session, f"document.querySelector('{link}').click()")
        saved = downloads / f"{event_id}.proof.json"
        wait_for("the proof file download", saved.exists)
        proof = call(f"{api.url}/v1/events/{event_id}/proof", api.viewer)
        wait_for("the whole file", lambda: saved.read_bytes() == proof.body)
        verify_proof_file(saved.read_bytes(), anchor_key=api.store.anchor_key.public_key)

        button = f'li[data-alert-id="{warn["alert_id"]}"] button.ack'
        assert tools.evaluate(session, f"document.querySelectorAll('{button}').length") == 1
        tools.evaluate(session, f"document.querySelector('{button}').click()")
        wait_for(
            "the acknowledgement",
            lambda: lifecycle.get_alert(api.store.db, warn["alert_id"]).acked_by == "olga.officer",
        )
        item = f'li[data-alert-id="{warn["alert_id"]}"]'
        wait_for(
            "the refreshed feed",
            lambda: (
                tools.evaluate(
                    session, f"document.querySelector('{item}').className.includes('acknowledged')"
                )
                is True
            ),
        )
        assert tools.evaluate(session, f"document.querySelectorAll('{button}').length") == 0
    assert lifecycle.get_alert(api.store.db, warn["alert_id"]).state is AlertState.ACKNOWLEDGED
