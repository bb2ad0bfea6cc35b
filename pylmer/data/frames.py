"""The user's data on its way to R: accepted frame types, the columns a model uses, and
checks of suspicious text columns.  Grouping columns are coded by
:class:`pylmer.data.coding.GroupCoding`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, DataWarning, warn

__all__ = ["as_pandas", "check_text_columns", "check_weights", "model_frame", "type_name"]


def as_pandas(data: Any, what: str = "data") -> pd.DataFrame:
    """Return ``data`` as a pandas DataFrame.

    pandas frames pass unchanged; polars DataFrames and pyarrow Tables are converted
    through Arrow (column blocks, no Python objects per value).

    Raises
    ------
    DataError
        For anything else, saying what to pass.
    """
    if isinstance(data, pd.DataFrame):
        return data
    given = data
    module = type(data).__module__.split(".")[0]
    if module == "polars" and type(data).__name__ == "DataFrame":
        data = data.to_arrow()
        module = "pyarrow"
    if module == "pyarrow" and hasattr(data, "to_pandas") and hasattr(data, "schema"):
        try:
            return data.to_pandas()
        except Exception as exc:  # pyarrow's own conversion error
            raise DataError(f"{what}: cannot convert the Arrow table to pandas: {exc}") from None
    raise DataError(
        f"{what} must be a pandas DataFrame, a polars DataFrame or a pyarrow Table, "
        f"not {type_name(given)}"
    )


def type_name(obj: Any) -> str:
    """The full type of ``obj`` as a user writes it: ``polars.DataFrame``,
    ``numpy.ndarray``, ``builtins.list`` (top-level package and class, not the defining
    submodule such as ``polars.dataframe.frame``)."""
    return f"{type(obj).__module__.split('.')[0]}.{type(obj).__qualname__}"


def model_frame(data: pd.DataFrame, columns: Iterable[str], what: str = "data") -> pd.DataFrame:
    """Return a copy of the ``columns`` of ``data`` that exist (in ``data``'s order).

    Names the model refers to that are not columns (``pi``, functions) are left to R,
    which reports a missing column by name.
    """
    wanted = set(columns)
    names = [str(c) for c in data.columns]
    dupes = sorted({n for n in names if names.count(n) > 1 and n in wanted})
    if dupes:
        raise DataError(f"{what} has duplicate column names: {', '.join(map(repr, dupes))}")
    keep = [i for i, n in enumerate(names) if n in wanted]
    out = data.iloc[:, keep].copy()
    out.columns = [names[i] for i in keep]
    return out


# ------------------------------------------------------------------ weights


def check_weights(data: pd.DataFrame, weights: Any) -> None:
    """Refuse negative weights, naming the weights column (or the ``weights`` argument).

    ``weights`` is a column of ``data``, per-row values, or None; a name that is not a
    column is left to R (which names it).
    """
    if weights is None:
        return
    if isinstance(weights, str):
        if weights not in data.columns:
            return
        where = f"the weights column {weights!r}"
        column = data[weights]
        if not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
            raise DataError(f"{where} must be numeric, not {column.dtype}")
        values = column.to_numpy(dtype=float, na_value=np.nan)
    else:
        where = "the weights"
        values = np.asarray(weights, dtype=float)
    bad = np.flatnonzero(values < 0)
    if bad.size:
        raise DataError(
            f"{where} has negative values: {bad.size} row(s), e.g. row {bad[0]} with "
            f"{values[bad[0]]:g}; weights must be >= 0"
        )


# ------------------------------------------------------------------ suspicious text


def check_text_columns(data: pd.DataFrame, factors: Iterable[str], groups: Iterable[str]) -> None:
    """Warn about text columns used as factors that look like a mistake.

    A text column whose values all read as numbers (``"0,59"`` with a decimal comma,
    ``"12"``) becomes a factor with one level per distinct value, and a fixed-effect
    factor with as many levels as rows has one coefficient per row.
    """
    groups = set(groups)
    for col in factors:
        if col not in data.columns:
            continue
        s = data[col]
        if not (pd.api.types.is_string_dtype(s.dtype) or pd.api.types.is_object_dtype(s.dtype)):
            continue
        present = s.dropna()
        if present.empty or pd.api.types.infer_dtype(present, skipna=True) != "string":
            continue
        numeric = pd.to_numeric(
            present.str.strip().str.replace(",", ".", regex=False), errors="coerce"
        )
        if col not in groups and numeric.notna().all():
            example = present.iloc[0]
            warn(
                f"column {col!r} holds text that reads as numbers (e.g. {example!r}); it is used "
                f"as a factor with {present.nunique()} levels. If it is a number, convert it "
                f"first, e.g. pd.to_numeric(df[{col!r}].str.replace(',', '.'))",
                DataWarning,
            )
        elif col not in groups and present.nunique() == len(s) and len(s) > 2:
            warn(
                f"column {col!r} is used as a factor with as many levels as rows ({len(s)}): "
                "one coefficient per row; is it an identifier?",
                DataWarning,
            )
