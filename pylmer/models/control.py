"""Fit options: lme4's ``lmerControl`` / ``glmerControl`` as :class:`LmerControl`, and
the contrast codings of ``contrasts=`` (:func:`normalize_contrasts`) and the GLMM
families and links (:func:`family_and_link`).

Shared by every model kind (``lmer``, ``glmer``, ``lmer_many``); also the small argument
checks the models use (:func:`check_bool`, :func:`check_number`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError

__all__ = [
    "CODINGS",
    "FAMILIES",
    "LmerControl",
    "as_control",
    "bad_argument",
    "check_bool",
    "check_number",
    "family_and_link",
    "normalize_contrasts",
]


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


def bad_argument(name: str, message: str) -> InvalidArgumentError:
    """An InvalidArgumentError naming ``name``."""
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
                raise bad_argument(
                    f"control.opt_ctrl[{unknown[0]!r}]",
                    f"is not an option of optimizer {optimizer!r} (known: "
                    f"{', '.join(sorted(known))})",
                )
        if optimizer == "optimx" and "method" not in {**ctrl, **extra}:
            raise bad_argument(
                "control.opt_ctrl",
                "needs a 'method' with optimizer 'optimx' (or use "
                "optimizer='optimx.<method>', e.g. 'optimx.L-BFGS-B')",
            )
        if self.maxfun is not None and _MAXFUN_NAME[optimizer] in ctrl:
            raise bad_argument(
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
        check_bool(where, value)
    elif kind == "optimizer":
        base = str(value).split(".", 1)[0] if isinstance(value, str) else None
        shorthand = isinstance(value, str) and "." in value and base in ("optimx", "nloptwrap")
        if not isinstance(value, str) or (value not in _OPTIMIZERS and not shorthand):
            raise bad_argument(
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
            raise bad_argument(where, f"must be {rule}, not {value!r}")
    elif kind == "conv":
        spec = {"action": value} if isinstance(value, str) else value
        if not isinstance(spec, Mapping):
            raise bad_argument(where, f"must be an action or a dict, not {type(value).__name__}")
        unknown = sorted(set(spec) - {"action", "tol", "rel_tol"})
        if unknown:
            raise bad_argument(
                f"{where}[{unknown[0]!r}]", "is unknown (known: action, tol, rel_tol)"
            )
        if "action" in spec and spec["action"] not in _ACTIONS:
            raise bad_argument(
                f"{where}['action']", f"must be one of {_ACTIONS}, not {spec['action']!r}"
            )
        for key in ("tol", "rel_tol"):
            if spec.get(key) is not None:
                check_number(f"{where}[{key!r}]", spec[key])
    elif kind == "opt_ctrl":
        if not isinstance(value, Mapping):
            raise bad_argument(where, f"must be a dict, not {type(value).__name__}")
        for key, item in value.items():
            if not isinstance(key, str):
                raise bad_argument(where, f"keys must be strings, not {key!r}")
            if not isinstance(item, (str, bool, int, float, np.integer, np.floating, np.bool_)):
                raise bad_argument(
                    f"{where}[{key!r}]", f"must be a number, string or bool, not {item!r}"
                )
    elif value not in kind:
        raise bad_argument(where, f"must be one of {', '.join(map(repr, kind))}, not {value!r}")


def check_number(where: str, value: Any) -> None:
    """Raise InvalidArgumentError naming ``where`` unless ``value`` is a finite number >= 0."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )
    if not ok or not np.isfinite(value) or value < 0:
        raise bad_argument(where, f"must be a number >= 0, not {value!r}")


def as_control(control: LmerControl | Mapping[str, Any] | None) -> LmerControl | None:
    """Validate ``control`` (an LmerControl or a dict of its fields)."""
    if control is None or isinstance(control, LmerControl):
        return control
    if isinstance(control, Mapping):
        known = [f.name for f in dataclasses.fields(LmerControl)]
        for key in control:
            if key not in known:
                dotted = {_CONTROL_ARGS[k][0]: k for k in known}
                hint = f" (did you mean {dotted[key]!r}?)" if key in dotted else ""
                raise bad_argument(
                    f"control[{key!r}]",
                    f"is not an lmerControl option{hint}; known: {', '.join(known)}",
                )
        return LmerControl(**control)
    raise InvalidArgumentError(
        f"control must be a dict or LmerControl, not {type(control).__name__}",
        argument="control",
    )


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool (numpy bools too), else raise naming ``name``."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise InvalidArgumentError(f"{name} must be True or False, not {value!r}", argument=name)


#: The contrast codings ``lmer(..., contrasts=...)`` accepts and R's functions for them.
CODINGS = {
    "treatment": "contr.treatment",
    "sum": "contr.sum",
    "helmert": "contr.helmert",
    "poly": "contr.poly",
}


def normalize_contrasts(contrasts: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    """Check ``lmer(..., contrasts=...)`` and return it as ``((column, coding), ...)``.

    Parameters
    ----------
    contrasts : dict, optional
        Column name -> coding: ``"treatment"``, ``"sum"``, ``"helmert"`` or ``"poly"``
        (R's ``contr.*`` names are accepted too).

    Returns
    -------
    tuple of (str, str)
        The codings by their short names.
    """
    if contrasts is None:
        return ()
    if not isinstance(contrasts, Mapping):
        raise InvalidArgumentError(
            f"contrasts must be a dict of column -> coding, not {type(contrasts).__name__}"
        )
    out = []
    for column, coding in contrasts.items():
        name = str(coding).removeprefix("contr.")
        if not isinstance(column, str) or name not in CODINGS:
            raise InvalidArgumentError(
                f"contrasts[{column!r}] is {coding!r}; use one of {', '.join(CODINGS)}"
            )
        out.append((column, name))
    return tuple(out)


#: family -> (default link, links lme4 accepts); R's names (``Gamma`` is capitalised).
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "binomial": ("logit", ("logit", "probit", "cauchit", "log", "cloglog")),
    "poisson": ("log", ("log", "identity", "sqrt")),
    "Gamma": ("inverse", ("inverse", "identity", "log")),
    "inverse.gaussian": ("1/mu^2", ("1/mu^2", "inverse", "identity", "log")),
    "negative_binomial": ("log", ("log",)),  # glmer.nb: log link only
}
_ALIASES = {
    "gamma": "Gamma",
    "inverse_gaussian": "inverse.gaussian",
    "negative.binomial": "negative_binomial",
    "negbin": "negative_binomial",
    "nb": "negative_binomial",
}


def family_and_link(
    family: Any,
    link: str | None,
    families: Mapping[str, tuple[str, tuple[str, ...]]] = FAMILIES,
    aliases: Mapping[str, str] = _ALIASES,
) -> tuple[str, str]:
    """Return R's family name and the link, or raise InvalidArgumentError naming the bad
    one.  ``families`` (name -> (default link, links)) and ``aliases`` default to
    glmer's; another model kind passes its own (glmmTMB)."""
    if not isinstance(family, str):
        raise InvalidArgumentError(
            f"family must be a string such as {next(iter(families))!r}, not {family!r}",
            argument="family",
        )
    name = family if family in families else aliases.get(family.strip().lower())
    if name is None and family.strip().lower() in families:
        name = family.strip().lower()
    if name is None:
        gauss = "gauss" in family and "gaussian" not in families
        hint = " (a Gaussian GLMM with identity link is pylmer.lmer)" if gauss else ""
        raise InvalidArgumentError(
            f"unknown family {family!r}; known: {', '.join(families)}{hint}", argument="family"
        )
    default, links = families[name]
    if link is None:
        return name, default
    if link not in links:
        raise InvalidArgumentError(
            f"link {link!r} is not available for the {name} family; available: "
            f"{', '.join(map(repr, links))}",
            argument="link",
        )
    return name, link
