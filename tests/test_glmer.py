"""Tests of pylmer.glmer against plain R on this machine (tests/reference_glmer.R).

Every accessor of each reference model is compared with plain R's value at a relative
tolerance of 1e-6: cbpp (binomial with cbind(), Laplace and nAGQ = 5, and as proportions
with weights), grouseticks (Poisson and glmer.nb), VerbAgg (binomial, crossed, a factor
response) and simulated Gamma and inverse Gaussian GLMMs.  Each model is fitted once per
module.
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
from _compare import check_common_accessors, close, close_frame, frame, new_data, vector
from _refcache import reference

import pylmer
from pylmer import datasets
from pylmer.errors import (
    DataError,
    FormulaError,
    InvalidArgumentError,
    LmerConvergenceWarning,
    RError,
    RWarning,
)
from pylmer.estimators import GlmerClassifier, GlmerRegressor
from pylmer.models.glmer import GlmerModel, glmer
from pylmer.results import GlmerResults, format_pvalues

pytestmark = pytest.mark.usefixtures("r_session")

SCRIPT = "reference_glmer.R"
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
TICKS = "TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | LOCATION)"
VERBAGG = "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"

# case -> (data set, formula, family, keyword arguments of glmer)
CASES = {
    "cbpp": ("cbpp", CBPP, "binomial", {}),
    "cbpp_agq5": ("cbpp", CBPP, "binomial", {"nagq": 5}),
    "cbpp_prop": (
        "cbpp",
        "incidence / size ~ period + (1 | herd)",
        "binomial",
        {"weights": "size"},
    ),
    "grouseticks_poisson": ("grouseticks", TICKS, "poisson", {}),
    "grouseticks_nb": ("grouseticks", TICKS, "negative_binomial", {}),
    "verbagg": ("VerbAgg", VERBAGG, "binomial", {}),
    "gamma_sim": (None, "y ~ x + (1 | g)", "Gamma", {"link": "log"}),
    "invgauss_sim": (None, "y ~ x + (1 | g)", "inverse.gaussian", {"link": "log"}),
}


# ---------------------------------------------------------------- helpers


def case_data(case: str) -> pd.DataFrame:
    name = CASES[case][0]
    if name is not None:
        return datasets.load(name)
    return (
        frame(reference(SCRIPT, case)["data"])
        .reset_index(drop=True)
        .astype({"y": float, "x": float})
    )


def fit_case(case: str) -> tuple[GlmerModel, pd.DataFrame]:
    _, formula, family, kwargs = CASES[case]
    data = case_data(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LmerConvergenceWarning)
        warnings.simplefilter("ignore", RWarning)
        return glmer(formula, data, family, **kwargs), data


@pytest.fixture(scope="module")
def fits(r_session) -> dict[str, tuple[GlmerModel, pd.DataFrame]]:
    """Every reference model, fitted once (lazily: a test asks for the ones it needs)."""
    cache: dict[str, tuple[GlmerModel, pd.DataFrame]] = {}

    class Lazy(dict):
        def __missing__(self, key: str) -> tuple[GlmerModel, pd.DataFrame]:
            cache[key] = fit_case(key)
            self[key] = cache[key]
            return cache[key]

    return Lazy()


@pytest.fixture(scope="module")
def cbpp(fits) -> GlmerModel:
    return fits["cbpp"][0]


# ---------------------------------------------------------------- equal to plain R


def check_model(m: GlmerModel, ref: dict, data: pd.DataFrame) -> None:
    """Compare every accessor of ``m`` with the plain-R reference ``ref``."""
    close_frame(m.fixef, frame(ref["fixef"]), "fixef (estimate, std_error, z, p)")
    check_common_accessors(m, ref, data)
    if ref["nb_theta"] is None:
        assert np.isnan(m.nb_theta)
    else:
        close(m.nb_theta, ref["nb_theta"], "nb_theta")
    for message in np.atleast_1d(ref["messages"] or []):
        assert str(message) in m.messages
    assert m.family == CASES[ref["meta"]["case"]][2]
    assert m.results.family == ref["meta"]["family"] and m.link == ref["meta"]["link"]
    assert m.nagq == ref["meta"]["nagq"]
    nd = new_data(data, list(np.atleast_1d(ref["meta"]["groups"])))
    close(m.predict(nd), ref["predict_new"], "predict response with a new level")
    close(m.predict(nd, type="link"), ref["predict_new_link"], "predict link")
    close(m.predict(nd, type="link", include_random=False), ref["predict_new_fixed"], "fixed part")
    close(m.predict(type="link", include_random=False), ref["predict_link_fixed"], "fixed, fit")
    ci = m.confint("wald", old_names=True)  # R's default names, as the reference
    assert list(ci.index) == ref["confint_wald"]["names"]
    close(ci.iloc[:, 0], vector(ref["confint_wald"]["lower"]), "Wald lower")
    close(ci.iloc[:, 1], vector(ref["confint_wald"]["upper"]), "Wald upper")
    sims = m.simulate(2, seed=42)
    assert list(sims.columns) == ["sim_1", "sim_2"]
    close(sims.to_numpy().T, [vector(s) for s in ref["simulate"]], "simulate(seed=42)")


@pytest.mark.parametrize("case", list(CASES))
def test_matches_plain_r(fits, case):
    m, data = fits[case]
    check_model(m, reference(SCRIPT, case), data)


def test_proportions_with_weights_equal_cbind(fits):
    """incidence/size with weights = size is the same binomial model as cbind()."""
    a, b = fits["cbpp"][0], fits["cbpp_prop"][0]
    close(a.fixef, b.fixef.to_numpy(), "fixef")
    close(a.loglik, b.loglik, "loglik")


def test_refit_profile_boot_anova_match_plain_r(cbpp):
    ref = reference(SCRIPT, "cbpp")
    data = cbpp.data
    swapped = cbpp.refit(np.column_stack([data["size"] - data["incidence"], data["incidence"]]))
    close(swapped.loglik, ref["refit_swapped"]["loglik"], "refit loglik")
    close(swapped.theta, ref["refit_swapped"]["theta"], "refit theta")
    close(swapped.fixef["estimate"], ref["refit_swapped"]["estimate"], "refit fixef")
    for method, key, kwargs in (
        ("profile", "confint_profile", {}),
        ("boot", "confint_boot", {"nsim": 10, "seed": 42}),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RWarning)
            ci = cbpp.confint(method, old_names=True, **kwargs)  # R's default names
        assert list(ci.index) == ref[key]["names"], method
        close(ci.iloc[:, 0], vector(ref[key]["lower"]), f"{method} lower")
        close(ci.iloc[:, 1], vector(ref[key]["upper"]), f"{method} upper")
    m0 = glmer("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", data)
    table = pylmer.anova(m0, cbpp)
    close(table["Chisq"].iloc[1], ref["anova"]["chisq"], "LRT chisq")
    close(table["Pr(>Chisq)"].iloc[1], ref["anova"]["p"], "LRT p")
    close(table["logLik"], ref["anova"]["loglik"], "LRT logLik")
    with pytest.raises(DataError, match="newresp"):
        cbpp.refit([1.0, 2.0])


# ---------------------------------------------------------------- families and errors


def test_string_labels_equal_numeric(fits):
    data = fits["verbagg"][1]
    assert isinstance(data["r2"].dtype, pd.CategoricalDtype)  # a factor response (N/Y)
    small = data[data["id"].cat.codes < 60].copy()
    small["id"] = small["id"].cat.remove_unused_categories()
    text = glmer("r2 ~ btype + (1 | id)", small.assign(r2=small["r2"].astype(str)))
    numeric = glmer("r2 ~ btype + (1 | id)", small.assign(r2=(small["r2"] == "Y").astype(float)))
    close(text.fixef, numeric.fixef.to_numpy(), "string vs 0/1 labels")


@pytest.mark.parametrize(
    ("family", "column", "values", "match"),
    [
        ("binomial", "y", [0.0, 1.0, 2.0], r"binomial response 'y' has values outside \[0, 1\]"),
        ("binomial", "y", ["a", "b", "c"], r"binomial response 'y' has 3 classes \('a', 'b'"),
        ("poisson", "y", [1.0, -1.0, 3.0], r"poisson response 'y' has negative counts"),
        ("negative_binomial", "y", [1.0, -2.0, 3.0], r"negative_binomial response 'y' has neg"),
        ("Gamma", "y", [1.0, 0.0, 3.0], r"Gamma response 'y' must be positive"),
        ("inverse.gaussian", "y", [1.0, -1.0, 3.0], r"inverse.gaussian response 'y' must be pos"),
        ("poisson", "y", ["a", "b", "c"], r"'y' must be numeric"),
    ],
)
def test_response_errors_name_the_column(family, column, values, match):
    rng = np.random.default_rng(0)
    n = 60
    data = pd.DataFrame(
        {
            column: np.resize(np.asarray(values, dtype=object), n),
            "x": rng.normal(size=n),
            "g": np.repeat(list("abcdef"), 10),
        }
    )
    if not isinstance(values[0], str):
        data[column] = data[column].astype(float)
    with pytest.raises(DataError, match=match):
        glmer(f"{column} ~ x + (1 | g)", data, family)


def test_negative_cbind_counts_are_named(fits):
    data = fits["cbpp"][1].copy()
    data.loc[3, "incidence"] = -1
    with pytest.raises(DataError, match=r"cbind\(incidence, size - incidence\).*negative succ"):
        glmer(CBPP, data)


def test_family_and_link_errors(fits):
    data = fits["cbpp"][1]
    with pytest.raises(InvalidArgumentError, match=r"unknown family 'binomal'.*binomial"):
        glmer(CBPP, data, "binomal")
    with pytest.raises(ValueError, match=r"link 'log2'.*binomial.*'probit'"):
        glmer(CBPP, data, link="log2")
    with pytest.raises(ValueError, match="lmer"):
        glmer(CBPP, data, "gaussian")
    with pytest.raises(ValueError, match="nagq"):
        glmer(CBPP, data, nagq=-1)
    with pytest.raises(FormulaError, match=r"no random-effects term.*GLM"):
        glmer("cbind(incidence, size - incidence) ~ period", data)
    with pytest.raises(FormulaError, match="'periodd'"):
        glmer("cbind(incidence, size - incidence) ~ periodd + (1 | herd)", data)
    tuned = glmer(CBPP, data, control={"optimizer": "bobyqa", "opt_ctrl": {"maxfun": 10**5}})
    assert tuned.optimizer == "bobyqa"
    close(tuned.loglik, glmer(CBPP, data).loglik, "bobyqa reaches the same optimum", 1e-7)
    with pytest.raises(InvalidArgumentError, match=r"check\.conv\.nobsmax"):
        glmer(CBPP, data, control={"check_conv_nobsmax": 10})
    summed = glmer(CBPP, data, contrasts={"period": "sum"})
    assert summed.contrasts == {"period": "sum"} and list(summed.fixef.index)[1] == "period1"
    close(summed.loglik, glmer(CBPP, data).loglik, "sum coding: same likelihood")
    with pytest.raises(DataError, match="weights column 'trials'"):
        glmer("incidence / size ~ period + (1 | herd)", data, weights="trials")
    with pytest.raises(RError, match="nAGQ"):
        glmer(CBPP.replace("period +", "1 +") + " + (1 | period)", data, nagq=3)
    # aliases and other links
    probit = glmer(CBPP, data, "Binomial", link="probit")
    assert probit.link == "probit" and probit.family == "binomial"


def test_offset_column_equals_formula_offset(fits):
    _, data = fits["cbpp"]
    data = data.assign(logsize=np.log(data["size"]))
    by_formula = glmer("incidence ~ period + offset(logsize) + (1 | herd)", data, "poisson")
    by_column = glmer("incidence ~ period + (1 | herd)", data, "poisson", offset="logsize")
    close(by_column.fixef, by_formula.fixef.to_numpy(), "offset")
    close(by_column.predict(data.head(4)), by_formula.predict(data.head(4)), "predict offset")
    by_values = glmer("incidence ~ period + (1 | herd)", data, "poisson", offset=data["logsize"])
    close(by_values.loglik, by_formula.loglik, "offset values")
    with pytest.raises(DataError, match="offset"):
        by_values.predict(data.head(2))


# ---------------------------------------------------------------- predict, simulate


def test_predict_defaults_and_checks(cbpp):
    close(cbpp.predict(), cbpp.fitted, "predict() = fitted")
    link = cbpp.predict(type="link")
    close(1 / (1 + np.exp(-link)), cbpp.fitted, "inverse link")
    nd = new_data(cbpp.data, ["herd"])
    with pytest.raises(DataError, match=r"'herd'.*'new'"):
        cbpp.predict(nd, allow_new_levels=False)
    with pytest.raises(DataError, match=r"'period'.*'9'"):
        cbpp.predict(nd.assign(period=["1", "2", "9"]))
    with pytest.raises(ValueError, match="type"):
        cbpp.predict(nd, type="probability")
    assert cbpp.predict(nd.iloc[:0]).empty


def test_missing_values_are_dropped_and_aligned(fits):
    data = fits["cbpp"][1].copy()
    data.index = data.index + 100
    data.loc[[102, 110], "period"] = np.nan
    with pytest.warns(UserWarning, match="dropped 2 of 56"):
        m = glmer(CBPP, data)
    assert m.nobs == 54 and m.fitted.index.equals(data.index)
    assert m.fitted[[102, 110]].isna().all() and m.fitted.notna().sum() == 54
    pred = m.predict(data.loc[[101, 102]])  # lme4 alone fails on the missing factor
    assert np.isfinite(pred[101]) and np.isnan(pred[102])
    with pytest.raises(DataError, match="missing"):
        glmer(CBPP, data, na_action="error")


# ---------------------------------------------------------------- display


def test_summary_layout(cbpp):
    text = cbpp.summary()
    for line in (
        "Generalized linear mixed model fit by maximum likelihood (Laplace Approximation) "
        "[glmerMod]",
        " Family: binomial  ( logit )",
        "Formula: cbind(incidence, size - incidence) ~ period + (1 | herd)",
        "     AIC      BIC   logLik deviance df.resid",
        "   194.1    204.2    -92.0    184.1       51",
        "Number of obs: 56, groups:  herd, 15",
        "            Estimate Std. Error z value Pr(>|z|)",
        "(Intercept)  -1.3983     0.2312  -6.048 1.47e-09 ***",
        "period2      -0.9919     0.3032  -3.272 0.001068 **",
        "Correlation of Fixed Effects:",
    ):
        assert line in text, line
    assert str(cbpp) == text and "GlmerModel" in repr(cbpp) and "<table" in cbpp._repr_html_()
    plain = cbpp.summary(pvalues=False)
    assert "(Intercept)  -1.3983     0.2312  -6.048\n" in plain and "Signif" not in plain


def test_summary_of_other_families(fits):
    nb = fits["grouseticks_nb"][0].summary()
    assert " Family: Negative Binomial(3.3" in nb and "( log )" in nb
    assert "Adaptive Gauss-Hermite Quadrature, nAGQ = 5" in fits["cbpp_agq5"][0].summary()
    gamma = fits["gamma_sim"][0].summary()
    assert "t value Pr(>|t|)" in gamma and " Residual" in gamma


def test_format_pvalues_like_r():
    # format.pval(c(1.468113e-09, 1.067696e-03, 4.744755e-04, 1.818098e-04), digits = 3)
    assert format_pvalues([1.468113e-09, 1.067696e-03, 4.744755e-04, 1.818098e-04]) == [
        "1.47e-09",
        "0.001068",
        "0.000474",
        "0.000182",
    ]
    assert format_pvalues([1e-20, 3.82e-07, 0.000124]) == ["< 2e-16", "3.82e-07", "0.000124"]
    assert format_pvalues([0.5123, 0.0123]) == ["0.5123", "0.0123"]


# ---------------------------------------------------------------- persistence


def test_pickle_in_fresh_interpreter(cbpp, tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(cbpp))
    script = f"""
import pickle
m = pickle.loads(open({str(path)!r}, "rb").read())
assert m._handle is None
print(repr(float(m.loglik)))
print(repr(float(m.predict(m.data.head(3), type="link").iloc[2])))
print(repr(float(m.simulate(1, seed=3).iloc[0, 0])))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    close(float(out[0]), cbpp.loglik, "loglik after unpickling")
    close(float(out[1]), cbpp.predict(type="link").iloc[2], "predict after unpickling")
    close(float(out[2]), cbpp.simulate(1, seed=3).iloc[0, 0], "simulate after unpickling")
    same = pickle.loads(pickle.dumps(cbpp))
    assert isinstance(same.results, GlmerResults)
    close_frame(same.ranef["herd"], cbpp.ranef["herd"], "ranef after pickle")


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="Rscript not on PATH")
def test_to_r_script_reproduces_fit(fits, tmp_path):
    data = fits["cbpp"][1]
    m = glmer(
        "incidence / size ~ period + (1 | herd)",
        data,
        weights="size",
        control={"optimizer": "bobyqa"},
        contrasts={"period": "sum"},
    )
    script = m.to_r_script(tmp_path / "fit.R")
    assert "contr.sum" in script.read_text()
    assert "glmer(" in script.read_text() and "stats::binomial" in script.read_text()
    expr = f'source("{script.name}"); cat(format(c(fixef(m), logLik(m)), digits = 17))'
    out = subprocess.run(
        ["Rscript", "-e", expr], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    values = [float(v) for v in out.split()[-5:]]
    close(values, [*m.fixef["estimate"], m.loglik], "R script refit")


# ---------------------------------------------------------------- scikit-learn


def test_classifier():
    from sklearn.base import clone
    from sklearn.metrics import log_loss

    formula = "r2 ~ btype + situ + (1 | id) + (1 | item)"  # crossed, quick to fit
    data = datasets.load("VerbAgg")
    data = data[data["id"].cat.codes < 60].reset_index(drop=True)
    m = glmer(formula, data)
    X = data.drop(columns="r2")
    y = data["r2"].astype(str).map({"N": "no", "Y": "yes"})
    clf = GlmerClassifier(formula).fit(X, y)
    assert list(clf.classes_) == ["no", "yes"]
    proba = clf.predict_proba(X)
    close(proba[:, 1], m.fitted, "P(yes) = glmer's fitted")
    assert proba.shape == (len(X), 2) and np.allclose(proba.sum(axis=1), 1)
    assert set(clf.predict(X)) == {"no", "yes"}
    assert clf.score(X, y) > 0.7
    assert log_loss(y, proba, labels=clf.classes_) < 0.6
    close(clf.decision_function(X.head(5)), m.predict(X.head(5), type="link"), "link")
    twin = clone(clf)
    assert twin.get_params() == clf.get_params() and not hasattr(twin, "classes_")
    with pytest.raises(DataError, match="two classes"):
        GlmerClassifier(formula).fit(X, np.where(data["btype"] == "curse", "a", y))


def test_regressor(fits):
    m, data = fits["grouseticks_poisson"]
    reg = GlmerRegressor(TICKS, family="poisson")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LmerConvergenceWarning)
        warnings.simplefilter("ignore", RWarning)
        reg.fit(data.drop(columns="TICKS"), data["TICKS"])
    close(reg.predict(data), m.fitted, "expected counts")
    assert 0 < reg.score(data.drop(columns="TICKS"), data["TICKS"]) <= 1
    assert reg.get_params()["family"] == "poisson"


# ---------------------------------------------------------------- command line


def test_cli_fit_and_validate_with_family(fits, tmp_path, capsys):
    from pylmer import cli

    data = fits["grouseticks_poisson"][1]
    csv = tmp_path / "ticks.csv"
    data.assign(YEAR="y" + data["YEAR"].astype(str)).to_csv(csv, index=False)  # stays text
    formula = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD)"
    status = cli.main(["fit", str(csv), formula, "--family", "poisson", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 0 and " Family: poisson  ( log )" in out
    fixef = pd.read_csv(tmp_path / "fixef.csv", index_col=0)
    assert list(fixef.columns) == ["estimate", "std_error", "z_value", "p_value"]
    pred = tmp_path / "pred.csv"
    args = ["--family", "poisson", "--newdata", str(csv), "--out", str(pred), "-q"]
    assert cli.main(["predict", str(csv), formula, *args]) == 0
    direct = glmer(formula, pd.read_csv(csv), "poisson")
    close(pd.read_csv(pred)["prediction"], direct.fitted, "pylmer predict --family")
    assert cli.main(["validate", str(csv), formula, "--family", "poisson", "-q"]) == 0
    out = capsys.readouterr().out
    assert "all" in out and "agree" in out
    assert cli.main(["fit", str(csv), formula, "--family", "poison", "-q"]) == 1
    assert "unknown family 'poison'" in capsys.readouterr().err
