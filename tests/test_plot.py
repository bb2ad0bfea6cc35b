"""Tests of pylmer.plot: each figure draws the model's own numbers (real lme4 fits)."""

from __future__ import annotations

import sys
import warnings
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.linear_model import LinearRegression  # noqa: E402

from pylmer import MixedMLRegressor, datasets, lmer, plot  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return lmer("Reaction ~ Days + (Days | Subject)", datasets.load("sleepstudy"))


@pytest.fixture(scope="module")
def mixed():
    df = datasets.simulate_longitudinal(30, 6, seed=0)
    X = df[["x1_obs", "x2_obs", "individus"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MixedMLRegressor(
            LinearRegression(), random_effects="(1 | individus)", max_iter=4
        ).fit(X, df["y_mixed_obs"])


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_caterpillar_draws_modes_and_conditional_intervals(model):
    fig = plot.caterpillar(model, "Subject", level=0.9)
    assert isinstance(fig, Figure)
    axes = [ax for ax in fig.axes if ax.containers]
    assert [ax.get_title() for ax in axes] == ["(Intercept)", "Days"]
    modes, sds = model.ranef["Subject"], model.ranef_sd["Subject"]
    order = np.argsort(modes["(Intercept)"].to_numpy(), kind="stable")
    z = NormalDist().inv_cdf(0.95)
    for ax, term in zip(axes, ["(Intercept)", "Days"], strict=True):
        line, _, (bars,) = ax.containers[0].lines
        np.testing.assert_allclose(line.get_xdata(), modes[term].to_numpy()[order])
        half = np.array([(seg[1][0] - seg[0][0]) / 2 for seg in bars.get_segments()])
        np.testing.assert_allclose(half, z * sds[term].to_numpy()[order])
    labels = [t.get_text() for t in axes[0].get_yticklabels()]
    assert labels == [str(v) for v in modes.index[order]]


def test_caterpillar_on_given_axes_and_one_term(model):
    fig, ax = plt.subplots()
    out = plot.caterpillar(model, terms=["Days"], sort=False, ax=ax)
    assert out is fig
    line = ax.containers[0].lines[0]
    np.testing.assert_allclose(line.get_xdata(), model.ranef["Subject"]["Days"].to_numpy())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"group": "nope"}, "no grouping factor 'nope'"),
        ({"terms": ["x"]}, r"no term\(s\) \['x'\]"),
        ({"level": 1.5}, "level must be between 0 and 1"),
    ],
)
def test_caterpillar_rejects_bad_arguments(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot.caterpillar(model, **kwargs)


def test_caterpillar_needs_one_axes_per_term(model):
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="got 1 Axes for 2 panels"):
        plot.caterpillar(model, ax=ax)


def test_caterpillar_of_mixedml_uses_its_random_effects(mixed):
    fig = plot.caterpillar(mixed)
    line = fig.axes[0].containers[0].lines[0]
    values = mixed.ranef_["individus"]["(Intercept)"].to_numpy()
    np.testing.assert_allclose(np.sort(line.get_xdata()), np.sort(values))


def test_residual_plot_shows_fitted_and_residuals(model):
    ax = plot.residual_plot(model)
    points = ax.collections[0].get_offsets()
    np.testing.assert_allclose(points[:, 0], model.fitted.to_numpy())
    np.testing.assert_allclose(points[:, 1], model.residuals.to_numpy())
    assert ax.get_xlabel() == "fitted" and ax.get_ylabel() == "residual"


def test_qq_plot_of_model_and_of_values(model):
    ax = plot.qq_plot(model)
    y = ax.collections[0].get_offsets()[:, 1]
    np.testing.assert_allclose(y, np.sort(model.scaled_residuals))
    values = np.random.default_rng(0).normal(size=200)
    ax = plot.qq_plot(values)
    x, y = ax.collections[0].get_offsets().T
    np.testing.assert_allclose(y, np.sort(values))
    assert x[0] < 0 < x[-1] and np.all(np.diff(x) > 0)
    with pytest.raises(ValueError, match="at least two"):
        plot.qq_plot([1.0])


def test_diagnostics_has_two_panels(model):
    fig = plot.diagnostics(model)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["Residuals vs fitted", "Normal QQ plot"]


def test_residual_plots_refuse_mixedml(mixed):
    with pytest.raises(TypeError, match="residual plots need an LmerModel"):
        plot.residual_plot(mixed)


def test_observed_vs_fitted_one_panel_per_subject(model):
    fig = plot.observed_vs_fitted(model, "Subject", x="Days", ncols=5)
    visible = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    levels = list(model.ranef["Subject"].index)
    assert [ax.get_title() for ax in visible] == [str(v) for v in levels]
    data = model.data
    rows = data["Subject"].astype(str) == str(levels[0])
    order = np.argsort(data.loc[rows, "Days"].to_numpy(), kind="stable")
    line = visible[0].lines[0]
    np.testing.assert_allclose(line.get_ydata(), model.fitted[rows].to_numpy()[order])
    observed = visible[0].collections[0].get_offsets()[:, 1]
    np.testing.assert_allclose(observed, data.loc[rows, "Reaction"].to_numpy())


def test_observed_vs_fitted_selected_levels_without_x(model):
    fig = plot.observed_vs_fitted(model, levels=["308", "309"])
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["308", "309"]
    with pytest.raises(ValueError, match="not in the data"):
        plot.observed_vs_fitted(model, levels=["999"])
    with pytest.raises(ValueError, match="'Hours' is not a column"):
        plot.observed_vs_fitted(model, x="Hours")
    with pytest.raises(TypeError, match="needs a fitted LmerModel"):
        plot.observed_vs_fitted(model.results)


def test_convergence_trace_from_history(mixed):
    fig = plot.convergence_trace(mixed)
    assert len(fig.axes) == 3
    loglik = fig.axes[0].lines[0]
    np.testing.assert_allclose(loglik.get_ydata(), mixed.history_["loglik"].to_numpy())
    tol_line = [ln for ln in fig.axes[1].lines if ln.get_label().startswith("tol")]
    assert tol_line and tol_line[0].get_ydata()[0] == mixed.tol
    labels = [ln.get_label() for ln in fig.axes[2].lines]
    assert "var(Residual)" in labels and len(labels) == len(set(labels))  # each once
    assert any(lab.startswith("var(individus") for lab in labels)
    fig2 = plot.convergence_trace(mixed.history_)
    assert len(fig2.axes) == 3
    with pytest.raises(TypeError, match="MixedMLRegressor or its history_"):
        plot.convergence_trace(pd.Series([1.0]))


def test_wrong_model_type():
    with pytest.raises(TypeError, match="expected a fitted LmerModel"):
        plot.caterpillar(object())


def test_missing_matplotlib_names_the_extra(model, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install pylmer\[plot\]"):
        plot.caterpillar(model)
