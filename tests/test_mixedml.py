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
from threadpoolctl import threadpool_limits

import pylmer
from pylmer import MixedMLRegressor
from pylmer.data.simulate import simulate_longitudinal

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
    # lme4's fit in the loop is lme4's ML fit; varcorr_ holds the honest residual
    # variance (pylmer.mixedml.variance: ML's -p/n bias removed), the rest unchanged
    assert rel(linear_fit.lmer_.varcorr["variance"], ref.varcorr["variance"]) < 1e-3
    assert rel(linear_fit.varcorr_["variance"][:-1], ref.varcorr["variance"][:-1]) < 1e-3
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
        HistGradientBoostingRegressor(max_iter=30, random_state=0),
    ],
    ids=["hgb"],  # the forest: test_forest_with_defaults_converges_without_warning
)
def test_nonlinear_estimator_beats_plain_estimator_on_held_out_times(estimator):
    """Defaults (stopping rule, residuals="auto"): no ConvergenceWarning, better forecasts."""
    df = simulate_longitudinal(n_subjects=80, n_times=14, seed=11)
    train, test = df[df["temps"] < 10], df[df["temps"] >= 10]
    cols = ["individus", *RAW, *SLOPES]
    # one OpenMP thread: on a loaded test machine, spinning OpenMP barriers make
    # HistGradientBoosting's fit times erratic (speed is measured in bench/, not here)
    with warnings.catch_warnings(), threadpool_limits(1, user_api="openmp"):
        warnings.simplefilter("error", ConvergenceWarning)
        plain = clone(estimator).fit(train[RAW + SLOPES], train["y_mixed_obs"])
        mse_plain = np.mean((plain.predict(test[RAW + SLOPES]) - test["y_mixed"]) ** 2)
        mixed = MixedMLRegressor(clone(estimator), random_effects=RE)
        mixed.fit(train[cols], train["y_mixed_obs"])
        mse_mixed = np.mean((mixed.predict(test[cols]) - test["y_mixed"]) ** 2)
    assert mixed.converged_ and mixed.n_iter_ < mixed.max_iter
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
    assert rel(both.lmer_[1].varcorr["variance"], one.lmer_.varcorr["variance"]) < 1e-3


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
    part = small[small["individus"] <= 40]
    X = part[["individus", *SLOPES]]
    y = part["y_mixed_obs"]
    groups = part["individus"]
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


# ------------------------------------------------------------------ second generation


def test_final_state_is_the_fitted_model(small, linear_fit):
    """lmer_ is the loop's last lme4 fit: its log-likelihood is the last accepted state's,
    and its response is y minus the final estimator's predictions (no refit afterwards)."""
    h = linear_fit.history_
    last = h[h["accepted"]]["loglik"].iloc[-1]
    assert linear_fit.lmer_.loglik == last
    X = small[["individus", *SLOPES]]
    resp = small["y_mixed_obs"].to_numpy() - linear_fit.estimator_.predict(X[SLOPES])
    np.testing.assert_allclose(linear_fit.lmer_.data[".pylmer_e"], resp, rtol=1e-12)
    assert linear_fit.stop_reason_ == "tol" and linear_fit.converged_
    assert linear_fit.n_iter_ <= linear_fit.max_iter


@pytest.mark.parametrize(
    ("random_effects", "fixed"),
    [
        ("(1 + x2_x5 || individus)", ".pylmer_e ~ 1 + x2_x5 + (1 + x2_x5 || individus)"),
        ("(1 + x2_x5 | individus)", ".pylmer_e ~ 1 + x2_x5 + (1 + x2_x5 | individus)"),
        ("(0 + x2_x5 | individus)", ".pylmer_e ~ 1 + x2_x5 + (0 + x2_x5 | individus)"),
        ("(1 | clinic/individus)", ".pylmer_e ~ 1 + (1 | clinic/individus)"),
        ("(1 | individus) + (1 | temps)", ".pylmer_e ~ 1 + (1 | individus) + (1 | temps)"),
    ],
)
def test_residual_model_comes_from_r_parse(r_session, random_effects, fixed):
    from pylmer.mixedml.lme4_step import ResidualModel

    assert ResidualModel.parse(random_effects).formula == fixed


def test_nested_and_crossed_random_parts_fit_and_index_by_original_values():
    df = simulate_longitudinal(n_subjects=40, n_times=6, seed=4)
    df["clinic"] = np.where(df["individus"] % 4 == 0, "north", "south")
    df["day"] = df["temps"].astype(float)  # float ids 0.0, 1.0, ...
    X = df[["individus", "clinic", "day", *SLOPES]]
    y = df["y_mixed_obs"]
    nested = MixedMLRegressor(random_effects="(1 | clinic/individus)", features=SLOPES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pylmer.SingularFitWarning)  # 2 clinics: var ~ 0
        nested.fit(X, y)
    inner = nested.ranef_["individus:clinic"]
    assert inner.index.names == ["individus", "clinic"] and (1, "south") in inner.index
    assert set(nested.ranef_["clinic"].index) == {"north", "south"}
    crossed = MixedMLRegressor(
        random_effects="(1 | individus) + (1 | day)", features=SLOPES, tol=1e-8
    )
    crossed.fit(X, y)
    assert list(crossed.ranef_["day"].index) == [float(t) for t in range(6)]
    # crossed effects: every row's prediction uses both factors' effects
    as_text = df.assign(day=df["day"].astype(str))
    ref = pylmer.lmer(
        f"y_mixed_obs ~ {' + '.join(SLOPES)} + (1 | individus) + (1 | day)", as_text, reml=False
    )
    np.testing.assert_allclose(crossed.lmer_.loglik, ref.loglik, rtol=1e-6)
    np.testing.assert_allclose(crossed.predict(X), ref.predict(as_text), rtol=1e-4)


@pytest.mark.parametrize(
    "ids",
    [
        lambda g: g.astype(float),  # 1.0, 2.0: R's level "1", not "1.0"
        lambda g: g.astype(np.int64) + 2**40,  # int64 beyond 2**31
        lambda g: "s" + g.astype(str),
        lambda g: pd.Categorical(g, categories=sorted(g.unique(), reverse=True)),
    ],
    ids=["float", "int64_big", "string", "categorical"],
)
def test_group_labels_round_trip(small, ids):
    X = small[["individus", *SLOPES]].assign(individus=ids(small["individus"]))
    y = small["y_mixed_obs"]
    model = MixedMLRegressor(random_effects="(1 | individus)", features=SLOPES).fit(X, y)
    index = model.ranef_["individus"].index
    assert set(index) == set(pd.unique(X["individus"]))
    # known groups are recognised: predict(X, y) with NaN outcomes equals predict(X)
    part = X.iloc[:30]
    np.testing.assert_allclose(model.predict(part, y=np.full(30, np.nan)), model.predict(part))
    # and they carry their own effect (not the fixed part of a new group)
    assert not np.allclose(model.predict(part), _fixed_part_of_new(model, part))


def _fixed_part_of_new(model, X):
    return (
        model.estimator_.predict(X[model.features_])
        + model.lmer_.predict(
            model._coding.encode(X[model.re_columns_]), include_random=False
        ).to_numpy()
    )


def test_predict_uses_new_visits_of_known_subjects():
    """A known subject's later visits update their trajectory (empirical Bayes with the
    training rows and the new rows together, variance parameters fixed)."""
    sleep = pylmer.datasets.load("sleepstudy")
    train, later = sleep[sleep["Days"] < 5], sleep[sleep["Days"] >= 5]
    cols = ["Subject", "Days"]
    model = MixedMLRegressor(random_effects="(Days | Subject)", tol=1e-7)
    model.fit(train[cols], train["Reaction"])
    seen = later["Days"] <= 6  # days 5 and 6 observed, 7-9 to forecast
    y = later["Reaction"].where(seen).to_numpy()
    updated = model.predict(later[cols], y=y)
    plain = model.predict(later[cols])
    truth = later["Reaction"].to_numpy()
    forecast = ~seen.to_numpy()
    assert np.mean((updated - truth)[forecast] ** 2) < 0.8 * np.mean((plain - truth)[forecast] ** 2)
    # the same as refitting lme4's conditional modes on all rows with theta fixed: the new
    # rows of one subject move only that subject's prediction
    one = later["Subject"] == later["Subject"].iloc[0]
    y_one = np.where(one & seen, later["Reaction"], np.nan)
    moved = model.predict(later[cols], y=y_one) != plain
    assert moved[one.to_numpy()].all() and not moved[~one.to_numpy()].any()


def test_errors_are_in_the_family(small):
    X = small[["individus", *SLOPES]]
    y = small["y_mixed_obs"]
    model = MixedMLRegressor(random_effects=RE)
    with pytest.raises(pylmer.NotFittedError) as info:
        model.predict(X)
    assert isinstance(info.value, NotFittedError)  # scikit-learn's too
    model.fit(X, y)
    with pytest.raises(pylmer.DataError, match=r"X has 960 rows but y has 10 values"):
        model.predict(X, y=y[:10])
    text = X.assign(level=np.where(small["temps"] < 5, "low", "high"))
    with pytest.raises(pylmer.DataError, match=r"\['level'\] are not numeric"):
        MixedMLRegressor(random_effects=RE).fit(text, y)
    # a failed fit leaves nothing fitted, not even the previous fit's attributes
    with pytest.raises(pylmer.DataError, match="y has 959 values"):
        model.fit(X, y.iloc[:-1])
    assert not hasattr(model, "estimator_") and not hasattr(model, "history_")
    with pytest.raises(pylmer.NotFittedError):
        model.predict(X)


def test_forest_with_defaults_converges_without_warning():
    df = simulate_longitudinal(n_subjects=60, n_times=12, seed=6)
    train, test = df[df["temps"] < 9], df[df["temps"] >= 9]
    cols = ["individus", *RAW, *SLOPES]
    rf = RandomForestRegressor(n_estimators=40, random_state=0, n_jobs=1)
    model = MixedMLRegressor(rf, random_effects=RE, features=RAW)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model.fit(train[cols], train["y_mixed_obs"])
    assert model.converged_ and model.stop_reason_ in ("tol", "stationary")
    assert model.residuals_used_ == "oob"
    assert model.n_iter_ < model.max_iter
    plain = clone(rf).fit(train[RAW], train["y_mixed_obs"])
    mse_plain = np.mean((plain.predict(test[RAW]) - test["y_mixed"]) ** 2)
    mse_mixed = np.mean((model.predict(test[cols]) - test["y_mixed"]) ** 2)
    assert mse_mixed < 0.5 * mse_plain, (mse_mixed, mse_plain)


def test_pickled_model_predicts_the_same(small, linear_fit):
    import pickle

    X = small[["individus", *SLOPES]].iloc[:50]
    y = np.where(np.arange(50) % 2 == 0, small["y_mixed_obs"].iloc[:50], np.nan)
    copy = pickle.loads(pickle.dumps(linear_fit))
    # the copy's lmer_ rebuilds its R object by refitting the same data (LmerModel's
    # unpickling): the same optimum up to lme4's optimizer tolerance
    np.testing.assert_allclose(copy.predict(X), linear_fit.predict(X), rtol=1e-7)
    np.testing.assert_allclose(copy.predict(X, y=y), linear_fit.predict(X, y=y), rtol=1e-7)
