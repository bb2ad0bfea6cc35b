"""Contagious bovine pleuropneumonia (CBPP): a binomial GLMM, as in lme4's own analysis.

lme4's ``cbpp`` data (Lesnoff et al. 2004): 15 zebu herds in Ethiopia were followed over
four periods; ``incidence`` is the number of new serological cases among ``size`` animals
of a herd in a period.  The analysis of lme4's documentation (``?cbpp``, ``?glmer``):

1. ``cbind(incidence, size - incidence) ~ period + (1 | herd)``: the log-odds of a new
   case per period, with a random intercept per herd (Laplace approximation), and the
   same model with adaptive Gauss-Hermite quadrature (nAGQ = 25);
2. a likelihood-ratio test of ``period``;
3. odds ratios of periods 2-4 against period 1, with Wald and profile-likelihood
   intervals;
4. overdispersion: an observation-level random effect ``(1 | obs)``;
5. the same fit by plain ``Rscript`` (a separate R process, no pylmer code): every
   quantity agrees.

Run: ``python examples/cbpp.py [--out out] [--quick]`` (about 20 s; ``--quick`` skips
the profile intervals and the plain-R comparison, a few seconds).
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

from pylmer import anova, datasets, glmer, plot, validate

FORMULA = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


def quietly(function, *args, **kwargs):
    """Call, turning R's warnings and messages into printed notes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = function(*args, **kwargs)
    for w in caught:
        print(f"  note from R ({w.category.__name__}): {w.message}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="folder for the PNG figures (out)")
    parser.add_argument(
        "--quick", action="store_true", help="skip profile intervals and the plain-R check"
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    cbpp = datasets.load("cbpp")
    print(
        f"cbpp: {len(cbpp)} herd-periods, {cbpp['herd'].nunique()} herds, "
        f"{int(cbpp['incidence'].sum())} new cases among {int(cbpp['size'].sum())} animal-periods"
    )

    print(f"\n== 1. {FORMULA}")
    m1 = glmer(FORMULA, cbpp, "binomial")
    print(m1.summary())
    m25 = glmer(FORMULA, cbpp, "binomial", nagq=25)
    diff = (m25.fixef["estimate"] - m1.fixef["estimate"]).abs().max()
    herd_sd = float(m1.varcorr["sd_or_cor"].iloc[0])
    print(
        f"KEY Laplace: logLik {m1.loglik:.4f}, herd sd {herd_sd:.4f}; nAGQ = 25: herd sd "
        f"{float(m25.varcorr['sd_or_cor'].iloc[0]):.4f}, max |fixef difference| {diff:.2g}"
    )

    print("\n== 2. likelihood-ratio test of period")
    m0 = glmer("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", cbpp, "binomial")
    lrt = anova(m0, m1)
    print(lrt.to_string(float_format=lambda v: f"{v:.4g}"))
    print(
        f"KEY LRT period: chisq {lrt['Chisq'].iloc[1]:.2f}, df {lrt['Df'].iloc[1]:.0f}, "
        f"p = {lrt['Pr(>Chisq)'].iloc[1]:.2g}"
    )

    print("\n== 3. odds ratios against period 1")
    intervals = {"Wald": m1.confint("wald")}
    if not args.quick:
        intervals["profile"] = quietly(m1.confint, "profile")
    odds = pd.DataFrame({"odds ratio": np.exp(m1.fixef["estimate"])})
    for name, ci in intervals.items():
        odds[f"{name} 2.5%"] = np.exp(ci.iloc[:, 0].reindex(odds.index))
        odds[f"{name} 97.5%"] = np.exp(ci.iloc[:, 1].reindex(odds.index))
    odds = odds.drop(index="(Intercept)")
    print(odds.to_string(float_format=lambda v: f"{v:.3f}"))
    if "profile" in intervals:
        sig = intervals["profile"].loc["sd_(Intercept)|herd"]
        print(f"herd sd, profile 95% interval: {sig.iloc[0]:.3f} to {sig.iloc[1]:.3f}")
    print("KEY odds ratios: " + ", ".join(f"{k} {v:.3f}" for k, v in odds["odds ratio"].items()))
    new_herd = pd.DataFrame({"herd": "new", "period": cbpp["period"].cat.categories})
    population = m1.predict(new_herd, include_random=False)
    print(
        "KEY population risk per period: "
        + ", ".join(f"{p} {r:.3f}" for p, r in zip(new_herd["period"], population, strict=True))
    )

    print("\n== 4. overdispersion: an observation-level random effect")
    m2 = quietly(
        glmer,
        "cbind(incidence, size - incidence) ~ period + (1 | herd) + (1 | obs)",
        cbpp.assign(obs=np.arange(len(cbpp)).astype(str)),
        "binomial",
    )
    print(m2.varcorr.to_string(index=False))
    lrt2 = anova(m1, m2)
    print(
        f"KEY (1 | obs): sd {float(m2.varcorr['sd_or_cor'].iloc[0]):.3f}, LRT chisq "
        f"{lrt2['Chisq'].iloc[1]:.3f}, p = {lrt2['Pr(>Chisq)'].iloc[1]:.2g}"
    )

    if not args.quick:
        print("\n== 5. the same model by plain Rscript (r_scripts/validate.R)")
        with tempfile.TemporaryDirectory() as tmp:
            proc = validate.start_r_fit(
                "lme4:cbpp", FORMULA, False, Path(tmp) / "r.json", family="binomial"
            )
            proc.communicate()
            table = validate.compare_with_r(m1, validate.read_r_fit(Path(tmp) / "r.json"))
        print(table.to_string(index=False))
        print(f"KEY max |pylmer - plain R| (relative): {table['max_rel_diff'].max():.2g}")

    figures = [
        _save(_fit_figure(cbpp, m1, population), out / "cbpp_fit.png"),
        _save(plot.caterpillar(m1.results, "herd"), out / "cbpp_herds.png"),
        _save(_odds_figure(odds, list(intervals)), out / "cbpp_odds.png"),
    ]
    print(f"\nfigures: {', '.join(str(f) for f in figures)}")
    print(f"done in {time.perf_counter() - start:.1f} s")


def _fit_figure(cbpp: pd.DataFrame, m1, population: pd.Series):
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    x = cbpp["period"].cat.codes.to_numpy() + 1
    jitter = np.random.default_rng(0).uniform(-0.08, 0.08, len(cbpp))
    ax.scatter(
        x + jitter,
        cbpp["incidence"] / cbpp["size"],
        s=6 * cbpp["size"],
        alpha=0.35,
        color="C0",
        label="observed proportion (area: herd size)",
    )
    fitted = cbpp.assign(p=m1.fitted, x=x)
    for _, herd in fitted.groupby("herd", observed=True):
        ax.plot(herd["x"], herd["p"], color="C0", lw=0.7, alpha=0.6)
    ax.plot([], [], color="C0", lw=0.7, label="fitted per herd (with its random effect)")
    ax.plot(
        np.arange(1, 5),
        population.to_numpy(),
        color="k",
        lw=2.5,
        marker="o",
        label="typical herd (random effect 0)",
    )
    ax.set_xticks(np.arange(1, 5), [f"period {p}" for p in range(1, 5)])
    ax.set_ylabel("risk of a new case")
    ax.set_title("CBPP incidence: binomial GLMM, (1 | herd)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _odds_figure(odds: pd.DataFrame, methods: list[str]):
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    y = np.arange(len(odds))
    for k, method in enumerate(methods):
        lo, hi = odds[f"{method} 2.5%"], odds[f"{method} 97.5%"]
        ax.hlines(y + 0.15 * k, lo, hi, color=f"C{k}", lw=2, label=f"{method} 95% interval")
    ax.plot(odds["odds ratio"], y, "ko", label="odds ratio")
    ax.axvline(1.0, color="grey", ls=":")
    ax.set_xscale("log")
    ax.set_yticks(y, list(odds.index))
    ax.set_xlabel("odds ratio against period 1 (log scale)")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
