"""The one HTML formatter: a notebook view of any fitted mixed model.

:func:`to_html` shows the kind's title and key figures (its ``_html_facts`` hook), the
observation and group counts, the random effects, the fixed effects with the tests the
summary shows (its ``_coef_tests`` hook) and the convergence messages.
"""

from __future__ import annotations

import html

import pandas as pd

from .base import MixedResults

__all__ = ["to_html"]


def _frame_html(title: str, frame: pd.DataFrame) -> str:
    return f"<h4>{html.escape(title)}</h4>" + frame.to_html(float_format=lambda v: f"{v:.4g}")


def _fixed_table(res: MixedResults) -> pd.DataFrame:
    """The fixed effects with the df and p-value columns the summary shows."""
    tests = res._coef_tests(True)
    fixed = res.fixef.copy()
    if tests.df is not None and "df" not in fixed:
        fixed["df"] = tests.df
    if tests.p_value is not None and "p_value" not in fixed:
        fixed["p_value"] = tests.p_value
    return fixed


def to_html(res: MixedResults) -> str:
    """Return an HTML rendering for notebooks: header, random and fixed effects.

    Examples
    --------
    >>> from IPython.display import HTML  # doctest: +SKIP
    >>> HTML(to_html(m.results))  # doctest: +SKIP
    """
    title, facts = res._html_facts()
    stats = {**facts, "obs": res.nobs, **{f"groups: {k}": int(v) for k, v in res.ngrps.items()}}
    items = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in stats.items()
    )
    warn = "".join(f"<p><b>Note:</b> {html.escape(m)}</p>" for m in res.messages)
    return (
        "<div>"
        f"<p><b>{html.escape(title)}</b><br><code>{html.escape(res.formula)}"
        f"</code></p><table>{items}</table>"
        + _frame_html("Random effects", res.varcorr)
        + _frame_html("Fixed effects", _fixed_table(res))
        + warn
        + "</div>"
    )
