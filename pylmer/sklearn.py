"""``LmerRegressor``: an lme4 linear mixed model as a scikit-learn regressor."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils.validation import check_is_fitted

from .errors import DataError, FormulaError
from .lmer import LmerControl, LmerModel, lmer

__all__ = ["LmerRegressor"]

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
