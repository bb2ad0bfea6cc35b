"""Model selection: information criteria and likelihood-ratio tests of several fitted
models (:func:`compare`), and grouped cross-validation of a formula
(:func:`cross_validate`).

:func:`compare` is R's ``anova(m1, m2, ...)`` with the information criteria people
compare models by (AIC, AICc, BIC, Akaike weights): linear mixed models fitted by REML
are refitted by maximum likelihood first, as ``anova`` does, and the table says so.
:func:`cross_validate` fits the formula on the training folds and predicts the held-out
groups (grouped folds: every level of ``groups`` is held out once, so the predictions are
for new groups, population-level), with the per-fold RMSE and, for binary outcomes, the
log-loss.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .data.frames import as_pandas
from .errors import DataError, InvalidArgumentError, PylmerWarning, warn
from .models._base import MixedModel, model_labels
from .models.glmer import glmer
from .models.lmer import LmerModel, lmer

__all__ = ["compare", "cross_validate"]


def _check_models(models: Sequence[Any]) -> list[MixedModel]:
    if not models:
        raise InvalidArgumentError("compare() needs at least one model", argument="models")
    for i, m in enumerate(models):
        if not isinstance(m, MixedModel):
            raise InvalidArgumentError(
                f"compare() takes fitted models (pylmer.lmer, pylmer.glmer, ...); argument "
                f"{i + 1} is a {type(m).__name__}",
                argument="models",
            )
    return list(models)


def _same_rows(models: Sequence[MixedModel]) -> str | None:
    """None when every model was fitted to the same observations, else why not."""
    first = models[0]
    used0 = first.results.fitted.index[first.results.fitted.notna().to_numpy()]
    for m in models[1:]:
        if m.results.nobs != first.results.nobs:
            return (
                "the models have different numbers of observations "
                f"({m.results.nobs} vs {first.results.nobs})"
            )
        used = m.results.fitted.index[m.results.fitted.notna().to_numpy()]
        if len(m.data) != len(first.data) or not used.equals(used0):
            return "the models were not fitted to the same rows"
    return None


def compare(*models: MixedModel, names: Sequence[str] | None = None) -> pd.DataFrame:
    """Compare fitted models: information criteria, Akaike weights and likelihood-ratio
    tests (R's ``anova(m1, m2, ...)`` plus AICc and weights).

    Linear mixed models fitted by REML are refitted by maximum likelihood first (lme4's
    ``refitML``, as ``anova`` does): REML likelihoods of models with different fixed
    effects are not comparable.  The table then says so (column ``refit_ml``, ``attrs``
    ``"note"``) and a :class:`~pylmer.errors.PylmerWarning` is issued.

    Parameters
    ----------
    *models : LmerModel, GlmerModel, ...
        The fitted models.
    names : list of str, optional
        Row labels (default: the formulas, as in :func:`pylmer.anova`).

    Returns
    -------
    pandas.DataFrame
        One row per model, ordered by number of parameters as ``anova`` orders them:
        ``npar``, ``nobs``, ``logLik``, ``AIC``, ``AICc`` (AIC + 2k(k+1)/(n-k-1)),
        ``BIC``, ``delta_AIC``, ``weight`` (Akaike weight, exp(-delta/2) normalised),
        ``refit_ml``; and, for models fitted to the same rows, the likelihood-ratio test
        of each model against the one above it: ``Chisq``, ``Df``, ``p_value`` (R's
        ``Pr(>Chisq)``; it assumes the models are nested).  ``attrs["note"]`` says what
        was refitted and why a test is missing.

    Examples
    --------
    >>> m0 = pylmer.lmer("Reaction ~ 1 + (Days | Subject)", sleepstudy)
    >>> m1 = pylmer.lmer("Reaction ~ Days + (Days | Subject)", sleepstudy)
    >>> pylmer.compare(m0, m1, names=["null", "slope"])  # doctest: +SKIP
    """
    models = _check_models(models)
    labels = model_labels(models, names)
    notes = []
    refit = [isinstance(m, LmerModel) and m.reml for m in models]
    if len(models) > 1 and any(refit):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            models = [m.refit_ml() if r else m for m, r in zip(models, refit, strict=True)]
        which = ", ".join(lab for lab, r in zip(labels, refit, strict=True) if r)
        notes.append(f"refitted {which} by ML (instead of REML), as anova() does")
    else:
        refit = [False] * len(models)
    rows = []
    for lab, m, r in zip(labels, models, refit, strict=True):
        res = m.results
        k, n = int(res.npar), int(res.nobs)
        aicc = res.aic + 2 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else math.inf
        rows.append(
            {"model": lab, "npar": k, "nobs": n, "logLik": res.loglik, "AIC": res.aic,
             "AICc": aicc, "BIC": res.bic, "refit_ml": r}
        )  # fmt: skip
    table = pd.DataFrame(rows).set_index("model")
    table = table.iloc[np.argsort(table["npar"].to_numpy(), kind="stable")]
    delta = table["AIC"] - table["AIC"].min()
    table.insert(6, "delta_AIC", delta)
    w = np.exp(-0.5 * delta)
    table.insert(7, "weight", w / w.sum())
    why = _same_rows(models) if len(models) > 1 else "one model"
    if why is None:
        from scipy.stats import chi2

        ll = table["logLik"].to_numpy()
        k = table["npar"].to_numpy()
        chisq = np.r_[np.nan, 2 * np.diff(ll)]
        df = np.r_[np.nan, np.diff(k)].astype(float)
        with np.errstate(invalid="ignore"):
            p = np.where(df > 0, chi2.sf(chisq, np.where(df > 0, df, 1)), np.nan)
        table["Chisq"] = np.where(np.arange(len(k)) > 0, np.maximum(chisq, 0), np.nan)
        table["Df"] = df
        table["p_value"] = p
    elif len(models) > 1:
        notes.append(f"no likelihood-ratio tests: {why}")
    table.attrs["note"] = "; ".join(notes)
    if notes and any(refit):
        warn(notes[0], PylmerWarning)
    return table


# ------------------------------------------------------------------ cross-validation


def _response(formula: str, data: pd.DataFrame) -> str:
    lhs = formula.split("~", 1)[0].strip() if "~" in formula else ""
    name = lhs.strip("`")
    if not name or name not in [str(c) for c in data.columns]:
        raise InvalidArgumentError(
            f"cross_validate needs a response that is a column of the data; the formula's "
            f"left-hand side is {lhs!r}",
            argument="formula",
        )
    return name


def _fold(
    fold: int,
    formula: str,
    train: pd.DataFrame,
    test: pd.DataFrame,
    response: str,
    family: str | None,
    fit_args: Mapping[str, Any],
) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if family is None:
            m = lmer(formula, train, **fit_args)
            pred = m.predict(test, allow_new_levels=True)
        else:
            m = glmer(formula, train, family=family, **fit_args)
            pred = m.predict(test, type="response", allow_new_levels=True)
    y = test[response].to_numpy(dtype=float)
    mu = np.asarray(pred, dtype=float)
    ok = ~(np.isnan(y) | np.isnan(mu))
    y, mu = y[ok], mu[ok]
    row = {
        "fold": fold,
        "n_train": int(m.results.nobs),
        "n_test": int(ok.sum()),
        "rmse": float(np.sqrt(np.mean((y - mu) ** 2))) if y.size else np.nan,
        "mae": float(np.mean(np.abs(y - mu))) if y.size else np.nan,
    }
    if family == "binomial":
        p = np.clip(mu, 1e-15, 1 - 1e-15)
        row["log_loss"] = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    row["converged"] = bool(m.results.converged)
    row["singular"] = bool(m.results.is_singular)
    return row


def cross_validate(
    formula: str,
    data: pd.DataFrame,
    groups: str,
    *,
    cv: int = 5,
    family: str | None = None,
    n_jobs: int | None = None,
    **fit_args: Any,
) -> pd.DataFrame:
    """Grouped K-fold cross-validation of an lmer or glmer formula.

    The levels of ``groups`` are split into ``cv`` folds (scikit-learn's ``GroupKFold``:
    deterministic, folds of similar size); each fold's rows are predicted by the model
    fitted to the other folds.  The held-out groups are new to that model, so its
    predictions are population-level (random effects at zero), as for a new subject.

    Parameters
    ----------
    formula : str
        An lme4 formula whose response is a column of ``data``.
    data : pandas.DataFrame
        The data.
    groups : str
        The column whose levels are held out together (e.g. ``"Subject"``).
    cv : int
        Number of folds (at most the number of levels of ``groups``).
    family : str, optional
        None: :func:`pylmer.lmer`; else :func:`pylmer.glmer` with this family (e.g.
        ``"binomial"`` for a 0/1 response: the log-loss is reported too).
    n_jobs : int, optional
        Folds fitted in parallel worker processes (joblib; the result does not depend on
        it).
    **fit_args
        Passed to :func:`pylmer.lmer` / :func:`pylmer.glmer` (e.g. ``reml=False``).

    Returns
    -------
    pandas.DataFrame
        One row per fold: ``fold``, ``n_train``, ``n_test``, ``rmse``, ``mae``,
        ``log_loss`` (binomial), ``converged``, ``singular``; ``attrs["overall"]`` holds the
        scores over all held-out rows (RMSE pooled, MAE and log-loss averaged).

    Examples
    --------
    >>> pylmer.cross_validate("Reaction ~ Days + (Days | Subject)", sleepstudy,
    ...                       groups="Subject", cv=6)  # doctest: +SKIP
    """
    import joblib
    from sklearn.model_selection import GroupKFold

    if not isinstance(formula, str):
        raise InvalidArgumentError(
            f"formula must be a string, not {type(formula).__name__}", argument="formula"
        )
    data = as_pandas(data)
    if not isinstance(groups, str) or groups not in [str(c) for c in data.columns]:
        raise InvalidArgumentError(
            f"groups must name a column of the data ({', '.join(map(str, data.columns))}), "
            f"not {groups!r}",
            argument="groups",
        )
    if isinstance(cv, bool) or not isinstance(cv, int | np.integer) or cv < 2:
        raise InvalidArgumentError(f"cv must be an integer >= 2, not {cv!r}", argument="cv")
    if family is not None and not isinstance(family, str):
        raise InvalidArgumentError(
            f"family must be a string such as 'binomial', not {family!r}", argument="family"
        )
    response = _response(formula, data)
    keys = data[groups]
    n_levels = keys.nunique(dropna=True)
    if cv > n_levels:
        raise DataError(f"cv={cv} folds need at least {cv} levels of {groups!r}; it has {n_levels}")
    rows = data[keys.notna()]
    splits = list(GroupKFold(n_splits=int(cv)).split(rows, groups=rows[groups].astype(str)))
    tasks = [
        joblib.delayed(_fold)(
            i + 1, formula, rows.iloc[tr], rows.iloc[te], response, family, fit_args
        )
        for i, (tr, te) in enumerate(splits)
    ]
    out = pd.DataFrame(joblib.Parallel(n_jobs=n_jobs)(tasks))
    w = out["n_test"].to_numpy(dtype=float)
    overall = {"rmse": float(np.sqrt(np.average(out["rmse"] ** 2, weights=w)))}
    for c in ("mae", "log_loss"):
        if c in out:
            overall[c] = float(np.average(out[c], weights=w))
    out.attrs["overall"] = overall
    return out
