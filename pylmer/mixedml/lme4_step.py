"""The lme4 random-effects step: the residual model, fitted and refitted in R.

The residual model is built once, in R, from R's own parse of ``random_effects``
(``lme4::findbars`` and ``stats::terms``; see ``r_scripts/mixedml.R``)::

    .pylmer_e ~ 1 + <every covariate of the random part> + <random part>

and used by the loop (:class:`LmerStep`), by the final model and by ``predict``
(:func:`empirical_bayes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..r import session as _r
from .engine import EMState, EstimatorStep, REFit

__all__ = [
    "FittedGaussian",
    "GaussianPart",
    "LmerStep",
    "LoopData",
    "ResidualModel",
    "empirical_bayes",
    "original_index",
    "with_rows",
]


@dataclass(frozen=True)
class ResidualModel:
    """R's parse of a random part.

    Attributes
    ----------
    random_effects : str
        The random part as given.
    formula : str
        The residual model, as R deparses it.
    vars : list of str
        Every column the random part uses.
    groups : list of str
        The grouping columns.
    covariates : list of str
        The covariates of the random terms.
    factors : dict
        Grouping factors as lme4 names them (``"b:a"`` for ``a/b``) -> their columns.
    """

    random_effects: str
    formula: str
    vars: list[str]
    groups: list[str]
    covariates: list[str]
    factors: dict[str, list[str]]

    @classmethod
    def parse(cls, random_effects: str) -> ResidualModel:
        """Ask R to parse ``random_effects`` (raises FormulaError when it cannot)."""
        from ..errors import FormulaError

        if not isinstance(random_effects, str):
            raise FormulaError(
                f"random_effects must be a string such as '(1 | group)', "
                f"not {type(random_effects).__name__}"
            )
        spec = _r.call(".mixedml_spec", random_effects)
        factors = spec["factors"]
        if not isinstance(factors, dict):  # one factor: R's list came back as a list
            factors = {}
        return cls(
            random_effects=random_effects,
            formula=str(spec["formula"]),
            vars=[str(v) for v in np.atleast_1d(spec["vars"])],
            groups=[str(v) for v in np.atleast_1d(spec["groups"])],
            covariates=[
                str(v)
                for v in np.atleast_1d(spec["covariates"] if spec["covariates"] is not None else [])
            ],
            factors={str(k): [str(v) for v in np.atleast_1d(c)] for k, c in factors.items()},
        )


@dataclass(frozen=True)
class LoopData:
    """What a random-effects family needs to build the two steps of the loop.

    Attributes
    ----------
    estimator : regressor
        The (unfitted) estimator of the fixed part.
    X : DataFrame
        Its features.
    frame : DataFrame
        The random part's columns, grouping columns encoded.
    Y : ndarray of shape (n, k)
        The target(s), encoded.
    spec : ResidualModel
        The parsed random part.
    residuals : {"in_sample", "oof", "oob"}
        Which fixed-part predictions the random-effects step sees.
    cv : int
        Folds for ``"oof"``.
    """

    estimator: Any
    X: pd.DataFrame
    frame: pd.DataFrame
    Y: np.ndarray
    spec: ResidualModel
    residuals: str
    cv: int

    @property
    def groups(self) -> pd.Series:
        """Fold labels for ``"oof"``: the codes of the first grouping column."""
        return self.frame[self.spec.groups[0]].cat.codes


class LmerStep:
    """Gaussian random-effects step: lme4 on the residuals ``y - f`` (one target).

    The data (random-part columns) are bound in R once; the first :meth:`fit` builds the
    model, later ones call ``lme4::refit`` with the new residuals (warm start).

    Parameters
    ----------
    data : DataRef
        The random-part columns, bound in R.
    y : ndarray of shape (n,)
        The target.
    model : ResidualModel
        The parsed random part.
    reml : bool
        REML instead of ML.
    """

    def __init__(self, data: Any, y: np.ndarray, model: ResidualModel, reml: bool):
        self.data = data
        self.y = np.asarray(y, dtype=float)
        self.model = model
        self.reml = bool(reml)

    def working_target(self, contribution: np.ndarray) -> np.ndarray:
        """The estimator's target: ``y`` minus the random-effects contribution."""
        return self.y - contribution

    def fit(self, fixed: np.ndarray, previous: REFit | None) -> REFit:
        """Fit (or refit, warm-started) the residual model on ``y - fixed``."""
        resid = self.y - np.asarray(fixed, dtype=float)
        if previous is None:
            out = _r.call(".mixedml_start", self.data, self.model.random_effects, resid, self.reml)
        else:
            out = _r.call(".mixedml_step", previous.handle, resid)
        effects = out["effects"]
        return REFit(
            contribution=np.asarray(out["contribution"], dtype=float),
            loglik=float(out["loglik"]),
            sigma=float(out["sigma"]),
            variances={str(k): float(v) for k, v in dict(out["variances"]).items()},
            effects={str(k): np.atleast_1d(np.asarray(v, dtype=float)) for k, v in effects.items()},
            handle=out["model"],
            singular=bool(out["singular"]),
        )


def fitted_terms(terms: dict[str, Any]) -> tuple[list[str], list[np.ndarray]]:
    """The ``keys`` and per-term ``theta`` of a fitted model (``.mixedml_terms``) as the R
    empirical-Bayes helpers take them."""
    keys = [str(k) for k in np.atleast_1d(terms["keys"])]
    theta = [np.atleast_1d(np.asarray(t, dtype=float)) for t in terms["theta"]]
    return keys, theta


def empirical_bayes(
    model: ResidualModel,
    terms: dict[str, Any],
    observed: pd.DataFrame,
    residuals: np.ndarray,
    target: pd.DataFrame,
) -> np.ndarray:
    """Random-effects contribution ``Z b`` on ``target`` given observed residuals.

    Parameters
    ----------
    model : ResidualModel
        The parsed random part.
    terms : dict
        ``keys`` and ``theta`` of the fitted model (``.mixedml_terms``).
    observed : DataFrame
        The random-part columns (grouping columns encoded) of the rows with an outcome.
    residuals : ndarray
        ``y - f(X) - X_r gamma`` on those rows.
    target : DataFrame
        The rows to predict (same columns).

    Returns
    -------
    ndarray of shape (len(target),)
    """
    out = _r.call(
        ".mixedml_eb",
        model.random_effects,
        *fitted_terms(terms),
        _r.bind(observed),
        np.asarray(residuals, dtype=float),
        _r.bind(target),
    )
    return np.atleast_1d(np.asarray(out, dtype=float))


def with_rows(observed: pd.DataFrame, new: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """The training rows' random-part columns followed by observed new rows (their
    grouping columns as plain values: the two frames' levels differ)."""
    return pd.concat([observed, new], ignore_index=True).astype(dict.fromkeys(groups, "object"))


def original_index(
    tables: dict[str, pd.DataFrame], coding: Any, model: ResidualModel
) -> dict[str, pd.DataFrame]:
    """lme4's per-factor tables, indexed by the original grouping values.

    A factor that combines columns (``b:a`` of a nested ``a/b``) gets a MultiIndex.
    """
    out = {}
    for factor, df in tables.items():
        df = df.copy()
        df.index = coding.decode(factor, df.index, model.factors.get(factor, [factor]))
        out[factor] = df
    return out


class GaussianPart:
    """The Gaussian family of MixedML: lme4 on the residuals, one model per target.

    Parameters
    ----------
    reml : bool
        REML instead of ML.
    """

    def __init__(self, reml: bool = False):
        self.reml = bool(reml)

    def check_estimator(self, estimator: Any) -> None:
        """Any regressor will do."""

    def steps(self, loop: LoopData) -> tuple[EstimatorStep, list[LmerStep]]:
        """The estimator step and one :class:`LmerStep` per target."""
        from .threads import estimator_threads

        fixed = EstimatorStep(
            loop.estimator,
            loop.X,
            residuals=loop.residuals,
            groups=loop.groups,
            cv=loop.cv,
            context=estimator_threads,
        )
        data = _r.bind(loop.frame)
        targets = range(loop.Y.shape[1])
        return fixed, [LmerStep(data, loop.Y[:, j], loop.spec, self.reml) for j in targets]

    def history(self, state: EMState, Y: np.ndarray) -> tuple[dict[str, Any], dict[str, float]]:
        """Log-likelihood, sigma and variances per target (``[j]`` with several); train MSE."""
        row: dict[str, Any] = {}
        multi = len(state.re) > 1
        for j, fit in enumerate(state.re):
            sfx = f"[{j}]" if multi else ""
            row[f"loglik{sfx}"] = fit.loglik
            row[f"sigma{sfx}"] = fit.sigma
            for name, value in fit.variances.items():
                row[f"{name}{sfx}"] = value
        mse = float(np.mean((Y - state.fixed - state.contribution) ** 2))
        return row, {"train_mse": mse}

    def finish(
        self, state: EMState, frame: pd.DataFrame, spec: ResidualModel, Y: np.ndarray
    ) -> FittedGaussian:
        """The final state's lme4 fits as LmerModels (the loop's last fits)."""
        import warnings

        from ..errors import SingularFitWarning
        from ..models.lmer import LmerModel, _Spec

        models, terms = [], []
        for j, fit in enumerate(state.re):
            out, conditions = _r.call_with_conditions(".mixedml_final", fit.handle)
            data = frame.copy()
            data[".pylmer_e"] = Y[:, j] - state.fixed[:, j]  # what the last lme4 fit saw
            lspec = _Spec(spec.formula, self.reml)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SingularFitWarning)
                models.append(LmerModel._from_r(out, lspec, data, conditions))
            t = _r.call(".mixedml_terms", fit.handle)
            t["fixed"] = np.atleast_1d(np.asarray(t["fixed"], dtype=float))
            terms.append(t)
        resid = Y - state.fixed - np.column_stack([t["fixed"] for t in terms])
        return FittedGaussian(
            spec, models, terms, frame, resid, [bool(r.singular) for r in state.re]
        )


class FittedGaussian:
    """The fitted random part of a Gaussian MixedML model.

    Attributes
    ----------
    models : list of LmerModel
        The loop's last lme4 fit of each target.
    terms : list of dict
        ``keys``, ``theta`` and ``fixed`` (``X_r gamma`` on the training rows) per target.
    frame : DataFrame
        The training rows' random-part columns (groups encoded).
    resid : ndarray of shape (n, k)
        ``y - f(X) - X_r gamma`` on the training rows.
    singular : list of bool
        Whether each target's fit is singular.
    """

    def __init__(
        self,
        spec: ResidualModel,
        models: list[Any],
        terms: list[dict[str, Any]],
        frame: pd.DataFrame,
        resid: np.ndarray,
        singular: list[bool],
    ):
        self.spec = spec
        self.models = models
        self.terms = terms
        self.frame = frame
        self.resid = resid
        self.singular = singular

    def attributes(self, coding: Any) -> dict[str, Any]:
        """``lmer_``, ``ranef_``, ``ranef_sd_``, ``varcorr_`` (lists with several targets),
        ``residual_formula_`` and ``family_``."""
        ranef = [original_index(m.ranef, coding, self.spec) for m in self.models]
        ranef_sd = [original_index(m.ranef_sd, coding, self.spec) for m in self.models]
        varcorr = [m.varcorr for m in self.models]
        single = len(self.models) == 1
        return {
            "lmer_": self.models[0] if single else self.models,
            "ranef_": ranef[0] if single else ranef,
            "ranef_sd_": ranef_sd[0] if single else ranef_sd,
            "varcorr_": varcorr[0] if single else varcorr,
            "residual_formula_": self.spec.formula,
            "family_": "gaussian",
        }

    def link(
        self, fixed: np.ndarray, target: pd.DataFrame, Y: np.ndarray | None, grouped: np.ndarray
    ) -> np.ndarray:
        """``f(X) + X_r gamma + Z b``, ``b`` updated from the observed ``Y`` (shape (n, k))."""
        out = np.empty((len(target), len(self.models)))
        for j, model in enumerate(self.models):
            xg = model.predict(target, include_random=False).to_numpy(dtype=float)
            observed, resid = self.frame, self.resid[:, j]
            if Y is not None:
                rows = np.isfinite(Y[:, j]) & grouped
                if rows.any():
                    observed = with_rows(observed, target.loc[rows], self.spec.groups)
                    resid = np.r_[resid, (Y[:, j] - fixed[:, j] - xg)[rows]]
            zb = empirical_bayes(self.spec, self.terms[j], observed, resid, target)
            out[:, j] = fixed[:, j] + xg + zb
        return out
