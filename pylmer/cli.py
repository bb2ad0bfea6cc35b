"""The ``pylmer`` command line.

::

    pylmer fit DATA.csv "y ~ x + (1|g)" [--ml] [--out DIR]
    pylmer predict DATA.csv "y ~ x + (1|g)" --newdata NEW.csv [--population] [--out FILE]
    pylmer mixedml DATA.csv --target y --random "(1|g)" [--estimator random_forest]
    pylmer datasets [NAME] [--out FILE]
    pylmer validate DATA.csv "y ~ x + (1|g)" [--ml] [--tol 1e-6]

Global flags go before or after the command (``pylmer -q fit ...``).  The validation
library behind ``validate`` is :mod:`pylmer.validate`.
CSV files are read with :func:`pandas.read_csv`; string columns become factors (levels
in sorted order).  Progress goes to stderr, results to stdout and files.  Errors print
one line ``pylmer: error: ...`` on stderr and exit with status 2 (bad usage) or 1 (data,
formula, R or file errors).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd

from .errors import DataError, DroppedRowsWarning, FormulaError, PylmerError, warn

__all__ = ["build_parser", "grouping_columns", "main", "ranef_long"]

_DEFAULT_OUT = "pylmer_out"


# ------------------------------------------------------------------ plumbing


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit with status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"pylmer: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


class _Reporter:
    """Stage lines on stderr (``pylmer: fitting ...``), silenced by ``--quiet``."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"pylmer: {message}", file=sys.stderr, flush=True)

    def done(self) -> None:
        self(f"done in {time.perf_counter() - self.start:.1f} s")


def _show_warning(message: Any, category: type, *args: Any, **kwargs: Any) -> None:
    print(f"pylmer: warning: {message}", file=sys.stderr, flush=True)


def _read_csv(path: str, say: _Reporter) -> pd.DataFrame:
    file = Path(path)
    if not file.is_file():
        raise OSError(f"cannot read {path}: no such file")
    say(f"reading {path}")
    try:
        data = pd.read_csv(file)
        # pandas renames a repeated header silently ("y", "y.1"): refuse it instead
        header = [str(h) for h in pd.read_csv(file, header=None, nrows=1).iloc[0]]
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' ParserError, EmptyDataError
        raise DataError(f"cannot read {path} as CSV: {exc}") from None
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise DataError(f"{path} has duplicate column names: {', '.join(map(repr, dupes))}")
    if data.empty:
        raise DataError(f"{path} has no data rows (columns: {', '.join(map(str, data.columns))})")
    say(f"{len(data)} rows x {data.shape[1]} columns: {', '.join(map(str, data.columns))}")
    return data


def _write_csv(frame: pd.DataFrame, path: Path, *, index: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=index)
    return path


def ranef_long(
    ranef: dict[str, pd.DataFrame], ranef_sd: dict[str, pd.DataFrame] | None = None
) -> pd.DataFrame:
    """Random effects as one long table: ``group, level, term, estimate[, cond_sd]``."""
    parts = []
    for group, modes in ranef.items():
        if isinstance(modes.index, pd.MultiIndex):  # nested factors (MixedML): "b:a" levels
            modes = modes.set_axis(modes.index.map(lambda t: ":".join(map(str, t))))
            if ranef_sd is not None and group in ranef_sd:
                sd = ranef_sd[group]
                ranef_sd = {**ranef_sd, group: sd.set_axis(modes.index)}
        long = (
            modes.rename_axis("level")
            .reset_index()
            .melt(id_vars="level", var_name="term", value_name="estimate")
        )
        if ranef_sd is not None and group in ranef_sd:
            sds = ranef_sd[group].rename_axis("level").reset_index()
            sds = sds.melt(id_vars="level", var_name="term", value_name="cond_sd")
            long = long.merge(sds, on=["level", "term"], how="left")
        long.insert(0, "group", group)
        parts.append(long)
    return pd.concat(parts, ignore_index=True)


def _fit(args: argparse.Namespace, data: pd.DataFrame, say: _Reporter) -> Any:
    from .models.lmer import lmer

    if getattr(args, "model", None) == "glmmtmb":
        from .models.glmmtmb import glmmtmb

        family = args.family or "gaussian"
        say(f"fitting {args.formula} ({family}) with glmmTMB ({len(data)} rows)")
        t0 = time.perf_counter()
        model = glmmtmb(
            args.formula,
            data,
            family=family,
            link=args.link,
            ziformula=args.zi,
            dispformula=args.disp,
        )
        say(f"fitted in {time.perf_counter() - t0:.1f} s")
        return model
    if getattr(args, "zi", None) or getattr(args, "disp", None):
        raise ValueError("--zi and --disp need --model glmmtmb")
    if args.family is not None:
        from .models.glmer import glmer

        say(f"fitting {args.formula} ({args.family} GLMM) with lme4 ({len(data)} rows)")
        t0 = time.perf_counter()
        model = glmer(args.formula, data, args.family, link=args.link)
        say(f"fitted in {time.perf_counter() - t0:.1f} s")
        return model
    if args.link is not None:
        raise ValueError("--link needs --family (a linear mixed model has no link)")
    kind = "maximum likelihood" if args.ml else "REML"
    say(f"fitting {args.formula} by {kind} with lme4 ({len(data)} rows)")
    t0 = time.perf_counter()
    model = lmer(args.formula, data, reml=not args.ml)
    say(f"fitted in {time.perf_counter() - t0:.1f} s")
    return model


# ------------------------------------------------------------------ fit / predict


def _cmd_fit(args: argparse.Namespace, say: _Reporter) -> int:
    data = _read_csv(args.data, say)
    model = _fit(args, data, say)
    if args.family is not None or args.model == "glmmtmb":  # fixef: Wald z tests
        fixef = model.fixef
        print(model.summary(), end="")
    else:
        # the Satterthwaite df come with the fit: the printed table and fixef.csv agree
        fixef = model.fixef_wald if args.no_pvalues else model.fixef
        print(model.summary(pvalues=not args.no_pvalues), end="")
    out = Path(args.out)
    written = [
        _write_csv(fixef.rename_axis("term"), out / "fixef.csv", index=True),
        _write_csv(ranef_long(model.ranef, model.ranef_sd), out / "ranef.csv"),
        _write_csv(model.varcorr, out / "varcorr.csv"),
    ]
    if args.check is not None:
        written.append(_write_check(model, Path(args.check), say))
    say(f"wrote {', '.join(str(p) for p in written)}")
    say.done()
    return 0


def _write_check(model: Any, path: Path, say: _Reporter) -> Path:
    """Draw pylmer.plot.check_model(model) into ``path`` (PNG, PDF, SVG by its suffix)."""
    if not hasattr(model, "cooks_distance") or type(model).__name__ == "GlmmTMBModel":
        raise ValueError("--check draws lmer and glmer fits (not glmmTMB)")
    import matplotlib

    matplotlib.use("Agg")  # this process draws files only
    from .plot import check_model

    say("drawing the model check (refits without each level of the first grouping factor)")
    fig = check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _cmd_predict(args: argparse.Namespace, say: _Reporter) -> int:
    data = _read_csv(args.data, say)
    newdata = _read_csv(args.newdata, say)
    model = _fit(args, data, say)
    which = "fixed part only" if args.population else "with random effects"
    say(f"predicting {len(newdata)} rows ({which})")
    pred = model.predict(
        newdata, include_random=not args.population, allow_new_levels=not args.strict
    )
    out = newdata.copy()
    out["prediction"] = pred.to_numpy()
    if args.out is None:
        out.to_csv(sys.stdout, index=False)
    else:
        say(f"wrote {_write_csv(out, Path(args.out))}")
    say.done()
    return 0


# ------------------------------------------------------------------ mixedml

_ESTIMATORS = ("linear", "random_forest", "hist_gradient_boosting")


def grouping_columns(random_effects: str) -> list[str]:
    """The grouping columns named in an lme4 random part, e.g. ``(1 | a/b)`` gives a, b.

    R parses the random part (``lme4::findbars``), as MixedML itself does.
    """
    from .mixedml.lme4_step import ResidualModel

    if random_effects.count("(") != random_effects.count(")"):
        raise FormulaError(f"random effects {random_effects!r} has unbalanced parentheses")
    try:
        return ResidualModel.parse(random_effects).groups
    except FormulaError as exc:
        if "no random-effects term" in str(exc):
            raise DataError(
                f"no grouping factor in random effects {random_effects!r}; use '(1 | g)'"
            ) from None
        raise


def _estimator(args: argparse.Namespace) -> Any:
    if args.estimator == "linear":
        from sklearn.linear_model import LinearRegression

        return LinearRegression()
    if args.estimator == "random_forest":
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(
            n_estimators=args.n_estimators,
            min_samples_leaf=5,
            n_jobs=args.n_jobs,
            random_state=args.seed,
        )
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(random_state=args.seed)


def _features(args: argparse.Namespace, data: pd.DataFrame, groups: list[str]) -> list[str]:
    missing = [c for c in [args.target, *groups] if c not in data.columns]
    if missing:
        raise DataError(f"column(s) {missing} not in the data (columns: {list(data.columns)})")
    if not pd.api.types.is_numeric_dtype(data[args.target]):
        raise DataError(
            f"the target column {args.target!r} is not numeric (dtype {data[args.target].dtype})"
        )
    if args.features:
        features = [f.strip() for f in args.features.split(",") if f.strip()]
        unknown = [f for f in features if f not in data.columns]
        if unknown:
            raise DataError(f"--features names column(s) not in the data: {unknown}")
    else:
        features = [c for c in data.columns if c != args.target and c not in groups]
    text = [f for f in features if not pd.api.types.is_numeric_dtype(data[f])]
    if text:
        raise DataError(
            f"feature column(s) {text} are not numeric; choose numeric ones with --features"
        )
    if not features:
        raise DataError("no feature columns: give them with --features a,b,c")
    return features


def _cmd_mixedml(args: argparse.Namespace, say: _Reporter) -> int:
    import importlib.util

    from sklearn.model_selection import train_test_split

    from .mixedml import MixedMLRegressor

    data = _read_csv(args.data, say)
    groups = grouping_columns(args.random)
    features = _features(args, data, groups)
    # like lme4's na.omit: rows missing the target or a grouping factor cannot be used
    n_missing = data[[args.target, *groups]].isna().sum()
    n_missing = n_missing[n_missing > 0]
    if len(n_missing):
        keep = data[[args.target, *groups]].notna().all(axis=1)
        per_column = ", ".join(f"{c!r}: {n}" for c, n in n_missing.items())
        warn(
            f"dropping {int((~keep).sum())} of {len(data)} rows with missing values "
            f"(missing per column: {per_column})",
            DroppedRowsWarning,
        )
        data = data[keep]
        if data.empty:
            raise DataError(f"no rows left after dropping missing values ({per_column})")
    if args.test_frac:
        train, test = train_test_split(data, test_size=args.test_frac, random_state=args.seed)
    else:
        train, test = data, data.iloc[:0]
    model = MixedMLRegressor(
        _estimator(args),
        random_effects=args.random,
        features=features,
        reml=args.reml,
        max_iter=args.max_iter,
        tol=args.tol,
        residuals=args.residuals,
        progress=not args.quiet and importlib.util.find_spec("tqdm") is not None,
    )
    say(
        f"MixedML: {args.estimator} on {len(features)} features + {args.random}, "
        f"{len(train)} training rows, residuals={args.residuals}, max {args.max_iter} iterations"
    )
    X = train.drop(columns=[args.target])
    model.fit(X, train[args.target].to_numpy(dtype=float))
    status = (
        f"converged (rule: {model.stop_reason_})"
        if model.converged_
        else f"did NOT converge (stopped at max_iter={args.max_iter})"
    )
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(model.history_.to_string(float_format=lambda v: f"{v:.6g}"))
    print(f"\n{status} after {model.n_iter_} iterations")
    print("\nRandom effects (variance components):")
    print(model.varcorr_.to_string(index=False))
    frames = {"train": train}
    if len(test):
        frames["test"] = test
    rows = []
    for split, part in frames.items():
        X_part = part.drop(columns=[args.target])
        y_part = part[args.target].to_numpy(dtype=float)
        pred = model.predict(X_part)
        fixed = np.asarray(model.estimator_.predict(X_part[features]), dtype=float)
        rows.append(part.assign(split=split, prediction=pred, fixed_part=fixed))
        mse, mse_fixed = np.mean((y_part - pred) ** 2), np.mean((y_part - fixed) ** 2)
        print(f"{split} MSE: {mse:.6g} (estimator part alone: {mse_fixed:.6g})")
    out = Path(args.out)
    preds = pd.concat(rows)[[*groups, args.target, "split", "prediction", "fixed_part"]]
    written = [
        _write_csv(preds.rename_axis("row"), out / "predictions.csv", index=True),
        _write_csv(ranef_long(model.ranef_, model.ranef_sd_), out / "ranef.csv"),
        _write_csv(model.varcorr_, out / "varcorr.csv"),
        _write_csv(model.history_, out / "history.csv", index=True),
    ]
    say(f"wrote {', '.join(str(p) for p in written)}")
    say.done()
    return 0


# ------------------------------------------------------------------ datasets


def _cmd_datasets(args: argparse.Namespace, say: _Reporter) -> int:
    from . import datasets

    if args.name is None:
        print("\n".join(datasets.names()))
        return 0
    if args.name not in datasets.names():
        raise DataError(f"unknown data set {args.name!r}; available: {', '.join(datasets.names())}")
    say(f"loading {args.name} from R's lme4")
    frame = datasets.load(args.name)
    if args.out is None:
        frame.to_csv(sys.stdout, index=False)
    else:
        say(f"wrote {len(frame)} rows to {_write_csv(frame, Path(args.out))}")
    return 0


# ------------------------------------------------------------------ validate


def _cmd_validate(args: argparse.Namespace, say: _Reporter) -> int:
    from .validate import compare_with_r, read_r_fit, start_r_fit, wait_r_fit

    data = _read_csv(args.data, say)
    with tempfile.TemporaryDirectory(prefix="pylmer-validate-") as tmp:
        out_json = Path(args.keep) if args.keep else Path(tmp) / "r_fit.json"
        say(f"starting the plain-R fit: {args.rscript} validate.R (a separate process)")
        t0 = time.perf_counter()
        proc = start_r_fit(
            args.data,
            args.formula,
            not args.ml,
            out_json,
            rscript=args.rscript,
            family=args.family,
            link=args.link,
        )
        try:
            model = _fit(args, data, say)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        say("waiting for Rscript")
        wait_r_fit(proc)
        reference = read_r_fit(out_json)
        r_seconds = time.perf_counter() - t0
    table = compare_with_r(model, reference)
    table["ok"] = np.where(table["max_rel_diff"] <= args.tol, "ok", "DIFFERS")
    meta = reference["meta"]
    kind = f"{args.family} GLMM" if args.family else "ML" if args.ml else "REML"
    print(
        f"pylmer vs plain R {meta['R']} / lme4 {meta['lme4']}: {args.formula} "
        f"({kind}, {meta['nobs']} obs)"
    )
    print(f"{'quantity':<10} {'n':>7} {'max rel diff':>12}")
    for row in table.itertuples():
        print(f"{row.quantity:<10} {row.n:>7} {row.max_rel_diff:>12.3g}  {row.ok}")
    print(f"(Rscript: fit {float(meta['seconds']):.2f} s, process {r_seconds:.1f} s)")
    bad = table.loc[table["ok"] != "ok", "quantity"].tolist()
    say.done()
    if bad:
        print(
            f"pylmer: error: {', '.join(bad)} differ from plain R by more than --tol {args.tol:g}",
            file=sys.stderr,
        )
        return 1
    print(f"all {len(table)} quantities agree within {args.tol:g}")
    return 0


# ------------------------------------------------------------------ parser and main


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``pylmer`` command."""
    from . import __version__

    parser = _Parser(
        prog="pylmer",
        description="lme4's linear mixed models from the command line (R runs embedded).",
    )
    parser.add_argument("--version", action="version", version=f"pylmer {__version__}")
    # -q works before the command (pylmer -q fit ...) and after it (pylmer fit -q ...):
    # two dests, since a subcommand's default would overwrite the global one
    parser.add_argument(
        "-q", "--quiet", dest="global_quiet", action="store_true", help="no progress lines"
    )
    common = _Parser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    _add_model_commands(sub, common)
    _add_mixedml_command(sub, common)
    p = sub.add_parser("datasets", parents=[common], help="list or export lme4's data sets")
    p.add_argument("name", nargs="?", help="a data set (omit to list them)")
    p.add_argument("--out", metavar="FILE", help="CSV to write (default: stdout)")
    p.set_defaults(func=_cmd_datasets)

    p = sub.add_parser("validate", parents=[common], help="compare pylmer with a plain Rscript fit")
    _model_args(p)
    p.add_argument(
        "--tol", type=float, default=1e-6, help="largest relative difference accepted (1e-6)"
    )
    p.add_argument("--rscript", default="Rscript", help="the Rscript executable")
    p.add_argument("--keep", metavar="FILE.json", help="keep the plain-R results here")
    p.set_defaults(func=_cmd_validate)
    return parser


def _model_args(p: argparse.ArgumentParser) -> None:
    """The data, formula and model options of fit, predict and validate."""
    p.add_argument("data", metavar="DATA.csv", help="the data (CSV with a header row)")
    p.add_argument("formula", help='an lme4 formula, e.g. "y ~ x + (1 | g)"')
    p.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    p.add_argument(
        "--family",
        metavar="NAME",
        help="fit a GLMM with glmer: binomial, poisson, Gamma, inverse.gaussian, negative_binomial",
    )
    p.add_argument("--link", metavar="NAME", help="the GLMM's link (default: canonical)")
    p.add_argument(
        "--model",
        choices=("lme4", "glmmtmb"),
        default="lme4",
        help="lme4 (lmer / glmer, default) or glmmtmb (then --family takes glmmTMB's "
        "families: nbinom2, beta, tweedie, ...)",
    )
    p.add_argument("--zi", metavar="FORMULA", help='glmmTMB zero inflation, e.g. "~ x"')
    p.add_argument("--disp", metavar="FORMULA", help='glmmTMB dispersion, e.g. "~ x"')


def _add_model_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """The fit and predict commands."""
    p = sub.add_parser("fit", parents=[common], help="fit a model; print the summary, write CSVs")
    _model_args(p)
    p.add_argument(
        "--out",
        default=_DEFAULT_OUT,
        metavar="DIR",
        help=f"where fixef.csv, ranef.csv, varcorr.csv go (default {_DEFAULT_OUT})",
    )
    p.add_argument(
        "--no-pvalues",
        action="store_true",
        help="leave the Satterthwaite df and p-values out of the table and fixef.csv",
    )
    p.add_argument(
        "--check",
        metavar="FILE.png",
        help="also draw the model-check figure (pylmer.plot.check_model) into this file",
    )
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("predict", parents=[common], help="fit, then predict new rows")
    _model_args(p)
    p.add_argument("--newdata", required=True, metavar="NEW.csv", help="rows to predict")
    p.add_argument(
        "--population", action="store_true", help="fixed part only (random effects zero)"
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail on group levels not seen in DATA (default: predict them from the fixed part)",
    )
    p.add_argument("--out", metavar="FILE", help="CSV to write (default: stdout)")
    p.set_defaults(func=_cmd_predict)


def _add_mixedml_command(sub: Any, common: argparse.ArgumentParser) -> None:
    """The mixedml command."""
    p = sub.add_parser(
        "mixedml", parents=[common], help="random effects on top of a scikit-learn regressor"
    )
    p.add_argument("data", metavar="DATA.csv")
    p.add_argument("--target", required=True, help="the response column")
    p.add_argument(
        "--random",
        required=True,
        metavar="TERMS",
        help='lme4 random part, e.g. "(1 + t | subject)"',
    )
    p.add_argument("--estimator", choices=_ESTIMATORS, default="random_forest")
    p.add_argument(
        "--features",
        metavar="A,B,C",
        help="feature columns (default: all but target and grouping columns)",
    )
    p.add_argument(
        "--residuals",
        choices=("auto", "in_sample", "oof", "oob"),
        default="auto",
        help="predictions the random effects see (auto: out-of-bag for the forest)",
    )
    p.add_argument("--max-iter", type=_positive_int, default=100, help="EM steps (100)")
    p.add_argument("--tol", type=float, default=1e-4, help="convergence tolerance (1e-4)")
    p.add_argument("--reml", action="store_true", help="REML random-effects step (default ML)")
    p.add_argument(
        "--test-frac",
        type=_fraction,
        default=0.0,
        metavar="F",
        help="hold out this fraction of rows and report the test MSE",
    )
    p.add_argument(
        "--n-estimators", type=_positive_int, default=100, help="trees of the random forest (100)"
    )
    p.add_argument("--n-jobs", type=int, default=1, help="parallel jobs of the forest (1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument(
        "--out",
        default=_DEFAULT_OUT,
        metavar="DIR",
        help=f"where predictions, ranef, varcorr, history go ({_DEFAULT_OUT})",
    )
    p.set_defaults(func=_cmd_mixedml)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), not {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pylmer`` command; return the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 on data / formula / R / file errors (or when ``validate`` finds
        differences), 2 on bad usage.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return int(exc.code or 0)
    args.quiet = args.quiet or args.global_quiet
    say = _Reporter(args.quiet)
    run: Callable[[argparse.Namespace, _Reporter], int] = args.func
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return run(args, say)
        except KeyboardInterrupt:
            print("pylmer: interrupted", file=sys.stderr)
            return 130
        except (PylmerError, OSError, ValueError) as exc:
            print(f"pylmer: error: {_one_line(exc)}", file=sys.stderr)
            return 1
        except Exception as exc:  # never a traceback, but say it is unexpected
            if os.environ.get("PYLMER_DEBUG"):
                raise
            print(
                f"pylmer: error: unexpected {type(exc).__name__}: {_one_line(exc)} "
                "(set PYLMER_DEBUG=1 for the traceback)",
                file=sys.stderr,
            )
            return 1


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
