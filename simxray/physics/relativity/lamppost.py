"""Lamp-post emissivity: an isotropic point source on the spin axis at height h.

Photons leave the source (static observer on the axis, r = h, theta = 0) at
angle delta from the downward axis; they carry no angular momentum (lam = 0)
and Carter's constant eta = sin^2(delta) (h^2 + a^2)^2 / Delta(h) - a^2.  The
Mino time from the axis to the equator is K(-a^2/eta)/sqrt(eta); the radial
motion uses the same closed-form inversion as the image-plane rays
(:func:`kerr.radius_at_mino_time`): the disk is hit at r = r_s(tau_h +- G),
with tau_h the Mino time from infinity to h (+ for photons emitted inwards,
- for photons emitted outwards, which hit the outer disk when bent back).

The photon flux per unit disk-frame area per unit disk proper time, for a
source spectrum N(E) ~ E^-Gamma, is (Dauser et al. 2013)

    eps(r) ~ (1/2) sin(delta) |d delta/dr| / (2 pi r u^t(r)) * g_i(r)^Gamma,

where 2 pi r u^t dr is the annulus area in the frame comoving with the
Keplerian disk and g_i = u^t_disk(r) / u^t_source(h) = E_disk / E_source.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.special import ellipk

from . import kerr

__all__ = ["disk_hit_radius", "lamppost_emissivity", "source_redshift"]


def disk_hit_radius(delta: np.ndarray, a: float, h: float):
    """Radius (rg) where a photon emitted at angle delta (rad, from the downward axis) hits the disk.

    Returns (r, valid); valid is False for photons that fall into the black
    hole or escape to infinity.
    """
    delta = np.asarray(delta, float)
    dh = h * h - 2.0 * h + a * a
    eta = np.sin(delta) ** 2 * (h * h + a * a) ** 2 / dh - a * a
    good = eta > 1e-12
    eta_s = np.where(good, eta, 1.0)
    lam = np.zeros_like(eta_s)
    G = ellipk(-a * a / eta_s) / np.sqrt(eta_s)
    roots = kerr.radial_roots(a, lam, eta_s)
    tau_h = kerr.mino_time_from_infinity(h, roots)
    tau = np.where(delta < 0.5 * np.pi, tau_h + G, tau_h - G)
    r, ok = kerr.radius_at_mino_time(tau, roots, a)
    ok &= good & np.isfinite(tau_h)
    return np.where(ok, r, np.nan), ok


def source_redshift(r, a: float, h: float):
    """g_i = E_disk / E_source for a static on-axis source at h and a Keplerian disk at r."""
    ut_d, _ = kerr.keplerian_ut(np.asarray(r, float), a)
    ut_h = np.sqrt((h * h + a * a) / (h * h - 2.0 * h + a * a))
    return ut_d / ut_h


@lru_cache(maxsize=256)
def _cumulative(a: float, h: float, n: int = 6000):
    """Spline of the photon fraction N(< r) hitting the disk inside r (as a function of ln r)."""
    # delta sampled densely near the capture and escape boundaries
    x = np.linspace(0.0, 1.0, n + 1)
    dedge = np.pi * (0.5 - 0.5 * np.cos(np.pi * x))
    delta = 0.5 * (dedge[1:] + dedge[:-1])
    w = 0.5 * (np.cos(dedge[:-1]) - np.cos(dedge[1:]))   # photon fraction per delta cell
    r, ok = disk_hit_radius(delta, a, h)
    r_isco = float(kerr.isco(a))
    keep = ok & (r >= 0.999 * kerr.horizon(a))
    order = np.argsort(r[keep])
    rr = r[keep][order]
    frac = np.cumsum(w[keep][order])
    lr = np.log(rr)
    keep = np.r_[True, np.diff(lr) > 1e-12]
    spline = PchipInterpolator(lr[keep], frac[keep], extrapolate=False)
    return spline, r_isco


def lamppost_emissivity(r, a: float, h: float, gamma: float) -> np.ndarray:
    """Emissivity eps(r) (arbitrary normalisation) of a lamp post at height h (rg) on radii r (rg)."""
    r = np.asarray(r, float)
    spline, _ = _cumulative(round(float(a), 10), round(float(h), 10))
    dn_dlnr = spline.derivative()(np.log(r))
    dn_dr = np.nan_to_num(dn_dlnr / r, nan=0.0)
    ut, _ = kerr.keplerian_ut(r, a)
    eps = np.maximum(dn_dr, 0.0) / (2.0 * np.pi * r * ut) * source_redshift(r, a, h) ** gamma
    return eps
