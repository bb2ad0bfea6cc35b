"""``glmmtmb()``: glmmTMB's mixed models from pandas: zero-inflated and hurdle counts,
negative binomial (nbinom1, nbinom2), beta and beta-binomial, tweedie, truncated and
generalized Poisson families, and models for the dispersion; equal to plain R.

The fit and every result come from one R call (``r_scripts/glmmtmb.R``); the results
live in a pure-pandas :class:`~pylmer.results.glmmtmb.GlmmTMBResults`; the fitted
``glmmTMB`` object stays in R behind a handle for ``predict``, ``simulate``, ``refit``,
``anova``, ``emmeans`` and ``confint``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from ..data.coding import GroupCoding
from ..errors import InvalidArgumentError, RError
from ..r import session as _r
from ..results.glmmtmb import GlmmTMBResults, format_glmmtmb_summary, glmmtmb_html
from ._base import MixedModel, model_labels, prepare_data, row_values, strings
from .control import family_and_link

__all__ = ["FAMILIES", "GlmmTMBModel", "glmmtmb"]

#: family -> (default link, links glmmTMB accepts)
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "gaussian": ("identity", ("identity", "log", "inverse")),
    "poisson": ("log", ("log", "identity", "sqrt")),
    "binomial": ("logit", ("logit", "probit", "cloglog", "cauchit", "log")),
    "nbinom1": ("log", ("log",)),
    "nbinom2": ("log", ("log",)),
    "Gamma": ("inverse", ("inverse", "log", "identity")),
    "beta": ("logit", ("logit", "probit", "cloglog")),
    "betabinomial": ("logit", ("logit", "probit", "cloglog")),
    "tweedie": ("log", ("log",)),
    "truncated_poisson": ("log", ("log",)),
    "truncated_nbinom1": ("log", ("log",)),
    "truncated_nbinom2": ("log", ("log",)),
    "genpois": ("log", ("log",)),
}
_ALIASES = {"gamma": "Gamma", "beta_family": "beta", "negative_binomial": "nbinom2"}
_TYPES = ("response", "link", "conditional", "zprob", "zlink", "disp")


def _family(family: Any, link: str | None) -> tuple[str, str]:
    """glmmTMB's family name and link (checked as glmer's, with glmmTMB's families)."""
    return family_and_link(family, link, FAMILIES, _ALIASES)


def _side_formula(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip().startswith("~"):
        raise InvalidArgumentError(
            f"{name} must be a one-sided formula such as '~ x', not {value!r}", argument=name
        )
    return value.strip()


@dataclass(frozen=True)
class _TMBSpec:
    """What is needed to rebuild a glmmTMB fit."""

    formula: str
    family: str
    link: str
    ziformula: str | None
    dispformula: str | None
    weights: str | np.ndarray | None
    offset: str | np.ndarray | None
    control: tuple[tuple[str, Any], ...]
    na_action: str
    contrasts: tuple[tuple[str, str], ...] = ()
    steps: tuple[tuple[Any, ...], ...] = ()
    levels: GroupCoding | None = None


def glmmtmb(
    formula: str,
    data: pd.DataFrame,
    *,
    family: str = "gaussian",
    link: str | None = None,
    ziformula: str | None = None,
    dispformula: str | None = None,
    weights: str | Sequence[float] | np.ndarray | pd.Series | None = None,
    offset: str | Sequence[float] | np.ndarray | pd.Series | None = None,
    control: Mapping[str, Any] | None = None,
    na_action: Literal["omit", "error"] = "omit",
) -> GlmmTMBModel:
    """Fit a generalized linear mixed model with glmmTMB.

    Parameters
    ----------
    formula : str
        The conditional model, lme4 syntax (``"count ~ spp + mined + (1 | site)"``).
    data : pandas.DataFrame
        The data (polars / pyarrow frames are converted).
    family : str
        ``"gaussian"``, ``"poisson"``, ``"binomial"``, ``"nbinom1"``, ``"nbinom2"``,
        ``"Gamma"``, ``"beta"``, ``"betabinomial"``, ``"tweedie"``,
        ``"truncated_poisson"``, ``"truncated_nbinom1"``, ``"truncated_nbinom2"``
        (hurdle models with ``ziformula``) or ``"genpois"``.
    link : str, optional
        The link (default: the family's, see :data:`FAMILIES`).
    ziformula : str, optional
        The zero-inflation model, a one-sided formula (``"~ 1"``, ``"~ mined"``,
        ``"~ x + (1 | site)"``).
    dispformula : str, optional
        The dispersion model, a one-sided formula (``"~ spp"``).
    weights, offset : str or array-like, optional
        A column name or one value per row.
    control : dict, optional
        ``glmmTMBControl`` options by their R names (``{"optimizer": "optim",
        "optArgs": {"method": "BFGS"}}``, ``{"profile": True}``).
    na_action : {"omit", "error"}
        Drop incomplete rows (with a warning) or raise :class:`~pylmer.DataError`.

    Returns
    -------
    GlmmTMBModel
        The fitted model.

    Raises
    ------
    InvalidArgumentError
        An unknown family or link, a formula argument that is not one-sided, an unknown
        control option (named).
    FormulaError
        A formula that does not parse or names a column not in ``data``.
    DataError
        A response outside the family's domain (named), no rows, missing values with
        ``na_action="error"``.

    Warns
    -----
    LmerConvergenceWarning
        glmmTMB found a non-positive-definite Hessian: the message names the parameters
        at fault (e.g. ``'zi xb'``); their standard errors are NaN.

    Examples
    --------
    >>> import pylmer
    >>> sal = pylmer.datasets.load("Salamanders")  # doctest: +SKIP
    >>> m = pylmer.glmmtmb("count ~ spp + mined + (1 | site)", sal, family="nbinom2",
    ...                    ziformula="~ mined", dispformula="~ spp")  # doctest: +SKIP
    >>> m.fixef_zi  # doctest: +SKIP
    """
    family, link = _family(family, link)
    ziformula = _side_formula("ziformula", ziformula)
    dispformula = _side_formula("dispformula", dispformula)
    if control is not None and not isinstance(control, Mapping):
        raise InvalidArgumentError(
            f"control must be a dict, not {type(control).__name__}", argument="control"
        )
    side = []
    for f in (ziformula, dispformula):
        if f is not None:
            side += strings(_r.call(".pylmer_nlmer_names", f, stacklevel=2))
    extra = [c for c in side if isinstance(data, pd.DataFrame) and c in data.columns]
    frame, groups = prepare_data(formula, data, na_action, [*extra, weights, offset])
    spec = _TMBSpec(
        formula,
        family,
        link,
        ziformula,
        dispformula,
        row_values("weights", weights, len(frame)),
        row_values("offset", offset, len(frame)),
        tuple(sorted((control or {}).items())),
        na_action,
        levels=GroupCoding.from_frame(frame, groups),
    )
    return GlmmTMBModel._fit(spec, frame)


class GlmmTMBModel(MixedModel):
    """A model fitted by glmmTMB (create it with :func:`glmmtmb`).

    Attributes
    ----------
    fixef, fixef_zi, fixef_disp : pandas.DataFrame or None
        Wald tables of the conditional, zero-inflation and dispersion models.
    ranef, ranef_sd, ranef_zi, ranef_zi_sd, varcorr, sigma, family_param, loglik, aic, bic,
    deviance, npar, nobs, df_residual, ngrps, vcov, fitted, residuals, converged, pd_hess,
    messages
        As in :class:`~pylmer.results.glmmtmb.GlmmTMBResults`.
    """

    results: GlmmTMBResults
    _spec: _TMBSpec
    _R_FIT: ClassVar[str] = ".pylmer_tmb_fit"
    _R_WRITE_SCRIPT: ClassVar[str] = ".pylmer_tmb_write_script"
    _R_PREDICT: ClassVar[str] = ".pylmer_tmb_predict"
    _R_SIMULATE: ClassVar[str] = ".pylmer_tmb_simulate"
    _R_STEPS: ClassVar[Mapping[str, str]] = {"refit": ".pylmer_tmb_refit"}
    _MATRIX_RESPONSE: ClassVar[bool] = True
    _FORWARDED: ClassVar[frozenset[str]] = frozenset(
        f.name for f in dataclasses.fields(GlmmTMBResults)
    ) - {"formula", "fixef", "family", "link"}

    @classmethod
    def _r_args(cls, spec: _TMBSpec) -> dict[str, Any]:
        return {
            "family": spec.family,
            "link": spec.link,
            "ziformula": spec.ziformula,
            "dispformula": spec.dispformula,
            "weights": spec.weights,
            "offset": spec.offset,
            "control": dict(spec.control) or None,
        }

    @classmethod
    def _results(cls, out: dict[str, Any], spec: Any, shared: dict[str, Any]) -> Any:
        raise NotImplementedError  # _from_r builds the results itself

    def _conditional_covariances(self) -> dict[str, np.ndarray]:
        """glmmTMB's conditional covariances of the conditional model's random effects
        (``ranef(m, condVar = TRUE)``), per grouping factor ``levels x K x K``: glmmTMB
        gives the variances, and NaN off the diagonal (:attr:`ranef_cov`)."""
        cached = self.__dict__.get("_condvar")
        if cached is None:
            raw = _r.call(".pylmer_tmb_condvar", self._mermod(), stacklevel=4)
            cached = {}
            for group, table in self.results.ranef.items():
                k = table.shape[1]
                values = np.atleast_1d(np.asarray(raw[group], dtype=float))
                cached[group] = values.reshape(-1, k, k).transpose(0, 2, 1)
            self._condvar = cached
        return cached

    @classmethod
    def _from_r(
        cls,
        out: dict[str, Any],
        spec: _TMBSpec,
        data: pd.DataFrame,
        conditions: Sequence[str] = (),
    ) -> GlmmTMBModel:
        rows = np.atleast_1d(np.asarray(out["rows"], dtype=np.int64)) - 1
        levels = spec.levels

        def aligned(values: Any) -> pd.Series:
            full = np.full(len(data), np.nan)
            full[rows] = np.atleast_1d(values)
            return pd.Series(full, index=data.index)

        def by_value(tables: Any) -> dict[str, pd.DataFrame]:
            if not isinstance(tables, dict):
                return {}
            for group, table in tables.items():
                if levels is not None and group in levels.columns:
                    table.index = levels.decode(group, table.index)
            return dict(tables)

        fixef = out["fixef"]
        fixef.index = pd.Index([str(i) for i in fixef.index])
        ngrps = out["ngrps"]
        param = out["family_param"]
        results = GlmmTMBResults(
            formula=spec.formula,
            ziformula=spec.ziformula,
            dispformula=spec.dispformula,
            family=str(out["family"]),
            link=str(out["link"]),
            fixef=fixef,
            fixef_zi=out["fixef_zi"],
            fixef_disp=out["fixef_disp"],
            ranef=by_value(out["ranef"]),
            ranef_sd=by_value(out["ranef_sd"]),
            ranef_zi=by_value(out["ranef_zi"]),
            ranef_zi_sd=by_value(out["ranef_zi_sd"]),
            varcorr=out["varcorr"],
            sigma=float("nan") if out["sigma"] is None else float(out["sigma"]),
            family_param=float("nan") if param is None else float(np.atleast_1d(param)[0]),
            loglik=float(out["loglik"]),
            npar=int(out["df"]),
            aic=float(out["aic"]),
            bic=float(out["bic"]),
            deviance=float(out["deviance"]),
            nobs=int(out["nobs"]),
            df_residual=int(out["df_residual"]),
            ngrps=(ngrps if isinstance(ngrps, pd.Series) else pd.Series(dtype=float)).astype(
                np.int64
            ),
            vcov=_vcov(out["vcov"], fixef.index),
            fitted=aligned(out["fitted"]),
            residuals=aligned(out["residuals"]),
            converged=bool(out["converged"]),
            pd_hess=bool(out["pd_hess"]),
            messages=tuple(dict.fromkeys([*strings(out["messages"]), *map(str, conditions)])),
        )
        return cls(results, spec, data, out["model"])

    def _check_restored(self, new: Any) -> None:
        if not np.isclose(new.loglik, self.results.loglik, rtol=1e-7, atol=1e-8):
            raise RError(
                "the restored model does not reproduce its stored fit: log-likelihood "
                f"{new.loglik!r} vs stored {self.results.loglik!r}; fit it again instead"
            )

    # ------------------------------------------------------------------ results

    @property
    def family(self) -> str:
        """glmmTMB's family name."""
        return self._spec.family

    @property
    def link(self) -> str:
        """The link of the conditional model."""
        return self._spec.link

    @property
    def fixef(self) -> pd.DataFrame:
        """The conditional model's fixed effects: ``estimate``, ``std_error``,
        ``z_value``, ``p_value`` (Wald)."""
        return self.results.fixef.copy()

    # ------------------------------------------------------------------ display

    def summary(self, *, pvalues: bool = True) -> str:
        """Return the summary text, laid out like glmmTMB's ``summary()``."""
        return format_glmmtmb_summary(self.results)

    def __repr__(self) -> str:
        parts = [self.family]
        if self._spec.ziformula:
            parts.append(f"zi {self._spec.ziformula}")
        if self._spec.dispformula:
            parts.append(f"disp {self._spec.dispformula}")
        return f"<GlmmTMBModel {self.formula!r} ({', '.join(parts)}, {self.results.nobs} obs)>"

    def _repr_html_(self) -> str:
        return glmmtmb_html(self.results)

    # ------------------------------------------------------------------ prediction

    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        *,
        type: Literal["response", "link", "conditional", "zprob", "zlink", "disp"] = "response",
        include_random: bool = True,
        allow_new_levels: bool | None = None,
    ) -> pd.Series:
        """Predict with glmmTMB's ``predict``.

        Parameters
        ----------
        newdata : pandas.DataFrame, optional
            New data; default: the fitted data.
        type : str
            ``"response"`` (the mean, zero inflation included), ``"link"`` (the
            conditional model's linear predictor), ``"conditional"`` (the mean of the
            conditional model alone), ``"zprob"`` (probability of a structural zero),
            ``"zlink"``, ``"disp"``.
        include_random : bool
            Include the random effects (``re.form = NULL``) or not (``NA``).
        allow_new_levels : bool, optional
            True: unseen groups get zero random effects; False: they raise.  Not given:
            as True, with a :class:`~pylmer.errors.NewLevelsWarning` naming them.

        Returns
        -------
        pandas.Series
            Aligned with ``newdata``'s index.
        """
        if type not in _TYPES:
            raise InvalidArgumentError(
                f"type must be one of {', '.join(map(repr, _TYPES))}, not {type!r}",
                argument="type",
            )
        return self._predict(
            newdata,
            include_random=include_random,
            allow_new_levels=allow_new_levels,
            fitted_is_answer=include_random and type == "response",
            type=type,
        )

    # ------------------------------------------------------------------ inference

    def confint(  # type: ignore[override]
        self,
        method: Literal["wald", "boot"] = "wald",
        level: float = 0.95,
        *,
        component: Literal["all", "cond", "zi", "disp"] = "all",
        nsim: int = 200,
        seed: int | None = None,
        n_jobs: int | None = None,
    ) -> pd.DataFrame:
        """Wald confidence intervals (glmmTMB's ``confint(method = "wald")``), or
        parametric bootstrap percentiles of the conditional fixed effects
        (``method="boot"``, refits in parallel with ``n_jobs``).

        Returns
        -------
        pandas.DataFrame
            Rows as glmmTMB names them (``cond.(Intercept)``, ``zi.minedno``,
            ``site.cond.Std.Dev.(Intercept)``, ...); columns ``"2.5 %"``, ``"97.5 %"``,
            ``"Estimate"`` (Wald).
        """
        if not isinstance(level, float | int) or isinstance(level, bool) or not 0 < level < 1:
            raise InvalidArgumentError(
                f"level must be between 0 and 1, not {level!r}", argument="level"
            )
        if method == "boot":
            from ..parallel import bootstrap_confint

            return bootstrap_confint(self, level, nsim=nsim, seed=seed, n_jobs=n_jobs)
        if method != "wald":
            raise InvalidArgumentError(
                f"method must be 'wald' or 'boot', not {method!r}", argument="method"
            )
        if component not in ("all", "cond", "zi", "disp"):
            raise InvalidArgumentError(
                f"component must be 'all', 'cond', 'zi' or 'disp', not {component!r}",
                argument="component",
            )
        return _r.call(
            ".pylmer_tmb_confint",
            self._mermod(),
            level=float(level),
            component=component,
            stacklevel=2,
        )

    def anova(self, *others: GlmmTMBModel, names: Sequence[str] | None = None) -> pd.DataFrame:
        """Likelihood-ratio tests against other glmmTMB fits of the same data
        (glmmTMB's ``anova``), as :func:`pylmer.anova` lays them out: R's columns, rows
        named by the models' formulas (or ``names``), ``self`` first.

        Examples
        --------
        >>> m0 = pylmer.glmmtmb("count ~ mined + (1 | site)", sal)  # doctest: +SKIP
        >>> m0.anova(m1)  # doctest: +SKIP
        """
        models = [self, *others]
        for i, m in enumerate(others):
            if not isinstance(m, GlmmTMBModel):
                raise InvalidArgumentError(
                    f"anova compares glmmTMB fits; argument {i + 1} is a {type(m).__name__}",
                    argument="others",
                )
            if m.nobs != self.nobs:
                raise InvalidArgumentError(
                    f"models were fitted to different numbers of observations "
                    f"({self.nobs} vs {m.nobs})",
                    argument="others",
                )
        labels = model_labels(models, names)
        keys = [f"m{i}" for i in range(len(models))]
        table = _r.call(".pylmer_tmb_anova", [m._mermod() for m in models], keys, stacklevel=2)
        table.index = pd.Index([labels[keys.index(str(k))] for k in table.index])
        return table

    def emmeans(
        self,
        specs: str | Sequence[str],
        *,
        type: Literal["link", "response"] = "link",
        level: float = 0.95,
    ) -> pd.DataFrame:
        """Estimated marginal means of the conditional model (R's emmeans).

        Parameters
        ----------
        specs : str or list of str
            The factor(s) to average over, e.g. ``"spp"``.
        type : {"link", "response"}
            Scale of the means.
        level : float
            Confidence level of the intervals.
        """
        if type not in ("link", "response"):
            raise InvalidArgumentError(
                f"type must be 'link' or 'response', not {type!r}", argument="type"
            )
        specs = [specs] if isinstance(specs, str) else list(specs)
        return _r.call(
            ".pylmer_tmb_emmeans",
            self._mermod(),
            specs,
            type=type,
            level=float(level),
            stacklevel=2,
        )


def _vcov(value: Any, names: pd.Index) -> pd.DataFrame:
    if isinstance(value, pd.DataFrame):
        return value
    arr = np.atleast_2d(np.asarray(value, dtype=float)).reshape(len(names), len(names))
    return pd.DataFrame(arr, index=names, columns=names)
