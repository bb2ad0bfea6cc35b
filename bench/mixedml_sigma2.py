"""MixedML's residual variance against the generating one (``varcorr_``'s Residual row).

Identifiable generators (covariates drawn per row, so the estimator's error is not
group-level), ``y = f(x) + b_g + e`` with ``b_g ~ N(0, 1)``, ``e ~ N(0, 1)``,
``x1..x5 ~ U(0, 1)``:

* ``simple``: ``f = 3 x1 + 2 1{x2 > 0.5} - 2 x3 x4``;
* ``friedman``: ``f = 10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 10 x4 + 5 x5`` (Friedman #1);
* ``sparse``: ``f = 4 x1 x2 + 2 sin(2 pi x3)`` (x4, x5 carry nothing).

Sizes ``groups x rows per group`` from ``--sizes``.  Estimators: HistGradientBoosting
(defaults: in-sample residuals in the loop) and a default random forest (out-of-bag
residuals).  Reported: lme4's residual variance from the residuals the loop used, the
cross-fitting estimate (out-of-fold level minus the estimator's variance), the one
``varcorr_`` reports (:mod:`pylmer.mixedml.variance`: nearest-neighbour differences of
out-of-fold residuals) and the random-intercept variance.  Run::

    .venv/bin/python bench/mixedml_sigma2.py [--sizes 200x10,100x40] [--seeds 1,2]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor

from pylmer import MixedMLRegressor


def generate(kind: str, n_groups: int, per: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    X = rng.uniform(0, 1, (len(g), 5))
    if kind == "friedman":
        f = (
            10 * np.sin(np.pi * X[:, 0] * X[:, 1])
            + 20 * (X[:, 2] - 0.5) ** 2
            + 10 * X[:, 3]
            + 5 * X[:, 4]
        )
    elif kind == "sparse":
        f = 4 * X[:, 0] * X[:, 1] + 2 * np.sin(2 * np.pi * X[:, 2])
    else:
        f = 3 * X[:, 0] + 2 * (X[:, 1] > 0.5) - 2 * X[:, 2] * X[:, 3]
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(1, 6)])
    df["g"] = g
    return df, f + rng.normal(0, 1, n_groups)[g] + rng.normal(0, 1, len(g))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="200x10,100x40")
    p.add_argument("--generators", default="simple,friedman")
    p.add_argument("--estimators", default="hgb,rf")
    p.add_argument("--seeds", default="1")
    args = p.parse_args()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    make = {
        "hgb": lambda: HistGradientBoostingRegressor(random_state=0),
        "rf": lambda: RandomForestRegressor(100, random_state=0, n_jobs=1),
    }
    rows = []
    combos = [
        (kind, size, int(seed))
        for kind in args.generators.split(",")
        for size in args.sizes.split(",")
        for seed in args.seeds.split(",")
    ]
    for kind, size, seed in combos:
        n_groups, per = (int(v) for v in size.split("x"))
        X, y = generate(kind, n_groups, per, seed)
        for name in args.estimators.split(","):
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m = MixedMLRegressor(make[name](), random_effects="(1 | g)").fit(X, y)
            vc = m.varcorr_.set_index("group")["variance"]
            c = m.calibration_
            rows.append(
                {
                    "generator": kind,
                    "rows": f"{n_groups} x {per}",
                    "seed": seed,
                    "estimator": f"{name} ({m.residuals_used_})",
                    "generating": 1.0,
                    "lme4 (loop's residuals)": c.sigma2_lme4,
                    "cross-fitting": c.sigma2_crossfit,
                    "honest": float(vc["Residual"]),
                    "method": c.sigma2_method,
                    "error %": 100 * (float(vc["Residual"]) - 1.0),
                    "var(g) (gen. 1)": float(vc["g"]),
                    "seconds": time.perf_counter() - t,
                }
            )
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    print(table.round(3).to_string(index=False))
    err = table["error %"].abs()
    print(f"|error| <= 20 %: {(err <= 20).sum()} of {len(table)}; largest {err.max():.0f} %")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
