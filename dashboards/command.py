"""``pledgewatch dashboards build [-o DIR]`` and ``pledgewatch dashboards push --url URL
--token TOKEN [--folder NAME]``: the risk team's Grafana dashboards as code.

`build` writes the four dashboards' JSON (the files `dashboards/json/` holds, and that the
provisioning file points Grafana at). `push` uploads them through Grafana's HTTP API. Exit
codes: 0 done, 2 bad arguments (URL, empty token, unwritable folder), 1 Grafana unreachable or
refusing (bad token, missing permission, too old).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TextIO

from dashboards.errors import DashboardsError, GrafanaRefused, GrafanaUnavailable

TOKEN_ENV = "GRAFANA_TOKEN"  # noqa: S105 (the variable's name, not a secret)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    build = sub.add_parser("build", help="write the dashboards' JSON files")
    build.add_argument(
        "-o", "--output", type=Path, default=None, help="folder (default: dashboards/json)"
    )
    push = sub.add_parser("push", help="upload the dashboards to Grafana (overwrites by uid)")
    push.add_argument("--url", required=True, help="Grafana base URL, e.g. https://grafana:3000")
    push.add_argument(
        "--token",
        default=None,
        help=f"service account token (default: ${TOKEN_ENV}; the environment keeps it off ps)",
    )
    push.add_argument("--folder", default="pledgewatch", help="folder title (created if absent)")


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        if args.action == "build":
            return _build(args, out)
        return _push(args, out)
    except (GrafanaUnavailable, GrafanaRefused) as exc:
        print(f"error: {exc}", file=err)
        return 1
    except DashboardsError as exc:
        print(f"error: {exc}", file=err)
        return 2


def _build(args: argparse.Namespace, out: TextIO) -> int:
    from dashboards import build

    directory = build.JSON_DIR if args.output is None else args.output
    for path in build.write_all(directory):
        print(f"wrote {path}", file=out)
    return 0


def _push(args: argparse.Namespace, out: TextIO) -> int:
    from dashboards import build, push

    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV, "")
    if not token:
        raise DashboardsError(f"no Grafana token: pass --token or set ${TOKEN_ENV}")
    api = push.connect(args.url, token)
    result = push.push(api, build.models(), args.folder)
    made = "created" if result.folder_created else "existing"
    print(
        f"Grafana {result.grafana_version} at {args.url}: {made} folder {args.folder!r} "
        f"(uid {result.folder_uid})",
        file=out,
    )
    for item in result.dashboards:
        print(f"pushed {item.uid} version {item.version} {item.url}", file=out)
    return 0
