"""Errors of the dashboards package; the command maps them to exit codes."""

from __future__ import annotations

from pledgewatch.errors import PledgewatchError


class DashboardsError(PledgewatchError):
    """Bad input to a dashboards command (output dir, URL, token): exit 2."""


class GrafanaUnavailable(DashboardsError):
    """Grafana could not be reached or answered with a server error: exit 1."""


class GrafanaRefused(DashboardsError):
    """Grafana answered but refused the request (401/403/4xx); the message names why: exit 1."""
