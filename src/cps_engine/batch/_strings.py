"""String columns for the batch engine: Arrow arrays when pyarrow is installed, numpy objects otherwise.

Ids (orders, people, shares) are the one thing numpy cannot vectorise well; Arrow can (hash lookups,
takes, zero-copy hand-over to pandas' ``str`` dtype).  :class:`Strings` hides which one is used, so
pyarrow stays optional: without it, object arrays and dicts give the same results, more slowly.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from numpy.typing import NDArray

__all__ = ["Strings", "pyarrow"]


@cache
def pyarrow() -> Any:
    """The pyarrow module, or None when it is not installed."""
    try:  # imported by name: pyarrow ships no type information
        pa = importlib.import_module("pyarrow")
        importlib.import_module("pyarrow.compute")  # makes ``pa.compute`` available
    except ImportError:  # pragma: no cover - exercised without pyarrow
        return None
    return pa


def _objects(values: Sequence[Any] | NDArray[Any]) -> NDArray[np.object_]:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


class Strings:
    """A column of strings (``None`` where missing).  Construct with :meth:`of`, :meth:`of_arrow` or
    :meth:`of_codes` (dictionary-encoded: codes into a dictionary, decoded only when read as text)."""

    __slots__ = ("_arrow", "_codes", "_dictionary", "_obj")

    def __init__(self, obj: NDArray[np.object_] | None = None, arrow: Any = None) -> None:
        self._obj = obj
        self._arrow = arrow
        self._codes: NDArray[np.int64] | None = None
        self._dictionary: Any = None

    @classmethod
    def of_codes(cls, codes: NDArray[np.integer[Any]], dictionary: Any) -> Strings:
        """Dictionary-encoded: ``codes`` (-1: missing) into ``dictionary`` (an Arrow string array, or
        a sequence of str).  Lookups can resolve the dictionary alone (:attr:`dictionary`); the text
        of every row is only built when read."""
        out = cls()
        out._codes = np.asarray(codes, dtype=np.int64)
        out._dictionary = dictionary
        return out

    @property
    def dictionary(self) -> tuple[NDArray[np.int64], Any] | None:
        """``(codes, dictionary)`` when the column is dictionary-encoded, else None."""
        if self._codes is None:
            return None
        return self._codes, self._dictionary

    def _force(self) -> None:
        """Decode a dictionary-encoded column (once)."""
        if self._obj is not None or self._arrow is not None or self._codes is None:
            return
        codes, dictionary = self._codes, self._dictionary
        missing = codes < 0
        pa = pyarrow()
        if pa is not None and isinstance(dictionary, (pa.Array, pa.ChunkedArray)):
            idx = pa.array(np.where(missing, 0, codes), mask=missing if missing.any() else None)
            arr = pa.compute.take(dictionary, idx)
            self._arrow = arr if arr.type == pa.large_string() else arr.cast(pa.large_string())
            return
        values = np.asarray(dictionary.to_pylist() if hasattr(dictionary, "to_pylist") else list(dictionary),
                            dtype=object)
        out = values[np.where(missing, 0, codes)] if len(values) else np.full(len(codes), None, dtype=object)
        out[missing] = None
        self._obj = out

    @classmethod
    def of(cls, values: Sequence[Any] | NDArray[Any]) -> Strings:
        """From Python values (str or None)."""
        return cls(obj=values if isinstance(values, np.ndarray) and values.dtype == object else _objects(values))

    @classmethod
    def of_arrow(cls, array: Any) -> Strings:
        """From an Arrow (chunked) array of strings."""
        pa = pyarrow()
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
        if pa.types.is_dictionary(array.type):
            codes = array.indices.fill_null(-1).to_numpy(zero_copy_only=False)
            return cls.of_codes(codes, array.dictionary)
        if array.type != pa.large_string():
            array = array.cast(pa.large_string())
        return cls(arrow=array)

    def __len__(self) -> int:
        if self._codes is not None:
            return len(self._codes)
        return len(self._arrow) if self._arrow is not None else len(self._obj)  # type: ignore[arg-type]

    @property
    def objects(self) -> NDArray[np.object_]:
        """The values as a numpy object array (built once)."""
        self._force()
        if self._obj is None:
            obj = np.asarray(self._arrow.to_numpy(zero_copy_only=False), dtype=object)
            self._obj = obj
        return self._obj

    @property
    def arrow(self) -> Any:
        """The values as an Arrow ``large_string`` array, or None (no pyarrow, or values that are
        not all strings)."""
        self._force()
        if self._arrow is None and self._obj is not None:
            pa = pyarrow()
            if pa is None:
                return None
            try:
                self._arrow = pa.array(self._obj, type=pa.large_string(), from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
                self._obj = self._obj  # keep objects; lookups fall back to dicts
                return None
        return self._arrow

    def __getitem__(self, i: int) -> Any:
        self._force()
        if self._obj is not None:
            return self._obj[i]
        return self._arrow[i].as_py()

    def tolist(self) -> list[Any]:
        self._force()
        if self._obj is not None:
            return list(self._obj.tolist())
        return list(self._arrow.to_pylist())

    def take(self, idx: NDArray[np.int64]) -> Strings:
        """The values at positions ``idx`` (Arrow when pyarrow is installed; codes stay codes)."""
        if self._codes is not None and self._obj is None and self._arrow is None:
            return Strings.of_codes(self._codes[idx], self._dictionary)
        self._force()
        arr = self.arrow
        if arr is None:
            return Strings(obj=self.objects[idx])
        if not len(idx):
            return Strings(arrow=arr.slice(0, 0))
        pa = pyarrow()
        if len(arr) <= 256 and arr.null_count == 0:  # a small table (rates, currencies): decode codes
            codes = pa.array(np.asarray(idx, dtype=np.int32))
            return Strings(arrow=pa.DictionaryArray.from_arrays(codes, arr).dictionary_decode())
        return Strings(arrow=pa.compute.take(arr, pa.array(idx), boundscheck=False))

    def nulls(self) -> NDArray[np.bool_]:
        if self._codes is not None:
            return np.asarray(self._codes < 0)
        self._force()
        if self._arrow is not None:
            if self._arrow.null_count == 0:
                return np.zeros(len(self._arrow), dtype=bool)
            return np.asarray(self._arrow.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        return np.fromiter((v is None for v in self.objects.tolist()), dtype=bool, count=len(self.objects))

    def distinct(self) -> list[Any]:
        """The distinct values, in order of first appearance."""
        self._force()
        if self._arrow is not None:
            return list(pyarrow().compute.unique(self._arrow).to_pylist())
        return list(dict.fromkeys(self.objects.tolist()))

    def series(self) -> pd.Series[Any]:
        """A pandas Series: the ``str`` dtype (Arrow storage) when possible, else objects."""
        self._force()
        import pandas as pd

        arr = self.arrow
        if arr is not None:
            return pd.Series(arr, dtype=pd.StringDtype("pyarrow", na_value=np.nan), copy=False)
        return pd.Series(self.objects, dtype=object, copy=False)

    @staticmethod
    def concat(parts: Sequence[Strings]) -> Strings:
        """One column of ``parts`` end to end."""
        if len(parts) == 1:
            return parts[0]
        for p in parts:
            p._force()
        arrows = [p.arrow for p in parts]
        if all(a is not None for a in arrows) and arrows:
            return Strings(arrow=pyarrow().concat_arrays(arrows))
        return Strings(obj=np.concatenate([p.objects for p in parts]) if parts else _objects([]))

    def replace(self, mask: NDArray[np.bool_], other: Strings) -> Strings:
        """These values, with ``other``'s (same length) where ``mask`` is true."""
        self._force()
        other._force()
        if not mask.any():
            return self
        a, b = self.arrow, other.arrow
        if a is not None and b is not None:
            return Strings(arrow=pyarrow().compute.if_else(mask, b, a))
        out = self.objects.copy()
        out[mask] = other.objects[mask]
        return Strings(obj=out)
