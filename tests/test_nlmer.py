"""Tests of pylmer.nlmer against plain R on this machine (tests/reference_nlmer.R).

Two models: lme4's Orange example (SSlogis, start given) and Loblolly (SSasymp, start
from the self-starting model).  Every accessor is compared with plain R's value at a
relative tolerance of 1e-6; errors must name the parameter at fault.
"""

from __future__ import annotations

import pickle
import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest
from _compare import check_common_accessors, close, close_frame, frame, new_data
from _refcache import reference

import pylmer
from pylmer import datasets
from pylmer.errors import FormulaError, InvalidArgumentError, LmerConvergenceWarning

pytestmark = pytest.mark.usefixtures("r_session")

SCRIPT = "reference_nlmer.R"
ORANGE = "circumference ~ SSlogis(age, Asym, xmid, scal) ~ Asym | Tree"
CASES = {
    "orange": ("Orange", ORANGE, {"Asym": 200, "xmid": 725, "scal": 350}, "Tree"),
    "loblolly": ("Loblolly", "height ~ SSasymp(age, Asym, R0, lrc) ~ Asym | Seed", None, "Seed"),
}


@pytest.fixture(scope="module")
def fits() -> dict:
    out = {}
    for case, (name, formula, start, _) in CASES.items():
        data = datasets.load(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[case] = (pylmer.nlmer(formula, data, start), data)
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_equal_to_plain_r(fits, case):
    m, data = fits[case]
    ref = reference(SCRIPT, case)
    close_frame(m.fixef, frame(ref["fixef"]), "fixef")
    close(m.start, np.atleast_1d(ref["start"]["values"]), "start")
    assert list(m.start.index) == list(ref["start"]["names"])
    check_common_accessors(m, ref, data)
    nd = new_data(data, [CASES[case][3]])
    close(m.predict(nd, allow_new_levels=True), ref["predict_new"], "predict_new")
    close(m.predict(nd, include_random=False), ref["predict_new_fixed"], "predict_new_fixed")


def test_summary_and_repr(fits):
    m, _ = fits["orange"]
    text = m.summary()
    assert text.startswith("Nonlinear mixed model fit by maximum likelihood  ['nlmerMod']")
    assert "Formula: " + ORANGE in text
    assert "Asym   192.05      15.58   12.32" in text
    assert " Tree     Asym  1001.49   31.646" in text
    assert "Number of obs: 35, groups:  Tree, 5" in text
    assert repr(m) == f"<NlmerModel {ORANGE!r} (35 obs)>"
    assert "<code>" in m._repr_html_()


def test_pickle_refits_and_predicts(fits):
    m, data = fits["orange"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = pickle.loads(pickle.dumps(m))
        pd.testing.assert_series_equal(back.predict(data.head(4)), m.predict(data.head(4)))


def test_r_script_refits_in_plain_r(fits, tmp_path):
    m, _ = fits["loblolly"]  # start from the self-starting model: written out
    path = m.to_r_script(tmp_path / "lob.R")
    code = path.read_text()
    assert "nlmer(" in code and "start <- c(Asym = " in code
    out = subprocess.run(
        ["Rscript", "-e", f"source('{path.name}'); cat(sprintf('%.10f', logLik(m)))"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    close(float(out.stdout.strip().splitlines()[-1]), m.loglik, "loglik of the script")


def test_errors_name_the_parameter():
    data = datasets.load("Orange")
    with pytest.raises(InvalidArgumentError, match="no value for the parameter 'scal'"):
        pylmer.nlmer(ORANGE, data, {"Asym": 200, "xmid": 725})
    with pytest.raises(InvalidArgumentError, match="'foo', which is not a parameter"):
        pylmer.nlmer(ORANGE, data, {"Asym": 200, "xmid": 725, "scal": 350, "foo": 1})
    with pytest.raises(InvalidArgumentError, match=r"check start\['xmid', 'scal'\]"):
        pylmer.nlmer(ORANGE, data, {"Asym": 200, "xmid": 725, "scal": 0})
    with pytest.raises(InvalidArgumentError, match=r"start\['Asym'\] must be a number"):
        pylmer.nlmer(ORANGE, data, {"Asym": "big", "xmid": 725, "scal": 350})
    with pytest.raises(FormulaError, match="three parts"):
        pylmer.nlmer("circumference ~ age + (1 | Tree)", data, {"Asym": 1})
    with pytest.raises(FormulaError, match="'Bsym', which is not a parameter"):
        pylmer.nlmer(ORANGE.replace("~ Asym |", "~ Bsym |"), data)
    with pytest.raises(InvalidArgumentError, match=r"control\['tol'\]"):
        pylmer.nlmer(ORANGE, data, control={"tol": 1})
    # the session stays usable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert pylmer.nlmer(ORANGE, data).nobs == 35


def test_non_convergence_names_the_parameter():
    data = datasets.load("Orange")
    start = {"Asym": 100, "xmid": 725, "scal": 350}
    with pytest.warns(LmerConvergenceWarning, match=r"moved most from its start is 'Asym'"):
        m = pylmer.nlmer(ORANGE, data, start, control={"maxfun": 20})
    assert not m.converged
    assert any("start['Asym']" in text for text in m.messages)


def test_simulate_and_no_bootstrap(fits):
    m, data = fits["orange"]
    sims = m.simulate(3, seed=1)
    assert sims.shape == (35, 3) and list(sims.index) == list(data.index)
    resid = sims.sub(m.fitted, axis=0).to_numpy()
    assert 0.3 * m.sigma < resid.std() < 3 * m.sigma
    with pytest.raises(InvalidArgumentError, match="not an nlmer fit"):
        pylmer.bootstrap(m, nsim=2, seed=1)
