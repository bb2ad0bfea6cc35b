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
from .engine import REFit

__all__ = ["LmerStep", "ResidualModel", "empirical_bayes"]


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
