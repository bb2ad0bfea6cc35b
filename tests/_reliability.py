"""Helpers shared by the reliability tests (bad input, command line, concurrency)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from _refcache import reference

from pylmer import datasets, lmer

SLEEP = "Reaction ~ Days + (Days | Subject)"


def sleep_fixef() -> list[float]:
    """Plain R's REML fixed effects of SLEEP on this machine (tests/reference.R)."""
    return reference("reference.R", "sleepstudy_reml")["fixef"]["columns"]["estimate"]


def assert_r_usable() -> None:
    """A normal sleepstudy fit still works and gives lme4's numbers."""
    m = lmer(SLEEP, datasets.load("sleepstudy"))
    np.testing.assert_allclose(m.fixef_wald["estimate"], sleep_fixef(), rtol=1e-6)
    assert m.converged and not m.messages


def _na(df: pd.DataFrame, column: str, value: Any, row: int = 3) -> pd.DataFrame:
    """``df`` with ``value`` (NaN, None or pd.NA) at one row of ``column``."""
    out = df.copy()
    if value is pd.NA:
        kind = "string" if isinstance(out[column].dtype, pd.CategoricalDtype) else "Float64"
        out[column] = out[column].astype(str if kind == "string" else float).astype(kind)
    else:
        out[column] = out[column].astype(object)
    out.loc[out.index[row], column] = value
    return out
