"""glmmTMB and nlmer through pylmer vs plain R, in one run.

Models:

* glmmTMB: a zero-inflated nbinom2 GLMM (``y ~ x + (1 | g)``, ``ziformula = ~ z``) on
  12,000 simulated rows in 300 groups;
* nlmer: a logistic growth curve (``y ~ SSlogis(t, Asym, xmid, scal) ~ Asym | g``) on
  3,000 simulated rows in 300 groups.

Each is fitted ``REPEATS`` times by ``pylmer.glmmtmb`` / ``pylmer.nlmer`` (the user's
call: data conversion, fit, extraction of every result) and by plain ``Rscript``
(``glmmTMB()`` / ``nlmer()`` on the same CSV, timed with ``proc.time`` around the fit
only, after one warm-up fit, as pylmer's timings are).  Reported: median seconds and the
ratio pylmer / R; the machine's load average is printed with them.

    .venv/bin/python bench/glmmtmb.py [REPEATS]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import pylmer

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
TMB_FORMULA = "y ~ x + (1 | g)"
NL_FORMULA = "y ~ SSlogis(t, Asym, xmid, scal) ~ Asym | g"
NL_START = {"Asym": 200.0, "xmid": 5.0, "scal": 1.5}


def zinb_data(n: int = 12_000, groups: int = 300, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    z = rng.normal(size=n)
    mu = np.exp(0.5 + 0.4 * x + rng.normal(0, 0.5, groups)[g])
    size = 1.5
    y = rng.negative_binomial(size, size / (size + mu))
    y[rng.random(n) < 1 / (1 + np.exp(-(-0.8 + 0.7 * z)))] = 0
    return pd.DataFrame({"y": y.astype(float), "x": x, "z": z, "g": [f"g{i}" for i in g]})


def growth_data(groups: int = 300, per: int = 10, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.tile(np.linspace(1, 10, per), groups)
    g = np.repeat(np.arange(groups), per)
    asym = 200 + rng.normal(0, 25, groups)[g]
    y = asym / (1 + np.exp((5 - t) / 1.5)) + rng.normal(0, 5, len(t))
    return pd.DataFrame({"y": y, "t": t, "g": [f"g{i}" for i in g]})


R_CODE = r"""
args <- commandArgs(trailingOnly = TRUE)
suppressPackageStartupMessages({library(glmmTMB); library(lme4)})
tmb <- read.csv(args[1]); tmb$g <- factor(tmb$g)
nl <- read.csv(args[2]); nl$g <- factor(nl$g)
reps <- as.integer(args[3])
time_it <- function(f) {
  f()
  vapply(seq_len(reps), function(i) { t0 <- proc.time()[["elapsed"]]; f();
    proc.time()[["elapsed"]] - t0 }, 0)
}
a <- time_it(function() glmmTMB(y ~ x + (1 | g), ziformula = ~z, family = nbinom2,
                                data = tmb))
b <- time_it(function() nlmer(y ~ SSlogis(t, Asym, xmid, scal) ~ Asym | g, data = nl,
                              start = c(Asym = 200, xmid = 5, scal = 1.5)))
m <- glmmTMB(y ~ x + (1 | g), ziformula = ~z, family = nbinom2, data = tmb)
n <- nlmer(y ~ SSlogis(t, Asym, xmid, scal) ~ Asym | g, data = nl,
           start = c(Asym = 200, xmid = 5, scal = 1.5))
cat(sprintf("tmb %s\nnl %s\nll %.10f %.10f\n", paste(a, collapse = " "),
            paste(b, collapse = " "), logLik(m), logLik(n)))
"""


def time_pylmer(fit) -> list[float]:
    fit()
    out = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fit()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    tmb, nl = zinb_data(), growth_data()
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / "tmb.csv", Path(tmp) / "nl.csv", Path(tmp) / "bench.R"]
        tmb.to_csv(paths[0], index=False)
        nl.to_csv(paths[1], index=False)
        paths[2].write_text(R_CODE)
        load = os.getloadavg()
        proc = subprocess.run(
            ["Rscript", str(paths[2]), str(paths[0]), str(paths[1]), str(REPEATS)],
            capture_output=True,
            text=True,
            check=True,
        )
    lines = dict(line.split(" ", 1) for line in proc.stdout.strip().splitlines())
    r_tmb = [float(v) for v in lines["tmb"].split()]
    r_nl = [float(v) for v in lines["nl"].split()]
    r_ll = [float(v) for v in lines["ll"].split()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p_tmb = time_pylmer(
            lambda: pylmer.glmmtmb(TMB_FORMULA, tmb, family="nbinom2", ziformula="~ z")
        )
        p_nl = time_pylmer(lambda: pylmer.nlmer(NL_FORMULA, nl, NL_START))
        ll = (
            pylmer.glmmtmb(TMB_FORMULA, tmb, family="nbinom2", ziformula="~ z").loglik,
            pylmer.nlmer(NL_FORMULA, nl, NL_START).loglik,
        )
    print(f"load average before the R run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; repeats: {REPEATS}")
    for name, p, r, rows, a, b in (
        ("glmmTMB ZI-nbinom2", p_tmb, r_tmb, len(tmb), ll[0], r_ll[0]),
        ("nlmer SSlogis", p_nl, r_nl, len(nl), ll[1], r_ll[1]),
    ):
        pm, rm = statistics.median(p), statistics.median(r)
        print(
            f"{name:20s} {rows:6d} rows  pylmer {pm:7.3f} s  plain R {rm:7.3f} s  "
            f"ratio {pm / rm:5.3f}  (logLik pylmer {a:.6f}, R {b:.6f})"
        )


if __name__ == "__main__":
    main()
