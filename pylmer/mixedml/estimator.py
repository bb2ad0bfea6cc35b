"""MixedMLRegressor: random effects on top of any scikit-learn regressor.

The mixedML framework (Kilian, Ye & Kelava, *Mixed effects in machine learning*, TMLR
2023) adds random effects as a correction on top of an unchanged machine-learning model:

.. math:: y = f(X) + X_r\\gamma + Z b + \\varepsilon, \\qquad b \\sim N(0, G), \\quad
          \\varepsilon \\sim N(0, \\sigma^2 I)

estimated by an EM-like alternation (:mod:`pylmer.mixedml.engine`), starting from a zero
random-effects contribution :math:`c`:

1. fit a clone of the estimator on :math:`(X, y - c)`;
2. lme4 fits the *residual model* on :math:`e = y - \\hat f(X)`::

       .pylmer_e ~ 1 + <every covariate of the random part> + <random part>

   giving :math:`\\gamma`, :math:`b`, :math:`G`, :math:`\\sigma` and the new contribution
   :math:`c = X_r\\gamma + Zb`.

Why the covariates of the random part enter the residual model as fixed effects (the
paper fits ``e ~ 0 + <random part>``): the means of the random coefficients and the fixed
part trade off against each other, and with ``0 +`` that direction is corrected only
through the shrinkage of :math:`b`, so the alternation crawls.  With :math:`X_r\\gamma`
each step is an exact block update of one joint model (backfitting), the marginal
likelihood rises monotonically for a linear estimator, and with ``LinearRegression`` the
fixed point is lme4's ML fit of ``y ~ x + <random part>``.  The residual model comes from
R's own parse of ``random_effects`` (``findbars``): ``||``, nested ``a/b`` and crossed
terms are lme4's; the intercept is always in its fixed part.

The loop's last state *is* the fitted model: ``lmer_`` is the last lme4 fit (no refit
after the loop), ``estimator_`` the estimator fitted in that same step.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, MetaEstimatorMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning

from ..errors import (
    DataError,
    InvalidArgumentError,
    NotFittedError,
    PylmerError,
    SingularFitWarning,
)
from ..r import session as _r
from . import engine
from .labels import GroupCoding
from .lme4_step import LmerStep, ResidualModel, empirical_bayes
from .threads import estimator_threads, r_blas_single_threaded

__all__ = ["MixedMLRegressor"]

_FITTED = (
    "estimator_",
    "lmer_",
    "ranef_",
    "ranef_sd_",
    "varcorr_",
    "n_iter_",
    "converged_",
    "stop_reason_",
    "history_",
    "residual_formula_",
    "residuals_used_",
)

_RESIDUALS = ("auto", "in_sample", "oof", "oob")


class MixedMLRegressor(MetaEstimatorMixin, RegressorMixin, BaseEstimator):
    """Random effects on top of any scikit-learn regressor (mixedML, EM with lme4).

    Parameters
    ----------
    estimator : regressor, default=None
        Learns the fixed part :math:`f(X)`; cloned at every iteration.  ``None`` means
        :class:`~sklearn.linear_model.LinearRegression`.
    random_effects : str
        lme4's random part, e.g. ``"(1 + x2_x5 + x4_x7 + x6_x8 || individus)"``,
        ``"(1 | school/class)"`` or ``"(1 | item) + (1 | subject)"``; its covariates and
        grouping columns are columns of ``X``.
    features : list of str, optional
        Columns of ``X`` given to the estimator.  Default: every column except the
        grouping columns of ``random_effects``.
    reml : bool, default=False
        Fit the random-effects step by REML instead of ML.  With ML and a
        ``LinearRegression`` estimator the fixed point is lme4's ML fit of
        ``y ~ x + <random part>``.
    max_iter : int, default=100
        Most EM steps (extrapolated ones included); never exceeded.  Forests and
        boosting stop in the stationary regime well before; a linear estimator on
        covariates nearly collinear with the random part's needs about 60 on
        ``examples/mixedml_longitudinal.py``.
    tol : float, default=1e-4
        The ``"tol"`` stopping rule: the marginal log-likelihood changes by less than
        ``tol`` per observation and every term's random effects by less than ``tol``
        times their root mean square, between a state and the plain step from it.
    residuals : {"auto", "in_sample", "oof", "oob"}, default="auto"
        Which fixed-part predictions the random effects are estimated from.
        ``"in_sample"``: the estimator's predictions on its training rows.  ``"oof"``:
        out-of-fold predictions from ``cv`` folds that keep each group together
        (:class:`~sklearn.model_selection.GroupKFold` on the first grouping column), at
        ``cv`` extra fits per iteration.  ``"oob"``: the out-of-bag predictions of a
        bagging ensemble (``oob_score=True`` is set on the clone), at no extra fit.
        ``"auto"`` uses ``"oob"`` for bagged forests (random forests), ``"oof"`` for
        forests without bootstrap (extra trees) and ``"in_sample"`` otherwise.  Why:
        a forest grown to single-row leaves (scikit-learn's default) *interpolates* its
        training rows, so its in-sample predictions already contain the random effects
        it was asked to leave out; the residuals are then nearly zero, the residual
        variance collapses (0.19 for a generating 1.0) and the random-effect variances
        drift without limit.  Out-of-bag predictions do not see the row they predict.
    cv : int, default=5
        Number of folds for ``residuals="oof"``.
    accelerate : bool, default=True
        SQUAREM extrapolation (Varadhan & Roland 2008) of the random-effects contribution
        every third step while the log-likelihood rises monotonically.  The plain
        alternation converges linearly and slowly when the estimator and the random part
        share covariates; extrapolation cuts the steps several-fold and leaves the fixed
        point as it is.  A jump that lowers the log-likelihood is dropped and the loop
        continues from the last plain state.
    verbose : int, default=0
        ``1`` prints one line per step.
    progress : bool, default=False
        Show a progress bar over steps (needs ``tqdm``).
    family : {"gaussian", "poisson"}, default="gaussian"
        ``"poisson"``: counts with a log link; the estimator learns :math:`f` on the log
        scale and glmer fits the random part with :math:`f` as an offset
        (:mod:`pylmer.mixedml.glmm_step`); ``predict`` returns expected counts, the
        final fit is ``glmer_`` (a GlmerModel) and ``reml`` does not apply.  Binary
        outcomes: :class:`~pylmer.MixedMLClassifier`.

    Attributes
    ----------
    estimator_ : regressor
        The estimator of the final state (fitted on :math:`y - c` of that step).
    lmer_ : LmerModel or list of LmerModel
        The final random-effects model, the loop's last lme4 fit (one per target).
    ranef_ : dict or list of dict
        ``{grouping factor: DataFrame levels x terms}``, indexed by the original values
        of the grouping column (a MultiIndex for nested factors such as ``b:a``).
    ranef_sd_ : dict or list of dict
        Their conditional standard deviations, same shape.
    varcorr_ : DataFrame or list of DataFrame
        Variance components, like ``as.data.frame(VarCorr(m))``.
    n_iter_ : int
        Number of EM steps evaluated (``<= max_iter``).
    converged_ : bool
        Whether a stopping rule ended the loop (not ``max_iter``).
    stop_reason_ : str
        ``"tol"`` (the changes fell below ``tol``), ``"stationary"`` (the estimator is not
        a smooth function of its target and the log-likelihood reached a noise band
        without trend: see :class:`pylmer.mixedml.engine.StoppingRule`) or ``"max_iter"``.
    residuals_used_ : str
        What ``residuals="auto"`` resolved to.
    residual_formula_ : str
        The residual model, as R parsed and deparsed it.
    history_ : DataFrame
        One row per step: ``kind`` (plain or jump), ``accepted``, ``loglik``,
        ``delta_loglik`` (per observation), ``max_delta_u`` (largest change of a term's
        random effects relative to their root mean square), ``sigma``, one column per
        variance component, ``train_mse``, ``seconds_ml``, ``seconds_re``.  With several
        targets the per-target columns are suffixed ``[j]``.

    Notes
    -----
    Several target columns: ``y`` of shape ``(n, k)`` fits one random-effects model per
    target, while the estimator learns all targets at once (it must support multi-output
    regression); ``lmer_``, ``ranef_`` and ``varcorr_`` are then lists.
    """

    def __init__(
        self,
        estimator: Any = None,
        *,
        random_effects: str,
        features: list[str] | None = None,
        reml: bool = False,
        max_iter: int = 100,
        tol: float = 1e-4,
        residuals: str = "auto",
        cv: int = 5,
        accelerate: bool = True,
        verbose: int = 0,
        progress: bool = False,
        family: str = "gaussian",
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
        self.family = family

    # ------------------------------------------------------------------ checks

    def _validate_params(self) -> None:
        if self.residuals not in _RESIDUALS:
            raise InvalidArgumentError(
                f"residuals must be one of {_RESIDUALS}, not {self.residuals!r}"
            )
        if not isinstance(self.max_iter, int | np.integer) or self.max_iter < 1:
            raise InvalidArgumentError(
                f"max_iter must be a positive integer, not {self.max_iter!r}"
            )
        if not (isinstance(self.tol, int | float) and self.tol > 0):
            raise InvalidArgumentError(f"tol must be a positive number, not {self.tol!r}")
        if not isinstance(self.cv, int | np.integer) or self.cv < 2:
            raise InvalidArgumentError(f"cv must be an integer >= 2, not {self.cv!r}")

    def _base_estimator(self) -> Any:
        if self.estimator is None:
            from sklearn.linear_model import LinearRegression

            return LinearRegression()
        return self.estimator

    @staticmethod
    def _check_frame(X: Any, what: str = "X") -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            raise DataError(
                f"{what} must be a pandas DataFrame holding the features and the columns of "
                f"random_effects, not {type(X).__name__}"
            )
        names = [str(c) for c in X.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise DataError(f"duplicate column names: {', '.join(map(repr, dupes))}")
        return X

    def _check_columns(self, X: pd.DataFrame, spec: ResidualModel, features: list[str]) -> None:
        missing = [c for c in spec.vars if c not in X.columns]
        if missing:
            raise DataError(
                f"X lacks column(s) {missing} named in random_effects {spec.random_effects!r}"
            )
        missing = [c for c in features if c not in X.columns]
        if missing:
            raise DataError(f"X lacks feature column(s) {missing}")
        bad = {c: int(X[c].isna().sum()) for c in spec.covariates if X[c].isna().any()}
        if bad:
            counts = ", ".join(f"{c!r}: {n}" for c, n in bad.items())
            raise DataError(
                f"missing values in the random-effects columns ({counts}); drop those rows "
                "first (MixedML needs every row in both steps)"
            )

    @staticmethod
    def _outcome(y: Any, n: int, what: str = "y", allow_nan: bool = False) -> np.ndarray:
        if isinstance(y, str):
            raise DataError(f"{what} must be numeric, not a string")
        try:
            Y = np.asarray(y, dtype=float)
        except (TypeError, ValueError):
            raise DataError(f"{what} must be numeric (it holds text or objects)") from None
        if Y.ndim == 0:
            raise DataError(f"{what} must be one value per row of X, not a scalar")
        if Y.ndim == 1:
            Y = Y[:, None]
        if Y.ndim != 2:
            raise DataError(f"{what} must have 1 or 2 dimensions, not {Y.ndim}")
        if len(Y) != n:
            raise DataError(f"X has {n} rows but {what} has {len(Y)} values; give one per row")
        if allow_nan:
            if np.isinf(Y).any():
                raise DataError(f"{what} holds infinite values")
        elif not np.isfinite(Y).all():
            raise DataError(f"{what} holds missing or infinite values; drop those rows first")
        return Y

    def _resolve_residuals(self, est: Any) -> str:
        if self.residuals != "auto":
            return self.residuals
        params = est.get_params(deep=False) if hasattr(est, "get_params") else {}
        if "oob_score" in params:  # a forest: interpolates its rows at default settings
            return "oob" if params.get("bootstrap", False) else "oof"
        return "in_sample"

    def _fixed_error(self, X: pd.DataFrame, exc: Exception) -> Exception:
        """A DataError naming the non-numeric feature columns, when they are the cause."""
        text = [c for c in self.features_ if not pd.api.types.is_numeric_dtype(X[c].dtype)]
        if text and isinstance(exc, ValueError | TypeError):
            return DataError(
                f"feature column(s) {text} are not numeric and the estimator cannot use them "
                f"({type(exc).__name__}: {exc}); encode them (e.g. one-hot in a pipeline) or "
                "leave them out with features="
            )
        return exc

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
        for attr in _FITTED:  # nothing of a previous fit survives a failed one
            self.__dict__.pop(attr, None)
        self.__dict__.pop("family_", None)
        if self.family != "gaussian":
            from .classifier import fit_glmm_regressor

            return fit_glmm_regressor(self, X, y)
        try:
            fitted = self._fit(X, y)
        except PylmerError as exc:
            it = getattr(exc, "mixedml_iteration", None)
            if it is not None and not str(exc).startswith("MixedML iteration"):
                raise type(exc)(f"MixedML iteration {it}: {exc}") from exc
            raise
        self.__dict__.update(fitted)
        if not self.converged_:
            warnings.warn(self._convergence_advice(), ConvergenceWarning, stacklevel=2)
        singular = [j for j, s in enumerate(self._singular) if s]
        if singular:
            which = "" if self.n_targets_ == 1 else f" (target {', '.join(map(str, singular))})"
            warnings.warn(
                f"MixedML random-effects fit is singular{which}: a variance is estimated at "
                "zero or a correlation at +-1",
                SingularFitWarning,
                stacklevel=2,
            )
        return self

    def _fit(self, X: Any, y: Any) -> dict[str, Any]:
        self._validate_params()
        X = self._check_frame(X)
        if len(X) == 0:
            raise DataError("X has no rows")
        spec = ResidualModel.parse(self.random_effects)
        features = (
            list(self.features)
            if self.features is not None
            else [c for c in X.columns if c not in spec.groups]
        )
        self._check_columns(X, spec, features)
        if not features:
            raise DataError("no feature columns left for the estimator; pass features=")
        Y = self._outcome(y, len(X))
        coding = GroupCoding(X[spec.groups])
        frame = coding.encode(X[spec.vars])
        data = _r.bind(frame)
        est = self._base_estimator()
        residuals = self._resolve_residuals(est)
        if residuals == "oob":
            from sklearn.base import clone

            est = clone(est).set_params(oob_score=True)
        Xf = X[features]
        fixed_step = engine.EstimatorStep(
            est,
            Xf,
            residuals=residuals,
            groups=frame[spec.groups[0]].cat.codes,
            cv=self.cv,
            context=estimator_threads,
        )
        re_steps = [LmerStep(data, Y[:, j], spec, self.reml) for j in range(Y.shape[1])]
        rule = engine.StoppingRule(tol=float(self.tol))
        bar = self._progress_bar()
        rows: list[dict[str, Any]] = []

        def callback(state: engine.EMState, record: dict[str, Any]) -> None:
            rows.append(self._history_row(state, record, Y))
            if self.verbose:
                print(_format_row(rows[-1]))
            if bar is not None:
                bar.update(1)

        self.features_ = features  # _fixed_error reads it
        try:
            with r_blas_single_threaded():
                result = engine.run(
                    Y,
                    fixed_step,
                    re_steps,
                    max_iter=int(self.max_iter),
                    rule=rule,
                    accelerate=bool(self.accelerate),
                    callback=callback,
                )
                final = result.state
                estimator = engine.EstimatorStep.finalize(final.estimator)
                models, terms = self._final_models(final, frame, spec, Y)
        except PylmerError:
            raise
        except (ValueError, TypeError) as exc:
            raise self._fixed_error(X, exc) from exc
        finally:
            self.__dict__.pop("features_", None)
            if bar is not None:
                bar.close()
        single = len(models) == 1
        ranef = [self._ranef(m.ranef, coding, spec) for m in models]
        ranef_sd = [self._ranef(m.ranef_sd, coding, spec) for m in models]
        resid = Y - final.fixed - np.column_stack([t["fixed"] for t in terms])
        history = pd.DataFrame(rows).set_index("iteration")
        return {
            "estimator_": estimator,
            "lmer_": models[0] if single else models,
            "ranef_": ranef[0] if single else ranef,
            "ranef_sd_": ranef_sd[0] if single else ranef_sd,
            "varcorr_": models[0].varcorr if single else [m.varcorr for m in models],
            "n_iter_": result.n_iter,
            "converged_": result.converged,
            "stop_reason_": result.reason,
            "history_": history,
            "residual_formula_": spec.formula,
            "residuals_used_": residuals,
            "features_": features,
            "re_columns_": list(spec.vars),
            "groups_": list(spec.groups),
            "n_targets_": Y.shape[1],
            "_y_is_2d": np.ndim(y) == 2,
            "_spec": spec,
            "_coding": coding,
            "_terms": terms,
            "_train_frame": frame,
            "_train_resid": resid,
            "_singular": [bool(r.singular) for r in final.re],
            "_records": result.records,
        }

    def _final_models(
        self, final: engine.EMState, frame: pd.DataFrame, spec: ResidualModel, Y: np.ndarray
    ) -> tuple[list[Any], list[dict[str, Any]]]:
        """The final state's lme4 fits as LmerModels, and what predict needs from them."""
        from ..models.lmer import LmerModel, _Spec

        models, terms = [], []
        for j, fit in enumerate(final.re):
            out, conditions = _r.call_with_conditions(".mixedml_final", fit.handle)
            data = frame.copy()
            data[".pylmer_e"] = Y[:, j] - final.fixed[:, j]  # what the last lme4 fit saw
            lspec = _Spec(spec.formula, bool(self.reml), None, None, "omit")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SingularFitWarning)
                models.append(LmerModel._from_r(out, lspec, data, conditions))
            t = _r.call(".mixedml_terms", fit.handle)
            t["fixed"] = np.atleast_1d(np.asarray(t["fixed"], dtype=float))
            terms.append(t)
        return models, terms

    @staticmethod
    def _ranef(frames: dict[str, Any], coding: GroupCoding, spec: ResidualModel) -> dict[str, Any]:
        """lme4's per-factor tables, indexed by the original grouping values."""
        out = {}
        for factor, df in frames.items():
            df = df.copy()
            parts = spec.factors.get(factor, [factor])
            df.index = coding.index(df.index, factor, parts)
            out[factor] = df
        return out

    def _history_row(
        self, state: engine.EMState, record: dict[str, Any], Y: np.ndarray
    ) -> dict[str, Any]:
        row: dict[str, Any] = {
            "iteration": record["iteration"],
            "kind": record["kind"],
            "accepted": record["accepted"],
        }
        multi = len(state.re) > 1
        for j, fit in enumerate(state.re):
            sfx = f"[{j}]" if multi else ""
            row[f"loglik{sfx}"] = fit.loglik
            row[f"sigma{sfx}"] = fit.sigma
            for name, value in fit.variances.items():
                row[f"{name}{sfx}"] = value
        row["delta_loglik"] = record["delta_loglik"]
        row["max_delta_u"] = record["max_delta_u"]
        row["step_length"] = record["step_length"]
        row["train_mse"] = float(np.mean((Y - state.fixed - state.contribution) ** 2))
        row["seconds_ml"] = record["seconds_ml"]
        row["seconds_re"] = record["seconds_re"]
        return row

    def _progress_bar(self) -> Any:
        if not self.progress:
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            warnings.warn("progress=True needs tqdm (pip install tqdm)", stacklevel=4)
            return None
        return tqdm(total=self.max_iter, desc="MixedML", unit="iter")

    def _convergence_advice(self) -> str:
        chain = [r["loglik"] for r in self._records if r["accepted"]]
        head = (
            f"MixedML did not converge: it stopped at max_iter={self.max_iter} before a "
            f"stopping rule held (tol={self.tol:g})"
        )
        tail = np.asarray(chain[-6:], dtype=float)
        if len(tail) >= 3:
            steps = np.diff(tail)
            if (steps > 0).all():
                return (
                    f"{head}: the log-likelihood still rises steadily "
                    f"({steps[-1] / self._train_frame.shape[0]:.2g} per observation in the "
                    "last step); increase max_iter"
                )
            t = engine.trend_t(tail)
            h = self.history_[self.history_["accepted"]]
            drifting = [
                c
                for c in h.columns
                if c.startswith("var(")
                and len(h) >= 3
                and np.ptp(h[c].to_numpy()[-6:]) > 0
                and abs(engine.trend_t(h[c].to_numpy()[-6:])) >= engine.StoppingRule().t_crit_params
            ]
            if t <= -engine.StoppingRule().t_crit or drifting:
                what = f"{', '.join(drifting)} drift" if drifting else "the log-likelihood falls"
                return (
                    f"{head}: {what} by more than the step-to-step noise (a drift, not "
                    "convergence); an estimator that fits its training rows too closely "
                    "absorbs the random effects: use residuals='oof' (or 'oob' for a bagged "
                    "forest) or regularise the estimator (e.g. min_samples_leaf)"
                )
        return f"{head}; increase max_iter"

    # ------------------------------------------------------------------ predict

    def _check_fitted(self) -> None:
        if not hasattr(self, "estimator_"):
            raise NotFittedError(
                "this MixedMLRegressor is not fitted yet; call fit(X, y) before predict"
            )

    def predict(self, X: pd.DataFrame, y: Any = None) -> np.ndarray:
        """Predict :math:`f(X) + X_r\\gamma + Zb`, using observed outcomes when given.

        Parameters
        ----------
        X : DataFrame
            Same columns as in :meth:`fit`.
        y : array-like, optional
            Observed outcomes for (some of) the rows of ``X`` (NaN where unobserved).  The
            random effects are then the empirical-Bayes modes given *every* observed
            outcome, with the variance parameters and :math:`\\gamma` of the fit fixed: for
            a group seen in training, its training rows and its new rows together (a
            known patient's new visits update their trajectory); for a new group, its new
            rows.  Without ``y`` the random effects are those of the fit.

        Returns
        -------
        ndarray of shape (n,) or (n, k)
            Groups without any observed row (unseen in training, no ``y``) get the fixed
            part :math:`f(X) + X_r\\gamma`; so do rows whose grouping value is missing.

        Raises
        ------
        NotFittedError
            Before :meth:`fit` (also scikit-learn's ``NotFittedError``).

        Examples
        --------
        A known subject's later visits update their trajectory (sleepstudy: fit on days
        0-4, observe days 5-6, forecast days 7-9)::

            sleep = pylmer.datasets.load("sleepstudy")
            train, later = sleep[sleep.Days < 5], sleep[sleep.Days >= 5]
            model = MixedMLRegressor(random_effects="(Days | Subject)")
            model.fit(train[["Subject", "Days"]], train["Reaction"])
            seen = later["Reaction"].where(later.Days <= 6)      # NaN on days 7-9
            model.predict(later[["Subject", "Days"]], y=seen)    # uses days 0-6

        Do not pass the training rows again as ``y``: they are already in the fit, and
        would count twice.
        DataError
            ``X`` lacks a column, ``y`` does not have one value per row, a random-slope
            covariate is missing, a feature is not numeric.
        """
        self._check_fitted()
        if getattr(self, "family_", "gaussian") != "gaussian":
            from .classifier import predict_glmm_regressor

            return predict_glmm_regressor(self, X, y)
        X = self._check_frame(X)
        self._check_columns(X, self._spec, self.features_)
        Y = None if y is None else self._outcome(y, len(X), allow_nan=True)
        if Y is not None and Y.shape[1] != self.n_targets_:
            raise DataError(f"y has {Y.shape[1]} target columns, the model {self.n_targets_}")
        if len(X) == 0:
            shape = (0,) if self.n_targets_ == 1 and not self._y_is_2d else (0, self.n_targets_)
            return np.empty(shape)
        try:
            with estimator_threads():
                fixed = np.asarray(self.estimator_.predict(X[self.features_]), dtype=float)
        except (ValueError, TypeError) as exc:
            raise self._fixed_error(X, exc) from exc
        fixed = fixed.reshape(len(X), -1)
        target = self._coding.encode(X[self.re_columns_])
        models = self.lmer_ if isinstance(self.lmer_, list) else [self.lmer_]
        out = np.empty((len(X), self.n_targets_))
        with r_blas_single_threaded():
            for j, model in enumerate(models):
                xg = model.predict(target, include_random=False).to_numpy(dtype=float)
                observed, resid = self._train_frame, self._train_resid[:, j]
                if Y is not None:
                    rows = np.isfinite(Y[:, j]) & self._grouped(X)
                    if rows.any():
                        observed = pd.concat(
                            [observed, target.loc[rows]], ignore_index=True
                        ).astype({g: "object" for g in self.groups_})
                        resid = np.r_[resid, (Y[:, j] - fixed[:, j] - xg)[rows]]
                zb = empirical_bayes(self._spec, self._terms[j], observed, resid, target)
                out[:, j] = fixed[:, j] + xg + zb
        return out[:, 0] if self.n_targets_ == 1 and not self._y_is_2d else out

    def _grouped(self, X: pd.DataFrame) -> np.ndarray:
        """Rows whose grouping values are all present."""
        return X[self.groups_].notna().all(axis=1).to_numpy()


def _format_row(row: dict[str, Any]) -> str:
    ll = next(v for k, v in row.items() if k.startswith("loglik"))
    return (
        f"MixedML iter {row['iteration']:3d} {row['kind']:<5} loglik {ll: .8g}  "
        f"max|du| {row['max_delta_u']:.3g}  train MSE {row['train_mse']:.4g}  "
        f"ML {row['seconds_ml']:.2f}s  RE {row['seconds_re']:.2f}s"
    )
