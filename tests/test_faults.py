"""Faults a long session meets (issue 22): a worker process killed in the middle of a
parallel run (loky and Dask), a storm of failing fits, R out of memory, Ctrl-C during
each long operation.  After each, the session must still work and nothing may be left
half-fitted or held in R.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pandas as pd
import pytest

import pylmer
from pylmer.errors import WorkerLostError
from pylmer.r import session as _r

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def model(sleep) -> pylmer.LmerModel:
    return pylmer.lmer(FORMULA, sleep)


def _killer(marker: str, parent: int, always: bool = False):
    """A bootstrap statistic that SIGKILLs the worker process running it: on its first
    call in any worker (``marker`` does not exist yet), or on every call (``always``).
    A closure, so that it is pickled by value for the workers."""

    def stat(fit):
        if os.getpid() != parent and (always or not os.path.exists(marker)):
            with open(marker, "w"):
                pass
            os.kill(os.getpid(), signal.SIGKILL)
        return fit.fixef_wald["estimate"]

    return stat


def _no_tracebacks(capfd) -> None:
    err = capfd.readouterr().err
    assert "Traceback" not in err, err
    assert "resource_tracker" not in err, err


# ------------------------------------------------------------------ killed workers


def test_worker_killed_in_bootstrap_is_retried(model, tmp_path, capfd):
    stat = _killer(str(tmp_path / "killed"), os.getpid())
    serial = pylmer.bootstrap(model, stat, nsim=12, seed=5)
    draws = pylmer.bootstrap(model, stat, nsim=12, seed=5, n_jobs=2)
    assert (tmp_path / "killed").exists()  # a worker did die
    pd.testing.assert_frame_equal(draws, serial, check_exact=False, rtol=1e-10)
    _no_tracebacks(capfd)


def test_worker_killed_twice_raises_what_was_lost(model, tmp_path, capfd):
    stat = _killer(str(tmp_path / "killed"), os.getpid(), always=True)
    with pytest.raises(WorkerLostError, match=r"bootstrap: a worker process died twice") as info:
        pylmer.bootstrap(model, stat, nsim=6, seed=5, n_jobs=2)
    assert "were lost after one retry" in str(info.value)
    assert " of 6 fits) were done" in str(info.value)
    # the session and the workers are usable again
    again = pylmer.bootstrap(model, nsim=4, seed=1, n_jobs=2)
    np.testing.assert_allclose(again.to_numpy(), pylmer.bootstrap(model, nsim=4, seed=1))
    _no_tracebacks(capfd)


def test_worker_killed_in_lmer_many_is_retried(sleep, capfd):
    """A loky worker SIGKILLed from outside while lmer_many runs: the lost chunks run
    again and the result equals the serial one."""
    psutil = pytest.importorskip("psutil")
    rng = np.random.default_rng(3)
    Y = pd.DataFrame(
        {f"y{j}": sleep["Reaction"] + rng.normal(0, 10, len(sleep)) for j in range(80)}
    )
    data = pd.concat([sleep, Y], axis=1)
    responses = list(Y.columns)
    serial = pylmer.lmer_many("~ Days + (1 | Subject)", data, responses)
    running = threading.Event()
    killed: list[bool] = []

    def kill_a_busy_worker() -> None:
        me = psutil.Process()
        start: dict[int, float] = {}
        deadline = time.monotonic() + 120
        while running.is_set() and time.monotonic() < deadline:
            for p in me.children(recursive=True):
                try:
                    if "LokyProcess" not in " ".join(p.cmdline()):
                        continue
                    cpu = p.cpu_times().user
                except psutil.Error:
                    continue
                if cpu - start.setdefault(p.pid, cpu) > 0.5:  # working on this job
                    p.kill()
                    killed.append(running.is_set())
                    return
            time.sleep(0.05)

    running.set()
    thread = threading.Thread(target=kill_a_busy_worker, daemon=True)
    thread.start()
    try:
        many = pylmer.lmer_many("~ Days + (1 | Subject)", data, responses, n_jobs=2)
    finally:
        running.clear()
        thread.join()
    assert killed == [True], "no worker was killed while lmer_many ran"
    pd.testing.assert_frame_equal(many.fixef, serial.fixef, check_exact=False, rtol=1e-8)
    assert many.fit["error"].isna().all()
    _no_tracebacks(capfd)


@pytest.mark.slow
def test_dask_worker_killed_in_bootstrap_is_survived(model, tmp_path):
    distributed = pytest.importorskip("distributed", reason="dask[distributed] not installed")
    import joblib

    stat = _killer(str(tmp_path / "killed"), os.getpid())
    serial = pylmer.bootstrap(model, stat, nsim=8, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = distributed.Client(cluster)
        try:
            with joblib.parallel_config(backend="dask"):
                draws = pylmer.bootstrap(model, stat, nsim=8, seed=7, n_jobs=2)
                again = pylmer.bootstrap(model, nsim=4, seed=1, n_jobs=2)
        finally:
            client.close()
            cluster.close()
    assert (tmp_path / "killed").exists()
    pd.testing.assert_frame_equal(draws, serial, check_exact=False, rtol=1e-10)
    np.testing.assert_allclose(again.to_numpy(), pylmer.bootstrap(model, nsim=4, seed=1))


# ------------------------------------------------------------------ failing fits


@pytest.mark.slow
def test_error_storm_then_a_good_fit(sleep, model):
    """1,000 failing fits in a row (a formula error found by R's parser, and two lme4
    errors), then a fit equal to the one before; nothing left held in R."""
    tiny = pd.DataFrame({"y": [1.0, 2.0, 3.0, 4.0], "x": [1.0, 2.0, 3.0, 4.0], "g": ["a"] * 4})
    two = tiny.assign(g=["a", "a", "b", "b"])
    held = _r.held()
    r_mb = float(_r.call("gc").iloc[:, 1].sum())
    kinds: dict[str, int] = {}
    for i in range(1000):
        formula, data = [
            ("y ~ nope + (1 | g)", tiny),
            ("y ~ x + (1 | g)", tiny),
            ("y ~ x + (x | g)", two),
        ][i % 3]
        with pytest.raises(pylmer.PylmerError) as info:
            pylmer.lmer(formula, data)
        kinds[type(info.value).__name__] = kinds.get(type(info.value).__name__, 0) + 1
    assert kinds == {"FormulaError": 334, "RError": 666}
    del info  # its traceback holds the last failing call's frames (and their data)
    again = pylmer.lmer(FORMULA, sleep)
    pd.testing.assert_frame_equal(again.fixef, model.fixef, check_exact=False, rtol=1e-10)
    del again
    assert _r.held() == held
    assert float(_r.call("gc").iloc[:, 1].sum()) < r_mb + 5  # R's memory did not grow


# ------------------------------------------------------------------ out of memory

OOM_SCRIPT = """
import json, resource, warnings
import numpy as np, pandas as pd
import pylmer
from pylmer.r import session as _r
warnings.simplefilter("ignore")
sleep = pylmer.datasets.load("sleepstudy")
before = pylmer.lmer("Reaction ~ Days + (Days | Subject)", sleep).fixef["estimate"].tolist()
# cap the address space 300 MB above what the process (with R started) uses now
size = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1])
resource.setrlimit(resource.RLIMIT_AS, ((size + 300 * 1024) * 1024, resource.RLIM_INFINITY))
n = 9000  # a 4,500-level fixed-effect factor: a dense 9,000 x 4,500 model matrix (309 MB)
big = pd.DataFrame({"y": np.random.default_rng(0).normal(size=n),
                    "f": pd.Categorical(np.arange(n) % 4500),
                    "g": pd.Categorical(np.arange(n) % 30)})
try:
    pylmer.lmer("y ~ f + (1 | g)", big)
    error = None
except Exception as exc:
    error = {"type": type(exc).__name__, "mro": [c.__name__ for c in type(exc).__mro__],
             "message": str(exc)}
after = pylmer.lmer("Reaction ~ Days + (Days | Subject)", sleep).fixef["estimate"].tolist()
print(json.dumps({"error": error, "before": before, "after": after, "held": _r.held()}))
"""


def test_r_out_of_memory_is_a_clear_error_and_the_session_survives():
    """R's allocation fails under an address-space limit (``ulimit -v``): a model whose
    dense model matrix does not fit gives ROutOfMemoryError (an RError and a
    MemoryError) saying so, and the next fit works."""
    proc = subprocess.run(
        [sys.executable, "-c", OOM_SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    error = report["error"]
    assert error is not None, "the model fitted under the memory limit"
    assert error["type"] == "ROutOfMemoryError", error
    assert {"RError", "PylmerError", "MemoryError"} <= set(error["mro"])
    assert error["message"].startswith("R ran out of memory: cannot allocate vector of size")
    assert "make it a random effect" in error["message"]
    assert report["after"] == report["before"]
    assert report["held"]["objects"] == 0


# ------------------------------------------------------------------ Ctrl-C

INTERRUPT_SCRIPT = """
import json, os, signal, threading, time, warnings
import numpy as np, pandas as pd
from sklearn.linear_model import Ridge
from sklearn.utils.validation import check_is_fitted
import pylmer
from pylmer.r import session as _r
warnings.simplefilter("ignore")
sleep = pylmer.datasets.load("sleepstudy")
m = pylmer.lmer("Reaction ~ Days + (Days | Subject)", sleep)
boot = pylmer.bootstrap(m, nsim=4, seed=1, n_jobs=2).to_numpy().tolist()
rng = np.random.default_rng(0)
Y = pd.DataFrame({f"y{j}": sleep["Reaction"] + rng.normal(0, 10, 180) for j in range(4000)})
data = pd.concat([sleep, Y], axis=1)
# each step an lme4 fit of crossed random slopes on 40,000 rows (a stopping rule cannot
# end it within the 2 s before the signal)
est = pylmer.MixedMLRegressor(Ridge(), random_effects="(1 + x | a) + (1 + x | b)",
                              max_iter=1000, tol=1e-300)
ops = {
    "fit": lambda: pylmer.lmer("y ~ x + (1 + x | a) + (1 + x | b)", big),
    "bootstrap": lambda: pylmer.bootstrap(m, nsim=20000, seed=2),
    "bootstrap_n_jobs": lambda: pylmer.bootstrap(m, nsim=20000, seed=2, n_jobs=2),
    "lmer_many": lambda: pylmer.lmer_many("~ Days + (Days | Subject)", data, list(Y.columns)),
    "lmer_many_n_jobs": lambda: pylmer.lmer_many("~ Days + (Days | Subject)", data,
                                                 list(Y.columns), n_jobs=2),
    "mixedml": lambda: est.fit(big[["x", "a", "b"]], big["y"]),
}
try:
    from pylmer.power import power
    ops["power"] = lambda: power(m, "Days", nsim=20000, seed=3)
except ImportError:
    pass
n = 40_000  # crossed random slopes: minutes of lme4 work
a, b = rng.integers(0, 800, n), rng.integers(0, 600, n)
big = pd.DataFrame({"y": rng.normal(size=n) + rng.normal(size=800)[a] + rng.normal(size=600)[b],
                    "x": rng.normal(size=n), "a": pd.Categorical(a), "b": pd.Categorical(b)})
held = _r.held()
report = {}
for name, op in ops.items():
    # like a terminal's Ctrl-C: SIGINT to the whole process group (workers included)
    timer = threading.Timer(2.0, os.killpg, (os.getpgid(0), signal.SIGINT))
    timer.start()
    start = time.perf_counter()
    try:
        op()
        outcome = "finished"
    except KeyboardInterrupt:
        outcome = "KeyboardInterrupt"
    except BaseException as exc:
        outcome = f"{type(exc).__name__}: {exc}"[:300]
    seconds = time.perf_counter() - start
    timer.cancel()
    try:
        time.sleep(3)  # a signal sent after the operation ended lands here
    except KeyboardInterrupt:
        outcome += " (then KeyboardInterrupt after the end)"
    try:
        check_is_fitted(est)
        fitted = True
    except Exception:
        fitted = False
    again = pylmer.bootstrap(m, nsim=4, seed=1, n_jobs=2).to_numpy().tolist()
    report[name] = {"outcome": outcome, "seconds": round(seconds, 1), "same_after": again == boot,
                    "mixedml_fitted": fitted, "held": _r.held() == held}
print(json.dumps(report))
"""


@pytest.mark.slow
def test_ctrl_c_during_each_long_operation():
    """SIGINT to the process group 2 s into a fit, a bootstrap, lmer_many (both serial
    and with n_jobs=2), a MixedML fit and a power simulation: KeyboardInterrupt within
    seconds, no half-fitted estimator, nothing left held in R, and the next parallel
    bootstrap equal to the one before."""
    proc = subprocess.run(
        [sys.executable, "-c", INTERRUPT_SCRIPT],
        capture_output=True,
        text=True,
        timeout=600,
        start_new_session=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    for name, row in report.items():
        assert row["outcome"] == "KeyboardInterrupt", (name, row)
        assert row["seconds"] < 30, (name, row)  # signal at 2 s; a loaded machine
        assert row["same_after"] and row["held"], (name, row)
        assert not row["mixedml_fitted"], (name, row)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


# ------------------------------------------------------------------ load


def test_four_threads_of_ten_fits_equal_serial_fits(sleep):
    """The small version of bench/load.py: 4 threads x 10 fits (each a distinct response,
    with a predict and, every 5th, a glmer fit), all equal to the same fits run serially;
    nothing left held in R."""
    cbpp = pylmer.datasets.load("cbpp")
    glmer_formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"

    def one(k: int) -> np.ndarray:
        data = sleep.assign(Reaction=sleep["Reaction"] + np.random.default_rng(k).normal(0, 5, 180))
        m = pylmer.lmer(FORMULA, data)
        out = [m.fixef_wald["estimate"].to_numpy(), m.theta, [m.sigma], m.predict(sleep.head(5))]
        if k % 5 == 0:
            out.append(pylmer.glmer(glmer_formula, cbpp, family="binomial").theta)
        return np.concatenate([np.asarray(v, dtype=float) for v in out])

    keys = list(range(40))
    held = _r.held()
    serial = {k: one(k) for k in keys}
    barrier = threading.Barrier(4)

    def work(chunk: list[int]) -> dict[int, np.ndarray]:
        barrier.wait()
        return {k: one(k) for k in chunk}

    threaded: dict[int, np.ndarray] = {}
    pool = [
        threading.Thread(target=lambda c=c: threaded.update(work(c)))
        for c in (keys[i::4] for i in range(4))
    ]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in pool), "a thread is stuck (deadlock?)"
    assert set(threaded) == set(keys)
    for k in keys:
        np.testing.assert_allclose(threaded[k], serial[k], rtol=1e-10, err_msg=str(k))
    assert _r.held() == held
