"""The result container every model kind shares, and the hooks its display uses.

:class:`MixedResults` holds the fields every lme4-style fit reports.  A model kind's
container (``LmerResults``, ``GlmerResults``, ``NlmerResults``...) subclasses it, adds its
own fields and answers three questions for the one text formatter
(:func:`pylmer.results.text.format_summary`) and the one HTML formatter
(:func:`pylmer.results.html.to_html`):

* :meth:`MixedResults._heading` -- the lines above "Scaled residuals" (title, family,
  formula, criteria), given whether tests are shown;
* :meth:`MixedResults._coef_tests` -- the test statistic of the fixed effects and, when
  shown, their df and p-values (:class:`CoefTests`);
* :meth:`MixedResults._html_facts` -- the title and the key figures of the HTML view.

A kind's container subclasses :class:`pylmer.results.display.DisplayedResults` (this
base plus ``summary()`` and ``_repr_html_()``), so this module stays below the formatters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

__all__ = ["CoefTests", "MixedResults", "ml_criteria"]


@dataclass(frozen=True)
class CoefTests:
    """How the fixed-effects table shows its tests.

    Attributes
    ----------
    label : str
        The statistic's letter: ``"t"`` or ``"z"`` (columns ``t value``, ``Pr(>|t|)``).
    stat : numpy.ndarray
        The statistic per coefficient.
    df : numpy.ndarray or None
        Degrees of freedom per coefficient (a ``df`` column), or None.
    p_value : numpy.ndarray or None
        p-values per coefficient (``Pr(>|t|)`` and stars), or None: no tests shown.
    """

    label: str
    stat: np.ndarray
    df: np.ndarray | None = None
    p_value: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class MixedResults:
    """The fields every fitted mixed model reports (see :class:`pylmer.LmerModel`).

    Attributes
    ----------
    formula : str
        The model formula, as given.
    fixef : pandas.DataFrame
        Index: fixed-effect terms; ``estimate``, ``std_error``, then the kind's test
        columns.
    ranef, ranef_sd : dict of str to pandas.DataFrame
        Per grouping factor: conditional modes (levels x terms), and their conditional
        standard deviations (square roots of the diagonal of R's ``condVar``).
    coef : dict of str to pandas.DataFrame
        R's ``coef()``: fixed plus random effects per level.
    varcorr : pandas.DataFrame
        R's ``as.data.frame(VarCorr(m))`` with columns ``group``, ``var1``, ``var2``,
        ``variance``, ``sd_or_cor``.
    sigma : float
        R's ``sigma(m)`` (the residual standard deviation, or a GLMM's scale).
    theta : pandas.Series
        Relative covariance factor parameters (``getME(m, "theta")``).
    loglik, aic, bic, deviance : float
        Log-likelihood, information criteria and R's ``deviance(m)``.
    npar : int
        Number of estimated parameters (``attr(logLik(m), "df")``).
    nobs : int
        Observations used (after dropping incomplete rows).
    ngrps : pandas.Series
        Number of levels per grouping factor.
    vcov : pandas.DataFrame
        Covariance matrix of the fixed effects.
    fitted, residuals : pandas.Series
        Aligned to the input index; NaN on rows lme4 dropped.
    scaled_residuals : numpy.ndarray
        Pearson residuals divided by sigma (used rows only).
    is_singular, converged : bool
        ``isSingular(m)``; optimizer success without lme4 convergence failures.
    messages : tuple of str
        lme4's convergence messages and optimizer warnings.
    optimizer : str
        The optimizer lme4 used.
    """

    formula: str
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

    #: the heading of the convergence messages in the summary
    _MESSAGES_HEADING: ClassVar[str] = "optimizer ({optimizer}) convergence messages:"

    # ------------------------------------------------------------------ display hooks

    def _heading(self, tested: bool) -> list[str]:
        """The summary's lines above "Scaled residuals" (ending with a blank line)."""
        raise NotImplementedError

    def _coef_tests(self, pvalues: bool) -> CoefTests:
        """The fixed effects' statistic, and their df / p-values when shown."""
        return CoefTests("t", self.fixef["t_value"].to_numpy())

    def _html_facts(self) -> tuple[str, dict[str, object]]:
        """The HTML view's title and key figures (before the observation counts)."""
        return "Mixed model", ml_criteria(self)


def ml_criteria(res: MixedResults, deviance: bool = True) -> dict[str, object]:
    """AIC, BIC, logLik (and deviance) of a maximum-likelihood fit, as the HTML shows
    them."""
    shown = {"AIC": res.aic, "BIC": res.bic, "logLik": res.loglik}
    if deviance:
        shown["deviance"] = res.deviance
    return {k: f"{v:.1f}" for k, v in shown.items()}
