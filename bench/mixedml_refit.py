"""The random-effects step of MixedML: lme4 ``refit`` (warm start) against a fresh ``lmer``.

Run: ``python bench/mixedml_refit.py``.  Same data, same sequence of slowly changing
residual vectors (as an EM loop sees them); prints seconds per fit and the largest
log-likelihood difference (equal results are the condition for keeping the faster way).
"""

import time

import numpy as np

from pylmer.data.simulate import simulate_longitudinal
from pylmer.r import session as _r

df = simulate_longitudinal(500, 26, seed=0)
X = df[["individus", "x2_x5", "x4_x7", "x6_x8"]]
d = _r.bind(X)
_r._ensure()
_r._state["ri"].evalr(
    """
.bench_fresh <- function(data_name, resp, derivs) {
  data <- get(data_name, envir = .pylmer_store); data[[".pylmer_e"]] <- resp
  f <- .mixedml_residual_formula("(1 + x2_x5 + x4_x7 + x6_x8 || individus)")
  m <- suppressMessages(suppressWarnings(lme4::lmer(f, data = data, REML = FALSE,
        control = lme4::lmerControl(calc.derivs = derivs))))
  as.numeric(logLik(m))
}""",
    envir=_r._state["env"],
)
rng = np.random.default_rng(0)
y = df["y_mixed_obs"].to_numpy()
# a sequence of residual vectors like an EM loop sees: slowly changing
resps = [y - 0.1 * k * rng.standard_normal(len(y)) * 0.05 for k in range(8)]
s = _r.call(".mixedml_start", d, "(1 + x2_x5 + x4_x7 + x6_x8 || individus)", resps[0], False)
t = time.perf_counter()
lls_refit = []
for r in resps[1:]:
    s = _r.call(".mixedml_step", s["model"], r)
    lls_refit.append(s["loglik"])
t_refit = (time.perf_counter() - t) / 7
for derivs in (False, True):
    t = time.perf_counter()
    lls = [_r.call(".bench_fresh", d, r, derivs) for r in resps[1:]]
    print(
        f"fresh lmer, calc.derivs={derivs}: {(time.perf_counter() - t) / 7:.3f} s/fit, "
        f"max |dloglik| vs refit {np.max(np.abs(np.array(lls) - lls_refit)):.2e}"
    )
print(f"refit (warm start, calc.derivs=FALSE): {t_refit:.3f} s/fit")
