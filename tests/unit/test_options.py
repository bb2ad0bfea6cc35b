"""Argument checks that need no R: control options, contrasts, CLI flags, validation."""

from __future__ import annotations

import numpy as np
import pytest

from pylmer import InvalidArgumentError, LmerControl
from pylmer.cli import build_parser
from pylmer.models.control import as_control, normalize_contrasts
from pylmer.validate import relative_difference


def test_control_to_r_uses_lme4_names():
    ctrl = LmerControl(optimizer="bobyqa", calc_derivs=False, maxfun=1000)
    assert ctrl.to_r() == {"optimizer": "bobyqa", "calc.derivs": False, "optCtrl": {"maxfun": 1000}}
    assert as_control({"boundary_tol": 1e-4}) == LmerControl(boundary_tol=1e-4)


def test_control_errors_name_the_option():
    with pytest.raises(InvalidArgumentError, match="did you mean 'boundary_tol'"):
        as_control({"boundary.tol": 1e-4})
    with pytest.raises(InvalidArgumentError, match=r"control\.optimizer"):
        LmerControl(optimizer="BFGS")
    with pytest.raises(InvalidArgumentError, match="control must be a dict"):
        as_control(3)


def test_contrasts_are_normalised_and_checked():
    assert normalize_contrasts({"a": "contr.sum", "b": "helmert"}) == (
        ("a", "sum"),
        ("b", "helmert"),
    )
    assert normalize_contrasts(None) == ()
    with pytest.raises(InvalidArgumentError, match=r"contrasts\['a'\]"):
        normalize_contrasts({"a": "deviation"})


@pytest.mark.parametrize(
    "argv", [["-q", "fit", "d.csv", "y ~ (1|g)"], ["fit", "-q", "d.csv", "y ~ (1|g)"]]
)
def test_quiet_before_or_after_the_command(argv):
    args = build_parser().parse_args(argv)
    assert args.quiet or args.global_quiet


def test_relative_difference():
    assert relative_difference([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert relative_difference([1.0], [1.0, 2.0]) == np.inf
    assert relative_difference([np.nan], [1.0]) == np.inf
    assert relative_difference([1.001], [1.0]) == pytest.approx(1e-3)
