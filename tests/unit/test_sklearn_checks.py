"""scikit-learn conformance of the estimators (``parametrize_with_checks``) and their
refusal of non-frames; no R (the frame types with R: tests/test_sklearn_frames.py).

The checks run with cheap settings (``max_iter=2``); none of them reaches R: every check
that would fit passes numpy arrays, which the estimators refuse before anything else (a
mixed model needs a DataFrame whose columns the formula names, a grouping column
included).  Those checks are listed below as expected failures, each with its reason;
``xfail_strict`` makes a listed check that starts to pass fail the test, so the list
cannot go stale.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

import pylmer
from pylmer import (
    GlmerClassifier,
    GlmerRegressor,
    LmerRegressor,
    MixedMLClassifier,
    MixedMLRegressor,
)

NUMPY_X = (
    "fits on a numpy array; the estimator needs a DataFrame holding the columns its "
    "formula (random_effects) names, a grouping column included, and refuses other input "
    "with a DataError naming the type"
)
SKLEARN_MESSAGE = (
    "expects scikit-learn's own error message for a bad numpy input (complex, empty, one "
    "row, one feature, NaN/inf, y=None, one class, continuous labels); the estimator refuses "
    "the numpy input itself first (DataError: needs a DataFrame)"
)
SPARSE = "fits on a sparse matrix: a mixed model's data are a DataFrame, never sparse"

# checks that fit (or predict) on a numpy array
_FIT_ON_ARRAY = [
    "check_dict_unchanged",
    "check_dont_overwrite_parameters",
    "check_dtype_object",
    "check_estimators_dtypes",
    "check_estimators_fit_returns_self",
    "check_estimators_overwrite_params",
    "check_estimators_pickle",
    "check_f_contiguous_array_estimator",
    "check_fit2d_predict1d",
    "check_fit_check_is_fitted",
    "check_fit_idempotent",
    "check_fit_score_takes_y",
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
    "check_n_features_in",
    "check_n_features_in_after_fitting",
    "check_pipeline_consistency",
    "check_positive_only_tag_during_fit",
    "check_readonly_memmap_input",
    "check_supervised_y_2d",
]
_REGRESSOR = [
    "check_regressor_data_not_an_array",
    "check_regressors_int",
    "check_regressors_no_decision_function",
    "check_regressors_train",
]
_CLASSIFIER = [
    "check_classifier_data_not_an_array",
    "check_classifiers_classes",
    "check_classifiers_train",
    "check_decision_proba_consistency",
]
_MESSAGE = [
    "check_complex_data",
    "check_estimators_empty_data_messages",
    "check_estimators_nan_inf",
    "check_fit2d_1feature",
    "check_fit2d_1sample",
    "check_requires_y_none",
]
_CLASSIFIER_MESSAGE = ["check_classifiers_one_label", "check_classifiers_regression_target"]
_SPARSE = [
    "check_estimator_sparse_array",
    "check_estimator_sparse_matrix",
    "check_estimator_sparse_tag",
]


def expected_failed_checks(estimator) -> dict[str, str]:
    """The checks that cannot apply to ``estimator``, with their reasons."""
    out = dict.fromkeys(_FIT_ON_ARRAY, NUMPY_X)
    out |= dict.fromkeys(_MESSAGE, SKLEARN_MESSAGE)
    out |= dict.fromkeys(_SPARSE, SPARSE)
    if isinstance(estimator, GlmerClassifier | MixedMLClassifier):
        out |= dict.fromkeys(_CLASSIFIER, NUMPY_X)
        out |= dict.fromkeys(_CLASSIFIER_MESSAGE, SKLEARN_MESSAGE)
    else:
        out |= dict.fromkeys(_REGRESSOR, NUMPY_X)
    if isinstance(estimator, MixedMLRegressor | MixedMLClassifier):
        out["check_non_transformer_estimators_n_iter"] = (
            f"{NUMPY_X} (it has max_iter, so the check fits to read n_iter_)"
        )
    return out


ESTIMATORS = [
    LmerRegressor("y ~ x + (1 | g)"),
    GlmerClassifier("y ~ x + (1 | g)"),
    GlmerRegressor("y ~ x + (1 | g)"),
    MixedMLRegressor(random_effects="(1 | g)", max_iter=2),
    MixedMLClassifier(random_effects="(1 | g)", max_iter=2),
]


@parametrize_with_checks(
    ESTIMATORS, expected_failed_checks=expected_failed_checks, xfail_strict=True
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_refusal_names_the_estimator_and_the_full_type(estimator):
    pl = pytest.importorskip("polars")
    with pytest.raises(pylmer.DataError, match=r"numpy\.ndarray"):
        estimator.fit(np.zeros((4, 2)), np.zeros(4))
    series = pl.Series("y", [1.0, 2.0])  # not a frame: its type printed as the user knows it
    with pytest.raises(pylmer.DataError, match=r"polars\.Series"):
        estimator.fit(series, np.zeros(2))
    if not isinstance(estimator, MixedMLRegressor | MixedMLClassifier):
        with pytest.raises(pylmer.DataError, match=type(estimator).__name__):
            estimator.fit(np.zeros((4, 2)), np.zeros(4))
