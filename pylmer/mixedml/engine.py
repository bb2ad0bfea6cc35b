"""The MixedML EM engine: pure numpy, no R.

The model is :math:`y = f(X) + c + \\varepsilon`, where :math:`f` is any regressor (the
*fixed step*) and :math:`c` the contribution of a random-effects model (the
*random-effects step*, e.g. lme4 on the residuals).  One **plain step** maps a
contribution :math:`c` to a new :class:`EMState`:

1. the fixed step fits the estimator on the working target (``y - c`` for a Gaussian
   random-effects step) and returns the predictions :math:`\\hat f` the residuals are
   built from (in-sample, out-of-fold or out-of-bag);
2. the random-effects step fits its model given :math:`\\hat f` (for lme4: on the
   residuals ``y - f``) and returns an :class:`REFit`: the new contribution, the marginal
   log-likelihood, the variance parameters and the random effects per term.

Everything else is separate and small: :func:`squarem` (the acceleration),
:class:`StoppingRule` (when to stop, and why) and :func:`run` (the driver that strings
them together and never exceeds ``max_iter`` steps).  The random-effects step is an
object with one method (:class:`RandomEffectsStep`), so a GLMM step (glmer with the fixed
part as offset) plugs into the same loop: it receives :math:`\\hat f` and says what the
estimator should fit next (:meth:`RandomEffectsStep.working_target`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from sklearn.base import clone

from ..errors import InvalidArgumentError

__all__ = [
    "EMResult",
    "EMState",
    "EstimatorStep",
    "REFit",
    "RandomEffectsStep",
    "StoppingRule",
    "plain_step",
    "run",
    "squarem",
]


# ---------------------------------------------------------------------------- the state


@dataclass(frozen=True)
class REFit:
    """What one random-effects fit returns (for one target).

    Attributes
    ----------
    contribution : ndarray of shape (n,)
        The random-effects model's additive contribution :math:`c` to the prediction of
        the training rows (for lme4's residual model: :math:`X_r\\gamma + Zb`).
    loglik : float
        Marginal log-likelihood of the random-effects model at this fit.
    sigma : float
        Residual standard deviation.
    variances : dict
        Named variance parameters (``"var(g: (Intercept))"`` ..., ``"var(Residual)"``).
    effects : dict
        Random effects per term, ``{"g: (Intercept)": array over levels, ...}`` (the
        stopping rule compares them term by term).
    handle : object
        Whatever the step needs to continue (an R model for a warm start).
    singular : bool
        The fit is at the boundary (a variance at zero or a correlation at +-1).
    """

    contribution: np.ndarray
    loglik: float
    sigma: float
    variances: dict[str, float] = field(default_factory=dict)
    effects: dict[str, np.ndarray] = field(default_factory=dict)
    handle: Any = None
    singular: bool = False


class RandomEffectsStep(Protocol):
    """The random-effects half of a plain step (one per target).

    Implementations: :class:`pylmer.mixedml.lme4_step.LmerStep` (lme4 on the residuals);
    the engine's tests use a numpy random-intercept solver.  A GLMM step (glmer with the
    fixed part as an offset) implements the same two methods.
    """

    def fit(self, fixed: np.ndarray, previous: REFit | None) -> REFit:
        """Fit the random-effects model given the fixed part ``fixed`` (shape (n,)).

        ``previous`` is the fit of the previous step (for a warm start), or None.
        """
        ...

    def working_target(self, contribution: np.ndarray) -> np.ndarray:
        """The target the estimator fits next, given the contribution (shape (n,))."""
        ...


@dataclass(frozen=True)
class EMState:
    """One state of the loop: the estimator, its predictions and the random-effects fits.

    Attributes
    ----------
    inputs : ndarray of shape (n, k)
        The contribution the estimator's target was built from.
    estimator : object
        The estimator fitted in this step (for out-of-fold residuals: fitted lazily on
        the same target, see :meth:`EstimatorStep.finalize`).
    fixed : ndarray of shape (n, k)
        The fixed-part predictions the random-effects fits were given.
    re : tuple of REFit
        One per target.
    seconds_ml, seconds_re : float
        Time spent in the two halves.
    """

    inputs: np.ndarray
    estimator: Any
    fixed: np.ndarray
    re: tuple[REFit, ...]
    seconds_ml: float = 0.0
    seconds_re: float = 0.0

    @property
    def contribution(self) -> np.ndarray:
        """The random-effects contributions, shape (n, k)."""
        return np.column_stack([r.contribution for r in self.re])

    @property
    def loglik(self) -> float:
        """Sum of the targets' marginal log-likelihoods."""
        return float(sum(r.loglik for r in self.re))


# ---------------------------------------------------------------------------- fixed step


class EstimatorStep:
    """The fixed half of a plain step: fit a clone of ``estimator`` on the working target.

    Parameters
    ----------
    estimator : regressor
        Cloned at every step.
    X : array-like
        The estimator's features.
    residuals : {"in_sample", "oof", "oob"}
        Which predictions the random-effects step sees: in-sample; out-of-fold from
        ``cv`` folds that keep each group together (the estimator is then fitted on all
        rows once, for the final state only); or the estimator's own out-of-bag
        predictions (``oob_prediction_`` of a bagging ensemble fitted with
        ``oob_score=True``, at the cost of one fit).
    groups : array-like, optional
        Group labels for the folds of ``"oof"``.
    cv : int
        Number of folds for ``"oof"``.
    context : callable, optional
        Returns a context manager entered around every fit (thread-pool limits).
    """

    def __init__(
        self,
        estimator: Any,
        X: Any,
        *,
        residuals: str = "in_sample",
        groups: Any = None,
        cv: int = 5,
        context: Callable[[], Any] | None = None,
    ):
        self.estimator = estimator
        self.X = X
        self.residuals = residuals
        self.groups = groups
        self.cv = cv
        self.context = context

    @staticmethod
    def _target(target: np.ndarray) -> np.ndarray:
        return target[:, 0] if target.shape[1] == 1 else target

    def fit(self, target: np.ndarray) -> tuple[Any, np.ndarray]:
        """Return ``(estimator, predictions)`` for the working target (shape (n, k))."""
        with self.context() if self.context is not None else contextlib.nullcontext():
            return self._fit(target)

    def _fit(self, target: np.ndarray) -> tuple[Any, np.ndarray]:
        n = target.shape[0]
        est = clone(self.estimator)
        if self.residuals == "oof":
            from sklearn.model_selection import GroupKFold, cross_val_predict

            pred = cross_val_predict(
                clone(self.estimator),
                self.X,
                self._target(target),
                groups=self.groups,
                cv=GroupKFold(n_splits=self.cv),
            )
            return _Lazy(est, self.X, self._target(target)), np.asarray(pred, float).reshape(n, -1)
        est.fit(self.X, self._target(target))
        if self.residuals == "oob":
            # rows that were in every tree's bag (few trees) have no out-of-bag
            # prediction: they get the in-sample one
            pred = np.asarray(est.oob_prediction_, dtype=float)
            missing = _never_out_of_bag(est, n)
            if missing.any():
                inner = np.asarray(est.predict(self.X), dtype=float).reshape(pred.shape)
                pred = np.where(missing.reshape(-1, *([1] * (pred.ndim - 1))), inner, pred)
        else:
            pred = est.predict(self.X)
        return est, np.asarray(pred, dtype=float).reshape(n, -1)

    @staticmethod
    def finalize(estimator: Any) -> Any:
        """The fitted estimator of a state (fits it now for out-of-fold residuals)."""
        return estimator.fit() if isinstance(estimator, _Lazy) else estimator


def _never_out_of_bag(est: Any, n: int) -> np.ndarray:
    """Rows that every tree drew (scikit-learn gives them an out-of-bag prediction of 0)."""
    samples = getattr(est, "estimators_samples_", None)
    if samples is None:
        return np.zeros(n, dtype=bool)
    inbag = np.zeros(n, dtype=np.int64)
    for idx in samples:
        inbag[np.unique(idx)] += 1
    return inbag == len(samples)


class _Lazy:
    """An estimator to be fitted on all rows only if its state turns out to be the last."""

    def __init__(self, estimator: Any, X: Any, y: np.ndarray):
        self.estimator, self.X, self.y = estimator, X, y

    def fit(self) -> Any:
        return self.estimator.fit(self.X, self.y)


# ---------------------------------------------------------------------------- one step


def plain_step(
    contribution: np.ndarray,
    Y: np.ndarray,
    fixed_step: Any,
    re_steps: Sequence[RandomEffectsStep],
    previous: EMState | None = None,
) -> EMState:
    """One EM step from the random-effects contribution ``contribution`` (n, k).

    The estimator fits the working target the random-effects steps derive from
    ``contribution``; each random-effects step then fits given the estimator's
    predictions (warm-started from ``previous``).
    """
    contribution = np.asarray(contribution, dtype=float).reshape(Y.shape)
    target = np.column_stack(
        [step.working_target(contribution[:, j]) for j, step in enumerate(re_steps)]
    )
    t0 = time.perf_counter()
    estimator, fixed = fixed_step.fit(target)
    t1 = time.perf_counter()
    re = tuple(
        step.fit(fixed[:, j], None if previous is None else previous.re[j])
        for j, step in enumerate(re_steps)
    )
    t2 = time.perf_counter()
    return EMState(contribution, estimator, fixed, re, t1 - t0, t2 - t1)


# ---------------------------------------------------------------------------- acceleration


def squarem(x0: np.ndarray, x1: np.ndarray, x2: np.ndarray, max_step: float = 1000.0):
    """SQUAREM extrapolation (Varadhan & Roland 2008, scheme S3) of a fixed-point sequence.

    Parameters
    ----------
    x0, x1, x2 : ndarray
        Three successive iterates (``x1 = F(x0)``, ``x2 = F(x1)``).
    max_step : float
        Largest step length (in plain steps).

    Returns
    -------
    tuple (ndarray, float) or None
        The extrapolated point and the step length :math:`-\\alpha`; None when the
        extrapolation would not go beyond ``x2`` (:math:`\\alpha \\ge -1`: the S3 point
        is then ``x2`` itself, and evaluating it would repeat a step already taken).
    """
    r = x1 - x0
    v = x2 - 2 * x1 + x0
    norm_v = float(np.linalg.norm(v))
    if norm_v == 0.0:
        return None
    alpha = -float(np.linalg.norm(r)) / norm_v
    if alpha >= -1.0:
        return None
    alpha = max(alpha, -max_step)
    return x0 - 2 * alpha * r + alpha**2 * v, -alpha


# ---------------------------------------------------------------------------- stopping


@dataclass(frozen=True)
class StoppingRule:
    """When to stop the loop, and why.

    Two rules, checked after every plain step ``cur = step(prev)``:

    * ``"tol"``: the log-likelihood changed by less than ``tol`` per observation
      (``|l(cur) - l(prev)| / n < tol``, an absolute criterion: a relative change of a
      log-likelihood of -20000 would allow hundreds of units) **and** every term's random
      effects moved by less than ``tol`` times that term's scale (the root mean square of
      its effects, at least ``1e-3`` sigma).  A state is never compared with itself: a
      pair whose estimator targets are identical is no evidence.
    * ``"stationary"``: the estimator's fit is not a smooth function of its target
      (forests, boosting, networks trained by SGD), so the iterates settle in a band of
      noise instead of converging.  Over the last ``window`` states, the trend of the
      log-likelihood is indistinguishable from its iteration-to-iteration noise (|t| of
      the least-squares slope below ``t_crit``), the sequence is not monotone, and no
      variance parameter drifts either (|t| of each one's trend below ``t_crit_params``:
      an estimator that absorbs the random effects shows as a variance drifting at a
      flat likelihood, and that is no convergence).  For a deterministic smooth
      estimator the log-likelihood rises monotonically, so this rule cannot fire.

    Parameters
    ----------
    tol : float
        Tolerance of the ``"tol"`` rule.
    window : int
        Number of states the ``"stationary"`` rule looks at (0 disables it).
    t_crit : float
        Threshold on the t statistic of the log-likelihood trend.
    t_crit_params : float
        Threshold on the t statistics of the variance parameters' trends (higher: there
        are several of them).
    """

    tol: float = 1e-4
    window: int = 6
    t_crit: float = 2.0
    t_crit_params: float = 3.0

    def changes(self, prev: EMState, cur: EMState) -> tuple[float, float]:
        """``(|delta loglik| / n, max over terms of |delta b| / scale)`` of a plain step."""
        n = cur.inputs.shape[0]
        d_ll = abs(cur.loglik - prev.loglik) / n
        d_u = 0.0
        for a, b in zip(prev.re, cur.re, strict=True):
            floor = 1e-3 * max(b.sigma, 1e-12)
            for name, eff in b.effects.items():
                old = a.effects.get(name)
                if old is None or old.shape != eff.shape:
                    return d_ll, np.inf
                scale = max(float(np.sqrt(np.mean(eff**2))) if eff.size else 0.0, floor)
                if eff.size:
                    d_u = max(d_u, float(np.max(np.abs(eff - old))) / scale)
        return float(d_ll), float(d_u)

    def check(
        self,
        prev: EMState,
        cur: EMState,
        chain: Sequence[float],
        params: Sequence[Sequence[float]] | None = None,
    ) -> str | None:
        """The reason to stop after the plain step ``cur = step(prev)``, or None.

        ``chain`` holds the log-likelihoods of the states the loop went through, ``cur``
        last; ``params`` their variance parameters (one row per state).
        """
        if not np.array_equal(prev.inputs, cur.inputs):
            d_ll, d_u = self.changes(prev, cur)
            if d_ll < self.tol and d_u < self.tol:
                return "tol"
        if self.stationary(chain, params):
            return "stationary"
        return None

    def stationary(
        self, chain: Sequence[float], params: Sequence[Sequence[float]] | None = None
    ) -> bool:
        """Whether the last ``window`` states are trend-free noise."""
        w = self.window
        if w < 3 or len(chain) < w:
            return False
        y = np.asarray(chain[-w:], dtype=float)
        steps = np.diff(y)
        if (steps >= 0).all() or (steps <= 0).all():
            return False  # monotone: still moving (or exactly still: the "tol" rule's case)
        if abs(trend_t(y)) >= self.t_crit:
            return False
        if params is not None and len(params) >= w:
            block = np.asarray(params[-w:], dtype=float)
            for column in block.T:
                if np.ptp(column) > 1e-12 * max(np.abs(column).max(), 1e-300) and (
                    abs(trend_t(column)) >= self.t_crit_params
                ):
                    return False
        return True


def trend_t(y: np.ndarray) -> float:
    """t statistic of the least-squares slope of ``y`` against 0, 1, 2, ..."""
    x = np.arange(len(y), dtype=float)
    x -= x.mean()
    slope = float(x @ (y - y.mean()) / (x @ x))
    resid = y - y.mean() - slope * x
    dof = len(y) - 2
    s2 = float(resid @ resid) / dof if dof > 0 else 0.0
    if s2 == 0.0:
        return np.inf if slope != 0 else 0.0
    return slope / np.sqrt(s2 / float(x @ x))


# ---------------------------------------------------------------------------- the driver


@dataclass
class EMResult:
    """What :func:`run` returns.

    Attributes
    ----------
    state : EMState
        The final state: it *is* the fitted model.
    reason : str
        ``"tol"``, ``"stationary"`` or ``"max_iter"``.
    n_iter : int
        Number of plain steps evaluated (extrapolated ones included), at most ``max_iter``.
    records : list of dict
        One per step: ``iteration``, ``kind`` (``"plain"`` or ``"jump"``), ``accepted``,
        ``loglik``, ``delta_loglik`` (signed change per observation against the state
        it was computed from; NaN for jumps and the first step), ``max_delta_u``,
        ``step_length`` (jumps), the seconds.
    """

    state: EMState
    reason: str
    n_iter: int
    records: list[dict[str, Any]]

    @property
    def converged(self) -> bool:
        """True when a stopping rule (not ``max_iter``) ended the loop."""
        return self.reason in ("tol", "stationary")


def run(
    Y: np.ndarray,
    fixed_step: Any,
    re_steps: Sequence[RandomEffectsStep],
    *,
    max_iter: int = 100,
    rule: StoppingRule | None = None,
    accelerate: bool = True,
    callback: Callable[[EMState, dict[str, Any]], None] | None = None,
) -> EMResult:
    """Run the EM loop from a zero contribution.

    Parameters
    ----------
    Y : ndarray of shape (n, k)
        The targets.
    fixed_step : EstimatorStep
        Fits the estimator (``fit(target) -> (estimator, predictions)``).
    re_steps : sequence of RandomEffectsStep
        One per target.
    max_iter : int
        Most plain steps evaluated (extrapolations count).
    rule : StoppingRule
        The stopping rule (default: ``StoppingRule()``).
    accelerate : bool
        SQUAREM every third step while the log-likelihood rises monotonically (a smooth
        fixed-point map); the jump is kept when it does not lower the log-likelihood,
        else its length is halved towards a plain step (SQUAREM's backtracking) while it
        stays at least two plain steps long, and otherwise the loop continues from the
        last plain state (nothing is recomputed).
    callback : callable, optional
        ``callback(state, record)`` after every step.

    Returns
    -------
    EMResult
    """
    if max_iter < 1:
        raise InvalidArgumentError(f"max_iter must be >= 1, not {max_iter}")
    rule = StoppingRule() if rule is None else rule
    Y = np.asarray(Y, dtype=float)
    records: list[dict[str, Any]] = []
    chain: list[float] = []
    params: list[list[float]] = []

    def remember(state: EMState) -> None:
        chain.append(state.loglik)
        params.append([v for fit in state.re for v in fit.variances.values()])

    def evaluate(contribution: np.ndarray, previous: EMState | None, kind: str) -> EMState:
        try:
            state = plain_step(contribution, Y, fixed_step, re_steps, previous)
        except Exception as exc:
            exc.mixedml_iteration = len(records) + 1  # type: ignore[attr-defined]
            raise
        rec: dict[str, Any] = {
            "iteration": len(records) + 1,
            "kind": kind,
            "accepted": True,
            "loglik": state.loglik,
            "delta_loglik": np.nan,
            "max_delta_u": np.nan,
            "step_length": np.nan,
            "seconds_ml": state.seconds_ml,
            "seconds_re": state.seconds_re,
        }
        if kind == "plain" and previous is not None:
            rec["max_delta_u"] = rule.changes(previous, state)[1]
            rec["delta_loglik"] = (state.loglik - previous.loglik) / Y.shape[0]
        records.append(rec)
        return state

    def notify(state: EMState) -> None:
        if callback is not None:
            callback(state, records[-1])

    state = evaluate(np.zeros_like(Y), None, "plain")
    remember(state)
    notify(state)
    reason = "max_iter"

    def advance(prev: EMState) -> tuple[EMState, str | None]:
        cur = evaluate(prev.contribution, prev, "plain")
        remember(cur)
        notify(cur)
        return cur, rule.check(prev, cur, chain, params)

    while len(records) < max_iter:
        s1, why = advance(state)
        state = s1
        if why:
            reason = why
            break
        if not accelerate or len(records) + 2 > max_iter:
            continue
        s2, why = advance(s1)
        state = s2
        if why:
            reason = why
            break
        if not chain[-3] < chain[-2] < chain[-1]:
            continue  # not a smooth ascent: extrapolating noise would only cost a step
        x0, x1, x2 = s1.inputs, s1.contribution, s2.contribution
        extrapolated = squarem(x0, x1, x2)
        if extrapolated is None:
            continue
        point, length = extrapolated
        while True:
            sj = evaluate(point, s2, "jump")
            records[-1]["step_length"] = length
            if sj.loglik >= s2.loglik:
                state = sj
                remember(sj)
                notify(sj)
                break
            records[-1]["accepted"] = False
            notify(sj)
            # SQUAREM's backtracking: halve the distance to a plain step, while that is
            # still a jump and the budget allows; else continue from the last plain state
            length = (length + 1.0) / 2.0
            if length < 2.0 or len(records) + 1 > max_iter:
                break
            point = x0 + 2 * length * (x1 - x0) + length**2 * (x2 - 2 * x1 + x0)
    return EMResult(state=state, reason=reason, n_iter=len(records), records=records)
