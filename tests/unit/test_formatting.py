"""The summary and HTML formatters, on result containers built by hand (no R)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pylmer.results import GlmerResults, LmerResults, format_column
from pylmer.results.text import format_summary


def _shared(**changes):
    terms = pd.Index(["(Intercept)", "x"])
    fields = dict(
        formula="y ~ x + (1 | g)",
        fixef=pd.DataFrame(
            {"estimate": [2.0, 0.5], "std_error": [0.25, 0.125], "t_value": [8.0, 4.0]},
            index=terms,
        ),
        ranef={},
        ranef_sd={},
        coef={},
        varcorr=pd.DataFrame(
            {
                "group": ["g", "Residual"],
                "var1": ["(Intercept)", None],
                "var2": [None, None],
                "variance": [4.0, 1.0],
                "sd_or_cor": [2.0, 1.0],
            }
        ),
        sigma=1.0,
        theta=pd.Series([2.0]),
        loglik=-100.0,
        npar=4,
        aic=208.0,
        bic=218.0,
        deviance=200.0,
        nobs=50,
        ngrps=pd.Series({"g": 5}),
        vcov=pd.DataFrame([[0.0625, 0.001], [0.001, 0.015625]], index=terms, columns=terms),
        fitted=pd.Series(np.zeros(50)),
        residuals=pd.Series(np.zeros(50)),
        scaled_residuals=np.linspace(-2, 2, 50),
        is_singular=False,
        converged=True,
        messages=(),
        optimizer="nloptwrap",
    )
    fields.update(changes)
    return fields


def _lmm(reml=True, satterthwaite=True, **changes):
    sat = pd.DataFrame({"df": [4.0, 44.0], "p_value": [1.3e-3, 2.4e-4]}, index=["(Intercept)", "x"])
    return LmerResults(
        reml=reml, reml_criterion=199.0, satterthwaite=sat if satterthwaite else None,
        **_shared(**changes),
    )  # fmt: skip


def _glmm(has_scale=False):
    shared = _shared()
    shared["fixef"] = (
        shared["fixef"].rename(columns={"t_value": "z_value"}).assign(p_value=[1.2e-15, 6.3e-5])
    )
    return GlmerResults(
        family="binomial", link="logit", nagq=1, nb_theta=np.nan, has_scale=has_scale, **shared
    )


def test_lmm_summary_with_and_without_satterthwaite():
    text = format_summary(_lmm())
    assert text.startswith(
        "Linear mixed model fit by REML. t-tests use Satterthwaite's method ['lmerModLmerTest']"
    )
    assert "REML criterion at convergence: 199.0" in text
    assert "Estimate Std. Error     df t value Pr(>|t|)" in text
    assert "Signif. codes:" in text
    plain = format_summary(_lmm(), pvalues=False)
    assert "['lmerMod']" in plain and "Pr(>|t|)" not in plain and "Signif" not in plain
    assert format_summary(_lmm(satterthwaite=False)) == plain
    assert _lmm().summary() == text


def test_ml_summary_has_the_criteria_block():
    text = format_summary(_lmm(reml=False))
    assert "Linear mixed model fit by maximum likelihood " in text
    assert "AIC      BIC   logLik deviance df.resid" in text
    assert "208.0    218.0   -100.0    200.0       46" in text


def test_glmm_summary_uses_z_or_t_and_wald_p_values():
    text = format_summary(_glmm())
    assert "[glmerMod]" in text and " Family: binomial  ( logit )" in text
    assert "z value Pr(>|z|)" in text and "1.2e-15 ***" in text
    assert "t value Pr(>|t|)" in format_summary(_glmm(has_scale=True))
    assert "Pr(>|z|)" not in format_summary(_glmm(), pvalues=False)


def test_one_html_formatter_for_both_kinds():
    lmm, glmm = _lmm()._repr_html_(), _glmm()._repr_html_()
    assert "Linear mixed model fit by REML" in lmm and "REML criterion" in lmm
    assert "p_value" in lmm and "df" in lmm  # the Satterthwaite columns the summary shows
    assert "Generalized linear mixed model" in glmm and "binomial (logit)" in glmm


def test_convergence_messages_close_the_summary():
    text = format_summary(_lmm(messages=("Model failed to converge",)))
    assert text.rstrip().endswith(
        "optimizer (nloptwrap) convergence messages:\nModel failed to converge"
    )


def test_format_column_like_r():
    assert format_column([612.100158, 35.071714, 654.940008]) == ["612.10", "35.07", "654.94"]
    assert format_column([24.740658, 5.922138, np.nan]) == ["24.741", "5.922", "NA"]
