"""MixedML: random effects on top of any scikit-learn regressor.

The mixedML framework (Kilian, Ye & Kelava, *Mixed effects in machine learning*, TMLR
2023) adds random effects as a correction on top of an unchanged machine-learning model:

.. math:: y = f(X) + Z u + \\varepsilon, \\qquad u \\sim N(0, G), \\quad
          \\varepsilon \\sim N(0, \\sigma^2 I)

and estimates it with an EM-like alternation, starting from :math:`u = 0`:

1. fit a clone of the estimator on :math:`(X, y - c)`, where :math:`c` is the current
   contribution of the residual model below (zero at the start);
2. take the residuals :math:`e = y - \\hat f(X)` (in-sample, or out-of-fold with folds
   that keep each group together);
3. lme4 fits the residual model ``e ~ <covariates of the random part> + <random part>``
   (ML or REML), giving :math:`u`, :math:`G`, :math:`\\sigma` and the new contribution
   :math:`c = X_r\\gamma + Zu`;

until the relative changes of the marginal log-likelihood and of :math:`u` fall below
``tol``.  Predictions are :math:`\\hat f(X) + X_r\\gamma + Zu`.

Why the random-part covariates :math:`X_r` also enter the residual model as fixed effects
(the paper fits ``e ~ 0 + <random part>``): the means of the random coefficients and the
fixed part trade off against each other, and with ``0 +`` that direction is corrected
only through the shrinkage of :math:`u`, so the alternation crawls (hundreds of
iterations on ``simulate_longitudinal``).  With :math:`X_r\\gamma` in the residual model
each step is an exact block update of one joint model
:math:`y = f(X) + X_r\\gamma + Zu + \\varepsilon` (backfitting), the marginal
likelihood increases monotonically for a linear estimator, and the means are estimated
together with :math:`u`.  With ``LinearRegression`` the fixed part
:math:`\\hat f(X) + X_r\\gamma` converges to lme4's ML fit of
``y ~ x + <random part>``; with an estimator that cannot represent :math:`X_r` (a forest
does not extrapolate a linear trend) :math:`X_r\\gamma` is a linear correction to it.

The random-effects data stay in R across iterations; only the residual vector crosses,
and lme4's ``refit`` reuses the model and starts from the previous estimate.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, MetaEstimatorMixin, RegressorMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.utils.validation import check_is_fitted

from . import _r
from .errors import DataError, PylmerError, RError, SingularFitWarning

__all__ = ["MixedMLRegressor"]


class MixedMLRegressor(MetaEstimatorMixin, RegressorMixin, BaseEstimator):
    """Random effects on top of any scikit-learn regressor (mixedML, EM with lme4).

    Parameters
    ----------
    estimator : regressor, default=None
        Learns the fixed part :math:`f(X)`; cloned at every iteration.  ``None`` means
        :class:`~sklearn.linear_model.LinearRegression`.
    random_effects : str
        lme4's random part, e.g. ``"(1 + x2_x5 + x4_x7 + x6_x8 || individus)"``; its
        covariates and grouping columns are columns of ``X``.
    features : list of str, optional
        Columns of ``X`` given to the estimator.  Default: every column except the
        grouping factors of ``random_effects``.
    reml : bool, default=False
        Fit the random-effects step by REML instead of ML.  With ML and a
        ``LinearRegression`` estimator the fixed point is lme4's ML fit of
        ``y ~ x + <random part>``.
    max_iter : int, default=50
        Maximum number of EM iterations; a :class:`~sklearn.exceptions.ConvergenceWarning`
        is issued when it is reached.
    tol : float, default=1e-4
        Convergence threshold on the relative change of the marginal log-likelihood and
        of the random effects (``max |u_new - u| / max(max |u|, 1e-8)``).  An estimator
        whose fit is not a smooth function of its target (random forest, boosting, a
        network trained by SGD) leaves :math:`u` moving by a few per cent between
        iterations even at the fixed point, so 1e-4 is never reached: use ``tol`` of
        about 0.01 to 0.05 for those (``history_["max_delta_u"]`` shows the floor).
    residuals : {"in_sample", "oof"}, default="in_sample"
        Which fixed-part predictions form the residuals the random effects are estimated
        from. ``"oof"`` uses out-of-fold predictions from ``cv`` folds that keep each
        group together (:class:`~sklearn.model_selection.GroupKFold` on the first grouping
        factor), so that an estimator which interpolates its training data (a random
        forest) cannot absorb the random effects.  It costs ``cv`` extra fits per iteration.
    cv : int, default=5
        Number of folds for ``residuals="oof"``.
    accelerate : bool, default=True
        Extrapolate the sequence of random effects every third iteration (SQUAREM,
        Varadhan & Roland 2008).  The plain alternation converges linearly and slowly
        when the estimator and the random part share covariates (random slopes);
        extrapolation cuts the iterations several-fold and leaves the fixed point as it is.
    verbose : int, default=0
        ``1`` prints one line per iteration.
    progress : bool, default=False
        Show a progress bar over iterations (needs ``tqdm``).

    Attributes
    ----------
    estimator_ : regressor
        The estimator fitted on :math:`(X, y - Zu)` in the last iteration.
    lmer_ : LmerModel or list of LmerModel
        The final random-effects model ``e ~ 0 + <random part>`` (one per target).
    ranef_ : dict or list of dict
        ``{grouping factor: DataFrame levels x terms}`` (one per target).
    varcorr_ : DataFrame or list of DataFrame
        Variance components, like ``as.data.frame(VarCorr(m))``.
    n_iter_ : int
        Number of iterations run.
    converged_ : bool
        Whether ``tol`` was reached before ``max_iter``.
    history_ : DataFrame
        One row per iteration: ``loglik``, ``sigma``, one column per variance component,
        ``max_delta_u``, ``train_mse``, ``seconds_ml`` and ``seconds_re``.  With several
        targets, ``loglik``, ``sigma`` and the components get one column per target,
        suffixed ``[j]``.

    Notes
    -----
    Several target columns: ``y`` of shape ``(n, k)`` fits one random-effects model per
    target, while the estimator learns all targets at once (it must support multi-output
    regression); ``lmer_``, ``ranef_`` and ``varcorr_`` are then lists, one per target.
    """

    def __init__(
        self,
        estimator: Any = None,
        *,
        random_effects: str,
        features: list[str] | None = None,
        reml: bool = False,
        max_iter: int = 50,
        tol: float = 1e-4,
        residuals: str = "in_sample",
        cv: int = 5,
        accelerate: bool = True,
        verbose: int = 0,
        progress: bool = False,
    ):
        self.estimator = estimator
        self.random_effects = random_effects
        self.features = features
        self.reml = reml
        self.max_iter = max_iter
        self.tol = tol
        self.residuals = residuals
        self.cv = cv
        self.accelerate = accelerate
        self.verbose = verbose
        self.progress = progress

    # ------------------------------------------------------------------ helpers

    def _base_estimator(self) -> Any:
        if self.estimator is None:
            from sklearn.linear_model import LinearRegression

            return LinearRegression()
        return self.estimator

    def _check_X(self, X: Any) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            raise DataError(
                "X must be a pandas DataFrame holding the features and the columns of "
                f"random_effects {self.random_effects!r}"
            )
        missing = [str(c) for c in self.re_columns_ if c not in X.columns]
        if missing:
            raise DataError(
                f"X lacks column(s) {missing} named in random_effects {self.random_effects!r}"
            )
        return X

    def _X_fixed(self, X: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.features_ if c not in X.columns]
        if missing:
            raise DataError(f"X lacks feature column(s) {missing}")
        return X[self.features_]

    def _fixed_part(self, est: Any, Xf: pd.DataFrame, target: np.ndarray, groups: Any) -> Any:
        """Fit ``est`` on the adjusted target; return it and the residual predictions.

        With ``residuals="oof"`` only the out-of-fold predictions are needed inside the
        loop, so ``est`` is returned unfitted: :meth:`fit` fits it once, after the loop, on
        the target of the last iteration (one fit per iteration saved, same result).
        """
        target = target[:, 0] if target.shape[1] == 1 else target
        if self.residuals == "in_sample":
            pred = est.fit(Xf, target).predict(Xf)
        else:
            folds = GroupKFold(n_splits=self.cv)
            pred = cross_val_predict(clone(est), Xf, target, groups=groups, cv=folds)
        return est, np.asarray(pred, dtype=float).reshape(len(Xf), -1)

    # ------------------------------------------------------------------ fit

    def fit(self, X: pd.DataFrame, y: Any) -> MixedMLRegressor:
        """Run the EM loop.

        Parameters
        ----------
        X : DataFrame
            Features, random-effects covariates and grouping columns.
        y : array-like of shape (n,) or (n, k)
            Target(s); no missing values.

        Returns
        -------
        self
        """
        if self.residuals not in ("in_sample", "oof"):
            raise ValueError(f"residuals must be 'in_sample' or 'oof', not {self.residuals!r}")
        if not isinstance(X, pd.DataFrame):
            raise DataError("X must be a pandas DataFrame")
        if len(X) == 0:
            raise DataError("X has no rows")
        names = [str(c) for c in X.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise DataError(f"duplicate column names: {', '.join(map(repr, dupes))}")
        spec = _r.call(".mixedml_vars", self.random_effects)
        self.residual_formula_ = f".pylmer_e ~ {spec['fixed']} + {self.random_effects}"
        self.re_columns_ = list(np.atleast_1d(spec["vars"]))
        self.groups_ = list(np.atleast_1d(spec["groups"]))
        X = self._check_X(X)
        self.features_ = (
            list(self.features)
            if self.features is not None
            else [c for c in X.columns if c not in self.groups_]
        )
        incomplete = X[self.re_columns_].isna().sum()
        if incomplete.any():
            counts = ", ".join(f"{c!r}: {n}" for c, n in incomplete[incomplete > 0].items())
            raise DataError(
                f"missing values in the random-effects columns ({counts}); drop those rows "
                "first (MixedML needs every row in both steps)"
            )
        try:
            Y = np.asarray(y, dtype=float)
        except (TypeError, ValueError):
            raise DataError("y must be numeric") from None
        if Y.ndim == 1:
            Y = Y[:, None]
        if Y.ndim != 2 or len(Y) != len(X):
            raise DataError(f"X has {len(X)} rows but y has {len(Y)}")
        if not np.isfinite(Y).all():
            raise DataError("y holds missing or infinite values; drop those rows first")
        self.n_targets_ = Y.shape[1]
        self._y_is_2d = np.ndim(y) == 2
        Xf = self._X_fixed(X)
        groups = X[self.groups_[0]].to_numpy()
        data = _r.bind(X[self.re_columns_])

        k = Y.shape[1]
        states: list[dict[str, Any] | None] = [None] * k
        history: list[dict[str, Any]] = []
        bar = self._progress_bar()

        last_target: list[np.ndarray] = []  # the estimator's target in the last iteration

        def step(zu: np.ndarray) -> tuple[np.ndarray, Any, np.ndarray]:
            """One EM iteration from the random-effect contributions ``zu``."""
            nonlocal states
            it = len(history) + 1
            t0 = time.perf_counter()
            last_target[:] = [Y - zu]
            est, pred = self._fixed_part(clone(self._base_estimator()), Xf, Y - zu, groups)
            t1 = time.perf_counter()
            resid = Y - pred
            try:
                new = [
                    _r.call(
                        ".mixedml_start", data, self.random_effects, resid[:, j], bool(self.reml)
                    )
                    if states[j] is None
                    else _r.call(".mixedml_step", states[j]["model"], resid[:, j])
                    for j in range(k)
                ]
            except PylmerError as exc:
                raise type(exc)(f"MixedML iteration {it}: {exc}") from exc
            t2 = time.perf_counter()
            delta_ll, delta_u = self._changes(states, new)
            states = new
            zu_new = np.column_stack([s["zu"] for s in states])
            history.append(self._history_row(it, states, delta_u, resid - zu_new, t1 - t0, t2 - t1))
            history[-1]["delta_loglik"] = delta_ll
            if self.verbose:
                print(_format_row(history[-1]))
            if bar is not None:
                bar.update(1)
            return zu_new, est, pred

        def done() -> bool:
            last = history[-1]
            return last["delta_loglik"] < self.tol and last["max_delta_u"] < self.tol

        try:
            zu, est, pred = step(np.zeros_like(Y))
            while not done() and len(history) < self.max_iter:
                zu1, est, pred = step(zu)
                if done() or not self.accelerate or len(history) + 2 > self.max_iter:
                    zu = zu1
                    continue
                zu2, est, pred = step(zu1)
                if done():
                    zu = zu2
                    continue
                loglik2 = sum(s["loglik"] for s in states)
                jump = step(_squarem(zu, zu1, zu2))
                if sum(s["loglik"] for s in states) >= loglik2:
                    zu, est, pred = jump
                else:  # the extrapolation overshot: take the plain step from zu2 instead
                    zu, est, pred = step(zu2)
            if self.residuals == "oof":  # see _fixed_part
                target = last_target[0]
                est.fit(Xf, target[:, 0] if target.shape[1] == 1 else target)
        except BaseException:
            for attr in ("estimator_", "lmer_", "ranef_", "varcorr_", "n_iter_", "history_"):
                self.__dict__.pop(attr, None)
            raise
        finally:
            if bar is not None:
                bar.close()

        self.converged_ = done()
        self.estimator_ = est
        self.n_iter_ = len(history)
        self.history_ = pd.DataFrame(history).set_index("iteration")
        if not self.converged_:
            warnings.warn(
                f"MixedML did not converge in {self.max_iter} iterations (tol={self.tol}); "
                "increase max_iter or tol",
                ConvergenceWarning,
                stacklevel=2,
            )
        self._finish(X, Y - pred, states)
        return self

    def _changes(self, old: list, new: list) -> tuple[float, float]:
        if old[0] is None:
            return np.inf, np.inf
        d_ll = max(
            abs(n["loglik"] - o["loglik"]) / max(abs(o["loglik"]), 1e-8)
            for o, n in zip(old, new, strict=True)
        )
        d_u = max(
            np.max(np.abs(np.atleast_1d(n["b"]) - np.atleast_1d(o["b"])))
            / max(np.max(np.abs(np.atleast_1d(o["b"]))), 1e-8)
            for o, n in zip(old, new, strict=True)
        )
        return float(d_ll), float(d_u)

    def _history_row(
        self, it: int, states: list, delta_u: float, resid: np.ndarray, t_ml: float, t_re: float
    ) -> dict[str, Any]:
        row: dict[str, Any] = {"iteration": it}
        multi = len(states) > 1
        for j, s in enumerate(states):
            sfx = f"[{j}]" if multi else ""
            row[f"loglik{sfx}"] = s["loglik"]
            row[f"sigma{sfx}"] = s["sigma"]
            vc = s["varcorr"]
            for _, r in vc[vc["var2"].isna()].iterrows():
                name = r["grp"] if pd.isna(r["var1"]) else f"{r['grp']}:{r['var1']}"
                row[f"var({name}){sfx}"] = r["vcov"]
        row["max_delta_u"] = delta_u
        row["train_mse"] = float(np.mean(resid**2))
        row["seconds_ml"] = t_ml
        row["seconds_re"] = t_re
        return row

    def _progress_bar(self) -> Any:
        if not self.progress:
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            warnings.warn("progress=True needs tqdm (pip install tqdm)", stacklevel=3)
            return None
        return tqdm(total=self.max_iter, desc="MixedML", unit="iter")

    def _finish(self, X: pd.DataFrame, resid: np.ndarray, states: list) -> None:
        """Build the final LmerModel(s) on the last residuals, and warn once if singular."""
        from .lmer import lmer

        models = []
        for j, s in enumerate(states):
            frame = X[self.re_columns_].copy()
            frame[".pylmer_e"] = resid[:, j]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SingularFitWarning)
                models.append(lmer(self.residual_formula_, frame, reml=bool(self.reml)))
            if s["singular"]:
                warnings.warn(
                    f"MixedML random-effects fit is singular (target {j}): a variance is "
                    "estimated at zero or a correlation at +-1",
                    SingularFitWarning,
                    stacklevel=3,
                )
        single = len(models) == 1
        self.lmer_ = models[0] if single else models
        self.ranef_ = models[0].ranef if single else [m.ranef for m in models]
        self.varcorr_ = models[0].varcorr if single else [m.varcorr for m in models]

    def _models(self) -> list[Any]:
        return self.lmer_ if isinstance(self.lmer_, list) else [self.lmer_]

    # ------------------------------------------------------------------ predict

    def predict(self, X: pd.DataFrame, y: Any = None) -> np.ndarray:
        """Predict :math:`f(X) + X_r\\gamma + Zu`.

        Parameters
        ----------
        X : DataFrame
            Same columns as in :meth:`fit`.
        y : array-like, optional
            Observed outcomes for (some of) the rows of ``X`` (NaN where unobserved).  The
            random effects of groups unseen in training are then estimated from these
            rows (empirical Bayes with the fitted variance components) and used for all
            rows of those groups; known groups keep their fitted random effects.  This is
            how a new subject's trajectory is predicted from their first visits.

        Returns
        -------
        ndarray of shape (n,) or (n, k)
            Known groups get :math:`f(X) + X_r\\gamma + Zu`; groups unseen in training
            get the fixed part :math:`f(X) + X_r\\gamma` (unless ``y`` is given for them).

        Notes
        -----
        With several grouping factors, ``y`` is used for rows whose levels are *all*
        unseen in training; other rows keep the training random effects.
        """
        check_is_fitted(self, "estimator_")
        X = self._check_X(X)
        if len(X) == 0:
            shape = (0,) if self.n_targets_ == 1 and not self._y_is_2d else (0, self.n_targets_)
            return np.empty(shape)
        fixed = np.asarray(self.estimator_.predict(self._X_fixed(X)), dtype=float)
        fixed = fixed.reshape(len(X), -1)
        frame = X[self.re_columns_]
        zu = np.column_stack(
            [np.asarray(m.predict(frame, allow_new_levels=True)) for m in self._models()]
        )
        if y is not None:
            zu = self._new_group_effects(X, np.asarray(y, dtype=float), fixed, zu)
        out = fixed + zu
        return out[:, 0] if self.n_targets_ == 1 and not self._y_is_2d else out

    def _new_group_effects(
        self, X: pd.DataFrame, Y: np.ndarray, fixed: np.ndarray, zu: np.ndarray
    ) -> np.ndarray:
        Y = Y.reshape(len(X), -1)
        if Y.shape[1] != self.n_targets_:
            raise DataError(f"y has {Y.shape[1]} target columns, the model {self.n_targets_}")
        unseen = np.ones(len(X), dtype=bool)
        for g, levels in self._seen_levels().items():
            unseen &= ~X[g].astype(str).isin(levels).to_numpy()
        zu = zu.copy()
        target = _r.bind(X[self.re_columns_])
        for j, model in enumerate(self._models()):
            rows = unseen & np.isfinite(Y[:, j])
            if not rows.any():
                continue
            obs = X.loc[rows, self.re_columns_].copy()
            # zu holds the residual model's fixed part for unseen groups: keep it as offset
            obs[".pylmer_e"] = Y[rows, j] - fixed[rows, j] - zu[rows, j]
            try:
                new = _r.call(
                    ".mixedml_new_groups",
                    np.asarray(model.theta, dtype=float),
                    _r.bind(obs),
                    target,
                    self.random_effects,
                    bool(self.reml),
                )
            except RError as exc:
                raise RError(f"estimating random effects of new groups failed: {exc}") from exc
            zu[unseen, j] += np.asarray(new)[unseen]
        return zu

    def _seen_levels(self) -> dict[str, set[str]]:
        """Levels of each (non-nested) grouping factor seen in training, as strings."""
        ranef = self.ranef_ if isinstance(self.ranef_, dict) else self.ranef_[0]
        return {g: set(map(str, df.index)) for g, df in ranef.items() if g in self.groups_}


def _squarem(x0: np.ndarray, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """SQUAREM extrapolation (Varadhan & Roland 2008, scheme S3) of a fixed-point sequence.

    From three successive iterates it jumps along the sequence's dominant direction; the
    EM step that follows re-projects the jump onto a consistent state.  The step length
    is at least one plain step (``alpha <= -1``) and at most 100 of them.
    """
    r = x1 - x0
    v = x2 - 2 * x1 + x0
    norm_v = np.linalg.norm(v)
    if norm_v == 0:
        return x2
    alpha = float(np.clip(-np.linalg.norm(r) / norm_v, -100.0, -1.0))
    return x0 - 2 * alpha * r + alpha**2 * v


def _format_row(row: dict[str, Any]) -> str:
    ll = next(v for k, v in row.items() if k.startswith("loglik"))
    return (
        f"MixedML iter {row['iteration']:3d}  loglik {ll: .6g}  max|du| {row['max_delta_u']:.3g}"
        f"  train MSE {row['train_mse']:.4g}  ML {row['seconds_ml']:.2f}s"
        f"  RE {row['seconds_re']:.2f}s"
    )
