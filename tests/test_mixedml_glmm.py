"""MixedML for binary and count targets (glmer step) against plain R on this machine."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from _refcache import reference
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestClassifier
from sklearn.exceptions import NotFittedError
from threadpoolctl import threadpool_limits

import pylmer
from pylmer import MixedMLClassifier, MixedMLRegressor
from pylmer.errors import DataError, InvalidArgumentError


def _case(name: str) -> tuple[dict, pd.DataFrame, np.ndarray]:
    ref = reference("reference_mixedml_glmm.R", name)
    data = pd.DataFrame(ref["data"])
    return ref, data[["x", "g"]], data["y"].to_numpy()


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


@pytest.fixture(scope="module")
def binary_fit(r_session):
    ref, X, y = _case("binary")
    model = MixedMLClassifier(random_effects="(1 | g)", tol=1e-6, max_iter=40)
    return ref, X, y, model.fit(X, y)


# Tolerances of the comparisons with glmer's own fit: both the loop and glmer's optimizer
# stop at their own tolerances (bobyqa on theta, PIRLS on the modes; glmer's warm-started
# refits move theta by ~1e-5 between identical steps), so the two optima agree to a few
# 1e-4 relative, not to 1e-6 as for one and the same fit.
RTOL = 2e-3


def test_linear_estimator_reaches_glmer_laplace_fit(binary_fit):
    ref, X, _, model = binary_fit
    assert model.converged_ and model.stop_reason_ in ("tol", "stationary")
    assert model.n_iter_ <= 40
    slope = model.estimator_.coef_[0]
    intercept = model.estimator_.intercept_ + model.glmer_.fixef.loc["(Intercept)", "estimate"]
    np.testing.assert_allclose(slope, ref["fixef"]["x"], rtol=RTOL)
    np.testing.assert_allclose(intercept, ref["fixef"]["(Intercept)"], rtol=5 * RTOL)
    sd = float(np.sqrt(model.varcorr_["variance"].iloc[0]))
    np.testing.assert_allclose(sd, np.atleast_1d(ref["theta"])[0], rtol=RTOL)
    # glmer's fitted probabilities are at the conditional modes
    np.testing.assert_allclose(
        model.predict_proba(X, integrate=False)[:, 1], ref["fitted"], atol=1e-3
    )
    # the Laplace term of the working response matters: without it the fixed point would
    # be the penalised-quasi-likelihood one (lme4's nAGQ = 0), 5% away on this slope
    assert abs(slope - ref["fixef"]["x"]) < abs(ref["fixef_agq0"]["x"] - ref["fixef"]["x"]) / 10


def test_prediction_uses_lme4s_conditional_modes(binary_fit):
    ref, X, _, model = binary_fit
    # training rows: empirical Bayes from the training outcomes is glmer's own modes
    link = model.decision_function(X)
    np.testing.assert_allclose(link, _logit(model.glmer_.fitted.to_numpy()), atol=1e-6)
    ranef = model.ranef_["g"]["(Intercept)"]
    assert set(ranef.index) == set(X["g"])
    # glmer's own modes of y ~ x + (1 | g), at the tolerance of the two optima
    levels = ref["ranef"]["level"]
    np.testing.assert_allclose(ranef.loc[levels], ref["ranef"]["value"], atol=5e-3)


def test_history_and_loglik(binary_fit):
    ref, _, _, model = binary_fit
    h = model.history_
    assert len(h) == model.n_iter_
    assert {"loglik", "delta_loglik", "max_delta_u", "train_deviance"} <= set(h.columns)
    np.testing.assert_allclose(model.glmer_.loglik, ref["loglik"], atol=1e-2)
    assert model.residual_formula_.replace(" ", "").endswith("offset(.pylmer_f)")


def test_poisson_regressor_reaches_glmer_fit(r_session):
    ref, X, y = _case("counts")
    model = MixedMLRegressor(random_effects="(1 | g)", family="poisson", tol=1e-6, max_iter=40)
    model.fit(X, pd.Series(y, name="count"))
    assert model.converged_ and model.stop_reason_ in ("tol", "stationary")
    np.testing.assert_allclose(model.estimator_.coef_[0], ref["fixef"]["x"], rtol=RTOL)
    np.testing.assert_allclose(
        np.sqrt(model.varcorr_["variance"].iloc[0]), np.atleast_1d(ref["theta"])[0], rtol=RTOL
    )
    mu = model.predict(X)
    np.testing.assert_allclose(mu, ref["fitted"], rtol=1e-3)
    assert clone(model).get_params()["family"] == "poisson"
    # a new group's observed counts raise its expected counts (EB, variances fixed)
    new = pd.DataFrame({"x": np.zeros(4), "g": ["new"] * 4})
    base = model.predict(new)
    high = model.predict(new, y=[12, 15, np.nan, np.nan])
    assert (high > 1.5 * base).all()
    np.testing.assert_allclose(high[2], high[3])
    with pytest.raises(DataError, match="negative"):
        model.predict(new, y=[-1, 0, 0, 0])


def test_new_subject_outcomes_move_its_probabilities(binary_fit):
    model = binary_fit[3]
    new = pd.DataFrame({"x": np.zeros(6), "g": ["new"] * 6})
    base = model.predict_proba(new)[:, 1]
    np.testing.assert_allclose(base, base[0])  # b = 0 for an unseen subject
    ones = model.predict_proba(new, y=[1, 1, 1, 1, np.nan, np.nan])[:, 1]
    zeros = model.predict_proba(new, y=[0, 0, 0, 0, None, None])[:, 1]
    assert (ones > base + 0.05).all() and (zeros < base - 0.05).all()
    # the two unobserved rows get the subject's effect too, and equal each other
    np.testing.assert_allclose(ones[4], ones[5])
    np.testing.assert_allclose(ones[4], ones[0])


def test_classifier_api_string_labels(r_session):
    _, X, y = _case("binary")
    labels = np.where(y == 1, "yes", "no")
    model = MixedMLClassifier(random_effects="(1 | g)")
    model.fit(X, labels)
    assert list(model.classes_) == ["no", "yes"]
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(model.predict(X)) <= {"no", "yes"}
    assert model.score(X, labels) > 0.6
    # labels given to predict_proba are the classes of the fit
    p = model.predict_proba(X.head(3), y=["yes", None, "no"])
    assert p.shape == (3, 2)
    with pytest.raises(DataError, match="maybe"):
        model.predict_proba(X.head(2), y=["yes", "maybe"])
    params = model.get_params()
    assert params["random_effects"] == "(1 | g)"
    copy = clone(model)
    assert not hasattr(copy, "classes_") and copy.get_params() == params
    assert model.converged_ and model.stop_reason_ in ("tol", "stationary")


def test_classifier_with_boosting(r_session):
    _, X, y = _case("binary")
    est = HistGradientBoostingRegressor(max_iter=30, max_depth=3, random_state=0)
    model = MixedMLClassifier(est, random_effects="(1 | g)", tol=1e-2, max_iter=15)
    # one OpenMP thread: on a loaded machine HistGradientBoosting's threads only wait
    with warnings.catch_warnings(), threadpool_limits(1, user_api="openmp"):
        warnings.simplefilter("ignore")
        model.fit(X, y == 1)
    assert list(model.classes_) == [False, True]
    assert model.n_iter_ <= 15
    assert model.stop_reason_ in ("tol", "stationary", "max_iter")
    assert model.converged_ == (model.stop_reason_ != "max_iter")
    assert np.isfinite(model.predict_proba(X)).all()


def test_errors_name_the_column(r_session):
    _, X, y = _case("binary")
    three = pd.Series(np.arange(len(X)) % 3, name="outcome")
    with pytest.raises(DataError, match=r"'outcome'.*3 class"):
        MixedMLClassifier(random_effects="(1 | g)").fit(X, three)
    with pytest.raises(DataError, match=r"'count'.*negative counts"):
        MixedMLRegressor(random_effects="(1 | g)", family="poisson").fit(
            X, pd.Series(np.r_[-1, np.ones(len(X) - 1)], name="count")
        )
    with pytest.raises(InvalidArgumentError, match="regressor"):
        MixedMLClassifier(RandomForestClassifier(), random_effects="(1 | g)").fit(X, y)
    with pytest.raises(InvalidArgumentError, match="MixedMLClassifier"):
        MixedMLRegressor(random_effects="(1 | g)", family="binomial").fit(X, y)
    with pytest.raises(DataError, match="missing"):
        MixedMLClassifier(random_effects="(1 | g)").fit(X, np.r_[np.nan, y[1:]])
    with pytest.raises(NotFittedError):
        MixedMLClassifier(random_effects="(1 | g)").predict_proba(X)
    assert issubclass(DataError, pylmer.PylmerError)


def test_pickle_round_trip(binary_fit):
    import pickle

    _, X, _, model = binary_fit
    copy = pickle.loads(pickle.dumps(model))
    # the unpickled glmer_ refits its model (checked against the stored log-likelihood)
    np.testing.assert_allclose(copy.predict_proba(X), model.predict_proba(X), atol=1e-5)
    assert list(copy.classes_) == list(model.classes_)


def test_out_of_fold_and_out_of_bag_residuals(r_session):
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LinearRegression

    _, X, y = _case("binary")
    oof = MixedMLClassifier(
        LinearRegression(), random_effects="(1 | g)", residuals="oof", cv=3, max_iter=4
    )
    forest = MixedMLClassifier(
        RandomForestRegressor(n_estimators=20, min_samples_leaf=20, random_state=0),
        random_effects="(1 | g)",
        max_iter=4,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        oof.fit(X, y)
        forest.fit(X, y)
    assert oof.residuals_used_ == "oof" and forest.residuals_used_ == "oob"
    for model in (oof, forest):
        assert model.n_iter_ <= 4
        assert np.isfinite(model.predict_proba(X)).all()


def test_new_subjects_empirical_bayes_against_lme4(r_session):
    # glmer fitted without 5 subjects; their first 6 rows observed: the modes with theta and
    # the fixed effects held fixed, from lme4's own PIRLS (plain R), and the probabilities
    # of their other rows.  The loop's optimum and glmer's agree to a few 1e-4 (RTOL), so
    # the probabilities are compared at 2e-3.
    ref = reference("reference_mixedml_glmm.R", "new_subjects")
    train, new = pd.DataFrame(ref["train"]), pd.DataFrame(ref["new"])
    model = MixedMLClassifier(random_effects="(1 | g)", tol=1e-6, max_iter=40)
    model.fit(train[["x", "g"]], train["y"])
    np.testing.assert_allclose(model.estimator_.coef_[0], ref["fixef"]["x"], rtol=RTOL)
    observed = np.where(new["observed"], new["y"].astype(float), np.nan)
    p = model.predict_proba(new[["x", "g"]], y=observed, integrate=False)[:, 1]
    np.testing.assert_allclose(p, ref["probability"], atol=2e-3)
    # without outcomes the new subjects get b = 0: clearly further from lme4's modes
    p0 = model.predict_proba(new[["x", "g"]], integrate=False)[:, 1]
    assert np.abs(p0 - ref["probability"]).max() > 0.05
