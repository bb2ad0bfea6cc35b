"""Tests of pylmer.glmmtmb against plain R on this machine (tests/reference_glmmtmb.R).

Four models, each compared with plain R's glmmTMB at a relative tolerance of 1e-6: a
zero-inflated Poisson and a zero-inflated nbinom2 with a dispersion formula
(Salamanders), and simulated beta and tweedie GLMMs.  Also: refit of what simulate
returns (every response form), a non-positive-definite Hessian named in a warning, errors
naming the argument, pickling and the R script.
"""

from __future__ import annotations

import pickle
import subprocess

import numpy as np
import pandas as pd
import pytest
from _compare import close, close_frame, frame
from _refcache import reference

import pylmer
from pylmer import datasets
from pylmer.errors import DataError, InvalidArgumentError, LmerConvergenceWarning

pytestmark = pytest.mark.usefixtures("r_session")

SCRIPT = "reference_glmmtmb.R"
SAL = "count ~ spp + mined + (1 | site)"
CASES = {
    "zip": ("Salamanders", SAL, {"family": "poisson", "ziformula": "~ spp + mined"}, "spp"),
    "zinb2_disp": (
        "Salamanders",
        SAL,
        {"family": "nbinom2", "ziformula": "~ mined", "dispformula": "~ spp"},
        "mined",
    ),
    "beta": (None, "y ~ x + (1 | g)", {"family": "beta"}, None),
    "tweedie": (None, "y ~ x + (1 | g)", {"family": "tweedie"}, None),
}
SMALLER = {
    "zip": "count ~ mined + (1 | site)",
    "zinb2_disp": "count ~ spp + (1 | site)",
    "beta": "y ~ 1 + (1 | g)",
    "tweedie": "y ~ 1 + (1 | g)",
}


def case_data(case: str) -> pd.DataFrame:
    name = CASES[case][0]
    if name is not None:
        return datasets.load(name)
    data = frame(reference(SCRIPT, case)["data"]).reset_index(drop=True)
    return data.astype({"y": float, "x": float})


@pytest.fixture(scope="module")
def fits() -> dict:
    out = {}
    for case, (_, formula, kwargs, _) in CASES.items():
        data = case_data(case)
        out[case] = (pylmer.glmmtmb(formula, data, **kwargs), data)
    return out


def _group(case: str) -> str:
    return "site" if CASES[case][0] else "g"


@pytest.mark.parametrize("case", list(CASES))
def test_equal_to_plain_r(fits, case):
    m, data = fits[case]
    ref = reference(SCRIPT, case)
    close_frame(m.fixef, frame(ref["fixef"]), "fixef")
    for key in ("fixef_zi", "fixef_disp"):
        if ref.get(key) is None:
            assert getattr(m, key) is None, key
        else:
            close_frame(getattr(m, key), frame(ref[key]), key)
    g = _group(case)
    close(m.varcorr.query("component == 'cond'")["sd_or_cor"], ref["varcorr_sd"], "varcorr")
    assert [str(i) for i in m.ranef[g].index] == list(ref["ranef"]["index"])
    close(m.ranef[g].iloc[:, 0], ref["ranef"]["condval"], "ranef")
    close(m.ranef_sd[g].iloc[:, 0], ref["ranef"]["condsd"], "ranef_sd")
    # one 1 x 1 block per level: glmmTMB's condVar
    close(np.sqrt(m.ranef_cov[g].to_numpy().ravel()), ref["ranef"]["condsd"], "ranef_cov")
    for key in ("loglik", "aic", "bic"):
        close(getattr(m, key), ref[key], key)
    if ref["sigma"] is None:
        assert np.isnan(m.sigma)
    else:
        close(m.sigma, ref["sigma"], "sigma")
    if ref.get("family_params") is not None:
        close(m.family_param, ref["family_params"], "tweedie power")
    assert (m.npar, m.nobs, m.df_residual) == (ref["npar"], ref["nobs"], ref["df_residual"])
    close(m.vcov.to_numpy().ravel(), np.ravel(ref["vcov"]["values"]), "vcov")
    close(m.fitted, ref["fitted"], "fitted")
    close(m.residuals, ref["residuals"], "residuals")
    assert m.converged == ref["converged"]
    nd = data.head(3).copy()
    nd[g] = nd[g].astype(str)
    nd.loc[nd.index[2], g] = "new"
    for kind in ("response", "link", "conditional", "zprob"):
        if ref.get(f"predict_{kind}") is not None:
            close(
                m.predict(nd, type=kind, allow_new_levels=True),
                ref[f"predict_{kind}"],
                f"predict {kind}",
            )
    close(
        m.predict(nd, include_random=False, allow_new_levels=True),
        ref["predict_fixed"],
        "predict fixed",
    )
    ci = m.confint()
    assert list(ci.index) == list(ref["confint"]["names"])
    close(ci.iloc[:, 0], ref["confint"]["lower"], "confint lower")
    close(ci.iloc[:, 1], ref["confint"]["upper"], "confint upper")
    sims = m.simulate(2, seed=42)
    close(sims["sim_1"], ref["simulate"][0], "simulate")
    close(sims["sim_2"], ref["simulate"][1], "simulate")
    _, _, kwargs, emm = CASES[case]
    small = pylmer.glmmtmb(SMALLER[case], data, **kwargs)
    table = small.anova(m)
    close(table["Chisq"].iloc[1], ref["anova"]["chisq"], "anova chisq")
    close(table["Pr(>Chisq)"].iloc[1], ref["anova"]["p"], "anova p")
    assert list(table.index) == [SMALLER[case], CASES[case][1]]
    if emm is not None:
        em = m.emmeans(emm)
        assert [str(v) for v in em[emm]] == list(ref["emmeans"]["level"])
        close(em["emmean"], ref["emmeans"]["emmean"], "emmeans")
        close(em["SE"], ref["emmeans"]["se"], "emmeans se")


def test_summary_layout(fits):
    m, _ = fits["zinb2_disp"]
    text = m.summary()
    assert text.startswith(" Family: nbinom2  ( log )\nFormula:          " + SAL)
    for block in ("Conditional model:", "Zero-inflation model:", "Dispersion model:"):
        assert block in text
    assert "minedno      -2.8197     1.0475  -2.692  0.00711 **" in text
    assert "Number of obs: 644, groups:  site, 23" in text
    assert repr(m).startswith("<GlmmTMBModel 'count ~ spp + mined + (1 | site)' (nbinom2")


def test_refit_takes_what_simulate_returns(fits):
    m, data = fits["zip"]
    sim = m.simulate(1, seed=3)["sim_1"]
    refit = m.refit(sim)
    assert refit.nobs == m.nobs and refit.loglik != m.loglik
    # a cbind(successes, failures) binomial response: simulate gives successes
    d = data.assign(n=6, s=np.minimum(data["count"], 6))
    b = pylmer.glmmtmb("cbind(s, n - s) ~ mined + (1 | site)", d, family="binomial")
    again = b.refit(b.simulate(1, seed=1)["sim_1"])
    assert np.isfinite(again.loglik)
    two = b.refit(np.column_stack([d["n"] - d["s"], d["s"]]))
    close(two.fixef["estimate"]["minedno"], -b.fixef["estimate"]["minedno"], "swapped", 1e-4)


def test_hessian_warning_names_the_parameter():
    rng = np.random.default_rng(1)
    n = 300
    d = pd.DataFrame(
        {"g": np.repeat(np.arange(20), 15).astype(str), "x": np.tile(["a", "b", "c"], 100)}
    )
    d["y"] = rng.poisson(np.exp(1 + rng.normal(0, 0.5, 20))[np.repeat(np.arange(20), 15)])
    d.loc[d["x"] == "a", "y"] = 0
    with pytest.warns(LmerConvergenceWarning, match=r"non-positive-definite Hessian.*'zi xb'"):
        m = pylmer.glmmtmb("y ~ x + (1 | g)", d, family="poisson", ziformula="~ x")
    assert not m.converged and not m.pd_hess
    assert n == len(d)


def test_pickle_and_r_script(fits, tmp_path):
    m, data = fits["zip"]
    back = pickle.loads(pickle.dumps(m))
    pd.testing.assert_series_equal(back.predict(data.head(3)), m.predict(data.head(3)))
    path = m.to_r_script(tmp_path / "zip.R")
    out = subprocess.run(
        ["Rscript", "-e", f"source('{path.name}'); cat(sprintf('%.10f', logLik(m)))"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    close(float(out.stdout.strip().splitlines()[-1]), m.loglik, "loglik of the script")


def test_errors_name_the_argument():
    data = datasets.load("Salamanders")
    with pytest.raises(InvalidArgumentError, match="unknown family 'zip'"):
        pylmer.glmmtmb(SAL, data, family="zip")
    with pytest.raises(InvalidArgumentError, match="link 'logit' is not available"):
        pylmer.glmmtmb(SAL, data, family="poisson", link="logit")
    with pytest.raises(InvalidArgumentError, match="ziformula must be a one-sided formula"):
        pylmer.glmmtmb(SAL, data, family="poisson", ziformula="mined")
    with pytest.raises(DataError, match="the beta response 'count' needs values strictly"):
        pylmer.glmmtmb(SAL, data, family="beta")
    with pytest.raises(DataError, match="'cover' needs non-negative whole counts"):
        pylmer.glmmtmb("cover ~ mined + (1 | site)", data, family="poisson")
    with pytest.raises(InvalidArgumentError, match="has no option 'tol'"):
        pylmer.glmmtmb(SAL, data, family="poisson", control={"tol": 1})
    m = pylmer.glmmtmb(SAL, data, family="poisson")
    with pytest.raises(InvalidArgumentError, match="type must be one of"):
        m.predict(type="prob")


def test_cli_fit_with_zero_inflation(tmp_path, capsys):
    from pylmer.cli import main

    csv = tmp_path / "sal.csv"
    datasets.load("Salamanders").to_csv(csv, index=False)
    args = ["fit", str(csv), "count ~ mined + (1 | site)", "--model", "glmmtmb"]
    code = main([*args, "--family", "poisson", "--zi", "~ mined", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "Zero-inflation model:" in out and " Family: poisson  ( log )" in out
    fixef = pd.read_csv(tmp_path / "fixef.csv")
    assert list(fixef["term"]) == ["(Intercept)", "minedyes"]  # CSV factors: sorted levels
    assert main(["fit", str(csv), "count ~ mined + (1 | site)", "--zi", "~ mined"]) != 0
    assert "--zi and --disp need --model glmmtmb" in capsys.readouterr().err
