"""LmerControl passes every lmerControl argument to lme4; lme4 1.1-38's convergence-check
policy; confint's options; boolean arguments checked.  Plain-R references from
tests/reference_control.R (this machine, tests/_refcache.py).
"""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pandas as pd
import pytest
from _refcache import reference

import pylmer
from pylmer import InvalidArgumentError, LmerControl, datasets, lmer
from pylmer.r import session as _r

pytestmark = pytest.mark.usefixtures("r_session")

SLEEP = "Reaction ~ Days + (Days | Subject)"
SKIPPED = "derivative-based convergence checks skipped"


def _quiet_fit(formula, data, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lmer(formula, data, **kwargs)


def _derivs(model) -> dict | None:
    return _r.call(".pylmer_lmer_derivs", model._mermod())


# ---------------------------------------------------------------- pass-through


@pytest.mark.parametrize(
    ("case", "control"),
    [
        ("bobyqa", {"optimizer": "bobyqa", "opt_ctrl": {"maxfun": 100000}}),
        ("Nelder_Mead", {"optimizer": "Nelder_Mead"}),
        ("nlminbwrap", {"optimizer": "nlminbwrap"}),
        ("optimx_lbfgsb", {"optimizer": "optimx.L-BFGS-B"}),
        ("nlopt_neldermead", {"optimizer": "nloptwrap.NLOPT_LN_NELDERMEAD"}),
        ("nlopt_tolerances", {"opt_ctrl": {"xtol_abs": 1e-6, "ftol_abs": 1e-6}}),
        ("no_restart", LmerControl(restart_edge=False, boundary_tol=0)),
    ],
)
def test_options_reach_lme4(sleep, case, control):
    ref = reference("reference_control.R", f"optimizer_{case}")
    m = _quiet_fit(SLEEP, sleep, control=control)
    assert m.optimizer == ref["optimizer"]
    np.testing.assert_allclose(m.theta, ref["theta"], rtol=1e-6)
    np.testing.assert_allclose(m.fixef["estimate"], ref["beta"], rtol=1e-6)


def test_every_lmercontrol_argument_has_a_field():
    module = importlib.import_module("pylmer.models.control")
    r_args = set(_r.call(".pylmer_lmer_control_formals")) - {"mod.type"}
    mapped = {r for r, _ in module._CONTROL_ARGS.values()}
    assert r_args <= mapped, sorted(r_args - mapped)


def test_dotted_and_unknown_names_are_rejected_by_name(sleep):
    with pytest.raises(InvalidArgumentError, match="did you mean 'boundary_tol'") as info:
        lmer(SLEEP, sleep, control={"boundary.tol": 1e-4})
    assert info.value.argument == "control['boundary.tol']"
    assert isinstance(info.value, ValueError)
    with pytest.raises(InvalidArgumentError, match=r"'maxiter'\] is not an option of optimizer"):
        LmerControl(opt_ctrl={"maxiter": 10})
    with pytest.raises(InvalidArgumentError, match=r"control\.optimizer"):
        LmerControl(optimizer="BFGS")
    with pytest.raises(InvalidArgumentError, match="needs a 'method'"):
        LmerControl(optimizer="optimx")
    with pytest.raises(InvalidArgumentError, match=r"check_conv_grad\['action'\]"):
        LmerControl(check_conv_grad={"action": "shout"})
    with pytest.raises(InvalidArgumentError, match=r"control\.check_rankX"):
        LmerControl(check_rankX="drop")
    with pytest.raises(InvalidArgumentError, match=r"control\.boundary_tol"):
        LmerControl(boundary_tol=-1)
    with pytest.raises(InvalidArgumentError, match="both set the evaluation limit"):
        LmerControl(maxfun=10, opt_ctrl={"maxeval": 20})


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda d: lmer(SLEEP, d, reml="no"), "reml"),
        (lambda d: lmer(SLEEP, d, reml=1), "reml"),
        (lambda d: lmer(SLEEP, d, control={"calc_derivs": "yes"}), "control.calc_derivs"),
        (lambda d: lmer(SLEEP, d, control={"sparse_x": 0}), "control.sparse_x"),
    ],
)
def test_booleans_are_checked(sleep, call, name):
    with pytest.raises(InvalidArgumentError) as info:
        call(sleep)
    assert info.value.argument == name
    assert name in str(info.value)


def test_booleans_of_methods_are_checked(sleep):
    m = _quiet_fit(SLEEP, sleep)
    for kwargs, name in (
        ({"include_random": "no"}, "include_random"),
        ({"allow_new_levels": "yes"}, "allow_new_levels"),  # None: not given (warns)
    ):
        with pytest.raises(InvalidArgumentError, match=name):
            m.predict(sleep.head(3), **kwargs)
    with pytest.raises(InvalidArgumentError, match="refit"):
        pylmer.anova(m, m, refit="yes")
    with pytest.raises(InvalidArgumentError, match="pvalues"):
        m.summary(pvalues="no")


def test_check_conv_dict_with_tolerance_reaches_lme4(sleep):
    with pytest.raises(pylmer.RError, match=r"max\|grad\|.*tol = 1e-08"):
        lmer(SLEEP, sleep, control={"check_conv_grad": {"action": "stop", "tol": 1e-8}})


# ---------------------------------------------------------------- convergence policy


def test_small_models_get_lme4s_derivatives_and_messages(sleep):
    ref = reference("reference_control.R", "default")
    m = _quiet_fit(SLEEP, sleep)
    d = _derivs(m)
    assert d is not None
    np.testing.assert_allclose(d["gradient"], ref["gradient"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(np.ravel(d["hessian"]), np.ravel(ref["hessian"]), rtol=1e-6)
    assert not [s for s in m.messages if s.startswith(SKIPPED)]
    # a stopped optimizer: lme4's own gradient message, computed the same way
    ref10 = reference("reference_control.R", "maxeval10")
    m10 = _quiet_fit(SLEEP, sleep, control={"maxfun": 10})
    for text in np.atleast_1d(ref10["messages"]):
        assert str(text) in m10.messages
    np.testing.assert_allclose(_derivs(m10)["gradient"], ref10["gradient"], rtol=1e-6)


@pytest.fixture(scope="module")
def big() -> pd.DataFrame:
    """12,000 rows, 60 groups: above check_conv_nobsmax, quick to fit."""
    rng = np.random.default_rng(3)
    g = rng.integers(0, 60, 12_000)
    x = rng.normal(size=12_000)
    y = 1 + 0.5 * x + rng.normal(size=60)[g] + rng.normal(size=12_000)
    return pd.DataFrame({"y": y, "x": x, "g": pd.Categorical(g)})


def test_large_data_skips_the_checks_and_says_so(big):
    m = _quiet_fit("y ~ x + (1 | g)", big)
    notes = [s for s in m.messages if s.startswith(SKIPPED)]
    assert notes and "12000 observations (check_conv_nobsmax = 10000)" in notes[0]
    assert _derivs(m) is None
    assert m.converged
    checked = _quiet_fit("y ~ x + (1 | g)", big, control={"calc_derivs": True})
    assert not [s for s in checked.messages if s.startswith(SKIPPED)]
    assert _derivs(checked) is not None
    np.testing.assert_allclose(checked.theta, m.theta, rtol=1e-10)  # estimates unchanged
    raised = _quiet_fit("y ~ x + (1 | g)", big, control={"check_conv_nobsmax": 20_000})
    assert _derivs(raised) is not None


def test_many_variance_parameters_and_singular_fits_skip(sleep):
    few = _quiet_fit(SLEEP, sleep, control={"check_conv_nparmax": 3})
    assert any("3 variance parameters (check_conv_nparmax = 3)" in s for s in few.messages)
    assert _derivs(few) is None
    singular = _quiet_fit("Yield ~ 1 + (1 | Batch)", datasets.load("Dyestuff2"))
    assert singular.is_singular
    assert any(s.startswith(SKIPPED) and "singular" in s for s in singular.messages)
    assert "boundary (singular) fit: see help('isSingular')" in singular.messages


# ---------------------------------------------------------------- confint options


@pytest.fixture(scope="module")
def dyestuff_fit():
    return lmer("Yield ~ 1 + (1 | Batch)", datasets.load("Dyestuff"))


def _close_ci(ci, ref):
    assert list(ci.index) == list(np.atleast_1d(ref["names"]))
    np.testing.assert_allclose(ci.iloc[:, 0], ref["lower"], rtol=1e-6)
    np.testing.assert_allclose(ci.iloc[:, 1], ref["upper"], rtol=1e-6)


def test_confint_profile_options(dyestuff_fit):
    ref = reference("reference_control.R", "confint_profile_maxpts")
    _close_ci(dyestuff_fit.confint("profile", maxpts=10, delta=0.5, old_names=True), ref)


def test_confint_parm_and_boot_type(dyestuff_fit):
    _close_ci(
        dyestuff_fit.confint("wald", parm="beta_"),
        reference("reference_control.R", "confint_theta_wald"),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = dyestuff_fit.confint("boot", nsim=20, seed=7, boot_type="basic", old_names=True)
    _close_ci(ci, reference("reference_control.R", "confint_boot_basic"))


def test_confint_rejects_misplaced_options(dyestuff_fit):
    with pytest.raises(InvalidArgumentError, match="maxpts is a profile option"):
        dyestuff_fit.confint("wald", maxpts=4)
    with pytest.raises(InvalidArgumentError, match="boot_type"):
        dyestuff_fit.confint("boot", boot_type="bca")
    with pytest.raises(InvalidArgumentError, match="level"):
        dyestuff_fit.confint(level=True)
