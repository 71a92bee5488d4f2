"""Closed-form null geodesics of the Kerr metric (Gralla & Lupsasca 2020).

Units G = M = c = 1 (lengths in gravitational radii rg).  A photon reaching a
distant observer at inclination ``theta_o`` through the image-plane point
(alpha, beta) (Bardeen 1973 screen coordinates, rg) has the conserved
quantities ``lam = -alpha sin(theta_o)`` (angular momentum) and
``eta = (alpha^2 - a^2) cos^2(theta_o) + beta^2`` (Carter's constant).

Traced backwards from the observer, the ray's Mino time to its m-th crossing of
the equator follows from the angular integral (Jacobi elliptic functions with
a negative parameter), and the radius reached at a given Mino time follows from
the inversion of the radial integral (Gralla & Lupsasca 2020, PRD 101, 044032,
their cases (2): four real roots, and (3): two real roots).  Everything is
vectorised with :mod:`scipy.special` (``ellipj``, ``ellipk``, ``ellipkinc``);
no ODE integration is involved.

For an equatorial Keplerian disk (prograde for a > 0) :func:`disk_redshift`
gives g = E_obs / E_emit and :func:`disk_crossing` the emission-angle cosine
mu_e = g sqrt(eta) / r in the disk frame.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ellipj, ellipk, ellipkinc

__all__ = [
    "isco", "horizon", "radial_roots", "mino_time_from_infinity", "radius_at_mino_time",
    "equator_mino_time", "disk_redshift", "keplerian_ut", "disk_crossing", "conserved_quantities",
]


def isco(a) -> np.ndarray:
    """Radius of the innermost stable circular orbit (rg), prograde for a > 0."""
    a = np.asarray(a, dtype=float)
    z1 = 1.0 + np.cbrt(1.0 - a * a) * (np.cbrt(1.0 + a) + np.cbrt(1.0 - a))
    z2 = np.sqrt(3.0 * a * a + z1 * z1)
    return 3.0 + z2 - np.sign(a) * np.sqrt((3.0 - z1) * (3.0 + z1 + 2.0 * z2))


def horizon(a) -> np.ndarray:
    """Outer event-horizon radius r+ = 1 + sqrt(1 - a^2) (rg)."""
    a = np.asarray(a, dtype=float)
    return 1.0 + np.sqrt(1.0 - a * a)


def conserved_quantities(alpha, beta, a, theta_o):
    """(lam, eta) for image-plane point (alpha, beta) seen at inclination theta_o (rad)."""
    so, co = np.sin(theta_o), np.cos(theta_o)
    lam = -alpha * so
    eta = (alpha * alpha - a * a) * co * co + beta * beta
    return lam, eta


def radial_roots(a, lam, eta):
    """The four roots r1..r4 (complex) of the radial potential R(r).

    R(r) = (r^2 + a^2 - a lam)^2 - Delta (eta + (lam - a)^2); ordering as in
    Gralla & Lupsasca (2020): r1 < r2 <= r3 <= r4 when all are real.
    """
    a, lam, eta = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (a, lam, eta)))
    A = a * a - eta - lam * lam
    B = 2.0 * (eta + (lam - a) ** 2)
    C = -a * a * eta
    P = -A * A / 12.0 - C
    Q = -A / 3.0 * ((A / 6.0) ** 2 - C) - B * B / 8.0
    D = (P / 3.0) ** 3 + (Q / 2.0) ** 2
    with np.errstate(invalid="ignore"):
        sq = np.sqrt(np.abs(D))
        real_sum = np.cbrt(-Q / 2.0 + sq) + np.cbrt(-Q / 2.0 - sq)
        wp = (-Q / 2.0 + 1j * sq) ** (1.0 / 3.0)
        cplx_sum = 2.0 * wp.real
    wsum = np.where(D >= 0, real_sum, cplx_sum)
    z = np.sqrt(np.maximum(wsum / 2.0 - A / 6.0, 1e-300))
    s1 = np.sqrt((-A / 2.0 - z * z + B / (4.0 * z)).astype(complex))
    s2 = np.sqrt((-A / 2.0 - z * z - B / (4.0 * z)).astype(complex))
    return -z - s1, -z + s1, z - s2, z + s2


def _case(r3, r4, tol=1e-9):
    """True where all four roots are real (Gralla-Lupsasca case 2)."""
    return (np.abs(r3.imag) < tol * (1 + np.abs(r3.real))) & (np.abs(r4.imag) < tol * (1 + np.abs(r4.real)))


def _case2_parts(r1, r2, r3, r4):
    r1, r2, r3, r4 = (x.real for x in (r1, r2, r3, r4))
    r31, r41, r32, r42 = r3 - r1, r4 - r1, r3 - r2, r4 - r2
    k = np.clip(r32 * r41 / (r31 * r42), 0.0, 1.0)
    return r31, r41, r42, k, r3, r4


def _case3_parts(r1, r2, r3, r4):
    A = np.sqrt(np.abs((r3 - r2) * (r4 - r2)))
    B = np.sqrt(np.abs((r3 - r1) * (r4 - r1)))
    r1, r2 = r1.real, r2.real
    k = np.clip(((A + B) ** 2 - (r2 - r1) ** 2) / (4.0 * A * B), 0.0, 1.0)
    return A, B, r1, r2, k


def mino_time_from_infinity(r, roots):
    """Mino time from infinity to radius r along the ingoing branch of a ray.

    Valid for r >= r4 (case 2) or r >= r2 (case 3); returns NaN elsewhere.
    ``roots`` is the tuple of :func:`radial_roots`.
    """
    r1, r2, r3, r4 = roots
    r = np.asarray(r, dtype=float)
    c2 = _case(r3, r4)
    out = np.full(np.broadcast(r, r1).shape, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        r31, r41, r42, k2, r3r, r4r = _case2_parts(r1, r2, r3, r4)
        F2 = ellipkinc(np.arcsin(np.sqrt(np.clip(r31 / r41, 0, 1))), k2)
        x2 = np.clip(r31 * (r - r4r) / (r41 * (r - r3r)), 0.0, 1.0)
        t2 = (F2 - ellipkinc(np.arcsin(np.sqrt(x2)), k2)) / (0.5 * np.sqrt(r31 * r42))
        t2 = np.where(r >= r4r, t2, np.nan)
        A, B, r1r, r2r, k3 = _case3_parts(r1, r2, r3, r4)
        F3 = ellipkinc(np.arccos(np.clip((A - B) / (A + B), -1, 1)), k3)
        c = (A * (r - r1r) - B * (r - r2r)) / (A * (r - r1r) + B * (r - r2r))
        X3 = -ellipkinc(np.arccos(np.clip(c, -1, 1)), k3)
        t3 = (X3 + F3) / np.sqrt(A * B)
        t3 = np.where(r >= r2r, t3, np.nan)
    out[...] = np.where(c2, t2, t3)
    return out


def radius_at_mino_time(tau, roots, a):
    """Radius reached at Mino time tau by a ray coming from infinity.

    Returns (r, valid): valid is False where the ray has fallen through the
    horizon or escaped back to infinity before tau.
    """
    r1, r2, r3, r4 = roots
    tau = np.asarray(tau, dtype=float)
    rp = horizon(a)
    c2 = _case(r3, r4)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        # case 2: four real roots
        r31, r41, r42, k2, r3r, r4r = _case2_parts(r1, r2, r3, r4)
        F2 = ellipkinc(np.arcsin(np.sqrt(np.clip(r31 / r41, 0, 1))), k2)
        X2 = 0.5 * np.sqrt(r31 * r42) * tau - F2
        sn = ellipj(X2, k2)[0]
        s2 = sn * sn
        rad2 = (r4r * r31 - r3r * r41 * s2) / (r31 - r41 * s2)
        ok2 = (X2 < F2) & ((r4r > rp) | (X2 < 0)) & (rad2 > rp)
        # case 3: two real roots
        A, B, r1r, r2r, k3 = _case3_parts(r1, r2, r3, r4)
        F3 = ellipkinc(np.arccos(np.clip((A - B) / (A + B), -1, 1)), k3)
        X3 = np.sqrt(A * B) * tau - F3
        cn = ellipj(X3, k3)[1]
        rad3 = ((B * r2r - A * r1r) + (B * r2r + A * r1r) * cn) / ((B - A) + (B + A) * cn)
        ok3 = (X3 < 0) & (rad3 > rp)
    r = np.where(c2, rad2, rad3)
    ok = np.where(c2, ok2, ok3) & np.isfinite(r) & (tau > 0)
    return r, ok


def _angular(a, lam, eta, theta_o):
    """(s, k, Fo, K): Mino-time scale, parameter, F at the observer and K(k)."""
    b = eta + lam * lam - a * a
    disc = np.sqrt(b * b + 4.0 * a * a * eta)
    bd = b + disc
    up = 2.0 * eta / bd                 # u_+ (largest cos^2 theta reached)
    s = np.sqrt(bd / 2.0)               # a sqrt(-u_-)
    k = -4.0 * a * a * eta / (bd * bd)  # u_+ / u_- <= 0
    co = np.cos(theta_o)
    with np.errstate(invalid="ignore", divide="ignore"):
        Fo = ellipkinc(np.arcsin(np.clip(co / np.sqrt(up), -1.0, 1.0)), k)
    return s, k, Fo, ellipk(k)


def equator_mino_time(a, lam, eta, beta, theta_o, m: int = 1):
    """Mino time from the observer to the m-th equatorial crossing (m = 1: direct image).

    Only meaningful for eta > 0 (other rays never cross the equator).
    """
    s, _, Fo, K = _angular(a, lam, eta, theta_o)
    sg = np.where(np.asarray(beta) >= 0, 1.0, -1.0)
    return ((1.0 + sg) * K - sg * Fo + 2.0 * (m - 1) * K) / s


def keplerian_ut(r, a):
    """u^t and Omega of a prograde Keplerian orbit in the equatorial plane."""
    sr = np.sqrt(r)
    r32 = r * sr
    ut = (r32 + a) / (r ** 0.75 * np.sqrt(np.maximum(r32 - 3.0 * sr + 2.0 * a, 1e-300)))
    return ut, 1.0 / (r32 + a)


def disk_redshift(r, a, lam):
    """g = E_obs/E_emit for a photon of angular momentum lam from a Keplerian disk at r."""
    ut, om = keplerian_ut(r, a)
    return 1.0 / (ut * (1.0 - om * lam))


def disk_crossing(alpha, beta, a, theta_o, m: int = 1):
    """Trace image-plane points to the m-th equatorial crossing.

    Returns (r, g, mu_e, valid) with r the crossing radius (rg), g = E_obs/E_emit
    for a Keplerian disk (meaningful for r >= ISCO), mu_e the cosine of the
    emission angle in the disk frame; valid is False where the ray does not
    reach the equator outside the horizon.
    """
    alpha, beta = np.broadcast_arrays(np.asarray(alpha, float), np.asarray(beta, float))
    lam, eta = conserved_quantities(alpha, beta, a, theta_o)
    good = eta > 1e-12
    etas = np.where(good, eta, 1.0)
    tau = equator_mino_time(a, lam, etas, beta, theta_o, m)
    roots = radial_roots(a, lam, etas)
    r, ok = radius_at_mino_time(tau, roots, a)
    ok &= good
    r = np.where(ok, r, np.nan)
    g = disk_redshift(np.where(ok, r, 10.0), a, lam)
    mu = g * np.sqrt(etas) / np.where(ok, r, 10.0)
    return r, np.where(ok, g, np.nan), np.where(ok, mu, np.nan), ok
