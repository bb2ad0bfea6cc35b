"""Conditional variances of the random effects by selected inversion (pylmer.models.condvar)
against lme4's ``ranef(condVar = TRUE)`` and ``condVar()`` from plain Rscript on this
machine (tests/reference_condvar.R), for every structure lme4 fits: scalar and
correlated vector terms, ``||``, two terms on one factor, crossed, nested, GLMMs."""

from __future__ import annotations

import copy
import json
import pickle
import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest
from _refcache import _path as script_path
from _refcache import directory, reference

import pylmer
from pylmer import datasets
from pylmer.models.condvar import conditional_covariances
from pylmer.models.lazy import LazyTables

SCRIPT = "reference_condvar.R"
RTOL = 1e-8


def _sleep_centred() -> pd.DataFrame:
    d = datasets.load("sleepstudy").copy()
    d["x"] = d["Days"] - 4.5
    return d


CASES = {
    "sleep_vector": ("lmer", "sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    "sleep_uncorrelated": ("lmer", "sleepstudy", "Reaction ~ Days + (Days || Subject)"),
    "sleep_two_terms": ("lmer", _sleep_centred, "Reaction ~ x + (1 | Subject) + (0 + x | Subject)"),
    "penicillin_crossed": ("lmer", "Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    "pastes_nested": ("lmer", "Pastes", "strength ~ 1 + (1 | batch / cask)"),
    "cake_replicate": (
        "lmer",
        "cake",
        "angle ~ recipe * temperature + (1 | recipe:replicate)",
    ),
    "cake_vector": ("lmer", "cake", "angle ~ temp + (temp | recipe)"),
    "cake_two_factors": ("lmer", "cake", "angle ~ temp + (1 | replicate) + (temp | recipe)"),
    "cbpp_glmer": ("glmer", "cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)"),
    "grouseticks_glmer": ("glmer", "grouseticks", "TICKS ~ YEAR + (1 | BROOD) + (1 | LOCATION)"),
}


def _fit(case: str):
    kind, data, formula = CASES[case]
    frame = data() if callable(data) else datasets.load(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "lmer":
            return pylmer.lmer(formula, frame)
        family = "binomial" if case == "cbpp_glmer" else "poisson"
        return pylmer.glmer(formula, frame, family=family)


def _blocks(values: list, k: int) -> np.ndarray:
    arr = np.array([np.nan if v is None else v for v in values], dtype=float)
    return arr.reshape(-1, k, k).transpose(0, 2, 1)  # column-major blocks


def _check(model, ref: dict) -> None:
    cov = model.ranef_cov
    sd = model.ranef_sd
    assert set(cov) == set(ref)
    for group, r in ref.items():
        k = len(r["terms"])
        full = _blocks(r["full"], k)
        post = _blocks(r["postvar"], k)
        table = cov[group]
        assert list(table.columns) == r["terms"]
        mine = table.to_numpy().reshape(-1, k, k)
        assert mine.shape == full.shape
        np.testing.assert_allclose(mine, full, rtol=RTOL, atol=1e-14 * np.abs(full).max())
        known = ~np.isnan(post)  # lme4's postVar: each term's own block
        np.testing.assert_allclose(mine[known], post[known], rtol=RTOL)
        diag = np.sqrt(np.einsum("lkk->lk", post))
        np.testing.assert_allclose(sd[group].to_numpy(), diag, rtol=RTOL)
        assert [str(v) for v in sd[group].index] == r["levels"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_equals_lme4(r_session, case):
    _check(_fit(case), reference(SCRIPT, case))


def test_ranef_sd_is_lazy_and_pickles(r_session):
    m = _fit("sleep_vector")
    assert isinstance(m.results.ranef_sd, LazyTables) and not m.results.ranef_sd.computed
    copied = copy.deepcopy(m)
    restored = pickle.loads(pickle.dumps(m))
    for other in (copied, restored):
        assert type(other.results.ranef_sd) is dict  # computed before pickling: no refit
        assert other._handle is None
        pd.testing.assert_frame_equal(other.ranef_sd["Subject"], m.ranef_sd["Subject"])
        assert other._handle is None


def test_satterthwaite_deferred_and_pickled(r_session):
    m = _fit("sleep_vector")
    assert m._satterthwaite_pending
    restored = pickle.loads(pickle.dumps(m))
    assert not m._satterthwaite_pending and restored.results.satterthwaite is not None
    assert restored._handle is None
    pd.testing.assert_frame_equal(restored.fixef, m.fixef)


def test_ranef_cov_layout(r_session):
    m = _fit("sleep_vector")
    table = m.ranef_cov["Subject"]
    first = table.index[0][0]
    assert first == m.ranef["Subject"].index[0]
    block = table.loc[first]
    assert list(block.index) == ["(Intercept)", "Days"]
    np.testing.assert_allclose(block.to_numpy(), block.to_numpy().T)
    assert np.all(np.linalg.eigvalsh(block.to_numpy()) > 0)


def test_simplicial_and_supernodal_agree():
    """The two engines of the selected inversion give the same inverse, and it is the
    dense inverse, on a small random SPD matrix with fill."""
    rng = np.random.default_rng(1)
    n = 12
    a = rng.normal(size=(n, n)) * (rng.random((n, n)) < 0.3)
    spd = a @ a.T + n * np.eye(n)
    lower = np.linalg.cholesky(spd)
    pattern = np.abs(lower) > 0
    rows, cols = np.nonzero(pattern.T)  # column-major order of the lower triangle
    rows, cols = cols, rows
    order = np.lexsort((rows, cols))
    rows, cols = rows[order], cols[order]
    counts = np.bincount(cols, minlength=n)
    p = np.concatenate(([0], np.cumsum(counts)))
    simpl = {
        "kind": "simpl", "p": p, "i": rows, "nz": counts, "x": lower[rows, cols],
        "perm": np.arange(n), "gp": [0], "nc": [1], "nl": [n], "assign": [1],
        "groups": ["g"], "lambda": [[1.0]], "sigma2": 1.0,
    }  # fmt: skip
    # one supernode holding every column (dense block, column-major)
    sup = {
        **simpl, "kind": "super", "super": [0, n], "pi": [0, n], "px": [0, n * n],
        "s": np.arange(n), "x": np.tril(lower).T.ravel(),
    }  # fmt: skip
    expected = np.diag(np.linalg.inv(spd))
    for parts in (simpl, sup):
        got = conditional_covariances(parts)["g"][:, 0, 0]
        np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.slow
def test_insteval_equals_lme4(insteval_fits):
    """InstEval (REML): crossed s x d, a supernodal factor over 4,114 levels.  Its
    reference is written by a second run of the script (lme4's condVar takes seconds)."""
    path = directory(SCRIPT) / "insteval.json"
    if not path.exists():
        subprocess.run(
            ["Rscript", str(script_path(SCRIPT)), str(path.parent), "insteval"],
            check=True,
            capture_output=True,
        )
    _check(insteval_fits(True), json.loads(path.read_text()))
