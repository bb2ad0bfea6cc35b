"""Do MixedML's variance components mean something with a random forest?

On ``simulate_longitudinal(500, 26, seed=0)`` (random part
``(1 + x2_x5 + x4_x7 + x6_x8 || individus)``, generating variances 9, 0.25, 1, 0.25 and
residual 1), fit MixedML with a default ``RandomForestRegressor`` on ``x1_obs..x8_obs``
and report the estimated components against the generating ones, for:

* ``residuals="in_sample"`` (the forest interpolates its rows and absorbs the effects),
* ``residuals="oob"`` (the default for bagged forests: out-of-bag predictions),
* ``residuals="oof"`` (out-of-fold, folds by subject),
* the same loop with the *true* fixed part (an oracle estimator returning ``f``): the
  best any estimator can do; what it misses is not the loop's fault,
* the same forest and loop on a generator where the components are identifiable:
  covariates drawn independently per row (``--iid``), so a fixed part that cannot
  extrapolate leaves no subject-level signal for the random intercept.

Run::

    .venv/bin/python bench/mixedml_variance.py [--subjects 500] [--trees 100] [--cases ...]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import RandomForestRegressor

from pylmer import MixedMLRegressor
from pylmer.data.simulate import simulate_longitudinal

RE = "(1 + x2_x5 + x4_x7 + x6_x8 || individus)"
FEATURES = [f"x{k}_obs" for k in range(1, 9)]
SLOPES = ["x2_x5", "x4_x7", "x6_x8"]
TERMS = ["(Intercept)", *SLOPES]


class Oracle(RegressorMixin, BaseEstimator):
    """Predicts the column ``f_true`` of X: the generating fixed part."""

    def fit(self, X, y):
        return self

    def predict(self, X):
        return X["f_true"].to_numpy()


def iid_version(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Same outcome model, but every row's covariates drawn from the pooled rows at random.

    The subject-level trajectories disappear from the covariates: the fixed part is then a
    function of row-level information only, and the random effects are identifiable from
    the within-subject variation a forest cannot absorb.
    """
    rng = np.random.default_rng(seed)
    take = rng.permutation(len(df))
    out = df.copy()
    cols = [*FEATURES, *[f"x{k}" for k in range(1, 9)], *SLOPES]
    out[cols] = df[cols].to_numpy()[take]
    f = (
        2 * out["x1"]
        + 4 * np.sin(out["x2"])
        + 3 * out["x3"] * out["x4"]
        + 4 * np.abs(out["x5"] - 1)
        + 2 * out["x6"] * out["x8"]
        - 3 * np.exp(-out["x7"]) * (out["x1"] > 1.5)
    )
    b = pd.DataFrame(df.attrs["random_effects"])
    bi = b.loc[out["individus"]].to_numpy()
    zb = bi[:, 0] + bi[:, 1] * out["x2_x5"] + bi[:, 2] * out["x4_x7"] + bi[:, 3] * out["x6_x8"]
    out["y_fixed"] = f
    out["y_mixed_obs"] = f + zb + rng.normal(size=len(out))
    return out


def components(model: MixedMLRegressor) -> dict[str, float]:
    vc = model.varcorr_
    out = {}
    for _, r in vc.iterrows():
        name = "Residual" if r["group"] == "Residual" else r["var1"]
        out[name] = float(r["variance"])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, default=500)
    p.add_argument("--trees", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--cases", default="in_sample,oob,oof,oracle,iid_oob", help="comma-separated cases"
    )
    args = p.parse_args()
    df = simulate_longitudinal(args.subjects, 26, seed=args.seed)
    df["f_true"] = df["y_fixed"]
    truth = dict(zip(TERMS, np.square(list(df.attrs["re_sd"].values())), strict=True))
    truth["Residual"] = 1.0
    rows = []
    for case in args.cases.split(","):
        data = iid_version(df, args.seed + 1) if case.startswith("iid") else df
        if case == "oracle":
            est, residuals, feats = Oracle(), "in_sample", ["f_true"]
        else:
            est = RandomForestRegressor(n_estimators=args.trees, random_state=0, n_jobs=1)
            residuals = case.removeprefix("iid_")
            feats = FEATURES
        model = MixedMLRegressor(est, random_effects=RE, features=feats, residuals=residuals)
        t = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(data[["individus", *feats, *SLOPES]], data["y_mixed_obs"])
        seconds = time.perf_counter() - t
        est_vc = components(model)
        row = {"case": case, "iterations": model.n_iter_, "stop": model.stop_reason_,
               "seconds": round(seconds, 1)}  # fmt: skip
        for k, v in truth.items():
            row[k] = f"{est_vc[k]:.3g} ({100 * (est_vc[k] / v - 1):+.0f} %)"
        row["warnings"] = "; ".join(sorted({str(w.message)[:60] for w in caught}))
        rows.append(row)
        print(pd.DataFrame([row]).to_string(index=False), flush=True)
    print()
    print("generating: " + ", ".join(f"{k} {v:g}" for k, v in truth.items()))
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
