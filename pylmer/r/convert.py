"""Vectorised conversion of pandas / numpy data to R vectors and back.

Only :mod:`pylmer.r.session` imports this module (after R has started).  Every column crosses
in one block copy (``from_memoryview``), never element by element: floats and integers
as they are, booleans as logicals, categoricals and strings as factors with the same
level order, datetimes as ``POSIXct``.  Missing values (``NaN``, ``None``, ``pd.NA``,
``NaT``) become R's ``NA`` of the column's type.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
from rpy2 import rinterface as ri
from rpy2.rinterface_lib import openrlib

from ..errors import DataError

NA_INTEGER = np.iinfo(np.int32).min
#: R's NA_real_ is a NaN with payload 1954; plain NaN is R's NaN, not NA.
NA_REAL = np.array([0x7FF00000000007A2], dtype=np.uint64).view(np.float64)[0]
_INT32_MAX = np.iinfo(np.int32).max
_EXACT_DOUBLE = 2**53


# --------------------------------------------------------------------------- to R


def _set_class(vec: ri.Sexp, classes: list[str]) -> None:
    # Not ``do_slot_assign``: R_do_slot_assign installs the attribute raw, without
    # setting the object bit, so S3 dispatch (nrow, print, as.character...) would fail.
    vec.rclass = ri.StrSexpVector(classes)


def _real(values: np.ndarray, na: np.ndarray | None = None) -> ri.FloatSexpVector:
    arr = np.array(values, dtype=np.float64, copy=True)
    missing = np.isnan(arr) if na is None else (na | np.isnan(arr))
    arr[missing] = NA_REAL
    return ri.FloatSexpVector.from_memoryview(memoryview(arr))


def _int32(values: np.ndarray, na: np.ndarray | None = None) -> np.ndarray:
    arr = np.ascontiguousarray(values, dtype=np.int32)
    if na is not None and na.any():
        arr = arr.copy()
        arr[na] = NA_INTEGER
    return arr


def text(values: list[str], what: str) -> ri.StrSexpVector:
    """Strings as an R character vector, refusing what R would silently alter.

    R's strings end at a NUL character (``"a\\x00b"`` would arrive as ``"a"``, merging
    levels) and must be valid UTF-8 (a lone surrogate cannot be encoded).
    """
    for v in values:
        if "\x00" in v:
            raise DataError(f"{what} holds text with a NUL character ({v!r}), which R cannot store")
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"{what} holds text that is not valid Unicode ({v!r})") from None
    return ri.StrSexpVector(values)


def _factor(
    codes: np.ndarray, levels: pd.Index, ordered: bool = False, name: str = "?"
) -> ri.IntSexpVector:
    labels = [str(v) for v in levels]
    if len(set(labels)) < len(labels):
        same = sorted(v for v, n in Counter(labels).items() if n > 1)
        raise DataError(
            f"column {name!r} has categories that are equal as text "
            f"({', '.join(map(repr, same))}); R factor levels are strings: make the "
            "categories distinct strings"
        )
    arr = np.ascontiguousarray(codes, dtype=np.int32) + 1
    arr[arr == 0] = NA_INTEGER
    vec = ri.IntSexpVector.from_memoryview(memoryview(arr))
    vec.do_slot_assign("levels", text(labels, f"column {name!r}"))
    _set_class(vec, ["ordered", "factor"] if ordered else ["factor"])
    return vec


def _integer_column(values: np.ndarray, na: np.ndarray | None, name: str) -> ri.Sexp:
    """Integers within R's int32 range stay integers; others become exact doubles."""
    present = values if na is None else values[~na]
    if present.size == 0 or (present.min() > NA_INTEGER and present.max() <= _INT32_MAX):
        arr = _int32(values if na is None else np.where(na, 0, values), na)
        return ri.IntSexpVector.from_memoryview(memoryview(arr))
    # compare as integers: converted to float, 2**53 + 1 would round to 2**53 and pass
    if present.max() > _EXACT_DOUBLE or present.min() < -_EXACT_DOUBLE:
        raise DataError(
            f"column {name!r} holds integers beyond 2**53 that R can store neither as integer "
            "nor exactly as double; convert it (e.g. to float or to a string id) first"
        )
    return _real(values.astype(np.float64), na)


def _datetime(series: pd.Series) -> ri.FloatSexpVector:
    tz = series.dt.tz
    values = series.dt.tz_convert("UTC").dt.tz_localize(None) if tz is not None else series
    # keep the column's own unit (pandas 3 defaults to microseconds): no overflow, no copy
    stamps = values.to_numpy()
    unit, count = np.datetime_data(stamps.dtype)
    ticks = stamps.view(np.int64)
    na = ticks == np.iinfo(np.int64).min
    per_second = np.timedelta64(1, "s") / np.timedelta64(count, unit)
    vec = _real(ticks / per_second, na)
    _set_class(vec, ["POSIXct", "POSIXt"])
    vec.do_slot_assign("tzone", ri.StrSexpVector([str(tz) if tz is not None else ""]))
    return vec


def column_to_r(series: pd.Series, name: str | None = None) -> ri.Sexp:
    """Convert one pandas column (or 1-d array) to an R vector.

    Parameters
    ----------
    series : pandas.Series or array-like
        The column.
    name : str, optional
        Name used in error messages (defaults to the series name).

    Returns
    -------
    rpy2.rinterface.Sexp
        An R vector: double, integer, logical, factor or POSIXct.
    """
    if not isinstance(series, pd.Series):
        series = pd.Series(np.asarray(series) if not isinstance(series, pd.Index) else series)
    name = str(series.name) if name is None else name
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return _factor(series.cat.codes.to_numpy(), dtype.categories, bool(dtype.ordered), name)
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        return _datetime(series)
    if pd.api.types.is_bool_dtype(dtype):
        na = series.isna().to_numpy() if isinstance(dtype, pd.BooleanDtype) else None
        values = series.to_numpy(dtype=bool, na_value=False)
        return ri.BoolSexpVector.from_memoryview(memoryview(_int32(values, na)))
    if pd.api.types.is_integer_dtype(dtype):
        if isinstance(dtype, pd.api.extensions.ExtensionDtype):
            na = series.isna().to_numpy()
            return _integer_column(series.to_numpy(dtype=np.int64, na_value=0), na, name)
        return _integer_column(series.to_numpy(), None, name)
    if pd.api.types.is_float_dtype(dtype):
        return _real(series.to_numpy(dtype=np.float64, na_value=np.nan))
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        return _object_column(series, name)
    raise DataError(
        f"column {name!r} has dtype {dtype} which pylmer cannot pass to R; "
        "use numbers, booleans, strings, categoricals or datetimes"
    )


def _object_column(series: pd.Series, name: str) -> ri.Sexp:
    kind = pd.api.types.infer_dtype(series, skipna=True)
    if kind in ("string", "empty"):
        codes, levels = pd.factorize(series, sort=True, use_na_sentinel=True)
        return _factor(codes, levels, name=name)
    if kind == "boolean":
        return column_to_r(series.astype("boolean"), name)
    if kind in ("integer", "floating", "mixed-integer-float", "decimal"):
        # Python ints are unbounded: as doubles, those beyond 2**53 would silently round
        if kind != "floating" and any(
            isinstance(v, int | np.integer) and abs(int(v)) > _EXACT_DOUBLE for v in series
        ):
            raise DataError(
                f"column {name!r} holds integers beyond 2**53 that R can store neither as "
                "integer nor exactly as double; convert it (e.g. to float or to a string id) first"
            )
        return _real(pd.to_numeric(series).to_numpy(dtype=np.float64, na_value=np.nan))
    raise DataError(
        f"column {name!r} mixes value types ({kind}); give it one type (numbers, strings, "
        "booleans) or make it a pandas categorical"
    )


def frame_to_r(df: pd.DataFrame) -> ri.ListSexpVector:
    """Convert a DataFrame to an R ``data.frame`` with the same column names.

    Raises
    ------
    DataError
        On duplicate column names or a column of an unsupported dtype.
    """
    names = [str(c) for c in df.columns]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(f"duplicate column names: {', '.join(map(repr, dupes))}")
    columns = [column_to_r(df.iloc[:, i], names[i]) for i in range(df.shape[1])]
    out = ri.ListSexpVector(columns)
    out.do_slot_assign("names", text(names, "a column name"))
    _set_class(out, ["data.frame"])
    rownames = np.array([NA_INTEGER, -len(df)], dtype=np.int32)
    out.do_slot_assign("row.names", ri.IntSexpVector.from_memoryview(memoryview(rownames)))
    return out


# ------------------------------------------------------------------------ from R


def attr(obj: ri.Sexp, name: str) -> ri.Sexp | None:
    """Return the attribute ``name`` of an R object, or None when it has none."""
    try:
        return obj.do_slot(name)
    except LookupError:
        return None


#: Python codec of R's character encodings (cetype_t: native, UTF-8, latin1, bytes)
_R_ENCODINGS = {0: "utf-8", 1: "utf-8", 2: "latin-1", 3: "latin-1"}


def _strings(vec: Any) -> list[str | None]:
    """The elements of an R character vector (None for NA), read through R's C API in
    one loop: rpy2's item access costs about 6 us a string (8,000 level names of a
    crossed InstEval fit)."""
    if not isinstance(vec, ri.Sexp):  # e.g. an empty list for an absent attribute
        return [None if v is ri.NA_Character else v for v in vec]
    rlib, ffi = openrlib.rlib, openrlib.ffi
    cdata = vec.__sexp__._cdata
    na = rlib.R_NaString
    string_elt, r_char, char_ce = rlib.STRING_ELT, rlib.R_CHAR, rlib.Rf_getCharCE
    out: list[str | None] = []
    with openrlib.lock:
        for i in range(rlib.Rf_xlength(cdata)):
            elt = string_elt(cdata, i)
            if elt == na:
                out.append(None)
            else:
                out.append(ffi.string(r_char(elt)).decode(_R_ENCODINGS.get(char_ce(elt), "utf-8")))
    return out


#: the C type of an R vector's elements, by R type
_C_TYPES = {ri.RTYPES.REALSXP: np.float64, ri.RTYPES.INTSXP: np.int32, ri.RTYPES.LGLSXP: np.int32}


def _numpy(vec: ri.Sexp, dtype: Any) -> np.ndarray:
    """Copy an R vector's memory into a new numpy array.

    The copy goes through a cffi buffer over the vector's data pointer, not rpy2's
    ``SexpVector.memoryview()``: in rpy2 3.5 that calls a C helper
    (``_bufferprotocol.memoryview_swapstrides``) that returns ``None`` without taking
    a reference, so every call removed one reference to ``None`` and a long session
    aborted ("deallocating None") after a few thousand fits.
    """
    n = len(vec)
    if n == 0:
        return np.empty(0, dtype=dtype)
    ctype = np.dtype(_C_TYPES[vec.typeof])
    ptr = openrlib.rlib.DATAPTR(vec.__sexp__._cdata)
    raw = np.frombuffer(openrlib.ffi.buffer(ptr, n * ctype.itemsize), dtype=ctype)
    return raw.astype(dtype, copy=True)


def vector_to_numpy(vec: ri.Sexp) -> Any:
    """Convert an atomic R vector (no names handling) to numpy / pandas values."""
    rclass = attr(vec, "class")
    classes = set(rclass) if rclass is not None else set()
    kind = vec.typeof
    if kind == ri.RTYPES.INTSXP and "factor" in classes:
        codes = _numpy(vec, np.int64) - 1
        codes[codes == NA_INTEGER - 1] = -1
        levels = _strings(attr(vec, "levels") or [])
        return pd.Categorical.from_codes(codes, levels, ordered="ordered" in classes)
    if kind == ri.RTYPES.REALSXP:
        arr = _numpy(vec, np.float64)
        if "POSIXct" in classes:
            tz = attr(vec, "tzone")
            tz = tz[0] if tz is not None and tz[0] else None
            na = np.isnan(arr)
            # R stores seconds as doubles: microseconds are what survives exactly (and a
            # microsecond unit, pandas 3's default, does not overflow before year 294,000)
            us = np.round(np.where(na, 0.0, arr) * 1e6).astype(np.int64)
            us[na] = np.iinfo(np.int64).min
            values = pd.DatetimeIndex(us.view("datetime64[us]"))
            return values.tz_localize("UTC").tz_convert(tz) if tz else values
        if "Date" in classes:
            return pd.to_datetime(arr, unit="D")
        return arr
    if kind == ri.RTYPES.INTSXP:
        arr = _numpy(vec, np.int32)
        na = arr == NA_INTEGER
        if na.any():
            return pd.arrays.IntegerArray(arr.astype(np.int64), na)
        return arr.astype(np.int64)
    if kind == ri.RTYPES.LGLSXP:
        arr = _numpy(vec, np.int32)
        na = arr == NA_INTEGER
        if na.any():
            return pd.arrays.BooleanArray(arr == 1, na)
        return arr == 1
    if kind == ri.RTYPES.STRSXP:
        return np.array(_strings(vec), dtype=object)
    raise TypeError(f"cannot convert an R vector of type {kind}")


def frame_from_r(obj: ri.ListSexpVector) -> pd.DataFrame:
    """Convert an R ``data.frame`` to a DataFrame (character row names become the index)."""
    names = list(attr(obj, "names") or [])
    data = {name: vector_to_numpy(col) for name, col in zip(names, obj, strict=True)}
    rownames = attr(obj, "row.names")
    index = None
    if rownames is not None and rownames.typeof == ri.RTYPES.STRSXP:
        index = pd.Index(_strings(rownames))
    if not names:
        n = 0 if rownames is None else len(vector_to_numpy(rownames))
        return pd.DataFrame(index=index if index is not None else pd.RangeIndex(n))
    return pd.DataFrame(data, index=index, columns=names)
