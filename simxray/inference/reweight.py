"""Importance reweighting of a neural posterior with the exact likelihood (neural
importance sampling, Dax et al. 2023), checked by Pareto-smoothed importance sampling
(PSIS, Vehtari et al. 2024).

Draws θᵢ ~ q(θ | x) get log weights log L(θᵢ) + log π(θᵢ) − log q(θᵢ | x); the smoothed,
normalised weights give the exact posterior in the limit.  Pareto k̂ < 0.7 says the
reweighted estimate is reliable; the effective sample size ESS = 1 / Σ wᵢ² and the
efficiency ESS / N say how close q was.  A network that is too narrow shows up as a large
k̂ (the weights' tail is heavy), so this is also a calibration check of q on *this*
spectrum with its real likelihood.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.special import logsumexp

KHAT_MAX = 0.7


def psis(log_w: np.ndarray) -> tuple[np.ndarray, float]:
    """Pareto-smoothed, normalised log weights and the Pareto k̂ (ArviZ's ``psislw``)."""
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lws, k = az.psislw(np.asarray(log_w, float).copy())
    lws = np.asarray(lws, float)
    return lws - logsumexp(lws), float(np.asarray(k))


def reweight(log_post: np.ndarray, log_q: np.ndarray, n_samples: int,
             rng: np.random.Generator) -> dict:
    """Importance weights of draws with log posterior (unnormalised) ``log_post`` (N,) and
    proposal log density ``log_q`` (N,): indices of ``n_samples`` draws resampled by weight
    and the diagnostics (ESS, efficiency, k̂, reliable)."""
    lw = np.asarray(log_post, float) - np.asarray(log_q, float)
    ok = np.isfinite(lw)
    if ok.sum() < 10:
        return {"reliable": False, "khat": float("inf"), "ess": 0.0, "efficiency": 0.0,
                "n_draws": int(len(lw)), "index": None}
    lws = np.full(lw.shape, -np.inf)
    lws[ok], khat = psis(lw[ok])
    w = np.exp(lws)
    ess = float(1.0 / np.sum(w * w))
    idx = rng.choice(len(w), int(n_samples), replace=True, p=w / w.sum())
    return {"reliable": bool(khat < KHAT_MAX), "khat": khat, "ess": ess,
            "efficiency": ess / len(lw), "n_draws": int(len(lw)), "index": idx}


__all__ = ["psis", "reweight", "KHAT_MAX"]
