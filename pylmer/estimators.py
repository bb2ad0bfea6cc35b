"""lme4 models as scikit-learn estimators: ``LmerRegressor`` (linear mixed model),
``GlmerClassifier`` (binomial GLMM) and ``GlmerRegressor`` (count and other GLMMs).

One base, :class:`MixedModelEstimator`, holds what the three share: the frame check
(pandas, polars or a pyarrow Table, like :func:`pylmer.lmer`), writing ``y`` into the
formula's response column, the fit and its ``feature_names_in_`` bookkeeping, and
prediction with the random effects (unseen groups: the fixed part alone).  A subclass
names its model (:meth:`MixedModelEstimator._fit_model`) and, for the classifier, encodes
its labels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils.validation import check_is_fitted

from .data.frames import as_pandas, type_name
from .errors import DataError, FormulaError
from .models.control import LmerControl
from .models.glmer import GlmerModel, glmer
from .models.lmer import LmerModel, lmer

__all__ = ["GlmerClassifier", "GlmerRegressor", "LmerRegressor", "MixedModelEstimator"]

_NAME = re.compile(r"^\s*(`[^`]+`|[A-Za-z.][A-Za-z0-9._]*)\s*$")


def response_name(formula: str) -> str | None:
    """Return the response column of ``formula`` when its left side is a plain name.

    Returns None for an expression such as ``log(y)``; backticks are removed.

    Examples
    --------
    >>> response_name("`my y` ~ x + (1 | g)"), response_name("log(y) ~ x + (1 | g)")
    ('my y', None)
    """
    if not isinstance(formula, str) or "~" not in formula:
        raise FormulaError(f"the formula {formula!r} has no '~'")
    lhs = formula.split("~", 1)[0]
    match = _NAME.match(lhs)
    return match.group(1).strip("`") if match else None


class MixedModelEstimator(BaseEstimator):
    """Base of the scikit-learn wrappers of lme4 models (not used directly).

    Subclasses implement :meth:`_fit_model` (``data`` -> fitted model) and may override
    :meth:`_response` (how ``y`` becomes the response column, and the fitted attributes
    that encoding gives, such as ``classes_``).

    Attributes
    ----------
    model_ : LmerModel or GlmerModel
        The fitted model.
    feature_names_in_ : numpy.ndarray
        Columns of the DataFrame seen in :meth:`fit`; ``n_features_in_`` their number.
    """

    formula: str

    # ------------------------------------------------------------------ hooks

    def _fit_model(self, data: pd.DataFrame) -> Any:
        raise NotImplementedError

    def _response(self, name: str, y: Any, n: int) -> tuple[np.ndarray, dict[str, Any]]:
        """The values written into the response column ``name`` (numeric here), and the
        fitted attributes the encoding gives (none here)."""
        values = np.asarray(y, dtype=float)
        if values.shape != (n,):
            raise DataError(f"y has shape {values.shape}; X has {n} rows")
        return values, {}

    # ------------------------------------------------------------------ shared

    def _frame(self, X: Any) -> pd.DataFrame:
        """``X`` as a pandas DataFrame; the error names the estimator and X's type."""
        module = type(X).__module__.split(".")[0]
        if not isinstance(X, pd.DataFrame) and module not in ("polars", "pyarrow"):
            raise DataError(
                f"{type(self).__name__} needs a DataFrame (pandas, polars or a pyarrow Table) "
                f"holding the formula's columns, grouping factors included; not {type_name(X)}"
            )
        return as_pandas(X, "X")

    def _response_name(self) -> str:
        name = response_name(self.formula)
        if name is None:
            raise FormulaError(
                f"{type(self).__name__} needs a plain response column on the left of "
                f"{self.formula!r} (not an expression such as log(y) or cbind(...)): put "
                "the response's column in X and pass y=None"
            )
        return name

    def _data(self, X: pd.DataFrame, y: Any) -> tuple[pd.DataFrame, dict[str, Any]]:
        """``X`` with ``y`` written into the response column, and the fitted attributes
        of the encoding.  With ``y`` None, ``X`` as it is (it holds the response, or R
        reports the missing column of a response expression such as ``log(y)``)."""
        if y is None:
            name = response_name(self.formula)
            if name is not None and name not in X.columns:
                raise DataError(f"pass y: the response column {name!r} is not in X")
            return X, {}
        name = self._response_name()
        if type(y).__module__.split(".")[0] in ("polars", "pyarrow") and hasattr(y, "to_numpy"):
            y = y.to_numpy()
        values, fitted = self._response(name, y, len(X))
        return X.assign(**{name: values}), fitted

    def fit(self, X: Any, y: Any = None) -> MixedModelEstimator:
        """Fit the model on ``X`` (and ``y``, if given).

        Parameters
        ----------
        X : DataFrame
            Every column the formula names (grouping factors included); pandas, polars
            or a pyarrow Table.
        y : array-like of shape (n,), optional
            The response, written into the formula's response column (for
            :class:`GlmerClassifier`, two distinct labels); None when that column is in
            ``X``.

        Returns
        -------
        self
        """
        for name in [n for n in vars(self) if n.endswith("_") and not n.startswith("__")]:
            delattr(self, name)  # nothing of a previous fit survives a failed one
        frame = self._frame(X)
        data, fitted = self._data(frame, y)
        self.model_ = self._fit_model(data)
        for name, value in fitted.items():
            setattr(self, name, value)
        self.feature_names_in_ = np.asarray([str(c) for c in frame.columns], dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        return self

    def _predict(self, X: Any, **options: Any) -> np.ndarray:
        """The model's prediction with the random effects (unseen groups: fixed part)."""
        check_is_fitted(self, "model_")
        pred = self.model_.predict(
            self._frame(X), include_random=True, allow_new_levels=True, **options
        )
        return pred.to_numpy(dtype=float)


class _MixedRegressor(RegressorMixin, MixedModelEstimator):
    """The regressors' ``predict`` and ``score`` (R^2)."""

    def predict(self, X: Any) -> np.ndarray:
        """Predict with fixed and random effects (unseen levels: fixed part only).

        Parameters
        ----------
        X : DataFrame
            The formula's columns.

        Returns
        -------
        ndarray of shape (n,)
            Means on the response scale.
        """
        return self._predict(X)

    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:
        """Return R^2 of the predictions; ``y`` defaults to the response column of ``X``.

        Parameters
        ----------
        X : DataFrame
            The formula's columns.
        y : array-like, optional
            The observed response; None takes the response column of ``X``.
        sample_weight : array-like, optional
            Weights of the rows in R^2.

        Returns
        -------
        float
        """
        frame = self._frame(X)
        if y is None:
            name = response_name(self.formula)
            if name is None or name not in frame.columns:
                raise DataError("pass y: the response column is not in X")
            y = frame[name]
        return float(
            r2_score(np.asarray(y, dtype=float), self.predict(frame), sample_weight=sample_weight)
        )


class LmerRegressor(_MixedRegressor):
    """Linear mixed model (lme4's ``lmer``) with the scikit-learn estimator interface.

    Parameters
    ----------
    formula : str
        An lme4 formula such as ``"Reaction ~ Days + (Days | Subject)"``.
    reml : bool, default=True
        REML or maximum likelihood.
    control : LmerControl or dict, optional
        lmerControl options (see :func:`pylmer.lmer`).

    Attributes
    ----------
    model_ : LmerModel
        The fitted lmer model; ``feature_names_in_`` and ``n_features_in_`` as for every
        wrapper (:class:`MixedModelEstimator`).

    Notes
    -----
    ``X`` must be a DataFrame (pandas, polars or a pyarrow Table) holding every column
    the formula names (the grouping factors included).  ``y`` may be None when the
    response column is in ``X``; otherwise it is written into the response column named
    by the formula's left side.  :meth:`predict` includes the random effects and
    predicts unseen group levels from the fixed part alone.

    Examples
    --------
    >>> import pylmer
    >>> sleep = pylmer.datasets.load("sleepstudy")
    >>> reg = LmerRegressor("Reaction ~ Days + (Days | Subject)")
    >>> round(reg.fit(sleep.drop(columns="Reaction"), sleep["Reaction"]).score(sleep), 3)
    0.826
    """

    def __init__(
        self,
        formula: str = "",
        *,
        reml: bool = True,
        control: LmerControl | Mapping[str, Any] | None = None,
    ):
        self.formula = formula
        self.reml = reml
        self.control = control

    def _fit_model(self, data: pd.DataFrame) -> LmerModel:
        return lmer(self.formula, data, reml=self.reml, control=self.control)


class _GlmerEstimator(MixedModelEstimator):
    """The glmer wrappers' options and fit; a subclass names its family
    (:meth:`_glmer_family`)."""

    def __init__(
        self,
        formula: str = "",
        *,
        link: str | None = None,
        nagq: int = 1,
        control: LmerControl | Mapping[str, Any] | None = None,
    ):
        self.formula = formula
        self.link = link
        self.nagq = nagq
        self.control = control

    def _glmer_family(self) -> str:
        raise NotImplementedError

    def _fit_model(self, data: pd.DataFrame) -> GlmerModel:
        return glmer(
            self.formula,
            data,
            self._glmer_family(),
            link=self.link,
            nagq=self.nagq,
            control=self.control,
        )


class GlmerRegressor(_MixedRegressor, _GlmerEstimator):
    """A count (or positive) GLMM (lme4's ``glmer``) as a scikit-learn regressor.

    Parameters
    ----------
    formula : str
        An lme4 formula such as ``"TICKS ~ YEAR + (1 | BROOD)"``.
    family : str, default="poisson"
        ``"poisson"``, ``"negative_binomial"``, ``"Gamma"``, ``"inverse.gaussian"`` or
        ``"binomial"`` (proportions).
    link : str, optional
        The link (default: the family's canonical one).
    nagq : int, default=1
        Adaptive Gauss-Hermite quadrature points of glmer (1 is the Laplace
        approximation).
    control : LmerControl or dict, optional
        glmerControl options.

    Attributes
    ----------
    model_ : GlmerModel
        The fitted glmer model; ``feature_names_in_`` and ``n_features_in_`` as for every
        wrapper.

    Notes
    -----
    As :class:`LmerRegressor`: ``X`` holds the formula's columns, ``y`` (or the response
    column of ``X``) the outcome.  :meth:`predict` returns means on the response scale
    (expected counts) with the random effects; unseen groups get the fixed part alone.
    :meth:`score` is R^2 of those means.

    Examples
    --------
    >>> import pylmer
    >>> ticks = pylmer.datasets.load("grouseticks")
    >>> reg = GlmerRegressor("TICKS ~ YEAR + (1 | BROOD)")
    >>> reg.fit(ticks.drop(columns="TICKS"), ticks["TICKS"]).predict(ticks)[:3].round(2)
    array([0.4 , 0.4 , 0.57])
    """

    def __init__(
        self,
        formula: str = "",
        *,
        family: str = "poisson",
        link: str | None = None,
        nagq: int = 1,
        control: LmerControl | Mapping[str, Any] | None = None,
    ):
        super().__init__(formula, link=link, nagq=nagq, control=control)
        self.family = family

    def _glmer_family(self) -> str:
        return self.family


class GlmerClassifier(ClassifierMixin, _GlmerEstimator):
    """Binomial GLMM (lme4's ``glmer``) with the scikit-learn classifier interface.

    Parameters
    ----------
    formula : str
        An lme4 formula whose left side names the label column, e.g.
        ``"r2 ~ Anger + Gender + (1 | id) + (1 | item)"``.
    link : str, optional
        ``"logit"`` (default), ``"probit"``, ``"cauchit"``, ``"cloglog"`` or ``"log"``.
    nagq : int, default=1
        Quadrature points (1: Laplace approximation).
    control : LmerControl or dict, optional
        glmerControl options (see :func:`pylmer.glmer`).

    Attributes
    ----------
    classes_ : numpy.ndarray
        The two labels, sorted; the model gives the probability of ``classes_[1]``.
    model_ : GlmerModel
        The fitted binomial glmer model (``feature_names_in_``, ``n_features_in_``: see
        :class:`MixedModelEstimator`).

    Notes
    -----
    ``X`` must be a DataFrame (pandas, polars or a pyarrow Table) with every column the
    formula names (grouping factors included).  Labels (``y``, or the response column of
    ``X`` when ``y`` is None) may be strings, booleans or numbers, with exactly two
    distinct values.  Predictions include the random effects; unseen groups get the
    fixed part alone.

    Examples
    --------
    >>> import pylmer
    >>> verb = pylmer.datasets.load("VerbAgg")
    >>> verb = verb[verb["id"].cat.codes < 40]  # 40 respondents: a quick fit
    >>> clf = GlmerClassifier("r2 ~ Anger + Gender + (1 | id)")
    >>> clf.fit(verb.drop(columns="r2"), verb["r2"]).classes_
    array(['N', 'Y'], dtype=object)
    """

    def _glmer_family(self) -> str:
        return "binomial"

    def _data(self, X: pd.DataFrame, y: Any) -> tuple[pd.DataFrame, dict[str, Any]]:
        """The labels (``y``, or the response column of ``X``) encoded as 0/1."""
        if y is None:
            name = self._response_name()
            if name not in X.columns:
                raise DataError(f"pass y: the response column {name!r} is not in X")
            y = X[name]
        return super()._data(X, y)

    def _response(self, name: str, y: Any, n: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Labels -> 1.0 for ``classes_[1]``, 0.0 for ``classes_[0]``; and ``classes_``."""
        labels = pd.Series(np.asarray(y, dtype=object) if not hasattr(y, "dtype") else y)
        if labels.shape != (n,):
            raise DataError(f"y has shape {labels.shape}; X has {n} rows")
        if labels.isna().any():
            raise DataError(f"the labels {name!r} have {int(labels.isna().sum())} missing values")
        classes = np.unique(labels.to_numpy())
        if len(classes) != 2:
            raise DataError(
                f"GlmerClassifier needs two classes in {name!r}, found {len(classes)}: "
                f"{', '.join(map(repr, classes[:6].tolist()))}"
            )
        return (labels.to_numpy() == classes[1]).astype(float), {"classes_": classes}

    def predict_proba(self, X: Any) -> np.ndarray:
        """Return the probabilities of ``classes_[0]`` and ``classes_[1]`` for each row of
        ``X`` (the formula's columns), random effects included.

        Returns
        -------
        ndarray of shape (n, 2)
        """
        p = self._predict(X)
        return np.column_stack([1.0 - p, p])

    def decision_function(self, X: Any) -> np.ndarray:
        """Return the linear predictor of each row of ``X`` (the formula's columns): the
        log-odds of ``classes_[1]`` for the logit link, random effects included.

        Returns
        -------
        ndarray of shape (n,)
        """
        return self._predict(X, type="link")

    def predict(self, X: Any) -> np.ndarray:
        """Return the more probable label of each row of ``X`` (the formula's columns):
        ``classes_[1]`` when its probability is above 0.5.

        Returns
        -------
        ndarray of shape (n,)
            Labels from ``classes_``.
        """
        p = self._predict(X)  # before classes_: an unfitted model raises NotFittedError
        return self.classes_[(p > 0.5).astype(int)]
