"""``summary()`` and the notebook view of a result container: the one text formatter and
the one HTML formatter (a kind's container subclasses :class:`DisplayedResults`)."""

from __future__ import annotations

from .base import MixedResults
from .html import to_html
from .text import format_summary

__all__ = ["DisplayedResults"]


class DisplayedResults(MixedResults):
    """A :class:`~pylmer.results.base.MixedResults` with ``summary()`` and
    ``_repr_html_()`` (no fields of its own)."""

    def summary(self, pvalues: bool = True) -> str:
        """Return the summary text (see :func:`pylmer.results.text.format_summary`)."""
        return format_summary(self, pvalues)

    def _repr_html_(self) -> str:
        return to_html(self)
