"""Benchmark of pylmer.inference: speed against plain R, and interval calibration.

**Speed** (one run per side, the same R, packages and BLAS): on InstEval
(73,421 ratings) with ``y ~ service * studage + (1|s) + (1|d) + (1|dept)``:

* ``anova3_satterthwaite``: ``m.anova(type=3)`` vs ``anova(as_lmerModLmerTest(m), type = 3)``
  (both include lmerTest's Hessian of the deviance, which later steps reuse);
* ``emmeans_pairwise_satterthwaite``: ``pylmer.emmeans(m, "studage", by="service",
  pairwise=True, ddf="satterthwaite")`` vs ``emmeans`` + the summaries of the means and
  of ``pairs``;
* on the first ``--kr-rows`` rows (Kenward-Roger builds dense n x n matrices: the full
  data would need ~40 GB): ``kenward_roger_table`` (``m.fixef_table(ddf="kenward-roger")``
  vs ``coef(summary(m, ddf = "Kenward-Roger"))``) and ``anova3_kenward_roger``.

``Rscript bench/inference_native.R`` times its own steps (wall and CPU); pylmer's steps are
timed in this process after R has started.  The fits are timed too (``fit``,
``fit_subset``).  pylmer's Satterthwaite steps take the Hessian of the deviance and the
Jacobian of ``vcov(beta)`` from pylmer's own computation (``r_scripts/satterthwaite.R``,
lmer issue); the Type III anova is timed again with lmerTest's numerical derivatives
(``inference.OWN_SATTERTHWAITE = False``), as plain R computes them.

**Calibration** of 95% prediction intervals (:func:`pylmer.inference.predict_interval`):
sleepstudy leave-one-subject-out (each subject predicted as a new group from the other 17)
and a simulation with known truth (random intercepts and slopes, 30 subjects x 10 days;
coverage for known subjects' new observations and for new subjects); merTools'
``predictInterval`` on the sleepstudy task (``bench/inference_mertools.R``) for comparison.

    .venv/bin/python bench/inference.py [--kr-rows 5000] [--sims 100] [--skip-speed]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import pylmer
from pylmer import datasets, inference

HERE = Path(__file__).resolve().parent
FORMULA = "y ~ service * studage + (1 | s) + (1 | d) + (1 | dept)"


class Clock:
    """Wall and CPU seconds of named steps."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def step(self, name: str, function, *args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        value = function(*args, **kwargs)
        self.wall[name] = time.perf_counter() - wall
        self.cpu[name] = time.process_time() - cpu
        return value


def native(kr_rows: int) -> dict:
    out = subprocess.run(
        ["Rscript", str(HERE / "inference_native.R"), str(kr_rows)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def ours(kr_rows: int) -> tuple[Clock, dict]:
    clock = Clock()
    data = datasets.load("InstEval")
    values: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # emmeans' notes about interactions
        m = clock.step("fit", pylmer.lmer, FORMULA, data)
        a3 = clock.step("anova3_satterthwaite", m.anova, type=3)
        values["anova3_F"] = a3["F value"].tolist()
        values["anova3_DenDF"] = a3["DenDF"].tolist()
        emm = clock.step(
            "emmeans_pairwise_satterthwaite",
            pylmer.emmeans,
            m,
            "studage",
            by="service",
            pairwise=True,
            ddf="satterthwaite",
        )
        # the same call again, five times (median; inference_native.R does the same)
        again = []
        for _ in range(5):
            wall, cpu = time.perf_counter(), time.process_time()
            pylmer.emmeans(m, "studage", by="service", pairwise=True, ddf="satterthwaite")
            again.append((time.perf_counter() - wall, time.process_time() - cpu))
        clock.wall["emmeans_again_median_of_5"] = float(np.median([w for w, _ in again]))
        clock.cpu["emmeans_again_median_of_5"] = float(np.median([c for _, c in again]))
        values["means_df"] = emm.means["df"].tolist()
        values["pairs_estimate"] = emm.contrasts["estimate"].tolist()
        values["pairs_df"] = emm.contrasts["df"].tolist()
        small = data.iloc[:kr_rows].copy()
        m2 = clock.step("fit_subset", pylmer.lmer, FORMULA, small)
        kr = clock.step("kenward_roger_table", m2.fixef_table, ddf="kenward-roger")
        values["kr_df"] = kr["df"].tolist()
        kra = clock.step("anova3_kenward_roger", m2.anova, type=3, ddf="kenward-roger")
        values["kr_anova_DenDF"] = kra["DenDF"].tolist()
        # the same anova with lmerTest's numerical derivatives instead of pylmer's own
        inference.OWN_SATTERTHWAITE = False
        try:
            a3_lt = clock.step("anova3_satterthwaite_lmertest_derivatives", m.anova, type=3)
        finally:
            inference.OWN_SATTERTHWAITE = True
        values["own_vs_lmertest_DenDF"] = float(
            np.max(np.abs(a3["DenDF"].to_numpy() / a3_lt["DenDF"].to_numpy() - 1))
        )
    return clock, values


def speed(kr_rows: int) -> None:
    versions = pylmer.versions()  # starts R outside the timings
    # the packages plain R loads with library() before its timings: loaded here too, so
    # neither side counts a namespace load (emmeans' alone is ~0.06 s CPU)
    from pylmer.r import session

    for package in ("lmerTest", "emmeans", "pbkrtest"):
        session.call("requireNamespace", package, quietly=True)
    r = native(kr_rows)
    clock, values = ours(kr_rows)
    print(f"InstEval: {FORMULA} (REML); KR steps on the first {kr_rows} rows")
    print(f"R {versions['R']}, lme4 {versions['lme4']}, lmerTest {versions['lmerTest']}")
    print(
        "| step | plain R wall (s) | pylmer wall (s) | ratio | plain R CPU (s) "
        "| pylmer CPU (s) | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    total = [0.0, 0.0, 0.0, 0.0]
    for step in r["times"]:
        rw, pw = r["times"][step], clock.wall[step]
        rc, pc = r["cpu"][step], clock.cpu[step]
        total = [total[0] + rw, total[1] + pw, total[2] + rc, total[3] + pc]
        print(
            f"| {step} | {rw:.3f} | {pw:.3f} | {pw / rw:.3f} | {rc:.3f} | {pc:.3f} "
            f"| {pc / rc:.3f} |"
        )
    print(
        f"| total | {total[0]:.2f} | {total[1]:.2f} | {total[1] / total[0]:.3f} "
        f"| {total[2]:.2f} | {total[3]:.2f} | {total[3] / total[2]:.3f} |"
    )
    for key in ("anova3_F", "anova3_DenDF", "means_df", "pairs_estimate", "pairs_df", "kr_df"):
        a, b = np.asarray(values[key], float), np.asarray(r["values"][key], float)
        print(f"max relative difference pylmer vs plain R, {key}: {np.max(np.abs(a / b - 1)):.1e}")
    extra = "anova3_satterthwaite_lmertest_derivatives"
    print(
        f"m.anova(type=3) with lmerTest's numerical derivatives instead of pylmer's own: "
        f"{clock.wall[extra]:.2f} s wall, {clock.cpu[extra]:.2f} s CPU "
        f"(vs {clock.wall['anova3_satterthwaite']:.2f} s / "
        f"{clock.cpu['anova3_satterthwaite']:.2f} s); DenDF max relative difference "
        f"{values['own_vs_lmertest_DenDF']:.1e}"
    )


# ------------------------------------------------------------------ calibration


def covered(frame: pd.DataFrame, y: np.ndarray) -> np.ndarray:
    return (y >= frame["lower"].to_numpy()) & (y <= frame["upper"].to_numpy())


def sleepstudy_loso() -> float:
    data = datasets.load("sleepstudy")
    hits = []
    for subject in data["Subject"].unique():
        train = data[data["Subject"] != subject]
        test = data[data["Subject"] == subject]
        m = pylmer.lmer("Reaction ~ Days + (Days | Subject)", train)
        pred = m.predict(test, interval="prediction")
        hits.append(covered(pred, test["Reaction"].to_numpy()))
    return float(np.mean(np.concatenate(hits)))


def simulation(n_sims: int, seed: int = 11) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    days = np.arange(10.0)
    hits: dict[str, list[np.ndarray]] = {"known": [], "new": [], "confidence (known)": []}
    for _ in range(n_sims):
        n = 30
        idx = np.repeat(np.arange(n), len(days))
        day = np.tile(days, n)
        b0, b1 = rng.normal(0, 25, n), rng.normal(0, 6, n)
        mean = 250 + 10 * day + b0[idx] + b1[idx] * day
        train = pd.DataFrame(
            {"y": mean + rng.normal(0, 25, len(day)), "day": day, "subj": idx.astype(str)}
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = pylmer.lmer("y ~ day + (day | subj)", train)
        pk = m.predict(train, interval="prediction")
        hits["known"].append(covered(pk, mean + rng.normal(0, 25, len(day))))
        ck = m.predict(train, interval="confidence")
        hits["confidence (known)"].append(covered(ck, mean))
        nb0, nb1 = rng.normal(0, 25, 10), rng.normal(0, 6, 10)
        nidx = np.repeat(np.arange(10), len(days))
        nday = np.tile(days, 10)
        ny = 250 + 10 * nday + nb0[nidx] + nb1[nidx] * nday + rng.normal(0, 25, len(nday))
        test = pd.DataFrame({"day": nday, "subj": [f"new{i}" for i in nidx]})
        hits["new"].append(covered(m.predict(test, interval="prediction"), ny))
    return {k: float(np.mean(np.concatenate(v))) for k, v in hits.items()}


def calibration(n_sims: int) -> None:
    start = time.perf_counter()
    loso = sleepstudy_loso()
    sim = simulation(n_sims)
    print("coverage of 95% intervals (target 0.95):")
    print("| data | interval | coverage |")
    print("|---|---|---|")
    print(f"| sleepstudy, leave one subject out (180 obs) | prediction, new subject | {loso:.3f} |")
    if shutil.which("Rscript"):
        out = subprocess.run(
            ["Rscript", str(HERE / "inference_mertools.R")], capture_output=True, text=True
        )
        if out.returncode == 0:
            value = float(out.stdout.split()[-1])
            print(
                f"| same, merTools predictInterval (2000 draws) | prediction, new subject "
                f"| {value:.3f} |"
            )
    for kind, value in sim.items():
        what = kind if kind.startswith("confidence") else f"prediction, {kind} subjects"
        print(f"| simulation, {n_sims} data sets x 300 obs | {what} | {value:.3f} |")
    print(f"calibration took {time.perf_counter() - start:.1f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kr-rows", type=int, default=5000, help="rows of the KR steps")
    parser.add_argument("--sims", type=int, default=100, help="simulated data sets")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-calibration", action="store_true")
    args = parser.parse_args(argv)
    if not args.skip_speed:
        speed(args.kr_rows)
    if not args.skip_calibration:
        calibration(args.sims)


if __name__ == "__main__":
    main()
