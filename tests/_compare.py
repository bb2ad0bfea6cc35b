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


def check_common_accessors(m, ref: dict, data: pd.DataFrame) -> None:
    """Compare what every lme4 fit reports (LmerModel and GlmerModel alike) with the
    reference ``ref``: ranef, ranef_sd, coef, varcorr, sigma, loglik, aic, bic, deviance,
    npar, nobs, theta, ngrps, vcov, fitted, residuals (aligned to ``data``), is_singular.
    """
    for key in ("ranef", "ranef_sd", "coef"):
        mine = getattr(m, key)
        assert list(mine) == list(ref[key]), key
        for group, obj in ref[key].items():
            close_frame(mine[group], frame(obj), f"{key}[{group}]")
    vc = frame(ref["varcorr"])
    for col in ("group", "var1", "var2"):
        mine = m.varcorr[col].astype(object).where(m.varcorr[col].notna(), np.nan)
        assert [str(v) for v in mine] == [str(v) for v in vc[col]], col
    close(m.varcorr[["variance", "sd_or_cor"]], vc[["variance", "sd_or_cor"]], "varcorr")
    for key in ("sigma", "loglik", "aic", "bic", "deviance"):
        close(getattr(m, key), ref[key], key)
    assert m.npar == ref["npar"] and m.nobs == ref["nobs"]
    assert list(m.theta.index) == list(np.atleast_1d(ref["theta"]["names"]))
    close(m.theta, np.atleast_1d(ref["theta"]["values"]), "theta")
    assert list(m.ngrps.index) == list(np.atleast_1d(ref["ngrps"]["names"]))
    close(m.ngrps, np.atleast_1d(ref["ngrps"]["values"]), "ngrps")
    names = [str(n) for n in np.atleast_1d(ref["vcov"]["names"])]
    assert list(m.vcov.index) == names and list(m.vcov.columns) == names
    close(m.vcov.to_numpy().ravel(), np.ravel(ref["vcov"]["values"]), "vcov")
    close(m.fitted, ref["fitted"], "fitted")
    close(m.residuals, ref["residuals"], "residuals")
    assert m.fitted.index.equals(data.index)
    assert m.is_singular == ref["is_singular"]
