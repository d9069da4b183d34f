"""A JSON Lines events file read into columns (Arrow/numpy), validated as the event models validate.

:func:`read_events` is the bulk twin of :func:`cps_engine.models.load_events`: the same events kept,
the same repeats dropped, the same errors (every bad line at once, each naming the line, the record
and the field), but read by Arrow's JSON reader into one column per field instead of one pydantic
model per line.  It needs pyarrow (the ``analysis`` extra).

How it stays exactly the models' validation:

- A line takes the **columnar path** only when everything in it is of a form whose meaning is
  unambiguous: no backslash escapes or control characters, only known keys with the JSON types
  the models take (an explicit Arrow schema refuses any other type), ids without surrounding
  white space and at most :data:`~cps_engine.limits.MAX_ID_LENGTH` characters, known currencies
  in capitals, amounts as plain decimal strings with at most the currency's minor digits, times
  ``YYYY-MM-DDTHH:MM:SS[.ffffff](Z|±HH:MM)`` within the supported range, every required field there
  and no field the event type does not have (keys are counted, so even ``"x": null`` is seen).
- **Every other line** is read by the models themselves (:func:`cps_engine.models.parse_event`),
  which accept it (an unusual but valid form: ``" cny"``, ``"5.000"``, escapes) or refuse it with
  their message.  So an accepted value never differs from the model's, and an error is the
  model's error.
- An event id used twice (per type) is resolved as :func:`~cps_engine.models.load_events` does:
  both lines go through the models; an exact repeat is dropped, another payload is a
  :class:`~cps_engine.errors.DuplicateEvent` naming the first line.

:func:`problems` adds what a computation would refuse beyond single lines (a share the graph
refuses, an order through an unknown share, a refund of an unknown order or beyond what was paid),
every one at once with its line.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Final

import numpy as np

from cps_engine.errors import CpsError, DuplicateEvent, EventValidationError, InvalidEvent, UnknownReference
from cps_engine.limits import MAX_ID_LENGTH, MAX_TIME, MIN_TIME
from cps_engine.models import (
    BindEvent,
    Event,
    OrderEvent,
    PayoutEvent,
    RefundEvent,
    RoleEvent,
    ShareEvent,
    parse_event,
)
from cps_engine.money import CURRENCIES, MAX_EVENT_MINOR, Money
from cps_engine.textio import decode_line

__all__ = ["EventColumns", "problems", "read_events"]

TYPES: Final = ("share", "bind", "order", "refund", "payout", "role")
#: fields of each event type (besides type, id, at): name -> (required, nullable)
FIELDS: Final[dict[str, dict[str, tuple[bool, bool]]]] = {
    "share": {"sharer": (True, False), "parent": (False, True), "campaign": (False, True),
              "product": (False, True)},
    "bind": {"user": (True, False), "upline": (True, False), "registration": (False, False)},
    "order": {"buyer": (True, False), "share": (False, True), "amount": (True, False), "currency": (True, False),
              "shipping": (False, True), "tax": (False, True), "lines": (False, True), "device": (False, True),
              "phone_hash": (False, True), "payment_hash": (False, True)},
    "refund": {"order": (True, False), "amount": (False, True), "currency": (False, True), "kind": (False, False)},
    "payout": {"payee": (True, False), "amount": (True, False), "currency": (True, False)},
    "role": {"person": (True, False), "role": (True, False), "via": (False, True)},
}
#: free-text fields (may be empty); every other string field is an id (1..MAX_ID_LENGTH characters)
TEXT: Final = frozenset({"campaign", "product"})
ITEM_FIELDS: Final = ("sku", "category", "quantity", "unit_price")
#: white space pydantic (Rust) or Python strips from a string: such values take the models' path
_EDGE_SPACE: Final = ("[\\s\\x{0b}\\x{0c}\\x{1c}-\\x{1f}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}"
                      "\\x{202f}\\x{205f}\\x{3000}]")
_TIME: Final = (r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(?:(Z)|([+-])(\d{2}):(\d{2}))$")
_AMOUNT: Final = r"^(?P<i>0|[1-9][0-9]{0,13})(?:\.(?P<f>[0-9]{1,4}))?$"
_MIN_US: Final = int((MIN_TIME - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000
_MAX_US: Final = int((MAX_TIME - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _modules() -> tuple[Any, Any, Any]:
    """pyarrow, pyarrow.compute and pyarrow.json (imported by name: pyarrow ships no type information);
    an ``ImportError`` naming pyarrow when it is missing (the CLI names the extra)."""
    pa = importlib.import_module("pyarrow")
    return pa, importlib.import_module("pyarrow.compute"), importlib.import_module("pyarrow.json")


def _schema(pa: Any) -> Any:
    s = pa.string()
    item = pa.struct([("sku", s), ("category", s), ("quantity", pa.int64()), ("unit_price", s)])
    names = ["type", "id", "at", *sorted({f for fs in FIELDS.values() for f in fs})]
    types = {"registration": pa.bool_(), "lines": pa.list_(item)}
    return pa.schema([(n, types.get(n, s)) for n in names])


# ------------------------------------------------------------------------------------------ reading
def _read_bytes(source: str | Path | bytes | IO[bytes] | IO[str]) -> tuple[bytes, str]:
    if isinstance(source, bytes):
        return source, "input"
    if isinstance(source, (str, Path)):
        if str(source) == "-":
            return _stdin_bytes(), "input"
        return Path(source).read_bytes(), str(source)
    data = source.read()
    name = getattr(source, "name", None) or "input"
    return (data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data), str(name)


def _stdin_bytes() -> bytes:
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        data: bytes = buffer.read()
        return data
    return sys.stdin.read().encode("utf-8", "surrogatepass")


@dataclass
class EventColumns:
    """The events of a file as columns, one Arrow table per event type (``tables["order"]``...),
    each with the fields of that type plus ``line`` (1-based line number), ``at_us`` (µs since the
    epoch, UTC), ``offset_min`` (the time's zone offset in minutes) and, for money, ``<field>_minor``.
    Rows follow the file; repeats are dropped.  ``errors`` lists every bad line (sorted by line);
    ``models`` holds the events that were read by the models (line -> event)."""

    data: bytes
    starts: Any  # numpy int64: byte offset of each line's start; one more entry for the end
    tables: dict[str, Any]
    errors: list[CpsError]
    models: dict[int, Event]
    source: str
    _cache: dict[int, Event] = field(default_factory=dict)

    def raise_errors(self) -> None:
        """Raise :class:`EventValidationError` listing every bad line, as ``load_events`` does."""
        if self.errors:
            raise EventValidationError(self.errors)

    def count(self, kind: str) -> int:
        return int(self.tables[kind].num_rows)

    def event(self, line: int) -> Event:
        """The event of ``line`` as its model (read by the models from the line's own text)."""
        hit = self.models.get(line) or self._cache.get(line)
        if hit is None:
            got = _parse_line(self.data, self.starts, line, self.source)
            if isinstance(got, CpsError):  # pragma: no cover - a columnar line the models refuse
                raise got
            hit = self._cache[line] = got
        return hit

    def events(self, kind: str) -> list[Event]:
        """Every event of type ``kind`` as models, in file order (built without re-validation for
        the lines read in columns: same fields, same values, same time zone)."""
        table = self.tables[kind]
        lines = table.column("line").to_numpy()
        if not len(lines):
            return []
        py = {c: table.column(c).to_pylist() for c in table.column_names}
        at_us = py["at_us"]
        offsets = py["offset_min"]
        names = [n for n in FIELDS[kind] if n in py]
        model = _MODELS[kind]
        out: list[Event] = []
        zones: dict[int, timezone] = {}
        for i, n in enumerate(lines.tolist()):
            ev = self.models.get(n)
            if ev is None:
                off = offsets[i]
                zone = zones.get(off)
                if zone is None:
                    zone = zones[off] = UTC if off == 0 else timezone(timedelta(minutes=off))
                at = (_EPOCH + timedelta(microseconds=at_us[i])).astimezone(zone)
                values: dict[str, Any] = {"type": kind, "id": py["id"][i], "at": at}
                for name in names:
                    v = py[name][i]
                    if v is not None:
                        values[name] = v
                # amounts and their private minor units: read by the model from the line
                ev = self.event(n) if kind in ("order", "refund", "payout") else model.model_construct(**values)
            out.append(ev)
        return out


_MODELS: Final[dict[str, Any]] = {"share": ShareEvent, "bind": BindEvent, "order": OrderEvent,
                                  "refund": RefundEvent, "payout": PayoutEvent, "role": RoleEvent}


def _parse_line(data: bytes, starts: Any, n: int, source: str) -> Event | CpsError:
    """Line ``n`` read exactly as :func:`cps_engine.models.load_events` reads it."""
    from cps_engine.models import _decode

    lo, hi = int(starts[n - 1]), int(starts[n])
    text = decode_line(data[lo:hi], source, n, lo, error=InvalidEvent)
    try:
        if isinstance(text, CpsError):
            raise text
        return parse_event(_decode(text, n), line=n)
    except CpsError as exc:
        return exc


def _blank(data: bytes, lo: int, hi: int, n: int) -> bool:
    raw = data[lo:hi]
    if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return not raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return False


def read_events(source: str | Path | bytes | IO[bytes] | IO[str], *,
                progress: Callable[[str, int], None] | None = None) -> EventColumns:
    """Read a JSON Lines events file (a path, ``'-'`` for standard input, bytes or a stream) into
    columns.  Never raises for bad lines: they are in ``errors`` (see :meth:`EventColumns.raise_errors`).
    ``progress(stage, lines)`` is called as the work goes.

    >>> cols = read_events(b'{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00+08:00"}\\n'
    ...                    b'{"type":"order","id":"o1","buyer":"bo","share":"s1","amount":"1.5","currency":"CNY",'
    ...                    b'"at":"2026-03-01T11:00:00Z"}\\n{"type":"order","id":"o2"}\\n')
    >>> cols.tables["order"].column("amount_minor").to_pylist(), [str(e) for e in cols.errors]
    ([150], ["line 3, record 'o2', field 'at': Field required"])
    """
    pa, pc, pj = _modules()
    data, name = _read_bytes(source)
    arr = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(arr == 10) + 1
    del arr
    if not len(ends) or ends[-1] != len(data):
        ends = np.append(ends, len(data))
    starts = np.concatenate([[0], ends]).astype(np.int64)
    if len(data) == 0:
        starts = np.zeros(1, dtype=np.int64)
    n_lines = len(starts) - 1
    report = progress or (lambda stage, n: None)
    report("reading events", n_lines)

    lines = pa.Array.from_buffers(pa.large_binary(), n_lines, [None, pa.py_buffer(starts), pa.py_buffer(data)])
    # which lines the columnar path may read (see the module docs); the rest go to the models
    fast = np.ones(n_lines, dtype=bool)
    if n_lines and data.startswith(b"\xef\xbb\xbf"):
        fast[0] = False
    utf8 = np.ones(n_lines, dtype=bool)
    try:
        text = lines.cast(pa.large_string())
    except pa.ArrowInvalid:  # some line is not UTF-8: find which, one by one
        utf8 = np.fromiter((_utf8(data[int(starts[i]):int(starts[i + 1])]) for i in range(n_lines)), dtype=bool,
                           count=n_lines)
        fast &= utf8
        text = pc.if_else(pa.array(utf8), lines, pa.scalar(b"", pa.large_binary())).cast(pa.large_string())
    blank = _np(pc.match_substring_regex(text, r"^[ \t\r\n]*$")) & utf8
    fast &= ~blank
    fast &= ~_np(pc.match_substring(text, "\\"))
    fast &= ~_np(pc.match_substring_regex(text, r"[\x00-\x08\x0b\x0c\x0e-\x1f]|\r[^\n]"))
    fast &= _np(pc.match_substring_regex(text, r"^[ \t]*\{.*\}[ \t]*\r?\n?$"))
    idx = np.flatnonzero(fast)
    table, ok_rows = _parse(pa, pj, data, starts, idx)
    fast[idx[~ok_rows]] = False
    idx = idx[ok_rows]
    report("checking fields", len(idx))
    table = table.append_column("line", pa.array(idx + 1, pa.int64()))
    read = text if len(idx) == n_lines else text.take(pa.array(idx))
    del lines
    keys = _np_int(pc.count_substring_regex(read, '"[ \\t\\r]*:'))
    tables, bad = _columns(pa, pc, table, keys, read)
    del read, table
    fast[idx[bad]] = False

    # every other non-blank line: read by the models
    models: dict[int, Event] = {}
    errors: list[CpsError] = []
    slow = np.flatnonzero(~fast & ~blank)
    report("reading the other lines", len(slow))
    for i in slow.tolist():
        lo, hi = int(starts[i]), int(starts[i + 1])
        if _blank(data, lo, hi, i + 1):
            continue
        got = _parse_line(data, starts, i + 1, name)
        if isinstance(got, CpsError):
            errors.append(got)
        else:
            models[i + 1] = got
    cols = EventColumns(data, starts, {}, errors, models, name)
    by_kind: dict[str, list[Event]] = {k: [] for k in TYPES}
    for ev in models.values():
        by_kind[ev.type].append(ev)
    for kind in TYPES:
        part = tables[kind]
        if by_kind[kind]:
            part = _concat(pa, part, _model_rows(pa, kind, by_kind[kind], sorted(
                n for n, ev in models.items() if ev.type == kind)))
            part = part.take(pc.sort_indices(part, [("line", "ascending")]))
        cols.tables[kind] = part
    _duplicates(pa, pc, cols)
    cols.errors.sort(key=lambda e: e.line or 0)
    return cols


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _np(arr: Any) -> Any:
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=bool)


def _np_int(arr: Any) -> Any:
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.int64)


def _parse(pa: Any, pj: Any, data: bytes, starts: Any, idx: Any) -> tuple[Any, Any]:
    """Arrow's JSON reader over the lines ``idx``; a chunk it refuses is halved until the lines it
    refuses are found (those go to the models).  Returns the table and which lines it read."""
    schema = _schema(pa)
    opts = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
    ok = np.ones(len(idx), dtype=bool)
    parts: list[Any] = []

    def chunk(lo: int, hi: int) -> None:
        if lo >= hi:
            return
        body = b"".join(data[int(starts[i]):int(starts[i + 1])].rstrip(b"\r\n") + b"\n"
                        for i in idx[lo:hi].tolist()) if hi - lo < 64 or _gaps(idx, lo, hi) else \
            _span(data, starts, idx, lo, hi)
        try:
            t = pj.read_json(pa.BufferReader(body), parse_options=opts,
                             read_options=pj.ReadOptions(block_size=1 << 26, use_threads=True))
            if t.num_rows != hi - lo:
                raise pa.ArrowInvalid("rows do not match lines")
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            if hi - lo == 1:
                ok[lo] = False
                return
            mid = (lo + hi) // 2
            chunk(lo, mid)
            chunk(mid, hi)
            return
        parts.append(t)

    step = 1 << 18
    for lo in range(0, len(idx), step):
        chunk(lo, min(lo + step, len(idx)))
    if not parts:
        return schema.empty_table(), ok
    known = set(schema.names)
    extra = {f.name for t in parts for f in t.schema if f.name not in known}
    out = []
    for t in parts:
        t = t.select([c for c in t.column_names if c in known]).cast(schema) if extra or t.schema != schema else t
        out.append(t)
    table = pa.concat_tables(out)
    return table.combine_chunks(), ok


def _gaps(idx: Any, lo: int, hi: int) -> bool:
    return bool(idx[hi - 1] - idx[lo] != hi - lo - 1)


def _span(data: bytes, starts: Any, idx: Any, lo: int, hi: int) -> bytes:
    """Lines ``idx[lo:hi]`` (consecutive) as one buffer ending with a newline."""
    a, b = int(starts[idx[lo]]), int(starts[idx[hi - 1] + 1])
    body = data[a:b]
    return body if body.endswith(b"\n") else body + b"\n"


# ------------------------------------------------------------------------------------------ checking
def _columns(pa: Any, pc: Any, table: Any, keys: Any, text: Any) -> tuple[dict[str, Any], Any]:
    """Split the parsed rows by type, check every field as the models would, convert times and
    money; rows that are not plainly valid are flagged ``bad`` (the models read them)."""
    n = table.num_rows
    bad = np.zeros(n, dtype=bool)
    type_col = table.column("type")
    tnp = np.asarray(type_col.to_numpy(zero_copy_only=False), dtype=object)
    bad |= ~np.isin(tnp, TYPES)
    present = {c: ~_np(table.column(c).is_null()) for c in table.column_names if c != "line"}
    # explicit nulls of nullable fields (a key with null is still a key)
    has_null = _np(pc.match_substring(text, "null"))
    null_counts: dict[str, Any] = {}
    if has_null.any():
        sub = text.filter(pa.array(has_null))
        for f in sorted({f for fs in FIELDS.values() for f, (_, nullable) in fs.items() if nullable} | {"category"}):
            counts = np.zeros(n, dtype=np.int64)
            counts[has_null] = _np_int(pc.count_substring_regex(sub, f'"{f}"[ \\t\\r]*:[ \\t\\r]*null'))
            null_counts[f] = counts
    # item lines: key counts and checks, per order row
    lines_col = table.column("lines")
    n_items = _np_int(pc.fill_null(pc.list_value_length(lines_col), 0))
    item_keys = np.zeros(n, dtype=np.int64)
    item_bad = np.zeros(n, dtype=bool)
    items_sum = np.ones(n, dtype=np.int64)
    if n_items.any():
        flat = pc.list_flatten(lines_col)
        parent = _np_int(pc.list_parent_indices(lines_col))
        per = np.zeros(len(flat), dtype=np.int64)
        ibad = np.zeros(len(flat), dtype=bool)
        for f in ITEM_FIELDS:
            col = pc.struct_field(flat, f)
            there = ~_np(col.is_null())
            per += there
            if f == "sku":
                ibad |= ~there | _bad_id(pc, col, there)
            elif f == "category":
                ibad |= _bad_text(pc, col, there)
            elif f == "quantity":
                q = _np_int(pc.fill_null(col, 1))
                ibad |= (q < 1) | (q > 10**9)
            else:
                ibad |= ~there
        np.add.at(item_keys, parent, per)
        np.logical_or.at(item_bad, parent, ibad)
        qty = _np_int(pc.fill_null(pc.struct_field(flat, "quantity"), 1))
        sums = np.zeros(n, dtype=np.int64)
        np.add.at(sums, parent, qty)
        items_sum = np.where(n_items > 0, sums, 1)
    at_us, offset_min, at_bad = _times(pa, pc, table.column("at"), present["at"])
    bad |= at_bad | ~present["id"] | _bad_id(pc, table.column("id"), present["id"])
    tables: dict[str, Any] = {}
    for kind in TYPES:
        rows = np.flatnonzero(tnp == kind)
        spec = FIELDS[kind]
        expected = present["type"][rows].astype(np.int64) + present["id"][rows] + present["at"][rows]
        rbad = np.zeros(len(rows), dtype=bool)
        for f, (required, nullable) in spec.items():
            there = present[f][rows]
            expected += there
            if nullable and f in null_counts:
                expected += null_counts[f][rows]
            if required:
                rbad |= ~there
            if f in ("registration", "lines", "amount", "shipping", "tax") or not there.any():
                continue
            col = table.column(f).take(pa.array(rows))
            rbad |= _bad_text(pc, col, there) if f in TEXT else _bad_id(pc, col, there)
        if kind == "order":
            expected += item_keys[rows] + null_counts.get("category", np.zeros(n, dtype=np.int64))[rows]
            rbad |= item_bad[rows]
        rbad |= _keys_differ(keys[rows], expected)
        sub = table.take(pa.array(rows))
        cols: dict[str, Any] = {"line": sub.column("line"), "id": sub.column("id"),
                                "at_us": pa.array(at_us[rows]), "offset_min": pa.array(offset_min[rows])}
        for f in spec:
            if f != "lines":
                cols[f] = sub.column(f)
        if kind == "order":
            cols["has_lines"] = pa.array(n_items[rows] > 0)
            cols["items"] = pa.array(items_sum[rows])
        rbad |= _money(pa, pc, kind, sub, cols, n_items[rows])
        rbad |= _literals(kind, sub)
        bad[rows] |= rbad
        keep = ~bad[rows]
        tables[kind] = pa.table(cols).filter(pa.array(keep))
    return tables, bad


def _keys_differ(keys: Any, expected: Any) -> Any:
    """Rows with more keys than the fields read (a key the type does not have, even with null)."""
    return keys != expected


def _bad_id(pc: Any, col: Any, there: Any) -> Any:
    length = _np_int(pc.fill_null(pc.utf8_length(col), 1))
    edge = _np(pc.fill_null(pc.match_substring_regex(col, f"^{_EDGE_SPACE}|{_EDGE_SPACE}$"), False))
    return there & ((length < 1) | (length > MAX_ID_LENGTH) | edge)


def _bad_text(pc: Any, col: Any, there: Any) -> Any:
    length = _np_int(pc.fill_null(pc.utf8_length(col), 0))
    edge = _np(pc.fill_null(pc.match_substring_regex(col, f"^{_EDGE_SPACE}|{_EDGE_SPACE}$"), False))
    return there & ((length > MAX_ID_LENGTH) | edge)


def _literals(kind: str, sub: Any) -> Any:
    bad = np.zeros(sub.num_rows, dtype=bool)
    allowed: dict[str, dict[str, tuple[str, ...]]] = {"refund": {"kind": ("refund", "chargeback", "cancel")},
               "role": {"role": ("distributor", "customer"), "via": ("signup", "qualification", "autoship")}}
    for f, values in allowed.get(kind, {}).items():
        v = np.asarray(sub.column(f).to_numpy(zero_copy_only=False), dtype=object)
        bad |= ~(np.isin(v, values) | (v == None))  # noqa: E711 - elementwise
    return bad


def _times(pa: Any, pc: Any, col: Any, there: Any) -> tuple[Any, Any, Any]:
    """µs since the epoch and zone offset (minutes) of ISO times in the plain form; ``bad`` flags
    the others (missing, another form, an impossible date, outside the supported range)."""
    n = len(col)
    parts = pc.extract_regex(pc.fill_null(col, ""), r"^(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})T(?P<h>\d{2}):"
                             r"(?P<mi>\d{2}):(?P<s>\d{2})(?:\.(?P<f>\d{1,6}))?(?:(?P<z>Z)|(?P<sg>[+-])"
                             r"(?P<oh>\d{2}):(?P<om>\d{2}))$")
    bad = ~there | _np(parts.is_null())
    if bad.all():
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64), bad

    def num(name: str, default: str = "0") -> Any:
        f = pc.struct_field(parts, name)
        f = pc.if_else(pc.equal(f, ""), default, f)
        return _np_int(pc.cast(pc.fill_null(f, default), pa.int64()))

    y, mo, d, h, mi, s = num("y", "1970"), num("mo", "1"), num("d", "1"), num("h"), num("mi"), num("s")
    frac = pc.fill_null(pc.struct_field(parts, "f"), "")
    micro = _np_int(pc.cast(pc.if_else(pc.equal(frac, ""), "0", pc.utf8_rpad(frac, 6, "0")), pa.int64()))
    sign = np.where(np.asarray(pc.fill_null(pc.struct_field(parts, "sg"), "+").to_numpy(zero_copy_only=False),
                               dtype=object) == "-", -1, 1)
    oh, om = num("oh"), num("om")
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    dim = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(mo, 0, 12)] + (leap & (mo == 2))
    bad |= (mo < 1) | (mo > 12) | (d < 1) | (d > dim) | (h > 23) | (mi > 59) | (s > 59) | (oh > 23) | (om > 59)
    days = _days_from_civil(np.where(bad, 1970, y), np.where(bad, 1, mo), np.where(bad, 1, d))
    offset = sign * (oh * 60 + om)
    us = ((days * 86400 + h * 3600 + mi * 60 + s - offset * 60) * 1_000_000) + micro
    bad |= (us < _MIN_US) | (us >= _MAX_US)
    return np.where(bad, 0, us), offset, bad


def _days_from_civil(y: Any, m: Any, d: Any) -> Any:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm), vectorised."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _minor(pa: Any, pc: Any, col: Any, exps: Any, there: Any) -> tuple[Any, Any]:
    """Plain decimal strings as minor units of each row's exponent; ``bad`` where not plain."""
    parts = pc.extract_regex(pc.fill_null(col, ""), _AMOUNT)
    bad = there & _np(parts.is_null())
    i = pc.struct_field(parts, "i")
    f = pc.fill_null(pc.struct_field(parts, "f"), "")
    ipart = _np_int(pc.cast(pc.if_else(pc.equal(pc.fill_null(i, ""), ""), "0", pc.fill_null(i, "0")), pa.int64()))
    flen = _np_int(pc.utf8_length(f))
    bad |= there & (flen > exps)
    padded = pc.utf8_rpad(f, 4, "0")
    fpart4 = _np_int(pc.cast(pc.if_else(pc.equal(f, ""), "0", padded), pa.int64()))
    minor = ipart * 10 ** exps + fpart4 // 10 ** (4 - exps)
    bad |= there & (minor > MAX_EVENT_MINOR)
    return np.where(there & ~bad, minor, 0), bad


def _exponents(cur: Any, there: Any) -> tuple[Any, Any]:
    codes = np.asarray(cur.to_numpy(zero_copy_only=False), dtype=object)
    exps = np.zeros(len(codes), dtype=np.int64)
    bad = np.zeros(len(codes), dtype=bool)
    for code in set(codes[there].tolist()):
        rows = codes == code
        if code in CURRENCIES:
            exps[rows] = CURRENCIES[code]
        else:
            bad |= rows
    return exps, bad


def _money(pa: Any, pc: Any, kind: str, sub: Any, cols: dict[str, Any], n_items: Any) -> Any:
    n = sub.num_rows
    bad = np.zeros(n, dtype=bool)
    if kind not in ("order", "refund", "payout"):
        return bad
    cur_there = ~_np(sub.column("currency").is_null())
    exps, cbad = _exponents(sub.column("currency"), cur_there)
    bad |= cbad
    amount_there = ~_np(sub.column("amount").is_null())
    if kind == "refund":
        exps = np.where(cur_there, exps, 0)
        # without a currency the amount is checked against its order's currency later (as the model does):
        # here only plain positive amounts of at most 14 integer digits and 4 decimals are taken
        minor, mbad = _minor(pa, pc, sub.column("amount"), np.where(cur_there, exps, 4), amount_there)
        bad |= mbad | (amount_there & (minor <= 0))
        cols["amount_minor"] = pa.array(np.where(cur_there, minor, -1))
        return bad
    amount, mbad = _minor(pa, pc, sub.column("amount"), exps, amount_there)
    bad |= mbad
    cols["amount_minor"] = pa.array(amount)
    if kind == "payout":
        bad |= amount <= 0
        return bad
    total = np.zeros(n, dtype=np.int64)
    for f in ("shipping", "tax"):
        there = ~_np(sub.column(f).is_null())
        v, vbad = _minor(pa, pc, sub.column(f), exps, there)
        bad |= vbad
        cols[f"{f}_minor"] = pa.array(v)
        total += v
    bad |= total > amount
    if n_items.any():
        lines = sub.column("lines")
        flat = pc.list_flatten(lines)
        parent = _np_int(pc.list_parent_indices(lines))
        price = pc.struct_field(flat, "unit_price")
        there = ~_np(price.is_null())
        _, pbad = _minor(pa, pc, price, exps[parent], there)
        np.logical_or.at(bad, parent, pbad)
    return bad


# ------------------------------------------------------------------------------------------ merging
def _model_rows(pa: Any, kind: str, events: list[Event], lines: list[int]) -> Any:
    """Rows of events the models read, in the columns of :func:`_columns`."""
    evs = events
    data: dict[str, list[Any]] = {"line": lines, "id": [], "at_us": [], "offset_min": []}
    spec = FIELDS[kind]
    for f in spec:
        if f != "lines":
            data[f] = []
    extra: dict[str, list[Any]] = {}
    for ev in evs:
        data["id"].append(ev.id)
        data["at_us"].append(_us(ev.at))
        off = ev.at.utcoffset()
        data["offset_min"].append(int(off.total_seconds()) // 60 if off is not None else 0)
        for f in spec:
            if f == "lines":
                continue
            v = getattr(ev, f)
            data[f].append(str(v) if isinstance(v, Decimal) else v)
        if isinstance(ev, OrderEvent):
            extra.setdefault("amount_minor", []).append(ev.amount_minor)
            extra.setdefault("shipping_minor", []).append(ev.shipping_minor)
            extra.setdefault("tax_minor", []).append(ev.tax_minor)
            extra.setdefault("has_lines", []).append(bool(ev.lines))
            extra.setdefault("items", []).append(sum(x.quantity for x in ev.lines) if ev.lines else 1)
        elif isinstance(ev, RefundEvent):
            extra.setdefault("amount_minor", []).append(
                ev.amount_minor(ev.currency) if ev.currency is not None and ev.amount is not None else -1)
        elif isinstance(ev, PayoutEvent):
            extra.setdefault("amount_minor", []).append(ev.money.minor)
    data.update(extra)
    return data


def _concat(pa: Any, table: Any, rows: dict[str, list[Any]]) -> Any:
    arrays = []
    for name in table.column_names:
        arrays.append(pa.array(rows[name], type=table.schema.field(name).type))
    return pa.concat_tables([table, pa.Table.from_arrays(arrays, schema=table.schema)])


def _us(at: datetime) -> int:
    delta = at - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _duplicates(pa: Any, pc: Any, cols: EventColumns) -> None:
    """Ids used twice within a type: resolved by the models, in file order, as ``load_events`` does
    (an exact repeat dropped, another payload an error naming the first line)."""
    for kind in TYPES:
        table = cols.tables[kind]
        if table.num_rows < 2:
            continue
        ids = table.column("id")
        counts = pc.value_counts(ids)
        many = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")
        if not len(many):
            continue
        rows = np.flatnonzero(_np(pc.is_in(ids, value_set=many)))
        lines = table.column("line").to_numpy()[rows].tolist()
        seen: dict[str, tuple[int, Event]] = {}
        drop: list[int] = []
        for row, n in zip(rows.tolist(), lines, strict=True):
            ev = cols.event(n)
            first = seen.get(ev.id)
            if first is None:
                seen[ev.id] = (n, ev)
                continue
            drop.append(row)
            if first[1] != ev:
                cols.errors.append(DuplicateEvent(f"{ev.type} id already used on line {first[0]} with a different "
                                                  "payload", record=ev.id, field="id", line=n))
        keep = np.ones(table.num_rows, dtype=bool)
        keep[drop] = False
        cols.tables[kind] = table.filter(pa.array(keep))


# ------------------------------------------------------------------------------------------ semantics
def order_index(cols: EventColumns) -> dict[str, int]:
    """Order id -> row of ``tables["order"]``."""
    ids = cols.tables["order"].column("id").to_pylist()
    return dict(zip(ids, range(len(ids)), strict=True))


def refunded(cols: EventColumns, *, on_error: Callable[[CpsError], None] | None = None) -> Any:
    """Refunded minor units per order row, as :func:`cps_engine.engine.refunds_by_order` gives
    them (refunds in time order, ties by id; an amount-less refund takes what is left); a refund
    of an unknown order, in another currency or beyond what was paid raises (or goes to
    ``on_error``, with its line, and is left out)."""
    orders = cols.tables["order"]
    out = np.zeros(orders.num_rows, dtype=np.int64)
    table = cols.tables["refund"]
    if not table.num_rows:
        return out
    pos = order_index(cols)
    amount = orders.column("amount_minor").to_numpy()
    currency = orders.column("currency").to_pylist()
    py = {c: table.column(c).to_pylist() for c in ("id", "at_us", "order", "amount", "currency", "amount_minor",
                                                    "line")}
    order = sorted(range(table.num_rows), key=lambda i: (py["at_us"][i], py["id"][i]))
    for i in order:
        rid, oid, line = py["id"][i], py["order"][i], py["line"][i]
        try:
            row = pos.get(oid)
            if row is None:
                raise UnknownReference(f"refund for unknown order {oid!r}", record=rid, field="order")
            cur = currency[row]
            if py["currency"][i] is not None and py["currency"][i] != cur:
                raise InvalidEvent(f"refund in {py['currency'][i]} for an order in {cur}", record=rid,
                                   field="currency")
            if py["amount"][i] is None:
                total = int(amount[row])
            else:
                got = py["amount_minor"][i]
                minor = got if got >= 0 else _refund_minor(cols, line, cur)
                total = int(out[row]) + minor
            if total > amount[row]:
                raise InvalidEvent(f"refunds of order {oid!r} exceed the {Money(int(amount[row]), cur)} paid",
                                   record=rid, field="amount")
        except CpsError as exc:
            if on_error is None:
                raise
            on_error(exc.located(line=line))
            continue
        out[row] = total
    return out


def _refund_minor(cols: EventColumns, line: int, currency: str) -> int:
    ev = cols.event(line)
    assert isinstance(ev, RefundEvent)
    got = ev.amount_minor(currency)
    assert got is not None
    return got


def problems(cols: EventColumns, *, binding: Any = None) -> list[CpsError]:
    """Everything a computation over these events would refuse, every one at once, sorted by line:
    the bad lines, then what the share graph refuses (a share whose parent is unknown, later or
    itself; a bind to oneself or closing a loop), orders through a share that is not in the
    graph, and refunds of unknown orders, in another currency or beyond what was paid."""
    from cps_engine.graph import BindingMode, ShareGraph

    found: list[CpsError] = list(cols.errors)
    where = _lines_by_record(cols)
    graph_errors: list[CpsError] = []
    graph = ShareGraph.from_events([*cols.events("share"), *cols.events("bind")],
                                   binding=binding if binding is not None else BindingMode.FIRST_WINS,
                                   on_error=graph_errors.append)
    for exc in graph_errors:
        rid = exc.record or ""
        line = where.get(("share", rid)) or where.get(("bind", rid))
        found.append(exc.located(line=line))
    orders = cols.tables["order"]
    share = orders.column("share")
    has = ~_np(share.is_null())
    if has.any():
        ids, shares, lines = (orders.column(c).to_pylist() for c in ("id", "share", "line"))
        for i in np.flatnonzero(has).tolist():
            s = shares[i]
            if graph._shares.share_ids.get(s) < 0:
                found.append(UnknownReference(f"share {s!r} is not a known share", record=ids[i], field="share",
                                              line=lines[i]))
    refunded(cols, on_error=found.append)
    found.sort(key=lambda e: e.line or 0)
    return found


def _lines_by_record(cols: EventColumns) -> Mapping[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for kind in ("share", "bind"):
        t = cols.tables[kind]
        for rid, line in zip(t.column("id").to_pylist(), t.column("line").to_pylist(), strict=True):
            out.setdefault((kind, rid), line)
    return out


# ------------------------------------------------------------------------------------------ computing
def order_columns(cols: EventColumns, graph_refunds: Any = None) -> Any:
    """The orders as the batch engine's :class:`~cps_engine.batch._orders.OrderColumns`, sorted by
    (time, id) as ``compute_events`` reports them, with the history's refunds applied (the first
    refund problem raises, as :func:`~cps_engine.engine.refunds_by_order` does).  An order read per
    order by the kernels is its own model, read from its line (item lines included)."""
    from cps_engine.batch._orders import OrderColumns
    from cps_engine.batch._strings import Strings

    pa, pc, _ = _modules()
    table = cols.tables["order"]
    back = refunded(cols) if graph_refunds is None else graph_refunds
    table = table.append_column("refunded_minor", pa.array(back, pa.int64()))
    table = table.take(pc.sort_indices(table, [("at_us", "ascending"), ("id", "ascending")]))
    lines = table.column("line").to_pylist()
    at_us = np.asarray(table.column("at_us").to_numpy(), dtype=np.int64)
    source = cols

    class _Orders(OrderColumns):
        def event(self, i: int) -> OrderEvent:
            ev = source.event(lines[i])
            assert isinstance(ev, OrderEvent)
            return ev

    def ints(name: str) -> Any:
        return np.asarray(table.column(name).to_numpy(), dtype=np.int64)

    share = table.column("share").combine_chunks()
    return _Orders(
        Strings.of_arrow(table.column("id").combine_chunks()), Strings.of_arrow(table.column("buyer").combine_chunks()),
        Strings.of_arrow(share), ~_np(share.is_null()), ints("amount_minor"), ints("shipping_minor"),
        ints("tax_minor"), Strings.of_arrow(table.column("currency").combine_chunks()), ints("refunded_minor"),
        lambda i: _EPOCH + timedelta(microseconds=int(at_us[i])),
        has_lines=np.asarray(table.column("has_lines").to_numpy(zero_copy_only=False), dtype=bool),
        all_micros=lambda: at_us, items_col=ints("items"))


def share_graph(cols: EventColumns, *, binding: Any = None) -> Any:
    """The :class:`~cps_engine.graph.ShareGraph` of the events' shares and binds, built exactly as
    ``ShareGraph.from_events`` builds it (the first problem raises)."""
    from cps_engine.graph import BindingMode, ShareGraph

    return ShareGraph.from_events([*cols.events("share"), *cols.events("bind")],
                                  binding=binding if binding is not None else BindingMode.FIRST_WINS)


def batch_lines(cols: EventColumns, policy: Any, *, binding: Any = None, graph: Any = None,
                provenance: bool = True) -> Any:
    """The lines frame ``compute_batch(events, policy=policy, provenance=...)`` gives for the same
    file, computed from the columns by the same kernels; errors are raised in the same order
    (bad lines, then the graph, then refunds, then the orders)."""
    import warnings

    from cps_engine.batch import _frame
    from cps_engine.batch._kernels import run

    cols.raise_errors()
    if graph is None:
        graph = share_graph(cols, binding=binding)
    orders = order_columns(cols)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a plugin without a plan: per order, as before
        res = run(orders, graph, policy, provenance=provenance)
    return _frame(orders, res, policy)
