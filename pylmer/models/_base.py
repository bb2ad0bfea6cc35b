"""What every fitted model kind shares: spec, R handle, pickling, encoding, prediction.

:class:`MixedModel` is the abstract base of :class:`~pylmer.LmerModel`,
:class:`~pylmer.GlmerModel` and the coming kinds (siblings, not subclasses of one
another).  A model is three things: its results (a pure-pandas container from
:mod:`pylmer.results`), its spec (the arguments needed to fit it again, plus later refit
steps) and a handle on the fitted R object.  The handle is dropped when pickling or deep
copying; the first method that needs R refits the model from its data and checks the
refit reproduces the stored fit.

A new kind defines the R helpers it calls (``_R_FIT``, ``_R_WRITE_SCRIPT``,
``_R_PREDICT``, ``_R_SIMULATE``, ``_R_STEPS``), the spec's R arguments (``_r_args``), the
results it builds from the fit's output (``_from_r``) and its display (``summary``,
``__repr__``, ``_repr_html_``).  :func:`prepare_data` and :func:`shared_results` are the
data preparation and the result fields every lme4 fit has.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import pandas as pd

from ..data.coding import GroupCoding
from ..data.frames import as_pandas, check_text_columns, check_weights, model_frame
from ..errors import (
    DataError,
    DroppedRowsWarning,
    FormulaError,
    InvalidArgumentError,
    NewLevelsWarning,
    RError,
    warn,
)
from ..r import session as _r
from . import influence as _influence
from .condvar import NotOnPattern, conditional_covariances
from .control import LmerControl, as_control, normalize_contrasts
from .lazy import LazyTables

__all__ = [
    "FitSpec",
    "MixedModel",
    "check_fit_input",
    "model_labels",
    "prepare_data",
    "prepare_fit",
    "shared_results",
]

_M = TypeVar("_M", bound="MixedModel")

#: a per-row argument of a fit (weights, offset): a column name or one value per row
RowValues = str | Sequence[float] | np.ndarray | pd.Series | None
#: the control argument of a fit: an LmerControl or a dict of its fields
ControlArg = LmerControl | Mapping[str, Any] | None


def check_fit_input(formula: Any, data: Any, na_action: Any) -> pd.DataFrame:
    """Check what every fit takes: a formula string, a data frame with rows (pandas, polars
    or Arrow; returned as pandas) and ``na_action``."""
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string, not {type(formula).__name__}")
    data = as_pandas(data)
    if na_action not in ("omit", "error"):
        raise InvalidArgumentError(
            f"na_action must be 'omit' or 'error', not {na_action!r}", argument="na_action"
        )
    if len(data) == 0:
        raise DataError(f"data has no rows (columns: {', '.join(map(str, data.columns))})")
    return data


def prepare_data(
    formula: Any, data: Any, na_action: Any, extra_columns: Sequence[Any] = ()
) -> tuple[pd.DataFrame, list[str]]:
    """Check a fit's formula and data, and return the model's own copy of the columns it
    uses (R's own parse says which) and the grouping columns.

    ``extra_columns`` are further arguments naming columns (weights, offset): strings
    among them are kept as columns.

    Raises
    ------
    FormulaError, DataError, InvalidArgumentError
        A formula that is not a string or does not parse; no rows; a bad ``na_action``;
        text in a numeric column of the fixed part.
    """
    data = check_fit_input(formula, data, na_action)
    parse = _r.call(".pylmer_formula_parse", formula, [str(c) for c in data.columns], stacklevel=3)
    named = [v for v in extra_columns if isinstance(v, str)]
    groups = strings(parse["groups"])
    # the model keeps its own copy: a caller mutating `data` later changes nothing
    frame = model_frame(data, [*strings(parse["vars"]), *named])
    check_text_columns(frame, strings(parse["fixed"]), groups)
    return frame, groups


@dataclass(frozen=True, kw_only=True)
class FitSpec:
    """The options every lme4 fit's spec holds (a kind's spec adds its own, e.g.
    ``formula`` and ``reml``), and the refit steps applied since the fit."""

    control: LmerControl | None = None
    #: prior weights: a column name or one value per row
    weights: str | np.ndarray | None = None
    na_action: str = "omit"
    #: contrast codings ((column, coding), ...) of contrasts=
    contrasts: tuple[tuple[str, str], ...] = ()
    steps: tuple[tuple[Any, ...], ...] = ()
    #: label <-> value coding of the grouping columns (pylmer.data.coding.GroupCoding)
    levels: GroupCoding | None = None


def prepare_fit(
    formula: Any,
    data: Any,
    na_action: Any,
    *,
    control: Any,
    weights: Any,
    contrasts: Any,
    extra_columns: Sequence[Any] = (),
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """:func:`prepare_data`, then the checked options every lme4 fit's spec holds:
    ``control``, ``weights``, ``na_action``, ``contrasts`` and the group coding
    ``levels`` (keyword arguments of the kind's spec)."""
    frame, groups = prepare_data(formula, data, na_action, [weights, *extra_columns])
    check_weights(frame, weights)
    return frame, {
        "control": as_control(control),
        "weights": row_values("weights", weights, len(frame)),
        "na_action": na_action,
        "contrasts": normalize_contrasts(contrasts),
        "levels": GroupCoding.from_frame(frame, groups),
    }


def row_values(name: str, value: Any, n: int) -> str | np.ndarray | None:
    """A per-row argument (weights, offset): a column name, or ``n`` floats."""
    if value is None or isinstance(value, str):
        return value
    arr = np.asarray(value, dtype=float)
    if arr.shape != (n,):
        raise DataError(f"{name} has shape {arr.shape}; data has {n} rows")
    return arr


class MixedModel(ABC):
    """A mixed model fitted by R, with its results in pandas (abstract base).

    All results are plain pandas / numpy / Python values, extracted right after the fit
    (some, such as the conditional variances, on first access). The fitted R object stays
    in R behind a handle for :meth:`predict`, :meth:`refit`, :meth:`simulate` and the
    analyses. A pickled model keeps its results and its data; after unpickling, those
    methods first refit the model from its data (same data, formula and options) and
    check that the refit reproduces the stored log-likelihood and theta.

    Attributes
    ----------
    results
        The model's result container (:mod:`pylmer.results`).
    data : pandas.DataFrame
        The model's columns of the data it was fitted on.
    """

    #: the R helpers that fit this kind of model and write its refit script
    _R_FIT: ClassVar[str]
    _R_WRITE_SCRIPT: ClassVar[str]
    #: the R helpers of predict and simulate
    _R_PREDICT: ClassVar[str]
    _R_SIMULATE: ClassVar[str]
    #: refit step name -> R helper (``("refit", newresp)``, ...)
    _R_STEPS: ClassVar[Mapping[str, str]]
    #: whether a refit takes a two-column response (``cbind(successes, failures)``)
    _MATRIX_RESPONSE: ClassVar[bool] = False
    #: the results fields read as model attributes (``m.sigma`` is ``m.results.sigma``)
    _FORWARDED: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, results: Any, spec: Any, data: pd.DataFrame, handle: Any):
        self.results = results
        self.data = data
        self._spec = spec
        self._handle = handle
        self._fixed_levels: dict[str, list[str]] = {}

    # ------------------------------------------------------------------ building

    @classmethod
    @abstractmethod
    def _r_args(cls, spec: Any) -> dict[str, Any]:
        """The model's options as keyword arguments of the R fit and script helpers."""

    @classmethod
    @abstractmethod
    def _results(cls, out: dict[str, Any], spec: Any, shared: dict[str, Any]) -> Any:
        """The results container from the fit's output and the :func:`shared_results`."""

    @classmethod
    def _fit(cls: type[_M], spec: Any, data: pd.DataFrame) -> _M:
        ref = _r.bind(spec.levels.encode(data) if spec.levels is not None else data)
        out, conditions = _r.call_with_conditions(
            cls._R_FIT,
            ref,
            spec.formula,
            na_action=spec.na_action,
            stacklevel=3,
            **cls._r_args(spec),
        )
        model = cls._from_r(out, spec, data, conditions)
        dropped = len(data) - model.results.nobs
        if dropped:
            counts = {str(k): int(v) for k, v in _series(out.get("na_counts")).items()}
            for name in ("weights", "offset"):  # per-row values given as an argument
                values = getattr(spec, name, None)
                if isinstance(values, np.ndarray) and np.isnan(values).any():
                    counts[f"{name} (argument)"] = int(np.isnan(values).sum())
            where = ", ".join(f"{k!r}: {v}" for k, v in counts.items())
            warn(
                f"lme4 dropped {dropped} of {len(data)} rows with missing values in the "
                f"model's columns (missing per column: {where}); fitted/residuals are NaN "
                "there; pass na_action='error' to raise instead",
                DroppedRowsWarning,
            )
        return model

    @classmethod
    def _from_r(
        cls: type[_M],
        out: dict[str, Any],
        spec: Any,
        data: pd.DataFrame,
        conditions: Sequence[str] = (),
    ) -> _M:
        """Build the model from the fit's output; ``conditions`` are the R warnings and
        messages of the fit, kept in ``messages`` after lme4's own convergence messages.
        The model records the levels of the fixed-effect factors (checked by ``predict``)."""
        results = cls._results(out, spec, shared_results(out, spec, data, conditions))
        model = cls(results, spec, data, out["model"])
        if isinstance(getattr(results, "ranef_sd", None), LazyTables):
            results.ranef_sd.bind(model._ranef_sd_tables)
        levels = out["fixed_levels"]
        model._fixed_levels = (
            {k: strings(v) for k, v in levels.items()} if isinstance(levels, dict) else {}
        )
        return model

    def _mermod(self) -> Any:
        """Return the R handle, refitting first when it is gone (after unpickling or a
        deep copy); the refit must reproduce the stored log-likelihood and theta."""
        if self._handle is None:
            spec = self._spec
            base = dataclasses.replace(spec, steps=())
            rebuilt = type(self)._fit(base, self.data)
            for step in spec.steps:
                rebuilt = rebuilt._step(step)
            self._check_restored(rebuilt.results)
            self._handle = rebuilt._handle
        return self._handle

    def _check_restored(self, new: Any) -> None:
        """Raise when a refit of a restored model does not reproduce the stored fit
        (other data, or another R / lme4 / BLAS whose optimum lies elsewhere)."""
        old = self.results
        same_ll = np.isclose(new.loglik, old.loglik, rtol=1e-7, atol=1e-8)
        same_theta = new.theta.shape == old.theta.shape and np.allclose(
            new.theta.to_numpy(dtype=float), old.theta.to_numpy(dtype=float), atol=1e-5
        )
        if not (same_ll and same_theta):
            raise RError(
                "the restored model does not reproduce its stored fit: log-likelihood "
                f"{new.loglik!r} vs stored {old.loglik!r}, theta {list(new.theta)} vs stored "
                f"{list(old.theta)} (different data, or another R/lme4/BLAS); fit it "
                "again instead"
            )

    def _step(self: _M, step: tuple[Any, ...]) -> _M:
        """Apply a refit step (``("refit", newresp)``, ``("refit_ml",)``, ...)."""
        out, conditions = _r.call_with_conditions(
            self._R_STEPS[step[0]], self._mermod(), *step[1:], stacklevel=3
        )
        spec = dataclasses.replace(self._spec, steps=(*self._spec.steps, step))
        return type(self)._from_r(out, spec, self.data, conditions)

    # ------------------------------------------------------------------ pickling

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handle"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __deepcopy__(self: _M, memo: dict[int, Any]) -> _M:
        # the copy gets its own R object: refitted (and checked) on first use
        new = type(self).__new__(type(self))
        new.__setstate__(copy.deepcopy(self.__getstate__(), memo))
        return new

    # ------------------------------------------------------------------ results

    @property
    def formula(self) -> str:
        """The model formula."""
        return self._spec.formula

    @property
    def contrasts(self) -> dict[str, str]:
        """The contrast codings given at fit time (column -> coding name)."""
        return dict(self._spec.contrasts)

    @property
    def fixef_wald(self) -> pd.DataFrame:
        """Fixed effects with lme4's Wald columns (``estimate``, ``std_error``, and
        ``t_value``, or ``z_value`` and ``p_value`` for a GLMM)."""
        return self.results.fixef.copy()

    @property
    def fixef(self) -> pd.DataFrame:
        """Fixed effects (the model kind's own table; see the class docstring)."""
        return self.fixef_wald

    # ------------------------------------------------------------------ conditional variances

    def _conditional_covariances(self) -> dict[str, np.ndarray]:
        """Per grouping factor, the ``levels x K x K`` conditional covariances of the
        random effects (lme4's ``postVar``), computed once by selected inversion of lme4's
        own factor (:mod:`pylmer.models.condvar`); lme4's own route for a model whose
        blocks are not all on the factor's pattern."""
        cached = self.__dict__.get("_condvar")
        if cached is None:
            handle = self._mermod()
            try:
                parts = _r.call(".pylmer_condvar_parts", handle, stacklevel=4)
                cached = conditional_covariances(parts)
            except NotOnPattern:
                raw = _r.call(".pylmer_condvar_lme4", handle, stacklevel=4)
                cached = {}
                for group, table in self.results.ranef.items():
                    k = table.shape[1]
                    values = np.asarray(raw[group], dtype=float)
                    cached[group] = values.reshape(-1, k, k).transpose(0, 2, 1)
            self._condvar = cached
        return cached

    def _ranef_sd_tables(self) -> dict[str, pd.DataFrame]:
        """The conditional SDs, shaped like ``ranef`` (computed on first access)."""
        cov = self._conditional_covariances()
        return {
            group: pd.DataFrame(
                np.sqrt(np.einsum("lkk->lk", cov[group])),
                index=table.index.copy(),
                columns=table.columns.copy(),
            )
            for group, table in self.results.ranef.items()
        }

    @property
    def ranef_cov(self) -> dict[str, pd.DataFrame]:
        """Conditional covariances of the random effects per level (lme4's ``postVar``).

        Per grouping factor, a DataFrame with one ``K x K`` block per level: rows
        indexed by (level, term), columns the terms (``K`` the coefficients of all the
        factor's terms, as in ``ranef``).  lme4's ``ranef(m, condVar = TRUE)`` gives the
        same blocks (for a factor with several terms, the diagonal block of each term;
        here also the covariances between them).  Computed on first access, from lme4's
        own Cholesky factor by selected inversion, then cached.

        Examples
        --------
        >>> m = pylmer.lmer("Reaction ~ Days + (Days | Subject)", sleepstudy)  # doctest: +SKIP
        >>> m.ranef_cov["Subject"].loc["308"]  # doctest: +SKIP
                     (Intercept)      Days
        (Intercept)   145.71...    -21.9...
        Days          -21.9...       5.2...
        """
        cached = self.__dict__.get("_ranef_cov")
        if cached is None:
            cov = self._conditional_covariances()
            cached = {}
            for group, table in self.results.ranef.items():
                arr = cov[group]
                index = pd.MultiIndex.from_product(
                    [table.index, table.columns], names=[group, "term"]
                )
                cached[group] = pd.DataFrame(
                    arr.reshape(-1, arr.shape[-1]), index=index, columns=table.columns.copy()
                )
            self._ranef_cov = cached
        return cached

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "results":
            raise AttributeError(name)
        if name in self._FORWARDED:
            value = getattr(self.results, name)
            # a table computed on first access (ranef_sd): computed now, a plain dict
            return dict(value) if isinstance(value, LazyTables) else value
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self._FORWARDED})

    # ------------------------------------------------------------------ display

    @abstractmethod
    def summary(self, *, pvalues: bool = True) -> str:
        """Return the summary text, laid out like R's."""

    def __str__(self) -> str:
        return self.summary()

    # ------------------------------------------------------------------ prediction

    def _predict(
        self,
        newdata: pd.DataFrame | None,
        *,
        include_random: bool,
        allow_new_levels: bool | None,
        fitted_is_answer: bool,
        **r_args: Any,
    ) -> pd.Series:
        """Predictions by the model's R helper, aligned with ``newdata``'s index (the
        data's when None; NaN on rows lme4 dropped).  ``fitted_is_answer``: the stored
        fitted values are the prediction asked for on the fitted data.  ``allow_new_levels``
        None (not given): unseen groups are allowed, with a :class:`NewLevelsWarning`."""
        if newdata is None:
            if fitted_is_answer:
                return self.results.fitted.rename(None)
            values = _r.call(
                self._R_PREDICT,
                self._mermod(),
                None,
                include_random=include_random,
                stacklevel=3,
                **r_args,
            )
            full = self.results.fitted.copy()
            full[full.notna()] = np.atleast_1d(values)
            return full.rename(None)
        newdata = as_pandas(newdata, "newdata")
        self._check_fixed_levels(newdata)
        if allow_new_levels is None:
            allow_new_levels = self._allow_new_levels(newdata, include_random)
        values = _r.call(
            self._R_PREDICT,
            self._mermod(),
            _r.bind(self._encode(newdata)),
            include_random=include_random,
            allow_new_levels=allow_new_levels,
            stacklevel=3,
            **r_args,
        )
        return pd.Series(np.atleast_1d(np.asarray(values, dtype=float)), index=newdata.index)

    def _allow_new_levels(self, newdata: Any, include_random: bool) -> bool:
        """``allow_new_levels`` not given: allowed, but groups the model never saw are
        named once in a :class:`~pylmer.errors.NewLevelsWarning`."""
        levels = self._spec.levels
        if include_random and levels is not None and newdata is not None:
            unseen = levels.unseen(as_pandas(newdata, "newdata"))
            if unseen:
                shown = "; ".join(
                    f"{col!r}: {', '.join(map(repr, values[:5]))}"
                    + (f" and {len(values) - 5} more" if len(values) > 5 else "")
                    for col, values in unseen.items()
                )
                warn(
                    f"predict: newdata has group level(s) the model never saw ({shown}); "
                    "their random effects are zero (the population-level prediction). Pass "
                    "allow_new_levels=True to say that is intended, or False to raise",
                    NewLevelsWarning,
                )
        return True

    def _encode(self, newdata: pd.DataFrame) -> pd.DataFrame:
        """The columns of ``newdata`` the model uses, group values as the fit's labels."""
        levels = self._spec.levels
        if levels is None:
            return newdata
        frame = model_frame(newdata, self.data.columns, "newdata")
        return levels.extend(frame).encode(frame)  # a new coding: the model's is immutable

    def _check_fixed_levels(self, newdata: pd.DataFrame) -> None:
        for column, levels in self._fixed_levels.items():
            if column not in newdata.columns:
                continue
            seen = pd.Series(newdata[column]).dropna().astype(str).unique()
            new = sorted(set(seen) - set(levels))
            if new:
                raise DataError(
                    f"column {column!r} of newdata has level(s) not seen in training: "
                    f"{', '.join(map(repr, new))} (known: {', '.join(map(repr, levels))})"
                )

    # ------------------------------------------------------------------ refits, simulation

    def refit(self: _M, newresp: Any) -> _M:
        """Refit the same model to a new response without rebuilding it (lme4's ``refit``).

        Parameters
        ----------
        newresp : array-like, pandas.Series or pandas.DataFrame
            One value per used observation (``nobs``) or per row of the fitted data (a
            Series is aligned on the data's index; dropped rows are skipped).  For a
            ``cbind(successes, failures)`` binomial response, an array of shape
            ``(n, 2)`` or a two-column DataFrame.

        Returns
        -------
        LmerModel or GlmerModel
            A new fitted model of the same kind (its ``data`` still holds the original
            response).

        Raises
        ------
        DataError
            A response of the wrong length or shape.

        Examples
        --------
        >>> m = pylmer.lmer("Reaction ~ Days + (Days | Subject)", sleepstudy)  # doctest: +SKIP
        >>> m2 = m.refit(m.simulate(seed=1)["sim_1"])  # doctest: +SKIP
        """
        used = self.results.fitted.notna().to_numpy()
        if isinstance(newresp, pd.Series) and len(newresp) == len(self.data):
            newresp = newresp.reindex(self.data.index)
        values = np.asarray(newresp, dtype=float)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if len(values) == len(self.data) and len(self.data) != self.results.nobs:
            values = values[used]
        ndims = (1, 2) if self._MATRIX_RESPONSE else (1,)
        if values.ndim not in ndims or len(values) != self.results.nobs:
            raise DataError(
                f"newresp has {len(values)} values; the model has {self.results.nobs} "
                f"observations ({len(self.data)} rows in its data)"
            )
        arg = pd.DataFrame(values) if values.ndim == 2 else values
        return self._step(("refit", arg))

    def simulate(self, nsim: int = 1, seed: int | None = None) -> pd.DataFrame:
        """Simulate responses from the fitted model (lme4's ``simulate``).

        Parameters
        ----------
        nsim : int
            Number of simulated responses.
        seed : int, optional
            Seed of R's generator (``set.seed``): the draws of plain R's
            ``simulate(m, nsim, seed)``.

        Returns
        -------
        pandas.DataFrame
            Columns ``sim_1`` ... ``sim_<nsim>``, indexed by the used rows of the data;
            for a GLMM, counts of successes for a ``cbind`` response, 0/1 for a factor
            response (1 = not the first level), otherwise values on the response's scale.

        Examples
        --------
        >>> sims = m.simulate(nsim=10, seed=1)  # doctest: +SKIP
        """
        sims = _r.call(
            self._R_SIMULATE,
            self._mermod(),
            nsim=int(nsim),
            seed=None if seed is None else int(seed),
            stacklevel=2,
        )
        sims.index = self.results.fitted.index[self.results.fitted.notna().to_numpy()]
        return sims

    # ------------------------------------------------------------------ influence

    def influence(self, groups: str | None = None, *, n_jobs: int | None = None) -> Any:
        """Leave-one-out (or leave-one-group-out) refits: lme4's ``influence.merMod``;
        see :func:`pylmer.models.influence.influence`."""
        return _influence.influence(self, groups, n_jobs=n_jobs)

    def cooks_distance(self, groups: str | None = None, *, n_jobs: int | None = None) -> pd.Series:
        """Cook's distances (lme4's ``cooks.distance``, of the model or, with ``groups``,
        of its influence refits); see :func:`pylmer.models.influence.cooks_distance`."""
        return _influence.cooks_distance(self, groups, n_jobs=n_jobs)

    def hatvalues(self) -> pd.Series:
        """The hat matrix's diagonal (lme4's ``hatvalues``), NaN on dropped rows."""
        return _influence.hatvalues(self)

    # ------------------------------------------------------------------ R script

    def to_r_script(self, path: str | os.PathLike[str]) -> Path:
        """Write the data (CSV, full precision) and an R script that refits this model.

        Parameters
        ----------
        path : str or path-like
            The script's path (``.R``); the data go beside it with the suffix ``.csv``.

        Returns
        -------
        pathlib.Path
            The script's path. Run it with ``Rscript <path>`` from its directory.

        Examples
        --------
        >>> m.to_r_script("out/sleep.R")  # doctest: +SKIP
        PosixPath('out/sleep.R')
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        spec = self._spec
        if spec.steps:
            raise NotImplementedError("to_r_script() supports a fit, not a refit")
        written = _r.call(
            self._R_WRITE_SCRIPT,
            _r.bind(self._encode(self.data)),
            str(path.parent),
            path.stem,
            spec.formula,
            stacklevel=2,
            **self._r_args(spec),
        )
        return Path(written)


def model_labels(models: Sequence[MixedModel], names: Sequence[str] | None = None) -> list[str]:
    """The row labels of a table comparing ``models`` (``anova``, ``compare``): the
    user's ``names`` when given, else each model's formula (a repeated formula gets
    `` [2]``, `` [3]``... in order).

    Raises
    ------
    InvalidArgumentError
        ``names`` not one distinct string per model.
    """
    if names is not None:
        if (
            isinstance(names, str)
            or len(names) != len(models)
            or not all(isinstance(s, str) for s in names)
        ):
            raise InvalidArgumentError(
                f"names must be {len(models)} strings, one per model, not {names!r}",
                argument="names",
            )
        if len(set(names)) != len(names):
            raise InvalidArgumentError(f"names must be distinct, not {names!r}", argument="names")
        return list(names)
    labels: list[str] = []
    for m in models:
        label, k = m.formula, 1
        while label in labels:
            k += 1
            label = f"{m.formula} [{k}]"
        labels.append(label)
    return labels


def shared_results(
    out: dict[str, Any], spec: Any, data: pd.DataFrame, conditions: Sequence[str] = ()
) -> dict[str, Any]:
    """The fields every lme4 fit's results have (:class:`~pylmer.results.LmerResults`,
    :class:`~pylmer.results.GlmerResults`), from the output of an R fit helper
    (``.pylmer_lmer_extract``'s list).

    Random-effects tables are indexed by the groups' original Python values, fitted
    values and residuals aligned to ``data``'s index (NaN on rows lme4 dropped).
    """
    rows = np.atleast_1d(np.asarray(out["rows"], dtype=np.int64)) - 1

    def aligned(values: Any) -> pd.Series:
        full = np.full(len(data), np.nan)
        full[rows] = np.atleast_1d(values)
        return pd.Series(full, index=data.index)

    fixef = out["fixef"]
    if not isinstance(fixef.index, pd.Index) or fixef.index.dtype != object:
        fixef.index = pd.Index([str(i) for i in fixef.index])
    levels = spec.levels

    def by_value(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
        # index the tables by the groups' original Python values
        for group, table in tables.items():
            if levels is not None:
                table.index = levels.decode(group, table.index)
        return dict(tables)

    return {
        "formula": spec.formula,
        "fixef": fixef,
        "ranef": by_value(out["ranef"]),
        # lme4 models: conditional SDs on first access (MixedModel._ranef_sd_tables)
        "ranef_sd": LazyTables() if out.get("ranef_sd") is None else by_value(out["ranef_sd"]),
        "coef": by_value(out["coef"]),
        "varcorr": out["varcorr"],
        "sigma": float(out["sigma"]),
        "theta": _series(out["theta"]),
        "loglik": float(out["loglik"]),
        "npar": int(out["df"]),
        "aic": float(out["aic"]),
        "bic": float(out["bic"]),
        "deviance": float(out["deviance"]),
        "nobs": int(out["nobs"]),
        "ngrps": _series(out["ngrps"]).astype(np.int64),
        "vcov": _matrix(out["vcov"], fixef.index),
        "fitted": aligned(out["fitted"]),
        "residuals": aligned(out["residuals"]),
        "scaled_residuals": np.atleast_1d(np.asarray(out["scaled_residuals"], dtype=float)),
        "is_singular": bool(out["is_singular"]),
        "converged": bool(out["converged"]),
        "messages": tuple(dict.fromkeys([*strings(out["messages"]), *map(str, conditions)])),
        "optimizer": str(out["optimizer"]),
    }


def _series(value: Any) -> pd.Series:
    if isinstance(value, pd.Series):
        return value
    if value is None:
        return pd.Series(dtype=float)
    return pd.Series(np.atleast_1d(value))


def _matrix(value: Any, names: pd.Index) -> pd.DataFrame:
    if isinstance(value, pd.DataFrame):
        return value
    arr = np.atleast_2d(np.asarray(value, dtype=float)).reshape(len(names), len(names))
    return pd.DataFrame(arr, index=names, columns=names)


def strings(value: Any) -> list[str]:
    """An R character vector (None, a scalar or a vector) as a list of str."""
    if value is None:
        return []
    return [str(v) for v in np.atleast_1d(np.asarray(value, dtype=object))]
