"""``lmer()``: lme4's linear mixed models from pandas, equal to plain R.

The fit and the extraction of every result happen in one R call
(``r_scripts/lmer.R``); the results live in a pure-pandas :class:`~pylmer.results.LmerResults`
and the fitted ``merMod`` stays in R behind a handle, used by ``predict``, ``refit``,
``confint``, ``simulate`` and :func:`anova`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import pandas as pd

from .. import inference
from ..errors import InvalidArgumentError, RError
from ..inference import predict_interval
from ..r import session as _r
from ..results import LmerResults, format_summary, to_html
from ._base import ControlArg, FitSpec, MixedModel, RowValues, model_labels, prepare_fit
from ._lme4 import Lme4Model
from .control import LmerControl, check_bool

__all__ = ["LmerControl", "LmerModel", "anova", "lmer"]  # LmerControl: from .control


@dataclass(frozen=True)
class _Spec(FitSpec):
    """What is needed to rebuild a fit: the lmer() arguments and later refits."""

    formula: str
    reml: bool


def lmer(
    formula: str,
    data: pd.DataFrame,
    *,
    reml: bool = True,
    weights: RowValues = None,
    contrasts: Mapping[str, str] | None = None,
    control: ControlArg = None,
    na_action: Literal["omit", "error"] = "omit",
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

    See Also
    --------
    pylmer.glmer : generalized linear mixed models.
    pylmer.anova : likelihood-ratio tests between models.

    Examples
    --------
    >>> import pylmer
    >>> sleep = pylmer.datasets.load("sleepstudy")  # doctest: +SKIP
    >>> m = pylmer.lmer("Reaction ~ Days + (Days | Subject)", sleep)  # doctest: +SKIP
    >>> m.fixef.round(3)  # doctest: +SKIP
                 estimate  std_error  t_value   df  p_value
    (Intercept)   251.405      6.825   36.838 17.0      0.0
    Days           10.467      1.546    6.771 17.0      0.0
    >>> print(m.summary())  # lmerTest's layout  # doctest: +SKIP
    """
    check_bool("reml", reml)
    frame, options = prepare_fit(
        formula, data, na_action, control=control, weights=weights, contrasts=contrasts
    )
    spec = _Spec(formula, bool(reml), **options)
    return LmerModel._fit(spec, frame)


class LmerModel(Lme4Model):
    """A linear mixed model fitted by lme4 (create it with :func:`lmer`).

    Results, R handle and pickling work as for every model kind
    (:class:`~pylmer.models._base.MixedModel`); lmerTest's tests are methods
    (:meth:`anova`, :meth:`ranova`, :meth:`drop1`, :meth:`fixef_table`).

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

    Examples
    --------
    >>> import pylmer
    >>> sleep = pylmer.datasets.load("sleepstudy")  # doctest: +SKIP
    >>> m = pylmer.lmer("Reaction ~ Days + (Days | Subject)", sleep)  # doctest: +SKIP
    >>> m.fixef.loc["Days", "estimate"]  # doctest: +SKIP
    10.467...
    """

    results: LmerResults
    _spec: _Spec
    _FORWARDED = frozenset(
        f.name for f in dataclasses.fields(LmerResults) if f.name not in ("formula", "reml")
    ) - {"fixef", "satterthwaite"}

    _R_FIT = ".pylmer_lmer_fit"
    _R_WRITE_SCRIPT = ".pylmer_lmer_write_script"
    _R_PREDICT = ".pylmer_lmer_predict"
    _R_SIMULATE = ".pylmer_lmer_simulate"
    _R_STEPS: ClassVar[Mapping[str, str]] = {
        "refit": ".pylmer_lmer_refit",
        "refit_ml": ".pylmer_lmer_refit_ml",
    }

    # ------------------------------------------------------------------ building

    @classmethod
    def _r_args(cls, spec: _Spec) -> dict[str, Any]:
        return {
            "REML": spec.reml,
            "control": None if spec.control is None else spec.control.to_r(),
            "weights": spec.weights,
            "contrasts": dict(spec.contrasts) or None,
        }

    @classmethod
    def _results(cls, out: dict[str, Any], spec: _Spec, shared: dict[str, Any]) -> LmerResults:
        return LmerResults(
            reml=bool(out["reml"]),
            reml_criterion=float(out["reml_criterion"]),
            satterthwaite=_satterthwaite_table(out.get("satterthwaite"), shared["fixef"].index),
            **shared,
        )

    # ------------------------------------------------------------------ results

    @property
    def reml(self) -> bool:
        """Whether the model was fitted by REML."""
        return self.results.reml

    #: the Satterthwaite table is still to compute (on first fixef / summary / pickle)
    _satterthwaite_pending: bool = False
    #: lmerTest's version of the R model, built from the same derivatives as the table
    #: (pylmer.inference's anova, drop1 and emmeans reuse it); never pickled
    _lmertest_r: Any = None

    @classmethod
    def _from_r(cls, out: dict[str, Any], spec: Any, data: pd.DataFrame, conditions=()):
        model = super()._from_r(out, spec, data, conditions)
        model._satterthwaite_pending = bool(out.get("satterthwaite_deferred"))
        return model

    def _complete_satterthwaite(self) -> None:
        """Compute the Satterthwaite table once, on first need (``results`` then has it;
        R's notes about it join ``messages``)."""
        if not self._satterthwaite_pending:
            return
        value, conditions = _r.call_with_conditions(
            ".pylmer_lmer_satterthwaite", self._mermod(), stacklevel=4
        )
        value = value or {}
        res = self.results
        self.results = dataclasses.replace(
            res,
            satterthwaite=_satterthwaite_table(value.get("table"), res.fixef.index),
            messages=tuple(dict.fromkeys([*res.messages, *conditions])),
        )
        self._lmertest_r = value.get("lmertest")
        self._satterthwaite_pending = False

    def _lmertest(self) -> Any:
        """lmerTest's version of the R model with the Satterthwaite derivatives of
        :attr:`fixef` (computing them if still pending), or None when they are not
        available (then :mod:`pylmer.inference` computes its own)."""
        self._complete_satterthwaite()
        return self._lmertest_r

    def __getstate__(self) -> dict[str, Any]:
        self._complete_satterthwaite()  # a pickle holds every result: no R to read it
        state = super().__getstate__()
        state.pop("_lmertest_r", None)  # an R object: rebuilt from the refit on demand
        return state

    @property
    def fixef(self) -> pd.DataFrame:
        """Fixed effects: ``estimate``, ``std_error``, ``t_value``, Satterthwaite ``df``
        and ``p_value``.

        The Satterthwaite columns are computed by pylmer's own code from lme4's
        deviance function (equal to lmerTest's to about 1e-6) on first access of
        ``fixef``, :meth:`summary` or :meth:`satterthwaite`, then cached, so this table,
        :meth:`summary` and the CLI always agree.  They are absent only when the
        computation failed (the reason is in ``messages``).
        """
        self._complete_satterthwaite()
        sat = self.results.satterthwaite
        return self.fixef_wald if sat is None else self.results.fixef.join(sat)

    def satterthwaite(self) -> pd.DataFrame | None:
        """Return the Satterthwaite ``df`` and ``p_value`` by term (None if unavailable)."""
        self._complete_satterthwaite()
        sat = self.results.satterthwaite
        return None if sat is None else sat.copy()

    # ------------------------------------------------------------------ display

    def summary(self, *, pvalues: bool = True) -> str:
        """Return the summary text, laid out like lmerTest's ``summary(merMod)``.

        Parameters
        ----------
        pvalues : bool
            Show the Satterthwaite ``df`` and ``Pr(>|t|)`` columns (default), or lme4's
            table without them.

        Examples
        --------
        >>> print(m.summary())  # doctest: +SKIP
        Linear mixed model fit by REML. t-tests use Satterthwaite's method ['lmerModLmerTest']
        ...
        """
        check_bool("pvalues", pvalues)
        if pvalues:
            self._complete_satterthwaite()
        return format_summary(self.results, pvalues)

    def __repr__(self) -> str:
        kind = "REML" if self.reml else "ML"
        return f"<LmerModel {self.formula!r} ({kind}, {self.results.nobs} obs)>"

    def _repr_html_(self) -> str:
        self._complete_satterthwaite()
        return to_html(self.results)

    # ------------------------------------------------------------------ prediction

    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        *,
        include_random: bool = True,
        allow_new_levels: bool | None = None,
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
        allow_new_levels : bool, optional
            True: predict unseen levels of grouping factors from the fixed part (their
            random effects are zero); False: unseen levels raise
            :class:`~pylmer.DataError`.  Not given: as True, with a
            :class:`~pylmer.errors.NewLevelsWarning` naming the unseen levels.
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

        Examples
        --------
        >>> m.predict(sleep.head(3))  # doctest: +SKIP
        >>> m.predict(sleep.head(3), interval="prediction")  # doctest: +SKIP
        """
        check_bool("include_random", include_random)
        if allow_new_levels is not None:
            check_bool("allow_new_levels", allow_new_levels)
        if interval is not None:
            if allow_new_levels is None:
                allow_new_levels = self._allow_new_levels(newdata, include_random)
            return predict_interval(
                self,
                newdata,
                interval=interval,
                level=level,
                include_random=include_random,
                allow_new_levels=allow_new_levels,
            )
        return self._predict(
            newdata,
            include_random=include_random,
            allow_new_levels=allow_new_levels,
            fitted_is_answer=include_random,
        )

    # ------------------------------------------------------------------ refits

    def refit_ml(self) -> LmerModel:
        """Refit by maximum likelihood (lme4's ``refitML``), e.g. to compare fixed parts.

        Examples
        --------
        >>> m.refit_ml().reml  # doctest: +SKIP
        False
        """
        return self._step(("refit_ml",))

    # ---- inference (pylmer/inference.py)

    def anova(
        self,
        type: Literal[1, 2, 3] = 3,
        ddf: Literal["satterthwaite", "kenward-roger", "lme4"] = "satterthwaite",
    ) -> pd.DataFrame:
        """F tests of the fixed-effect terms, as lmerTest's ``anova(m, type, ddf)``.

        To compare models, use :func:`pylmer.anova` (``pylmer.anova(m0, m1)``).

        Parameters
        ----------
        type : {1, 2, 3}
            Sequential (1), marginal-to-higher-terms (2) or marginal (3) sums of squares.
        ddf : {"satterthwaite", "kenward-roger", "lme4"}
            Denominator degrees of freedom (``"lme4"``: lme4's own table, with
            ``type=1``).

        Returns
        -------
        pandas.DataFrame
            One row per term: ``Sum Sq``, ``Mean Sq``, ``NumDF``, ``DenDF``, ``F value``,
            ``Pr(>F)`` (see :func:`pylmer.inference.anova`).

        Examples
        --------
        >>> m.anova()  # doctest: +SKIP
                   Sum Sq      Mean Sq  NumDF      DenDF    F value    Pr(>F)
        Days  30030.93902  30030.93902      1  16.999984  45.852962  0.000003
        >>> m.anova(ddf="kenward-roger")  # doctest: +SKIP
        """
        return inference.anova(self, type=type, ddf=ddf)

    def ranova(self, *, reduce_terms: bool = True) -> pd.DataFrame:
        """Likelihood-ratio test of each random-effect term, as lmerTest's ``ranova``.

        Parameters
        ----------
        reduce_terms : bool
            Reduce each term one step (``(x | g)`` to ``(1 | g)``), else drop it whole.

        Returns
        -------
        pandas.DataFrame
            Rows ``<none>`` and one per reduced term: ``npar``, ``logLik``, ``AIC``,
            ``LRT``, ``Df``, ``Pr(>Chisq)``.

        Examples
        --------
        >>> m.ranova()  # doctest: +SKIP
        """
        return inference.ranova(self, reduce_terms=reduce_terms)

    def drop1(
        self, ddf: Literal["satterthwaite", "kenward-roger", "lme4"] = "satterthwaite"
    ) -> pd.DataFrame:
        """F test of dropping each marginal fixed-effect term, as lmerTest's ``drop1``.

        Parameters
        ----------
        ddf : {"satterthwaite", "kenward-roger", "lme4"}
            Denominator degrees of freedom (``"lme4"``: likelihood-ratio tests).

        Returns
        -------
        pandas.DataFrame
            One row per droppable term (see :func:`pylmer.inference.drop1`).

        Examples
        --------
        >>> m.drop1()  # doctest: +SKIP
        """
        return inference.drop1(self, ddf=ddf)

    def fixef_table(
        self, ddf: Literal["satterthwaite", "kenward-roger", "lme4"] = "satterthwaite"
    ) -> pd.DataFrame:
        """The coefficient table of lmerTest's ``summary(m, ddf=...)``.

        Parameters
        ----------
        ddf : {"satterthwaite", "kenward-roger", "lme4"}
            Degrees of freedom of the t tests (Kenward-Roger also adjusts the standard
            errors, as pbkrtest does).

        Returns
        -------
        pandas.DataFrame
            ``estimate``, ``std_error``, ``df``, ``t_value``, ``p_value`` by coefficient.

        Examples
        --------
        >>> m.fixef_table("kenward-roger")  # doctest: +SKIP
        """
        return inference.fixef_table(self, ddf=ddf)


def _satterthwaite_table(value: Any, index: pd.Index) -> pd.DataFrame | None:
    """The fit's Satterthwaite table (``df``, ``p_value``) indexed like ``fixef``."""
    if not isinstance(value, pd.DataFrame) or len(value) != len(index):
        return None
    table = value[["df", "p_value"]].astype(float)
    table.index = index
    return table


def anova(
    *models: LmerModel,
    refit: bool = True,
    method: Literal["lrt", "bootstrap"] = "lrt",
    nsim: int = 1000,
    seed: int | None = None,
    n_jobs: int | None = None,
    names: Sequence[str] | None = None,
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
    names : list of str, optional
        The models' row labels (default: their formulas, as :func:`pylmer.compare` too).

    Returns
    -------
    pandas.DataFrame
        One row per model, labelled by ``names`` or formula, in R's order (by number of
        parameters), with columns ``npar``, ``AIC``, ``BIC``, ``logLik``, ``deviance``,
        ``Chisq``, ``Df``, ``Pr(>Chisq)``.  With ``method="bootstrap"``: rows ``LRT`` and
        ``PBtest``, columns ``stat``, ``df``, ``p_value``.

    Raises
    ------
    InvalidArgumentError
        No model, an object that is not a fitted model, a bad ``method`` or ``names``.
    RError
        R's anova refused the models (e.g. fitted to different data).

    Examples
    --------
    >>> m0 = pylmer.lmer("Reaction ~ 1 + (Days | Subject)", sleep)  # doctest: +SKIP
    >>> m1 = pylmer.lmer("Reaction ~ Days + (Days | Subject)", sleep)  # doctest: +SKIP
    >>> pylmer.anova(m0, m1, names=["null", "slope"])  # doctest: +SKIP
           npar     AIC     BIC   logLik  deviance   Chisq  Df  Pr(>Chisq)
    null      5  1785.5  1801.4  -887.74    1775.5     NaN NaN         NaN
    slope     6  1763.9  1783.1  -875.97    1751.9  23.537 1.0  1.2227e-06
    """
    if not models:
        raise InvalidArgumentError("anova() needs at least one model")
    for m in models:
        if not isinstance(m, MixedModel):
            raise InvalidArgumentError(
                f"anova() takes fitted models (LmerModel, GlmerModel), not {type(m).__name__}"
            )
    if method not in ("lrt", "bootstrap"):
        raise InvalidArgumentError(f"method must be 'lrt' or 'bootstrap', not {method!r}")
    if method == "bootstrap":
        if len(models) != 2:
            raise InvalidArgumentError(f"method='bootstrap' compares two models, not {len(models)}")
        from ..parallel import bootstrap_anova

        return bootstrap_anova(*models, nsim=nsim, seed=seed, n_jobs=n_jobs)
    check_bool("refit", refit)
    if len(models) == 1 and type(models[0]) is LmerModel:
        # one model: lmerTest's F table with Satterthwaite df, like anova(m) in R with
        # lmerTest loaded (a GLMM has no such table: lme4's own below)
        return models[0].anova()
    labels = model_labels(models, names)
    keys = [f"m{i}" for i in range(len(models))]  # R names the rows; ours replace them
    try:
        table = _r.call(
            ".pylmer_lmer_anova",
            [m._mermod() for m in models],
            keys,
            refit=bool(refit),
            stacklevel=2,
        )
    except RError as exc:
        raise RError(f"anova failed: {exc.r_message}", r_message=exc.r_message) from None
    table.index = pd.Index([labels[keys.index(str(k))] for k in table.index])
    return table
