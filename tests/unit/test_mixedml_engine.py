"""The MixedML EM engine without R: a numpy random-intercept solver as the random-effects step.

The solver fits ``e ~ 1 + (1 | g)`` by maximum likelihood (the likelihood profiled over
the variance ratio, closed form per group), so the loop's fixed point with a linear
estimator can be compared with the direct ML fit of the joint model ``y ~ X + (1 | g)``
computed the same way.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import LinearRegression

from pylmer.mixedml import engine
from pylmer.mixedml.engine import EMState, REFit, StoppingRule, squarem


def _profile(e: np.ndarray, D: np.ndarray, codes: np.ndarray, lam: float):
    """GLS of ``e`` on ``D`` with a random intercept of relative variance ``lam``."""
    n_g = np.bincount(codes)
    w = lam / (1.0 + n_g * lam)  # V_g^-1 = (I - w_g 11') / sigma^2

    def vinv(M: np.ndarray) -> np.ndarray:
        sums = np.zeros((len(n_g), M.shape[1]))
        np.add.at(sums, codes, M)
        return M - w[codes, None] * sums[codes]

    DtV = vinv(D).T
    beta = np.linalg.solve(DtV @ D, DtV @ e)
    r = e - D @ beta
    rss = float(r @ vinv(r[:, None])[:, 0])
    n = len(e)
    sigma2 = rss / n
    ll = -0.5 * n * (np.log(2 * np.pi * sigma2) + 1) - 0.5 * np.sum(np.log1p(n_g * lam))
    sums = np.bincount(codes, weights=r)
    b = w * sums
    return ll, beta, b, sigma2


def ml_fit(e: np.ndarray, D: np.ndarray, codes: np.ndarray):
    """ML fit of ``e ~ D + (1 | g)``: (loglik, beta, b, sigma2, lam)."""
    res = minimize_scalar(
        lambda t: -_profile(e, D, codes, np.exp(t))[0],
        bounds=(-12, 8),
        method="bounded",
        options={"xatol": 1e-10},
    )
    lam = float(np.exp(res.x))
    ll, beta, b, sigma2 = _profile(e, D, codes, lam)
    return ll, beta, b, sigma2, lam


class RandomIntercept:
    """Random-effects step ``e ~ 1 + (1 | g)`` in numpy (the engine's protocol)."""

    def __init__(self, y: np.ndarray, codes: np.ndarray):
        self.y, self.codes = y, codes
        self.fits = 0

    def working_target(self, contribution: np.ndarray) -> np.ndarray:
        return self.y - contribution

    def fit(self, fixed: np.ndarray, previous: REFit | None) -> REFit:
        self.fits += 1
        e = self.y - fixed
        ll, beta, b, sigma2, lam = ml_fit(e, np.ones((len(e), 1)), self.codes)
        return REFit(
            contribution=beta[0] + b[self.codes],
            loglik=ll,
            sigma=float(np.sqrt(sigma2)),
            variances={"var(g: (Intercept))": lam * sigma2, "var(Residual)": sigma2},
            effects={"g: (Intercept)": b},
        )


def grouped_data(n_groups: int = 40, n_per: int = 8, seed: int = 0):
    """y = X beta + b_g + e, with a covariate correlated with the groups (slow EM)."""
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(n_groups), n_per)
    level = rng.normal(size=n_groups)
    X = np.column_stack(
        [level[codes] + 0.3 * rng.normal(size=len(codes)), rng.normal(size=len(codes))]
    )
    b = rng.normal(scale=1.5, size=n_groups)
    y = 1.0 + X @ np.array([2.0, -1.0]) + b[codes] + rng.normal(size=len(codes))
    return X, y, codes


def problem(estimator=None, seed: int = 0, **kw):
    X, y, codes = grouped_data(seed=seed, **kw)
    fixed = engine.EstimatorStep(LinearRegression() if estimator is None else estimator, X)
    return X, y, codes, fixed, [RandomIntercept(y, codes)]


def test_linear_fixed_point_is_the_joint_ml_fit():
    X, y, codes, fixed, steps = problem()
    result = engine.run(y[:, None], fixed, steps, max_iter=200, rule=StoppingRule(tol=1e-7))
    assert result.reason == "tol" and result.converged
    ll, beta, _b, sigma2, lam = ml_fit(y, np.column_stack([np.ones(len(y)), X]), codes)
    assert abs(result.state.loglik - ll) < 1e-6 * abs(ll)
    est = result.state.estimator
    fit = result.state.re[0]
    # the estimator's slopes are the joint model's; intercepts add up
    np.testing.assert_allclose(est.coef_, beta[1:], rtol=1e-5)
    np.testing.assert_allclose(fit.variances["var(Residual)"], sigma2, rtol=1e-5)
    np.testing.assert_allclose(fit.variances["var(g: (Intercept))"], lam * sigma2, rtol=1e-4)


def test_loglik_rises_monotonically_without_acceleration():
    *_, fixed, steps = problem()
    _X, y, _codes = grouped_data()
    result = engine.run(y[:, None], fixed, steps, max_iter=40, accelerate=False)
    ll = [r["loglik"] for r in result.records]
    assert (np.diff(ll) > -1e-9).all()


def test_acceleration_reaches_the_same_fixed_point_in_fewer_steps():
    _X, y, _codes, fixed, steps = problem()
    rule = StoppingRule(tol=1e-7)
    plain = engine.run(y[:, None], fixed, steps, max_iter=500, rule=rule, accelerate=False)
    fast = engine.run(y[:, None], fixed, steps, max_iter=500, rule=rule, accelerate=True)
    assert plain.reason == fast.reason == "tol"
    assert fast.n_iter < 0.5 * plain.n_iter, (fast.n_iter, plain.n_iter)
    assert any(r["kind"] == "jump" and r["accepted"] for r in fast.records)
    assert abs(fast.state.loglik - plain.state.loglik) < 1e-6


@pytest.mark.parametrize("max_iter", [1, 2, 3, 4, 5, 7, 10])
@pytest.mark.parametrize("accelerate", [True, False])
def test_steps_never_exceed_max_iter(max_iter, accelerate):
    _X, y, _codes, fixed, steps = problem()
    result = engine.run(
        y[:, None], fixed, steps, max_iter=max_iter, rule=StoppingRule(tol=1e-14),
        accelerate=accelerate,
    )  # fmt: skip
    assert result.n_iter == len(result.records) <= max_iter
    assert steps[0].fits == result.n_iter  # every step fits once: nothing recomputed
    assert result.reason == "max_iter" and not result.converged


def test_a_state_is_never_compared_with_itself():
    _X, y, _codes, fixed, steps = problem()
    s = engine.plain_step(np.zeros((len(y), 1)), y[:, None], fixed, steps)
    rule = StoppingRule(tol=1e-3, window=0)
    # the same step recomputed: identical numbers, but no evidence of convergence
    again = engine.plain_step(s.inputs, y[:, None], fixed, steps)
    assert rule.changes(s, again) == (0.0, 0.0)
    assert rule.check(s, again, [s.loglik, again.loglik]) is None
    # the plain step from it is evidence (and here still far from the fixed point)
    nxt = engine.plain_step(s.contribution, y[:, None], fixed, steps, s)
    assert rule.check(s, nxt, [s.loglik, nxt.loglik]) is None
    assert rule.changes(s, nxt)[1] > 1e-3


def test_squarem_declines_a_jump_that_would_not_go_beyond_the_last_iterate():
    x0 = np.array([0.0, 0.0])
    x1 = np.array([1.0, 0.0])
    x2 = np.array([1.0, 2.0])  # |v| > |r|: alpha would be clipped to -1, the point is x2
    assert squarem(x0, x1, x2) is None
    assert squarem(x0, x0, x0) is None
    # a geometric sequence x_k = c (1 - rho^k): the S3 point is its limit
    rho, c = 0.9, np.array([3.0, -1.0])
    point, length = squarem(c * 0, c * (1 - rho), c * (1 - rho**2))
    np.testing.assert_allclose(point, c, rtol=1e-12)
    assert length > 1


def test_rejected_jump_continues_from_the_last_plain_state():
    _X, y, _codes, fixed, steps = problem()

    class Rejecting:
        """Wraps the random-intercept step; jumps (non-plain inputs) get a bad loglik."""

        def __init__(self, inner):
            self.inner = inner
            self.last: np.ndarray | None = None

        def working_target(self, c):
            self.jump = self.last is not None and not np.array_equal(c, self.last)
            return self.inner.working_target(c)

        def fit(self, fixed_pred, previous):
            out = self.inner.fit(fixed_pred, previous)
            if self.jump:
                out = REFit(out.contribution, out.loglik - 1e6, out.sigma, out.variances,
                            out.effects)  # fmt: skip
            self.last = out.contribution
            return out

    step = Rejecting(steps[0])
    result = engine.run(y[:, None], fixed, [step], max_iter=12, rule=StoppingRule(tol=1e-14))
    jumps = [r for r in result.records if r["kind"] == "jump"]
    assert jumps and not any(r["accepted"] for r in jumps)
    assert result.n_iter <= 12 and steps[0].fits == result.n_iter


class NoisyLinear(RegressorMixin, BaseEstimator):
    """A linear fit plus a fresh random perturbation at every fit: not a smooth function
    of its target, like a forest or an SGD-trained network."""

    draws = 0

    def __init__(self, scale: float = 0.05):
        self.scale = scale

    def fit(self, X, y):
        type(self).draws += 1
        self.lin_ = LinearRegression().fit(X, y)
        rng = np.random.default_rng(type(self).draws)
        self.jitter_ = rng.normal(scale=self.scale, size=X.shape[1] + 1)
        return self

    def predict(self, X):
        return self.lin_.predict(X) + X @ self.jitter_[1:] + self.jitter_[0]


def test_noisy_estimator_stops_in_the_stationary_regime():
    NoisyLinear.draws = 0
    X, y, codes, fixed, steps = problem(NoisyLinear())
    result = engine.run(y[:, None], fixed, steps, max_iter=60)
    assert result.reason == "stationary" and result.converged
    assert result.n_iter < 30
    _ll, _beta, _b, sigma2, lam = ml_fit(y, np.column_stack([np.ones(len(y)), X]), codes)
    fit = result.state.re[0]
    assert abs(fit.variances["var(g: (Intercept))"] / (lam * sigma2) - 1) < 0.3


def test_stationary_rule_needs_a_trend_free_non_monotone_window():
    rule = StoppingRule(window=6)
    assert not rule.stationary([1.0, 2.0, 2.5, 2.7, 2.8, 2.85])  # still rising
    assert not rule.stationary([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])  # exactly still: "tol"'s case
    noise = [0.0, 0.3, -0.2, 0.1, -0.3, 0.2]
    assert rule.stationary(noise)
    assert not rule.stationary([v + 2.0 * k for k, v in enumerate(noise)])  # drift + noise
    assert not rule.stationary(noise[:5])  # too short
    assert not StoppingRule(window=0).stationary(noise)


def test_tol_rule_is_absolute_per_observation_and_per_term():
    n = 1000
    base = REFit(np.zeros(n), -20000.0, 1.0, effects={"g: a": np.ones(10), "g: b": np.ones(10)})
    state = EMState(np.zeros((n, 1)), None, np.zeros((n, 1)), (base,))
    # a relative change of 1e-5 of -20000 is 0.2 log-likelihood units: 2e-4 per observation
    moved = REFit(np.zeros(n), -20000.2, 1.0, effects=base.effects)
    nxt = EMState(np.ones((n, 1)), None, np.zeros((n, 1)), (moved,))
    assert StoppingRule(tol=1e-4).check(state, nxt, [-20000.0, -20000.2]) is None
    assert StoppingRule(tol=1e-3).check(state, nxt, [-20000.0, -20000.2]) == "tol"
    # a small term that moved by a third of its size blocks convergence, whatever the big one does
    eff = {"g: a": np.ones(10) * 1000, "g: b": np.ones(10) * 0.01}
    eff2 = {"g: a": np.ones(10) * 1000, "g: b": np.ones(10) * 0.015}
    s1 = EMState(
        np.zeros((n, 1)), None, np.zeros((n, 1)), (REFit(np.zeros(n), 0.0, 1e-6, effects=eff),)
    )
    s2 = EMState(
        np.ones((n, 1)), None, np.zeros((n, 1)), (REFit(np.zeros(n), 0.0, 1e-6, effects=eff2),)
    )
    assert StoppingRule(tol=1e-3).changes(s1, s2)[1] == pytest.approx(0.005 / 0.015)


def test_several_targets_share_one_estimator():
    X, y, codes = grouped_data()
    y2 = -y + 3
    Y = np.column_stack([y, y2])
    fixed = engine.EstimatorStep(LinearRegression(), X)
    steps = [RandomIntercept(y, codes), RandomIntercept(y2, codes)]
    result = engine.run(Y, fixed, steps, max_iter=200, rule=StoppingRule(tol=1e-7))
    assert result.reason == "tol"
    one = engine.run(y[:, None], fixed, [RandomIntercept(y, codes)], max_iter=200,
                     rule=StoppingRule(tol=1e-7))  # fmt: skip
    assert abs(result.state.re[0].loglik - one.state.loglik) < 1e-6
    assert result.state.contribution.shape == (len(y), 2)


def test_out_of_fold_and_out_of_bag_residuals():
    from sklearn.ensemble import RandomForestRegressor

    X, y, codes = grouped_data(n_groups=30, n_per=6)
    oof = engine.EstimatorStep(LinearRegression(), X, residuals="oof", groups=codes, cv=3)
    est, pred = oof.fit(y[:, None])
    assert pred.shape == (len(y), 1)
    inner = LinearRegression().fit(X, y).predict(X)
    assert not np.allclose(pred[:, 0], inner)  # held-out predictions
    fitted = engine.EstimatorStep.finalize(est)
    np.testing.assert_allclose(fitted.predict(X), inner)  # the final state's fit: all rows
    rf = RandomForestRegressor(n_estimators=30, oob_score=True, random_state=0)
    oob = engine.EstimatorStep(rf, X, residuals="oob")
    est, pred = oob.fit(y[:, None])
    np.testing.assert_allclose(pred[:, 0], est.oob_prediction_)


def test_a_drifting_variance_is_not_stationary():
    rule = StoppingRule(window=6)
    noise = [0.0, 0.3, -0.2, 0.1, -0.3, 0.2]
    flat = [[1.0 + 0.01 * v, 2.0] for v in noise]
    drifting = [[1.0 + 0.5 * k + 0.01 * v, 2.0] for k, v in enumerate(noise)]
    assert rule.stationary(noise, flat)
    assert not rule.stationary(noise, drifting)


def test_rows_without_out_of_bag_prediction_get_the_in_sample_one():
    from sklearn.ensemble import RandomForestRegressor

    X, y, _codes = grouped_data(n_groups=30, n_per=6)
    rf = RandomForestRegressor(n_estimators=3, oob_score=True, random_state=0)
    with pytest.warns(UserWarning, match="OOB"):
        est, pred = engine.EstimatorStep(rf, X, residuals="oob").fit(y[:, None])
    never = engine._never_out_of_bag(est, len(y))
    assert never.any()
    np.testing.assert_allclose(pred[never, 0], est.predict(X)[never])
    np.testing.assert_allclose(pred[~never, 0], est.oob_prediction_[~never])
