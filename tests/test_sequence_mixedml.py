"""MixedMLRegressor around SequenceRegressor: sequence models get random effects as they are.

Nothing in MixedML knows about sequences: the sequence model is wrapped in
:class:`~pylmer.sequence.SequenceRegressor` (a regressor on long rows) and handed to
``MixedMLRegressor`` like any other estimator; the only setting is ``features``, which
must pass the subject and time columns on to the sequence regressor.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression

from pylmer import MixedMLRegressor
from pylmer.data.simulate import simulate_longitudinal
from pylmer.sequence import SequenceRegressor

RE = "(1 + x2_x5 + x4_x7 + x6_x8 || individus)"
SLOPES = ["x2_x5", "x4_x7", "x6_x8"]
RAW = [f"x{i}_obs" for i in range(1, 9)]
COLUMNS = ["individus", "temps", *RAW, *SLOPES]
CUTOFF = 9


class EMASequenceModel(BaseEstimator):
    """Tiny causal sequence model in numpy: least squares on the inputs and their EMA.

    The design at step ``t`` is ``[1, x_t, m_t]`` with the exponential moving average
    ``m_t = decay * m_{t-1} + (1 - decay) * x_t`` (``m_{-1} = 0``); ``decay=0`` drops
    ``m`` and leaves an ordinary least squares on ``[1, x_t]``.
    """

    def __init__(self, decay: float = 0.7) -> None:
        self.decay = decay

    def _design(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        parts = [np.ones((*X.shape[:2], 1)), X]
        if self.decay > 0:
            ema = np.zeros_like(X)
            state = np.zeros((X.shape[0], X.shape[2]))
            for t in range(X.shape[1]):
                state = self.decay * state + (1 - self.decay) * X[:, t]
                ema[:, t] = state
            parts.append(ema)
        return np.concatenate(parts, axis=-1)

    def fit(self, X: np.ndarray, y: np.ndarray, mask: np.ndarray) -> EMASequenceModel:
        y = np.asarray(y, dtype=float)
        y = y[..., None] if y.ndim == 2 else y
        self.coef_ = np.linalg.lstsq(self._design(X)[mask], y[mask], rcond=None)[0]
        return self

    def predict(self, X: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = self._design(X) @ self.coef_
        out[~np.asarray(mask, dtype=bool)] = 0.0
        return out


def sequence_regressor(model: BaseEstimator) -> SequenceRegressor:
    return SequenceRegressor(model, subject="individus", time="temps", features=RAW)


def mixed(model: BaseEstimator, **kwargs) -> MixedMLRegressor:
    return MixedMLRegressor(
        sequence_regressor(model),
        random_effects=RE,
        features=["individus", "temps", *RAW],
        **kwargs,
    )


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    df = simulate_longitudinal(n_subjects=60, n_times=12, seed=7)
    return df, (df["temps"] < CUTOFF).to_numpy()


def held_out_mse(model, df: pd.DataFrame, train: np.ndarray) -> tuple[float, np.ndarray]:
    """Fit on the early rows, predict the whole sequences, score the later rows."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(df.loc[train, COLUMNS], df.loc[train, "y_mixed_obs"])
    pred = model.predict(df[COLUMNS])
    return float(np.mean((pred - df["y_mixed"].to_numpy())[~train] ** 2)), pred


def test_numpy_sequence_model_with_mixedml_beats_it_alone(data):
    df, train = data
    alone, _ = held_out_mse(sequence_regressor(EMASequenceModel()), df, train)
    model = mixed(EMASequenceModel(), max_iter=10, tol=1e-3)
    with_re, pred = held_out_mse(model, df, train)
    assert with_re < 0.5 * alone, (with_re, alone)
    assert isinstance(model.estimator_, SequenceRegressor)
    assert isinstance(model.estimator_.model_, EMASequenceModel)
    assert model.n_iter_ >= 2
    # the fitted random effects are those of the training subjects, one row each
    assert len(model.ranef_["individus"]) == df["individus"].nunique()
    # causal model: predicting the whole sequences leaves the training rows unchanged
    assert np.allclose(pred[train], model.predict(df.loc[train, COLUMNS]), atol=1e-10)


def test_memoryless_sequence_model_matches_plain_linear_regression(data):
    """Through SequenceRegressor (rows shuffled), MixedML follows the same iterates.

    With ``decay=0`` the sequence model is least squares on each step's inputs, i.e.
    ``LinearRegression``: the EM map is the same, so after the same number of iterations
    both fits agree up to lme4's optimizer noise. A mix-up of rows between the long and
    the sequence layout (or of targets between iterations) would show as O(1) errors.
    """
    df, train = data
    shuffled = df[train].sample(frac=1.0, random_state=0)
    X, y = shuffled[COLUMNS], shuffled["y_mixed_obs"]
    kwargs = {"random_effects": RE, "max_iter": 8, "tol": 1e-12}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        seq = MixedMLRegressor(
            sequence_regressor(EMASequenceModel(decay=0.0)),
            features=["individus", "temps", *RAW],
            **kwargs,
        ).fit(X, y)
        lin = MixedMLRegressor(LinearRegression(), features=RAW, **kwargs).fit(X, y)
    assert seq.n_iter_ == lin.n_iter_ == 8
    scale = float(np.abs(lin.predict(X)).max())
    assert np.max(np.abs(seq.predict(X) - lin.predict(X))) < 1e-4 * scale
    # lme4's fits agree; the honest residual row of varcorr_ does not have to: its
    # nearest neighbours are taken in the estimator's features, here with the subject and
    # the time besides the covariates (pylmer.mixedml.variance)
    assert np.allclose(seq.lmer_.varcorr["variance"], lin.lmer_.varcorr["variance"], rtol=1e-3)
    assert np.allclose(seq.varcorr_["variance"][:-1], lin.varcorr_["variance"][:-1], rtol=1e-3)
    ours = seq.history_["train_mse"].to_numpy()
    assert np.allclose(ours, lin.history_["train_mse"].to_numpy(), rtol=1e-4)


def test_esn_with_mixedml_beats_esn_alone(data):
    pytest.importorskip(
        "reservoirpy", reason="ESNSequenceModel needs reservoirpy (the pylmer[reservoir] extra)"
    )
    from pylmer.sequence import ESNSequenceModel

    def esn() -> ESNSequenceModel:
        return ESNSequenceModel(100, sr=0.5, lr=1.0, ridge=1.0, seed=0)

    df, train = data
    alone, _ = held_out_mse(sequence_regressor(esn()), df, train)
    model = mixed(esn(), max_iter=10, tol=1e-3)
    with_re, pred = held_out_mse(model, df, train)
    assert with_re < 0.5 * alone, (with_re, alone)
    assert np.allclose(pred[train], model.predict(df.loc[train, COLUMNS]), atol=1e-8)
