"""The user's data on its way to R: accepted frame types, the columns a model uses, and
one canonical mapping between Python group values and R factor levels.

R names factor levels by text.  Left to R, an integer group id ``3`` becomes the level
``"3"``, ``10**12`` (a double in R) becomes ``"1e+12"`` and a float ``1.0`` becomes
``"1"``, while Python knows them as ``3``, ``1000000000000`` and ``1.0``.  Here every
grouping column is turned into a factor *before* it crosses, with labels made by
:func:`label` (deterministic per value, so training data and new data agree) and levels in
the values' own sort order; results map the labels back to the original values.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, DataWarning

__all__ = ["GroupLevels", "as_pandas", "check_text_columns", "label", "model_frame"]


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
    module = type(data).__module__.split(".")[0]
    if module == "polars" and hasattr(data, "to_arrow"):
        data = data.to_arrow()
        module = "pyarrow"
    if module == "pyarrow" and hasattr(data, "to_pandas") and hasattr(data, "schema"):
        try:
            return data.to_pandas()
        except Exception as exc:  # pyarrow's own conversion error
            raise DataError(f"{what}: cannot convert the Arrow table to pandas: {exc}") from None
    raise DataError(
        f"{what} must be a pandas DataFrame, a polars DataFrame or a pyarrow Table, "
        f"not {type(data).__module__}.{type(data).__name__}"
    )


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


# ------------------------------------------------------------------ group labels


def label(value: Any) -> str:
    """Return the R level text of one group value (the same for training and new data).

    Integers (Python, numpy, integral floats) print as integers, other floats with
    ``repr`` (round trip), booleans as R's ``TRUE``/``FALSE``, text unchanged.
    """
    if isinstance(value, bool | np.bool_):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        v = float(value)
        return str(int(v)) if v.is_integer() and abs(v) < 2**63 else repr(v)
    return str(value)


def _labels(values: np.ndarray) -> list[str]:
    return [label(v) for v in values]


class GroupLevels:
    """The label <-> value mapping of the grouping columns of one model.

    Parameters
    ----------
    columns : iterable of str
        The grouping columns (from R's parse of the formula).
    """

    def __init__(self, columns: Iterable[str] = ()):
        self.columns = list(columns)
        self.mapping: dict[str, dict[str, Any]] = {}

    def encode(self, data: pd.DataFrame) -> pd.DataFrame:
        """Return ``data`` with the grouping columns as categoricals of labels.

        The labels of a value do not depend on the other values, so training data and new
        data agree; the mapping back to values grows with every frame encoded.
        """
        present = [c for c in self.columns if c in data.columns]
        if not present:
            return data
        out = data.copy(deep=False)
        for col in present:
            cat, mapping = _encode_column(out[col], col)
            out[col] = cat
            self.mapping.setdefault(col, {}).update(mapping)
        return out

    def decode_index(self, group: str, index: pd.Index) -> pd.Index:
        """Map the level labels of a random-effects table back to the original values."""
        mapping = self.mapping.get(group)
        if not mapping:
            return index
        values = [mapping.get(str(v), v) for v in index]
        try:
            return pd.Index(values, name=index.name)
        except (TypeError, ValueError):  # mixed types: keep them as objects
            return pd.Index(values, dtype=object, name=index.name)


def _encode_column(series: pd.Series, name: str) -> tuple[pd.Series, dict[str, Any]]:
    """One grouping column as a categorical of labels, levels in the values' sort order."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        cats = dtype.categories
        if pd.api.types.is_string_dtype(cats) or pd.api.types.is_object_dtype(cats):
            mapping = {str(c): c for c in cats}
            return series, mapping
        labels = _labels(cats.to_numpy())
        _check_unique(labels, name)
        new = series.cat.rename_categories(labels)
        return new, dict(zip(labels, cats.tolist(), strict=True))
    if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        codes, uniques = pd.factorize(series, sort=True, use_na_sentinel=True)
        values = np.asarray(uniques.tolist(), dtype=object)
        labels = _labels(values)
        _check_unique(labels, name)
        cat = pd.Categorical.from_codes(codes, categories=labels)
        return pd.Series(cat, index=series.index, name=series.name), dict(
            zip(labels, values.tolist(), strict=True)
        )
    # text: R's own labels already are the values
    return series, {}


def _check_unique(labels: list[str], name: str) -> None:
    if len(set(labels)) < len(labels):
        raise DataError(f"grouping column {name!r} has distinct values with the same label")


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
            warnings.warn(
                f"column {col!r} holds text that reads as numbers (e.g. {example!r}); it is used "
                f"as a factor with {present.nunique()} levels. If it is a number, convert it "
                f"first, e.g. pd.to_numeric(df[{col!r}].str.replace(',', '.'))",
                DataWarning,
                stacklevel=4,
            )
        elif col not in groups and present.nunique() == len(s) and len(s) > 2:
            warnings.warn(
                f"column {col!r} is used as a factor with as many levels as rows ({len(s)}): "
                "one coefficient per row; is it an identifier?",
                DataWarning,
                stacklevel=4,
            )
