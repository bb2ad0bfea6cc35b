"""glmmTMB and nlmer through pylmer vs plain R, in one run.

Models:

* glmmTMB: a zero-inflated nbinom2 GLMM (``y ~ x + (1 | g)``, ``ziformula = ~ z``) on
  12,000 simulated rows in 300 groups;
* nlmer: a logistic growth curve (``y ~ SSlogis(t, Asym, xmid, scal) ~ Asym | g``) on
  3,000 simulated rows in 300 groups.

Each is fitted ``REPEATS`` times by ``pylmer.glmmtmb`` / ``pylmer.nlmer`` (the user's
call: data conversion, fit, extraction of every result) and by plain R (``glmmTMB()`` /
``nlmer()`` on the same CSV, in one long-lived ``Rscript`` process that fits on request
and times the fit with ``proc.time``).  The two alternate fit by fit (R, pylmer, R,
pylmer, ...) after one warm-up fit each, so both see the same machine load; reported:
median seconds and the ratio of the medians, with the load average.

    .venv/bin/python bench/glmmtmb.py [REPEATS [tmb|nl ...]]
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
#: which models: "tmb", "nl" or both (default)
ONLY = sys.argv[2:] or ["tmb", "nl"]
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
fits <- list(
  tmb = function() glmmTMB(y ~ x + (1 | g), ziformula = ~z, family = nbinom2, data = tmb),
  nl = function() nlmer(y ~ SSlogis(t, Asym, xmid, scal) ~ Asym | g, data = nl,
                        start = c(Asym = 200, xmid = 5, scal = 1.5))
)
con <- file("stdin")
open(con)
while (length(line <- readLines(con, n = 1L)) && line != "quit") {
  t0 <- proc.time()[["elapsed"]]
  m <- fits[[line]]()
  cat(sprintf("%.6f %.10f\n", proc.time()[["elapsed"]] - t0, as.numeric(logLik(m))))
  flush(stdout())
}
"""


class _PlainR:
    """One Rscript process that fits a model on request and answers seconds and logLik."""

    def __init__(self, script: Path, tmb_csv: Path, nl_csv: Path):
        self.proc = subprocess.Popen(
            ["Rscript", str(script), str(tmb_csv), str(nl_csv)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def fit(self, what: str) -> tuple[float, float]:
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()
        seconds, loglik = self.proc.stdout.readline().split()
        return float(seconds), float(loglik)

    def close(self) -> None:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait()


def _timed(fit) -> tuple[float, float]:
    t0 = time.perf_counter()
    m = fit()
    return time.perf_counter() - t0, m.loglik


def main() -> None:
    tmb, nl = zinb_data(), growth_data()
    ours = {
        "tmb": lambda: pylmer.glmmtmb(TMB_FORMULA, tmb, family="nbinom2", ziformula="~ z"),
        "nl": lambda: pylmer.nlmer(NL_FORMULA, nl, NL_START),
    }
    times: dict[str, dict[str, list[float]]] = {k: {"R": [], "pylmer": []} for k in ours}
    logliks: dict[str, tuple[float, float]] = {}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths = [Path(tmp) / "tmb.csv", Path(tmp) / "nl.csv", Path(tmp) / "bench.R"]
        tmb.to_csv(paths[0], index=False)
        nl.to_csv(paths[1], index=False)
        paths[2].write_text(R_CODE)
        r = _PlainR(paths[2], paths[0], paths[1])
        try:
            for what, fit in ours.items():
                if what not in ONLY:
                    continue
                r.fit(what)  # warm-up: packages, TMB's DLL, R's JIT
                fit()
                for _ in range(REPEATS):
                    sec_r, ll_r = r.fit(what)
                    sec_p, ll_p = _timed(fit)
                    times[what]["R"].append(sec_r)
                    times[what]["pylmer"].append(sec_p)
                    logliks[what] = (ll_p, ll_r)
                    loads.append(os.getloadavg()[0])
        finally:
            r.close()
    print(
        f"repeats: {REPEATS}, alternating; 1-min load average from {min(loads):.1f} to "
        f"{max(loads):.1f} on {os.cpu_count()} cores"
    )
    for what, name, rows in (
        ("tmb", "glmmTMB ZI-nbinom2", len(tmb)),
        ("nl", "nlmer SSlogis", len(nl)),
    ):
        if what not in ONLY:
            continue
        pm = statistics.median(times[what]["pylmer"])
        rm = statistics.median(times[what]["R"])
        ll_p, ll_r = logliks[what]
        print(
            f"{name:20s} {rows:6d} rows  pylmer {pm:7.3f} s  plain R {rm:7.3f} s  "
            f"ratio {pm / rm:5.3f}  (logLik pylmer {ll_p:.6f}, R {ll_r:.6f})"
        )
        print(f"    pylmer {' '.join(f'{v:.2f}' for v in times[what]['pylmer'])}")
        print(f"    R      {' '.join(f'{v:.2f}' for v in times[what]['R'])}")


if __name__ == "__main__":
    main()
