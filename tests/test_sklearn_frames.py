"""The scikit-learn wrappers with real R: polars and pyarrow frames, and the docstring
examples.  (scikit-learn's own checks, which need no R: tests/unit/test_sklearn_checks.py.)"""

from __future__ import annotations

import numpy as np
import pytest

import pylmer
from pylmer import (
    GlmerClassifier,
    GlmerRegressor,
    LmerRegressor,
    MixedMLClassifier,
    MixedMLRegressor,
)

# ---------------------------------------------------------------- frame types (R)


@pytest.mark.parametrize("kind", ["polars", "pyarrow"])
def test_lmer_regressor_accepts_polars_and_arrow(sleep, kind):
    convert = _converter(kind)
    X, y = sleep.drop(columns="Reaction"), sleep["Reaction"]
    reg = LmerRegressor("Reaction ~ Days + (Days | Subject)").fit(convert(X), y)
    ref = LmerRegressor("Reaction ~ Days + (Days | Subject)").fit(X, y)
    np.testing.assert_allclose(reg.predict(convert(X)), ref.predict(X), rtol=1e-10)
    assert list(reg.feature_names_in_) == ["Days", "Subject"]
    assert reg.score(convert(sleep)) == pytest.approx(ref.score(sleep), rel=1e-10)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", ["polars", "pyarrow"])
def test_mixedml_accepts_polars_and_arrow(sleep, kind):
    convert = _converter(kind)
    X, y = sleep[["Days", "Subject"]], sleep["Reaction"]
    ours = MixedMLRegressor(random_effects="(Days | Subject)", max_iter=5).fit(convert(X), y)
    ref = MixedMLRegressor(random_effects="(Days | Subject)", max_iter=5).fit(X, y)
    np.testing.assert_allclose(ours.predict(convert(X)), ref.predict(X), rtol=1e-8)
    labels = (sleep["Reaction"] > sleep["Reaction"].median()).to_numpy()
    clf = MixedMLClassifier(random_effects="(1 | Subject)", max_iter=3).fit(convert(X), labels)
    assert clf.predict_proba(convert(X)).shape == (len(X), 2)


def test_glmer_estimators_accept_polars(r_session):
    pl = pytest.importorskip("polars")
    data = pylmer.datasets.load("cbpp")
    data = data.assign(any_=(data["incidence"] > 0).astype(int))
    X = pl.from_pandas(data[["period", "herd"]])
    clf = GlmerClassifier("any_ ~ period + (1 | herd)").fit(X, pl.Series(data["any_"]))
    assert clf.predict_proba(X).shape == (len(data), 2)
    reg = GlmerRegressor("incidence ~ period + (1 | herd)").fit(X, data["incidence"])
    assert np.all(reg.predict(X) > 0)


@pytest.mark.filterwarnings("ignore::pylmer.errors.PylmerWarning")
@pytest.mark.parametrize(
    "obj",
    [LmerRegressor, GlmerRegressor, GlmerClassifier, MixedMLRegressor, MixedMLClassifier],
    ids=lambda o: o.__name__,
)
def test_docstring_examples_run(r_session, obj):
    import doctest

    tests = [t for t in doctest.DocTestFinder().find(obj) if t.name == obj.__name__]
    assert tests and tests[0].examples, f"{obj.__name__} has no Examples section"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(tests[0])
    assert runner.summarize(verbose=False).failed == 0


def _converter(kind: str):
    if kind == "polars":
        pl = pytest.importorskip("polars")
        return lambda df: pl.from_pandas(df.astype({"Subject": str}))
    pa = pytest.importorskip("pyarrow")
    return lambda df: pa.Table.from_pandas(df, preserve_index=False)
