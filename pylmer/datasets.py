"""Data sets: lme4's example data as DataFrames, and a synthetic longitudinal generator.

``load(name)`` reads a data set shipped with the R package lme4 (sleepstudy, InstEval,
Dyestuff, Penicillin, Pastes, cake, ...) through R; factors become pandas categoricals
with R's level order. ``simulate_longitudinal`` generates synthetic longitudinal data.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from .errors import InvalidArgumentError
from .r import session as _r

try:  # the generator lives in its own module
    from .data.simulate import simulate_longitudinal
except ImportError:  # pragma: no cover - only while _simulate.py is being written

    def simulate_longitudinal(*args: Any, **kwargs: Any) -> pd.DataFrame:
        """Unavailable: pylmer.data.simulate is missing."""
        raise NotImplementedError("pylmer.data.simulate is not available")


__all__ = ["load", "names", "simulate_longitudinal"]

_NAMES = (
    "Arabidopsis",
    "Dyestuff",
    "Dyestuff2",
    "InstEval",
    "Pastes",
    "Penicillin",
    "VerbAgg",
    "cake",
    "cbpp",
    "grouseticks",
    "sleepstudy",
)
#: data sets of other R packages: name -> package (nlmer's Orange; glmmTMB's count data)
_OTHER = {
    "Loblolly": "datasets",
    "Orange": "datasets",
    "Owls": "glmmTMB",
    "Salamanders": "glmmTMB",
}
_NAMES = tuple(sorted((*_NAMES, *_OTHER)))


def names() -> list[str]:
    """Return the names of the data sets :func:`load` accepts (lme4's data sets, R's
    ``Orange`` and ``Loblolly``, glmmTMB's ``Salamanders`` and ``Owls``)."""
    return list(_NAMES)


def load(name: str) -> pd.DataFrame:
    """Load one of lme4's data sets.

    Parameters
    ----------
    name : str
        A name from :func:`names` (case sensitive, as in R), e.g. ``"sleepstudy"``.

    Returns
    -------
    pandas.DataFrame
        The data with R factors as pandas categoricals (same level order); a fresh
        ``RangeIndex``.

    Raises
    ------
    ValueError
        For an unknown name.
    """
    if name not in _NAMES:
        close = [n for n in _NAMES if n.lower() == str(name).lower()]
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InvalidArgumentError(
            f"unknown data set {name!r}{hint} (available: {', '.join(_NAMES)})"
        )
    frame = _r.call(".pylmer_dataset", name, _OTHER.get(name, "lme4"))
    return frame.reset_index(drop=True)
