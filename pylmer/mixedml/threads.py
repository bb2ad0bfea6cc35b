"""Thread pools around MixedML's calls: R's BLAS must not fight scikit-learn's OpenMP.

``import pylmer`` changes no process-wide setting (an ``OMP_WAIT_POLICY=PASSIVE`` set at
import made HistGradientBoosting 15x slower).  Instead, while a MixedML fit or prediction
runs, the BLAS library *R* loaded (Debian's OpenBLAS) is limited to one thread with
threadpoolctl, and restored afterwards: the random-effects step is sparse linear algebra
on small blocks where BLAS threads only spin, and spinning BLAS threads left behind by an
R call steal the cores the estimator's OpenMP threads (HistGradientBoosting) wait for.
numpy's own BLAS and scikit-learn's OpenMP pools are left alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["r_blas_single_threaded"]


def _r_blas_controller():
    """threadpoolctl's controller of the BLAS libraries loaded outside Python packages."""
    from threadpoolctl import ThreadpoolController

    blas = ThreadpoolController().select(user_api="blas").lib_controllers
    return ThreadpoolController._from_controllers([c for c in blas if _is_r_lib(c.filepath)])


def _is_r_lib(path: str) -> bool:
    # numpy/scipy ship their OpenBLAS inside site-packages (numpy.libs, scipy_openblas)
    return "site-packages" not in path and "dist-packages" not in path


@contextlib.contextmanager
def r_blas_single_threaded() -> Iterator[None]:
    """Limit the BLAS that R loaded to one thread inside the block (no-op without R)."""
    from .. import _r

    if not _r.started():
        _r._ensure()
    try:
        controller = _r_blas_controller()
    except Exception:
        yield
        return
    if not controller.lib_controllers:
        yield
        return
    with controller.limit(limits=1):
        yield
