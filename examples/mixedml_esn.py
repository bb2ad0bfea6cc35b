"""MixedML on top of a sequence model: an echo state network with subject random effects.

The recurrent half of seed 000 (the mixedML framework, Kilian et al. 2023): the
fixed-effects model is an echo state network (reservoirpy) that reads each subject's
covariate trajectory ``x1_obs..x8_obs`` as a sequence, wrapped in
:class:`pylmer.sequence.SequenceRegressor` so that it is a scikit-learn regressor on long data;
``MixedMLRegressor`` adds the subject random effects
``(1 + x2_x5 + x4_x7 + x6_x8 || individus)`` on top of it, with no change to either.

Data: ``simulate_longitudinal(n_subjects, 26, seed)``; the models learn ``y_mixed_obs``
on the times ``temps < 20`` of every subject and are scored on the later times
``temps >= 20`` of the *same* subjects, against the noise-free ``y_mixed`` (and, for
comparison with ``examples/mixedml_longitudinal.py``, against ``y_mixed_obs``, whose
best possible MSE is the noise variance, 1).

How the later times are predicted. A sequence model's prediction at time ``t`` depends
on the inputs up to ``t``, so a test row cannot be predicted from the test rows alone:
the model must be run over the subject's whole sequence. The covariates are known at
every time (only the outcome is not), so the clean split is on the *target*, not on the
inputs:

* ``fit`` sees only the training rows (``temps < 20``) and their outcomes; each subject's
  sequence is its first 20 steps and every step enters the loss. No test outcome is
  passed in any form (``MixedMLRegressor`` refuses missing targets anyway, and
  masking would need a special case in the loop).
* ``predict`` is called on *all* rows (``temps`` 0..25): :class:`SequenceRegressor`
  rebuilds the full sequences, the network runs over them, and the random part
  ``Z u`` of each row uses that subject's estimated effects. Only the test rows are
  scored.

Since the networks are causal (an ESN's state and a GRU's hidden state at ``t`` depend
on steps ``<= t`` only), the predictions at the training rows are the same whether the
sequence is cut at 20 or not, so predicting on the whole sequences leaks nothing.

Both models use fixed seeds (data, reservoir, GRU initialisation and shuffling), so the
numbers are reproducible. ``--gru`` adds a GRU (PyTorch) alone and with MixedML; it is
slower (a GRU is retrained at every EM iteration). Writes ``<out>/mixedml_esn.png``
with a few subjects' trajectories.

Run: ``python examples/mixedml_esn.py [--subjects 200] [--seed 0] [--gru] [--out out]``
(about 30 s with the defaults, 1.5 min with ``--gru``, on 2 cores).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning

from pylmer import MixedMLRegressor
from pylmer.datasets import simulate_longitudinal
from pylmer.sequence import ESNSequenceModel, GRUSequenceModel, SequenceRegressor

FEATURES = [f"x{k}_obs" for k in range(1, 9)]
SLOPES = ["x2_x5", "x4_x7", "x6_x8"]
RANDOM = "(1 + x2_x5 + x4_x7 + x6_x8 || individus)"
TARGET, TRUTH = "y_mixed_obs", "y_mixed"
CUTOFF, N_TIMES = 20, 26


def sequence_model(kind: str, seed: int) -> ESNSequenceModel | GRUSequenceModel:
    """The sequence model: an ESN with reservoirpy's usual settings, or a small GRU."""
    if kind == "ESN":
        return ESNSequenceModel(300, sr=0.9, lr=0.3, ridge=1e-6, seed=seed)
    return GRUSequenceModel(16, epochs=100, lr=1e-2, batch_size=32, seed=seed)


def regressor(kind: str, seed: int) -> SequenceRegressor:
    """The sequence model as a regressor on long rows (one sequence per subject)."""
    return SequenceRegressor(
        sequence_model(kind, seed), subject="individus", time="temps", features=FEATURES
    )


# MixedML stopping rule per model: the ESN's readout is a ridge regression, a smooth
# function of its target, so the iterates converge to a tight tolerance; a GRU trained by
# Adam is not, and its iterates settle at a noise floor of a few per cent.
SETTINGS = {"ESN": {"max_iter": 100, "tol": 1e-3}, "GRU": {"max_iter": 10, "tol": 2e-2}}


def mixed(kind: str, seed: int, max_iter: int, tol: float) -> MixedMLRegressor:
    """The same regressor with subject random effects on top.

    ``features`` hands the subject and time columns to the sequence regressor (by default
    MixedML gives the inner estimator every column except the grouping factors).
    """
    return MixedMLRegressor(
        regressor(kind, seed),
        random_effects=RANDOM,
        features=["individus", "temps", *FEATURES],
        max_iter=max_iter,
        tol=tol,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=200, help="number of subjects (200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and models (0)")
    parser.add_argument("--gru", action="store_true", help="also run a GRU (PyTorch)")
    parser.add_argument("--max-iter", type=int, help="MixedML max_iter (default: ESN 100, GRU 10)")
    parser.add_argument("--tol", type=float, help="MixedML tol (default: ESN 1e-3, GRU 2e-2)")
    parser.add_argument("--out", default="out", help="folder for the PNG (out)")
    args = parser.parse_args(argv)
    start = time.perf_counter()

    df = simulate_longitudinal(args.subjects, N_TIMES, seed=args.seed)
    columns = ["individus", "temps", *FEATURES, *SLOPES]
    X = df[columns]
    train = (df["temps"] < CUTOFF).to_numpy()
    test = ~train
    print(
        f"simulate_longitudinal({args.subjects}, {N_TIMES}, seed={args.seed}): train temps < "
        f"{CUTOFF} ({train.sum()} rows), test temps >= {CUTOFF} ({test.sum()} rows) of the "
        "same subjects"
    )

    kinds = ["ESN", "GRU"] if args.gru else ["ESN"]
    rows, predictions = [], {}
    for kind in kinds:
        for name, model in (
            (f"{kind} alone", regressor(kind, args.seed)),
            (
                f"{kind} + MixedML",
                mixed(
                    kind,
                    args.seed,
                    args.max_iter or SETTINGS[kind]["max_iter"],
                    args.tol or SETTINGS[kind]["tol"],
                ),
            ),
        ):
            t0 = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                model.fit(X[train], df.loc[train, TARGET])
            seconds = time.perf_counter() - t0
            pred = model.predict(X)  # whole sequences; only the test rows are scored
            predictions[name] = pred
            is_mixed = isinstance(model, MixedMLRegressor)
            not_converged = any(issubclass(w.category, ConvergenceWarning) for w in caught)
            rows.append(
                {
                    "model": name,
                    f"test MSE ({TRUTH})": _mse(pred[test], df.loc[test, TRUTH]),
                    f"test MSE ({TARGET})": _mse(pred[test], df.loc[test, TARGET]),
                    f"train MSE ({TRUTH})": _mse(pred[train], df.loc[train, TRUTH]),
                    "iterations": str(model.n_iter_) if is_mixed else "",
                    "tol": f"{model.tol:g}" if is_mixed else "",
                    "converged": ("no" if not_converged else "yes") if is_mixed else "",
                    "fit seconds": seconds,
                }
            )
            print(f"  {name:<16} test MSE {rows[-1][f'test MSE ({TRUTH})']:8.3f}  {seconds:5.1f} s")

    table = pd.DataFrame(rows)
    print(f"\nTest rows: temps >= {CUTOFF}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep=""))
    print()
    print(_markdown(table))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "mixedml_esn.png"
    fig = _trajectories(df, predictions)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"\nfigure: {path}")
    print(f"done in {time.perf_counter() - start:.1f} s")


def _mse(a: np.ndarray, b: pd.Series) -> float:
    return float(np.mean((np.asarray(a, float) - b.to_numpy(dtype=float)) ** 2))


def _markdown(table: pd.DataFrame) -> str:
    """The result table in markdown, for the README."""
    head = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" if c == "model" else "---:" for c in table.columns) + "|"
    body = [
        "| "
        + " | ".join(
            "" if isinstance(v, float) and np.isnan(v)
            else f"{v:.3f}" if isinstance(v, float) else str(v)
            for v in row
        )
        + " |"
        for row in table.itertuples(index=False)
    ]  # fmt: skip
    return "\n".join([head, rule, *body])


def _trajectories(df: pd.DataFrame, predictions: dict[str, np.ndarray]) -> plt.Figure:
    """Observed and true outcome of four subjects with each model's predictions."""
    subjects = df["individus"].unique()[:4]
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
    for ax, subject in zip(axes.ravel(), subjects, strict=True):
        rows = (df["individus"] == subject).to_numpy()
        t = df.loc[rows, "temps"]
        ax.scatter(t, df.loc[rows, TARGET], s=10, color="k", label=f"{TARGET} (observed)")
        ax.plot(t, df.loc[rows, TRUTH], color="k", lw=1, ls="--", label=f"{TRUTH} (truth)")
        for i, (name, pred) in enumerate(predictions.items()):
            ax.plot(t, pred[rows], color=f"C{i}", lw=1.5, label=name)
        ax.axvspan(CUTOFF - 0.5, N_TIMES - 0.5, color="grey", alpha=0.12, lw=0)
        ax.set_title(f"subject {subject}", fontsize=10)
    axes[0, 0].legend(fontsize=7)
    fig.supxlabel("temps (shaded: test times, not seen in training)")
    fig.supylabel("outcome")
    fig.suptitle("Sequence model alone and with MixedML random effects")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
