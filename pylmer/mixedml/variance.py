"""An honest residual variance for MixedML: the noise, not the estimator's error.

lme4's :math:`\\sigma^2` in MixedML is the residual variance *after* the estimator's fixed
part, and so depends on which predictions it is computed from:

* in-sample predictions have absorbed some of the noise (the estimator fitted those
  rows): :math:`\\sigma^2` comes out too small (HGB: -41 % of a generating 1.0; a forest
  grown to single-row leaves: -81 %);
* out-of-fold (or out-of-bag) predictions carry the estimator's own error
  :math:`f - \\hat f` on top of the noise: :math:`\\sigma^2` comes out too large (+49 %,
  +60-94 %), and removing the estimator's *variance* (cross-fitting, below) is not
  enough where its *bias* dominates (a default forest on Friedman #1: still +113 %).

The estimate (:func:`neighbour_sigma2`), for one target: the working response
:math:`w = y - X_r\\gamma - Zb` of the final state minus out-of-fold predictions from
folds that hold whole groups out, :math:`r = w - \\hat f_{\\text{oof}}`; within each
fold (one fitted estimator) every row is paired with its 10 nearest neighbours in the
standardized features, and :math:`(r_i - r_j)^2/2` is regressed on their squared
distance: the intercept is the noise variance.  Two nearby residuals share what the
estimator got wrong smoothly in the features, bias and variance alike, so their
difference keeps the noise; the distance regression removes the first-order remainder
(the lag regression of difference-based variance estimators, Tong & Wang 2005, in the
features instead of one ordered covariate).

Where it does not apply -- features that are not numbers, more than
:data:`MAX_NEIGHBOUR_FEATURES` varying features (nearest neighbours are no longer near),
folds of fewer than 40 rows -- the *cross-fitting* estimate is used
(:func:`honest_sigma2`): lme4's estimate moved to the out-of-fold level, minus the
estimator's variance, measured by two clones fitted on disjoint halves of the groups
(:math:`E(\\hat f_A - \\hat f_B)^2 / 2` is the variance of one half-data fit, scaled to the
out-of-fold training size by :math:`1/m`).  That one leaves the estimator's bias in
:math:`\\hat\\sigma^2`.

Limits (README, "An honest residual variance"): the neighbours must be near, so with
few rows for the number of relevant features (1,000 rows in five dimensions) part of
the estimator's error stays in the estimate; when the covariates carry group-level
signal the estimator's error is partly group-level and lands in the random-effect
variances instead; crossed factors other than the first are left in the residuals as
their conditional modes.  The result is floored at a tenth of the out-of-fold mean
square (``floored``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "HonestVariance",
    "cross_fit",
    "group_folds",
    "half_sample_variance",
    "honest_sigma2",
    "neighbour_sigma2",
    "replace_residual",
]

#: above this many features nearest neighbours are not local: cross-fitting is used
MAX_NEIGHBOUR_FEATURES = 20


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


def group_folds(groups: np.ndarray, cv: int) -> np.ndarray:
    """The fold of every row in :func:`cross_fit` (the same splitter)."""
    groups = np.asarray(groups)
    splitter, g = _splitter(groups, cv)
    fold = np.empty(len(groups), dtype=int)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(groups)), groups=g)):
        fold[test] = k
    return fold


def neighbour_sigma2(
    X: Any,
    resid: np.ndarray,
    fold: np.ndarray,
    k: int = 10,
    max_rows: int = 20_000,
    seed: int = 0,
) -> float | None:
    """Noise variance from nearest-neighbour differences of out-of-fold residuals.

    Within each fold (one fitted estimator, whole groups held out), every row is paired
    with its ``k`` nearest neighbours in the standardized features;
    :math:`(r_i - r_j)^2 / 2` is regressed on the squared distance and the intercept (the
    distance-zero limit) is the estimate: a difference of two nearby residuals cancels
    what the estimator got wrong *smoothly* in the features, its bias as well as its
    variance, and keeps the noise.  The distance regression removes the first-order
    remainder (as the lag regression of difference-based estimators in one dimension).

    Returns ``None`` when it does not apply: features that are not numbers, more than
    :data:`MAX_NEIGHBOUR_FEATURES` varying features (neighbours are then not local),
    fewer than ``4 k`` rows in a fold, or a non-positive intercept.
    """
    from sklearn.neighbors import NearestNeighbors

    try:
        Z = np.asarray(X, dtype=float)
    except (TypeError, ValueError):
        return None
    Z = Z.reshape(len(Z), -1)
    if not np.isfinite(Z).all():
        return None
    sd = Z.std(axis=0)
    Z = (Z[:, sd > 0] - Z[:, sd > 0].mean(axis=0)) / sd[sd > 0]
    if Z.shape[1] > MAX_NEIGHBOUR_FEATURES:
        return None
    r = np.asarray(resid, dtype=float).ravel()
    rng = np.random.default_rng(seed)
    dist2, half = [], []
    for f in np.unique(fold):
        rows = np.flatnonzero(fold == f)
        if len(rows) < 4 * k:
            return None
        query = rows if len(rows) <= max_rows else rng.choice(rows, max_rows, replace=False)
        if Z.shape[1] == 0:  # no varying feature: every pair is at distance zero
            j = rng.choice(rows, (len(query), k))
            d = np.zeros((len(query), k))
        else:
            nn = NearestNeighbors(n_neighbors=k + 1).fit(Z[rows])
            d, idx = nn.kneighbors(Z[query])
            order = np.argsort(idx == np.searchsorted(rows, query)[:, None], axis=1, kind="stable")
            d = np.take_along_axis(d, order, axis=1)[:, :k]
            j = rows[np.take_along_axis(idx, order, axis=1)[:, :k]]
        dist2.append((d**2).ravel())
        half.append(((r[query][:, None] - r[j]) ** 2 / 2.0).ravel())
    D, H = np.concatenate(dist2), np.concatenate(half)
    A = np.column_stack([np.ones_like(D), D])
    intercept = float(np.linalg.lstsq(A, H, rcond=None)[0][0])
    return intercept if intercept > 0 else None


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
