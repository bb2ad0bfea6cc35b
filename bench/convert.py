"""Time pylmer's pandas <-> R conversion against rpy2's ``pandas2ri``, side by side.

Two data sets: lme4's InstEval (73,421 rows, factors with up to 2,972 levels) and a
synthetic 1,000,000 x 10 frame of mixed dtypes.  Each direction (pandas -> R and
R -> pandas) is timed as the median of a few repeats, with R's garbage collector run
before each repeat so that one conversion does not pay for the garbage of the previous
one.  Prints a markdown table (paste it into the README).

Run with ``python bench/convert.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from pylmer.r import session as _r


def synthetic(n: int = 1_000_000, seed: int = 0) -> pd.DataFrame:
    """Return an ``n`` x 10 frame of mixed dtypes with missing values.

    Parameters
    ----------
    n : int
        Number of rows.
    seed : int
        Seed of the random generator.

    Returns
    -------
    pandas.DataFrame
        Columns: float (with NaN), int, bool, category (1,000 levels), object strings
        (500 values), nullable Int64 (with NA), nullable boolean, pandas ``string``,
        float, datetime64 (with NaT).
    """
    rng = np.random.default_rng(seed)
    floats = rng.normal(size=n)
    floats[rng.random(n) < 0.01] = np.nan
    words = np.array([f"w{i:04d}" for i in range(500)], dtype=object)
    nullable = pd.array(rng.integers(-1000, 1000, n), dtype="Int64")
    nullable[rng.random(n) < 0.05] = pd.NA
    flags = pd.array(rng.random(n) < 0.5, dtype="boolean")
    flags[rng.random(n) < 0.05] = pd.NA
    stamps = pd.Series(
        pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 10**8, n), unit="s")
    )
    stamps[rng.random(n) < 0.01] = pd.NaT
    return pd.DataFrame(
        {
            "x float": floats,
            "count": rng.integers(0, 10**6, n),
            "flag": rng.random(n) < 0.3,
            "group": pd.Categorical.from_codes(
                rng.integers(0, 1000, n), [f"g{i}" for i in range(1000)]
            ),
            "word": pd.Series(words[rng.integers(0, 500, n)], dtype=object),
            "nullable": nullable,
            "nullable flag": flags,
            "label": pd.array(words[rng.integers(0, 500, n)], dtype="string"),
            "y": rng.normal(size=n),
            "when": stamps,
        }
    )


def median_time(fn: Callable[[], Any], repeats: int, before: Callable[[], Any]) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs, calling ``before()`` first."""
    times = []
    for _ in range(repeats):
        before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--their-repeats",
        type=int,
        default=1,
        help="repeats for pandas2ri on the large frame (about 90 s + 25 s per repeat)",
    )
    args = parser.parse_args(argv)

    _r.call(".pylmer_versions")  # start R
    import rpy2.robjects as ro
    from rpy2.robjects import pandas2ri

    ri = _r._state["ri"]
    conv = _r._state["convert"]
    pandas_converter = ro.default_converter + pandas2ri.converter

    def gc() -> None:
        ri.baseenv["gc"](full=True, verbose=False)

    def theirs_to_r(df: pd.DataFrame) -> Any:
        with pandas_converter.context():
            return ro.conversion.get_conversion().py2rpy(df)

    def theirs_from_r(obj: Any) -> Any:
        with pandas_converter.context():
            return ro.conversion.get_conversion().rpy2py(obj)

    inst = _r.call(".pylmer_dataset", "InstEval", "lme4")
    frames = {
        f"InstEval ({len(inst):,} x {inst.shape[1]})": inst,
        f"synthetic ({args.rows:,} x 10, mixed)": synthetic(args.rows),
    }
    rows = []
    for (label, df), their_repeats in zip(
        frames.items(), (args.repeats, args.their_repeats), strict=True
    ):
        ours_r = conv.frame_to_r(df)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs_r = theirs_to_r(df)
        back = conv.frame_from_r(ours_r)
        assert list(back.columns) == list(df.columns) and len(back) == len(df)
        timings = {
            "to R": (
                median_time(lambda df=df: conv.frame_to_r(df), args.repeats, gc),
                median_time(lambda df=df: theirs_to_r(df), their_repeats, gc),
            ),
            "to pandas": (
                median_time(lambda o=ours_r: conv.frame_from_r(o), args.repeats, gc),
                median_time(lambda o=theirs_r: theirs_from_r(o), their_repeats, gc),
            ),
        }
        for direction, (ours, theirs) in timings.items():
            rows.append((label, direction, ours, theirs))
        del ours_r, theirs_r

    print(
        f"\nrpy2 {__import__('rpy2').__version__}, pandas {pd.__version__}; median of "
        f"{args.repeats} repeats (pandas2ri on the large frame: {args.their_repeats}), "
        "R's gc() run before each repeat\n"
    )
    print("| data | direction | pylmer | rpy2 pandas2ri | speed-up |")
    print("|---|---|---:|---:|---:|")
    for label, direction, ours, theirs in rows:
        print(
            f"| {label} | {direction} | {1e3 * ours:,.1f} ms | {1e3 * theirs:,.1f} ms "
            f"| {theirs / ours:,.1f}x |"
        )


if __name__ == "__main__":
    main()
