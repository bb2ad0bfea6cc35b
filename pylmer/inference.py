"""Inference an R user expects after ``lmer()``, computed by R's own packages.

* :func:`anova`, :func:`ranova`, :func:`drop1` and :func:`fixef_table`: lmerTest's
  F tests (types 1-3) and coefficient tables with Satterthwaite or Kenward-Roger
  (pbkrtest) denominator degrees of freedom, and its likelihood-ratio tests of the
  random-effect terms;
* :func:`emmeans`: estimated marginal means and their contrasts (R's emmeans);
* :func:`predict_interval`: confidence and prediction intervals of predictions;
* :func:`r2` and :func:`icc`: Nakagawa's R² and the intra-class correlation (R's
  performance);
* :func:`allfit`: lme4's ``allFit``, every optimizer in one table;
* :func:`tidy`: one table in broom.mixed's layout.

Every function takes a fitted model (a :class:`~pylmer.models._base.MixedModel`: an
:class:`~pylmer.LmerModel`, or a :class:`~pylmer.GlmerModel` where the R package takes
GLMMs) and returns plain pandas.  The model classes expose them as methods
(``m.anova()``, ``m.r2()``, ...): this module sits between the model base and the
concrete kinds (it imports only :mod:`pylmer.models._base`, the results and R).
Tables of tests keep R's column names (``Sum Sq``, ``NumDF``, ``Pr(>F)``...) as
:func:`pylmer.anova` does; estimate tables use snake_case names (``estimate``,
``std_error``, ``conf_low``...) as broom does.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from .data.frames import as_pandas
from .errors import InvalidArgumentError, RError
from .models._base import MixedModel
from .models.control import CODINGS, normalize_contrasts
from .r import session as _r
from .results import LmerResults

__all__ = [
    "CODINGS",
    "EmmeansResult",
    "allfit",
    "anova",
    "drop1",
    "emmeans",
    "fixef_table",
    "icc",
    "normalize_contrasts",
    "predict_interval",
    "r2",
    "ranova",
    "tidy",
]

_DDF = {
    "satterthwaite": "satterthwaite",
    "kenward-roger": "kenward-roger",
    "kenward_roger": "kenward-roger",
    "kr": "kenward-roger",
    "lme4": "lme4",
}

# lmerTest's version of each model (Satterthwaite's Hessian is computed once per fit),
# keyed by the model and checked against its current R handle
_LMERTEST: weakref.WeakKeyDictionary[MixedModel, tuple[Any, bool, Any]] = (
    weakref.WeakKeyDictionary()
)
#: True: the Hessian and Jacobian of Satterthwaite's method come from pylmer's own
#: computation (r_scripts/satterthwaite.R, the df of ``m.fixef``); False: from lmerTest's
#: ``as_lmerModLmerTest`` (numerical derivatives, about 6x the deviance evaluations).  The
#: tests compare both with lmerTest; bench/inference.py times both.
OWN_SATTERTHWAITE = True


# ------------------------------------------------------------------ helpers


def _handle(model: MixedModel) -> Any:
    if not isinstance(model, MixedModel):
        raise InvalidArgumentError(
            f"expected a fitted pylmer model (LmerModel, GlmerModel), not {type(model).__name__}"
        )
    return model._mermod()


def _ddf(ddf: str, allowed: Sequence[str] = ("satterthwaite", "kenward-roger", "lme4")) -> str:
    key = _DDF.get(str(ddf).lower())
    if key is None or key not in allowed:
        raise InvalidArgumentError(f"ddf must be one of {list(allowed)}, not {ddf!r}")
    return key


def _call(what: str, fun: str, *args: Any, **kwargs: Any) -> Any:
    """Call an R helper; R's errors become RError naming the step that failed."""
    try:
        return _r.call(fun, *args, stacklevel=4, **kwargs)
    except RError as exc:
        if type(exc) is not RError:
            raise
        raise RError(f"{what} failed: {exc.r_message}", r_message=exc.r_message) from None


def _lmertest(model: MixedModel) -> Any:
    """Return the R handle of lmerTest's version of ``model`` (computed once per fit)."""
    handle = _handle(model)
    cached = _LMERTEST.get(model)
    if cached is not None and cached[0] is handle and cached[1] == OWN_SATTERTHWAITE:
        return cached[2]
    # an lmer fit's own Satterthwaite step (m.fixef) already built it: no second Hessian
    own = getattr(model, "_lmertest", None) if OWN_SATTERTHWAITE else None
    mt = own() if own is not None else None
    if mt is None:
        mt = _call("lmerTest", ".pylmer_inf_lmertest", handle, own=OWN_SATTERTHWAITE)
    try:
        _LMERTEST[model] = (handle, OWN_SATTERTHWAITE, mt)
    except TypeError:  # not weak-referenceable: no cache
        pass
    return mt


def _table(out: dict[str, Any]) -> pd.DataFrame:
    table = out["table"]
    table.index = pd.Index([str(i) for i in table.index])
    table.attrs["heading"] = str(out.get("heading") or "")
    return table


def _names(value: str | Sequence[str] | None, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    names = list(value)
    if not names or not all(isinstance(v, str) for v in names):
        raise InvalidArgumentError(f"{what} must be a column name or a list of column names")
    return names


# ------------------------------------------------------------------ lmerTest tables


def anova(
    model: MixedModel,
    type: Literal[1, 2, 3] = 3,
    ddf: Literal["satterthwaite", "kenward-roger", "lme4"] = "satterthwaite",
) -> pd.DataFrame:
    """F tests of the fixed-effect terms, as lmerTest's ``anova(m, type, ddf)``.

    Parameters
    ----------
    model : LmerModel
        A linear mixed model.
    type : {1, 2, 3}
        Sequential (1), marginal-to-higher-terms (2) or marginal (3) sums of squares
        (lmerTest's type 3 does not depend on the contrast coding).
    ddf : {"satterthwaite", "kenward-roger", "lme4"}
        Denominator degrees of freedom; ``"lme4"`` gives lme4's own sequential table (no
        df, no p-value) and therefore needs ``type=1``.

    Returns
    -------
    pandas.DataFrame
        One row per term with R's columns ``Sum Sq``, ``Mean Sq``, ``NumDF``, ``DenDF``,
        ``F value``, ``Pr(>F)`` (``npar``, ``Sum Sq``, ``Mean Sq``, ``F value`` for
        ``ddf="lme4"``); R's heading in ``.attrs["heading"]``.
    """
    if type not in (1, 2, 3):
        raise InvalidArgumentError(f"type must be 1, 2 or 3, not {type!r}")
    ddf = _ddf(ddf)
    if ddf == "lme4" and type != 1:
        raise InvalidArgumentError("ddf='lme4' gives lme4's sequential table: use type=1")
    return _table(_call("anova", ".pylmer_inf_anova", _lmertest(model), type=int(type), ddf=ddf))


def ranova(model: MixedModel, *, reduce_terms: bool = True) -> pd.DataFrame:
    """Likelihood-ratio test of each random-effect term, as lmerTest's ``ranova``.

    Parameters
    ----------
    model : LmerModel
        A linear mixed model.
    reduce_terms : bool
        Reduce each term by one step (``(x | g)`` to ``(1 | g)``), else drop it whole.

    Returns
    -------
    pandas.DataFrame
        Rows ``<none>`` (the model) and one per reduced term; columns ``npar``,
        ``logLik``, ``AIC``, ``LRT``, ``Df``, ``Pr(>Chisq)`` (REML models are compared by
        REML, as in R).
    """
    out = _call("ranova", ".pylmer_inf_ranova", _lmertest(model), reduce_terms=bool(reduce_terms))
    return _table(out)


def drop1(
    model: MixedModel, ddf: Literal["satterthwaite", "kenward-roger", "lme4"] = "satterthwaite"
) -> pd.DataFrame:
    """F test of dropping each marginal fixed-effect term, as lmerTest's ``drop1``.

    Returns
    -------
    pandas.DataFrame
        One row per droppable term: ``Sum Sq``, ``Mean Sq``, ``NumDF``, ``DenDF``,
        ``F value``, ``Pr(>F)`` (for ``ddf="lme4"``: lme4's likelihood-ratio table).
    """
    return _table(_call("drop1", ".pylmer_inf_drop1", _lmertest(model), ddf=_ddf(ddf)))


def fixef_table(
    model: MixedModel, ddf: Literal["satterthwaite", "kenward-roger", "lme4"] = "satterthwaite"
) -> pd.DataFrame:
    """The coefficient table of lmerTest's ``summary(m, ddf=...)``.

    Returns
    -------
    pandas.DataFrame
        Indexed by coefficient: ``estimate``, ``std_error``, ``df``, ``t_value``,
        ``p_value``.  With ``"kenward-roger"`` the standard errors are pbkrtest's
        adjusted ones; ``"lme4"`` gives the first, second and ``t_value`` columns only.
    """
    table = _call("coefficient table", ".pylmer_inf_coef_table", _lmertest(model), ddf=_ddf(ddf))
    table.index = pd.Index([str(i) for i in table.index])
    return table


# ------------------------------------------------------------------ emmeans


@dataclass(frozen=True)
class EmmeansResult:
    """Estimated marginal means and (optionally) their contrasts.

    Unpacks as ``means, contrasts = pylmer.emmeans(...)``.

    Attributes
    ----------
    means : pandas.DataFrame
        One row per cell of ``specs`` (and ``by``): the factor columns, then
        ``estimate``, ``std_error``, ``df``, ``conf_low``, ``conf_high``.
    contrasts : pandas.DataFrame or None
        One row per contrast: ``contrast`` (and ``by`` columns), ``estimate``,
        ``std_error``, ``df``, ``conf_low``, ``conf_high``, ``statistic`` (t, or z when
        df is infinite), ``p_value`` adjusted by ``adjust``; a ratio scale (GLMM on the
        response scale) adds ``null``.
    adjust : str or None
        The p-value adjustment emmeans applied to the contrasts.
    estimate_name : str
        emmeans' name of the estimate column (``emmean``, ``response``, ``prob``...).
    messages : tuple of str
        emmeans' notes (e.g. the scale of the results, averaging over factors).
    """

    means: pd.DataFrame
    contrasts: pd.DataFrame | None = None
    adjust: str | None = None
    estimate_name: str = "emmean"
    messages: tuple[str, ...] = field(default=())

    def __iter__(self) -> Iterator[pd.DataFrame | None]:
        yield self.means
        yield self.contrasts


_CONTRAST_METHODS = ("pairwise", "revpairwise", "trt.vs.ctrl", "poly", "consec", "eff", "del.eff")


def _parse_specs(
    specs: str | Sequence[str], by: str | Sequence[str] | None
) -> tuple[list[str], list[str] | None]:
    if isinstance(specs, str) and "|" in specs:
        if by is not None:
            raise InvalidArgumentError("give `by` either in specs ('a | b') or as by=, not both")
        left, right = specs.split("|", 1)
        specs = [s.strip() for s in left.replace("*", "+").split("+") if s.strip()]
        by = [s.strip() for s in right.replace("*", "+").split("+") if s.strip()]
    elif isinstance(specs, str):
        specs = [s.strip() for s in specs.replace("*", "+").split("+") if s.strip()]
    names = _names(specs, "specs")
    if not names:
        raise InvalidArgumentError("specs must name at least one variable")
    return names, _names(by, "by")


def emmeans(
    model: MixedModel,
    specs: str | Sequence[str],
    *,
    by: str | Sequence[str] | None = None,
    at: Mapping[str, Any] | None = None,
    pairwise: bool = False,
    contrasts: str | Mapping[str, Sequence[float]] | None = None,
    adjust: str | None = None,
    type: Literal["response", "link"] = "response",
    level: float = 0.95,
    ddf: Literal["satterthwaite", "kenward-roger", "asymptotic"] | None = None,
    ref: int | None = None,
) -> EmmeansResult:
    """Estimated marginal means, and their contrasts, with R's emmeans.

    Parameters
    ----------
    model : LmerModel or GlmerModel
        A fitted mixed model (anything with ``_mermod()``).
    specs : str or list of str
        The factor(s) (or variables) whose means are wanted: ``"cond"``,
        ``["cond", "gender"]``, ``"cond * gender"``, or ``"cond | gender"`` (means of
        ``cond`` within each ``gender``).
    by : str or list of str, optional
        Variables to condition on (separate tables of means and contrasts).
    at : dict, optional
        Values of covariates or levels to use, e.g. ``{"pitch": [150, 250]}``.
    pairwise : bool
        Add all pairwise contrasts (``contrasts="pairwise"``).
    contrasts : str or dict, optional
        A contrast method of emmeans (``"pairwise"``, ``"revpairwise"``,
        ``"trt.vs.ctrl"``, ``"poly"``, ``"consec"``, ``"eff"``, ``"del.eff"``), or custom
        contrasts as ``{name: weights}`` with one weight per row of ``means``.
    adjust : str, optional
        p-value adjustment of the contrasts (``"tukey"``, ``"sidak"``, ``"bonferroni"``,
        ``"holm"``, ``"dunnettx"``, ``"mvt"``, ``"none"``...); default: emmeans' own
        choice for the method (Tukey for pairwise, Dunnett for trt.vs.ctrl, none for
        poly and custom weights).
    type : {"response", "link"}
        ``"response"`` back-transforms from the link scale (GLMMs) or a transformed
        response such as ``log(y)``; ``"link"`` stays on the linear-predictor scale.
    level : float
        Confidence level of the intervals.
    ddf : {"satterthwaite", "kenward-roger", "asymptotic"}, optional
        Degrees of freedom for linear mixed models.  Default: emmeans' own choice
        (Kenward-Roger, falling back to asymptotic above 3000 observations).  An
        explicit choice lifts emmeans' size limits (Kenward-Roger on large data needs
        much memory and time).
    ref : int, optional
        The reference level (1-based, as in R) of ``"trt.vs.ctrl"``.

    Returns
    -------
    EmmeansResult
        ``.means`` and ``.contrasts`` (None without a contrast) DataFrames.
    """
    handle = _handle(model)
    names, by_names = _parse_specs(specs, by)
    if type not in ("response", "link"):
        raise InvalidArgumentError(f"type must be 'response' or 'link', not {type!r}")
    if not 0 < level < 1:
        raise InvalidArgumentError(f"level must be between 0 and 1, not {level}")
    if pairwise:
        if contrasts not in (None, "pairwise"):
            raise InvalidArgumentError("give either pairwise=True or contrasts=..., not both")
        contrasts = "pairwise"
    method = _contrast_method(contrasts)
    if adjust is not None and method is None:
        raise InvalidArgumentError(
            "adjust applies to contrasts: pass pairwise=True or contrasts=..."
        )
    ddf_key = _emmeans_ddf(ddf)
    at_r = _at_values(at)
    # Satterthwaite df: hand emmeans lmerTest's version (its Hessian is cached)
    target = handle
    if ddf_key == "satterthwaite" and _is_lmm(model):
        target = _lmertest(model)
    out = _call(
        "emmeans",
        ".pylmer_inf_emmeans",
        target,
        names,
        by=by_names,
        at=at_r,
        contrast=method,
        adjust=adjust,
        type=type,
        level=float(level),
        ddf=ddf_key,
        ref=None if ref is None else int(ref),
    )
    found = out.get("messages")
    messages = () if found is None else tuple(str(t) for t in np.atleast_1d(found) if str(t))
    return EmmeansResult(
        means=_plain(out["means"]),
        contrasts=None if out.get("contrasts") is None else _plain(out["contrasts"]),
        adjust=out.get("adjust"),
        estimate_name=str(out.get("estimate_name") or "emmean"),
        messages=messages,
    )


def _contrast_method(contrasts: Any) -> Any:
    """emmeans' contrast method: a method name, or {name: weights}, or None."""
    method: Any = None
    if isinstance(contrasts, str):
        if contrasts not in _CONTRAST_METHODS:
            raise InvalidArgumentError(
                f"contrasts must be one of {list(_CONTRAST_METHODS)} or a dict of weights, "
                f"not {contrasts!r}"
            )
        method = contrasts
    elif isinstance(contrasts, Mapping):
        method = {}
        for name, weights in contrasts.items():
            values = np.asarray(weights, dtype=float)
            if values.ndim != 1 or not np.isfinite(values).all():
                raise InvalidArgumentError(f"contrast {name!r} needs a list of finite weights")
            method[str(name)] = values
    elif contrasts is not None:
        raise InvalidArgumentError(
            f"contrasts must be a string or a dict, not {_type_name(contrasts)}"
        )
    return method


def _emmeans_ddf(ddf: Any) -> str | None:
    """The df method emmeans is asked for (None: its own choice)."""
    ddf_key = None
    if ddf is not None:
        ddf_key = str(ddf).lower().replace("_", "-")
        ddf_key = {"kr": "kenward-roger"}.get(ddf_key, ddf_key)
        if ddf_key not in ("satterthwaite", "kenward-roger", "asymptotic"):
            raise InvalidArgumentError(
                f"ddf must be 'satterthwaite', 'kenward-roger' or 'asymptotic', not {ddf!r}"
            )
    return ddf_key


def _at_values(at: Any) -> dict[str, list[Any]] | None:
    """``at`` as lists of plain Python values by column."""
    at_r = None
    if at is not None:
        if not isinstance(at, Mapping):
            raise InvalidArgumentError(
                f"at must be a dict of column -> values, not {_type_name(at)}"
            )
        at_r = {}
        for key, values in at.items():
            listlike = isinstance(values, Sequence | np.ndarray | pd.Series)
            seq = list(values) if listlike and not isinstance(values, str) else [values]
            at_r[str(key)] = [v.item() if hasattr(v, "item") else v for v in seq]
    return at_r


def _type_name(value: Any) -> str:
    return type(value).__name__


def _is_lmm(model: MixedModel) -> bool:
    """Whether ``model`` is a linear mixed model (lmerTest applies)."""
    return isinstance(model.results, LmerResults)


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reset_index(drop=True)
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype(str)
    return frame


# ------------------------------------------------------------------ prediction intervals


def predict_interval(
    model: MixedModel,
    newdata: pd.DataFrame | None = None,
    *,
    interval: Literal["confidence", "prediction"] = "confidence",
    level: float = 0.95,
    include_random: bool = True,
    allow_new_levels: bool = True,
    ddf: Literal["satterthwaite", "asymptotic"] = "satterthwaite",
) -> pd.DataFrame:
    """Predictions with standard errors and intervals.

    The approximation: the variance parameters (θ, σ) are taken as known, at their
    estimates; given them, the fixed effects and the random effects have a joint normal
    posterior (flat prior on β), whose covariance lme4's Cholesky factors give exactly
    (this includes the correlation between β̂ and the conditional modes, which merTools'
    ``predictInterval`` ignores).  Intervals use normal quantiles.  Per row:

    * known group, ``include_random=True``: the confidence interval is for
      ``x'β + z'b`` of that group (variance from the joint posterior); the prediction
      interval adds the residual variance σ²;
    * unseen group (``allow_new_levels=True``): its random effect is a new draw, so the
      variance adds ``z'Σz`` (Σ the estimated covariance of that term) to both intervals;
    * population level (``include_random=False``): the confidence interval is for
      ``x'β`` (variance ``x' vcov(β̂) x``); the prediction interval is for a new
      observation of a new group (adds ``z'Σz`` of every term and σ²).

    The uncertainty of θ and σ enters through the quantiles only: with
    ``ddf="satterthwaite"`` (default) the intervals use t quantiles with Satterthwaite's
    df of each predictive variance ``v = σ² w(θ)``, ``2 v² / (g' A g)`` with ``g`` its
    gradient in (θ, σ) and ``A`` the asymptotic covariance of (θ, σ) of lmerTest's method
    (for ``x'β`` alone these are lmerTest's df of the contrast ``x``); with
    ``"asymptotic"``, normal quantiles.  ``bench/inference.py`` measures the coverage
    (sleepstudy leave-one-subject-out and a simulation with known truth).

    Parameters
    ----------
    model : LmerModel
        A linear mixed model.
    newdata : pandas.DataFrame, optional
        New data; default: the fitted data (NaN on rows lme4 dropped).
    interval : {"confidence", "prediction"}
        Interval of the conditional mean, or of a new observation.
    level : float
        Coverage probability.
    include_random : bool
        Group-level (``re.form = NULL``) or population-level (``re.form = NA``).
    allow_new_levels : bool
        Predict unseen groups (see above); else they raise :class:`~pylmer.DataError`.
    ddf : {"satterthwaite", "asymptotic"}
        t quantiles with Satterthwaite's df (linear mixed models), or normal quantiles.

    Returns
    -------
    pandas.DataFrame
        ``estimate`` (equal to ``predict``), ``std_error``, ``df``, ``lower``, ``upper``,
        aligned with ``newdata``'s index.
    """
    if interval not in ("confidence", "prediction"):
        raise InvalidArgumentError(
            f"interval must be 'confidence' or 'prediction', not {interval!r}"
        )
    if not 0 < level < 1:
        raise InvalidArgumentError(f"level must be between 0 and 1, not {level}")
    if ddf not in ("satterthwaite", "asymptotic"):
        raise InvalidArgumentError(f"ddf must be 'satterthwaite' or 'asymptotic', not {ddf!r}")
    handle = _handle(model)
    satterthwaite = ddf == "satterthwaite" and _is_lmm(model)
    kwargs = dict(
        include_random=bool(include_random),
        allow_new_levels=bool(allow_new_levels),
        interval=interval,
        level=float(level),
        ddf="satterthwaite" if satterthwaite else "asymptotic",
        mt=_lmertest(model) if satterthwaite else None,
    )
    if newdata is None:
        out = _call("predict", ".pylmer_inf_predict", handle, None, **kwargs)
        fitted = model.results.fitted
        full = pd.DataFrame(np.nan, index=fitted.index, columns=list(out.columns))
        full.loc[fitted.notna().to_numpy()] = out.to_numpy()
        return full
    newdata = as_pandas(newdata, "newdata")
    checker = getattr(model, "_check_fixed_levels", None)
    if checker is not None:
        checker(newdata)
    encode = getattr(model, "_encode", None)  # group values as the fit's level labels
    ref = _r.bind(encode(newdata) if encode is not None else newdata)
    out = _r.call(".pylmer_inf_predict", handle, ref, stacklevel=3, **kwargs)
    out.index = newdata.index
    return out


# ------------------------------------------------------------------ R2, ICC


def r2(model: MixedModel) -> pd.Series:
    """Nakagawa's marginal and conditional R², as ``performance::r2_nakagawa``.

    Returns
    -------
    pandas.Series
        ``marginal`` (variance explained by the fixed effects) and ``conditional``
        (fixed and random effects).
    """
    out = _call("r2", ".pylmer_inf_r2", _handle(model))
    return pd.Series(out, dtype=float, name="R2")


def icc(model: MixedModel, *, by_group: bool = False) -> pd.Series | pd.DataFrame:
    """Intra-class correlation, as ``performance::icc``.

    Parameters
    ----------
    by_group : bool
        One ICC per grouping factor instead of the adjusted / unadjusted pair.

    Returns
    -------
    pandas.Series or pandas.DataFrame
        ``adjusted`` (random-effect variance over random + residual variance) and
        ``unadjusted`` (over the total including the fixed effects); with ``by_group``,
        columns ``group`` and ``icc``.
    """
    out = _call("icc", ".pylmer_inf_icc", _handle(model), by_group=bool(by_group))
    if by_group:
        return _plain(out)
    return pd.Series(out, dtype=float, name="ICC")


# ------------------------------------------------------------------ allFit


def _allfit_one(model: MixedModel, name: str) -> pd.DataFrame:
    """:func:`allfit` with one optimizer (run in a worker process by pylmer.parallel)."""
    return _call("allFit", ".pylmer_inf_allfit", model._mermod(), which=[name])


def allfit(model: MixedModel, *, n_jobs: int | None = None) -> pd.DataFrame:
    """Refit with every optimizer lme4's ``allFit`` knows and tabulate the results.

    The optimizers: bobyqa, Nelder_Mead, nlminbwrap, nmkbw (dfoptim), optimx's
    L-BFGS-B, nloptwrap's NLOPT_LN_NELDERMEAD and NLOPT_LN_BOBYQA (those whose R
    package is missing are reported as failed).  When all reach the same log-likelihood
    and estimates, a convergence warning of the original fit is a false alarm.

    Parameters
    ----------
    n_jobs : int, optional
        Refit with this many worker processes (joblib, as :mod:`pylmer.parallel`; each
        worker starts its own R and rebuilds the model from its data once); default: one
        after the other in this process.  The table is the same.

    Returns
    -------
    pandas.DataFrame
        Indexed by optimizer: ``ok``, ``loglik``, ``time`` (seconds), ``warnings`` (the
        optimizer's and lme4's convergence messages, ``"; "``-joined), one column per
        fixed effect, then the standard deviations / correlations (``<group>.sd_<term>``,
        ``<group>.cor_<a>.<b>``, ``sigma``).
    """
    handle = _handle(model)
    if n_jobs is None or n_jobs == 1:
        out = _call("allFit", ".pylmer_inf_allfit", handle)
    else:
        from . import parallel

        names = _call("allFit", ".pylmer_inf_allfit_names", handle)
        names = [str(n) for n in np.atleast_1d(names)]
        parts = parallel.map_model(_allfit_one, model, names, n_jobs=n_jobs, desc="allFit")
        out = pd.concat(parts, ignore_index=True)
    out = out.set_index("optimizer")
    out.index.name = "optimizer"
    out["ok"] = out["ok"].astype(bool)
    return out


# ------------------------------------------------------------------ tidy

_EFFECTS = ("fixed", "ran_pars", "ran_vals")


def tidy(
    model: MixedModel,
    effects: str | Sequence[str] = ("fixed", "ran_pars"),
    *,
    conf_int: bool = False,
    conf_level: float = 0.95,
    conf_method: Literal["wald", "profile", "boot"] = "wald",
    ddf: Literal["satterthwaite", "kenward-roger", "lme4"] = "satterthwaite",
) -> pd.DataFrame:
    """A table of estimates in broom.mixed's ``tidy()`` layout (snake_case names).

    Parameters
    ----------
    model : LmerModel or GlmerModel
        A fitted mixed model.
    effects : str or list of {"fixed", "ran_pars", "ran_vals"}
        Fixed effects; random-effect standard deviations and correlations (terms
        ``sd__<term>``, ``cor__<a>.<b>``, ``sd__Observation`` for the residual); the
        conditional modes with their conditional standard deviations.
    conf_int : bool
        Add ``conf_low`` and ``conf_high``.
    conf_level : float
        Their level.
    conf_method : {"wald", "profile", "boot"}
        Wald (t quantiles with the ``df`` of the fixed effects where there are df, else
        normal quantiles; NaN for ``ran_pars``, as in broom.mixed), likelihood
        profile or parametric bootstrap (``confint``); conditional modes always Wald.
    ddf : {"satterthwaite", "kenward-roger", "lme4"}
        Degrees of freedom of the fixed effects of a linear mixed model (lmerTest);
        ``"lme4"`` leaves ``df`` and ``p_value`` empty.  GLMMs have z tests.

    Returns
    -------
    pandas.DataFrame
        Columns ``effect``, ``group``, (``level`` with ran_vals), ``term``, ``estimate``,
        ``std_error``, ``statistic``, ``df``, ``p_value`` (and ``conf_low``,
        ``conf_high``); as in broom.mixed, the test columns appear with fixed effects only
        (``df`` and ``p_value`` only where there are df: not for GLMMs nor
        ``ddf="lme4"``) and ``std_error`` with fixed effects or conditional modes.
    """
    chosen = [effects] if isinstance(effects, str) else list(effects)
    bad = [e for e in chosen if e not in _EFFECTS]
    if bad or not chosen:
        raise InvalidArgumentError(
            f"effects must be among {list(_EFFECTS)}, not {bad or effects!r}"
        )
    methods = {"wald": "Wald", "profile": "profile", "boot": "boot"}
    if conf_method not in methods:
        raise InvalidArgumentError(
            f"conf_method must be one of {list(methods)}, not {conf_method!r}"
        )
    if not 0 < conf_level < 1:
        raise InvalidArgumentError(f"conf_level must be between 0 and 1, not {conf_level}")
    ddf = _ddf(ddf)
    handle = _handle(model)
    mt = _lmertest(model) if ("fixed" in chosen and ddf != "lme4" and _is_lmm(model)) else None
    out = _call(
        "tidy",
        ".pylmer_inf_tidy",
        handle,
        mt,
        effects=chosen,
        conf_int=bool(conf_int),
        conf_level=float(conf_level),
        conf_method=methods[conf_method],
        ddf="satterthwaite" if ddf == "lme4" else ddf,
    )
    out = _plain(out)
    # broom.mixed's columns: test columns only with fixed effects (df and p-value only
    # where there are df), std_error with fixed effects or conditional modes
    drop = [] if "ran_vals" in chosen else ["level"]
    fixed = out["effect"] == "fixed"
    if not fixed.any():
        drop += ["statistic", "df", "p_value"]
    else:
        drop += [c for c in ("df", "p_value") if out.loc[fixed, c].isna().all()]
    if not fixed.any() and "ran_vals" not in chosen:
        drop.append("std_error")
    out = out.drop(columns=drop)
    if "ran_vals" in chosen:
        out["level"] = _decode_levels(model, out["group"], out["level"])
    for column in ("group", "term", "effect") + (("level",) if "ran_vals" in chosen else ()):
        out[column] = out[column].astype(object).where(out[column].notna(), None)
    return out


def _decode_levels(model: MixedModel, groups: pd.Series, levels: pd.Series) -> pd.Series:
    """The group levels of ``ran_vals`` rows as the user's original values."""
    mapping = getattr(getattr(model, "_spec", None), "levels", None)
    values = levels.astype(object).copy()
    if mapping is None:
        return values
    for group in groups.dropna().unique():
        rows = (groups == group).to_numpy() & levels.notna().to_numpy()
        decoded = mapping.decode(str(group), pd.Index(levels[rows].astype(str)))
        values[rows] = list(decoded)
    return values
