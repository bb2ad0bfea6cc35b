"""Figures for fitted models (needs matplotlib: ``pip install pylmer[plot]``).

- :func:`caterpillar`: random effects per level with conditional intervals;
- :func:`residual_plot`, :func:`qq_plot` and :func:`diagnostics`: residual checks;
- :func:`observed_vs_fitted`: one small panel per group level;
- :func:`convergence_trace`: the iterations of a :class:`~pylmer.MixedMLRegressor`;
- :func:`check_model`: one figure to check a fitted model at a glance;
- :func:`power_curve`: power against design size (:func:`pylmer.power_curve`).

Each function takes a fitted :class:`~pylmer.LmerModel` (or its
:class:`~pylmer.results.LmerResults`, or a fitted :class:`~pylmer.MixedMLRegressor`
where that makes sense) and optionally the matplotlib Axes to draw on; it returns the
Axes (one panel) or the Figure (several panels).  matplotlib is imported on first use,
so ``import pylmer`` never needs it; pick a backend yourself (``matplotlib.use("Agg")``
for scripts writing PNG files).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .errors import InvalidArgumentError
from .results import GlmerResults, LmerResults

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "caterpillar",
    "check_model",
    "convergence_trace",
    "diagnostics",
    "observed_vs_fitted",
    "power_curve",
    "qq_plot",
    "residual_plot",
]

_INSTALL = "pylmer.plot needs matplotlib: pip install pylmer[plot] (or pip install matplotlib)"


def _pyplot() -> Any:
    """Import matplotlib.pyplot, or raise an ImportError saying how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(_INSTALL) from exc
    return plt


def _results(model: Any) -> LmerResults:
    """The results of an LmerModel / GlmerModel, their results, or a fitted MixedMLRegressor
    (a GlmerResults serves where the fields agree: ranef, ranef_sd, fitted, residuals)."""
    if isinstance(model, LmerResults | GlmerResults):
        return model  # type: ignore[return-value]
    results = getattr(model, "results", None)
    if isinstance(results, LmerResults | GlmerResults):
        return results  # type: ignore[return-value]
    if hasattr(model, "history_") and hasattr(model, "lmer_"):  # a fitted MixedMLRegressor
        if isinstance(model.lmer_, list):
            raise InvalidArgumentError(
                "this MixedMLRegressor has several targets: pass one of its lmer_ models"
            )
        return model.lmer_.results
    raise InvalidArgumentError(
        f"expected a fitted LmerModel, LmerResults or MixedMLRegressor, not {type(model).__name__}"
    )


def _group(res: LmerResults, group: str | None) -> str:
    if group is None:
        return next(iter(res.ranef))
    if group not in res.ranef:
        raise InvalidArgumentError(
            f"no grouping factor {group!r}; the model has {', '.join(res.ranef)}"
        )
    return group


def _axes_list(ax: Any, n: int) -> list[Axes] | None:
    if ax is None:
        return None
    axes = list(np.ravel(ax)) if isinstance(ax, Sequence | np.ndarray) else [ax]
    if len(axes) != n:
        raise InvalidArgumentError(f"got {len(axes)} Axes for {n} panels")
    return axes


def caterpillar(
    model: Any,
    group: str | None = None,
    *,
    terms: Sequence[str] | None = None,
    level: float = 0.95,
    sort: bool = True,
    ax: Axes | Sequence[Axes] | None = None,
) -> Figure:
    """Caterpillar plot: the random effects of one grouping factor with intervals.

    Each level's conditional mode is drawn with the interval
    ``mode +- z * conditional sd`` (lme4's ``dotplot(ranef(m, condVar = TRUE))``).

    Parameters
    ----------
    model : LmerModel, LmerResults or MixedMLRegressor
        A fitted model (for MixedML, its random-effects model ``lmer_``).
    group : str, optional
        The grouping factor; default: the first one.
    terms : sequence of str, optional
        Which random-effect terms (columns of ``ranef[group]``); default: all, one panel
        each.
    level : float, default=0.95
        Coverage of the normal intervals.
    sort : bool, default=True
        Order the levels by the effect of the first term.
    ax : Axes or sequence of Axes, optional
        One Axes per term to draw on; default: a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not 0 < level < 1:
        raise InvalidArgumentError(f"level must be between 0 and 1, not {level}")
    res = _results(model)
    group = _group(res, group)
    modes, sds = res.ranef[group], res.ranef_sd[group]
    terms = list(modes.columns) if terms is None else list(terms)
    unknown = [t for t in terms if t not in modes.columns]
    if unknown:
        raise InvalidArgumentError(
            f"no term(s) {unknown} for {group!r}; it has {list(modes.columns)}"
        )
    order = np.argsort(modes[terms[0]].to_numpy(), kind="stable") if sort else np.arange(len(modes))
    modes, sds = modes.iloc[order], sds.iloc[order]
    z = NormalDist().inv_cdf(0.5 + level / 2)
    n = len(modes)
    axes = _axes_list(ax, len(terms))
    if axes is None:
        plt = _pyplot()
        fig, grid = plt.subplots(
            1,
            len(terms),
            sharey=True,
            squeeze=False,
            figsize=(1.0 + 3.2 * len(terms), min(max(3.0, 0.16 * n + 1.2), 30.0)),
        )
        axes = list(grid[0])
    y = np.arange(n)
    for axis, term in zip(axes, terms, strict=True):
        axis.errorbar(
            modes[term].to_numpy(),
            y,
            xerr=z * sds[term].to_numpy(),
            fmt="o",
            ms=3,
            elinewidth=1,
            capsize=0,
        )
        axis.axvline(0.0, color="grey", lw=0.8, ls=":")
        axis.set_title(str(term))
        axis.set_xlabel("conditional mode")
        if n <= 60:
            axis.set_yticks(y, [str(v) for v in modes.index], fontsize=7 if n > 25 else 9)
        else:
            axis.set_yticks([])
    axes[0].set_ylabel(group)
    fig = axes[0].figure
    fig.suptitle(f"Random effects of {group} ({level:.0%} conditional intervals)")
    fig.tight_layout()
    return fig


def residual_plot(model: Any, *, ax: Axes | None = None) -> Axes:
    """Residuals against fitted values, with a running mean of the residuals.

    Parameters
    ----------
    model : LmerModel or LmerResults
        A fitted model.
    ax : Axes, optional
        Where to draw; default: a new figure.

    Returns
    -------
    matplotlib.axes.Axes
    """
    res = _lmer_only(model)
    used = res.fitted.notna().to_numpy()
    fitted = res.fitted.to_numpy()[used]
    resid = res.residuals.to_numpy()[used]
    ax = ax if ax is not None else _pyplot().subplots(figsize=(5, 4))[1]
    ax.scatter(fitted, resid, s=8, alpha=_alpha(len(fitted)), lw=0)
    ax.axhline(0.0, color="grey", lw=0.8, ls=":")
    centres, means = _binned_means(fitted, resid)
    ax.plot(centres, means, color="C3", lw=1.5, label="binned mean")
    ax.set_xlabel("fitted")
    ax.set_ylabel("residual")
    ax.set_title("Residuals vs fitted")
    ax.legend(loc="best", fontsize=8)
    return ax


def qq_plot(model: Any, *, ax: Axes | None = None) -> Axes:
    """Normal QQ plot of the scaled residuals (or of any values).

    Parameters
    ----------
    model : LmerModel, LmerResults or array-like
        A fitted model (its scaled residuals are used) or the values themselves.
    ax : Axes, optional
        Where to draw; default: a new figure.

    Returns
    -------
    matplotlib.axes.Axes
        The points and, as R's ``qqline``, the line through the quartiles.
    """
    if isinstance(model, np.ndarray | pd.Series | list | tuple):
        values = np.asarray(model, dtype=float)
        label = "sample quantiles"
    else:
        values = np.asarray(_lmer_only(model).scaled_residuals, dtype=float)
        label = "scaled residuals"
    values = np.sort(values[np.isfinite(values)])
    if values.size < 2:
        raise InvalidArgumentError("a QQ plot needs at least two finite values")
    normal = NormalDist()
    probs = (np.arange(1, values.size + 1) - 0.5) / values.size
    theory = np.array([normal.inv_cdf(p) for p in probs])
    q1, q3 = np.quantile(values, [0.25, 0.75])
    t1, t3 = normal.inv_cdf(0.25), normal.inv_cdf(0.75)
    slope = (q3 - q1) / (t3 - t1)
    ax = ax if ax is not None else _pyplot().subplots(figsize=(5, 4))[1]
    ax.scatter(theory, values, s=8, alpha=_alpha(values.size), lw=0)
    ends = np.array([theory[0], theory[-1]])
    ax.plot(ends, q1 + slope * (ends - t1), color="C3", lw=1.2)
    ax.set_xlabel("normal quantiles")
    ax.set_ylabel(label)
    ax.set_title("Normal QQ plot")
    return ax


def diagnostics(model: Any) -> Figure:
    """Residuals vs fitted and the normal QQ plot side by side.

    Parameters
    ----------
    model : LmerModel or LmerResults
        A fitted model.

    Returns
    -------
    matplotlib.figure.Figure
    """
    res = _lmer_only(model)
    fig, (left, right) = _pyplot().subplots(1, 2, figsize=(10, 4))
    residual_plot(res, ax=left)
    qq_plot(res, ax=right)
    fig.suptitle(res.formula)
    fig.tight_layout()
    return fig


def observed_vs_fitted(
    model: Any,
    group: str | None = None,
    *,
    x: str | None = None,
    levels: Sequence[Any] | None = None,
    ncols: int = 6,
    ax: Axes | Sequence[Axes] | None = None,
) -> Figure:
    """Observed and fitted values, one small panel per level of a grouping factor.

    Parameters
    ----------
    model : LmerModel
        A fitted model (its data are needed to find each row's group).
    group : str, optional
        A grouping column of the model's data; default: the first grouping factor.
    x : str, optional
        A numeric column for the horizontal axis: observed values as points, fitted
        values as a line (e.g. ``x="Days"``).  Default: observed against fitted, with the
        identity line.
    levels : sequence, optional
        The levels to show (default: all, in the order of the random effects).
    ncols : int, default=6
        Panels per row.
    ax : sequence of Axes, optional
        One Axes per level; default: a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    data = getattr(model, "data", None)
    if not isinstance(data, pd.DataFrame) or not isinstance(
        getattr(model, "results", None), LmerResults
    ):
        raise InvalidArgumentError(
            f"observed_vs_fitted needs a fitted LmerModel, not {type(model).__name__}"
        )
    res = model.results
    group = _group(res, group)
    if group not in data.columns:
        raise InvalidArgumentError(
            f"{group!r} is not a column of the model's data (a nested factor?)"
        )
    if x is not None and x not in data.columns:
        raise InvalidArgumentError(f"{x!r} is not a column of the model's data")
    keys = data[group].astype(str)
    levels = list(res.ranef[group].index) if levels is None else list(levels)
    missing = [lev for lev in levels if str(lev) not in set(keys)]
    if missing:
        raise InvalidArgumentError(f"level(s) {missing} of {group!r} are not in the data")
    fitted = res.fitted
    observed = fitted + res.residuals
    n = len(levels)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    axes = _axes_list(ax, n)
    if axes is None:
        fig, grid = _pyplot().subplots(
            nrows,
            ncols,
            sharex=True,
            sharey=True,
            squeeze=False,
            figsize=(2.3 * ncols, 1.9 * nrows + 0.6),
        )
        for extra in grid.ravel()[n:]:
            extra.set_visible(False)
        axes = list(grid.ravel()[:n])
    for axis, lev in zip(axes, levels, strict=True):
        rows = (keys == str(lev)).to_numpy() & fitted.notna().to_numpy()
        if x is None:
            axis.scatter(fitted[rows], observed[rows], s=10)
            both = np.concatenate([fitted[rows], observed[rows]])
            lims = [both.min(), both.max()]
            axis.plot(lims, lims, color="grey", lw=0.8, ls=":")
        else:
            xs = data.loc[rows, x].to_numpy(dtype=float)
            order = np.argsort(xs, kind="stable")
            axis.scatter(xs, observed[rows], s=10)
            axis.plot(xs[order], fitted[rows].to_numpy()[order], color="C1", lw=1.5)
        axis.set_title(str(lev), fontsize=9)
    fig = axes[0].figure
    xlabel = "fitted" if x is None else x
    fig.supxlabel(xlabel)
    fig.supylabel("observed")
    fig.suptitle(f"Observed vs fitted by {group}")
    fig.tight_layout()
    return fig


def convergence_trace(model: Any, *, ax: Sequence[Axes] | None = None) -> Figure:
    """The iterations of a MixedML fit: log-likelihood, change of u, variance components.

    Parameters
    ----------
    model : MixedMLRegressor or pandas.DataFrame
        A fitted MixedMLRegressor (its ``history_``) or such a history.
    ax : sequence of 3 Axes, optional
        Where to draw; default: a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        Three panels: the marginal log-likelihood of the random-effects model, the
        relative change of the random effects (log scale, with ``tol`` when known), and
        the variance components with the residual variance.
    """
    history = model if isinstance(model, pd.DataFrame) else getattr(model, "history_", None)
    if not isinstance(history, pd.DataFrame):
        raise InvalidArgumentError(
            f"expected a fitted MixedMLRegressor or its history_, not {type(model).__name__}"
        )
    axes = _axes_list(ax, 3)
    if axes is None:
        fig, grid = _pyplot().subplots(1, 3, figsize=(13, 3.8))
        axes = list(grid)
    it = history.index.to_numpy()
    for col in [c for c in history.columns if c.startswith("loglik")]:
        axes[0].plot(it, history[col], marker="o", ms=3, label=col)
    reason = getattr(model, "stop_reason_", None)
    axes[0].set_title(
        "log-likelihood (random-effects model)"
        + (f"\nstopped: {reason}" if isinstance(reason, str) else "")
    )
    delta = history["max_delta_u"].to_numpy(dtype=float)
    finite = np.isfinite(delta) & (delta > 0)
    axes[1].semilogy(it[finite], delta[finite], marker="o", ms=3)
    tol = getattr(model, "tol", None)
    if tol is not None:
        axes[1].axhline(tol, color="grey", ls=":", lw=1, label=f"tol = {tol:g}")
        axes[1].legend(fontsize=8)
    axes[1].set_title("largest change of a term's random effects (relative)")
    for col in [c for c in history.columns if c.startswith("var(")]:  # includes var(Residual)
        axes[2].plot(it, history[col], marker="o", ms=3, label=col)
    axes[2].set_title("variance components")
    axes[2].legend(fontsize=7)
    for axis in axes:
        axis.set_xlabel("iteration")
    fig = axes[0].figure
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ power curve


def power_curve(curve: pd.DataFrame, *, target: float = 0.8, ax: Axes | None = None) -> Axes:
    """Power against design size, with exact 95% intervals (from :func:`pylmer.power_curve`).

    Parameters
    ----------
    curve : pandas.DataFrame
        The result of :func:`pylmer.power_curve` (columns ``size``, ``power``,
        ``ci_low``, ``ci_high``).
    target : float
        Power drawn as a dashed reference line (e.g. 0.8); the first size reaching it is
        marked.
    ax : Axes, optional
        Where to draw; default: a new figure.

    Returns
    -------
    matplotlib.axes.Axes
    """
    need = {"size", "power", "ci_low", "ci_high"}
    if not isinstance(curve, pd.DataFrame) or not need <= set(curve.columns):
        raise InvalidArgumentError(
            "power_curve() draws the DataFrame of pylmer.power_curve (columns size, power, "
            "ci_low, ci_high)",
            argument="curve",
        )
    ax = ax if ax is not None else _pyplot().subplots(figsize=(6, 4))[1]
    x = curve["size"].to_numpy(dtype=float)
    y = curve["power"].to_numpy(dtype=float)
    ax.fill_between(
        x,
        curve["ci_low"],
        curve["ci_high"],
        color="C0",
        alpha=0.2,
        lw=0,
        label="95% interval (exact binomial)",
    )
    ax.plot(x, y, "o-", color="C0", label="power")
    ax.axhline(target, color="grey", ls="--", lw=1)
    ax.text(x.min(), target, f" {target:.0%}", va="bottom", ha="left", color="grey", fontsize=8)
    reached = np.flatnonzero(y >= target)
    if reached.size:
        first = x[reached[0]]
        ax.axvline(first, color="C3", ls=":", lw=1)
        right = first > (x.min() + x.max()) / 2  # label on the side with room
        ax.annotate(
            f"{target:.0%} reached at {first:g}",
            (first, 0.08),
            textcoords="offset points",
            xytext=(-6 if right else 6, 0),
            ha="right" if right else "left",
            color="C3",
            fontsize=9,
        )
    attrs = curve.attrs
    along, within = attrs.get("along"), attrs.get("within")
    if along and within:
        xlabel = f"number of {along} values per {within}"
    elif along:
        xlabel = f"number of levels of {along}"
    else:
        xlabel = "size"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("power")
    ax.set_ylim(-0.02, 1.02)
    ax.yaxis.set_major_formatter(_pyplot().matplotlib.ticker.PercentFormatter(1.0))
    title = "Power curve"
    if attrs.get("test"):
        nsim = int(curve["nsim"].iloc[0]) if "nsim" in curve else None
        title += f": {attrs['test']} ({attrs.get('method')}, alpha {attrs.get('alpha', 0.05):g}"
        title += f", {nsim} simulations per size)" if nsim else ")"
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8)  # power rises with size: room there
    ax.grid(alpha=0.3)
    return ax


# ------------------------------------------------------------------ model check


def _observed(model: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """The observed response on the used rows and its binomial totals (1 unless a
    ``cbind(successes, failures)`` response), or None when the left-hand side is not
    something pandas can evaluate."""
    formula = model.formula
    lhs = formula.split("~", 1)[0].strip()
    data = model.data
    used = model.results.fitted.notna().to_numpy()
    try:
        if lhs.startswith("cbind(") and lhs.endswith(")"):
            inner = lhs[len("cbind(") : -1]
            depth, cut = 0, None
            for i, ch in enumerate(inner):
                depth += ch == "("
                depth -= ch == ")"
                if ch == "," and depth == 0:
                    cut = i
                    break
            if cut is None:
                return None
            s = np.asarray(data.eval(inner[:cut].strip().strip("`")), dtype=float)
            f = np.asarray(data.eval(inner[cut + 1 :].strip().strip("`")), dtype=float)
            total = s + f
            return (s / total)[used], total[used]
        name = lhs.strip("`")
        col = data[name] if name in data.columns else data.eval(lhs)
        if isinstance(col.dtype, pd.CategoricalDtype) or col.dtype == object:
            first = col.cat.categories[0] if hasattr(col, "cat") else sorted(col.dropna())[0]
            values = (col != first).astype(float).to_numpy()
        else:
            values = np.asarray(col, dtype=float)
        return values[used], np.ones(int(used.sum()))
    except Exception:  # an expression pandas cannot evaluate (e.g. log(y))
        return None


def _scale_location(fitted: np.ndarray, scaled: np.ndarray, ax: Axes) -> None:
    root = np.sqrt(np.abs(scaled))
    ax.scatter(fitted, root, s=8, alpha=_alpha(fitted.size), lw=0)
    centres, means = _binned_means(fitted, root)
    ax.plot(centres, means, color="C3", lw=1.5, label="binned mean")
    ax.set_xlabel("fitted")
    ax.set_ylabel("√|scaled residual|")
    ax.set_title("Scale-location (flat: constant variance)")
    ax.legend(loc="best", fontsize=8)


def _ranef_qq(values: np.ndarray, group: str, term: str, ax: Axes) -> None:
    qq_plot(values, ax=ax)
    if len(values) <= 200:  # few levels: larger points
        ax.collections[-1].set_sizes([18])
    ax.set_ylabel(f"conditional mode ({len(values)} levels)")
    ax.set_title(f"QQ of random effect: {term} | {group}")


def _influence_panel(model: Any, group: str, max_levels: int, ax: Axes) -> None:
    n_levels = len(model.results.ranef[group])
    if n_levels <= max_levels:
        cd = model.cooks_distance(groups=group).sort_values()
        ypos = np.arange(len(cd))
        ax.barh(ypos, cd.to_numpy(), color="C0", height=0.7)
        ax.set_yticks(ypos)
        ax.set_yticklabels([str(v) for v in cd.index], fontsize=7 if len(cd) > 20 else 8)
        cut = 4 / n_levels
        ax.axvline(cut, color="C3", ls="--", lw=1, label=f"4 / {n_levels} levels")
        ax.set_xlabel("Cook's distance (leave one level out)")
        ax.set_ylabel(group)
        ax.set_title(f"Influence of each {group} (refits without it)")
        ax.legend(loc="lower right", fontsize=8)
        return
    cd = model.cooks_distance().to_numpy()
    used = np.isfinite(cd)
    ax.scatter(np.flatnonzero(used), cd[used], s=8, alpha=_alpha(int(used.sum())), lw=0)
    for i in np.argsort(np.where(used, cd, -np.inf))[-3:]:
        level = model.data[group].iloc[i] if group in model.data else i
        ax.annotate(
            f"{group} {level}", (i, cd[i]), fontsize=7, xytext=(3, 0), textcoords="offset points"
        )
    ax.set_xlabel("observation")
    ax.set_ylabel("Cook's distance (lme4, one-step)")
    ax.set_title(f"Influence of observations ({n_levels} levels of {group}: no refits)")


def _predictive_panel(
    model: Any, observed: tuple[np.ndarray, np.ndarray] | None, nsim: int, seed: int, ax: Axes
) -> None:
    if observed is None:
        ax.text(
            0.5,
            0.5,
            "the response is an expression:\nno observed-vs-simulated check",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
        return
    y, total = observed
    sims = model.simulate(nsim=nsim, seed=seed).to_numpy(dtype=float)
    if not np.all(total == 1):
        sims = sims / total[:, None]
    values = np.unique(y[np.isfinite(y)])
    discrete = values.size <= 12 and np.allclose(values, np.round(values))
    if discrete:
        grid = np.union1d(values, np.unique(sims[np.isfinite(sims)]))[:25]
        obs = np.array([np.mean(y == v) for v in grid])
        sim = np.array([[np.mean(sims[:, j] == v) for v in grid] for j in range(sims.shape[1])])
        lo, mid, hi = np.quantile(sim, [0.05, 0.5, 0.95], axis=0)
        ax.bar(grid, obs, width=0.6, color="C0", alpha=0.6, label="observed")
        ax.errorbar(
            grid,
            mid,
            yerr=[mid - lo, hi - mid],
            fmt="o",
            color="C3",
            ms=4,
            label=f"simulated (median, 90% of {nsim})",
        )
        ax.set_xticks(grid)
        ax.set_xlabel("response value")
        ax.set_ylabel("share of observations")
    else:
        from scipy.stats import gaussian_kde

        finite = y[np.isfinite(y)]
        lo, hi = (
            np.nanmin([finite.min(), np.nanmin(sims)]),
            np.nanmax([finite.max(), np.nanmax(sims)]),
        )
        grid = np.linspace(lo, hi, 200)
        for j in range(sims.shape[1]):
            s = sims[:, j]
            s = s[np.isfinite(s)]
            if s.size > 1 and np.ptp(s) > 0:
                ax.plot(
                    grid,
                    gaussian_kde(s)(grid),
                    color="C3",
                    alpha=0.15,
                    lw=0.8,
                    label=f"simulated ({nsim} draws)" if j == 0 else None,
                )
        ax.plot(grid, gaussian_kde(finite)(grid), color="C0", lw=2, label="observed")
        ax.set_xlabel("response" if np.all(total == 1) else "proportion")
        ax.set_ylabel("density")
    ax.set_title("Observed vs simulated responses (from the fit)")
    ax.legend(loc="best", fontsize=8)


def _binned_residuals(model: Any, observed: tuple[np.ndarray, np.ndarray] | None, ax: Axes) -> None:
    if observed is None:
        ax.text(
            0.5,
            0.5,
            "the response is an expression:\nno binned residuals",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
        return
    y, total = observed
    res = model.results
    mu = res.fitted.to_numpy()[res.fitted.notna().to_numpy()]
    r = y - mu
    family = getattr(model, "family", "")
    var = mu * (1 - mu) / total if family == "binomial" else np.full_like(mu, np.var(r))
    if family == "poisson":
        var = mu
    bins = int(max(5, min(40, np.sqrt(mu.size))))
    edges = np.unique(np.quantile(mu, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, mu, side="right") - 1, 0, len(edges) - 2)
    xs, ms, bounds = [], [], []
    for k in np.unique(which):
        sel = which == k
        xs.append(mu[sel].mean())
        ms.append(r[sel].mean())
        bounds.append(2 * np.sqrt(var[sel].sum()) / sel.sum())
    xs, ms, bounds = np.asarray(xs), np.asarray(ms), np.asarray(bounds)
    inside = np.abs(ms) <= bounds
    ax.fill_between(xs, -bounds, bounds, color="grey", alpha=0.2, lw=0, label="±2 SE")
    ax.scatter(xs[inside], ms[inside], color="C0", s=18, label="within")
    ax.scatter(xs[~inside], ms[~inside], color="C3", s=18, label="outside")
    ax.axhline(0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("fitted mean (binned)")
    ax.set_ylabel("mean residual (observed - fitted)")
    ax.set_title(f"Binned residuals ({inside.mean():.0%} of {len(xs)} bins within ±2 SE)")
    ax.legend(loc="best", fontsize=8)


def check_model(
    model: Any, *, nsim: int = 50, seed: int = 1, max_influence_levels: int = 50
) -> Figure:
    """One figure to check a fitted model at a glance (in the spirit of performance's
    ``check_model``).

    Panels: residuals vs fitted; scale-location; a normal QQ plot of the residuals (linear
    mixed models) or binned residuals (GLMMs); observed vs simulated response
    distributions (``nsim`` draws of the model's ``simulate``); the influence of each
    level of the first grouping factor (Cook's distance of lme4's leave-one-level-out
    refits, or, beyond ``max_influence_levels`` levels, lme4's one-step Cook's distance
    of each observation); a QQ plot of each random-effect term's conditional modes.

    Parameters
    ----------
    model : LmerModel or GlmerModel
        The fitted model.
    nsim : int
        Simulated responses for the observed-vs-simulated panel.
    seed : int
        Seed of the simulation.
    max_influence_levels : int
        Most levels for which the influence panel refits the model without each level.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = pylmer.plot.check_model(m)
    >>> fig.savefig("check.png", dpi=120)  # doctest: +SKIP
    """
    res = _lmer_only(model)
    if not hasattr(model, "simulate") or not hasattr(model, "cooks_distance"):
        raise InvalidArgumentError(
            f"check_model() needs a fitted model (pylmer.lmer / pylmer.glmer), not "
            f"{type(model).__name__}",
            argument="model",
        )
    glmm = isinstance(res, GlmerResults)
    terms = [(g, c) for g, table in res.ranef.items() for c in table.columns]
    n_panels = 5 + len(terms)
    ncols = 3
    nrows = math.ceil(n_panels / ncols)
    fig, axes = _pyplot().subplots(nrows, ncols, figsize=(5.2 * ncols, 4.2 * nrows))
    axes = list(np.ravel(axes))
    used = res.fitted.notna().to_numpy()
    fitted = res.fitted.to_numpy()[used]
    observed = _observed(model)
    residual_plot(res, ax=axes[0])
    if glmm:
        axes[0].set_ylabel("deviance residual")
    _scale_location(fitted, np.asarray(res.scaled_residuals, dtype=float), axes[1])
    if glmm:
        _binned_residuals(model, observed, axes[2])
    else:
        qq_plot(res, ax=axes[2])
        axes[2].set_title("Normal QQ plot of the residuals")
    _predictive_panel(model, observed, nsim, seed, axes[3])
    _influence_panel(model, terms[0][0], max_influence_levels, axes[4])
    for ax, (group, term) in zip(axes[5:], terms, strict=False):
        _ranef_qq(res.ranef[group][term].to_numpy(dtype=float), group, term, ax)
    for ax in axes[n_panels:]:
        ax.set_axis_off()
    kind = f"GLMM, {model.family}" if glmm and hasattr(model, "family") else "LMM"
    fig.suptitle(f"Model check: {res.formula}  ({kind}, {res.nobs} observations)", fontsize=13)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ helpers


def _lmer_only(model: Any) -> LmerResults:
    if hasattr(model, "history_"):
        raise InvalidArgumentError(
            "residual plots need an LmerModel; for a MixedMLRegressor compute "
            "y - predict(X) yourself and use qq_plot(values)"
        )
    return _results(model)


def _alpha(n: int) -> float:
    return float(np.clip(30.0 / math.sqrt(max(n, 1)), 0.05, 0.8))


def _binned_means(x: np.ndarray, y: np.ndarray, bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Means of ``y`` within quantile bins of ``x`` (at most ``bins``, at least 5 points)."""
    bins = max(1, min(bins, x.size // 5))
    edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, max(len(edges) - 2, 0))
    centres, means = [], []
    for k in np.unique(which):
        sel = which == k
        centres.append(x[sel].mean())
        means.append(y[sel].mean())
    return np.asarray(centres), np.asarray(means)
