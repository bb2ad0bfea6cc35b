"""MixedML on synthetic longitudinal data: random effects on top of scikit-learn models.

The analysis of seed 000 (the mixedML framework, Kilian et al. 2023) on
``simulate_longitudinal(seed=0)``: 500 subjects observed at 26 times, an outcome
``y_mixed_obs`` made of a nonlinear function of 8 covariates plus subject-specific random
coefficients on ``x2_x5``, ``x4_x7`` and ``x6_x8`` (noise sd 1, so the best possible test
MSE is about 1).

Train on the times ``temps < 20`` of every subject, test on their later times (a
forecast for known subjects).  Each regressor is fitted alone and wrapped in
``MixedMLRegressor(random_effects="(1 + x2_x5 + x4_x7 + x6_x8 || individus)")`` with
MixedML's defaults (its stopping rule; for the bagged forest ``residuals="auto"`` uses
out-of-bag predictions, so that the forest cannot absorb the subject effects); the random
forest also with out-of-fold residuals (``residuals="oof"``, folds by subject).  Prints a
table of test MSE and fit seconds, and writes the convergence trace, a few subjects'
trajectories and the estimated against the true random effects.

Run: ``python examples/mixedml_longitudinal.py [--out out] [--quick]`` (about 40 s;
``--quick``: 100 subjects and smaller models, a few seconds).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression

from pylmer import MixedMLRegressor, datasets, plot

FEATURES = [f"x{k}_obs" for k in range(1, 9)]
RANDOM = "(1 + x2_x5 + x4_x7 + x6_x8 || individus)"
RE_TERMS = ["(Intercept)", "x2_x5", "x4_x7", "x6_x8"]
TARGET = "y_mixed_obs"
CUTOFF = 20


def estimators(quick: bool) -> dict[str, object]:
    """The three regressors, modest enough to keep the whole example under a minute."""
    return {
        "linear": LinearRegression(),
        "random_forest": RandomForestRegressor(
            n_estimators=20 if quick else 30,
            min_samples_leaf=10,
            max_features=0.5,
            max_samples=0.3,
            n_jobs=2,
            random_state=0,
        ),
        "hist_gradient_boosting": HistGradientBoostingRegressor(
            max_iter=50 if quick else 100, random_state=0
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="folder for the PNG figures (out)")
    parser.add_argument("--quick", action="store_true", help="100 subjects, smaller models")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulation (0)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    df = datasets.simulate_longitudinal(100 if args.quick else 500, seed=args.seed)
    columns = [*FEATURES, "x2_x5", "x4_x7", "x6_x8", "individus"]
    train, test = df[df["temps"] < CUTOFF], df[df["temps"] >= CUTOFF]
    print(
        f"simulate_longitudinal(seed={args.seed}): {df['individus'].nunique()} subjects x "
        f"{df['temps'].nunique()} times; train temps < {CUTOFF} ({len(train)} rows), "
        f"test temps >= {CUTOFF} ({len(test)} rows)"
    )
    # MixedML's defaults (max_iter=100, its stopping rule); --quick caps the steps
    limits = {"max_iter": 12} if args.quick else {}

    runs: list[tuple[str, str, object]] = []
    for name, est in estimators(args.quick).items():
        runs.append((name, "alone", est))
        runs.append(
            (
                name,
                "MixedML",
                MixedMLRegressor(est, random_effects=RANDOM, features=FEATURES, **limits),
            )
        )
        if name == "random_forest":
            runs.append(
                (
                    name,
                    "MixedML oof",
                    MixedMLRegressor(
                        est,
                        random_effects=RANDOM,
                        features=FEATURES,
                        residuals="oof",
                        cv=3,
                        **limits,
                    ),
                )
            )
    rows, fitted = [], {}
    for name, kind, model in runs:
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            if kind == "alone":
                model.fit(train[FEATURES], train[TARGET])
                pred = model.predict(test[FEATURES])
            else:
                model.fit(train[columns], train[TARGET])
                pred = model.predict(test[columns])
        seconds = time.perf_counter() - t0
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        rows.append(
            {
                "estimator": name,
                "model": kind,
                "test MSE": float(np.mean((test[TARGET].to_numpy() - pred) ** 2)),
                "fit seconds": seconds,
                "iterations": getattr(model, "n_iter_", np.nan) if kind != "alone" else np.nan,
                "stop": getattr(model, "stop_reason_", ""),
                "converged": "" if kind == "alone" else ("yes" if converged else "no"),
            }
        )
        fitted[(name, kind)] = (model, pred)
        print(f"  {name:<23} {kind:<12} test MSE {rows[-1]['test MSE']:8.3f}  {seconds:5.1f} s")
    table = pd.DataFrame(rows)
    print("\nTest MSE on the later times (irreducible noise variance: 1.0):")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep=""))
    for row in table.itertuples():
        print(f"KEY {row.estimator} {row.model}: test MSE {row[3]:.3f}, fit {row[4]:.1f} s")

    best = table.loc[table["model"] != "alone"].sort_values("test MSE").iloc[0]
    best_model, _ = fitted[(best["estimator"], best["model"])]
    truth = pd.DataFrame(df.attrs["random_effects"])
    estimated = best_model.ranef_["individus"].copy()
    estimated.index = estimated.index.astype(truth.index.dtype)
    corr = {t: np.corrcoef(estimated[t], truth.loc[estimated.index, t])[0, 1] for t in RE_TERMS}
    print(f"\nBest: {best['estimator']} {best['model']}; estimated vs true random effects:")
    print(
        "KEY correlation with the true random effects: "
        + ", ".join(f"{t} {c:.3f}" for t, c in corr.items())
    )
    print(
        "Variance components (true sd: "
        + ", ".join(f"{t} {v:g}" for t, v in df.attrs["re_sd"].items())
        + "):"
    )
    print(best_model.varcorr_.to_string(index=False))

    figures = []
    trace_model, _ = fitted[("random_forest", "MixedML oof")]
    fig = plot.convergence_trace(trace_model)
    fig.suptitle("MixedML (random forest, out-of-fold residuals): convergence")
    fig.tight_layout()
    figures.append(_save(fig, out / "mixedml_convergence.png"))
    figures.append(_save(_trajectories(df, fitted, columns), out / "mixedml_trajectories.png"))
    figures.append(_save(_random_effects(estimated, truth, best), out / "mixedml_ranef.png"))
    print(f"\nfigures: {', '.join(str(f) for f in figures)}")
    print(f"done in {time.perf_counter() - start:.1f} s")


def _trajectories(df: pd.DataFrame, fitted: dict, columns: list[str]):
    subjects = df["individus"].unique()[:6]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6), sharex=True)
    forest, _ = fitted[("random_forest", "alone")]
    mixed, _ = fitted[("random_forest", "MixedML oof")]
    for ax, subject in zip(axes.ravel(), subjects, strict=True):
        part = df[df["individus"] == subject]
        ax.scatter(part["temps"], part[TARGET], s=12, color="k", label="observed")
        ax.plot(
            part["temps"], forest.predict(part[FEATURES]), color="C1", label="random forest alone"
        )
        ax.plot(
            part["temps"],
            mixed.predict(part[columns]),
            color="C0",
            label="random forest + MixedML (oof)",
        )
        ax.axvline(CUTOFF - 0.5, color="grey", ls=":", lw=1)
        ax.set_title(f"subject {subject}", fontsize=10)
    axes[0, 0].legend(fontsize=7)
    fig.supxlabel("temps (dotted line: end of training)")
    fig.supylabel(TARGET)
    fig.tight_layout()
    return fig


def _random_effects(estimated: pd.DataFrame, truth: pd.DataFrame, best: pd.Series):
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.6))
    for ax, term in zip(axes, RE_TERMS, strict=True):
        x = truth.loc[estimated.index, term]
        ax.scatter(x, estimated[term], s=6, alpha=0.5)
        lims = [min(x.min(), estimated[term].min()), max(x.max(), estimated[term].max())]
        ax.plot(lims, lims, color="grey", ls=":", lw=1)
        ax.set_title(term)
        ax.set_xlabel("true")
    axes[0].set_ylabel("estimated")
    fig.suptitle(f"Random effects: {best['estimator']} {best['model']} vs the simulation")
    fig.tight_layout()
    return fig


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
