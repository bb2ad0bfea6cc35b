"""Zero-inflated counts: what a Poisson GLMM gets wrong, and glmmTMB's zero-inflated fit.

Simulated sites (random intercepts) where 35% of observations are structural zeros. A
Poisson GLMM (lme4's glmer) cannot produce that many zeros: it predicts far fewer zeros
than observed. glmmTMB's zero-inflated Poisson predicts about as many as there are.
Writes <out>/zero_inflated_zeros.png (observed vs expected count frequencies).

    .venv/bin/python examples/zero_inflated.py [--out DIR]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

import pylmer


def simulate(n_sites: int = 40, per: int = 20, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    site = np.repeat(np.arange(n_sites), per)
    x = rng.normal(size=site.size)
    mu = np.exp(1.0 + 0.4 * x + rng.normal(0, 0.4, n_sites)[site])
    y = rng.poisson(mu)
    y[rng.random(site.size) < 0.35] = 0
    return pd.DataFrame({"y": y.astype(float), "x": x, "site": [f"s{i}" for i in site]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="folder of the figure (default: out)")
    out = Path(parser.parse_args().out)
    data = simulate()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pois = pylmer.glmer("y ~ x + (1 | site)", data, family="poisson")
        zip_ = pylmer.glmmtmb("y ~ x + (1 | site)", data, family="poisson", ziformula="~ 1")
    counts = np.arange(0, 11)
    observed = np.array([(data["y"] == k).sum() for k in counts])
    mu_pois = pois.fitted.to_numpy()
    mu_cond = zip_.predict(type="conditional").to_numpy()
    pzero = zip_.predict(type="zprob").to_numpy()
    expected_pois = np.array([stats.poisson.pmf(k, mu_pois).sum() for k in counts])
    expected_zip = np.array(
        [((k == 0) * pzero + (1 - pzero) * stats.poisson.pmf(k, mu_cond)).sum() for k in counts]
    )
    print(
        f"KEY zeros observed {observed[0]}, Poisson GLMM expects {expected_pois[0]:.1f}, "
        f"zero-inflated Poisson expects {expected_zip[0]:.1f}"
    )
    print(f"KEY AIC: Poisson GLMM {pois.aic:.1f}, zero-inflated Poisson {zip_.aic:.1f}")
    print(zip_.fixef_zi)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(counts, observed, color="0.8", label="observed")
    ax.plot(counts, expected_pois, "o-", color="C3", label="Poisson GLMM (glmer)")
    ax.plot(counts, expected_zip, "s-", color="C0", label="zero-inflated Poisson (glmmTMB)")
    ax.set_xlabel("count")
    ax.set_ylabel("number of observations")
    ax.set_title("Excess zeros: observed vs expected count frequencies")
    ax.legend()
    out.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out / "zero_inflated_zeros.png", dpi=110)
    print(f"figures: {out / 'zero_inflated_zeros.png'}")


if __name__ == "__main__":
    main()
