"""Reliability (issue 7): bad input, R failures, concurrency, interrupts, memory, fuzzing.

Every bad input must end in a :class:`pylmer.PylmerError` whose message names the column,
term or level at fault (or, where lme4 legitimately fits, in a Python warning that is also
kept on the model), never in a raw R traceback, a hang or a crash; and the R session must
stay usable afterwards.  The bad-input cases are tables: one row per case, each followed
by a sleepstudy fit that must give the usual numbers.

Cases marked ``xfail(strict=True)`` document a known gap (the reason says which fix is
needed); when the gap is closed they XPASS and fail, so the mark must then be removed.
"""

from __future__ import annotations

import gc
import json
import re
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _refcache import reference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import NotFittedError

from pylmer import (
    DataError,
    FormulaError,
    LmerConvergenceWarning,
    MixedMLRegressor,
    PylmerError,
    RError,
    RMessage,
    SingularFitWarning,
    cli,
    datasets,
    lmer,
)
from pylmer.data.simulate import simulate_longitudinal
from pylmer.estimators import LmerRegressor
from pylmer.r import session as _r

SLEEP = "Reaction ~ Days + (Days | Subject)"


def sleep_fixef() -> list[float]:
    """Plain R's REML fixed effects of SLEEP on this machine (r_scripts/reference.R)."""
    return reference("reference.R", "sleepstudy_reml")["fixef"]["columns"]["estimate"]


@pytest.fixture(scope="module", autouse=True)
def _r_started(r_session):
    """Every test here talks to R (see conftest.r_session)."""


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return datasets.load("sleepstudy")


def assert_r_usable() -> None:
    """A normal sleepstudy fit still works and gives lme4's numbers."""
    m = lmer(SLEEP, datasets.load("sleepstudy"))
    np.testing.assert_allclose(m.fixef_wald["estimate"], sleep_fixef(), rtol=1e-6)
    assert m.converged and not m.messages


# ====================================================================== the tables


@dataclass(frozen=True)
class Ctx:
    """What the cases build their bad inputs from (made once per module)."""

    sleep: pd.DataFrame
    sleep_fit: Any
    factor_fit: Any  # Reaction ~ Days + half + (1 | Subject), half with an unused level
    X: pd.DataFrame  # simulate_longitudinal: individus, x2_x5, x4_x7
    y: pd.Series
    mm_fit: MixedMLRegressor


@pytest.fixture(scope="module")
def ctx(sleep) -> Ctx:
    half = pd.Categorical(
        np.where(sleep["Days"] < 5, "early", "late"), categories=["early", "late", "zz"]
    )
    long = simulate_longitudinal(n_subjects=30, n_times=6, seed=1)
    X = long[["individus", "x2_x5", "x4_x7"]]
    y = long["y_mixed_obs"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mm_fit = MixedMLRegressor(random_effects="(1 | individus)", max_iter=5).fit(X, y)
    return Ctx(
        sleep=sleep,
        sleep_fit=lmer(SLEEP, sleep),
        factor_fit=lmer("Reaction ~ Days + half + (1 | Subject)", sleep.assign(half=half)),
        X=X,
        y=y,
        mm_fit=mm_fit,
    )


@dataclass(frozen=True)
class Case:
    """One bad input: ``run(ctx)`` must raise ``expect`` (an exception class) or, when
    ``expect`` is a warning class, succeed with that warning; ``match`` is searched in the
    message; ``check`` (optional) inspects the result of a successful run."""

    id: str
    run: Callable[[Ctx], Any]
    expect: type[BaseException] | type[Warning] | None
    match: str = ""
    check: Callable[[Any], None] | None = None
    xfail: str | None = None


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


def _nobs(n: int) -> Callable[[Any], None]:
    def check(m: Any) -> None:
        assert m.nobs == n
        assert m.fitted.isna().sum() == 180 - n  # aligned with the data, NaN where dropped

    return check


def _kept(text: str, dropped_term: str | None = None) -> Callable[[Any], None]:
    """The warning text is also on the model (``messages``); a dropped term is gone."""

    def check(m: Any) -> None:
        assert any(text in msg for msg in m.messages), m.messages
        if dropped_term is not None:
            assert dropped_term not in m.fixef_wald.index

    return check


def _not_converged(m: Any) -> None:
    assert not m.converged
    assert any("convergence code" in msg for msg in m.messages), m.messages
    assert m.predict(m.data.head(3)).notna().all()  # the model is still usable


_MISSING = {"NaN": np.nan, "None": None, "pd.NA": pd.NA}
_NA_COLUMNS = {"response": "Reaction", "predictor": "Days", "grouping": "Subject"}

LMER_CASES: list[Case] = [
    Case(
        "formula_syntax_error",
        lambda c: lmer("Reaction ~ Days + (1 | Subject", c.sleep),
        FormulaError,
        r"cannot parse the formula 'Reaction ~ Days \+ \(1 \| Subject'",
    ),
    Case(
        "formula_names_missing_column",
        lambda c: lmer("Reaction ~ Dayz + (1 | Subject)", c.sleep),
        FormulaError,
        r"not in the data: 'Dayz'",
    ),
    Case(
        "formula_names_missing_grouping_column",
        lambda c: lmer("Reaction ~ Days + (1 | Subj)", c.sleep),
        FormulaError,
        r"not in the data: 'Subj'",
    ),
    Case(
        "no_random_effects_term",
        lambda c: lmer("Reaction ~ Days", c.sleep),
        FormulaError,
        r"'Reaction ~ Days' has no random-effects term",
    ),
    Case(
        "response_is_a_factor",
        lambda c: lmer("Subject ~ Days + (1 | Days)", c.sleep),
        DataError,
        r"response 'Subject' must be numeric, not factor",
    ),
    Case(
        "response_is_text",
        lambda c: lmer("r ~ Days + (1 | Subject)", c.sleep.assign(r="x")),
        DataError,
        r"response 'r' must be numeric",
    ),
    Case(
        "response_is_boolean",
        lambda c: lmer("r ~ Days + (1 | Subject)", c.sleep.assign(r=c.sleep["Days"] > 4)),
        DataError,
        r"response 'r' must be numeric, not logical",
    ),
    *[
        Case(
            f"{label}_in_{where}_dropped_with_warning",
            lambda c, col=col, value=value: lmer(SLEEP, _na(c.sleep, col, value)),
            UserWarning,
            rf"dropped 1 of 180 rows .*'{col}': 1\).*na_action='error'",
            check=_nobs(179),
        )
        for label, value in _MISSING.items()
        for where, col in _NA_COLUMNS.items()
    ],
    *[
        Case(
            f"{label}_in_{where}_na_action_error",
            lambda c, col=col, value=value: lmer(
                SLEEP, _na(c.sleep, col, value), na_action="error"
            ),
            DataError,
            rf"missing values in the model's columns \(na_action='error'\): '{col}' \(1 missing\)",
        )
        for label, value in _MISSING.items()
        for where, col in _NA_COLUMNS.items()
    ],
    Case(
        "every_row_has_a_missing_value",
        lambda c: lmer(SLEEP, c.sleep.assign(Reaction=np.nan)),
        DataError,
        r"no complete rows.*'Reaction' \(180 missing\)",
    ),
    Case(
        "grouping_factor_with_one_level",
        lambda c: lmer("Reaction ~ Days + (1 | g)", c.sleep.assign(g="a")),
        RError,
        r"grouping factor 'g' has only 1 level \('a'\)",
    ),
    Case(
        "grouping_factor_with_one_level_after_dropping_missing",
        lambda c: lmer(
            "Reaction ~ Days + (1 | g)",
            c.sleep.assign(g="a", Reaction=c.sleep["Reaction"].where(c.sleep.index > 0)).pipe(
                lambda d: d.assign(g=d["g"].where(d.index > 0, "b"))
            ),
        ),
        RError,
        r"grouping factor 'g' has only 1 level \('a'\) in the rows used",
    ),
    Case(
        "grouping_factor_with_as_many_levels_as_rows",
        lambda c: lmer("Reaction ~ Days + (1 | g)", c.sleep.assign(g=np.arange(180).astype(str))),
        RError,
        r"grouping factor 'g' has as many levels \(180\) as observations \(180\)",
    ),
    Case(
        "fewer_observations_than_random_effects",
        lambda c: lmer("Reaction ~ Days + (Days | g)", c.sleep.assign(g=np.arange(180) // 2)),
        RError,
        r"number of random effects \(=180\) for term \(Days \| g\)",
    ),
    Case(
        "group_with_a_single_observation_fits",
        lambda c: lmer(
            "Reaction ~ Days + (1 | Subject)",
            c.sleep.assign(Subject=c.sleep["Subject"].astype(str).where(c.sleep.index > 0, "solo")),
        ),
        None,
        check=lambda m: _true(
            m.ngrps["Subject"] == 19 and "solo" in m.ranef["Subject"].index, m.ngrps
        ),
    ),
    Case(
        "constant_predictor_rank_deficient",
        lambda c: lmer("Reaction ~ Days + k + (1 | Subject)", c.sleep.assign(k=1.0)),
        RMessage,
        r"rank deficient so dropping 1 column",
        check=_kept("rank deficient so dropping 1 column", "k"),
    ),
    Case(
        "collinear_predictors_rank_deficient",
        lambda c: lmer(
            "Reaction ~ Days + d2 + (1 | Subject)", c.sleep.assign(d2=2 * c.sleep["Days"] + 1)
        ),
        RMessage,
        r"rank deficient so dropping 1 column",
        check=_kept("rank deficient so dropping 1 column", "d2"),
    ),
    Case(
        "duplicate_column_names",
        lambda c: lmer(SLEEP, c.sleep.set_axis(["Reaction", "Days", "Reaction"], axis=1)),
        DataError,
        r"duplicate column names: 'Reaction'",
    ),
    Case(
        "names_with_spaces_dots_unicode_fit_when_quoted",
        lambda c: lmer(
            "`re act` ~ `d.a.y` + (`d.a.y` | `sujet é`)",
            c.sleep.set_axis(["re act", "d.a.y", "sujet é"], axis=1),
        ),
        None,
        check=lambda m: np.testing.assert_allclose(
            m.fixef_wald["estimate"], sleep_fixef(), rtol=1e-6
        ),
    ),
    Case(
        "name_with_space_not_quoted",
        lambda c: lmer(
            "re act ~ Days + (1 | Subject)", c.sleep.rename(columns={"Reaction": "re act"})
        ),
        FormulaError,
        r"(?s)cannot parse.*backticks, e\.g\. `re act`",
    ),
    Case(
        "empty_frame",
        lambda c: lmer(SLEEP, c.sleep.iloc[:0]),
        DataError,
        r"data has no rows \(columns: Reaction, Days, Subject\)",
    ),
    Case(
        "int64_beyond_2_53_fixed_effect",
        lambda c: lmer(
            "Reaction ~ Days + id + (1 | Subject)",
            c.sleep.assign(id=np.arange(180, dtype=np.int64) + 2**60 + 1),
        ),
        DataError,
        r"column 'id' holds integers beyond 2\*\*53",
    ),
    Case(
        "int64_beyond_2_53_object_column",
        lambda c: lmer(
            "Reaction ~ Days + id + (1 | Subject)",
            c.sleep.assign(id=pd.Series([2**53 + 1] * 180, dtype=object)),
        ),
        DataError,
        r"column 'id' holds integers beyond 2\*\*53",
    ),
    Case(
        "int64_beyond_int32_grouping_fits",
        lambda c: lmer(
            "Reaction ~ Days + (1 | g)",
            c.sleep.assign(g=c.sleep["Subject"].astype(np.int64) + 2**40),
        ),
        None,
        check=lambda m: _true(m.ngrps["g"] == 18, m.ngrps),
    ),
    Case(
        "infinite_response",
        lambda c: lmer(SLEEP, c.sleep.assign(Reaction=c.sleep["Reaction"].replace(249.56, np.inf))),
        DataError,
        r"infinite values.*'Reaction' \(1 infinite\)",
    ),
    Case(
        "infinite_predictor",
        lambda c: lmer(
            SLEEP, c.sleep.assign(Days=c.sleep["Days"].where(c.sleep.index != 5, -np.inf))
        ),
        DataError,
        r"infinite values.*'Days' \(1 infinite\)",
    ),
    Case(
        "categorical_with_unused_levels_fits",
        lambda c: lmer(
            SLEEP, c.sleep.assign(Subject=c.sleep["Subject"].cat.add_categories(["ghost"]))
        ),
        None,
        check=lambda m: _true(
            m.ngrps["Subject"] == 18 and "ghost" not in m.ranef["Subject"].index, m.ngrps
        ),
    ),
    Case(
        "categories_equal_as_text",
        lambda c: lmer(
            "Reaction ~ Days + f + (1 | Subject)",
            c.sleep.assign(f=pd.Categorical([1, "1"] * 90)),
        ),
        DataError,
        r"column 'f' has categories that are equal as text \('1'\)",
    ),
    Case(
        "nul_character_in_a_level",
        lambda c: lmer(
            "Reaction ~ Days + note + (1 | Subject)",
            c.sleep.assign(note=np.where(c.sleep["Days"] < 5, "a\x00b", "a\x00c")),
        ),
        DataError,
        r"column 'note' holds text with a NUL character",
    ),
    Case(
        "lone_surrogate_in_a_column_name",
        # an object column index: pyarrow-backed pandas strings cannot hold a lone surrogate
        lambda c: lmer(
            "Reaction ~ Days + (1 | Subject)",
            c.sleep.assign(extra=1.0).set_axis(
                pd.Index([*c.sleep.columns, "bad\ud800"], dtype=object), axis=1
            ),
        ),
        DataError,
        r"holds text that is not valid Unicode",
    ),
    Case(
        "weights_column_not_in_data",
        lambda c: lmer(SLEEP, c.sleep, weights="w"),
        DataError,
        r"weights column 'w' is not in the data",
    ),
    Case(
        "convergence_failure_nloptwrap",
        lambda c: lmer(SLEEP, c.sleep, control={"maxfun": 10}),
        LmerConvergenceWarning,
        r"NLOPT_MAXEVAL_REACHED|failed to converge",
        check=_not_converged,
    ),
    Case(
        "convergence_failure_bobyqa",
        lambda c: lmer(SLEEP, c.sleep, control={"maxfun": 20, "optimizer": "bobyqa"}),
        LmerConvergenceWarning,
        r"maximum number of function evaluations exceeded|failed to converge",
        check=_not_converged,
    ),
    Case(
        "regressor_X_and_y_lengths_differ",
        lambda c: LmerRegressor(SLEEP).fit(c.sleep, c.sleep["Reaction"].iloc[:-1]),
        DataError,
        r"y has shape \(179,\); X has 180 rows",
    ),
]

PREDICT_CASES: list[Case] = [
    Case(
        "unseen_level_of_fixed_effect_factor",
        lambda c: c.factor_fit.predict(c.sleep.head(2).assign(half=["early", "middle"])),
        DataError,
        r"column 'half' of newdata has level\(s\) not seen in training: 'middle'",
    ),
    Case(
        "unused_training_category_is_unseen",
        lambda c: c.factor_fit.predict(c.sleep.head(2).assign(half=["early", "zz"])),
        DataError,
        r"column 'half' of newdata has level\(s\) not seen in training: 'zz'",
    ),
    Case(
        "new_group_level_not_allowed",
        lambda c: c.sleep_fit.predict(
            c.sleep.head(3).assign(Subject=["308", "999", "new"]), allow_new_levels=False
        ),
        DataError,
        r"grouping factor 'Subject' of newdata has 2 level\(s\) not seen in training: '999', 'new'",
    ),
    Case(
        "newdata_lacks_a_predictor",
        lambda c: c.sleep_fit.predict(c.sleep.head(3).drop(columns="Days")),
        DataError,
        r"newdata lacks column\(s\) the model uses: 'Days'",
    ),
    Case(
        "newdata_lacks_the_grouping_column",
        lambda c: c.sleep_fit.predict(c.sleep.head(3).drop(columns="Subject")),
        DataError,
        r"newdata lacks column\(s\) the model uses: 'Subject'",
    ),
    Case(
        "fixed_part_needs_no_grouping_column",
        lambda c: c.sleep_fit.predict(
            c.sleep.head(3).drop(columns="Subject"), include_random=False
        ),
        None,
        check=lambda p: np.testing.assert_allclose(
            p, sleep_fixef()[0] + sleep_fixef()[1] * np.array([0.0, 1.0, 2.0]), rtol=1e-6
        ),
    ),
    Case(
        "text_in_a_numeric_predictor",
        lambda c: c.sleep_fit.predict(c.sleep.head(2).assign(Days=["one", "two"])),
        DataError,
        r"column 'Days' of newdata holds factor values; the model was fitted with numbers",
    ),
    Case(
        "empty_newdata",
        lambda c: c.sleep_fit.predict(c.sleep.iloc[:0]),
        None,
        check=lambda p: _true(len(p) == 0 and p.dtype == float, p),
    ),
    Case(
        "missing_predictor_value_gives_nan",
        lambda c: c.sleep_fit.predict(c.sleep.head(3).assign(Days=[0.0, np.nan, 2.0])),
        None,
        check=lambda p: _true(p.isna().tolist() == [False, True, False], p),
    ),
    Case(
        "newdata_not_a_frame",
        lambda c: c.sleep_fit.predict(c.sleep.head(3).to_numpy()),
        DataError,
        r"newdata must be a pandas DataFrame, a polars DataFrame or a pyarrow Table, not "
        r"numpy.ndarray",
    ),
]


def _mm(random_effects: str = "(1 | individus)", **kwargs: Any) -> MixedMLRegressor:
    return MixedMLRegressor(random_effects=random_effects, max_iter=3, **kwargs)


def _mm_ok(check: Callable[[MixedMLRegressor], bool]) -> Callable[[Any], None]:
    """Check a ``(fitted model, X)`` pair: ``check(model)`` holds, predictions are finite."""

    def run(result: tuple[MixedMLRegressor, pd.DataFrame]) -> None:
        model, X = result
        assert check(model), sorted(model.__dict__)
        assert np.isfinite(model.predict(X)).all()

    return run


def _fit_keep(
    model: MixedMLRegressor, X: pd.DataFrame, y: Any
) -> tuple[MixedMLRegressor, pd.DataFrame]:
    return model.fit(X, y), X


def _true(condition: bool, what: Any) -> None:
    assert condition, what


def _same(pair: tuple[Any, Any]) -> None:
    np.testing.assert_allclose(pair[0], pair[1], rtol=1e-12)


MIXEDML_FIX = "needs a check in MixedMLRegressor.fit (pylmer/mixedml.py); see the report"

MIXEDML_CASES: list[Case] = [
    Case(
        "y_is_text",
        lambda c: _mm().fit(c.X, "s" + c.y.astype(str)),
        DataError,
        r"\by\b.*numeric",
    ),
    Case(
        "missing_value_in_grouping_column",
        lambda c: _mm().fit(c.X.assign(individus=c.X["individus"].where(c.X.index != 3)), c.y),
        DataError,
        r"'individus'",
    ),
    Case(
        "missing_value_in_random_slope_covariate",
        lambda c: _mm("(1 + x2_x5 | individus)", features=["x4_x7"]).fit(
            c.X.assign(x2_x5=c.X["x2_x5"].where(c.X.index != 3)), c.y
        ),
        DataError,
        r"'x2_x5'",
    ),
    Case(
        "missing_value_in_feature_left_to_the_estimator",
        lambda c: _mm().fit(c.X.assign(x4_x7=c.X["x4_x7"].where(c.X.index != 3)), c.y),
        ValueError,  # LinearRegression's own error; NaN-aware estimators (HGB) fit
        r"NaN",
    ),
    Case(
        "grouping_factor_with_one_level",
        lambda c: _mm().fit(c.X.assign(individus=1), c.y),
        PylmerError,
        r"'individus'",
    ),
    Case(
        "grouping_factor_with_as_many_levels_as_rows",
        lambda c: _mm().fit(c.X.assign(individus=np.arange(len(c.X))), c.y),
        RError,
        r"grouping factor 'individus' has as many levels \(180\)",
    ),
    Case(
        "group_with_a_single_observation_fits",
        lambda c: _fit_keep(
            _mm(),
            pd.concat([c.X, c.X.head(1).assign(individus=999)], ignore_index=True),
            pd.concat([c.y, c.y.head(1)], ignore_index=True),
        ),
        None,
        check=_mm_ok(lambda m: 999 in m.ranef_["individus"].index.astype(int)),
    ),
    Case(
        "names_with_spaces_dots_unicode_fit",
        lambda c: _fit_keep(
            _mm("(1 + `x.2 ü` | `sujet é`)"),
            c.X.set_axis(["sujet é", "x.2 ü", "x4_x7"], axis=1),
            c.y,
        ),
        None,
        check=_mm_ok(lambda m: list(m.ranef_) == ["sujet é"] and m.features_ == ["x.2 ü", "x4_x7"]),
    ),
    Case(
        "categorical_group_with_unused_levels_fits",
        lambda c: _fit_keep(
            _mm(),
            c.X.assign(individus=pd.Categorical(c.X["individus"]).add_categories([12345])),
            c.y,
        ),
        None,
        check=_mm_ok(lambda m: len(m.ranef_["individus"]) == 30),
    ),
    Case(  # MixedML passes group ids to R as exact labels: any int64 is a group
        "int64_group_ids_beyond_2_53_fit",
        lambda c: _fit_keep(_mm(), c.X.assign(individus=c.X["individus"] + 2**60 + 1), c.y),
        None,
        check=_mm_ok(lambda m: (2**60 + 2) in m.ranef_["individus"].index),
    ),
    Case(
        "empty_X",
        lambda c: _mm().fit(c.X.iloc[:0], c.y.iloc[:0]),
        DataError,
        r"no rows",
    ),
    Case(
        "duplicate_column_names",
        lambda c: _mm().fit(c.X.set_axis(["individus", "x2_x5", "x2_x5"], axis=1), c.y),
        DataError,
        r"duplicate column names: 'x2_x5'",
    ),
    Case(
        "predict_X_lacks_a_feature",
        lambda c: c.mm_fit.predict(c.X.drop(columns="x4_x7")),
        DataError,
        r"'x4_x7'",
    ),
    Case(
        "predict_X_lacks_the_grouping_column",
        lambda c: c.mm_fit.predict(c.X.drop(columns="individus")),
        DataError,
        r"lacks column\(s\) \['individus'\]",
    ),
    Case(
        "predict_empty_X",
        lambda c: c.mm_fit.predict(c.X.iloc[:0]),
        None,
        check=lambda p: _true(p.shape == (0,), p),
    ),
    Case(
        "predict_missing_group_value_gives_fixed_part",
        lambda c: (
            c.mm_fit.predict(c.X.head(2).assign(individus=pd.array([pd.NA, 1], dtype="Int64"))),
            c.mm_fit.predict(c.X.head(2).assign(individus=[10_000, 1])),
        ),
        None,  # as for a group never seen
        check=_same,
    ),
]


def _run_case(case: Case, ctx: Ctx, capfd: pytest.CaptureFixture[str]) -> None:
    expect = case.expect
    if expect is not None and not issubclass(expect, Warning):
        with pytest.raises(expect, match=case.match):
            case.run(ctx)
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = case.run(ctx)
        if expect is not None:
            texts = [str(w.message) for w in caught if issubclass(w.category, expect)]
            assert any(re.search(case.match, t) for t in texts), [
                f"{w.category.__name__}: {w.message}" for w in caught
            ]
        if case.check is not None:
            case.check(result)
    out, err = capfd.readouterr()
    assert (out, err) == ("", ""), "R or pylmer printed to the console"
    assert_r_usable()


def _params(cases: list[Case]) -> list[Any]:
    return [
        pytest.param(
            c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []
        )
        for c in cases
    ]


@pytest.mark.parametrize("case", _params(LMER_CASES))
def test_lmer_bad_input(case, ctx, capfd):
    _run_case(case, ctx, capfd)


@pytest.mark.parametrize("case", _params(PREDICT_CASES))
def test_predict_bad_input(case, ctx, capfd):
    _run_case(case, ctx, capfd)


@pytest.mark.parametrize("case", _params(MIXEDML_CASES))
def test_mixedml_bad_input(case, ctx, capfd):
    _run_case(case, ctx, capfd)


# ---------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def csvs(tmp_path_factory, sleep) -> Path:
    """Small CSV files, good and bad, for the command-line table."""
    d = tmp_path_factory.mktemp("csv")
    good = sleep.assign(half=np.where(sleep["Days"] < 5, "early", "late"), label="x")
    good.to_csv(d / "sleep.csv", index=False)
    good.head(4).assign(half=["early", "middle", "late", "early"]).to_csv(
        d / "new_half.csv", index=False
    )
    good.head(3).drop(columns="Days").to_csv(d / "no_days.csv", index=False)
    good.head(0).to_csv(d / "empty.csv", index=False)
    good.assign(g="a").to_csv(d / "one_level.csv", index=False)
    good.assign(g=np.arange(180)).to_csv(d / "as_many_levels.csv", index=False)
    _na(good, "Reaction", np.nan).to_csv(d / "na.csv", index=False)
    good.rename(columns={"Reaction": "re act"}).to_csv(d / "space.csv", index=False)
    (d / "dup.csv").write_text("y,y,g\n1,2,a\n3,4,b\n5,6,a\n")
    long = simulate_longitudinal(n_subjects=20, n_times=6, seed=1)
    long = long[["individus", "x2_x5", "y_mixed_obs"]]
    long.to_csv(d / "long.csv", index=False)
    long.assign(y_mixed_obs="s").to_csv(d / "long_text_y.csv", index=False)
    _na(long, "individus", np.nan).to_csv(d / "long_na_group.csv", index=False)
    long.assign(individus=1).to_csv(d / "long_one_level.csv", index=False)
    return d


MM = ("--target", "y_mixed_obs", "--random", "(1 | individus)", "--max-iter", "3")

# id, argv (``{d}`` is the CSV folder), exit status, regex the error / warning line matches
CLI_CASES: list[Any] = [
    ("formula_syntax_error", ["fit", "{d}/sleep.csv", "Reaction ~ Days + (1 | Subject"], 1,
     r"error: cannot parse the formula 'Reaction ~ Days \+ \(1 \| Subject'"),
    ("no_random_effects_term", ["fit", "{d}/sleep.csv", "Reaction ~ Days"], 1,
     r"error: the formula 'Reaction ~ Days' has no random-effects term"),
    ("response_is_text", ["fit", "{d}/sleep.csv", "label ~ Days + (1 | Subject)"], 1,
     r"error: the response 'label' must be numeric"),
    ("missing_response_dropped_with_warning", ["fit", "{d}/na.csv", SLEEP, "--no-pvalues"], 0,
     r"warning: lme4 dropped 1 of 180 rows .*'Reaction': 1"),
    ("grouping_factor_with_one_level", ["fit", "{d}/one_level.csv", "Reaction ~ Days + (1|g)"], 1,
     r"error: R error: grouping factor 'g' has only 1 level \('a'\)"),
    ("grouping_factor_with_as_many_levels_as_rows",
     ["fit", "{d}/as_many_levels.csv", "Reaction ~ Days + (1|g)"], 1,
     r"error: R error: grouping factor 'g' has as many levels \(180\) as observations"),
    ("duplicate_header", ["fit", "{d}/dup.csv", "y ~ 1 + (1 | g)"], 1,
     r"error: .*dup\.csv has duplicate column names: 'y'"),
    ("empty_csv", ["fit", "{d}/empty.csv", SLEEP], 1,
     r"error: .*empty\.csv has no data rows \(columns: Reaction, Days, Subject"),
    ("name_with_space_not_quoted", ["fit", "{d}/space.csv", "re act ~ Days + (1 | Subject)"], 1,
     r"error: cannot parse the formula .*backticks, e\.g\. `re act`"),
    ("predict_unseen_fixed_level",
     ["predict", "{d}/sleep.csv", "Reaction ~ Days + half + (1 | Subject)",
      "--newdata", "{d}/new_half.csv"], 1,
     r"error: column 'half' of newdata has level\(s\) not seen in training: 'middle'"),
    ("predict_newdata_lacks_a_column",
     ["predict", "{d}/sleep.csv", SLEEP, "--newdata", "{d}/no_days.csv"], 1,
     r"error: newdata lacks column\(s\) the model uses: 'Days'"),
    ("mixedml_target_is_text", ["mixedml", "{d}/long_text_y.csv", *MM], 1,
     r"error: the target column 'y_mixed_obs' is not numeric"),
    ("mixedml_missing_group_dropped_with_warning", ["mixedml", "{d}/long_na_group.csv", *MM], 0,
     r"warning: dropping 1 of 120 rows with missing values \(missing per column: 'individus': 1\)"),
    ("mixedml_unbalanced_parentheses",
     ["mixedml", "{d}/long.csv", "--target", "y_mixed_obs", "--random", "(1 | individus"], 1,
     r"error: random effects '\(1 \| individus' has unbalanced parentheses"),
    pytest.param(
        "mixedml_grouping_factor_with_one_level", ["mixedml", "{d}/long_one_level.csv", *MM], 1,
        r"error: .*'individus'",
        id="mixedml_grouping_factor_with_one_level",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case_id", "argv", "status", "match"),
    [pytest.param(*c, id=c[0]) if type(c) is tuple else c for c in CLI_CASES],
)
def test_cli_bad_input(case_id, argv, status, match, csvs, tmp_path, capsys):
    args = [a.replace("{d}", str(csvs)) for a in argv]
    code = cli.main([*args, "--quiet", "--out", str(tmp_path / "out")])
    _, err = capsys.readouterr()
    assert code == status, err
    assert "Traceback" not in err
    kind = "error" if status else "warning"
    lines = [ln for ln in err.splitlines() if ln.startswith(f"pylmer: {kind}:")]
    assert any(re.search(match, ln) for ln in lines), err
    if status:
        assert len([ln for ln in err.splitlines() if ln.startswith("pylmer: error:")]) == 1, err
    assert_r_usable()


# ====================================================================== R failures


class _FailsAt(RegressorMixin, BaseEstimator):
    """Predicts the mean, but breaks the R step (infinite residuals) or raises
    KeyboardInterrupt from its ``fail_at``-th fit on (counted over clones)."""

    fits = 0

    def __init__(self, fail_at: int = 2, how: str = "inf"):
        self.fail_at = fail_at
        self.how = how

    def fit(self, X, y):
        type(self).fits += 1
        self.mean_ = float(np.mean(y))
        self.broken_ = type(self).fits >= self.fail_at
        if self.broken_ and self.how == "interrupt":
            raise KeyboardInterrupt
        return self

    def predict(self, X):
        return np.full(len(X), np.inf if self.broken_ else self.mean_)


_FITTED = ("estimator_", "lmer_", "ranef_", "varcorr_", "n_iter_", "history_")


@pytest.mark.parametrize("how", ["inf", "interrupt"])
def test_failed_refit_leaves_no_stale_fit(ctx, how):
    """A MixedML refit that fails mid-loop (an R error naming the iteration, or Ctrl-C)
    leaves the estimator unfitted, not holding the previous fit's attributes."""
    model = MixedMLRegressor(_FailsAt(fail_at=10**9), random_effects="(1 | individus)", max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(ctx.X, ctx.y)
    assert all(hasattr(model, a) for a in _FITTED)
    _FailsAt.fits = 0
    model.set_params(estimator=_FailsAt(fail_at=2, how=how))
    if how == "inf":
        with pytest.raises(RError, match=r"MixedML iteration 2: .*NA/NaN/Inf"):
            model.fit(ctx.X, ctx.y)
    else:
        with pytest.raises(KeyboardInterrupt):
            model.fit(ctx.X, ctx.y)
    assert not any(hasattr(model, a) for a in _FITTED)
    with pytest.raises(NotFittedError):
        model.predict(ctx.X)
    assert_r_usable()


def test_mixedml_singular_fit_warns_and_keeps_lme4_message(ctx):
    """No group effect in y: the random-effects fit is singular, said once as a
    SingularFitWarning, with lme4's message on the final model."""
    noise = pd.Series(np.random.default_rng(0).normal(size=len(ctx.X)))
    noise -= noise.groupby(ctx.X["individus"].to_numpy()).transform("mean")  # no group effect
    y = 2.0 * ctx.X["x2_x5"].to_numpy() + noise.to_numpy()
    with pytest.warns(SingularFitWarning, match="singular") as record:
        model = MixedMLRegressor(random_effects="(1 | individus)", max_iter=5).fit(ctx.X, y)
    assert len([w for w in record if issubclass(w.category, SingularFitWarning)]) == 1
    assert model.lmer_.is_singular
    assert any("singular" in m for m in model.lmer_.messages), model.lmer_.messages


# ====================================================================== concurrency


def _summary(m: Any) -> np.ndarray:
    return np.r_[m.fixef_wald["estimate"], m.theta, m.sigma, m.loglik]


def _variant(sleep: pd.DataFrame, k: int) -> pd.DataFrame:
    """Distinct data per task, so that a mix-up between threads shows in the numbers."""
    return sleep.assign(Reaction=sleep["Reaction"] * (1 + k / 10) + k)


def test_threads_serialise_and_match_sequential_fits(sleep):
    tasks = [(k, reml) for k in range(6) for reml in (True, False)]
    expected = {t: _summary(lmer(SLEEP, _variant(sleep, t[0]), reml=t[1])) for t in tasks}
    start = threading.Barrier(4)

    def work(chunk: list[tuple[int, bool]]) -> dict:
        start.wait()
        out = {}
        for k, reml in chunk:
            with pytest.raises(FormulaError):  # errors in between do not disturb anyone
                lmer("Reaction ~ Nope + (1 | Subject)", sleep)
            m = lmer(SLEEP, _variant(sleep, k), reml=reml)
            out[k, reml] = (_summary(m), m.predict(sleep.head(5)).to_numpy())
        return out

    with ThreadPoolExecutor(4) as pool:
        results = {}
        for part in pool.map(work, [tasks[i::4] for i in range(4)]):
            results.update(part)
    assert set(results) == set(tasks)
    for t, (summary, pred) in results.items():
        np.testing.assert_allclose(summary, expected[t], rtol=1e-10, err_msg=str(t))
        fitted = lmer(SLEEP, _variant(sleep, t[0]), reml=t[1]).predict(sleep.head(5))
        np.testing.assert_allclose(pred, fitted, rtol=1e-10, err_msg=str(t))


def test_joblib_loky_workers_each_run_their_own_r(sleep):
    joblib = pytest.importorskip("joblib")
    from joblib.externals.loky import get_reusable_executor

    tasks = [(k, reml) for k in range(2) for reml in (True, False)]
    try:
        fits = joblib.Parallel(n_jobs=2, backend="loky")(
            joblib.delayed(lmer)(SLEEP, _variant(sleep, k), reml=reml) for k, reml in tasks
        )
        started = set(joblib.Parallel(n_jobs=2, backend="loky")(
            joblib.delayed(_r.started)() for _ in range(4)
        ))  # fmt: skip
    finally:
        get_reusable_executor().shutdown(wait=True)
    assert started == {True}  # each worker started its own R for its fits
    for (k, reml), m in zip(tasks, fits, strict=True):
        here = lmer(SLEEP, _variant(sleep, k), reml=reml)
        np.testing.assert_allclose(_summary(m), _summary(here), rtol=1e-10)
        # the model came back pickled: predict refits it in this process's R
        np.testing.assert_allclose(m.predict(sleep.head(3)), here.predict(sleep.head(3)))


# ====================================================================== interrupt

INTERRUPT_SCRIPT = """
import json, os, signal, threading, time
import numpy as np, pandas as pd
from pylmer import datasets, lmer
sleep = datasets.load("sleepstudy")
before = lmer("Reaction ~ Days + (Days | Subject)", sleep).fixef_wald["estimate"].tolist()
rng = np.random.default_rng(0)
n = 40_000  # crossed random slopes: minutes of lme4 work
a, b = rng.integers(0, 800, n), rng.integers(0, 600, n)
big = pd.DataFrame({"y": rng.normal(size=n) + rng.normal(size=800)[a] + rng.normal(size=600)[b],
                    "x": rng.normal(size=n), "a": pd.Categorical(a), "b": pd.Categorical(b)})
threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT)).start()
start = time.perf_counter()
try:
    lmer("y ~ x + (1 + x | a) + (1 + x | b)", big)
    outcome = "finished"
except KeyboardInterrupt:
    outcome = "KeyboardInterrupt"
seconds = time.perf_counter() - start
after = lmer("Reaction ~ Days + (Days | Subject)", sleep).fixef_wald["estimate"].tolist()
print(json.dumps({"outcome": outcome, "seconds": seconds, "before": before, "after": after}))
"""


def test_keyboard_interrupt_during_a_long_fit_returns_and_next_fit_works():
    proc = subprocess.run(
        [sys.executable, "-c", INTERRUPT_SCRIPT], capture_output=True, text=True, timeout=90
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["outcome"] == "KeyboardInterrupt", report
    assert report["seconds"] < 10, report  # signal at 1.5 s
    assert report["after"] == report["before"]
    assert "Exception ignored" not in proc.stderr, proc.stderr


# ====================================================================== memory


def test_repeated_fits_release_r_objects(sleep):
    """200 sleepstudy fits: R's heap in use, the bound data and the process RSS stay flat.

    Keeping the 200 models alive instead grows R's heap by about 15 MB and the RSS by about
    20 MB on lme4 1.1-31, so the bounds below catch a leak of the R objects.
    """
    psutil = pytest.importorskip("psutil")
    proc = psutil.Process()

    def r_heap_mb() -> float:
        used = _r.call("gc", full=True)  # Ncells, Vcells x (used, (Mb), ...)
        return float(used.iloc[0, 1] + used.iloc[1, 1])

    def n_bound() -> int:
        store = _r.RObject(_r._state["store"], ("environment",))
        names = _r.call("ls", envir=store)
        return 0 if names is None else len(np.atleast_1d(names))

    for _ in range(40):  # warm-up: R's heap grows to its working size
        m = lmer(SLEEP, sleep).predict(sleep.head(2))
    gc.collect()
    heap0, bound0, rss0 = r_heap_mb(), n_bound(), proc.memory_info().rss
    for _ in range(200):
        m = lmer(SLEEP, sleep)
        m.predict(sleep.head(2))
    del m
    gc.collect()
    heap1, bound1, rss1 = r_heap_mb(), n_bound(), proc.memory_info().rss
    assert heap1 - heap0 < 2.0, (heap0, heap1)
    assert bound1 <= bound0, (bound0, bound1)
    assert (rss1 - rss0) / 2**20 < 15, (rss0, rss1)


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
