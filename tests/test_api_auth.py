"""Auth refusals of the read API: no anonymous access to any data route; missing, malformed,
wrong and revoked tokens get 401 with a challenge, a viewer acknowledging gets 403, and no
refusal carries data (loans, borrowers, event ids, alert text) or echoes the token."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator

import pytest

from anchor.alerts import lifecycle
from anchor.alerts.model import AlertState
from anchor.api.server import ROUTES, Route

from api_rig import Answer, Api, build_store, call, serve


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    folder = tmp_path_factory.mktemp("api-auth")
    store = build_store(f"sqlite:///{folder / 'anchor.db'}", folder)
    try:
        with serve(store) as running:
            yield running
    finally:
        store.db.close()


DATA_ROUTES = [r for r in ROUTES if r.role is not None]


def concrete(route: Route, api: Api) -> str:
    """The route with real values: a loan, an alert and an event that exist."""
    path = route.template.format(
        loan_id="L-BREACH", alert_id="1", event_id=api.store.unload.event_id
    )
    query = {
        "/v1/loans/{loan_id}/statement": "?from=2026-03-01&to=2026-03-05",
        "/v1/consistency": "?first=1",
    }.get(route.template, "")
    return api.url + path + query


def secrets_of(api: Api) -> list[bytes]:
    """Text that must never appear in a refusal."""
    db = api.store.db.read()
    alerts = [str(m) for (m,) in db.all("SELECT message FROM alerts")]
    words = ["L-BREACH", "L-WARN", "Riverside", "Jinhai", "400000", "steel-coil", "WR-3"]
    return [w.encode() for w in [*words, api.store.unload.event_id, *alerts]]


def assert_refusal(answer: Answer, status: int, api: Api, *sent: str) -> None:
    assert answer.status == status
    assert answer.headers["Content-Type"] == "application/problem+json"
    body = json.loads(answer.body)
    assert set(body) == {"type", "title", "status", "detail"} and body["status"] == status
    for leaked in [*secrets_of(api), *(s.encode() for s in sent if s)]:
        assert leaked not in answer.body, leaked
    if status == 401:
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def well_formed_but_unknown() -> str:
    return "pwt_" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


@pytest.mark.parametrize("route", DATA_ROUTES, ids=lambda r: f"{r.method} {r.template}")
def test_no_data_route_answers_without_a_valid_token(route: Route, api: Api) -> None:
    url = concrete(route, api)
    # The same request with a valid officer token succeeds: the refusals below are auth's.
    assert call(url, api.officer, method=route.method).status == 200
    unknown = well_formed_but_unknown()
    attempts: list[tuple[dict[str, str], str]] = [
        ({}, ""),
        ({"Authorization": ""}, ""),
        ({"Authorization": "Bearer"}, ""),
        ({"Authorization": f"Basic {api.officer}"}, api.officer),
        ({"Authorization": f"Token {api.officer}"}, api.officer),
        ({"Authorization": "Bearer not-a-token"}, "not-a-token"),
        ({"Authorization": f"Bearer {api.officer[:-1]}"}, api.officer[:-1]),
        ({"Authorization": f"Bearer {api.officer}x"}, api.officer),
        ({"Authorization": f"Bearer {unknown}"}, unknown),
        ({"Authorization": f"Bearer {api.revoked}"}, api.revoked),
    ]
    for headers, sent in attempts:
        answer = call(url, method=route.method, headers=headers)
        assert_refusal(answer, 401, api, sent)


def test_unknown_and_revoked_tokens_get_the_same_answer(api: Api) -> None:
    revoked = call(f"{api.url}/v1/loans", api.revoked)
    unknown = call(f"{api.url}/v1/loans", well_formed_but_unknown())
    malformed = call(f"{api.url}/v1/loans", "pwt_short")
    assert revoked.body == unknown.body == malformed.body


def test_viewer_may_read_but_not_acknowledge(api: Api) -> None:
    for route in DATA_ROUTES:
        if route.method == "GET":
            assert call(concrete(route, api), api.viewer).status == 200, route.template
    active = lifecycle.list_alerts(api.store.db, (AlertState.OPEN,))
    target = active[0]
    url = f"{api.url}/v1/alerts/{target.id}/acknowledge"
    refused = call(url, api.viewer, method="POST")
    assert_refusal(refused, 403, api, api.viewer)
    assert "viewer" in refused.json()["detail"] and "officer" in refused.json()["detail"]
    after = lifecycle.get_alert(api.store.db, target.id)
    assert after.state is AlertState.OPEN and after.acked_by is None
    # An unknown alert is also 403 for a viewer: the role is checked before the alert is read.
    assert call(f"{api.url}/v1/alerts/999999/acknowledge", api.viewer, method="POST").status == 403


def test_public_routes_carry_no_data(api: Api) -> None:
    for route in ROUTES:
        if route.role is None:
            answer = call(api.url + route.template)
            assert answer.status == 200, route.template
            for leaked in secrets_of(api):
                assert leaked not in answer.body, (route.template, leaked)
    page = call(f"{api.url}/officer")
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert b"http://" not in page.body and b"https://" not in page.body  # nothing external


def test_unknown_paths_and_methods(api: Api) -> None:
    assert_refusal(call(f"{api.url}/v2/loans"), 404, api)
    assert_refusal(call(f"{api.url}/v1/loans", api.officer, method="POST"), 405, api)
    assert call(f"{api.url}/v1/loans", method="DELETE").headers["Allow"] == "GET"
    trace = call(f"{api.url}/v1/loans", method="TRACE")
    assert trace.status == 405 and trace.headers["Content-Type"] == "application/problem+json"
