"""Bias, coverage, misspecification scores and maximum-likelihood baselines.

* :func:`posterior_metrics`  bias (mean of posterior mean − truth), RMSE and central-interval
  coverage of posterior draws against hidden truths, per parameter (fit space);
* :func:`point_metrics`      the same for point estimates with Gaussian standard errors;
* :func:`misspecification`   sbi's MMD misspecification test (``calc_misspecification_mmd``)
  between observed and simulated spectra in a given (embedding) space;
* :func:`ml_fit`             batched Poisson maximum-likelihood fits of θ (and optionally
  logit alpha) of piled spectra with fixed remaining φ: the "no pileup model" (f = 0) and
  "Davis ML" baselines.
"""

from __future__ import annotations

import numpy as np
import torch

from .forward import EnergyDavis, FitSpaceModel, phi_tensors

LEVELS = np.array([0.5, 0.68, 0.8, 0.9, 0.95])


def _coverage(u: np.ndarray) -> np.ndarray:
    """Coverage (L, P) of central intervals from posterior quantiles u (B, P) of the truths."""
    return (np.abs(u - 0.5)[None] <= LEVELS[:, None, None] / 2).mean(1)


def _summary(err: np.ndarray, cov: np.ndarray, names: list[str]) -> dict:
    out = {"levels": LEVELS.tolist(), "n": int(err.shape[0])}
    for j, n in enumerate(names):
        out[n] = {"bias": float(err[:, j].mean()), "bias_se": float(err[:, j].std(ddof=1) / np.sqrt(len(err))),
                  "rmse": float(np.sqrt((err[:, j] ** 2).mean())),
                  "coverage": cov[:, j].tolist(),
                  "max_coverage_error": float(np.abs(cov[:, j] - LEVELS).max())}
    out["max_coverage_error"] = float(np.abs(cov - LEVELS[:, None]).max())
    return out


def posterior_metrics(samples: np.ndarray, truth: np.ndarray, names: list[str]) -> dict:
    """samples (S, B, P) and truths (B, P), both in fit space → per-parameter metrics."""
    s, t = np.asarray(samples, float), np.asarray(truth, float)
    u = ((s < t[None]).sum(0) + 0.5) / (s.shape[0] + 1.0)
    return _summary(s.mean(0) - t, _coverage(u), names)


def point_metrics(estimate: np.ndarray, sd: np.ndarray, truth: np.ndarray, names: list[str]) -> dict:
    """Point estimates (B, P) with Gaussian sds (B, P) against truths (B, P)."""
    from scipy.stats import norm

    e, t = np.asarray(estimate, float), np.asarray(truth, float)
    u = norm.cdf((t - e) / np.maximum(np.asarray(sd, float), 1e-12))
    return _summary(e - t, _coverage(u), names)


def bias_reduction(before: dict, after: dict, names: list[str], scale: np.ndarray) -> dict:
    """|bias| ratios after/before per parameter and for the scaled RMS over parameters."""
    b0 = np.array([before[n]["bias"] for n in names]) / scale
    b1 = np.array([after[n]["bias"] for n in names]) / scale
    return {"per_parameter_ratio": {n: float(abs(b1[i]) / max(abs(b0[i]), 1e-12)) for i, n in enumerate(names)},
            "scaled_rms_bias_before": float(np.sqrt(np.mean(b0**2))),
            "scaled_rms_bias_after": float(np.sqrt(np.mean(b1**2))),
            "ratio": float(np.sqrt(np.mean(b1**2)) / max(np.sqrt(np.mean(b0**2)), 1e-12))}


def misspecification(z_obs: np.ndarray, z_sim: np.ndarray, n_shuffle: int = 200, seed: int = 0) -> dict:
    """sbi's MMD test: {'mmd', 'p_value', 'baseline_mmd_median'} (small p: misspecified)."""
    from sbi.diagnostics import calc_misspecification_mmd

    torch.manual_seed(seed)
    p, (base, mmd) = calc_misspecification_mmd(torch.as_tensor(z_obs, dtype=torch.float32),
                                               torch.as_tensor(z_sim, dtype=torch.float32),
                                               mode="x_space", n_shuffle=n_shuffle,
                                               max_samples=min(1000, len(z_sim)))
    return {"mmd": float(mmd), "p_value": float(p), "baseline_mmd_median": float(torch.median(base)),
            "n_obs": int(len(z_obs)), "n_sim": int(min(1000, len(z_sim)))}


def ml_fit(davis: EnergyDavis, source: FitSpaceModel, x: np.ndarray, theta0: np.ndarray, phi: dict,
           fit_alpha: bool = False, max_iter: int = 150) -> dict:
    """Batched Poisson ML of θ (fit space) [+ logit alpha0] for spectra x (B, C).

    Levenberg-Marquardt-damped Fisher scoring with forward-difference Jacobians; ``phi`` fixes
    the other nuisance parameters (``f = 0`` gives the no-pileup model).  Returns
    {"theta" (B, P), "sd" (B, P), "alpha0" (B,), "cstat" (B,)}.
    """
    x = np.atleast_2d(np.asarray(x, float))
    B, P = x.shape[0], source.dim
    D = P + int(fit_alpha)
    a0 = float(np.clip(phi["alpha0"], 1e-4, 1 - 1e-4))
    z = np.column_stack([np.broadcast_to(theta0, (B, P))] + ([np.full(B, np.log(a0 / (1 - a0)))] if fit_alpha else []))

    def forward(zz: np.ndarray) -> np.ndarray:
        ph = dict(phi)
        if fit_alpha:
            ph["alpha0"] = 1.0 / (1.0 + np.exp(-zz[:, P]))
        with torch.no_grad():
            flux = source.flux(torch.as_tensor(zz[:, :P]), davis.source_edges)
            return davis.counts(flux, phi_tensors(ph, len(zz))).numpy()

    def objective(mu, idx):
        mu = np.maximum(mu, 1e-30)
        return (mu - x[idx] * np.log(mu)).sum(-1)

    mu = forward(z)
    obj = objective(mu, np.arange(B))
    lam = np.full(B, 1e-2)
    active = np.ones(B, bool)
    F_all = np.tile(np.eye(D), (B, 1, 1))
    h = 1e-5
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        za = z[idx]
        zp = (za[None] + h * np.eye(D)[:, None, :]).reshape(D * idx.size, D)
        J = ((forward(zp).reshape(D, idx.size, -1) - mu[idx][None]) / h).transpose(1, 2, 0)
        m = np.maximum(mu[idx], 1e-30)
        grad = np.einsum("bcd,bc->bd", J, 1.0 - x[idx] / m)
        F = np.einsum("bcd,bc,bce->bde", J, 1.0 / m, J) + 1e-8 * np.eye(D)
        F_all[idx] = F
        damp = F + lam[idx, None, None] * np.einsum("bii->bi", F)[:, :, None] * np.eye(D)
        step = np.clip(-np.linalg.solve(damp, grad[..., None])[..., 0], -1.0, 1.0)
        zn = za + step
        if fit_alpha:
            zn[:, P] = np.clip(zn[:, P], -9.0, 9.0)
        mun = forward(zn)
        on = objective(mun, idx)
        ok = on <= obj[idx]
        gain = obj[idx] - on
        z[idx[ok]], mu[idx[ok]], obj[idx[ok]] = zn[ok], mun[ok], on[ok]
        undamped = lam[idx] <= 1e-2  # a small gain only means convergence for a Gauss-Newton step
        lam[idx] = np.where(ok, np.maximum(lam[idx] / 3, 1e-6), lam[idx] * 5)
        done = (ok & undamped & ((np.abs(step).max(1) < 1e-5) | (gain < 1e-4))) | (lam[idx] > 1e8)
        active[idx[done]] = False
    cov = np.linalg.inv(F_all)
    sd = np.sqrt(np.maximum(np.einsum("bii->bi", cov), 0.0))
    mm = np.maximum(mu, 1e-30)
    cstat = 2 * np.sum(mm - x + np.where(x > 0, x * np.log(np.maximum(x, 1e-30) / mm), 0.0), -1)
    return {"theta": z[:, :P], "sd": sd[:, :P],
            "alpha0": (1.0 / (1.0 + np.exp(-z[:, P]))) if fit_alpha else np.full(B, a0), "cstat": cstat}


__all__ = ["posterior_metrics", "point_metrics", "bias_reduction", "misspecification", "ml_fit", "LEVELS"]
