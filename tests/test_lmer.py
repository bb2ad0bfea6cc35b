"""Tests of pylmer.lmer against plain-R reference values.

The reference values are written by ``tests/reference.R`` in plain R (no pylmer
code) on the machine that runs the tests (``tests/_refcache.py`` caches them per R,
package, BLAS and platform); every accessor is compared with a relative tolerance of
1e-6.
"""

from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from _compare import check_common_accessors, close, close_frame, new_data
from _compare import frame as _frame
from _compare import vector as _vector
from _refcache import reference

import pylmer
from pylmer import datasets
from pylmer.errors import DataError, FormulaError, InvalidArgumentError, RError, SingularFitWarning
from pylmer.estimators import LmerRegressor, response_name
from pylmer.models.lmer import LmerControl, LmerModel, anova, lmer
from pylmer.results import LmerResults, format_column

FORMULAS = {
    "sleepstudy": "Reaction ~ Days + (Days | Subject)",
    "Dyestuff": "Yield ~ 1 + (1 | Batch)",
    "Penicillin": "diameter ~ 1 + (1 | plate) + (1 | sample)",
    "Pastes": "strength ~ 1 + (1 | batch/cask)",
    "InstEval": "y ~ service + (1 | s) + (1 | d) + (1 | dept)",
}
SMALL = ["sleepstudy", "Dyestuff", "Penicillin", "Pastes"]


# ---------------------------------------------------------------- reference files


def load_reference(name: str, reml: bool) -> dict:
    """Plain R's values for ``name`` on this machine (generated on first use, cached)."""
    return reference("reference.R", f"{name}_{'reml' if reml else 'ml'}")


def check_model(m: LmerModel, ref: dict, data: pd.DataFrame, *, satterthwaite: bool) -> None:
    """Compare every accessor of ``m`` with the plain-R reference ``ref``."""
    fixef = _frame(ref["fixef"])
    wald = ["estimate", "std_error", "t_value"]
    close_frame(m.fixef_wald, fixef[wald], "fixef")
    if satterthwaite:
        # pylmer's own Satterthwaite df against lmerTest's: both are numerical derivatives,
        # agreeing to ~1e-6 (df; p values of 1e-23 move 45x more): contract rtol 1e-4,
        # details in tests/test_satterthwaite.py
        assert list(m.fixef.columns) == [*wald, "df", "p_value"]
        np.testing.assert_allclose(
            m.fixef[["df", "p_value"]].to_numpy(dtype=float),
            fixef[["df", "p_value"]].to_numpy(dtype=float),
            rtol=1e-4,
            err_msg="Satterthwaite df/p",
        )
    check_common_accessors(m, ref, data)
    close(m.reml_criterion, ref["reml_criterion"], "reml_criterion")
    # pylmer adds a note when it skips lme4's derivative checks (lme4 1.1-38's policy on
    # large data, tests/test_control.py); everything else is lme4's
    skipped = "derivative-based convergence checks skipped"
    mine = [s for s in m.messages if not s.startswith(skipped)]
    assert mine == [str(s) for s in np.atleast_1d(ref["messages"] or [])]
    nd = new_data(data, list(np.atleast_1d(ref["meta"]["groups"])))
    close(m.predict(nd), ref["predict_new"], "predict with a new level")
    close(m.predict(nd, include_random=False), ref["predict_new_fixed"], "predict fixed part")


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def small_fits() -> dict:
    """All small reference models, REML and ML, fitted once."""
    fits = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularFitWarning)
        for name in SMALL:
            data = datasets.load(name)
            for reml in (True, False):
                fits[name, reml] = (lmer(FORMULAS[name], data, reml=reml), data)
    return fits


@pytest.fixture(scope="module")
def sleep_fit(small_fits) -> LmerModel:
    return small_fits["sleepstudy", True][0]


@pytest.fixture(scope="module", params=[True, False], ids=["reml", "ml"])
def insteval_fit(request, insteval_fits) -> LmerModel:
    return insteval_fits(request.param)


# ---------------------------------------------------------------- equal to plain R


@pytest.mark.parametrize("reml", [True, False], ids=["reml", "ml"])
@pytest.mark.parametrize("name", SMALL)
def test_matches_plain_r(small_fits, name, reml):
    m, data = small_fits[name, reml]
    ref = load_reference(name, reml)
    assert ref["meta"]["formula"].replace(" ", "") == FORMULAS[name].replace(" ", "")
    check_model(m, ref, data, satterthwaite=True)


def test_reference_made_with_this_r():
    """The reference values come from the R, lme4 and BLAS that pylmer embeds here."""
    ref = load_reference("sleepstudy", True)["meta"]
    installed = pylmer.versions()
    assert (ref["R"], ref["lme4"], ref["blas"]) == (
        installed["R"],
        installed["lme4"],
        installed["blas"],
    )


@pytest.mark.slow
def test_insteval_matches_plain_r(insteval_fit, insteval):
    ref = load_reference("InstEval", insteval_fit.reml)
    check_model(insteval_fit, ref, insteval, satterthwaite=True)
    ci = insteval_fit.confint("wald")
    close(ci.iloc[:, 0].dropna(), np.array(ref["confint_wald"]["lower"], dtype=float)[-2:], "ci")


@pytest.mark.parametrize("reml", [True, False], ids=["reml", "ml"])
def test_wald_confint_matches_plain_r(small_fits, reml):
    m, _ = small_fits["sleepstudy", reml]
    ref = load_reference("sleepstudy", reml)["confint_wald"]
    ci = m.confint("wald", old_names=True)  # R's names, as the reference has them
    assert list(ci.index) == ref["names"]
    assert list(ci.columns) == ["2.5 %", "97.5 %"]
    close(ci.iloc[:, 0], _vector(ref["lower"]), "lower")
    close(ci.iloc[:, 1], _vector(ref["upper"]), "upper")


def test_satterthwaite_comes_with_the_fit(sleep):
    m = lmer(FORMULAS["sleepstudy"], sleep)
    assert list(m.fixef_wald.columns) == ["estimate", "std_error", "t_value"]
    assert list(m.fixef.columns) == ["estimate", "std_error", "t_value", "df", "p_value"]
    assert m.results.satterthwaite is not None


# ---------------------------------------------------------------- formulas and errors


@pytest.mark.parametrize(
    "formula",
    [
        "Reaction ~ Days + (Days || Subject)",
        "Reaction ~ Days + I(Days^2) + (1 | Subject)",
        "Reaction ~ poly(Days, 2) + (1 | Subject)",
        "Reaction ~ Days * grp + (1 + Days | Subject)",
        "Reaction ~ 0 + (1 + Days | Subject)",
    ],
)
def test_formula_variants(sleep, formula):
    data = sleep.assign(grp=pd.Categorical(np.where(sleep.Days < 5, "early", "late")))
    m = lmer(formula, data)
    assert np.isfinite(m.loglik) and m.nobs == len(data)
    assert "Subject" in m.ranef


def test_crossed_and_nested(small_fits):
    pen, _ = small_fits["Penicillin", True]
    assert set(pen.ranef) == {"plate", "sample"}
    pastes, _ = small_fits["Pastes", True]
    assert list(pastes.ngrps.index) == ["cask:batch", "batch"]


def test_unusual_column_names(sleep):
    data = sleep.rename(
        columns={"Reaction": "reaction time", "Days": "days.slept", "Subject": "sujet_é"}
    )
    m = lmer("`reaction time` ~ `days.slept` + (`days.slept` | `sujet_é`)", data)
    ref = lmer(FORMULAS["sleepstudy"], sleep)
    close(m.fixef_wald["estimate"], ref.fixef_wald["estimate"], "renamed")
    assert list(m.ranef) == ["sujet_é"]
    assert m.predict(data.head(2)).notna().all()


def test_missing_column_is_named(sleep):
    with pytest.raises(FormulaError, match="'Dayz'"):
        lmer("Reaction ~ Dayz + (1 | Subject)", sleep)


def test_formula_syntax_error(sleep):
    with pytest.raises(FormulaError, match="parse"):
        lmer("Reaction ~ Days + (1 | Subject", sleep)


def test_no_random_term(sleep):
    with pytest.raises(FormulaError, match="random"):
        lmer("Reaction ~ Days", sleep)


def test_non_numeric_response(sleep):
    with pytest.raises(DataError, match="numeric"):
        lmer("Subject ~ Days + (1 | Days)", sleep)


def test_r_errors_surface_as_rerror(sleep):
    with pytest.raises(RError):
        lmer("Reaction ~ Days + (1 | Days)", sleep.head(3))


def test_control(sleep):
    m = lmer(
        FORMULAS["sleepstudy"],
        sleep,
        control={"optimizer": "bobyqa", "calc_derivs": False, "maxfun": 10000},
    )
    assert m.optimizer == "bobyqa"
    m2 = lmer(FORMULAS["sleepstudy"], sleep, control=LmerControl(optimizer="Nelder_Mead"))
    assert m2.optimizer == "Nelder_Mead"
    # different optimizers agree to their tolerance, not to rounding
    np.testing.assert_allclose(m.fixef_wald, m2.fixef_wald, rtol=1e-4)
    with pytest.raises(ValueError, match="'optimiser'"):
        lmer(FORMULAS["sleepstudy"], sleep, control={"optimiser": "bobyqa"})
    with pytest.raises(ValueError, match="optimizer"):
        lmer(FORMULAS["sleepstudy"], sleep, control={"optimizer": "BFGS"})


def test_singular_fit_is_flagged():
    data = datasets.load("Dyestuff2")
    with pytest.warns(SingularFitWarning):
        m = lmer("Yield ~ 1 + (1 | Batch)", data)
    assert m.is_singular and m.converged
    assert any("singular" in msg for msg in m.messages)


def test_missing_values_are_dropped_and_aligned(sleep):
    data = sleep.copy()
    data.index = data.index + 1000
    data.loc[[1002, 1010], "Reaction"] = np.nan
    with pytest.warns(UserWarning, match="dropped 2 of 180"):
        m = lmer(FORMULAS["sleepstudy"], data)
    assert m.nobs == 178
    assert m.fitted.index.equals(data.index)
    assert np.isnan(m.fitted[1002]) and np.isnan(m.residuals[1010])
    assert m.fitted.notna().sum() == 178
    close(m.fitted + m.residuals, data["Reaction"], "fitted + residuals = response")
    assert m.simulate(1, seed=1).index.equals(data.index.drop([1002, 1010]))
    with pytest.raises(DataError, match="missing"):
        lmer(FORMULAS["sleepstudy"], data, na_action="error")


def test_weights_column_or_array(sleep):
    w = np.linspace(0.5, 2.0, len(sleep))
    by_column = lmer(FORMULAS["sleepstudy"], sleep.assign(w=w), weights="w")
    by_array = lmer(FORMULAS["sleepstudy"], sleep, weights=w)
    plain = lmer(FORMULAS["sleepstudy"], sleep)
    close(by_column.fixef_wald, by_array.fixef_wald.to_numpy(), "weights")
    assert not np.allclose(by_column.fixef_wald, plain.fixef_wald)
    with pytest.raises(DataError, match="rows"):
        lmer(FORMULAS["sleepstudy"], sleep, weights=w[:3])


# ---------------------------------------------------------------- predict


def test_predict_defaults_and_index(sleep_fit, sleep):
    close(sleep_fit.predict(), sleep_fit.fitted, "predict() = fitted")
    fixed = sleep_fit.predict(include_random=False)
    beta = sleep_fit.fixef_wald["estimate"]
    close(fixed, beta["(Intercept)"] + beta["Days"] * sleep["Days"], "fixed part")
    nd = sleep.iloc[[5, 0]].set_index(pd.Index(["a", "b"]))
    pred = sleep_fit.predict(nd)
    assert list(pred.index) == ["a", "b"]
    close(pred, sleep_fit.fitted.iloc[[5, 0]], "predict on training rows")


def test_predict_unseen_fixed_level_is_named(sleep):
    data = sleep.assign(grp=pd.Categorical(np.where(sleep.Days < 5, "early", "late")))
    m = lmer("Reaction ~ Days + grp + (1 | Subject)", data)
    nd = data.head(2).assign(grp=["early", "middle"])
    with pytest.raises(DataError, match=r"'grp'.*'middle'"):
        m.predict(nd)


def test_predict_new_group_levels(sleep_fit, sleep):
    nd = new_data(sleep, ["Subject"])
    with pytest.raises(DataError, match=r"'Subject'.*'new'"):
        sleep_fit.predict(nd, allow_new_levels=False)
    pred = sleep_fit.predict(nd)
    fixed = sleep_fit.predict(nd, include_random=False)
    assert pred.iloc[2] == pytest.approx(fixed.iloc[2])


# ---------------------------------------------------------------- refit, inference


@pytest.mark.parametrize("reml", [True, False], ids=["reml", "ml"])
def test_refit_matches_plain_r(small_fits, reml):
    m, data = small_fits["sleepstudy", reml]
    ref = load_reference("sleepstudy", reml)["refit_double"]
    doubled = m.refit(2 * data["Reaction"])
    close(doubled.loglik, ref["loglik"], "refit loglik")
    close(doubled.theta, ref["theta"], "refit theta")
    close(doubled.fixef_wald["estimate"], ref["estimate"], "refit fixef")
    close(doubled.sigma, ref["sigma"], "refit sigma")
    same = m.refit(data["Reaction"].to_numpy())  # numpy: one value per observation
    assert same.nobs == m.nobs and same.reml == m.reml
    with pytest.raises(DataError, match="newresp"):
        m.refit([1.0, 2.0])


def test_refit_ml(small_fits):
    reml, _ = small_fits["sleepstudy", True]
    ml, _ = small_fits["sleepstudy", False]
    refitted = reml.refit_ml()
    assert not refitted.reml
    np.testing.assert_allclose(refitted.loglik, ml.loglik, rtol=1e-7)


@pytest.mark.filterwarnings("ignore:extreme order statistics:pylmer.RWarning")
def test_confint_profile_and_boot(small_fits):
    m, _ = small_fits["Dyestuff", True]
    prof = m.confint("profile")
    # one naming scheme: the rows of confint are the columns of bootstrap()
    assert list(prof.index) == ["sd_(Intercept)|Batch", "sigma", "(Intercept)"]
    assert list(pylmer.bootstrap(m, nsim=2, seed=1).columns) == list(prof.index)
    old = m.confint("profile", old_names=True)  # R's default names
    assert list(old.index) == [".sig01", ".sigma", "(Intercept)"]
    pd.testing.assert_frame_equal(old.set_axis(prof.index), prof)
    # parm in either scheme
    assert list(m.confint("wald", parm=[".sigma", "(Intercept)"]).index) == [
        "sigma",
        "(Intercept)",
    ]
    assert list(m.confint("wald", parm="sigma", old_names=True).index) == [".sigma"]
    assert (prof.iloc[:, 0] < prof.iloc[:, 1]).all()
    boot1 = m.confint("boot", nsim=20, seed=42)
    boot2 = m.confint("boot", nsim=20, seed=42)
    pd.testing.assert_frame_equal(boot1, boot2)
    with pytest.raises(ValueError, match="method"):
        m.confint("bayes")


def test_simulate(sleep_fit):
    a = sleep_fit.simulate(3, seed=7)
    b = sleep_fit.simulate(3, seed=7)
    assert a.shape == (180, 3) and list(a.columns) == ["sim_1", "sim_2", "sim_3"]
    pd.testing.assert_frame_equal(a, b)


def test_anova_likelihood_ratio(small_fits, sleep):
    m1, _ = small_fits["sleepstudy", False]
    m0 = lmer("Reaction ~ 1 + (Days | Subject)", sleep, reml=False)
    table = anova(m0, m1)
    assert list(table.index) == [m0.formula, m1.formula]
    named = anova(m1, m0, names=["slope", "null"])
    assert list(named.index) == ["null", "slope"]  # R's order: by number of parameters
    pd.testing.assert_frame_equal(named.set_axis(table.index), table)
    with pytest.raises(InvalidArgumentError, match="names must be 2 strings"):
        anova(m0, m1, names=["one"])
    chisq = table["Chisq"].iloc[1]
    close(chisq, 2 * (m1.loglik - m0.loglik), "LR statistic")
    close(table["logLik"], [m0.loglik, m1.loglik], "logLik")


# ---------------------------------------------------------------- display


def test_summary_layout(sleep):
    fit = lmer(FORMULAS["sleepstudy"], sleep)
    text = fit.summary(pvalues=False)  # lme4's own layout
    for line in (
        "Linear mixed model fit by REML",
        "Formula: Reaction ~ Days + (Days | Subject)",
        "REML criterion at convergence: 1743.6",
        "Scaled residuals:",
        " Groups   Name        Variance Std.Dev. Corr",
        " Subject  (Intercept)",
        "Number of obs: 180, groups:  Subject, 18",
        "(Intercept)  251.405      6.825  36.838",
        "Correlation of Fixed Effects:",
    ):
        assert line in text, line
    html = fit._repr_html_()
    assert "<table" in html and "Subject" in html
    assert "LmerModel" in repr(fit)
    tested = fit.summary()  # the Satterthwaite df come with the fit (tests/test_satterthwaite.py)
    assert str(fit) == tested
    assert "t-tests use Satterthwaite's method ['lmerModLmerTest']" in tested
    assert "Estimate Std. Error     df t value Pr(>|t|)" in tested
    assert "Signif. codes:" in tested


def test_summary_ml_block(small_fits):
    m, _ = small_fits["Dyestuff", False]
    text = m.summary()
    assert "AIC      BIC   logLik deviance df.resid" in text
    assert "333.3    337.5   -163.7    327.3       27" in text


def test_format_column_like_r():
    assert format_column([612.100158, 35.071714, 654.940008]) == ["612.10", "35.07", "654.94"]
    assert format_column([24.740658, 5.922138, 25.591796]) == ["24.741", "5.922", "25.592"]


# ---------------------------------------------------------------- persistence


def test_pickle_in_fresh_interpreter(sleep_fit, tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(sleep_fit))
    script = f"""
import pickle, sys
import numpy as np
m = pickle.loads(open({str(path)!r}, "rb").read())
assert m._handle is None
print(repr(float(m.sigma)))
print(repr(float(m.predict(m.data.head(3)).iloc[2])))
print(repr(float(m.refit(m.data["Reaction"]).loglik)))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    close(float(out[0]), sleep_fit.sigma, "sigma after unpickling")
    close(float(out[1]), sleep_fit.fitted.iloc[2], "predict after unpickling")
    expected = sleep_fit.refit(sleep_fit.data["Reaction"]).loglik
    close(float(out[2]), expected, "refit after unpickling")
    same = pickle.loads(pickle.dumps(sleep_fit))
    assert isinstance(same.results, LmerResults)
    close_frame(same.ranef["Subject"], sleep_fit.ranef["Subject"], "ranef after pickle")


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="Rscript not on PATH")
def test_to_r_script_reproduces_fit(sleep, tmp_path):
    data = sleep.assign(w=np.linspace(0.5, 2, len(sleep)))
    m = lmer(FORMULAS["sleepstudy"], data, weights="w", control={"optimizer": "bobyqa"})
    script = m.to_r_script(tmp_path / "fit.R")
    assert script.exists() and (tmp_path / "fit.csv").exists()
    expr = f'source("{script.name}"); cat(format(c(fixef(m), sigma(m)), digits = 17))'
    out = subprocess.run(
        ["Rscript", "-e", expr], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    values = [float(v) for v in out.split()[-3:]]
    close(values, [*m.fixef_wald["estimate"], m.sigma], "R script refit")


# ---------------------------------------------------------------- scikit-learn


def test_regressor_fit_predict_score(sleep):
    from sklearn.base import clone

    reg = LmerRegressor(FORMULAS["sleepstudy"])
    X, y = sleep.drop(columns="Reaction"), sleep["Reaction"]
    reg.fit(X, y)
    close(reg.predict(X), lmer(FORMULAS["sleepstudy"], sleep).fitted, "predict")
    assert 0.5 < reg.score(X, y) <= 1.0
    assert reg.score(sleep) == pytest.approx(reg.score(X, y))
    twin = clone(reg)
    assert twin.get_params() == reg.get_params() and not hasattr(twin, "model_")
    assert response_name("`my y` ~ x + (1|g)") == "my y"
    assert response_name("log(y) ~ x + (1|g)") is None


def test_regressor_in_model_selection(sleep):
    from sklearn.model_selection import GridSearchCV, KFold, cross_val_score

    cv = KFold(3, shuffle=True, random_state=0)
    scores = cross_val_score(LmerRegressor(FORMULAS["sleepstudy"]), sleep, None, cv=cv)
    assert scores.shape == (3,) and np.all(scores > 0.5)
    grid = GridSearchCV(
        LmerRegressor(),
        {"formula": ["Reaction ~ Days + (1 | Subject)", FORMULAS["sleepstudy"]]},
        cv=cv,
    )
    grid.fit(sleep.drop(columns="Reaction"), sleep["Reaction"])
    assert grid.best_params_["formula"] == FORMULAS["sleepstudy"]


# ---------------------------------------------------------------- datasets


def test_datasets():
    assert {"sleepstudy", "InstEval", "Dyestuff", "Penicillin", "Pastes", "cake"} <= set(
        datasets.names()
    )
    cake = datasets.load("cake")
    assert isinstance(cake["recipe"].dtype, pd.CategoricalDtype)
    assert list(cake["recipe"].cat.categories) == ["A", "B", "C"]
    with pytest.raises(ValueError, match=r"'Sleepstudy'.*'sleepstudy'"):
        datasets.load("Sleepstudy")
    assert callable(datasets.simulate_longitudinal)
    assert pylmer.lmer is lmer
