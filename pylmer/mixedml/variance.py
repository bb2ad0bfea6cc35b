"""An honest residual variance for MixedML: out-of-fold, minus the estimator's variance.

lme4's :math:`\\sigma^2` in MixedML is the residual variance *after* the estimator's fixed
part, and so depends on which predictions it is computed from:

* in-sample predictions have absorbed some of the noise (the estimator fitted those
  rows): :math:`\\sigma^2` comes out too small (HGB: -41 % of a generating 1.0; a forest
  grown to single-row leaves: -81 %);
* out-of-fold (or out-of-bag) predictions carry the estimator's own error
  :math:`f - \\hat f` on top of the noise: :math:`\\sigma^2` comes out too large (+49 %,
  +60-94 %).

The correction, for one target, against the working response
:math:`w = y - X_r\\gamma - Zb` of the final state:

1. lme4's estimate is moved to the out-of-fold level: plus the gap between the mean
   squared residuals against the out-of-fold fixed part and against the one lme4 saw
   (zero when the loop used out-of-fold or out-of-bag predictions);
2. the estimator's own variance at the out-of-fold training size is removed.  It is
   measured by *cross-fitting*: two clones fitted on disjoint halves of the groups (of
   the first grouping column) predict every row; their noises are independent, so
   :math:`E(\\hat f_A - \\hat f_B)^2 / 2` is the variance of one fit on half the data,
   scaled to the out-of-fold training size by the parametric rate
   (:math:`\\propto 1/m`).

Cost: two fits on half the rows (plus ``cv`` fits when the loop used in-sample
predictions, for the out-of-fold level).  Limits: the estimator's *bias* (a fixed part
it cannot represent at this sample size) is the same in both halves, is not removed and
stays in :math:`\\hat\\sigma^2` (for prediction intervals that is what one wants: it is
error the model makes); the :math:`1/m` rate is optimistic for slowly converging
estimators, which leaves some of their variance in :math:`\\hat\\sigma^2` too.  When
covariates carry group-level signal the estimator's error is partly group-level and
lands in the random-effect variances instead (see the README).  The result is floored
at a tenth of the out-of-fold mean square (``floored``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "HonestVariance",
    "cross_fit",
    "half_sample_variance",
    "honest_sigma2",
    "replace_residual",
]


@dataclass(frozen=True)
class HonestVariance:
    """The residual-variance correction of a fitted MixedML model (one target).

    Attributes
    ----------
    sigma2 : float
        The corrected residual variance.
    sigma2_lme4 : float
        lme4's estimate from the residuals the loop used.
    mse_used, mse_oof : float
        Mean squared residuals of the working response against the fixed part lme4 saw
        and against the out-of-fold one.
    fixed_error : float
        The estimated variance of the out-of-fold fixed part (removed).
    floored : bool
        The estimate fell below the floor.
    """

    sigma2: float
    sigma2_lme4: float
    mse_used: float
    mse_oof: float
    fixed_error: float
    floored: bool = False


def _splitter(groups: np.ndarray, cv: int) -> tuple[Any, np.ndarray | None]:
    from sklearn.model_selection import GroupKFold, KFold

    if len(np.unique(groups)) >= cv:
        return GroupKFold(n_splits=cv), groups
    return KFold(n_splits=cv, shuffle=True, random_state=0), None


def cross_fit(
    estimator: Any, X: Any, target: np.ndarray, groups: np.ndarray, cv: int = 5
) -> np.ndarray:
    """Out-of-fold predictions of clones of ``estimator`` on ``target``, folds by group."""
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_predict

    splitter, g = _splitter(np.asarray(groups), cv)
    pred = cross_val_predict(clone(estimator), X, target, groups=g, cv=splitter)
    return np.asarray(pred, dtype=float).reshape(len(target), -1)


def half_sample_variance(
    estimator: Any,
    X: Any,
    target: np.ndarray,
    groups: np.ndarray,
    train_fraction: float,
    seed: int = 0,
) -> float:
    """Variance of the estimator's fit at ``train_fraction`` of the rows, by cross-fitting.

    Two clones fitted on disjoint random halves of the groups predict every row;
    ``mean((f_A - f_B)^2) / 2`` is the variance of one half-data fit, scaled by
    ``0.5 / train_fraction``.
    """
    from sklearn.base import clone

    groups = np.asarray(groups)
    levels = np.unique(groups)
    rng = np.random.default_rng(seed)
    if len(levels) >= 4:
        first = np.isin(groups, rng.permutation(levels)[: len(levels) // 2])
    else:  # too few groups: halves of the rows
        first = rng.permutation(len(groups)) < len(groups) // 2
    Xa = X.iloc[first] if hasattr(X, "iloc") else X[first]
    Xb = X.iloc[~first] if hasattr(X, "iloc") else X[~first]
    fa = np.asarray(clone(estimator).fit(Xa, target[first]).predict(X), dtype=float)
    fb = np.asarray(clone(estimator).fit(Xb, target[~first]).predict(X), dtype=float)
    return float(np.mean((fa - fb) ** 2) / 2.0 * 0.5 / train_fraction)


def honest_sigma2(
    sigma2_lme4: float,
    working: np.ndarray,
    fixed_used: np.ndarray,
    fixed_oof: np.ndarray,
    fixed_var: float,
) -> HonestVariance:
    """lme4's residual variance at the out-of-fold level, minus the estimator's variance.

    Parameters
    ----------
    sigma2_lme4 : float
        lme4's residual variance.
    working : ndarray
        The working response ``y - X_r gamma - Z b`` of the final state.
    fixed_used, fixed_oof : ndarray
        The fixed part lme4's residuals came from, and out-of-fold (or out-of-bag)
        predictions of it (the same array when the loop used out-of-fold ones).
    fixed_var : float
        The estimator's variance at the out-of-fold training size
        (:func:`half_sample_variance`).

    Returns
    -------
    HonestVariance
    """
    w = np.asarray(working, dtype=float)
    mse_used = float(np.mean((w - np.asarray(fixed_used, dtype=float)) ** 2))
    mse_oof = float(np.mean((w - np.asarray(fixed_oof, dtype=float)) ** 2))
    sigma2 = sigma2_lme4 + (mse_oof - mse_used) - fixed_var
    floor = 0.1 * mse_oof
    return HonestVariance(
        sigma2=float(max(sigma2, floor)),
        sigma2_lme4=float(sigma2_lme4),
        mse_used=mse_used,
        mse_oof=mse_oof,
        fixed_error=float(fixed_var),
        floored=bool(sigma2 < floor),
    )


def replace_residual(varcorr: pd.DataFrame, sigma2: float) -> pd.DataFrame:
    """``varcorr`` with its residual row set to ``sigma2`` (variance and sd)."""
    out = varcorr.copy()
    rows = out["group"] == "Residual"
    out.loc[rows, "variance"] = sigma2
    if "sd_or_cor" in out.columns:
        out.loc[rows, "sd_or_cor"] = float(np.sqrt(sigma2))
    return out
