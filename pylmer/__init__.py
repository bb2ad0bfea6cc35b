"""pylmer: lme4's linear mixed models from Python, and random effects for any regressor."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import datasets
from .compare import compare, cross_validate
from .errors import (
    DataError,
    DataWarning,
    FormulaError,
    InvalidArgumentError,
    PylmerError,
    RError,
    RMessage,
    RNotAvailableError,
    RWarning,
    SingularFitWarning,
)
from .inference import emmeans
from .models.glmer import GlmerModel, glmer
from .models.glmmtmb import GlmmTMBModel, glmmtmb
from .models.influence import InfluenceResult, cooks_distance, hatvalues, influence
from .models.lmer import LmerControl, LmerModel, anova, lmer
from .models.nlmer import NlmerModel, nlmer
from .parallel import LmerManyResults, bootstrap, lmer_many
from .power import PowerResult, power, power_curve

if TYPE_CHECKING:
    from .errors import LmerConvergenceWarning, NotFittedError
    from .estimators import GlmerClassifier, GlmerRegressor, LmerRegressor
    from .mixedml import MixedMLClassifier, MixedMLRegressor

#: names resolved on first use: they import scikit-learn (1.3 s, 60 MB), which users
#: of lmer/glmer alone never need
_LAZY = {
    "GlmerClassifier": "estimators",
    "GlmerRegressor": "estimators",
    "LmerRegressor": "estimators",
    "MixedMLClassifier": "mixedml",
    "MixedMLRegressor": "mixedml",
    "LmerConvergenceWarning": "errors",
    "NotFittedError": "errors",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
