"""Strict query-string reading: every parameter is named by the route, given at most once,
and of its documented type; anything else is a 400 that names the parameter."""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections.abc import Collection
from http import HTTPStatus

from anchor.api.views import ApiProblem

MAX_INT = 2**63 - 1


def bad(detail: str) -> ApiProblem:
    return ApiProblem(HTTPStatus.BAD_REQUEST, detail)


class Query:
    def __init__(self, raw: str, allowed: Collection[str]) -> None:
        try:
            pairs = urllib.parse.parse_qsl(
                raw, keep_blank_values=True, strict_parsing=False, errors="strict"
            )
        except (UnicodeDecodeError, ValueError):
            raise bad("query: not valid percent-encoded UTF-8") from None
        self._values: dict[str, str] = {}
        for name, value in pairs:
            if name not in allowed:
                want = ", ".join(sorted(allowed)) or "none"
                raise bad(f"query parameter {name!r} is unknown here (want: {want})")
            if name in self._values:
                raise bad(f"query parameter {name!r} given twice")
            self._values[name] = value

    def text(self, name: str) -> str | None:
        value = self._values.get(name)
        if value is not None and (not value or len(value) > 200):
            raise bad(f"{name}: got {value[:40]!r}, want 1..200 characters")
        return value

    def choice(self, name: str, options: Collection[str], default: str | None) -> str | None:
        value = self._values.get(name, default)
        if value is not None and value not in options:
            raise bad(f"{name}: got {value[:40]!r}, want one of {', '.join(sorted(options))}")
        return value

    def integer(self, name: str, low: int, high: int = MAX_INT) -> int | None:
        value = self._values.get(name)
        if value is None:
            return None
        if not value.isascii() or not value.isdigit() or len(value) > 19 or int(value) > MAX_INT:
            raise bad(f"{name}: got {value[:40]!r}, want an integer {low}..{high}")
        number = int(value)
        if not low <= number <= high:
            raise bad(f"{name}: got {number}, want {low}..{high}")
        return number

    def date(self, name: str) -> dt.date:
        value = self._values.get(name)
        if value is None:
            raise bad(f"{name}: missing (want a date like 2026-03-01)")
        try:
            if len(value) != 10:
                raise ValueError(value)
            return dt.date.fromisoformat(value)
        except ValueError:
            raise bad(f"{name}: got {value[:40]!r}, want a date like 2026-03-01") from None


def path_int(name: str, value: str) -> int:
    digits = value.isascii() and value.isdigit() and len(value) <= 19
    if not digits or not 1 <= int(value) <= MAX_INT:
        raise bad(f"{name}: got {value[:40]!r}, want a positive integer")
    return int(value)
