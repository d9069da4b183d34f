"""Orders as columns: one normalised, validated view of a DataFrame, an Arrow table or events.

The batch engine reads orders from a pandas or polars DataFrame, an Arrow table or record batch,
or an iterable of events.  Every source becomes an :class:`OrderColumns` of numpy arrays: ids,
buyers and share ids as object arrays, money as int64 minor units.  Floats are refused for money
(:class:`~cps_engine.errors.FloatRejected`), and a bad value raises a typed error naming the order
and the column, as the per-order path would.

Column names (DataFrame / Arrow):

========================  ==============================================================
``id``                    order id (str, or a categorical: then ``order`` comes out categorical)
``buyer``                 buyer (str or categorical; or int: the graph's person code from
                          ``ShareGraph.encode(..., kind="user")``, -1 for a buyer not in the graph)
``share``                 share id the order was bought through (str or categorical, nullable; or
                          int: the graph's share code from ``ShareGraph.encode``, -1/null for none)
``amount`` or             amount paid in major units: decimal string, ``Decimal`` or int
``amount_minor``          amount paid in minor units (int64)
``currency``              ISO-4217 code
``at``                    time (aware); only read for orders decided per order
``shipping``/``tax``      optional, major units (``shipping_minor``/``tax_minor``: minor)
``refunded_minor``        optional, minor units refunded so far (``refunded``: major units)
========================  ==============================================================

Integer codes are read as they are (checked against the graph's size, never hashed).  A categorical
(pandas ``category``, Arrow dictionary) is resolved by its categories only, once per categories
object and graph version.  A buyer given as code -1 has no name: an order that would pay its own
buyer, or that is computed per order, is then refused; give such buyers by name.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np

from cps_engine.batch._strings import Strings, pyarrow
from cps_engine.engine import orders_by_id, refunds_by_order
from cps_engine.errors import CpsError, DuplicateEvent, FloatRejected, InvalidEvent, UnknownReference
from cps_engine.graph.binding import to_micros
from cps_engine.models import Event, OrderEvent, RefundEvent, parse_event
from cps_engine.money import CURRENCIES, MAX_MINOR, currency_exponent, parse_amount

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["OrderColumns", "is_dask_frame", "is_frame", "order_columns"]

@dataclass
class OrderColumns:
    """Orders as validated columns (one row per order, in the order they will be reported)."""

    ids: Strings
    buyer: Strings
    share: Strings
    has_share: NDArray[np.bool_]
    amount: NDArray[np.int64]
    shipping: NDArray[np.int64]
    tax: NDArray[np.int64]
    currency: Strings
    refunded: NDArray[np.int64]
    #: the time of row ``i`` as given (datetime, Timestamp, ISO string) or None when there is no column
    at: Callable[[int], Any]
    #: the original events, when the orders came from events (per-order fallback reuses them)
    events: list[OrderEvent] | None = None
    has_lines: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    #: memo of graph lookups (share node, buyer id) keyed by graph identity
    memo: dict[tuple[int, str], Any] = field(default_factory=dict)
    #: every order's time in µs since the epoch (None where unknown), when vectorisable
    all_micros: Callable[[], NDArray[np.int64] | None] = lambda: None
    #: items per order (sum of item-line quantities, 1 without lines): what ``/item`` amounts count
    items_col: NDArray[np.int64] | None = None
    #: integer ``share`` / ``buyer`` columns: codes in the graph's dictionary (-1: none / not in the graph)
    share_code: NDArray[np.int64] | None = None
    buyer_code: NDArray[np.int64] | None = None

    @property
    def items(self) -> NDArray[np.int64]:
        if self.items_col is None:
            self.items_col = np.ones(len(self), dtype=np.int64)
        return self.items_col

    def micros(self, rows: NDArray[np.int64]) -> NDArray[np.int64] | None:
        """Times of ``rows`` in µs since the epoch (as ``to_micros``), or None when they are not
        all known as zoned timestamps (those orders are then decided per order)."""
        if self.events is not None:
            events = self.events
            return np.fromiter((to_micros(events[i].at) for i in rows.tolist()), dtype=np.int64, count=len(rows))
        everything = self.all_micros()
        if everything is None:
            return None
        out = everything[rows]
        return None if (out == _NAT).any() else out

    def __len__(self) -> int:
        return len(self.amount)

    def base(self, include_shipping: bool, include_tax: bool) -> NDArray[np.int64]:
        """Gross commissionable base per order, as ``BaseConfig.of`` computes it."""
        base = self.amount
        if not include_shipping:
            base = base - self.shipping
        if not include_tax:
            base = base - self.tax
        return base

    def event(self, i: int) -> OrderEvent:
        """Row ``i`` as an :class:`OrderEvent` (for the per-order path)."""
        if self.events is not None:
            return self.events[i]
        cur = str(self.currency[i])
        exp = CURRENCIES[cur]
        raw: dict[str, Any] = {
            "type": "order", "id": self.ids[i], "buyer": self.buyer[i],
            "share": self.share[i] if self.has_share[i] else None,
            "amount": Decimal(int(self.amount[i])).scaleb(-exp), "currency": cur, "at": _py_time(self.at(i)),
        }
        if self.shipping[i]:
            raw["shipping"] = Decimal(int(self.shipping[i])).scaleb(-exp)
        if self.tax[i]:
            raw["tax"] = Decimal(int(self.tax[i])).scaleb(-exp)
        if raw["at"] is None:
            raise InvalidEvent("this order is computed per order and needs its time: add an 'at' column",
                               record=str(self.ids[i]), field="at")
        if raw["buyer"] is None:
            raise InvalidEvent("this order is computed per order and needs its buyer's name: a buyer code of -1 "
                               "(not in the graph) has none; give buyers by name", record=str(self.ids[i]),
                               field="buyer")
        ev = parse_event(raw)
        assert isinstance(ev, OrderEvent)
        return ev


_NAT = np.iinfo(np.int64).min
_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": -1_000}


def _frame_micros(src: _Source) -> Callable[[], NDArray[np.int64] | None]:
    """A memoised function giving the ``at`` column in µs (``_NAT`` where missing), or None when
    the column is not a zoned timestamp column."""
    memo: list[NDArray[np.int64] | None] = []

    def compute() -> NDArray[np.int64] | None:
        if "at" not in src.names or src.kind("at") != "t" or not _aware(src):
            return None
        nulls = src.nulls("at")
        if isinstance(src, _PandasSource):
            raw = src.frame["at"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
            ticks, unit = raw.astype(np.int64), "ns"
        else:
            assert isinstance(src, _ArrowSource)
            col = src.table.column("at")
            pa = pyarrow()
            unit = col.type.unit
            ticks = np.asarray(pa.compute.cast(col, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False),
                               dtype=np.int64)
        scale = _UNIT[unit]
        out = ticks // -scale if scale < 0 else ticks * scale
        out[nulls] = _NAT
        return np.asarray(out, dtype=np.int64)

    def get() -> NDArray[np.int64] | None:
        if not memo:
            memo.append(compute())
        return memo[0]

    return get


def _py_time(value: Any) -> Any:
    if value is None:
        return None
    to_py = getattr(value, "to_pydatetime", None)  # pandas Timestamp
    if to_py is not None:
        return to_py()
    return value


def is_dask_frame(obj: object) -> bool:
    """Whether ``obj`` is a dask DataFrame (checked without importing dask)."""
    return type(obj).__module__.split(".")[0] in ("dask", "dask_expr") and hasattr(obj, "map_partitions")


# ---------------------------------------------------------------------------- column sources
class _Source:
    """Uniform access to the columns of a pandas frame or an Arrow table."""

    n: int
    names: set[str]

    def kind(self, name: str) -> str:
        """'i' integer, 'f' float, 'd' decimal, 's' string-like, 't' time, 'b' bool, 'o' other."""
        raise NotImplementedError

    def nulls(self, name: str) -> NDArray[np.bool_]:
        raise NotImplementedError

    def ints(self, name: str) -> NDArray[np.int64]:
        raise NotImplementedError

    def objects(self, name: str) -> NDArray[np.object_]:
        raise NotImplementedError

    def value(self, name: str, i: int) -> Any:
        raise NotImplementedError

    def strings(self, name: str) -> Strings:
        """A string column (ids, buyers, shares, currencies); other types are refused."""
        if self.kind(name) != "s":
            raise InvalidEvent(f"column {name!r} must hold strings", field=name)
        return self._strings(name)

    def _strings(self, name: str) -> Strings:
        raise NotImplementedError


class _PandasSource(_Source):
    def __init__(self, frame: Any) -> None:
        self.frame = frame
        self.n = len(frame)
        self.names = {str(c) for c in frame.columns}

    def kind(self, name: str) -> str:
        import pandas as pd

        dtype = self.frame[name].dtype
        if pd.api.types.is_bool_dtype(dtype):
            return "b"
        if pd.api.types.is_integer_dtype(dtype):
            return "i"
        if pd.api.types.is_float_dtype(dtype):
            return "f"
        if pd.api.types.is_datetime64_any_dtype(dtype):
            return "t"
        if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
            return "s"
        if isinstance(dtype, pd.CategoricalDtype):
            return "s"
        if str(dtype).startswith("decimal"):
            return "d"
        return "o"

    def nulls(self, name: str) -> NDArray[np.bool_]:
        return np.asarray(self.frame[name].isna().to_numpy(), dtype=bool)

    def ints(self, name: str) -> NDArray[np.int64]:
        return np.asarray(self.frame[name].to_numpy(dtype=np.int64), dtype=np.int64)

    def objects(self, name: str) -> NDArray[np.object_]:
        col = self.frame[name]
        out = np.asarray(col.to_numpy(dtype=object), dtype=object)
        nulls = self.nulls(name)
        if nulls.any():
            if not out.flags.writeable:
                out = out.copy()
            out[nulls] = None
        return out

    def value(self, name: str, i: int) -> Any:
        v = self.frame[name].iloc[i]
        import pandas as pd

        return None if v is None or v is pd.NaT or (not isinstance(v, str) and pd.isna(v)) else v

    def _strings(self, name: str) -> Strings:
        import pandas as pd

        col = self.frame[name]
        if isinstance(col.dtype, pd.CategoricalDtype):  # codes and categories, nothing decoded
            return Strings.of_codes(col.cat.codes.to_numpy(), col.cat.categories)
        pa = pyarrow()
        if pa is not None and (isinstance(col.dtype, pd.ArrowDtype) or
                               (isinstance(col.dtype, pd.StringDtype) and col.dtype.storage == "pyarrow")):
            return Strings.of_arrow(pa.array(col))
        return Strings.of(self.objects(name))


class _ArrowSource(_Source):
    def __init__(self, table: Any) -> None:
        self.table = table
        self.n = table.num_rows
        self.names = set(table.column_names)

    def _col(self, name: str) -> Any:
        return self.table.column(name)

    def kind(self, name: str) -> str:
        pa = pyarrow()
        t = self._col(name).type
        if pa.types.is_dictionary(t):
            t = t.value_type
        if pa.types.is_boolean(t):
            return "b"
        if pa.types.is_integer(t):
            return "i"
        if pa.types.is_floating(t):
            return "f"
        if pa.types.is_decimal(t):
            return "d"
        if pa.types.is_timestamp(t) or pa.types.is_date(t):
            return "t"
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
            return "s"
        return "o"

    def nulls(self, name: str) -> NDArray[np.bool_]:
        return np.asarray(self._col(name).is_null().to_numpy(zero_copy_only=False), dtype=bool)

    def ints(self, name: str) -> NDArray[np.int64]:
        return np.asarray(self._col(name).to_numpy(zero_copy_only=False), dtype=np.int64)

    def objects(self, name: str) -> NDArray[np.object_]:
        col = self._col(name)
        pa = pyarrow()
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=object)

    def value(self, name: str, i: int) -> Any:
        return self._col(name)[i].as_py()

    def _strings(self, name: str) -> Strings:
        return Strings.of_arrow(self._col(name))


def is_frame(obj: object) -> bool:
    """Whether ``obj`` is a pandas/polars DataFrame or an Arrow table (checked without imports)."""
    return type(obj).__module__.split(".")[0] in ("pandas", "polars", "pyarrow")


def _source(obj: object) -> _Source | None:
    mod = type(obj).__module__.split(".")[0]
    if mod == "pandas":
        pd = sys.modules["pandas"]
        if isinstance(obj, pd.DataFrame):
            return _PandasSource(obj)
    if mod == "polars":
        pl = sys.modules["polars"]
        if isinstance(obj, pl.LazyFrame):
            obj = obj.collect()
        if isinstance(obj, pl.DataFrame):
            return _ArrowSource(obj.to_arrow())
    if mod == "pyarrow":
        pa = sys.modules["pyarrow"]
        if isinstance(obj, pa.RecordBatch):
            obj = pa.Table.from_batches([obj])
        if isinstance(obj, pa.Table):
            return _ArrowSource(obj)
    return None


# ---------------------------------------------------------------------------- money columns
def _minor_column(src: _Source, name: str, ids: Strings, currency: Strings,
                  exps: Callable[[], NDArray[np.int64]], *, required: bool) -> NDArray[np.int64] | None:
    """``<name>_minor`` (int) or ``<name>`` (major units) as int64 minor units; nulls are 0."""
    minor_name = f"{name}_minor"
    n = src.n
    if minor_name in src.names:
        col, kind = minor_name, src.kind(minor_name)
        nulls = src.nulls(col)
        if kind == "f":
            raise FloatRejected(f"column {col!r} holds floats; give minor units as integers", field=col)
        if kind != "i":
            raise InvalidEvent(f"column {col!r} must hold integers (minor units)", field=col)
        if nulls.any():
            if required:
                i = int(np.flatnonzero(nulls)[0])
                raise InvalidEvent(f"{col} is missing", record=str(ids[i]), field=col)
            out = np.zeros(n, dtype=np.int64)
            ok = ~nulls
            if ok.any():
                out[ok] = np.asarray(src.objects(col)[ok].astype(np.int64), dtype=np.int64)
            return out
        return src.ints(col)
    if name not in src.names:
        if required:
            raise InvalidEvent(f"orders need an {name!r} or {minor_name!r} column", field=name)
        return None
    kind = src.kind(name)
    if kind == "f":
        raise FloatRejected(f"column {name!r} holds floats; give amounts as decimal strings or Decimal to stay "
                            "exact", field=name)
    nulls = src.nulls(name)
    if required and nulls.any():
        i = int(np.flatnonzero(nulls)[0])
        raise InvalidEvent(f"{name} is missing", record=str(ids[i]), field=name)
    if kind == "i" and not nulls.any():  # whole major units
        major = src.ints(name)
        scale = np.power(10, exps(), dtype=np.int64)
        if np.any(np.abs(major) > MAX_MINOR // scale):
            i = int(np.flatnonzero(np.abs(major) > MAX_MINOR // scale)[0])
            raise InvalidEvent(f"{name} is too large", record=str(ids[i]), field=name)
        return np.asarray(major * scale, dtype=np.int64)
    values = src.objects(name)
    codes = currency.objects
    out = np.zeros(n, dtype=np.int64)
    for i in np.flatnonzero(~nulls).tolist():  # exact decimal parsing, one value at a time
        try:
            out[i] = parse_amount(values[i], codes[i])
        except CpsError as exc:
            raise InvalidEvent(exc.message, record=str(ids[i]), field=name) from None
    return out


def _currencies(raw: Strings, ids: Strings) -> tuple[Strings, Callable[[], NDArray[np.int64]]]:
    """Normalised currency codes and (lazily) the exponent of each row; an unknown code names the
    first order using it."""
    n = len(raw)
    distinct = raw.distinct()
    fix: dict[Any, str] = {}
    for code in distinct:
        norm = code.strip().upper() if isinstance(code, str) else None
        if norm not in CURRENCIES:
            i = raw.objects.tolist().index(code)
            raise InvalidEvent(f"unknown currency {code!r} (expected an ISO-4217 code such as 'CNY')",
                               record=str(ids[i]), field="currency")
        if norm != code:
            fix[code] = norm
    cur = raw
    if fix:
        cur = Strings.of([fix.get(c, c) for c in raw.objects.tolist()])

    def exps() -> NDArray[np.int64]:
        if len(distinct) == 1:
            return np.full(n, currency_exponent(fix.get(distinct[0], distinct[0])), dtype=np.int64)
        table = {c: CURRENCIES[c] for c in cur.distinct()}
        return np.fromiter((table[c] for c in cur.objects.tolist()), dtype=np.int64, count=n)

    return cur, exps


def _check_amounts(ids: Strings, amount: NDArray[np.int64], shipping: NDArray[np.int64],
                   tax: NDArray[np.int64]) -> None:
    for arr, name in ((amount, "amount"), (shipping, "shipping"), (tax, "tax")):
        bad = arr < 0
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InvalidEvent("amounts must not be negative", record=str(ids[i]), field=name)
    bad = shipping + tax > amount
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidEvent("shipping + tax exceed the amount paid", record=str(ids[i]), field="shipping")


def _frame_columns(src: _Source) -> OrderColumns:
    n = src.n
    for col in ("id", "buyer", "currency"):
        if col not in src.names:
            raise InvalidEvent(f"orders need a {col!r} column", field=col)
    ids = src.strings("id")
    id_nulls = ids.nulls()
    if id_nulls.any():
        raise InvalidEvent("order id is missing", field="id", line=int(np.flatnonzero(id_nulls)[0]) + 1)
    share_code = buyer_code = None
    if src.kind("buyer") == "i":  # codes in the graph's dictionary (ShareGraph.encode), -1: not in the graph
        buyer_code = _codes(src, "buyer", ids)
        buyer = Strings.of_codes(buyer_code, [])  # named from the graph when it is known (run)
    else:
        buyer = src.strings("buyer")
        b_nulls = buyer.nulls()
        if b_nulls.any():
            raise InvalidEvent("buyer is missing", record=str(ids[int(np.flatnonzero(b_nulls)[0])]), field="buyer")
    if "share" in src.names and src.kind("share") == "i":  # codes in the graph's dictionary, -1/null: none
        share_code = _codes(src, "share", ids)
        share, has_share = Strings.of_codes(share_code, []), share_code >= 0
    elif "share" in src.names and src.kind("share") != "s" and src.nulls("share").all():
        share, has_share = Strings.of(np.full(n, None, dtype=object)), np.zeros(n, dtype=bool)  # all missing
    elif "share" in src.names:
        share = src.strings("share")
        has_share = ~share.nulls()
    else:
        share, has_share = Strings.of(np.full(n, None, dtype=object)), np.zeros(n, dtype=bool)
    currency_raw = src.strings("currency")
    c_nulls = currency_raw.nulls()
    if c_nulls.any():
        raise InvalidEvent("currency is missing", record=str(ids[int(np.flatnonzero(c_nulls)[0])]),
                           field="currency")
    currency, exps = _currencies(currency_raw, ids)
    amount = _minor_column(src, "amount", ids, currency, exps, required=True)
    assert amount is not None
    zeros = np.zeros(n, dtype=np.int64)
    shipping = _minor_column(src, "shipping", ids, currency, exps, required=False)
    tax = _minor_column(src, "tax", ids, currency, exps, required=False)
    refunded = _minor_column(src, "refunded", ids, currency, exps, required=False)
    shipping = zeros if shipping is None else shipping
    tax = zeros if tax is None else tax
    _check_amounts(ids, amount, shipping, tax)
    if "at" in src.names:
        if src.kind("at") == "t" and not _aware(src):
            raise InvalidEvent("timestamps must carry a zone (the 'at' column is naive)", field="at")

        def at(i: int) -> Any:
            return src.value("at", i)
    else:
        def at(i: int) -> Any:
            return None
    cols = OrderColumns(ids, buyer, share, has_share, amount, shipping, tax, currency,
                        zeros.copy() if refunded is None else refunded, at, has_lines=np.zeros(n, dtype=bool),
                        all_micros=_frame_micros(src), share_code=share_code, buyer_code=buyer_code)
    if refunded is not None:
        _check_refunded(cols)
    return cols


def _codes(src: _Source, name: str, ids: Strings) -> NDArray[np.int64]:
    """An integer id column: codes in the graph's dictionary, nulls as -1; below -1 is refused."""
    nulls = src.nulls(name)
    if nulls.any():
        out = np.full(src.n, -1, dtype=np.int64)
        ok = ~nulls
        out[ok] = np.asarray(src.objects(name)[ok].astype(np.int64), dtype=np.int64)
    else:
        out = src.ints(name)
    bad = out < -1
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidEvent(f"{name} code {int(out[i])} is not a code (codes are >= 0, -1 for none)",
                           record=str(ids[i]), field=name)
    return out


def _aware(src: _Source) -> bool:
    if isinstance(src, _PandasSource):
        return getattr(src.frame["at"].dtype, "tz", None) is not None
    if isinstance(src, _ArrowSource):
        return getattr(src.table.column("at").type, "tz", None) is not None
    return True  # pragma: no cover


def _check_refunded(cols: OrderColumns) -> None:
    bad = (cols.refunded < 0) | (cols.refunded > cols.amount)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidEvent("refunded must be between 0 and the amount paid", record=str(cols.ids[i]),
                           field="refunded")


def _event_columns(events: Iterable[Event | Mapping[str, Any]]) -> OrderColumns:
    """Orders of an event history, sorted by (time, id) as ``compute_events`` reports them, with
    the refunds of the history applied."""
    evs = [parse_event(dict(e)) if isinstance(e, Mapping) else e for e in events]
    orders = orders_by_id(evs)
    refunded = refunds_by_order(evs, orders)
    ordered = sorted(orders.values(), key=lambda o: (o.at, o.id))
    n = len(ordered)
    ids = np.empty(n, dtype=object)
    buyer = np.empty(n, dtype=object)
    share = np.empty(n, dtype=object)
    currency = np.empty(n, dtype=object)
    amount = np.empty(n, dtype=np.int64)
    shipping = np.empty(n, dtype=np.int64)
    tax = np.empty(n, dtype=np.int64)
    refund = np.empty(n, dtype=np.int64)
    has_lines = np.empty(n, dtype=bool)
    items = np.ones(n, dtype=np.int64)
    for i, o in enumerate(ordered):
        ids[i], buyer[i], share[i], currency[i] = o.id, o.buyer, o.share, o.currency
        amount[i], shipping[i], tax[i] = o.amount_minor, o.shipping_minor, o.tax_minor
        refund[i] = refunded.get(o.id, 0)
        has_lines[i] = bool(o.lines)
        if o.lines:
            items[i] = sum(line.quantity for line in o.lines)
    has_share = np.fromiter((s is not None for s in share.tolist()), dtype=bool, count=n)
    return OrderColumns(Strings.of(ids), Strings.of(buyer), Strings.of(share), has_share, amount, shipping, tax,
                        Strings.of(currency), refund, lambda i: ordered[i].at, events=ordered, has_lines=has_lines,
                        items_col=items)


def order_columns(orders: object, refunds: object = None) -> OrderColumns:
    """Normalise ``orders`` (DataFrame, Arrow table or events) and apply ``refunds``.

    ``refunds`` may be a mapping ``order id -> refunded minor units``, refund events, or a frame
    with ``order`` and ``amount_minor`` (or ``amount``) columns.
    """
    src = _source(orders)
    if src is not None:
        cols = _frame_columns(src)
    elif isinstance(orders, (str, bytes)) or not isinstance(orders, Iterable):
        raise TypeError("orders must be a pandas/polars DataFrame, an Arrow table or an iterable of events, "
                        f"not {type(orders).__name__}")
    else:
        cols = _event_columns(orders)
    if refunds is not None:
        _apply_refunds(cols, refunds)
    return cols


def _apply_refunds(cols: OrderColumns, refunds: object) -> None:
    pos = {oid: i for i, oid in enumerate(cols.ids.tolist())}
    if len(pos) != len(cols):
        seen: set[Any] = set()
        dup = next(o for o in cols.ids.tolist() if o in seen or seen.add(o))  # type: ignore[func-returns-value]
        raise DuplicateEvent("order id used twice; refunds cannot be matched", record=str(dup), field="id")
    extra = np.zeros(len(cols), dtype=np.int64)
    src = _source(refunds)
    if src is not None:
        if "order" not in src.names:
            raise InvalidEvent("refunds need an 'order' column", field="order")
        rid = src.strings("order")
        for o in rid.tolist():
            if o not in pos:
                raise UnknownReference(f"refund for unknown order {o!r}", record=str(o), field="order")
        codes = cols.currency.objects
        per = Strings.of([codes[pos[o]] for o in rid.tolist()])
        exps = np.asarray([CURRENCIES[c] for c in per.tolist()], dtype=np.int64)
        amounts = _minor_column(src, "amount", rid, per, lambda: exps, required=True)
        assert amounts is not None
        if (amounts <= 0).any():
            i = int(np.flatnonzero(amounts <= 0)[0])
            raise InvalidEvent("a refund amount must be positive", record=str(rid[i]), field="amount")
        np.add.at(extra, np.asarray([pos[o] for o in rid.tolist()], dtype=np.int64), amounts)
    elif isinstance(refunds, Mapping):
        for oid, minor in refunds.items():
            row = pos.get(oid)
            if row is None:
                raise UnknownReference(f"refund for unknown order {oid!r}", record=str(oid), field="order")
            if isinstance(minor, float) or not isinstance(minor, (int, np.integer)) or isinstance(minor, bool):
                raise FloatRejected("refunded amounts are integer minor units", record=str(oid), field="amount") \
                    if isinstance(minor, float) else InvalidEvent("refunded amounts are integer minor units",
                                                                 record=str(oid), field="amount")
            extra[row] += int(minor)
    elif isinstance(refunds, Iterable):
        for ev in refunds:
            if isinstance(ev, Mapping):
                ev = parse_event(dict(ev))
            if not isinstance(ev, RefundEvent):
                continue
            row = pos.get(ev.order)
            if row is None:
                raise UnknownReference(f"refund for unknown order {ev.order!r}", record=ev.id, field="order")
            amt = ev.amount_minor(str(cols.currency[row]))
            extra[row] += int(cols.amount[row]) if amt is None else amt
    else:
        raise TypeError(f"refunds must be a mapping, refund events or a frame, not {type(refunds).__name__}")
    cols.refunded = cols.refunded + extra
    _check_refunded(cols)
