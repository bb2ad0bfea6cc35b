"""One canonical mapping between the values of a grouping column and R's factor levels.

R turns a grouping column into a factor whose levels are strings; Python compares the
original values.  Left to themselves the two disagree (a float id ``1.0`` is level
``"1"`` in R and ``"1.0"`` as a Python string), so known groups look new.  Here every
value gets one label, the same at fit and at predict time:

* integers (any width, also ``int64`` beyond ``2**31``) and integral floats: the decimal
  integer (``1``, ``1.0`` and ``np.int64(1)`` are the same group, as ``==`` says);
* other floats: ``repr`` (``1.5``);
* strings: themselves; categoricals: their categories by the same rules;
* anything else: ``str``.

R only ever sees these labels (as factor levels); results are indexed by the original
values seen in training.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import pandas as pd

from ..data.frames import label
from ..errors import DataError

__all__ = ["GroupCoding", "label_of"]


def label_of(value: Any) -> str | None:
    """The canonical label of one value (None for a missing value): the label
    :func:`pylmer.data.frames.label` gives, so that lmer and MixedML name groups alike."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        if np.isnan(float(value)):
            return None
    return label(value)


def labels_of(values: pd.Series) -> np.ndarray:
    """Canonical labels of a column (object array, None where missing)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        cats = np.array([label_of(c) for c in values.cat.categories], dtype=object)
        codes = values.cat.codes.to_numpy()
        out = np.empty(len(values), dtype=object)
        out[:] = None
        present = codes >= 0
        out[present] = cats[codes[present]]
        return out
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    labels = np.array([label_of(u) for u in uniques], dtype=object)
    out = np.empty(len(values), dtype=object)
    out[:] = None
    present = codes >= 0
    out[present] = labels[codes[present]]
    return out


class GroupCoding:
    """The training values of each grouping column and their labels.

    Parameters
    ----------
    frame : DataFrame
        The grouping columns of the training data.

    Raises
    ------
    DataError
        A column holds missing values, or two different values with the same label
        (e.g. the integer ``1`` and the string ``"1"``).
    """

    def __init__(self, frame: pd.DataFrame):
        self.columns = [str(c) for c in frame.columns]
        self.values: dict[str, dict[str, Any]] = {}
        for col in self.columns:
            series = frame[col]
            if series.isna().any():
                raise DataError(
                    f"grouping column {col!r} has {int(series.isna().sum())} missing value(s); "
                    "drop those rows first (MixedML needs every row in both steps)"
                )
            first: dict[str, Any] = {}
            for value in pd.unique(series.to_numpy()):
                label = label_of(value)
                if label not in first:
                    first[label] = value
                elif not _same(first[label], value):
                    raise DataError(
                        f"grouping column {col!r} holds different values that R would see as "
                        f"the same level {label!r} ({first[label]!r} and {value!r}); make "
                        "the ids one type"
                    )
            self.values[col] = first

    def encode(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with its grouping columns replaced by categorical labels.

        Missing values get a label of their own per row (a group never seen, that no
        other row shares), so those rows get the fixed part only.
        """
        out = frame.copy()
        for col in self.columns:
            labels = labels_of(frame[col])
            missing = pd.isna(labels)
            if missing.any():
                labels = labels.copy()
                labels[missing] = [f".pylmer_missing_{i}" for i in np.flatnonzero(missing)]
            known = list(self.values[col])
            new = sorted(set(labels) - set(known))
            out[col] = pd.Categorical(labels, categories=known + new)
        return out

    def known(self, frame: pd.DataFrame, col: str) -> np.ndarray:
        """Which rows of ``frame`` hold a level of ``col`` seen in training."""
        return pd.Series(labels_of(frame[col])).isin(list(self.values[col])).to_numpy()

    def index(self, labels: Any, factor: str, parts: list[str]) -> pd.Index:
        """Original values for R's levels of the grouping factor ``factor``.

        ``parts`` are the columns the factor combines (``["b", "a"]`` for lme4's ``b:a``
        of a nested ``a/b``); a combined factor gets a MultiIndex.
        """
        labels = [str(v) for v in labels]
        if len(parts) == 1:
            col = parts[0]
            values = [self.values[col].get(lab, lab) for lab in labels]
            return pd.Index(values, name=col)
        tuples = []
        for lab in labels:
            pieces = lab.split(":")
            if len(pieces) != len(parts):  # a label with ':' inside: keep R's level
                return pd.Index(labels, name=factor)
            tuples.append(
                tuple(self.values[c].get(p, p) for c, p in zip(parts, pieces, strict=True))
            )
        return pd.MultiIndex.from_tuples(tuples, names=parts)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False
