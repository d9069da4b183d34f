"""Vectorised commissions: millions of orders at once, as a pandas DataFrame — or on a Dask cluster.

:func:`compute_batch` is the batch twin of :func:`cps_engine.engine.compute_events`: the same lines,
to the unit, for every policy, computed with numpy over the compact share index.  Every built-in
policy compiles to one plan (:mod:`cps_engine.policies.plan`) that the kernels execute
(:mod:`cps_engine.batch._plan`): pools (linear, position-based, time-decay), designated
distributors, payee > product > category > default rates, fixed amounts per order and per item,
caps, self-purchase and the compliant profiles, over share chains, binding chains (every binding
mode, when the orders' times are known: events, or a zoned timestamp ``at`` column) and orders
with neither.  What stays per order: share paths where a person repeats, orders whose time is
needed but unknown, rounding up past the base, and plugin policies without a plan (with a
:class:`~cps_engine.batch._kernels.BatchFallbackWarning` naming the policy and counting the orders).
``DataFrame.attrs["cps_engine"]`` says how many orders took each path.

>>> from cps_engine.models import load_events
>>> from cps_engine.policies import load_policy
>>> evs = load_events([
...   '{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00+08:00"}',
...   '{"type":"share","id":"s2","sharer":"bob","parent":"s1","at":"2026-03-01T11:00:00+08:00"}',
...   '{"type":"order","id":"o1","buyer":"cat","share":"s2","amount":"199.99","currency":"CNY",'
...   '"shipping":"10.00","at":"2026-03-01T12:00:00+08:00"}'])
>>> lines = compute_batch(evs, load_policy({"kind": "capped_multilevel", "rates": ["10%", "5%"]}))
>>> lines[["order", "payee", "level", "amount_minor", "currency", "rate"]].values.tolist()
[['o1', 'bob', 1, 1899, 'CNY', '0.1'], ['o1', 'amy', 2, 949, 'CNY', '0.05']]

Orders may also be a pandas or polars DataFrame or an Arrow table (see :mod:`cps_engine.batch._orders`
for the columns), with the graph built once — for millions of shares use
:meth:`ShareGraph.from_columns <cps_engine.graph.ShareGraph.from_columns>`:

>>> import pandas as pd
>>> from datetime import datetime, timezone
>>> g = ShareGraph.from_columns(["s1", "s2"], ["amy", "bob"], [None, "s1"])
>>> orders = pd.DataFrame({"id": ["o1", "o2"], "buyer": ["cat", "dan"], "share": ["s2", None],
...                        "amount_minor": [10000, 5000], "currency": ["CNY", "CNY"]})
>>> compute_batch(orders, load_policy({"kind": "first_sharer", "rate": "10%"}), graph=g)[
...     ["order", "payee", "level", "amount_minor"]].values.tolist()
[['o1', 'amy', 2, 1000]]

Scale-out
---------
A ``dask.dataframe`` of orders gives a lazy dask DataFrame of lines: the graph and the policy are
shipped to the workers once (scattered to every worker when a ``distributed`` client is active),
each partition is computed by the same single-process code, and ``.compute()`` returns exactly the
rows of the single-process result (the index restarts per partition; ``reset_index(drop=True)``
gives the single-process index).  To run on a real cluster, connect a client before computing::

    from distributed import Client
    import dask.dataframe as dd
    client = Client("tcp://scheduler.example:8786")     # or a dask-jobqueue / Kubernetes cluster
    orders = dd.read_parquet("s3://bucket/orders/")      # columns as for a pandas frame
    lines = compute_batch(orders, policy, graph=graph)    # lazy; graph broadcast once
    lines.to_parquet("s3://bucket/commissions/")         # or lines.compute() when it fits

Every worker needs the same ``cps_engine`` version (``pip install cps-engine[dask]`` in the worker
image) and enough memory for the share graph (~40 bytes per share plus ids).  Refunds can be given
as a ``refunded_minor`` column of the orders or as a mapping broadcast with the graph.  Dask is
an optional extra: nothing here imports it unless a dask frame is passed.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast, overload

import numpy as np

from cps_engine.batch._kernels import GraphArrays, Result, graph_arrays, run
from cps_engine.batch._orders import OrderColumns, is_dask_frame, is_frame, order_columns
from cps_engine.batch._strings import Strings, pyarrow
from cps_engine.graph import BindingConfig, BindingMode, ShareGraph
from cps_engine.models import Event, parse_event
from cps_engine.policies import PolicyConfig, load_policy

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd
    from numpy.typing import NDArray

__all__ = ["LINE_COLUMNS", "compute_batch", "empty_lines", "graph_arrays", "orders_frame"]

#: Columns of the lines frame, in order.
LINE_COLUMNS: tuple[str, ...] = ("order", "payee", "level", "amount_minor", "currency", "rate", "base_minor")

PolicyLike = PolicyConfig | Mapping[str, Any] | str | Path


def empty_lines() -> pd.DataFrame:
    """A lines frame with no rows and the right dtypes (``meta`` for Dask).

    >>> list(empty_lines().columns) == list(LINE_COLUMNS)
    True
    """
    import pandas as pd

    text = Strings.of([]).series()
    i64 = np.zeros(0, dtype=np.int64)
    return pd.DataFrame({"order": text, "payee": text.copy(), "level": i64, "amount_minor": i64,
                         "currency": text.copy(), "rate": text.copy(), "base_minor": i64})


def _categorical(codes: NDArray[np.int64], dtype: Any) -> pd.Series[Any]:
    import pandas as pd

    return pd.Series(pd.Categorical.from_codes(codes, dtype=dtype, validate=False), copy=False)


def _payee_dtype(ga: GraphArrays) -> tuple[Any, NDArray[np.int64]] | None:
    """The categorical dtype of payees: every person of the graph, sorted (so sorting or grouping by
    payee orders names as text does), and each person id's rank in it; built once per graph version."""
    hit = ga.arrow_sets.get("payee_dtype")
    if hit is None:
        import pandas as pd

        pa = pyarrow()
        people = ga.people_interned.arrow() if pa is not None else None
        if people is None:
            return None
        order = np.asarray(pa.compute.sort_indices(people).to_numpy(zero_copy_only=False), dtype=np.int64)
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order), dtype=np.int64)
        text = pd.array(pa.compute.take(people, pa.array(order)), dtype=pd.StringDtype("pyarrow", na_value=np.nan))
        hit = ga.arrow_sets["payee_dtype"] = (pd.CategoricalDtype(pd.Index(text, copy=False)), rank)
    return cast("tuple[Any, NDArray[np.int64]]", hit)


def _order_dtype(dictionary: Any) -> Any:
    """A categorical dtype over the dictionary of a categorical ``id`` column (None if it has repeats)."""
    import pandas as pd

    pa = pyarrow()
    if isinstance(dictionary, pd.Index):
        cats = dictionary
    elif pa is not None and isinstance(dictionary, pa.Array):
        cats = pd.Index(pd.array(dictionary, dtype=pd.StringDtype("pyarrow", na_value=np.nan)), copy=False)
    else:
        cats = pd.Index(list(dictionary), dtype=object)
    try:
        return pd.CategoricalDtype(cats)
    except ValueError:  # repeated categories (an Arrow dictionary may have them)
        return None


def _frame(cols: OrderColumns, res: Result, policy: PolicyConfig, graph: ShareGraph | None = None, *,
           categorical: bool = True) -> pd.DataFrame:
    """The lines frame; ``order`` and ``payee`` categorical when ``categorical`` and a ``graph`` are
    given (and the ids were categorical, for ``order``), else text."""
    import pandas as pd

    categorical = categorical and graph is not None

    order: Any = None
    enc = cols.ids.dictionary
    if categorical and enc is not None:  # a categorical id column: categorical out, same categories
        dtype = _order_dtype(enc[1])
        if dtype is not None:
            order = _categorical(enc[0][res.pos], dtype)
    if order is None:
        order = cols.ids.take(res.pos).series()
    payee: Any = None
    if categorical and res.payee_code is not None and graph is not None:
        pd_dtype = _payee_dtype(graph_arrays(graph))
        if pd_dtype is not None:
            payee = _categorical(pd_dtype[1][res.payee_code], pd_dtype[0])
    if payee is None:
        payee = res.payee.series()
    data = {
        "order": order,
        "payee": payee,
        "level": res.level,
        "amount_minor": res.amount,
        "currency": cols.currency.take(res.pos).series(),
        "rate": res.rate.series(),
        "base_minor": res.net[res.pos],
    }
    if res.rule is not None and res.path is not None:
        data["rule"] = res.rule.series()
        data["path"] = res.path.series()
    frame = pd.DataFrame(data, copy=False)
    frame.attrs["cps_engine"] = {"policy": policy.label, "config_hash": policy.config_hash,
                                 "rounding": policy.rounding.value, "orders": len(cols),
                                 "vectorised": res.vectorised, "per_order": res.per_order}
    return frame


_DEPRECATED_ORDER = "compute_batch(orders, graph, policy) is deprecated: use compute_batch(orders, policy, graph=graph)"


@overload
def compute_batch(orders: dd.DataFrame, policy: PolicyLike, *,  # type: ignore[overload-overlap]
                  graph: ShareGraph | None = None, refunds: object = None,
                  binding: BindingConfig | BindingMode | str = ..., provenance: bool = ...) -> dd.DataFrame: ...


@overload
def compute_batch(orders: object, policy: PolicyLike, *, graph: ShareGraph | None = None,
                  refunds: object = None, binding: BindingConfig | BindingMode | str = ...,
                  provenance: bool = ...) -> pd.DataFrame: ...


# Deprecated (one release): the old argument order ``(orders, graph, policy)``.
@overload
def compute_batch(orders: dd.DataFrame, graph: ShareGraph | None, /,  # type: ignore[overload-overlap]
                  policy: PolicyLike, *, refunds: object = None,
                  binding: BindingConfig | BindingMode | str = ..., provenance: bool = ...) -> dd.DataFrame: ...


@overload
def compute_batch(orders: object, graph: ShareGraph | None, /, policy: PolicyLike, *,
                  refunds: object = None, binding: BindingConfig | BindingMode | str = ...,
                  provenance: bool = ...) -> pd.DataFrame: ...


def compute_batch(orders: object, *args: Any, policy: PolicyLike | None = None, graph: ShareGraph | None = None,
                  refunds: object = None,
                  binding: BindingConfig | BindingMode | str = BindingMode.FIRST_WINS,
                  provenance: bool = False) -> Any:
    """Commission lines of many orders under ``policy``, one row per line.

    ``orders``: a pandas or polars DataFrame, an Arrow table, or an iterable of events (then the
    history's refunds apply and orders come out sorted by time and id, like ``compute_events``);
    a dask DataFrame gives a lazy dask DataFrame.  ``policy``: a policy config, mapping or file.
    ``graph`` (keyword): the :class:`ShareGraph` (built from the events, with ``binding``, when
    None).  ``refunds``: mapping ``order id -> refunded minor units``, refund events, or a frame
    with ``order`` and ``amount_minor`` columns.

    Ids may be text, categoricals or the graph's integer codes (:meth:`ShareGraph.encode
    <cps_engine.graph.ShareGraph.encode>`; see :mod:`cps_engine.batch._orders`).  ``payee`` is a
    pandas categorical whose categories are every person of the graph, sorted (so sorting and
    grouping by payee order names as text does; ``observed=True`` or ``remove_unused_categories()``
    drops the people without lines); ``order`` is categorical when the ``id`` column was, else text.
    Without pyarrow both are plain object columns.

    Columns: ``order``, ``payee``, ``level``, ``amount_minor`` (int64), ``currency``, ``rate``
    (exact text, e.g. ``'0.1'`` or ``'1/3'``) and ``base_minor`` (the net commissionable base the
    line was computed on).  Rows follow the orders (frame order, or time order for events), then
    level.  Lines of zero are left out, as in :class:`~cps_engine.engine.Settlement`.
    ``provenance=True`` adds ``rule`` and ``path`` (the share/bind/order ids read, nearest first,
    joined by ``/``), as :meth:`CommissionLine.as_row <cps_engine.engine.CommissionLine.as_row>` gives them.

    The old argument order ``compute_batch(orders, graph, policy)`` still works for one release,
    with a :class:`DeprecationWarning`.

    >>> from cps_engine.models import load_events
    >>> evs = load_events(['{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00Z"}',
    ...     '{"type":"order","id":"o1","buyer":"bo","share":"s1","amount":"10.00","currency":"CNY",'
    ...     '"at":"2026-03-01T11:00:00Z"}',
    ...     '{"type":"refund","id":"r1","order":"o1","amount":"4.00","at":"2026-03-02T11:00:00Z"}'])
    >>> compute_batch(evs, {"kind": "last_sharer", "rate": "10%"})["amount_minor"].tolist()
    [60]
    """
    chosen, graph, old = _arguments(args, policy, graph)
    if old:
        warnings.warn(_DEPRECATED_ORDER, DeprecationWarning, stacklevel=2)
    pol = load_policy(chosen)
    if is_dask_frame(orders):
        if graph is None:
            raise TypeError("a dask DataFrame of orders needs the ShareGraph")
        from cps_engine.batch._dask import compute_dask

        return compute_dask(cast("dd.DataFrame", orders), graph, pol, refunds=refunds)
    if graph is None:
        if is_frame(orders) or not isinstance(orders, Iterable) or isinstance(orders, (str, bytes)):
            raise TypeError("orders given as a frame or table need the ShareGraph (graph=None only works "
                            "with an iterable of events)")
        events = [parse_event(dict(e)) if isinstance(e, Mapping) else e for e in orders]
        graph = ShareGraph.from_events(events, binding=binding)
        orders = events
    cols = order_columns(orders, refunds)
    return _frame(cols, run(cols, graph, pol, provenance=provenance), pol, graph)


def _arguments(args: tuple[Any, ...], policy: PolicyLike | None, graph: ShareGraph | None
               ) -> tuple[PolicyLike, ShareGraph | None, bool]:
    """The policy and graph of a :func:`compute_batch` call, and whether it used the deprecated
    order ``(orders, graph, policy)`` (a third positional argument, or a second one with ``policy=``)."""
    if len(args) > 2:
        raise TypeError(f"compute_batch takes at most 3 positional arguments ({len(args) + 1} given)")
    old = len(args) == 2 or (len(args) == 1 and policy is not None)
    if old:
        if graph is not None:
            raise TypeError("compute_batch got the graph twice (positionally and as graph=)")
        graph = args[0]
        chosen = args[1] if len(args) == 2 else policy
    else:
        chosen = args[0] if args else policy
    if graph is not None and not isinstance(graph, ShareGraph):
        raise TypeError(f"graph must be a ShareGraph or None, not {type(graph).__name__}")
    if chosen is None:
        raise TypeError("compute_batch needs a policy: compute_batch(orders, policy, graph=graph)")
    if isinstance(chosen, ShareGraph):
        raise TypeError("the policy comes second and the graph is the keyword graph=: "
                        "compute_batch(orders, policy, graph=graph)")
    return cast("PolicyLike", chosen), graph, old

def orders_frame(events: Iterable[Event]) -> pd.DataFrame:
    """The orders of an event history as a DataFrame that :func:`compute_batch` reads: ``id``,
    ``buyer``, ``share``, ``amount_minor``, ``currency``, ``at``, ``shipping_minor``, ``tax_minor``
    and ``refunded_minor`` (refunds of the history summed), sorted by time and id.  Item lines are
    not carried over.

    >>> from cps_engine.models import load_events
    >>> evs = load_events(['{"type":"order","id":"o1","buyer":"bo","amount":"10.00","currency":"CNY",'
    ...                    '"at":"2026-03-01T11:00:00Z"}'])
    >>> orders_frame(evs)[["id", "amount_minor", "refunded_minor"]].values.tolist()
    [['o1', 1000, 0]]
    """
    import pandas as pd

    cols = order_columns(list(events))
    assert cols.events is not None
    at = pd.Series([o.at for o in cols.events], dtype=object)
    frame = pd.DataFrame({
        "id": cols.ids.series(), "buyer": cols.buyer.series(), "share": cols.share.series(),
        "amount_minor": cols.amount, "currency": cols.currency.series(),
        "at": pd.to_datetime(at, utc=True) if len(at) else pd.Series([], dtype="datetime64[ns, UTC]"),
        "shipping_minor": cols.shipping, "tax_minor": cols.tax, "refunded_minor": cols.refunded,
    })
    return frame
