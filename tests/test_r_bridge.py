"""Tests of the R bridge: lazy start, pandas <-> R conversion, errors, warnings, threads.

Conversions are checked on both sides: the value that comes back to pandas, and what R
sees (class, typeof, levels, NA counts from ``.pylmer_describe`` in ``bridge.R``, and
base R functions called through :func:`pylmer.r.session.call`).
"""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning

from pylmer import (
    DataError,
    FormulaError,
    PylmerError,
    RError,
    RMessage,
    RWarning,
    SingularFitWarning,
)
from pylmer.r import session as _r

LEVEL_SEP = "\x1f"


@pytest.fixture(scope="module", autouse=True)
def _r_started(r_session):
    """Every test here talks to R (see conftest.r_session)."""


def describe(data) -> pd.DataFrame:
    """What R sees of each column: class, typeof, levels, NA count (indexed by name)."""
    info = _r.call(".pylmer_describe", data)
    pairs = zip(info["nlevels"], info["levels"], strict=True)
    info["levels"] = [None if n == 0 else lv.split(LEVEL_SEP) for n, lv in pairs]
    return info.set_index("name")


def roundtrip(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Bind ``df`` in R; return (what comes back to pandas, R's description)."""
    ref = _r.bind(df)
    return _r.call(".pylmer_get", ref), describe(ref)


# ---------------------------------------------------------------- lazy start


SUBPROCESS_SCRIPT = """
import os, signal, sys, threading, time
import numpy as np
import pylmer
from pylmer.r import session as _r
print("started at import:", _r.started())
print("rpy2 modules at import:", sorted(m for m in sys.modules if m.split(".")[0] == "rpy2"))
_r.call(".pylmer_versions")
print("started after call:", _r.started())
for label, fun, args in [
    ("sleep", "Sys.sleep", (30,)),
    ("busy", "Reduce", ("sum", np.arange(10.0**7))),
]:
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
    start = time.perf_counter()
    try:
        _r.call(fun, *args)
        outcome = "not interrupted"
    except KeyboardInterrupt:
        outcome = "KeyboardInterrupt"
    seconds = time.perf_counter() - start
    print(f"{label}: {outcome} after {seconds:.1f} s; next call: {_r.call('sum', [1, 2])}")
"""


@pytest.fixture(scope="module")
def subprocess_lines() -> list[str]:
    """Run the lazy-start and interrupt checks in a fresh interpreter (one R start)."""
    proc = subprocess.run(
        [sys.executable, "-c", SUBPROCESS_SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_import_does_not_start_r(subprocess_lines):
    assert subprocess_lines[:3] == [
        "started at import: False",
        "rpy2 modules at import: []",
        "started after call: True",
    ]


@pytest.mark.parametrize("kind", ["sleep", "busy"])
def test_keyboard_interrupt_stops_r_and_session_survives(subprocess_lines, kind):
    """SIGINT during R (Sys.sleep, or a busy R loop) raises KeyboardInterrupt promptly."""
    line = next(x for x in subprocess_lines if x.startswith(f"{kind}:"))
    head, tail = line.split("; ")
    assert head.startswith(f"{kind}: KeyboardInterrupt after"), line
    assert float(head.split()[-2]) < 10, line
    assert tail == "next call: 3", line


# ---------------------------------------------------------------- dtypes


def _dt(values, **kw):
    return pd.Series(pd.to_datetime(values, **kw))


# name -> (column, R class, R typeof, R NA count, expected column back in pandas)
DTYPE_CASES = {
    "float": (
        pd.Series([1.5, np.nan, -2.0]),
        "numeric",
        "double",
        1,
        pd.Series([1.5, np.nan, -2.0]),
    ),
    "int": (
        pd.Series([1, -7, 2**31 - 1], dtype="int64"),
        "integer",
        "integer",
        0,
        pd.Series([1, -7, 2**31 - 1], dtype="int64"),
    ),
    "int32": (
        pd.Series([1, 2, 3], dtype="int32"),
        "integer",
        "integer",
        0,
        pd.Series([1, 2, 3], dtype="int64"),
    ),
    "bool": (
        pd.Series([True, False, True]),
        "logical",
        "logical",
        0,
        pd.Series([True, False, True]),
    ),
    "category": (
        pd.Series(pd.Categorical(["x", None, "x"], categories=["z", "x", "y"])),
        "factor",
        "integer",
        1,
        pd.Series(pd.Categorical(["x", None, "x"], categories=["z", "x", "y"])),
    ),
    "ordered": (
        pd.Series(pd.Categorical(["lo", "hi", None], categories=["lo", "mid", "hi"], ordered=True)),
        "ordered/factor",
        "integer",
        1,
        pd.Series(pd.Categorical(["lo", "hi", None], categories=["lo", "mid", "hi"], ordered=True)),
    ),
    "object str, None": (
        pd.Series(["b", None, "a"], dtype=object),
        "factor",
        "integer",
        1,
        pd.Series(pd.Categorical(["b", None, "a"], categories=["a", "b"])),
    ),
    "object str, NaN": (
        pd.Series(["b", np.nan, "a"], dtype=object),
        "factor",
        "integer",
        1,
        pd.Series(pd.Categorical(["b", None, "a"], categories=["a", "b"])),
    ),
    "string, pd.NA": (
        pd.Series(["q", pd.NA, "p"], dtype="string"),
        "factor",
        "integer",
        1,
        pd.Series(pd.Categorical(["q", None, "p"], categories=["p", "q"])),
    ),
    "default str": (
        pd.Series(["q", None, "p"], dtype="str"),
        "factor",
        "integer",
        1,
        pd.Series(pd.Categorical(["q", None, "p"], categories=["p", "q"])),
    ),
    "Int64, pd.NA": (
        pd.Series([1, None, -3], dtype="Int64"),
        "integer",
        "integer",
        1,
        pd.Series([1, None, -3], dtype="Int64"),
    ),
    "Float64, pd.NA": (
        pd.Series([1.25, None, 3.0], dtype="Float64"),
        "numeric",
        "double",
        1,
        pd.Series([1.25, np.nan, 3.0]),
    ),
    "boolean, pd.NA": (
        pd.Series([True, None, False], dtype="boolean"),
        "logical",
        "logical",
        1,
        pd.Series([True, None, False], dtype="boolean"),
    ),
    "object bool, None": (
        pd.Series([True, None, False], dtype=object),
        "logical",
        "logical",
        1,
        pd.Series([True, None, False], dtype="boolean"),
    ),
    "object numbers, None": (
        pd.Series([1, None, 2.5], dtype=object),
        "numeric",
        "double",
        1,
        pd.Series([1.0, np.nan, 2.5]),
    ),
    "datetime, NaT": (
        _dt(["2020-01-01 12:00:00.25", None, "1960-06-01"], format="ISO8601"),
        "POSIXct/POSIXt",
        "double",
        1,
        _dt(["2020-01-01 12:00:00.25", None, "1960-06-01"], format="ISO8601"),
    ),
    "datetime ns": (
        _dt(["2020-01-01", None]).dt.as_unit("ns"),
        "POSIXct/POSIXt",
        "double",
        1,
        _dt(["2020-01-01", None]),
    ),
    "datetime tz": (
        _dt(["2020-01-01 00:30", None]).dt.tz_localize("Europe/Paris"),
        "POSIXct/POSIXt",
        "double",
        1,
        _dt(["2020-01-01 00:30", None]).dt.tz_localize("Europe/Paris"),
    ),
    "all missing": (
        pd.Series([None, None], dtype=object),
        "factor",
        "integer",
        2,
        pd.Series(pd.Categorical([None, None], categories=pd.Index([], dtype=object))),
    ),
}


@pytest.mark.parametrize("case", list(DTYPE_CASES))
def test_dtype_roundtrip(case):
    column, rclass, rtype, n_na, expected = DTYPE_CASES[case]
    back, info = roundtrip(pd.DataFrame({"col": column}))
    row = info.loc["col"]
    assert (row["class"], row["typeof"], row["n_na"], row["nrow"]) == (
        rclass,
        rtype,
        n_na,
        len(column),
    )
    assert list(back.columns) == ["col"]
    got = back["col"]
    if isinstance(expected.dtype, pd.DatetimeTZDtype | np.dtypes.DateTime64DType):
        expected = expected.dt.as_unit("us")
    if isinstance(expected.dtype, pd.CategoricalDtype):
        assert list(got.cat.categories) == list(expected.cat.categories)
        assert got.cat.ordered == expected.cat.ordered
        assert row["levels"] == (list(expected.cat.categories) or None)
    pd.testing.assert_series_equal(got, expected, check_names=False, check_categorical=False)


def test_factor_levels_order_and_unused_levels_kept():
    cats = ["zeta", "alpha", "mu", "unused", "é"]
    col = pd.Categorical(["mu", "zeta", "mu", None], categories=cats)
    back, info = roundtrip(pd.DataFrame({"g": col}))
    assert info.loc["g", "levels"] == cats
    assert list(_r.call("levels", col)) == cats  # base R sees the same levels
    assert list(_r.call("as.integer", col)[:3]) == [3, 1, 3]  # 1-based codes in that order
    assert list(back["g"].cat.categories) == cats
    assert back["g"].isna().tolist() == [False, False, False, True]


def test_non_string_categories_become_string_levels():
    col = pd.Categorical([3, 1, 3], categories=[3, 2, 1])
    back, info = roundtrip(pd.DataFrame({"g": col}))
    assert info.loc["g", "levels"] == ["3", "2", "1"]
    assert back["g"].astype(str).tolist() == ["3", "1", "3"]


def test_na_values_are_r_na():
    """NaN, None, pd.NA and NaT are R's NA (is.na and not is.nan)."""
    for col in (
        [1.0, np.nan],
        pd.array([1.0, None], dtype="Float64"),
        pd.array([1, pd.NA], dtype="Int64"),
        pd.to_datetime(["2020-01-01", None]),
    ):
        assert _r.call("is.na", pd.Series(col)).tolist() == [False, True]
    assert _r.call("is.nan", pd.Series([1.0, np.nan])).tolist() == [False, False]


def test_datetime_values_in_r():
    stamps = pd.Series(pd.to_datetime(["1970-01-01 00:00:01", "2000-03-01 12:00:00"]))
    assert _r.call("as.numeric", stamps).tolist() == [1.0, 951912000.0]
    assert _r.call("format", stamps, "%Y-%m-%d %H:%M:%S", tz="UTC").tolist() == [
        "1970-01-01 00:00:01",
        "2000-03-01 12:00:00",
    ]
    far = pd.Series(pd.to_datetime(["3000-01-01"]))
    back, _ = roundtrip(pd.DataFrame({"t": far}))
    assert back["t"].iloc[0] == pd.Timestamp("3000-01-01")


# ---------------------------------------------------------------- shapes and names


@pytest.mark.parametrize("shape", [(0, 3), (4, 0), (0, 0)])
def test_empty_frames(shape):
    nrow, ncol = shape
    df = pd.DataFrame(
        {
            "x": np.arange(nrow, dtype=float),
            "g": pd.Categorical(["a"] * nrow, categories=["a", "b"]),
            "s": pd.Series(["s"] * nrow, dtype=object),
        },
        index=range(nrow),
    ).iloc[:, :ncol]
    back, info = roundtrip(df)
    assert back.shape == shape
    assert list(back.columns) == list(df.columns)
    assert _r.call("dim", df).tolist() == [nrow, ncol]
    if ncol:
        assert info["class"].tolist() == ["numeric", "factor", "factor"]
        assert info.loc["g", "levels"] == ["a", "b"]
        assert back["x"].dtype == np.float64
        assert list(back["g"].cat.categories) == ["a", "b"]


ODD_NAMES = ["a b", "x.y", "é ü", "2nd", "if", "TRUE", "function", "NA", "_", "(y)"]


def test_odd_column_names_arrive_unchanged():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({name: rng.normal(size=5) for name in ODD_NAMES})
    back, info = roundtrip(df)
    assert list(info.index) == ODD_NAMES
    assert _r.call("names", df).tolist() == ODD_NAMES
    assert list(back.columns) == ODD_NAMES
    np.testing.assert_array_equal(back.to_numpy(), df.to_numpy())


def test_formula_can_refer_to_odd_names():
    rng = np.random.default_rng(2)
    n = 40
    df = pd.DataFrame(
        {
            "y value": rng.normal(size=n),
            "if": rng.normal(size=n),
            "TRUE": rng.normal(size=n),
            "2nd.é": rng.normal(size=n),
        }
    )
    fit = _r.call("lm", "`y value` ~ `if` + `TRUE` + `2nd.é`", data=df)
    assert isinstance(fit, _r.RObject) and "lm" in fit.rclass
    coef = _r.call("coef", fit)
    design = np.column_stack([np.ones(n), df["if"], df["TRUE"], df["2nd.é"]])
    expected, *_ = np.linalg.lstsq(design, df["y value"].to_numpy(), rcond=None)
    assert list(coef.index) == ["(Intercept)", "`if`", "`TRUE`", "`2nd.é`"]
    np.testing.assert_allclose(coef.to_numpy(), expected, rtol=1e-10)


def test_duplicate_column_names_raise():
    df = pd.DataFrame([[1, 2, 3]], columns=["a", "b", "a"])
    with pytest.raises(DataError, match="'a'"):
        _r.bind(df)


@pytest.mark.parametrize(
    "values",
    [[1, "a", 2.5], ["a", b"bytes"], [pd.Timestamp("2020-01-01"), "a"], [{"a": 1}, "b"]],
)
def test_mixed_object_column_raises_naming_the_column(values):
    df = pd.DataFrame({"fine": range(len(values)), "messy col": pd.Series(values, dtype=object)})
    with pytest.raises(DataError, match="messy col"):
        _r.bind(df)


def test_unsupported_dtype_raises_naming_the_column():
    df = pd.DataFrame({"span": pd.to_timedelta([1, 2], unit="s")})
    with pytest.raises(DataError, match="span"):
        _r.bind(df)


# ---------------------------------------------------------------- integer ranges


@pytest.mark.parametrize(
    ("values", "rtype"),
    [
        ([-(2**31) + 1, 2**31 - 1], "integer"),  # the full int32 range except R's NA
        ([-(2**31), 0], "double"),  # -2**31 is NA_integer_ in R: must not become NA
        ([2**31, 1], "double"),
        ([2**53, -(2**53)], "double"),
    ],
)
def test_int64_range(values, rtype):
    df = pd.DataFrame({"n": np.array(values, dtype=np.int64)})
    back, info = roundtrip(df)
    assert info.loc["n", "typeof"] == rtype
    assert info.loc["n", "n_na"] == 0
    assert [int(v) for v in back["n"]] == values  # exact, no wrap
    # R agrees on the values (compared exactly in R: as.character(.. digits) is exact)
    assert [s.strip() for s in _r.call("format", df["n"], digits=17, scientific=False)] == [
        str(v) for v in values
    ]


def test_nullable_int64_beyond_int32_keeps_na():
    df = pd.DataFrame({"n": pd.array([2**40, None, -(2**31)], dtype="Int64")})
    back, info = roundtrip(df)
    assert (info.loc["n", "typeof"], info.loc["n", "n_na"]) == ("double", 1)
    assert back["n"].iloc[0] == 2**40 and np.isnan(back["n"].iloc[1])
    assert back["n"].iloc[2] == -(2**31)


@pytest.mark.parametrize("value", [2**53 + 1, -(2**53) - 1, 2**62])
def test_int64_beyond_2_53_raises_naming_the_column(value):
    df = pd.DataFrame({"ok": [1, 2], "big id": np.array([1, value], dtype=np.int64)})
    with pytest.raises(DataError, match="big id"):
        _r.bind(df)
    with pytest.raises(DataError, match="big id"):
        _r.bind(pd.DataFrame({"big id": pd.array([value, None], dtype="Int64")}))


# ---------------------------------------------------------------- property test

_LEVELS = ["a", "b b", "é", "NA", ""]


@st.composite
def frames(draw):
    n = draw(st.integers(0, 12))
    ncol = draw(st.integers(1, 6))
    kinds = draw(
        st.lists(
            st.sampled_from(["float", "int", "bool", "cat", "str", "Int64", "boolean", "time"]),
            min_size=ncol,
            max_size=ncol,
        )
    )
    missing = st.lists(st.booleans(), min_size=n, max_size=n)
    data = {}
    for i, kind in enumerate(kinds):
        name = f"{kind} {i}"
        if kind == "float":
            vals = draw(
                st.lists(
                    st.floats(allow_nan=True, allow_infinity=True, width=64),
                    min_size=n,
                    max_size=n,
                )
            )
            data[name] = pd.Series(vals, dtype=np.float64)
        elif kind == "int":
            vals = draw(st.lists(st.integers(-(2**31) + 1, 2**31 - 1), min_size=n, max_size=n))
            data[name] = pd.Series(vals, dtype=np.int64)
        elif kind == "bool":
            data[name] = pd.Series(
                draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool
            )
        elif kind == "cat":
            cats = draw(st.permutations(_LEVELS))
            vals = draw(st.lists(st.sampled_from([*cats, None]), min_size=n, max_size=n))
            ordered = draw(st.booleans())
            data[name] = pd.Categorical(vals, categories=cats, ordered=ordered)
        elif kind == "str":
            vals = draw(st.lists(st.sampled_from([*_LEVELS, None]), min_size=n, max_size=n))
            data[name] = pd.Series(vals, dtype=object)
        elif kind == "Int64":
            vals = draw(st.lists(st.integers(-(2**40), 2**40), min_size=n, max_size=n))
            arr = pd.array(vals, dtype="Int64")
            arr[np.array(draw(missing), dtype=bool)] = pd.NA
            data[name] = arr
        elif kind == "boolean":
            arr = pd.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype="boolean")
            arr[np.array(draw(missing), dtype=bool)] = pd.NA
            data[name] = arr
        else:
            secs = draw(st.lists(st.integers(-(10**10), 10**10), min_size=n, max_size=n))
            stamps = pd.Series(pd.to_datetime(secs, unit="s")).dt.as_unit("us")
            stamps[np.array(draw(missing), dtype=bool)] = pd.NaT
            data[name] = stamps
    return pd.DataFrame(data, index=range(n))


def _expected(col: pd.Series) -> pd.Series:
    """What a column looks like after a trip through R."""
    if col.dtype == object:
        present = col.dropna()
        return pd.Series(pd.Categorical(col, categories=sorted(set(present))))
    if isinstance(col.dtype, pd.Int64Dtype):
        has_na = bool(col.isna().any())
        big = bool((col.dropna().abs() > 2**31 - 1).any())
        if big:
            return col.astype("Float64").astype(np.float64)
        return col if has_na else col.astype(np.int64)
    if isinstance(col.dtype, pd.BooleanDtype):
        return col if col.isna().any() else col.astype(bool)
    return col


@settings(max_examples=60, deadline=None)
@given(frames())
def test_roundtrip_property(df):
    back, info = roundtrip(df)
    assert list(back.columns) == list(df.columns)
    assert len(back) == len(df)
    assert info["n_na"].tolist() == [int(df[c].isna().sum()) for c in df.columns]
    for name in df.columns:
        expected = _expected(df[name]).reset_index(drop=True)
        got = back[name]
        if isinstance(expected.dtype, pd.CategoricalDtype):
            assert list(got.cat.categories) == list(expected.cat.categories)
            assert got.cat.ordered == expected.cat.ordered
        pd.testing.assert_series_equal(
            got, expected, check_names=False, check_categorical=False, check_dtype=False
        )
        assert got.dtype.kind == expected.dtype.kind or got.dtype == expected.dtype


# ---------------------------------------------------------------- errors


def test_r_error_becomes_rerror_with_r_message():
    with pytest.raises(RError) as info:
        _r.call("stop", "boom: ünïcode")
    assert info.value.r_message == "boom: ünïcode"
    assert "boom" in str(info.value)
    assert isinstance(info.value, PylmerError)


def test_r_error_from_base_function_keeps_message_and_call():
    with pytest.raises(RError, match="non-numeric argument") as info:
        _r.call("sqrt", "a")
    assert "sqrt" in info.value.call


def test_unknown_helper_is_an_rerror():
    with pytest.raises(RError, match="no_such_helper"):
        _r.call("no_such_helper", 1)


def test_error_with_big_data_argument_stays_short():
    df = pd.DataFrame({"x": np.arange(200_000.0), "g": pd.Categorical(["a", "b"] * 100_000)})
    start = time.perf_counter()
    with pytest.raises(RError, match="non-numeric-alike variable") as info:
        _r.call("sqrt", df)  # Math.data.frame() fails on the factor
    assert info.value.call == "Math.data.frame(`<value>`)"  # the data are not deparsed
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize(("kind", "cls"), [("formula", FormulaError), ("data", DataError)])
def test_pylmer_stop_maps_to_error_class(kind, cls):
    with pytest.raises(cls, match="bad term `z`") as info:
        _r.call(".pylmer_stop", kind, "bad term ", "`z`")
    assert not isinstance(info.value, RError)


def test_session_usable_after_errors():
    for _ in range(3):
        with pytest.raises(RError):
            _r.call("stop", "again")
        with pytest.raises(DataError):
            _r.call(".pylmer_stop", "data", "x")
    assert _r.call("sum", [1, 2, 3]) == 6
    back, _ = roundtrip(pd.DataFrame({"x": [1.0, 2.0]}))
    assert back["x"].tolist() == [1.0, 2.0]


# ---------------------------------------------------------------- warnings and output


def test_warnings_and_messages_become_python_warnings(capfd):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # one R call that raises a warning and then prints a message
        value = _r.call("lapply", ["warning", "message"], "do.call", {"": "R says hi"})
    assert [type(w.message) for w in caught] == [RWarning, RMessage]
    assert [str(w.message) for w in caught] == ["R says hi", "R says hi"]
    assert value == ["R says hi", None]
    out, err = capfd.readouterr()
    assert out == "" and err == ""


@pytest.mark.parametrize(
    ("fun", "text", "cls"),
    [
        (
            "warning",
            "Model failed to converge with max|grad| = 0.0123 (tol = 0.002)",
            ConvergenceWarning,
        ),
        ("warning", "Model is nearly unidentifiable: very large eigenvalue", ConvergenceWarning),
        ("message", "boundary (singular) fit: see help('isSingular')", SingularFitWarning),
        ("warning", "boundary (singular) fit: see help('isSingular')", SingularFitWarning),
    ],
)
def test_lme4_warnings_are_classified(fun, text, cls, capfd):
    with pytest.warns(cls) as record:
        _r.call(fun, text)
    assert str(record[0].message) == text
    assert capfd.readouterr() == ("", "")


def test_call_with_conditions_returns_texts():
    with pytest.warns(RWarning):
        value, texts = _r.call_with_conditions("warning", "careful")
    assert value == "careful" and texts == ["careful"]


def test_r_console_output_is_not_printed(capfd):
    _r.call("print", pd.DataFrame({"x": [1.0, 2.0]}))
    _r.call("cat", "to stdout\n")
    _r.call("cat", "to stderr\n", file=_r.call("stderr"))
    assert capfd.readouterr() == ("", "")


# ---------------------------------------------------------------- data references


def test_bound_data_is_released_with_its_ref():
    ref = _r.bind(pd.DataFrame({"x": [1.0]}))
    name = ref.name
    assert _r.call(".pylmer_get", name)["x"].tolist() == [1.0]
    del ref
    gc.collect()
    with pytest.raises(RError, match="not found"):
        _r.call(".pylmer_get", name)


# ---------------------------------------------------------------- threads


def test_threads_get_correct_results():
    def work(k: int) -> list[tuple[float, float]]:
        results = []
        for i in range(15):
            x = np.full(1000 + k, float(k * 100 + i))
            df = pd.DataFrame({"x": x, "g": pd.Categorical([f"t{k}"] * len(x))})
            ref = _r.bind(df)
            total = _r.call("sum", x)
            info = describe(ref)
            assert info.loc["g", "levels"] == [f"t{k}"]
            assert info.loc["x", "nrow"] == len(x)
            results.append((total, x.sum()))
        return results

    with ThreadPoolExecutor(4) as pool:
        for results in pool.map(work, range(4)):
            for got, expected in results:
                assert got == expected


def test_r_calls_wait_for_the_lock():
    done = threading.Event()

    def worker():
        _r.call("sum", [1, 2])
        done.set()

    with _r.lock:
        thread = threading.Thread(target=worker)
        thread.start()
        time.sleep(0.3)
        assert not done.is_set(), "an R call ran without holding the lock"
    thread.join(10)
    assert done.is_set()
