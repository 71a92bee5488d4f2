"""Fit statistics for Poisson spectra: Cash's C (XSPEC ``cstat``) and XSPEC's W (``wstat``).

Both are -2 log likelihood ratios against the saturated model, so they are ≥ 0, zero for a
perfect model, and their sum over channels is what XSPEC/Sherpa report.  Arrays broadcast:
``counts`` (C,) against ``model`` (M, C) gives one value per model, shape (M,).
"""

from __future__ import annotations

import numpy as np
from scipy.special import xlogy

_TINY = 1e-300


def cstat_terms(counts: np.ndarray, model: np.ndarray) -> np.ndarray:
    """Per-channel C-stat: 2 (m - d + d ln(d/m)), with d ln d = 0 for d = 0."""
    d = np.asarray(counts, dtype=float)
    m = np.maximum(np.asarray(model, dtype=float), _TINY)
    return 2.0 * (m - d + xlogy(d, d) - xlogy(d, m))


def cstat(counts: np.ndarray, model: np.ndarray, axis: int = -1) -> np.ndarray:
    """Cash statistic summed over channels (XSPEC ``cstat``)."""
    return cstat_terms(counts, model).sum(axis=axis)


def wstat_terms(counts: np.ndarray, background: np.ndarray, model: np.ndarray,
                alpha: float | np.ndarray) -> np.ndarray:
    """Per-channel W-stat (XSPEC ``wstat``): Poisson source and background, background profiled.

    ``model`` is the expected *source* counts in the source spectrum; ``alpha`` scales
    background-region counts to the source region, alpha = (t_s A_s)/(t_b A_b) with
    exposures t and BACKSCAL areas A.  Uses XSPEC's closed-form profile of the background
    rate, including its special cases for zero counts.
    """
    S = np.asarray(counts, dtype=float)
    B = np.asarray(background, dtype=float)
    mu = np.maximum(np.asarray(model, dtype=float), 0.0)
    ts, tb = 1.0, 1.0 / np.asarray(alpha, dtype=float)     # exposures in source-time units
    m = mu / ts
    a = ts + tb
    b = a * m - S - B
    d = np.sqrt(b * b + 4.0 * a * B * m)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(b >= 0, 2.0 * B * m / np.where(b + d > 0, b + d, 1.0), (d - b) / (2.0 * a))
        general = 2.0 * (ts * m + a * f - xlogy(S, ts * m + ts * f) - xlogy(B, tb * f)
                         - S + xlogy(S, S) - B + xlogy(B, B))
        s0 = 2.0 * (ts * m - B * np.log(tb / a))
        low = m < S / a
        b0_low = 2.0 * (-tb * m - S * np.log(ts / a))
        b0_high = 2.0 * (ts * m + xlogy(S, S) - xlogy(S, np.maximum(ts * m, _TINY)) - S)
    out = np.where(S == 0, s0, np.where(B == 0, np.where(low, b0_low, b0_high), general))
    return np.broadcast_to(out, np.broadcast_shapes(S.shape, B.shape, mu.shape)).copy()


def wstat(counts: np.ndarray, background: np.ndarray, model: np.ndarray,
          alpha: float | np.ndarray, axis: int = -1) -> np.ndarray:
    """W statistic summed over channels."""
    return wstat_terms(counts, background, model, alpha).sum(axis=axis)


def cstat_expectation(model: np.ndarray, axis: int = -1, kmax: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Exact mean and variance of C-stat when the data are Poisson(model) (Kaastra 2017).

    Summed over channels; per channel the sums run over k = 0..kmax counts, with a
    Gaussian (chi^2-like) limit above 100 expected counts.
    """
    from scipy.stats import poisson

    m = np.maximum(np.asarray(model, dtype=float), _TINY)
    k = np.arange(kmax + 1, dtype=float)
    shape = m.shape
    flat = m.reshape(-1)
    small = flat <= 100.0
    mean = np.ones_like(flat)
    var = np.full_like(flat, 2.0)
    if np.any(small):
        ms = flat[small][:, None]
        p = poisson.pmf(k[None, :], ms)
        c = cstat_terms(k[None, :], ms)
        e = (p * c).sum(1)
        mean[small] = e
        var[small] = (p * c * c).sum(1) - e * e
    mean, var = mean.reshape(shape), var.reshape(shape)
    return mean.sum(axis=axis), var.sum(axis=axis)
