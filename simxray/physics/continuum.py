"""Continuum and line models with XSPEC names, defaults and hard limits.

All return photons/cm^2/s per bin on energy edges (keV); parameters arrive as
(B, 1) arrays (see :mod:`simxray.models`).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from scipy.special import erf

from ..models import Parameter, register
from .integrate import BLOCK_ELEMENTS, integrate_bins

NORM = Parameter("norm", 1.0, 0.0, 1e24, "", doc="normalisation")


# Power-law fast path (kernel grids of thousands of bins, batches of hundreds): one exp per
# edge and row in float64 torch instead of two pow per bin.  Rows with |1 - index| below
# _SMALL_S use lo^s expm1(s ln(hi/lo)) / s, exact as s -> 0 (the difference of powers
# loses ~1e-16 / (|s| ln(hi/lo)) to cancellation).
_SMALL_S = 0.05
_LOG_CACHE: OrderedDict[bytes, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
_LOG_CACHE_SIZE = 16


def _log_edges(edges: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(ln E (N+1,), ln(hi/lo) (N,)) as float64 tensors, cached per edge array."""
    key = edges.tobytes()
    hit = _LOG_CACHE.get(key)
    if hit is not None:
        return hit
    log = np.log(edges)
    val = (torch.from_numpy(log), torch.from_numpy(np.log1p(np.diff(edges) / edges[:-1])))
    _LOG_CACHE[key] = val
    while len(_LOG_CACHE) > _LOG_CACHE_SIZE:
        _LOG_CACHE.popitem(last=False)
    return val


def _powerlaw_reference(edges: np.ndarray, index: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """(hi^s - lo^s) / s in numpy (any broadcastable shapes, edges may start at 0)."""
    lo, hi = edges[None, :-1], edges[None, 1:]
    s = 1.0 - index
    near_one = np.abs(s) < 1e-6
    s_safe = np.where(near_one, 1.0, s)
    with np.errstate(divide="ignore", invalid="ignore"):
        general = (hi**s_safe - lo**s_safe) / s_safe
        log = np.log(hi / lo)
    return norm * np.where(near_one, log, general)


def powerlaw_flux(edges: np.ndarray, index: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """Exact bin integral of norm * E^-index (photons/keV/cm^2/s at 1 keV).

    index, norm: (B, 1) (or (1, 1)/scalar norm) -> (B, N).  With positive edges each row
    costs one exp per edge (``exp(s ln E)``, s = 1 - index, differenced), in float64
    torch; rows with |s| < 0.05 use ``lo^s expm1(s ln(hi/lo)) / s`` (``ln(hi/lo)`` at
    s = 0), which is exact in the limit.  Edges starting at 0 or other shapes take the
    plain numpy formula.
    """
    e = np.asarray(edges, dtype=np.float64)
    g = np.asarray(index, dtype=np.float64)
    k = np.asarray(norm, dtype=np.float64)
    if not (e.ndim == 1 and e.size >= 2 and e[0] > 0 and g.ndim == 2 and g.shape[1] == 1
            and k.ndim <= 2 and k.size in (1, g.shape[0])):
        return _powerlaw_reference(e, g, k)
    log, dlog = _log_edges(np.ascontiguousarray(e))
    s = 1.0 - g  # (B, 1)
    k = np.broadcast_to(k.reshape(-1, 1), s.shape)
    small = np.abs(s[:, 0]) < _SMALL_S
    scale = torch.from_numpy(np.divide(k, s, out=np.zeros_like(s), where=~small[:, None]))
    st = torch.from_numpy(np.ascontiguousarray(s))
    B, n = s.shape[0], e.size - 1
    out = torch.empty((B, n), dtype=torch.float64, device="cpu")
    rows = max(1, BLOCK_ELEMENTS // (n + 1))  # rows per block: the temporaries stay in cache
    pw = torch.empty((min(rows, B), n + 1), dtype=torch.float64, device="cpu")
    for a in range(0, B, rows):
        b = min(a + rows, B)
        p = torch.mul(st[a:b], log, out=pw[: b - a]).exp_()  # E^s on the edges
        torch.sub(p[:, 1:], p[:, :-1], out=out[a:b]).mul_(scale[a:b])
    if small.any():
        idx = torch.from_numpy(np.flatnonzero(small))
        s_r = st[idx]
        lo_s = torch.mul(s_r, log[:-1]).exp_()  # lo^s
        q = torch.mul(s_r, dlog).expm1_()  # (hi / lo)^s - 1
        zero = s_r == 0.0
        q.div_(torch.where(zero, torch.ones_like(s_r), s_r))
        q = torch.where(zero, dlog.expand_as(q), q)
        q.mul_(lo_s).mul_(torch.from_numpy(np.ascontiguousarray(k[small])))
        out[idx] = q
    return out.numpy()


@register("powerlaw", "add", [
    Parameter("PhoIndex", 1.0, -3.0, 10.0, "", doc="photon index"),
    NORM,
])
def powerlaw(edges, PhoIndex, norm):
    """Power law: norm * E^-PhoIndex (norm: photons/keV/cm^2/s at 1 keV)."""
    return powerlaw_flux(edges, PhoIndex, norm)


@register("zpowerlw", "add", [
    Parameter("PhoIndex", 1.0, -3.0, 10.0, ""),
    Parameter("Redshift", 0.0, -0.999, 10.0, ""),
    NORM,
])
def zpowerlw(edges, PhoIndex, Redshift, norm):
    """Redshifted power law: norm * (E (1+z))^-PhoIndex."""
    zf = 1.0 + Redshift
    return powerlaw_flux(edges, PhoIndex, norm) * zf ** (-PhoIndex)


@register("cutoffpl", "add", [
    Parameter("PhoIndex", 1.0, -3.0, 10.0, ""),
    Parameter("HighECut", 15.0, 0.01, 500.0, "keV"),
    NORM,
])
def cutoffpl(edges, PhoIndex, HighECut, norm):
    """Cut-off power law: norm * E^-PhoIndex * exp(-E/HighECut)."""
    g, ec, k = PhoIndex[..., None], HighECut[..., None], norm[..., None]
    return integrate_bins(lambda e: k * e ** (-g) * np.exp(-e / ec), edges)


@register("bbodyrad", "add", [
    Parameter("kT", 3.0, 1e-4, 200.0, "keV"),
    Parameter("norm", 1.0, 0.0, 1e24, "", doc="R_km^2 / D_10kpc^2"),
])
def bbodyrad(edges, kT, norm):
    """Blackbody: norm * 1.0344e-3 E^2 / (exp(E/kT) - 1), norm = R_km^2/D_10^2."""
    t, k = kT[..., None], norm[..., None]

    def dens(e):
        x = np.minimum(e / t, 700.0)
        return k * 1.0344e-3 * e**2 / np.expm1(x)

    return integrate_bins(dens, edges)


@register("gaussian", "add", [
    Parameter("LineE", 6.5, 0.0, 1e6, "keV"),
    Parameter("Sigma", 0.1, 0.0, 20.0, "keV"),
    NORM,
])
def gaussian(edges, LineE, Sigma, norm):
    """Gaussian line: total photons/cm^2/s = norm; Sigma = 0 puts all in one bin."""
    lo, hi = edges[None, :-1], edges[None, 1:]
    sig = np.where(Sigma > 0, Sigma, 1.0)
    cdf_hi = 0.5 * (1 + erf((hi - LineE) / (np.sqrt(2) * sig)))
    cdf_lo = 0.5 * (1 + erf((lo - LineE) / (np.sqrt(2) * sig)))
    smooth = cdf_hi - cdf_lo
    delta = ((lo <= LineE) & (LineE < hi)).astype(float)
    return norm * np.where(Sigma > 0, smooth, delta)


@register("zgauss", "add", [
    Parameter("LineE", 6.5, 0.0, 1e6, "keV"),
    Parameter("Sigma", 0.1, 0.0, 20.0, "keV"),
    Parameter("Redshift", 0.0, -0.999, 10.0, ""),
    NORM,
])
def zgauss(edges, LineE, Sigma, Redshift, norm):
    """Redshifted Gaussian: observed centre LineE/(1+z), flux norm/(1+z)."""
    zf = 1.0 + Redshift
    return gaussian(edges, LineE / zf, Sigma / zf, norm / zf)


@register("constant", "mul", [Parameter("factor", 1.0, 0.0, 1e10, "")])
def constant(edges, factor):
    """Energy-independent multiplicative factor."""
    return np.broadcast_to(factor, (factor.shape[0], edges.size - 1))
