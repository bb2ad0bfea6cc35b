"""Benchmark: MixedMLRegressor (pylmer, lme4) against MERF 1.0 with the same random forest.

Simulated grouped data (``--groups`` groups, 20 rows each, made here with numpy)::

    y = f(x1..x5) + b0_g + b1_g * z + noise,    (b0_g, b1_g) ~ N(0, diag(2^2, 2^2)),
    f = 10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 10 x4 + 5 x5  (Friedman #1),
    x ~ U(0, 1) per row,  z = t / 19 for the rows t = 0..19 of a group,  noise ~ N(0, 1).

The first 15 rows of every group train, its 5 later rows test (same groups, later ``z``).
Every model gets the same base learner, a ``--trees``-tree random forest (one thread, fixed
seed) on ``x1..x5, z``; the random part is a correlated random intercept and slope of ``z``
(MERF: ``Z = [1, z]``; MixedML: ``(1 + z | g)``). Test MSE is against the observed ``y``.

* MERF runs with its defaults (20 EM iterations, no early stopping);
* MixedML runs with ``tol=0.05`` and ``max_iter=20`` (MERF's budget; ``--tol``,
  ``--max-iter``), SQUAREM acceleration on, once with ``residuals="in_sample"`` and once
  with ``residuals="oof"`` (``--cv`` group folds, default 5);
* R and lme4 are started before any timing.

Why not MixedML's default ``tol=1e-4``: a random forest refit is not a smooth function of
its target, so the EM iterates settle at a noise floor where ``u`` still moves by a few
per cent between iterations (``history_["max_delta_u"]``); ``tol=1e-4`` is never reached
and the loop runs to ``max_iter`` (50). The test MSE is flat once the floor is reached, so
``tol=0.05`` ("u changes by less than 5 % of its largest value") stops in the plateau.
``--tol 1e-4 --max-iter 50`` runs MixedML's defaults.

``RE share`` is the share of MixedML's wall time spent in the random-effects step of the
iterations (``history_["seconds_re"]``: the lme4 refit and the vector conversions);
``other`` is what is neither ML fits nor RE steps (input checks, binding the data, the
final :func:`pylmer.lmer` fit that builds ``lmer_``). Run::

    .venv/bin/python bench/mixedml.py --groups 500 --trees 100 --seed 0
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import warnings
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from sklearn.ensemble import RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning

import pylmer
from pylmer import MixedMLRegressor

FEATURES = ["x1", "x2", "x3", "x4", "x5", "z"]
N_TRAIN, N_TEST = 15, 5


def make_data(groups: int, seed: int) -> pd.DataFrame:
    """Grouped data with a random intercept and a random slope of ``z``.

    Parameters
    ----------
    groups : int
        Number of groups (20 rows each).
    seed : int
        Seed of :func:`numpy.random.default_rng`.

    Returns
    -------
    DataFrame
        Columns ``g, t, x1..x5, z, y`` and the boolean ``train`` (``t < 15``).
    """
    rng = np.random.default_rng(seed)
    n_rows = N_TRAIN + N_TEST
    n = groups * n_rows
    x = rng.uniform(0.0, 1.0, size=(n, 5))
    g = np.repeat(np.arange(groups), n_rows)
    t = np.tile(np.arange(n_rows), groups)
    z = t / (n_rows - 1)
    f = (
        10 * np.sin(np.pi * x[:, 0] * x[:, 1])
        + 20 * (x[:, 2] - 0.5) ** 2
        + 10 * x[:, 3]
        + 5 * x[:, 4]
    )
    b = rng.normal(0.0, 2.0, size=(groups, 2))
    y = f + b[g, 0] + b[g, 1] * z + rng.normal(0.0, 1.0, n)
    df = pd.DataFrame(x, columns=FEATURES[:5])
    df.insert(0, "t", t)
    df.insert(0, "g", g)
    df["z"] = z
    df["y"] = y
    df["train"] = t < N_TRAIN
    return df


def forest(trees: int, seed: int) -> RandomForestRegressor:
    """The base learner shared by all models."""
    return RandomForestRegressor(n_estimators=trees, random_state=seed, n_jobs=1)


def mse(a: Any, b: Any) -> float:
    """Mean squared error."""
    return float(np.mean((np.asarray(a, float) - np.asarray(b, float)) ** 2))


def run_forest(train: pd.DataFrame, test: pd.DataFrame, trees: int, seed: int) -> dict:
    """Plain random forest (no random effects)."""
    start = time.perf_counter()
    rf = forest(trees, seed).fit(train[FEATURES], train["y"])
    seconds = time.perf_counter() - start
    return {"model": "random forest", "seconds": seconds, "iterations": 1,
            "test_mse": mse(rf.predict(test[FEATURES]), test["y"])}  # fmt: skip


def run_merf(train: pd.DataFrame, test: pd.DataFrame, trees: int, seed: int) -> dict:
    """MERF 1.0 with its default EM settings."""
    from merf import MERF

    def z_of(d: pd.DataFrame) -> np.ndarray:
        return np.column_stack([np.ones(len(d)), d["z"].to_numpy()])

    start = time.perf_counter()
    model = MERF(forest(trees, seed))
    model.fit(train[FEATURES], z_of(train), train["g"], train["y"].to_numpy())
    seconds = time.perf_counter() - start
    pred = model.predict(test[FEATURES], z_of(test), test["g"])
    return {"model": "MERF 1.0", "seconds": seconds, "iterations": len(model.gll_history),
            "test_mse": mse(pred, test["y"])}  # fmt: skip


def run_mixedml(
    train: pd.DataFrame, test: pd.DataFrame, args: argparse.Namespace, residuals: str
) -> dict:
    """MixedMLRegressor with the given residuals."""
    columns = ["g", *FEATURES]
    model = MixedMLRegressor(
        forest(args.trees, args.seed),
        random_effects="(1 + z | g)",
        residuals=residuals,
        cv=args.cv,
        tol=args.tol,
        max_iter=args.max_iter,
    )
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(train[columns], train["y"])
    seconds = time.perf_counter() - start
    h = model.history_
    ml, re = float(h["seconds_ml"].sum()), float(h["seconds_re"].sum())
    return {
        "model": f'MixedML (residuals="{residuals}")',
        "seconds": seconds,
        "iterations": model.n_iter_,
        "test_mse": mse(model.predict(test[columns]), test["y"]),
        "converged": model.converged_,
        "re_share": re / seconds,
        "other_share": (seconds - ml - re) / seconds,
        "re_per_iter": re / len(h),
        "ml_per_iter": ml / len(h),
        "warnings": sorted({str(w.message).split(";")[0] for w in caught}),
    }


def table(rows: list[dict], merf: dict) -> str:
    """Markdown table; ratios are relative to MERF."""
    lines = [
        "| model | wall s | iterations | s / iteration (ML + RE) | RE share | test MSE "
        "| time / MERF | MSE / MERF |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        per_iter = f"{r['ml_per_iter']:.2f} + {r['re_per_iter']:.2f}" if "re_per_iter" in r else ""
        share = f"{100 * r['re_share']:.1f} %" if "re_share" in r else ""
        lines.append(
            f"| {r['model']} | {r['seconds']:.1f} | {r['iterations']} | {per_iter} | {share} "
            f"| {r['test_mse']:.3f} | {r['seconds'] / merf['seconds']:.2f} "
            f"| {r['test_mse'] / merf['test_mse']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=500, help="number of groups")
    parser.add_argument("--trees", type=int, default=100, help="trees of the random forest")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and forests")
    parser.add_argument("--tol", type=float, default=0.05, help="MixedML tol (0.05)")
    parser.add_argument("--max-iter", type=int, default=20, help="MixedML max_iter (20)")
    parser.add_argument("--cv", type=int, default=5, help='folds of residuals="oof" (5)')
    args = parser.parse_args(argv)

    versions = pylmer.versions()  # starts R and loads lme4 outside the timings
    import merf  # noqa: F401  (import time outside the timings too)

    # `import merf` calls logging.basicConfig(level=INFO): MERF would log every iteration
    logging.getLogger().setLevel(logging.WARNING)

    df = make_data(args.groups, args.seed)
    train, test = df[df["train"]], df[~df["train"]]
    load_before = os.getloadavg()
    results = [run_forest(train, test, args.trees, args.seed)]
    merf_result = run_merf(train, test, args.trees, args.seed)
    results.append(merf_result)
    for residuals in ("in_sample", "oof"):
        results.append(run_mixedml(train, test, args, residuals))
    load_after = os.getloadavg()

    print(
        f"{args.groups} groups x {N_TRAIN} train / {N_TEST} test rows, "
        f"{args.trees}-tree random forest (1 thread), seed {args.seed}; MixedML tol={args.tol:g}, "
        f"max_iter={args.max_iter}, cv={args.cv}; MERF defaults (20 iterations)"
    )
    print(", ".join(f"{k} {v}" for k, v in versions.items()))
    print(
        f"MERF {metadata.version('merf')} runs unpatched with numpy {np.__version__}, "
        f"pandas {pd.__version__}, scikit-learn {sklearn.__version__}"
    )
    print(
        "load average (1, 5, 15 min): before "
        + " ".join(f"{v:.2f}" for v in load_before)
        + ", after "
        + " ".join(f"{v:.2f}" for v in load_after)
        + f"; {os.cpu_count()} CPUs"
    )
    print()
    print(table(results, merf_result))
    print()
    for r in results:
        if "re_share" in r:
            print(
                f"{r['model']}: converged={r['converged']}, RE steps {100 * r['re_share']:.1f} % "
                "of wall time, other (setup, final lmer; oof: the one full-data fit) "
                f"{100 * r['other_share']:.1f} %"
                + (f"; warnings: {r['warnings']}" if r["warnings"] else "")
            )


if __name__ == "__main__":
    main()
