"""What every benchmark's ``main`` does with its result after printing its table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json(result: dict[str, Any], dest: str | None) -> None:
    """``--json PATH``: the result as indented JSON at PATH, or on stdout for ``-``."""
    if not dest:
        return
    text = json.dumps(result, indent=2, default=str)
    if dest == "-":
        print(text)
    else:
        Path(dest).write_text(text + "\n", encoding="utf-8")


def print_notes(result: dict[str, Any]) -> None:
    for note in result.get("notes", []):
        print("note:", note)
