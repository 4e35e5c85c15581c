"""Errors of the alerting code; all derive from ``anchor.errors.AnchorError``."""

from __future__ import annotations

from anchor.errors import AnchorError


class AlertError(AnchorError):
    """An alert operation was refused (bad input, outside the evaluated scope, …)."""


class AlertNotFound(AlertError):
    """No alert with that id."""
