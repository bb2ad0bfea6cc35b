"""MixedML prediction intervals, the honest residual variance and tune_in_loop."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression

from pylmer import MixedMLRegressor
from pylmer.errors import DataWarning, InvalidArgumentError
from pylmer.mixedml.tuning import tune_in_loop
from pylmer.mixedml.variance import honest_sigma2


def _data(n_groups: int, per: int, seed: int, noise: str = "normal"):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    X = pd.DataFrame(rng.uniform(0, 1, (len(g), 3)), columns=["x0", "x1", "x2"])
    X["g"] = g
    f = 3 * X.x0 + 2 * (X.x1 > 0.5) - 2 * X.x1 * X.x2
    e = rng.normal(size=len(g)) if noise == "normal" else rng.standard_t(3, len(g)) / np.sqrt(3)
    return X, (f + rng.normal(0, 1, n_groups)[g] + e).to_numpy()


@pytest.fixture(scope="module")
def linear():
    X, y = _data(150, 12, 0)
    train = (np.arange(len(X)) % 12) < 8
    new = X.g >= 120
    model = MixedMLRegressor(LinearRegression(), random_effects="(1 | g)")
    model.fit(X[train & ~new], y[train & ~new])
    return model, X, y, train, new


def test_interval_frame_known_new_and_dynamic(linear):
    model, X, y, train, new = linear
    known = X[~train & ~new]
    pi = model.predict(known, interval="prediction")
    assert list(pi.columns) == ["estimate", "lower", "upper"]
    assert pi.index.equals(known.index)
    assert np.allclose(pi["estimate"], model.predict(known))
    assert (pi.lower < pi.estimate).all() and (pi.estimate < pi.upper).all()
    ci = model.predict(known, interval="confidence")
    assert ((ci.upper - ci.lower) < (pi.upper - pi.lower)).all()
    fresh = X[new]
    wide = model.predict(fresh, interval="prediction")
    # a new group's effect is unknown: wider than a known group's
    assert (wide.upper - wide.lower).mean() > (pi.upper - pi.lower).mean()
    # its own outcomes narrow it (dynamic prediction)
    seen = pd.Series(np.where(~train[new], np.nan, y[new]), index=fresh.index)
    dyn = model.predict(fresh, y=seen, interval="prediction")
    later = ~train[new]
    assert (dyn.upper - dyn.lower)[later].mean() < (wide.upper - wide.lower)[later].mean()


def test_coverage_near_nominal_known_and_new_groups(linear):
    model, X, y, train, new = linear
    for rows in (~train & ~new, new):
        pi = model.predict(X[rows], interval="prediction", level=0.9)
        inside = (y[rows] >= pi.lower) & (y[rows] <= pi.upper)
        # 400-600 test rows: binomial sd about 1.3 points around 0.90
        assert 0.85 < inside.mean() < 0.95


def test_dynamic_rows_have_their_own_scores_and_cover(linear):
    model, X, y, train, new = linear
    cal = model.calibration_
    n = int((train & ~new).sum())
    assert len(cal.scores_known) == len(cal.scores_new) == len(cal.scores_dynamic) == n
    assert (np.diff(cal.scores_dynamic) >= 0).all()
    # new groups with 4 of their 12 rows observed: the other 8 rows, 30 groups (240 rows;
    # binomial sd 1.9 points around 0.90)
    fresh = X[new]
    seen = np.where(np.arange(len(fresh)) % 12 < 4, y[new], np.nan)
    pi = model.predict(fresh, y=seen, interval="prediction", level=0.9)
    rows = np.isnan(seen)
    inside = (y[new][rows] >= pi.lower[rows]) & (y[new][rows] <= pi.upper[rows])
    assert 0.84 < inside.mean() < 0.96


def test_level_that_cannot_be_calibrated_gives_infinite_bounds(linear):
    model, X, *_ = linear
    with pytest.warns(DataWarning, match="cannot be calibrated"):
        pi = model.predict(X.head(3), interval="prediction", level=0.9999)
    assert np.isinf(pi.upper).all()


def test_interval_arguments_are_checked(linear):
    model, X, *_ = linear
    with pytest.raises(InvalidArgumentError, match="interval"):
        model.predict(X.head(2), interval="credible")
    with pytest.raises(InvalidArgumentError, match="level"):
        model.predict(X.head(2), interval="prediction", level=95)


def test_honest_sigma2_out_of_fold_level_minus_estimator_variance():
    w = np.zeros(4)
    # lme4 saw in-sample residuals (mean square 0.25): moved to the out-of-fold level
    # (2.25), minus the estimator's variance
    hv = honest_sigma2(0.5, w, np.full(4, 0.5), np.full(4, 1.5), fixed_var=1.0)
    assert hv.sigma2 == pytest.approx(0.5 + 2.0 - 1.0)
    # lme4 saw the out-of-fold residuals: only the variance is removed
    hv = honest_sigma2(2.5, w, np.full(4, 1.5), np.full(4, 1.5), fixed_var=1.0)
    assert hv.sigma2 == pytest.approx(1.5)
    # never below a tenth of the out-of-fold mean square
    hv = honest_sigma2(0.1, w, np.full(4, 1.5), np.full(4, 1.5), fixed_var=5.0)
    assert hv.floored and hv.sigma2 == pytest.approx(0.225)


def test_honest_sigma2_with_boosting_within_20_percent():
    X, y = _data(150, 10, 1)
    model = MixedMLRegressor(
        HistGradientBoostingRegressor(max_iter=60, random_state=0), random_effects="(1 | g)"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    vc = model.varcorr_
    sigma2 = float(vc.loc[vc.group == "Residual", "variance"].iloc[0])
    assert sigma2 == pytest.approx(model.calibration_.sigma2)
    assert abs(sigma2 - 1.0) < 0.2
    # lme4's own estimate on in-sample residuals is too small (the estimator absorbed noise)
    assert model.calibration_.sigma2_lme4 < sigma2


def test_tune_in_loop_returns_a_fitted_model_with_the_chosen_parameters():
    X, y = _data(40, 8, 2)
    model = MixedMLRegressor(
        HistGradientBoostingRegressor(max_iter=20, random_state=0), random_effects="(1 | g)"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tuned = tune_in_loop(model, X, y, {"max_leaf_nodes": [3, 15]}, cv=2)
    best = tuned.tuning_["best_params"]
    assert best["max_leaf_nodes"] in (3, 15)
    assert tuned.estimator_.max_leaf_nodes == best["max_leaf_nodes"]
    assert len(tuned.tuning_["cv_results"]) == 2
    assert model.estimator.max_leaf_nodes == 31  # the given model is left alone


def test_classifier_probabilities_average_over_the_random_effects():
    from scipy.special import expit

    from pylmer import MixedMLClassifier
    from pylmer.mixedml.intervals import conditional_variance

    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(60), 6)
    X = pd.DataFrame({"x": rng.normal(size=len(g)), "g": g})
    eta = 0.5 + X.x + rng.normal(0, 1.5, 60)[g]
    y = (rng.uniform(size=len(g)) < expit(eta)).astype(int)
    model = MixedMLClassifier(random_effects="(1 | g)").fit(X, y)
    link = model.decision_function(X)
    modes = model.predict_proba(X, integrate=False)[:, 1]
    np.testing.assert_allclose(modes, expit(link))
    averaged = model.predict_proba(X)[:, 1]
    # pulled towards 0.5 (never across it) by the random effects' conditional variance
    assert (np.abs(averaged - 0.5) < np.abs(modes - 0.5)).all()
    assert ((averaged > 0.5) == (modes > 0.5)).all()
    # a new group: the population average over b ~ N(0, G), checked by Monte Carlo
    new = pd.DataFrame({"x": [-1.0, 0.0, 2.0], "g": [999] * 3})
    p_new = model.predict_proba(new)[:, 1]
    G = float(model.varcorr_["variance"].iloc[0])
    b = rng.normal(0, np.sqrt(G), 200_000)
    mc = expit(model.decision_function(new)[:, None] + b[None, :]).mean(axis=1)
    np.testing.assert_allclose(p_new, mc, atol=0.01)
    # a group's own 6 rows leave it less uncertain than a new group
    v_known, _, _ = conditional_variance(model, X.head(1), model._irls_weights_)
    assert 0 < v_known[0] < G


def test_neighbour_sigma2_removes_a_smooth_estimator_error():
    from pylmer.mixedml.variance import neighbour_sigma2

    rng = np.random.default_rng(4)
    X = rng.uniform(0, 1, (3000, 3))
    noise = rng.normal(0, 1.5, len(X))  # variance 2.25
    # residuals of a biased, noisy estimator: its error is smooth in x (within a fold)
    fold = rng.integers(0, 3, len(X))
    bias = np.array([1.0, -0.5, 0.3])[fold] * np.sin(3 * X[:, 0]) + 2 * X[:, 1] ** 2
    r = noise + bias
    assert np.mean(r**2) > 3.0  # the raw mean square counts the error as noise
    assert neighbour_sigma2(X, r, fold) == pytest.approx(2.25, rel=0.1)
    # where it does not apply: too many features, too few rows, not numbers
    assert neighbour_sigma2(rng.normal(size=(3000, 25)), r, fold) is None
    assert neighbour_sigma2(X[:60], r[:60], fold[:60]) is None
    assert neighbour_sigma2(np.array([["a"]] * 3000, dtype=object), r, fold) is None
