"""The results of a ``glmer`` fit: a pure-pandas container and its display hooks."""

from __future__ import annotations

from dataclasses import dataclass

from .base import CoefTests, ml_criteria
from .display import DisplayedResults
from .text import criteria_lines

__all__ = ["GlmerResults"]


@dataclass(frozen=True, eq=False)
class GlmerResults(DisplayedResults):
    """Every quantity lme4 reports for one ``glmer`` fit (see :class:`pylmer.GlmerModel`).

    The fields every kind has are described in
    :class:`~pylmer.results.base.MixedResults`; for a GLMM:

    Attributes
    ----------
    fixef : pandas.DataFrame
        Index: fixed-effect terms; columns ``estimate``, ``std_error``, ``z_value``,
        ``p_value`` (Wald z tests, as lme4's ``summary``; for families with a scale
        parameter lme4 labels the statistic "t value" but still takes p from the normal).
    sigma : float
        R's ``sigma(m)``: 1 for binomial, Poisson and negative binomial, else the scale.
    loglik, aic, bic : float
        Marginal log-likelihood (Laplace or quadrature approximation) and criteria.
    deviance : float
        R's ``deviance(m)``: the sum of squared deviance residuals at the conditional
        modes.  ``summary()`` shows ``-2 * loglik`` in its "deviance" column, as lme4 does.
    fitted : pandas.Series
        Fitted means (response scale), aligned to the input index (NaN on dropped rows).
    residuals : pandas.Series
        Deviance residuals (R's ``residuals(m)``), aligned likewise.
    family, link : str
        R's ``family(m)$family`` (``"binomial"``, ``"poisson"``, ``"Gamma"``,
        ``"inverse.gaussian"``, ``"Negative Binomial(3.3034)"``) and its link.
    nagq : int
        Points per axis of the adaptive Gauss-Hermite quadrature (1: Laplace).
    nb_theta : float
        The negative binomial's theta (``getME(m, "glmer.nb.theta")``), NaN otherwise.
    has_scale : bool
        Whether the family estimates a scale (Gamma, inverse Gaussian).
    """

    family: str
    link: str
    nagq: int
    nb_theta: float
    has_scale: bool

    def _heading(self, tested: bool) -> list[str]:
        approx = (
            "Laplace Approximation"
            if self.nagq == 1
            else f"Adaptive Gauss-Hermite Quadrature, nAGQ = {self.nagq}"
        )
        return [
            f"Generalized linear mixed model fit by maximum likelihood ({approx}) [glmerMod]",
            f" Family: {self.family}  ( {self.link} )",
            f"Formula: {self.formula}",
            "",
            *criteria_lines(self, -2 * self.loglik),
            "",
        ]

    def _coef_tests(self, pvalues: bool) -> CoefTests:
        label = "t" if self.has_scale else "z"
        stat = self.fixef["z_value"].to_numpy()
        return CoefTests(label, stat, p_value=self.fixef["p_value"].to_numpy() if pvalues else None)

    def _html_facts(self) -> tuple[str, dict[str, object]]:
        family = {"family": f"{self.family} ({self.link})"}
        return "Generalized linear mixed model", {**family, **ml_criteria(self, deviance=False)}
