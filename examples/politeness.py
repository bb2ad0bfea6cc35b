"""Politeness and voice pitch: random intercepts, and random slopes by gender.

Seed 001's example, on simulated data (the original recordings are not public): speakers
say sentences in a polite and an informal attitude; polite speech has a higher pitch,
and men raise their pitch less than women, so for men a given rise in pitch means more:
the rating rises with pitch (above the speaker's gender baseline) by 0.04 points per Hz
for women and 0.10 for men, plus a baseline per speaker.  Three models:

1. ``politeness ~ pitch + (1 | subject)``: one pitch slope, a baseline per speaker;
2. ``politeness ~ pitch + (1 + pitch | gender)``: the seed's random slopes, an intercept
   and a slope per gender.  With two genders, the 2x2 covariance of these random
   effects rests on two values: lme4 reports a singular fit;
3. ``politeness ~ pitch * gender + (1 | subject)``: the usual choice with a factor of two
   levels, gender-specific slopes as fixed effects.

Run: ``python examples/politeness.py [--out out] [--seed 1]`` (about 10 s).
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

from pylmer import anova, lmer, plot

# pitch (Hz): gender baseline, and how much a polite attitude raises it
BASELINE = {"F": 230.0, "M": 125.0}
RAISE = {"F": 30.0, "M": 12.0}
# rating points per Hz above the gender baseline (the true slopes)
SLOPE = {"F": 0.04, "M": 0.10}


def simulate(n_per_gender: int = 12, n_scenarios: int = 7, seed: int = 1) -> pd.DataFrame:
    """Simulated ratings: subjects x scenarios x attitudes (polite / informal)."""
    rng = np.random.default_rng(seed)
    rows = []
    for gender in ("F", "M"):
        for k in range(n_per_gender):
            subject = f"{gender}{k + 1:02d}"
            own_pitch = rng.normal(0.0, 15.0)
            own_rating = rng.normal(0.0, 0.6)
            for scenario in range(1, n_scenarios + 1):
                for polite in (0, 1):
                    pitch = BASELINE[gender] + own_pitch + RAISE[gender] * polite + rng.normal(0, 6)
                    above = pitch - BASELINE[gender]
                    rating = 5.0 + own_rating + SLOPE[gender] * above + rng.normal(0, 0.5)
                    rows.append(
                        {
                            "subject": subject,
                            "gender": gender,
                            "scenario": scenario,
                            "attitude": "polite" if polite else "informal",
                            "pitch": round(pitch, 1),
                            "politeness": round(rating, 2),
                        }
                    )
    frame = pd.DataFrame(rows)
    for column in ("subject", "gender", "attitude"):
        frame[column] = frame[column].astype("category")
    return frame


def quietly(function, *args, **kwargs):
    """Call, turning R's warnings and messages (e.g. a singular fit) into printed notes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = function(*args, **kwargs)
    for w in caught:
        print(f"  note from R ({w.category.__name__}): {w.message}")
    return result


def fit(formula: str, data: pd.DataFrame):
    """Fit by REML, printing lme4's warnings as notes."""
    return quietly(lmer, formula, data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="folder for the PNG figures (out)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the simulation (1)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    data = simulate(seed=args.seed)
    print(
        f"simulated {len(data)} utterances: {data['subject'].nunique()} speakers "
        f"({(data.groupby('gender', observed=True)['subject'].nunique()).to_dict()}), "
        "7 scenarios x 2 attitudes"
    )
    print(
        "true slopes (rating points per Hz above the gender baseline): "
        + ", ".join(f"{g} {v:.3f}" for g, v in SLOPE.items())
    )

    print("\n== 1. politeness ~ pitch + (1 | subject)")
    m1 = fit("politeness ~ pitch + (1 | subject)", data)
    print(m1.summary())
    print(
        f"KEY (1 | subject): pitch slope {m1.fixef_wald.loc['pitch', 'estimate']:.4f} "
        f"per Hz, speaker sd {np.sqrt(_variance(m1, 'subject')):.3f}, "
        f"residual sd {m1.sigma:.3f}"
    )

    print("\n== 2. politeness ~ pitch + (1 + pitch | gender)")
    m2 = fit("politeness ~ pitch + (1 + pitch | gender)", data)
    print(m2.summary())
    by_gender = m2.coef["gender"]
    print("coefficients per gender (fixed + random):")
    print(by_gender.to_string(float_format=lambda v: f"{v:.4f}"))
    print(
        "KEY (1 + pitch | gender): slope per Hz "
        + ", ".join(f"{g} {by_gender.loc[g, 'pitch']:.4f}" for g in by_gender.index)
        + f"; singular fit: {m2.is_singular}"
    )

    print("\n== 3. politeness ~ pitch * gender + (1 | subject)")
    m3 = fit("politeness ~ pitch * gender + (1 | subject)", data)
    fixef3 = m3.fixef
    print(m3.summary())
    slope_f = fixef3.loc["pitch", "estimate"]
    slope_m = slope_f + fixef3.loc["pitch:genderM", "estimate"]
    print(
        f"KEY pitch * gender: slope per Hz F {slope_f:.4f}, M {slope_m:.4f} "
        f"(interaction p = {fixef3.loc['pitch:genderM', 'p_value']:.2g})"
    )
    lrt = quietly(anova, m1, m3)
    print("\nlikelihood-ratio test, model 1 vs model 3 (refitted by ML):")
    print(lrt.to_string(float_format=lambda v: f"{v:.4g}"))
    print(
        f"KEY LRT (1 | subject) vs pitch * gender: chisq {lrt['Chisq'].iloc[-1]:.1f}, "
        f"df {lrt['Df'].iloc[-1]:.0f}, p = {lrt['Pr(>Chisq)'].iloc[-1]:.2g}"
    )

    figures = [
        _save(
            _lines_figure(data, m1, by_gender, slope_f, slope_m, fixef3), out / "politeness_fit.png"
        ),
        _save(plot.caterpillar(m1, "subject"), out / "politeness_speakers.png"),
        _save(plot.diagnostics(m3), out / "politeness_residuals.png"),
    ]
    print(f"\nfigures: {', '.join(str(f) for f in figures)}")
    print(f"done in {time.perf_counter() - start:.1f} s")


def _variance(model, group: str) -> float:
    vc = model.varcorr
    return float(vc.loc[(vc["group"] == group) & vc["var2"].isna(), "variance"].iloc[0])


def _lines_figure(data, m1, by_gender, slope_f, slope_m, fixef3):
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colours = {"F": "C3", "M": "C0"}
    for gender, part in data.groupby("gender", observed=True):
        ax.scatter(
            part["pitch"],
            part["politeness"],
            s=10,
            alpha=0.5,
            color=colours[gender],
            label=f"{gender} speakers",
        )
        xs = np.linspace(part["pitch"].min(), part["pitch"].max(), 20)
        a, b = by_gender.loc[gender, "(Intercept)"], by_gender.loc[gender, "pitch"]
        ax.plot(
            xs, a + b * xs, color=colours[gender], lw=2, label=f"(1 + pitch | gender): {gender}"
        )
        est = fixef3["estimate"]
        a3 = est["(Intercept)"] + (est["genderM"] if gender == "M" else 0.0)
        b3 = slope_m if gender == "M" else slope_f
        ax.plot(
            xs,
            a3 + b3 * xs,
            color=colours[gender],
            lw=1.5,
            ls="--",
            label=f"pitch * gender: {gender}",
        )
    xs = np.linspace(data["pitch"].min(), data["pitch"].max(), 20)
    beta = m1.fixef_wald["estimate"]
    ax.plot(
        xs,
        beta["(Intercept)"] + beta["pitch"] * xs,
        color="k",
        lw=1,
        ls=":",
        label="(1 | subject): one slope",
    )
    ax.set_xlabel("pitch (Hz)")
    ax.set_ylabel("politeness rating")
    ax.set_title("Politeness vs pitch (simulated)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
