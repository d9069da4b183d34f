"""Reading and writing text at the boundary, safely: the one reader of files, JSON and CSV cells.

- :func:`read_text` / :func:`iter_lines`: UTF-8 with an optional leading BOM (accepted everywhere a
  file is read); bytes that are not UTF-8 give a typed error naming the file, the line and the byte
  offset.
- :func:`loads_json`: strict JSON — a key twice in one object is refused (naming the key and line),
  nesting deeper than :data:`~cps_engine.limits.MAX_JSON_DEPTH` is refused (never a
  ``RecursionError``); :func:`loads_toml` the same for TOML.
- :func:`escape_cell` / :func:`unescape_cell` / :class:`CsvWriter`: CSV formula injection
  neutralised the OWASP way.  A text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a
  carriage return (or the full-width ``＝ ＋ － ＠``) is written with a leading single quote; a cell
  that is a plain number (``-5.00``, ``+3``, ``1e5``) is left alone, so amounts stay numeric.  A cell
  that starts with a quote followed by one of those characters (or another quote) is quoted too, so
  :func:`unescape_cell` (used by the statement reader) undoes the escaping exactly.

>>> escape_cell("=HYPERLINK(1)"), escape_cell("-5.00"), escape_cell("bob"), escape_cell("'=x")
("'=HYPERLINK(1)", '-5.00', 'bob', "''=x")
>>> all(unescape_cell(escape_cell(s)) == s for s in ("=1", "-5", "'", "''", "'=", "+", "@a", "x"))
True
>>> loads_json('{"amount": "1", "amount": "2"}', line=4)
Traceback (most recent call last):
...
cps_engine.errors.InvalidInput: line 4, field 'amount': duplicate key 'amount' in a JSON object
"""

from __future__ import annotations

import csv
import json
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final

from cps_engine.errors import CpsError, InvalidInput, brief
from cps_engine.limits import MAX_JSON_DEPTH

__all__ = [
    "CSV_TRIGGERS",
    "CsvWriter",
    "check_depth",
    "decode_line",
    "escape_cell",
    "iter_lines",
    "loads_json",
    "loads_toml",
    "read_text",
    "strip_bom",
    "unescape_cell",
]

BOM: Final = "\ufeff"
_BOM_BYTES: Final = b"\xef\xbb\xbf"

ErrorType = Callable[..., CpsError]


# ---------------------------------------------------------------------------------------------- text
def strip_bom(text: str) -> str:
    """``text`` without one leading byte-order mark."""
    return text[1:] if text.startswith(BOM) else text


def _undecodable(source: str, data: bytes, exc: UnicodeDecodeError, base: int, line: int | None,
                 error: ErrorType) -> CpsError:
    offset = base + exc.start
    if line is None:
        line = data.count(b"\n", 0, exc.start) + 1
    bad = data[exc.start:exc.start + 1]
    return error(f"{source} is not UTF-8 text: byte 0x{bad.hex()} at byte offset {offset} cannot be decoded",
                 line=line)


def decode(data: bytes, source: str, *, error: ErrorType = InvalidInput) -> str:
    """UTF-8 ``data`` (a leading BOM dropped) as text; a typed ``error`` naming ``source``, the line
    and the byte offset when it is not UTF-8."""
    start = 3 if data.startswith(_BOM_BYTES) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _undecodable(source, data[start:], exc, start, None, error) from None


def read_text(path: str | Path, *, error: ErrorType = InvalidInput) -> str:
    """The whole file as UTF-8 text (BOM dropped).  ``OSError`` propagates (the caller names the
    file's role); bytes that are not UTF-8 raise ``error``."""
    p = Path(path)
    return decode(p.read_bytes(), str(p), error=error)


def iter_lines(source: str | Path | IO[str] | IO[bytes] | Iterable[str] | Iterable[bytes], *,
               error: ErrorType = InvalidInput) -> Iterator[tuple[int, str | CpsError]]:
    """``(line number, text)`` for every line of a file path, text or binary stream, or iterable of
    lines (a BOM on the first line dropped).  A line that is not UTF-8 yields ``(n, error)`` instead
    of its text, so a validator can report it and go on."""
    if isinstance(source, (str, Path)):
        name = str(source)
        with open(source, "rb") as fh:
            yield from _lines_of(fh, name, error)
    else:
        yield from _lines_of(source, getattr(source, "name", None) or "input", error)


def _lines_of(lines: Iterable[str] | Iterable[bytes], name: str,
              error: ErrorType) -> Iterator[tuple[int, str | CpsError]]:
    offset = 0
    n = 0
    it: Iterator[str | bytes] = iter(lines)
    while True:
        try:
            raw = next(it)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:  # a text stream opened by the caller
            yield n + 1, error(f"{name} is not UTF-8 text ({exc.reason}) at or after this line", line=n + 1)
            return
        n += 1
        if isinstance(raw, (bytes, bytearray)):
            data = bytes(raw)
            start = 3 if n == 1 and data.startswith(_BOM_BYTES) else 0
            try:
                text = data[start:].decode("utf-8")
            except UnicodeDecodeError as exc:
                yield n, _undecodable(name, data[start:], exc, offset + start, n, error)
                offset += len(data)
                continue
            offset += len(data)
        else:
            text = str(raw)
            if n == 1 and text.startswith(BOM):
                text = text[1:]
        yield n, text


# ---------------------------------------------------------------------------------------------- JSON
class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def _depth_exceeds(obj: Any, limit: int) -> bool:
    """True when arrays/objects nest deeper than ``limit`` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, Mapping):
            children: Iterable[Any] = node.values()
        elif isinstance(node, (list, tuple)):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (Mapping, list, tuple)))
    return False


def check_depth(obj: Any, *, where: str = "", line: int | None = None, error: ErrorType = InvalidInput,
                limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse a parsed document nested deeper than ``limit`` arrays/objects."""
    if _depth_exceeds(obj, limit):
        raise error(f"{where}nested deeper than {limit} levels of arrays/objects", line=line)


def _line_of_key(text: str, key: str) -> int | None:
    pattern = re.compile(re.escape(json.dumps(key, ensure_ascii=False)) + r"\s*:")
    found = [m.start() for m in pattern.finditer(text)]
    if len(found) < 2:
        return None
    return text.count("\n", 0, found[1]) + 1


def loads_json(text: str | bytes, *, line: int | None = None, source: str | None = None,
               error: ErrorType = InvalidInput, parse_float: Callable[[str], Any] | None = None) -> Any:
    """Strict JSON: ``error`` (typed, with ``line`` or the document's own line) for invalid JSON, a
    duplicate key in any object, or nesting deeper than :data:`~cps_engine.limits.MAX_JSON_DEPTH`.
    ``source`` (a file name) prefixes the message."""
    where = f"{source}: " if source else ""
    if isinstance(text, (bytes, bytearray)):
        text = decode(bytes(text), source or "input", error=error)
    text = strip_bom(text)
    try:
        doc = json.loads(text, object_pairs_hook=_unique, parse_float=parse_float)
    except json.JSONDecodeError as exc:
        raise error(f"{where}not valid JSON: {exc.msg}", line=line if line is not None else exc.lineno) from None
    except RecursionError:
        raise error(f"{where}nested deeper than {MAX_JSON_DEPTH} levels of arrays/objects", line=line) from None
    except _DuplicateKey as dup:
        at = line if line is not None else _line_of_key(text, dup.key)
        raise error(f"{where}duplicate key {brief(dup.key)} in a JSON object", line=at, field=dup.key) from None
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH:  # only then can it be too deep
        check_depth(doc, where=where, line=line, error=error)
    return doc


def loads_toml(text: str, *, source: str | None = None, error: ErrorType = InvalidInput) -> dict[str, Any]:
    """TOML (a BOM dropped) with the same nesting limit as :func:`loads_json`; ``error`` when invalid."""
    where = f"{source}: " if source else ""
    text = strip_bom(text)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{where}not valid TOML: {exc}") from None
    except RecursionError:
        raise error(f"{where}nested deeper than {MAX_JSON_DEPTH} levels of arrays/tables") from None
    check_depth(doc, where=where, error=error)
    return doc


# ---------------------------------------------------------------------------------------------- CSV
#: first characters that make a spreadsheet read a cell as a formula (OWASP), and full-width forms
CSV_TRIGGERS: Final = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
_NUMBER: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _quoted(text: str) -> bool:
    """``text`` is an escaped cell: a quote followed by a trigger or by another quote."""
    return len(text) >= 2 and text[0] == "'" and (text[1] == "'" or text[1] in CSV_TRIGGERS)


def escape_cell(value: str) -> str:
    """A CSV cell a spreadsheet will not run: see the module docs.  Numbers are left alone."""
    if not value:
        return value
    first = value[0]
    if first in CSV_TRIGGERS:
        if first in "+-" and _NUMBER.fullmatch(value):
            return value
        return "'" + value
    if first == "'" and _quoted(value):
        return "'" + value
    return value


def unescape_cell(value: str) -> str:
    """Undo :func:`escape_cell` (``unescape_cell(escape_cell(s)) == s`` for every string)."""
    return value[1:] if _quoted(value) else value


class CsvWriter:
    """``csv.DictWriter`` whose text cells go through :func:`escape_cell`: every CSV cps_engine
    writes uses it."""

    def __init__(self, out: IO[str], fieldnames: Sequence[str], **kwargs: Any) -> None:
        self.fieldnames = list(fieldnames)
        self._writer = csv.DictWriter(out, fieldnames=self.fieldnames, **kwargs)
        self._rows = csv.writer(out, **{k: v for k, v in kwargs.items() if k != "extrasaction"})

    def writeheader(self) -> None:
        self._writer.writeheader()

    def writerow(self, row: Mapping[str, Any]) -> None:
        self._writer.writerow({k: escape_cell(v) if isinstance(v, str) else v for k, v in row.items()})

    def writerows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.writerow(row)

    def write_cells(self, cells: Iterable[Any]) -> None:
        """One plain row (a list of cells), escaped the same way."""
        self._rows.writerow([escape_cell(c) if isinstance(c, str) else c for c in cells])


def decode_line(raw: bytes, source: str, line: int, offset: int, *,
                error: ErrorType = InvalidInput) -> str | CpsError:
    """Line ``line`` of a file (its bytes ``raw``, starting at byte ``offset``) as text, exactly as
    :func:`iter_lines` gives it: a BOM on line 1 dropped, ``error`` naming the file, the line and the
    byte offset (returned, not raised) when it is not UTF-8."""
    start = 3 if line == 1 and raw.startswith(_BOM_BYTES) else 0
    try:
        return raw[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        return _undecodable(source, raw[start:], exc, offset + start, line, error)
