"""Synthetic longitudinal data with a nonlinear fixed part and random coefficients."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import InvalidArgumentError

RE_NAMES = ("(Intercept)", "x2_x5", "x4_x7", "x6_x8")


def simulate_longitudinal(
    n_subjects: int = 500,
    n_times: int = 26,
    *,
    seed: int | np.random.Generator | None = None,
    noise_sd: float = 1.0,
    covariate_noise_sd: float = 0.1,
    re_sd: Sequence[float] = (3.0, 0.5, 1.0, 0.5),
    p_trait: float = 0.5,
) -> pd.DataFrame:
    r"""Simulate a synthetic longitudinal data set (in the spirit of "synthetic BPH").

    Every subject :math:`i = 1, \dots, n` is observed at the ``n_times`` visits
    :math:`t = 0, \dots, T - 1`. Time enters the trajectories through the rescaled
    time :math:`u = t / (T - 1) \in [0, 1]` (:math:`u = 0` when ``n_times == 1``), so
    ``n_times`` sets how densely one fixed follow-up window is sampled.

    **Covariates.** Each covariate is a smooth trajectory with subject-specific
    parameters, all drawn independently per subject (:math:`U` is uniform):

    - ``x1`` = :math:`a_i + s_i u` (linear growth), :math:`a_i \sim N(0, 1)`,
      :math:`s_i \sim N(2, 0.5^2)`;
    - ``x2`` = :math:`-5 + c_i (1 - e^{-u / k_i})` (saturating), :math:`c_i \sim U(2, 4)`,
      :math:`k_i \sim U(0.1, 0.5)`;
    - ``x3`` = :math:`\tanh((u - m_i) / w_i)` (smooth step from -1 to 1),
      :math:`m_i \sim U(0.2, 0.8)`, :math:`w_i \sim U(0.05, 0.2)`;
    - ``x4`` = :math:`h_i \tanh(3 (u - v_i))` (tanh-like), :math:`h_i \sim U(0.5, 2)`,
      :math:`v_i \sim U(0, 1)`;
    - ``x5`` = :math:`1 + 0.5 \sin(2 \pi (f_i u + \phi_i))` (oscillating),
      :math:`f_i \sim U(1, 2)`, :math:`\phi_i \sim U(0, 1)`;
    - ``x6`` = :math:`e^{g_i u}` (exponential growth), :math:`g_i \sim U(0.5, 1.5)`;
    - ``x7`` = :math:`r_i e^{-d_i u}` (decay), :math:`r_i \sim U(1, 3)`,
      :math:`d_i \sim U(1, 4)`;
    - ``x8`` = :math:`z_i`, a binary trait constant in time,
      :math:`z_i \sim \mathrm{Bernoulli}(p)` with :math:`p` = ``p_trait``.

    The observed covariates are ``xk_obs = xk + e`` with independent
    :math:`e \sim N(0, \texttt{covariate\_noise\_sd}^2)` for ``k = 1..7``; the trait is
    observed without error (``x8_obs = x8``). The interactions ``x2_x5 = x2 * x5``,
    ``x4_x7 = x4 * x7`` and ``x6_x8 = x6 * x8`` are computed from the true covariates.

    **Outcomes.** The fixed part is a nonlinear function of the true covariates

    .. math::

        f = 2 x_1 + 4 \sin(x_2) + 3 x_3 x_4 + 4 |x_5 - 1| + 2 x_6 x_8
            - 3 e^{-x_7} \mathbb{1}\{x_1 > 1.5\},

    and, with :math:`\varepsilon \sim N(0, \texttt{noise\_sd}^2)` drawn independently
    for each outcome and row,

    .. math::

        y^{fixed} &= f, \qquad y^{fixed}_{obs} = f + \varepsilon, \\
        y^{mixed} &= f + b_{0i} + b_{1i}\, x_2 x_5 + b_{2i}\, x_4 x_7 + b_{3i}\, x_6 x_8,
        \qquad y^{mixed}_{obs} = y^{mixed} + \varepsilon,

    where the random coefficients :math:`b_{ji} \sim N(0, \sigma_j^2)` are independent
    and :math:`(\sigma_0, \sigma_1, \sigma_2, \sigma_3) =` ``re_sd`` (default
    ``(3, 0.5, 1, 0.5)``). With the defaults the random part explains about half of
    the variance of ``y_mixed`` and a random forest on ``x1_obs..x8_obs`` clearly
    beats a linear model on ``y_fixed_obs``.

    Parameters
    ----------
    n_subjects : int, default=500
        Number of subjects :math:`n`.
    n_times : int, default=26
        Number of visits :math:`T` per subject (balanced design).
    seed : int, numpy.random.Generator or None, default=None
        Seed of :func:`numpy.random.default_rng`; an int gives reproducible data.
    noise_sd : float, default=1.0
        Standard deviation of the residual noise added to ``y_fixed`` and ``y_mixed``.
    covariate_noise_sd : float, default=0.1
        Standard deviation of the measurement noise on ``x1_obs..x7_obs``.
    re_sd : sequence of 4 floats, default=(3.0, 0.5, 1.0, 0.5)
        Standard deviations of the random intercept and of the random slopes of
        ``x2_x5``, ``x4_x7`` and ``x6_x8``.
    p_trait : float, default=0.5
        Probability that a subject has the binary trait ``x8 = 1``.

    Returns
    -------
    pandas.DataFrame
        ``n_subjects * n_times`` rows sorted by subject then time, with columns
        ``individus`` (1..n), ``temps`` (0..T-1), ``x1..x8``, ``x1_obs..x8_obs``,
        ``x2_x5``, ``x4_x7``, ``x6_x8``, ``y_fixed``, ``y_fixed_obs``, ``y_mixed``
        and ``y_mixed_obs``. ``df.attrs["random_effects"]`` holds the true
        :math:`b_i` as ``{term: {individus: value}}`` (``pd.DataFrame(...)`` of it
        is indexed by ``individus`` with columns ``(Intercept)``, ``x2_x5``,
        ``x4_x7``, ``x6_x8``) and ``df.attrs["re_sd"]`` the dict of their standard
        deviations.

    Examples
    --------
    >>> df = simulate_longitudinal(100, 10, seed=0)
    >>> df.shape
    (1000, 25)
    """
    if n_subjects < 1 or n_times < 1:
        raise InvalidArgumentError("n_subjects and n_times must be positive.")
    re_sd = np.asarray(re_sd, dtype=float)
    if re_sd.shape != (4,):
        raise InvalidArgumentError(f"re_sd must hold 4 standard deviations, got {re_sd.shape}.")
    rng = np.random.default_rng(seed)
    n = n_subjects
    u = np.arange(n_times) / max(n_times - 1, 1)

    def unif(low: float, high: float) -> np.ndarray:
        return rng.uniform(low, high, size=(n, 1))

    x = {
        "x1": rng.normal(0.0, 1.0, (n, 1)) + rng.normal(2.0, 0.5, (n, 1)) * u,
        "x2": -5.0 + unif(2, 4) * (1.0 - np.exp(-u / unif(0.1, 0.5))),
        "x3": np.tanh((u - unif(0.2, 0.8)) / unif(0.05, 0.2)),
        "x4": unif(0.5, 2) * np.tanh(3.0 * (u - unif(0, 1))),
        "x5": 1.0 + 0.5 * np.sin(2.0 * np.pi * (unif(1, 2) * u + unif(0, 1))),
        "x6": np.exp(unif(0.5, 1.5) * u),
        "x7": unif(1, 3) * np.exp(-unif(1, 4) * u),
        "x8": np.broadcast_to(rng.random((n, 1)) < p_trait, (n, n_times)).astype(float),
    }
    obs = {
        f"{k}_obs": v + rng.normal(0.0, covariate_noise_sd, v.shape)
        for k, v in x.items()
        if k != "x8"
    }
    obs["x8_obs"] = x["x8"]  # the trait is observed without error
    inter = {"x2_x5": x["x2"] * x["x5"], "x4_x7": x["x4"] * x["x7"], "x6_x8": x["x6"] * x["x8"]}
    y_fixed = (
        2.0 * x["x1"]
        + 4.0 * np.sin(x["x2"])
        + 3.0 * x["x3"] * x["x4"]
        + 4.0 * np.abs(x["x5"] - 1.0)
        + 2.0 * x["x6"] * x["x8"]
        - 3.0 * np.exp(-x["x7"]) * (x["x1"] > 1.5)
    )
    b = rng.normal(0.0, 1.0, (n, 4)) * re_sd
    y_mixed = y_fixed + b[:, [0]] + sum(b[:, [j]] * v for j, v in enumerate(inter.values(), 1))
    outcomes = {
        "y_fixed": y_fixed,
        "y_fixed_obs": y_fixed + rng.normal(0.0, noise_sd, (n, n_times)),
        "y_mixed": y_mixed,
        "y_mixed_obs": y_mixed + rng.normal(0.0, noise_sd, (n, n_times)),
    }

    subjects = np.arange(1, n + 1)
    columns = {
        "individus": np.repeat(subjects, n_times),
        "temps": np.tile(np.arange(n_times), n),
    }
    for name, value in {**x, **obs, **inter, **outcomes}.items():
        columns[name] = np.ravel(value)
    df = pd.DataFrame(columns)
    # a dict of dicts, not a DataFrame: pandas compares attrs in concat
    df.attrs["random_effects"] = pd.DataFrame(
        b, index=pd.Index(subjects, name="individus"), columns=list(RE_NAMES)
    ).to_dict()
    df.attrs["re_sd"] = dict(zip(RE_NAMES, re_sd.tolist(), strict=True))
    return df
