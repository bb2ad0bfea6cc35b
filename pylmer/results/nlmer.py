"""The results of an ``nlmer`` fit: a pure-pandas container and its display hooks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pandas as pd

from .base import ml_criteria
from .display import DisplayedResults
from .html import to_html
from .text import criteria_lines, format_summary

__all__ = ["NlmerResults", "format_nlmer_summary", "nlmer_html"]


@dataclass(frozen=True, eq=False)
class NlmerResults(DisplayedResults):
    """Every quantity lme4 reports for one ``nlmer`` fit (see :class:`pylmer.NlmerModel`).

    The fields every kind has are described in
    :class:`~pylmer.results.base.MixedResults` (``formula``: the three-part formula;
    ``fixef``: one row per nonlinear parameter with ``estimate``, ``std_error``,
    ``t_value``; ``coef``: each group's parameter values, fixed plus random).

    Attributes
    ----------
    start : pandas.Series
        The starting values of the nonlinear parameters (given, or from the
        self-starting model).
    """

    start: pd.Series

    _MESSAGES_HEADING: ClassVar[str] = "convergence messages:"

    def _heading(self, tested: bool) -> list[str]:
        return [
            "Nonlinear mixed model fit by maximum likelihood  ['nlmerMod']",
            f"Formula: {self.formula}",
            "",
            *criteria_lines(self, self.deviance),
            "",
        ]

    def _html_facts(self) -> tuple[str, dict[str, object]]:
        return "Nonlinear mixed model", ml_criteria(self, deviance=False)


def format_nlmer_summary(res: NlmerResults) -> str:
    """Return a summary laid out like R's ``summary(nlmerMod)`` (the one formatter,
    :func:`pylmer.results.text.format_summary`)."""
    return format_summary(res)


def nlmer_html(res: NlmerResults) -> str:
    """Return an HTML rendering of an nlmer fit for notebooks (:func:`to_html`)."""
    return to_html(res)
