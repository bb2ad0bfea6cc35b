"""pylmer: lme4's linear mixed models from Python, and random effects for any regressor."""

from __future__ import annotations

from . import datasets
from .compare import compare, cross_validate
from .errors import (
    DataError,
    DataWarning,
    FormulaError,
    InvalidArgumentError,
    LmerConvergenceWarning,
    NotFittedError,
    PylmerError,
    RError,
    RMessage,
    RNotAvailableError,
    RWarning,
    SingularFitWarning,
)
from .estimators import GlmerClassifier, GlmerRegressor, LmerRegressor
from .inference import emmeans
from .mixedml import MixedMLClassifier, MixedMLRegressor
from .models.glmer import GlmerModel, glmer
from .models.glmmtmb import GlmmTMBModel, glmmtmb
from .models.influence import InfluenceResult, cooks_distance, hatvalues, influence
from .models.lmer import LmerControl, LmerModel, anova, lmer
from .models.nlmer import NlmerModel, nlmer
from .parallel import LmerManyResults, bootstrap, lmer_many
from .power import PowerResult, power, power_curve

__version__ = "0.1.0"


def versions() -> dict[str, str | None]:
    """Return the versions of pylmer, Python, R, lme4, lmerTest and rpy2, and the BLAS
    library R uses (starts R).

    Returns
    -------
    dict
        Keys ``pylmer``, ``python``, ``R``, ``lme4``, ``blas``, ``lmerTest``, ``rpy2``.
    """
    import platform
    from importlib.metadata import version

    from .r import session as _r

    return {
        "pylmer": __version__,
        "python": platform.python_version(),
        **_r.r_versions(),
        "rpy2": version("rpy2"),
    }


__all__ = [
    "DataError",
    "DataWarning",
    "FormulaError",
    "GlmerClassifier",
    "GlmerModel",
    "GlmerRegressor",
    "GlmmTMBModel",
    "InfluenceResult",
    "InvalidArgumentError",
    "LmerControl",
    "LmerConvergenceWarning",
    "LmerManyResults",
    "LmerModel",
    "LmerRegressor",
    "MixedMLClassifier",
    "MixedMLRegressor",
    "NlmerModel",
    "NotFittedError",
    "PowerResult",
    "PylmerError",
    "RError",
    "RMessage",
    "RNotAvailableError",
    "RWarning",
    "SingularFitWarning",
    "__version__",
    "anova",
    "bootstrap",
    "compare",
    "cooks_distance",
    "cross_validate",
    "datasets",
    "emmeans",
    "glmer",
    "glmmtmb",
    "hatvalues",
    "influence",
    "lmer",
    "lmer_many",
    "nlmer",
    "power",
    "power_curve",
    "versions",
]
