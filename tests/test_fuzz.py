"""Fuzzing (issue 7): odd column values and odd model data end in a result or a
:class:`pylmer.PylmerError`, never a crash.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pylmer import (
    DataError,
    PylmerError,
    lmer,
)
from pylmer.r import session as _r


@pytest.fixture(scope="module", autouse=True)
def _r_started(r_session):
    """Every test here talks to R (see conftest.r_session)."""


# ====================================================================== fuzzing

_ODD_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"), st.sampled_from(["\x00", "\ud800", " ", ".", "é", "`"])
    ),
    max_size=6,
)
_CELLS = st.one_of(
    _ODD_TEXT,
    st.none(),
    st.just(np.nan),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
)


def _r_safe(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=_ODD_TEXT, cells=st.lists(_CELLS, max_size=8), categorical=st.booleans())
def test_fuzz_column_conversion(name, cells, categorical):
    """Any column either arrives in R intact (same length, same missing values, exact
    numbers, one level per distinct text) or is refused with a DataError naming it."""
    series = pd.Series(cells, dtype=object)
    if categorical:
        series = series.astype("category")
    df = pd.DataFrame({name: series})
    try:
        ref = _r.bind(df)
    except DataError as exc:
        assert repr(name) in str(exc) or "column name" in str(exc), str(exc)
        return
    assert _r_safe(name)
    info = _r.call(".pylmer_describe", ref)
    assert info["nrow"].tolist() in ([], [len(cells)])
    assert int(info["n_na"].iloc[0]) == int(series.isna().sum())
    back = _r.call(".pylmer_get", ref)[name]
    if info["class"].iloc[0] == "factor":
        labels = [str(v) for v in (series.cat.categories if categorical else series.dropna())]
        assert all(_r_safe(v) for v in labels)
        assert sorted(back.cat.categories) == sorted(set(labels))
    elif info["typeof"].iloc[0] == "double":
        numbers = pd.to_numeric(series.astype(object), errors="coerce").astype(float).to_numpy()
        np.testing.assert_array_equal(back.to_numpy(dtype=float), numbers)
        big = [v for v in cells if isinstance(v, int) and abs(v) > 2**53]
        assert not big


@st.composite
def _model_data(draw) -> tuple[str, pd.DataFrame]:
    n = draw(st.integers(0, 24))
    n_groups = draw(st.integers(1, max(n, 1)))
    y = draw(st.lists(st.one_of(st.floats(-1e3, 1e3), st.just(np.nan), st.just(np.inf)),
                      min_size=n, max_size=n))  # fmt: skip
    x = draw(st.lists(st.floats(-10, 10), min_size=n, max_size=n))
    kind = draw(st.sampled_from(["float", "const", "collinear", "text", "category", "missing"]))
    groups = [f"g{draw(st.integers(0, n_groups - 1))}" for _ in range(n)]
    data = pd.DataFrame({"y": pd.Series(y, dtype=float), "x": pd.Series(x, dtype=float)})
    data["z"] = {
        "float": data["x"] ** 2,
        "const": pd.Series(1.0, index=data.index),
        "collinear": 2 * data["x"],
        "text": pd.Series([f"t{i % 3}" for i in range(n)], dtype=object),
        "category": pd.Series(pd.Categorical([f"c{i % 2}" for i in range(n)], ["c0", "c1", "u"])),
        "missing": data["x"].where(data.index % 4 != 0),
    }[kind]
    data[draw(st.sampled_from(["g", "g g", "g.é"]))] = groups
    group = f"`{data.columns[-1]}`"
    formula = draw(st.sampled_from([
        "y ~ x + (1 | {g})", "y ~ x + z + (1 | {g})", "y ~ z + (x | {g})",
        "y ~ 0 + (1 | {g})", "y ~ x + (x || {g})", "z ~ x + (1 | {g})",
    ])).format(g=group)  # fmt: skip
    return formula, data


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_model_data())
def test_fuzz_formula_and_data(case):
    """Random small formula/data combinations: a model consistent with its data, or a
    PylmerError; never another exception, and R stays usable."""
    formula, data = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            m = lmer(formula, data)
        except PylmerError as exc:
            assert str(exc)
            return
    assert m.fitted.index.equals(data.index)
    assert m.nobs == int(m.fitted.notna().sum()) <= len(data)
    assert not np.isnan(m.loglik)  # +inf for a perfect fit (sigma = 0), as in R
    used = m.fitted.notna()
    response = data[formula.split(" ~")[0]][used].astype(float)
    np.testing.assert_allclose((m.fitted + m.residuals)[used], response, atol=1e-8)
    assert _r.call("sum", [1, 2]) == 3
