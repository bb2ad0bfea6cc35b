"""InstEval: crossed random effects of students, instructors and departments.

Seed 003 fits ``y ~ service + (1|s) + (1|d) + (1|dept)`` to lme4's InstEval (73,421
ratings of 1,128 instructors by 2,972 students) with variational inference in Edward on an
80% sample, draws a histogram of the residuals on the other 20%, and compares its random
effects with an lme4 fit of the whole data made in R.  Here:

- pylmer fits the 80% training sample and predicts the 20% test sample (unseen students
  or instructors get a zero random effect); histogram of the test residuals;
- pylmer fits the whole data, and a separate plain ``Rscript`` process
  (``r_scripts/validate.R``, no pylmer code) fits the whole data too, at the same time;
- scatter plots of the random effects: pylmer whole vs plain R whole (identical), and
  pylmer 80% vs plain R whole (the seed's comparison).

Run: ``python examples/insteval.py [--out out]`` (about a minute: three fits of 17 s
each, two in parallel) or ``--quick`` (the ratings of 5% of the students, a few seconds).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pylmer import datasets, lmer, plot
from pylmer.validate import read_r_fit, start_r_fit

FORMULA = "y ~ service + (1 | s) + (1 | d) + (1 | dept)"
GROUPS = {"s": "students", "d": "instructors", "dept": "departments"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="folder for the PNG figures (out)")
    parser.add_argument(
        "--quick", action="store_true", help="only the ratings of 5%% of the students"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the 80/20 split (0)")
    args = parser.parse_args()
    warnings.showwarning = _note
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    data = datasets.load("InstEval")
    with tempfile.TemporaryDirectory(prefix="pylmer-insteval-") as tmp:
        if args.quick:
            students = data["s"].drop_duplicates().sample(frac=0.05, random_state=args.seed)
            data = data[data["s"].isin(students)].reset_index(drop=True)
            for g in GROUPS:
                data[g] = data[g].cat.remove_unused_categories()
            source = Path(tmp) / "insteval_sample.csv"
            data.to_csv(source, index=False)
        else:
            source = "lme4:InstEval"
        print(
            f"InstEval{' (5% of the students)' if args.quick else ''}: {len(data)} ratings, "
            + ", ".join(f"{data[g].nunique()} {name}" for g, name in GROUPS.items())
        )
        # the plain-R fit of the whole data runs in its own process, next to ours
        r_json = Path(tmp) / "r_fit.json"
        r_process = start_r_fit(source, FORMULA, True, r_json)

        t0 = time.perf_counter()
        whole = lmer(FORMULA, data)
        whole_seconds = time.perf_counter() - t0
        print(whole.summary())

        train = data.sample(frac=0.8, random_state=args.seed)
        test = data.drop(train.index)
        t0 = time.perf_counter()
        model = lmer(FORMULA, train)
        train_seconds = time.perf_counter() - t0
        pred = model.predict(test, allow_new_levels=True)
        population = model.predict(test, include_random=False)
        residuals = test["y"].to_numpy(float) - pred.to_numpy()

        _, err = r_process.communicate()
        if r_process.returncode != 0:
            raise SystemExit(f"the plain-R fit failed: {err.strip().splitlines()[-1:]}")
        plain_r = read_r_fit(r_json)

    beta = whole.fixef_wald["estimate"]
    print(
        f"KEY whole data: intercept {beta.iloc[0]:.4f}, service {beta.iloc[1]:.4f}; sd "
        + ", ".join(f"{g} {np.sqrt(v):.4f}" for g, v in _variances(whole).items())
    )
    print(
        f"KEY fit seconds: pylmer whole {whole_seconds:.1f} s, pylmer 80% {train_seconds:.1f} s, "
        f"plain Rscript whole {float(plain_r['meta']['seconds']):.1f} s (lme4 fit only)"
    )
    unseen = ~(test["s"].isin(train["s"]) & test["d"].isin(train["d"]))
    rmse = np.sqrt(np.mean(residuals**2))
    rmse_pop = np.sqrt(np.mean((test["y"].to_numpy(float) - population.to_numpy()) ** 2))
    rmse_mean = np.sqrt(np.mean((test["y"] - train["y"].mean()) ** 2))
    print(
        f"\n80/20 split: {len(train)} training, {len(test)} test ratings "
        f"({unseen.mean():.1%} with a student or instructor not in training)"
    )
    print(
        f"KEY test RMSE: {rmse:.4f} with random effects, {rmse_pop:.4f} fixed part only, "
        f"{rmse_mean:.4f} training mean; mean residual {residuals.mean():+.4f}"
    )

    print("\nRandom effects against the plain-R fit of the whole data:")
    rows = []
    for g, name in GROUPS.items():
        ref = plain_r["ranef"][g]["(Intercept)"]
        ours = whole.ranef[g]["(Intercept)"].set_axis(whole.ranef[g].index.astype(str))
        part = model.ranef[g]["(Intercept)"].set_axis(model.ranef[g].index.astype(str))
        common = ref.index.intersection(part.index)
        rows.append(
            {
                "effects": name,
                "levels": len(ref),
                "max |pylmer whole - R whole|": float(np.max(np.abs(ours.loc[ref.index] - ref))),
                "corr(pylmer 80%, R whole)": float(np.corrcoef(part[common], ref[common])[0, 1]),
            }
        )
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    for row in table.itertuples(index=False):
        print(
            f"KEY {row[0]}: max |pylmer - plain R| {row[2]:.2g}, "
            f"correlation of the 80% fit with plain R {row[3]:.3f}"
        )

    figures = [
        _save(_histogram(residuals), out / "insteval_test_residuals.png"),
        _save(_comparison(whole, model, plain_r, train), out / "insteval_ranef_vs_r.png"),
        _save(plot.caterpillar(whole, "dept"), out / "insteval_dept_caterpillar.png"),
    ]
    print(f"\nfigures: {', '.join(str(f) for f in figures)}")
    print(f"done in {time.perf_counter() - start:.1f} s")


def _note(message, category, *args, **kwargs) -> None:
    print(f"note from R ({category.__name__}): {message}")


def _variances(model) -> dict[str, float]:
    vc = model.varcorr
    return dict(zip(vc["group"], vc["variance"], strict=True))


def _histogram(residuals: np.ndarray):
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.hist(residuals, bins=75, color="C0")
    ax.axvline(0.0, color="k", lw=0.8)
    ax.set_xlim(-4, 4)
    ax.set_xlabel("observed - predicted rating")
    ax.set_ylabel("test ratings")
    ax.set_title("Residuals for predicted ratings on the 20% test set")
    fig.tight_layout()
    return fig


def _comparison(whole, model, plain_r, train):
    fig, axes = plt.subplots(2, 3, figsize=(13, 8.5))
    for col, (g, name) in enumerate(GROUPS.items()):
        ref = plain_r["ranef"][g]["(Intercept)"]
        for row, (fit, label) in enumerate(
            ((whole, "pylmer, whole data"), (model, "pylmer, 80% sample"))
        ):
            ours = fit.ranef[g]["(Intercept)"].set_axis(fit.ranef[g].index.astype(str))
            common = ref.index.intersection(ours.index)
            ax = axes[row, col]
            if g == "dept":
                counts = train[g].astype(str).value_counts().reindex(common).fillna(1)
                ax.scatter(ref[common], ours[common], s=0.01 * counts.to_numpy(), alpha=0.7)
            else:
                ax.scatter(ref[common], ours[common], s=4, alpha=0.25)
            lims = [min(ref.min(), ours.min()), max(ref.max(), ours.max())]
            ax.plot(lims, lims, color="grey", ls=":", lw=1)
            ax.set_xlabel(f"{name} effects, plain R (Rscript), whole data")
            ax.set_ylabel(label)
            ax.set_title(f"{name.capitalize()} effects")
    fig.tight_layout()
    return fig


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
