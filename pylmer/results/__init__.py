"""Pure-pandas containers for the results of fitted mixed models, and their display.

Nothing here touches R.  ``base`` holds the fields every kind shares
(:class:`~pylmer.results.base.MixedResults`) and the display hooks; ``lmer``, ``glmer``,
``nlmer`` and ``glmmtmb`` the kinds' containers; ``text`` the one summary formatter (R's
layout) and ``html`` the one notebook formatter.  A new model kind adds a module with a
``display.DisplayedResults`` subclass answering the hooks (``_heading``, ``_coef_tests``,
``_html_facts``).
"""

from __future__ import annotations

from .base import CoefTests, MixedResults
from .glmer import GlmerResults
from .html import to_html
from .lmer import LmerResults
from .text import format_column, format_pvalues, format_summary

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
