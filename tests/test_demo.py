"""`pledgewatch demo` (what `make demo` runs) works on embedded defaults, leaves nothing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_demo_runs_verifies_every_event_and_exits_clean(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pledgewatch.cli",
            "demo",
            "--scenario",
            "small",
            "--out",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    verified = int(re.search(r"verified by the bank listener\s+(\d+)", result.stdout)[1])  # type: ignore[index]
    waiting = sum(int(n) for n in re.findall(r"awaiting anchor receipts\)\s+(\d+)", result.stdout))
    assert verified > 0
    assert verified == waiting  # every signed event reached the bank and is still held
    assert re.search(r"device chains broken\s+0", result.stdout)
    assert re.search(r"rejected messages\s+0", result.stdout)
    assert "Traceback" not in result.stderr
