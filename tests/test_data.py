"""Data as users pass it: frame types, unused columns, group labels, the model's own copy.

Reference values come from plain R on this machine (``tests/reference.R`` through
``tests/_refcache.py``); the label tests compare a model fitted with integer / float /
huge group ids with the same model fitted with R's own text levels.
"""

from __future__ import annotations

import copy
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from _refcache import reference

import pylmer
from pylmer import DataError, DataWarning, lmer

SLEEP = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module", autouse=True)
def _r(r_session):
    """Every test here fits with R."""


@pytest.fixture(scope="module")
def plain_r() -> dict:
    return reference("reference.R", "sleepstudy_reml")


def _estimates(ref: dict) -> list[float]:
    return ref["fixef"]["columns"]["estimate"]


# ------------------------------------------------------------------ frame types


def test_polars_and_arrow_frames_fit_like_pandas(sleep, plain_r):
    pl = pytest.importorskip("polars", reason="polars is a dev extra")
    pa = pytest.importorskip("pyarrow", reason="pyarrow is a dev extra")
    frame = sleep.assign(Subject=sleep["Subject"].astype(str))
    for data in (pl.from_pandas(frame), pa.Table.from_pandas(frame)):
        m = lmer(SLEEP, data)
        np.testing.assert_allclose(m.fixef_wald["estimate"], _estimates(plain_r), rtol=1e-6)
        assert list(m.ranef["Subject"].index[:2]) == ["308", "309"]


def test_other_objects_are_refused_with_what_to_pass(sleep):
    with pytest.raises(DataError, match=r"polars DataFrame or a pyarrow Table, not builtins\.dict"):
        lmer(SLEEP, sleep.to_dict())


# ------------------------------------------------------------------ only the model's columns


def test_unused_columns_do_not_cross(sleep, plain_r):
    odd = sleep.assign(
        lag=pd.to_timedelta(np.arange(len(sleep)), unit="s"),
        z=np.arange(len(sleep)) * (1 + 1j),
        mixed=[1, "a", 2.5] * (len(sleep) // 3),
    )
    m = lmer(SLEEP, odd)
    np.testing.assert_allclose(m.fixef_wald["estimate"], _estimates(plain_r), rtol=1e-6)
    assert list(m.data.columns) == ["Reaction", "Days", "Subject"]


def test_used_column_of_a_type_r_cannot_hold_is_named(sleep):
    with pytest.raises(DataError, match="column 'lag'"):
        lmer("Reaction ~ Days + lag + (1 | Subject)", sleep.assign(lag=pd.to_timedelta(1, "s")))


def test_weights_column_is_kept(sleep):
    m = lmer(SLEEP, sleep.assign(w=1.0, unused="x"), weights="w")
    assert list(m.data.columns) == ["Reaction", "Days", "Subject", "w"]


# ------------------------------------------------------------------ group labels


@pytest.mark.parametrize(
    "convert",
    [
        lambda s: s.astype(np.int64),
        lambda s: s.astype(np.int64) * 10**12,
        lambda s: s.astype(float),
        lambda s: s.astype(float) + 0.5,
        lambda s: pd.Categorical(s.astype(np.int64)),
    ],
    ids=["int", "int_beyond_2_31", "float_integral", "float", "categorical_int"],
)
def test_group_results_are_indexed_by_the_python_values(sleep, plain_r, convert):
    values = convert(sleep["Subject"].astype(str).astype(np.int64))
    m = lmer(SLEEP, sleep.assign(Subject=values))
    expected = pd.Series(values).drop_duplicates().sort_values().tolist()
    for table in (m.ranef["Subject"], m.ranef_sd["Subject"], m.coef["Subject"]):
        assert table.index.tolist() == expected
        first = table.loc[expected[0]]  # a lookup by the Python value works
        assert np.isfinite(first).all()
    # the same numbers as plain R's fit with text levels (sorted the same way)
    ref = plain_r["ranef"]["Subject"]["columns"]
    np.testing.assert_allclose(m.ranef["Subject"]["Days"], ref["Days"], rtol=1e-6)
    # new data with the same values are recognised as the same groups
    np.testing.assert_allclose(
        m.predict(sleep.assign(Subject=values).head(20)), m.fitted.head(20), rtol=1e-12
    )


def test_text_that_reads_as_numbers_warns_naming_the_column(sleep):
    text = sleep.assign(dose=[f"0,{i % 7 + 1}" for i in range(len(sleep))])
    with pytest.warns(DataWarning, match="column 'dose' holds text that reads as numbers"):
        lmer("Reaction ~ dose + (1 | Subject)", text)


def test_factor_with_a_level_per_row_warns(sleep):
    ids = sleep.assign(row=[f"r{i}" for i in range(len(sleep))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lme4's rank-deficiency message
        with pytest.warns(DataWarning, match="column 'row' is used as a factor with as many"):
            try:
                lmer("Reaction ~ row + (1 | Subject)", ids)
            except pylmer.PylmerError:
                pass  # lme4 may refuse the fit; the warning came first


# ------------------------------------------------------------------ the model's own data


def test_model_keeps_its_own_copy(sleep):
    data = sleep.copy()
    m = lmer(SLEEP, data)
    before = m.predict(sleep.head(5)).to_numpy()
    data["Reaction"] *= 100  # the caller mutates their frame
    restored = pickle.loads(pickle.dumps(m))
    np.testing.assert_allclose(restored.predict(sleep.head(5)), before, rtol=1e-10)
    np.testing.assert_allclose(copy.deepcopy(m).predict(sleep.head(5)), before, rtol=1e-10)


def test_restored_model_that_does_not_reproduce_its_fit_raises(sleep):
    m = lmer(SLEEP, sleep)
    state = pickle.loads(pickle.dumps(m))
    state.data = state.data.assign(Reaction=state.data["Reaction"] * 2)  # stored fit is stale
    with pytest.raises(pylmer.RError, match="does not reproduce its stored fit"):
        state.predict(sleep.head(3))


# ------------------------------------------------------------------ R session hygiene


def test_users_own_rpy2_output_is_not_swallowed(sleep, capfd):
    lmer(SLEEP, sleep)  # pylmer's call collects R's console output ...
    import rpy2.rinterface as ri

    ri.baseenv["print"](ri.StrSexpVector(["hello from the user's R"]))
    assert "hello from the user's R" in capfd.readouterr().out  # ... and gives it back


def test_r_objects_are_released_under_the_lock(sleep):
    import gc
    import threading

    from pylmer.r import session as _r

    models = [lmer(SLEEP, sleep) for _ in range(3)]
    keys = [m._handle.key for m in models]
    assert all(k in _r._objects for k in keys)
    worker = threading.Thread(target=models.clear)  # the last references die in a thread
    worker.start()
    worker.join()
    gc.collect()
    assert all(k in _r._objects for k in keys)  # not released outside R's lock ...
    _r.call(".pylmer_versions")
    assert not any(k in _r._objects for k in keys)  # ... but at the next call, under it


def test_starting_r_leaves_the_library_path_alone(sleep):
    """R's start-up prepends its library directories to LD_LIBRARY_PATH; worker processes
    started later would inherit them (and load the system's libpython): pylmer restores it."""
    import os

    lmer(SLEEP, sleep)
    assert "/R/lib" not in os.environ.get("LD_LIBRARY_PATH", "")


def test_predict_rows_missing_a_factor_value_are_nan(sleep):
    """lme4 1.1-31 fails with "non-conformable arguments" on such rows; pylmer gives NaN
    there and lme4's predictions on the other rows."""
    data = sleep.assign(grp=np.where(sleep["Days"] < 5, "early", "late"))
    m = lmer("Reaction ~ grp + (1 | Subject)", data)
    nd = data.head(3).copy()
    nd.loc[nd.index[1], "grp"] = None
    for random in (True, False):
        got = m.predict(nd, include_random=random)
        assert np.isnan(got.iloc[1])
        full = m.predict(data.head(3), include_random=random)
        np.testing.assert_allclose(got.iloc[[0, 2]], full.iloc[[0, 2]], rtol=1e-12)
