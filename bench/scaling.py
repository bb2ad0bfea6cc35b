"""Benchmark: how pylmer, plain R (lme4 + lmerTest) and mixedlm scale with the data.

Simulated crossed design, ``y ~ x + (1 | g1) + (1 | g2)`` (REML), with levels growing
with the rows: ``g1`` has n / 20 levels (20 rows each), ``g2`` n / 2000 (at least 20),
at n = 1e4, 1e5, 1e6 rows.  Each contender runs in its own fresh process on the same
data (binary files written once), and reports:

* fit: ``lmer()`` alone (pylmer: DataFrame conversion, fit, extraction; plain R and
  mixedlm: their ``lmer``), plain R with ``calc.derivs = FALSE`` as pylmer fits data of
  this size (lme4 >= 1.1-38's policy);
* job: the fit plus the fixed effects with Satterthwaite df, ``summary()``, ranef with
  conditional variances, coef, VarCorr, logLik, fitted, residuals;
* peak RSS of the whole process (``wait4``), start-up and data loading included.

The growth exponent is the least-squares slope of log(seconds) on log(rows).  Ratios
are within one run; the machine's load average is printed::

    .venv/bin/python bench/scaling.py                      # 1e4, 1e5, 1e6
    .venv/bin/python bench/scaling.py --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FORMULA = "y ~ x + (1 | g1) + (1 | g2)"
CONTENDERS = ("pylmer", "R lme4 + lmerTest", "mixedlm")


def simulate(n: int, folder: Path) -> None:
    """Write the columns of the simulated data as raw binary files."""
    rng = np.random.default_rng(n)
    n1, n2 = n // 20, max(20, n // 2000)
    g1 = rng.integers(0, n1, n).astype(np.int32)
    g2 = rng.integers(0, n2, n).astype(np.int32)
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + rng.normal(0, 0.8, n1)[g1] + rng.normal(0, 0.5, n2)[g2] + rng.normal(size=n)
    folder.mkdir(parents=True, exist_ok=True)
    for name, values in (("y", y), ("x", x), ("g1", g1), ("g2", g2)):
        values.tofile(folder / f"{name}.bin")


def load(folder: Path):
    import pandas as pd

    cols = {k: np.fromfile(folder / f"{k}.bin", dtype=np.float64) for k in ("y", "x")}
    for k in ("g1", "g2"):
        codes = np.fromfile(folder / f"{k}.bin", dtype=np.int32)
        cols[k] = pd.Categorical(codes)
    return pd.DataFrame(cols)


def worker(kind: str, folder: Path) -> dict[str, float]:
    """Run one contender's fit and job in this process; return its timings."""
    import warnings

    warnings.simplefilter("ignore")
    if kind == "pylmer":
        import pylmer

        pylmer.versions()  # R started before timing
        data = load(folder)
        t0, c0 = time.perf_counter(), time.process_time()
        m = pylmer.lmer(FORMULA, data)
        t1, c1 = time.perf_counter(), time.process_time()
        m.fixef  # noqa: B018
        m.summary()
        for name in ("ranef", "ranef_sd", "coef", "varcorr", "loglik", "fitted", "residuals"):
            getattr(m, name)
    else:
        import mixedlm

        data = load(folder)
        t0, c0 = time.perf_counter(), time.process_time()
        r = mixedlm.lmer(FORMULA, data)
        t1, c1 = time.perf_counter(), time.process_time()
        r.summary()
        r.ranef(condVar=True)
        r.coef()
        r.VarCorr()
        r.logLik()
        r.fitted()
        r.residuals()
    t2, c2 = time.perf_counter(), time.process_time()
    return {"fit_wall": t1 - t0, "fit_cpu": c1 - c0, "job_wall": t2 - t0, "job_cpu": c2 - c0}


def run(kind: str, folder: Path) -> dict[str, float]:
    """Run a contender in a fresh process; its timings and peak RSS (MB)."""
    if kind == "R lme4 + lmerTest":
        cmd = ["Rscript", str(HERE / "scaling_native.R"), str(folder)]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, str(folder)]
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} failed ({proc.returncode}): {text[-2000:]}")
    res = json.loads(text.strip().splitlines()[-1])
    res["rss_mb"] = usage.ru_maxrss / 1024
    return res


def exponent(sizes: list[int], values: list[float]) -> float:
    return float(np.polyfit(np.log(sizes), np.log(values), 1)[0])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e4, 1e5, 1e6])
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--skip", nargs="*", default=[], help="contenders to leave out")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], Path(args.worker[1]))))
        return
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ[var] = "1"  # every contender single-threaded on the shared machine
    sizes = [int(s) for s in args.sizes]
    kinds = [k for k in CONTENDERS if k not in args.skip]
    results: dict[str, dict[int, dict[str, float]]] = {k: {} for k in kinds}
    loads = []
    with tempfile.TemporaryDirectory(prefix="pylmer-scaling-") as tmp:
        for n in sizes:
            folder = Path(tmp) / str(n)
            simulate(n, folder)
            for kind in kinds:
                results[kind][n] = run(kind, folder)
                loads.append(os.getloadavg()[0])
                print(f"n={n} {kind}: {results[kind][n]}", flush=True)
    print(
        f"\n{FORMULA} (REML), g1: n/20 levels, g2: n/2000 levels; one run each, fresh "
        f"processes, single-threaded; load average during the run "
        f"{min(loads):.1f}-{max(loads):.1f} (2 cores)"
    )
    print("| rows | contender | fit (s) | job (s) | fit CPU (s) | job CPU (s) | peak RSS (MB) |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for n in sizes:
        for kind in kinds:
            r = results[kind][n]
            print(
                f"| {n:,} | {kind} | {r['fit_wall']:.2f} | {r['job_wall']:.2f} | "
                f"{r['fit_cpu']:.2f} | {r['job_cpu']:.2f} | {r['rss_mb']:.0f} |"
            )
    if len(sizes) > 1:
        print("\ngrowth exponents (slope of log CPU seconds on log rows):")
        for kind in kinds:
            fit = exponent(sizes, [results[kind][n]["fit_cpu"] for n in sizes])
            job = exponent(sizes, [results[kind][n]["job_cpu"] for n in sizes])
            print(f"- {kind}: fit {fit:.2f}, job {job:.2f}")
    if "pylmer" in kinds:
        print("\nratios pylmer / other (CPU, job; peak RSS):")
        for kind in kinds[1:]:
            for n in sizes:
                p, o = results["pylmer"][n], results[kind][n]
                print(
                    f"- {kind}, {n:,} rows: job CPU {p['job_cpu'] / o['job_cpu']:.2f}, "
                    f"fit CPU {p['fit_cpu'] / o['fit_cpu']:.2f}, "
                    f"peak RSS {p['rss_mb'] / o['rss_mb']:.2f}"
                )


if __name__ == "__main__":
    main()
