"""``lmer()``: lme4's linear mixed models from pandas, equal to plain R.

The fit and the extraction of every result happen in one R call
(``r_scripts/lmer.R``); the results live in a pure-pandas :class:`~pylmer.results.LmerResults`
and the fitted ``merMod`` stays in R behind a handle, used by ``predict``, ``refit``,
``confint``, ``simulate`` and :func:`anova`.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from .. import inference
from ..data.frames import GroupLevels, as_pandas, check_text_columns, model_frame
from ..errors import DataError, FormulaError, InvalidArgumentError, RError
from ..inference import normalize_contrasts, predict_interval
from ..r import session as _r
from ..results import LmerResults, format_summary, to_html

__all__ = ["LmerControl", "LmerModel", "anova", "lmer"]


_ACTIONS = ("ignore", "warning", "message", "stop")
#: each LmerControl field: (lmerControl's argument name, allowed values or a kind)
_CONTROL_ARGS: dict[str, tuple[str, Any]] = {
    "optimizer": ("optimizer", "optimizer"),
    "restart_edge": ("restart_edge", "bool"),
    "boundary_tol": ("boundary.tol", "nonnegative"),
    "calc_derivs": ("calc.derivs", "bool"),
    "use_last_params": ("use.last.params", "bool"),
    "sparse_x": ("sparseX", "bool"),
    "standardize_x": ("standardize.X", "bool"),
    "check_nobs_vs_rankZ": ("check.nobs.vs.rankZ", (*_ACTIONS, "warningSmall", "stopSmall")),
    "check_nobs_vs_nlev": ("check.nobs.vs.nlev", _ACTIONS),
    "check_nlev_gtreq_5": ("check.nlev.gtreq.5", _ACTIONS),
    "check_nlev_gtr_1": ("check.nlev.gtr.1", _ACTIONS),
    "check_nobs_vs_nRE": ("check.nobs.vs.nRE", _ACTIONS),
    "check_rankX": (
        "check.rankX",
        ("message+drop.cols", "silent.drop.cols", "warn+drop.cols", "stop.deficient", "ignore"),
    ),
    "check_scaleX": (
        "check.scaleX",
        ("warning", "stop", "silent.rescale", "message+rescale", "warn+rescale", "ignore"),
    ),
    "check_formula_LHS": ("check.formula.LHS", _ACTIONS),
    "check_conv_grad": ("check.conv.grad", "conv"),
    "check_conv_singular": ("check.conv.singular", "conv"),
    "check_conv_hess": ("check.conv.hess", "conv"),
    "check_conv_nobsmax": ("check.conv.nobsmax", "count"),
    "check_conv_nparmax": ("check.conv.nparmax", "count"),
    "opt_ctrl": ("optCtrl", "opt_ctrl"),
    "maxfun": ("maxfun", "count"),
}
#: lme4's default actions and tolerances of the convergence checks
_CONV_DEFAULTS = {
    "check_conv_grad": ("warning", 2e-3),
    "check_conv_singular": ("message", 1e-4),
    "check_conv_hess": ("warning", 1e-6),
}
#: optimizers by name, with the optCtrl entries each understands (None: any)
_OPTIMIZERS: dict[str, frozenset[str] | None] = {
    "nloptwrap": frozenset(
        (
            "algorithm",
            "xtol_abs",
            "ftol_abs",
            "xtol_rel",
            "ftol_rel",
            "maxeval",
            "maxtime",
            "stopval",
            "print_level",
        )
    ),
    "bobyqa": frozenset(("npt", "rhobeg", "rhoend", "iprint", "maxfun")),
    "Nelder_Mead": frozenset(
        (
            "iprint",
            "maxfun",
            "FtolAbs",
            "FtolRel",
            "XtolRel",
            "MinfMax",
            "xst",
            "xt",
            "verbose",
            "warnOnly",
        )
    ),
    "nlminbwrap": frozenset(
        (
            "eval.max",
            "iter.max",
            "trace",
            "abs.tol",
            "rel.tol",
            "x.tol",
            "xf.tol",
            "step.min",
            "step.max",
            "sing.tol",
            "scale.init",
            "diff.g",
            "maxfun",
        )
    ),
    "nmkbw": frozenset(("tol", "maxfeval", "regsimp", "maximize", "restarts.max")),
    "optimx": None,  # optimx's control list is long and method-dependent
}
#: where the legacy `maxfun` goes in optCtrl, by optimizer
_MAXFUN_NAME = {
    "nloptwrap": "maxeval",
    "bobyqa": "maxfun",
    "Nelder_Mead": "maxfun",
    "nlminbwrap": "eval.max",
    "nmkbw": "maxfeval",
    "optimx": "maxit",
}


def _bad(name: str, message: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"{name} {message}", argument=name)


@dataclass(frozen=True)
class LmerControl:
    """lme4's ``lmerControl`` as Python keywords; None keeps lme4's default.

    Every argument of ``lmerControl`` is here, named with underscores for dots
    (``boundary.tol`` -> ``boundary_tol``, ``optCtrl`` -> ``opt_ctrl``, ``sparseX`` ->
    ``sparse_x``); unknown names and wrong values raise
    :class:`~pylmer.InvalidArgumentError` naming the option.

    Parameters
    ----------
    optimizer : str, optional
        ``"nloptwrap"`` (lme4's default), ``"bobyqa"``, ``"Nelder_Mead"``, ``"nlminbwrap"``,
        ``"optimx"`` (needs ``opt_ctrl={"method": ...}`` and the R package optimx),
        ``"nmkbw"`` (lme4 >= 1.1-32 with dfoptim), or allFit's shorthands
        ``"optimx.<method>"`` (e.g. ``"optimx.L-BFGS-B"``) and ``"nloptwrap.<algorithm>"``
        (e.g. ``"nloptwrap.NLOPT_LN_NELDERMEAD"``).
    opt_ctrl : dict, optional
        The optimizer's own options (``optCtrl``), e.g. ``{"xtol_abs": 1e-6,
        "ftol_abs": 1e-6, "maxeval": 1000}`` for nloptwrap, ``{"maxfun": 1e5}`` for bobyqa
        or Nelder_Mead, ``{"eval.max": 500}`` for nlminbwrap; names the optimizer does not
        know are rejected (optimx: any).
    restart_edge, calc_derivs, use_last_params, sparse_x, standardize_x : bool, optional
        As in lme4.  ``calc_derivs=None`` (default) follows lme4 >= 1.1-38: gradient and
        Hessian checks run unless the model has ``check_conv_nobsmax`` observations or
        more, ``check_conv_nparmax`` variance parameters or more, or is singular (then
        ``messages`` says they were skipped); True always runs them, False never.
    boundary_tol : float, optional
        ``boundary.tol`` (>= 0).
    check_nobs_vs_rankZ, check_nobs_vs_nlev, check_nlev_gtreq_5, check_nlev_gtr_1, \
check_nobs_vs_nRE, check_formula_LHS : str, optional
        ``"ignore"``, ``"warning"``, ``"message"`` or ``"stop"`` (rankZ also
        ``"warningSmall"``, ``"stopSmall"``).
    check_rankX, check_scaleX : str, optional
        lme4's choices (e.g. ``"silent.drop.cols"``, ``"ignore"``).
    check_conv_grad, check_conv_singular, check_conv_hess : str or dict, optional
        An action, or ``{"action": ..., "tol": ..., "rel_tol": ...}`` (lme4's ``.makeCC``;
        missing entries take lme4's defaults).
    check_conv_nobsmax, check_conv_nparmax : int, optional
        Thresholds of the policy above (lme4 1.1-38's defaults 10000 and 10).
    maxfun : int, optional
        Shorthand for the optimizer's evaluation limit in ``opt_ctrl`` (``maxeval`` for
        nloptwrap, ``maxfun`` for bobyqa/Nelder_Mead, ``eval.max`` for nlminbwrap, ...).
    """

    optimizer: str | None = None
    restart_edge: bool | None = None
    boundary_tol: float | None = None
    calc_derivs: bool | None = None
    use_last_params: bool | None = None
    sparse_x: bool | None = None
    standardize_x: bool | None = None
    check_nobs_vs_rankZ: str | None = None
    check_nobs_vs_nlev: str | None = None
    check_nlev_gtreq_5: str | None = None
    check_nlev_gtr_1: str | None = None
    check_nobs_vs_nRE: str | None = None
    check_rankX: str | None = None
    check_scaleX: str | None = None
    check_formula_LHS: str | None = None
    check_conv_grad: str | Mapping[str, Any] | None = None
    check_conv_singular: str | Mapping[str, Any] | None = None
    check_conv_hess: str | Mapping[str, Any] | None = None
    check_conv_nobsmax: int | None = None
    check_conv_nparmax: int | None = None
    opt_ctrl: Mapping[str, Any] | None = None
    maxfun: int | None = None

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None:
                _check_control_value(field.name, value)
        optimizer, extra = self._optimizer()
        known = _OPTIMIZERS[optimizer]
        ctrl = dict(self.opt_ctrl or {})
        if known is not None:
            unknown = sorted(set(ctrl) - known)
            if unknown:
                raise _bad(
                    f"control.opt_ctrl[{unknown[0]!r}]",
                    f"is not an option of optimizer {optimizer!r} (known: "
                    f"{', '.join(sorted(known))})",
                )
        if optimizer == "optimx" and "method" not in {**ctrl, **extra}:
            raise _bad(
                "control.opt_ctrl",
                "needs a 'method' with optimizer 'optimx' (or use "
                "optimizer='optimx.<method>', e.g. 'optimx.L-BFGS-B')",
            )
        if self.maxfun is not None and _MAXFUN_NAME[optimizer] in ctrl:
            raise _bad(
                "control.maxfun",
                f"and opt_ctrl[{_MAXFUN_NAME[optimizer]!r}] both set the evaluation limit",
            )

    def _optimizer(self) -> tuple[str, dict[str, str]]:
        """The lme4 optimizer name and the optCtrl entries its shorthand implies."""
        name = self.optimizer or "nloptwrap"
        if name.startswith("optimx."):
            return "optimx", {"method": name[len("optimx.") :]}
        if name.startswith("nloptwrap."):
            return "nloptwrap", {"algorithm": name[len("nloptwrap.") :]}
        return name, {}

    def to_r(self) -> dict[str, Any]:
        """Return the non-default options keyed by ``lmerControl``'s argument names."""
        out: dict[str, Any] = {}
        optimizer, ctrl = self._optimizer()
        ctrl = {**ctrl, **dict(self.opt_ctrl or {})}
        if self.maxfun is not None and self.optimizer is None:
            # the default optimizer differs (lmer: nloptwrap, glmer: bobyqa/Nelder_Mead):
            # the R side puts the limit under the name the optimizer knows
            out["maxfun"] = int(self.maxfun)
        elif self.maxfun is not None:
            ctrl[_MAXFUN_NAME[optimizer]] = int(self.maxfun)
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None or field.name in ("opt_ctrl", "maxfun"):
                continue
            r_name, kind = _CONTROL_ARGS[field.name]
            if kind == "conv":
                action, tol = _CONV_DEFAULTS[field.name]
                spec = {"action": value} if isinstance(value, str) else dict(value)
                value = {"action": spec.get("action", action), "tol": float(spec.get("tol", tol))}
                if spec.get("rel_tol") is not None:
                    value["relTol"] = float(spec["rel_tol"])
            elif field.name == "optimizer":
                value = optimizer
            elif kind == "bool":
                value = bool(value)
            out[r_name] = value
        if ctrl:
            out["optCtrl"] = ctrl
        return out


def _check_control_value(name: str, value: Any) -> None:
    """Raise InvalidArgumentError naming ``control.<name>`` if ``value`` does not fit."""
    where = f"control.{name}"
    kind = _CONTROL_ARGS[name][1]
    if kind == "bool":
        _check_bool(where, value)
    elif kind == "optimizer":
        base = str(value).split(".", 1)[0] if isinstance(value, str) else None
        shorthand = isinstance(value, str) and "." in value and base in ("optimx", "nloptwrap")
        if not isinstance(value, str) or (value not in _OPTIMIZERS and not shorthand):
            raise _bad(
                where,
                f"must be one of {', '.join(map(repr, _OPTIMIZERS))} or 'optimx.<method>' / "
                f"'nloptwrap.<algorithm>', not {value!r}",
            )
    elif kind in ("nonnegative", "count"):
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, (bool, np.bool_)
        )
        if not ok or not np.isfinite(value) or value < 0 or (kind == "count" and value < 1):
            rule = "a number >= 0" if kind == "nonnegative" else "a positive number"
            raise _bad(where, f"must be {rule}, not {value!r}")
    elif kind == "conv":
        spec = {"action": value} if isinstance(value, str) else value
        if not isinstance(spec, Mapping):
            raise _bad(where, f"must be an action or a dict, not {type(value).__name__}")
        unknown = sorted(set(spec) - {"action", "tol", "rel_tol"})
        if unknown:
            raise _bad(f"{where}[{unknown[0]!r}]", "is unknown (known: action, tol, rel_tol)")
        if "action" in spec and spec["action"] not in _ACTIONS:
            raise _bad(f"{where}['action']", f"must be one of {_ACTIONS}, not {spec['action']!r}")
        for key in ("tol", "rel_tol"):
            if spec.get(key) is not None:
                _check_control_value_number(f"{where}[{key!r}]", spec[key])
    elif kind == "opt_ctrl":
        if not isinstance(value, Mapping):
            raise _bad(where, f"must be a dict, not {type(value).__name__}")
        for key, item in value.items():
            if not isinstance(key, str):
                raise _bad(where, f"keys must be strings, not {key!r}")
            if not isinstance(item, (str, bool, int, float, np.integer, np.floating, np.bool_)):
                raise _bad(f"{where}[{key!r}]", f"must be a number, string or bool, not {item!r}")
    elif value not in kind:
        raise _bad(where, f"must be one of {', '.join(map(repr, kind))}, not {value!r}")


def _check_control_value_number(where: str, value: Any) -> None:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )
    if not ok or not np.isfinite(value) or value < 0:
        raise _bad(where, f"must be a number >= 0, not {value!r}")


def _control(control: LmerControl | Mapping[str, Any] | None) -> LmerControl | None:
    """Validate ``control`` (an LmerControl or a dict of its fields)."""
    if control is None or isinstance(control, LmerControl):
        return control
    if isinstance(control, Mapping):
        known = [f.name for f in dataclasses.fields(LmerControl)]
        for key in control:
            if key not in known:
                dotted = {_CONTROL_ARGS[k][0]: k for k in known}
                hint = f" (did you mean {dotted[key]!r}?)" if key in dotted else ""
                raise _bad(
                    f"control[{key!r}]",
                    f"is not an lmerControl option{hint}; known: {', '.join(known)}",
                )
        return LmerControl(**control)
    raise InvalidArgumentError(
        f"control must be a dict or LmerControl, not {type(control).__name__}",
        argument="control",
    )


@dataclass(frozen=True)
class _Spec:
    """What is needed to rebuild a fit: the lmer() arguments and later refits."""

    formula: str
    reml: bool
    control: LmerControl | None
    weights: str | np.ndarray | None
    na_action: str
    #: contrast codings ((column, coding), ...) of lmer(contrasts=...)
    contrasts: tuple[tuple[str, str], ...] = ()
    steps: tuple[tuple[Any, ...], ...] = ()
    #: label <-> value mapping of the grouping columns (pylmer.data.frames.GroupLevels)
    levels: GroupLevels | None = None


def lmer(
    formula: str,
    data: pd.DataFrame,
    *,
    reml: bool = True,
    control: LmerControl | Mapping[str, Any] | None = None,
    weights: str | Sequence[float] | np.ndarray | pd.Series | None = None,
    na_action: Literal["omit", "error"] = "omit",
    contrasts: Mapping[str, str] | None = None,
) -> LmerModel:
    """Fit a linear mixed model with lme4's ``lmer``.

    Parameters
    ----------
    formula : str
        Any lme4 formula, passed to R unchanged, e.g. ``"Reaction ~ Days + (Days | Subject)"``;
        quote column names holding spaces or dots with backticks.
    data : pandas.DataFrame
        The data; categorical and string columns become R factors (categorical level
        order is kept, so the first category is the reference level).
    reml : bool
        REML (default) or maximum likelihood.
    control : LmerControl or dict, optional
        lmerControl options, e.g. ``{"optimizer": "bobyqa", "calc_derivs": False}``.
    weights : str or array-like, optional
        Prior weights: a column name of ``data`` or one value per row.
    na_action : {"omit", "error"}
        Drop rows with missing values in the model's columns (with a warning saying how
        many), or raise :class:`~pylmer.DataError`.
    contrasts : dict, optional
        Coding of factor columns of the fixed part, e.g. ``{"cond": "sum"}``:
        ``"treatment"`` (R's default), ``"sum"``, ``"helmert"`` or ``"poly"`` (R's
        ``contr.*``).  Recorded on the model (:attr:`LmerModel.contrasts`) and used by
        ``predict``, ``to_r_script`` and :func:`pylmer.emmeans`.

    Returns
    -------
    LmerModel
        The fitted model.

    Raises
    ------
    FormulaError
        The formula does not parse, names a column not in ``data`` or has no random term.
    DataError
        The data have no rows, the response is not numeric, a model column holds infinite
        values, no row is complete, or missing values with ``na_action="error"`` (the
        message names the columns and counts).
    RError
        Any other error of lme4, e.g. a grouping factor with a single level or with as many
        levels as observations (the message names the factor).
    """
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string, not {type(formula).__name__}")
    _check_bool("reml", reml)
    data = as_pandas(data)
    if na_action not in ("omit", "error"):
        raise InvalidArgumentError(f"na_action must be 'omit' or 'error', not {na_action!r}")
    if len(data) == 0:
        raise DataError(f"data has no rows (columns: {', '.join(map(str, data.columns))})")
    if weights is not None and not isinstance(weights, str):
        weights = np.asarray(weights, dtype=float)
        if weights.shape != (len(data),):
            raise DataError(f"weights has shape {weights.shape}; data has {len(data)} rows")
    # R's own parse says which columns the model uses: only those cross, grouping
    # columns as factors with canonical labels (results map them back to the values)
    parse = _r.call(".pylmer_formula_parse", formula, [str(c) for c in data.columns], stacklevel=2)
    used = [*_strings(parse["vars"]), *([weights] if isinstance(weights, str) else [])]
    groups = _strings(parse["groups"])
    # the model keeps its own copy: a caller mutating `data` later changes nothing
    frame = model_frame(data, used)
    check_text_columns(frame, _strings(parse["fixed"]), groups)
    spec = _Spec(
        formula, bool(reml), _control(control), weights, na_action, levels=GroupLevels(groups)
    )
    spec = dataclasses.replace(spec, contrasts=normalize_contrasts(contrasts))
    return LmerModel._fit(spec, frame)


class LmerModel:
    """A linear mixed model fitted by lme4 (create it with :func:`lmer`).

    All results are plain pandas / numpy / Python values, extracted once right after the
    fit. The lme4 object stays in R for :meth:`predict`, :meth:`refit`, :meth:`confint`,
    :meth:`simulate` and :func:`anova`. A pickled model keeps its results and its data;
    after unpickling, those methods first refit the model transparently (same data,
    formula and options, so the same numbers).

    Attributes
    ----------
    fixef : pandas.DataFrame
        Fixed effects: ``estimate``, ``std_error``, ``t_value`` and, when lmerTest is
        installed, Satterthwaite ``df`` and ``p_value`` (computed on first access, then
        cached). ``fixef_wald`` has the first three columns only and is free.
    ranef, ranef_sd, coef, varcorr, sigma, theta, loglik, aic, bic, deviance,
    reml_criterion, nobs, ngrps, vcov, fitted, residuals, is_singular, converged, messages
        As in :class:`~pylmer.results.LmerResults`.
    results : LmerResults
        The container of all of them.
    data : pandas.DataFrame
        The data the model was fitted on.
    """

    def __init__(self, results: LmerResults, spec: _Spec, data: pd.DataFrame, handle: Any):
        self.results = results
        self.data = data
        self._spec = spec
        self._handle = handle
        self._fixed_levels: dict[str, list[str]] = {}

    # ------------------------------------------------------------------ building

    #: the R helpers that fit this kind of model and write its script (GlmerModel: glmer's)
    _R_FIT = ".pylmer_lmer_fit"
    _R_WRITE_SCRIPT = ".pylmer_lmer_write_script"

    @classmethod
    def _r_args(cls, spec: _Spec) -> dict[str, Any]:
        """The model's options as keyword arguments of the R fit and script helpers."""
        return {
            "REML": spec.reml,
            "control": None if spec.control is None else spec.control.to_r(),
            "weights": spec.weights,
            "contrasts": dict(spec.contrasts) or None,
        }

    @classmethod
    def _fit(cls, spec: _Spec, data: pd.DataFrame) -> LmerModel:
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
            counts = _series(out.get("na_counts"))
            where = ", ".join(f"{k!r}: {int(v)}" for k, v in counts.items())
            warnings.warn(
                f"lme4 dropped {dropped} of {len(data)} rows with missing values in the "
                f"model's columns (missing per column: {where}); fitted/residuals are NaN "
                "there; pass na_action='error' to raise instead",
                UserWarning,
                stacklevel=3,
            )
        return model

    @classmethod
    def _from_r(
        cls, out: dict[str, Any], spec: _Spec, data: pd.DataFrame, conditions: Sequence[str] = ()
    ) -> LmerModel:
        """Build the model from the fit's output; ``conditions`` are the R warnings and
        messages of the fit, kept in ``messages`` after lme4's own convergence messages."""
        shared = shared_results(out, spec, data, conditions)
        results = LmerResults(
            formula=spec.formula,
            reml=bool(out["reml"]),
            reml_criterion=float(out["reml_criterion"]),
            satterthwaite=_satterthwaite_table(out.get("satterthwaite"), shared["fixef"].index),
            **shared,
        )
        return cls._with_results(results, spec, data, out)

    @classmethod
    def _with_results(cls, results: Any, spec: Any, data: pd.DataFrame, out: dict) -> Any:
        """The model object around ``results``, with the R handle and the levels of the
        fixed-effect factors (checked by ``predict``)."""
        model = cls(results, spec, data, out["model"])
        levels = out["fixed_levels"]
        model._fixed_levels = (
            {k: _strings(v) for k, v in levels.items()} if isinstance(levels, dict) else {}
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

    def _check_restored(self, new: LmerResults) -> None:
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
                f"{list(old.theta)} (different data, or another R/lme4/BLAS); refit it with "
                "pylmer.lmer() instead"
            )

    def _step(self, step: tuple[Any, ...]) -> LmerModel:
        """Apply a refit step (``("refit", newresp)`` or ``("refit_ml",)``)."""
        if step[0] == "refit":
            out, conditions = _r.call_with_conditions(
                ".pylmer_lmer_refit", self._mermod(), step[1], stacklevel=3
            )
        else:
            out, conditions = _r.call_with_conditions(
                ".pylmer_lmer_refit_ml", self._mermod(), stacklevel=3
            )
        spec = dataclasses.replace(self._spec, steps=(*self._spec.steps, step))
        return LmerModel._from_r(out, spec, self.data, conditions)

    # ------------------------------------------------------------------ pickling

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handle"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __deepcopy__(self, memo: dict[int, Any]) -> LmerModel:
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
    def reml(self) -> bool:
        """Whether the model was fitted by REML."""
        return self.results.reml

    @property
    def fixef_wald(self) -> pd.DataFrame:
        """Fixed effects with ``estimate``, ``std_error`` and ``t_value`` only."""
        return self.results.fixef.copy()

    @property
    def fixef(self) -> pd.DataFrame:
        """Fixed effects: ``estimate``, ``std_error``, ``t_value``, Satterthwaite ``df``
        and ``p_value``.

        The Satterthwaite columns are computed with the fit by pylmer's own code from
        lme4's deviance function (equal to lmerTest's to about 1e-6), so this table,
        :meth:`summary` and the CLI always agree.  They are absent only when the
        computation failed (the reason is in ``messages``).
        """
        sat = self.results.satterthwaite
        return self.fixef_wald if sat is None else self.results.fixef.join(sat)

    def satterthwaite(self) -> pd.DataFrame | None:
        """Return the Satterthwaite ``df`` and ``p_value`` by term (None if unavailable)."""
        sat = self.results.satterthwaite
        return None if sat is None else sat.copy()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "results":
            raise AttributeError(name)
        if name in self._FORWARDED:
            return getattr(self.results, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self._FORWARDED})

    # ------------------------------------------------------------------ display

    def summary(self, *, pvalues: bool = True) -> str:
        """Return the summary text, laid out like lmerTest's ``summary(merMod)``.

        Parameters
        ----------
        pvalues : bool
            Show the Satterthwaite ``df`` and ``Pr(>|t|)`` columns (default), or lme4's
            table without them.
        """
        _check_bool("pvalues", pvalues)
        return format_summary(self.results, None if pvalues else False)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        kind = "REML" if self.reml else "ML"
        return f"<LmerModel {self.formula!r} ({kind}, {self.results.nobs} obs)>"

    def _repr_html_(self) -> str:
        return to_html(self.results)

    # ------------------------------------------------------------------ prediction

    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        *,
        include_random: bool = True,
        allow_new_levels: bool = True,
        interval: Literal["confidence", "prediction"] | None = None,
        level: float = 0.95,
    ) -> pd.Series | pd.DataFrame:
        """Predict with lme4's ``predict`` (``re.form = NULL`` or ``NA``).

        Parameters
        ----------
        newdata : pandas.DataFrame, optional
            New data; default: the fitted data (NaN on rows lme4 dropped).
        include_random : bool
            Add the conditional modes of the random effects (``re.form = NULL``); else
            the fixed part only (``re.form = NA``).
        allow_new_levels : bool
            Predict unseen levels of grouping factors from the fixed part (their random
            effects are zero); if False, unseen levels raise :class:`~pylmer.DataError`.
        interval : {"confidence", "prediction"}, optional
            Also return standard errors and intervals (a DataFrame); the approximation
            is described in :func:`pylmer.inference.predict_interval`.
        level : float
            Coverage of the intervals.

        Returns
        -------
        pandas.Series
            Aligned with ``newdata``'s index; with ``interval``, a DataFrame with
            ``estimate``, ``std_error``, ``df``, ``lower``, ``upper``.

        Raises
        ------
        DataError
            A fixed-effect factor column holds a level not seen in training (the message
            names the column and levels), an unseen group level with
            ``allow_new_levels=False``, a column the prediction needs is missing, or a
            numeric column of the model holds text.  An empty ``newdata`` gives an empty
            Series.
        """
        _check_bool("include_random", include_random)
        _check_bool("allow_new_levels", allow_new_levels)
        if interval is not None:
            return predict_interval(
                self,
                newdata,
                interval=interval,
                level=level,
                include_random=include_random,
                allow_new_levels=allow_new_levels,
            )
        if newdata is None:
            if include_random:
                return self.results.fitted.rename(None)
            values = _r.call(
                ".pylmer_lmer_predict", self._mermod(), None, include_random=False, stacklevel=2
            )
            full = self.results.fitted.copy()
            full[full.notna()] = np.atleast_1d(values)
            return full
        newdata = as_pandas(newdata, "newdata")
        self._check_fixed_levels(newdata)
        ref = _r.bind(self._encode(newdata))
        values = _r.call(
            ".pylmer_lmer_predict",
            self._mermod(),
            ref,
            include_random=include_random,
            allow_new_levels=allow_new_levels,
            stacklevel=2,
        )
        return pd.Series(np.atleast_1d(np.asarray(values, dtype=float)), index=newdata.index)

    def _encode(self, newdata: pd.DataFrame) -> pd.DataFrame:
        """The columns of ``newdata`` the model uses, group values as the fit's labels."""
        levels = self._spec.levels
        if levels is None:
            return newdata
        fresh = GroupLevels(levels.columns)  # new values must not extend the model's map
        return fresh.encode(model_frame(newdata, self.data.columns, "newdata"))

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

    # ------------------------------------------------------------------ refits

    def refit(self, newresp: np.ndarray | pd.Series | Sequence[float]) -> LmerModel:
        """Refit the same model to a new response without rebuilding it (lme4's ``refit``).

        Parameters
        ----------
        newresp : array-like or pandas.Series
            One value per used observation (``nobs``), or per row of the fitted data
            (a Series is aligned on the data's index; dropped rows are skipped).

        Returns
        -------
        LmerModel
            A new fitted model (its ``data`` still holds the original response).
        """
        used = self.results.fitted.notna().to_numpy()
        if isinstance(newresp, pd.Series) and len(newresp) == len(self.data):
            values = newresp.reindex(self.data.index).to_numpy(dtype=float)[used]
        else:
            values = np.asarray(newresp, dtype=float)
            if values.shape == (len(self.data),) and len(self.data) != self.results.nobs:
                values = values[used]
        if values.shape != (self.results.nobs,):
            raise DataError(
                f"newresp has {values.size} values; the model has {self.results.nobs} "
                f"observations ({len(self.data)} rows in its data)"
            )
        return self._step(("refit", values))

    def refit_ml(self) -> LmerModel:
        """Refit by maximum likelihood (lme4's ``refitML``), e.g. to compare fixed parts."""
        return self._step(("refit_ml",))

    # ------------------------------------------------------------------ inference

    def confint(
        self,
        method: Literal["wald", "profile", "boot"] = "wald",
        level: float = 0.95,
        *,
        parm: str | Sequence[str] | None = None,
        nsim: int = 500,
        seed: int | None = None,
        boot_type: Literal["perc", "basic", "norm"] = "perc",
        maxpts: int | None = None,
        delta: float | None = None,
        delta_cutoff: float | None = None,
        n_jobs: int | None = None,
    ) -> pd.DataFrame:
        """Confidence intervals with lme4's ``confint`` (rows as R names them).

        Parameters
        ----------
        method : {"wald", "profile", "boot"}
            Wald intervals (fixed effects only; variance parameters are NaN), likelihood
            profile, or parametric bootstrap.
        level : float
            Confidence level.
        parm : str or list of str, optional
            The parameters (``confint``'s ``parm``): row names such as ``".sig01"`` or
            ``"Days"``, or ``"theta_"`` (variance parameters) / ``"beta_"`` (fixed effects).
        nsim : int
            Bootstrap replicates (``method="boot"``).
        seed : int, optional
            Seed of R's random generator (``method="boot"``).
        boot_type : {"perc", "basic", "norm"}
            Bootstrap interval type (``boot.type``).
        maxpts, delta, delta_cutoff : optional
            Profile options (``method="profile"``; lme4's ``profile`` arguments ``maxpts``,
            ``delta``, ``delta.cutoff``).
        n_jobs : int, optional
            Worker processes for the bootstrap refits (``method="boot"``; joblib's
            ``n_jobs``, Dask under ``joblib.parallel_config(backend="dask")``); the same
            ``seed`` gives the intervals of plain R's ``confint(m, method = "boot")``
            whatever ``n_jobs`` is (see :func:`pylmer.bootstrap`).

        Returns
        -------
        pandas.DataFrame
            One row per parameter (``.sig01``, ..., ``.sigma``, then fixed effects);
            columns named like R's (``"2.5 %"``, ``"97.5 %"``).

        Raises
        ------
        InvalidArgumentError
            An argument of the wrong type or value, or a profile/bootstrap option with
            another method (the message names it).
        """
        methods = {"wald": "Wald", "profile": "profile", "boot": "boot"}
        if method not in methods:
            raise _bad("method", f"must be one of {list(methods)}, not {method!r}")
        if isinstance(level, (bool, np.bool_)) or not isinstance(level, (int, float)):
            raise _bad("level", f"must be a number between 0 and 1, not {level!r}")
        if not 0 < level < 1:
            raise _bad("level", f"must be between 0 and 1, not {level}")
        if boot_type not in ("perc", "basic", "norm"):
            raise _bad("boot_type", f"must be 'perc', 'basic' or 'norm', not {boot_type!r}")
        if parm is not None:
            parm = [parm] if isinstance(parm, str) else list(parm)
            if not parm or not all(isinstance(p, str) for p in parm):
                raise _bad("parm", f"must be a name or a list of names, not {parm!r}")
        profile = {"maxpts": maxpts, "delta": delta, "delta.cutoff": delta_cutoff}
        for name, value in profile.items():
            if value is None:
                continue
            arg = name.replace(".", "_")
            if method != "profile":
                raise _bad(arg, f"is a profile option; method is {method!r}")
            _check_control_value_number(arg, value)
            if value <= 0 or (name == "maxpts" and int(value) != value):
                raise _bad(arg, f"must be a positive {'integer' if arg == 'maxpts' else 'number'}")
        for name, value in (("nsim", nsim), ("seed", seed)):
            if value is not None and (
                isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer))
            ):
                raise _bad(name, f"must be an integer, not {value!r}")
        if nsim < 1:
            raise _bad("nsim", f"must be >= 1, not {nsim}")
        if method == "boot":
            from ..parallel import bootstrap_confint

            ci = bootstrap_confint(
                self, level, nsim=nsim, seed=seed, n_jobs=n_jobs, boot_type=boot_type
            )
            if parm is None:
                return ci
            fixed = set(self.results.fixef.index)
            keep = [
                r
                for r in ci.index
                if r in parm
                or ("beta_" in parm and r in fixed)
                or ("theta_" in parm and r not in fixed)
            ]
            return ci.loc[keep]
        return _r.call(
            ".pylmer_lmer_confint",
            self._mermod(),
            method=methods[method],
            level=float(level),
            nsim=int(nsim),
            seed=None if seed is None else int(seed),
            parm=parm,
            boot_type=boot_type,
            profile_args={
                k: (int(v) if k == "maxpts" else float(v))
                for k, v in profile.items()
                if v is not None
            }
            or None,
            stacklevel=2,
        )

    def simulate(self, nsim: int = 1, seed: int | None = None) -> pd.DataFrame:
        """Simulate responses from the fitted model (lme4's ``simulate``).

        Returns
        -------
        pandas.DataFrame
            Columns ``sim_1`` ... ``sim_<nsim>``, indexed by the used rows of the data.
        """
        sims = _r.call(
            ".pylmer_lmer_simulate",
            self._mermod(),
            nsim=int(nsim),
            seed=None if seed is None else int(seed),
            stacklevel=2,
        )
        sims.index = self.results.fitted.index[self.results.fitted.notna().to_numpy()]
        return sims

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

    # ---- inference (pylmer/inference.py)

    @property
    def contrasts(self) -> dict[str, str]:
        """The contrast codings given to :func:`lmer` (column -> coding name)."""
        return dict(self._spec.contrasts)

    def anova(
        self,
        type: Literal[1, 2, 3] = 3,
        ddf: Literal["satterthwaite", "kenward-roger", "lme4"] = "satterthwaite",
    ) -> pd.DataFrame:
        """F tests of the fixed-effect terms (lmerTest); see :func:`pylmer.inference.anova`."""
        return inference.anova(self, type=type, ddf=ddf)

    def ranova(self, *, reduce_terms: bool = True) -> pd.DataFrame:
        """LRT of each random-effect term (lmerTest); see :func:`pylmer.inference.ranova`."""
        return inference.ranova(self, reduce_terms=reduce_terms)

    def drop1(
        self, ddf: Literal["satterthwaite", "kenward-roger", "lme4"] = "satterthwaite"
    ) -> pd.DataFrame:
        """F test of dropping each marginal term; see :func:`pylmer.inference.drop1`."""
        return inference.drop1(self, ddf=ddf)

    def fixef_table(
        self, ddf: Literal["satterthwaite", "kenward-roger", "lme4"] = "satterthwaite"
    ) -> pd.DataFrame:
        """Coefficients with Satterthwaite or Kenward-Roger df; see
        :func:`pylmer.inference.fixef_table`."""
        return inference.fixef_table(self, ddf=ddf)

    def emmeans(self, specs: str | Sequence[str], **kwargs: Any) -> inference.EmmeansResult:
        """Estimated marginal means and contrasts; see :func:`pylmer.inference.emmeans`."""
        return inference.emmeans(self, specs, **kwargs)

    def r2(self) -> pd.Series:
        """Nakagawa's marginal and conditional R²; see :func:`pylmer.inference.r2`."""
        return inference.r2(self)

    def icc(self, *, by_group: bool = False) -> pd.Series | pd.DataFrame:
        """Intra-class correlation; see :func:`pylmer.inference.icc`."""
        return inference.icc(self, by_group=by_group)

    def allfit(self, *, n_jobs: int | None = None) -> pd.DataFrame:
        """Refit with every optimizer (lme4's allFit); see :func:`pylmer.inference.allfit`."""
        return inference.allfit(self, n_jobs=n_jobs)

    def tidy(
        self,
        effects: str | Sequence[str] = ("fixed", "ran_pars"),
        *,
        conf_int: bool = False,
        **kwargs: Any,
    ) -> pd.DataFrame:
        """Estimates in broom.mixed's layout; see :func:`pylmer.inference.tidy`."""
        return inference.tidy(self, effects, conf_int=conf_int, **kwargs)


_RESULT_FIELDS = frozenset(
    f.name for f in dataclasses.fields(LmerResults) if f.name not in ("formula", "reml")
) - {"fixef", "satterthwaite"}
#: the results fields read as model attributes (m.sigma is m.results.sigma)
LmerModel._FORWARDED = _RESULT_FIELDS


def _satterthwaite_table(value: Any, index: pd.Index) -> pd.DataFrame | None:
    """The fit's Satterthwaite table (``df``, ``p_value``) indexed like ``fixef``."""
    if not isinstance(value, pd.DataFrame) or len(value) != len(index):
        return None
    table = value[["df", "p_value"]].astype(float)
    table.index = index
    return table


def _check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool (numpy bools too), else raise naming ``name``."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise InvalidArgumentError(f"{name} must be True or False, not {value!r}", argument=name)


def shared_results(
    out: dict[str, Any], spec: Any, data: pd.DataFrame, conditions: Sequence[str] = ()
) -> dict[str, Any]:
    """The fields :class:`LmerResults` and :class:`~pylmer.results.GlmerResults` share,
    from the output of an R fit helper (``.pylmer_lmer_extract``'s list).

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
    levels = spec.levels if spec.levels is not None else GroupLevels()

    def by_value(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
        # index the tables by the groups' original Python values
        for group, table in tables.items():
            table.index = levels.decode_index(group, table.index)
        return dict(tables)

    return {
        "fixef": fixef,
        "ranef": by_value(out["ranef"]),
        "ranef_sd": by_value(out["ranef_sd"]),
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
        "messages": tuple(dict.fromkeys([*_strings(out["messages"]), *map(str, conditions)])),
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


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in np.atleast_1d(np.asarray(value, dtype=object))]


def anova(
    *models: LmerModel,
    refit: bool = True,
    method: Literal["lrt", "bootstrap"] = "lrt",
    nsim: int = 1000,
    seed: int | None = None,
    n_jobs: int | None = None,
) -> pd.DataFrame:
    """Likelihood-ratio tests between nested models (R's ``anova(m0, m1, ...)``).

    Parameters
    ----------
    *models : LmerModel or GlmerModel
        Two or more models fitted to the same data, e.g. nested GLMMs from
        :func:`pylmer.glmer`.  One linear mixed model gives lmerTest's type III F table
        with Satterthwaite df (:meth:`LmerModel.anova`).
    refit : bool
        Refit REML models by ML first, as R does (default).
    method : {"lrt", "bootstrap"}
        The chi-square likelihood-ratio test, or (two models) the parametric-bootstrap
        test of pbkrtest's ``PBmodcomp`` (see :func:`pylmer.parallel.bootstrap_anova`).
    nsim, seed, n_jobs
        Bootstrap draws, seed of R's generator, worker processes (``method="bootstrap"``).

    Returns
    -------
    pandas.DataFrame
        Indexed ``model1``, ``model2``, ... (in R's order, by number of parameters) with
        columns ``npar``, ``AIC``, ``BIC``, ``logLik``, ``deviance``, ``Chisq``, ``Df``,
        ``Pr(>Chisq)``.  With ``method="bootstrap"``: rows ``LRT`` and ``PBtest``, columns
        ``stat``, ``df``, ``p_value``.
    """
    if not models:
        raise InvalidArgumentError("anova() needs at least one model")
    for m in models:
        if not isinstance(m, LmerModel):
            raise InvalidArgumentError(f"anova() takes LmerModel objects, not {type(m).__name__}")
    if method not in ("lrt", "bootstrap"):
        raise InvalidArgumentError(f"method must be 'lrt' or 'bootstrap', not {method!r}")
    if method == "bootstrap":
        if len(models) != 2:
            raise InvalidArgumentError(f"method='bootstrap' compares two models, not {len(models)}")
        from ..parallel import bootstrap_anova

        return bootstrap_anova(*models, nsim=nsim, seed=seed, n_jobs=n_jobs)
    _check_bool("refit", refit)
    if len(models) == 1 and type(models[0]) is LmerModel:
        # one model: lmerTest's F table with Satterthwaite df, like anova(m) in R with
        # lmerTest loaded (a GLMM has no such table: lme4's own below)
        return models[0].anova()
    labels = [f"model{i + 1}" for i in range(len(models))]
    try:
        return _r.call(
            ".pylmer_lmer_anova",
            [m._mermod() for m in models],
            labels,
            refit=bool(refit),
            stacklevel=2,
        )
    except RError as exc:
        raise RError(f"anova failed: {exc.r_message}", r_message=exc.r_message) from None
