"""Load: many threads on one process, one very wide lmer_many, a 50-candidate MixedML
grid search.

* ``threads``: 8 threads x 200 fits each (sleepstudy, a distinct response per fit, with
  a predict) in one process, against the same 1,600 fits run serially first.  pylmer
  serialises R calls with one lock, so threads cannot be faster than serial; the check
  is that every threaded fit equals its serial twin (no mix-up, no deadlock) and what
  the throughput is.
* ``many``: ``lmer_many`` with 20,000 responses (sleepstudy design, ``n_jobs=2``).
* ``grid``: scikit-learn ``GridSearchCV`` over a MixedML regressor, 50 candidates x 3
  folds, in one process (``n_jobs=1``): 150 MixedML fits and 150 predictions.

Usage::

    python bench/load.py threads many grid

Prints one JSON line per part.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

FORMULA = "Reaction ~ Days + (Days | Subject)"


def _variant(sleep: pd.DataFrame, k: int) -> pd.DataFrame:
    """A distinct response per fit, so that a mix-up between threads shows."""
    noise = np.random.default_rng(k).normal(0, 5, len(sleep))
    return sleep.assign(Reaction=sleep["Reaction"] + noise)


def _summary(m) -> np.ndarray:
    return np.r_[m.fixef_wald["estimate"].to_numpy(), m.theta, m.sigma]


def threads(n_threads: int = 8, per_thread: int = 200) -> dict:
    import pylmer

    sleep = pylmer.datasets.load("sleepstudy")
    keys = list(range(n_threads * per_thread))
    data = {k: _variant(sleep, k) for k in keys}
    head = sleep.head(10)
    t0 = time.perf_counter()
    serial = {}
    for k in keys:
        m = pylmer.lmer(FORMULA, data[k])
        serial[k] = (_summary(m), m.predict(head).to_numpy())
    t_serial = time.perf_counter() - t0
    barrier = threading.Barrier(n_threads)

    def work(chunk: list[int]) -> dict:
        barrier.wait()
        out = {}
        for k in chunk:
            m = pylmer.lmer(FORMULA, data[k])
            out[k] = (_summary(m), m.predict(head).to_numpy())
        return out

    t0 = time.perf_counter()
    threaded: dict = {}
    with ThreadPoolExecutor(n_threads) as pool:
        for part in pool.map(work, [keys[i::n_threads] for i in range(n_threads)]):
            threaded.update(part)
    t_threads = time.perf_counter() - t0
    worst = max(
        max(
            np.max(np.abs(threaded[k][0] - serial[k][0]) / np.maximum(1, np.abs(serial[k][0]))),
            np.max(np.abs(threaded[k][1] - serial[k][1]) / np.maximum(1, np.abs(serial[k][1]))),
        )
        for k in keys
    )
    return {
        "part": "threads",
        "threads": n_threads,
        "fits": len(threaded),
        "serial_s": round(t_serial, 1),
        "threads_s": round(t_threads, 1),
        "serial_fits_per_s": round(len(keys) / t_serial, 1),
        "threads_fits_per_s": round(len(keys) / t_threads, 1),
        "threads_over_serial_time": round(t_threads / t_serial, 2),
        "max_rel_diff": float(worst),
        "all_equal_1e-10": bool(worst < 1e-10 and set(threaded) == set(keys)),
    }


def many(n_responses: int = 20000, n_jobs: int = 2) -> dict:
    import pylmer

    sleep = pylmer.datasets.load("sleepstudy")
    rng = np.random.default_rng(1)
    Y = pd.DataFrame(
        sleep["Reaction"].to_numpy()[:, None] + rng.normal(0, 10, (len(sleep), n_responses)),
        columns=[f"y{j}" for j in range(n_responses)],
    )
    data = pd.concat([sleep, Y], axis=1)
    t0 = time.perf_counter()
    res = pylmer.lmer_many(FORMULA.replace("Reaction ", ""), data, list(Y.columns), n_jobs=n_jobs)
    seconds = time.perf_counter() - t0
    return {
        "part": "many",
        "responses": n_responses,
        "n_jobs": n_jobs,
        "seconds": round(seconds, 1),
        "responses_per_s": round(n_responses / seconds, 1),
        "fitted": int(res.fit["error"].isna().sum()),
        "failed": int(res.fit["error"].notna().sum()),
        "fixef_rows": len(res.fixef),
    }


def grid() -> dict:
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV, GroupKFold

    import pylmer
    from pylmer.r import session as _r

    sleep = pylmer.datasets.load("sleepstudy")
    X, y = sleep[["Days", "Subject"]], sleep["Reaction"]
    est = pylmer.MixedMLRegressor(Ridge(), random_effects="(Days | Subject)", max_iter=30)
    params = {
        "estimator__alpha": list(np.logspace(-3, 3, 10)),
        "tol": [1e-2, 1e-3, 1e-4, 1e-5, 1e-6],
    }
    search = GridSearchCV(est, params, cv=GroupKFold(n_splits=3), n_jobs=1)
    t0 = time.perf_counter()
    search.fit(X, y, groups=sleep["Subject"])
    seconds = time.perf_counter() - t0
    return {
        "part": "grid",
        "candidates": len(search.cv_results_["params"]),
        "fits": len(search.cv_results_["params"]) * 3 + 1,
        "seconds": round(seconds, 1),
        "best_params": {k: float(v) for k, v in search.best_params_.items()},
        "best_score": round(float(search.best_score_), 4),
        "held_after": _r.held(),
    }


def main() -> None:
    warnings.simplefilter("ignore")
    parts = sys.argv[1:] or ["threads", "many", "grid"]
    for part in parts:
        print(json.dumps({"threads": threads, "many": many, "grid": grid}[part]()), flush=True)


if __name__ == "__main__":
    main()
