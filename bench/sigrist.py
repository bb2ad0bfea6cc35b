"""MixedML on real data: Sigrist's (2023) benchmark (imdb, spotify, InstEval).

F. Sigrist, "A Comparison of Machine Learning Methods for Data with High-Cardinality
Categorical Variables" (arXiv:2307.02071).  Data, the paper's 5-fold splits, its tuned
GPBoost parameters and its published per-fold MSEs are in
``../shared/data/sigrist2023`` (``--data``; its README gives the protocol).

Contenders, every one on the same training/test rows of a fold:

* ``mixedml_hgb``: ``MixedMLRegressor(HistGradientBoostingRegressor())`` with defaults,
  crossed random intercepts ``(1 | g1) + (1 | g2) + ...`` for the paper's grouping
  variables, the other columns as features;
* ``mixedml_tuned``: the same, its HGB tuned inside the loop with
  :func:`pylmer.mixedml.tuning.tune_in_loop` (grid :data:`HGB_GRID`, 3 group folds on the
  working response once the random effects have settled);
* ``mixedml_hgb_ix``: ``mixedml_hgb`` whose random part also holds group x covariate
  intercepts ``(1 | g_x)`` (``g_x``: the level of group ``g`` crossed with the value of a
  feature ``x`` having at most :data:`IX_MAX_LEVELS` values), chosen on the training rows
  only by forward selection on the ML AIC of the linear mixed model (lme4; a term must
  lower it by more than 2, at most :data:`IX_MAX_TERMS` terms, only when there are at most
  :data:`IX_MAX_CANDIDATES` candidates); its wall time includes the selection;
* ``mixedml_hgb_te``: ``mixedml_hgb`` whose estimator also sees the grouping columns,
  through scikit-learn's ``TargetEncoder`` (cross-fitted while fitting) in front of HGB,
  as ``hgb_te`` does: the trees can then split on a group's mean, e.g. for interactions
  of a group with the covariates that random intercepts cannot express;
* ``gpboost``: GPBoost (PyPI) as the paper trains it (``run_experiments.R``, "GPBoost
  not including categorical variables in fixed effects"): grouped random effects,
  ``optimizer_cov="nelder_mead"``, ``num_leaves=1024`` and the fold's tuned
  ``learning_rate``, ``max_depth``, ``lambda_l2`` and ``best_iter`` rounds
  (``tune_pars/NAME_gpboost__fold=k.json``; as in the paper's script, the tuned
  ``min_data_in_leaf`` is not passed to training);
* ``lmer``: ``pylmer.lmer`` with a linear fixed part (every feature) and the same random
  part, ML; test rows predicted with the conditional modes (new levels: 0);
* ``hgb_te``: the estimator alone, groups as categorical features.  HGB's native
  categorical support stops at 255 levels (director, artist, student have thousands), so
  the groups enter through scikit-learn's ``TargetEncoder`` (cross-fitted), HGB defaults.

spotify's predictions are clipped to [0, 1] (the paper's protocol).  Every (data set,
contender, fold) runs in a child process of its own, single-threaded (``OMP_NUM_THREADS``
and the BLAS pools set to ``--threads``, GPBoost's ``num_threads`` too), under a wall
limit (``--limit gpboost=900``: the child is killed and a ``"timeout"`` line records how
long it ran).  Each finished or killed job appends one JSON line to ``--out``; a rerun
skips the jobs already there (resumable: a crash loses only the running job).
``--summary`` reads the file(s) and prints the README table (mean test MSE, mean wall
time of fit + predict, EM steps and stop reasons, folds run) with the published means.

Run (background, the machine is shared)::

    .venv/bin/python bench/sigrist.py --datasets inst_eval,spotify,imdb --folds 1 \\
        --limit gpboost=900 --out out/sigrist.jsonl
    .venv/bin/python bench/sigrist.py --summary out/sigrist.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sigrist2023"

GROUPS = {
    "imdb": ["director_id", "type_id"],
    "spotify": ["artist_id", "album_id", "playlist_id", "subgenre_id"],
    "inst_eval": ["s", "d", "dept"],
}
LABEL = {"imdb": "score", "spotify": "danceability", "inst_eval": "y"}
SPOTIFY_DROP = [
    "track_id",
    "track_artist",
    "track_album_id",
    "track_album_release_date",
    "pl_subgenres",
    "playlist_ids",
]
PUBLISHED = {
    "linear": "linear mixed model",
    "boost_cat": "boosting, groups categorical",
    "catboost": "CatBoost",
    "gpboost_excl": "GPBoost (groups not features)",
    "gpboost": "GPBoost (paper's choice)",
}
#: the grid tune_in_loop searches for HGB (12 candidates; leaves up to 255 as deep
#: trees such as GPBoost's tuned ones, depth 10, need)
HGB_GRID = {
    "learning_rate": [0.05, 0.1],
    "max_leaf_nodes": [15, 63, 255],
    "min_samples_leaf": [20, 100],
}


#: group x covariate intercepts (mixedml_hgb_ix): features with at most this many values
IX_MAX_LEVELS = 10
#: at most this many terms added (one: each further round costs one lme4 fit per
#: candidate again, some slow: on InstEval a student x studage term is nearly the student
#: itself, 139 s for one fit), and only when there are at most this many candidates
IX_MAX_TERMS = 1
IX_MAX_CANDIDATES = 24


def load(name: str, data: Path) -> tuple[pd.DataFrame, np.ndarray, list[str], list[str]]:
    """The frame (features + grouping columns), the response, features, groups."""
    groups = GROUPS[name]
    if name == "inst_eval":
        import pylmer

        df = pylmer.datasets.load("InstEval")
        for c in df.columns:  # the paper: as.numeric() of every column (factor codes)
            if isinstance(df[c].dtype, pd.CategoricalDtype):
                df[c] = df[c].cat.codes.astype(float) + 1.0
            else:
                df[c] = df[c].astype(float)
    else:
        df = pd.read_csv(data / f"{name}.csv.gz")
        if name == "spotify":
            df = df.drop(columns=SPOTIFY_DROP)
    y = df[LABEL[name]].to_numpy(dtype=float)
    X = df.drop(columns=[LABEL[name]])
    features = [c for c in X.columns if c not in groups]
    for g in groups:
        X[g] = X[g].astype(np.int64)
    return X.reset_index(drop=True), y, features, groups


def fold_rows(name: str, data: Path, k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and test row indices (0-based) of fold k (1-based)."""
    folds = json.loads((data / "folds" / f"{name}.json").read_text())
    train = np.asarray(folds[k - 1], dtype=np.int64) - 1
    test = np.setdiff1d(np.arange(n), train)
    return train, test


def random_part(groups: list[str]) -> str:
    return " + ".join(f"(1 | {g})" for g in groups)


# ---------------------------------------------------------------------------- contenders


def interaction_columns(X: pd.DataFrame, features: list[str], groups: list[str]) -> pd.DataFrame:
    """``g_x`` = (level of g, value of x) as one integer code, x with few values."""
    out = {}
    for g in groups:
        for x in features:
            if 2 <= X[x].nunique() <= IX_MAX_LEVELS:
                codes = X[x].astype("category").cat.codes.astype(np.int64)
                out[f"{g}_{x}"] = X[g].astype(np.int64) * (IX_MAX_LEVELS + 1) + codes
    return pd.DataFrame(out, index=X.index)


def select_interactions(
    X: pd.DataFrame, y: np.ndarray, features: list[str], groups: list[str]
) -> tuple[list[str], list[dict[str, Any]]]:
    """Forward selection of ``(1 | g_x)`` terms on these (training) rows by ML AIC."""
    import pylmer

    candidates = [c for c in X.columns if c not in features and c not in groups]
    if len(candidates) > IX_MAX_CANDIDATES:
        return [], [{"skipped": f"{len(candidates)} candidates > {IX_MAX_CANDIDATES}"}]
    keep = [c for c in features if X[c].nunique() > 1]
    frame = X[keep].copy()
    for c in groups + candidates:
        frame[c] = X[c].astype(str)
    frame[".y"] = y
    fixed = "`.y` ~ " + " + ".join(f"`{c}`" for c in keep)

    def aic(terms: list[str]) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(pylmer.lmer(fixed + " + " + random_part(terms), frame, reml=False).aic)

    chosen, trace = list(groups), []
    best = aic(chosen)
    trace.append({"terms": list(chosen), "aic": best})
    left = list(candidates)
    while left and len(chosen) - len(groups) < IX_MAX_TERMS:
        scores = {c: aic([*chosen, c]) for c in left}
        c = min(scores, key=scores.get)
        if scores[c] >= best - 2.0:
            break
        chosen.append(c)
        left.remove(c)
        best = scores[c]
        trace.append({"terms": list(chosen), "aic": best})
    return chosen[len(groups) :], trace


def hgb_with_encoded_groups(groups: list[str]) -> Any:
    """HGB (defaults) behind scikit-learn's TargetEncoder of the grouping columns."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import TargetEncoder

    folds = KFold(5, shuffle=True, random_state=0)
    return make_pipeline(
        ColumnTransformer(
            [("groups", TargetEncoder(target_type="continuous", cv=folds), groups)],
            remainder="passthrough",
        ),
        HistGradientBoostingRegressor(random_state=0),
    )


def run_mixedml(
    X, y, tr, te, features, groups, tuned: bool, ix: bool = False, te_groups: bool = False
) -> dict:
    from sklearn.ensemble import HistGradientBoostingRegressor

    from pylmer import MixedMLRegressor

    t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    terms = list(groups)
    if ix:
        X = pd.concat([X, interaction_columns(X, features, groups)], axis=1)
        added, trace = select_interactions(X.iloc[tr], y[tr], features, groups)
        terms += added
        extra.update(ix_terms=added, ix_trace=trace, ix_seconds=time.perf_counter() - t0)
    model = MixedMLRegressor(
        hgb_with_encoded_groups(groups)
        if te_groups
        else HistGradientBoostingRegressor(random_state=0),
        random_effects=random_part(terms),
        features=groups + features if te_groups else features,
    )
    Xtr, Xte = X.iloc[tr], X.iloc[te]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if tuned:
            from pylmer.mixedml.tuning import tune_in_loop

            model = tune_in_loop(model, Xtr, y[tr], HGB_GRID, cv=3)
            extra["best_params"] = model.tuning_["best_params"]
            extra["tuning_seconds"] = model.tuning_["seconds"]
            extra["n_iter_first"] = model.tuning_["n_iter_first"]
        else:
            model.fit(Xtr, y[tr])
        pred = model.predict(Xte)
    seconds = time.perf_counter() - t0
    vc = model.varcorr_
    extra["sigma2"] = float(vc.loc[vc["group"] == "Residual", "variance"].iloc[0])
    return {
        "pred": pred,
        "seconds": seconds,
        "n_iter": int(model.n_iter_),
        "stop": model.stop_reason_,
        **extra,
    }


def run_gpboost(X, y, tr, te, features, groups, name: str, k: int, data: Path) -> dict:
    import gpboost as gpb

    pars = json.loads((data / "tune_pars" / f"{name}_gpboost__fold={k}.json").read_text())
    best = pars["best_params"]
    params = {
        "objective": "regression_l2",
        "num_leaves": 2**10,
        "learning_rate": best["learning_rate"],
        "max_depth": best["max_depth"],
        "lambda_l2": best["lambda_l2"],
        "verbose": -1,
        "num_threads": int(os.environ.get("OMP_NUM_THREADS", "1")),
    }
    Xtr, Xte = X.iloc[tr], X.iloc[te]
    t0 = time.perf_counter()
    gp_model = gpb.GPModel(group_data=Xtr[groups].to_numpy(), likelihood="gaussian")
    gp_model.set_optim_params(params={"optimizer_cov": "nelder_mead"})
    train = gpb.Dataset(Xtr[features].to_numpy(dtype=float), label=y[tr])
    bst = gpb.train(
        params=params, train_set=train, gp_model=gp_model, num_boost_round=int(pars["best_iter"])
    )
    out = bst.predict(
        data=Xte[features].to_numpy(dtype=float),
        group_data_pred=Xte[groups].to_numpy(),
        predict_var=False,
        pred_latent=False,
    )
    seconds = time.perf_counter() - t0
    return {
        "pred": np.asarray(out["response_mean"]),
        "seconds": seconds,
        "rounds": pars["best_iter"],
    }


def run_lmer(X, y, tr, te, features, groups) -> dict[str, Any]:
    import pylmer

    # drop features constant on the training rows (rank-deficient columns: lme4 drops
    # them itself, but say so here)
    Xtr = X.iloc[tr]
    keep = [c for c in features if Xtr[c].nunique() > 1]
    frame = Xtr[keep].copy()
    for g in groups:
        frame[g] = Xtr[g].astype(str)
    frame[".y"] = y[tr]
    formula = "`.y` ~ " + " + ".join(f"`{c}`" for c in keep) + " + " + random_part(groups)
    test = X.iloc[te][keep].copy()
    for g in groups:
        test[g] = X.iloc[te][g].astype(str)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = pylmer.lmer(formula, frame, reml=False)
        pred = np.asarray(model.predict(test, allow_new_levels=True), dtype=float)
    return {"pred": pred, "seconds": time.perf_counter() - t0}


def run_hgb_te(X, y, tr, te, features, groups) -> dict[str, Any]:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import TargetEncoder

    pipe = make_pipeline(
        ColumnTransformer(
            [("groups", TargetEncoder(target_type="continuous", random_state=0), groups)],
            remainder="passthrough",
        ),
        HistGradientBoostingRegressor(random_state=0),
    )
    cols = groups + features
    t0 = time.perf_counter()
    pipe.fit(X.iloc[tr][cols], y[tr])
    pred = pipe.predict(X.iloc[te][cols])
    return {"pred": pred, "seconds": time.perf_counter() - t0}


def run_one(name, contender, k, X, y, features, groups, data) -> dict[str, Any]:
    tr, te = fold_rows(name, data, k, len(X))
    if contender == "mixedml_hgb":
        out = run_mixedml(X, y, tr, te, features, groups, tuned=False)
    elif contender == "mixedml_hgb_ix":
        out = run_mixedml(X, y, tr, te, features, groups, tuned=False, ix=True)
    elif contender == "mixedml_hgb_te":
        out = run_mixedml(X, y, tr, te, features, groups, tuned=False, te_groups=True)
    elif contender == "mixedml_tuned":
        out = run_mixedml(X, y, tr, te, features, groups, tuned=True)
    elif contender == "gpboost":
        out = run_gpboost(X, y, tr, te, features, groups, name, k, data)
    elif contender == "lmer":
        out = run_lmer(X, y, tr, te, features, groups)
    elif contender == "hgb_te":
        out = run_hgb_te(X, y, tr, te, features, groups)
    else:
        raise SystemExit(f"unknown contender {contender}")
    pred = np.asarray(out.pop("pred"), dtype=float)
    if name == "spotify":
        pred = np.clip(pred, 0.0, 1.0)
    out["mse"] = float(np.mean((y[te] - pred) ** 2))
    return {"dataset": name, "contender": contender, "fold": k, **out}


# ---------------------------------------------------------------------------- summary


def published(data: Path) -> pd.DataFrame:
    """Published per-fold test MSEs (fold numbers 1-5)."""
    rows = []
    for name in GROUPS:
        for kind, label in PUBLISHED.items():
            d = pd.read_csv(data / "results" / f"res_{name}_{kind}.csv")
            for _, r in d.iterrows():
                rows.append(
                    {
                        "dataset": name,
                        "method": label,
                        "fold": int(r["experiment"]) + 1,
                        "mse": float(r["error"]),
                    }
                )
    return pd.DataFrame(rows)


def summary(paths: list[str], data: Path) -> str:
    rows = [json.loads(line) for p in paths for line in Path(p).read_text().splitlines() if line]
    df = pd.DataFrame(rows).drop_duplicates(["dataset", "contender", "fold"], keep="last")
    pub = published(data)
    lines = [
        "| data set | model | folds | mean test MSE | same folds: MSE / GPBoost's | "
        "wall s / fold | EM steps | stop |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for name in GROUPS:
        d = df[df.dataset == name]
        if d.empty:
            continue
        if "status" not in d:
            d = d.assign(status="ok")
        d = d.assign(status=d["status"].fillna("ok"))
        for _, r in d[d.status != "ok"].iterrows():  # killed at the wall limit, or failed
            lines.append(
                f"| {name} | {r.contender} | {int(r.fold)} | not finished: {r.status} after "
                f"{r.seconds:.0f} s wall | | > {r.seconds:.0f} | | |"
            )
        d = d[d.status == "ok"]
        gpb = d[d.contender == "gpboost"].set_index("fold")
        for contender, g in d.groupby("contender", sort=False):
            g = g.sort_values("fold")
            common = g[g.fold.isin(gpb.index)]
            ratio = (
                f"{common.mse.mean() / gpb.loc[common.fold, 'mse'].mean():.4f}"
                if len(common)
                else "-"
            )
            steps = f"{g.n_iter.mean():.1f}" if "n_iter" in g and g.n_iter.notna().any() else "-"
            stops = (
                ", ".join(f"{s} x{n}" for s, n in g["stop"].value_counts().items())
                if "stop" in g and g["stop"].notna().any()
                else "-"
            )
            folds = ",".join(str(int(f)) for f in g.fold)
            lines.append(
                f"| {name} | {contender} | {folds} | {g.mse.mean():.5g} | {ratio} | "
                f"{g.seconds.mean():.1f} | {steps} | {stops} |"
            )
        ran = sorted(set(d.fold))
        for method, p in pub[pub.dataset == name].groupby("method", sort=False):
            same = p[p.fold.isin(ran)].mse.mean()
            lines.append(
                f"| {name} | published: {method} | 1-5: {p.mse.mean():.5g}; folds "
                f"{','.join(map(str, ran))}: {same:.5g} | | | | | |"
            )
    return "\n".join(lines)


def done_jobs(path: Path) -> set[tuple[str, str, int]]:
    """(data set, contender, fold) already recorded in ``path`` (finished or timed out)."""
    if not path.exists():
        return set()
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["dataset"], r["contender"], int(r["fold"])) for r in rows}


def run_child(job: tuple[str, str, int], args: argparse.Namespace, limit: float | None) -> dict:
    """Run one job in a child process (its own process group) under a wall limit."""
    name, contender, k = job
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    cmd = [sys.executable, __file__, "--data", str(args.data), "--job", f"{name},{contender},{k}"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {
            "dataset": name,
            "contender": contender,
            "fold": k,
            "status": "timeout",
            "seconds": time.perf_counter() - t0,
        }
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {
            "dataset": name,
            "contender": contender,
            "fold": k,
            "status": f"failed (exit {proc.returncode})",
            "seconds": time.perf_counter() - t0,
        }
    return {**json.loads(lines[-1]), "status": "ok"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--datasets", default="spotify,imdb,inst_eval")
    parser.add_argument("--folds", default="1,2,3,4,5")
    parser.add_argument("--contenders", default="mixedml_hgb,gpboost,lmer,hgb_te")
    parser.add_argument("--out", type=Path, default=Path("out/sigrist.jsonl"))
    parser.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="CONTENDER=SECONDS",
        help="wall limit of one job of that contender (repeatable); 'all=S' for every one",
    )
    parser.add_argument("--threads", type=int, default=1, help="threads per job (default 1)")
    parser.add_argument("--job", help=argparse.SUPPRESS)  # child: NAME,CONTENDER,FOLD
    parser.add_argument("--summary", nargs="*", help="print the table of these JSONL files")
    args = parser.parse_args()
    if args.summary:
        print(summary(args.summary, args.data))
        return
    if args.job:
        name, contender, k = args.job.split(",")
        X, y, features, groups = load(name, args.data)
        rec = run_one(name, contender, int(k), X, y, features, groups, args.data)
        print(json.dumps(rec), flush=True)
        return
    limits = dict(item.split("=") for item in args.limit)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = done_jobs(args.out)
    print(f"load average at start: {os.getloadavg()}", flush=True)
    for name in args.datasets.split(","):
        for k in [int(f) for f in args.folds.split(",")]:
            for contender in args.contenders.split(","):
                job = (name, contender, k)
                if job in done:
                    print(f"skip {job}: already in {args.out}", flush=True)
                    continue
                limit = limits.get(contender, limits.get("all"))
                load_before = os.getloadavg()[0]
                rec = run_child(job, args, float(limit) if limit else None)
                rec["load"] = [load_before, os.getloadavg()[0]]
                rec["threads"] = args.threads
                print(json.dumps(rec), flush=True)
                with open(args.out, "a") as fh:
                    fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
