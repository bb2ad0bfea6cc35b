"""Benchmark of pylmer.power against the plain-R power loop, in one run on this machine.

1,000 simulations of sleepstudy's ``Reaction ~ Days + (Days | Subject)`` (180 rows, the
Days slope set to 4), Satterthwaite t test of ``Days``:

* plain R, serial (``bench/power_native.R``): ``simulate(m, 1000, seed = 1, newparams)``
  then ``refit()`` + lmerTest's ``summary(as_lmerModLmerTest(f))`` per draw; it times
  itself (R's start-up, ``library()`` and the fit excluded);
* pylmer ``power(m, "Days", effect={"Days": 4.0}, nsim=1000, seed=1, n_jobs=2)``: the same
  draws, refit in two worker processes with pylmer's own Satterthwaite; timed from the
  call (worker start-up and R in each included: a "cold" call).

The same seed gives the same p-values, so the power and the sum of p-values are printed
for both.  CPU seconds: R's own for the loop; pylmer's parent plus its worker processes
(psutil).  Other jobs share the machine: the 1-minute load average is printed, and the
ratios are taken within this run.  Usage::

    .venv/bin/python bench/power.py [--nsim 1000] [--n-jobs 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
import warnings
from pathlib import Path

import psutil

import pylmer
from pylmer import datasets

HERE = Path(__file__).resolve().parent


def _children_cpu() -> dict[int, float]:
    out = {}
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            out[child.pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nsim", type=int, default=1000)
    ap.add_argument("--n-jobs", type=int, default=2)
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    out = subprocess.run(
        ["Rscript", str(HERE / "power_native.R"), str(args.nsim)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    r_wall, r_cpu, r_power, r_sum = (float(v) for v in out[:4])
    print(
        f"plain R loop (serial)    {r_wall:8.2f} s wall {r_cpu:8.2f} s cpu  power {r_power:.4f}"
        f"  sum p {r_sum:.8f}  load {os.getloadavg()[0]:.1f}"
    )
    sleep = datasets.load("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = pylmer.lmer("Reaction ~ Days + (Days | Subject)", sleep)
        before = _children_cpu()
        t, c = time.perf_counter(), time.process_time()
        res = pylmer.power(
            m, "Days", effect={"Days": 4.0}, nsim=args.nsim, seed=1, n_jobs=args.n_jobs
        )
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        after = _children_cpu()
        cpu += sum(v - before.get(pid, 0.0) for pid, v in after.items())
    print(
        f"pylmer.power n_jobs={args.n_jobs}    {wall:8.2f} s wall {cpu:8.2f} s cpu  power "
        f"{res.power:.4f}  sum p {res.pvalues.sum():.8f}  load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"ratio pylmer / plain R: wall {wall / r_wall:.3f} (target <= 0.6), cpu {cpu / r_cpu:.3f}"
    )
    print(res)


if __name__ == "__main__":
    main()
