"""Reading a TOML table into typed values while collecting every problem.

Config loaders in gateway/ and anchor/ use ``Fields`` at their entry point: each getter
returns a typed value (or a placeholder) and records a problem instead of raising, so that one
error can name every mistake in the file. Unknown keys are problems too (typos must not be
silently ignored).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pledgewatch.errors import ValidationError

T = TypeVar("T")


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ValidationError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # tomllib decodes the whole file first
        raise ValidationError(
            f"{path}: not valid TOML: not UTF-8 (byte {exc.object[exc.start]:#04x}"
            f" at offset {exc.start})"
        ) from None
    except ValueError as exc:  # tomllib lets int()'s 4300-digit limit escape as ValueError
        raise ValidationError(f"{path}: not usable TOML: {exc}") from None


def show(value: object) -> str:
    """``repr`` for a problem message, safe for any TOML value: integers past ``str()``'s
    4300-digit limit (a hex literal has no such limit) and long text are summarised."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return f"a {value.bit_length()}-bit integer"
    try:
        text = repr(value)
    except ValueError:  # a huge integer inside an array or table
        return f"a {type(value).__name__} holding a huge integer"
    return text if len(text) <= 200 else text[:197] + "..."


Parser = Callable[[dict[str, Any], Path, list[str]], T]


def parse_file(path: Path, parse: Parser[T]) -> tuple[T | None, list[str]]:
    """Read ``path`` and run ``parse(raw, folder, problems)``: the config, or every problem.

    Entry points raise their own ``ConfigError(path, problems)`` when the list is not empty.
    """
    try:
        raw = load_toml(path)
    except ValidationError as exc:
        return None, [str(exc)]
    problems: list[str] = []
    config = parse(raw, path.parent, problems)
    return (None, problems) if problems else (config, problems)


class Fields:
    """Typed access to one table; problems are appended to the shared ``problems`` list."""

    def __init__(self, raw: object, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        self._seen: set[str] = set()
        if isinstance(raw, dict):
            self._raw: dict[str, Any] = raw
        else:
            self._raw = {}
            if raw is not None:
                problems.append(f"{path}: want a table, got {type(raw).__name__}")

    def _get(self, key: str, kind: type[T], kind_name: str, default: T | None) -> T | None:
        self._seen.add(key)
        if key not in self._raw:
            if default is None:
                self.problems.append(f"{self.path}.{key}: missing ({kind_name})")
            return default
        value = self._raw[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.problems.append(
                f"{self.path}.{key}: got {show(value)} ({type(value).__name__}), want {kind_name}"
            )
            return default
        return value

    def text(self, key: str, default: str | None = None) -> str:
        return self._get(key, str, "a string", default) or ""

    def optional_text(self, key: str) -> str | None:
        self._seen.add(key)
        if key not in self._raw:
            return None
        return self._get(key, str, "a string", "") or None

    def public_key(self, key: str, *, required: bool = True, what: str = "") -> bytes | None:
        """An Ed25519 public key written as 64 hex digits; ``b""`` (and a problem) if it is
        malformed, None if optional and absent. ``what`` names it in the problem."""
        text = self.text(key) if required else self.optional_text(key)
        if text is None:
            return None
        try:
            value = bytes.fromhex(text)
        except ValueError:
            value = b""
        if text and len(value) != 32:
            self.problems.append(f"{self.path}.{key}: want 64 hex digits{what and f' ({what})'}")
            return b""
        return value

    def integer(
        self, key: str, default: int | None = None, *, low: int = 0, high: int = 2**62
    ) -> int:
        value = self._get(key, int, "an integer", default)
        if value is None:
            return low
        if not low <= value <= high:
            self.problems.append(f"{self.path}.{key}: got {show(value)}, want {low}..{high}")
        return value

    def boolean(self, key: str, default: bool | None = None) -> bool:
        self._seen.add(key)
        if key not in self._raw:
            if default is None:
                self.problems.append(f"{self.path}.{key}: missing (true or false)")
                return False
            return default
        value = self._raw[key]
        if not isinstance(value, bool):
            self.problems.append(f"{self.path}.{key}: got {show(value)}, want true or false")
            return False
        return value

    def choice(self, key: str, allowed: tuple[str, ...], default: str | None = None) -> str:
        value = self.text(key, default)
        if value not in allowed:
            self.problems.append(f"{self.path}.{key}: got {show(value)}, want one of {allowed}")
            return allowed[0]
        return value

    def table(self, key: str, *, required: bool = True) -> Fields:
        self._seen.add(key)
        name = f"{self.path}.{key}".lstrip(".")
        if key not in self._raw and required:
            self.problems.append(f"{name}: missing table [{name}]")
        return Fields(self._raw.get(key, {}), name, self.problems)

    def tables(self, key: str) -> list[Fields]:
        self._seen.add(key)
        raw = self._raw.get(key, [])
        if not isinstance(raw, list):
            self.problems.append(f"{self.path}.{key}: want an array of tables [[{key}]]")
            return []
        return [
            Fields(item, f"{self.path}.{key}[{i}]".lstrip("."), self.problems)
            for i, item in enumerate(raw)
        ]

    def raw_scalars(self, key: str) -> dict[str, str | int | bool]:
        """A table of plain scalars (driver options), checked for type only."""
        self._seen.add(key)
        raw = self._raw.get(key, {})
        out: dict[str, str | int | bool] = {}
        if not isinstance(raw, dict):
            self.problems.append(f"{self.path}.{key}: want a table")
            return out
        for name, value in raw.items():
            if isinstance(value, str | int | bool) and not isinstance(value, float):
                out[name] = value
            else:
                self.problems.append(
                    f"{self.path}.{key}.{name}: got {show(value)},"
                    " want a string, integer or boolean"
                )
        return out

    def skip(self, *keys: str) -> None:
        """Declare keys that another loader of the same file reads (not typos)."""
        self._seen.update(keys)

    def finish(self) -> None:
        """Record every key that no getter asked for as a problem (likely a typo)."""
        for key in sorted(set(self._raw) - self._seen):
            self.problems.append(f"{self.path}.{key}: unknown key".lstrip("."))
