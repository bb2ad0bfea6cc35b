"""pylmer.parallel: bootstrap, PB test and lmer_many equal plain R, and the same in
worker processes (joblib's loky) and on a real Dask cluster (2 worker processes).

Reference values come from plain R on this machine (tests/reference_parallel.R:
bootMer, confint(method = "boot"), PBmodcomp, a loop of refit + lmerTest).
"""

from __future__ import annotations

import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
from _refcache import reference
from sklearn.model_selection import GroupKFold, cross_val_score

import pylmer
from pylmer import datasets
from pylmer import parallel as P
from pylmer.errors import DataError, FormulaError, RWarning

FORMULA = "Reaction ~ Days + (Days | Subject)"
RTOL = 1e-6


@pytest.fixture(scope="module")
def model(sleep):
    return pylmer.lmer(FORMULA, sleep)


@pytest.fixture(scope="module")
def many_data(sleep):
    ref = reference("reference_parallel.R", "many_sleepstudy")
    Y = np.asarray(ref["Y"], dtype=float)
    data = sleep.copy()
    names = [f"g{j}" for j in range(Y.shape[1])]
    for j, name in enumerate(names):
        data[name] = Y[:, j]
    data["g_na"] = np.asarray([np.nan if v is None else v for v in ref["y_na"]], dtype=float)
    data["all_na"] = np.nan
    data["constant"] = 7.0
    return data, [*names, "g_na", "all_na", "constant"], ref


@pytest.fixture(scope="module")
def serial_draws(model):
    return P.bootstrap(model, nsim=30, seed=42, old_names=True)


@pytest.fixture(scope="module")
def serial_many(many_data):
    data, responses, _ = many_data
    return pylmer.lmer_many("~ Days + (Days | Subject)", data, responses)


# ------------------------------------------------------------------ equal to plain R


def test_bootstrap_equals_bootmer(serial_draws):
    ref = reference("reference_parallel.R", "boot_sleepstudy")
    assert list(serial_draws.columns) == ref["names"]
    np.testing.assert_allclose(serial_draws.to_numpy(), np.asarray(ref["t"]), rtol=RTOL)
    np.testing.assert_allclose(serial_draws.attrs["t0"].to_numpy(), ref["t0"], rtol=RTOL)
    assert serial_draws.attrs["n_failed"] == 0


def test_bootstrap_with_dropped_rows_equals_bootmer(sleep):
    ref = reference("reference_parallel.R", "boot_missing")
    data = sleep.copy()
    data.loc[[3, 50], "Reaction"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = pylmer.lmer(FORMULA, data)
    draws = P.bootstrap(m, nsim=5, seed=3)
    np.testing.assert_allclose(draws.to_numpy(), np.asarray(ref["t"]), rtol=RTOL)
    # LmerModel.refit takes one value per used row too (lme4 must not drop rows again)
    s = P._r.call(".pylmer_boot_setup", m._mermod(), 5, seed=3, old_names=False)
    y = np.asarray(s["Y"], dtype=float).reshape(-1, 5)[:, 0]
    assert m.refit(y).sigma == pytest.approx(draws["sigma"].iloc[0], rel=1e-12)


def test_confint_boot_equals_r(model):
    ref = reference("reference_parallel.R", "boot_sleepstudy")
    # boot.ci warns, as in plain R, that 30 draws put the 2.5% point at an extreme draw
    with pytest.warns(RWarning, match="extreme order statistics"):
        ci = model.confint(method="boot", nsim=30, seed=42, old_names=True)
    assert list(ci.index) == ref["ci_names"]
    assert list(ci.columns) == ref["ci_cols"]
    np.testing.assert_allclose(ci.iloc[:, 0], ref["lower"], rtol=RTOL)
    np.testing.assert_allclose(ci.iloc[:, 1], ref["upper"], rtol=RTOL)


def test_pb_anova_equals_pbmodcomp(sleep, model):
    ref = reference("reference_parallel.R", "pb_sleepstudy")
    m0 = pylmer.lmer("Reaction ~ 1 + (Days | Subject)", sleep)
    table = pylmer.anova(m0, model, method="bootstrap", nsim=20, seed=7)
    np.testing.assert_allclose(table.attrs["ref"], ref["ref"], rtol=RTOL)
    np.testing.assert_allclose(table.loc["LRT", "stat"], ref["stat"], rtol=RTOL)
    assert table.loc["LRT", "df"] == ref["df"]
    np.testing.assert_allclose(table.loc["LRT", "p_value"], ref["p_lrt"], rtol=RTOL)
    assert table.loc["PBtest", "p_value"] == pytest.approx(ref["p_pb"], rel=1e-12)


def test_lmer_many_equals_r_refit_loop(serial_many, many_data):
    _, _, ref = many_data
    for j, fit in enumerate(ref["fits"]):
        rows = serial_many.fixef[serial_many.fixef["response"] == f"g{j}"]
        assert list(rows["term"]) == fit["terms"]
        for col in ("estimate", "std_error", "df", "p_value"):
            np.testing.assert_allclose(rows[col], fit[col], rtol=RTOL, err_msg=col)
        row = serial_many.fit.set_index("response").loc[f"g{j}"]
        assert row["method"] == "refit"
        np.testing.assert_allclose(row["sigma"], fit["sigma"], rtol=RTOL)
        np.testing.assert_allclose(row["loglik"], fit["loglik"], rtol=RTOL)
        vc = serial_many.varcorr[serial_many.varcorr["response"] == f"g{j}"]
        np.testing.assert_allclose(vc["sd_or_cor"], fit["sdcor"], rtol=RTOL)


def test_lmer_many_records_failures_and_goes_on(serial_many, many_data):
    _, responses, ref = many_data
    fit = serial_many.fit.set_index("response")
    assert list(fit.index) == responses
    assert "missing" in fit.loc["all_na", "error"]
    assert "constant" in fit.loc["constant", "error"]
    assert set(serial_many.failed["response"]) == {"all_na", "constant"}
    assert not {"all_na", "constant"} & set(serial_many.fixef["response"])
    # a response with missing values: a fresh lmer on its complete rows, as plain R
    assert fit.loc["g_na", "method"] == "lmer"
    assert fit.loc["g_na", "nobs"] == 177
    est = serial_many.fixef[serial_many.fixef["response"] == "g_na"]["estimate"]
    np.testing.assert_allclose(est, ref["na_estimate"], rtol=RTOL)
    np.testing.assert_allclose(fit.loc["g_na", "sigma"], ref["na_sigma"], rtol=RTOL)


# ------------------------------------------------------------------ behaviour


def test_bootstrap_user_function_and_failures_counted(model, serial_draws):
    calls = []

    def stat(fit):
        calls.append(1)
        if fit.sigma > 26.0:  # some draws "fail": NaN rows, counted, not fatal
            raise ValueError("sigma too large")
        return {"sigma": fit.sigma, "slope": fit.fixef_wald.loc["Days", "estimate"]}

    with pytest.warns(RWarning, match="refits failed"):
        draws = P.bootstrap(model, stat, nsim=30, seed=42)
    assert list(draws.columns) == ["sigma", "slope"]
    failed = serial_draws[".sigma"] > 26.0
    assert 0 < failed.sum() < 30
    assert draws.attrs["n_failed"] == failed.sum()
    assert set(draws.attrs["errors"]) == set(np.flatnonzero(failed))
    assert draws["sigma"].isna().to_numpy().tolist() == failed.tolist()
    ok = ~failed.to_numpy()
    np.testing.assert_allclose(
        draws["sigma"].to_numpy()[ok], serial_draws[".sigma"].to_numpy()[ok], rtol=1e-10
    )
    np.testing.assert_allclose(
        draws["slope"].to_numpy()[ok], serial_draws["Days"].to_numpy()[ok], rtol=1e-10
    )


def test_failed_r_refit_gives_nan_row(model):
    s = P._r.call(".pylmer_boot_setup", model._mermod(), 3, seed=1, old_names=True)
    Y = np.array(s["Y"], dtype=float).reshape(-1, 3)
    Y[:, 1] = np.nan  # lme4 refuses a response with missing values
    out = P._boot_task(P._model_payload(model), Y, True)
    assert np.isnan(out["t"][1]).all()
    assert np.isfinite(out["t"][[0, 2]]).all()
    assert out["error"][0] is None and out["error"][2] is None
    assert out["error"][1]


def test_bad_arguments(model, many_data):
    data, _, _ = many_data
    with pytest.raises(ValueError, match="nsim"):
        P.bootstrap(model, nsim=0)
    with pytest.raises(ValueError, match="seed"):
        P.bootstrap(model, nsim=2, seed=2**40)
    with pytest.raises(TypeError, match="LmerModel"):
        P.bootstrap("m", nsim=2)
    with pytest.raises(DataError, match="nope"):
        pylmer.lmer_many("~ Days + (1 | Subject)", data, ["g0", "nope"])
    with pytest.raises(DataError, match="Subject"):
        pylmer.lmer_many("~ Days + (1 | Subject)", data, ["g0", "Subject"])
    with pytest.raises(DataError, match="twice"):
        pylmer.lmer_many("~ Days + (1 | Subject)", data, ["g0", "g0"])
    with pytest.raises(FormulaError, match="Dayz"):
        pylmer.lmer_many("~ Dayz + (1 | Subject)", data, ["g0"])
    with pytest.raises(FormulaError):
        pylmer.lmer_many("Days + (1 | Subject)", data, ["g0"])
    same = pylmer.anova  # identical models: nothing to test
    with pytest.raises(ValueError, match="nested"):
        same(model, model, method="bootstrap", nsim=2)


# ------------------------------------------------------------------ worker processes


def _assert_many_equal(a, b):
    for kind in ("fixef", "varcorr", "fit"):
        pd.testing.assert_frame_equal(
            getattr(a, kind), getattr(b, kind), check_exact=False, rtol=1e-10
        )


def test_loky_workers_equal_serial(model, serial_draws, many_data, serial_many):
    data, responses, _ = many_data
    draws = P.bootstrap(model, nsim=30, seed=42, n_jobs=2, old_names=True)
    np.testing.assert_allclose(draws.to_numpy(), serial_draws.to_numpy(), rtol=1e-10)
    many = pylmer.lmer_many("~ Days + (Days | Subject)", data, responses, n_jobs=2)
    _assert_many_equal(many, serial_many)


@pytest.fixture(scope="module")
def dask_client(r_session):
    distributed = pytest.importorskip("distributed", reason="dask[distributed] not installed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_cluster_equals_serial(
    dask_client, model, sleep, serial_draws, many_data, serial_many
):
    data, responses, _ = many_data
    est = pylmer.LmerRegressor(FORMULA)
    cv = GroupKFold(n_splits=3)
    groups = sleep["Subject"]
    serial_cv = cross_val_score(est, sleep, sleep["Reaction"], cv=cv, groups=groups)
    mixed = pylmer.MixedMLRegressor(
        random_effects="(1 + Days | Subject)", features=["Days"], max_iter=5
    )
    X = sleep[["Days", "Subject"]]
    serial_mixed = cross_val_score(mixed, X, sleep["Reaction"], cv=cv, groups=groups)
    with joblib.parallel_config(backend="dask"):
        draws = P.bootstrap(model, nsim=30, seed=42, n_jobs=2, old_names=True)
        many = pylmer.lmer_many("~ Days + (Days | Subject)", data, responses, n_jobs=2)
        dask_cv = cross_val_score(est, sleep, sleep["Reaction"], cv=cv, groups=groups, n_jobs=2)
        dask_mixed = cross_val_score(mixed, X, sleep["Reaction"], cv=cv, groups=groups, n_jobs=2)
    # the work ran in the cluster's worker processes
    assert dask_client.run(lambda: __import__("pylmer.r.session").r.session.started())
    np.testing.assert_allclose(draws.to_numpy(), serial_draws.to_numpy(), rtol=1e-10)
    _assert_many_equal(many, serial_many)
    np.testing.assert_allclose(dask_cv, serial_cv, rtol=1e-10)
    np.testing.assert_allclose(dask_mixed, serial_mixed, rtol=1e-8)


def test_progress_bar(many_data, capsys):
    pytest.importorskip("tqdm", reason="the progress bar is tqdm's (optional)")
    data, responses, _ = many_data
    pylmer.lmer_many(
        "~ Days + (1 | Subject)", data, responses[:3], satterthwaite=False, progress=True
    )
    err = capsys.readouterr().err
    assert "lmer_many" in err and "3/3" in err


# ---------------------------------------------------------------- GLMMs (issue 21)

CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


@pytest.fixture(scope="module")
def cbpp_models(r_session):
    cbpp = datasets.load("cbpp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = pylmer.glmer(CBPP, cbpp)
        m0 = pylmer.glmer("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", cbpp)
    return m, m0


def test_glmer_cbind_refit_takes_simulate(cbpp_models):
    m, _ = cbpp_models
    sim = m.simulate(2, seed=1)
    refit = m.refit(sim["sim_1"])  # successes: the trials are the model's
    assert refit.nobs == m.nobs and np.isfinite(refit.loglik)
    size = datasets.load("cbpp")["size"].to_numpy()
    both = m.refit(np.column_stack([sim["sim_1"], size - sim["sim_1"]]))
    np.testing.assert_allclose(both.loglik, refit.loglik, rtol=1e-10)


def test_glmer_bootstrap_equals_r_and_is_invariant_to_n_jobs(cbpp_models):
    m, m0 = cbpp_models
    ref = reference("reference_parallel_glmm.R", "cbpp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = P.bootstrap_confint(m, nsim=8, seed=1, old_names=True)
        ci2 = m.confint(method="boot", nsim=8, seed=1, n_jobs=2, old_names=True)
        table = pylmer.anova(m0, m, method="bootstrap", nsim=8, seed=3, n_jobs=2)
    assert list(ci.index) == ref["ci_names"]  # no .sigma for a binomial GLMM, as in R
    np.testing.assert_allclose(ci.iloc[:, 0], ref["lower"], rtol=RTOL)
    np.testing.assert_allclose(ci.iloc[:, 1], ref["upper"], rtol=RTOL)
    pd.testing.assert_frame_equal(ci, ci2)
    np.testing.assert_allclose(table.attrs["ref"], ref["ref"], rtol=RTOL)
    np.testing.assert_allclose(table.loc["LRT", "stat"], ref["stat"], rtol=RTOL)
    assert table.loc["PBtest", "p_value"] == pytest.approx(ref["p_pb"], rel=1e-12)


def test_lmer_many_glmm_equals_r_refit_loop(r_session):
    ref = reference("reference_parallel_glmm.R", "many_poisson")
    data = datasets.load("cbpp")
    names = [f"y{j}" for j in range(len(ref["Y"]))]
    for name, y in zip(names, ref["Y"], strict=True):
        data[name] = np.asarray([np.nan if v is None else v for v in y], dtype=float)
    one = pylmer.lmer_many("~ period + (1 | herd)", data, names, family="poisson")
    two = pylmer.lmer_many("~ period + (1 | herd)", data, names, family="poisson", n_jobs=2)
    assert list(one.fit["method"]) == ["refit", "refit", "refit", "glmer"]
    assert {"z_value", "p_value"} <= set(one.fixef.columns) and "df" not in one.fixef
    for j, name in enumerate(names):
        fe = one.fixef[one.fixef["response"] == name]
        np.testing.assert_allclose(fe["estimate"], ref["estimate"][j], rtol=RTOL)
        np.testing.assert_allclose(fe["std_error"], ref["std_error"][j], rtol=RTOL)
        vc = one.varcorr[one.varcorr["response"] == name]
        np.testing.assert_allclose(vc["sd_or_cor"], np.atleast_1d(ref["sd"][j]), rtol=RTOL)
    np.testing.assert_allclose(one.fit["loglik"], ref["loglik"], rtol=RTOL)
    pd.testing.assert_frame_equal(one.fixef, two.fixef)


def test_glmmtmb_bootstrap_equals_r_loop(r_session):
    ref = reference("reference_parallel_glmm.R", "tmb_boot")
    sal = datasets.load("Salamanders")
    m = pylmer.glmmtmb("count ~ mined + (1 | site)", sal, family="poisson", ziformula="~ mined")
    draws = P.bootstrap(m, nsim=4, seed=1)
    assert list(draws.columns) == [
        "(Intercept)",
        "minedno",
        "zi~(Intercept)",
        "zi~minedno",
        "sd_(Intercept)|site",
    ]
    np.testing.assert_allclose(draws.to_numpy(), np.asarray(ref["t"]), rtol=RTOL)
    # boot.ci warns, as in plain R, that 4 draws put the 2.5% point at an extreme draw
    with pytest.warns(RWarning, match="extreme order statistics"):
        ci = m.confint(method="boot", nsim=4, seed=1, n_jobs=2)
    np.testing.assert_allclose(ci.iloc[:, 0], draws.min(), rtol=1e-10)


def test_glmm_bootstrap_on_dask(dask_client, cbpp_models):
    m, _ = cbpp_models
    serial = P.bootstrap(m, nsim=4, seed=5)
    with joblib.parallel_config(backend="dask"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        on_dask = P.bootstrap(m, nsim=4, seed=5, n_jobs=2)
    pd.testing.assert_frame_equal(on_dask, serial)
