"""Benchmark MixedMLRegressor against MERF 1.0 and GPBoost, each with its default settings.

Three parts, one run (``--parts merf,gpboost,hgb``); every ratio compares models run in
the same process, one after the other, so that machine load hits them alike.

**merf** -- grouped nonlinear data (``--groups`` groups, 20 rows each, made here)::

    y = f(x1..x5) + b0_g + b1_g * z + noise,  (b0_g, b1_g) ~ N(0, diag(2^2, 2^2)),
    f = 10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 10 x4 + 5 x5  (Friedman #1),
    x ~ U(0, 1) per row,  z = t / 19,  noise ~ N(0, 1);

the first 15 rows of a group train, the 5 later rows test.  The same 100-tree random
forest (one thread, fixed seed) for all: alone; MERF with its defaults (20 EM
iterations, in-sample forest predictions); MixedML with its defaults (``(1 + z | g)``,
stopping rule, ``residuals="auto"``: out-of-bag predictions for a bagged forest).

**gpboost** -- ``simulate_longitudinal(500, 26, seed=0)``, train on ``temps < 20``, test
on the later times of the same subjects; random part
``(1 + x2_x5 + x4_x7 + x6_x8 || individus)``; features ``x1_obs..x8_obs``.
MixedML(HistGradientBoostingRegressor()) with defaults against GPBoost 1.8 (tree
boosting with grouped random effects, default parameters): with a random intercept only
(its default 100 rounds), and with the four random coefficients, which is slow, so its
rounds are capped (``--gpboost-rounds``, default 20; each round re-estimates the
covariance parameters) -- the table says what ran.

**hgb** -- the time of one HistGradientBoosting fit inside MixedML's loop (``seconds_ml``
of its steps: fit and predict the training rows) against the same work in a process
that never imports pylmer, with
either import order (pylmer first, scikit-learn first), optionally while ``--busy N``
processes spin on the CPUs.  Each configuration runs in its own subprocess.

Run::

    .venv/bin/python bench/mixedml.py [--parts merf,gpboost,hgb] [--busy 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FEATURES = ["x1", "x2", "x3", "x4", "x5", "z"]
N_TRAIN, N_TEST = 15, 5
LONG_RE = "(1 + x2_x5 + x4_x7 + x6_x8 || individus)"
LONG_FEATURES = [f"x{k}_obs" for k in range(1, 9)]
SLOPES = ["x2_x5", "x4_x7", "x6_x8"]


def mse(a: Any, b: Any) -> float:
    """Mean squared error."""
    return float(np.mean((np.asarray(a, float) - np.asarray(b, float)) ** 2))


# ---------------------------------------------------------------------------- MERF


def make_data(groups: int, seed: int) -> pd.DataFrame:
    """Grouped Friedman #1 data with a random intercept and a random slope of ``z``."""
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


def forest(trees: int, seed: int):
    """The base learner shared by all models of the MERF part."""
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=trees, random_state=seed, n_jobs=1)


def part_merf(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Forest alone, MERF defaults, MixedML defaults."""
    import logging

    from merf import MERF

    from pylmer import MixedMLRegressor

    logging.getLogger().setLevel(logging.WARNING)  # `import merf` logs every iteration
    df = make_data(args.groups, args.seed)
    train, test = df[df["train"]], df[~df["train"]]
    rows = []
    t = time.perf_counter()
    rf = forest(args.trees, args.seed).fit(train[FEATURES], train["y"])
    rows.append(
        {
            "model": "random forest alone",
            "seconds": time.perf_counter() - t,
            "iterations": 1,
            "test_mse": mse(rf.predict(test[FEATURES]), test["y"]),
        }
    )

    def z_of(d: pd.DataFrame) -> np.ndarray:
        return np.column_stack([np.ones(len(d)), d["z"].to_numpy()])

    t = time.perf_counter()
    merf = MERF(forest(args.trees, args.seed))
    merf.fit(train[FEATURES], z_of(train), train["g"], train["y"].to_numpy())
    seconds = time.perf_counter() - t
    pred = merf.predict(test[FEATURES], z_of(test), test["g"])
    rows.append(
        {
            "model": "MERF 1.0 (defaults)",
            "seconds": seconds,
            "iterations": len(merf.gll_history),
            "test_mse": mse(pred, test["y"]),
        }
    )

    cols = ["g", *FEATURES]
    model = MixedMLRegressor(forest(args.trees, args.seed), random_effects="(1 + z | g)")
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(train[cols], train["y"])
    seconds = time.perf_counter() - t
    rows.append(
        {
            "model": f"MixedML (defaults: residuals={model.residuals_used_!r})",
            "seconds": seconds,
            "iterations": model.n_iter_,
            "test_mse": mse(model.predict(test[cols]), test["y"]),
            "stop": model.stop_reason_,
            "warnings": sorted({str(w.message)[:80] for w in caught}),
        }
    )
    base = rows[1]
    for r in rows:
        r["time / MERF"] = r["seconds"] / base["seconds"]
        r["MSE / MERF"] = r["test_mse"] / base["test_mse"]
    return rows


# ---------------------------------------------------------------------------- GPBoost


def part_gpboost(args: argparse.Namespace) -> list[dict[str, Any]]:
    """MixedML(HGB) defaults against GPBoost defaults on simulate_longitudinal."""
    import gpboost as gpb
    from sklearn.ensemble import HistGradientBoostingRegressor

    from pylmer import MixedMLRegressor
    from pylmer.data.simulate import simulate_longitudinal

    df = simulate_longitudinal(500, 26, seed=args.seed)
    train, test = df[df["temps"] < 20], df[df["temps"] >= 20]
    rows = []
    t = time.perf_counter()
    hgb = HistGradientBoostingRegressor().fit(train[LONG_FEATURES], train["y_mixed_obs"])
    rows.append(
        {
            "model": "HistGradientBoosting alone",
            "seconds": time.perf_counter() - t,
            "iterations": 1,
            "test_mse": mse(hgb.predict(test[LONG_FEATURES]), test["y_mixed_obs"]),
        }
    )
    cols = ["individus", *LONG_FEATURES, *SLOPES]
    model = MixedMLRegressor(
        HistGradientBoostingRegressor(), random_effects=LONG_RE, features=LONG_FEATURES
    )
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(train[cols], train["y_mixed_obs"])
    seconds = time.perf_counter() - t
    rows.append(
        {
            "model": "MixedML(HistGradientBoosting), defaults",
            "seconds": seconds,
            "iterations": model.n_iter_,
            "test_mse": mse(model.predict(test[cols]), test["y_mixed_obs"]),
            "stop": model.stop_reason_,
            "warnings": sorted({str(w.message)[:80] for w in caught}),
        }
    )

    def run_gpb(rand_coef: bool, rounds: int) -> dict[str, Any]:
        kw: dict[str, Any] = {"group_data": train["individus"].to_numpy()}
        if rand_coef:
            kw["group_rand_coef_data"] = train[SLOPES].to_numpy()
            kw["ind_effect_group_rand_coef"] = [1, 1, 1]
        gp_model = gpb.GPModel(likelihood="gaussian", **kw)
        data = gpb.Dataset(train[LONG_FEATURES].to_numpy(), train["y_mixed_obs"].to_numpy())
        budget = args.gpboost_seconds
        start = time.perf_counter()
        done = {"rounds": 0}

        def stop_after_budget(env: Any) -> None:
            done["rounds"] = env.iteration + 1
            if time.perf_counter() - start > budget:
                raise gpb.callback.EarlyStopException(env.iteration, env.evaluation_result_list)

        bst = gpb.train(
            params={"verbose": -1},
            train_set=data,
            gp_model=gp_model,
            num_boost_round=rounds,
            callbacks=[stop_after_budget],
        )
        seconds = time.perf_counter() - start
        pkw: dict[str, Any] = {"group_data_pred": test["individus"].to_numpy()}
        if rand_coef:
            pkw["group_rand_coef_data_pred"] = test[SLOPES].to_numpy()
        pred = bst.predict(data=test[LONG_FEATURES].to_numpy(), pred_latent=False, **pkw)
        what = "4 random coefficients" if rand_coef else "random intercept only"
        return {
            "model": f"GPBoost {gpb.__version__}, {what}, {done['rounds']} of {rounds} rounds",
            "seconds": seconds,
            "iterations": done["rounds"],
            "test_mse": mse(pred["response_mean"], test["y_mixed_obs"]),
        }

    rows.append(run_gpb(False, 100))
    rows.append(run_gpb(True, args.gpboost_rounds))
    base = rows[1]
    for r in rows:
        r["time / MixedML"] = r["seconds"] / base["seconds"]
        r["MSE / MixedML"] = r["test_mse"] / base["test_mse"]
    return rows


# ---------------------------------------------------------------------------- HGB threads


def _hgb_child(mode: str, data: str) -> dict[str, Any]:
    """One configuration, in a fresh process; prints its result as JSON."""
    if mode == "pylmer_first":
        import pylmer
    from sklearn.ensemble import HistGradientBoostingRegressor

    if mode == "sklearn_first":
        import pylmer  # noqa: F401 - the import order is what is measured

    # the data come from the parent process (a pickle): this process imports pylmer
    # only where the configuration says so
    df = pd.read_pickle(data)
    if mode.startswith("no_pylmer"):
        assert "pylmer" not in sys.modules
    train = df[df["temps"] < 20]
    if mode.startswith("no_pylmer"):
        import contextlib

        from threadpoolctl import threadpool_limits

        one = mode.endswith("1thread")
        times = []
        y = train["y_mixed_obs"].to_numpy()
        rng = np.random.default_rng(0)
        for _ in range(5):  # targets that change a little, as in the loop
            t = time.perf_counter()
            with threadpool_limits(1, "openmp") if one else contextlib.nullcontext():
                # the work of one step: fit, and predict the training rows
                HistGradientBoostingRegressor().fit(
                    train[LONG_FEATURES], y + rng.normal(scale=0.1, size=len(y))
                ).predict(train[LONG_FEATURES])
            times.append(time.perf_counter() - t)
        return {"mode": mode, "seconds": times}
    from pylmer import MixedMLRegressor

    cols = ["individus", *LONG_FEATURES, *SLOPES]
    model = MixedMLRegressor(
        HistGradientBoostingRegressor(),
        random_effects=LONG_RE,
        features=LONG_FEATURES,
        max_iter=6,  # the time per fit is measured here, not the whole fit
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(train[cols], train["y_mixed_obs"])
    h = model.history_
    return {"mode": mode, "seconds": h["seconds_ml"].tolist(), "re": h["seconds_re"].tolist()}


def part_hgb(args: argparse.Namespace) -> list[dict[str, Any]]:
    """HGB seconds per fit: inside MixedML (both import orders) vs without pylmer."""
    import tempfile

    from pylmer.data.simulate import simulate_longitudinal

    data = Path(tempfile.mkdtemp()) / "long.pkl"
    simulate_longitudinal(500, 26, seed=0).to_pickle(data)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        out = {}
        # on an oversubscribed machine MixedML fits with one OpenMP thread
        # (pylmer.mixedml.threads): the same fit on one thread is a baseline too; each
        # baseline runs before and after the MixedML runs (the load drifts)
        modes = ["no_pylmer", "no_pylmer_1thread", "pylmer_first", "sklearn_first"]
        modes += ["no_pylmer_1thread", "no_pylmer"]
        for mode in modes:
            proc = subprocess.run(
                [sys.executable, __file__, "--hgb-child", mode, "--hgb-data", str(data)],
                capture_output=True,
                text=True,
                check=True,
            )
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            out.setdefault(mode, []).extend(res["seconds"])
    finally:
        for p in busy:
            p.kill()
    base = float(np.median(out["no_pylmer"]))
    rows = []
    for mode, secs in out.items():
        med = float(np.median(secs))
        rows.append(
            {
                "model": f"HGB fit, {mode.replace('_', ' ')}",
                "fits": len(secs),
                "median s / fit": med,
                "ratio to no pylmer": med / base,
                "busy processes": args.busy,
            }
        )
    return rows


# ---------------------------------------------------------------------------- main


def show(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n## {title}\n")
    frame = pd.DataFrame(rows)
    with pd.option_context("display.width", 250, "display.max_colwidth", 90):
        print(frame.to_string(index=False, float_format=lambda v: f"{v:.3g}"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="merf,gpboost,hgb")
    parser.add_argument("--groups", type=int, default=500, help="groups of the MERF data")
    parser.add_argument("--trees", type=int, default=100, help="trees of the shared forest")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--gpboost-rounds",
        type=int,
        default=20,
        help="cap on GPBoost's rounds with 4 random coefficients (20)",
    )
    parser.add_argument(
        "--gpboost-seconds",
        type=float,
        default=600.0,
        help="time budget of each GPBoost run (600 s)",
    )
    parser.add_argument("--busy", type=int, default=0, help="busy processes for the hgb part")
    parser.add_argument("--hgb-child", help=argparse.SUPPRESS)
    parser.add_argument("--hgb-data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.hgb_child:
        print(json.dumps(_hgb_child(args.hgb_child, args.hgb_data)))
        return
    parts = args.parts.split(",")
    if "merf" in parts or "gpboost" in parts:
        import pylmer

        versions = pylmer.versions()  # starts R outside the timings
        print(", ".join(f"{k} {v}" for k, v in versions.items()))
        print(f"merf {metadata.version('merf')}, gpboost {metadata.version('gpboost')}")
    print(f"load average before: {os.getloadavg()}, {os.cpu_count()} CPUs")
    if "merf" in parts:
        show(
            f"(a) MixedML vs MERF, {args.groups} groups, {args.trees}-tree forest", part_merf(args)
        )
    if "gpboost" in parts:
        show(
            "(b) MixedML(HGB) vs GPBoost, simulate_longitudinal(500, 26, seed=0)",
            part_gpboost(args),
        )
    if "hgb" in parts:
        show(
            "(c) HistGradientBoosting seconds per fit, inside MixedML vs without pylmer",
            part_hgb(args),
        )
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
