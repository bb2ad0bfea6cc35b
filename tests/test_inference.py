"""pylmer.inference against plain R (lmerTest, pbkrtest, emmeans, performance, lme4's allFit,
broom.mixed) run on this machine by tests/reference_inference.R."""

from __future__ import annotations

import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from _refcache import reference

import pylmer
from pylmer import DataError, InvalidArgumentError, datasets, inference

pytestmark = pytest.mark.usefixtures("r_session")

SCRIPT = "reference_inference.R"
RTOL = 1e-6


def ref(case: str) -> dict:
    return reference(SCRIPT, case)


def frame(obj: dict) -> pd.DataFrame:
    """A data frame written by the reference script ({index, columns})."""

    def listed(values):  # jsonlite writes length-1 vectors as scalars
        return values if isinstance(values, list) else [values]

    cols = {
        k: [np.nan if v is None else v for v in listed(vals)] for k, vals in obj["columns"].items()
    }
    return pd.DataFrame(cols, index=listed(obj["index"]))


def close(actual, expected, rtol: float = RTOL, atol: float = 0.0) -> None:
    a = np.asarray(actual, dtype=float)
    e = np.asarray(expected, dtype=float)
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, equal_nan=True)


def politeness_data() -> pd.DataFrame:
    raw = frame(ref("politeness_treatment")["data"]).reset_index(drop=True)
    order = {
        "subject": sorted(raw["subject"].unique()),
        "gender": ["F", "M"],
        "item": [f"I{i}" for i in range(1, 9)],
        "cond": ["informal", "neutral", "polite"],
    }
    for column, levels in order.items():
        raw[column] = pd.Categorical(raw[column], categories=levels)
    raw["pitch"] = raw["pitch"].astype(float)
    return raw


FORMULA = "pitch ~ cond * gender + (1 | subject) + (1 | item)"


def quiet_fit(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rows dropped for missing pitch
        return pylmer.lmer(*args, **kwargs)


@pytest.fixture(scope="module")
def polite():
    return quiet_fit(FORMULA, politeness_data())


@pytest.fixture(scope="module")
def polite_sum():
    return quiet_fit(FORMULA, politeness_data(), contrasts={"cond": "sum", "gender": "sum"})


@pytest.fixture(scope="module")
def sleep():
    return pylmer.lmer("Reaction ~ Days + (Days | Subject)", datasets.load("sleepstudy"))


@pytest.fixture(scope="module")
def penicillin():
    return pylmer.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", datasets.load("Penicillin"))


def same_table(actual: pd.DataFrame, expected: dict, rtol: float = RTOL) -> None:
    exp = frame(expected)
    assert list(actual.index) == list(exp.index)
    assert list(actual.columns) == list(exp.columns)
    for column in exp.columns:
        close(actual[column], exp[column], rtol=rtol)


# ------------------------------------------------------------------ lmerTest tables


@pytest.mark.parametrize("coding", ["treatment", "sum"])
def test_fit_with_coding_equals_r(coding, polite, polite_sum):
    m = polite if coding == "treatment" else polite_sum
    r = ref(f"politeness_{coding}")
    assert list(m.fixef_wald.index) == list(r["fixef"])
    close(m.fixef_wald["estimate"], list(r["fixef"].values()))
    close(m.loglik, r["loglik"])


@pytest.mark.parametrize("coding", ["treatment", "sum"])
@pytest.mark.parametrize("type_", [1, 2, 3])
@pytest.mark.parametrize("ddf", ["satterthwaite", "kenward-roger"])
def test_anova_equals_lmertest(coding, type_, ddf, polite, polite_sum):
    m = polite if coding == "treatment" else polite_sum
    r = ref(f"politeness_{coding}")["anova"]
    name = {"satterthwaite": "Satterthwaite", "kenward-roger": "Kenward-Roger"}[ddf]
    table = m.anova(type=type_, ddf=ddf)
    same_table(table, r[f"{type_} {name}"])
    assert name.split("-")[0] in table.attrs["heading"]


def test_anova_lme4_table_and_type3_does_not_depend_on_coding(polite, polite_sum):
    same_table(polite.anova(type=1, ddf="lme4"), ref("politeness_treatment")["anova"]["1 lme4"])
    close(polite.anova()["F value"], polite_sum.anova()["F value"], rtol=1e-6)
    with pytest.raises(ValueError, match="type=1"):
        polite.anova(ddf="lme4")
    with pytest.raises(ValueError, match="ddf"):
        polite.anova(ddf="containment")
    with pytest.raises(ValueError, match="type"):
        polite.anova(type=4)


def test_lmertest_derivatives_give_the_same_tables(polite, monkeypatch):
    """Both sources of Satterthwaite's Hessian/Jacobian equal lmerTest's tables."""
    r = ref("politeness_treatment")
    monkeypatch.setattr(inference, "OWN_SATTERTHWAITE", False)
    same_table(polite.anova(type=3), r["anova"]["3 Satterthwaite"])
    same_table(polite.drop1(), r["drop1"]["Satterthwaite"])


def test_anova_df_equal_fixef_df(sleep):
    # one-df term: the F test is the t test of m.fixef (pylmer's own Satterthwaite)
    table = sleep.anova(type=3)
    close(table.loc["Days", "DenDF"], sleep.fixef.loc["Days", "df"], rtol=1e-10)
    close(table.loc["Days", "Pr(>F)"], sleep.fixef.loc["Days", "p_value"], rtol=1e-8)


def test_ranova_drop1_equal_lmertest(polite, sleep, penicillin):
    r = ref("politeness_treatment")
    same_table(polite.ranova(), r["ranova"])
    same_table(polite.drop1(), r["drop1"]["Satterthwaite"])
    same_table(polite.drop1(ddf="kenward-roger"), r["drop1"]["Kenward-Roger"])
    rs = ref("sleepstudy")
    same_table(sleep.ranova(), rs["ranova"])
    same_table(sleep.ranova(reduce_terms=False), rs["ranova_drop"])
    same_table(sleep.anova(ddf="kenward-roger"), rs["anova3_kr"])
    same_table(penicillin.ranova(), ref("penicillin")["ranova"])


@pytest.mark.parametrize("case", ["politeness_treatment", "sleepstudy", "penicillin"])
def test_kenward_roger_coefficients_equal_pbkrtest(case, polite, sleep, penicillin):
    m = {"politeness_treatment": polite, "sleepstudy": sleep, "penicillin": penicillin}[case]
    exp = frame(ref(case)["coef_kr"])
    table = m.fixef_table(ddf="kenward-roger")
    assert list(table.index) == list(exp.index)
    close(table["estimate"], exp["Estimate"])
    close(table["std_error"], exp["Std. Error"])
    close(table["df"], exp["df"])
    close(table["t_value"], exp["t value"])
    close(table["p_value"], exp["Pr(>|t|)"])


def test_satterthwaite_coefficients(polite):
    exp = frame(ref("politeness_treatment")["coef_sat"])
    table = polite.fixef_table()
    close(table["df"], exp["df"])
    close(table["p_value"], exp["Pr(>|t|)"])


# ------------------------------------------------------------------ emmeans


def same_emm(actual: pd.DataFrame, expected: dict, rtol: float = RTOL) -> None:
    exp = frame(expected).reset_index(drop=True)
    names = {
        "emmean": "estimate",
        "response": "estimate",
        "prob": "estimate",
        "odds.ratio": "estimate",
        "SE": "std_error",
        "lower.CL": "conf_low",
        "upper.CL": "conf_high",
        "asymp.LCL": "conf_low",
        "asymp.UCL": "conf_high",
        "t.ratio": "statistic",
        "z.ratio": "statistic",
        "p.value": "p_value",
    }
    exp = exp.rename(columns=names)
    if "df" in exp:  # JSON has no infinity: jsonlite writes df = Inf as null
        exp["df"] = exp["df"].fillna(np.inf)
    assert list(actual.columns) == list(exp.columns)
    for column in exp.columns:
        if not pd.api.types.is_numeric_dtype(exp[column]):
            assert list(actual[column]) == list(exp[column]), column
        else:
            close(actual[column], exp[column], rtol=rtol)


def test_emmeans_kenward_roger_and_pairwise(polite):
    r = ref("politeness_treatment")
    res = pylmer.emmeans(polite, "cond", pairwise=True, ddf="kenward-roger")
    same_emm(res.means, r["emm_cond_kr"])
    same_emm(res.contrasts, r["emm_cond_kr_pairs"])
    assert res.adjust == "tukey"
    means, contrasts = res  # unpacks
    assert means is res.means and contrasts is res.contrasts


def test_emmeans_by_and_satterthwaite(polite):
    r = ref("politeness_treatment")
    res = polite.emmeans("cond | gender", pairwise=True, ddf="satterthwaite")
    same_emm(res.means, r["emm_cond_by_gender_sat"])
    same_emm(res.contrasts, r["emm_cond_by_gender_sat_pairs"])
    same = pylmer.emmeans(polite, "cond", by="gender", ddf="satterthwaite")
    pd.testing.assert_frame_equal(same.means, res.means)
    assert same.contrasts is None


def test_emmeans_cells_asymptotic_level(polite):
    res = pylmer.emmeans(polite, ["cond", "gender"], ddf="asymptotic", level=0.9)
    same_emm(res.means, ref("politeness_treatment")["emm_cells_asym"])
    assert np.isinf(res.means["df"]).all()


@pytest.mark.parametrize(
    ("key", "kwargs"),
    [
        ("emm_trt", {"contrasts": "trt.vs.ctrl"}),
        ("emm_poly", {"contrasts": "poly"}),
        ("emm_custom", {"contrasts": {"polite_vs_rest": [-0.5, -0.5, 1]}}),
        ("emm_holm", {"pairwise": True, "adjust": "holm"}),
    ],
)
def test_emmeans_contrast_methods(key, kwargs, polite):
    res = pylmer.emmeans(polite, "cond", ddf="satterthwaite", **kwargs)
    same_emm(res.contrasts, ref("politeness_treatment")[key])


def test_emmeans_with_sum_coding_equal_r(polite, polite_sum):
    r = ref("politeness_sum")
    res = pylmer.emmeans(polite_sum, "cond", pairwise=True, ddf="satterthwaite")
    same_emm(res.means, r["emm_cond_sat"])
    same_emm(res.contrasts, r["emm_cond_sat_pairs"])
    # marginal means do not depend on the coding
    other = pylmer.emmeans(polite, "cond", ddf="satterthwaite")
    close(res.means["estimate"], other.means["estimate"], rtol=1e-8)


def test_emmeans_errors(polite):
    with pytest.raises(DataError, match="'speaker'"):
        pylmer.emmeans(polite, "speaker")
    with pytest.raises(ValueError, match="contrasts"):
        pylmer.emmeans(polite, "cond", contrasts="everything")
    with pytest.raises(ValueError, match="adjust"):
        pylmer.emmeans(polite, "cond", adjust="holm")
    with pytest.raises(InvalidArgumentError, match="fitted pylmer model"):
        pylmer.emmeans("model", "cond")
    # R stays usable
    assert len(pylmer.emmeans(polite, "gender", ddf="asymptotic").means) == 2


def test_emmeans_glmm_response_scale():
    r = ref("cbpp")
    g = pylmer.glmer(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)",
        datasets.load("cbpp"),
        family="binomial",
    )
    res = pylmer.emmeans(g, "period", pairwise=True)
    same_emm(res.means, r["emm"], rtol=1e-5)
    same_emm(res.contrasts, r["emm_pairs"], rtol=1e-5)
    link = pylmer.emmeans(g, "period", type="link")
    same_emm(link.means, r["emm_link"], rtol=1e-5)
    # tidy: z tests, no df (broom.mixed's columns for a glmerMod)
    fixed = g.tidy("fixed")
    assert list(fixed.columns) == [
        "effect",
        "group",
        "term",
        "estimate",
        "std_error",
        "statistic",
        "p_value",
    ]
    coef = frame(r["coef"])
    close(fixed["estimate"], coef["Estimate"], rtol=1e-5)
    close(fixed["statistic"], coef["z value"], rtol=1e-5)
    close(fixed["p_value"], coef["Pr(>|z|)"], rtol=1e-4)


# ------------------------------------------------------------------ contrast coding


def test_contrasts_recorded_and_honoured(polite, polite_sum, tmp_path):
    assert polite_sum.contrasts == {"cond": "sum", "gender": "sum"}
    assert polite.contrasts == {}
    assert "cond1" in polite_sum.fixef_wald.index
    r = ref("politeness_sum")
    data = politeness_data()
    rows = np.asarray(r["predict_rows"]) - 1
    new = data.iloc[rows]
    close(polite_sum.predict(new), r["predict"])
    close(polite.predict(new), r["predict"], rtol=1e-6)
    script = polite_sum.to_r_script(tmp_path / "fit.R")
    text = script.read_text()
    assert 'contrasts = list(cond = "contr.sum", gender = "contr.sum")' in text
    run = subprocess.run(
        ["Rscript", script.name], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "cond1:gender1" in run.stdout


@pytest.mark.parametrize("coding", ["helmert", "poly", "contr.treatment"])
def test_other_codings_give_the_same_fit(coding, polite):
    m = quiet_fit(FORMULA, politeness_data(), contrasts={"cond": coding})
    # a reparametrisation of X: same fit (the REML criterion moves by a constant)
    close(m.fitted, polite.fitted, rtol=1e-5)
    close(m.sigma, polite.sigma, rtol=1e-5)
    close(m.theta, polite.theta, rtol=1e-4)
    close(m.anova()["F value"], polite.anova()["F value"], rtol=1e-5)


def test_contrasts_errors():
    data = politeness_data()
    with pytest.raises(ValueError, match=r"'cond'.*'deviation'"):
        pylmer.lmer(FORMULA, data, contrasts={"cond": "deviation"})
    with pytest.raises(DataError, match=r"'item'.*fixed part"):
        pylmer.lmer(FORMULA, data, contrasts={"item": "sum"})
    data["score"] = np.arange(len(data), dtype=float)
    with pytest.raises(DataError, match=r"'score'.*numeric"):
        pylmer.lmer("pitch ~ score + (1 | subject)", data, contrasts={"score": "sum"})
    with pytest.raises(InvalidArgumentError, match="dict"):
        pylmer.lmer(FORMULA, data, contrasts="sum")


# ------------------------------------------------------------------ R2, ICC


@pytest.mark.parametrize("case", ["politeness_treatment", "sleepstudy", "penicillin"])
def test_r2_icc_equal_performance(case, polite, sleep, penicillin):
    m = {"politeness_treatment": polite, "sleepstudy": sleep, "penicillin": penicillin}[case]
    r = ref(case)
    r2 = m.r2()
    close(r2["marginal"], r["r2"]["R2_marginal.Marginal R2"])
    close(r2["conditional"], r["r2"]["R2_conditional.Conditional R2"])
    icc = m.icc()
    close(icc["adjusted"], r["icc"]["adjusted"])
    close(icc["unadjusted"], r["icc"]["unadjusted"])


def test_icc_by_group(penicillin):
    exp = frame(ref("penicillin")["icc_by_group"])
    got = penicillin.icc(by_group=True)
    assert list(got["group"]) == list(exp["Group"])
    close(got["icc"], exp["ICC"])


# ------------------------------------------------------------------ tidy, allFit


def test_tidy_equals_broom_mixed_layout(sleep):
    r = ref("sleepstudy")
    if "broom" not in r:
        pytest.skip("broom.mixed is not installed: layout compared with lme4 in the next test")
    exp = frame(r["broom"]).reset_index(drop=True)
    got = sleep.tidy(conf_int=True)
    assert list(got.columns) == [c.replace(".", "_") for c in exp.columns]
    assert list(got["effect"]) == list(exp["effect"])
    assert [g if g is not None else np.nan for g in got["group"]][2:] == list(exp["group"])[2:]
    assert list(got["term"]) == list(exp["term"])
    for column in ("estimate", "std.error", "statistic", "df", "p.value", "conf.low", "conf.high"):
        close(got[column.replace(".", "_")], exp[column])
    vals = frame(r["broom_ran_vals"]).reset_index(drop=True)
    got = sleep.tidy("ran_vals", conf_int=True)
    assert list(got.columns) == [c.replace(".", "_") for c in vals.columns]
    assert [str(v) for v in got["level"]] == [str(v) for v in vals["level"]]
    for column in ("estimate", "std.error", "conf.low", "conf.high"):
        close(got[column.replace(".", "_")], vals[column])


def test_tidy_equals_lme4(sleep):
    r = ref("sleepstudy")
    got = sleep.tidy(["fixed", "ran_pars", "ran_vals"])
    fixed = got[got["effect"] == "fixed"]
    close(fixed["estimate"], sleep.fixef["estimate"])
    close(fixed["p_value"], sleep.fixef["p_value"])
    vc = frame(r["vc"])
    close(got.loc[got["effect"] == "ran_pars", "estimate"], vc["sdcor"])
    rv = frame(r["ranef"])
    vals = got[got["effect"] == "ran_vals"]
    close(vals["estimate"], rv["condval"])
    close(vals["std_error"], rv["condsd"])
    prof = frame(r["profile"])
    pars = sleep.tidy("ran_pars", conf_int=True, conf_method="profile")
    close(pars["conf_low"], prof["2.5 %"].iloc[:4], rtol=1e-5)
    close(pars["conf_high"], prof["97.5 %"].iloc[:4], rtol=1e-5)
    with pytest.raises(ValueError, match="effects"):
        sleep.tidy("ran_coefs")


def test_allfit_equals_lme4(sleep):
    r = ref("sleepstudy")["allfit"]
    got = sleep.allfit()
    assert list(got.index) == r["optimizers"]
    assert got["ok"].all()
    close(got["loglik"], list(r["loglik"].values()), rtol=1e-8)
    fx = frame(r["fixef"])
    close(got["(Intercept)"], fx["(Intercept)"], rtol=1e-6)
    close(got["Days"], fx["Days"], rtol=1e-6)
    sd = frame(r["sdcor"])
    close(got["sigma"], sd["sigma"], rtol=1e-6)
    assert (got["time"] >= 0).all()


# ------------------------------------------------------------------ prediction intervals


def test_prediction_intervals_equal_dense_computation(sleep):
    r = ref("sleepstudy")["pi_known"]
    data = datasets.load("sleepstudy")
    rows = np.asarray(r["rows"]) - 1
    conf = sleep.predict(data.iloc[rows], interval="confidence")
    close(conf["estimate"], r["estimate"])
    close(conf["std_error"], r["se_conf"])
    pred = sleep.predict(data.iloc[rows], interval="prediction", level=0.9)
    close(pred["std_error"], r["se_pred"])
    q = scipy.stats.t.ppf(0.95, pred["df"])
    close(pred["upper"] - pred["estimate"], q * np.asarray(r["se_pred"]))
    normal = inference.predict_interval(
        sleep, data.iloc[rows], interval="prediction", level=0.9, ddf="asymptotic"
    )
    z = 1.6448536269514722
    close(normal["upper"] - normal["estimate"], z * np.asarray(r["se_pred"]))
    assert np.isinf(normal["df"]).all()
    fitted = sleep.predict(interval="confidence")
    close(fitted["std_error"].iloc[rows], r["se_conf"])
    assert list(fitted.index) == list(data.index)


def test_prediction_intervals_new_groups_and_population(sleep):
    r = ref("sleepstudy")["pi_new"]
    new = pd.DataFrame({"Days": r["days"], "Subject": ["new"] * 3})
    close(sleep.predict(new, interval="confidence")["std_error"], r["se_new_conf"])
    close(sleep.predict(new, interval="prediction")["std_error"], r["se_new_pred"])
    pop = sleep.predict(new, interval="confidence", include_random=False)
    close(pop["estimate"], r["estimate"])
    close(pop["std_error"], r["se_pop_conf"])
    # x'beta alone: Satterthwaite's df are lmerTest's df of the contrast x (contest1D)
    close(pop["df"], r["df_pop"], rtol=1e-5)
    pop_pred = sleep.predict(new, interval="prediction", include_random=False)
    close(pop_pred["std_error"], r["se_new_pred"])
    # the fitted rows of days 0 and 9 (population level, new observation of a new subject)
    fitted_pop = sleep.predict(interval="prediction", include_random=False)
    close(fitted_pop["std_error"].iloc[[0, 9]], [r["se_new_pred"][0], r["se_new_pred"][2]])
    with pytest.raises(DataError, match="Subject"):
        sleep.predict(new, interval="confidence", allow_new_levels=False)
    with pytest.raises(ValueError, match="interval"):
        sleep.predict(new, interval="credible")
    assert sleep.predict(new.iloc[:0], interval="prediction").empty


def test_prediction_intervals_close_to_mertools(sleep):
    r = ref("sleepstudy")
    if "mertools" not in r:
        pytest.skip("merTools is not installed")
    mt = r["mertools"]
    data = datasets.load("sleepstudy")
    pred = sleep.predict(data.iloc[np.asarray(mt["rows"]) - 1], interval="prediction")
    # merTools simulates (4000 draws) beta from vcov and b from the conditional variances
    # given beta, independently: it ignores their (negative) covariance, which the exact
    # joint posterior keeps (test above), so its intervals are up to ~12% wider here
    ours = (pred["upper"] - pred["lower"]).to_numpy()
    theirs = np.asarray(mt["upr"]) - np.asarray(mt["lwr"])
    ratio = ours / theirs
    assert ((ratio > 0.85) & (ratio < 1.0)).all(), ratio
    close(pred["estimate"], mt["fit"], rtol=0.01)


def test_prediction_interval_coverage_simulation():
    """95% prediction intervals cover 95% (+-2 points) of new observations, for known and
    for new subjects, on data simulated from a known model."""
    rng = np.random.default_rng(7)
    hits = {"known": [], "new": []}
    for _ in range(25):
        n_subj, days = 30, np.arange(10.0)
        b0 = rng.normal(0, 25, n_subj)
        b1 = rng.normal(0, 6, n_subj)
        subj = np.repeat([f"s{i}" for i in range(n_subj)], len(days))
        day = np.tile(days, n_subj)
        mean = (
            250
            + 10 * day
            + b0[np.repeat(np.arange(n_subj), len(days))]
            + b1[np.repeat(np.arange(n_subj), len(days))] * day
        )
        y = mean + rng.normal(0, 25, len(day))
        train = pd.DataFrame({"y": y, "day": day, "subj": subj})
        m = quiet_fit("y ~ day + (day | subj)", train)
        test_known = train.assign(y=mean + rng.normal(0, 25, len(day)))
        pk = m.predict(test_known, interval="prediction")
        hits["known"].append(((test_known.y >= pk.lower) & (test_known.y <= pk.upper)).mean())
        nb0, nb1 = rng.normal(0, 25, 10), rng.normal(0, 6, 10)
        nd = np.tile(days, 10)
        idx = np.repeat(np.arange(10), len(days))
        ny = 250 + 10 * nd + nb0[idx] + nb1[idx] * nd + rng.normal(0, 25, len(nd))
        test_new = pd.DataFrame({"y": ny, "day": nd, "subj": [f"n{i}" for i in idx]})
        pn = m.predict(test_new, interval="prediction")
        hits["new"].append(((test_new.y >= pn.lower) & (test_new.y <= pn.upper)).mean())
    for kind, values in hits.items():
        assert abs(np.mean(values) - 0.95) < 0.02, (kind, np.mean(values))


def test_inference_needs_a_model():
    with pytest.raises(InvalidArgumentError, match="fitted pylmer model"):
        inference.anova(object())
    with pytest.raises(InvalidArgumentError, match="fitted pylmer model"):
        inference.tidy(pd.DataFrame())


def test_allfit_in_worker_processes_equals_sequential():
    m = pylmer.lmer("Yield ~ 1 + (1 | Batch)", datasets.load("Dyestuff"))
    seq = m.allfit()
    par = m.allfit(n_jobs=2)
    pd.testing.assert_frame_equal(seq.drop(columns="time"), par.drop(columns="time"))


@pytest.mark.parametrize(
    ("formula", "name"),
    [
        ("strength ~ 1 + (1 | batch / cask)", "Pastes"),
        ("Reaction ~ Days + (Days || Subject)", "sleepstudy"),
    ],
)
def test_prediction_intervals_fitted_rows_equal_newdata_path(formula, name):
    """The fitted rows (lme4's Z) and the same rows as new data (the terms' model
    matrices, nested and uncorrelated terms) give the same intervals."""
    data = datasets.load(name)
    m = pylmer.lmer(formula, data)
    for include_random in (True, False):
        a = m.predict(interval="prediction", include_random=include_random)
        b = m.predict(data, interval="prediction", include_random=include_random)
        close(a.to_numpy(), b.to_numpy(), rtol=1e-12)


def test_pylmer_anova_of_one_model_is_lmertests_table(r_session):
    """pylmer.anova(m) gives the same Satterthwaite F table as m.anova() (lmerTest's)."""
    import pylmer

    m = pylmer.lmer("Reaction ~ Days + (Days | Subject)", pylmer.datasets.load("sleepstudy"))
    pd.testing.assert_frame_equal(pylmer.anova(m), m.anova())
    assert {"NumDF", "DenDF", "Pr(>F)"} <= set(pylmer.anova(m).columns)
