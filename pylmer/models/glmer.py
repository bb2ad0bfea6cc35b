"""``glmer()``: lme4's generalized linear mixed models from pandas, equal to plain R.

Binary, proportion and count outcomes (binomial, Poisson, negative binomial), and
positive continuous ones (Gamma, inverse Gaussian), with random effects.  As for
:func:`pylmer.lmer`, the fit and the extraction of every result happen in one R call
(``r_scripts/glmer.R``), the results live in a pure-pandas
:class:`~pylmer.results.GlmerResults`, and the fitted ``glmerMod`` stays in R behind a
handle for ``predict``, ``refit``, ``confint``, ``simulate`` and :func:`pylmer.anova`.
:class:`GlmerModel` shares :class:`~pylmer.LmerModel`'s machinery (pickling with a
checked refit on restore, new-data encoding, intervals).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..data.frames import GroupLevels, as_pandas, check_text_columns, model_frame
from ..errors import DataError, FormulaError, InvalidArgumentError
from ..inference import normalize_contrasts
from ..r import session as _r
from ..results import GlmerResults, format_glmer_summary, glmer_html
from .lmer import LmerControl, LmerModel, _control, _strings, shared_results

__all__ = ["FAMILIES", "GlmerModel", "glmer"]

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


def _family(family: str, link: str | None) -> tuple[str, str]:
    """Return R's family name and the link, or raise InvalidArgumentError naming the bad
    one."""
    if not isinstance(family, str):
        raise InvalidArgumentError(
            f"family must be a string such as 'binomial', not {family!r}", argument="family"
        )
    name = family if family in FAMILIES else _ALIASES.get(family.strip().lower())
    if name is None and family.strip().lower() in FAMILIES:
        name = family.strip().lower()
    if name is None:
        hint = " (a Gaussian GLMM with identity link is pylmer.lmer)" if "gauss" in family else ""
        raise InvalidArgumentError(
            f"unknown family {family!r}; known: {', '.join(FAMILIES)}{hint}", argument="family"
        )
    default, links = FAMILIES[name]
    if link is None:
        return name, default
    if link not in links:
        raise InvalidArgumentError(
            f"link {link!r} is not available for the {name} family; available: "
            f"{', '.join(map(repr, links))}",
            argument="link",
        )
    return name, link


@dataclass(frozen=True)
class _GlmerSpec:
    """What is needed to rebuild a fit: the glmer() arguments and later refits."""

    formula: str
    family: str
    link: str
    nagq: int
    control: LmerControl | None
    weights: str | np.ndarray | None
    offset: str | np.ndarray | None
    na_action: str
    contrasts: tuple[tuple[str, str], ...] = ()
    steps: tuple[tuple[Any, ...], ...] = ()
    levels: GroupLevels | None = None


def _values(name: str, value: Any, n: int) -> str | np.ndarray | None:
    if value is None or isinstance(value, str):
        return value
    arr = np.asarray(value, dtype=float)
    if arr.shape != (n,):
        raise DataError(f"{name} has shape {arr.shape}; data has {n} rows")
    return arr


def glmer(
    formula: str,
    data: pd.DataFrame,
    family: str = "binomial",
    *,
    link: str | None = None,
    nagq: int = 1,
    weights: str | Sequence[float] | np.ndarray | pd.Series | None = None,
    offset: str | Sequence[float] | np.ndarray | pd.Series | None = None,
    control: LmerControl | Mapping[str, Any] | None = None,
    na_action: Literal["omit", "error"] = "omit",
    contrasts: Mapping[str, str] | None = None,
) -> GlmerModel:
    """Fit a generalized linear mixed model with lme4's ``glmer`` (or ``glmer.nb``).

    Parameters
    ----------
    formula : str
        An lme4 formula, passed to R unchanged. Binomial responses may be 0/1 numbers, a
        two-level factor (the first level is the failure), proportions with
        ``weights`` = trials, or ``cbind(successes, failures)``.
    data : pandas.DataFrame
        The data (polars / pyarrow frames are converted); categorical and string
        columns become R factors.
    family : str
        ``"binomial"``, ``"poisson"``, ``"Gamma"``, ``"inverse.gaussian"`` or
        ``"negative_binomial"`` (``glmer.nb``: theta estimated, in ``nb_theta``).
    link : str, optional
        The link (default: the family's canonical one; see :data:`FAMILIES`).
    nagq : int
        Adaptive Gauss-Hermite quadrature points (1: Laplace approximation; > 1 needs a
        single scalar random effect; 0: faster, less exact).
    weights : str or array-like, optional
        Prior weights (binomial: number of trials): a column name or one value per row.
    offset : str or array-like, optional
        An offset on the link scale: a column name, or one value per row (then
        ``predict`` on new data needs ``offset(...)`` in the formula instead).
    control : LmerControl or dict, optional
        glmerControl options, e.g. ``{"optimizer": "bobyqa", "calc_derivs": False}``.
    na_action : {"omit", "error"}
        Drop incomplete rows (with a warning) or raise :class:`~pylmer.DataError`.
    contrasts : dict, optional
        Coding of factor columns of the fixed part, e.g. ``{"period": "sum"}``, as for
        :func:`pylmer.lmer`.

    Returns
    -------
    GlmerModel
        The fitted model.

    Raises
    ------
    InvalidArgumentError
        An unknown family, a link the family does not have, or a bad ``nagq`` /
        ``na_action`` (a ``ValueError`` too).
    FormulaError
        The formula does not parse, names a column not in ``data`` or has no random term.
    DataError
        A response the family cannot take, named: binomial values outside [0, 1] or more
        than two classes, negative counts (Poisson, negative binomial), values <= 0
        (Gamma, inverse Gaussian); no rows; missing values with ``na_action="error"``.
    RError
        Any other error of lme4 (e.g. ``nagq > 1`` with several random effects).
    """
    family, link = _family(family, link)
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string, not {type(formula).__name__}")
    data = as_pandas(data)
    if na_action not in ("omit", "error"):
        raise InvalidArgumentError(
            f"na_action must be 'omit' or 'error', not {na_action!r}", argument="na_action"
        )
    if isinstance(nagq, bool) or not isinstance(nagq, int | np.integer) or not 0 <= nagq <= 100:
        raise InvalidArgumentError(
            f"nagq must be an integer from 0 to 100, not {nagq!r}", argument="nagq"
        )
    if len(data) == 0:
        raise DataError(f"data has no rows (columns: {', '.join(map(str, data.columns))})")
    weights = _values("weights", weights, len(data))
    offset = _values("offset", offset, len(data))
    parse = _r.call(".pylmer_formula_parse", formula, [str(c) for c in data.columns], stacklevel=2)
    named = [v for v in (weights, offset) if isinstance(v, str)]
    groups = _strings(parse["groups"])
    frame = model_frame(data, [*_strings(parse["vars"]), *named])
    check_text_columns(frame, _strings(parse["fixed"]), groups)
    spec = _GlmerSpec(
        formula,
        family,
        link,
        int(nagq),
        _control(control),
        weights,
        offset,
        na_action,
        contrasts=normalize_contrasts(contrasts),
        levels=GroupLevels(groups),
    )
    return GlmerModel._fit(spec, frame)


class GlmerModel(LmerModel):
    """A generalized linear mixed model fitted by lme4 (create it with :func:`glmer`).

    All results are plain pandas / numpy / Python values, extracted once right after the
    fit; the lme4 object stays in R for :meth:`predict`, :meth:`refit`, :meth:`confint`,
    :meth:`simulate` and :func:`pylmer.anova`.  A pickled model keeps its results and its
    data; after unpickling, those methods first refit it (and check that the refit
    reproduces the stored log-likelihood).

    Attributes
    ----------
    fixef : pandas.DataFrame
        ``estimate``, ``std_error``, ``z_value``, ``p_value`` (Wald z tests, as lme4's
        summary).
    ranef, ranef_sd, coef, varcorr, sigma, theta, nb_theta, loglik, aic, bic, deviance,
    npar, nobs, ngrps, vcov, fitted, residuals, is_singular, converged, messages
        As in :class:`~pylmer.results.GlmerResults`.
    family, link : str
        The family (pylmer's name, e.g. ``"negative_binomial"``) and link.
    nagq : int
        Quadrature points (1: Laplace).
    results : GlmerResults
        The container of all of them.
    data : pandas.DataFrame
        The model's columns of the data it was fitted on.
    """

    results: GlmerResults
    _spec: _GlmerSpec
    _FORWARDED = frozenset(f.name for f in dataclasses.fields(GlmerResults)) - {
        "formula",
        "fixef",
        "family",
        "link",
        "nagq",
    }

    # ------------------------------------------------------------------ building

    _R_FIT = ".pylmer_glmer_fit"
    _R_WRITE_SCRIPT = ".pylmer_glmer_write_script"

    @classmethod
    def _r_args(cls, spec: _GlmerSpec) -> dict[str, Any]:  # type: ignore[override]
        return {
            "family": spec.family,
            "link": spec.link,
            "nAGQ": spec.nagq,
            "control": None if spec.control is None else spec.control.to_r(),
            "weights": spec.weights,
            "offset": spec.offset,
            "contrasts": dict(spec.contrasts) or None,
        }

    @classmethod
    def _from_r(  # type: ignore[override]
        cls,
        out: dict[str, Any],
        spec: _GlmerSpec,
        data: pd.DataFrame,
        conditions: Sequence[str] = (),
    ) -> GlmerModel:
        shared = shared_results(out, spec, data, conditions)
        nb_theta = out["nb_theta"]
        results = GlmerResults(
            formula=spec.formula,
            family=str(out["family"]),
            link=str(out["link"]),
            nagq=int(out["nagq"]),
            nb_theta=float("nan") if nb_theta is None else float(nb_theta),
            has_scale=bool(out["has_scale"]),
            **shared,
        )
        return cls._with_results(results, spec, data, out)

    def _step(self, step: tuple[Any, ...]) -> GlmerModel:
        """Apply a refit step (``("refit", newresp)``)."""
        out, conditions = _r.call_with_conditions(
            ".pylmer_glmer_refit", self._mermod(), step[1], stacklevel=3
        )
        spec = dataclasses.replace(self._spec, steps=(*self._spec.steps, step))
        return GlmerModel._from_r(out, spec, self.data, conditions)

    # ------------------------------------------------------------------ results

    @property
    def family(self) -> str:
        """The family: ``"binomial"``, ``"poisson"``, ``"Gamma"``, ``"inverse.gaussian"``
        or ``"negative_binomial"``."""
        return self._spec.family

    @property
    def link(self) -> str:
        """The link function."""
        return self._spec.link

    @property
    def nagq(self) -> int:
        """Quadrature points per axis (1: Laplace approximation)."""
        return self.results.nagq

    @property
    def reml(self) -> bool:
        """False: GLMMs are fitted by maximum likelihood."""
        return False

    @property
    def fixef(self) -> pd.DataFrame:
        """Fixed effects: ``estimate``, ``std_error``, ``z_value``, ``p_value`` (Wald)."""
        return self.results.fixef.copy()

    @property
    def fixef_wald(self) -> pd.DataFrame:
        """The same as :attr:`fixef` (GLMM tests are Wald tests)."""
        return self.fixef

    def satterthwaite(self) -> None:
        """None: Satterthwaite's df are for linear mixed models (see :attr:`fixef`)."""
        return None

    def refit_ml(self) -> GlmerModel:
        """Return the model itself: a GLMM is already a maximum-likelihood fit."""
        return self

    # ------------------------------------------------------------------ display

    def summary(self, *, pvalues: bool = True) -> str:
        """Return the summary text, laid out like R's ``summary(glmerMod)`` (without the
        Wald p-values and stars when ``pvalues`` is False)."""
        return format_glmer_summary(self.results, pvalues)

    def __repr__(self) -> str:
        return (
            f"<GlmerModel {self.formula!r} ({self.family}, {self.link} link, "
            f"{self.results.nobs} obs)>"
        )

    def _repr_html_(self) -> str:
        return glmer_html(self.results)

    # ------------------------------------------------------------------ prediction

    def predict(  # type: ignore[override]
        self,
        newdata: pd.DataFrame | None = None,
        *,
        type: Literal["response", "link"] = "response",
        include_random: bool = True,
        allow_new_levels: bool = True,
    ) -> pd.Series:
        """Predict with lme4's ``predict`` on the response or the link scale.

        Parameters
        ----------
        newdata : pandas.DataFrame, optional
            New data; default: the fitted data (NaN on rows lme4 dropped).
        type : {"response", "link"}
            Means (probabilities, expected counts) or the linear predictor.
        include_random : bool
            Add the conditional modes of the random effects (``re.form = NULL``); else
            the fixed part only (``re.form = NA``).
        allow_new_levels : bool
            Predict unseen levels of grouping factors with zero random effects; if False,
            they raise :class:`~pylmer.DataError`.

        Returns
        -------
        pandas.Series
            Aligned with ``newdata``'s index.

        Raises
        ------
        DataError
            An unseen level of a fixed-effect factor or (with ``allow_new_levels=False``)
            of a grouping factor, a missing column, or new data for a model fitted with an
            offset given as values.
        """
        if type not in ("response", "link"):
            raise InvalidArgumentError(
                f"type must be 'response' or 'link', not {type!r}", argument="type"
            )
        if newdata is None:
            if include_random and type == "response":
                return self.results.fitted.rename(None)
            values = _r.call(
                ".pylmer_glmer_predict",
                self._mermod(),
                None,
                include_random=include_random,
                type=type,
                stacklevel=2,
            )
            full = self.results.fitted.copy()
            full[full.notna()] = np.atleast_1d(values)
            return full.rename(None)
        newdata = as_pandas(newdata, "newdata")
        self._check_fixed_levels(newdata)
        values = _r.call(
            ".pylmer_glmer_predict",
            self._mermod(),
            _r.bind(self._encode(newdata)),
            include_random=include_random,
            allow_new_levels=allow_new_levels,
            type=type,
            stacklevel=2,
        )
        return pd.Series(np.atleast_1d(np.asarray(values, dtype=float)), index=newdata.index)

    # ------------------------------------------------------------------ inference

    def confint(  # type: ignore[override]
        self,
        method: Literal["wald", "profile", "boot"] = "wald",
        level: float = 0.95,
        **kwargs: Any,
    ) -> pd.DataFrame:
        """Confidence intervals with lme4's ``confint`` (see :meth:`LmerModel.confint`).

        ``method="boot"`` with only ``nsim`` and ``seed`` runs lme4's own parametric
        bootstrap in this R session, so a ``seed`` gives plain R's
        ``confint(m, method = "boot")`` exactly, whatever the response (0/1, factor,
        proportions or ``cbind``); other options go to :meth:`LmerModel.confint`.
        """
        if method == "boot" and set(kwargs) <= {"nsim", "seed", "n_jobs"}:
            if kwargs.get("n_jobs") is None:
                if not 0 < level < 1:
                    raise InvalidArgumentError(
                        f"level must be between 0 and 1, not {level}", argument="level"
                    )
                seed = kwargs.get("seed")
                return _r.call(
                    ".pylmer_lmer_confint",
                    self._mermod(),
                    method="boot",
                    level=float(level),
                    nsim=int(kwargs.get("nsim", 500)),
                    seed=None if seed is None else int(seed),
                    stacklevel=2,
                )
        return super().confint(method, level, **kwargs)

    # ------------------------------------------------------------------ refits, simulation

    def refit(self, newresp: Any) -> GlmerModel:  # type: ignore[override]
        """Refit the same model to a new response (lme4's ``refit``).

        Parameters
        ----------
        newresp : array-like, pandas.Series or pandas.DataFrame
            One value per used observation (``nobs``) or per row of the fitted data (a
            Series is aligned on the data's index): 0/1, proportions or counts as the
            original response; for a ``cbind(successes, failures)`` response, an array
            of shape ``(n, 2)`` or a two-column DataFrame.

        Returns
        -------
        GlmerModel
            A new fitted model (its ``data`` still holds the original response).
        """
        used = self.results.fitted.notna().to_numpy()
        if isinstance(newresp, pd.Series) and len(newresp) == len(self.data):
            newresp = newresp.reindex(self.data.index)
        values = np.asarray(newresp, dtype=float)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if len(values) == len(self.data) and len(self.data) != self.results.nobs:
            values = values[used]
        if values.ndim not in (1, 2) or len(values) != self.results.nobs:
            raise DataError(
                f"newresp has {len(values)} values; the model has {self.results.nobs} "
                f"observations ({len(self.data)} rows in its data)"
            )
        arg = pd.DataFrame(values) if values.ndim == 2 else values
        return self._step(("refit", arg))

    def simulate(self, nsim: int = 1, seed: int | None = None) -> pd.DataFrame:
        """Simulate responses from the fitted model (lme4's ``simulate``).

        Returns
        -------
        pandas.DataFrame
            Columns ``sim_1`` ... ``sim_<nsim>``, indexed by the used rows of the data:
            counts of successes for a ``cbind`` response, 0/1 for a factor response
            (1 = not the first level), otherwise values on the response's own scale.
        """
        sims = _r.call(
            ".pylmer_glmer_simulate",
            self._mermod(),
            nsim=int(nsim),
            seed=None if seed is None else int(seed),
            stacklevel=2,
        )
        sims.index = self.results.fitted.index[self.results.fitted.notna().to_numpy()]
        return sims
