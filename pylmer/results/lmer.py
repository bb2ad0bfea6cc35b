"""The results of an ``lmer`` fit: a pure-pandas container and its display hooks."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .base import CoefTests, ml_criteria
from .display import DisplayedResults
from .text import criteria_lines

__all__ = ["LmerResults"]


@dataclass(frozen=True, eq=False)
class LmerResults(DisplayedResults):
    """Every quantity lme4 reports for one ``lmer`` fit (see :class:`pylmer.LmerModel`).

    Nothing here touches R: the container pickles, survives the R session, and renders
    the ``summary()`` text (laid out like lmerTest's ``summary(merMod)``) and the
    notebook HTML.  The fields every kind has are described in
    :class:`~pylmer.results.base.MixedResults`; ``fixef`` has ``estimate``,
    ``std_error`` and ``t_value``.

    Attributes
    ----------
    reml : bool
        Whether the fit is REML (else maximum likelihood).
    reml_criterion : float
        R's ``REMLcrit(m)``.  ``deviance`` is R's ``deviance(m)``: for REML fits that is
        the REML criterion (R warns it is deprecated there), for ML fits ``-2 * loglik``.
    satterthwaite : pandas.DataFrame or None
        Satterthwaite ``df`` and ``p_value`` by fixed-effect term, computed with the fit
        (``r_scripts/satterthwaite.R``, equal to lmerTest's); None when unavailable.
        ``summary()`` shows them whenever present.
    """

    reml: bool
    reml_criterion: float
    satterthwaite: pd.DataFrame | None = None

    def _heading(self, tested: bool) -> list[str]:
        kind = "REML" if self.reml else "maximum likelihood "
        tests = ". t-tests use Satterthwaite's method" if tested else ""
        cls = "lmerModLmerTest" if tested else "lmerMod"
        lines = [
            f"Linear mixed model fit by {kind}{tests} ['{cls}']",
            f"Formula: {self.formula}",
            "",
        ]
        if self.reml:
            lines.append(f"REML criterion at convergence: {self.reml_criterion:.1f}")
        else:
            lines += criteria_lines(self, self.deviance)
        return [*lines, ""]

    def _coef_tests(self, pvalues: bool) -> CoefTests:
        stat = self.fixef["t_value"].to_numpy()
        sat = self.satterthwaite
        if not pvalues or sat is None:
            return CoefTests("t", stat)
        sat = sat.reindex(self.fixef.index)
        return CoefTests("t", stat, sat["df"].to_numpy(), sat["p_value"].to_numpy())

    def _html_facts(self) -> tuple[str, dict[str, object]]:
        title = f"Linear mixed model fit by {'REML' if self.reml else 'maximum likelihood'}"
        if self.reml:
            return title, {"REML criterion": f"{self.reml_criterion:.1f}"}
        return title, ml_criteria(self)
