"""Continuum and line models with XSPEC names, defaults and hard limits.

All return photons/cm^2/s per bin on energy edges (keV); parameters arrive as
(B, 1) arrays (see :mod:`simxray.models`).
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from ..models import Parameter, register
from .integrate import integrate_bins

NORM = Parameter("norm", 1.0, 0.0, 1e24, "", doc="normalisation")


def powerlaw_flux(edges: np.ndarray, index: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """Exact bin integral of norm * E^-index (photons/keV/cm^2/s at 1 keV)."""
    lo, hi = edges[None, :-1], edges[None, 1:]
    s = 1.0 - index
    near_one = np.abs(s) < 1e-6
    s_safe = np.where(near_one, 1.0, s)
    with np.errstate(divide="ignore", invalid="ignore"):
        general = (hi**s_safe - lo**s_safe) / s_safe
        log = np.log(hi / lo)
    return norm * np.where(near_one, log, general)


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
