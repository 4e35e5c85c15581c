"""Upload the dashboards to a running Grafana through its HTTP API, with grafana-client.

Steps, each one request: read the server's build info (`GET /api/frontend/settings`, which
also proves the token works), find the folder by title or create it (`GET/POST
/api/folders`), then save each dashboard with `overwrite` (`POST /api/dashboards/db`), so a
push is idempotent: the same uid is updated in place, Grafana keeps the old versions.

Every failure becomes one of our errors naming what went wrong: `GrafanaUnavailable` (no
connection, timeout, 5xx) or `GrafanaRefused` (401 bad token, 403 missing permission, other
4xx with Grafana's own message).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import niquests
from grafana_client.api import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaServerError,
    GrafanaTimeoutError,
    GrafanaUnauthorizedError,
)

from dashboards.errors import DashboardsError, GrafanaRefused, GrafanaUnavailable

MIN_MAJOR = 11  # the SDK's 11.6 schema (schemaVersion 41); older Grafanas cannot load it
TIMEOUT_S = 10.0
T = TypeVar("T")


@dataclass(frozen=True)
class Pushed:
    """One saved dashboard: its uid, Grafana's version number and URL path."""

    uid: str
    version: int
    url: str


@dataclass(frozen=True)
class PushResult:
    grafana_version: str
    folder_uid: str
    folder_created: bool
    dashboards: tuple[Pushed, ...]


def connect(url: str, token: str) -> GrafanaApi:
    """A client for `url` (scheme, host, port, optional path prefix) with a bearer token."""
    if not url.startswith(("http://", "https://")):
        raise DashboardsError(f"Grafana URL {url!r}: want http:// or https://")
    if not token.strip():
        raise DashboardsError("Grafana token is empty")
    api: GrafanaApi = GrafanaApi.from_url(url, credential=token.strip(), timeout=TIMEOUT_S)
    return api


def push(api: GrafanaApi, models: Sequence[dict[str, Any]], folder: str) -> PushResult:
    """Save every dashboard model into `folder` (created when missing); see the module doc."""
    where = api.url
    info = _call(where, "reading the server version", api.health.check)
    version = str((info or {}).get("version", "")) if isinstance(info, dict) else ""
    major = version.split(".", 1)[0]
    if not major.isdigit() or int(major) < MIN_MAJOR:
        raise GrafanaRefused(
            f"Grafana at {where} reports version {version or '(none)'}; these dashboards need "
            f"Grafana {MIN_MAJOR} or newer (dashboard schemaVersion 41)"
        )
    folder_uid, created = _folder(api, folder)
    saved = []
    for model in models:
        body = {
            "dashboard": {**model, "id": None},
            "folderUid": folder_uid,
            "overwrite": True,
            "message": "pledgewatch dashboards push",
        }
        answer = _call(where, f"saving dashboard {model['uid']}", _saver(api, body))
        if not isinstance(answer, dict) or answer.get("uid") != model["uid"]:
            raise GrafanaRefused(f"Grafana at {where} answered {answer!r} to {model['uid']}")
        saved.append(Pushed(model["uid"], int(answer.get("version", 0)), str(answer.get("url"))))
    return PushResult(version, folder_uid, created, tuple(saved))


def _folder(api: GrafanaApi, title: str) -> tuple[str, bool]:
    """The uid of the top-level folder titled `title`, creating it when there is none."""
    folders = _call(api.url, "listing folders", api.folder.get_all_folders)
    for entry in folders if isinstance(folders, list) else []:
        if isinstance(entry, dict) and entry.get("title") == title:
            return str(entry["uid"]), False
    made = _call(api.url, f"creating folder {title!r}", _folder_maker(api, title))
    if not isinstance(made, dict) or not made.get("uid"):
        raise GrafanaRefused(f"Grafana at {api.url} answered {made!r} when creating {title!r}")
    return str(made["uid"]), True


def _saver(api: GrafanaApi, body: dict[str, Any]) -> Callable[[], object]:
    """`POST /api/dashboards/db` with `body` (grafana-client's methods carry no types)."""
    return lambda: api.dashboard.update_dashboard(body)  # type: ignore[no-untyped-call]


def _folder_maker(api: GrafanaApi, title: str) -> Callable[[], object]:
    """`POST /api/folders` creating a top-level folder titled `title`."""
    return lambda: api.folder.create_folder(title)  # type: ignore[no-untyped-call]


def _call(where: str | None, what: str, request: Callable[[], T]) -> T:
    """Run one API request; translate grafana-client's and niquests' errors into ours."""
    try:
        return request()
    except GrafanaUnauthorizedError as exc:
        raise GrafanaRefused(
            f"Grafana at {where} refused the token (401) while {what}: {_message(exc)}"
        ) from exc
    except GrafanaClientError as exc:
        raise GrafanaRefused(
            f"Grafana at {where} refused {what} ({exc.status_code}): {_message(exc)}"
        ) from exc
    except (GrafanaServerError, GrafanaTimeoutError) as exc:
        raise GrafanaUnavailable(f"Grafana at {where} failed while {what}: {exc}") from exc
    except GrafanaException as exc:
        raise GrafanaUnavailable(f"Grafana at {where} failed while {what}: {exc}") from exc
    except niquests.exceptions.RequestException as exc:
        raise GrafanaUnavailable(f"cannot reach Grafana at {where} while {what}: {exc}") from exc


def _message(exc: GrafanaException) -> str:
    response = exc.response
    if isinstance(response, dict) and "message" in response:
        return str(response["message"])
    return str(response)
