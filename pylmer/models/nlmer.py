"""``nlmer()``: lme4's nonlinear mixed models (growth curves, pharmacokinetics) from
pandas, equal to plain R.

The model is lme4's three-part formula ``response ~ Nonlinear(x, p1, p2, ...) ~ random``
with one of R's self-starting models (``SSlogis``, ``SSasymp``, ``SSasympOff``,
``SSmicmen``, ``SSfpl``, ``SSgompertz``, ``SSbiexp``, ...).  The fit and every result come
from one R call (``r_scripts/nlmer.R``); the ``nlmerMod`` stays in R behind a handle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from ..data.coding import GroupCoding
from ..data.frames import model_frame
from ..errors import InvalidArgumentError
from ..r import session as _r
from ..results.nlmer import NlmerResults, format_nlmer_summary, nlmer_html
from ._base import MixedModel, check_fit_input, strings

__all__ = ["NlmerModel", "nlmer"]

#: nlmerControl options pylmer passes on (None keeps lme4's default)
_CONTROL_KEYS = ("optimizer", "opt_ctrl", "maxfun", "tol_pwrss")
_CONTROL_R = {"opt_ctrl": "optCtrl", "tol_pwrss": "tolPwrss"}


@dataclass(frozen=True)
class _NlmerSpec:
    """What is needed to rebuild an nlmer fit."""

    formula: str
    start: tuple[tuple[str, float], ...] | None
    theta: tuple[float, ...] | None
    control: tuple[tuple[str, Any], ...]
    na_action: str
    contrasts: tuple[tuple[str, str], ...] = ()
    steps: tuple[tuple[Any, ...], ...] = ()
    levels: GroupCoding | None = None


def _start(start: Any) -> tuple[tuple[tuple[str, float], ...] | None, tuple[float, ...] | None]:
    """``start`` as ((name, value), ...) plus optional theta; errors name the entry."""
    if start is None:
        return None, None
    if isinstance(start, pd.Series):
        start = start.to_dict()
    if not isinstance(start, Mapping):
        raise InvalidArgumentError(
            "start must be a dict of the nonlinear parameters' starting values, e.g. "
            f"{{'Asym': 200, 'xmid': 725, 'scal': 350}}, not {type(start).__name__}",
            argument="start",
        )
    theta = None
    if "nlpars" in start:
        theta_values = start.get("theta")
        if theta_values is not None:
            theta = tuple(float(v) for v in np.atleast_1d(theta_values))
        start = start["nlpars"]
    out = []
    for name, value in start.items():
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise InvalidArgumentError(
                f"start[{name!r}] must be a number, not {value!r}", argument=f"start[{name!r}]"
            )
        if not np.isfinite(value):
            raise InvalidArgumentError(
                f"start[{name!r}] must be finite, not {value!r}", argument=f"start[{name!r}]"
            )
        out.append((str(name), float(value)))
    return tuple(out), theta


def _control(control: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    if control is None:
        return ()
    if not isinstance(control, Mapping):
        raise InvalidArgumentError(
            f"control must be a dict, not {type(control).__name__}", argument="control"
        )
    for key in control:
        if key not in _CONTROL_KEYS:
            raise InvalidArgumentError(
                f"control[{key!r}] is not an nlmer option; known: {', '.join(_CONTROL_KEYS)}",
                argument=f"control[{key!r}]",
            )
    optimizer = control.get("optimizer")
    if optimizer is not None and optimizer not in ("Nelder_Mead", "bobyqa", "nloptwrap"):
        raise InvalidArgumentError(
            f"control['optimizer'] must be 'Nelder_Mead', 'bobyqa' or 'nloptwrap', not "
            f"{optimizer!r}",
            argument="control['optimizer']",
        )
    return tuple(sorted(control.items()))


def nlmer(
    formula: str,
    data: pd.DataFrame,
    start: Mapping[str, float] | pd.Series | None = None,
    *,
    control: Mapping[str, Any] | None = None,
    na_action: Literal["omit", "error"] = "omit",
) -> NlmerModel:
    """Fit a nonlinear mixed model with lme4's ``nlmer``.

    Parameters
    ----------
    formula : str
        lme4's three-part formula ``"response ~ Model(x, p1, p2, ...) ~ random"``, e.g.
        ``"circumference ~ SSlogis(age, Asym, xmid, scal) ~ Asym | Tree"``: the model is
        one of R's self-starting models (``SSlogis``, ``SSasymp``, ``SSasympOff``,
        ``SSmicmen``, ``SSfpl``, ``SSgompertz``, ``SSbiexp``, ...), whose arguments are a
        data column and the nonlinear parameters; the random part says which parameters
        vary by group.
    data : pandas.DataFrame
        The data (polars / pyarrow frames are converted).
    start : dict or pandas.Series, optional
        Starting values of the nonlinear parameters (``{"Asym": 200, "xmid": 725,
        "scal": 350}``), or ``{"nlpars": {...}, "theta": [...]}``.  Default: the values
        the self-starting model computes on the pooled data (R's ``getInitial``).
    control : dict, optional
        ``optimizer`` (``"Nelder_Mead"``, lme4's default, or ``"bobyqa"``), ``opt_ctrl``
        (the optimizer's options), ``maxfun``, ``tol_pwrss`` (nlmerControl's ``tolPwrss``).
    na_action : {"omit", "error"}
        Drop incomplete rows (with a warning) or raise :class:`~pylmer.DataError`.

    Returns
    -------
    NlmerModel
        The fitted model.

    Raises
    ------
    FormulaError
        Not three parts, an unknown model function, a column not in ``data``, a random
        part naming something that is not a parameter.
    InvalidArgumentError
        A ``start`` missing a parameter or naming an unknown one (the message names it),
        or start values at which the model or its gradient is not finite or flat (the
        message names the parameter to change).
    RError
        lme4 failed otherwise (the message gives the start values).

    Warns
    -----
    LmerConvergenceWarning
        The optimizer stopped before converging: the message names the parameter that
        moved most from its start, and the value to start it at.

    Examples
    --------
    >>> import pylmer
    >>> orange = pylmer.datasets.load("Orange")  # doctest: +SKIP
    >>> m = pylmer.nlmer(
    ...     "circumference ~ SSlogis(age, Asym, xmid, scal) ~ Asym | Tree",
    ...     orange, start={"Asym": 200, "xmid": 725, "scal": 350},
    ... )  # doctest: +SKIP
    >>> m.fixef["estimate"].round(1).tolist()  # doctest: +SKIP
    [192.1, 727.9, 348.1]
    """
    data = check_fit_input(formula, data, na_action)
    nlpars, theta = _start(start)
    # the columns the model uses: every name of the formula that is a column
    names = set(strings(_r.call(".pylmer_nlmer_names", formula, stacklevel=2)))
    used = [c for c in data.columns if str(c) in names]
    groups = strings(_r.call(".pylmer_nlmer_groups", formula, stacklevel=2))
    frame = model_frame(data, used)
    spec = _NlmerSpec(
        formula,
        nlpars,
        theta,
        _control(control),
        na_action,
        levels=GroupCoding.from_frame(frame, groups),
    )
    return NlmerModel._fit(spec, frame)


class NlmerModel(MixedModel):
    """A nonlinear mixed model fitted by lme4's ``nlmer`` (create it with :func:`nlmer`).

    Results are plain pandas / numpy values extracted right after the fit; the
    ``nlmerMod`` stays in R for :meth:`predict`, :meth:`simulate` and
    :meth:`to_r_script`.  A pickled model keeps its results and data, and refits (checked
    against the stored log-likelihood) when R is needed again.

    Attributes
    ----------
    fixef : pandas.DataFrame
        The nonlinear parameters: ``estimate``, ``std_error``, ``t_value``.
    start : pandas.Series
        The starting values used.
    ranef, ranef_sd, coef, varcorr, sigma, theta, loglik, aic, bic, deviance, npar, nobs,
    ngrps, vcov, fitted, residuals, is_singular, converged, messages
        As in :class:`~pylmer.results.nlmer.NlmerResults`.
    """

    results: NlmerResults
    _spec: _NlmerSpec
    _R_FIT: ClassVar[str] = ".pylmer_nlmer_fit"
    _R_WRITE_SCRIPT: ClassVar[str] = ".pylmer_nlmer_write_script"
    _R_PREDICT: ClassVar[str] = ".pylmer_nlmer_predict"
    _R_SIMULATE: ClassVar[str] = ".pylmer_nlmer_simulate"
    _R_STEPS: ClassVar[Mapping[str, str]] = {}
    _FORWARDED: ClassVar[frozenset[str]] = frozenset(
        f.name for f in dataclasses.fields(NlmerResults)
    ) - {"formula", "fixef"}

    @classmethod
    def _r_args(cls, spec: _NlmerSpec) -> dict[str, Any]:
        start: Any = None if spec.start is None else dict(spec.start)
        if start is not None and spec.theta is not None:
            start = {"nlpars": start, "theta": list(spec.theta)}
        control = {
            _CONTROL_R.get(k, k): (dict(v) if k == "opt_ctrl" else v) for k, v in spec.control
        }
        return {"start": start, "control": control or None}

    @classmethod
    def _results(cls, out: dict[str, Any], spec: Any, shared: dict[str, Any]) -> NlmerResults:
        start = out["start"]
        shared = {k: v for k, v in shared.items() if k in _RESULT_FIELDS}
        return NlmerResults(
            start=start if isinstance(start, pd.Series) else pd.Series(start, dtype=float),
            **shared,
        )

    def to_r_script(self, path: Any) -> Any:
        """Write the data (CSV) and an R script that refits this model with ``nlmer``
        (the start values used are written out)."""
        if self._spec.start is None:
            spec = dataclasses.replace(
                self._spec, start=tuple((str(k), float(v)) for k, v in self.start.items())
            )
            clone = type(self)(self.results, spec, self.data, self._handle)
            return MixedModel.to_r_script(clone, path)
        return super().to_r_script(path)

    # ------------------------------------------------------------------ display

    def summary(self, *, pvalues: bool = True) -> str:
        """Return the summary text, laid out like R's ``summary(nlmerMod)`` (lme4 gives
        no p-values for nlmer; ``pvalues`` is accepted for the common signature)."""
        return format_nlmer_summary(self.results)

    def __repr__(self) -> str:
        return f"<NlmerModel {self.formula!r} ({self.results.nobs} obs)>"

    def _repr_html_(self) -> str:
        return nlmer_html(self.results)

    # ------------------------------------------------------------------ prediction

    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        *,
        include_random: bool = True,
        allow_new_levels: bool | None = None,
    ) -> pd.Series:
        """Predict: the nonlinear model at each row's parameters.

        Parameters
        ----------
        newdata : pandas.DataFrame, optional
            New data; default: the fitted data.
        include_random : bool
            Use each group's parameters (fixed plus conditional modes); else the fixed
            effects only (population curve).
        allow_new_levels : bool, optional
            True: unseen groups get the population curve; False: they raise
            :class:`~pylmer.DataError`.  Not given: as True, with a
            :class:`~pylmer.errors.NewLevelsWarning` naming the unseen levels.

        Returns
        -------
        pandas.Series
            Aligned with ``newdata``'s index.
        """
        return self._predict(
            newdata,
            include_random=include_random,
            allow_new_levels=allow_new_levels,
            fitted_is_answer=include_random,
        )

    def simulate(self, nsim: int = 1, seed: int | None = None) -> pd.DataFrame:
        """Simulate responses: the fitted curves (fixed effects plus each group's
        conditional modes) plus normal noise with the residual sd (lme4 has no
        ``simulate`` for nlmer; R's generator after ``set.seed(seed)``).

        Returns
        -------
        pandas.DataFrame
            Columns ``sim_1`` ... ``sim_<nsim>``, indexed by the used rows of the data.
        """
        return super().simulate(nsim, seed)

    def refit(self, newresp: Any) -> NlmerModel:
        """Not available: lme4 has no refit for nlmer; fit :func:`nlmer` again."""
        raise NotImplementedError("lme4 has no refit() for nlmer models; call pylmer.nlmer again")


_RESULT_FIELDS = frozenset(f.name for f in dataclasses.fields(NlmerResults))
