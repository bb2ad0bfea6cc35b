"""Shared fixtures: the tests need a working R with lme4 (``make test`` installs it)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

import pylmer
from pylmer.r import session as _r


@pytest.fixture(scope="session")
def r_session() -> None:
    """Start R once; a missing R or lme4 is a failure, not a skip (CI must not pass empty)."""
    try:
        _r.call(".pylmer_versions")
    except pylmer.RNotAvailableError as exc:
        pytest.fail(f"R with lme4 is required for the tests: {exc}")


INSTEVAL = "y ~ service + (1 | s) + (1 | d) + (1 | dept)"


@pytest.fixture(scope="module")
def sleep(r_session) -> pd.DataFrame:
    """lme4's sleepstudy, read from R once per test module."""
    return pylmer.datasets.load("sleepstudy")


@pytest.fixture(scope="session")
def insteval(r_session) -> pd.DataFrame:
    """lme4's InstEval (73,421 rows)."""
    return pylmer.datasets.load("InstEval")


@pytest.fixture(scope="session")
def insteval_fits(insteval) -> Callable[[bool], pylmer.LmerModel]:
    """``fit(reml)``: the InstEval model fitted once per session and kind (the fits take
    most of a minute; test_lmer and test_satterthwaite read the same ones)."""
    fits: dict[bool, pylmer.LmerModel] = {}

    def fit(reml: bool) -> pylmer.LmerModel:
        if reml not in fits:
            fits[reml] = pylmer.lmer(INSTEVAL, insteval, reml=reml)
        return fits[reml]

    return fit
