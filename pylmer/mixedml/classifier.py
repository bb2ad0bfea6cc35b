"""MixedMLClassifier, and MixedML for counts: random effects on top of any regressor,
for binary and Poisson outcomes.

The model (logit link for binary outcomes, log link for counts):

.. math:: g(E[y \\mid b]) = f(X) + X_r\\gamma + Zb, \\qquad b \\sim N(0, G)

The estimator (any scikit-learn *regressor*) learns the fixed part :math:`f` on the link
scale from the IRLS working response; lme4's ``glmer`` fits the random part with that
fixed part as an offset; the two alternate in the EM engine of the Gaussian MixedML
(:func:`pylmer.mixedml.engine.run`) until its stopping rule holds.  The step and why it
converges are described in :mod:`pylmer.mixedml.glmm_step`.

:func:`fit_glmm` and :func:`predict_link` hold the whole fit and prediction; they serve
both :class:`MixedMLClassifier` and ``MixedMLRegressor(family="poisson")``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, is_classifier
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
from .estimator import MixedMLRegressor
from .glmm_step import (
    FAMILIES,
    GlmmStep,
    WeightedEstimatorStep,
    empirical_bayes_glmm,
    inverse_link,
)
from .labels import GroupCoding
from .lme4_step import ResidualModel
from .threads import r_blas_single_threaded

__all__ = [
    "MixedMLClassifier",
    "fit_glmm",
    "fit_glmm_regressor",
    "predict_glmm_regressor",
    "predict_link",
]

#: fitted attributes of a GLMM fit (cleared before every fit)
GLMM_FITTED = (
    "estimator_",
    "glmer_",
    "ranef_",
    "ranef_sd_",
    "varcorr_",
    "n_iter_",
    "converged_",
    "stop_reason_",
    "history_",
    "residual_formula_",
    "residuals_used_",
    "family_",
    "features_",
    "n_targets_",
)


def _column_name(y: Any) -> str:
    name = getattr(y, "name", None)
    return f"y ({name!r})" if name is not None else "y"


def count_outcome(y: Any, n: int) -> np.ndarray:
    """Counts for the Poisson family: finite, non-negative, one per row (DataError)."""
    what = _column_name(y)
    Y = MixedMLRegressor._outcome(y, n, what=what)
    if Y.shape[1] != 1:
        raise DataError(f"{what} must be one column of counts, not {Y.shape[1]}")
    Y = Y[:, 0]
    bad = np.flatnonzero(Y < 0)
    if bad.size:
        raise DataError(
            f"the poisson outcome {what} has negative counts: {bad.size} row(s), e.g. "
            f"row {bad[0]} with {Y[bad[0]]:g}"
        )
    return Y


# ---------------------------------------------------------------------------- fit


def fit_glmm(est: Any, X: Any, Y: np.ndarray, family: str, y_name: str = "y") -> dict[str, Any]:
    """Run the EM loop for a binomial (``Y`` 0/1) or Poisson outcome.

    ``est`` is the MixedML estimator (its parameters are read); returns the fitted
    attributes.
    """
    MixedMLRegressor._validate_params(est)
    X = MixedMLRegressor._check_frame(X)
    if len(X) == 0:
        raise DataError("X has no rows")
    spec = ResidualModel.parse(est.random_effects)
    features = (
        list(est.features)
        if est.features is not None
        else [c for c in X.columns if c not in spec.groups]
    )
    MixedMLRegressor._check_columns(est, X, spec, features)
    if not features:
        raise DataError("no feature columns left for the estimator; pass features=")
    base = est._base_estimator()
    if is_classifier(base):
        raise InvalidArgumentError(
            f"estimator must be a regressor: it learns the fixed part on the "
            f"{FAMILIES[family]} scale from a working response; got the classifier "
            f"{type(base).__name__} (use its regressor counterpart, e.g. "
            "RandomForestRegressor)"
        )
    coding = GroupCoding(X[spec.groups])
    frame = coding.encode(X[spec.vars])
    data = _r.bind(frame)
    residuals = est._resolve_residuals(base)
    if residuals == "oob":
        from sklearn.base import clone

        base = clone(base).set_params(oob_score=True)
    step = GlmmStep(data, Y, spec, family, nagq=int(getattr(est, "nagq", 1)))
    fixed_step = WeightedEstimatorStep(
        base,
        X[features],
        weights=lambda: step.weights,
        residuals=residuals,
        groups=frame[spec.groups[0]].cat.codes,
        cv=est.cv,
    )
    rule = engine.StoppingRule(tol=float(est.tol))
    rows: list[dict[str, Any]] = []

    def callback(state: engine.EMState, record: dict[str, Any]) -> None:
        rows.append(_history_row(state, record, Y, family))
        if est.verbose:
            print(
                f"MixedML iter {record['iteration']:3d} {record['kind']:<5} "
                f"loglik {record['loglik']: .8g}  max|du| {record['max_delta_u']:.3g}  "
                f"deviance/n {rows[-1]['train_deviance']:.4g}"
            )

    est.features_ = features  # _fixed_error reads it
    try:
        with r_blas_single_threaded():
            result = engine.run(
                Y[:, None],
                fixed_step,
                [step],
                max_iter=int(est.max_iter),
                rule=rule,
                accelerate=bool(est.accelerate),
                callback=callback,
            )
            final = result.state
            estimator = engine.EstimatorStep.finalize(final.estimator)
            fit = final.re[0]
            out, conditions = _r.call_with_conditions(".mixedml_glmm_final", fit.handle)
            terms = _r.call(".mixedml_glmm_terms", fit.handle)
    except PylmerError as exc:
        it = getattr(exc, "mixedml_iteration", None)
        if it is not None and not str(exc).startswith("MixedML iteration"):
            raise type(exc)(f"MixedML iteration {it}: {exc}") from exc
        raise
    except (ValueError, TypeError) as exc:
        raise MixedMLRegressor._fixed_error(est, X, exc) from exc
    finally:
        est.__dict__.pop("features_", None)
    terms["fixed"] = np.atleast_1d(np.asarray(terms["fixed"], dtype=float))
    fixed = final.fixed[:, 0]
    model = _glmer_model(out, conditions, frame, Y, fixed, family)
    ranef = MixedMLRegressor._ranef(model.ranef, coding, spec)
    ranef_sd = MixedMLRegressor._ranef(model.ranef_sd, coding, spec)
    return {
        "estimator_": estimator,
        "glmer_": model,
        "ranef_": ranef,
        "ranef_sd_": ranef_sd,
        "varcorr_": model.varcorr,
        "n_iter_": result.n_iter,
        "converged_": result.converged,
        "stop_reason_": result.reason,
        "history_": pd.DataFrame(rows).set_index("iteration"),
        "residual_formula_": str(out["residual_formula"]),
        "residuals_used_": residuals,
        "family_": family,
        "features_": features,
        "n_targets_": 1,
        "re_columns_": list(spec.vars),
        "groups_": list(spec.groups),
        "_spec": spec,
        "_coding": coding,
        "_terms": terms,
        "_train_frame": frame,
        "_train_y": Y,
        "_train_offset": fixed + terms["fixed"],
        "_singular": [bool(fit.singular)],
        "_records": result.records,
    }


def _glmer_model(
    out: dict[str, Any],
    conditions: Any,
    frame: pd.DataFrame,
    Y: np.ndarray,
    fixed: np.ndarray,
    family: str,
) -> Any:
    """The final glmer fit as a GlmerModel (the loop's last fit, not refitted)."""
    from ..models.glmer import GlmerModel, _GlmerSpec

    data = frame.copy()
    data[".pylmer_e"] = Y
    data[".pylmer_f"] = fixed  # the offset the last glmer fit saw
    spec = _GlmerSpec(
        str(out["residual_formula"]), family, FAMILIES[family], 1, None, None, None, "omit"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularFitWarning)
        return GlmerModel._from_r(out, spec, data, conditions)


def _history_row(
    state: engine.EMState, record: dict[str, Any], Y: np.ndarray, family: str
) -> dict[str, Any]:
    fit = state.re[0]
    row: dict[str, Any] = {
        "iteration": record["iteration"],
        "kind": record["kind"],
        "accepted": record["accepted"],
        "loglik": fit.loglik,
    }
    row.update(fit.variances)
    row["delta_loglik"] = record["delta_loglik"]
    row["max_delta_u"] = record["max_delta_u"]
    row["step_length"] = record["step_length"]
    mu = inverse_link(family, state.fixed[:, 0] + fit.contribution)
    row["train_deviance"] = float(np.mean(unit_deviance(family, Y, mu)))
    row["seconds_ml"] = record["seconds_ml"]
    row["seconds_re"] = record["seconds_re"]
    return row


def unit_deviance(family: str, y: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Unit deviances (binomial: twice the log-loss of 0/1 outcomes)."""
    if family == "binomial":
        mu = np.clip(mu, 1e-15, 1 - 1e-15)
        return -2 * (y * np.log(mu) + (1 - y) * np.log1p(-mu))
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(y > 0, y * np.log(y / mu), 0.0)
    return 2 * (term - (y - mu))


def warn_fit(est: Any) -> None:
    """Convergence and singular-fit warnings after a GLMM fit."""
    if not est.converged_:
        warnings.warn(
            f"MixedML did not converge: it stopped at max_iter={est.max_iter} before a "
            f"stopping rule held (tol={est.tol:g}); increase max_iter",
            ConvergenceWarning,
            stacklevel=3,
        )
    if est._singular[0]:
        warnings.warn(
            "MixedML random-effects fit is singular: a variance is estimated at zero or a "
            "correlation at +-1",
            SingularFitWarning,
            stacklevel=3,
        )


# ---------------------------------------------------------------------------- predict


def predict_link(est: Any, X: Any, y: np.ndarray | None = None) -> np.ndarray:
    """Linear predictor :math:`f(X) + X_r\\gamma + Zb` of a fitted GLMM MixedML model.

    ``y`` (numeric, NaN where unobserved) updates the random effects by empirical Bayes
    with the variance parameters fixed, from the training rows and the observed new rows.
    """
    X = MixedMLRegressor._check_frame(X)
    MixedMLRegressor._check_columns(est, X, est._spec, est.features_)
    if len(X) == 0:
        return np.empty(0)
    try:
        fixed = np.asarray(est.estimator_.predict(X[est.features_]), dtype=float).reshape(-1)
    except (ValueError, TypeError) as exc:
        raise MixedMLRegressor._fixed_error(est, X, exc) from exc
    target = est._coding.encode(X[est.re_columns_])
    observed, yo, offset = est._train_frame, est._train_y, est._train_offset
    with r_blas_single_threaded():
        # X_r gamma from the final glmer fit (offset zero, no random effects)
        xg = est.glmer_.predict(
            target.assign(**{".pylmer_f": 0.0}), type="link", include_random=False
        ).to_numpy(dtype=float)
        if y is not None:
            rows = np.isfinite(y) & X[est.groups_].notna().all(axis=1).to_numpy()
            if rows.any():
                observed = pd.concat([observed, target.loc[rows]], ignore_index=True).astype(
                    {g: "object" for g in est.groups_}
                )
                yo = np.r_[yo, y[rows]]
                offset = np.r_[offset, (fixed + xg)[rows]]
        zb = empirical_bayes_glmm(est._spec, est._terms, est.family_, observed, yo, offset, target)
    return fixed + xg + zb


# ---------------------------------------------------------------------------- counts


def fit_glmm_regressor(est: Any, X: Any, y: Any) -> Any:
    """``MixedMLRegressor.fit`` for a non-Gaussian ``family`` (counts: ``"poisson"``)."""
    for attr in GLMM_FITTED:
        est.__dict__.pop(attr, None)
    family = est.family
    if family not in ("gaussian", "poisson"):
        hint = "; for binary outcomes use MixedMLClassifier" if family == "binomial" else ""
        raise InvalidArgumentError(f"family must be 'gaussian' or 'poisson', not {family!r}{hint}")
    n = len(X) if hasattr(X, "__len__") else 0
    Y = count_outcome(y, n)
    fitted = fit_glmm(est, X, Y, family)
    fitted["_y_is_2d"] = False
    est.__dict__.update(fitted)
    warn_fit(est)
    return est


def predict_glmm_regressor(est: Any, X: Any, y: Any = None) -> np.ndarray:
    """``MixedMLRegressor.predict`` for a non-Gaussian ``family``: expected counts."""
    obs = None
    if y is not None:
        obs = MixedMLRegressor._outcome(y, len(X), allow_nan=True)[:, 0]
        if (obs[np.isfinite(obs)] < 0).any():
            raise DataError("the observed counts y hold negative values")
    return inverse_link(est.family_, predict_link(est, X, obs))


# ---------------------------------------------------------------------------- classifier


class MixedMLClassifier(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Random effects on top of any scikit-learn regressor, for binary outcomes.

    A mixed logistic model whose fixed part is learnt by ``estimator`` on the logit
    scale:

    .. math:: \\operatorname{logit} P(y = 1 \\mid b) = f(X) + X_r\\gamma + Zb,
              \\qquad b \\sim N(0, G)

    fitted by MixedML's EM engine: the estimator fits the IRLS working response (with the
    IRLS weights as ``sample_weight`` when its ``fit`` accepts them), lme4's ``glmer``
    fits the random part with the estimator's predictions as an offset, warm-started from
    the previous step (:mod:`pylmer.mixedml.glmm_step` explains the scheme).  With
    ``LinearRegression`` the result is close to glmer's own fit of
    ``y ~ x + <random part>``.

    Parameters
    ----------
    estimator : regressor, default=None
        Learns :math:`f(X)` on the logit scale; a *regressor* (e.g.
        ``RandomForestRegressor``, ``HistGradientBoostingRegressor``), cloned at every
        step.  ``None`` means :class:`~sklearn.linear_model.LinearRegression`.  It gets
        the IRLS weights as ``sample_weight`` when its ``fit`` has that parameter; a
        ``Pipeline`` (whose ``fit`` routes weights only by step name) fits the working
        response unweighted, a cruder Newton step.
    random_effects : str
        lme4's random part, e.g. ``"(1 + time | subject)"``; its covariates and grouping
        columns are columns of ``X``.
    features : list of str, optional
        Columns of ``X`` given to the estimator (default: all but the grouping columns).
    max_iter : int, default=50
        Most EM steps (extrapolated ones included); never exceeded.
    tol : float, default=1e-4
        The engine's ``"tol"`` rule: the Laplace log-likelihood changes by less than
        ``tol`` per observation and every term's random effects by less than ``tol``
        times their root mean square.
    residuals : {"auto", "in_sample", "oof", "oob"}, default="auto"
        Which fixed-part predictions glmer sees (as for
        :class:`~pylmer.MixedMLRegressor`): ``"auto"`` uses the out-of-bag predictions of
        a bagged forest (a forest interpolates its training rows and would absorb the
        random effects) and in-sample predictions otherwise.  For boosting prefer
        ``"oof"``: in-sample, the boosted trees fit the rows' working-response noise and
        the random-slope variance collapsed in ``bench/mixedml_classifier.py`` (0.16 for
        a generating 2.25; test log-loss 0.528 against 0.524 with ``"oof"``).
    cv : int, default=5
        Folds for ``residuals="oof"``.
    accelerate : bool, default=True
        SQUAREM extrapolation while the log-likelihood rises monotonically.
    nagq : int, default=1
        glmer's ``nAGQ`` in the random-effects step (1: Laplace).
    verbose : int, default=0
        ``1`` prints one line per step.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The two labels; ``classes_[1]`` is the event whose probability is modelled.
    estimator_ : regressor
        The estimator of the final state.
    glmer_ : GlmerModel
        The final random-effects fit (the loop's last glmer fit, offset ``.pylmer_f``).
    ranef_, ranef_sd_ : dict
        ``{grouping factor: DataFrame levels x terms}`` (conditional modes and SDs on the
        logit scale), indexed by the original grouping values.
    varcorr_ : DataFrame
        Variance components.
    n_iter_ : int
        EM steps evaluated (``<= max_iter``).
    converged_ : bool
        Whether a stopping rule (not ``max_iter``) ended the loop.
    stop_reason_ : str
        ``"tol"``, ``"stationary"`` or ``"max_iter"``.
    history_ : DataFrame
        One row per step: ``loglik`` (Laplace), the variance components,
        ``delta_loglik``, ``max_delta_u``, ``train_deviance`` (per row), seconds.
    residual_formula_ : str
        The glmer model of the random-effects step.
    residuals_used_ : str
        What ``residuals="auto"`` resolved to.
    """

    def __init__(
        self,
        estimator: Any = None,
        *,
        random_effects: str,
        features: list[str] | None = None,
        max_iter: int = 50,
        tol: float = 1e-4,
        residuals: str = "auto",
        cv: int = 5,
        accelerate: bool = True,
        nagq: int = 1,
        verbose: int = 0,
    ):
        self.estimator = estimator
        self.random_effects = random_effects
        self.features = features
        self.max_iter = max_iter
        self.tol = tol
        self.residuals = residuals
        self.cv = cv
        self.accelerate = accelerate
        self.nagq = nagq
        self.verbose = verbose

    # the regressor's parameter checks and helpers, shared
    _validate_params = MixedMLRegressor._validate_params
    _base_estimator = MixedMLRegressor._base_estimator
    _resolve_residuals = MixedMLRegressor._resolve_residuals

    def fit(self, X: pd.DataFrame, y: Any) -> MixedMLClassifier:
        """Run the EM loop.

        Parameters
        ----------
        X : DataFrame
            Features, random-effects covariates and grouping columns.
        y : array-like of shape (n,)
            Two classes (0/1, booleans or two labels); no missing values.

        Returns
        -------
        self
        """
        for attr in (*GLMM_FITTED, "classes_"):
            self.__dict__.pop(attr, None)
        classes, codes = self._labels(y, X)
        fitted = fit_glmm(self, X, codes.astype(float), "binomial")
        fitted["classes_"] = classes
        self.__dict__.update(fitted)
        warn_fit(self)
        return self

    @staticmethod
    def _labels(y: Any, X: Any) -> tuple[np.ndarray, np.ndarray]:
        what = _column_name(y)
        if isinstance(y, str):
            raise DataError(f"{what} must be one label per row, not a string")
        if isinstance(y, pd.DataFrame):
            if y.shape[1] != 1:
                raise DataError(f"y must be one column of labels, not {y.shape[1]} columns")
            y = y.iloc[:, 0]
        arr = np.asarray(y)
        if arr.ndim != 1:
            raise DataError(f"{what} must be one label per row (1 dimension), not {arr.ndim}")
        n = len(X) if hasattr(X, "__len__") else None
        if n is not None and len(arr) != n:
            raise DataError(f"X has {n} rows but {what} has {len(arr)} values; give one per row")
        missing = pd.isna(arr)
        if missing.any():
            raise DataError(
                f"{what} has {int(missing.sum())} missing value(s); drop those rows first"
            )
        try:
            classes, codes = np.unique(arr, return_inverse=True)
        except TypeError:
            raise DataError(f"{what} mixes label types that cannot be ordered") from None
        if len(classes) != 2:
            shown = ", ".join(repr(c) for c in classes[:6]) + (", ..." if len(classes) > 6 else "")
            raise DataError(
                f"MixedMLClassifier needs a binary outcome; {what} has {len(classes)} "
                f"class(es): {shown}"
            )
        return classes, codes.reshape(-1)

    def _check_fitted(self) -> None:
        if not hasattr(self, "estimator_"):
            raise NotFittedError(
                "this MixedMLClassifier is not fitted yet; call fit(X, y) before predict"
            )

    def _observed(self, y: Any, n: int) -> np.ndarray:
        """Observed labels as 1.0 (classes_[1]), 0.0, NaN where missing."""
        arr = np.asarray(y, dtype=object).reshape(-1)
        if len(arr) != n:
            raise DataError(f"X has {n} rows but y has {len(arr)} values; give one per row")
        out = np.full(n, np.nan)
        missing = pd.isna(arr)
        for k, label in enumerate(self.classes_):
            hit = ~missing & np.array([_equal(v, label) for v in arr])
            out[hit] = float(k)
        bad = ~missing & np.isnan(out)
        if bad.any():
            first = arr[np.flatnonzero(bad)[0]]
            raise DataError(
                f"y holds {int(bad.sum())} value(s) that are not a class of the fit "
                f"({', '.join(map(repr, self.classes_))}), e.g. {first!r}"
            )
        return out

    def decision_function(self, X: pd.DataFrame, y: Any = None) -> np.ndarray:
        """The linear predictor (log-odds of ``classes_[1]``); ``y`` as in predict_proba."""
        self._check_fitted()
        obs = None if y is None else self._observed(y, len(X))
        return predict_link(self, X, obs)

    def predict_proba(self, X: pd.DataFrame, y: Any = None) -> np.ndarray:
        """Class probabilities, given the random effects (conditional on :math:`b`).

        Parameters
        ----------
        X : DataFrame
            Same columns as in :meth:`fit`.
        y : array-like, optional
            Observed labels for (some of) the rows of ``X`` (None/NaN where unobserved).
            The random effects are then the empirical-Bayes modes given every observed
            outcome (training rows and these), with the variance parameters and
            :math:`\\gamma` fixed: a new subject's first outcomes inform its later ones.

        Returns
        -------
        ndarray of shape (n, 2)
            Columns in the order of ``classes_``.  Groups without any observed row get
            :math:`b = 0` (the probability of a typical group, not the population
            average).
        """
        p = inverse_link("binomial", self.decision_function(X, y))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: pd.DataFrame, y: Any = None) -> np.ndarray:
        """The more probable class (probability of ``classes_[1]`` above 0.5)."""
        p = self.predict_proba(X, y)[:, 1]
        return self.classes_[(p > 0.5).astype(int)]


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False
