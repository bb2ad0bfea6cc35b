"""MixedMLClassifier: random effects on top of any regressor, for binary outcomes.

The model (logit link):

.. math:: \\operatorname{logit} P(y = 1 \\mid b) = f(X) + X_r\\gamma + Zb,
          \\qquad b \\sim N(0, G)

The estimator (any scikit-learn *regressor*) learns the fixed part :math:`f` on the logit
scale from the IRLS working response; lme4's ``glmer`` fits the random part with that
fixed part as an offset; the two alternate in MixedML's EM engine
(:func:`pylmer.mixedml.engine.run`, driven by :class:`pylmer.mixedml.base.MixedMLBase`)
until its stopping rule holds.  The step and why it converges are described in
:mod:`pylmer.mixedml.glmm_step`; counts are ``MixedMLRegressor(family="poisson")``,
through the same step.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.utils._param_validation import Interval

from ..errors import DataError
from .base import MixedMLBase, RandomPart, check_frame, column_name
from .glmm_step import GlmmPart, inverse_link

__all__ = ["MixedMLClassifier"]


class MixedMLClassifier(ClassifierMixin, MixedMLBase):
    """Random effects on top of any scikit-learn regressor, for binary outcomes.

    A mixed logistic model whose fixed part is learnt by ``estimator`` on the logit
    scale:

    .. math:: \\operatorname{logit} P(y = 1 \\mid b) = f(X) + X_r\\gamma + Zb,
              \\qquad b \\sim N(0, G)

    fitted by MixedML's EM engine: the estimator fits the IRLS working response (with the
    IRLS weights as ``sample_weight`` when its ``fit`` accepts them), lme4's ``glmer``
    fits the random part with the estimator's predictions as an offset, warm-started from
    the previous step (:mod:`pylmer.mixedml.glmm_step` explains the scheme).  With
    ``LinearRegression`` the result is close to glmer's own fit of
    ``y ~ x + <random part>``.

    Parameters
    ----------
    estimator : regressor, default=None
        Learns :math:`f(X)` on the logit scale; a *regressor* (e.g.
        ``RandomForestRegressor``, ``HistGradientBoostingRegressor``), cloned at every
        step.  ``None`` means :class:`~sklearn.linear_model.LinearRegression`.  It gets
        the IRLS weights as ``sample_weight`` when its ``fit`` has that parameter; a
        ``Pipeline`` (whose ``fit`` routes weights only by step name) fits the working
        response unweighted, a cruder Newton step.
    random_effects : str
        lme4's random part, e.g. ``"(1 + time | subject)"``; its covariates and grouping
        columns are columns of ``X``.
    features : list of str, optional
        Columns of ``X`` given to the estimator (default: all but the grouping columns).
    max_iter : int, default=50
        Most EM steps (extrapolated ones included); never exceeded.
    tol : float, default=1e-4
        The engine's ``"tol"`` rule: the Laplace log-likelihood changes by less than
        ``tol`` per observation and every term's random effects by less than ``tol``
        times their root mean square.
    residuals : {"auto", "in_sample", "oof", "oob"}, default="auto"
        Which fixed-part predictions glmer sees (as for
        :class:`~pylmer.MixedMLRegressor`): ``"auto"`` uses the out-of-bag predictions of
        a bagged forest (a forest interpolates its training rows and would absorb the
        random effects) and in-sample predictions otherwise.  For boosting prefer
        ``"oof"``: in-sample, the boosted trees fit the rows' working-response noise and
        the random-slope variance collapsed in ``bench/mixedml_classifier.py`` (0.16 for
        a generating 2.25; test log-loss 0.528 against 0.524 with ``"oof"``).
    cv : int, default=5
        Folds for ``residuals="oof"``.
    accelerate : bool, default=True
        SQUAREM extrapolation while the log-likelihood rises monotonically.
    nagq : int, default=1
        glmer's ``nAGQ`` in the random-effects step (1: Laplace).
    verbose : int, default=0
        ``1`` prints one line per step.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The two labels; ``classes_[1]`` is the event whose probability is modelled.
    estimator_ : regressor
        The estimator of the final state.
    glmer_ : GlmerModel
        The final random-effects fit (the loop's last glmer fit, offset ``.pylmer_f``).
    ranef_, ranef_sd_ : dict
        ``{grouping factor: DataFrame levels x terms}`` (conditional modes and SDs on the
        logit scale), indexed by the original grouping values.
    varcorr_ : DataFrame
        Variance components.
    n_iter_ : int
        EM steps evaluated (``<= max_iter``).
    converged_ : bool
        Whether a stopping rule (not ``max_iter``) ended the loop.
    stop_reason_ : str
        ``"tol"``, ``"stationary"`` or ``"max_iter"``.
    history_ : DataFrame
        One row per step: ``loglik`` (Laplace), the variance components,
        ``delta_loglik``, ``max_delta_u``, ``train_deviance`` (per row), seconds.
    residual_formula_ : str
        The glmer model of the random-effects step.
    residuals_used_ : str
        What ``residuals="auto"`` resolved to.

    Notes
    -----
    ``X`` may be a pandas or polars DataFrame or a pyarrow Table.  Counts are
    ``MixedMLRegressor(family="poisson")``, through the same glmer step.

    Examples
    --------
    Whether a sleepstudy reaction time is above the median, with a random intercept per
    subject:

    >>> import pylmer
    >>> sleep = pylmer.datasets.load("sleepstudy")
    >>> slow = sleep["Reaction"] > sleep["Reaction"].median()
    >>> clf = pylmer.MixedMLClassifier(random_effects="(1 | Subject)")
    >>> clf.fit(sleep[["Days", "Subject"]], slow).classes_
    array([False,  True])
    >>> clf.predict_proba(sleep[["Days", "Subject"]]).shape
    (180, 2)
    """

    def __init__(
        self,
        estimator: Any = None,
        *,
        random_effects: str,
        features: list[str] | None = None,
        max_iter: int = 50,
        tol: float = 1e-4,
        residuals: str = "auto",
        cv: int = 5,
        accelerate: bool = True,
        nagq: int = 1,
        verbose: int = 0,
    ):
        self.estimator = estimator
        self.random_effects = random_effects
        self.features = features
        self.max_iter = max_iter
        self.tol = tol
        self.residuals = residuals
        self.cv = cv
        self.accelerate = accelerate
        self.nagq = nagq
        self.verbose = verbose

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **MixedMLBase._parameter_constraints,
        "nagq": [Interval(Integral, 0, None, closed="left")],
    }

    def _family(self) -> RandomPart:
        return GlmmPart("binomial", nagq=self.nagq)

    def _encode_target(self, y: Any, n: int) -> tuple[np.ndarray, dict[str, Any]]:
        classes, codes = self._labels(y, n)
        return codes.astype(float)[:, None], {"classes_": classes}

    @staticmethod
    def _labels(y: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
        what = column_name(y)
        if isinstance(y, str):
            raise DataError(f"{what} must be one label per row, not a string")
        if isinstance(y, pd.DataFrame):
            if y.shape[1] != 1:
                raise DataError(f"y must be one column of labels, not {y.shape[1]} columns")
            y = y.iloc[:, 0]
        arr = np.asarray(y)
        if arr.ndim != 1:
            raise DataError(f"{what} must be one label per row (1 dimension), not {arr.ndim}")
        if len(arr) != n:
            raise DataError(f"X has {n} rows but {what} has {len(arr)} values; give one per row")
        missing = pd.isna(arr)
        if missing.any():
            raise DataError(
                f"{what} has {int(missing.sum())} missing value(s); drop those rows first"
            )
        try:
            classes, codes = np.unique(arr, return_inverse=True)
        except TypeError:
            raise DataError(f"{what} mixes label types that cannot be ordered") from None
        if len(classes) != 2:
            shown = ", ".join(repr(c) for c in classes[:6]) + (", ..." if len(classes) > 6 else "")
            raise DataError(
                f"MixedMLClassifier needs a binary outcome; {what} has {len(classes)} "
                f"class(es): {shown}"
            )
        return classes, codes.reshape(-1)

    def _observed(self, y: Any, n: int) -> np.ndarray:
        """Observed labels as 1.0 (classes_[1]), 0.0, NaN where missing."""
        arr = np.asarray(y, dtype=object).reshape(-1)
        if len(arr) != n:
            raise DataError(f"X has {n} rows but y has {len(arr)} values; give one per row")
        out = np.full(n, np.nan)
        missing = pd.isna(arr)
        for k, label in enumerate(self.classes_):
            hit = ~missing & np.array([_equal(v, label) for v in arr])
            out[hit] = float(k)
        bad = ~missing & np.isnan(out)
        if bad.any():
            first = arr[np.flatnonzero(bad)[0]]
            raise DataError(
                f"y holds {int(bad.sum())} value(s) that are not a class of the fit "
                f"({', '.join(map(repr, self.classes_))}), e.g. {first!r}"
            )
        return out

    def decision_function(self, X: pd.DataFrame, y: Any = None) -> np.ndarray:
        """The linear predictor of each row of ``X`` (the columns of :meth:`fit`): the
        log-odds of ``classes_[1]`` given the random effects, updated from the observed
        labels ``y`` as in :meth:`predict_proba`.

        Returns
        -------
        ndarray of shape (n,)
        """
        self._check_fitted()
        obs = None if y is None else self._observed(y, len(X))[:, None]
        return self._predict_link(X, obs)[:, 0]

    def predict_proba(
        self, X: pd.DataFrame, y: Any = None, *, integrate: bool = True
    ) -> np.ndarray:
        """Class probabilities, averaged over what the data leave unknown of the random
        effects (``integrate=True``) or at their conditional modes (``integrate=False``).

        Parameters
        ----------
        X : DataFrame
            Same columns as in :meth:`fit`.
        y : array-like, optional
            Observed labels for (some of) the rows of ``X`` (None/NaN where unobserved).
            The random effects are then the empirical-Bayes modes given every observed
            outcome (training rows and these), with the variance parameters and
            :math:`\\gamma` fixed: a new subject's first outcomes inform its later ones.
        integrate : bool, default=True
            ``True``: :math:`E[\\operatorname{logistic}(f + X_r\\gamma + z'b)]` over the
            conditional distribution of :math:`b` given the data (normal around the modes,
            variance :math:`z'Pz` from the IRLS weights of the group's rows; probit
            approximation, :func:`pylmer.mixedml.intervals.integrated_probability`).  A
            group with few rows, or a row far along a random slope, gets a probability
            pulled towards 0.5; a group without any observed row gets the population
            average over groups.  ``False``: :math:`\\operatorname{logistic}(f +
            X_r\\gamma + z'\\hat b)` at the conditional modes (a group without rows:
            :math:`b = 0`, a typical group).  Measured in ``bench/mixedml_classifier.py``
            (see the README): the modes' probabilities are over-confident at the extremes.

        Returns
        -------
        ndarray of shape (n, 2)
            Columns in the order of ``classes_``.
        """
        eta = self.decision_function(X, y)
        if integrate:
            from .intervals import integrated_probability

            obs = None if y is None else self._observed(y, len(eta))
            p = integrated_probability(self, check_frame(X), eta, obs)
        else:
            p = inverse_link("binomial", eta)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: pd.DataFrame, y: Any = None) -> np.ndarray:
        """The more probable class of each row of ``X`` (``classes_[1]`` when its
        probability is above 0.5); ``y``: observed labels, as in :meth:`predict_proba`.

        Returns
        -------
        ndarray of shape (n,)
            Labels from ``classes_``.
        """
        p = self.predict_proba(X, y)[:, 1]
        return self.classes_[(p > 0.5).astype(int)]


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False
