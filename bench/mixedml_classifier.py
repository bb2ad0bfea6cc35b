"""Benchmark: MixedMLClassifier against a forest alone, glmer and GPBoost (binary outcomes).

Generator (numpy, ``--subjects`` subjects observed at 20 times each, ``--seed``)::

    logit P(y = 1) = f(x1..x5) + b0_s + b1_s * t
    f = 3 sin(pi x1 x2) + 4 (x3 - 0.5)^2 + 2 x4 * 1{x5 > 0.5} - 2.2  (nonlinear, with
        an interaction and a threshold),
    x1..x5 ~ U(0, 1) per row,   t = time / 19 for the times 0..19 of a subject,
    (b0_s, b1_s) ~ N(0, [[1.0, 0.3 * 1.0 * 1.5], [., 1.5^2]])  (random intercept and a
        random slope of t, correlated 0.3),
    y ~ Bernoulli(logistic(eta)).

The first 14 times of every subject train; its 6 later times test (the same subjects at
later t, so the random slopes matter).  Test metrics: log-loss and AUC of the predicted
probabilities of the test rows against their observed y; wall time of fit + predict.

Models, all in one run (same data, R and lme4 started before any timing):

* ``RandomForestClassifier`` alone on ``x1..x5, t`` (no subject): ``--trees`` trees,
  ``min_samples_leaf=20`` (leaf frequencies of 20 rows: calibrated enough for a log-loss);
* ``glmer`` with a linear fixed part: ``y ~ x1 + x2 + x3 + x4 + x5 + t + (1 + t | s)``
  (pylmer.glmer, Laplace); test rows predicted with the subjects' conditional modes;
* GPBoost (``gpboost``): tree boosting with a Bernoulli-logit likelihood and grouped
  random effects (intercept and random coefficient of t per subject), ``--rounds``
  rounds, learning rate 0.1, ``max_depth=3``, ``min_data_in_leaf=40`` (no tuning, the
  same settings as the HistGradientBoosting below), predicted response with the
  subjects' random effects (GPBoost's grouped random coefficients are independent of the
  intercept: it cannot fit the generating correlation 0.3);
* ``MixedMLClassifier(RandomForestRegressor(...), random_effects="(1 + t | s)")`` with
  the forest's settings (out-of-bag residuals, ``residuals="auto"``) and ``tol=0.01``;
  each MixedML fit is scored twice: ``predict_proba`` (probabilities averaged over the
  random effects' conditional distribution, the default) and ``predict_proba(...,
  integrate=False)`` (at the conditional modes);
* ``MixedMLClassifier(HistGradientBoostingRegressor(max_iter=--rounds, learning_rate=0.1,
  max_depth=3, min_samples_leaf=40), residuals="oof")``: GPBoost's boosting settings, with
  out-of-fold fixed-part predictions (5 folds by subject).  Why ``"oof"``: with in-sample
  predictions the boosted trees fit the rows' working-response noise, glmer sees too
  little left between subjects, and the slope variance collapsed (measured: 0.16 for a
  generating 2.25, fit singular, test log-loss 0.528 instead of 0.524).

Why ``tol=0.01`` for MixedML: a tree ensemble is not a smooth function of its target, so
the iterates settle in a noise band (the engine's ``"stationary"`` rule or ``tol`` stop
them).  Run::

    .venv/bin/python bench/mixedml_classifier.py --subjects 300 --seed 0
"""

from __future__ import annotations

import argparse
import time
import warnings
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.ensemble import (
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

import pylmer
from pylmer import MixedMLClassifier

FEATURES = ["x1", "x2", "x3", "x4", "x5", "t"]
N_TIMES, N_TRAIN = 20, 14


def fixed_part(x: np.ndarray) -> np.ndarray:
    """The nonlinear fixed part f on the logit scale."""
    x1, x2, x3, x4, x5 = x.T
    return 3.0 * np.sin(np.pi * x1 * x2) + 4.0 * (x3 - 0.5) ** 2 + 2.0 * x4 * (x5 > 0.5) - 2.2


def make_data(subjects: int, seed: int) -> pd.DataFrame:
    """Grouped binary data (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n = subjects * N_TIMES
    s = np.repeat(np.arange(subjects), N_TIMES)
    time_ = np.tile(np.arange(N_TIMES), subjects)
    t = time_ / (N_TIMES - 1)
    x = rng.uniform(size=(n, 5))
    sd0, sd1, rho = 1.0, 1.5, 0.3
    cov = np.array([[sd0**2, rho * sd0 * sd1], [rho * sd0 * sd1, sd1**2]])
    b = rng.multivariate_normal(np.zeros(2), cov, size=subjects)
    eta = fixed_part(x) + b[s, 0] + b[s, 1] * t
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(int)
    frame = pd.DataFrame(x, columns=FEATURES[:5])
    frame["t"] = t
    frame["s"] = [f"s{i:04d}" for i in s]
    frame["time"] = time_
    frame["y"] = y
    frame["p_true"] = 1 / (1 + np.exp(-eta))
    return frame


def run_forest(train, test, args) -> np.ndarray:
    rf = RandomForestClassifier(
        n_estimators=args.trees, min_samples_leaf=20, n_jobs=1, random_state=args.seed
    )
    rf.fit(train[FEATURES], train["y"])
    return rf.predict_proba(test[FEATURES])[:, 1]


def run_glmer(train, test, args) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = pylmer.glmer("y ~ x1 + x2 + x3 + x4 + x5 + t + (1 + t | s)", train, "binomial")
    return m.predict(test, type="response").to_numpy(dtype=float)


def run_gpboost(train, test, args) -> np.ndarray:
    import gpboost as gpb

    model = gpb.GPModel(
        group_data=train[["s"]].to_numpy(),
        group_rand_coef_data=train[["t"]].to_numpy(),
        ind_effect_group_rand_coef=[1],
        likelihood="bernoulli_logit",
    )
    data = gpb.Dataset(train[FEATURES].to_numpy(), train["y"].to_numpy())
    params = {
        "learning_rate": 0.1,
        "max_depth": 3,
        "min_data_in_leaf": 40,
        "num_threads": 1,
        "verbose": -1,
    }
    booster = gpb.train(params=params, train_set=data, gp_model=model, num_boost_round=args.rounds)
    pred = booster.predict(
        data=test[FEATURES].to_numpy(),
        group_data_pred=test[["s"]].to_numpy(),
        group_rand_coef_data_pred=test[["t"]].to_numpy(),
        predict_var=False,
        pred_latent=False,
    )
    return np.asarray(pred["response_mean"], dtype=float)


def run_mixedml(
    estimator: Any, train, test, args, residuals: str = "auto"
) -> tuple[dict[str, np.ndarray], MixedMLClassifier]:
    """Test probabilities averaged over the random effects (the default) and at their
    conditional modes (``integrate=False``), from one fit."""
    model = MixedMLClassifier(
        estimator,
        random_effects="(1 + t | s)",
        features=FEATURES,
        tol=args.tol,
        max_iter=args.max_iter,
        residuals=residuals,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(train[[*FEATURES, "s"]], train["y"])
    X = test[[*FEATURES, "s"]]
    return {
        "": model.predict_proba(X)[:, 1],
        " (at the modes)": model.predict_proba(X, integrate=False)[:, 1],
    }, model


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |observed share - mean prediction| over quantile bins, weighted by bin size."""
    order = np.argsort(p)
    chunks = np.array_split(order, bins)
    return float(sum(len(c) * abs(y[c].mean() - p[c].mean()) for c in chunks) / len(p))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--tol", type=float, default=0.01)
    parser.add_argument("--max-iter", type=int, default=30)
    parser.add_argument("--skip", nargs="*", default=[], help="models to leave out")
    args = parser.parse_args()

    data = make_data(args.subjects, args.seed)
    train = data[data["time"] < N_TRAIN].reset_index(drop=True)
    test = data[data["time"] >= N_TRAIN].reset_index(drop=True)
    pylmer.glmer("y ~ t + (1 | s)", train.head(200), "binomial")  # start R, load lme4

    rf = RandomForestRegressor(
        n_estimators=args.trees, min_samples_leaf=20, n_jobs=1, random_state=args.seed
    )
    hgb = HistGradientBoostingRegressor(
        max_iter=args.rounds,
        learning_rate=0.1,
        max_depth=3,
        min_samples_leaf=40,
        random_state=args.seed,
    )
    runs = {
        "RandomForestClassifier alone": lambda: (run_forest(train, test, args), None),
        "glmer, linear fixed part": lambda: (run_glmer(train, test, args), None),
        "GPBoost (bernoulli, RE int+slope)": lambda: (run_gpboost(train, test, args), None),
        "MixedMLClassifier + RandomForest": lambda: run_mixedml(rf, train, test, args),
        "MixedMLClassifier + HistGradientBoosting": lambda: run_mixedml(
            hgb, train, test, args, "oof"
        ),
    }
    y = test["y"].to_numpy()
    rows = []
    for name, fn in runs.items():
        if any(k.lower() in name.lower() for k in args.skip):
            continue
        t0 = time.perf_counter()
        p, model = fn()
        wall = time.perf_counter() - t0
        for suffix, prob in p.items() if isinstance(p, dict) else [("", p)]:
            row = {
                "model": name + suffix,
                "log_loss": log_loss(y, np.clip(prob, 1e-15, 1 - 1e-15)),
                "auc": roc_auc_score(y, prob),
                "brier": brier_score_loss(y, prob),
                "ece": expected_calibration_error(y, prob),
                "curve": calibration_curve(y, prob, n_bins=10, strategy="quantile"),
                "seconds": wall,
                "iterations": "" if model is None else f"{model.n_iter_} ({model.stop_reason_})",
            }
            rows.append(row)
            print(
                f"{name + suffix:<42} log-loss {row['log_loss']:.4f}  AUC {row['auc']:.4f}  "
                f"Brier {row['brier']:.4f}  ECE {row['ece']:.4f}  {wall:7.1f} s  "
                f"{row['iterations']}",
                flush=True,
            )
    oracle = log_loss(y, test["p_true"])
    table = pd.DataFrame(rows).set_index("model")
    print()
    print(
        f"{args.subjects} subjects x {N_TIMES} times ({len(train)} train rows, {len(test)} "
        f"test rows: the last {N_TIMES - N_TRAIN} times), seed {args.seed}; log-loss of the "
        f"true probabilities {oracle:.4f}"
    )
    print(
        f"true probabilities: Brier {brier_score_loss(y, test['p_true']):.4f}, "
        f"ECE {expected_calibration_error(y, test['p_true'].to_numpy()):.4f}"
    )
    print("| model | test log-loss | test AUC | Brier | ECE | wall s | EM steps |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, r in table.iterrows():
        print(
            f"| {name} | {r['log_loss']:.4f} | {r['auc']:.4f} | {r['brier']:.4f} | "
            f"{r['ece']:.4f} | {r['seconds']:.1f} | {r['iterations']} |"
        )
    print("\ncalibration curves (10 quantile bins: mean predicted -> observed share)")
    for name, r in table.iterrows():
        frac, mean = r["curve"]
        pairs = "  ".join(f"{m:.2f}->{f:.2f}" for f, m in zip(frac, mean, strict=True))
        print(f"{name:<42} {pairs}")
    versions = {p: metadata.version(p) for p in ("scikit-learn", "gpboost")}
    print(
        "versions:",
        versions,
        "R:",
        pylmer.versions().get("R") if hasattr(pylmer, "versions") else "",
    )


if __name__ == "__main__":
    main()
