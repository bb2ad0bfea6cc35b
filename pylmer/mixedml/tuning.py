"""Tuning the estimator inside MixedML at the cost of about two fits.

``GridSearchCV`` over a :class:`~pylmer.MixedMLRegressor` runs a whole EM loop for every
candidate and fold.  :func:`tune_in_loop` runs the loop once with the estimator as
given, takes the *working response* of its final state (``y`` minus the random-effects
contribution :math:`X_r\\gamma + Zb`: what the estimator is asked to learn once the
random effects have settled), tunes the estimator on it with an ordinary grid search
whose folds keep each group together, and runs the loop once more with the chosen
parameters.  Cost: two EM loops plus ``candidates x cv`` fits of the bare estimator,
instead of ``candidates x cv`` EM loops.  The first loop skips what a fit does after the
loop (the intervals' calibration and the honest residual variance: ``cv + 2`` more fits
of the estimator), which the tuning never reads; the final model has them.

Why it is sound: at the fixed point the estimator is fitted to exactly this working
response, so the candidates are compared on the problem they face inside the loop.  The
random-effects contribution depends a little on the estimator (a better fixed part moves
the random effects), which the second loop takes into account.  Limits: the grid is
judged at the first estimator's random effects; a grid whose candidates change the
random effects much (an estimator that absorbs them, e.g. a forest scored on in-sample
residuals) is judged on the wrong working response.  Folds are
:class:`~sklearn.model_selection.GroupKFold` on the first grouping column: rows of one
group share their random effect, and keeping them apart from their group's validation
rows would reward an estimator that memorises it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

__all__ = ["tune_in_loop"]


def tune_in_loop(
    model: Any,
    X: pd.DataFrame,
    y: Any,
    param_grid: dict[str, list[Any]] | list[dict[str, list[Any]]],
    *,
    cv: int = 3,
    scoring: str = "neg_mean_squared_error",
    n_jobs: int | None = None,
) -> Any:
    """Tune ``model``'s estimator on the working response, then refit ``model``.

    Parameters
    ----------
    model : MixedMLRegressor
        Unfitted; its ``estimator`` is the starting point of the search.
    X : DataFrame
        As for ``model.fit``.
    y : array-like of shape (n,)
        The target.
    param_grid : dict or list of dict
        Parameters of the *estimator* (not ``estimator__``-prefixed), as for
        :class:`~sklearn.model_selection.GridSearchCV`.
    cv : int, default=3
        Number of group folds (GroupKFold on the first grouping column).
    scoring : str, default="neg_mean_squared_error"
        Scikit-learn scorer of the grid search.
    n_jobs : int, optional
        Passed to the grid search.

    Returns
    -------
    MixedMLRegressor
        A new model fitted with the best parameters; ``tuning_`` holds ``best_params``,
        ``cv_results`` (DataFrame), ``seconds`` (total), ``n_iter_first`` (EM steps of the
        first loop) and ``first`` (the first fitted model: its loop only, without
        ``calibration_``, so no intervals, and ``varcorr_`` holds lme4's residual
        variance).

    Examples
    --------
    >>> from sklearn.ensemble import HistGradientBoostingRegressor
    >>> model = MixedMLRegressor(HistGradientBoostingRegressor(),
    ...                          random_effects="(1 | item) + (1 | rater)")
    >>> tuned = tune_in_loop(model, X, y, {"max_leaf_nodes": [15, 31, 63]})  # doctest: +SKIP
    >>> tuned.tuning_["best_params"]  # doctest: +SKIP
    {'max_leaf_nodes': 15}
    """
    from sklearn.model_selection import GridSearchCV, GroupKFold

    t0 = time.perf_counter()
    first = _fit_loop_only(clone(model), X, y)
    features = list(first.features_)
    fixed = np.asarray(first.estimator_.predict(X[features]), dtype=float)
    contribution = np.asarray(first.predict(X), dtype=float) - fixed
    working = np.asarray(y, dtype=float) - contribution
    groups = X[first.groups_[0]].astype("category").cat.codes.to_numpy()
    base = first._base_estimator() if hasattr(first, "_base_estimator") else model.estimator
    search = GridSearchCV(
        clone(base),
        param_grid,
        cv=GroupKFold(n_splits=cv),
        scoring=scoring,
        refit=False,
        n_jobs=n_jobs,
    )
    search.fit(X[features], working, groups=groups)
    best = dict(search.best_params_)
    final = clone(model).set_params(estimator=clone(base).set_params(**best))
    final.fit(X, y)
    final.tuning_ = {
        "best_params": best,
        "cv_results": pd.DataFrame(search.cv_results_),
        "seconds": time.perf_counter() - t0,
        "n_iter_first": int(first.n_iter_),
        "first": first,
    }
    return final


def _no_after_fit(X: pd.DataFrame, Y: np.ndarray) -> None:
    """Stands in for ``_after_fit`` on the first loop (its calibration is never used)."""


def _fit_loop_only(model: Any, X: pd.DataFrame, y: Any) -> Any:
    """``model.fit(X, y)`` without the work after the loop (``_after_fit``)."""
    model._after_fit = _no_after_fit  # an instance attribute shadows the method
    try:
        return model.fit(X, y)
    finally:
        del model.__dict__["_after_fit"]
