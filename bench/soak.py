"""Soak: one Python process runs tens of thousands of mixed pylmer operations.

A long session (a cross-validation, a MixedML grid search, a notebook left running)
must neither abort nor grow.  This runs rounds of mixed work in one process until a
number of fits or a wall-clock budget is reached, and samples along the way:

* refcounts of ``None``, ``True``, ``False``, ``Ellipsis`` and small ints (a C extension
  that drops a reference it does not own makes them fall until the interpreter aborts
  with "deallocating None"; rpy2 3.5's ``memoryview()`` did, -33 per lmer fit);
* the process's RSS, R's own memory (``gc()`` in R, Ncells + Vcells in MB);
* the R objects and bound data pylmer keeps (:func:`pylmer.r.session.held`), which must
  fall back to zero once the models are dropped.

One round: 10 lmer fits (sleepstudy, response jittered per round) each with a predict,
2 glmer fits (cbpp) with a predict, 1 emmeans, 5 failing fits (an unknown column, an
R-level lme4 error), 1 MixedML fit (Ridge, 3 iterations: 3 lme4 steps + the final
model); every 5th round a parametric bootstrap (nsim=200, n_jobs=2) and every 20th an
``lmer_many`` over 20 responses.  Fits counted: lmer + glmer + MixedML lme4 steps +
bootstrap refits + lmer_many refits (failing fits are counted apart).

Usage::

    python bench/soak.py --fits 30000 --minutes 80 --out /tmp/soak.jsonl  # the README run

Exit status 0 when the run ended with no unexpected exception, no singleton lost a
reference, and nothing was left held in R; 1 otherwise.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import warnings

import numpy as np
import psutil

SINGLETONS = {"None": None, "True": True, "False": False, "Ellipsis": ..., "0": 0, "1": 1, "-1": -1}


def refcounts() -> dict[str, int]:
    return {k: sys.getrefcount(v) for k, v in SINGLETONS.items()}


def r_memory_mb(_r) -> float:
    """R's memory in use after a full R garbage collection (``gc()``: Ncells + Vcells MB)."""
    used = _r.call("gc")
    return float(used.iloc[:, 1].sum())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fits", type=int, default=20000, help="stop after this many fits")
    parser.add_argument("--minutes", type=float, default=80.0, help="or after this long")
    parser.add_argument("--sample", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--out", default="/tmp/soak.jsonl", help="samples, one JSON per line")
    args = parser.parse_args()

    warnings.simplefilter("ignore")
    import pandas as pd
    from sklearn.linear_model import Ridge

    import pylmer
    from pylmer.r import session as _r

    sleep = pylmer.datasets.load("sleepstudy")
    cbpp = pylmer.datasets.load("cbpp")
    one_subject = sleep[sleep["Subject"] == "308"].copy()
    one_subject["Subject"] = one_subject["Subject"].cat.remove_unused_categories()
    rng = np.random.default_rng(2026)
    ops: dict[str, int] = dict.fromkeys(
        ["lmer", "predict", "glmer", "emmeans", "failing", "mixedml", "mixedml_steps",
         "bootstrap", "bootstrap_refits", "lmer_many", "lmer_many_refits"], 0)  # fmt: skip
    unexpected: list[str] = []

    def fits() -> int:
        return (
            ops["lmer"]
            + ops["glmer"]
            + ops["mixedml_steps"]
            + ops["bootstrap_refits"]
            + ops["lmer_many_refits"]
        )

    def one_round(i: int) -> None:
        data = sleep.assign(Reaction=sleep["Reaction"] + rng.normal(0, 5, len(sleep)))
        for _ in range(10):
            m = pylmer.lmer("Reaction ~ Days + (Days | Subject)", data)
            _ = m.fixef  # the summary values cross from R
            ops["lmer"] += 1
            m.predict(data)
            ops["predict"] += 1
        for _ in range(2):
            g = pylmer.glmer(
                "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial"
            )
            g.predict(cbpp)
            ops["glmer"] += 1
            ops["predict"] += 1
        pylmer.emmeans(g, "period", pairwise=True)
        ops["emmeans"] += 1
        for k in range(5):
            try:
                if k % 2:
                    pylmer.lmer("Reaction ~ Nope + (1 | Subject)", data)
                else:
                    pylmer.lmer("Reaction ~ Days + (1 | Subject)", one_subject)
            except pylmer.PylmerError:
                ops["failing"] += 1
            else:
                unexpected.append(f"round {i}: a failing fit succeeded")
        est = pylmer.MixedMLRegressor(
            Ridge(), random_effects="(1 | Subject)", max_iter=3, tol=1e-12
        ).fit(data[["Days", "Subject"]], data["Reaction"])
        est.predict(data[["Days", "Subject"]])
        ops["mixedml"] += 1
        ops["mixedml_steps"] += len(est.history_) + 1
        if i % 5 == 0:
            draws = pylmer.bootstrap(m, nsim=200, seed=i, n_jobs=2)
            ops["bootstrap"] += 1
            ops["bootstrap_refits"] += len(draws)
        if i % 20 == 0:
            Y = pd.DataFrame(
                {f"y{j}": data["Reaction"] + rng.normal(0, 10, len(data)) for j in range(20)}
            )
            res = pylmer.lmer_many(
                "~ Days + (Days | Subject)", pd.concat([data, Y], axis=1), list(Y.columns)
            )
            ops["lmer_many"] += 1
            ops["lmer_many_refits"] += len(res.fit)

    proc = psutil.Process()
    samples: list[dict] = []

    def sample(t0: float, label: str) -> dict:
        gc.collect()
        row = {
            "label": label,
            "minutes": round((time.perf_counter() - t0) / 60, 2),
            "fits": fits(),
            "operations": sum(v for k, v in ops.items() if not k.endswith(("_refits", "_steps"))),
            "rss_mb": round(proc.memory_info().rss / 2**20, 1),
            "r_mb": round(r_memory_mb(_r), 1),
            "held": _r.held(),
            "refcounts": refcounts(),
            "ops": dict(ops),
            "unexpected": len(unexpected),
        }
        samples.append(row)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps({k: row[k] for k in row if k != "ops"}), flush=True)
        return row

    t0 = time.perf_counter()
    for i in range(1, 4):  # warm-up: R started, scripts sourced, loky workers up
        one_round(i * 10)
    start = sample(t0, "after warm-up")
    next_sample = time.perf_counter() + args.sample
    i = 0
    status = "ok"
    try:
        while fits() - start["fits"] < args.fits:
            i += 1
            try:
                one_round(i)
            except Exception as exc:  # recorded and the soak goes on
                unexpected.append(f"round {i}: {type(exc).__name__}: {exc}"[:300])
            if time.perf_counter() >= next_sample:
                sample(t0, "running")
                next_sample = time.perf_counter() + args.sample
            if time.perf_counter() - t0 > args.minutes * 60:
                status = "time budget reached"
                break
    except BaseException as exc:  # KeyboardInterrupt: report what was measured
        status = f"stopped: {type(exc).__name__}"
    end = sample(t0, "end")
    drift = {k: end["refcounts"][k] - start["refcounts"][k] for k in SINGLETONS}
    lost = {k: v for k, v in drift.items() if v < 0}
    run_fits = end["fits"] - start["fits"]
    rss = [s["rss_mb"] for s in samples]
    summary = {
        "status": status,
        "rounds": i,
        "minutes": end["minutes"],
        "fits_after_warmup": run_fits,
        "fits_per_second": round(run_fits / max(1e-9, (end["minutes"] - start["minutes"]) * 60), 1),
        "operations": end["operations"],
        "ops": end["ops"],
        "rss_mb_after_warmup": start["rss_mb"],
        "rss_mb_end": end["rss_mb"],
        "rss_mb_max": max(rss),
        "r_mb_after_warmup": start["r_mb"],
        "r_mb_end": end["r_mb"],
        "held_end": end["held"],
        "refcount_drift": drift,
        "unexpected": unexpected[:20],
        "n_unexpected": len(unexpected),
    }
    print("SUMMARY " + json.dumps(summary), flush=True)
    with open(args.out, "a") as fh:
        fh.write(json.dumps({"summary": summary}) + "\n")
    bad = lost or unexpected or any(end["held"].values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
