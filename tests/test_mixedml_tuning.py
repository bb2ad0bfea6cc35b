"""tune_in_loop: the first loop skips the calibration it never reads; the final model has it."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor

from pylmer import MixedMLRegressor
from pylmer.errors import DataError
from pylmer.mixedml.tuning import _fit_loop_only, tune_in_loop


def _data(n_groups: int = 40, per: int = 8, seed: int = 3):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    X = pd.DataFrame(rng.uniform(0, 1, (len(g), 2)), columns=["x0", "x1"])
    X["g"] = g
    y = 3 * X.x0 + 2 * (X.x1 > 0.5) + rng.normal(0, 1, n_groups)[g] + rng.normal(size=len(g))
    return X, y.to_numpy()


def _model():
    return MixedMLRegressor(
        HistGradientBoostingRegressor(max_iter=20, random_state=0), random_effects="(1 | g)"
    )


def test_first_loop_is_not_calibrated_final_model_is():
    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tuned = tune_in_loop(_model(), X, y, {"max_leaf_nodes": [3, 15]}, cv=2)
    first = tuned.tuning_["first"]
    assert not hasattr(first, "calibration_")
    assert "_after_fit" not in vars(first)  # the stand-in is gone after the fit
    # the first model's Residual row is lme4's own; the final one is the honest variance
    resid = first.varcorr_.loc[first.varcorr_.group == "Residual", "variance"].iloc[0]
    assert resid == pytest.approx(float(first.lmer_.sigma) ** 2)
    assert hasattr(tuned, "calibration_")
    pi = tuned.predict(X.head(5), interval="prediction")
    assert (pi.lower < pi.upper).all()
    # the tuned model (holding the first one) pickles and predicts the same after
    again = pickle.loads(pickle.dumps(tuned))
    np.testing.assert_allclose(again.predict(X), tuned.predict(X))


def test_a_failed_first_fit_leaves_no_stand_in_behind():
    X, y = _data()
    model = _model()
    with pytest.raises(DataError):  # a text feature: the loop fails in its first step
        _fit_loop_only(model, X.assign(x0="a"), y)
    assert "_after_fit" not in vars(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = model.fit(X, y)
    assert hasattr(fitted, "calibration_")  # an ordinary fit of the same object calibrates
