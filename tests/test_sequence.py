"""Tests of pylmer.sequence (long <-> sequences, sequence regressors) and of the simulator."""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score

from pylmer.data.simulate import simulate_longitudinal
from pylmer.sequence import (
    ESNSequenceModel,
    GRUSequenceModel,
    SequenceData,
    SequenceModel,
    SequenceRegressor,
    from_sequences,
    to_sequences,
)

# ---------------------------------------------------------------------------- helpers


def ragged_frame(lengths: list[int], seed: int = 0, n_features: int = 2) -> pd.DataFrame:
    """Long frame with subjects of the given lengths, irregular times, shuffled rows."""
    rng = np.random.default_rng(seed)
    subjects = np.repeat([f"s{i:02d}" for i in range(len(lengths))], lengths)
    times = np.concatenate([np.sort(rng.choice(100, size=n, replace=False)) for n in lengths])
    df = pd.DataFrame({"id": subjects, "t": times.astype(float)})
    for k in range(n_features):
        df[f"f{k}"] = rng.normal(size=len(df))
    df = df.iloc[rng.permutation(len(df))]
    return df.set_index(pd.Index(rng.permutation(len(df)) * 10, name="row"))


class LagLinear(BaseEstimator):
    """Tiny sequence model: least squares of y_t on (x_t, x_{t-1}, 1) over the masked steps."""

    def __init__(self, alpha: float = 0.0) -> None:
        self.alpha = alpha

    @staticmethod
    def _design(X: np.ndarray) -> np.ndarray:
        lagged = np.concatenate([np.zeros_like(X[:, :1]), X[:, :-1]], axis=1)
        return np.concatenate([X, lagged, np.ones_like(X[..., :1])], axis=-1)

    def fit(self, X: np.ndarray, y: np.ndarray, mask: np.ndarray) -> LagLinear:
        self.fit_mask_ = mask.copy()
        self.coef_ = np.linalg.lstsq(self._design(X)[mask], y[mask], rcond=None)[0]
        return self

    def predict(self, X: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.where(mask[..., None], self._design(X) @ self.coef_, 0.0)


def lag_target(df: pd.DataFrame) -> np.ndarray:
    """y_t = 2 f0_t - 3 f0_{t-1} + 1 (f0_{-1} = 0), computed in long format."""
    ordered = df.sort_values(["id", "t"])
    lag = ordered.groupby("id")["f0"].shift(fill_value=0.0)
    y = 2 * ordered["f0"] - 3 * lag + 1
    return y.loc[df.index].to_numpy()


def regressor(model: SequenceModel, **kwargs: int) -> SequenceRegressor:
    return SequenceRegressor(model, subject="id", time="t", features=["f0", "f1"], **kwargs)


# ----------------------------------------------------------------- reshaping to sequences


def test_round_trip_shuffled_ragged() -> None:
    lengths = [3, 1, 5, 2]
    df = ragged_frame(lengths)
    data = to_sequences(df, subject="id", time="t", features=["f0", "f1"], target="t")
    assert isinstance(data, SequenceData)
    assert data.X.shape == (4, 5, 2) and data.y.shape == (4, 5, 1)
    assert list(data.subjects) == ["s00", "s01", "s02", "s03"]
    back = from_sequences(data.X, data)
    np.testing.assert_array_equal(back, df[["f0", "f1"]].to_numpy())
    np.testing.assert_array_equal(from_sequences(data.y[..., 0], data), df["t"].to_numpy())
    assert data.index.equals(df.index)


def test_mask_padding_and_time_order() -> None:
    lengths = [3, 1, 5, 2]
    df = ragged_frame(lengths)
    data = to_sequences(df, subject="id", time="t", features="f0", target="t")
    expected = np.arange(5) < np.array(lengths)[:, None]
    np.testing.assert_array_equal(data.mask, expected)
    assert (data.X[~data.mask] == 0).all() and (data.y[~data.mask] == 0).all()
    times = np.where(data.mask, data.y[..., 0], 1e6 + np.arange(5))  # padding sorts last
    assert (np.diff(times, axis=1) > 0).all()
    first = df.sort_values("t").groupby("id")["f0"].first()
    np.testing.assert_array_equal(data.X[:, 0, 0], first.loc[data.subjects].to_numpy())


@settings(max_examples=50, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 6), min_size=1, max_size=8),
    seed=st.integers(0, 2**16),
)
def test_round_trip_property(lengths: list[int], seed: int) -> None:
    df = ragged_frame(lengths, seed=seed)
    data = to_sequences(df, subject="id", time="t", features=["f0", "f1"], target="t")
    np.testing.assert_array_equal(from_sequences(data.X, data), df[["f0", "f1"]].to_numpy())
    np.testing.assert_array_equal(data.mask.sum(axis=1), lengths)
    times = data.y[..., 0]
    for i in range(len(lengths)):  # strictly increasing time inside each sequence
        assert (np.diff(times[i, : lengths[i]]) > 0).all()
    frame = from_sequences(data.X, data, columns=["a", "b"])
    assert frame.index.equals(df.index) and list(frame.columns) == ["a", "b"]


def test_to_sequences_rejects_missing_ids() -> None:
    df = ragged_frame([2, 2])
    df.loc[df.index[0], "id"] = None
    with pytest.raises(ValueError, match="missing"):
        to_sequences(df, subject="id", time="t", features="f0")


def test_from_sequences_checks_shape() -> None:
    data = to_sequences(ragged_frame([2, 3]), subject="id", time="t", features="f0")
    with pytest.raises(ValueError, match="shape"):
        from_sequences(np.zeros((3, 3)), data)


# ------------------------------------------------------------------- SequenceRegressor


def test_regressor_wiring_recovers_lagged_target() -> None:
    df = ragged_frame([6, 4, 8, 5, 7, 3], seed=1)
    y = lag_target(df)
    reg = regressor(LagLinear()).fit(df, y)
    np.testing.assert_allclose(reg.model_.coef_[[0, 2, 4], 0], [2, -3, 1], atol=1e-10)
    np.testing.assert_allclose(reg.predict(df), y, atol=1e-10)
    new = ragged_frame([2, 9], seed=2)  # unseen subjects and lengths
    np.testing.assert_allclose(reg.predict(new), lag_target(new), atol=1e-10)


def test_regressor_multi_target_and_shapes() -> None:
    df = ragged_frame([4, 2, 5], seed=3)
    y = np.column_stack([lag_target(df), df["f1"].to_numpy()])
    reg = regressor(LagLinear()).fit(df, y)
    assert reg.n_targets_ == 2 and reg.predict(df).shape == (len(df), 2)
    np.testing.assert_allclose(reg.predict(df), y, atol=1e-10)
    assert regressor(LagLinear()).fit(df, y[:, 0]).predict(df).shape == (len(df),)
    with pytest.raises(ValueError, match="shape"):
        regressor(LagLinear()).fit(df, y[:-1])


def test_clone_params_and_refit_on_new_target() -> None:
    df = ragged_frame([5, 6, 4, 7], seed=4)
    reg = regressor(LagLinear(alpha=1.0), warmup=1)
    params = reg.get_params()
    assert params["model__alpha"] == 1.0 and params["warmup"] == 1
    twin = clone(reg).set_params(model__alpha=2.0)
    assert twin.model.alpha == 2.0 and reg.model.alpha == 1.0
    assert not hasattr(twin, "model_")
    reg.fit(df, lag_target(df))
    first = reg.model_
    y2 = df["f1"].to_numpy() * 3 - 1
    reg.fit(df, y2)  # same X, new y: no state carried over
    assert reg.model_ is not first and reg.model_ is not reg.model
    np.testing.assert_allclose(reg.predict(df), clone(reg).fit(df, y2).predict(df))
    mixed_order = df.sample(frac=1, random_state=0)  # predictions follow the rows given
    np.testing.assert_allclose(reg.predict(mixed_order), reg.predict(df.loc[mixed_order.index]))


def test_warmup_steps_excluded_from_loss() -> None:
    lengths = [6, 4, 8, 5, 2]
    df = ragged_frame(lengths, seed=5)
    y = lag_target(df)
    step = df.groupby("id")["t"].rank().to_numpy() - 1
    y_bad = np.where(step < 2, 1e3, y)  # garbage on the first two steps
    reg = regressor(LagLinear(), warmup=2).fit(df, y_bad)
    assert reg.model_.fit_mask_.sum() == sum(max(n - 2, 0) for n in lengths)
    assert not reg.model_.fit_mask_[:, :2].any()
    np.testing.assert_allclose(reg.predict(df), y, atol=1e-8)  # warmup rows still predicted
    no_warmup = regressor(LagLinear()).fit(df, y_bad)
    assert np.abs(no_warmup.predict(df) - y).max() > 1.0
    with pytest.raises(ValueError, match="warmup"):
        regressor(LagLinear(), warmup=10).fit(df, y)


def test_regressor_requires_fit_and_dataframe() -> None:
    df = ragged_frame([3, 3])
    with pytest.raises(Exception, match="not fitted"):
        regressor(LagLinear()).predict(df)
    with pytest.raises(TypeError, match="DataFrame"):
        regressor(LagLinear()).fit(df[["f0", "f1"]].to_numpy(), np.zeros(len(df)))


# ---------------------------------------------------------------------------- adapters


def memory_task(n_subjects: int, n_steps: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Targets that need memory: y_t = x_t + x_{t-1} + x_{t-2}, in shuffled long rows."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_subjects, n_steps))
    padded = np.pad(x, ((0, 0), (2, 0)))
    y = x + padded[:, 1:-1] + padded[:, :-2]
    df = pd.DataFrame(
        {
            "id": np.repeat(np.arange(n_subjects), n_steps),
            "t": np.tile(np.arange(n_steps), n_subjects),
            "f0": x.ravel(),
            "f1": rng.normal(size=x.size),  # distractor
        }
    )
    order = rng.permutation(len(df))
    return df.iloc[order], y.ravel()[order]


def test_esn_learns_memory_task() -> None:
    pytest.importorskip("reservoirpy", reason="ESNSequenceModel needs reservoirpy")
    df, y = memory_task(60, 20, seed=0)
    test = df["id"].to_numpy() >= 40
    y_train = np.where(df["t"] < 2, 1e3, y)[~test]  # garbage on the warmup steps
    model = ESNSequenceModel(100, sr=0.9, lr=0.5, ridge=1e-4, seed=0)
    reg = regressor(model, warmup=2).fit(df[~test], y_train)
    pred = reg.predict(df[test])
    assert r2_score(y[test], pred) > 0.6  # a memoryless model on x_t gets 1/3
    np.testing.assert_allclose(reg.predict(df[test]), pred)  # each sequence from a zero state
    alone = df["id"].to_numpy() == 45
    np.testing.assert_allclose(reg.predict(df[alone]), pred[df["id"].to_numpy()[test] == 45])
    again = clone(reg).fit(df[~test], y_train).predict(df[test])
    np.testing.assert_allclose(again, pred)
    other = clone(reg).set_params(model__seed=1).fit(df[~test], y_train).predict(df[test])
    assert not np.allclose(other, pred)


def test_gru_learns_memory_task() -> None:
    torch = pytest.importorskip("torch", reason="GRUSequenceModel needs torch")
    df, y = memory_task(48, 10, seed=1)
    test = df["id"].to_numpy() >= 32
    model = GRUSequenceModel(16, epochs=30, lr=2e-2, batch_size=16, seed=0)
    y_train = np.where(df["t"] < 1, 1e3, y)[~test]  # garbage on the warmup step
    rng_state, threads = torch.get_rng_state(), torch.get_num_threads()
    reg = regressor(model, warmup=1).fit(df[~test], y_train)
    assert torch.equal(torch.get_rng_state(), rng_state)  # global RNG untouched
    assert torch.get_num_threads() == threads
    curve = reg.model_.loss_curve_
    assert len(curve) == 30 and curve[-1] < 0.5 * curve[0]
    pred = reg.predict(df[test])
    assert r2_score(y[test], pred) > 0.6
    first = df["t"].to_numpy()[test] == 0  # warmup rows: predicted, though out of the loss
    assert r2_score(y[test][first], pred[first]) > 0.9
    np.testing.assert_allclose(clone(reg).fit(df[~test], y_train).predict(df[test]), pred)


@pytest.mark.parametrize(
    ("module", "model"),
    [("reservoirpy", ESNSequenceModel(20)), ("torch", GRUSequenceModel(4, epochs=2))],
)
def test_unseeded_fits_differ(module: str, model: SequenceModel) -> None:
    pytest.importorskip(module, reason=f"{type(model).__name__} needs {module}")
    rng = np.random.default_rng(0)
    X, y, mask = rng.normal(size=(8, 5, 2)), rng.normal(size=(8, 5, 1)), np.ones((8, 5), bool)
    first = clone(model).fit(X, y, mask).predict(X, mask)
    second = clone(model).fit(X, y, mask).predict(X, mask)
    assert first.shape == (8, 5, 1) and not np.allclose(first, second)


@pytest.mark.parametrize(
    ("module", "model", "hint"),
    [
        ("reservoirpy", ESNSequenceModel(10), "pip install reservoirpy"),
        ("torch", GRUSequenceModel(2, epochs=1), "pip install torch"),
    ],
)
def test_missing_backend_message(
    monkeypatch: pytest.MonkeyPatch, module: str, model: SequenceModel, hint: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    X, mask = np.zeros((2, 3, 1)), np.ones((2, 3), dtype=bool)
    with pytest.raises(ImportError, match=hint):
        model.fit(X, np.zeros((2, 3)), mask)


# --------------------------------------------------------------------------- simulator


def test_simulate_columns_shapes_and_attrs() -> None:
    df = simulate_longitudinal(30, 7, seed=0)
    covariates = [f"x{k}" for k in range(1, 9)]
    expected = [
        "individus",
        "temps",
        *covariates,
        *[f"{c}_obs" for c in covariates],
        "x2_x5",
        "x4_x7",
        "x6_x8",
        "y_fixed",
        "y_fixed_obs",
        "y_mixed",
        "y_mixed_obs",
    ]
    assert list(df.columns) == expected and len(df) == 30 * 7
    assert df["individus"].dtype.kind == "i" and df["temps"].dtype.kind == "i"
    np.testing.assert_array_equal(df["individus"], np.repeat(np.arange(1, 31), 7))
    np.testing.assert_array_equal(df["temps"], np.tile(np.arange(7), 30))
    assert set(np.unique(df["x8"])) <= {0.0, 1.0}
    assert (df.groupby("individus")["x8"].nunique() == 1).all()
    np.testing.assert_array_equal(df["x8_obs"], df["x8"])
    np.testing.assert_allclose(df["x2_x5"], df["x2"] * df["x5"])
    np.testing.assert_allclose(df["x6_x8"], df["x6"] * df["x8"])
    re = pd.DataFrame(df.attrs["random_effects"]).rename_axis("individus")
    assert list(re.columns) == ["(Intercept)", "x2_x5", "x4_x7", "x6_x8"]
    assert re.index.name == "individus" and list(re.index) == list(range(1, 31))
    design = np.column_stack([np.ones(len(df)), df[["x2_x5", "x4_x7", "x6_x8"]]])
    b = re.loc[df["individus"]].to_numpy()
    np.testing.assert_allclose(df["y_mixed"], df["y_fixed"] + (design * b).sum(axis=1))
    assert df.attrs["re_sd"] == {"(Intercept)": 3.0, "x2_x5": 0.5, "x4_x7": 1.0, "x6_x8": 0.5}


def test_simulate_noise_levels() -> None:
    df = simulate_longitudinal(400, 26, seed=1, noise_sd=2.0, covariate_noise_sd=0.3)
    assert abs((df["y_fixed_obs"] - df["y_fixed"]).std() - 2.0) < 0.05
    assert abs((df["y_mixed_obs"] - df["y_mixed"]).std() - 2.0) < 0.05
    assert abs((df["x3_obs"] - df["x3"]).std() - 0.3) < 0.01
    b_sd = pd.DataFrame(df.attrs["random_effects"]).std()
    np.testing.assert_allclose(b_sd, [3.0, 0.5, 1.0, 0.5], rtol=0.15)


def test_simulate_is_deterministic_given_seed() -> None:
    a, b = simulate_longitudinal(20, 5, seed=42), simulate_longitudinal(20, 5, seed=42)
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs["random_effects"] == b.attrs["random_effects"]
    c = simulate_longitudinal(20, 5, seed=43)
    assert not np.allclose(a["y_mixed_obs"], c["y_mixed_obs"])


def test_simulate_random_effects_share_is_substantial() -> None:
    df = simulate_longitudinal(seed=2)
    share = (df["y_mixed"] - df["y_fixed"]).var() / df["y_mixed"].var()
    assert 0.3 < share < 0.7


def test_simulate_fixed_part_is_nonlinear() -> None:
    df = simulate_longitudinal(200, 26, seed=3)
    features = [f"x{k}_obs" for k in range(1, 9)]
    train = df["individus"] <= 140
    X, y = df[features], df["y_fixed_obs"]
    linear = LinearRegression().fit(X[train], y[train]).score(X[~train], y[~train])
    forest = RandomForestRegressor(50, min_samples_leaf=5, random_state=0)
    forest_r2 = forest.fit(X[train], y[train]).score(X[~train], y[~train])
    assert forest_r2 > linear + 0.1


def test_simulate_is_fast() -> None:
    simulate_longitudinal(10, 5, seed=0)
    start = time.perf_counter()
    df = simulate_longitudinal(10_000, 50, seed=0)
    assert time.perf_counter() - start < 3.0  # generous: the target is well under 1 s
    assert df.shape == (500_000, 25)
