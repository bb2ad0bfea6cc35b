"""Influence diagnostics of a fitted mixed model: lme4's ``influence``, ``cooks.distance``
and ``hatvalues``, behind the models' methods (``m.influence()``, ``m.cooks_distance()``,
``m.hatvalues()``) and ``pylmer.influence`` / ``pylmer.cooks_distance`` /
``pylmer.hatvalues``.

The refits are lme4's own ``influence.merMod`` (``r_scripts/diagnostics.R``): the model
refitted by ``update()`` without each observation, or each level of a column, started at
the fit's variance parameters; ``n_jobs`` worker R processes through R's ``parallel``
package, as lme4 runs them.  The numbers are lme4's by construction: what pylmer adds is
the data (the model's own), the labels mapped back to the data's index or the group
values, and pandas results.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidArgumentError
from ..r import session as _r

__all__ = ["InfluenceResult", "cooks_distance", "hatvalues", "influence"]


@dataclass(frozen=True)
class InfluenceResult:
    """Leave-one-out (or leave-one-group-out) refits of a model (lme4's
    ``influence.merMod``).

    One row per deleted unit: an observation (indexed by the data's index) or a level of
    the ``groups`` column (indexed by its values).

    Attributes
    ----------
    fixef_deleted : pandas.DataFrame
        The fixed effects refitted without the unit (lme4's ``fixed.effects[-unit]``).
    dfbeta : pandas.DataFrame
        ``fixef_deleted`` minus the model's fixed effects (lme4's ``dfbeta``).
    dfbetas : pandas.DataFrame
        ``dfbeta`` divided by the deleted fit's standard errors (lme4's ``dfbetas``).
    cooks_distance : pandas.Series
        lme4's ``cooks.distance`` of the influence object.
    varcomp_deleted : pandas.DataFrame
        Variance components of each refit (``sigma^2``, then each term's variances
        ``v[...]`` and covariances ``C[...]``, named as lme4 names them).
    converged : pandas.Series
        Whether each refit converged without warnings.
    function_evals : pandas.Series
        The optimizer's function evaluations per refit.
    groups : str or None
        The deletion column (None: single observations).
    """

    fixef_deleted: pd.DataFrame
    dfbeta: pd.DataFrame
    dfbetas: pd.DataFrame
    cooks_distance: pd.Series
    varcomp_deleted: pd.DataFrame = field(repr=False)
    converged: pd.Series = field(repr=False)
    function_evals: pd.Series = field(repr=False)
    groups: str | None = None


#: the model kinds lme4's influence, cooks.distance and hatvalues methods apply to
_KINDS = ("LmerModel", "GlmerModel")


def _check_model(model: Any) -> Any:
    kinds = {cls.__name__ for cls in type(model).__mro__}
    if not kinds & set(_KINDS) or not hasattr(model, "_mermod"):
        raise InvalidArgumentError(
            "influence diagnostics are lme4's methods for lmer and glmer fits (from "
            f"pylmer.lmer or pylmer.glmer), not for a {type(model).__name__}",
            argument="model",
        )
    return model


def _check_groups(model: Any, groups: Any) -> str | None:
    if groups is None:
        return None
    columns = [str(c) for c in model.data.columns]
    if not isinstance(groups, str) or groups not in columns:
        raise InvalidArgumentError(
            f"groups must name a column of the model's data ({', '.join(columns)}), not {groups!r}",
            argument="groups",
        )
    return groups


def _ncores(n_jobs: Any) -> int:
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int | np.integer) or n_jobs == 0:
        raise InvalidArgumentError(
            f"n_jobs must be a positive integer, -1 (all cores) or None, not {n_jobs!r}",
            argument="n_jobs",
        )
    if n_jobs < 0:  # joblib's convention: -1 all cores, -2 all but one, ...
        return max(1, (os.cpu_count() or 1) + 1 + int(n_jobs))
    return int(n_jobs)


def _unit_index(model: Any, groups: str | None, labels: Any) -> pd.Index:
    """The deleted units as Python values: the data's index labels (R's row names are
    positions), or the values of the ``groups`` column."""
    labels = [str(v) for v in np.atleast_1d(np.asarray(labels, dtype=object))]
    if groups is None:
        return pd.Index(model.data.index[[int(v) - 1 for v in labels]])
    coding = model._spec.levels
    if coding is not None and groups in coding.columns:
        decode = getattr(coding, "decode", None) or coding.decode_index
        return pd.Index(decode(groups, pd.Index(labels, name=groups)), name=groups)
    values = pd.unique(model.data[groups].dropna())
    if [str(v) for v in values] == labels:
        return pd.Index(values, name=groups)
    return pd.Index(labels, name=groups)


def influence(
    model: Any, groups: str | None = None, *, n_jobs: int | None = None
) -> InfluenceResult:
    """Leave-one-out influence of observations or groups (lme4's ``influence.merMod``).

    Parameters
    ----------
    model : LmerModel or GlmerModel
        The fitted model.
    groups : str, optional
        A column of the data (usually a grouping factor, e.g. ``"Subject"``): delete one
        level at a time.  Default: one observation at a time.
    n_jobs : int, optional
        Worker R processes for the refits (lme4's ``ncores``: R's ``parallel`` cluster);
        the result does not depend on it.  -1: all cores.

    Returns
    -------
    InfluenceResult
        ``fixef_deleted``, ``dfbeta``, ``dfbetas`` (DataFrames, one row per unit) and
        ``cooks_distance`` (a Series), lme4's numbers.

    Examples
    --------
    >>> inf = pylmer.influence(m, groups="Subject")
    >>> inf.cooks_distance.sort_values().tail(3)  # doctest: +SKIP
    """
    model = _check_model(model)
    groups = _check_groups(model, groups)
    out = _r.call(".pylmer_diag_influence", model._mermod(), groups=groups, ncores=_ncores(n_jobs))
    index = _unit_index(model, groups, out["labels"])

    def table(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame.index = index
        return frame

    def series(values: Any, name: str, dtype: Any = float) -> pd.Series:
        return pd.Series(np.atleast_1d(np.asarray(values, dtype=dtype)), index=index, name=name)

    return InfluenceResult(
        fixef_deleted=table(out["fixef_deleted"]),
        dfbeta=table(out["dfbeta"]),
        dfbetas=table(out["dfbetas"]),
        cooks_distance=series(out["cooks"], "cooks_distance"),
        varcomp_deleted=table(out["varcomp_deleted"]),
        converged=series(out["converged"], "converged", bool),
        function_evals=series(out["function_evals"], "function_evals"),
        groups=groups,
    )


def _per_row(model: Any, values: Any, name: str) -> pd.Series:
    """One value per used observation, aligned to the data's index (NaN on dropped rows)."""
    used = model.results.fitted.notna().to_numpy()
    full = np.full(len(model.data), np.nan)
    full[used] = np.atleast_1d(np.asarray(values, dtype=float))
    return pd.Series(full, index=model.data.index, name=name)


def hatvalues(model: Any) -> pd.Series:
    """The diagonal of the hat matrix (lme4's ``hatvalues``), one value per row of the
    data (NaN on rows the fit dropped).  For a GLMM lme4 warns that it may not make sense.

    Examples
    --------
    >>> pylmer.hatvalues(m).head()  # doctest: +SKIP
    """
    model = _check_model(model)
    return _per_row(model, _r.call(".pylmer_diag_hat", model._mermod(), stacklevel=3), "hat")


def cooks_distance(
    model: Any, groups: str | None = None, *, n_jobs: int | None = None
) -> pd.Series:
    """Cook's distances (lme4's ``cooks.distance``).

    Parameters
    ----------
    model : LmerModel or GlmerModel
        The fitted model.
    groups : str, optional
        None: lme4's ``cooks.distance(model)``, one value per observation from the hat
        values and Pearson residuals (no refits).  A column name:
        ``cooks.distance(influence(model, groups))``, one value per level, from the
        leave-one-group-out refits of :func:`influence`.
    n_jobs : int, optional
        Worker R processes for the refits (with ``groups``).

    Returns
    -------
    pandas.Series
        Indexed by the data's index (NaN on dropped rows) or by the levels of ``groups``.
    """
    model = _check_model(model)
    if groups is None:
        values = _r.call(".pylmer_diag_cooks", model._mermod(), stacklevel=3)
        return _per_row(model, values, "cooks_distance")
    return influence(model, groups, n_jobs=n_jobs).cooks_distance
