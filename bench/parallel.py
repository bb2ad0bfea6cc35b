"""Benchmark of pylmer.parallel against plain R, in one run on this machine.

(a) parametric bootstrap, 500 draws of sleepstudy ``Reaction ~ Days + (Days | Subject)``:
    pylmer ``bootstrap(m, nsim=500, seed=1, n_jobs=2)`` vs R's ``bootMer`` serially and
    with ``parallel = "multicore", ncpus = 2`` (same statistic, same seed: same draws);
(b) ``lmer_many`` over 2000 responses simulated from sleepstudy's fit vs a plain-R loop
    of ``lmer`` and a plain-R loop of ``refit`` (each keeping the coefficient table,
    VarCorr, logLik, sigma, singularity; no Satterthwaite df), and with Satterthwaite
    tests vs a plain-R loop of refit + lmerTest;
(c) the same pylmer jobs on a 2-worker ``dask.distributed.LocalCluster`` under
    ``joblib.parallel_config(backend="dask")`` vs joblib's loky backend.

Plain R times itself (``bench/parallel_native.R``: R's start-up, ``library()`` and the
simulation are excluded).  pylmer's "cold" call includes starting the worker processes
and R in each; "warm" calls reuse them (what a session doing several bootstraps sees).
CPU seconds add the worker processes' CPU (psutil) to the parent's.  Other jobs share the
machine: the 1-minute load average is printed beside every row, and ratios are taken
within this run.  Usage::

    .venv/bin/python bench/parallel.py [--nsim 500] [--responses 2000] [--sat 300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
import warnings
from pathlib import Path

import joblib
import numpy as np
import psutil

import pylmer
from pylmer import datasets
from pylmer import parallel as P

HERE = Path(__file__).resolve().parent
FORMULA = "Reaction ~ Days + (Days | Subject)"
ROWS: list[dict] = []


def load() -> float:
    return round(os.getloadavg()[0], 1)


def _children_cpu() -> dict[int, float]:
    out = {}
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            out[child.pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


def timed(label: str, func, *args, **kwargs):
    """Run func; record wall and CPU seconds (this process + its worker processes)."""
    before = _children_cpu()
    la = load()
    wall, cpu = time.perf_counter(), time.process_time()
    value = func(*args, **kwargs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    after = _children_cpu()
    cpu += sum(t - before.get(pid, 0.0) for pid, t in after.items())
    ROWS.append({"job": label, "wall": wall, "cpu": cpu, "load": max(la, load())})
    print(f"{label:55s} {wall:8.2f} s wall {cpu:8.2f} s cpu  load {ROWS[-1]['load']}")
    return value


def native(task: str, n: int) -> tuple[float, float, float]:
    la = load()
    out = subprocess.run(
        ["Rscript", str(HERE / "parallel_native.R"), task, str(n)],
        capture_output=True,
        text=True,
        check=True,
    )
    wall, cpu, check = (float(v) for v in out.stdout.split()[-3:])
    label = f"R {task} ({n})"
    ROWS.append({"job": label, "wall": wall, "cpu": cpu, "load": max(la, load())})
    print(f"{label:55s} {wall:8.2f} s wall {cpu:8.2f} s cpu  load {ROWS[-1]['load']}")
    return wall, cpu, check


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nsim", type=int, default=500)
    parser.add_argument("--responses", type=int, default=2000)
    parser.add_argument("--sat", type=int, default=300, help="responses with Satterthwaite")
    parser.add_argument("--no-dask", action="store_true")
    parser.add_argument("--parts", default="abc", help="which parts to run (a, b, c)")
    parser.add_argument("--out", default="out/bench_parallel.json")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    print(f"cores {os.cpu_count()}, load at start {load()}")
    sleep = datasets.load("sleepstudy")
    m = pylmer.lmer(FORMULA, sleep)
    nsim, nresp = args.nsim, args.responses

    # (a) bootstrap
    if "a" in args.parts:
        boot_part(m, nsim)
    if "b" in args.parts or "c" in args.parts:
        many_part(m, sleep, nsim, nresp, args)
    print(f"load at end {load()}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(ROWS, indent=1))
    print("\n| job | wall s | CPU s | load (1 min) |\n|---|---:|---:|---:|")
    for r in ROWS:
        print(f"| {r['job']} | {r['wall']:.2f} | {r['cpu']:.2f} | {r['load']} |")


def boot_part(m, nsim: int) -> None:
    _, _, r_check = native("boot_serial", nsim)
    timed(f"pylmer bootstrap n_jobs=2 loky, cold ({nsim})", P.bootstrap, m, nsim=nsim, seed=1,
          n_jobs=2)  # fmt: skip
    draws = timed(f"pylmer bootstrap n_jobs=2 loky, warm ({nsim})", P.bootstrap, m, nsim=nsim,
                  seed=1, n_jobs=2)  # fmt: skip
    native("boot_mc", nsim)
    timed(f"pylmer bootstrap n_jobs=1 ({nsim})", P.bootstrap, m, nsim=nsim, seed=1)
    same = np.isclose(np.nansum(draws.to_numpy()), r_check, rtol=1e-9)
    print(f"  draws equal bootMer's (checksum): {same}")


def many_part(m, sleep, nsim: int, nresp: int, args) -> None:
    sims = m.simulate(nsim=nresp, seed=1)
    data = sleep.copy()
    names = [f"y{j}" for j in range(nresp)]
    for j, name in enumerate(names):
        data[name] = sims.iloc[:, j].to_numpy()
    rhs = "~ Days + (Days | Subject)"
    if "b" not in args.parts:
        return dask_part(m, nsim, nresp, rhs, data, names, args)
    _, _, r_check = native("many_lmer", nresp)
    native("many_refit", nresp)
    res = timed(f"pylmer lmer_many n_jobs=2 loky, no df ({nresp})", pylmer.lmer_many, rhs, data,
                names, satterthwaite=False, n_jobs=2)  # fmt: skip
    slope = res.fixef[res.fixef["term"] == "Days"]["estimate"].sum()
    print(f"  Days slopes sum {slope:.6f} vs R lmer loop {r_check:.6f}")
    k = min(args.sat, nresp)
    native("many_lmertest", k)
    timed(f"pylmer lmer_many n_jobs=2 loky, Satterthwaite ({k})", pylmer.lmer_many, rhs, data,
          names[:k], n_jobs=2)  # fmt: skip

    if "c" in args.parts:
        dask_part(m, nsim, nresp, rhs, data, names, args)


def dask_part(m, nsim, nresp, rhs, data, names, args) -> None:
    if not args.no_dask:
        from dask.distributed import Client, LocalCluster

        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
        with joblib.parallel_config(backend="dask"):
            timed("dask warm-up (R start in workers, 4 draws)", P.bootstrap, m, nsim=4,
                  seed=2, n_jobs=2)  # fmt: skip
            timed(f"pylmer bootstrap dask 2 workers, warm ({nsim})", P.bootstrap, m, nsim=nsim,
                  seed=1, n_jobs=2)  # fmt: skip
            timed(f"pylmer lmer_many dask 2 workers, no df ({nresp})", pylmer.lmer_many, rhs,
                  data, names, satterthwaite=False, n_jobs=2)  # fmt: skip
        client.close()
        cluster.close()
        timed(f"pylmer bootstrap n_jobs=2 loky, warm again ({nsim})", P.bootstrap, m, nsim=nsim,
              seed=1, n_jobs=2)  # fmt: skip
        timed(f"pylmer lmer_many n_jobs=2 loky, no df, again ({nresp})", pylmer.lmer_many, rhs,
              data, names, satterthwaite=False, n_jobs=2)  # fmt: skip


if __name__ == "__main__":
    main()
