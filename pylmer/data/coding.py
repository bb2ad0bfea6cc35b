"""One immutable coding of grouping columns: Python values <-> R factor levels.

R names factor levels by text.  Left to R, an integer group id ``3`` becomes the level
``"3"``, ``10**12`` (a double in R) becomes ``"1e+12"`` and a float ``1.0`` becomes
``"1"``, while Python knows them as ``3``, ``1000000000000`` and ``1.0``; a float id
``1.0`` and an integer id ``1`` would be different groups to a string comparison.  Here
every grouping column is turned into a factor *before* it crosses, by one rule for every
model (lmer, glmer, MixedML):

* **labels** (:func:`label`): integers (any width) and integral floats print as the
  decimal integer (``1``, ``1.0`` and ``np.int64(1)`` are one group, as ``==`` says),
  other floats with ``repr``, booleans as R's ``TRUE``/``FALSE``, text unchanged;
  the categories of a categorical by the same rules;
* **level order**: a categorical keeps its category order; other columns are sorted by
  value (numbers numerically, text by code point; a column mixing types that cannot be
  ordered keeps the order of first appearance);
* **missing values** are not levels: they stay missing (R's ``NA``), and what that means
  is the model's policy (lme4's ``na_action``; MixedML refuses them in training and
  predicts such rows like an unseen group);
* **immutable**: :meth:`GroupCoding.encode` never adds a level.  New data with values the
  coding has not seen go through :meth:`GroupCoding.extend`, which returns a new coding
  (known levels first, in their order, then the new ones).

Results are indexed by the original values (:meth:`GroupCoding.decode`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError

__all__ = ["GroupCoding", "label"]


def label(value: Any) -> str:
    """Return the R level text of one group value (the same for training and new data).

    Integers (Python, numpy, integral floats) print as integers, other floats with
    ``repr`` (round trip), booleans as R's ``TRUE``/``FALSE``, text unchanged.

    Examples
    --------
    >>> label(3), label(1.0), label(2.5), label(True), label("a")
    ('3', '1', '2.5', 'TRUE', 'a')
    """
    if isinstance(value, bool | np.bool_):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        v = float(value)
        return str(int(v)) if v.is_integer() and abs(v) < 2**63 else repr(v)
    return str(value)


def _levels_of(series: pd.Series) -> list[Any]:
    """The distinct non-missing values of a column, in the coding's level order."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return list(series.cat.categories)
    values = series.dropna()
    try:
        _, uniques = pd.factorize(values, sort=True)
    except TypeError:  # values of types that cannot be ordered: first appearance
        _, uniques = pd.factorize(values, sort=False)
    return list(uniques)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


@dataclass(frozen=True, eq=False)
class GroupCoding:
    """The levels of the grouping columns of one model, and their original values.

    Build it from the training data with :meth:`from_frame`; it never changes afterwards
    (its mappings are read-only views; :meth:`extend` returns a new coding).

    Attributes
    ----------
    values : mapping of str to mapping of str to object
        Per grouping column, label -> original value, in level order.

    Examples
    --------
    >>> import pandas as pd
    >>> coding = GroupCoding.from_frame(pd.DataFrame({"g": [3, 1.0, 3]}))
    >>> coding.levels["g"]
    ('1', '3')
    >>> coding.encode(pd.DataFrame({"g": [1, 3]}))["g"].tolist()
    ['1', '3']
    >>> coding.extend(pd.DataFrame({"g": [7]})).levels["g"]
    ('1', '3', '7')
    """

    values: Mapping[str, Mapping[str, Any]]

    @classmethod
    def _of(cls, mappings: Mapping[str, Mapping[str, Any]]) -> GroupCoding:
        return cls(MappingProxyType({c: MappingProxyType(dict(m)) for c, m in mappings.items()}))

    def __reduce__(self) -> tuple[Any, ...]:  # read-only views do not pickle: plain dicts
        return (GroupCoding._of, ({c: dict(m) for c, m in self.values.items()},))

    @property
    def levels(self) -> dict[str, tuple[str, ...]]:
        """Per grouping column, the R level labels in level order."""
        return {c: tuple(m) for c, m in self.values.items()}

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, columns: Iterable[str] | None = None) -> GroupCoding:
        """The coding of ``columns`` (default: every column) of the training data;
        names in ``columns`` that are not columns of ``frame`` are left out.

        Raises
        ------
        DataError
            Two different values of a column have the same label (e.g. the integer ``1``
            and the string ``"1"``).
        """
        names = [str(c) for c in frame.columns]
        columns = names if columns is None else [c for c in columns if c in names]
        return cls._of({c: cls._mapping(c, _levels_of(frame[c]), {}) for c in columns})

    @staticmethod
    def _mapping(col: str, new: list[Any], known: Mapping[str, Any]) -> dict[str, Any]:
        """``known`` followed by the labels of the ``new`` values it lacks (in order).

        A new value whose label is a known level *is* that level (R sees the label: the
        id ``308`` of the training data and ``"308"`` read from a CSV with text ids are
        one group); two different values of the same frame with one label are refused.
        """
        mapping = dict(known)
        for value in new:
            key = label(value)
            if key not in mapping:
                mapping[key] = value
            elif key not in known and not _same(mapping[key], value):
                raise DataError(
                    f"grouping column {col!r} holds different values that R would see as the "
                    f"same level {key!r} ({mapping[key]!r} and {value!r}); make the ids one type"
                )
        return mapping

    @property
    def columns(self) -> list[str]:
        """The grouping columns."""
        return list(self.values)

    def extend(self, frame: pd.DataFrame) -> GroupCoding:
        """A new coding that also holds the values of ``frame`` it has not seen.

        Known levels keep their labels, values and order; new levels follow, in level
        order.  A value whose label is known is that level (``"308"`` and ``308`` are one
        group).  Columns of the coding that ``frame`` lacks are kept as they are.
        """
        return self._of(
            {
                c: self._mapping(c, _levels_of(frame[c]), m) if c in frame.columns else m
                for c, m in self.values.items()
            }
        )

    def labels(self, series: pd.Series) -> np.ndarray:
        """The labels of a column's values (object array, None where missing)."""
        if isinstance(series.dtype, pd.CategoricalDtype):
            cats = np.array([label(c) for c in series.cat.categories], dtype=object)
            codes = series.cat.codes.to_numpy()
        else:
            codes, uniques = pd.factorize(series, use_na_sentinel=True)
            cats = np.array([label(u) for u in uniques], dtype=object)
        out = np.full(len(series), None, dtype=object)
        present = codes >= 0
        out[present] = cats[codes[present]]
        return out

    def unseen(self, frame: pd.DataFrame) -> dict[str, list[Any]]:
        """Per grouping column of ``frame``, the values the coding has not seen."""
        out = {}
        for col in self.columns:
            if col not in frame.columns:
                continue
            known = self.values[col]
            new = [v for v in _levels_of(frame[col]) if label(v) not in known]
            if new:
                out[col] = new
        return out

    def encode(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with its grouping columns as categoricals of the coding's labels.

        Missing values stay missing.  Other columns are left as they are.

        Raises
        ------
        DataError
            A column holds a value the coding has not seen (use :meth:`extend` first).
        """
        present = [c for c in self.columns if c in frame.columns]
        if not present:
            return frame
        out = frame.copy(deep=False)
        for col in present:
            labels = self.labels(frame[col])
            categories = pd.Index(list(self.values[col]), dtype=object)
            codes = categories.get_indexer(labels)
            unknown = (codes < 0) & pd.notna(labels)
            if unknown.any():
                shown = sorted({str(v) for v in labels[unknown]})[:5]
                raise DataError(
                    f"grouping column {col!r} has level(s) the coding has not seen: "
                    f"{', '.join(map(repr, shown))}; extend the coding for new data"
                )
            cat = pd.Categorical.from_codes(codes, categories=categories)
            out[col] = pd.Series(cat, index=frame.index, name=frame[col].name)
        return out

    def decode(
        self, factor: str, labels: Iterable[Any], parts: list[str] | None = None
    ) -> pd.Index:
        """Original values for R's levels of the grouping factor ``factor``.

        ``parts`` are the columns a combined factor joins (``["b", "a"]`` for lme4's
        ``b:a`` of a nested ``a/b``): it then gets a MultiIndex.  A factor the coding does
        not know (and no ``parts``) keeps R's labels.  Without ``parts`` the index keeps
        the name of ``labels`` (when an Index); with ``parts`` it is named ``factor``.
        """
        name = factor if parts else getattr(labels, "name", None)
        labels = [str(v) for v in labels]
        parts = parts or [factor]
        if len(parts) == 1:
            mapping = self.values.get(parts[0])
            if not mapping:
                return pd.Index(labels, name=name)
            values = [mapping.get(lab, lab) for lab in labels]
            try:
                return pd.Index(values, name=name)
            except (TypeError, ValueError):  # mixed types: keep them as objects
                return pd.Index(values, dtype=object, name=name)
        tuples = []
        for lab in labels:
            pieces = lab.split(":")
            if len(pieces) != len(parts):  # a label with ':' inside: keep R's level
                return pd.Index(labels, name=factor)
            tuples.append(
                tuple(self.values.get(c, {}).get(p, p) for c, p in zip(parts, pieces, strict=True))
            )
        return pd.MultiIndex.from_tuples(tuples, names=parts)
