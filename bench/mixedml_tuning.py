"""Tuning the estimator inside MixedML: ``tune_in_loop`` against ``GridSearchCV``.

Data: ``simulate_longitudinal(--subjects, --times, seed=--seed)``, random part
``(1 + x2_x5 + x4_x7 + x6_x8 || individus)``, features ``x1_obs..x8_obs``; the first
two thirds of every subject's visits train, the rest test (known subjects, later
visits).  Grid over ``HistGradientBoostingRegressor``: :data:`GRID` (18 candidates, the
same grid both ways).  Run it single-threaded (``OMP_NUM_THREADS=1``) on a quiet machine.

* ``GridSearchCV(MixedMLRegressor(HGB()), {"estimator__...": grid},
  cv=GroupKFold(3))`` with the subjects as groups, refit on all training rows: one full EM
  loop per candidate and fold, plus the refit;
* :func:`pylmer.mixedml.tuning.tune_in_loop`: one EM loop with HGB defaults, a grid
  search of the bare HGB on the working response (3 group folds), one EM loop with the
  chosen parameters;
* ``MixedMLRegressor(HGB())`` with defaults, for reference.

Reported: test MSE, wall time, chosen parameters; the time ratio is within this run.
Run::

    .venv/bin/python bench/mixedml_tuning.py [--subjects 100] [--times 12]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import GridSearchCV, GroupKFold

from pylmer import MixedMLRegressor
from pylmer.data.simulate import simulate_longitudinal
from pylmer.mixedml.tuning import tune_in_loop

RE = "(1 + x2_x5 + x4_x7 + x6_x8 || individus)"
FEATURES = [f"x{k}_obs" for k in range(1, 9)]
#: a grid a user would try: 3 x 3 x 2 = 18 candidates
GRID = {
    "learning_rate": [0.03, 0.1, 0.3],
    "max_leaf_nodes": [7, 15, 31],
    "min_samples_leaf": [20, 60],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, default=100)
    p.add_argument("--times", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    df = simulate_longitudinal(args.subjects, args.times, seed=args.seed)
    cols = ["individus", *FEATURES, "x2_x5", "x4_x7", "x6_x8"]
    cut = int(args.times * 2 / 3)
    train, test = df[df.temps < cut], df[df.temps >= cut]
    Xtr, ytr = train[cols], train["y_mixed_obs"].to_numpy()
    Xte, yte = test[cols], test["y_mixed_obs"].to_numpy()

    def model(est=None):
        return MixedMLRegressor(
            est or HistGradientBoostingRegressor(random_state=0),
            random_effects=RE,
            features=FEATURES,
        )

    print(f"load average at start: {os.getloadavg()}", flush=True)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        m = model().fit(Xtr, ytr)
        rows.append(("defaults", m.predict(Xte), time.perf_counter() - t, "-"))
        print(rows[-1][0], rows[-1][2], flush=True)

        t = time.perf_counter()
        tuned = tune_in_loop(model(), Xtr, ytr, GRID, cv=3)
        rows.append(
            (
                "tune_in_loop",
                tuned.predict(Xte),
                time.perf_counter() - t,
                tuned.tuning_["best_params"],
            )
        )
        print(rows[-1][0], rows[-1][2], flush=True)

        t = time.perf_counter()
        search = GridSearchCV(
            model(),
            {f"estimator__{k}": v for k, v in GRID.items()},
            cv=GroupKFold(n_splits=3),
            scoring="neg_mean_squared_error",
        )
        search.fit(Xtr, ytr, groups=train["individus"])
        rows.append(
            ("GridSearchCV", search.predict(Xte), time.perf_counter() - t, search.best_params_)
        )
        print(rows[-1][0], rows[-1][2], flush=True)
    grid_seconds = rows[-1][2]
    print(f"\nsimulate_longitudinal({args.subjects}, {args.times}, seed={args.seed}), "
          f"{len(train)} training rows, {len(test)} test rows")  # fmt: skip
    print("| method | test MSE | wall s | time / GridSearchCV's | chosen |")
    print("|---|---:|---:|---:|---|")
    for name, pred, seconds, best in rows:
        mse = float(np.mean((yte - pred) ** 2))
        print(f"| {name} | {mse:.4f} | {seconds:.1f} | {seconds / grid_seconds:.3f} | {best} |")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
