"""Satterthwaite df and p values computed by pylmer (r_scripts/satterthwaite.R) against
lmerTest's, both run on this machine (plain-R references through tests/_refcache.py).

Tolerance: df and p at rtol 1e-4 (the contract of the computation).  lmerTest's own
numbers are numerical derivatives: on InstEval its df differ from the converged value by
about 1.5e-6 relative, and a p value of 1e-23 with 15 df moves 45 times as much as its
df, so a tighter bound would test lmerTest's rounding, not pylmer.  Small data sets agree
to about 1e-7 (df) and are held to 1e-6.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from _refcache import reference

from pylmer import SingularFitWarning, datasets, lmer
from pylmer.r import session as _r
from pylmer.results import format_summary

pytestmark = pytest.mark.usefixtures("r_session")

REFERENCE_SETS = {
    "sleepstudy": "Reaction ~ Days + (Days | Subject)",
    "Dyestuff": "Yield ~ 1 + (1 | Batch)",
    "Penicillin": "diameter ~ 1 + (1 | plate) + (1 | sample)",
    "Pastes": "strength ~ 1 + (1 | batch / cask)",
}
EXTRA = {
    "Dyestuff2": ("Dyestuff2", "Yield ~ 1 + (1 | Batch)", False),
    "cake_slope": ("cake", "angle ~ temp + (temp | recipe)", False),
    "cake_recipe": ("cake", "angle ~ recipe + temp + (1 | recipe:replicate)", False),
    "sleepstudy_uncorrelated": ("sleepstudy", "Reaction ~ Days + (Days || Subject)", False),
    "sleepstudy_weighted": ("sleepstudy", "Reaction ~ Days + (Days | Subject)", True),
}


def _kind(reml: bool) -> str:
    return "reml" if reml else "ml"


def _fit(data: pd.DataFrame, formula: str, reml: bool, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularFitWarning)
        return lmer(formula, data, reml=reml, **kwargs)


def _reference_fixef(ref: dict) -> pd.DataFrame:
    obj = ref["fixef"]
    names = [str(n) for n in np.atleast_1d(obj["names"])]
    cols = {n: np.atleast_1d(np.asarray(obj["columns"][n], dtype=float)) for n in names}
    return pd.DataFrame(cols, index=[str(i) for i in np.atleast_1d(obj["index"])])


def _check(model, terms, df, p, rtol) -> None:
    fixef = model.fixef
    terms, df, p = (np.atleast_1d(np.asarray(x)) for x in (terms, df, p))
    assert list(fixef.index) == [str(t) for t in terms]
    np.testing.assert_allclose(fixef["df"], df, rtol=rtol, err_msg="Satterthwaite df")
    np.testing.assert_allclose(fixef["p_value"], p, rtol=max(rtol, 1e-4), err_msg="p value")


@pytest.mark.parametrize("reml", [True, False], ids=["reml", "ml"])
@pytest.mark.parametrize("name", list(REFERENCE_SETS))
def test_matches_lmertest_on_reference_sets(name, reml):
    ref = _reference_fixef(reference("reference.R", f"{name}_{_kind(reml)}"))
    model = _fit(datasets.load(name), REFERENCE_SETS[name], reml)
    _check(model, ref.index, ref["df"], ref["p_value"], rtol=1e-6)


@pytest.mark.parametrize("reml", [True, False], ids=["reml", "ml"])
def test_matches_lmertest_on_insteval(reml, insteval_fits):
    ref = _reference_fixef(reference("reference.R", f"InstEval_{_kind(reml)}"))
    assert {"df", "p_value"} <= set(ref.columns), "reference.R wrote no InstEval df"
    model = insteval_fits(reml)
    _check(model, ref.index, ref["df"], ref["p_value"], rtol=1e-4)
    # the deviance function ran on the model's own objects: they are back at the optimum
    assert _r.call(".pylmer_satt_restored", model._mermod())


@pytest.mark.parametrize("reml", [True, False], ids=["reml", "ml"])
@pytest.mark.parametrize("case", list(EXTRA))
def test_matches_lmertest_on_hard_cases(case, reml):
    """Singular fits (lmerTest's scheme there), weights, uncorrelated terms, factors."""
    ref = reference("reference_satterthwaite.R", f"{case}_{_kind(reml)}")
    name, formula, weighted = EXTRA[case]
    data = datasets.load(name)
    kwargs = {}
    if weighted:
        data = data.assign(w=1 + (data["Days"] % 3) / 2)
        kwargs["weights"] = "w"
    model = _fit(data, formula, reml, **kwargs)
    assert model.is_singular == ref["is_singular"]
    np.testing.assert_allclose(model.fixef["estimate"], np.atleast_1d(ref["estimate"]), rtol=1e-6)
    _check(model, ref["terms"], ref["df"], ref["p_value"], rtol=1e-6)
    notes = [str(s) for s in np.atleast_1d(ref["lmertest_warnings"] or [])]
    assert [m for m in model.messages if "eigenvalue" in m] == notes


@pytest.fixture(scope="module")
def sleep_model():
    return lmer(REFERENCE_SETS["sleepstudy"], datasets.load("sleepstudy"))


def test_fixef_and_summary_agree_whatever_comes_first():
    data = datasets.load("sleepstudy")
    first = lmer(REFERENCE_SETS["sleepstudy"], data)
    text_first = first.summary()  # summary before fixef
    second = lmer(REFERENCE_SETS["sleepstudy"], data)
    fixef_first = second.fixef  # fixef before summary
    assert text_first == second.summary()
    pd.testing.assert_frame_equal(first.fixef, fixef_first)
    assert "Pr(>|t|)" in text_first and "Satterthwaite" in text_first
    for term, row in fixef_first.iterrows():
        line = next(x for x in text_first.splitlines() if x.startswith(term + " "))
        assert f"{row['df']:.3f}" in line


def test_columns_and_wald_view(sleep_model):
    assert list(sleep_model.fixef.columns) == [
        "estimate", "std_error", "t_value", "df", "p_value",
    ]  # fmt: skip
    assert list(sleep_model.fixef_wald.columns) == ["estimate", "std_error", "t_value"]
    pd.testing.assert_frame_equal(sleep_model.satterthwaite(), sleep_model.fixef[["df", "p_value"]])
    wald = sleep_model.summary(pvalues=False)
    assert "Pr(>|t|)" not in wald and "['lmerMod']" in wald
    assert format_summary(sleep_model.results) == sleep_model.summary()


def test_p_values_follow_from_t_and_df(sleep_model):
    from scipy import stats

    fe = sleep_model.fixef
    expected = 2 * stats.t.sf(np.abs(fe["t_value"]), fe["df"])
    np.testing.assert_allclose(fe["p_value"], expected, rtol=1e-10)


def test_refits_and_pickles_carry_the_df(sleep_model):
    ml = sleep_model.refit_ml()
    ref = _reference_fixef(reference("reference.R", "sleepstudy_ml"))
    # refitML starts from the REML optimum: lme4 stops ~1e-4 away from a direct ML fit
    np.testing.assert_allclose(ml.fixef["df"], ref["df"], rtol=1e-3)
    restored = pickle.loads(pickle.dumps(sleep_model))
    pd.testing.assert_frame_equal(restored.fixef, sleep_model.fixef)
    assert restored.summary() == sleep_model.summary()
    doubled = sleep_model.refit(2 * (sleep_model.fitted + sleep_model.residuals))
    assert {"df", "p_value"} <= set(doubled.fixef.columns)


def test_model_state_untouched_by_the_computation(sleep_model):
    """lme4's objects are back at the optimum: predictions and modes are plain R's."""
    assert _r.call(".pylmer_satt_restored", sleep_model._mermod())
    ref = reference("reference.R", "sleepstudy_reml")
    np.testing.assert_allclose(sleep_model.fitted, ref["fitted"], rtol=1e-10)


def test_summary_cost_is_not_paid_twice(sleep_model, monkeypatch):
    """fixef/summary read the table stored with the fit: no R call."""

    def fail(*args, **kwargs):
        raise AssertionError("R was called")

    monkeypatch.setattr(_r, "call", fail)
    monkeypatch.setattr(_r, "call_with_conditions", fail)
    assert "df" in sleep_model.fixef
    sleep_model.summary()
    sleep_model._repr_html_()
