"""MixedML: random effects on top of any scikit-learn regressor.

* :mod:`.engine` -- the EM loop in numpy (state, plain step, SQUAREM, stopping rule,
  driver), testable without R;
* :mod:`.lme4_step` -- the random-effects step with lme4 (the residual model);
* :mod:`.glmm_step` -- the glmer random-effects step (binary and count targets);
* :mod:`.base` -- :class:`~.base.MixedMLBase`: parameters, checks, the EM-running fit
  and predict plumbing, shared by
* :mod:`.estimator` -- :class:`MixedMLRegressor` (Gaussian, or Poisson counts) and
* :mod:`.classifier` -- :class:`MixedMLClassifier` (binary outcomes).
"""

from __future__ import annotations

from .classifier import MixedMLClassifier
from .estimator import MixedMLRegressor

__all__ = ["MixedMLClassifier", "MixedMLRegressor"]
