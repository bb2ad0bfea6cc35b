"""The glmer random-effects step: MixedML for binary and count targets.

The model, on the link scale :math:`\\eta = g(\\mu)`:

.. math:: g(E[y \\mid b]) = f(X) + X_r\\gamma + Zb, \\qquad b \\sim N(0, G)

with :math:`y` Bernoulli (logit link) or Poisson (log link).  It plugs into the same EM
engine as the Gaussian step (:mod:`pylmer.mixedml.engine`); one plain step from the
random-effects contribution :math:`c = X_r\\gamma + Zb` is

1. **working response** (:meth:`GlmmStep.working_target`): at the current linear
   predictor :math:`\\eta = \\hat f + c` (the fixed part of the last fit plus ``c``),
   the estimator fits :math:`z - c` with
   :math:`z = \\eta + (y - \\mu + r) / w` and sample weights :math:`w = V(\\mu)`
   (:math:`\\mu(1-\\mu)` for the logit, :math:`\\mu` for the log link; canonical
   links, so :math:`\\mu' = V`).  Estimators whose ``fit`` takes no ``sample_weight``
   fit :math:`z - c` unweighted (:class:`WeightedEstimatorStep`).  :math:`r` is the
   Laplace term of the score, below;
2. **random-effects step** (:meth:`GlmmStep.fit`): lme4's ``glmer`` (Laplace) fits the
   residual model of the Gaussian step with the estimator's predictions as an offset::

       .pylmer_e ~ 1 + <covariates of the random part> + <random part> + offset(.pylmer_f)

   warm-started from the previous step's theta and fixed effects, giving :math:`\\gamma`,
   :math:`b`, :math:`G`, the Laplace log-likelihood (what the stopping rule watches) and
   the new contribution.

Why this scheme.  GMERF (Pellagatti, Masci, Ieva & Paganoni 2021, *Generalized
mixed-effects random forest*) alternates a forest on the PQL working response with one
PQL step for the random effects.  Its fixed point, with a linear estimator, solves the
penalised-quasi-likelihood equations :math:`X^\\top (y - \\mu) = 0` (lme4's
``nAGQ = 0``), not the likelihood that glmer maximises: measured on the test data, the
slope stays 5% below glmer's Laplace estimate.  Here the random-effects step is a full
glmer fit, and the estimator fits the score of glmer's Laplace log-likelihood
:math:`\\log p(y \\mid \\hat u) - |\\hat u|^2/2 - \\log|L|` itself: its derivative
along a change of the fixed part is :math:`y - \\mu + r` with
:math:`r = (I - WP)s`, :math:`P = Z\\Lambda A^{-1}\\Lambda^\\top Z^\\top`,
:math:`A = \\Lambda^\\top Z^\\top W Z\\Lambda + I`,
:math:`s_i = -\\tfrac12 P_{ii}\\, dw_i/d\\eta_i` (computed in R after each fit,
``.mixedml_glmm_correction``).  A weighted least-squares estimator then takes a Newton
(IRLS) step on the marginal likelihood, and with ``LinearRegression`` the fixed point is
glmer's own Laplace fit of ``y ~ x + <random part>`` (the tests compare with plain R:
fitted probabilities within 1e-4 measured, 1e-3 tested).  For trees, a weighted
least-squares split on :math:`z` is the Newton-boosting split
(:math:`(\\sum g)^2 / \\sum h`), so a row with a surprising outcome carries a small
weight instead of dominating a leaf.  Bagged forests
see out-of-bag predictions (``residuals="auto"``), as in the Gaussian case.

The first step starts from R's ``glm`` initial values (``mustart``: :math:`(y+1/2)/2`
for Bernoulli, :math:`y + 0.1` for Poisson) instead of :math:`\\eta = 0`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.utils.validation import has_fit_parameter

from ..errors import InvalidArgumentError
from ..r import session as _r
from .engine import EstimatorStep, REFit, _Lazy
from .lme4_step import LoopData, ResidualModel, fitted_terms, original_index, with_rows

__all__ = [
    "FAMILIES",
    "FittedGlmm",
    "GlmmPart",
    "GlmmStep",
    "WeightedEstimatorStep",
    "empirical_bayes_glmm",
    "inverse_link",
    "unit_deviance",
]

#: the families MixedML supports, with their (canonical) links
FAMILIES = {"binomial": "logit", "poisson": "log"}
_ETA_MAX = 30.0  # |eta| beyond which exp() and the logistic function lose all precision


def inverse_link(family: str, eta: np.ndarray) -> np.ndarray:
    """The mean :math:`\\mu` for the linear predictor ``eta``."""
    eta = np.clip(np.asarray(eta, dtype=float), -_ETA_MAX, _ETA_MAX)
    if family == "binomial":
        return 1.0 / (1.0 + np.exp(-eta))
    return np.exp(eta)


def _start_eta(family: str, y: np.ndarray) -> np.ndarray:
    if family == "binomial":
        mu = (y + 0.5) / 2.0
        return np.log(mu / (1.0 - mu))
    return np.log(y + 0.1)


def working_response(
    family: str, y: np.ndarray, eta: np.ndarray, correction: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """IRLS working response ``z`` and weights ``w`` at the linear predictor ``eta``.

    Canonical links: :math:`\\mu'(\\eta) = V(\\mu)`, so :math:`w = V(\\mu)` and
    :math:`z = \\eta + (y - \\mu + r) / V(\\mu)`, where ``correction`` :math:`r` is
    the Laplace term of the score (see ``.mixedml_glmm_correction``), zero if None.
    """
    eta = np.clip(eta, -_ETA_MAX, _ETA_MAX)
    mu = inverse_link(family, eta)
    var = mu * (1.0 - mu) if family == "binomial" else mu
    var = np.maximum(var, 1e-10)
    score = y - mu if correction is None else y - mu + correction
    return eta + score / var, var


class GlmmStep:
    """Non-Gaussian random-effects step: glmer with the estimator's fixed part as offset.

    Parameters
    ----------
    data : DataRef
        The random-part columns, bound in R once.
    y : ndarray of shape (n,)
        The outcome: 0/1 for ``"binomial"``, counts for ``"poisson"``.
    model : ResidualModel
        The parsed random part (the same R parse as the Gaussian step).
    family : {"binomial", "poisson"}
        The family (canonical link).
    nagq : int
        glmer's ``nAGQ`` (1: Laplace).

    Attributes
    ----------
    weights : ndarray or None
        The IRLS weights of the last working target (read by
        :class:`WeightedEstimatorStep`).
    """

    def __init__(self, data: Any, y: np.ndarray, model: ResidualModel, family: str, nagq: int = 1):
        if family not in FAMILIES:
            raise InvalidArgumentError(f"family must be one of {sorted(FAMILIES)}, not {family!r}")
        self.data = data
        self.y = np.asarray(y, dtype=float)
        self.model = model
        self.family = family
        self.nagq = int(nagq)
        self.weights: np.ndarray | None = None
        # (contribution, fixed) of the recent fits: the fixed part a state's contribution
        # belongs to, for the linear predictor of the next working response
        self._seen: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def _fixed_for(self, contribution: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        for c, f, corr in reversed(self._seen):
            if np.array_equal(c, contribution):
                return f, corr
        # an extrapolated contribution (SQUAREM): the latest fixed part
        return self._seen[-1][1:] if self._seen else None

    def working_target(self, contribution: np.ndarray) -> np.ndarray:
        """The estimator's target ``z - c`` (and, in :attr:`weights`, its weights)."""
        contribution = np.asarray(contribution, dtype=float)
        seen = self._fixed_for(contribution)
        if seen is None:  # first step: glm's starting values, all in the fixed part
            eta = _start_eta(self.family, self.y)
            contribution = np.zeros_like(self.y)
            correction = None
        else:
            eta = seen[0] + contribution
            correction = seen[1]
        z, w = working_response(self.family, self.y, eta, correction)
        self.weights = w
        return z - contribution

    def fit(self, fixed: np.ndarray, previous: REFit | None) -> REFit:
        """Fit glmer given the fixed part ``fixed`` (link scale), warm-started."""
        fixed = np.asarray(fixed, dtype=float)
        out = _r.call(
            ".mixedml_glmm_fit",
            self.data,
            self.model.random_effects,
            self.y,
            fixed,
            self.family,
            nAGQ=self.nagq,
            previous=None if previous is None else previous.handle,
        )
        contribution = np.asarray(out["contribution"], dtype=float)
        correction = np.asarray(out["correction"], dtype=float)
        self._seen = [*self._seen[-3:], (contribution, fixed, correction)]
        effects = out["effects"]
        return REFit(
            contribution=contribution,
            loglik=float(out["loglik"]),
            sigma=1.0,
            variances={str(k): float(v) for k, v in dict(out["variances"]).items()},
            effects={str(k): np.atleast_1d(np.asarray(v, dtype=float)) for k, v in effects.items()},
            handle=out["model"],
            singular=bool(out["singular"]),
        )


class WeightedEstimatorStep(EstimatorStep):
    """:class:`~pylmer.mixedml.engine.EstimatorStep` passing IRLS weights as ``sample_weight``.

    Parameters
    ----------
    estimator, X, residuals, groups, cv
        As for :class:`~pylmer.mixedml.engine.EstimatorStep`.
    weights : callable
        Returns the weights of the current working target (or None).
    """

    def __init__(
        self,
        estimator: Any,
        X: Any,
        *,
        weights: Callable[[], np.ndarray | None],
        residuals: str = "in_sample",
        groups: Any = None,
        cv: int = 5,
    ):
        super().__init__(estimator, X, residuals=residuals, groups=groups, cv=cv)
        self.weights = weights
        self.weighted = has_fit_parameter(estimator, "sample_weight")

    def fit(self, target: np.ndarray) -> tuple[Any, np.ndarray]:
        """Return ``(estimator, predictions)`` for the weighted working target."""
        w = self.weights() if self.weighted else None
        if w is None:
            return super().fit(target)
        n = target.shape[0]
        y = self._target(target)
        est = clone(self.estimator)
        if self.residuals == "oof":
            from sklearn.model_selection import GroupKFold, cross_val_predict

            pred = cross_val_predict(
                clone(self.estimator),
                self.X,
                y,
                groups=self.groups,
                cv=GroupKFold(n_splits=self.cv),
                params={"sample_weight": w},
            )
            return _WeightedLazy(est, self.X, y, w), np.asarray(pred, float).reshape(n, -1)
        est.fit(self.X, y, sample_weight=w)
        pred = est.oob_prediction_ if self.residuals == "oob" else est.predict(self.X)
        return est, np.asarray(pred, dtype=float).reshape(n, -1)


class _WeightedLazy(_Lazy):
    def __init__(self, estimator: Any, X: Any, y: np.ndarray, w: np.ndarray):
        super().__init__(estimator, X, y)
        self.w = w

    def fit(self) -> Any:
        return self.estimator.fit(self.X, self.y, sample_weight=self.w)


def empirical_bayes_glmm(
    model: ResidualModel,
    terms: dict[str, Any],
    family: str,
    observed: pd.DataFrame,
    y: np.ndarray,
    offset: np.ndarray,
    target: pd.DataFrame,
) -> np.ndarray:
    """Random-effects contribution ``Z b`` (link scale) on ``target`` given outcomes:
    :func:`pylmer.mixedml.lme4_step.empirical_bayes` for a glmer fit of ``family``
    (``terms`` from ``.mixedml_glmm_terms``), where the observed rows carry their outcomes
    ``y`` and their fixed part ``offset`` (``f(X) + X_r gamma``) instead of residuals.
    """
    out = _r.call(
        ".mixedml_glmm_eb",
        model.random_effects,
        *fitted_terms(terms),
        family,
        _r.bind(observed),
        np.asarray(y, dtype=float),
        np.asarray(offset, dtype=float),
        _r.bind(target),
    )
    return np.atleast_1d(np.asarray(out, dtype=float))


def unit_deviance(family: str, y: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Unit deviances (binomial: twice the log-loss of 0/1 outcomes)."""
    if family == "binomial":
        mu = np.clip(mu, 1e-15, 1 - 1e-15)
        return -2 * (y * np.log(mu) + (1 - y) * np.log1p(-mu))
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(y > 0, y * np.log(y / mu), 0.0)
    return 2 * (term - (y - mu))


class GlmmPart:
    """The binomial and Poisson families of MixedML: glmer with the estimator's fixed part
    as an offset (one target).

    Parameters
    ----------
    family : {"binomial", "poisson"}
        The family (canonical link).
    nagq : int, default=1
        glmer's ``nAGQ``.
    """

    def __init__(self, family: str, nagq: int = 1):
        if family not in FAMILIES:
            raise InvalidArgumentError(f"family must be one of {sorted(FAMILIES)}, not {family!r}")
        self.family = family
        self.nagq = int(nagq)

    def check_estimator(self, estimator: Any) -> None:
        """The estimator fits a working response: it must be a regressor."""
        from sklearn.base import is_classifier

        if is_classifier(estimator):
            raise InvalidArgumentError(
                f"estimator must be a regressor: it learns the fixed part on the "
                f"{FAMILIES[self.family]} scale from a working response; got the classifier "
                f"{type(estimator).__name__} (use its regressor counterpart, e.g. "
                "RandomForestRegressor)",
                argument="estimator",
            )

    def steps(self, loop: LoopData) -> tuple[EstimatorStep, list[GlmmStep]]:
        """The weighted estimator step and the glmer step."""
        step = GlmmStep(_r.bind(loop.frame), loop.Y[:, 0], loop.spec, self.family, self.nagq)
        fixed = WeightedEstimatorStep(
            loop.estimator,
            loop.X,
            weights=lambda: step.weights,
            residuals=loop.residuals,
            groups=loop.groups,
            cv=loop.cv,
        )
        return fixed, [step]

    def history(self, state: Any, Y: np.ndarray) -> tuple[dict[str, Any], dict[str, float]]:
        """Laplace log-likelihood and variances; the mean unit deviance."""
        fit = state.re[0]
        mu = inverse_link(self.family, state.fixed[:, 0] + fit.contribution)
        deviance = float(np.mean(unit_deviance(self.family, Y[:, 0], mu)))
        return {"loglik": fit.loglik, **fit.variances}, {"train_deviance": deviance}

    def finish(
        self, state: Any, frame: pd.DataFrame, spec: ResidualModel, Y: np.ndarray
    ) -> FittedGlmm:
        """The final glmer fit as a GlmerModel (the loop's last fit, not refitted)."""
        import warnings

        from ..errors import SingularFitWarning
        from ..models.glmer import GlmerModel, _GlmerSpec

        fit = state.re[0]
        out, conditions = _r.call_with_conditions(".mixedml_glmm_final", fit.handle)
        terms = _r.call(".mixedml_glmm_terms", fit.handle)
        terms["fixed"] = np.atleast_1d(np.asarray(terms["fixed"], dtype=float))
        fixed = state.fixed[:, 0]
        data = frame.copy()
        data[".pylmer_e"] = Y[:, 0]
        data[".pylmer_f"] = fixed  # the offset the last glmer fit saw
        gspec = _GlmerSpec(
            str(out["residual_formula"]),
            self.family,
            FAMILIES[self.family],
            1,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SingularFitWarning)
            model = GlmerModel._from_r(out, gspec, data, conditions)
        return FittedGlmm(
            spec,
            self.family,
            model,
            terms,
            frame,
            Y[:, 0],
            fixed + terms["fixed"],
            [bool(fit.singular)],
            str(out["residual_formula"]),
        )


class FittedGlmm:
    """The fitted random part of a binomial or Poisson MixedML model.

    Attributes
    ----------
    model : GlmerModel
        The loop's last glmer fit (offset ``.pylmer_f``).
    terms : dict
        ``keys``, ``theta`` and ``fixed`` of that fit.
    frame : DataFrame
        The training rows' random-part columns (groups encoded).
    y, offset : ndarray
        The training outcomes and their fixed part ``f(X) + X_r gamma``.
    formula : str
        The glmer model of the random-effects step.
    """

    def __init__(
        self,
        spec: ResidualModel,
        family: str,
        model: Any,
        terms: dict[str, Any],
        frame: pd.DataFrame,
        y: np.ndarray,
        offset: np.ndarray,
        singular: list[bool],
        formula: str,
    ):
        self.spec = spec
        self.family = family
        self.formula = formula
        self.model = model
        self.terms = terms
        self.frame = frame
        self.y = y
        self.offset = offset
        self.singular = singular

    def attributes(self, coding: Any) -> dict[str, Any]:
        """``glmer_``, ``ranef_``, ``ranef_sd_``, ``varcorr_``, ``residual_formula_`` and
        ``family_``."""
        return {
            "glmer_": self.model,
            "ranef_": original_index(self.model.ranef, coding, self.spec),
            "ranef_sd_": original_index(self.model.ranef_sd, coding, self.spec),
            "varcorr_": self.model.varcorr,
            "residual_formula_": self.formula,
            "family_": self.family,
        }

    def link(
        self, fixed: np.ndarray, target: pd.DataFrame, Y: np.ndarray | None, grouped: np.ndarray
    ) -> np.ndarray:
        """``f(X) + X_r gamma + Z b`` on the link scale, ``b`` updated from the observed
        ``Y`` (shape (n, 1))."""
        fixed = fixed[:, 0]
        observed, yo, offset = self.frame, self.y, self.offset
        # X_r gamma from the final glmer fit (offset zero, no random effects)
        xg = self.model.predict(
            target.assign(**{".pylmer_f": 0.0}), type="link", include_random=False
        ).to_numpy(dtype=float)
        if Y is not None:
            rows = np.isfinite(Y[:, 0]) & grouped
            if rows.any():
                observed = with_rows(observed, target.loc[rows], self.spec.groups)
                yo = np.r_[yo, Y[rows, 0]]
                offset = np.r_[offset, (fixed + xg)[rows]]
        zb = empirical_bayes_glmm(self.spec, self.terms, self.family, observed, yo, offset, target)
        return (fixed + xg + zb)[:, None]
