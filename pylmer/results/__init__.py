"""Pure-pandas containers for the results of fitted mixed models, and their display.

Nothing here touches R.  ``base`` holds the fields every kind shares
(:class:`~pylmer.results.base.MixedResults`) and the display hooks; ``lmer`` and
``glmer`` the kinds' containers; ``text`` the one summary formatter (R's layout) and
``html`` the one notebook formatter.  A new model kind adds a module with a
``MixedResults`` subclass answering the hooks (``_heading``, ``_coef_tests``,
``_html_facts``).
"""

from __future__ import annotations

from .base import CoefTests, MixedResults
from .glmer import GlmerResults
from .html import to_html
from .lmer import LmerResults
from .text import (  # noqa: F401 (the underscored names: see below)
    _correlation,
    _estimates,
    _random_effects,
    _residuals,
    criteria_lines,
    format_column,
    format_pvalues,
    format_summary,
    text_table,
)

# the names results/nlmer.py imports from here (written before the hooks existed)
_criteria = criteria_lines
_table = text_table

__all__ = [
    "CoefTests",
    "GlmerResults",
    "LmerResults",
    "MixedResults",
    "format_column",
    "format_pvalues",
    "format_summary",
    "to_html",
]
