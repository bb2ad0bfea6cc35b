"""MixedMLRegressor: random effects on top of any scikit-learn regressor.

The mixedML framework (Kilian, Ye & Kelava, *Mixed effects in machine learning*, TMLR
2023) adds random effects as a correction on top of an unchanged machine-learning model:

.. math:: y = f(X) + X_r\\gamma + Z b + \\varepsilon, \\qquad b \\sim N(0, G), \\quad
          \\varepsilon \\sim N(0, \\sigma^2 I)

estimated by an EM-like alternation (:mod:`pylmer.mixedml.engine`), starting from a zero
random-effects contribution :math:`c`:

1. fit a clone of the estimator on :math:`(X, y - c)`;
2. lme4 fits the *residual model* on :math:`e = y - \\hat f(X)`::

       .pylmer_e ~ 1 + <every covariate of the random part> + <random part>

   giving :math:`\\gamma`, :math:`b`, :math:`G`, :math:`\\sigma` and the new contribution
   :math:`c = X_r\\gamma + Zb`.

Why the covariates of the random part enter the residual model as fixed effects (the
paper fits ``e ~ 0 + <random part>``): the means of the random coefficients and the fixed
part trade off against each other, and with ``0 +`` that direction is corrected only
through the shrinkage of :math:`b`, so the alternation crawls.  With :math:`X_r\\gamma`
each step is an exact block update of one joint model (backfitting), the marginal
likelihood rises monotonically for a linear estimator, and with ``LinearRegression`` the
fixed point is lme4's ML fit of ``y ~ x + <random part>``.  The residual model comes from
R's own parse of ``random_effects`` (``findbars``): ``||``, nested ``a/b`` and crossed
terms are lme4's; the intercept is always in its fixed part.

The loop's last state *is* the fitted model: ``lmer_`` is the last lme4 fit (no refit
after the loop), ``estimator_`` the estimator fitted in that same step.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import RegressorMixin
from sklearn.utils._param_validation import StrOptions

from ..errors import DataError, PylmerWarning, warn
from .base import MixedMLBase, RandomPart, check_frame, column_name, outcome
from .glmm_step import GlmmPart, inverse_link
from .lme4_step import GaussianPart

__all__ = ["MixedMLRegressor", "count_outcome"]


def count_outcome(y: Any, n: int, what: str = "y", allow_nan: bool = False) -> np.ndarray:
    """Counts for the Poisson family, shape ``(n, 1)``: non-negative (DataError)."""
    Y = outcome(y, n, what=what, allow_nan=allow_nan)
    if Y.shape[1] != 1:
        raise DataError(f"{what} must be one column of counts, not {Y.shape[1]}")
    bad = np.flatnonzero(Y[:, 0] < 0)
    if bad.size:
        raise DataError(
            f"the poisson outcome {what} has negative counts: {bad.size} row(s), e.g. "
            f"row {bad[0]} with {Y[bad[0], 0]:g}"
        )
    return Y


class MixedMLRegressor(RegressorMixin, MixedMLBase):
    """Random effects on top of any scikit-learn regressor (mixedML, EM with lme4).

    Parameters
    ----------
    estimator : regressor, default=None
        Learns the fixed part :math:`f(X)`; cloned at every iteration.  ``None`` means
        :class:`~sklearn.linear_model.LinearRegression`.
    random_effects : str
        lme4's random part, e.g. ``"(1 + x2_x5 + x4_x7 + x6_x8 || individus)"``,
        ``"(1 | school/class)"`` or ``"(1 | item) + (1 | subject)"``; its covariates and
        grouping columns are columns of ``X``.
    features : list of str, optional
        Columns of ``X`` given to the estimator.  Default: every column except the
        grouping columns of ``random_effects``.
    reml : bool, default=False
        Fit the random-effects step by REML instead of ML.  With ML and a
        ``LinearRegression`` estimator the fixed point is lme4's ML fit of
        ``y ~ x + <random part>``.
    max_iter : int, default=100
        Most EM steps (extrapolated ones included); never exceeded.  Forests and
        boosting stop in the stationary regime well before; a linear estimator on
        covariates nearly collinear with the random part's needs about 60 on
        ``examples/mixedml_longitudinal.py``.
    tol : float, default=1e-4
        The ``"tol"`` stopping rule: the marginal log-likelihood changes by less than
        ``tol`` per observation and every term's random effects by less than ``tol``
        times their root mean square, between a state and the plain step from it.
    residuals : {"auto", "in_sample", "oof", "oob"}, default="auto"
        Which fixed-part predictions the random effects are estimated from.
        ``"in_sample"``: the estimator's predictions on its training rows.  ``"oof"``:
        out-of-fold predictions from ``cv`` folds that keep each group together
        (:class:`~sklearn.model_selection.GroupKFold` on the first grouping column), at
        ``cv`` extra fits per iteration.  ``"oob"``: the out-of-bag predictions of a
        bagging ensemble (``oob_score=True`` is set on the clone), at no extra fit.
        ``"auto"`` uses ``"oob"`` for bagged forests (random forests), ``"oof"`` for
        forests without bootstrap (extra trees) and ``"in_sample"`` otherwise.  Why:
        a forest grown to single-row leaves (scikit-learn's default) *interpolates* its
        training rows, so its in-sample predictions already contain the random effects
        it was asked to leave out; the residuals are then nearly zero, the residual
        variance collapses (0.19 for a generating 1.0) and the random-effect variances
        drift without limit.  Out-of-bag predictions do not see the row they predict.
    cv : int, default=5
        Number of folds for ``residuals="oof"``.
    accelerate : bool, default=True
        SQUAREM extrapolation (Varadhan & Roland 2008) of the random-effects contribution
        every third step while the log-likelihood rises monotonically.  The plain
        alternation converges linearly and slowly when the estimator and the random part
        share covariates; extrapolation cuts the steps several-fold and leaves the fixed
        point as it is.  A jump that lowers the log-likelihood is dropped and the loop
        continues from the last plain state.
    verbose : int, default=0
        ``1`` prints one line per step.
    progress : bool, default=False
        Show a progress bar over steps (needs ``tqdm``).
    family : {"gaussian", "poisson"}, default="gaussian"
        ``"poisson"``: counts with a log link; the estimator learns :math:`f` on the log
        scale and glmer fits the random part with :math:`f` as an offset
        (:mod:`pylmer.mixedml.glmm_step`); ``predict`` returns expected counts, the
        final fit is ``glmer_`` (a GlmerModel) and ``reml`` does not apply.  Binary
        outcomes: :class:`~pylmer.MixedMLClassifier`.

    Attributes
    ----------
    estimator_ : regressor
        The estimator of the final state (fitted on :math:`y - c` of that step).
    lmer_ : LmerModel or list of LmerModel
        The final random-effects model, the loop's last lme4 fit (one per target).
    ranef_ : dict or list of dict
        ``{grouping factor: DataFrame levels x terms}``, indexed by the original values
        of the grouping column (a MultiIndex for nested factors such as ``b:a``).
    ranef_sd_ : dict or list of dict
        Their conditional standard deviations, same shape.
    varcorr_ : DataFrame or list of DataFrame
        Variance components, like ``as.data.frame(VarCorr(m))``.  With one Gaussian
        target the Residual row is the honest residual variance of
        :mod:`pylmer.mixedml.variance` (lme4's own is in ``lmer_`` and
        ``calibration_.sigma2_lme4``).
    calibration_ : Calibration
        One Gaussian target only: the residual-variance correction and the conformal
        scores of the intervals (:mod:`pylmer.mixedml.intervals`).
    n_iter_ : int
        Number of EM steps evaluated (``<= max_iter``).
    converged_ : bool
        Whether a stopping rule ended the loop (not ``max_iter``).
    stop_reason_ : str
        ``"tol"`` (the changes fell below ``tol``), ``"stationary"`` (the estimator is not
        a smooth function of its target and the log-likelihood reached a noise band
        without trend: see :class:`pylmer.mixedml.engine.StoppingRule`) or ``"max_iter"``.
    residuals_used_ : str
        What ``residuals="auto"`` resolved to.
    residual_formula_ : str
        The residual model, as R parsed and deparsed it.
    history_ : DataFrame
        One row per step: ``kind`` (plain or jump), ``accepted``, ``loglik``,
        ``delta_loglik`` (per observation), ``max_delta_u`` (largest change of a term's
        random effects relative to their root mean square), ``sigma``, one column per
        variance component, ``train_mse``, ``seconds_ml``, ``seconds_re``.  With several
        targets the per-target columns are suffixed ``[j]``.

    Notes
    -----
    Several target columns: ``y`` of shape ``(n, k)`` fits one random-effects model per
    target, while the estimator learns all targets at once (it must support multi-output
    regression); ``lmer_``, ``ranef_`` and ``varcorr_`` are then lists.

    ``X`` may be a pandas or polars DataFrame or a pyarrow Table.

    Examples
    --------
    A random forest for the fixed part, a random intercept and slope per subject
    (sleepstudy):

    >>> import pylmer
    >>> from sklearn.ensemble import RandomForestRegressor
    >>> sleep = pylmer.datasets.load("sleepstudy")
    >>> model = pylmer.MixedMLRegressor(
    ...     RandomForestRegressor(n_estimators=50, min_samples_leaf=5, random_state=0),
    ...     random_effects="(Days | Subject)",
    ... )
    >>> model.fit(sleep[["Days", "Subject"]], sleep["Reaction"]).residuals_used_
    'oob'
    >>> model.predict(sleep[["Days", "Subject"]]).shape
    (180,)
    >>> sorted(model.ranef_)
    ['Subject']
    """

    def __init__(
        self,
        estimator: Any = None,
        *,
        random_effects: str,
        features: list[str] | None = None,
        reml: bool = False,
        max_iter: int = 100,
        tol: float = 1e-4,
        residuals: str = "auto",
        cv: int = 5,
        accelerate: bool = True,
        verbose: int = 0,
        progress: bool = False,
        family: str = "gaussian",
    ):
        self.estimator = estimator
        self.random_effects = random_effects
        self.features = features
        self.reml = reml
        self.max_iter = max_iter
        self.tol = tol
        self.residuals = residuals
        self.cv = cv
        self.accelerate = accelerate
        self.verbose = verbose
        self.progress = progress
        self.family = family

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **MixedMLBase._parameter_constraints,
        "reml": ["boolean"],
        "progress": ["boolean"],
        "family": [StrOptions({"gaussian", "poisson"})],
    }
    _parameter_hints: ClassVar[dict[str, str]] = {
        "family": "For binary outcomes use MixedMLClassifier."
    }

    def _family(self) -> RandomPart:
        if self.family == "poisson":
            return GlmmPart("poisson")
        return GaussianPart(reml=self.reml)

    def _encode_target(self, y: Any, n: int) -> tuple[np.ndarray, dict[str, Any]]:
        if self.family == "poisson":
            Y = count_outcome(y, n, what=column_name(y))
        else:
            Y = outcome(y, n)
        return Y, {"_y_is_2d": np.ndim(y) == 2}

    def _progress_bar(self) -> Any:
        if not self.progress:
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            warn("progress=True needs tqdm (pip install tqdm)", PylmerWarning)
            return None
        return tqdm(total=self.max_iter, desc="MixedML", unit="iter")

    def _after_fit(self, X: pd.DataFrame, Y: np.ndarray) -> None:
        if self.family_ == "gaussian" and self.n_targets_ == 1:
            # honest residual variance and the intervals' calibration (pylmer.mixedml.intervals)
            from .intervals import calibrate
            from .variance import replace_residual

            self.calibration_ = calibrate(self, X, Y[:, 0])
            self.varcorr_ = replace_residual(self.varcorr_, self.calibration_.sigma2)

    def predict(
        self,
        X: pd.DataFrame,
        y: Any = None,
        *,
        interval: str | None = None,
        level: float = 0.95,
    ) -> np.ndarray | pd.DataFrame:
        """Predict :math:`f(X) + X_r\\gamma + Zb`, using observed outcomes when given.

        Parameters
        ----------
        X : DataFrame
            Same columns as in :meth:`fit`.
        y : array-like, optional
            Observed outcomes for (some of) the rows of ``X`` (NaN where unobserved).  The
            random effects are then the empirical-Bayes modes given *every* observed
            outcome, with the variance parameters and :math:`\\gamma` of the fit fixed: for
            a group seen in training, its training rows and its new rows together (a
            known patient's new visits update their trajectory); for a new group, its new
            rows.  Without ``y`` the random effects are those of the fit.  Do not pass
            the training rows again as ``y``: they are already in the fit, and would
            count twice.
        interval : {"prediction", "confidence"}, optional
            Return a DataFrame with ``estimate``, ``lower`` and ``upper`` (one Gaussian
            target): an interval for a new outcome, or for its conditional mean
            :math:`f(X) + X_r\\gamma + Zb` (:mod:`pylmer.mixedml.intervals`).
        level : float, default=0.95
            Coverage of the interval.

        Returns
        -------
        ndarray of shape (n,) or (n, k), or DataFrame
            Groups without any observed row (unseen in training, no ``y``) get the fixed
            part :math:`f(X) + X_r\\gamma`; so do rows whose grouping value is missing.
            ``family="poisson"``: expected counts.  With ``interval``: a DataFrame
            indexed like ``X``.

        Raises
        ------
        NotFittedError
            Before :meth:`fit` (also scikit-learn's ``NotFittedError``).
        DataError
            ``X`` lacks a column, ``y`` does not have one value per row, a random-slope
            covariate is missing, a feature is not numeric.

        Examples
        --------
        A known subject's later visits update their trajectory (sleepstudy: fit on days
        0-4, observe days 5-6, forecast days 7-9)::

            sleep = pylmer.datasets.load("sleepstudy")
            train, later = sleep[sleep.Days < 5], sleep[sleep.Days >= 5]
            model = MixedMLRegressor(random_effects="(Days | Subject)")
            model.fit(train[["Subject", "Days"]], train["Reaction"])
            seen = later["Reaction"].where(later.Days <= 6)      # NaN on days 7-9
            model.predict(later[["Subject", "Days"]], y=seen)    # uses days 0-6
            model.predict(later[["Subject", "Days"]], y=seen, interval="prediction")
        """
        self._check_fitted()
        n = len(X) if hasattr(X, "__len__") else 0
        Y = None
        if y is not None:
            if self.family_ == "poisson":
                Y = count_outcome(y, n, allow_nan=True)
            else:
                Y = outcome(y, n, allow_nan=True)
                if Y.shape[1] != self.n_targets_:
                    raise DataError(
                        f"y has {Y.shape[1]} target columns, the model {self.n_targets_}"
                    )
        out = self._predict_link(X, Y)
        if self.family_ == "poisson":
            out = inverse_link("poisson", out)
        if interval is not None:
            from .intervals import predict_interval

            return predict_interval(
                self,
                check_frame(X),
                out[:, 0],
                y=None if Y is None else Y[:, 0],
                interval=interval,
                level=level,
            )
        return out[:, 0] if self.n_targets_ == 1 and not self._y_is_2d else out
