"""Pure-pandas containers for the results of a fitted linear mixed model.

Nothing here touches R: :class:`LmerResults` holds every quantity extracted from the
fitted ``merMod`` in one R call, so it pickles, survives the R session, and renders
the ``summary()`` text (laid out like R's ``summary(merMod)``) and the notebook HTML.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

__all__ = ["GlmerResults", "LmerResults", "format_glmer_summary", "format_summary"]


@dataclass(frozen=True, eq=False)
class LmerResults:
    """Every quantity lme4 reports for one fit (see :class:`pylmer.LmerModel`).

    Attributes
    ----------
    formula : str
        The model formula, as given.
    reml : bool
        Whether the fit is REML (else maximum likelihood).
    fixef : pandas.DataFrame
        Index: fixed-effect terms; columns ``estimate``, ``std_error``, ``t_value``.
    ranef, ranef_sd : dict of str to pandas.DataFrame
        Per grouping factor: conditional modes (levels x terms), and their conditional
        standard deviations (square roots of the diagonal of R's ``condVar``).
    coef : dict of str to pandas.DataFrame
        R's ``coef()``: fixed plus random effects per level.
    varcorr : pandas.DataFrame
        R's ``as.data.frame(VarCorr(m))`` with columns ``group``, ``var1``, ``var2``,
        ``variance``, ``sd_or_cor``.
    sigma, loglik, aic, bic, deviance, reml_criterion : float
        ``deviance`` is R's ``deviance(m)``: for REML fits that is the REML criterion
        (R warns it is deprecated there), for ML fits ``-2 * loglik``.
        ``reml_criterion`` is R's ``REMLcrit(m)``.
    npar : int
        Number of estimated parameters (``attr(logLik(m), "df")``).
    theta : pandas.Series
        Relative covariance factor parameters (``getME(m, "theta")``).
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
        lme4's convergence messages (``m@optinfo$conv$lme4$messages``) and optimizer
        warnings.
    optimizer : str
        The optimizer lme4 used.
    satterthwaite : pandas.DataFrame or None
        Satterthwaite ``df`` and ``p_value`` by fixed-effect term, computed with the fit
        (``r_scripts/satterthwaite.R``, equal to lmerTest's); None when unavailable.
        ``summary()`` shows them whenever present.
    """

    formula: str
    reml: bool
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
    reml_criterion: float
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
    satterthwaite: pd.DataFrame | None = None

    def summary(self, satterthwaite: pd.DataFrame | None = None) -> str:
        """Return the summary text (see :func:`format_summary`)."""
        return format_summary(self, satterthwaite)

    def _repr_html_(self) -> str:
        return to_html(self)


# ------------------------------------------------------------------ number formatting


def _decimals(x: float, digits: int) -> int:
    """Decimals needed to show ``x`` with ``digits`` significant digits (R's rule)."""
    if not math.isfinite(x) or x == 0:
        return 0
    text = np.format_float_positional(float(f"{x:.{digits}g}"), trim="-")
    return len(text.split(".")[1]) if "." in text else 0


def format_column(values: np.ndarray | list[float], digits: int = 4) -> list[str]:
    """Format numbers like R's ``format(x, digits=)``: one common number of decimals."""
    arr = np.asarray(values, dtype=float)
    finite = arr[np.isfinite(arr)]
    dec = max((_decimals(v, digits) for v in finite), default=0)
    return ["NA" if not np.isfinite(v) else f"{v:.{dec}f}" for v in arr]


def _table(rows: list[list[str]], header: list[str], left: int = 1) -> list[str]:
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


def _pvalue(p: float) -> str:
    if not np.isfinite(p):
        return "NA"
    return "< 2e-16" if p < 2e-16 else f"{p:.3g}" if p < 1e-3 else f"{p:.5f}".rstrip("0")


def _stars(p: float) -> str:
    if not np.isfinite(p):
        return ""
    for cut, mark in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")):
        if p < cut:
            return mark
    return ""


# ------------------------------------------------------------------ summary blocks


def _header(res: LmerResults, tested: bool) -> list[str]:
    kind = "REML" if res.reml else "maximum likelihood "
    tests = ". t-tests use Satterthwaite's method" if tested else ""
    cls = "lmerModLmerTest" if tested else "lmerMod"
    lines = [f"Linear mixed model fit by {kind}{tests} ['{cls}']", f"Formula: {res.formula}", ""]
    if res.reml:
        lines.append(f"REML criterion at convergence: {res.reml_criterion:.1f}")
    else:
        lines += _criteria(res, res.deviance)
    return [*lines, ""]


def _criteria(res: LmerResults | GlmerResults, deviance: float) -> list[str]:
    """The AIC, BIC, logLik, deviance, df.resid block of an ML fit."""
    names = ["AIC", "BIC", "logLik", "deviance", "df.resid"]
    values = [f"{v:.1f}" for v in (res.aic, res.bic, res.loglik, deviance)]
    values.append(str(res.nobs - res.npar))
    widths = [max(8, len(n), len(v)) for n, v in zip(names, values, strict=True)]
    return [
        " ".join(n.rjust(w) for n, w in zip(names, widths, strict=True)),
        " ".join(v.rjust(w) for v, w in zip(values, widths, strict=True)),
    ]


def _residuals(res: LmerResults) -> list[str]:
    q = np.quantile(res.scaled_residuals, [0, 0.25, 0.5, 0.75, 1.0])
    cells = [f"{v:.4f}" for v in q]
    names = ["Min", "1Q", "Median", "3Q", "Max"]
    return ["Scaled residuals:", *_table([cells], names, left=0), ""]


def _random_effects(res: LmerResults) -> list[str]:
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
    lines = _table(rows, header, left=2)
    groups = ", ".join(f"{name}, {int(n)}" for name, n in res.ngrps.items())
    return [
        "Random effects:",
        *(" " + line for line in lines),
        f"Number of obs: {res.nobs}, groups:  {groups}",
    ]


def _fixed_effects(res: LmerResults, satterthwaite: pd.DataFrame | None) -> list[str]:
    fe = res.fixef
    if fe.empty:
        return ["No fixed effect coefficients"]
    tested = satterthwaite is not None
    est, se = _estimates(fe)
    tval = format_column(np.round(fe["t_value"].to_numpy(), 3))
    header = ["", "Estimate", "Std. Error", "t value"]
    columns = [list(map(str, fe.index)), est, se, tval]
    if tested:
        sat = satterthwaite.reindex(fe.index)
        header = ["", "Estimate", "Std. Error", "df", "t value", "Pr(>|t|)", ""]
        df = [f"{v:.3f}" for v in sat["df"]]
        pv = [_pvalue(p) for p in sat["p_value"]]
        stars = [_stars(p) for p in sat["p_value"]]
        columns = [columns[0], est, se, df, tval, pv, stars]
    rows = [list(r) for r in zip(*columns, strict=True)]
    lines = ["Fixed effects:", *_table(rows, header, left=1)]
    if tested:
        lines += ["---", "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"]
    return lines


def _estimates(fe: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Estimates and standard errors as R's printCoefmat shows them (one rounding)."""
    coef_se = np.concatenate([fe["estimate"].to_numpy(), fe["std_error"].to_numpy()])
    finite = np.abs(coef_se[np.isfinite(coef_se) & (coef_se != 0)])
    low = finite.min() if finite.size else 1.0
    decimals = max(1, 4 - (1 + math.floor(math.log10(low))))
    both = format_column(np.round(coef_se, decimals))
    return both[: len(fe)], both[len(fe) :]


def _correlation(res: LmerResults | GlmerResults) -> list[str]:
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
    return ["", "Correlation of Fixed Effects:", *_table(rows, header, left=1)]


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


def format_summary(
    res: LmerResults, satterthwaite: pd.DataFrame | Literal[False] | None = None
) -> str:
    """Return a summary laid out like R's ``summary(merMod)``.

    Parameters
    ----------
    res : LmerResults
        The fit.
    satterthwaite : pandas.DataFrame or False, optional
        Columns ``df`` and ``p_value`` by term; when given (default: ``res.satterthwaite``),
        the fixed-effects table adds them as lmerTest's summary does; False leaves them
        out.

    Returns
    -------
    str
        Header, REML criterion or information criteria, scaled residuals, random
        effects, fixed effects and (with at most 12 terms) their correlation.
    """
    if satterthwaite is None:
        satterthwaite = getattr(res, "satterthwaite", None)
    elif satterthwaite is False:
        satterthwaite = None
    lines = _header(res, satterthwaite is not None)
    lines += _residuals(res)
    lines += _random_effects(res)
    lines += ["", *_fixed_effects(res, satterthwaite)]
    if 1 < len(res.fixef) <= 12:
        lines += _correlation(res)
    if res.messages:
        lines += ["", f"optimizer ({res.optimizer}) convergence messages:", *res.messages]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ HTML


def _frame_html(title: str, frame: pd.DataFrame) -> str:
    return f"<h4>{html.escape(title)}</h4>" + frame.to_html(float_format=lambda v: f"{v:.4g}")


def to_html(res: LmerResults, satterthwaite: pd.DataFrame | None = None) -> str:
    """Return an HTML rendering for notebooks: header, random and fixed effects."""
    kind = "REML" if res.reml else "maximum likelihood"
    stats: Mapping[str, object] = (
        {"REML criterion": f"{res.reml_criterion:.1f}"}
        if res.reml
        else {
            "AIC": f"{res.aic:.1f}",
            "BIC": f"{res.bic:.1f}",
            "logLik": f"{res.loglik:.1f}",
            "deviance": f"{res.deviance:.1f}",
        }
    )
    stats = {**stats, "obs": res.nobs, **{f"groups: {k}": int(v) for k, v in res.ngrps.items()}}
    items = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in stats.items()
    )
    if satterthwaite is None:
        satterthwaite = getattr(res, "satterthwaite", None)
    fixed = res.fixef if satterthwaite is None else res.fixef.join(satterthwaite)
    warn = "".join(f"<p><b>Note:</b> {html.escape(m)}</p>" for m in res.messages)
    return (
        "<div>"
        f"<p><b>Linear mixed model fit by {kind}</b><br><code>{html.escape(res.formula)}"
        f"</code></p><table>{items}</table>"
        + _frame_html("Random effects", res.varcorr)
        + _frame_html("Fixed effects", fixed)
        + warn
        + "</div>"
    )


# ------------------------------------------------------------------ GLMMs


@dataclass(frozen=True, eq=False)
class GlmerResults:
    """Every quantity lme4 reports for one ``glmer`` fit (see :class:`pylmer.GlmerModel`).

    Attributes
    ----------
    formula : str
        The model formula, as given.
    family, link : str
        R's ``family(m)$family`` (``"binomial"``, ``"poisson"``, ``"Gamma"``,
        ``"inverse.gaussian"``, ``"Negative Binomial(3.3034)"``) and its link.
    nagq : int
        Points per axis of the adaptive Gauss-Hermite quadrature (1: Laplace).
    fixef : pandas.DataFrame
        Index: fixed-effect terms; columns ``estimate``, ``std_error``, ``z_value``,
        ``p_value`` (Wald z tests, as lme4's ``summary``; for families with a scale
        parameter lme4 labels the statistic "t value" but still takes p from the normal).
    ranef, ranef_sd, coef, varcorr, theta, ngrps, vcov
        As in :class:`LmerResults`.
    sigma : float
        R's ``sigma(m)``: 1 for binomial, Poisson and negative binomial, else the scale.
    nb_theta : float
        The negative binomial's theta (``getME(m, "glmer.nb.theta")``), NaN otherwise.
    loglik, aic, bic : float
        Marginal log-likelihood (Laplace or quadrature approximation) and criteria.
    deviance : float
        R's ``deviance(m)``: the sum of squared deviance residuals at the conditional
        modes.  ``summary()`` shows ``-2 * loglik`` in its "deviance" column, as lme4 does.
    npar, nobs : int
        Estimated parameters; observations used.
    fitted : pandas.Series
        Fitted means (response scale), aligned to the input index (NaN on dropped rows).
    residuals : pandas.Series
        Deviance residuals (R's ``residuals(m)``), aligned likewise.
    scaled_residuals : numpy.ndarray
        Pearson residuals divided by sigma (used rows).
    is_singular, converged, messages, optimizer
        As in :class:`LmerResults`.
    has_scale : bool
        Whether the family estimates a scale (Gamma, inverse Gaussian).
    """

    formula: str
    family: str
    link: str
    nagq: int
    fixef: pd.DataFrame
    ranef: dict[str, pd.DataFrame]
    ranef_sd: dict[str, pd.DataFrame]
    coef: dict[str, pd.DataFrame]
    varcorr: pd.DataFrame
    sigma: float
    theta: pd.Series
    nb_theta: float
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
    has_scale: bool

    def summary(self) -> str:
        """Return the summary text (see :func:`format_glmer_summary`)."""
        return format_glmer_summary(self)

    def _repr_html_(self) -> str:
        return glmer_html(self)


def format_pvalues(values: np.ndarray | list[float], digits: int = 3) -> list[str]:
    """Format p-values like R's ``format.pval(pv, digits)`` (as printCoefmat shows them).

    Values from 1e-4 up share a fixed-point format, smaller ones a scientific one, and
    those below machine epsilon print as ``< 2e-16``.
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


def _glmer_fixed_effects(res: GlmerResults, pvalues: bool = True) -> list[str]:
    fe = res.fixef
    if fe.empty:
        return ["No fixed effect coefficients"]
    est, se = _estimates(fe)
    stat = format_column(np.round(fe["z_value"].to_numpy(), 3))
    name = "t" if res.has_scale else "z"
    header = ["", "Estimate", "Std. Error", f"{name} value"]
    columns = [list(map(str, fe.index)), est, se, stat]
    if pvalues:
        header += [f"Pr(>|{name}|)", ""]
        columns.append(format_pvalues(fe["p_value"].to_numpy()))
        columns.append([_stars(p).ljust(3) for p in fe["p_value"]])  # left-aligned, as in R
    rows = [list(r) for r in zip(*columns, strict=True)]
    lines = ["Fixed effects:", *_table(rows, header, left=1)]
    if pvalues:
        lines += ["---", "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"]
    return lines


def format_glmer_summary(res: GlmerResults, pvalues: bool = True) -> str:
    """Return a summary laid out like R's ``summary(glmerMod)``.

    Parameters
    ----------
    res : GlmerResults
        The fit.
    pvalues : bool
        Show the Wald p-values and significance stars.

    Returns
    -------
    str
        Header (approximation, family, formula), information criteria (the "deviance"
        column is ``-2 * loglik``, as in R), scaled residuals, random effects, fixed
        effects with Wald tests and (with at most 12 terms) their correlation.
    """
    approx = (
        "Laplace Approximation"
        if res.nagq == 1
        else f"Adaptive Gauss-Hermite Quadrature, nAGQ = {res.nagq}"
    )
    lines = [
        f"Generalized linear mixed model fit by maximum likelihood ({approx}) [glmerMod]",
        f" Family: {res.family}  ( {res.link} )",
        f"Formula: {res.formula}",
        "",
        *_criteria(res, -2 * res.loglik),
        "",
        *_residuals(res),
        *_random_effects(res),
        "",
        *_glmer_fixed_effects(res, pvalues),
    ]
    if 1 < len(res.fixef) <= 12:
        lines += _correlation(res)
    if res.messages:
        lines += ["", f"optimizer ({res.optimizer}) convergence messages:", *res.messages]
    return "\n".join(lines) + "\n"


def glmer_html(res: GlmerResults) -> str:
    """Return an HTML rendering of a GLMM fit for notebooks."""
    stats: dict[str, object] = {
        "family": f"{res.family} ({res.link})",
        "AIC": f"{res.aic:.1f}",
        "BIC": f"{res.bic:.1f}",
        "logLik": f"{res.loglik:.1f}",
        "obs": res.nobs,
        **{f"groups: {k}": int(v) for k, v in res.ngrps.items()},
    }
    items = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in stats.items()
    )
    warn = "".join(f"<p><b>Note:</b> {html.escape(m)}</p>" for m in res.messages)
    return (
        "<div>"
        f"<p><b>Generalized linear mixed model</b><br><code>{html.escape(res.formula)}"
        f"</code></p><table>{items}</table>"
        + _frame_html("Random effects", res.varcorr)
        + _frame_html("Fixed effects", res.fixef)
        + warn
        + "</div>"
    )
