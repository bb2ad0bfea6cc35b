"""Comparing pylmer's results with plain R's reference JSON (shared by the test modules).

A reference data frame is written by ``r_scripts/reference*.R`` as
``{"index": [...], "names": [...], "columns": {name: values}}`` with JSON ``null`` for
R's ``NA``; values are compared at a relative tolerance of 1e-6.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RTOL = 1e-6
ATOL = 1e-9


def vector(value) -> np.ndarray:
    """A JSON value as an object array, ``None`` as NaN."""
    arr = np.atleast_1d(np.asarray(value, dtype=object))
    return np.array([np.nan if v is None else v for v in arr], dtype=object)


def frame(obj: dict) -> pd.DataFrame:
    """A reference data frame (string index, columns in R's order)."""
    names = [str(n) for n in np.atleast_1d(obj["names"])]
    columns = {n: vector(obj["columns"][n]) for n in names}
    return pd.DataFrame(columns, index=[str(i) for i in np.atleast_1d(obj["index"])])


def close(actual, expected, what: str, rtol: float = RTOL) -> None:
    """Numbers equal to the reference within ``rtol`` (and ATOL near zero)."""
    np.testing.assert_allclose(
        np.asarray(actual, dtype=float),
        np.asarray(expected, dtype=float),
        rtol=rtol,
        atol=ATOL,
        err_msg=what,
    )


def close_frame(actual: pd.DataFrame, expected: pd.DataFrame, what: str) -> None:
    """Same row and column labels, numbers within tolerance."""
    assert list(map(str, actual.index)) == list(expected.index), what
    assert list(actual.columns) == list(expected.columns), what
    close(actual.to_numpy(dtype=float), expected.to_numpy(dtype=float), what)


def new_data(data: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """First three rows, grouping factors of the third set to an unseen level (as in R)."""
    nd = data.head(3).copy()
    for g in groups:
        nd[g] = nd[g].astype(str)
        nd.loc[nd.index[2], g] = "new"
    return nd
