"""Rough edges a new user hit (issue 18): responses outside a family's domain, bad
weights, the process locale, warning classes and where they point, unseen groups in
predict.  Real R, small data."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

import pylmer
from pylmer import DataError, glmer, lmer
from pylmer.errors import (
    DataWarning,
    DroppedRowsWarning,
    NewLevelsWarning,
    PylmerWarning,
    SingularFitWarning,
)


@pytest.fixture(scope="module")
def counts(r_session) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(12), 8)
    x = rng.normal(size=g.size)
    y = rng.poisson(np.exp(0.5 + 0.3 * x + rng.normal(0, 0.5, 12)[g]))
    return pd.DataFrame({"y": y.astype(float), "x": x, "g": g, "w": 4.0})


# ---------------------------------------------------------------- family domains


@pytest.mark.parametrize(
    ("family", "response", "weights", "match"),
    [
        ("poisson", lambda y: y + 0.5, None, r"poisson response 'y' must be whole counts"),
        ("poisson", lambda y: -y, None, r"poisson response 'y' has negative counts"),
        (
            "negative_binomial",
            lambda y: y + 0.25,
            None,
            r"negative_binomial response 'y' must be whole counts",
        ),
        ("binomial", lambda y: y, None, r"binomial response 'y' has values outside \[0, 1\]"),
        ("binomial", lambda y: np.minimum(y, 1) * 0.3, "w", r"weights column 'w'.*whole"),
        ("binomial", lambda y: np.minimum(y, 1) * 0.5, None, r"'y' has proportions.*weights"),
        ("Gamma", lambda y: y - 1, None, r"Gamma response 'y' must be positive"),
        ("inverse.gaussian", lambda y: -y, None, r"inverse.gaussian response 'y' must be pos"),
    ],
    ids=[
        "poisson_fraction",
        "poisson_negative",
        "negbin_fraction",
        "binomial_outside_01",
        "binomial_weighted_fraction",
        "binomial_proportion_no_weights",
        "gamma_non_positive",
        "invgauss_negative",
    ],
)
def test_response_outside_family_domain(counts, family, response, weights, match):
    data = counts.assign(y=response(counts["y"].to_numpy()))
    with pytest.raises(DataError, match=match):
        glmer("y ~ x + (1 | g)", data, family, weights=weights)


def test_cbind_counts_must_be_whole(counts):
    data = counts.assign(s=np.minimum(counts["y"], 4) + 0.5, f=4.0)
    with pytest.raises(DataError, match="successes that are not whole numbers"):
        glmer("cbind(s, f) ~ x + (1 | g)", data, "binomial")


def test_valid_responses_still_fit(counts):
    assert np.isfinite(glmer("y ~ x + (1 | g)", counts, "poisson").loglik)
    prop = counts.assign(p=np.minimum(counts["y"], 4) / 4)
    assert np.isfinite(glmer("p ~ x + (1 | g)", prop, "binomial", weights="w").loglik)


def test_validate_reads_a_non_finite_loglik(tmp_path):
    from pylmer import validate

    raw = {
        "meta": {},
        "fixef": {"names": ["(Intercept)"], "estimate": [1.0], "std_error": [0.1]},
        "vcov": [[0.01]],
        "ranef": {},
        "ranef_sd": {},
        "varcorr": {"names": ["vcov"], "columns": {"vcov": [1.0]}, "index": ["g"]},
        "sigma": 1.0,
        "loglik": None,  # jsonlite writes -Inf as null
        "rows": [1],
        "residuals": [0.0],
        "theta": [1.0],
        "fitted": [1.0],
    }
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(raw))
    fit = validate.read_r_fit(path)
    assert np.isnan(fit["loglik"])


def test_cli_validate_of_a_non_integer_poisson_names_the_column(counts, tmp_path, capsys):
    from pylmer import cli

    path = tmp_path / "counts.csv"
    counts.assign(y=counts["y"] + 0.5).to_csv(path, index=False)
    code = cli.main(["validate", str(path), "y ~ x + (1 | g)", "--family", "poisson"])
    err = capsys.readouterr().err
    assert code != 0 and "'y'" in err and "whole counts" in err
    assert "TypeError" not in err


# ---------------------------------------------------------------- weights


def test_negative_weights_name_the_column(sleep):
    bad = sleep.assign(w=np.where(sleep["Days"] == 3, -1.0, 1.0))
    with pytest.raises(DataError, match=r"weights column 'w' has negative values: 18 row"):
        lmer("Reaction ~ Days + (1 | Subject)", bad, weights="w")
    with pytest.raises(DataError, match=r"the weights has negative values"):
        lmer("Reaction ~ Days + (1 | Subject)", sleep, weights=-np.ones(len(sleep)))


def test_negative_glmer_weights_name_the_column(counts):
    prop = counts.assign(p=np.minimum(counts["y"], 4) / 4, w=np.r_[-4.0, np.full(95, 4.0)])
    with pytest.raises(DataError, match=r"weights column 'w' has negative values"):
        glmer("p ~ x + (1 | g)", prop, "binomial", weights="w")


def test_missing_weights_are_named_in_the_drop_warning(sleep):
    w = np.where(sleep["Days"] == 0, np.nan, 1.0)
    with pytest.warns(DroppedRowsWarning, match=r"'w': 18") as caught:
        lmer("Reaction ~ Days + (1 | Subject)", sleep.assign(w=w), weights="w")
    assert caught[0].filename == __file__
    with pytest.warns(DroppedRowsWarning, match=r"'weights \(argument\)': 18"):
        lmer("Reaction ~ Days + (1 | Subject)", sleep, weights=w)


# ---------------------------------------------------------------- process state


def test_starting_r_leaves_the_process_locale_alone():
    code = """
import locale
cats = [locale.LC_COLLATE, locale.LC_TIME, locale.LC_MONETARY, locale.LC_MESSAGES,
        locale.LC_NUMERIC, locale.LC_CTYPE]
before = [locale.setlocale(c) for c in cats]
import pylmer
pylmer.lmer("Reaction ~ Days + (1 | Subject)", pylmer.datasets.load("sleepstudy"))
after = [locale.setlocale(c) for c in cats]
print(before == after, before, after)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("True"), out.stdout


# ---------------------------------------------------------------- warnings


def test_warnings_are_pylmer_classes_at_the_callers_line(sleep):
    text = sleep.assign(Days=sleep["Days"].astype(str))
    with pytest.warns(DataWarning) as caught:
        lmer("Reaction ~ Days + (1 | Subject)", text)
    assert caught[0].filename == __file__
    missing = sleep.assign(Reaction=np.where(sleep["Days"] == 9, np.nan, sleep["Reaction"]))
    with pytest.warns(DroppedRowsWarning, match="lme4 dropped 18") as caught:
        lmer("Reaction ~ Days + (1 | Subject)", missing)
    assert issubclass(caught[0].category, PylmerWarning) and caught[0].filename == __file__
    flat = sleep.assign(Reaction=sleep["Days"] * 2.0 + np.tile([0.0, 1.0], 90))
    with pytest.warns(SingularFitWarning) as caught:  # an R warning, re-issued
        lmer("Reaction ~ Days + (1 | Subject)", flat)
    assert caught[0].filename == __file__


def test_mixedml_warnings_point_at_the_caller(sleep):
    with pytest.warns(pylmer.errors.MixedMLConvergenceWarning) as caught:
        pylmer.MixedMLRegressor(random_effects="(1 | Subject)", max_iter=1).fit(
            sleep[["Days", "Subject"]], sleep["Reaction"]
        )
    assert caught[0].filename == __file__


# ---------------------------------------------------------------- unseen groups


def test_predict_on_unseen_groups_says_so_once(sleep):
    m = lmer("Reaction ~ Days + (1 | Subject)", sleep)
    new = sleep.head(4).assign(Subject=["999", "999", "1000", "308"])
    with pytest.warns(NewLevelsWarning, match=r"'Subject': '1000', '999'") as caught:
        pred = m.predict(new)
    assert len(caught) == 1 and caught[0].filename == __file__
    population = m.predict(new, include_random=False)
    np.testing.assert_allclose(pred.iloc[:3], population.iloc[:3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.predict(new, allow_new_levels=True)  # said explicitly: no warning
        m.predict(sleep.head(4))  # known groups: no warning
        m.predict(new, include_random=False)  # no random effects asked for
    with pytest.raises(DataError):
        m.predict(new, allow_new_levels=False)


def test_glmer_predict_on_unseen_groups_warns(counts):
    g = glmer("y ~ x + (1 | g)", counts, "poisson")
    with pytest.warns(NewLevelsWarning, match=r"'g': 99"):
        g.predict(counts.head(2).assign(g=[99, 0]))
