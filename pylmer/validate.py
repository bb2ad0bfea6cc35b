"""Check pylmer against plain R: fit the same model in a separate ``Rscript`` process
(``r_scripts/validate.R``, no pylmer code) and compare every quantity.

Used by ``pylmer validate`` and the examples::

    proc = start_r_fit("data.csv", "y ~ x + (1 | g)", True, "r.json")
    m = pylmer.lmer("y ~ x + (1 | g)", data)
    wait_r_fit(proc)
    table = compare_with_r(m, read_r_fit("r.json"))

An analysis above the models (it imports :mod:`pylmer.models` and :mod:`pylmer.r`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import RError
from .models._base import MixedModel
from .models.control import family_and_link
from .r.session import script_dir

__all__ = [
    "compare_with_r",
    "read_r_fit",
    "relative_difference",
    "start_r_fit",
    "wait_r_fit",
]


def start_r_fit(
    source: str | os.PathLike[str],
    formula: str,
    reml: bool,
    out_json: str | os.PathLike[str],
    *,
    rscript: str = "Rscript",
    family: str | None = None,
    link: str | None = None,
) -> subprocess.Popen:
    """Start fitting a model in a separate plain ``Rscript`` process (``r_scripts/validate.R``).

    Parameters
    ----------
    source : str or path-like
        A CSV file, or ``"lme4:NAME"`` for one of lme4's data sets.
    formula : str
        The lme4 formula.
    reml : bool
        REML or maximum likelihood.
    out_json : str or path-like
        Where the R process writes its results (read them with :func:`read_r_fit`).
    rscript : str
        The Rscript executable.
    family, link : str, optional
        Fit a GLMM with lme4's ``glmer`` (``glmer.nb`` for ``"negative_binomial"``);
        ``reml`` is then ignored.

    Returns
    -------
    subprocess.Popen
        The running process; ``wait()`` for it (its stderr is a pipe).
    """
    exe = shutil.which(rscript)
    if exe is None:
        raise OSError(f"cannot find {rscript!r} on PATH: install R or pass --rscript")
    script = script_dir() / "validate.R"
    cmd = [exe, str(script), str(source), formula, str(bool(reml)).upper()]
    cmd.append(str(out_json))
    if family is not None:
        cmd += list(family_and_link(family, link))
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_r_fit(proc: subprocess.Popen) -> None:
    """Wait for a process of :func:`start_r_fit`; raise :class:`~pylmer.RError` with the
    end of R's error output if it failed."""
    _, err = proc.communicate()
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (err or "").splitlines() if ln.strip()]
        detail = " ".join(lines[-2:]) if lines else f"exit status {proc.returncode}"
        raise RError(f"the plain-R fit (Rscript) failed: {detail}")


def _frame(obj: dict[str, Any]) -> pd.DataFrame:
    names = [str(n) for n in np.atleast_1d(obj["names"])]
    columns = {}
    for name in names:
        values = np.atleast_1d(np.asarray(obj["columns"][name], dtype=object))
        columns[name] = [np.nan if v is None else v for v in values]
    frame = pd.DataFrame(columns, index=[str(i) for i in np.atleast_1d(obj["index"])])
    for name in names:
        try:
            frame[name] = frame[name].astype(float)
        except (TypeError, ValueError):
            pass
    return frame


def read_r_fit(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the JSON written by ``r_scripts/validate.R`` into pandas / numpy values.

    Returns
    -------
    dict
        ``fixef`` (DataFrame: estimate, std_error), ``vcov``, ``theta``, ``fitted``,
        ``residuals``, ``rows`` (0-based) as arrays; ``ranef`` and ``ranef_sd`` as dicts of
        DataFrames; ``varcorr`` (DataFrame); ``sigma``, ``loglik``; ``meta``.
    """
    raw = json.loads(Path(path).read_text())
    fixef = pd.DataFrame(
        {
            "estimate": np.atleast_1d(np.asarray(raw["fixef"]["estimate"], dtype=float)),
            "std_error": np.atleast_1d(np.asarray(raw["fixef"]["std_error"], dtype=float)),
        },
        index=[str(n) for n in np.atleast_1d(raw["fixef"]["names"])],
    )
    vector = {k: np.atleast_1d(np.asarray(raw[k], dtype=float)) for k in ("theta", "fitted")}
    return {
        "meta": raw["meta"],
        "fixef": fixef,
        "vcov": np.atleast_2d(np.asarray(raw["vcov"], dtype=float)),
        "ranef": {g: _frame(v) for g, v in raw["ranef"].items()},
        "ranef_sd": {g: _frame(v) for g, v in raw["ranef_sd"].items()},
        "varcorr": _frame(raw["varcorr"]),
        # jsonlite writes non-finite numbers (a -Inf log-likelihood) as null
        "sigma": np.nan if raw["sigma"] is None else float(raw["sigma"]),
        "loglik": np.nan if raw["loglik"] is None else float(raw["loglik"]),
        "rows": np.atleast_1d(np.asarray(raw["rows"], dtype=np.int64)) - 1,
        "residuals": np.atleast_1d(np.asarray(raw["residuals"], dtype=float)),
        **vector,
    }


def relative_difference(ours: Any, theirs: Any) -> float:
    """Largest elementwise ``|ours - theirs| / max(|theirs|, floor)``.

    The floor is 1e-3 times the largest ``|theirs|``, so entries near zero (residuals,
    random effects) are measured against the scale of the quantity instead of blowing
    up.  Mismatched shapes, or a NaN on one side only, give ``inf``.
    """
    a = np.asarray(ours, dtype=float)
    b = np.asarray(theirs, dtype=float)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    if (nan_a != nan_b).any():
        return float("inf")
    a, b = a[~nan_a], b[~nan_b]
    if a.size == 0:
        return 0.0
    scale = float(np.max(np.abs(b)))
    floor = 1e-3 * scale if scale > 0 else 1.0
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), floor)))


def _aligned(ours: pd.DataFrame, theirs: pd.DataFrame) -> np.ndarray | None:
    index = [str(i) for i in ours.index]
    if set(index) != set(theirs.index) or set(map(str, ours.columns)) != set(theirs.columns):
        return None
    frame = ours.copy()
    frame.index, frame.columns = index, [str(c) for c in ours.columns]
    return frame.loc[theirs.index, theirs.columns].to_numpy(dtype=float)


def compare_with_r(model: MixedModel, reference: dict[str, Any]) -> pd.DataFrame:
    """Compare a fitted model (:class:`~pylmer.LmerModel`, :class:`~pylmer.GlmerModel`)
    with a plain-R fit (:func:`read_r_fit`).

    Returns
    -------
    pandas.DataFrame
        One row per quantity (``fixef``, ``std_error``, ``vcov``, ``theta``, ``sigma``,
        ``loglik``, ``varcorr``, ``ranef``, ``ranef_sd``, ``fitted``, ``residuals``) with
        the number of values compared (``n``) and the largest relative difference
        (:func:`relative_difference`; ``inf`` when names or shapes differ).
    """
    res = model.results
    rows: list[tuple[str, int, float]] = []

    def add(name: str, ours: Any, theirs: Any) -> None:
        rows.append(
            (
                name,
                int(np.size(theirs)),
                np.inf if ours is None else relative_difference(ours, theirs),
            )
        )

    ref_fixef = reference["fixef"]
    same_terms = set(map(str, res.fixef.index)) == set(ref_fixef.index)
    fixef = res.fixef.set_axis([str(i) for i in res.fixef.index]).reindex(ref_fixef.index)
    add("fixef", fixef["estimate"] if same_terms else None, ref_fixef["estimate"])
    add("std_error", fixef["std_error"] if same_terms else None, ref_fixef["std_error"])
    vcov = res.vcov.set_axis([str(i) for i in res.vcov.index])
    vcov = vcov.set_axis([str(c) for c in res.vcov.columns], axis=1)
    add(
        "vcov",
        vcov.loc[ref_fixef.index, ref_fixef.index] if same_terms else None,
        reference["vcov"],
    )
    add("theta", res.theta.to_numpy(), reference["theta"])
    add("sigma", res.sigma, reference["sigma"])
    add("loglik", res.loglik, reference["loglik"])
    vc_ref = reference["varcorr"]
    ours_vc = res.varcorr.reset_index(drop=True)
    same_vc = len(ours_vc) == len(vc_ref) and list(ours_vc["group"].astype(str)) == list(
        vc_ref["group"].astype(str)
    )
    add(
        "varcorr",
        ours_vc[["variance", "sd_or_cor"]].to_numpy() if same_vc else None,
        vc_ref[["variance", "sd_or_cor"]].to_numpy(),
    )
    for key in ("ranef", "ranef_sd"):
        ours_all, theirs_all = [], []
        ok = set(getattr(res, key)) == set(reference[key])
        for group, theirs in reference[key].items():
            ours = _aligned(getattr(res, key)[group], theirs) if ok else None
            ok = ok and ours is not None
            if ok:
                ours_all.append(ours.ravel())
            theirs_all.append(theirs.to_numpy(dtype=float).ravel())
        add(key, np.concatenate(ours_all) if ok else None, np.concatenate(theirs_all))
    used = reference["rows"]
    fitted = res.fitted.to_numpy()
    if used.size and used.max() < fitted.size:
        add("fitted", fitted[used], reference["fitted"])
        add("residuals", res.residuals.to_numpy()[used], reference["residuals"])
    else:
        add("fitted", None, reference["fitted"])
        add("residuals", None, reference["residuals"])
    return pd.DataFrame(rows, columns=["quantity", "n", "max_rel_diff"])
