"""Benchmark: pylmer.glmer vs plain R (lme4) vs mixedlm on VerbAgg (binomial, crossed).

The model: ``r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)`` (7584
responses, 316 subjects x 24 items), Laplace approximation.  Every side does the whole
job: fit, fixed effects with Wald z tests, random effects with conditional SDs, coef,
variance components, log-likelihood, and predicted probabilities for the data.

* native R: ``Rscript bench/glmer_native.R`` times itself (from ``data(VerbAgg)`` to the
  last extraction; R's start-up and ``library(lme4)`` are excluded);
* pylmer: R is started before timing; the timed part is ``glmer()`` (conversion of the
  DataFrame, fit, extraction, conversion back), reading the accessors and ``predict``;
* pylmer, nloptwrap: the opt-in fast path, ``control={"optimizer": "nloptwrap"}``
  (nloptwrap for both of glmer's stages), its log-likelihood beside the default's;
* plain R in this process: the same R code as ``glmer_native.R``, run in pylmer's
  embedded R between pylmer's runs (rpy2 directly, no pylmer code): the baseline of
  pylmer's own overhead (issue 23: at most 3 %), free of the differences between
  processes that make two Rscript runs differ by 20 %;
* mixedlm (Rust/Python, lme4's algorithms re-implemented): ``mixedlm.glmer`` and the same
  accessors (its log-likelihood is printed beside lme4's).

Runs alternate (R, pylmer, mixedlm, ...); medians and minima of wall-clock and CPU time
(user + system of the process; the minimum is the least disturbed run on a shared
machine) are reported; the same R and BLAS serve plain R and pylmer::

    .venv/bin/python bench/glmer.py --repeat 1
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pylmer
from pylmer import datasets

HERE = Path(__file__).resolve().parent
FORMULA = "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"


def native() -> tuple[float, float, float]:
    """Run the plain-R script once; return its (wall, CPU) seconds and log-likelihood."""
    out = subprocess.run(
        ["Rscript", str(HERE / "glmer_native.R")], capture_output=True, text=True, check=True
    )
    wall, cpu, loglik = out.stdout.split()[-3:]
    return float(wall), float(cpu), float(loglik)


def ours(data, control: dict | None = None) -> tuple[float, float, float]:
    """Fit VerbAgg with pylmer and do the whole job; return (wall, CPU) seconds, logLik."""
    wall, cpu = time.perf_counter(), time.process_time()
    m = pylmer.glmer(FORMULA, data, "binomial", control=control)
    for name in ("fixef", "ranef", "ranef_sd", "coef", "varcorr", "loglik"):
        getattr(m, name)
    m.predict(data)
    return time.perf_counter() - wall, time.process_time() - cpu, m.loglik


def in_process_r() -> Callable[[], tuple[float, float, float]]:
    """``glmer_native.R``'s job as an R function in pylmer's embedded R; returns a
    runner giving (wall, CPU) seconds and the log-likelihood."""
    import rpy2.robjects as ro

    code = (HERE / "glmer_native.R").read_text()
    body = code[code.index("cpu <- function") : code.index("t1 <- proc.time()")]
    ro.r("suppressPackageStartupMessages(library(lme4))")
    job = ro.r(f"function() {{ {body} as.numeric(logLik(m)) }}")

    def run() -> tuple[float, float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        loglik = float(job()[0])
        return time.perf_counter() - wall, time.process_time() - cpu, loglik

    return run


def mixedlm_run(data) -> tuple[float, float, float] | None:
    """The same job with mixedlm (None when it is not installed)."""
    try:
        import mixedlm
        from mixedlm.families import Binomial
    except ImportError:
        return None
    frame = data.assign(r2=(data["r2"] == "Y").astype(float))
    for col in ("Gender", "btype", "situ", "id", "item"):
        frame[col] = frame[col].astype(str)
    wall, cpu = time.perf_counter(), time.process_time()
    r = mixedlm.glmer(FORMULA, frame, family=Binomial())
    r.fixef()
    r.vcov()
    r.ranef(condVar=True)
    r.coef()
    r.VarCorr()
    r.predict(frame, type="response")
    loglik = float(str(r.logLik()).split()[2])
    return time.perf_counter() - wall, time.process_time() - cpu, loglik


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per side (median)")
    args = parser.parse_args(argv)
    versions = pylmer.versions()  # starts R outside the timings
    data = datasets.load("VerbAgg")
    same_process = in_process_r()
    runs: dict[str, list[tuple[float, float, float]]] = {
        "native R": [],
        "R in this process": [],
        "pylmer": [],
    }
    for _ in range(args.repeat):
        runs["native R"].append(native())
        runs["R in this process"].append(same_process())
        runs["pylmer"].append(ours(data))
        # the opt-in fast path: nloptwrap for both stages (lme4's own optimizer choice)
        runs.setdefault("pylmer, nloptwrap", []).append(ours(data, {"optimizer": "nloptwrap"}))
        other = mixedlm_run(data)
        if other is not None:
            runs.setdefault("mixedlm", []).append(other)
    print(f"VerbAgg: {FORMULA} (binomial, Laplace), {len(data)} rows")
    print(f"R {versions['R']}, lme4 {versions['lme4']}, BLAS {versions.get('blas', '?')}")
    print(f"runs per side: {args.repeat} (median); CPU = user + system time of the process")
    base = runs["native R"]
    for stat in (statistics.median, min):
        print(f"\n{stat.__name__} of the runs:")
        print(f"{'':18} {'wall (s)':>9} {'CPU (s)':>8} {'wall ratio':>10} {'CPU ratio':>9}  logLik")
        r_wall, r_cpu = stat(v[0] for v in base), stat(v[1] for v in base)
        for label, values in runs.items():
            wall, cpu = stat(v[0] for v in values), stat(v[1] for v in values)
            print(
                f"{label:18} {wall:9.2f} {cpu:8.2f} {wall / r_wall:10.3f} {cpu / r_cpu:9.3f}  "
                f"{values[-1][2]:.6f}"
            )
    for label, values in runs.items():
        print(f"{label} runs (wall/CPU s):", ", ".join(f"{w:.2f}/{c:.2f}" for w, c, _ in values))
    mine = statistics.median(c for _, c, _ in runs["pylmer"])
    same = statistics.median(c for _, c, _ in runs["R in this process"])
    verdict = "met" if mine / same <= 1.03 else "MISSED"
    print(
        f"target: pylmer's overhead over plain R's glmer (CPU, same process) <= 3 %: "
        f"{mine / same - 1:+.1%} -> {verdict}"
    )


if __name__ == "__main__":
    main()
