"""The one summary formatter: R's ``summary(merMod)`` layout for every model kind.

:func:`format_summary` lays out any :class:`~pylmer.results.base.MixedResults`: the
kind's heading (its ``_heading`` hook), scaled residuals, random effects, the
fixed-effects table with the kind's tests (its ``_coef_tests`` hook), their correlation
and the convergence messages.  Numbers are formatted as R formats them
(:func:`format_column`, :func:`format_pvalues`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .base import MixedResults

__all__ = ["criteria_lines", "format_column", "format_pvalues", "format_summary"]

SIGNIF_CODES = "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"


# ------------------------------------------------------------------ numbers


def _decimals(x: float, digits: int) -> int:
    """Decimals needed to show ``x`` with ``digits`` significant digits (R's rule)."""
    if not math.isfinite(x) or x == 0:
        return 0
    text = np.format_float_positional(float(f"{x:.{digits}g}"), trim="-")
    return len(text.split(".")[1]) if "." in text else 0


def format_column(values: np.ndarray | list[float], digits: int = 4) -> list[str]:
    """Format numbers like R's ``format(x, digits=)``: one common number of decimals.

    Examples
    --------
    >>> format_column([612.100158, 35.071714, 654.940008])
    ['612.10', '35.07', '654.94']
    """
    arr = np.asarray(values, dtype=float)
    finite = arr[np.isfinite(arr)]
    dec = max((_decimals(v, digits) for v in finite), default=0)
    return ["NA" if not np.isfinite(v) else f"{v:.{dec}f}" for v in arr]


def format_pvalues(values: np.ndarray | list[float], digits: int = 3) -> list[str]:
    """Format p-values like R's ``format.pval(pv, digits)`` (as printCoefmat shows them).

    Values from 1e-4 up share a fixed-point format, smaller ones a scientific one, and
    those below machine epsilon print as ``< 2e-16``.

    Examples
    --------
    >>> format_pvalues([1.468113e-09, 1.067696e-03])
    ['1.47e-09', '0.001068']
    """
    pv = np.asarray(values, dtype=float)
    out = ["NA"] * len(pv)
    eps = float(np.finfo(float).eps)
    ok = np.isfinite(pv)
    tiny = ok & (pv < eps)
    rest = ok & ~tiny
    expo = np.floor(np.log10(np.where(pv > 0, pv, 1e-50)))
    fixed = rest & ((expo >= -3) | ((expo == -4) & (digits > 1)))
    sci = rest & ~fixed
    for i, text in zip(np.flatnonzero(fixed), format_column(pv[fixed], digits), strict=True):
        out[i] = text
    if sci.any():
        sig = max(
            len(f"{float(f'{v:.{digits - 1}e}'):e}".split("e")[0].rstrip("0").replace(".", ""))
            for v in pv[sci]
        )
        sig = min(max(sig, 1), digits)
        for i in np.flatnonzero(sci):
            out[i] = f"{pv[i]:.{sig - 1}e}"
    if tiny.any():
        width = max((len(out[i]) for i in np.flatnonzero(rest)), default=0)
        small = max(1, digits - 2)
        if rest.any() and small > 1 and small + 6 > width:
            small = max(1, width - 7)
        sep = "" if (small == 1 and (not rest.any() or width <= 6)) else " "
        text = f"<{sep}{eps:.{small - 1}e}"
        for i in np.flatnonzero(tiny):
            out[i] = text
    return out


def _stars(p: float) -> str:
    if not np.isfinite(p):
        return ""
    for cut, mark in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")):
        if p < cut:
            return mark
    return ""


def text_table(rows: list[list[str]], header: list[str], left: int = 1) -> list[str]:
    """Lay out a text table: the first ``left`` columns left-aligned, the rest right."""
    cols = list(zip(header, *rows, strict=True)) if rows else [(h,) for h in header]
    widths = [max(len(c) for c in col) for col in cols]
    out = []
    for row in [header, *rows]:
        cells = [
            cell.ljust(w) if i < left else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append(" ".join(cells).rstrip())
    return out


# ------------------------------------------------------------------ blocks


def criteria_lines(res: MixedResults, deviance: float) -> list[str]:
    """The AIC, BIC, logLik, deviance, df.resid block of a maximum-likelihood fit."""
    names = ["AIC", "BIC", "logLik", "deviance", "df.resid"]
    values = [f"{v:.1f}" for v in (res.aic, res.bic, res.loglik, deviance)]
    values.append(str(res.nobs - res.npar))
    widths = [max(8, len(n), len(v)) for n, v in zip(names, values, strict=True)]
    return [
        " ".join(n.rjust(w) for n, w in zip(names, widths, strict=True)),
        " ".join(v.rjust(w) for v, w in zip(values, widths, strict=True)),
    ]


def _residuals(res: MixedResults) -> list[str]:
    q = np.quantile(res.scaled_residuals, [0, 0.25, 0.5, 0.75, 1.0])
    cells = [f"{v:.4f}" for v in q]
    names = ["Min", "1Q", "Median", "3Q", "Max"]
    return ["Scaled residuals:", *text_table([cells], names, left=0), ""]


def _random_effects(res: MixedResults) -> list[str]:
    vc = res.varcorr
    var_rows = vc[vc["var2"].isna()]
    variance = format_column(var_rows["variance"].to_numpy())
    sds = format_column(var_rows["sd_or_cor"].to_numpy())
    max_terms = int(var_rows.groupby("group", sort=False).size().max())
    rows = []
    previous = None
    for k, (_, row) in enumerate(var_rows.iterrows()):
        group = row["group"]
        name = "" if pd.isna(row["var1"]) else str(row["var1"])
        cells = ["" if group == previous else str(group), name, variance[k], sds[k]]
        previous = group
        if max_terms > 1:
            cors = vc[(vc["group"] == group) & (vc["var2"] == row["var1"])]
            corr = [f"{c:.2f}" for c in cors["sd_or_cor"]]
            cells += (corr + [""] * max_terms)[: max_terms - 1]
        rows.append(cells)
    header = ["Groups", "Name", "Variance", "Std.Dev."]
    if max_terms > 1:
        header += ["Corr"] + [""] * (max_terms - 2)
    lines = text_table(rows, header, left=2)
    groups = ", ".join(f"{name}, {int(n)}" for name, n in res.ngrps.items())
    return [
        "Random effects:",
        *(" " + line for line in lines),
        f"Number of obs: {res.nobs}, groups:  {groups}",
    ]


def _estimates(fe: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Estimates and standard errors as R's printCoefmat shows them (one rounding)."""
    coef_se = np.concatenate([fe["estimate"].to_numpy(), fe["std_error"].to_numpy()])
    finite = np.abs(coef_se[np.isfinite(coef_se) & (coef_se != 0)])
    low = finite.min() if finite.size else 1.0
    decimals = max(1, 4 - (1 + math.floor(math.log10(low))))
    both = format_column(np.round(coef_se, decimals))
    return both[: len(fe)], both[len(fe) :]


def _fixed_effects(res: MixedResults, pvalues: bool) -> list[str]:
    fe = res.fixef
    if fe.empty:
        return ["No fixed effect coefficients"]
    tests = res._coef_tests(pvalues)
    est, se = _estimates(fe)
    header = ["", "Estimate", "Std. Error"]
    columns = [list(map(str, fe.index)), est, se]
    if tests.df is not None:
        header.append("df")
        columns.append([f"{v:.3f}" for v in tests.df])
    header.append(f"{tests.label} value")
    columns.append(format_column(np.round(np.asarray(tests.stat, dtype=float), 3)))
    if tests.p_value is not None:
        header += [f"Pr(>|{tests.label}|)", ""]
        columns.append(format_pvalues(tests.p_value))
        columns.append([_stars(p).ljust(3) for p in tests.p_value])  # left-aligned, as R
    rows = [list(r) for r in zip(*columns, strict=True)]
    lines = ["Fixed effects:", *text_table(rows, header, left=1)]
    if tests.p_value is not None:
        lines += ["---", SIGNIF_CODES]
    return lines


def _correlation(res: MixedResults) -> list[str]:
    v = res.vcov.to_numpy()
    if v.shape[0] < 2:
        return []
    sd = np.sqrt(np.diag(v))
    corr = v / np.outer(sd, sd)
    names = [str(n) for n in res.vcov.index]
    abbrev = [_abbreviate(n) for n in names]
    rows = []
    for i in range(1, len(names)):
        rows.append([names[i]] + [f"{corr[i, j]:.3f}" for j in range(i)])
    header = ["", *abbrev[:-1]]
    rows = [r + [""] * (len(header) - len(r)) for r in rows]
    return ["", "Correlation of Fixed Effects:", *text_table(rows, header, left=1)]


def _abbreviate(name: str, width: int = 6) -> str:
    """A short label like R's ``abbreviate(minlength = 6)``.

    Drops lower-case vowels, then lower-case letters, from the right (never the first
    character) until the label is short enough.
    """
    chars = list(name.replace(" ", ""))
    for droppable in ("aeiou", "abcdefghijklmnopqrstuvwxyz"):
        i = len(chars) - 1
        while len(chars) > width and i > 0:
            if chars[i] in droppable:
                del chars[i]
            i -= 1
    return "".join(chars[:width]) if len(chars) > width else "".join(chars)


# ------------------------------------------------------------------ the summary


def format_summary(res: MixedResults, pvalues: bool = True) -> str:
    """Return a summary laid out like R's ``summary()`` of the fit's kind.

    Parameters
    ----------
    res : MixedResults
        The fit's results (``LmerResults``, ``GlmerResults``, ...).
    pvalues : bool
        Show the tests of the fixed effects (lmerTest's Satterthwaite df and p-values
        for a linear mixed model, Wald z tests for a GLMM) and the significance stars.

    Returns
    -------
    str
        The kind's heading (title, formula, criteria), scaled residuals, random effects,
        fixed effects and (with at most 12 terms) their correlation, then convergence
        messages.

    Examples
    --------
    >>> print(format_summary(m.results))  # doctest: +SKIP
    Linear mixed model fit by REML. t-tests use Satterthwaite's method ['lmerModLmerTest']
    ...
    """
    tests = res._coef_tests(pvalues)
    lines = res._heading(tests.p_value is not None)
    lines += _residuals(res)
    lines += _random_effects(res)
    lines += ["", *_fixed_effects(res, pvalues)]
    if 1 < len(res.fixef) <= 12:
        lines += _correlation(res)
    if res.messages:
        heading = res._MESSAGES_HEADING.format(optimizer=res.optimizer)
        lines += ["", heading, *res.messages]
    return "\n".join(lines) + "\n"
