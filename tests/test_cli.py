"""Tests of the ``pylmer`` command line (real R, in-process through ``main``)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from pylmer import cli, datasets, lmer, validate
from pylmer.errors import DataError

SLEEP = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "sleepstudy.csv"
    datasets.load("sleepstudy").to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def sleep_model(sleep_csv):
    return lmer(SLEEP, pd.read_csv(sleep_csv))


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(err: str, contains: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.startswith("pylmer: error:")]
    assert len(lines) == 1, err
    assert contains in lines[0]
    assert "Traceback" not in err


# ------------------------------------------------------------------ fit / predict


def test_quiet_flag_before_and_after_the_command(capsys, tmp_path, sleep_csv):
    for argv in (("-q", "fit", sleep_csv, SLEEP), ("fit", "-q", sleep_csv, SLEEP)):
        code, out, err = run(capsys, *argv, "--out", tmp_path)
        assert code == 0 and out.startswith("Linear mixed model fit by REML")
        assert "pylmer: fitting" not in err and "done in" not in err, argv


def test_fit_prints_summary_and_writes_csvs(capsys, tmp_path, sleep_csv, sleep_model):
    code, out, err = run(capsys, "fit", sleep_csv, SLEEP, "--out", tmp_path)
    assert code == 0
    assert out.startswith("Linear mixed model fit by REML")
    assert "Satterthwaite" in out  # lmerTest columns are computed by default
    assert "fitting Reaction ~ Days" in err and "done in" in err
    fixef = pd.read_csv(tmp_path / "fixef.csv", index_col="term")
    np.testing.assert_allclose(fixef["estimate"], sleep_model.fixef_wald["estimate"], rtol=1e-12)
    assert {"df", "p_value"} <= set(fixef.columns)
    ranef = pd.read_csv(tmp_path / "ranef.csv")
    assert list(ranef.columns) == ["group", "level", "term", "estimate", "cond_sd"]
    assert len(ranef) == 36
    days = ranef[ranef["term"] == "Days"].set_index("level")["estimate"]
    expected = sleep_model.ranef["Subject"]["Days"]
    np.testing.assert_allclose(days.to_numpy(), expected.to_numpy(), rtol=1e-12)
    varcorr = pd.read_csv(tmp_path / "varcorr.csv")
    np.testing.assert_allclose(varcorr["variance"], sleep_model.varcorr["variance"], rtol=1e-12)


def test_fit_ml_without_pvalues(capsys, tmp_path, sleep_csv):
    code, out, _ = run(
        capsys, "fit", sleep_csv, SLEEP, "--ml", "--no-pvalues", "-q", "--out", tmp_path
    )
    assert code == 0
    assert out.startswith("Linear mixed model fit by maximum likelihood")
    assert "p_value" not in pd.read_csv(tmp_path / "fixef.csv").columns


def test_predict_with_and_without_random_effects(capsys, tmp_path, sleep_csv, sleep_model):
    new = pd.DataFrame({"Days": [0.0, 5.0, 5.0], "Subject": ["308", "309", "new"]})
    new_csv = tmp_path / "new.csv"
    new.to_csv(new_csv, index=False)
    code, _, _ = run(
        capsys, "predict", sleep_csv, SLEEP, "--newdata", new_csv, "--out", tmp_path / "p.csv"
    )
    assert code == 0
    got = pd.read_csv(tmp_path / "p.csv")
    assert list(got.columns) == ["Days", "Subject", "prediction"]
    np.testing.assert_allclose(got["prediction"], sleep_model.predict(new), rtol=1e-10)
    code, out, _ = run(
        capsys, "predict", sleep_csv, SLEEP, "--newdata", new_csv, "--population", "-q"
    )
    assert code == 0
    got = pd.read_csv(__import__("io").StringIO(out))
    population = sleep_model.predict(new, include_random=False)
    np.testing.assert_allclose(got["prediction"], population, rtol=1e-10)
    assert got["prediction"].iloc[1] != pytest.approx(sleep_model.predict(new).iloc[1])


def test_predict_strict_rejects_new_levels(capsys, tmp_path, sleep_csv):
    new_csv = tmp_path / "new.csv"
    pd.DataFrame({"Days": [1.0], "Subject": ["new"]}).to_csv(new_csv, index=False)
    code, _, err = run(capsys, "predict", sleep_csv, SLEEP, "--newdata", new_csv, "--strict")
    assert code == 1
    assert_one_error_line(err, "pylmer: error:")


# ------------------------------------------------------------------ mixedml


@pytest.fixture(scope="module")
def long_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "long.csv"
    df = datasets.simulate_longitudinal(40, 8, seed=1)
    df[["individus", "temps", "x1_obs", "x2_obs", "x2_x5", "y_mixed_obs"]].to_csv(path, index=False)
    return path


def test_mixedml_writes_predictions_and_history(capsys, tmp_path, long_csv):
    code, out, err = run(
        capsys, "mixedml", long_csv, "--target", "y_mixed_obs",
        "--random", "(1 + x2_x5 || individus)", "--estimator", "linear",
        "--max-iter", "3", "--test-frac", "0.25", "--out", tmp_path,
    )  # fmt: skip
    assert code == 0, err
    assert "loglik" in out and "train MSE" in out and "test MSE" in out
    history = pd.read_csv(tmp_path / "history.csv", index_col="iteration")
    assert 1 <= len(history) <= 3
    preds = pd.read_csv(tmp_path / "predictions.csv")
    assert set(preds["split"]) == {"train", "test"}
    assert (preds["split"] == "test").sum() == 80
    test = preds[preds["split"] == "test"]
    mse = np.mean((test["y_mixed_obs"] - test["prediction"]) ** 2)
    assert f"test MSE: {mse:.6g}" in out
    ranef = pd.read_csv(tmp_path / "ranef.csv")
    assert set(ranef["term"]) == {"(Intercept)", "x2_x5"}
    assert ranef["level"].nunique() == 40


def test_mixedml_features_must_be_numeric(capsys, tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"g": [1, 1, 2, 2], "x": ["a", "b", "a", "b"], "y": [1.0, 2, 3, 4]}).to_csv(
        path, index=False
    )
    code, _, err = run(capsys, "mixedml", path, "--target", "y", "--random", "(1|g)")
    assert code == 1
    assert_one_error_line(err, "['x'] are not numeric")


def test_grouping_columns():
    assert cli.grouping_columns("(1 + x || g)") == ["g"]
    assert cli.grouping_columns("(1 | a/b) + (0 + x | c)") == ["a", "b", "c"]
    assert cli.grouping_columns("(1|a:b)") == ["a", "b"]
    with pytest.raises(DataError, match="no grouping factor"):
        cli.grouping_columns("x + z")


# ------------------------------------------------------------------ datasets


def test_datasets_list_and_export(capsys, tmp_path):
    code, out, _ = run(capsys, "datasets")
    assert code == 0 and "sleepstudy" in out.split() and "InstEval" in out.split()
    code, _, _ = run(capsys, "datasets", "Dyestuff", "--out", tmp_path / "d.csv")
    assert code == 0
    got = pd.read_csv(tmp_path / "d.csv")
    expected = datasets.load("Dyestuff")
    assert list(got.columns) == list(expected.columns)
    np.testing.assert_allclose(got["Yield"], expected["Yield"])
    code, _, err = run(capsys, "datasets", "sleepStudy")
    assert code == 1
    assert_one_error_line(err, "unknown data set 'sleepStudy'")


# ------------------------------------------------------------------ validate


def test_validate_agrees_with_plain_r(capsys, tmp_path, sleep_csv, sleep_model):
    keep = tmp_path / "r.json"
    code, out, err = run(capsys, "validate", sleep_csv, SLEEP, "--keep", keep)
    assert code == 0, err
    for quantity in ("fixef", "vcov", "theta", "varcorr", "ranef", "ranef_sd", "fitted"):
        assert f"\n{quantity} " in out
    assert "all 11 quantities agree within 1e-06" in out
    reference = validate.read_r_fit(keep)
    table = validate.compare_with_r(sleep_model, reference).set_index("quantity")
    assert (table["max_rel_diff"] < 1e-9).all()
    assert table.loc["fitted", "n"] == 180 and table.loc["ranef", "n"] == 36

    # the comparison notices a change in any quantity, and mismatched names
    bumped = dict(reference, fixef=reference["fixef"] * (1 + 1e-4))
    table = validate.compare_with_r(sleep_model, bumped).set_index("quantity")
    assert table.loc["fixef", "max_rel_diff"] == pytest.approx(1e-4, rel=1e-3)
    renamed = {"Subject": reference["ranef"]["Subject"].rename(index=lambda s: s + "x")}
    table = validate.compare_with_r(sleep_model, dict(reference, ranef=renamed)).set_index(
        "quantity"
    )
    assert table.loc["ranef", "max_rel_diff"] == np.inf


def test_validate_exits_1_when_over_tolerance(capsys, sleep_csv):
    code, out, err = run(capsys, "validate", sleep_csv, SLEEP, "--ml", "--tol", "-1", "-q")
    assert code == 1
    assert "DIFFERS" in out
    assert_one_error_line(err, "differ from plain R by more than --tol -1")


def test_validate_without_rscript(capsys, sleep_csv):
    code, _, err = run(capsys, "validate", sleep_csv, SLEEP, "--rscript", "no-such-Rscript")
    assert code == 1
    assert_one_error_line(err, "cannot find 'no-such-Rscript'")


def test_validate_reports_a_failing_r_fit(capsys, tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"g": ["a", "a", "b"], "y": [1.0, 2.0, 3.0]}).to_csv(path, index=False)
    code, _, err = run(capsys, "validate", path, "y ~ 1 + (1 | h)")
    assert code == 1
    assert_one_error_line(err, "'h'")


def test_relative_difference():
    assert validate.relative_difference([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert validate.relative_difference([1.1], [1.0]) == pytest.approx(0.1)
    # near-zero entries are measured against 1e-3 of the largest value
    assert validate.relative_difference([100.0, 1e-3], [100.0, 0.0]) == pytest.approx(1e-2)
    assert validate.relative_difference([1.0, 2.0], [1.0]) == np.inf
    assert validate.relative_difference([np.nan, 1.0], [0.5, 1.0]) == np.inf
    assert validate.relative_difference([np.nan, 1.0], [np.nan, 1.0]) == 0.0


# ------------------------------------------------------------------ errors


def test_missing_file(capsys):
    code, _, err = run(capsys, "fit", "no/such.csv", "y ~ 1 + (1|g)")
    assert code == 1
    assert_one_error_line(err, "cannot read no/such.csv: no such file")


def test_formula_naming_an_unknown_column(capsys, sleep_csv):
    code, _, err = run(capsys, "fit", sleep_csv, "Reaction ~ Hours + (1 | Subject)")
    assert code == 1
    assert_one_error_line(err, "'Hours'")


def test_unreadable_csv(capsys, tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    code, _, err = run(capsys, "fit", path, "y ~ 1 + (1|g)")
    assert code == 1
    assert_one_error_line(err, "as CSV")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["fit", "data.csv"],
        ["mixedml", "d.csv", "--target", "y", "--random", "(1|g)", "--test-frac", "2"],
        ["mixedml", "d.csv", "--target", "y", "--random", "(1|g)", "--estimator", "svm"],
    ],
)
def test_usage_errors_exit_2(capsys, argv):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert_one_error_line(err, "pylmer: error:")


def test_console_entry_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pylmer.cli", "fit", str(tmp_path / "x.csv"), "y ~ (1|g)"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"pylmer: error: cannot read {tmp_path / 'x.csv'}: no such file"
    proc = subprocess.run(
        [sys.executable, "-m", "pylmer.cli", "--version"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stdout.startswith("pylmer ")


def test_validate_json_has_every_quantity(tmp_path, sleep_csv):
    out = tmp_path / "r.json"
    proc = validate.start_r_fit(sleep_csv, SLEEP, False, out)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    raw = json.loads(out.read_text())
    assert raw["meta"]["reml"] is False and raw["meta"]["nobs"] == 180
    assert set(raw) >= {"fixef", "ranef", "ranef_sd", "varcorr", "sigma", "loglik", "fitted"}
