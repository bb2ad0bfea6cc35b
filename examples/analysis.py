"""An R-style mixed-model analysis end to end: fit, anova, emmeans, R², intervals.

The workflow an R analyst brings (lme4 + lmerTest + emmeans + performance), on simulated
data from a politeness study: speakers (12 women, 12 men) read 8 scenarios in three
attitudes (informal, neutral, polite); the response is the voice pitch (Hz).  Polite speech
lowers the pitch, and less so for men (an attitude x gender interaction).

1. ``lmer("pitch ~ attitude * gender + (1 | subject) + (1 | scenario)",
   contrasts={"attitude": "sum", "gender": "sum"})``: sum coding, as for a Type III table;
2. ``m.anova(type=3)`` with Satterthwaite and Kenward-Roger df, ``m.ranova()``;
3. ``pylmer.emmeans(m, "attitude | gender", pairwise=True)``: marginal means per gender and
   Tukey-adjusted pairwise contrasts; a figure of the means with 95% intervals;
4. ``m.r2()`` and ``m.icc()`` for the write-up;
5. ``m.predict(new, interval="prediction")`` for a known and a new speaker, and
   ``m.allfit()`` to check that the optimum does not depend on the optimizer.

Run: ``python examples/analysis.py [--out out] [--quick]`` (about 20 s; --quick: fewer
speakers, no Kenward-Roger table, no allFit).
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

import pylmer

ATTITUDES = ["informal", "neutral", "polite"]
BASE = {"F": 230.0, "M": 130.0}  # Hz
SHIFT = {"informal": 0.0, "neutral": -8.0, "polite": -20.0}
MALE_POLITE = 10.0  # men lower their pitch less when polite


def simulate(n_per_gender: int = 12, n_scenarios: int = 8, seed: int = 3) -> pd.DataFrame:
    """Pitch of each speaker x scenario x attitude, with speaker and scenario effects."""
    rng = np.random.default_rng(seed)
    scen = rng.normal(0.0, 10.0, n_scenarios)
    rows = []
    for gender in ("F", "M"):
        for k in range(n_per_gender):
            speaker = rng.normal(0.0, 20.0)
            for s in range(n_scenarios):
                for att in ATTITUDES:
                    extra = MALE_POLITE if (gender == "M" and att == "polite") else 0.0
                    pitch = BASE[gender] + SHIFT[att] + extra + speaker + scen[s]
                    rows.append(
                        {
                            "subject": f"{gender}{k + 1:02d}",
                            "gender": gender,
                            "scenario": f"s{s + 1}",
                            "attitude": att,
                            "pitch": round(pitch + rng.normal(0.0, 15.0), 1),
                        }
                    )
    data = pd.DataFrame(rows)
    data["attitude"] = pd.Categorical(data["attitude"], categories=ATTITUDES)
    data["gender"] = pd.Categorical(data["gender"], categories=["F", "M"])
    return data


def notes(function, *args, **kwargs):
    """Call, printing R's notes (messages, warnings) instead of raising them as warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = function(*args, **kwargs)
    for w in dict.fromkeys(str(w.message) for w in caught):
        print(f"  note from R: {w}")
    return result


def show(table: pd.DataFrame) -> None:
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="folder for the PNG figures (out)")
    parser.add_argument("--quick", action="store_true", help="smaller data, fewer steps")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    data = simulate(n_per_gender=8 if args.quick else 12)
    print(
        f"simulated {len(data)} utterances: {data['subject'].nunique()} speakers x "
        f"{data['scenario'].nunique()} scenarios x 3 attitudes"
    )

    print("\n== 1. fit, sum coding")
    formula = "pitch ~ attitude * gender + (1 | subject) + (1 | scenario)"
    m = pylmer.lmer(formula, data, contrasts={"attitude": "sum", "gender": "sum"})
    print(m.summary())
    print(f"contrasts recorded on the model: {m.contrasts}")

    print("\n== 2. Type III anova (lmerTest), random-effect LRTs")
    a3 = m.anova(type=3)
    print(a3.attrs["heading"])
    show(a3)
    inter = a3.loc["attitude:gender"]
    print(
        f"KEY anova type 3: attitude:gender F({inter['NumDF']:.0f}, {inter['DenDF']:.1f}) = "
        f"{inter['F value']:.2f}, p = {inter['Pr(>F)']:.2g}"
    )
    if not args.quick:
        kr = m.anova(type=3, ddf="kenward-roger")
        print(kr.attrs["heading"])
        show(kr)
    ra = m.ranova()
    show(ra)
    print(
        "KEY ranova: "
        + ", ".join(f"{t} LRT {ra.loc[t, 'LRT']:.1f}" for t in ra.index if t != "<none>")
    )

    print("\n== 3. estimated marginal means and pairwise contrasts per gender")
    emm = notes(pylmer.emmeans, m, "attitude | gender", pairwise=True, ddf="satterthwaite")
    show(emm.means)
    show(emm.contrasts)
    print(f"(p-values adjusted by {emm.adjust})")
    pol = emm.contrasts[emm.contrasts["contrast"] == "informal - polite"]
    print(
        "KEY emmeans informal - polite: "
        + ", ".join(
            f"{g} {e:.1f} Hz (p {_p(p)})"
            for g, e, p in zip(pol["gender"], pol["estimate"], pol["p_value"], strict=True)
        )
    )
    figures = [_save(_means_figure(emm.means), out / "analysis_emmeans.png")]

    print("\n== 4. R² and ICC (performance)")
    r2, icc = m.r2(), m.icc()
    print(
        f"KEY R2 marginal {r2['marginal']:.3f}, conditional {r2['conditional']:.3f}; "
        f"ICC adjusted {icc['adjusted']:.3f}"
    )

    print("\n== 5. predictions with intervals")
    new = pd.DataFrame(
        {
            "subject": ["F01", "F01", "NEW", "NEW"],
            "gender": pd.Categorical(["F", "F", "F", "F"], categories=["F", "M"]),
            "scenario": ["s1", "s1", "s1", "s1"],
            "attitude": pd.Categorical(
                ["informal", "polite", "informal", "polite"], categories=ATTITUDES
            ),
        }
    )
    conf = m.predict(new, interval="confidence")
    pred = m.predict(new, interval="prediction")
    show(new.join(conf.add_prefix("conf_")).join(pred[["lower", "upper"]].add_prefix("pred_")))
    width = pred["upper"] - pred["lower"]
    known, unseen = width.iloc[0], width.iloc[2]
    print(
        f"KEY prediction interval width: known speaker {known:.1f} Hz, new speaker {unseen:.1f} Hz"
    )
    figures.append(_save(_interval_figure(new, conf, pred), out / "analysis_intervals.png"))
    if not args.quick:
        fits = notes(m.allfit)
        show(fits[["ok", "loglik", "time"]])
        spread = fits["loglik"].max() - fits["loglik"].min()
        print(f"KEY allFit: {int(fits['ok'].sum())} optimizers, logLik spread {spread:.2g}")

    print(f"\nfigures: {', '.join(str(f) for f in figures)}")
    print(f"done in {time.perf_counter() - start:.1f} s")


def _p(p: float) -> str:
    return f"= {p:.2g}" if p > 0 else "< 1e-15"  # Tukey's p underflows to 0


def _means_figure(means: pd.DataFrame) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 4))
    offsets = {"F": -0.08, "M": 0.08}
    x = np.arange(len(ATTITUDES))
    for gender, rows in means.groupby("gender", sort=False):
        rows = rows.set_index("attitude").loc[ATTITUDES]
        err = [rows["estimate"] - rows["conf_low"], rows["conf_high"] - rows["estimate"]]
        ax.errorbar(
            x + offsets[gender],
            rows["estimate"],
            yerr=err,
            marker="o",
            capsize=4,
            label={"F": "women", "M": "men"}[gender],
        )
    ax.set_xticks(x, ATTITUDES)
    ax.set_ylabel("estimated marginal mean pitch (Hz)")
    ax.set_title("emmeans: attitude | gender, 95% intervals (Satterthwaite df)")
    ax.legend()
    fig.tight_layout()
    return fig


def _interval_figure(new: pd.DataFrame, conf: pd.DataFrame, pred: pd.DataFrame) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 4))
    labels = [f"{s}\n{a}" for s, a in zip(new["subject"], new["attitude"], strict=True)]
    x = np.arange(len(new))
    ax.errorbar(
        x - 0.05,
        pred["estimate"],
        yerr=[pred["estimate"] - pred["lower"], pred["upper"] - pred["estimate"]],
        fmt="none",
        capsize=6,
        color="0.6",
        label="95% prediction interval",
    )
    ax.errorbar(
        x + 0.05,
        conf["estimate"],
        yerr=[conf["estimate"] - conf["lower"], conf["upper"] - conf["estimate"]],
        fmt="o",
        capsize=4,
        label="95% confidence interval",
    )
    ax.set_xticks(x, labels)
    ax.set_ylabel("pitch (Hz)")
    ax.set_title("a known speaker (F01) and a new speaker")
    ax.legend()
    fig.tight_layout()
    return fig


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
