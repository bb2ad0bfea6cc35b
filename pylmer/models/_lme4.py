"""Methods every lme4 fit has (``lmer``, ``glmer``): intervals and the analyses of R's
packages, exposed on the model.

:class:`Lme4Model` sits between the abstract :class:`~pylmer.models._base.MixedModel` and
the concrete kinds: the analyses (:mod:`pylmer.inference`, :mod:`pylmer.parallel`) are
written against the base, and this class makes them methods, so every import points
down (``_base`` <- ``inference``/``parallel`` <- ``_lme4`` <- ``lmer``/``glmer``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from .. import inference, parallel
from ..r import session as _r
from ._base import MixedModel
from .control import bad_argument, check_number

__all__ = ["Lme4Model"]


class Lme4Model(MixedModel):
    """A mixed model fitted by lme4: :meth:`confint`, :meth:`emmeans`, :meth:`r2`,
    :meth:`icc`, :meth:`tidy` and :meth:`allfit` on top of :class:`MixedModel`."""

    #: confint(method="boot") without n_jobs runs lme4's own bootMer in this R session
    _BOOT_IN_R: ClassVar[bool] = False

    def confint(
        self,
        method: Literal["wald", "profile", "boot"] = "wald",
        level: float = 0.95,
        *,
        parm: str | Sequence[str] | None = None,
        nsim: int = 500,
        seed: int | None = None,
        boot_type: Literal["perc", "basic", "norm"] = "perc",
        maxpts: int | None = None,
        delta: float | None = None,
        delta_cutoff: float | None = None,
        n_jobs: int | None = None,
        old_names: bool = False,
    ) -> pd.DataFrame:
        """Confidence intervals with lme4's ``confint``.

        Parameters
        ----------
        method : {"wald", "profile", "boot"}
            Wald intervals (fixed effects only; variance parameters are NaN), likelihood
            profile, or parametric bootstrap.
        level : float
            Confidence level.
        parm : str or list of str, optional
            The parameters (``confint``'s ``parm``): row names such as
            ``"sd_(Intercept)|Subject"`` (or R's ``".sig01"``) or ``"Days"``, or
            ``"theta_"`` (variance parameters) / ``"beta_"`` (fixed effects).
        nsim : int
            Bootstrap replicates (``method="boot"``).
        seed : int, optional
            Seed of R's random generator (``method="boot"``).
        boot_type : {"perc", "basic", "norm"}
            Bootstrap interval type (``boot.type``).
        maxpts, delta, delta_cutoff : optional
            Profile options (``method="profile"``; lme4's ``profile`` arguments ``maxpts``,
            ``delta``, ``delta.cutoff``).
        n_jobs : int, optional
            Worker processes for the bootstrap refits (``method="boot"``; joblib's
            ``n_jobs``, Dask under ``joblib.parallel_config(backend="dask")``); the same
            ``seed`` gives the intervals of plain R's ``confint(m, method = "boot")``
            whatever ``n_jobs`` is (see :func:`pylmer.bootstrap`).
        old_names : bool
            Name the variance parameters as R's ``confint`` does by default (``.sig01``,
            ..., ``.sigma``) instead of pylmer's names, those of :func:`pylmer.bootstrap`
            and lme4's ``oldNames = FALSE`` (``sd_(Intercept)|Subject``,
            ``cor_Days.(Intercept)|Subject``, ``sigma``).

        Returns
        -------
        pandas.DataFrame
            One row per parameter (the variance parameters, then the fixed effects);
            columns named like R's (``"2.5 %"``, ``"97.5 %"``).  For a GLMM,
            ``method="boot"`` without ``n_jobs`` runs lme4's own bootstrap in this R
            session (plain R's ``confint(m, method = "boot")`` for every response form).

        Raises
        ------
        InvalidArgumentError
            An argument of the wrong type or value, or a profile/bootstrap option with
            another method (the message names it).

        Examples
        --------
        >>> m.confint()  # doctest: +SKIP
                         2.5 %     97.5 %
        sd_(Intercept)|Subject   NaN        NaN
        ...
        (Intercept)  238.0290  264.7806
        Days           7.4367   13.4973
        >>> m.confint("boot", nsim=200, seed=1, n_jobs=2)  # doctest: +SKIP
        """
        parm, profile = _confint_arguments(
            method, level, parm, nsim, seed, boot_type, maxpts, delta, delta_cutoff
        )
        if parm is not None:
            parm = self._parameter_names(parm, old_names)
        if method == "boot" and (n_jobs is not None or not self._BOOT_IN_R):
            ci = parallel.bootstrap_confint(
                self,
                level,
                nsim=nsim,
                seed=seed,
                n_jobs=n_jobs,
                boot_type=boot_type,
                old_names=old_names,
            )
            return ci if parm is None else ci.loc[self._chosen_rows(ci.index, parm)]
        return _r.call(
            ".pylmer_lmer_confint",
            self._mermod(),
            method=_METHODS[method],
            level=float(level),
            nsim=int(nsim),
            seed=None if seed is None else int(seed),
            parm=parm,
            boot_type=boot_type,
            profile_args=profile,
            old_names=bool(old_names),
            stacklevel=2,
        )

    def _chosen_rows(self, rows: pd.Index, parm: list[str]) -> list[str]:
        """The rows of an interval table that ``parm`` selects (names, ``"beta_"``:
        fixed effects, ``"theta_"``: variance parameters), as R's ``parm``."""
        fixed = set(self.results.fixef.index)
        return [
            r
            for r in rows
            if r in parm
            or ("beta_" in parm and r in fixed)
            or ("theta_" in parm and r not in fixed)
        ]

    def _parameter_names(self, parm: list[str], old_names: bool) -> list[str]:
        """``parm`` in the naming scheme of the table (R's ``.sig01`` or pylmer's
        ``sd_(Intercept)|Subject``), whichever scheme the user wrote it in."""
        names = _r.call(".pylmer_lmer_parnames", self._mermod(), stacklevel=4)
        old = [str(n) for n in np.atleast_1d(names["old"])]
        new = [str(n) for n in np.atleast_1d(names["new"])]
        source, target = (new, old) if old_names else (old, new)
        return [target[source.index(p)] if p in source else p for p in parm]

    def emmeans(self, specs: str | Sequence[str], **kwargs: Any) -> inference.EmmeansResult:
        """Estimated marginal means and their contrasts (R's emmeans).

        Parameters
        ----------
        specs : str or list of str
            The factor(s) whose means are wanted: ``"cond"``, ``["cond", "gender"]``,
            ``"cond * gender"`` or ``"cond | gender"`` (means of ``cond`` within each
            ``gender``).
        **kwargs
            ``by``, ``at``, ``pairwise``, ``contrasts``, ``adjust``, ``type``,
            ``level``, ``ddf``, ``ref``: see :func:`pylmer.inference.emmeans`.

        Returns
        -------
        EmmeansResult
            ``.means`` and ``.contrasts`` (None without a contrast) DataFrames; unpacks
            as ``means, contrasts = m.emmeans(...)``.

        Examples
        --------
        >>> means, pairs = m.emmeans("cond", pairwise=True)  # doctest: +SKIP
        >>> means[["cond", "estimate", "conf_low", "conf_high"]]  # doctest: +SKIP
        """
        return inference.emmeans(self, specs, **kwargs)

    def r2(self) -> pd.Series:
        """Nakagawa's marginal and conditional R² (``performance::r2_nakagawa``).

        Returns
        -------
        pandas.Series
            ``marginal`` (variance explained by the fixed effects) and ``conditional``
            (fixed and random effects).

        Examples
        --------
        >>> m.r2()  # doctest: +SKIP
        marginal       0.279
        conditional    0.799
        Name: R2, dtype: float64
        """
        return inference.r2(self)

    def icc(self, *, by_group: bool = False) -> pd.Series | pd.DataFrame:
        """Intra-class correlation (``performance::icc``).

        Parameters
        ----------
        by_group : bool
            Give a table with one ICC per grouping factor (columns ``group``, ``icc``).

        Returns
        -------
        pandas.Series or pandas.DataFrame
            The ``adjusted`` ICC (random-effect variance over the random plus residual
            variance) and the ``unadjusted`` one (the fixed effects' variance added to
            the denominator), or the per-group table.

        Examples
        --------
        >>> m.icc()  # doctest: +SKIP
        adjusted      0.722
        unadjusted    0.521
        Name: ICC, dtype: float64
        """
        return inference.icc(self, by_group=by_group)

    def allfit(self, *, n_jobs: int | None = None) -> pd.DataFrame:
        """Refit with every optimizer lme4's ``allFit`` knows and tabulate the results.

        Parameters
        ----------
        n_jobs : int, optional
            Worker processes (joblib); default: one after the other here.

        Returns
        -------
        pandas.DataFrame
            Indexed by optimizer: ``ok``, ``loglik``, ``time``, ``warnings``, the fixed
            effects and the variance parameters (see :func:`pylmer.inference.allfit`).

        Examples
        --------
        >>> table = m.allfit()  # doctest: +SKIP
        >>> table["loglik"].max() - table["loglik"].min() < 1e-6  # doctest: +SKIP
        True
        """
        return inference.allfit(self, n_jobs=n_jobs)

    def tidy(
        self,
        effects: str | Sequence[str] = ("fixed", "ran_pars"),
        *,
        conf_int: bool = False,
        **kwargs: Any,
    ) -> pd.DataFrame:
        """The estimates as one table in broom.mixed's ``tidy()`` layout.

        Parameters
        ----------
        effects : str or list of {"fixed", "ran_pars", "ran_vals"}
            Fixed effects; random-effect standard deviations and correlations; the
            conditional modes with their conditional standard deviations.
        conf_int : bool
            Add ``conf_low`` and ``conf_high``.
        **kwargs
            ``conf_level``, ``conf_method`` (``"wald"``, ``"profile"``, ``"boot"``),
            ``ddf``: see :func:`pylmer.inference.tidy`.

        Returns
        -------
        pandas.DataFrame
            Columns ``effect``, ``group``, ``term``, ``estimate``, ``std_error``,
            ``statistic``, ``df``, ``p_value`` (as broom.mixed: test columns with fixed
            effects only).

        Examples
        --------
        >>> m.tidy(conf_int=True)  # doctest: +SKIP
             effect     group                term  estimate  std_error ...
        """
        return inference.tidy(self, effects, conf_int=conf_int, **kwargs)


_METHODS = {"wald": "Wald", "profile": "profile", "boot": "boot"}


def _confint_arguments(
    method: Any,
    level: Any,
    parm: Any,
    nsim: Any,
    seed: Any,
    boot_type: Any,
    maxpts: Any,
    delta: Any,
    delta_cutoff: Any,
) -> tuple[list[str] | None, dict[str, float] | None]:
    """Check :meth:`Lme4Model.confint`'s arguments; return ``parm`` as a list and the
    profile options keyed by lme4's names (None when none is given)."""
    if method not in _METHODS:
        raise bad_argument("method", f"must be one of {list(_METHODS)}, not {method!r}")
    if isinstance(level, (bool, np.bool_)) or not isinstance(level, (int, float)):
        raise bad_argument("level", f"must be a number between 0 and 1, not {level!r}")
    if not 0 < level < 1:
        raise bad_argument("level", f"must be between 0 and 1, not {level}")
    if boot_type not in ("perc", "basic", "norm"):
        raise bad_argument("boot_type", f"must be 'perc', 'basic' or 'norm', not {boot_type!r}")
    if parm is not None:
        parm = [parm] if isinstance(parm, str) else list(parm)
        if not parm or not all(isinstance(p, str) for p in parm):
            raise bad_argument("parm", f"must be a name or a list of names, not {parm!r}")
    profile = {"maxpts": maxpts, "delta": delta, "delta.cutoff": delta_cutoff}
    for name, value in profile.items():
        if value is None:
            continue
        arg = name.replace(".", "_")
        if method != "profile":
            raise bad_argument(arg, f"is a profile option; method is {method!r}")
        check_number(arg, value)
        if value <= 0 or (name == "maxpts" and int(value) != value):
            kind = "integer" if arg == "maxpts" else "number"
            raise bad_argument(arg, f"must be a positive {kind}")
    for name, value in (("nsim", nsim), ("seed", seed)):
        if value is not None and (
            isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer))
        ):
            raise bad_argument(name, f"must be an integer, not {value!r}")
    if nsim < 1:
        raise bad_argument("nsim", f"must be >= 1, not {nsim}")
    given = {
        k: (int(v) if k == "maxpts" else float(v)) for k, v in profile.items() if v is not None
    }
    return parm, given or None
