"""Scale of one fit: pylmer vs plain Rscript on synthetic ``y ~ x + (1 + x | g)`` data.

For each size (default 1e4, 1e5, 1e6 rows; 100 rows per group, so 1e6 rows have 10,000
groups) the data are simulated once and written to one CSV file; then, each in its own
process (so that peak resident memory is the process's own, measured by GNU time):

* plain R (``bench/scale_native.R``): ``read.csv``, ``lmerTest::lmer`` (REML), the
  Satterthwaite table, ranef with conditional SDs, coef, VarCorr, fitted, residuals;
* pylmer: ``pandas.read_csv``, ``pylmer.lmer`` and the same accessors (fixef with
  Satterthwaite df, ranef, ranef_sd, coef, varcorr, fitted, residuals).

Both use the same R and BLAS (pylmer embeds this R).  Reported: read and fit seconds
(timed inside each process, R's start-up excluded on both sides), the process's wall
time and peak RSS, the size of the pandas frame, and each side's start-up peak RSS
without data (the "growth" columns subtract it).  Usage::

    .venv/bin/python bench/scale.py [--sizes 1e4 1e5 1e6] [--out out/bench_scale.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def simulate(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    groups = max(n // 100, 2)
    g = rng.integers(0, groups, n)
    cov = np.array([[1.0, 0.15], [0.15, 0.25]])
    b = rng.multivariate_normal([0.0, 0.0], cov, size=groups)
    x = rng.standard_normal(n)
    y = 1.0 + 0.5 * x + b[g, 0] + b[g, 1] * x + rng.standard_normal(n)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{v}" for v in g]})


def child_pylmer(path: str) -> None:
    """The pylmer side (run in its own process): prints the same line as the R script."""
    import pylmer

    pylmer.versions()  # start R before timing (R's start-up is not timed on either side)
    t0 = time.perf_counter()
    data = pd.read_csv(path)
    data["g"] = data["g"].astype("category")
    t1 = time.perf_counter()
    m = pylmer.lmer("y ~ x + (1 + x | g)", data)
    fixef = m.fixef
    for name in ("ranef", "ranef_sd", "coef", "varcorr", "fitted", "residuals", "vcov"):
        getattr(m, name)
    t2 = time.perf_counter()
    frame = int(data.memory_usage(deep=True).sum())
    print(
        f"read={t1 - t0:.4f} fit={t2 - t1:.4f} check={fixef.loc['x', 'estimate']:.10f} "
        f"df={fixef.loc['x', 'df']:.6f} frame={frame}"
    )


def run(cmd: list[str]) -> dict:
    """Run a side under GNU time; return its printed values plus wall and peak RSS."""
    start = time.perf_counter()
    load = os.getloadavg()[0]
    out = subprocess.run(
        ["/usr/bin/time", "-f", "peak_kb=%M", *cmd], capture_output=True, text=True, cwd=ROOT
    )
    if out.returncode != 0:
        raise RuntimeError(f"{cmd} failed:\n{out.stderr[-3000:]}")
    values: dict = {"wall": time.perf_counter() - start, "load": max(load, os.getloadavg()[0])}
    for token in (out.stdout.split() + out.stderr.split())[::-1]:
        if "=" in token:
            key, _, value = token.partition("=")
            values.setdefault(key, float(value))
    return values


def main(argv: list[str] | None = None) -> None:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--child":
        child_pylmer(sys.argv[2])
        return
    if argv is None and len(sys.argv) == 2 and sys.argv[1] == "--child-baseline":
        import pylmer

        pylmer.versions()  # Python, pandas, scikit-learn, R, lme4: no data
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e4, 1e5, 1e6])
    parser.add_argument("--out", default="out/bench_scale.json")
    parser.add_argument("--dir", default="out/scale_data")
    args = parser.parse_args(argv)
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    # start-up footprint of each side (no data): R with lme4 + lmerTest; Python with
    # pylmer (pandas, scikit-learn) and the embedded R with lme4
    base_r = run(["Rscript", "-e", "suppressMessages({library(lme4); library(lmerTest)})"])
    base_p = run([sys.executable, str(Path(__file__).resolve()), "--child-baseline"])
    print(
        f"start-up peak RSS: R {base_r['peak_kb'] / 1024:.0f} MB, "
        f"pylmer {base_p['peak_kb'] / 1024:.0f} MB"
    )
    rows = []
    for size in args.sizes:
        n = int(size)
        path = Path(args.dir) / f"scale_{n}.csv"
        if not path.exists():
            simulate(n).to_csv(path, index=False)
        r = run(["Rscript", str(HERE / "scale_native.R"), str(path)])
        p = run([sys.executable, str(Path(__file__).resolve()), "--child", str(path)])
        row = {"rows": n, "groups": max(n // 100, 2), "R": r, "pylmer": p}
        rows.append(row)
        print(
            f"{n:>9d} rows: R read {r['read']:.2f} fit {r['fit']:.2f} s, peak "
            f"{r['peak_kb'] / 1024:.0f} MB | pylmer read {p['read']:.2f} fit {p['fit']:.2f} s, "
            f"peak {p['peak_kb'] / 1024:.0f} MB (frame {p['frame'] / 2**20:.0f} MB) | "
            f"fit ratio {p['fit'] / r['fit']:.2f} | slope R {r['check']:.8f} "
            f"pylmer {p['check']:.8f} | load {max(r['load'], p['load']):.1f}",
            flush=True,
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"baseline": {"R": base_r, "pylmer": base_p}, "sizes": rows}, indent=1)
    )
    print(
        "\n| rows | groups | R fit s | pylmer fit s | ratio | R read s | pandas read s "
        "| R peak MB | pylmer peak MB | frame MB | budget MB | R growth MB "
        "| pylmer growth MB | load |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        r, p = row["R"], row["pylmer"]
        budget = r["peak_kb"] / 1024 + p["frame"] / 2**20
        print(
            f"| {row['rows']:,} | {row['groups']:,} | {r['fit']:.2f} | {p['fit']:.2f} | "
            f"{p['fit'] / r['fit']:.2f} | {r['read']:.2f} | {p['read']:.2f} | "
            f"{r['peak_kb'] / 1024:.0f} | {p['peak_kb'] / 1024:.0f} | "
            f"{p['frame'] / 2**20:.0f} | {budget:.0f} | "
            f"{(r['peak_kb'] - base_r['peak_kb']) / 1024:.0f} | "
            f"{(p['peak_kb'] - base_p['peak_kb']) / 1024:.0f} | "
            f"{max(r['load'], p['load']):.1f} |"
        )


if __name__ == "__main__":
    main()
