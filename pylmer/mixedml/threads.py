"""Thread pools around MixedML's calls: R's BLAS must not fight scikit-learn's OpenMP.

``import pylmer`` changes no process-wide setting (an ``OMP_WAIT_POLICY=PASSIVE`` set at
import made HistGradientBoosting 15x slower).  Instead, while a MixedML fit or prediction
runs, the thread pools *R* brought into the process (Debian's OpenBLAS, the system
libgomp) are limited to one thread with threadpoolctl, and restored afterwards: the
random-effects step is sparse linear algebra on small blocks where extra threads only
spin, and threads left spinning by an R call steal the cores the estimator's OpenMP
threads (HistGradientBoosting) wait for.  numpy's BLAS and scikit-learn's OpenMP pools
(their own copies in site-packages) are left alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["r_blas_single_threaded"]


def _start_r() -> None:
    from .. import _r

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
    except Exception:
        yield
        return
    if not controller.lib_controllers:
        yield
        return
    with controller.limit(limits=1):
        yield
