"""The exception and warning family of pylmer.

Every error pylmer raises on purpose is a :class:`PylmerError`; the subclasses say
what went wrong (bad data, bad formula, an error inside R).  R's warnings come back
as Python warnings: convergence problems as :class:`LmerConvergenceWarning`
(a subclass of scikit-learn's ``ConvergenceWarning``), singular fits as
:class:`SingularFitWarning`, everything else as :class:`RWarning`.  Every warning is a
:class:`PylmerWarning` and, issued through :func:`warn`, points at the user's line.

The three classes built on scikit-learn's (:class:`NotFittedError`,
:class:`LmerConvergenceWarning`, :class:`MixedMLConvergenceWarning`) are created on
first use, so that ``import pylmer`` does not import scikit-learn (1.3 s and 60 MB) for
users who fit lme4 models only.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import TYPE_CHECKING, Any

__all__ = [
    "DataError",
    "DataWarning",
    "DroppedRowsWarning",
    "FormulaError",
    "InvalidArgumentError",
    "LmerConvergenceWarning",
    "MixedMLConvergenceWarning",
    "NewLevelsWarning",
    "NotFittedError",
    "PylmerError",
    "PylmerWarning",
    "RError",
    "RMessage",
    "RNotAvailableError",
    "ROutOfMemoryError",
    "RWarning",
    "SingularFitWarning",
    "WorkerLostError",
    "warn",
]

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message: str, category: type[Warning]) -> None:
    """Issue a warning reported at the first frame outside pylmer (the user's line).

    Python 3.11's ``warnings.warn`` has no ``skip_file_prefixes``: the frames inside the
    package are counted here instead of a fixed ``stacklevel`` that breaks whenever a
    call path gains or loses a frame.
    """
    frame = sys._getframe(1)
    level = 2  # stacklevel 2 is warn()'s caller
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)


class PylmerError(Exception):
    """Base class of every error raised by pylmer."""


class WorkerLostError(PylmerError, RuntimeError):
    """A worker process of a parallel run (joblib's loky or a Dask worker) died twice; the
    message says how much was done and lost.  The calling process's R session is fine."""


class RNotAvailableError(PylmerError, ImportError):
    """R, rpy2 or an R package (lme4) is missing or too old."""


class RError(PylmerError, RuntimeError):
    """An error raised inside R; ``r_message`` holds R's own message."""

    def __init__(self, message: str, *, r_message: str | None = None, call: str | None = None):
        super().__init__(message)
        self.r_message = message if r_message is None else r_message
        self.call = call


class ROutOfMemoryError(RError, MemoryError):
    """R could not allocate memory for a computation ("cannot allocate vector of size
    ..."); nothing was fitted and the R session stays usable."""


class FormulaError(PylmerError, ValueError):
    """The model formula is malformed or names something that is not in the data."""


class DataError(PylmerError, ValueError):
    """The data cannot be used as given (types, missing values, levels, shapes)."""


class InvalidArgumentError(PylmerError, ValueError, TypeError):
    """An argument or option has a wrong type or value, or is unknown; ``argument`` names
    it (e.g. ``"reml"``, ``"control.opt_ctrl.maxfun"``).  Also a ``ValueError`` and a
    ``TypeError``, so code written for Python's built-in errors keeps working."""

    def __init__(self, message: str, *, argument: str | None = None):
        super().__init__(message)
        self.argument = argument


class PylmerWarning(UserWarning):
    """Base class of every warning pylmer issues."""


class RWarning(PylmerWarning):
    """A warning issued by R that pylmer has no more specific class for."""


class DataWarning(PylmerWarning):
    """The data can be used but look like a mistake (text that reads as numbers, ...)."""


class DroppedRowsWarning(DataWarning):
    """Rows with missing values in the model's columns were left out of the fit."""


class NewLevelsWarning(PylmerWarning):
    """``predict`` met group levels the model never saw: they get the population-level
    (fixed-part) prediction.  Pass ``allow_new_levels=True`` to say that is intended."""


class RMessage(PylmerWarning):
    """A message R printed (``message()``), re-issued as a warning instead of printed."""


class SingularFitWarning(RWarning):
    """lme4 reports a singular fit (a variance at zero or a correlation at +-1)."""


# ------------------------------------------------------------------ on scikit-learn's

if TYPE_CHECKING:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

    class NotFittedError(PylmerError, _SklearnNotFittedError): ...

    class MixedMLConvergenceWarning(ConvergenceWarning, PylmerWarning): ...

    class LmerConvergenceWarning(ConvergenceWarning, RWarning): ...


_ON_SKLEARN = ("NotFittedError", "MixedMLConvergenceWarning", "LmerConvergenceWarning")


def _define_on_sklearn() -> None:
    """Create the classes built on scikit-learn's (once, importing scikit-learn)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

    class NotFittedError(PylmerError, _SklearnNotFittedError):
        """An estimator used before ``fit``, or a model whose R object is gone and cannot
        be rebuilt.  Also scikit-learn's ``NotFittedError`` (a ValueError and
        AttributeError)."""

        __qualname__ = "NotFittedError"

    class MixedMLConvergenceWarning(ConvergenceWarning, PylmerWarning):
        """MixedML's EM loop stopped at ``max_iter`` before a stopping rule held."""

        __qualname__ = "MixedMLConvergenceWarning"

    class LmerConvergenceWarning(ConvergenceWarning, RWarning):
        """lme4's optimizer reports a convergence problem."""

        __qualname__ = "LmerConvergenceWarning"

    for cls in (NotFittedError, MixedMLConvergenceWarning, LmerConvergenceWarning):
        cls.__module__ = __name__
        globals()[cls.__name__] = cls


def __getattr__(name: str) -> Any:
    if name in _ON_SKLEARN:
        _define_on_sklearn()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
