"""Run the example scripts (their quick modes) as subprocesses: exit 0, PNGs written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PNG = b"\x89PNG\r\n\x1a\n"

CASES = {
    "sleepstudy.py": (
        [],
        ["caterpillar", "subjects", "residuals", "new_participant"],
        ["KEY population prediction", "KEY LOSO after 3 days"],
    ),
    "politeness.py": (
        [],
        ["fit", "speakers", "residuals"],
        ["KEY (1 + pitch | gender)", "KEY pitch * gender", "KEY LRT"],
    ),
    "mixedml_longitudinal.py": (
        ["--quick"],
        ["convergence", "trajectories", "ranef"],
        ["KEY random_forest MixedML oof: test MSE", "KEY hist_gradient_boosting alone"],
    ),
    "cbpp.py": (
        ["--quick"],
        ["fit", "herds", "odds"],
        ["KEY Laplace: logLik", "KEY LRT period", "KEY odds ratios", "KEY (1 | obs)"],
    ),
    "analysis.py": (
        ["--quick"],
        ["emmeans", "intervals"],
        [
            "KEY anova type 3",
            "KEY ranova",
            "KEY emmeans informal - polite",
            "KEY R2 marginal",
            "KEY prediction interval width",
        ],
    ),
    "power.py": (
        ["--quick"],
        ["curve"],
        ["KEY power with 18 subjects", "KEY subjects for 80% power"],
    ),
    "zero_inflated.py": ([], ["zeros"], ["KEY zeros observed", "KEY AIC"]),
    "insteval.py": (
        ["--quick"],
        ["test_residuals", "ranef_vs_r", "dept_caterpillar"],
        ["KEY test RMSE", "KEY students: max |pylmer - plain R|"],
    ),
}


@pytest.mark.parametrize("script", list(CASES))
def test_example_runs_and_writes_figures(script, tmp_path):
    args, figures, keys = CASES[script]
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--out", str(tmp_path / "out"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    prefix = script.removesuffix(".py").replace("_longitudinal", "")
    for name in figures:
        path = tmp_path / "out" / f"{prefix}_{name}.png"
        assert path.is_file(), f"{path.name} missing; wrote {os.listdir(tmp_path / 'out')}"
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5000
    for key in keys:
        assert key in proc.stdout
    assert "figures:" in proc.stdout
    if script == "insteval.py":  # pylmer's fit equals the separate plain-Rscript fit
        lines = [ln for ln in proc.stdout.splitlines() if "max |pylmer - plain R|" in ln]
        assert len(lines) == 3
        for line in lines:
            assert float(line.split("plain R|")[1].split(",")[0]) < 1e-6, line
