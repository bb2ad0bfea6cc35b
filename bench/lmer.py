"""Benchmark: the whole InstEval job, pylmer vs plain R (lme4 + lmerTest) vs mixedlm.

InstEval (73,421 ratings), ``y ~ service + (1|s) + (1|d) + (1|dept)``, REML.  "The job"
is what a user runs: the fit, the fixed effects with Satterthwaite df and p values, the
summary, ranef with conditional SDs, coef, VarCorr, fitted values and residuals.

* pylmer: R is started and the data loaded before timing; timed: ``lmer()``, ``fixef``,
  ``summary()``, ``ranef``, ``ranef_sd``, ``coef``, ``varcorr``, ``fitted``, ``residuals``.
* (a) plain R, same R and BLAS: ``Rscript bench/lmer_native.R job`` -- lmerTest's
  ``lmer``, ``summary()``, ``coef(summary())``, ``ranef(condVar = TRUE)``, ``coef``,
  ``VarCorr``, ``fitted``, ``residuals``, timed by R itself from ``data()`` on (start-up
  and ``library()`` excluded).  Also ``job-noderivs``: the same with
  ``calc.derivs = FALSE``, lme4 >= 1.1-38's default on data this size (pylmer applies
  that policy on lme4 1.1-31).
* (b) mixedlm (pip, Rust): ``lmer`` + ``summary()`` (Satterthwaite df), plus ``ranef``
  with conditional variances, ``coef``, ``VarCorr``, ``fitted``, ``residuals``.
* (c) context: plain R with Debian's reference BLAS (``R_LD_LIBRARY_PATH`` -- R's start-up
  script puts its own library path before ``LD_LIBRARY_PATH`` -- starting with
  ``/usr/lib/x86_64-linux-gnu/blas`` and ``lapack``; the script reports the BLAS it
  loaded; skipped with a note if libblas3 is absent), i.e. what R does on a default
  Debian install.

Also measured in plain R (``lmer_native.R steps``): pylmer's Satterthwaite step
(``r_scripts/satterthwaite.R``) as a share of the fit, next to lmerTest's.

Runs alternate between the contenders (other jobs share the machine); medians of
wall-clock and CPU (user + system of the process) are reported.  ``--threads 1`` runs
every contender single-threaded (OpenBLAS, OpenMP and Rust's rayon pools): on a loaded
2-core machine spinning BLAS threads inflate both wall and CPU time at random::

    .venv/bin/python bench/lmer.py --repeat 3 --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pylmer
from pylmer import datasets

HERE = Path(__file__).resolve().parent
FORMULA = "y ~ service + (1 | s) + (1 | d) + (1 | dept)"
REFERENCE_BLAS = Path("/usr/lib/x86_64-linux-gnu/blas")
REFERENCE_LAPACK = Path("/usr/lib/x86_64-linux-gnu/lapack")


def rscript(mode: str, env: dict[str, str] | None = None) -> dict[str, float | str]:
    """Run ``lmer_native.R <mode>``; return its ``key=value`` lines (numbers as floats)."""
    out = subprocess.run(
        ["Rscript", str(HERE / "lmer_native.R"), mode],
        capture_output=True,
        text=True,
        check=True,
        env=None if env is None else {**os.environ, **env},
    )
    pairs = (line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    return {k: (v.strip() if k == "blas" else float(v)) for k, v in pairs}


def reference_blas_env() -> dict[str, str] | None:
    if not (REFERENCE_BLAS / "libblas.so.3").exists():
        return None
    dirs = [str(REFERENCE_BLAS)]
    if (REFERENCE_LAPACK / "liblapack.so.3").exists():
        dirs.append(str(REFERENCE_LAPACK))
    r_lib = subprocess.run(
        ["Rscript", "-e", "cat(R.home('lib'))"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return {"R_LD_LIBRARY_PATH": ":".join([*dirs, r_lib, "/usr/lib/x86_64-linux-gnu"])}


BLAS_SEEN: dict[str, str] = {}


def r_job(env: dict[str, str] | None = None, mode: str = "job") -> tuple[float, float]:
    res = rscript(mode, env)
    BLAS_SEEN["reference" if env else "default"] = str(res.get("blas", "?"))
    return float(res["job_wall"]), float(res["job_cpu"])


def timed(job: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    job()
    return time.perf_counter() - wall, time.process_time() - cpu


def pylmer_fit(data) -> pylmer.LmerModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pylmer.lmer(FORMULA, data)


def pylmer_job(data) -> None:
    m = pylmer_fit(data)
    m.fixef  # noqa: B018  (df and p values)
    m.summary()
    for name in ("ranef", "ranef_sd", "coef", "varcorr", "loglik", "fitted", "residuals"):
        getattr(m, name)


def pylmer_fit_summary(data) -> None:
    m = pylmer_fit(data)
    m.fixef  # noqa: B018
    m.summary()


def pylmer_fit_sd(data) -> None:
    pylmer_fit(data).ranef_sd  # noqa: B018  (the conditional variances, first access)


def mixedlm_job(data, full: bool = True) -> None:
    import mixedlm

    r = mixedlm.lmer(FORMULA, data)
    r.summary()  # Satterthwaite df (mixedlm's default ddf_method)
    if full:
        r.ranef(condVar=True)
        r.coef()
        r.VarCorr()
        r.logLik()
        r.fitted()
        r.residuals()


#: issue 23's targets: (what, against, at most)
TARGETS = (
    ("pylmer", "mixedlm (whole job)", 0.7),
    ("pylmer", "R lme4 + lmerTest", 0.4),
    ("pylmer: lmer + fixef + summary", "mixedlm (fit + summary)", 1.0),
    ("pylmer: lmer + first ranef_sd", "R: bare lme4::lmer, calc.derivs = FALSE", 1.15),
)


def print_targets(runs: dict[str, list[tuple[float, float]]]) -> None:
    """Each target as met or MISSED, on wall-clock and CPU medians of this run."""
    for what, against, limit in TARGETS:
        if what not in runs or against not in runs:
            continue
        ratios = []
        for i in (0, 1):
            mine = statistics.median(v[i] for v in runs[what])
            base = statistics.median(v[i] for v in runs[against])
            ratios.append(mine / base)
        verdict = "met" if ratios[0] <= limit else "MISSED"
        print(
            f"target {what} / {against} <= {limit}: wall {ratios[0]:.2f}, CPU "
            f"{ratios[1]:.2f} -> {verdict}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per contender (median)")
    parser.add_argument("--no-reference-blas", action="store_true", help="skip (c)")
    parser.add_argument("--threads", type=int, default=None, help="threads of every pool")
    parser.add_argument(
        "--targets-only", action="store_true", help="skip the noderivs job and the R steps"
    )
    args = parser.parse_args(argv)
    if args.threads is not None:  # before R starts (this process) and for the Rscripts
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "RAYON_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    versions = pylmer.versions()  # starts R outside the timings
    if args.threads is not None:  # numpy's own OpenBLAS was loaded before the variables
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    data = datasets.load("InstEval")
    try:
        import mixedlm  # noqa: F401

        have_mixedlm = True
    except ImportError:
        have_mixedlm = False
    ref_env = None if args.no_reference_blas else reference_blas_env()
    runs: dict[str, list[tuple[float, float]]] = {}

    def add(key: str, value: tuple[float, float]) -> None:
        runs.setdefault(key, []).append(value)

    steps = []
    for _ in range(args.repeat):
        add("pylmer", timed(lambda: pylmer_job(data)))
        add("R lme4 + lmerTest", r_job())
        if have_mixedlm:
            add("mixedlm (fit + summary)", timed(lambda: mixedlm_job(data, full=False)))
            add("mixedlm (whole job)", timed(lambda: mixedlm_job(data)))
        add("pylmer: lmer + fixef + summary", timed(lambda: pylmer_fit_summary(data)))
        add("pylmer: lmer + first ranef_sd", timed(lambda: pylmer_fit_sd(data)))
        add("R: bare lme4::lmer, calc.derivs = FALSE", r_job(mode="bare"))
        if not args.targets_only:
            add("R lme4 + lmerTest, calc.derivs = FALSE", r_job(mode="job-noderivs"))
            steps.append(rscript("steps"))
    if ref_env is not None:  # once: slow, context only
        add("R lme4 + lmerTest, reference BLAS", r_job(ref_env))

    print(f"InstEval: {FORMULA} (REML), {len(data)} rows")
    print(
        f"R {versions['R']}, lme4 {versions['lme4']}, lmerTest {versions['lmerTest']}; "
        f"runs: {args.repeat} (median); CPU = user + system of the process; threads: "
        f"{args.threads or 'default'}; load average at the end: {os.getloadavg()[0]:.1f}"
    )
    base = statistics.median(w for w, _ in runs["pylmer"])
    print(f"| {'whole job':42} | wall (s) | CPU (s) | pylmer / this (wall) |")
    print(f"|{'-' * 44}|---------:|--------:|---------------------:|")
    for key, values in runs.items():
        wall = statistics.median(w for w, _ in values)
        cpu = statistics.median(c for _, c in values)
        print(f"| {key:42} | {wall:8.2f} | {cpu:7.2f} | {base / wall:20.2f} |")
    for which, path in BLAS_SEEN.items():
        print(f"BLAS of the {which} R runs: {path}")
    if ref_env is None and not args.no_reference_blas:
        print(f"(reference BLAS skipped: {REFERENCE_BLAS}/libblas.so.3 not installed)")
    print_targets(runs)
    for kind in ("wall", "cpu") if steps else ():
        fit = statistics.median(s[f"fit_{kind}"] for s in steps)
        sat = statistics.median(s[f"satterthwaite_{kind}"] for s in steps)
        lt = statistics.median(s[f"lmertest_{kind}"] for s in steps)
        print(
            f"plain R ({kind}), fit with calc.derivs = FALSE: {fit:.2f} s; pylmer's "
            f"Satterthwaite step {sat:.2f} s ({sat / fit:.0%} of the fit); lmerTest's "
            f"{lt:.2f} s ({lt / fit:.0%})"
        )
    if steps:
        print(
            f"intercept df {steps[-1]['df_intercept']:.8f} vs lmerTest "
            f"{steps[-1]['lmertest_df_intercept']:.8f}"
        )
    for key, values in runs.items():
        print(f"{key} runs (wall/CPU s):", ", ".join(f"{w:.2f}/{c:.2f}" for w, c in values))


if __name__ == "__main__":
    main()
