"""Power by simulation: how often a test rejects under a given effect (simr's ``powerSim``
and ``powerCurve``, with lme4 only).

* The parent process draws every response once with lme4's
  ``simulate(model, nsim, seed = seed, newparams = ...)`` (fixed effects replaced by
  ``effect``, variance parameters as fitted unless given);
* worker processes refit the model to chunks of them with lme4's ``refit`` and test one
  coefficient or term (``r_scripts/power.R``), with the parallel machinery of
  :mod:`pylmer.parallel` (joblib's processes, or a Dask cluster under
  ``joblib.parallel_config(backend="dask")``).

A plain-R loop -- ``Y <- simulate(m, nsim, seed = seed, newparams = p)``, then ``refit(m,
Y[[j]])`` and the test for each ``j`` -- gives the same p-values, whatever ``n_jobs`` is.
"""

from __future__ import annotations

import itertools
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .errors import InvalidArgumentError, RWarning, warn
from .models.glmer import GlmerModel
from .models.lmer import LmerModel
from .parallel import map_model
from .r import session as _r

__all__ = ["PowerResult", "power", "power_curve"]

_LMER_METHODS = ("satterthwaite", "kenward-roger", "lrt")
_GLMER_METHODS = ("z", "lrt")


@dataclass(frozen=True)
class PowerResult:
    """The result of :func:`power`.

    Attributes
    ----------
    power : float
        Share of the successful simulations whose p-value is below ``alpha`` (NaN when
        none succeeded).
    ci_low, ci_high : float
        Exact (Clopper-Pearson) binomial 95% interval of ``power``.
    nsim : int
        Number of simulations.
    n_failed : int
        Refits or tests that failed (no p-value; not counted in ``power``).
    n_singular : int
        Refits with a singular fit (counted in ``power``).
    pvalues : pandas.Series
        One p-value per simulation (index ``sim``; NaN where it failed).
    test, method, alpha :
        What was tested, how, at which level.
    params : dict
        The parameters the responses were simulated with (``beta``, ``theta`` and, for
        models with a scale, ``sigma``).
    errors : dict
        Simulation -> error text, for the failed ones.
    messages : dict
        Simulation -> R's warnings and messages (e.g. singular fits).
    """

    power: float
    ci_low: float
    ci_high: float
    nsim: int
    n_failed: int
    n_singular: int
    pvalues: pd.Series = field(repr=False)
    test: str
    method: str
    alpha: float
    params: dict[str, Any] = field(repr=False)
    errors: dict[int, str] = field(default_factory=dict, repr=False)
    messages: dict[int, str] = field(default_factory=dict, repr=False)

    def __str__(self) -> str:
        ok = self.nsim - self.n_failed
        hits = int(np.sum(self.pvalues.to_numpy() < self.alpha))
        return (
            f"Power for {self.test!r} ({self.method}, alpha = {self.alpha:g}): "
            f"{100 * self.power:.1f}% (95% CI {100 * self.ci_low:.1f}% to "
            f"{100 * self.ci_high:.1f}%), {hits} of {ok} simulations"
            + (f"; {self.n_failed} failed" if self.n_failed else "")
            + (
                f"; {self.n_singular} singular fit{'s' * (self.n_singular != 1)}"
                if self.n_singular
                else ""
            )
        )


def _binom_ci(hits: int, n: int) -> tuple[float, float]:
    """Exact (Clopper-Pearson) 95% interval of a binomial proportion."""
    if n == 0:
        return float("nan"), float("nan")
    from scipy.stats import binomtest

    ci = binomtest(hits, n).proportion_ci(0.95, method="exact")
    return float(ci.low), float(ci.high)


# ------------------------------------------------------------------ arguments


def _check_model(model: Any) -> LmerModel | GlmerModel:
    if not isinstance(model, (LmerModel, GlmerModel)):
        raise InvalidArgumentError(
            "model must be an LmerModel or GlmerModel (from pylmer.lmer / pylmer.glmer), "
            f"not {type(model).__name__}",
            argument="model",
        )
    return model


def _is_glmm(model: Any) -> bool:
    return isinstance(model, GlmerModel)


def _check_method(model: Any, method: str | None) -> str:
    allowed = _GLMER_METHODS if _is_glmm(model) else _LMER_METHODS
    if method is None:
        return allowed[0]
    key = str(method).lower().replace("_", "-") if isinstance(method, str) else method
    key = {"kr": "kenward-roger", "wald": "z"}.get(key, key)
    if key not in allowed:
        kind = "a GLMM" if _is_glmm(model) else "a linear mixed model"
        raise InvalidArgumentError(
            f"method must be one of {list(allowed)} for {kind}, not {method!r}",
            argument="method",
        )
    return key


def _check_alpha(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise InvalidArgumentError(
            f"alpha must be a number between 0 and 1, not {alpha!r}", argument="alpha"
        )
    return float(alpha)


def _check_test(test: Any) -> str:
    if not isinstance(test, str) or not test:
        raise InvalidArgumentError(
            f"test must name a fixed effect or a term, e.g. 'Days', not {test!r}",
            argument="test",
        )
    return test


def _check_nsim(nsim: Any) -> int:
    if isinstance(nsim, bool) or not isinstance(nsim, int | np.integer) or nsim < 1:
        raise InvalidArgumentError(
            f"nsim must be a positive integer, not {nsim!r}", argument="nsim"
        )
    return int(nsim)


def _check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or abs(seed) >= 2**31:
        raise InvalidArgumentError(
            f"seed must be None or an integer that fits R's (|seed| < 2**31), not {seed!r}",
            argument="seed",
        )
    return int(seed)


def _param_args(
    model: Any, effect: Mapping[str, float] | None, theta: Any, sigma: Any
) -> dict[str, Any]:
    """The parameter overrides as keyword arguments of ``.pylmer_power_simulate``."""
    out: dict[str, Any] = {}
    if effect is not None:
        if not isinstance(effect, Mapping) or not effect:
            raise InvalidArgumentError(
                f"effect must be a dict of fixed effect -> value, e.g. {{'Days': 5.0}}, "
                f"not {effect!r}",
                argument="effect",
            )
        known = list(model.results.fixef.index)
        bad = [k for k in effect if k not in known]
        if bad:
            raise InvalidArgumentError(
                f"effect names no fixed effect of the model: {', '.join(map(repr, bad))} "
                f"(fixed effects: {', '.join(map(repr, known))})",
                argument="effect",
            )
        values = []
        for k, v in effect.items():
            if isinstance(v, bool) or not isinstance(v, int | float | np.number):
                raise InvalidArgumentError(
                    f"effect[{k!r}] must be a number, not {v!r}", argument="effect"
                )
            values.append(float(v))
        out["beta"] = dict(zip(map(str, effect), values, strict=True))
    if theta is not None:
        th = np.atleast_1d(np.asarray(theta, dtype=float))
        if th.shape != (len(model.results.theta),):
            raise InvalidArgumentError(
                f"theta must have {len(model.results.theta)} values (the model's theta: "
                f"{', '.join(map(str, model.results.theta.index))}), not {th.size}",
                argument="theta",
            )
        out["theta"] = th
    if sigma is not None:
        if isinstance(sigma, bool) or not isinstance(sigma, int | float) or sigma <= 0:
            raise InvalidArgumentError(
                f"sigma must be a positive number, not {sigma!r}", argument="sigma"
            )
        out["sigma"] = float(sigma)
    return out


# ------------------------------------------------------------------ worker side

#: R objects a worker built for one call (the template of a design size, the ML fits of a
#: likelihood-ratio test), by (call token, size, test, method).
_PREPARED: OrderedDict[tuple[Any, ...], tuple[Any, Any]] = OrderedDict()
_PREPARED_SIZE = 8


def _prepared(model: Any, key: tuple[Any, ...]) -> tuple[Any, Any]:
    hit = _PREPARED.get(key)
    if hit is not None:
        _PREPARED.move_to_end(key)
        return hit
    _, design, test, method = key
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        handle = model._mermod()
        if design is not None:
            along, size, within = design
            handle = _r.call(".pylmer_power_template", handle, along, size, within=within)["model"]
        prep = _r.call(".pylmer_power_prepare", handle, test, method)
    _PREPARED[key] = (handle, prep)
    while len(_PREPARED) > _PREPARED_SIZE:
        _PREPARED.popitem(last=False)
    return handle, prep


def _texts(value: Any, k: int) -> list[str | None]:
    """An R character vector (NA: None) as ``k`` strings or None."""
    if value is None:
        return [None] * k
    values = np.atleast_1d(np.asarray(value, dtype=object))
    return [None if v is None or v is pd.NA or v != v else str(v) for v in values]


def _power_task(model: Any, item: tuple[Any, ...]) -> dict[str, Any]:
    """Refit and test one chunk of simulated responses (in a worker process)."""
    token, design, Y, test, method = item
    handle, prep = _prepared(model, (token, design, test, method))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = _r.call(".pylmer_power_chunk", handle, pd.DataFrame(Y), test, method, prep=prep)
    k = Y.shape[1]
    singular = np.atleast_1d(np.asarray(out["singular"], dtype=object))
    return {
        "p": np.atleast_1d(np.asarray(out["p"], dtype=float)).reshape(k),
        "singular": np.asarray([v is True or v == 1 for v in singular], dtype=bool),
        "error": _texts(out["error"], k),
        "conditions": _texts(out["conditions"], k),
    }


# ------------------------------------------------------------------ running


def _simulate(
    model: Any, handle: Any, nsim: int, seed: int | None, params: dict[str, Any]
) -> tuple[np.ndarray, dict[str, Any]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RWarning)
        out = _r.call(".pylmer_power_simulate", handle, nsim, seed=seed, **params)
    Y = np.asarray(out["Y"], dtype=float).reshape(-1, nsim)
    used = {
        "beta": pd.Series(out["beta"], dtype=float),
        "theta": pd.Series(out["theta"], dtype=float),
    }
    if out["sigma"] is not None and out["sigma"] == out["sigma"]:
        used["sigma"] = float(out["sigma"])
    return Y, used


def _result(
    parts: list[dict[str, Any]], nsim: int, test: str, method: str, alpha: float, params: dict
) -> PowerResult:
    p = np.concatenate([r["p"] for r in parts]) if parts else np.full(nsim, np.nan)
    singular = np.concatenate([r["singular"] for r in parts]) if parts else np.zeros(0, bool)
    errors = [e for r in parts for e in r["error"]]
    conds = [c for r in parts for c in r["conditions"]]
    failed = {i: e or "no p-value" for i, e in enumerate(errors) if e is not None or p[i] != p[i]}
    ok = p[~np.isnan(p)]
    hits = int(np.sum(ok < alpha))
    low, high = _binom_ci(hits, ok.size)
    if failed:
        first = next(iter(failed.values()))
        warn(
            f"{len(failed)} of {nsim} power simulations failed (not counted; "
            f"result.errors has the messages), e.g.: {first}",
            RWarning,
        )
    return PowerResult(
        power=hits / ok.size if ok.size else float("nan"),
        ci_low=low,
        ci_high=high,
        nsim=nsim,
        n_failed=len(failed),
        n_singular=int(singular.sum()),
        pvalues=pd.Series(p, index=pd.RangeIndex(nsim, name="sim"), name="p_value"),
        test=test,
        method=method,
        alpha=alpha,
        params=params,
        errors=failed,
        messages={i: c for i, c in enumerate(conds) if c},
    )


def power(
    model: LmerModel | GlmerModel,
    test: str,
    *,
    effect: Mapping[str, float] | None = None,
    nsim: int = 1000,
    alpha: float = 0.05,
    method: str | None = None,
    seed: int | None = None,
    n_jobs: int | None = None,
    progress: bool | None = False,
    theta: Sequence[float] | None = None,
    sigma: float | None = None,
) -> PowerResult:
    """Power of a test by simulation (simr's ``powerSim``), in parallel.

    ``nsim`` responses are drawn once from the model with lme4's ``simulate(model, nsim,
    seed = seed, newparams = ...)``; the model is refitted to each (lme4's ``refit``) in
    ``n_jobs`` worker processes and the test's p-value computed.  A plain-R loop with the
    same seed gives the same p-values, whatever ``n_jobs`` is.

    Parameters
    ----------
    model : LmerModel or GlmerModel
        The fitted model whose design and parameters are simulated.
    test : str
        A fixed-effect coefficient (e.g. ``"Days"``, ``"treatmentB"``) or a term of the
        fixed part (e.g. ``"treatment"``, tested with the model's anova F test).
    effect : dict, optional
        Fixed effects to replace before simulating, e.g. ``{"Days": 5.0}`` (the others as
        fitted).
    nsim : int
        Number of simulations.
    alpha : float
        Significance level.
    method : str, optional
        Linear mixed models: ``"satterthwaite"`` (default; pylmer's Satterthwaite t test
        of a coefficient, lmerTest's F test of a term), ``"kenward-roger"`` (lmerTest with
        pbkrtest) or ``"lrt"`` (likelihood-ratio test of dropping the term, both models
        fitted by ML).  GLMMs: ``"z"`` (default; lme4's Wald z test, a Wald chi-square for
        a term of several columns) or ``"lrt"``.
    seed : int, optional
        Seed of ``simulate``; the same seed gives the same p-values whatever ``n_jobs``.
    n_jobs : int, optional
        joblib's ``n_jobs`` (None: 1, or the active ``joblib.parallel_config``, e.g.
        ``backend="dask"``).
    progress : bool, optional
        Show a tqdm progress bar (None: for 200 simulations or more on a terminal).
    theta, sigma : optional
        Variance parameters to simulate with (lme4's ``theta`` order, and the residual
        standard deviation); default: as fitted.

    Returns
    -------
    PowerResult
        ``power``, its exact binomial 95% interval (``ci_low``, ``ci_high``), ``nsim``,
        ``n_failed``, ``n_singular`` and the per-simulation ``pvalues``.

    Raises
    ------
    InvalidArgumentError
        An unknown test, effect or method, or a likelihood-ratio test of a coefficient
        that is not a term (the message lists the choices).

    Examples
    --------
    >>> m = pylmer.lmer("Reaction ~ Days + (Days | Subject)", sleepstudy)
    >>> res = pylmer.power(m, "Days", effect={"Days": 3.0}, nsim=200, seed=2024, n_jobs=2)
    >>> print(res)  # doctest: +SKIP
    Power for 'Days' (satterthwaite, alpha = 0.05): 45.0% (95% CI 38.0% to 52.2%), 90 of
    200 simulations; 6 singular fits
    """
    model = _check_model(model)
    test = _check_test(test)
    method = _check_method(model, method)
    nsim = _check_nsim(nsim)
    alpha = _check_alpha(alpha)
    seed = _check_seed(seed)
    args = _param_args(model, effect, theta, sigma)
    handle = model._mermod()
    _r.call(".pylmer_power_prepare", handle, test, method)  # checks `test` here, not in a worker
    Y, params = _simulate(model, handle, nsim, seed, args)
    results = _run_designs(model, [(None, Y)], test, method, n_jobs, progress)
    return _result(results[0], nsim, test, method, alpha, params)


def _chunks(n: int, n_jobs: int | None) -> list[slice]:
    """``range(n)`` in contiguous chunks, about four per worker and at least 20 (for the
    progress bar); the chunking never changes a result."""
    import joblib

    try:
        workers = max(1, int(joblib.effective_n_jobs(n_jobs)))
    except Exception:  # a backend that cannot tell (e.g. no Dask client yet)
        workers = 1
    bounds = np.linspace(0, n, min(n, max(4 * workers, 20)) + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]


def _run_designs(
    model: Any,
    designs: list[tuple[Any, np.ndarray]],
    test: str,
    method: str,
    n_jobs: int | None,
    progress: bool | None,
) -> list[list[dict[str, Any]]]:
    """Refit and test every simulated response of every design in one parallel run
    (:func:`pylmer.parallel.map_model`); the chunks' results grouped by design."""
    token = uuid.uuid4().hex  # the workers' prepared objects belong to this call
    items, sizes, owner = [], [], []
    for d, (design, Y) in enumerate(designs):
        for c in _chunks(Y.shape[1], n_jobs):
            items.append((token, design, Y[:, c], test, method))
            sizes.append(c.stop - c.start)
            owner.append(d)
    out = map_model(
        _power_task, model, items, n_jobs=n_jobs, progress=progress, desc="power", sizes=sizes
    )
    grouped: list[list[dict[str, Any]]] = [[] for _ in designs]
    for d, r in zip(owner, out, strict=True):
        grouped[d].append(r)
    return grouped


def power_curve(
    model: LmerModel | GlmerModel,
    test: str,
    *,
    along: str,
    sizes: Sequence[int],
    within: str | None = None,
    effect: Mapping[str, float] | None = None,
    nsim: int = 200,
    alpha: float = 0.05,
    method: str | None = None,
    seed: int | None = None,
    n_jobs: int | None = None,
    progress: bool | None = False,
    theta: Sequence[float] | None = None,
    sigma: float | None = None,
) -> pd.DataFrame:
    """Power at several sizes of the design (simr's ``powerCurve`` with ``extend``).

    For each size the model's data are cut or extended, the model is refitted to that
    design (the template), and :func:`power`'s simulation runs on it with the original
    model's parameters (``effect``, ``theta``, ``sigma`` replacing them as in
    :func:`power`) and the same ``seed``.

    Parameters
    ----------
    model : LmerModel or GlmerModel
        The fitted model.
    test : str
        The coefficient or term tested (see :func:`power`).
    along : str
        Without ``within``: a grouping column (e.g. ``"Subject"``) whose number of levels
        is the size.  Sizes below the data's number of levels keep the first levels (in
        the order they appear); sizes above add new levels, copies of the existing ones in
        turn (labelled ``"<level>.<copy>"``), as simr's ``extend(along = )``.
        With ``within``: a column whose number of distinct values *within each level of*
        ``within`` is the size (e.g. ``along="Days", within="Subject"``: measurements per
        subject); below, the first values; above, new values (a numeric column continues
        with its own step), each a copy of the rows of an existing value.
    sizes : sequence of int
        The sizes.
    within : str, optional
        See ``along``.
    effect, nsim, alpha, method, seed, n_jobs, progress, theta, sigma
        As for :func:`power` (``nsim`` per size).

    Returns
    -------
    pandas.DataFrame
        One row per size: ``size``, ``power``, ``ci_low``, ``ci_high``, ``nsim``,
        ``failed``, ``singular``, ``nobs``.  Plot it with :func:`pylmer.plot.power_curve`.

    Examples
    --------
    >>> curve = pylmer.power_curve(m, "Days", along="Subject", sizes=[8, 16, 24, 32, 40],
    ...                            effect={"Days": 3.0}, nsim=200, seed=2024, n_jobs=2)
    """
    model = _check_model(model)
    test = _check_test(test)
    method = _check_method(model, method)
    nsim = _check_nsim(nsim)
    alpha = _check_alpha(alpha)
    seed = _check_seed(seed)
    args = _param_args(model, effect, theta, sigma)
    columns = [str(c) for c in model.data.columns]
    for name, value in (("along", along), ("within", within)):
        if value is None and name == "within":
            continue
        if not isinstance(value, str) or value not in columns:
            raise InvalidArgumentError(
                f"{name} must name a column of the model's data ({', '.join(columns)}), "
                f"not {value!r}",
                argument=name,
            )
    if along == within:
        raise InvalidArgumentError("along and within must be different columns", argument="within")
    if isinstance(sizes, int | np.integer):
        sizes = [int(sizes)]
    try:
        size_list = [int(s) for s in sizes]
    except (TypeError, ValueError):
        raise InvalidArgumentError(
            f"sizes must be positive integers, not {sizes!r}", argument="sizes"
        ) from None
    if not size_list or any(s < 1 or s != t for s, t in zip(size_list, sizes, strict=True)):
        raise InvalidArgumentError(
            f"sizes must be positive integers, not {sizes!r}", argument="sizes"
        )
    weights = getattr(model._spec, "weights", None)
    if weights is not None and not isinstance(weights, str):
        raise InvalidArgumentError(
            "power_curve needs weights given as a column of the data (the design changes)",
            argument="model",
        )
    handle = model._mermod()
    _r.call(".pylmer_power_prepare", handle, test, method)  # checks `test` here, not in a worker
    # the parameters of the original model, with the overrides
    base = _r.call(".pylmer_power_params", handle, **args)
    params = {"beta": dict(pd.Series(base["beta"], dtype=float))}
    params["theta"] = np.atleast_1d(np.asarray(base["theta"], dtype=float))
    if base.get("sigma") is not None:
        params["sigma"] = float(base["sigma"])
    designs, info = [], []
    for size in size_list:
        design = (along, size, within)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tmpl = _r.call(".pylmer_power_template", handle, along, size, within=within)
        Y, _ = _simulate(model, tmpl["model"], nsim, seed, params)
        designs.append((design, Y))
        info.append(int(Y.shape[0]))
    grouped = _run_designs(model, designs, test, method, n_jobs, progress)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RWarning)
        for size, nobs, parts in zip(size_list, info, grouped, strict=True):
            res = _result(parts, nsim, test, method, alpha, params)
            rows.append(
                {
                    "size": size,
                    "power": res.power,
                    "ci_low": res.ci_low,
                    "ci_high": res.ci_high,
                    "nsim": nsim,
                    "failed": res.n_failed,
                    "singular": res.n_singular,
                    "nobs": nobs,
                }
            )
    out = pd.DataFrame(rows)
    out.attrs.update(test=test, method=method, alpha=alpha, along=along, within=within)
    return out
