"""Which line of a TOML text holds a key: tomllib does not say, the error messages do."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from daemon.config_types import Loc

_SEGMENT = r"""(?:[A-Za-z0-9_\-]+|"[^"\n]*"|'[^'\n]*')"""
_DOTTED = rf"{_SEGMENT}(?:\s*\.\s*{_SEGMENT})*"
_HEADER = re.compile(rf"\s*\[(\[?)\s*({_DOTTED})\s*\]\]?\s*(?:#.*)?")
_KEY = re.compile(rf"\s*({_DOTTED})\s*=")


def _split_dotted(dotted: str) -> tuple[str, ...]:
    return tuple(re.sub(r"\s+", "", part).strip("\"'") for part in re.findall(_SEGMENT, dotted))


@dataclass
class _Table:
    """A table of the file: its header's dotted name, line, and the lines of its keys."""

    name: tuple[str, ...]
    is_array: bool
    line: int
    keys: dict[str, int]


class KeyLines:
    """Finds the line of a key in TOML text, which tomllib does not report.

    A location such as `('users', 1, 'orgs')` is looked up as the `orgs =` line under the
    second `[[users]]` header; failing that, the header line; failing that, a top-level
    `users =` line; failing that, line 1.
    """

    def __init__(self, text: str) -> None:
        self.tables = [_Table((), False, 1, {})]
        for number, line in _lines_outside_strings(text):
            self._read_line(number, line)

    def _read_line(self, number: int, line: str) -> None:
        if header := _HEADER.fullmatch(line):
            self.tables.append(_Table(_split_dotted(header[2]), bool(header[1]), number, {}))
        elif key := _KEY.match(line):
            parts = _split_dotted(key[1])
            for length in range(len(parts), 0, -1):
                self.tables[-1].keys.setdefault(".".join(parts[:length]), number)

    def line_of(self, loc: Loc) -> int:
        if not loc or not isinstance(loc[0], str):
            return 1
        section, rest = loc[0], loc[1:]
        index = rest[0] if rest and isinstance(rest[0], int) else None
        rest = rest[1:] if index is not None else rest
        key = rest[0] if rest and isinstance(rest[0], str) else None
        tables = self._tables_of(section, index)
        if tables:
            return self._key_line(tables, key) or tables[0].line
        root = self.tables[0].keys
        return root.get(f"{section}.{key}") or root.get(section) or 1

    def _tables_of(self, section: str, index: int | None) -> list[_Table]:
        """The header table of `section` (its `index`-th one if an array) and its sub-tables."""
        found: list[_Table] = []
        seen = -1
        for table in self.tables:
            if table.name == (section,):
                seen += 1 if table.is_array else 0
                if found:
                    break
                if table.is_array == (index is not None) and (index is None or seen == index):
                    found.append(table)
            elif found and table.name[:1] == (section,):
                found.append(table)
            elif found:
                break
        return found

    @staticmethod
    def _key_line(tables: list[_Table], key: str | None) -> int | None:
        if key is None:
            return None
        for table in tables:
            if key in table.keys:
                return table.keys[key]
            if table.name[1:2] == (key,):
                return table.line
        return None


def _lines_outside_strings(text: str) -> Iterator[tuple[int, str]]:
    """Numbered lines of `text`, skipping those inside multi-line strings."""
    open_quote: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if open_quote is None:
            yield number, line
        for quote in ('"""', "'''"):
            if (open_quote in (None, quote)) and line.count(quote) % 2 == 1:
                open_quote = None if open_quote else quote
