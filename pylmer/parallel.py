"""Many refits at once: parametric bootstrap and one model fitted to many responses.

The work is split into chunks and run by `joblib <https://joblib.readthedocs.io>`_:
``n_jobs`` worker processes (joblib's ``loky`` backend), each with its own embedded R,
or -- unchanged code -- the workers of a Dask cluster under
``joblib.parallel_config(backend="dask")``.  pylmer has no scheduler of its own.

* The parent process simulates every bootstrap response from one seed, exactly as lme4's
  ``bootMer`` (or pbkrtest's ``PBmodcomp``) does, so the draws are the same whatever
  ``n_jobs`` is, and equal to plain R's with the same seed.
* A worker receives the model (pickled once per call, without its R handle) and refits
  it from its data on first use; the data are not re-sent with every draw.  With Dask,
  joblib scatters the pickled model to the workers once.
* A refit that fails gives a row of NaN, counted and reported with its error; the others
  go on.

A worker needs what the parent needs: R with lme4, and pylmer importable.
"""

from __future__ import annotations

import dataclasses
import itertools
import pickle
import sys
import uuid
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .errors import (
    DataError,
    FormulaError,
    InvalidArgumentError,
    PylmerError,
    RError,
    RWarning,
    WorkerLostError,
    warn,
)
from .models._base import MixedModel
from .models.control import LmerControl, as_control, family_and_link
from .r import session as _r

__all__ = [
    "LmerManyResults",
    "bootstrap",
    "bootstrap_anova",
    "bootstrap_confint",
    "lmer_many",
    "map_model",
]

# ------------------------------------------------------------------ worker-side cache

#: Objects a worker rebuilt from a payload (a model with its R handle, a template fit),
#: by token, so that the chunks of one call refit the model once per worker process.
_CACHE: OrderedDict[str, Any] = OrderedDict()
_CACHE_SIZE = 4


class _Payload:
    """Pickled inputs of one call, sent to every chunk (rebuilt once per worker).

    ``__sizeof__`` reports the pickle's size so that joblib's Dask backend scatters it to
    the workers once instead of embedding it in every task.
    """

    __slots__ = ("__weakref__", "blob", "kind", "token")

    def __init__(self, kind: str, obj: Any):
        self.kind = kind
        self.token = f"{kind}-{uuid.uuid4().hex}"
        self.blob = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)

    def __sizeof__(self) -> int:
        return len(self.blob) + 64


def _resolve(payload: _Payload) -> Any:
    """Return the live object of ``payload`` in this process, building it on first use."""
    obj = _CACHE.get(payload.token)
    if obj is not None:
        _CACHE.move_to_end(payload.token)
        return obj
    value = pickle.loads(payload.blob)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if payload.kind == "models":
            for m in value:
                m._mermod()  # refit from its data (same data and options: same fit)
            obj = value
        elif payload.kind == "template":
            obj = _fit_template(**value)
        else:  # pragma: no cover - internal
            raise ValueError(payload.kind)
    _CACHE[payload.token] = obj
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return obj


_MODEL_PAYLOADS: weakref.WeakKeyDictionary[Any, _Payload] = weakref.WeakKeyDictionary()


def _model_payload(model: MixedModel) -> _Payload:
    """The payload of one model, made once: repeated calls on the same model find it
    already rebuilt in the workers (a fitted model does not change)."""
    payload = _MODEL_PAYLOADS.get(model)
    if payload is None:
        payload = _MODEL_PAYLOADS[model] = _Payload("models", (model,))
    return payload


class _Registered:
    """Register the parent's live object under a payload's token for the call's duration
    (a sequential run, or Dask threads in this process, use it without a rebuild)."""

    def __init__(self, payload: _Payload, obj: Any):
        self.token = payload.token
        self.obj = obj

    def __enter__(self) -> None:
        _CACHE[self.token] = self.obj

    def __exit__(self, *exc: object) -> None:
        _CACHE.pop(self.token, None)


# ------------------------------------------------------------------ running chunks


def _n_workers(n_jobs: int | None) -> int:
    import joblib

    try:
        return max(1, int(joblib.effective_n_jobs(n_jobs)))
    except Exception:  # a backend that cannot tell (e.g. no Dask client yet)
        return 1


def _chunks(n: int, n_jobs: int | None) -> list[slice]:
    """Split ``range(n)`` into contiguous chunks: about 4 per worker, at least 20 (for a
    progress bar), never empty.  The chunking never changes a result."""
    if n == 0:
        return []
    count = min(n, max(4 * _n_workers(n_jobs), 20))
    bounds = np.linspace(0, n, count + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]


def _progress_bar(total: int, progress: bool | None, desc: str) -> Any:
    if progress is None:
        progress = total >= 200 and sys.stderr.isatty()
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="fit")


def _run(
    func: Callable[..., Any],
    tasks: Sequence[tuple[Any, ...]],
    sizes: Sequence[int],
    n_jobs: int | None,
    progress: bool | None,
    desc: str,
) -> list[Any]:
    """Run ``func(*task)`` for every task with joblib (results in task order).

    A worker process that dies (killed, out of memory, a crash in R) aborts joblib's
    run: the tasks not yet collected are run once more, in new workers; when a worker is
    lost again, :class:`~pylmer.errors.WorkerLostError` says how much was done and lost.
    """
    import joblib

    bar = _progress_bar(int(sum(sizes)), progress, desc)
    out: list[Any] = []
    try:
        for attempt in (1, 2):
            try:
                try:
                    parallel = joblib.Parallel(n_jobs=n_jobs, return_as="generator")
                except ValueError:  # a backend without generator support
                    parallel = joblib.Parallel(n_jobs=n_jobs)
                todo = tasks[len(out) :]
                results: Iterator[Any] | list[Any] = parallel(
                    joblib.delayed(func)(*t) for t in todo
                )
                for size, result in zip(sizes[len(out) :], results, strict=True):
                    out.append(result)
                    if bar is not None:
                        bar.update(size)
                return out
            except Exception as exc:
                if not _worker_lost(exc):
                    raise
                if attempt == 2:
                    done = int(sum(sizes[: len(out)]))
                    raise WorkerLostError(
                        f"{desc}: a worker process died twice ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else 'no message'}); "
                        f"{len(out)} of {len(tasks)} chunks ({done} of {int(sum(sizes))} fits) "
                        f"were done, {len(tasks) - len(out)} chunks "
                        f"({int(sum(sizes)) - done} fits) were lost after one retry; nothing "
                        "is returned.  This process's R session is unaffected.  A worker "
                        "killed by the system is often out of memory: try a smaller n_jobs"
                    ) from None
        raise AssertionError("unreachable")  # pragma: no cover
    finally:
        if bar is not None:
            bar.close()


#: exceptions (by class name) of a joblib backend that lost a worker process: loky's,
#: and Dask's (a killed worker's tasks and scattered data are gone)
_LOST_WORKER = {
    "TerminatedWorkerError",
    "BrokenProcessPool",
    "KilledWorker",
    "FutureCancelledError",
    "CancelledError",
    "CommClosedError",
}


def _worker_lost(exc: BaseException) -> bool:
    return any(cls.__name__ in _LOST_WORKER for cls in type(exc).__mro__)


def _map_task(payload: _Payload, func: Callable[[Any, Any], Any], item: Any) -> Any:
    (model,) = _resolve(payload)
    return func(model, item)


def map_model(
    func: Callable[[Any, Any], Any],
    model: MixedModel,
    items: Sequence[Any],
    *,
    n_jobs: int | None = None,
    progress: bool | None = False,
    desc: str = "refits",
    sizes: Sequence[int] | None = None,
) -> list[Any]:
    """Return ``[func(model, item) for item in items]``, computed in ``n_jobs`` worker
    processes (joblib, or Dask under ``joblib.parallel_config(backend="dask")``).

    The model is pickled once per call and refitted once per worker (from its data, on
    first use); ``func`` must pickle (a module-level function).  Used by analyses that
    spread one model's work, e.g. :func:`pylmer.inference.allfit` and
    :func:`pylmer.power`.  ``sizes``: the fits each item holds, for the progress bar
    (default one).
    """
    payload = _model_payload(model)
    tasks = [(payload, func, item) for item in items]
    counts = [1] * len(tasks) if sizes is None else [int(n) for n in sizes]
    with _Registered(payload, (model,)):
        return _run(_map_task, tasks, counts, n_jobs, progress, desc)


def _texts(value: Any, n: int) -> list[str | None]:
    """An R character vector (scalar when of length 1, None for NA) as n strings/None."""
    if value is None:
        return [None] * n
    if isinstance(value, str):
        return [value]
    out = []
    for v in np.atleast_1d(np.asarray(value, dtype=object)):
        out.append(None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else str(v))
    return out


def _frame(Y: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(Y, columns=[f"v{i}" for i in range(Y.shape[1])], copy=False)


# ------------------------------------------------------------------ bootstrap


def _boot_task(payload: _Payload, Y: np.ndarray, old_names: bool) -> dict[str, Any]:
    (model,) = _resolve(payload)
    out = _r.call(".pylmer_boot_chunk", model._mermod(), _frame(Y), old_names=old_names)
    t = out["t"]
    k = Y.shape[1]
    return {
        "t": np.asarray(t, dtype=float).reshape(k, -1),
        "error": _texts(out["error"], k),
        "conditions": _texts(out["conditions"], k),
    }


def _refit_full(model: MixedModel, y: np.ndarray) -> tuple[MixedModel, list[str]]:
    out, conditions = _r.call_with_conditions(".pylmer_boot_refit_full", model._mermod(), y)
    spec = dataclasses.replace(model._spec, steps=(*model._spec.steps, ("refit", y)))
    return type(model)._from_r(out, spec, model.data, conditions), conditions


def _as_stat(value: Any) -> pd.Series:
    """A user statistic (number, sequence, dict, Series) as a float Series."""
    if isinstance(value, pd.Series):
        return value.astype(float)
    if isinstance(value, Mapping):
        return pd.Series({str(k): float(v) for k, v in value.items()}, dtype=float)
    arr = np.atleast_1d(np.asarray(value, dtype=float))
    if arr.ndim != 1:
        raise InvalidArgumentError(
            f"func must return a number or a 1-d vector, not shape {arr.shape}"
        )
    if arr.size == 1 and np.ndim(value) == 0:
        return pd.Series(arr, index=["value"])
    return pd.Series(arr, index=[str(i) for i in range(arr.size)])


def _boot_func_task(
    payload: _Payload, Y: np.ndarray, func: Callable[[MixedModel], Any], names: list[str]
) -> dict[str, Any]:
    (model,) = _resolve(payload)
    k = Y.shape[1]
    t = np.full((k, len(names)), np.nan)
    errors: list[str | None] = [None] * k
    conds: list[str | None] = [None] * k
    for i in range(k):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                fit, _ = _refit_full(model, Y[:, i])
                stat = _as_stat(func(fit))
                if len(stat) != len(names):
                    raise InvalidArgumentError(
                        f"func returned {len(stat)} values here, {len(names)} on the model"
                    )
                t[i] = stat.to_numpy(dtype=float)
            except (PylmerError, ValueError, TypeError, ArithmeticError, LookupError) as exc:
                errors[i] = f"{type(exc).__name__}: {exc}"
        if caught:
            conds[i] = "; ".join(dict.fromkeys(str(w.message) for w in caught))
    return {"t": t, "error": errors, "conditions": conds}


def _check_model(model: Any, what: str = "model") -> MixedModel:
    if not isinstance(model, MixedModel):
        raise InvalidArgumentError(
            f"{what} must be a fitted LmerModel or GlmerModel (pylmer.lmer, pylmer.glmer), "
            f"not {type(model).__name__}"
        )
    return model


def _check_nsim(nsim: Any) -> int:
    if isinstance(nsim, bool) or not isinstance(nsim, int | np.integer) or nsim < 1:
        raise InvalidArgumentError(f"nsim must be a positive integer, not {nsim!r}")
    return int(nsim)


def _check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise InvalidArgumentError(f"seed must be an integer or None, not {seed!r}")
    if not -(2**31) < int(seed) < 2**31:
        raise InvalidArgumentError(f"seed must fit R's integers (|seed| < 2**31), not {seed}")
    return int(seed)


def _collect(
    results: list[dict[str, Any]], nsim: int, columns: Sequence[str], what: str
) -> pd.DataFrame:
    t = np.vstack([r["t"].reshape(len(r["error"]), -1) for r in results]) if results else None
    draws = pd.DataFrame(t, columns=list(columns), index=pd.RangeIndex(nsim, name="draw"))
    errors = [e for r in results for e in r["error"]]
    conds = [c for r in results for c in r["conditions"]]
    failed = {i: e for i, e in enumerate(errors) if e is not None}
    draws.attrs["nsim"] = nsim
    draws.attrs["n_failed"] = len(failed)
    draws.attrs["errors"] = failed
    draws.attrs["messages"] = {i: c for i, c in enumerate(conds) if c}
    if failed:
        first = next(iter(failed.values()))
        warn(
            f"{len(failed)} of {nsim} {what} refits failed (their rows are NaN; "
            f"df.attrs['errors'] has the messages), e.g.: {first}",
            RWarning,
        )
    return draws


def bootstrap(
    model: MixedModel,
    func: Callable[[MixedModel], Any] | None = None,
    *,
    nsim: int = 500,
    seed: int | None = None,
    n_jobs: int | None = None,
    progress: bool | None = None,
    old_names: bool = False,
) -> pd.DataFrame:
    """Parametric bootstrap of a fitted model (lme4's ``bootMer``), in parallel.

    ``nsim`` responses are simulated from the model in this process (R's ``simulate``,
    ``use.u = FALSE``, after ``set.seed(seed)``: the draws of ``bootMer(m, FUN, nsim,
    seed)``), then the model is refitted to each in ``n_jobs`` worker processes.

    Parameters
    ----------
    model : LmerModel
        The fitted model.
    func : callable, optional
        ``func(refitted_model) -> number | sequence | dict | Series``, evaluated on each
        refitted :class:`~pylmer.LmerModel` (it must pickle, e.g. a module-level function,
        when run in other processes).  Default: the random-effect standard deviations and
        correlations, ``sigma`` and the fixed effects (the statistic of lme4's
        ``confint(method = "boot")``), computed in R without building Python models.
    nsim : int
        Number of draws.
    seed : int, optional
        Seed of R's generator; the same seed gives the same draws whatever ``n_jobs``.
    n_jobs : int, optional
        joblib's ``n_jobs`` (None: 1, or the active ``joblib.parallel_config``; -1: all
        cores or all Dask workers).
    progress : bool, optional
        Show a tqdm progress bar (default: for 200 draws or more on a terminal, when
        tqdm is installed).
    old_names : bool
        Name the variance parameters as lme4's ``confint`` does (``.sig01``, ...,
        ``.sigma``) instead of ``sd_(Intercept)|Subject``, ``cor_...``, ``sigma``.

    Returns
    -------
    pandas.DataFrame
        One row per draw (index ``draw``), one column per statistic; NaN rows for
        refits that failed.  ``attrs``: ``t0`` (the statistic of ``model``), ``nsim``,
        ``seed``, ``n_failed``, ``errors`` (draw -> error text) and ``messages`` (draw ->
        R's warnings and messages, e.g. singular fits).

    Warns
    -----
    RWarning
        When some refits failed (how many, and the first error).
    """
    model = _check_model(model)
    nsim = _check_nsim(nsim)
    seed = _check_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RWarning)
        setup = _r.call(".pylmer_boot_setup", model._mermod(), nsim, seed=seed, old_names=old_names)
    Y = np.asarray(setup["Y"], dtype=float).reshape(-1, nsim)
    if func is None:
        t0 = setup["t0"].astype(float)
    else:
        if not callable(func):
            raise InvalidArgumentError(f"func must be callable, not {type(func).__name__}")
        t0 = _as_stat(func(model))
    names = [str(n) for n in t0.index]
    payload = _model_payload(model)
    chunks = _chunks(nsim, n_jobs)
    if func is None:
        tasks = [(payload, Y[:, c], old_names) for c in chunks]
        task_func: Callable[..., Any] = _boot_task
    else:
        tasks = [(payload, Y[:, c], func, names) for c in chunks]
        task_func = _boot_func_task
    with _Registered(payload, (model,)):
        results = _run(
            task_func, tasks, [c.stop - c.start for c in chunks], n_jobs, progress, "bootstrap"
        )
    draws = _collect(results, nsim, names, "bootstrap")
    draws.attrs["t0"] = pd.Series(t0.to_numpy(dtype=float), index=names)
    draws.attrs["seed"] = seed
    return draws


def bootstrap_confint(
    model: MixedModel,
    level: float = 0.95,
    *,
    nsim: int = 500,
    seed: int | None = None,
    n_jobs: int | None = None,
    boot_type: str = "perc",
    progress: bool | None = None,
    old_names: bool = False,
) -> pd.DataFrame:
    """Parametric-bootstrap confidence intervals, as lme4's ``confint(method = "boot")``.

    The draws of :func:`bootstrap` (in parallel), then the intervals of lme4's
    ``confint`` method for bootstrap results (``boot::boot.ci``); with the same ``seed``
    they equal plain R's ``confint(m, method = "boot", nsim = nsim, seed = seed)``.

    Parameters
    ----------
    model : LmerModel
        The fitted model.
    level : float
        Confidence level.
    nsim, seed, n_jobs, progress
        As in :func:`bootstrap`.
    boot_type : {"perc", "basic", "norm"}
        Interval type (lme4's ``boot.type``).
    old_names : bool
        Name the variance parameters ``.sig01``, ..., ``.sigma`` (R's default) instead
        of ``sd_(Intercept)|Subject``, ``cor_...``, ``sigma`` (pylmer's, as
        :func:`bootstrap` and ``m.confint``).

    Returns
    -------
    pandas.DataFrame
        Rows: the variance parameters, then the fixed effects; columns like ``"2.5 %"``,
        ``"97.5 %"``.  ``attrs["n_failed"]``: refits that failed (left out).
    """
    if not 0 < level < 1:
        raise InvalidArgumentError(f"level must be between 0 and 1, not {level}")
    if boot_type not in ("perc", "basic", "norm"):
        raise InvalidArgumentError(
            f"boot_type must be 'perc', 'basic' or 'norm', not {boot_type!r}"
        )
    draws = bootstrap(
        model, nsim=nsim, seed=seed, n_jobs=n_jobs, progress=progress, old_names=old_names
    )
    if draws.attrs["n_failed"] == nsim:
        first = next(iter(draws.attrs["errors"].values()))
        raise RError(f"every bootstrap refit failed, e.g.: {first}", r_message=first)
    t0 = draws.attrs["t0"]
    ci = _r.call(
        ".pylmer_boot_ci",
        t0.to_numpy(),
        draws.set_axis([f"v{i}" for i in range(draws.shape[1])], axis=1),
        list(t0.index),
        level=float(level),
        type=boot_type,
    )
    ci.index = list(t0.index)
    ci.attrs["n_failed"] = draws.attrs["n_failed"]
    ci.attrs["nsim"] = nsim
    return ci


# ------------------------------------------------------------------ PB likelihood ratio


def _ml(model: MixedModel) -> MixedModel:
    """The model fitted by ML (pbkrtest: ``update(model, REML = FALSE)``)."""
    if not model.reml:
        return model
    if model._spec.steps:
        return model.refit_ml()
    spec = dataclasses.replace(model._spec, reml=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return type(model)._fit(spec, model.data)


def _pb_task(payload: _Payload, Y: np.ndarray) -> dict[str, Any]:
    small, large = _resolve(payload)
    out = _r.call(".pylmer_pb_chunk", small._mermod(), large._mermod(), _frame(Y))
    k = Y.shape[1]
    return {
        "t": np.atleast_1d(np.asarray(out["t"], dtype=float)).reshape(k, 1),
        "error": _texts(out["error"], k),
        "conditions": _texts(out["conditions"], k),
    }


def bootstrap_anova(
    m0: MixedModel,
    m1: MixedModel,
    *,
    nsim: int = 1000,
    seed: int | None = None,
    n_jobs: int | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Parametric-bootstrap likelihood-ratio test of nested models (pbkrtest's PBmodcomp).

    Both models are refitted by ML when fitted by REML.  ``nsim`` responses are
    simulated from the smaller model (``set.seed(seed)`` then ``simulate``, as
    ``set.seed(seed); PBmodcomp(large, small, nsim)`` does); both models are refitted to
    each (in ``n_jobs`` processes) and ``2 (logLik(large) - logLik(small))`` forms the
    reference distribution.

    Returns
    -------
    pandas.DataFrame
        Rows ``LRT`` (the chi-square test) and ``PBtest`` (the bootstrap test, p-value
        ``(1 + #{ref > stat}) / (1 + #{ref > 0})``), columns ``stat``, ``df``,
        ``p_value``.  ``attrs``: ``ref`` (the reference draws), ``nsim``, ``npos``,
        ``n_extreme``, ``n_failed``, ``errors``.
    """
    for i, m in enumerate((m0, m1)):
        _check_model(m, f"model {i + 1}")
    nsim = _check_nsim(nsim)
    seed = _check_seed(seed)
    if m0.results.nobs != m1.results.nobs:
        raise DataError(
            f"the models were fitted to different numbers of observations "
            f"({m0.results.nobs} and {m1.results.nobs})"
        )
    small, large = sorted((m0, m1), key=lambda m: m.results.npar)
    if small.results.npar == large.results.npar:
        raise InvalidArgumentError(
            "the models have the same number of parameters; a likelihood-ratio test "
            "needs nested models"
        )
    small, large = _ml(small), _ml(large)
    setup = _r.call(".pylmer_pb_setup", small._mermod(), large._mermod(), nsim, seed=seed)
    Y = np.asarray(setup["Y"], dtype=float).reshape(-1, nsim)
    payload = _Payload("models", (small, large))
    chunks = _chunks(nsim, n_jobs)
    with _Registered(payload, (small, large)):
        results = _run(
            _pb_task,
            [(payload, Y[:, c]) for c in chunks],
            [c.stop - c.start for c in chunks],
            n_jobs,
            progress,
            "PB test",
        )
    draws = _collect(results, nsim, ["lrt"], "parametric-bootstrap")
    ref = draws["lrt"].to_numpy()
    stat, df = float(setup["stat"]), int(setup["df"])
    valid = ref[~np.isnan(ref)]
    pos = valid[valid > 0]
    n_extreme = int(np.sum(pos > stat))
    from scipy.stats import chi2

    table = pd.DataFrame(
        {
            "stat": [stat, stat],
            "df": [float(df), np.nan],
            "p_value": [float(chi2.sf(stat, df)), (1 + n_extreme) / (1 + len(pos))],
        },
        index=["LRT", "PBtest"],
    )
    table.attrs.update(
        ref=ref,
        nsim=nsim,
        npos=len(pos),
        n_extreme=n_extreme,
        n_failed=draws.attrs["n_failed"],
        errors=draws.attrs["errors"],
        seed=seed,
    )
    return table


# ------------------------------------------------------------------ many responses


@dataclass
class LmerManyResults:
    """Results of :func:`lmer_many`, one long DataFrame per kind.

    Attributes
    ----------
    fixef : pandas.DataFrame
        ``response``, ``term``, ``estimate``, ``std_error``, ``t_value``, ``df``,
        ``p_value`` (Satterthwaite, as lmerTest computes them).
    varcorr : pandas.DataFrame
        ``response``, ``group``, ``var1``, ``var2``, ``variance``, ``sd_or_cor``.
    fit : pandas.DataFrame
        One row per response: ``nobs``, ``loglik``, ``reml_criterion``, ``sigma``,
        ``singular``, ``converged``, ``method`` (``"refit"`` from the template, or
        ``"lmer"`` for a response with missing values), ``messages`` (lme4's warnings),
        ``error`` (None when the fit worked).
    """

    fixef: pd.DataFrame
    varcorr: pd.DataFrame
    fit: pd.DataFrame

    @property
    def failed(self) -> pd.DataFrame:
        """The rows of :attr:`fit` whose fit failed."""
        return self.fit[self.fit["error"].notna()]

    def __repr__(self) -> str:
        n = len(self.fit)
        return (
            f"<LmerManyResults: {n} responses, {len(self.failed)} failed, "
            f"{int(self.fit['singular'].fillna(False).astype(bool).sum())} singular>"
        )


_Y = ".pylmer_y"


def _fit_template(
    data: pd.DataFrame,
    formula: str,
    y: np.ndarray,
    reml: bool,
    control: dict | None,
    family: str | None = None,
    link: str | None = None,
) -> Any:
    ref = _r.bind(data.assign(**{_Y: y}))
    return _r.call(
        ".pylmer_many_template",
        ref,
        formula,
        REML=reml,
        control=control,
        family=family,
        link=link,
    )


def _many_task(
    payload: _Payload, Y: np.ndarray, names: list[str], satterthwaite: bool
) -> dict[str, pd.DataFrame | None]:
    template = _resolve(payload)
    out = _r.call(".pylmer_many_chunk", template, _frame(Y), names, satterthwaite=satterthwaite)
    return {k: out.get(k) for k in ("fixef", "varcorr", "fit")}


def _template_response(Y: np.ndarray) -> np.ndarray:
    """The response the template is fitted to: the first complete, non-constant one (its
    fit only provides refit()'s starting values and the model structure)."""
    fallback = None
    for j in range(Y.shape[1]):
        y = Y[:, j]
        finite = np.isfinite(y)
        if finite.sum() >= 2 and np.ptp(y[finite]) > 0:
            if finite.all():
                return y
            if fallback is None:
                fallback = np.where(finite, y, np.mean(y[finite]))
    if fallback is not None:
        return fallback
    return np.random.default_rng(0).standard_normal(Y.shape[0])


def _response_columns(data: pd.DataFrame, responses: Any) -> list[Any]:
    """Check :func:`lmer_many`'s ``responses``: distinct numeric columns of ``data``."""
    if isinstance(responses, str) or not isinstance(responses, Sequence | pd.Index):
        raise DataError("responses must be a list of column names")
    responses = list(responses)
    if not responses:
        raise DataError("responses is empty")
    missing = [r for r in responses if r not in data.columns]
    if missing:
        raise DataError(f"response column(s) not in data: {', '.join(map(repr, missing[:10]))}")
    dupes = sorted({str(r) for r in responses if responses.count(r) > 1})
    if dupes:
        raise DataError(f"response(s) listed twice: {', '.join(map(repr, dupes[:10]))}")
    bad = [
        c
        for c in responses
        if not pd.api.types.is_numeric_dtype(data[c]) or pd.api.types.is_bool_dtype(data[c])
    ]
    if bad:
        raise DataError(f"response column(s) not numeric: {', '.join(map(repr, bad[:10]))}")
    return responses


def lmer_many(
    formula: str,
    data: pd.DataFrame,
    responses: Sequence[Any],
    *,
    reml: bool = True,
    control: LmerControl | Mapping[str, Any] | None = None,
    satterthwaite: bool = True,
    family: str | None = None,
    link: str | None = None,
    n_jobs: int | None = None,
    progress: bool | None = None,
) -> LmerManyResults:
    """Fit one mixed model's right-hand side to each of many responses.

    The model is fitted once to a template response (the first complete, non-constant
    one); every response is then fitted with lme4's ``refit``, which reuses the model
    structure and starts the optimizer at the template's estimates.  A response with
    missing values on rows the template uses gets a fresh ``lmer`` fit on its complete
    rows.  Chunks of responses run in ``n_jobs`` worker processes (joblib, or Dask under
    ``joblib.parallel_config(backend="dask")``); the results do not depend on
    ``n_jobs``.

    Parameters
    ----------
    formula : str
        ``"~ Days + (Days | Subject)"`` (a left-hand side, if any, is ignored).
    data : pandas.DataFrame
        The design columns and the response columns.
    responses : sequence
        Names of the numeric response columns of ``data``.
    reml : bool
        REML (default) or maximum likelihood.
    control : LmerControl or dict, optional
        lmerControl options of the template fit (see :func:`pylmer.lmer`).
    satterthwaite : bool
        Satterthwaite ``df`` and ``p_value`` (pylmer's computation from each refitted
        model, equal to lmerTest's; about the cost of the refit itself on small data);
        if False they are NaN.
    family, link : str, optional
        Fit GLMMs with glmer (``"binomial"``, ``"poisson"``, ``"Gamma"``,
        ``"inverse.gaussian"``, ``"negative_binomial"``; see :func:`pylmer.glmer`): then
        ``fixef`` holds Wald ``z_value`` and ``p_value`` (no ``df``), ``reml`` and
        ``satterthwaite`` do not apply, and a response with missing values gets a fresh
        ``glmer`` fit.
    n_jobs : int, optional
        joblib's ``n_jobs``.
    progress : bool, optional
        tqdm progress bar (default: 200 responses or more, on a terminal).

    Returns
    -------
    LmerManyResults
        ``fixef``, ``varcorr`` and ``fit`` long DataFrames.  A response whose fit fails
        (all values missing, constant, an lme4 error) has its error in ``fit`` and no
        rows in the others.

    Raises
    ------
    FormulaError
        No ``~``, or the right-hand side does not make an lme4 model with the data.
    DataError
        A response is not a column of ``data``, is listed twice, or is not numeric.
    """
    if not isinstance(formula, str) or "~" not in formula:
        raise FormulaError(f"formula must be a string like '~ x + (1 | g)', not {formula!r}")
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    responses = _response_columns(data, responses)
    frame = data[responses]
    rhs = formula.split("~", 1)[1].strip()
    if not rhs:
        raise FormulaError(f"the formula {formula!r} has no right-hand side")
    Y = frame.to_numpy(dtype=float, na_value=np.nan)
    design = data.drop(columns=responses)
    ctrl = as_control(control)
    spec = {
        "data": design,
        "formula": f"{_Y} ~ {rhs}",
        "y": _template_response(Y),
        "reml": bool(reml),
        "control": None if ctrl is None else ctrl.to_r(),
    }
    if family is not None:
        spec["family"], spec["link"] = family_and_link(family, link)
    elif link is not None:
        raise InvalidArgumentError("link needs a family (an LMM has no link)", argument="link")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        template = _fit_template(**spec)  # errors in the formula surface here, once
    payload = _Payload("template", spec)
    names = [str(r) for r in responses]
    chunks = _chunks(len(responses), n_jobs)
    tasks = [(payload, Y[:, c], names[c], bool(satterthwaite)) for c in chunks]
    with _Registered(payload, template):
        results = _run(
            _many_task, tasks, [c.stop - c.start for c in chunks], n_jobs, progress, "lmer_many"
        )
    labels = dict(zip(names, responses, strict=True))
    out = {}
    for kind in ("fixef", "varcorr", "fit"):
        parts = [r[kind] for r in results if r[kind] is not None and len(r[kind])]
        table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        if "response" in table:
            table["response"] = table["response"].map(labels)
        out[kind] = table
    if family is not None and len(out["fixef"]):  # Wald z tests of a GLMM
        out["fixef"] = out["fixef"].drop(columns="df").rename(columns={"t_value": "z_value"})
    fit = out["fit"]
    for col in ("messages", "error", "method"):
        fit[col] = fit[col].where(fit[col].notna() & (fit[col] != ""), None)
    return LmerManyResults(out["fixef"], out["varcorr"], fit)
