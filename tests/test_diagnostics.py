"""Influence diagnostics equal lme4's on this machine (tests/reference_diagnostics.R):
influence.merMod by group and by observation (fixed effects of the refits, dfbeta,
dfbetas, Cook's distance), hatvalues and cooks.distance of the model, for lmer and glmer."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from _refcache import reference

import pylmer
from pylmer import datasets
from pylmer.errors import InvalidArgumentError
from pylmer.models.influence import InfluenceResult

TOL = 1e-8


def _ref(name: str) -> dict:
    return reference("reference_diagnostics.R", name)


def _same(frame: pd.DataFrame, tab: dict, index: list) -> None:
    assert list(frame.columns) == tab["cols"]
    assert [str(i) for i in frame.index] == [str(i) for i in index]
    np.testing.assert_allclose(frame.to_numpy(), np.asarray(tab["values"]), rtol=TOL, atol=TOL)


@pytest.fixture(scope="module")
def model(sleep):
    return pylmer.lmer("Reaction ~ Days + (Days | Subject)", sleep)


@pytest.fixture(scope="module")
def by_subject(model):
    return pylmer.influence(model, groups="Subject", n_jobs=2)


def test_influence_by_subject_equals_lme4(by_subject):
    ref = _ref("lmer_subject")
    rows = ref["fixed"]["rows"]
    _same(by_subject.fixef_deleted, ref["fixed"], rows)
    _same(by_subject.dfbeta, ref["dfbeta"], rows)
    _same(by_subject.dfbetas, ref["dfbetas"], rows)
    _same(by_subject.varcomp_deleted, ref["vc"], rows)
    np.testing.assert_allclose(by_subject.cooks_distance.to_numpy(), ref["cooks"], rtol=TOL)
    assert by_subject.converged.tolist() == ref["converged"]
    assert by_subject.groups == "Subject"
    assert by_subject.cooks_distance.index.name == "Subject"
    assert isinstance(by_subject, InfluenceResult)
    assert by_subject.fixef_deleted.index[0] == datasets.load("sleepstudy")["Subject"].iloc[0]


def test_serial_equals_workers(model, by_subject):
    serial = model.influence(groups="Subject")
    pd.testing.assert_frame_equal(serial.dfbetas, by_subject.dfbetas, rtol=1e-12)
    pd.testing.assert_series_equal(
        model.cooks_distance(groups="Subject"), by_subject.cooks_distance, rtol=1e-12
    )


def test_hatvalues_and_cooks_distance_of_the_model(model):
    ref = _ref("lmer_subject")
    np.testing.assert_allclose(model.hatvalues().to_numpy(), ref["hat"], rtol=TOL)
    np.testing.assert_allclose(model.cooks_distance().to_numpy(), ref["cooks_model"], rtol=TOL)


def test_influence_by_observation_equals_lme4(sleep):
    ref = _ref("lmer_case")
    subjects = sleep["Subject"].cat.categories[:6]
    small = sleep[sleep["Subject"].isin(subjects)].reset_index(drop=True)
    small["Subject"] = small["Subject"].cat.remove_unused_categories()
    m = pylmer.lmer("Reaction ~ Days + (1 | Subject)", small)
    inf = pylmer.influence(m)
    # R's row names 1..60 are the data's index 0..59
    _same(inf.fixef_deleted, ref["fixed"], [int(r) - 1 for r in ref["fixed"]["rows"]])
    _same(inf.dfbetas, ref["dfbetas"], [int(r) - 1 for r in ref["fixed"]["rows"]])
    np.testing.assert_allclose(inf.cooks_distance.to_numpy(), ref["cooks"], rtol=TOL)
    np.testing.assert_allclose(pylmer.hatvalues(m).to_numpy(), ref["hat"], rtol=TOL)


def test_glmer_influence_by_herd_equals_lme4(r_session):
    ref = _ref("glmer_herd")
    cbpp = datasets.load("cbpp")
    g = pylmer.glmer(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial"
    )
    inf = g.influence(groups="herd")
    rows = ref["fixed"]["rows"]
    _same(inf.fixef_deleted, ref["fixed"], rows)
    _same(inf.dfbetas, ref["dfbetas"], rows)
    np.testing.assert_allclose(inf.cooks_distance.to_numpy(), ref["cooks"], rtol=TOL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lme4: the hat matrix may not make sense for GLMMs
        np.testing.assert_allclose(g.hatvalues().to_numpy(), ref["hat"], rtol=TOL)
        np.testing.assert_allclose(g.cooks_distance().to_numpy(), ref["cooks_model"], rtol=TOL)


def test_dropped_rows_are_nan(sleep):
    data = sleep.copy()
    data.loc[[5, 40], "Reaction"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = pylmer.lmer("Reaction ~ Days + (Days | Subject)", data)
    hat = m.hatvalues()
    assert hat.index.equals(data.index)
    assert hat.isna().sum() == 2 and np.isnan(hat[5]) and np.isnan(hat[40])


def test_bad_groups(model):
    with pytest.raises(InvalidArgumentError, match="groups must name a column"):
        pylmer.influence(model, groups="Subjekt")
    with pytest.raises(InvalidArgumentError, match=r"lmer and glmer fits .* not for a str"):
        pylmer.hatvalues("not a model")


# ------------------------------------------------------------------ the model-check figure


def _titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.axison]


def test_check_model_lmer(model):
    matplotlib = pytest.importorskip("matplotlib", reason="matplotlib not installed")
    matplotlib.use("Agg")
    from pylmer.plot import check_model

    fig = check_model(model, nsim=10)
    titles = _titles(fig)
    assert titles[:5] == [
        "Residuals vs fitted",
        "Scale-location (flat: constant variance)",
        "Normal QQ plot of the residuals",
        "Observed vs simulated responses (from the fit)",
        "Influence of each Subject (refits without it)",
    ]
    assert titles[5:] == [
        "QQ of random effect: (Intercept) | Subject",
        "QQ of random effect: Days | Subject",
    ]
    for ax in fig.axes:
        if ax.axison:
            assert ax.get_xlabel() and ax.get_ylabel()
    # the influence bars are lme4's leave-one-subject-out Cook's distances
    bars = sorted(p.get_width() for p in fig.axes[4].patches)
    np.testing.assert_allclose(bars, np.sort(_ref("lmer_subject")["cooks"]), rtol=1e-8)
    assert "Reaction ~ Days" in fig._suptitle.get_text()
    matplotlib.pyplot.close(fig)


def test_check_model_glmer_has_binned_residuals(r_session):
    matplotlib = pytest.importorskip("matplotlib", reason="matplotlib not installed")
    matplotlib.use("Agg")
    from pylmer.plot import check_model

    cbpp = datasets.load("cbpp")
    g = pylmer.glmer(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial"
    )
    fig = check_model(g, nsim=10)
    titles = _titles(fig)
    assert titles[2].startswith("Binned residuals (")
    assert "GLMM, binomial" in fig._suptitle.get_text()
    matplotlib.pyplot.close(fig)


def test_cli_fit_check(sleep, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib not installed")
    from pylmer.cli import main

    csv = tmp_path / "sleep.csv"
    sleep.to_csv(csv, index=False)
    png = tmp_path / "check.png"
    args = ["fit", str(csv), "Reaction ~ Days + (Days | Subject)", "--out", str(tmp_path)]
    assert main([*args, "--check", str(png), "-q"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
