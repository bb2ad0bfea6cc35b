"""Thread pools around MixedML's calls: R's BLAS must not fight scikit-learn's OpenMP.

``import pylmer`` changes no process-wide setting (an ``OMP_WAIT_POLICY=PASSIVE`` set at
import made HistGradientBoosting 15x slower).  Instead, while a MixedML fit or prediction
runs, the thread pools *R* brought into the process (Debian's OpenBLAS, the system
libgomp) are limited to one thread with threadpoolctl, and restored afterwards: the
random-effects step is sparse linear algebra on small blocks where extra threads only
spin, and threads left spinning by an R call steal the cores the estimator's OpenMP
threads (HistGradientBoosting) wait for.  numpy's BLAS and scikit-learn's OpenMP pools
(their own copies in site-packages) are left alone -- except on an oversubscribed
machine (1-minute load average at or above the number of CPUs), where each estimator fit
runs with one OpenMP thread (:func:`estimator_threads`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["estimator_threads", "oversubscribed", "r_blas_single_threaded"]


def _start_r() -> None:
    from ..r import session as _r

    if not _r.started():
        _r._ensure()


def _r_controller():
    """threadpoolctl's controller of R's thread pools (its BLAS and OpenMP runtime): the
    BLAS and OpenMP libraries outside Python's package folders (numpy, scipy and
    scikit-learn ship their own in site-packages)."""
    from threadpoolctl import ThreadpoolController

    controller = ThreadpoolController()
    mine = [c for c in controller.lib_controllers if _outside_python(c.filepath)]
    return ThreadpoolController._from_controllers(mine)


def _outside_python(path: str) -> bool:
    return "site-packages" not in path and "dist-packages" not in path


@contextlib.contextmanager
def r_blas_single_threaded() -> Iterator[None]:
    """Limit R's BLAS and OpenMP pools to one thread inside the block, then restore them."""
    _start_r()
    try:
        controller = _r_controller()
    except Exception:  # threadpoolctl missing or failing: leave the threads as they are
        yield
        return
    if not controller.lib_controllers:
        yield
        return
    with controller.limit(limits=1):
        yield


def oversubscribed() -> bool:
    """Whether more processes want the CPUs than there are (1-minute load average)."""
    try:
        return os.getloadavg()[0] >= (os.cpu_count() or 1)
    except OSError:  # no load average on this platform
        return False


@contextlib.contextmanager
def estimator_threads() -> Iterator[None]:
    """Around one estimator fit: one OpenMP thread when the machine is oversubscribed.

    OpenMP's barriers spin while they wait for the other threads of a parallel region;
    when other processes hold the CPUs, those threads are descheduled and every barrier
    waits out time slices.  Measured on 2 CPUs at load 16: a HistGradientBoosting fit
    took 22-65 s with 2 threads and 0.8-1.5 s with one.  On an idle machine nothing is
    changed.
    """
    if not oversubscribed():
        yield
        return
    try:
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(limits=1, user_api="openmp")
    except Exception:  # threadpoolctl missing or failing: leave the threads as they are
        yield
        return
    with limits:
        yield
