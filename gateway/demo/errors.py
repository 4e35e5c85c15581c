"""The demo's errors: ``DemoError`` (bad arguments or set-up, exit 2) and ``DemoFailed``
(a step of the run failed, exit 1). Both name the step and where its log is."""

from __future__ import annotations

from pledgewatch.errors import PledgewatchError


class DemoError(PledgewatchError):
    """The demo cannot start: a bad option, a missing broker binary, an unusable --out."""


class DemoFailed(PledgewatchError):
    """A step of the demo failed (a command exited non-zero, a deadline passed)."""
