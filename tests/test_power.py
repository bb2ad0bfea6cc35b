"""pylmer.power / power_curve: the p-values of a plain-R loop (simulate once with the seed
and newparams, refit, test) on this machine (tests/reference_power.R), the same with
worker processes and on a Dask cluster, and the designs of a power curve."""

from __future__ import annotations

import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
from _refcache import reference

import pylmer
import pylmer.plot
from pylmer import datasets
from pylmer.errors import InvalidArgumentError

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def model(sleep):
    return pylmer.lmer(FORMULA, sleep)


@pytest.fixture(scope="module")
def ref_lmer():
    return reference("reference_power.R", "lmer_sleepstudy")


@pytest.fixture(scope="module")
def serial(model):
    return pylmer.power(model, "Days", effect={"Days": 4.0}, nsim=12, seed=11)


def test_satterthwaite_pvalues_equal_plain_r_loop(serial, ref_lmer):
    np.testing.assert_allclose(serial.pvalues.to_numpy(), ref_lmer["satterthwaite"], rtol=1e-5)
    assert serial.nsim == 12 and serial.n_failed == 0
    hits = int((np.asarray(ref_lmer["satterthwaite"]) < 0.05).sum())
    assert serial.power == hits / 12
    assert serial.params["beta"]["Days"] == 4.0
    np.testing.assert_allclose(serial.params["theta"], ref_lmer["theta"], rtol=1e-10)


def test_exact_binomial_interval(serial):
    from scipy.stats import beta

    k, n = round(serial.power * 12), 12
    low = beta.ppf(0.025, k, n - k + 1) if k > 0 else 0.0
    high = beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
    assert serial.ci_low == pytest.approx(low, rel=1e-9)
    assert serial.ci_high == pytest.approx(high, rel=1e-9)
    assert "Power for 'Days'" in str(serial)


def test_kenward_roger_and_lrt_equal_plain_r(model, ref_lmer):
    kr = pylmer.power(model, "Days", effect={"Days": 4.0}, nsim=4, seed=11, method="kenward-roger")
    np.testing.assert_allclose(kr.pvalues.to_numpy(), ref_lmer["kenward_roger"], rtol=1e-5)
    lrt = pylmer.power(model, "Days", effect={"Days": 4.0}, nsim=12, seed=11, method="lrt")
    np.testing.assert_allclose(lrt.pvalues.to_numpy(), ref_lmer["lrt"], rtol=1e-6)


def test_term_f_test_equals_lmertest_anova(sleep):
    ref = reference("reference_power.R", "lmer_term")
    data = sleep.copy()
    codes = data["Subject"].cat.codes.to_numpy() + 1  # R's as.integer(Subject)
    data["grp"] = pd.Categorical(np.array(["a", "b", "c"])[codes % 3])
    m = pylmer.lmer("Reaction ~ Days + grp + (1 | Subject)", data)
    res = pylmer.power(m, "grp", effect={"grpb": 30.0, "grpc": -20.0}, nsim=6, seed=5)
    np.testing.assert_allclose(res.pvalues.to_numpy(), ref["term"], rtol=1e-5)


def test_glmer_z_and_lrt_equal_plain_r(r_session):
    ref = reference("reference_power.R", "glmer_cbpp")
    cbpp = datasets.load("cbpp")
    g = pylmer.glmer(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial"
    )
    z = pylmer.power(g, "period2", effect={"period2": -0.5}, nsim=8, seed=3)
    assert z.method == "z"
    np.testing.assert_allclose(z.pvalues.to_numpy(), ref["z"], rtol=1e-6)
    lrt = pylmer.power(
        g, "period", effect={"period2": -0.5}, nsim=8, seed=3, method="lrt", n_jobs=2
    )
    np.testing.assert_allclose(lrt.pvalues.to_numpy(), ref["lrt"], rtol=1e-5)


def test_same_pvalues_in_worker_processes(model, serial):
    par = pylmer.power(model, "Days", effect={"Days": 4.0}, nsim=12, seed=11, n_jobs=2)
    # a worker refits the model from its data first: the same fit to the last bits or so
    np.testing.assert_allclose(par.pvalues.to_numpy(), serial.pvalues.to_numpy(), rtol=1e-10)
    assert par.power == serial.power


def test_same_pvalues_on_dask(model, serial):
    distributed = pytest.importorskip("distributed", reason="Dask's distributed not installed")
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
        distributed.Client(cluster),
        joblib.parallel_config(backend="dask"),
    ):
        par = pylmer.power(model, "Days", effect={"Days": 4.0}, nsim=12, seed=11)
    np.testing.assert_allclose(par.pvalues.to_numpy(), serial.pvalues.to_numpy(), rtol=1e-10)


def test_power_curve_designs(model):
    curve = pylmer.power_curve(
        model, "Days", along="Subject", sizes=[4, 18, 24], effect={"Days": 4.0}, nsim=3, seed=2
    )
    assert list(curve.columns) == [
        "size", "power", "ci_low", "ci_high", "nsim", "failed", "singular", "nobs",
    ]  # fmt: skip
    assert curve["nobs"].tolist() == [40, 180, 240]  # 10 rows per subject
    # the data's own size is power() on the model itself (same seed: same draws)
    own = pylmer.power(model, "Days", effect={"Days": 4.0}, nsim=3, seed=2)
    assert curve.loc[1, "power"] == own.power
    matplotlib = pytest.importorskip("matplotlib", reason="matplotlib not installed")
    matplotlib.use("Agg")
    ax = pylmer.plot.power_curve(curve)
    assert ax.get_xlabel() == "number of levels of Subject"
    assert ax.get_title().startswith("Power curve: Days (satterthwaite, alpha 0.05")
    np.testing.assert_allclose(ax.lines[0].get_ydata(), curve["power"])
    matplotlib.pyplot.close(ax.figure)
    within = pylmer.power_curve(
        model, "Days", along="Days", within="Subject", sizes=[3, 14], nsim=2, seed=2
    )
    assert within["nobs"].tolist() == [18 * 3, 18 * 14]


def test_bad_arguments(model):
    with pytest.raises(InvalidArgumentError, match="neither a fixed effect nor a term"):
        pylmer.power(model, "Dayz", nsim=2)
    with pytest.raises(InvalidArgumentError, match="'Dayz'"):
        pylmer.power(model, "Days", effect={"Dayz": 1.0}, nsim=2)
    with pytest.raises(InvalidArgumentError, match="method"):
        pylmer.power(model, "Days", method="z", nsim=2)
    with pytest.raises(InvalidArgumentError, match="likelihood-ratio test drops a term"):
        pylmer.power(model, "(Intercept)", method="lrt", nsim=2)
    with pytest.raises(InvalidArgumentError, match="theta must have 3"):
        pylmer.power(model, "Days", theta=[1.0], nsim=2)
    with pytest.raises(InvalidArgumentError, match="along"):
        pylmer.power_curve(model, "Days", along="nope", sizes=[3])
    with pytest.raises(InvalidArgumentError, match="sizes"):
        pylmer.power_curve(model, "Days", along="Subject", sizes=[0])
    # the R session stays usable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert pylmer.power(model, "Days", nsim=2, seed=1).nsim == 2
