"""No reference leaks at the boundary with R (issue 22).

rpy2 3.5's ``SexpVector.memoryview()`` returned ``None`` from C without a reference:
every R vector read removed one reference to ``None`` (-33 per lmer fit) until, after
~1,770 fits, the interpreter aborted with "deallocating None".  A leak of that kind
shows as a falling refcount of an immortal-looking singleton, so these tests count the
references to ``None``, ``True``, ``False``, ``Ellipsis`` and small ints before and
after many operations that cross to R and back (after a warm-up and ``gc.collect()``).
"""

from __future__ import annotations

import gc
import sys
import warnings

import numpy as np
import pytest

import pylmer
from pylmer.r import session as _r

SINGLETONS = {"None": None, "True": True, "False": False, "Ellipsis": ..., "0": 0, "1": 1, "2": 2}
ROUNDS = 10
#: Caches filled and emptied along the way (pandas', scikit-learn's, the warnings
#: registry) move these counts by a few either way, not in proportion to the work: a
#: leak of the old kind moved None by -33 per lmer fit (-1,650 over these 50 fits).
SLACK = 10


def _unchanged(drift: dict[str, int]) -> bool:
    return all(abs(v) <= SLACK for v in drift.values())


def _counts() -> dict[str, int]:
    gc.collect()
    return {k: sys.getrefcount(v) for k, v in SINGLETONS.items()}


def _drift(work, rounds: int = ROUNDS) -> dict[str, int]:
    """Refcount change of each singleton over ``rounds`` calls of ``work(i)``, after two
    warm-up calls.  The counts are read into one dict each, built the same way, so the
    measurement itself holds the same references at both ends."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        work(-1)
        work(-2)
        before = _counts()
        for i in range(rounds):
            work(i)
        del i
        after = _counts()
    return {k: after[k] - before[k] for k in SINGLETONS}


@pytest.fixture(scope="module")
def data(r_session):
    sleep = pylmer.datasets.load("sleepstudy")
    cbpp = pylmer.datasets.load("cbpp")
    one = sleep[sleep["Subject"] == "308"].copy()
    one["Subject"] = one["Subject"].cat.remove_unused_categories()
    return sleep, cbpp, one


def test_fits_predictions_and_errors_keep_refcounts(data):
    """50 lmer fits with predictions, 10 glmer fits with predictions and emmeans, 20
    failing fits (a formula error and an R error), sequential bootstrap and lmer_many."""
    sleep, cbpp, one = data
    many = sleep.assign(y1=sleep["Reaction"] * 2, y2=sleep["Reaction"] + 1)

    def work(i: int) -> None:
        for _ in range(5):
            m = pylmer.lmer("Reaction ~ Days + (Days | Subject)", sleep)
            m.predict(sleep)
            m.fixef  # noqa: B018  (the summary crosses from R)
        g = pylmer.glmer(
            "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial"
        )
        g.predict(cbpp)
        pylmer.emmeans(g, "period", pairwise=True)
        with pytest.raises(pylmer.FormulaError):
            pylmer.lmer("Reaction ~ Nope + (1 | Subject)", sleep)
        with pytest.raises(pylmer.PylmerError):
            pylmer.lmer("Reaction ~ Days + (1 | Subject)", one)
        pylmer.bootstrap(m, nsim=2, seed=i + 10)
        pylmer.lmer_many("~ Days + (1 | Subject)", many, ["y1", "y2"])
        pylmer.datasets.load("sleepstudy")
        _r.call("identity", 1.0)

    held = _r.held()
    drift = _drift(work)
    assert _unchanged(drift), drift
    assert _r.held() == held  # every model of the loop released in R


def test_mixedml_fits_lose_no_reference(data):
    """10 MixedML fits (3 lme4 steps each) with predictions.

    pandas 3.1's hash table for object arrays (``pd.unique``, ``pd.factorize`` of an
    object array, used by MixedML's group coding) *adds* one reference to ``None`` per
    distinct value and never drops it; a growing count is harmless (``None`` is never
    freed), a falling one aborts the process.  So ``None`` may grow here; nothing falls.
    """
    from sklearn.linear_model import Ridge

    sleep, _, _ = data
    X, y = sleep[["Days", "Subject"]].copy(), sleep["Reaction"].to_numpy()

    def work(i: int) -> None:
        est = pylmer.MixedMLRegressor(
            Ridge(), random_effects="(1 | Subject)", max_iter=3, tol=1e-12
        ).fit(X, y + i)
        est.predict(X)

    held = _r.held()
    drift = _drift(work)
    assert drift.pop("None") >= -SLACK, drift
    assert _unchanged(drift), drift
    assert _r.held() == held


def test_r_calls_that_read_vectors_keep_refcounts(r_session):
    """The smallest case of the old defect: -2 per ``call("identity", 1.0)``."""

    def work(i: int) -> None:
        for _ in range(20):
            _r.call("identity", 1.0)
            _r.call("identity", np.arange(5))
            _r.call("identity", {"a": [1.0, 2.0], "b": "x", "c": True})

    drift = _drift(work)
    assert _unchanged(drift), drift
