"""Conditional covariances of the random effects from lme4's own Cholesky factor.

lme4's ``ranef(m, condVar = TRUE)`` gives, per grouping factor and level, the covariance
of the random effects given the data (``postVar``):
``sigma^2 * Lambda (Lambda' Z' W Z Lambda + I)^-1 Lambda'`` restricted to that level's
coefficients.  lme4 1.1 computes it with one sparse triangular solve per level (or a
solve against all of ``Lambda'``), which on InstEval takes as long as the fit.

Every block needed lies on the sparsity pattern of the Cholesky factor ``L``
(``P A P' = L L'``; the coefficients of one level share their rows of ``Z``), and the
Takahashi recurrences give the inverse on that pattern ("selected inversion") from ``L``
alone, at about the cost of the factorisation.  With ``L`` split into the columns ``s``
of one supernode and the rows ``B`` below them (``L_ss`` lower triangular, ``L_Bs``),
processed from the last supernode back::

    Y    = L_Bs L_ss^-1
    S_Bs = -S_BB Y
    S_ss = (L_ss L_ss')^-1 - Y' S_Bs

``S_BB`` only involves entries of later supernodes on their pattern.  The inputs are
lme4's fitted factor exactly as CHOLMOD stores it (``r_scripts/condvar.R``); nothing is
refactorised.  Supernodal factors are processed one supernode at a time with dense BLAS
blocks; simplicial factors (CHOLMOD's choice when the factor is cheap, e.g. many small
independent groups) column by column, all columns of one depth of the elimination tree
at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import lapack

__all__ = ["NotOnPattern", "conditional_covariances", "selected_inverse"]


class NotOnPattern(LookupError):
    """A block asked for is not on the factor's pattern (a coefficient whose column of
    ``Z`` is structurally zero for some level): the caller falls back to lme4."""


@dataclass(frozen=True)
class _Supernodal:
    """A lower-triangular factor in CHOLMOD's supernodal layout (0-based).

    Supernode ``k`` holds columns ``super[k]:super[k+1]``; its rows are
    ``s[pi[k]:pi[k+1]]`` (its own columns first, then the rows below, ascending) and its
    values a column-major ``rows x width`` block at ``x[px[k]:]``.
    """

    super: np.ndarray
    pi: np.ndarray
    px: np.ndarray
    s: np.ndarray
    x: np.ndarray

    @property
    def n(self) -> int:
        return int(self.super[-1])

    def block(self, values: np.ndarray, k: int) -> np.ndarray:
        """The ``rows x width`` block of supernode ``k`` in ``values`` (a view)."""
        w = self.super[k + 1] - self.super[k]
        nr = self.pi[k + 1] - self.pi[k]
        return values[self.px[k] : self.px[k] + nr * w].reshape(w, nr).T


def _as_supernodal(parts: Mapping[str, Any]) -> _Supernodal:
    """lme4's factor as supernodes; a simplicial factor as supernodes of one column."""
    names = ("super", "pi", "px", "s") if parts["kind"] == "super" else ("p", "i", "nz")
    ints = {k: np.atleast_1d(np.asarray(parts[k], dtype=np.int64)) for k in names}
    x = np.atleast_1d(np.asarray(parts["x"], dtype=np.float64))
    if parts["kind"] == "super":
        return _Supernodal(ints["super"], ints["pi"], ints["px"], ints["s"], x)
    p, i, nz = ints["p"], ints["i"], ints["nz"]
    n = len(nz)
    start = np.concatenate(([0], np.cumsum(nz)))
    # entries of column j are p[j] ... p[j] + nz[j] - 1 (CHOLMOD may leave gaps)
    take = np.repeat(p[:n] - start[:-1], nz) + np.arange(start[-1])
    cols = np.repeat(np.arange(n), nz)
    rows = i[take]
    order = np.lexsort((rows, cols))  # rows ascending within each column (diagonal first)
    return _Supernodal(np.arange(n + 1), start, start, rows[order], x[take][order])


def selected_inverse(parts: Mapping[str, Any]) -> tuple[_Supernodal, np.ndarray]:
    """Return the factor and ``(L L')^-1`` on its pattern, laid out like ``L``'s values.

    ``parts`` is the output of ``.pylmer_condvar_parts`` (the factor's slots).
    """
    from threadpoolctl import threadpool_limits

    factor = _as_supernodal(parts)
    widths = np.diff(factor.super)
    # thousands of small BLAS calls: with several BLAS threads they spin more than they
    # work (InstEval: 0.15 s on one thread, 1.6 s on two when the other core is busy)
    with threadpool_limits(limits=1, user_api="blas"):
        if widths.max(initial=1) == 1:
            return factor, _selinv_columns(factor)
        return factor, _selinv_supernodes(factor)


def _selinv_supernodes(f: _Supernodal) -> np.ndarray:
    """Takahashi recurrences, one supernode at a time from the last."""
    widths = np.diff(f.super)
    sup_of = np.repeat(np.arange(len(widths)), widths)
    out = np.empty_like(f.x)
    for k in range(len(widths) - 1, -1, -1):
        w = int(widths[k])
        lk = f.block(f.x, k)
        sk = f.block(out, k)
        diag = lk[:w]
        if w == 1:
            s_ss = np.array([[1.0 / diag[0, 0] ** 2]])
        else:
            s_ss, _ = lapack.dpotri(diag, lower=1)
            s_ss = np.tril(s_ss) + np.tril(s_ss, -1).T
        below = f.s[f.pi[k] + w : f.pi[k + 1]]
        if not len(below):
            sk[:] = s_ss
            continue
        if w == 1:
            y = lk[w:] / diag[0, 0]
        else:  # y' = L_ss'^-1 L_Bs'
            yt, _ = lapack.dtrtrs(diag, np.ascontiguousarray(lk[w:].T), lower=1, trans=1)
            y = yt.T
        s_bs = -_gather(f, out, below, sup_of) @ y
        sk[:w] = s_ss - y.T @ s_bs
        sk[w:] = s_bs
    return out


def _gather(f: _Supernodal, values: np.ndarray, rows: np.ndarray, sup_of: np.ndarray) -> np.ndarray:
    """The dense symmetric block ``S[rows, rows]`` from later supernodes' values."""
    nb = len(rows)
    out = np.empty((nb, nb))
    owner = sup_of[rows]
    cuts = np.flatnonzero(owner[1:] != owner[:-1]) + 1
    for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), nb], strict=True):
        t = owner[a]
        st = f.block(values, t)
        pos = np.searchsorted(f.s[f.pi[t] : f.pi[t + 1]], rows[a:])
        blk = st[pos][:, rows[a:b] - f.super[t]]
        out[a:, a:b] = blk
        out[a:b, b:] = blk[b - a :].T
    return out


def _selinv_columns(f: _Supernodal) -> np.ndarray:
    """Takahashi recurrences on a factor of single columns, every column of one depth
    of the elimination tree at once (they depend on their ancestors only)."""
    n = f.n
    start = f.pi
    count = np.diff(start)
    diag = f.x[start[:-1]]
    out = np.empty_like(f.x)
    out[start[:-1]] = 1.0 / diag**2
    # parent of column j: its first row below the diagonal; depth from the roots
    has_parent = count > 1
    parent = np.full(n, -1)
    parent[has_parent] = f.s[start[:-1][has_parent] + 1]
    depth = np.zeros(n, dtype=np.int64)
    for j in np.flatnonzero(has_parent)[::-1]:
        depth[j] = depth[parent[j]] + 1
    keys = np.repeat(np.arange(n), count) * n + f.s
    order = np.argsort(depth, kind="stable")
    bounds = np.searchsorted(depth[order], np.arange(1, depth.max(initial=0) + 2))
    for d in range(1, len(bounds)):
        cols = order[bounds[d - 1] : bounds[d]]
        nb = count[cols] - 1
        first = np.cumsum(nb) - nb  # each column's first entry among `ent`
        loc = np.repeat(np.arange(len(cols)), nb)  # the column of each entry
        # the entries below the diagonal of these columns, and y = L_Bj / L_jj
        ent = np.repeat(start[cols] + 1 - first, nb) + np.arange(nb.sum())
        y = f.x[ent] / diag[cols][loc]
        # S_Bj = -S_BB y: every pair (a, b) of entries of one column
        pair_n = nb[loc]
        ia = np.repeat(np.arange(len(ent)), pair_n)
        ib = np.repeat(first[loc], pair_n) + (
            np.arange(len(ia)) - np.repeat(np.cumsum(pair_n) - pair_n, pair_n)
        )
        ra, rb = f.s[ent[ia]], f.s[ent[ib]]
        s_ab = _lookup(keys, out, np.maximum(ra, rb), np.minimum(ra, rb), n)
        s_bj = -np.bincount(ia, weights=s_ab * y[ib], minlength=len(ent))
        out[ent] = s_bj
        # S_jj = 1 / L_jj^2 - y' S_Bj
        out[start[cols]] -= np.bincount(loc, weights=y * s_bj, minlength=len(cols))
    return out


def _lookup(keys: np.ndarray, values: np.ndarray, rows: np.ndarray, cols: np.ndarray, n: int):
    """``values`` at ``(rows, cols)`` (``rows >= cols``) of a single-column layout."""
    target = cols * n + rows
    pos = np.searchsorted(keys, target)
    pos = np.minimum(pos, len(keys) - 1)
    if not np.array_equal(keys[pos], target):
        raise NotOnPattern("an entry is not on the factor's pattern")
    return values[pos]


def _entries(f: _Supernodal, values: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Symmetric ``S[rows, cols]`` (any order) from the values on the pattern."""
    r = np.maximum(rows, cols)
    c = np.minimum(rows, cols)
    widths = np.diff(f.super)
    sup_of = np.repeat(np.arange(len(widths)), widths)
    t = sup_of[c]
    n = f.n
    keys = np.repeat(np.arange(len(widths)), np.diff(f.pi)) * n + f.s
    if np.any(keys[1:] < keys[:-1]):
        raise NotOnPattern("the factor's row indices are not sorted")
    target = t * n + r
    pos = np.minimum(np.searchsorted(keys, target), len(keys) - 1)
    if not np.array_equal(keys[pos], target):
        raise NotOnPattern("an entry is not on the factor's pattern")
    nr = np.diff(f.pi)[t]
    return values[f.px[t] + (c - f.super[t]) * nr + (pos - f.pi[t])]


def conditional_covariances(parts: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Conditional covariances of the random effects, per grouping factor.

    Parameters
    ----------
    parts : mapping
        The output of the R helper ``.pylmer_condvar_parts(m)``.

    Returns
    -------
    dict of str to numpy.ndarray
        Per grouping factor (lme4's ``names(m@flist)``), an array ``levels x K x K``
        where ``K`` is the number of coefficients of all the factor's terms, in the
        column order of ``ranef(m)[[group]]``.  For a factor with one term, lme4's
        ``attr(ranef(m, condVar = TRUE)[[group]], "postVar")`` with the level axis
        first; with several terms lme4 gives the diagonal blocks of each term, this
        array also the covariances between terms.

    Raises
    ------
    NotOnPattern
        A requested entry is not on the factor's pattern.
    """
    factor, values = selected_inverse(parts)
    n = factor.n
    perm = np.atleast_1d(np.asarray(parts["perm"], dtype=np.int64))
    where = np.empty(n, dtype=np.int64)
    where[perm] = np.arange(n)  # position in P A P' of each index of u
    gp = np.atleast_1d(np.asarray(parts["gp"], dtype=np.int64))
    nc = np.atleast_1d(np.asarray(parts["nc"], dtype=np.int64))
    nl = np.atleast_1d(np.asarray(parts["nl"], dtype=np.int64))
    assign = np.atleast_1d(np.asarray(parts["assign"], dtype=np.int64))
    groups = [str(g) for g in np.atleast_1d(np.asarray(parts["groups"], dtype=object))]
    lambdas = parts["lambda"]
    if not isinstance(lambdas, list):
        lambdas = [lambdas]
    sigma2 = float(parts["sigma2"])
    out: dict[str, np.ndarray] = {}
    for g, name in enumerate(groups, start=1):
        terms = np.flatnonzero(assign == g)
        nlev = int(nl[terms[0]])
        # u indices of each level's coefficients, term after term: nlev x K
        idx = np.hstack(
            [gp[t] + np.arange(nlev)[:, None] * nc[t] + np.arange(nc[t])[None, :] for t in terms]
        )
        k = idx.shape[1]
        pos = where[idx]
        a, b = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
        s_blk = _entries(factor, values, pos[:, a.ravel()], pos[:, b.ravel()]).reshape(nlev, k, k)
        lam = np.zeros((k, k))
        at = 0
        for t in terms:
            c = int(nc[t])
            block = np.asarray(lambdas[t], dtype=float).reshape(c, c, order="F")
            lam[at : at + c, at : at + c] = block
            at += c
        out[name] = sigma2 * (lam @ s_blk @ lam.T)
    return out
