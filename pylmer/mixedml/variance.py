"""An honest residual variance for MixedML: the midpoint of in-sample and out-of-fold.

lme4's :math:`\\sigma^2` in MixedML is the residual variance *after* the estimator's fixed
part, and so depends on which predictions it is computed from:

* in-sample predictions have absorbed some of the noise (the estimator fitted those
  rows): :math:`\\sigma^2` comes out too small (HGB: -41 % of a generating 1.0; a forest
  grown to single-row leaves: -81 %);
* out-of-fold (or out-of-bag) predictions carry the estimator's own error
  :math:`f - \\hat f` on top of the noise: :math:`\\sigma^2` comes out too large (+49 %,
  +60-94 %).

For a linear smoother with :math:`p` effective degrees of freedom and no bias, the two
err by the same amount in opposite directions: the mean squared residual is
:math:`\\sigma^2 (1 - p/n)` in sample and :math:`\\sigma^2 (1 + p/n)` out of fold (to first
order; Efron's optimism is the gap, :math:`2 p \\sigma^2 / n`).  So the estimator's own
error at the out-of-fold rows is estimated by half the gap between the two mean squared
residuals, both taken against the same working response :math:`w = y - X_r\\gamma - Zb`
of the final state:

.. math:: \\hat\\sigma^2 = \\sigma^2_{\\text{lme4}} \\mp \\tfrac12 \\big(
          \\overline{(w - \\hat f_{\\text{oof}})^2}
          - \\overline{(w - \\hat f_{\\text{in}})^2} \\big)

(minus when lme4 saw out-of-fold or out-of-bag residuals, plus when it saw in-sample
ones): lme4's estimate moved to the midpoint.  The random-effect variances are left as
lme4 estimated them.

Limits: the symmetry is exact only for linear smoothers without bias; a bias of the
estimator (a fixed part it cannot represent) is counted as noise by both and stays in
:math:`\\hat\\sigma^2` (for prediction intervals that is what one wants: it is error
the model makes).  A forest's in-sample predictions put a weight of about 0.6 on the
row's own outcome while its out-of-bag predictions put none, so the two are not mirror
images and the midpoint is only approximately right (see the README's table).  When the
gap is larger than lme4's estimate (an estimator that interpolates, scored in sample)
the midpoint is floored at a tenth of the out-of-fold mean square and flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["HonestVariance", "cross_fit", "honest_sigma2", "replace_residual"]


@dataclass(frozen=True)
class HonestVariance:
    """The residual-variance correction of a fitted MixedML model (one target).

    Attributes
    ----------
    sigma2 : float
        The corrected residual variance.
    sigma2_lme4 : float
        lme4's estimate from the residuals the loop used.
    mse_in, mse_oof : float
        Mean squared residuals of the working response against the in-sample and the
        out-of-fold fixed part.
    fixed_error : float
        The estimated mean squared error of the out-of-fold fixed part (half the gap).
    floored : bool
        The midpoint fell below the floor.
    """

    sigma2: float
    sigma2_lme4: float
    mse_in: float
    mse_oof: float
    fixed_error: float
    floored: bool = False


def cross_fit(
    estimator: Any, X: Any, target: np.ndarray, groups: np.ndarray, cv: int = 5
) -> np.ndarray:
    """Out-of-fold predictions of clones of ``estimator`` on ``target``, folds by group."""
    from sklearn.base import clone
    from sklearn.model_selection import GroupKFold, cross_val_predict

    n_groups = len(np.unique(groups))
    if n_groups >= cv:
        splitter: Any = GroupKFold(n_splits=cv)
    else:  # too few groups to hold whole groups out: plain folds
        from sklearn.model_selection import KFold

        splitter, groups = KFold(n_splits=cv, shuffle=True, random_state=0), None
    pred = cross_val_predict(clone(estimator), X, target, groups=groups, cv=splitter)
    return np.asarray(pred, dtype=float).reshape(len(target), -1)


def honest_sigma2(
    sigma2_lme4: float,
    working: np.ndarray,
    fixed_in: np.ndarray,
    fixed_oof: np.ndarray,
    lme4_saw: str,
) -> HonestVariance:
    """Move lme4's residual variance to the in-sample / out-of-fold midpoint.

    Parameters
    ----------
    sigma2_lme4 : float
        lme4's residual variance.
    working : ndarray
        The working response ``y - X_r gamma - Z b`` of the final state.
    fixed_in, fixed_oof : ndarray
        In-sample and out-of-fold (or out-of-bag) predictions of the fixed part.
    lme4_saw : {"in_sample", "oof", "oob"}
        Which predictions lme4's residuals came from.

    Returns
    -------
    HonestVariance
    """
    w = np.asarray(working, dtype=float)
    mse_in = float(np.mean((w - np.asarray(fixed_in, dtype=float)) ** 2))
    mse_oof = float(np.mean((w - np.asarray(fixed_oof, dtype=float)) ** 2))
    half_gap = max(mse_oof - mse_in, 0.0) / 2.0
    sigma2 = sigma2_lme4 + half_gap if lme4_saw == "in_sample" else sigma2_lme4 - half_gap
    floor = 0.1 * mse_oof
    floored = bool(sigma2 < floor)
    return HonestVariance(
        sigma2=float(max(sigma2, floor)),
        sigma2_lme4=float(sigma2_lme4),
        mse_in=mse_in,
        mse_oof=mse_oof,
        fixed_error=float(half_gap),
        floored=floored,
    )


def replace_residual(varcorr: pd.DataFrame, sigma2: float) -> pd.DataFrame:
    """``varcorr`` with its residual row set to ``sigma2`` (variance and sd)."""
    out = varcorr.copy()
    rows = out["group"] == "Residual"
    out.loc[rows, "variance"] = sigma2
    if "sd_or_cor" in out.columns:
        out.loc[rows, "sd_or_cor"] = float(np.sqrt(sigma2))
    return out
