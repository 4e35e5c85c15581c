"""``pledgewatch demo``: see ``gateway.demo.run``."""

from __future__ import annotations

from gateway.demo.command import add_arguments, run

__all__ = ["add_arguments", "run"]
