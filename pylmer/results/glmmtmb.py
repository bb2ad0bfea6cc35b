"""The results of a ``glmmTMB`` fit: a pure-pandas container and a summary laid out like
glmmTMB's (conditional, zero-inflation and dispersion models)."""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .text import _estimates, _stars, format_column, format_pvalues
from .text import criteria_lines as _criteria
from .text import text_table as _table

__all__ = ["GlmmTMBResults", "format_glmmtmb_summary"]


@dataclass(frozen=True, eq=False)
class GlmmTMBResults:
    """Every quantity glmmTMB reports for one fit (see :class:`pylmer.GlmmTMBModel`).

    Attributes
    ----------
    formula, ziformula, dispformula : str or None
        The conditional model's formula and the zero-inflation / dispersion formulas
        (None when absent).
    family, link : str
        glmmTMB's family name (``"poisson"``, ``"nbinom2"``, ``"beta"``, ...) and link.
    fixef, fixef_zi, fixef_disp : pandas.DataFrame or None
        ``estimate``, ``std_error``, ``z_value``, ``p_value`` (Wald z) of the conditional,
        zero-inflation and dispersion models (None when the model has no such part; the
        default dispersion ``~1`` counts as absent, its value is ``sigma``).
    ranef, ranef_sd : dict of str to pandas.DataFrame
        Conditional modes of the conditional model's random effects and their
        conditional standard deviations, per grouping factor.
    ranef_zi, ranef_zi_sd : dict of str to pandas.DataFrame
        The same for the zero-inflation model (empty without random effects there).
    varcorr : pandas.DataFrame
        ``component``, ``group``, ``var1``, ``var2``, ``variance``, ``sd_or_cor``.
    sigma : float
        glmmTMB's ``sigma()``: the dispersion (nbinom2: the size; beta: the precision;
        gaussian: the residual sd; NaN with a dispersion formula, 1 without a dispersion).
    family_param : float
        The tweedie power (NaN for other families).
    loglik, aic, bic, deviance : float
        ``deviance`` is ``-2 * loglik``, as glmmTMB's summary shows it.
    npar, nobs, df_residual : int
    ngrps : pandas.Series
    vcov : pandas.DataFrame
        Covariance of the conditional model's fixed effects.
    fitted, residuals : pandas.Series
        Fitted means and response residuals, aligned to the input index.
    converged, pd_hess : bool
        Optimizer success and a positive-definite Hessian.
    messages : tuple of str
    """

    formula: str
    ziformula: str | None
    dispformula: str | None
    family: str
    link: str
    fixef: pd.DataFrame
    fixef_zi: pd.DataFrame | None
    fixef_disp: pd.DataFrame | None
    ranef: dict[str, pd.DataFrame]
    ranef_sd: dict[str, pd.DataFrame]
    ranef_zi: dict[str, pd.DataFrame]
    ranef_zi_sd: dict[str, pd.DataFrame]
    varcorr: pd.DataFrame
    sigma: float
    family_param: float
    loglik: float
    npar: int
    aic: float
    bic: float
    deviance: float
    nobs: int
    df_residual: int
    ngrps: pd.Series
    vcov: pd.DataFrame
    fitted: pd.Series
    residuals: pd.Series
    converged: bool
    pd_hess: bool
    messages: tuple[str, ...]

    def summary(self) -> str:
        """Return the summary text (see :func:`format_glmmtmb_summary`)."""
        return format_glmmtmb_summary(self)

    def _repr_html_(self) -> str:
        return glmmtmb_html(self)


def _coef_table(fe: pd.DataFrame) -> list[str]:
    est, se = _estimates(fe)
    stat = format_column(np.round(fe["z_value"].to_numpy(), 3))
    rows = [
        [str(n), e, s, z, p, _stars(pv).ljust(3)]
        for n, e, s, z, p, pv in zip(
            fe.index,
            est,
            se,
            stat,
            format_pvalues(fe["p_value"].to_numpy()),
            fe["p_value"],
            strict=True,
        )
    ]
    header = ["", "Estimate", "Std. Error", "z value", "Pr(>|z|)", ""]
    return [*_table(rows, header, left=1), "---", _CODES]


_CODES = "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"

_DISPERSION_NAME = {
    "nbinom1": "Dispersion parameter for nbinom1 family ()",
    "nbinom2": "Dispersion parameter for nbinom2 family ()",
    "truncated_nbinom2": "Dispersion parameter for truncated_nbinom2 family ()",
    "truncated_nbinom1": "Dispersion parameter for truncated_nbinom1 family ()",
    "beta": "Dispersion parameter for beta family ()",
    "betabinomial": "Dispersion parameter for betabinomial family ()",
    "Gamma": "Dispersion estimate for Gamma family (sigma^2)",
    "gaussian": "Dispersion estimate for gaussian family (sigma^2)",
    "tweedie": "Dispersion parameter for tweedie family ()",
    "genpois": "Dispersion parameter for genpois family ()",
}


def _random_block(res: GlmmTMBResults, component: str) -> list[str]:
    vc = res.varcorr[res.varcorr["component"] == component]
    var_rows = vc[vc["var2"].isna()]
    if var_rows.empty:
        return []
    variance = format_column(var_rows["variance"].to_numpy())
    sds = format_column(var_rows["sd_or_cor"].to_numpy())
    rows, previous = [], None
    for k, (_, row) in enumerate(var_rows.iterrows()):
        cors = vc[(vc["group"] == row["group"]) & (vc["var2"] == row["var1"])]
        corr = " ".join(f"{c:.2f}" for c in cors["sd_or_cor"])
        group = "" if row["group"] == previous else str(row["group"])
        rows.append([group, str(row["var1"]), variance[k], sds[k], corr])
        previous = row["group"]
    title = "Conditional model:" if component == "cond" else "Zero-inflation model:"
    lines = _table(rows, ["Groups", "Name", "Variance", "Std.Dev.", "Corr"], left=3)
    return ["", title, *(" " + line.rstrip() for line in lines)]


def format_glmmtmb_summary(res: GlmmTMBResults) -> str:
    """Return a summary laid out like glmmTMB's ``summary()``: family, formulas,
    information criteria, random effects by model part, the dispersion, and the Wald
    tables of the conditional, zero-inflation and dispersion models."""
    lines = [f" Family: {res.family}  ( {res.link} )", f"Formula:          {res.formula}"]
    if res.ziformula is not None:
        lines.append(f"Zero inflation:         {res.ziformula}")
    if res.dispformula is not None:
        lines.append(f"Dispersion:             {res.dispformula}")
    lines += ["", *_criteria(res, res.deviance), ""]
    random = _random_block(res, "cond") + _random_block(res, "zi")
    if random:
        lines += ["Random effects:", *random]
        groups = ", ".join(f"{name}, {int(n)}" for name, n in res.ngrps.items())
        lines.append(f"Number of obs: {res.nobs}, groups:  {groups}")
    else:
        lines.append(f"Number of obs: {res.nobs}")
    if res.fixef_disp is None and res.family in _DISPERSION_NAME and np.isfinite(res.sigma):
        value = res.sigma**2 if res.family in ("gaussian", "Gamma") else res.sigma
        lines += ["", f"{_DISPERSION_NAME[res.family]}: {value:.3g} "]
    if np.isfinite(res.family_param):
        lines.append(f"Tweedie power parameter: {res.family_param:.3g}")
    lines += ["", "Conditional model:", *_coef_table(res.fixef)]
    if res.fixef_zi is not None:
        lines += ["", "Zero-inflation model:", *_coef_table(res.fixef_zi)]
    if res.fixef_disp is not None:
        lines += ["", "Dispersion model:", *_coef_table(res.fixef_disp)]
    if res.messages:
        lines += ["", "Convergence messages:", *res.messages]
    return "\n".join(lines) + "\n"


def glmmtmb_html(res: GlmmTMBResults) -> str:
    """Return an HTML rendering of a glmmTMB fit for notebooks."""
    stats = {
        "family": f"{res.family} ({res.link})",
        "AIC": f"{res.aic:.1f}",
        "logLik": f"{res.loglik:.1f}",
        "obs": res.nobs,
    }
    items = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in stats.items()
    )
    parts = [("Conditional model", res.fixef), ("Zero-inflation model", res.fixef_zi)]
    parts.append(("Dispersion model", res.fixef_disp))
    tables = "".join(
        f"<h4>{t}</h4>" + f.to_html(float_format=lambda v: f"{v:.4g}")
        for t, f in parts
        if f is not None
    )
    return (
        f"<div><p><b>glmmTMB</b><br><code>{html.escape(res.formula)}</code></p>"
        f"<table>{items}</table><h4>Random effects</h4>"
        + res.varcorr.to_html(float_format=lambda v: f"{v:.4g}")
        + tables
        + "</div>"
    )
