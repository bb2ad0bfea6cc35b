"""Coverage of MixedMLRegressor's prediction intervals (``predict(X, interval=...)``).

Cases (HistGradientBoosting inside MixedML, level ``--level``):

* ``longitudinal``: ``simulate_longitudinal(--subjects, 15, seed)``, random part
  ``(1 + x2_x5 + x4_x7 + x6_x8 || individus)``; 80 % of the subjects are known: a random
  80 % of their first 10 visits train, the other 20 % test ("held-out visits"), and their
  last 5 visits test as a forecast (later times than any training row: a covariate
  shift the training rows cannot calibrate); new subjects: the other 20 %, their first
  10 visits (the training rows' times) tested, their last 5 reported apart as a
  forecast; dynamic: the new subjects' first 3 visits given as ``y``, visits 3-9 tested
  (10-14 apart, a forecast), and 3 random visits of the first 10 given, the other 7
  tested (no extrapolation in time);
* ``heavy``: row-level covariates ``x1..x5 ~ U(0, 1)``,
  ``y = f(x) + b_g + e`` with ``b_g ~ N(0, 1)`` and Student-t noise with 3 degrees of
  freedom (variance 1 after scaling), 300 groups of 12 rows; known groups: 8 rows train,
  4 test; new groups: 60 more groups;
* ``insteval``: lme4's InstEval, ``(1 | s) + (1 | d) + (1 | dept)``, features
  ``studage, lectage, service``: a random 80/20 split of ``--insteval-rows`` rows (test
  rows mostly of known students and lecturers).

Coverage is the share of test outcomes inside ``[lower, upper]``; the mean width is
reported too.  Run::

    .venv/bin/python bench/mixedml_intervals.py [--subjects 200] [--level 0.95]
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
from pylmer.data.simulate import simulate_longitudinal

RE = "(1 + x2_x5 + x4_x7 + x6_x8 || individus)"
FEATURES = [f"x{k}_obs" for k in range(1, 9)]


def coverage(frame: pd.DataFrame, y: np.ndarray) -> tuple[float, float, int]:
    inside = (y >= frame["lower"].to_numpy()) & (y <= frame["upper"].to_numpy())
    return float(inside.mean()), float((frame["upper"] - frame["lower"]).mean()), len(y)


def heavy_data(n_groups: int, per: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    X = rng.uniform(0, 1, (len(g), 5))
    f = 10 * np.sin(np.pi * X[:, 0] * X[:, 1]) + 20 * (X[:, 2] - 0.5) ** 2 + 10 * X[:, 3]
    b = rng.normal(0, 1, n_groups)
    e = rng.standard_t(3, len(g)) / np.sqrt(3.0)  # variance 1
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(5)])
    df["g"] = g
    return df, f + b[g] + e


def case_longitudinal(args, est) -> list[dict]:
    rng = np.random.default_rng(args.seed)
    df = simulate_longitudinal(args.subjects, 15, seed=args.seed)
    subjects = df["individus"].unique()
    new = set(rng.choice(subjects, size=len(subjects) // 5, replace=False))
    is_new = df["individus"].isin(new)
    held = rng.random(len(df)) < 0.2
    train = df[~is_new & (df.temps < 10) & ~held]
    known = df[~is_new & (df.temps < 10) & held]
    later = df[~is_new & (df.temps >= 10)]
    fresh = df[is_new]
    cols = ["individus", *FEATURES, "x2_x5", "x4_x7", "x6_x8"]
    m = MixedMLRegressor(est, random_effects=RE, features=FEATURES)
    m.fit(train[cols], train["y_mixed_obs"])
    out = []
    window = (fresh.temps < 10).to_numpy()  # the training rows' times
    parts = (
        ("known subjects, held-out visits", known),
        ("new subjects", fresh[window]),
        ("known subjects, later visits (forecast)", later),
        ("new subjects, later visits (forecast)", fresh[~window]),
    )
    for name, part in parts:
        pi = m.predict(part[cols], interval="prediction", level=args.level)
        out.append((name, *coverage(pi, part["y_mixed_obs"].to_numpy())))
    seen = fresh["y_mixed_obs"].where(fresh.temps < 3)
    pi = m.predict(fresh[cols], y=seen, interval="prediction", level=args.level)
    given = (fresh.temps < 3).to_numpy()
    for name, rows in (
        ("new subjects, first 3 visits given (dynamic), visits 3-9", ~given & window),
        ("new subjects, first 3 visits given, later visits (forecast)", ~window),
    ):
        out.append((name, *coverage(pi[rows], fresh["y_mixed_obs"][rows].to_numpy())))
    # 3 random visits of the first 10 given (no extrapolation in time), the other 7 tested
    pick = np.zeros(len(fresh), dtype=bool)
    for _, idx in fresh.groupby("individus").indices.items():
        inside = idx[window[idx]]
        pick[rng.choice(inside, size=3, replace=False)] = True
    seen = fresh["y_mixed_obs"].where(pick)
    pi = m.predict(fresh[cols], y=seen, interval="prediction", level=args.level)
    rows = ~pick & window
    out.append(
        (
            "new subjects, 3 random visits given (dynamic), the other 7",
            *coverage(pi[rows], fresh["y_mixed_obs"][rows].to_numpy()),
        )
    )
    return [dict(zip(("rows", "coverage", "width", "n"), o, strict=True)) | _sig(m) for o in out]


def _sig(m) -> dict:
    c = m.calibration_
    return {"sigma2": c.sigma2, "sigma2_lme4": c.sigma2_lme4}


def case_heavy(args, est) -> list[dict]:
    df, y = heavy_data(args.groups + 60, 12, args.seed)
    is_new = df["g"] >= args.groups
    first = (np.arange(len(df)) % 12) < 8
    tr = ~is_new & first
    m = MixedMLRegressor(est, random_effects="(1 | g)").fit(df[tr], y[tr])
    out = []
    for name, rows in (("known groups", ~is_new & ~first), ("new groups", is_new)):
        pi = m.predict(df[rows], interval="prediction", level=args.level)
        out.append(
            {
                "rows": name,
                **dict(zip(("coverage", "width", "n"), coverage(pi, y[rows]), strict=True)),
            }
            | _sig(m)
        )
    return out


def case_insteval(args, est) -> list[dict]:
    import pylmer

    d = pylmer.datasets.load("InstEval")
    rng = np.random.default_rng(args.seed)
    d = d.iloc[rng.choice(len(d), size=args.insteval_rows, replace=False)].reset_index(drop=True)
    for c in ("studage", "lectage", "service"):
        d[c] = d[c].cat.codes.astype(float)
    test = rng.random(len(d)) < 0.2
    cols = ["s", "d", "dept", "studage", "lectage", "service"]
    m = MixedMLRegressor(est, random_effects="(1 | s) + (1 | d) + (1 | dept)")
    y = d["y"].to_numpy(dtype=float)
    m.fit(d.loc[~test, cols], y[~test])
    pi = m.predict(d.loc[test, cols], interval="prediction", level=args.level)
    return [
        {
            "rows": "test rows (random 20 %)",
            **dict(zip(("coverage", "width", "n"), coverage(pi, y[test]), strict=True)),
        }
        | _sig(m)
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, default=200)
    p.add_argument("--groups", type=int, default=300)
    p.add_argument("--insteval-rows", type=int, default=20000)
    p.add_argument("--level", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=1, help="seeds seed..seed+N-1, pooled")
    p.add_argument("--cases", default="longitudinal,heavy,insteval")
    p.add_argument("--estimators", default="hgb,rf")
    args = p.parse_args()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    estimators = {
        "hgb": lambda: HistGradientBoostingRegressor(random_state=0),
        "rf": lambda: RandomForestRegressor(100, min_samples_leaf=5, random_state=0, n_jobs=1),
    }
    rows = []
    first = args.seed
    for seed in range(first, first + args.seeds):
        args.seed = seed
        for case in args.cases.split(","):
            for name in args.estimators.split(","):
                t = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    out = globals()[f"case_{case}"](args, estimators[name]())
                for r in out:
                    r = {
                        "seed": seed,
                        "case": case,
                        "estimator": name,
                        **r,
                        "seconds": time.perf_counter() - t,
                    }
                    rows.append(r)
                    print(r, flush=True)
    table = pd.DataFrame(rows)
    print(f"\nlevel {args.level}")
    print(table.round(3).to_string(index=False))
    # pooled over seeds: coverage weighted by test rows, seed-to-seed spread
    pooled = table.groupby(["case", "rows", "estimator"], sort=False).apply(
        lambda d: pd.Series(
            {
                "n_test": d["n"].sum(),
                "coverage": np.average(d["coverage"], weights=d["n"]),
                "seed_sd": d["coverage"].std(ddof=1) if len(d) > 1 else np.nan,
                "width": np.average(d["width"], weights=d["n"]),
                "sigma2": d["sigma2"].mean(),
            }
        ),
        include_groups=False,
    )
    print(f"\npooled over seeds {first}..{first + args.seeds - 1}")
    print(pooled.round(3).to_string())
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
