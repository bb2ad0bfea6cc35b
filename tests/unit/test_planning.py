"""Planning and checking without R: argument errors of power, power_curve, compare,
cross_validate and the influence functions (raised before R starts), the exact binomial
interval, and the power-curve figure drawn from a given table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import pylmer
from pylmer.errors import InvalidArgumentError
from pylmer.power import _binom_ci


@pytest.mark.parametrize(("hits", "n"), [(0, 10), (3, 10), (10, 10), (696, 1000)])
def test_exact_binomial_interval(hits, n):
    from scipy.stats import beta

    low, high = _binom_ci(hits, n)
    assert low == pytest.approx(beta.ppf(0.025, hits, n - hits + 1) if hits else 0.0, abs=1e-12)
    assert high == pytest.approx(
        beta.ppf(0.975, hits + 1, n - hits) if hits < n else 1.0, abs=1e-12
    )
    assert all(np.isnan(_binom_ci(0, 0)))


def test_arguments_are_checked_before_r():
    with pytest.raises(InvalidArgumentError, match="LmerModel or GlmerModel"):
        pylmer.power("m", "Days")
    with pytest.raises(InvalidArgumentError, match="LmerModel or GlmerModel"):
        pylmer.power_curve(None, "Days", along="Subject", sizes=[3])
    with pytest.raises(InvalidArgumentError, match="argument 1 is a str"):
        pylmer.compare("m")
    with pytest.raises(InvalidArgumentError, match="at least one model"):
        pylmer.compare()
    with pytest.raises(InvalidArgumentError, match="lmer and glmer fits"):
        pylmer.influence(object())
    data = pd.DataFrame({"y": [1.0, 2.0], "g": ["a", "b"]})
    with pytest.raises(InvalidArgumentError, match="groups must name a column"):
        pylmer.cross_validate("y ~ 1 + (1 | g)", data, groups="h")
    with pytest.raises(InvalidArgumentError, match="cv must be an integer >= 2"):
        pylmer.cross_validate("y ~ 1 + (1 | g)", data, groups="g", cv=1)


def test_power_curve_figure_from_a_table():
    matplotlib = pytest.importorskip("matplotlib", reason="matplotlib not installed")
    matplotlib.use("Agg")
    from pylmer import plot

    curve = pd.DataFrame(
        {"size": [8, 18, 30], "power": [0.2, 0.6, 0.9], "ci_low": [0.06, 0.36, 0.68],
         "ci_high": [0.44, 0.81, 0.99], "nsim": [20, 20, 20]}
    )  # fmt: skip
    curve.attrs.update(test="Days", method="satterthwaite", alpha=0.05, along="Days",
                       within="Subject")  # fmt: skip
    ax = plot.power_curve(curve, target=0.8)
    assert ax.get_xlabel() == "number of Days values per Subject"
    assert ax.get_ylabel() == "power"
    assert any("80% reached at 30" in t.get_text() for t in ax.texts)
    with pytest.raises(InvalidArgumentError, match="columns size, power"):
        plot.power_curve(curve.drop(columns="ci_low"))
    matplotlib.pyplot.close(ax.figure)
