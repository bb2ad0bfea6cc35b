"""Benchmark: pylmer vs plain R (lme4) on InstEval, ``y ~ service + (1|s) + (1|d) + (1|dept)``.

Both sides load the data, fit (REML) and extract every accessor of
:class:`pylmer.LmerModel` except the Satterthwaite df/p: fixed effects with standard
errors, ranef with conditional SDs, coef, VarCorr, sigma, theta, logLik, AIC, BIC,
deviance, REML criterion, nobs, ngrps, vcov, fitted, residuals, singularity and messages.

* native R: ``Rscript bench/lmer_native.R`` times itself (from ``data(InstEval)`` to the
  last extraction; R's start-up and ``library(lme4)`` are excluded);
* pylmer: R is started before timing; the timed part is ``lmer()`` (conversion of the
  DataFrame, fit, extraction, conversion back) and reading every accessor.

Runs alternate (R, pylmer, R, pylmer, ...); the medians of wall-clock and of CPU time
(user + system of the process: robust when other jobs share the machine) are reported::

    .venv/bin/python bench/lmer.py --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from pathlib import Path

import pylmer
from pylmer import datasets

HERE = Path(__file__).resolve().parent
FORMULA = "y ~ service + (1 | s) + (1 | d) + (1 | dept)"
ACCESSORS = (
    "fixef_wald", "ranef", "ranef_sd", "coef", "varcorr", "sigma", "theta", "loglik", "aic",
    "bic", "deviance", "reml_criterion", "nobs", "ngrps", "vcov", "fitted", "residuals",
    "is_singular", "converged", "messages",
)  # fmt: skip


def native_seconds() -> tuple[float, float]:
    """Run the plain-R script once; return the (wall, CPU) seconds it reports."""
    out = subprocess.run(
        ["Rscript", str(HERE / "lmer_native.R")], capture_output=True, text=True, check=True
    )
    wall, cpu = out.stdout.split()[-2:]
    return float(wall), float(cpu)


def pylmer_seconds() -> tuple[float, float]:
    """Fit InstEval with pylmer and read every accessor; return (wall, CPU) seconds."""
    data = datasets.load("InstEval")
    wall, cpu = time.perf_counter(), time.process_time()
    model = pylmer.lmer(FORMULA, data)
    for name in ACCESSORS:
        getattr(model, name)
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per side (median)")
    args = parser.parse_args(argv)
    versions = pylmer.versions()  # starts R outside the timings
    native, ours = [], []
    for _ in range(args.repeat):
        native.append(native_seconds())
        ours.append(pylmer_seconds())
    print(f"InstEval: {FORMULA} (REML), R {versions['R']}, lme4 {versions['lme4']}")
    print(f"runs per side: {args.repeat} (median); CPU = user + system time of the process")
    print(f"{'':6} {'native R (s)':>13} {'pylmer (s)':>11} {'ratio':>7}")
    for k, label in enumerate(("wall", "CPU")):
        r_s = statistics.median(t[k] for t in native)
        py_s = statistics.median(t[k] for t in ours)
        print(f"{label:6} {r_s:13.2f} {py_s:11.2f} {py_s / r_s:7.3f}")
    for label, runs in (("native R", native), ("pylmer", ours)):
        print(f"{label} runs (wall/CPU s):", ", ".join(f"{w:.2f}/{c:.2f}" for w, c in runs))


if __name__ == "__main__":
    main()
