"""Sleep deprivation: correlated random intercepts and slopes, and a new participant.

The hierarchical analysis of seed 002 (done there with PyMC), with lme4 through pylmer:

1. fit ``Reaction ~ Days + (Days | Subject)`` (REML) and print the summary;
2. plot the random effects (caterpillar), each subject's data with its fitted line, and
   the residual diagnostics;
3. predict a NEW participant, held out from the fit:

   a. before any data, from the population: mean ``x'beta`` and a 95% prediction
      interval from ``Var = x' V_beta x + z' G z + sigma^2`` (fixed-effect uncertainty,
      between-subject variance ``G`` from VarCorr, residual variance);
   b. after observing their first 3 days: the conditional (empirical Bayes) random
      effects ``b = G Z' V^-1 (y - X beta)`` with their posterior variance, which
      narrows the interval; ``MixedMLRegressor.predict(X, y=...)`` gives the same
      prediction and is used as a cross-check;

4. repeat 3 for every subject (leave one subject out) and report the error and the
   coverage of both intervals on days 3-9.

Run: ``python examples/sleepstudy.py [--out out] [--subject 310]`` (about 15 s).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from statistics import NormalDist

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression

from pylmer import MixedMLRegressor, PylmerError, datasets, lmer, plot

FORMULA = "Reaction ~ Days + (Days | Subject)"
TERMS = ["(Intercept)", "Days"]
SEEN_DAYS = 3
Z95 = NormalDist().inv_cdf(0.975)


def covariance(varcorr: pd.DataFrame, group: str, terms: list[str]) -> np.ndarray:
    """The random-effects covariance matrix G of one grouping factor, from VarCorr."""
    vc = varcorr[varcorr["group"] == group]
    G = np.zeros((len(terms), len(terms)))
    for row in vc.itertuples():
        i = terms.index(row.var1)
        j = i if pd.isna(row.var2) else terms.index(row.var2)
        G[i, j] = G[j, i] = row.variance
    return G


def predict_new(model, days: np.ndarray, seen: int, observed: np.ndarray):
    """Mean and sd of the prediction for a subject not in the fit, given `seen` days.

    With the observed rows ``X_o`` (first ``seen`` days), ``V_o = X_o G X_o' + s2 I`` and
    ``K = G X_o' V_o^-1``: ``b = K (y_o - X_o beta)``, ``Var(b | y_o) = G - K X_o G`` and,
    since beta comes from the other subjects, the error of ``x'beta + x'b`` adds
    ``a' V_beta a`` with ``a = x - X_o' K' x``.  ``seen = 0`` is the population prediction.
    """
    beta = model.fixef_wald["estimate"].to_numpy()
    V_beta = model.vcov.to_numpy()
    G = covariance(model.varcorr, "Subject", TERMS)
    s2 = model.sigma**2
    X = np.column_stack([np.ones_like(days), days])
    X_o, y_o = X[:seen], observed[:seen]
    if seen:
        K = G @ X_o.T @ np.linalg.inv(X_o @ G @ X_o.T + s2 * np.eye(seen))
    else:
        K = np.zeros((2, 0))
    b = K @ (y_o - X_o @ beta)
    A = X - X @ K @ X_o
    var = (
        np.einsum("ij,jk,ik->i", A, V_beta, A)
        + np.einsum("ij,jk,ik->i", X, G - K @ X_o @ G, X)
        + s2
    )
    return X @ beta + X @ b, np.sqrt(var)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="folder for the PNG figures (out)")
    parser.add_argument("--subject", default="310", help="the held-out 'new' participant")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    data = datasets.load("sleepstudy")
    model = lmer(FORMULA, data)
    model.fixef  # noqa: B018 - adds lmerTest's Satterthwaite p-values to the summary
    print(model.summary())
    G = covariance(model.varcorr, "Subject", TERMS)
    corr = G[0, 1] / np.sqrt(G[0, 0] * G[1, 1])
    beta = model.fixef_wald["estimate"]
    print(
        f"KEY fixed effects: intercept {beta['(Intercept)']:.2f} ms, "
        f"slope {beta['Days']:.2f} ms/day"
    )
    print(
        f"KEY between-subject sd: intercept {np.sqrt(G[0, 0]):.2f} ms, slope "
        f"{np.sqrt(G[1, 1]):.2f} ms/day, correlation {corr:.3f}; residual sd {model.sigma:.2f}"
    )

    figures = []
    fig = plot.caterpillar(model, "Subject")
    figures.append(_save(fig, out / "sleepstudy_caterpillar.png"))
    fig = plot.observed_vs_fitted(model, "Subject", x="Days", ncols=6)
    figures.append(_save(fig, out / "sleepstudy_subjects.png"))
    fig = plot.diagnostics(model)
    figures.append(_save(fig, out / "sleepstudy_residuals.png"))

    # ---- a new participant: hold one subject out of the fit
    subject = str(args.subject)
    if subject not in set(data["Subject"].astype(str)):
        parser.error(f"no subject {subject!r} in sleepstudy")
    held = data["Subject"].astype(str) == subject
    train, new = data[~held], data[held].sort_values("Days")
    days, y_new = new["Days"].to_numpy(float), new["Reaction"].to_numpy(float)
    held_model = lmer(FORMULA, train)
    pop_mean, pop_sd = predict_new(held_model, days, 0, y_new)
    cond_mean, cond_sd = predict_new(held_model, days, SEEN_DAYS, y_new)
    last = len(days) - 1
    print(f"\nNew participant {subject} (not in the fit), day {days[last]:.0f}:")
    print(
        f"KEY population prediction  {pop_mean[last]:6.1f} ms, 95% interval "
        f"[{pop_mean[last] - Z95 * pop_sd[last]:.1f}, {pop_mean[last] + Z95 * pop_sd[last]:.1f}]"
    )
    print(
        f"KEY after {SEEN_DAYS} observed days {cond_mean[last]:6.1f} ms, 95% interval "
        f"[{cond_mean[last] - Z95 * cond_sd[last]:.1f}, "
        f"{cond_mean[last] + Z95 * cond_sd[last]:.1f}]   (observed {y_new[last]:.1f} ms)"
    )

    # cross-check: MixedML with a linear model and REML is lme4's fit; predict(X, y=...)
    # estimates a new subject's random effects from the rows where y is given
    mixed = MixedMLRegressor(
        LinearRegression(), random_effects="(Days | Subject)", features=["Days"], reml=True
    ).fit(train[["Days", "Subject"]], train["Reaction"])
    y_seen = np.where(np.arange(len(days)) < SEEN_DAYS, y_new, np.nan)
    try:
        via_mixedml = mixed.predict(new[["Days", "Subject"]], y=y_seen)
    except PylmerError as exc:
        print(f"KEY MixedMLRegressor.predict(X, y=...) cross-check failed: {exc}")
    else:
        gap = float(np.max(np.abs(via_mixedml - cond_mean)))
        print(
            f"KEY MixedMLRegressor.predict(X, y=first {SEEN_DAYS} days) matches the closed "
            f"form: max difference {gap:.2g} ms"
        )
    figures.append(
        _save(
            _new_participant_figure(subject, days, y_new, pop_mean, pop_sd, cond_mean, cond_sd),
            out / "sleepstudy_new_participant.png",
        )
    )

    # ---- every subject in turn
    rows = []
    for level in data["Subject"].cat.categories:
        mask = data["Subject"] == level
        fit = lmer(FORMULA, data[~mask])
        part = data[mask].sort_values("Days")
        d, y = part["Days"].to_numpy(float), part["Reaction"].to_numpy(float)
        for name, seen in (("population", 0), (f"after {SEEN_DAYS} days", SEEN_DAYS)):
            mean, sd = predict_new(fit, d, seen, y)
            later = slice(SEEN_DAYS, None)
            rows.append(
                {
                    "subject": level,
                    "prediction": name,
                    "sq_error": np.mean((y[later] - mean[later]) ** 2),
                    "covered": np.mean(np.abs(y[later] - mean[later]) <= Z95 * sd[later]),
                    "width": np.mean(2 * Z95 * sd[later]),
                }
            )
    loso = pd.DataFrame(rows).groupby("prediction", sort=False)
    table = pd.DataFrame(
        {
            "RMSE days 3-9 (ms)": np.sqrt(loso["sq_error"].mean()),
            "95% coverage": loso["covered"].mean(),
            "mean width (ms)": loso["width"].mean(),
        }
    )
    print(f"\nLeave-one-subject-out over {data['Subject'].nunique()} subjects (days 3-9):")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    for name, row in table.iterrows():
        print(
            f"KEY LOSO {name}: RMSE {row.iloc[0]:.1f} ms, coverage {row.iloc[1]:.1%}, "
            f"width {row.iloc[2]:.0f} ms"
        )

    print(f"\nfigures: {', '.join(str(f) for f in figures)}")
    print(f"done in {time.perf_counter() - start:.1f} s")


def _new_participant_figure(subject, days, y, pop_mean, pop_sd, cond_mean, cond_sd):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.fill_between(
        days,
        pop_mean - Z95 * pop_sd,
        pop_mean + Z95 * pop_sd,
        color="lightgrey",
        alpha=0.8,
        label="population 95% interval",
    )
    ax.plot(days, pop_mean, color="grey", lw=1.5, label="population prediction")
    ax.fill_between(
        days,
        cond_mean - Z95 * cond_sd,
        cond_mean + Z95 * cond_sd,
        color="C0",
        alpha=0.25,
        label=f"95% interval after {SEEN_DAYS} days",
    )
    ax.plot(days, cond_mean, color="C0", lw=2, label=f"prediction after {SEEN_DAYS} days")
    ax.scatter(days[:SEEN_DAYS], y[:SEEN_DAYS], color="k", zorder=3, label="observed (used)")
    ax.scatter(
        days[SEEN_DAYS:],
        y[SEEN_DAYS:],
        facecolor="none",
        edgecolor="k",
        zorder=3,
        label="observed later (not used)",
    )
    ax.set_xlabel("Days of sleep deprivation")
    ax.set_ylabel("Reaction time (ms)")
    ax.set_title(f"A new participant (subject {subject}, held out of the fit)")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
