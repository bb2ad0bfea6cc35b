"""The MixedML estimator base: parameters, data checks and the EM-running fit.

:class:`MixedMLBase` holds everything :class:`~pylmer.MixedMLRegressor` and
:class:`~pylmer.MixedMLClassifier` share: scikit-learn's ``_parameter_constraints``
validation, the frame and column checks, the choice of residuals (``"auto"``), the EM
loop of :mod:`pylmer.mixedml.engine` with its history, warnings and fitted attributes,
and the plumbing of ``predict`` (fixed part, group coding, thread pools).  A subclass
supplies two things:

* the **target encoding** (:meth:`MixedMLBase._encode_target`): numbers, counts or two
  class labels -> a float array of shape ``(n, k)``;
* the **random-effects family** (:meth:`MixedMLBase._family`): an object that builds the
  two steps of the loop and turns the final state into fitted attributes and a fitted
  part that predicts on the link scale (:class:`RandomPart`, :class:`FittedPart`).
  lme4's Gaussian step is :class:`pylmer.mixedml.lme4_step.GaussianPart`, glmer's
  binomial and Poisson steps :class:`pylmer.mixedml.glmm_step.GlmmPart`.
"""

from __future__ import annotations

import re
from numbers import Integral, Real
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    InvalidParameterError,
    StrOptions,
)

from ..data.coding import GroupCoding
from ..data.frames import as_pandas
from ..errors import (
    DataError,
    InvalidArgumentError,
    MixedMLConvergenceWarning,
    NotFittedError,
    PylmerError,
    SingularFitWarning,
    warn,
)
from . import engine
from .lme4_step import LoopData, ResidualModel
from .threads import estimator_threads, r_blas_single_threaded

__all__ = ["RESIDUALS", "FittedPart", "MixedMLBase", "RandomPart", "check_frame", "outcome"]

RESIDUALS = ("auto", "in_sample", "oof", "oob")

#: private fitted state (cleared with the public ``*_`` attributes before every fit)
_PRIVATE = ("_spec", "_coding", "_records", "_re", "_y_is_2d")


class FittedPart(Protocol):
    """The random part of a fitted MixedML model, as ``predict`` uses it."""

    singular: list[bool]

    def attributes(self, coding: GroupCoding) -> dict[str, Any]:
        """Public fitted attributes (``lmer_`` or ``glmer_``, ``ranef_``, ``varcorr_``...)."""
        ...

    def link(
        self, fixed: np.ndarray, target: pd.DataFrame, Y: np.ndarray | None, grouped: np.ndarray
    ) -> np.ndarray:
        """Linear predictor ``f(X) + X_r gamma + Z b`` of shape ``(n, k)``.

        ``fixed`` is the estimator's prediction ``(n, k)``, ``target`` the random-part
        columns with groups encoded, ``Y`` observed outcomes (NaN where unobserved) that
        update the random effects by empirical Bayes, ``grouped`` the rows whose grouping
        values are all present.
        """
        ...


class RandomPart(Protocol):
    """A random-effects family: the two steps of the loop and the final fit."""

    def check_estimator(self, estimator: Any) -> None:
        """Refuse an estimator the family cannot use (InvalidArgumentError)."""
        ...

    def steps(self, loop: LoopData) -> tuple[engine.EstimatorStep, list[Any]]:
        """The fixed step and one random-effects step per target."""
        ...

    def history(self, state: engine.EMState, Y: np.ndarray) -> tuple[dict[str, Any], dict]:
        """Per-step columns: (log-likelihood and variances, training error)."""
        ...

    def finish(
        self, state: engine.EMState, frame: pd.DataFrame, spec: ResidualModel, Y: np.ndarray
    ) -> FittedPart:
        """The final state as a fitted part (the loop's last fits, not refitted)."""
        ...


# ---------------------------------------------------------------------------- data checks


def check_frame(X: Any, what: str = "X") -> pd.DataFrame:
    """``X`` as a pandas DataFrame (pandas, polars or pyarrow) without duplicate names."""
    X = as_pandas(X, what)
    names = [str(c) for c in X.columns]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(f"{what} has duplicate column names: {', '.join(map(repr, dupes))}")
    return X


def check_columns(X: pd.DataFrame, spec: ResidualModel, features: list[str]) -> None:
    """The random part's and the estimator's columns exist; no missing covariate."""
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


def check_groups(X: pd.DataFrame, groups: list[str]) -> None:
    """No missing grouping value in training (MixedML needs every row in both steps)."""
    for col in groups:
        n = int(X[col].isna().sum())
        if n:
            raise DataError(
                f"grouping column {col!r} has {n} missing value(s); drop those rows first "
                "(MixedML needs every row in both steps)"
            )


def new_groups_apart(target: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """``target`` (grouping columns encoded) with each missing grouping value a level of
    its own: a group no other row shares, so that row gets the fixed part only (R's
    random-effects helpers need a level on every row)."""
    out = target.copy(deep=False)
    for col in groups:
        values = out[col]
        if not values.isna().any():
            continue
        rows = np.flatnonzero(values.isna().to_numpy())
        own = [f".pylmer_missing_{i}" for i in rows]
        values = values.cat.add_categories(own)
        values.iloc[rows] = own
        out[col] = values
    return out


def column_name(y: Any) -> str:
    """``y`` named after its column when it has one (``y ('count')``)."""
    name = getattr(y, "name", None)
    return f"y ({name!r})" if name is not None else "y"


def outcome(y: Any, n: int, what: str = "y", allow_nan: bool = False) -> np.ndarray:
    """A numeric outcome as a float array of shape ``(n, k)`` (DataError otherwise)."""
    if isinstance(y, str):
        raise DataError(f"{what} must be numeric, not a string")
    if type(y).__module__.split(".")[0] in ("polars", "pyarrow") and hasattr(y, "to_numpy"):
        y = y.to_numpy()
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


def fixed_error(X: pd.DataFrame, features: list[str], exc: Exception) -> Exception:
    """A DataError naming the non-numeric feature columns, when they are the cause."""
    text = [c for c in features if not pd.api.types.is_numeric_dtype(X[c].dtype)]
    if text and isinstance(exc, ValueError | TypeError):
        return DataError(
            f"feature column(s) {text} are not numeric and the estimator cannot use them "
            f"({type(exc).__name__}: {exc}); encode them (e.g. one-hot in a pipeline) or "
            "leave them out with features="
        )
    return exc


# ---------------------------------------------------------------------------- the base


class MixedMLBase(MetaEstimatorMixin, BaseEstimator):
    """Random effects on top of a scikit-learn estimator: what every MixedML model shares.

    Not used directly: :class:`~pylmer.MixedMLRegressor` and
    :class:`~pylmer.MixedMLClassifier` supply the target encoding and the random-effects
    family.  Parameters are validated by scikit-learn's ``_parameter_constraints``
    (errors are :class:`~pylmer.errors.InvalidArgumentError` naming the parameter).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "estimator": [HasMethods(["fit", "predict"]), None],
        "random_effects": "no_validation",  # R parses it (FormulaError naming the term)
        "features": ["array-like", None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "residuals": [StrOptions(set(RESIDUALS))],
        "cv": [Interval(Integral, 2, None, closed="left")],
        "accelerate": ["boolean"],
        "verbose": ["verbose"],
    }
    #: a sentence appended to the error of a parameter (e.g. where to go instead)
    _parameter_hints: ClassVar[dict[str, str]] = {}

    # ------------------------------------------------------------------ subclass hooks

    def _family(self) -> RandomPart:
        raise NotImplementedError

    def _encode_target(self, y: Any, n: int) -> tuple[np.ndarray, dict[str, Any]]:
        """``(Y of shape (n, k), extra fitted attributes)``."""
        raise NotImplementedError

    def _progress_bar(self) -> Any:
        return None

    def _after_fit(self, X: pd.DataFrame, Y: np.ndarray) -> None:
        """Work on the fitted model (its attributes set), e.g. a calibration."""

    # ------------------------------------------------------------------ checks

    def _check_params(self) -> None:
        try:
            self._validate_params()
        except InvalidParameterError as exc:
            match = re.match(r"The '(\w+)' parameter", str(exc))
            name = match.group(1) if match else None
            hint = self._parameter_hints.get(name or "")
            raise InvalidArgumentError(
                f"{exc}{' ' + hint if hint else ''}", argument=name
            ) from None

    def _base_estimator(self) -> Any:
        if self.estimator is None:
            from sklearn.linear_model import LinearRegression

            return LinearRegression()
        return self.estimator

    def _resolve_residuals(self, est: Any) -> str:
        if self.residuals != "auto":
            return self.residuals
        params = est.get_params(deep=False) if hasattr(est, "get_params") else {}
        if "oob_score" in params:  # a forest: interpolates its rows at default settings
            return "oob" if params.get("bootstrap", False) else "oof"
        return "in_sample"

    def _check_fitted(self) -> None:
        if not hasattr(self, "_re"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(X, y) before predict"
            )

    def _forget(self) -> None:
        """Drop every fitted attribute: nothing of a previous fit survives a failed one."""
        for name in [n for n in vars(self) if (n.endswith("_") and not n.startswith("__"))]:
            delattr(self, name)
        for name in _PRIVATE:
            if name in vars(self):
                delattr(self, name)

    # ------------------------------------------------------------------ fit

    def fit(self, X: Any, y: Any) -> MixedMLBase:
        """Run the EM loop (its history in ``history_``; its last state is the fit).

        Parameters
        ----------
        X : DataFrame
            Features, random-effects covariates and grouping columns (pandas, polars or
            a pyarrow Table).
        y : array-like
            :class:`~pylmer.MixedMLRegressor`: numbers of shape ``(n,)`` or ``(n, k)``
            (several targets), counts for ``family="poisson"``;
            :class:`~pylmer.MixedMLClassifier`: two classes (0/1, booleans or two
            labels), shape ``(n,)``.  No missing values.

        Returns
        -------
        self

        Raises
        ------
        DataError
            ``X`` lacks a column or is not a DataFrame, ``y`` does not have one value per
            row, holds missing values or values outside the family's domain (named with
            its column), a feature is not numeric.
        InvalidArgumentError
            A parameter is out of its range (named), or the estimator of a binary or
            count model is a classifier.
        """
        self._forget()
        self._check_params()
        X = check_frame(X)
        if len(X) == 0:
            raise DataError("X has no rows")
        family = self._family()
        Y, extra = self._encode_target(y, len(X))
        spec = ResidualModel.parse(self.random_effects)
        features = (
            [str(c) for c in self.features]
            if self.features is not None
            else [c for c in X.columns if c not in spec.groups]
        )
        check_columns(X, spec, features)
        if not features:
            raise DataError("no feature columns left for the estimator; pass features=")
        est = self._base_estimator()
        family.check_estimator(est)
        check_groups(X, spec.groups)
        coding = GroupCoding.from_frame(X, spec.groups)
        frame = coding.encode(X[spec.vars])
        residuals = self._resolve_residuals(est)
        if residuals == "oob":
            est = clone(est).set_params(oob_score=True)
        rows: list[dict[str, Any]] = []
        bar = self._progress_bar()

        def callback(state: engine.EMState, record: dict[str, Any]) -> None:
            rows.append(self._history_row(family, state, record, Y))
            if self.verbose:
                print(_format_row(rows[-1]))
            if bar is not None:
                bar.update(1)

        try:
            with r_blas_single_threaded():
                loop = LoopData(est, X[features], frame, Y, spec, residuals, int(self.cv))
                fixed_step, re_steps = family.steps(loop)
                result = engine.run(
                    Y,
                    fixed_step,
                    re_steps,
                    max_iter=int(self.max_iter),
                    rule=engine.StoppingRule(tol=float(self.tol)),
                    accelerate=bool(self.accelerate),
                    callback=callback,
                )
                estimator = engine.EstimatorStep.finalize(result.state.estimator)
                fitted = family.finish(result.state, frame, spec, Y)
        except PylmerError as exc:
            it = getattr(exc, "mixedml_iteration", None)
            if it is not None and not str(exc).startswith("MixedML iteration"):
                raise type(exc)(f"MixedML iteration {it}: {exc}") from exc
            raise
        except (ValueError, TypeError) as exc:
            raise fixed_error(X, features, exc) from exc
        finally:
            if bar is not None:
                bar.close()
        history = pd.DataFrame(rows).set_index("iteration")
        attributes = {
            "estimator_": estimator,
            **fitted.attributes(coding),
            "n_iter_": result.n_iter,
            "converged_": result.converged,
            "stop_reason_": result.reason,
            "history_": history,
            "residuals_used_": residuals,
            "features_": features,
            "re_columns_": list(spec.vars),
            "groups_": list(spec.groups),
            "n_targets_": Y.shape[1],
            **extra,
            "_spec": spec,
            "_coding": coding,
            "_records": result.records,
            "_re": fitted,
        }
        for name, value in attributes.items():
            setattr(self, name, value)
        self._warn_fit(fitted.singular, len(Y))
        self._after_fit(X, Y)
        return self

    def _history_row(
        self, family: RandomPart, state: engine.EMState, record: dict[str, Any], Y: np.ndarray
    ) -> dict[str, Any]:
        fit_columns, error = family.history(state, Y)
        return {
            "iteration": record["iteration"],
            "kind": record["kind"],
            "accepted": record["accepted"],
            **fit_columns,
            "delta_loglik": record["delta_loglik"],
            "max_delta_u": record["max_delta_u"],
            "step_length": record["step_length"],
            **error,
            "seconds_ml": record["seconds_ml"],
            "seconds_re": record["seconds_re"],
        }

    def _warn_fit(self, singular: list[bool], n: int) -> None:
        if not self.converged_:
            warn(self._convergence_advice(n), MixedMLConvergenceWarning)
        which = [j for j, s in enumerate(singular) if s]
        if which:
            targets = "" if len(singular) == 1 else f" (target {', '.join(map(str, which))})"
            warn(
                f"MixedML random-effects fit is singular{targets}: a variance is estimated "
                "at zero or a correlation at +-1",
                SingularFitWarning,
            )

    def _convergence_advice(self, n: int) -> str:
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
                    f"({steps[-1] / n:.2g} per observation in the last step); increase "
                    "max_iter"
                )
            rule = engine.StoppingRule()
            h = self.history_[self.history_["accepted"]]
            drifting = [
                c
                for c in h.columns
                if c.startswith("var(")
                and len(h) >= 3
                and np.ptp(h[c].to_numpy()[-6:]) > 0
                and abs(engine.trend_t(h[c].to_numpy()[-6:])) >= rule.t_crit_params
            ]
            if engine.trend_t(tail) <= -rule.t_crit or drifting:
                what = f"{', '.join(drifting)} drift" if drifting else "the log-likelihood falls"
                return (
                    f"{head}: {what} by more than the step-to-step noise (a drift, not "
                    "convergence); an estimator that fits its training rows too closely "
                    "absorbs the random effects: use residuals='oof' (or 'oob' for a bagged "
                    "forest) or regularise the estimator (e.g. min_samples_leaf)"
                )
        return f"{head}; increase max_iter"

    # ------------------------------------------------------------------ predict

    def _predict_link(self, X: Any, Y: np.ndarray | None = None) -> np.ndarray:
        """Linear predictor of shape ``(n, k)``; ``Y`` observed outcomes (NaN: unobserved)."""
        self._check_fitted()
        X = check_frame(X)
        check_columns(X, self._spec, self.features_)
        if Y is not None and len(Y) != len(X):
            raise DataError(f"X has {len(X)} rows but y has {len(Y)} values; give one per row")
        if len(X) == 0:
            return np.empty((0, self.n_targets_))
        try:
            with estimator_threads():
                fixed = np.asarray(self.estimator_.predict(X[self.features_]), dtype=float)
        except (ValueError, TypeError) as exc:
            raise fixed_error(X, self.features_, exc) from exc
        target = new_groups_apart(self._coding.extend(X).encode(X[self.re_columns_]), self.groups_)
        grouped = X[self.groups_].notna().all(axis=1).to_numpy()
        with r_blas_single_threaded():
            return self._re.link(fixed.reshape(len(X), -1), target, Y, grouped)


def _format_row(row: dict[str, Any]) -> str:
    ll = next(v for k, v in row.items() if k.startswith("loglik"))
    error = (
        f"train MSE {row['train_mse']:.4g}"
        if "train_mse" in row
        else f"deviance/n {row['train_deviance']:.4g}"
    )
    return (
        f"MixedML iter {row['iteration']:3d} {row['kind']:<5} loglik {ll: .8g}  "
        f"max|du| {row['max_delta_u']:.3g}  {error}  "
        f"ML {row['seconds_ml']:.2f}s  RE {row['seconds_re']:.2f}s"
    )
