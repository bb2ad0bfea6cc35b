"""lme4 models as scikit-learn estimators: ``LmerRegressor`` (linear mixed model),
``GlmerClassifier`` (binomial GLMM) and ``GlmerRegressor`` (count and other GLMMs)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils.validation import check_is_fitted

from .errors import DataError, FormulaError
from .models.glmer import GlmerModel, glmer
from .models.lmer import LmerControl, LmerModel, lmer

__all__ = ["GlmerClassifier", "GlmerRegressor", "LmerRegressor"]

_NAME = re.compile(r"^\s*(`[^`]+`|[A-Za-z.][A-Za-z0-9._]*)\s*$")


def response_name(formula: str) -> str | None:
    """Return the response column of ``formula`` when its left side is a plain name.

    Returns None for an expression such as ``log(y)``; backticks are removed.
    """
    if "~" not in formula:
        raise FormulaError(f"the formula {formula!r} has no '~'")
    lhs = formula.split("~", 1)[0]
    match = _NAME.match(lhs)
    return match.group(1).strip("`") if match else None


class LmerRegressor(RegressorMixin, BaseEstimator):
    """Linear mixed model (lme4's ``lmer``) with the scikit-learn estimator interface.

    Parameters
    ----------
    formula : str
        An lme4 formula such as ``"Reaction ~ Days + (Days | Subject)"``.
    reml : bool
        REML (default) or maximum likelihood.
    control : LmerControl or dict, optional
        lmerControl options (see :func:`pylmer.lmer`).

    Attributes
    ----------
    model_ : LmerModel
        The fitted model.
    feature_names_in_ : numpy.ndarray
        Columns of the DataFrame seen in :meth:`fit`.
    n_features_in_ : int
        Their number.

    Notes
    -----
    ``X`` must be a DataFrame holding every column the formula names (the grouping
    factors included). ``y`` may be None when the response column is in ``X``;
    otherwise it is written into the response column named by the formula's left side.
    :meth:`predict` includes the random effects and predicts unseen group levels from
    the fixed part alone.
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

    def _with_response(self, X: Any, y: Any) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            raise DataError(
                f"LmerRegressor needs a pandas DataFrame with the formula's columns, "
                f"not {type(X).__name__}"
            )
        if y is None:
            return X
        name = response_name(self.formula)
        if name is None:
            raise FormulaError(
                f"the response of {self.formula!r} is an expression: put its column in X "
                "and pass y=None"
            )
        values = np.asarray(y, dtype=float)
        if values.shape != (len(X),):
            raise DataError(f"y has shape {values.shape}; X has {len(X)} rows")
        return X.assign(**{name: values})

    def fit(self, X: pd.DataFrame, y: Any = None) -> LmerRegressor:
        """Fit the model on ``X`` (and ``y``, if given).

        Returns
        -------
        LmerRegressor
            self.
        """
        data = self._with_response(X, y)
        self.model_: LmerModel = lmer(self.formula, data, reml=self.reml, control=self.control)
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Predict with fixed and random effects (unseen levels: fixed part only)."""
        check_is_fitted(self, "model_")
        if not isinstance(X, pd.DataFrame):
            raise DataError(f"X must be a pandas DataFrame, not {type(X).__name__}")
        pred = self.model_.predict(X, include_random=True, allow_new_levels=True)
        return pred.to_numpy(dtype=float)

    def score(self, X: pd.DataFrame, y: Any = None, sample_weight: Any = None) -> float:
        """Return R^2 of the predictions; ``y`` defaults to the response column of ``X``."""
        if y is None:
            name = response_name(self.formula)
            if name is None or name not in X.columns:
                raise DataError("pass y: the response column is not in X")
            y = X[name]
        return float(
            r2_score(np.asarray(y, dtype=float), self.predict(X), sample_weight=sample_weight)
        )


# ------------------------------------------------------------------ GLMMs


def _response_column(formula: str, who: str) -> str:
    name = response_name(formula)
    if name is None:
        raise FormulaError(
            f"{who} needs a plain response column on the left of {formula!r} "
            "(not an expression such as cbind(...))"
        )
    return name


class GlmerClassifier(ClassifierMixin, BaseEstimator):
    """Binomial GLMM (lme4's ``glmer``) with the scikit-learn classifier interface.

    Parameters
    ----------
    formula : str
        An lme4 formula whose left side names the label column, e.g.
        ``"r2 ~ Anger + Gender + (1 | id) + (1 | item)"``.
    link : str, optional
        ``"logit"`` (default), ``"probit"``, ``"cauchit"``, ``"cloglog"`` or ``"log"``.
    nagq : int
        Quadrature points (1: Laplace approximation).
    control : LmerControl or dict, optional
        glmerControl options (see :func:`pylmer.glmer`).

    Attributes
    ----------
    classes_ : numpy.ndarray
        The two labels, sorted; the model gives the probability of ``classes_[1]``.
    model_ : GlmerModel
        The fitted model.
    feature_names_in_, n_features_in_
        Columns of the DataFrame seen in :meth:`fit`, and their number.

    Notes
    -----
    ``X`` must be a DataFrame with every column the formula names (grouping factors
    included). Labels (``y``, or the response column of ``X`` when ``y`` is None) may be
    strings, booleans or numbers, with exactly two distinct values. Predictions include
    the random effects; unseen groups get the fixed part alone.
    """

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

    def fit(self, X: pd.DataFrame, y: Any = None) -> GlmerClassifier:
        """Fit the model on ``X`` and the labels ``y`` (or ``X``'s response column).

        Returns
        -------
        GlmerClassifier
            self.
        """
        if not isinstance(X, pd.DataFrame):
            raise DataError(
                "GlmerClassifier needs a pandas DataFrame with the formula's columns, "
                f"not {type(X).__name__}"
            )
        name = _response_column(self.formula, "GlmerClassifier")
        if y is None:
            if name not in X.columns:
                raise DataError(f"pass y: the response column {name!r} is not in X")
            y = X[name]
        labels = pd.Series(np.asarray(y, dtype=object) if not hasattr(y, "dtype") else y)
        if labels.shape != (len(X),):
            raise DataError(f"y has shape {labels.shape}; X has {len(X)} rows")
        if labels.isna().any():
            raise DataError(f"the labels {name!r} have {int(labels.isna().sum())} missing values")
        classes = np.unique(labels.to_numpy())
        if len(classes) != 2:
            raise DataError(
                f"GlmerClassifier needs two classes in {name!r}, found {len(classes)}: "
                f"{', '.join(map(repr, classes[:6].tolist()))}"
            )
        self.classes_ = classes
        data = X.assign(**{name: (labels.to_numpy() == classes[1]).astype(float)})
        self.model_: GlmerModel = glmer(
            self.formula, data, "binomial", link=self.link, nagq=self.nagq, control=self.control
        )
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        return self

    def _proba(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "model_")
        if not isinstance(X, pd.DataFrame):
            raise DataError(f"X must be a pandas DataFrame, not {type(X).__name__}")
        return self.model_.predict(X, include_random=True, allow_new_levels=True).to_numpy()

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Return an ``(n, 2)`` array: probabilities of ``classes_[0]`` and ``classes_[1]``."""
        p = self._proba(X)
        return np.column_stack([1.0 - p, p])

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """Return the linear predictor (link scale, random effects included)."""
        check_is_fitted(self, "model_")
        pred = self.model_.predict(X, type="link", include_random=True, allow_new_levels=True)
        return pred.to_numpy()

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Return the more probable label of each row (``classes_[1]`` when p > 0.5)."""
        return self.classes_[(self._proba(X) > 0.5).astype(int)]


class GlmerRegressor(LmerRegressor):
    """A count (or positive) GLMM (lme4's ``glmer``) as a scikit-learn regressor.

    Parameters
    ----------
    formula : str
        An lme4 formula such as ``"TICKS ~ YEAR + (1 | BROOD)"``.
    family : str
        ``"poisson"`` (default), ``"negative_binomial"``, ``"Gamma"``,
        ``"inverse.gaussian"`` or ``"binomial"`` (proportions).
    link : str, optional
        The link (default: the family's canonical one).
    nagq : int
        Quadrature points (1: Laplace approximation).
    control : LmerControl or dict, optional
        glmerControl options.

    Attributes
    ----------
    model_ : GlmerModel
        The fitted model.
    feature_names_in_, n_features_in_
        Columns of the DataFrame seen in :meth:`fit`, and their number.

    Notes
    -----
    As :class:`LmerRegressor`: ``X`` holds the formula's columns, ``y`` (or the response
    column of ``X``) the outcome. :meth:`predict` returns means on the response scale
    (expected counts) with the random effects; unseen groups get the fixed part alone.
    :meth:`score` is R^2 of those means.
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
        self.formula = formula
        self.family = family
        self.link = link
        self.nagq = nagq
        self.control = control

    def fit(self, X: pd.DataFrame, y: Any = None) -> GlmerRegressor:
        """Fit the model on ``X`` (and ``y``, if given).

        Returns
        -------
        GlmerRegressor
            self.
        """
        data = self._with_response(X, y)
        self.model_ = glmer(
            self.formula,
            data,
            self.family,
            link=self.link,
            nagq=self.nagq,
            control=self.control,
        )
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        return self
