"""MixedMLRegressor against real lme4 (embedded R)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

import pylmer
from pylmer import MixedMLRegressor
from pylmer._simulate import simulate_longitudinal

RE = "(1 + x2_x5 + x4_x7 + x6_x8 || individus)"
SLOPES = ["x2_x5", "x4_x7", "x6_x8"]
RAW = [f"x{i}_obs" for i in range(1, 9)]


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return simulate_longitudinal(n_subjects=80, n_times=12, seed=3)


@pytest.fixture(scope="module")
def linear_fit(small):
    X = small[["individus", *SLOPES]]
    model = MixedMLRegressor(random_effects=RE, tol=1e-7, max_iter=60)
    return model.fit(X, small["y_mixed_obs"])


def rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


def _fixed_part(model: MixedMLRegressor, X: pd.DataFrame) -> np.ndarray:
    """The model's fixed part f(X) + X_r gamma: its prediction for groups never seen."""
    return model.predict(X.assign(individus=X["individus"] + 10_000))


def test_linear_estimator_reproduces_lmer_ml(small, linear_fit):
    ref = pylmer.lmer(f"y_mixed_obs ~ {' + '.join(SLOPES)} + {RE}", small, reml=False)
    assert linear_fit.converged_
    X = small[["individus", *SLOPES]]
    # the fixed part is linear in X: its coefficients are lme4's fixed effects
    fixed = _fixed_part(linear_fit, X)
    ours = LinearRegression().fit(X[SLOPES], fixed)
    assert rel(np.r_[ours.intercept_, ours.coef_], ref.fixef["estimate"].to_numpy()) < 1e-3
    assert rel(linear_fit.varcorr_["variance"], ref.varcorr["variance"]) < 1e-3
    assert abs(linear_fit.lmer_.loglik - ref.loglik) / abs(ref.loglik) < 1e-6
    # random effects: MixedML's u equals lmer's conditional modes
    ours_u = linear_fit.ranef_["individus"]
    theirs_u = ref.ranef["individus"].loc[ours_u.index]
    assert (
        np.max(np.abs(ours_u.to_numpy() - theirs_u.to_numpy()))
        < 1e-3 * np.abs(theirs_u.to_numpy()).max()
    )
    # and the predictions are lme4's
    theirs = ref.predict(small).to_numpy()
    assert np.max(np.abs(linear_fit.predict(X) - theirs)) < 1e-4 * np.max(np.abs(theirs))


def test_fitted_attributes_and_history(linear_fit):
    h = linear_fit.history_
    assert len(h) == linear_fit.n_iter_ >= 2
    for col in ("loglik", "sigma", "max_delta_u", "train_mse", "seconds_ml", "seconds_re"):
        assert col in h.columns
    assert any(c.startswith("var(") for c in h.columns)
    # EM increases the marginal likelihood up to optimizer noise
    assert h["loglik"].iloc[-1] >= h["loglik"].iloc[0] - 1e-6
    assert isinstance(linear_fit.lmer_, pylmer.LmerModel)
    assert set(linear_fit.ranef_) == {"individus"}
    assert list(linear_fit.ranef_["individus"].columns) == ["(Intercept)", *SLOPES]


def test_acceleration_reaches_same_fixed_point_in_fewer_iterations(small, linear_fit):
    X = small[["individus", *SLOPES]]
    plain = MixedMLRegressor(random_effects=RE, tol=1e-7, max_iter=200, accelerate=False)
    plain.fit(X, small["y_mixed_obs"])
    assert rel(plain.varcorr_["variance"], linear_fit.varcorr_["variance"]) < 1e-3
    assert linear_fit.n_iter_ <= plain.n_iter_


def test_unseen_groups_get_fixed_part_and_known_groups_their_effects(small, linear_fit):
    X = small[["individus", *SLOPES]]
    ref = pylmer.lmer(f"y_mixed_obs ~ {' + '.join(SLOPES)} + {RE}", small, reml=False)
    population = ref.predict(small, include_random=False).to_numpy()
    unseen = _fixed_part(linear_fit, X)
    assert np.max(np.abs(unseen - population)) < 1e-4 * np.max(np.abs(population))
    known = linear_fit.predict(X)
    assert np.max(np.abs(known - unseen)) > 1.0  # random effects matter here


def test_predict_new_subjects_from_first_visits(small, linear_fit):
    new = small.assign(individus=small["individus"] + 10_000)
    X = new[["individus", *SLOPES]]
    y = new["y_mixed_obs"].to_numpy().copy()
    later = new["temps"].to_numpy() >= 4
    y[later] = np.nan
    without = linear_fit.predict(X)
    with_first = linear_fit.predict(X, y=y)
    truth = new["y_mixed_obs"].to_numpy()
    mse_without = np.mean((without - truth)[later] ** 2)
    mse_with = np.mean((with_first - truth)[later] ** 2)
    assert mse_with < 0.7 * mse_without
    # no observed outcome: the fit's own random effects
    X_known = small[["individus", *SLOPES]]
    np.testing.assert_allclose(
        linear_fit.predict(X_known, y=np.full(len(X_known), np.nan)),
        linear_fit.predict(X_known),
        rtol=1e-12,
    )


@pytest.mark.parametrize(
    "estimator",
    [
        HistGradientBoostingRegressor(max_iter=60, random_state=0),
        RandomForestRegressor(n_estimators=60, min_samples_leaf=5, random_state=0, n_jobs=2),
    ],
    ids=["hgb", "rf"],
)
def test_nonlinear_estimator_beats_plain_estimator_on_held_out_times(estimator):
    df = simulate_longitudinal(n_subjects=150, n_times=16, seed=11)
    train, test = df[df["temps"] < 12], df[df["temps"] >= 12]
    cols = ["individus", *RAW, *SLOPES]
    plain = clone(estimator).fit(train[RAW + SLOPES], train["y_mixed_obs"])
    mse_plain = np.mean((plain.predict(test[RAW + SLOPES]) - test["y_mixed"]) ** 2)
    mixed = MixedMLRegressor(clone(estimator), random_effects=RE, max_iter=8, tol=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 8 iterations are enough here
        mixed.fit(train[cols], train["y_mixed_obs"])
    mse_mixed = np.mean((mixed.predict(test[cols]) - test["y_mixed"]) ** 2)
    assert mse_mixed < 0.5 * mse_plain, (mse_mixed, mse_plain)


def test_oof_residuals_keep_random_effects_out_of_the_forest():
    df = simulate_longitudinal(n_subjects=60, n_times=12, seed=5)
    train, test = df[df["temps"] < 9], df[df["temps"] >= 9]
    cols = ["individus", *RAW, *SLOPES]
    rf = RandomForestRegressor(n_estimators=30, random_state=0, n_jobs=2)
    model = MixedMLRegressor(rf, random_effects=RE, residuals="oof", cv=3, max_iter=5, tol=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(train[cols], train["y_mixed_obs"])
    assert model.history_["seconds_ml"].iloc[0] > 0
    plain = clone(rf).fit(train[RAW + SLOPES], train["y_mixed_obs"])
    mse_plain = np.mean((plain.predict(test[RAW + SLOPES]) - test["y_mixed"]) ** 2)
    mse_oof = np.mean((model.predict(test[cols]) - test["y_mixed"]) ** 2)
    assert mse_oof < 0.5 * mse_plain, (mse_oof, mse_plain)


def test_max_iter_warns_and_reports_not_converged(small):
    X = small[["individus", *RAW, *SLOPES]]
    with pytest.warns(ConvergenceWarning, match="did not converge.*increase max_iter"):
        model = MixedMLRegressor(random_effects=RE, features=RAW, max_iter=3, tol=1e-12).fit(
            X, small["y_mixed_obs"]
        )
    assert not model.converged_ and model.n_iter_ == 3 and model.stop_reason_ == "max_iter"


def test_several_targets_one_random_effects_model_each(small):
    X = small[["individus", *SLOPES]]
    Y = small[["y_mixed_obs", "y_fixed_obs"]]
    both = MixedMLRegressor(random_effects=RE, tol=1e-7, max_iter=60).fit(X, Y)
    assert isinstance(both.lmer_, list) and len(both.lmer_) == 2
    assert both.predict(X).shape == (len(X), 2)
    one = MixedMLRegressor(random_effects=RE, tol=1e-7, max_iter=60).fit(X, Y["y_fixed_obs"])
    assert rel(both.varcorr_[1]["variance"], one.varcorr_["variance"]) < 1e-3


def test_sklearn_conventions(small):
    model = MixedMLRegressor(Ridge(alpha=1.0), random_effects=RE, max_iter=5)
    params = model.get_params()
    assert params["random_effects"] == RE and params["estimator__alpha"] == 1.0
    copy = clone(model)
    assert copy.estimator is not model.estimator
    with pytest.raises(NotFittedError):
        model.predict(small[["individus", *SLOPES]])
    assert MixedMLRegressor(random_effects=RE).estimator is None  # default built lazily


def test_grid_search_and_cross_val_score_with_group_folds(small):
    X = small[["individus", *SLOPES]]
    y = small["y_mixed_obs"]
    groups = small["individus"]
    model = MixedMLRegressor(Ridge(), random_effects=RE, max_iter=8, tol=1e-4)
    scores = cross_val_score(model, X, y, groups=groups, cv=GroupKFold(n_splits=3))
    assert scores.shape == (3,) and np.isfinite(scores).all()
    grid = GridSearchCV(model, {"estimator__alpha": [0.1, 10.0]}, cv=GroupKFold(n_splits=2))
    grid.fit(X, y, groups=groups)
    assert grid.best_params_["estimator__alpha"] in (0.1, 10.0)


def test_pipeline_as_inner_estimator(small):
    X = small[["individus", *SLOPES]]
    pipe = make_pipeline(FunctionTransformer(lambda d: d * 1.0), LinearRegression())
    model = MixedMLRegressor(pipe, random_effects=RE, tol=1e-6, max_iter=40).fit(
        X, small["y_mixed_obs"]
    )
    assert model.converged_
    assert np.isfinite(model.predict(X)).all()


class _BreaksAtSecondFit(RegressorMixin, BaseEstimator):
    """Predicts infinities from its second fit on: lme4 then fails inside the loop."""

    calls = 0

    def fit(self, X, y):
        type(self).calls += 1
        self.broken_ = type(self).calls >= 2
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X):
        return np.full(len(X), np.inf if self.broken_ else self.mean_)


def test_r_error_mid_loop_names_iteration_and_leaves_unfitted(small):
    _BreaksAtSecondFit.calls = 0
    X = small[["individus", *SLOPES]]
    model = MixedMLRegressor(_BreaksAtSecondFit(), random_effects=RE, max_iter=5)
    with pytest.raises(pylmer.PylmerError, match="iteration 2"):
        model.fit(X, small["y_mixed_obs"])
    with pytest.raises(NotFittedError):
        model.predict(X)
    # R is still usable
    again = MixedMLRegressor(random_effects="(1 | individus)", max_iter=30).fit(
        X, small["y_mixed_obs"]
    )
    assert np.isfinite(again.predict(X)).all()


@pytest.mark.parametrize(
    ("random_effects", "X_cols", "error", "match"),
    [
        ("(1 | nosuch)", ["individus", *SLOPES], pylmer.DataError, "nosuch"),
        ("x2_x5", ["individus", *SLOPES], pylmer.FormulaError, "no random-effects term"),
        ("(1 + | individus", ["individus", *SLOPES], pylmer.FormulaError, "cannot parse"),
    ],
)
def test_bad_random_effects(small, random_effects, X_cols, error, match):
    with pytest.raises(error, match=match):
        MixedMLRegressor(random_effects=random_effects).fit(small[X_cols], small["y_mixed_obs"])


def test_bad_inputs(small):
    X = small[["individus", *SLOPES]]
    model = MixedMLRegressor(random_effects=RE)
    with pytest.raises(pylmer.DataError, match="DataFrame"):
        model.fit(X.to_numpy(), small["y_mixed_obs"])
    with pytest.raises(pylmer.DataError, match="rows"):
        model.fit(X, small["y_mixed_obs"].iloc[:-3])
    y = small["y_mixed_obs"].to_numpy().copy()
    y[3] = np.nan
    with pytest.raises(pylmer.DataError, match="missing"):
        model.fit(X, y)


def test_one_new_subject_from_first_days_sleepstudy():
    sleep = pylmer.datasets.load("sleepstudy")
    train, new = sleep[sleep["Subject"] != "310"], sleep[sleep["Subject"] == "310"]
    cols = ["Subject", "Days"]
    model = MixedMLRegressor(random_effects="(Days | Subject)", tol=1e-7, max_iter=60)
    model.fit(train[cols], train["Reaction"])
    y = new["Reaction"].to_numpy().copy()
    y[3:] = np.nan
    updated = model.predict(new[cols], y=y)
    population = model.predict(new[cols])
    truth = new["Reaction"].to_numpy()
    assert np.mean((updated - truth)[3:] ** 2) < np.mean((population - truth)[3:] ** 2)


def test_linear_estimator_on_other_features_increases_likelihood_monotonically():
    # the estimator cannot represent the random-part covariates: the residual model keeps a
    # linear term, and every plain step is an exact block update of one joint model
    df = simulate_longitudinal(n_subjects=100, n_times=14, seed=2)
    train, test = df[df["temps"] < 10], df[df["temps"] >= 10]
    cols = ["individus", *RAW, *SLOPES]
    model = MixedMLRegressor(
        LinearRegression(), random_effects=RE, features=RAW, accelerate=False, max_iter=12
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(train[cols], train["y_mixed_obs"])
    assert (np.diff(model.history_["loglik"].to_numpy()) > -1e-6).all()
    alone = LinearRegression().fit(train[RAW], train["y_mixed_obs"])
    mse_alone = np.mean((alone.predict(test[RAW]) - test["y_mixed"]) ** 2)
    mse_mixed = np.mean((model.predict(test[cols]) - test["y_mixed"]) ** 2)
    assert mse_mixed < 0.5 * mse_alone, (mse_mixed, mse_alone)
