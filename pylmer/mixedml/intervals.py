"""Prediction and confidence intervals for MixedMLRegressor.

A new outcome of row :math:`x` in group :math:`g` is
:math:`y = f(x) + X_r\\gamma + z'b_g + \\varepsilon`; its prediction
:math:`\\hat y = \\hat f(x) + X_r\\hat\\gamma + z'\\hat b_g` errs by three parts, whose
variances are added:

* :math:`\\varepsilon`: the honest residual variance :math:`\\hat\\sigma^2`
  (:mod:`pylmer.mixedml.variance`);
* :math:`f - \\hat f`: the estimator's own variance (cross-fitting, the same module),
  one number for all rows;
* :math:`z'(b_g - \\hat b_g)`: the conditional variance :math:`z'Pz` of the random
  effects, :math:`P = (G^{-1} + Z_g'WZ_g)^{-1}` per factor and level
  (:func:`conditional_variance`): training rows weigh :math:`1/\\sigma^2_{\\text{lme4}}`
  (as lme4 weighed them), rows observed in the dynamic ``predict(X, y)`` weigh
  :math:`1/(\\hat\\sigma^2 + \\text{estimator's variance})`, a level without rows
  gets the prior :math:`G` (crossed factors' posterior correlations are left out).

These parts are not independent (a group's random effect absorbs the estimator's
group-level error) and need not be normal, so the multiplier is not the Gaussian 1.96:
it is a split-conformal quantile (Vovk et al.; Lei et al. 2018) of *standardized* scores
computed on the training rows, each row predicted as a test row of one of three kinds
would be:

* **known groups** (every level of the row has training rows): rows are held out in
  ``cv`` random folds; without the fold, one step of the loop (random effects from the
  loop's residuals of the other rows, the estimator refitted on ``y`` minus them, random
  effects again from its in-sample residuals) predicts the fold's rows.  Bagged forests
  need no refit: the out-of-bag prediction, with the row left out of its own random
  effect as for a ridge smoother, :math:`(y_i - \\hat y_i) / (1 - h_i)` with
  :math:`h_i = z_i'Pz_i / \\sigma^2_{\\text{lme4}}`;
* **new groups**: :math:`y_i - \\hat f_{\\text{group}}(x_i) - X_r\\hat\\gamma`, the
  fixed part from ``cv`` folds that hold whole groups (of the first grouping column) out;
* **dynamic** (levels known only from outcomes given to ``predict(X, y)``): the same
  group-held-out fixed part, the random effect estimated from the group's *other* rows
  (ridge leave-one-out of the row itself), standardized with :math:`z'Pz` from those
  rows.  These scores interpolate within a group; giving a subject's *first* visits and
  predicting its later ones extrapolates in time and covers less (README).

The interval is the estimate plus or minus the calibrated quantile times the row's
predictive standard deviation: heavy tails widen it, and the width still varies with how
much each group has been observed.  Confidence intervals (for
:math:`f(x) + X_r\\gamma + z'b`, not observable) use the Gaussian quantile on the
estimator's error and the random effects' conditional variance, scaled by the ratio of
the calibrated to the Gaussian prediction quantile.

When it cannot be calibrated: with ``n`` calibration rows a level above
``n / (n + 1)`` has no finite conformal quantile; the bounds are then infinite and a
:class:`~pylmer.errors.DataWarning` says so.  Coverage is marginal (on average over rows
like the training rows), not conditional on a group; with few groups the new-group
quantile rests on few independent random effects.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, DataWarning, InvalidArgumentError, warn

__all__ = ["Calibration", "calibrate", "predict_interval", "re_variance"]


@dataclass(frozen=True)
class Calibration:
    """What a fitted model keeps for its intervals (one target).

    Attributes
    ----------
    sigma2 : float
        Honest residual variance (:mod:`pylmer.mixedml.variance`).
    sigma2_method : str
        How it was estimated: ``"neighbours"`` (nearest-neighbour differences of
        out-of-fold residuals) or ``"cross-fitting"`` (where neighbours do not apply).
    sigma2_crossfit : float
        The cross-fitting estimate (out-of-fold level minus the estimator's variance),
        kept for comparison.
    sigma2_lme4 : float
        lme4's residual variance (the one the random effects were shrunk with).
    fixed_error : float
        Estimated mean squared error of the estimator's fixed part: the out-of-fold mean
        square minus ``sigma2`` (at least the estimator's cross-fitted variance).
    scores_known, scores_new, scores_dynamic : ndarray
        Sorted standardized out-of-fold scores: known groups, new groups, and groups
        known only from outcomes given to ``predict(X, y)``.
    mse_in, mse_oof : float
        Mean squared residuals of the working response against the fixed part lme4 saw
        and against the out-of-fold one (the variance correction's inputs).
    """

    sigma2: float
    sigma2_lme4: float
    fixed_error: float
    scores_known: np.ndarray
    scores_new: np.ndarray
    mse_in: float
    mse_oof: float
    floored: bool = False
    scores_dynamic: np.ndarray = field(default_factory=lambda: np.empty(0))
    sigma2_method: str = "cross-fitting"
    sigma2_crossfit: float = math.nan


def _factor_blocks(model: Any) -> dict[str, list[tuple[str, str | None, float]]]:
    """Per grouping factor: its variance-covariance rows ``(var1, var2, value)``."""
    vc = (model.lmer_ if hasattr(model, "lmer_") else model.glmer_).varcorr
    blocks: dict[str, list[tuple[str, str | None, float]]] = {}
    for factor in model.ranef_sd_:
        pat = re.compile(re.escape(factor) + r"(\.\d+)?")
        rows = vc[vc["group"].astype(str).map(lambda s, p=pat: bool(p.fullmatch(s)))]
        blocks[factor] = [
            (str(r.var1), None if pd.isna(r.var2) else str(r.var2), float(r.variance))
            for r in rows.itertuples()
        ]
    return blocks


def _z(X: pd.DataFrame, term: str) -> np.ndarray:
    if term == "(Intercept)":
        return np.ones(len(X))
    if len(term) > 1 and term[0] == term[-1] == "`":  # lme4 names quoted columns `x.2 ü`
        term = term[1:-1]
    if term not in X.columns:
        raise DataError(
            f"intervals need the random-effects covariate {term!r} as a column of X "
            "(terms computed inside the formula, such as I(x^2), are not supported)"
        )
    return X[term].to_numpy(dtype=float)


def _keys(frame: pd.DataFrame, parts: list[str]) -> pd.Index:
    if len(parts) == 1:
        return pd.Index(frame[parts[0]].astype(object))
    return pd.MultiIndex.from_frame(frame[list(parts)].astype(object))


def _g_matrix(block: list[tuple[str, str | None, float]], terms: list[str]) -> np.ndarray:
    """The prior covariance G of one factor's terms, from lme4's VarCorr rows."""
    q = len(terms)
    G = np.zeros((q, q))
    pos = {t: i for i, t in enumerate(terms)}
    for a, b, val in block:
        if a not in pos:
            continue
        if b is None:
            G[pos[a], pos[a]] = max(val, 0.0)
        elif b in pos:
            G[pos[a], pos[b]] = G[pos[b], pos[a]] = val
    return G


def re_variance(
    model: Any, X: pd.DataFrame, observed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Conditional variance of each row's random-effects contribution ``z'b``.

    Per grouping factor and level: :math:`P = (G^{-1} + Z_g'Z_g/\\sigma^2)^{-1}`, where
    :math:`Z_g` holds the level's training rows (and the observed rows of ``X``); a level
    without any row gets :math:`G`.  Factors are treated one at a time (crossed factors'
    posterior correlations are left out).

    Parameters
    ----------
    model : MixedMLRegressor
        Fitted (one target).
    X : DataFrame
        Rows to predict.
    observed : ndarray of bool, optional
        Rows of ``X`` whose outcome is observed (the dynamic ``predict(X, y)``): they add
        precision to their groups' effects.

    Returns
    -------
    (ndarray, ndarray, ndarray)
        The variances :math:`z'Pz`, whether every factor's level of the row had a row (in
        training or among the observed rows), and whether every level had a training row.
    """
    cal = model.calibration_
    sigma2 = float(cal.sigma2_lme4)
    noise_new = float(cal.sigma2 + cal.fixed_error) or sigma2
    # training rows weigh as lme4 weighed them; new observed rows were never seen by the
    # estimator, so their residuals carry its error too
    return conditional_variance(model, X, 1.0 / sigma2, observed, 1.0 / noise_new)


def _observed(model: Any, X: pd.DataFrame, y: Any) -> np.ndarray | None:
    """Rows of ``X`` whose outcome is given in ``y`` (finite, every group column set)."""
    if y is None:
        return None
    grouped = X[model.groups_].notna().all(axis=1).to_numpy()
    return np.isfinite(np.asarray(y, dtype=float).ravel()) & grouped


def conditional_variance(
    model: Any,
    X: pd.DataFrame,
    w_train: float | np.ndarray,
    observed: np.ndarray | None = None,
    w_observed: float | np.ndarray = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``z'Pz`` per row, with :math:`P = (G^{-1} + Z_g' W Z_g)^{-1}` per factor and level.

    ``w_train`` weighs the training rows (a number or one per training row: ``1 /
    sigma^2`` for a Gaussian fit, the IRLS weights ``mu (1 - mu)`` for a binary one),
    ``w_observed`` the rows of ``X`` flagged in ``observed``.  Returns the variances,
    whether every level of the row had a row (training or observed) and whether every
    level had a training row.
    """
    blocks = _factor_blocks(model)
    train = model._re.frame
    target = model._coding.extend(X).encode(X[model.re_columns_])
    total = np.zeros(len(X))
    seen_all = np.ones(len(X), dtype=bool)
    trained_all = np.ones(len(X), dtype=bool)
    obs = np.zeros(len(X), dtype=bool) if observed is None else np.asarray(observed, bool)
    for factor, sd in model.ranef_sd_.items():
        parts = model._spec.factors.get(factor, [factor])
        terms = list(sd.columns)
        G = _g_matrix(blocks[factor], terms)
        k_train = _keys(train, parts)
        k_target = _keys(target, parts)
        codes, uniques = pd.factorize(k_train.append(k_target[obs]).append(k_target))
        n_tr, n_obs = len(k_train), int(obs.sum())
        c_rows = codes[: n_tr + n_obs]
        c_target = codes[n_tr + n_obs :]
        Zrows = np.vstack(
            [
                np.column_stack([_z(train, t) for t in terms]),
                np.column_stack([_z(target, t) for t in terms])[obs],
            ]
        )
        weight = np.r_[
            np.broadcast_to(np.asarray(w_train, dtype=float), (n_tr,)),
            np.broadcast_to(np.asarray(w_observed, dtype=float), (len(X),))[obs],
        ]
        L = len(uniques) + 1  # the last slot: rows with a missing grouping value
        codes = np.where(codes < 0, L - 1, codes)
        c_rows = codes[: n_tr + n_obs]
        c_target = codes[n_tr + n_obs :]
        M = np.zeros((L, len(terms), len(terms)))
        np.add.at(M, c_rows, weight[:, None, None] * Zrows[:, :, None] * Zrows[:, None, :])
        eye = np.eye(len(terms))
        P = np.linalg.solve(eye + G[None] @ M, np.broadcast_to(G, M.shape))
        Zt = np.column_stack([_z(target, t) for t in terms])
        Pt = P[c_target]
        total += np.maximum(np.einsum("ni,nij,nj->n", Zt, Pt, Zt), 0.0)
        counts = np.bincount(c_rows, minlength=L)
        counts[L - 1] = 0
        seen_all &= counts[c_target] > 0
        trained = np.bincount(c_rows[:n_tr], minlength=L)
        trained[L - 1] = 0
        trained_all &= trained[c_target] > 0
    return total, seen_all, trained_all


def _conformal(scores: np.ndarray, level: float) -> float:
    n = len(scores)
    k = math.ceil((n + 1) * level)
    if n == 0 or k > n:
        return math.inf
    return float(scores[k - 1])


def calibrate(model: Any, X: pd.DataFrame, y: np.ndarray) -> Calibration:
    """The residual-variance correction and conformal scores of a fitted model.

    Runs ``model.cv`` fits of the estimator with whole groups held out (the new-group and
    dynamic scores; not when the loop used out-of-fold predictions, which are those),
    ``model.cv`` fits with random rows held out (the known-group scores) and two fits on
    half the groups (the estimator's variance).
    """
    from .threads import estimator_threads
    from .variance import (
        cross_fit,
        group_folds,
        half_sample_variance,
        honest_sigma2,
        neighbour_sigma2,
    )

    y = np.asarray(y, dtype=float).ravel()
    Xf = X[model.features_]
    with estimator_threads():
        fixed_in = np.asarray(model.estimator_.predict(Xf), dtype=float).ravel()
    xg = np.atleast_1d(np.asarray(model._re.terms[0]["fixed"], dtype=float))
    used = y - model._re.resid[:, 0] - xg  # the fixed part lme4 saw
    full = np.asarray(model.predict(X), dtype=float).ravel()  # f_in + X gamma + Z b
    contribution = full - fixed_in  # X gamma + Z b
    working = y - contribution
    groups = model._re.frame[model.groups_[0]].cat.codes.to_numpy()
    est = model._base_estimator()
    cv = int(model.cv)
    mode = model.residuals_used_
    with estimator_threads():
        # out-of-fold predictions from folds that hold whole groups out
        fixed_group = used if mode == "oof" else cross_fit(est, Xf, working, groups, cv=cv).ravel()
        fixed_oof = fixed_group if mode == "in_sample" else used
        fraction = 0.632 if mode == "oob" else (cv - 1) / cv
        fixed_var = half_sample_variance(est, Xf, working, groups, fraction)
        if mode != "oob":
            r_known = _known_group_residuals(model, est, Xf, y, working, used, xg, cv)
    sigma2_lme4 = float(model.lmer_.sigma) ** 2
    hv = honest_sigma2(sigma2_lme4, working, used, fixed_oof, fixed_var)
    # the noise from nearest-neighbour differences of the group-held-out residuals (the
    # estimator's bias cancels too); cross-fitting where it does not apply
    near = neighbour_sigma2(Xf, working - fixed_group, group_folds(groups, cv))
    if near is not None:
        sigma2, method = max(near, 0.1 * hv.mse_oof), "neighbours"
        fixed_error = max(hv.mse_oof - sigma2, hv.fixed_error)
    else:
        sigma2, method, fixed_error = hv.sigma2, "cross-fitting", hv.fixed_error
    common = {
        "sigma2": float(sigma2),
        "sigma2_lme4": sigma2_lme4,
        "fixed_error": float(fixed_error),
        "mse_in": hv.mse_used,
        "mse_oof": hv.mse_oof,
        "floored": hv.floored if near is None else bool(near < 0.1 * hv.mse_oof),
        "sigma2_method": method,
        "sigma2_crossfit": hv.sigma2,
    }
    model.calibration_ = Calibration(scores_known=np.empty(0), scores_new=np.empty(0), **common)
    base = sigma2 + fixed_error
    v_known, _, _ = re_variance(model, X)
    h = np.clip(v_known / sigma2_lme4, 0.0, 0.9)
    if mode == "oob":
        # out-of-bag predictions never saw the row; it leaves its own random effect as
        # in ridge leave-one-out: b moves by h / (1 - h) times lme4's conditional residual
        r_known = (y - used - contribution) / (1.0 - h)
    s_known = np.abs(r_known) / np.sqrt(base + v_known)
    # new groups: the fixed part never saw the row's group, no random effect
    r_group = y - fixed_group - xg
    s_new = np.abs(r_group) / np.sqrt(base + _prior_variance(model, X))
    # dynamic: the group is known only from its outcomes, the fixed part never saw it; the
    # group's other rows give its random effect (ridge leave-one-out of the row itself)
    zb = _eb(model, model._re.frame, r_group, model._re.frame)
    r_dynamic = (r_group - zb) / (1.0 - h)
    v_all, _, _ = conditional_variance(model, X, 1.0 / base)
    v_loo = v_all / np.clip(1.0 - v_all / base, 0.1, None)
    s_dynamic = np.abs(r_dynamic) / np.sqrt(base + v_loo)
    return Calibration(
        scores_known=np.sort(s_known),
        scores_new=np.sort(s_new),
        scores_dynamic=np.sort(s_dynamic),
        **common,
    )


def _eb(model: Any, observed: pd.DataFrame, resid: np.ndarray, target: pd.DataFrame) -> np.ndarray:
    """``Z b`` on ``target`` from residuals ``y - f - X_r gamma`` of ``observed`` rows."""
    from .lme4_step import empirical_bayes

    return empirical_bayes(
        model._spec,
        model._re.terms[0],
        observed.reset_index(drop=True),
        np.asarray(resid, dtype=float),
        target.reset_index(drop=True),
    )


def _known_group_residuals(
    model: Any,
    est: Any,
    Xf: pd.DataFrame,
    y: np.ndarray,
    working: np.ndarray,
    used: np.ndarray,
    xg: np.ndarray,
    cv: int,
) -> np.ndarray:
    """Residuals of each training row predicted as a new row of a known group.

    Rows are held out in ``cv`` random folds.  Without the fold, one step of the loop:
    the random effects from the loop's residuals of the other rows, the estimator refitted
    on ``y`` minus them, the random effects again from its residuals of the kind the loop
    used (in-sample, or the loop's out-of-fold ones); the fold's rows are then
    predicted as ``predict`` predicts a new row of a known group.  Nothing of the held-out
    row enters its prediction (a first version fitted the estimator on the full fit's
    working response, whose random effects had seen the row: scores 20 % too small).
    """
    from sklearn.base import clone
    from sklearn.model_selection import KFold

    mode = model.residuals_used_
    frame = model._re.frame
    fixed = np.empty(len(y))
    zb = np.empty(len(y))
    folds = KFold(n_splits=cv, shuffle=True, random_state=0).split(np.zeros(len(y)))
    for tr, te in folds:
        # the random effects without the fold (from the loop's residuals), then one step
        # of the loop on the other rows: the estimator, and the random effects again
        start = _eb(model, frame.iloc[tr], (y - used - xg)[tr], frame.iloc[tr])
        fit = clone(est).fit(Xf.iloc[tr], (y - xg)[tr] - start)
        fixed[te] = np.asarray(fit.predict(Xf.iloc[te]), dtype=float).ravel()
        if mode == "in_sample":
            seen = np.asarray(fit.predict(Xf.iloc[tr]), dtype=float).ravel()
        else:  # out-of-fold: the loop's own predictions (nested folds would cost cv^2 fits)
            seen = used[tr]
        zb[te] = _eb(model, frame.iloc[tr], y[tr] - seen - xg[tr], frame.iloc[te])
    return y - fixed - xg - zb


def _prior_variance(model: Any, X: pd.DataFrame) -> np.ndarray:
    """``z'Gz`` of every row, as if each of its levels were new."""
    blocks = _factor_blocks(model)
    out = np.zeros(len(X))
    for rows in blocks.values():
        for a, b, val in rows:
            if b is None:
                out += _z(X, a) ** 2 * val
            else:
                out += 2.0 * _z(X, a) * _z(X, b) * val
    return np.maximum(out, 0.0)


def predict_interval(
    model: Any,
    X: pd.DataFrame,
    estimate: np.ndarray,
    *,
    y: np.ndarray | None = None,
    interval: str = "prediction",
    level: float = 0.95,
) -> pd.DataFrame:
    """``estimate``, ``lower``, ``upper`` for the rows of ``X`` (see the module text)."""
    from scipy.stats import norm

    if interval not in ("prediction", "confidence"):
        raise InvalidArgumentError(
            f"interval must be 'prediction' or 'confidence', not {interval!r}"
        )
    if not (isinstance(level, float | int) and 0 < level < 1):
        raise InvalidArgumentError(f"level must be a number between 0 and 1, not {level!r}")
    cal = getattr(model, "calibration_", None)
    if cal is None:
        raise InvalidArgumentError("intervals need a single-target Gaussian MixedML fit")
    v_re, seen, trained = re_variance(model, X, _observed(model, X, y))
    base_fixed = cal.fixed_error
    q_known = _conformal(cal.scores_known, level)
    q_new = _conformal(cal.scores_new, level)
    dynamic = cal.scores_dynamic if len(cal.scores_dynamic) else cal.scores_known
    q_dynamic = _conformal(dynamic, level)
    if not all(math.isfinite(v) for v in (q_known, q_new, q_dynamic)):
        n = min(len(cal.scores_known), len(cal.scores_new))
        warn(
            f"level={level} cannot be calibrated with {n} training rows (the conformal "
            f"quantile needs level <= n/(n+1) = {n / (n + 1):.4f}): the bounds are infinite",
            DataWarning,
        )
    # a row whose every level has training rows is "known"; one whose levels are known
    # only from the outcomes given as y is "dynamic"; any other is "new"
    q = np.where(trained, q_known, np.where(seen, q_dynamic, q_new))
    if interval == "prediction":
        sd = np.sqrt(cal.sigma2 + base_fixed + v_re)
        half = q * sd
    else:
        z = float(norm.ppf(0.5 + level / 2.0))
        # the calibrated / Gaussian ratio of the prediction quantile carries heavy tails over
        ratio = np.where(np.isfinite(q), q / z, np.inf)
        half = z * np.maximum(ratio, 1.0) * np.sqrt(base_fixed + v_re)
    est = np.asarray(estimate, dtype=float).ravel()
    return pd.DataFrame(
        {"estimate": est, "lower": est - half, "upper": est + half},
        index=X.index,
    )


def integrated_probability(
    model: Any, X: pd.DataFrame, eta: np.ndarray, y: np.ndarray | None = None
) -> np.ndarray:
    """``P(y = 1)`` of a binary MixedML fit, averaged over the random effects' uncertainty.

    ``eta`` is the linear predictor at the conditional modes of the random effects
    (``decision_function``).  Given the data, a row's random-effects contribution
    :math:`z'b` is approximately normal around its mode with variance :math:`v = z'Pz`,
    :math:`P = (G^{-1} + Z_g' W Z_g)^{-1}` per factor and level, ``W`` the IRLS weights
    :math:`\\mu(1-\\mu)` of the level's training rows (and of the rows observed in ``y``);
    :math:`E[\\operatorname{logistic}(\\eta + z'(b - \\hat b))] \\approx
    \\operatorname{logistic}(\\eta / \\sqrt{1 + \\pi v / 8})` (the probit approximation of
    the logistic-normal integral).  A level without rows has :math:`v = z'Gz`: its
    probability is the population average over groups, not that of a typical group.
    """
    from scipy.special import expit

    w_train = model.__dict__.get("_irls_weights_")
    if w_train is None:
        from .glmm_step import empirical_bayes_glmm

        fit = model._re
        zb = empirical_bayes_glmm(
            fit.spec, fit.terms, fit.family, fit.frame, fit.y, fit.offset, fit.frame
        )
        mu = expit(fit.offset + zb)
        w_train = mu * (1.0 - mu)
        model._irls_weights_ = w_train  # dropped with the other fitted attributes on refit
    eta = np.asarray(eta, dtype=float).ravel()
    mu_rows = expit(eta)
    v, _, _ = conditional_variance(
        model, X, w_train, _observed(model, X, y), mu_rows * (1.0 - mu_rows)
    )
    return expit(eta / np.sqrt(1.0 + math.pi * v / 8.0))
