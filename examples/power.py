"""Planning a sleepstudy-like study: how many subjects for 80% power on a slope?

A pilot study (lme4's ``sleepstudy``: 18 subjects, reaction time over 10 days of sleep
deprivation) gives the model ``Reaction ~ Days + (Days | Subject)`` and its variance
parameters: subjects differ in their baseline and in their slope.  The next study wants
to detect a smaller effect, a slope of 3 ms per day (the pilot's estimate is about 10),
with lmerTest's Satterthwaite t test at alpha = 0.05.

1. Power with the pilot's 18 subjects (:func:`pylmer.power`): responses simulated from
   the pilot model with the slope set to 3 (lme4's ``simulate(..., newparams = )``), the
   model refitted to each (lme4's ``refit``) in two worker processes;
2. the power curve over the number of subjects (:func:`pylmer.power_curve`: fewer
   subjects use the first ones, more subjects copy the design of the existing ones, as
   simr's ``extend``), and the smallest number reaching 80%;
3. the figure (``power_curve.png``).

Run: ``python examples/power.py [--out out] [--quick]`` (a few minutes with 200
simulations per size; ``--quick``: 20 simulations and three sizes, for a smoke test).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

import pylmer
from pylmer import datasets, plot

FORMULA = "Reaction ~ Days + (Days | Subject)"
EFFECT = 3.0  # ms per day


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="folder for the PNG figures (out)")
    parser.add_argument("--quick", action="store_true", help="20 simulations, three sizes")
    parser.add_argument("--n-jobs", type=int, default=2, help="worker processes (2)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    nsim = 20 if args.quick else 200
    sizes = [8, 18, 30] if args.quick else [8, 12, 16, 20, 24, 32, 40, 48]

    sleep = datasets.load("sleepstudy")
    pilot = pylmer.lmer(FORMULA, sleep)
    print(pilot.summary())
    print(
        f"\nThe pilot's slope is {pilot.fixef.loc['Days', 'estimate']:.1f} ms/day; "
        f"the new study plans for {EFFECT:g} ms/day."
    )

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular refits are counted in the result
        res = pylmer.power(
            pilot, "Days", effect={"Days": EFFECT}, nsim=nsim, seed=2024, n_jobs=args.n_jobs
        )
    print(f"\n{res}  ({time.perf_counter() - t0:.1f} s)")
    print(f"KEY power with 18 subjects: {res.power:.3f} [{res.ci_low:.3f}, {res.ci_high:.3f}]")

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        curve = pylmer.power_curve(
            pilot,
            "Days",
            along="Subject",
            sizes=sizes,
            effect={"Days": EFFECT},
            nsim=nsim,
            seed=2024,
            n_jobs=args.n_jobs,
        )
    print(f"\nPower curve ({nsim} simulations per size, {time.perf_counter() - t0:.1f} s):")
    print(curve.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    enough = curve[curve["power"] >= 0.8]
    if len(enough):
        row = enough.iloc[0]
        print(
            f"KEY subjects for 80% power: {int(row['size'])} "
            f"(power {row['power']:.2f}, 95% interval {row['ci_low']:.2f} to {row['ci_high']:.2f})"
        )
        sure = curve[curve["ci_low"] >= 0.8]
        if len(sure):
            print(
                f"  with the interval's lower end above 80%: {int(sure.iloc[0]['size'])} subjects"
            )
    else:
        print(f"KEY subjects for 80% power: more than {max(sizes)}")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot.power_curve(curve, ax=ax)
    ax.set_title(
        f"Subjects needed for a slope of {EFFECT:g} ms/day (pilot: sleepstudy)\n"
        f"Satterthwaite t test, alpha 0.05, {nsim} simulations per size",
        fontsize=10,
    )
    fig.tight_layout()
    path = out / "power_curve.png"
    fig.savefig(path, dpi=120)
    print(f"\nfigures: {path}")


if __name__ == "__main__":
    main()
