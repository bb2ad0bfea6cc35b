"""Threads, worker processes, interrupts and memory (issue 7): fits from several
threads serialise and equal sequential fits, joblib workers each run their own R, Ctrl-C
during a fit returns and the next fit works, repeated fits release their R objects.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _reliability import SLEEP

from pylmer import (
    FormulaError,
    lmer,
)
from pylmer.r import session as _r


@pytest.fixture(scope="module", autouse=True)
def _r_started(r_session):
    """Every test here talks to R (see conftest.r_session)."""


# ====================================================================== concurrency


def _summary(m: Any) -> np.ndarray:
    return np.r_[m.fixef_wald["estimate"], m.theta, m.sigma, m.loglik]


def _variant(sleep: pd.DataFrame, k: int) -> pd.DataFrame:
    """Distinct data per task, so that a mix-up between threads shows in the numbers."""
    return sleep.assign(Reaction=sleep["Reaction"] * (1 + k / 10) + k)


def test_threads_serialise_and_match_sequential_fits(sleep):
    tasks = [(k, reml) for k in range(6) for reml in (True, False)]
    expected = {t: _summary(lmer(SLEEP, _variant(sleep, t[0]), reml=t[1])) for t in tasks}
    start = threading.Barrier(4)

    def work(chunk: list[tuple[int, bool]]) -> dict:
        start.wait()
        out = {}
        for k, reml in chunk:
            with pytest.raises(FormulaError):  # errors in between do not disturb anyone
                lmer("Reaction ~ Nope + (1 | Subject)", sleep)
            m = lmer(SLEEP, _variant(sleep, k), reml=reml)
            out[k, reml] = (_summary(m), m.predict(sleep.head(5)).to_numpy())
        return out

    with ThreadPoolExecutor(4) as pool:
        results = {}
        for part in pool.map(work, [tasks[i::4] for i in range(4)]):
            results.update(part)
    assert set(results) == set(tasks)
    for t, (summary, pred) in results.items():
        np.testing.assert_allclose(summary, expected[t], rtol=1e-10, err_msg=str(t))
        fitted = lmer(SLEEP, _variant(sleep, t[0]), reml=t[1]).predict(sleep.head(5))
        np.testing.assert_allclose(pred, fitted, rtol=1e-10, err_msg=str(t))


def test_joblib_loky_workers_each_run_their_own_r(sleep):
    joblib = pytest.importorskip("joblib")
    from joblib.externals.loky import get_reusable_executor

    tasks = [(k, reml) for k in range(2) for reml in (True, False)]
    try:
        fits = joblib.Parallel(n_jobs=2, backend="loky")(
            joblib.delayed(lmer)(SLEEP, _variant(sleep, k), reml=reml) for k, reml in tasks
        )
        started = set(joblib.Parallel(n_jobs=2, backend="loky")(
            joblib.delayed(_r.started)() for _ in range(4)
        ))  # fmt: skip
    finally:
        get_reusable_executor().shutdown(wait=True)
    assert started == {True}  # each worker started its own R for its fits
    for (k, reml), m in zip(tasks, fits, strict=True):
        here = lmer(SLEEP, _variant(sleep, k), reml=reml)
        np.testing.assert_allclose(_summary(m), _summary(here), rtol=1e-10)
        # the model came back pickled: predict refits it in this process's R
        np.testing.assert_allclose(m.predict(sleep.head(3)), here.predict(sleep.head(3)))


# ====================================================================== interrupt

INTERRUPT_SCRIPT = """
import json, os, signal, threading, time
import numpy as np, pandas as pd
from pylmer import datasets, lmer
sleep = datasets.load("sleepstudy")
before = lmer("Reaction ~ Days + (Days | Subject)", sleep).fixef_wald["estimate"].tolist()
rng = np.random.default_rng(0)
n = 40_000  # crossed random slopes: minutes of lme4 work
a, b = rng.integers(0, 800, n), rng.integers(0, 600, n)
big = pd.DataFrame({"y": rng.normal(size=n) + rng.normal(size=800)[a] + rng.normal(size=600)[b],
                    "x": rng.normal(size=n), "a": pd.Categorical(a), "b": pd.Categorical(b)})
threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT)).start()
start = time.perf_counter()
try:
    lmer("y ~ x + (1 + x | a) + (1 + x | b)", big)
    outcome = "finished"
except KeyboardInterrupt:
    outcome = "KeyboardInterrupt"
seconds = time.perf_counter() - start
after = lmer("Reaction ~ Days + (Days | Subject)", sleep).fixef_wald["estimate"].tolist()
print(json.dumps({"outcome": outcome, "seconds": seconds, "before": before, "after": after}))
"""


def test_keyboard_interrupt_during_a_long_fit_returns_and_next_fit_works():
    proc = subprocess.run(
        [sys.executable, "-c", INTERRUPT_SCRIPT], capture_output=True, text=True, timeout=90
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["outcome"] == "KeyboardInterrupt", report
    assert report["seconds"] < 10, report  # signal at 1.5 s
    assert report["after"] == report["before"]
    assert "Exception ignored" not in proc.stderr, proc.stderr


# ====================================================================== memory


def test_repeated_fits_release_r_objects(sleep):
    """210 sleepstudy fits: R's heap in use, the bound data and the process RSS stay flat.

    Keeping the models alive instead grows R's heap by about 75 kB and the RSS by about
    100 kB a fit on lme4 1.1-31, so the bounds below catch a leak of the R objects.
    """
    psutil = pytest.importorskip("psutil")
    proc = psutil.Process()

    def r_heap_mb() -> float:
        used = _r.call("gc", full=True)  # Ncells, Vcells x (used, (Mb), ...)
        return float(used.iloc[0, 1] + used.iloc[1, 1])

    def n_bound() -> int:
        store = _r.RObject(_r._state["store"], ("environment",))
        names = _r.call("ls", envir=store)
        return 0 if names is None else len(np.atleast_1d(names))

    for _ in range(40):  # warm-up: R's heap grows to its working size
        m = lmer(SLEEP, sleep).predict(sleep.head(2))
    gc.collect()
    heap0, bound0 = r_heap_mb(), n_bound()
    # The RSS moves in steps (the allocators take a new arena now and then: +53 MB once
    # in 500 fits, then flat), while a leak grows it in every window: compare windows.
    growth = []
    for _ in range(3):
        rss_before = proc.memory_info().rss
        for _ in range(70):
            m = lmer(SLEEP, sleep)
            m.predict(sleep.head(2))
        del m
        gc.collect()
        growth.append((proc.memory_info().rss - rss_before) / 2**20)
    heap1, bound1 = r_heap_mb(), n_bound()
    assert heap1 - heap0 < 2.0, (heap0, heap1)
    assert bound1 <= bound0, (bound0, bound1)
    assert min(growth) < 5, growth  # a leak of 70 kB a fit grows every window by 5 MB
