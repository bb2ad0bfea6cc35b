"""``glmer()``: lme4's generalized linear mixed models from pandas, equal to plain R.

Binary, proportion and count outcomes (binomial, Poisson, negative binomial), and
positive continuous ones (Gamma, inverse Gaussian), with random effects.  As for
:func:`pylmer.lmer`, the fit and the extraction of every result happen in one R call
(``r_scripts/glmer.R``), the results live in a pure-pandas
:class:`~pylmer.results.GlmerResults`, and the fitted ``glmerMod`` stays in R behind a
handle for ``predict``, ``refit``, ``confint``, ``simulate`` and :func:`pylmer.anova`.
:class:`GlmerModel` is a sibling of :class:`~pylmer.LmerModel`: both build on
:class:`pylmer.models._base.MixedModel` (pickling with a checked refit on restore,
new-data encoding, prediction, intervals).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from ..errors import InvalidArgumentError
from ..results import GlmerResults, format_summary, to_html
from ._base import ControlArg, FitSpec, RowValues, prepare_fit, row_values
from ._lme4 import Lme4Model
from .control import FAMILIES, family_and_link

__all__ = ["FAMILIES", "GlmerModel", "family_and_link", "glmer"]


@dataclass(frozen=True)
class _GlmerSpec(FitSpec):
    """What is needed to rebuild a fit: the glmer() arguments and later refits."""

    formula: str
    family: str
    link: str
    nagq: int
    offset: str | np.ndarray | None = None


def glmer(
    formula: str,
    data: pd.DataFrame,
    family: str = "binomial",
    *,
    link: str | None = None,
    nagq: int = 1,
    weights: RowValues = None,
    offset: RowValues = None,
    control: ControlArg = None,
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

    See Also
    --------
    pylmer.lmer : linear mixed models.
    pylmer.anova : likelihood-ratio tests between models.

    Examples
    --------
    >>> import pylmer
    >>> cbpp = pylmer.datasets.load("cbpp")  # doctest: +SKIP
    >>> g = pylmer.glmer(
    ...     "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial"
    ... )  # doctest: +SKIP
    >>> g.fixef.round(4)  # doctest: +SKIP
                 estimate  std_error  z_value  p_value
    (Intercept)   -1.3983     0.2312  -6.0478   0.0000
    period2       -0.9919     0.3032  -3.2721   0.0011
    period3       -1.1282     0.3228  -3.4948   0.0005
    period4       -1.5797     0.4220  -3.7430   0.0002
    >>> g.predict(cbpp.head(2), type="link")  # doctest: +SKIP
    """
    family, link = family_and_link(family, link)
    if isinstance(nagq, bool) or not isinstance(nagq, int | np.integer) or not 0 <= nagq <= 100:
        raise InvalidArgumentError(
            f"nagq must be an integer from 0 to 100, not {nagq!r}", argument="nagq"
        )
    frame, options = prepare_fit(
        formula,
        data,
        na_action,
        control=control,
        weights=weights,
        contrasts=contrasts,
        extra_columns=[offset],
    )
    offset = row_values("offset", offset, len(frame))
    spec = _GlmerSpec(formula, family, link, int(nagq), offset=offset, **options)
    return GlmerModel._fit(spec, frame)


class GlmerModel(Lme4Model):
    """A generalized linear mixed model fitted by lme4 (create it with :func:`glmer`).

    Results, R handle and pickling work as for every model kind
    (:class:`~pylmer.models._base.MixedModel`); the fixed effects have Wald z tests and
    :meth:`predict` works on the response or the link scale.

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

    Examples
    --------
    >>> import pylmer
    >>> cbpp = pylmer.datasets.load("cbpp")  # doctest: +SKIP
    >>> g = pylmer.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)",
    ...                  cbpp, family="binomial")  # doctest: +SKIP
    >>> g.fixef["estimate"]  # doctest: +SKIP
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

    _R_FIT = ".pylmer_glmer_fit"
    _R_WRITE_SCRIPT = ".pylmer_glmer_write_script"
    _R_PREDICT = ".pylmer_glmer_predict"
    _R_SIMULATE = ".pylmer_glmer_simulate"
    _R_STEPS: ClassVar[Mapping[str, str]] = {"refit": ".pylmer_glmer_refit"}
    _MATRIX_RESPONSE = True
    _BOOT_IN_R = True

    # ------------------------------------------------------------------ building

    @classmethod
    def _r_args(cls, spec: _GlmerSpec) -> dict[str, Any]:
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
    def _results(
        cls, out: dict[str, Any], spec: _GlmerSpec, shared: dict[str, Any]
    ) -> GlmerResults:
        nb_theta = out["nb_theta"]
        return GlmerResults(
            family=str(out["family"]),
            link=str(out["link"]),
            nagq=int(out["nagq"]),
            nb_theta=float("nan") if nb_theta is None else float(nb_theta),
            has_scale=bool(out["has_scale"]),
            **shared,
        )

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

    # ------------------------------------------------------------------ display

    def summary(self, *, pvalues: bool = True) -> str:
        """Return the summary text, laid out like R's ``summary(glmerMod)``.

        Parameters
        ----------
        pvalues : bool
            Show the Wald ``Pr(>|z|)`` column and stars (default).

        Examples
        --------
        >>> print(g.summary())  # doctest: +SKIP
        Generalized linear mixed model fit by maximum likelihood (Laplace Approximation) ...
        """
        return format_summary(self.results, pvalues)

    def __repr__(self) -> str:
        return (
            f"<GlmerModel {self.formula!r} ({self.family}, {self.link} link, "
            f"{self.results.nobs} obs)>"
        )

    def _repr_html_(self) -> str:
        return to_html(self.results)

    # ------------------------------------------------------------------ prediction

    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        *,
        type: Literal["response", "link"] = "response",
        include_random: bool = True,
        allow_new_levels: bool | None = None,
    ) -> pd.Series:
        """Predict with lme4's ``predict`` on the response or the link scale.

        Parameters
        ----------
        newdata : pandas.DataFrame, optional
            New data; default: the fitted data (NaN on rows lme4 dropped).
        type : {"response", "link"}
            Means (probabilities, expected counts) or the linear predictor.
        include_random, allow_new_levels : bool, optional
            As for :meth:`pylmer.LmerModel.predict`: with or without the conditional
            modes (``re.form``); unseen group levels at zero random effect (True),
            refused (False) or, not given, at zero with a ``NewLevelsWarning``.

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

        Examples
        --------
        >>> g.predict(cbpp.head(3), type="link")  # doctest: +SKIP
        """
        if type not in ("response", "link"):
            raise InvalidArgumentError(
                f"type must be 'response' or 'link', not {type!r}", argument="type"
            )
        return self._predict(
            newdata,
            include_random=include_random,
            allow_new_levels=allow_new_levels,
            fitted_is_answer=include_random and type == "response",
            type=type,
        )
