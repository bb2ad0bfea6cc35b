"""The results of an ``nlmer`` fit: a pure-pandas container and its summary text."""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import (
    _correlation,
    _criteria,
    _estimates,
    _random_effects,
    _residuals,
    _table,
    format_column,
)

__all__ = ["NlmerResults", "format_nlmer_summary"]


@dataclass(frozen=True, eq=False)
class NlmerResults:
    """Every quantity lme4 reports for one ``nlmer`` fit (see :class:`pylmer.NlmerModel`).

    Attributes
    ----------
    formula : str
        The three-part formula, as given.
    start : pandas.Series
        The starting values of the nonlinear parameters (given, or from the
        self-starting model).
    fixef : pandas.DataFrame
        One row per nonlinear parameter: ``estimate``, ``std_error``, ``t_value``.
    ranef, ranef_sd, coef, varcorr, sigma, theta, loglik, npar, aic, bic, deviance, nobs,
    ngrps, vcov, fitted, residuals, scaled_residuals, is_singular, converged, messages,
    optimizer
        As in :class:`~pylmer.results.LmerResults` (``coef``: each group's parameter
        values, fixed plus random).
    """

    formula: str
    start: pd.Series
    fixef: pd.DataFrame
    ranef: dict[str, pd.DataFrame]
    ranef_sd: dict[str, pd.DataFrame]
    coef: dict[str, pd.DataFrame]
    varcorr: pd.DataFrame
    sigma: float
    theta: pd.Series
    loglik: float
    npar: int
    aic: float
    bic: float
    deviance: float
    nobs: int
    ngrps: pd.Series
    vcov: pd.DataFrame
    fitted: pd.Series
    residuals: pd.Series
    scaled_residuals: np.ndarray
    is_singular: bool
    converged: bool
    messages: tuple[str, ...]
    optimizer: str

    def summary(self) -> str:
        """Return the summary text (see :func:`format_nlmer_summary`)."""
        return format_nlmer_summary(self)

    def _repr_html_(self) -> str:
        return nlmer_html(self)


def format_nlmer_summary(res: NlmerResults) -> str:
    """Return a summary laid out like R's ``summary(nlmerMod)``: header, information
    criteria, scaled residuals, random effects, fixed effects (t values) and their
    correlation."""
    fe = res.fixef
    est, se = _estimates(fe)
    tval = format_column(np.round(fe["t_value"].to_numpy(), 3))
    rows = [list(r) for r in zip(map(str, fe.index), est, se, tval, strict=True)]
    lines = [
        "Nonlinear mixed model fit by maximum likelihood  ['nlmerMod']",
        f"Formula: {res.formula}",
        "",
        *_criteria(res, res.deviance),
        "",
        *_residuals(res),
        *_random_effects(res),
        "",
        "Fixed effects:",
        *_table(rows, ["", "Estimate", "Std. Error", "t value"], left=1),
    ]
    if 1 < len(fe) <= 12:
        lines += _correlation(res)
    if res.messages:
        lines += ["", "convergence messages:", *res.messages]
    return "\n".join(lines) + "\n"


def nlmer_html(res: NlmerResults) -> str:
    """Return an HTML rendering of an nlmer fit for notebooks."""
    stats = {"AIC": f"{res.aic:.1f}", "BIC": f"{res.bic:.1f}", "logLik": f"{res.loglik:.1f}"}
    items = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in stats.items())
    frame = lambda title, f: f"<h4>{title}</h4>" + f.to_html(float_format=lambda v: f"{v:.4g}")  # noqa: E731
    return (
        f"<div><p><b>Nonlinear mixed model</b><br><code>{html.escape(res.formula)}</code></p>"
        f"<table>{items}</table>"
        + frame("Random effects", res.varcorr)
        + frame("Fixed effects", res.fixef)
        + "</div>"
    )
