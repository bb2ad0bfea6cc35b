"""Sequence models on longitudinal data.

Longitudinal data come in *long* format: one row per subject and time. Sequence
models (echo state networks, recurrent networks) want one padded sequence per
subject instead. :func:`to_sequences` and :func:`from_sequences` convert between
the two, and :class:`SequenceRegressor` wraps any *sequence model* into a
scikit-learn regressor on long DataFrames, so that it can be the fixed-effects
estimator of a mixed model.

A sequence model (see :class:`SequenceModel`) is a scikit-learn style estimator with

- ``fit(X, y, mask) -> self`` and
- ``predict(X, mask) -> y``,

where ``X`` has shape ``(n_sequences, max_len, n_features)``, ``y`` has shape
``(n_sequences, max_len, n_targets)`` and the boolean ``mask`` of shape
``(n_sequences, max_len)`` tells which steps count: in ``fit``, the steps that
enter the training loss; in ``predict``, the steps whose predictions are used.
Sequences are left-aligned: the steps after the last ``True`` of a row are
padding (zeros) and must not influence the other steps. Adapters:
:class:`ESNSequenceModel` (reservoirpy) and :class:`GRUSequenceModel` (PyTorch).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted

from .errors import InvalidArgumentError

__all__ = [
    "ESNSequenceModel",
    "GRUSequenceModel",
    "SequenceData",
    "SequenceModel",
    "SequenceRegressor",
    "from_sequences",
    "to_sequences",
]


@dataclass(frozen=True, eq=False)
class SequenceData:
    """Long data reshaped to padded sequences, one per subject.

    Attributes
    ----------
    X : ndarray of shape (n_subjects, max_len, n_features)
        Features, zero-padded after the end of each subject's sequence.
    y : ndarray of shape (n_subjects, max_len, n_targets) or None
        Targets, padded like ``X``; None when no target was asked for.
    mask : ndarray of bool of shape (n_subjects, max_len)
        True at observed steps, False at padding.
    subjects : pandas.Index
        Subject ids, in the order of the first axis (sorted).
    positions : ndarray of int of shape (n_rows, 2)
        For each input row, in the original order, its subject index and time step.
    index : pandas.Index
        Index of the input frame.
    """

    X: np.ndarray
    y: np.ndarray | None
    mask: np.ndarray
    subjects: pd.Index
    positions: np.ndarray
    index: pd.Index


def _as_list(columns: str | Sequence[str]) -> list[str]:
    return [columns] if isinstance(columns, str) else list(columns)


def _scatter(values: np.ndarray, positions: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Place long values of shape (n_rows, k) into a zero-padded (*shape, k) array."""
    out = np.zeros((*shape, values.shape[1]))
    out[positions[:, 0], positions[:, 1]] = values
    return out


def to_sequences(
    df: pd.DataFrame,
    *,
    subject: str,
    time: str,
    features: str | Sequence[str],
    target: str | Sequence[str] | None = None,
) -> SequenceData:
    """Reshape long data (one row per subject and time) to padded sequences.

    Rows are ordered by ``time`` within each subject (ties keep their order in
    ``df``); subjects are sorted. Sequences of different lengths are
    left-aligned and zero-padded, and ``mask`` marks the observed steps. The
    step of a row is its rank within its subject, not the value of ``time``:
    irregular visit times are not spread out.

    Parameters
    ----------
    df : pandas.DataFrame
        Long data.
    subject, time : str
        Columns holding the subject id and the time (any sortable type).
    features : str or sequence of str
        Feature columns.
    target : str or sequence of str, optional
        Target columns.

    Returns
    -------
    SequenceData
        The sequences and what :func:`from_sequences` needs to map back.
    """
    subject_codes, subjects = pd.factorize(df[subject], sort=True)
    time_codes, _ = pd.factorize(df[time], sort=True)
    if (subject_codes < 0).any() or (time_codes < 0).any():
        raise InvalidArgumentError(
            f"Columns {subject!r} and {time!r} must not contain missing values."
        )
    n_rows = len(df)
    lengths = np.bincount(subject_codes, minlength=len(subjects))
    starts = np.cumsum(lengths) - lengths
    order = np.lexsort((time_codes, subject_codes))  # stable: ties keep the row order
    steps = np.empty(n_rows, dtype=np.intp)
    steps[order] = np.arange(n_rows) - np.repeat(starts, lengths)
    positions = np.column_stack([subject_codes, steps]).astype(np.intp)
    shape = (len(subjects), int(lengths.max(initial=0)))

    def gather(columns: str | Sequence[str]) -> np.ndarray:
        values = df[_as_list(columns)].to_numpy(dtype=float, na_value=np.nan)
        return _scatter(values, positions, shape)

    mask = np.zeros(shape, dtype=bool)
    mask[positions[:, 0], positions[:, 1]] = True
    return SequenceData(
        X=gather(features),
        y=None if target is None else gather(target),
        mask=mask,
        subjects=pd.Index(subjects, name=subject),
        positions=positions,
        index=df.index,
    )


def from_sequences(
    values: np.ndarray, data: SequenceData, *, columns: Sequence[str] | None = None
) -> np.ndarray | pd.DataFrame:
    """Map per-step values back to the long rows, in the original row order.

    Parameters
    ----------
    values : array-like of shape (n_subjects, max_len) or (n_subjects, max_len, k)
        Values on the grid of ``data`` (for instance sequence predictions).
    data : SequenceData
        The output of :func:`to_sequences` that defined the grid.
    columns : sequence of str, optional
        If given, return a DataFrame with these columns and the original index.

    Returns
    -------
    ndarray of shape (n_rows,) or (n_rows, k), or DataFrame
        Row ``r`` holds the value at the subject and step of input row ``r``.
    """
    values = np.asarray(values)
    if values.shape[:2] != data.mask.shape:
        raise InvalidArgumentError(
            f"values of shape {values.shape} do not start with {data.mask.shape}."
        )
    long = values[data.positions[:, 0], data.positions[:, 1]]
    if columns is None:
        return long
    return pd.DataFrame(long.reshape(len(long), -1), index=data.index, columns=list(columns))


@runtime_checkable
class SequenceModel(Protocol):
    """What :class:`SequenceRegressor` expects of a sequence model.

    Implementations should also be scikit-learn estimators (clonable through
    ``get_params``/``set_params``, e.g. by deriving from ``BaseEstimator``).
    """

    def fit(self, X: np.ndarray, y: np.ndarray, mask: np.ndarray) -> SequenceModel:
        """Fit on X (n, T, p) and y (n, T, k) with the loss restricted to ``mask`` (n, T)."""
        ...

    def predict(self, X: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Predict y (n, T, k) for X (n, T, p); only steps where ``mask`` is True are used."""
        ...


class SequenceRegressor(RegressorMixin, BaseEstimator):
    """Scikit-learn regressor on long data backed by a sequence model.

    ``fit`` and ``predict`` take a long DataFrame (one row per subject and time)
    and a target aligned with its rows; the rows are reshaped to one sequence per
    subject (:func:`to_sequences`), and predictions come back in the order of
    the input rows. It can therefore serve as the fixed-effects estimator of a
    mixed model that refits it on the same rows with an updated target.

    Parameters
    ----------
    model : SequenceModel
        Sequence model with ``fit(X, y, mask)`` and ``predict(X, mask)``; it is
        cloned in ``fit``.
    subject, time : str
        Columns of ``X`` holding the subject id and the time.
    features : str or sequence of str
        Columns of ``X`` fed to the sequence model.
    warmup : int, default=0
        Number of first steps of each subject left out of the training loss
        (they are still fed to the model, and predicted).

    Attributes
    ----------
    model_ : SequenceModel
        The fitted clone of ``model``.
    n_targets_ : int
        Number of targets.
    y_ndim_ : int
        Dimension of the ``y`` seen in ``fit`` (1 gives 1-d predictions).
    """

    def __init__(
        self,
        model: SequenceModel,
        *,
        subject: str,
        time: str,
        features: str | Sequence[str],
        warmup: int = 0,
    ) -> None:
        self.model = model
        self.subject = subject
        self.time = time
        self.features = features
        self.warmup = warmup

    def _sequences(self, X: pd.DataFrame) -> SequenceData:
        if not isinstance(X, pd.DataFrame):
            raise InvalidArgumentError(f"X must be a pandas DataFrame, got {type(X).__name__}.")
        return to_sequences(X, subject=self.subject, time=self.time, features=self.features)

    def fit(self, X: pd.DataFrame, y: Any) -> SequenceRegressor:
        """Fit the sequence model on the subjects of ``X``.

        Parameters
        ----------
        X : pandas.DataFrame
            Long data with the subject, time and feature columns.
        y : array-like of shape (n_rows,) or (n_rows, n_targets)
            Targets, aligned with the rows of ``X`` by position.

        Returns
        -------
        SequenceRegressor
            The fitted regressor.
        """
        if int(self.warmup) != self.warmup or self.warmup < 0:
            raise InvalidArgumentError(
                f"warmup must be a non-negative integer, got {self.warmup!r}."
            )
        data = self._sequences(X)
        y = np.asarray(y, dtype=float)
        if y.ndim not in (1, 2) or len(y) != len(X):
            raise InvalidArgumentError(
                f"y must have shape ({len(X)},) or ({len(X)}, k), got {y.shape}."
            )
        y_seq = _scatter(y.reshape(len(y), -1), data.positions, data.mask.shape)
        mask = data.mask.copy()
        mask[:, : int(self.warmup)] = False
        if not mask.any():
            raise InvalidArgumentError("No step left to train on after the warmup.")
        self.model_ = clone(self.model).fit(data.X, y_seq, mask)
        self.n_targets_ = y_seq.shape[2]
        self.y_ndim_ = y.ndim
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Predict the rows of ``X``; subjects may be new.

        Parameters
        ----------
        X : pandas.DataFrame
            Long data with the subject, time and feature columns.

        Returns
        -------
        ndarray of shape (n_rows,) or (n_rows, n_targets)
            Predictions in the order of the rows of ``X``.
        """
        check_is_fitted(self)
        data = self._sequences(X)
        pred = np.asarray(self.model_.predict(data.X, data.mask), dtype=float)
        pred = from_sequences(pred.reshape(*data.mask.shape, -1), data)
        return pred[:, 0] if self.y_ndim_ == 1 else pred


def _check_sequences(X: Any, y: Any, mask: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    X = np.asarray(X, dtype=float)
    mask = np.asarray(mask, dtype=bool)
    if X.ndim != 3 or mask.shape != X.shape[:2]:
        raise InvalidArgumentError(
            f"Expected X (n, T, p) and mask (n, T), got {X.shape} and {mask.shape}."
        )
    inside = np.arange(mask.shape[1]) < _lengths(mask)[:, None]  # steps the model runs on
    if not np.isfinite(X[inside]).all():
        raise InvalidArgumentError("X contains NaN or infinite values.")
    if y is not None:
        y = np.asarray(y, dtype=float)
        y = y[..., None] if y.ndim == 2 else y
        if y.ndim != 3 or y.shape[:2] != mask.shape:
            raise InvalidArgumentError(f"Expected y of shape (n, T) or (n, T, k), got {y.shape}.")
    return X, y, mask


def _masked_moments(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over the masked steps (a zero sd becomes 1)."""
    observed = values[mask]
    scale = observed.std(axis=0)
    return observed.mean(axis=0), np.where(scale > 0, scale, 1.0)


def _lengths(mask: np.ndarray) -> np.ndarray:
    """Length of each sequence: one past its last masked step (0 if none)."""
    last = mask.shape[1] - np.argmax(mask[:, ::-1], axis=1)
    return np.where(mask.any(axis=1), last, 0)


class ESNSequenceModel(BaseEstimator):
    """Echo state network (reservoirpy reservoir and ridge readout) as a sequence model.

    Inputs are standardised with the moments of the training steps, run through a
    leaky reservoir of random recurrent tanh units (each sequence starting from a
    zero state), and a ridge readout maps the reservoir states (and, by default,
    the standardised inputs) to the targets. Only the readout is trained.

    Parameters
    ----------
    units : int, default=300
        Number of reservoir units.
    sr : float, default=0.9
        Spectral radius of the recurrent weights.
    lr : float, default=0.3
        Leak rate of the reservoir units, in (0, 1].
    ridge : float, default=1e-6
        L2 penalty of the readout.
    input_scaling : float, default=1.0
        Gain of the input weights.
    input_connectivity, rc_connectivity : float, default=0.1
        Density of the input and recurrent weight matrices.
    input_to_readout : bool, default=True
        Also feed the standardised inputs to the readout.
    seed : int or None, default=None
        Seed of the reservoir weights; an int makes fits reproducible.

    Attributes
    ----------
    reservoir_ : reservoirpy.nodes.Reservoir
        The reservoir.
    readout_ : reservoirpy.nodes.Ridge
        The fitted readout.
    x_mean_, x_scale_ : ndarray of shape (n_features,)
        Input standardisation.

    Notes
    -----
    Needs reservoirpy (``pip install reservoirpy``, or the ``pylmer[reservoir]``
    extra); versions 0.3.11 and later are supported.
    """

    def __init__(
        self,
        units: int = 300,
        *,
        sr: float = 0.9,
        lr: float = 0.3,
        ridge: float = 1e-6,
        input_scaling: float = 1.0,
        input_connectivity: float = 0.1,
        rc_connectivity: float = 0.1,
        input_to_readout: bool = True,
        seed: int | None = None,
    ) -> None:
        self.units = units
        self.sr = sr
        self.lr = lr
        self.ridge = ridge
        self.input_scaling = input_scaling
        self.input_connectivity = input_connectivity
        self.rc_connectivity = rc_connectivity
        self.input_to_readout = input_to_readout
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray, mask: np.ndarray) -> ESNSequenceModel:
        """Run the reservoir on the sequences and fit the readout on the masked steps.

        Parameters
        ----------
        X : ndarray of shape (n_sequences, max_len, n_features)
            Input sequences.
        y : ndarray of shape (n_sequences, max_len[, n_targets])
            Target sequences.
        mask : ndarray of bool of shape (n_sequences, max_len)
            Steps entering the readout's least squares.

        Returns
        -------
        ESNSequenceModel
            The fitted model.
        """
        rpy = _import_reservoirpy()
        X, y, mask = _check_sequences(X, y, mask)
        self.x_mean_, self.x_scale_ = _masked_moments(X, mask)
        self.reservoir_ = rpy.nodes.Reservoir(
            units=self.units,
            lr=self.lr,
            sr=self.sr,
            input_scaling=self.input_scaling,
            input_connectivity=self.input_connectivity,
            rc_connectivity=self.rc_connectivity,
            seed=self.seed,
        )
        states = self._readout_inputs(X, mask)
        self.readout_ = rpy.nodes.Ridge(ridge=self.ridge).fit(states[mask], y[mask])
        return self

    def predict(self, X: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Predict every masked step (padding steps get 0).

        Parameters
        ----------
        X : ndarray of shape (n_sequences, max_len, n_features)
            Input sequences.
        mask : ndarray of bool of shape (n_sequences, max_len)
            Observed steps.

        Returns
        -------
        ndarray of shape (n_sequences, max_len, n_targets)
            Predictions.
        """
        check_is_fitted(self)
        X, _, mask = _check_sequences(X, None, mask)
        states = self._readout_inputs(X, mask)
        pred = np.asarray(self.readout_.run(states[mask]))
        out = np.zeros((*mask.shape, pred.shape[-1]))
        out[mask] = pred
        return out

    def _readout_inputs(self, X: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Reservoir states (and inputs) of shape (n, T, d); zero past each sequence's end."""
        X = (X - self.x_mean_) / self.x_scale_
        lengths = _lengths(mask)
        inside = np.arange(mask.shape[1]) < lengths[:, None]
        sequences = np.split(X[inside], np.cumsum(lengths[lengths > 0])[:-1])
        states = np.zeros((*mask.shape, self.units))
        if inside.any():
            states[inside] = np.concatenate(_run_reservoir(self.reservoir_, sequences))
        if self.input_to_readout:
            states = np.concatenate([states, X * inside[..., None]], axis=-1)
        return states


def _import_reservoirpy() -> Any:
    try:
        import reservoirpy
    except ImportError as exc:
        raise ImportError(
            "ESNSequenceModel needs reservoirpy: `pip install reservoirpy` "
            "(or install the `pylmer[reservoir]` extra)."
        ) from exc
    verbosity = getattr(reservoirpy, "verbosity", None)  # removed in reservoirpy 0.4
    if callable(verbosity):
        verbosity(0)
    return reservoirpy


def _run_reservoir(reservoir: Any, sequences: list[np.ndarray]) -> list[np.ndarray]:
    """Run each sequence from a zero state; return the list of state sequences."""
    if hasattr(reservoir, "initialized"):  # reservoirpy >= 0.4
        # every series of a list starts from the state held before the call
        if reservoir.initialized:
            reservoir.reset()
        return list(reservoir.run(sequences))
    return [reservoir.run(x, reset=True) for x in sequences]  # reservoirpy 0.3


class GRUSequenceModel(BaseEstimator):
    """Gated recurrent unit network (PyTorch) as a sequence model.

    A GRU followed by a linear layer maps each step's inputs (and the past) to
    the targets. Inputs and targets are standardised with the moments of the
    training steps; the network is trained with Adam on the mean squared error
    over the masked steps, in shuffled mini-batches of sequences.

    Parameters
    ----------
    hidden_size : int, default=32
        Number of GRU units per layer.
    num_layers : int, default=1
        Number of stacked GRU layers.
    epochs : int, default=200
        Passes over the training sequences.
    lr : float, default=1e-2
        Adam learning rate.
    batch_size : int, default=64
        Sequences per mini-batch.
    seed : int or None, default=None
        Seed of the weight initialisation and of the shuffling; an int makes fits
        reproducible (the global torch random state is left untouched).
    device : str, default="cpu"
        Torch device.
    num_threads : int or None, default=1
        Torch CPU threads during ``fit`` and ``predict`` (restored afterwards);
        None keeps torch's setting.

    Attributes
    ----------
    net_ : torch.nn.ModuleDict
        The trained ``gru`` and ``head`` modules.
    x_mean_, x_scale_, y_mean_, y_scale_ : ndarray
        Input and target standardisation.
    loss_curve_ : list of float
        Mean training loss of each epoch (on the standardised targets).

    Notes
    -----
    Needs PyTorch (``pip install torch``, or the ``pylmer[torch]`` extra).
    """

    def __init__(
        self,
        hidden_size: int = 32,
        *,
        num_layers: int = 1,
        epochs: int = 200,
        lr: float = 1e-2,
        batch_size: int = 64,
        seed: int | None = None,
        device: str = "cpu",
        num_threads: int | None = 1,
    ) -> None:
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.num_threads = num_threads

    def fit(self, X: np.ndarray, y: np.ndarray, mask: np.ndarray) -> GRUSequenceModel:
        """Train the network with the loss restricted to the masked steps.

        Parameters
        ----------
        X : ndarray of shape (n_sequences, max_len, n_features)
            Input sequences.
        y : ndarray of shape (n_sequences, max_len[, n_targets])
            Target sequences.
        mask : ndarray of bool of shape (n_sequences, max_len)
            Steps entering the loss.

        Returns
        -------
        GRUSequenceModel
            The fitted model.
        """
        torch = _import_torch()
        X, y, mask = _check_sequences(X, y, mask)
        self.x_mean_, self.x_scale_ = _masked_moments(X, mask)
        self.y_mean_, self.y_scale_ = _masked_moments(y, mask)
        device = torch.device(self.device)

        def tensor(a: np.ndarray) -> Any:
            return torch.as_tensor(a, dtype=torch.float32, device=device)

        inputs = tensor((X - self.x_mean_) / self.x_scale_)
        targets = tensor(np.where(mask[..., None], (y - self.y_mean_) / self.y_scale_, 0.0))
        weights = tensor(mask)
        with _torch_threads(torch, self.num_threads), _seeded(torch, self.seed):
            net = torch.nn.ModuleDict(
                {
                    "gru": torch.nn.GRU(
                        X.shape[2], self.hidden_size, num_layers=self.num_layers, batch_first=True
                    ),
                    "head": torch.nn.Linear(self.hidden_size, y.shape[2]),
                }
            ).to(device)
            optimizer = torch.optim.Adam(net.parameters(), lr=self.lr)
            self.loss_curve_ = []
            for _ in range(self.epochs):
                total = 0.0
                for batch in torch.randperm(len(inputs)).split(self.batch_size):
                    pred = net["head"](net["gru"](inputs[batch])[0])
                    w = weights[batch]
                    sq = ((pred - targets[batch]) ** 2).mean(dim=-1)
                    loss = (sq * w).sum() / w.sum().clamp(min=1.0)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total += loss.item() * len(batch)
                self.loss_curve_.append(total / len(inputs))
        self.net_ = net.eval()
        return self

    def predict(self, X: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Predict every masked step (padding steps get 0).

        Parameters
        ----------
        X : ndarray of shape (n_sequences, max_len, n_features)
            Input sequences.
        mask : ndarray of bool of shape (n_sequences, max_len)
            Observed steps.

        Returns
        -------
        ndarray of shape (n_sequences, max_len, n_targets)
            Predictions.
        """
        check_is_fitted(self)
        torch = _import_torch()
        X, _, mask = _check_sequences(X, None, mask)
        inputs = torch.as_tensor(
            (X - self.x_mean_) / self.x_scale_,
            dtype=torch.float32,
            device=torch.device(self.device),
        )
        with _torch_threads(torch, self.num_threads), torch.no_grad():
            pred = self.net_["head"](self.net_["gru"](inputs)[0]).cpu().numpy()
        pred = pred.astype(float) * self.y_scale_ + self.y_mean_
        return np.where(mask[..., None], pred, 0.0)


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            "GRUSequenceModel needs PyTorch: `pip install torch` "
            "(or install the `pylmer[torch]` extra)."
        ) from exc
    return torch


@contextmanager
def _torch_threads(torch: Any, n: int | None) -> Iterator[None]:
    """Set torch's CPU thread count (if ``n`` is given), then restore it."""
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def _seeded(torch: Any, seed: int | None) -> Iterator[None]:
    """Seed torch's CPU generator inside the block, leaving the global state untouched."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
