"""Reference line profiles by brute-force image-plane ray tracing (independent of the table).

Used to check the transfer-function table where it is hardest (high spin, near
edge-on).  Rays on a polar image-plane grid (psi uniform, ln rho uniform) are
traced to their first equatorial crossing with the closed-form geodesics of
:mod:`.kerr`; photons per unit image area are eps(r) g^3 (a line of unit
photon emissivity, Keplerian disk, direct image, as relline).  Each grid
cell's photons (mean of its corners' weights x cell area) are spread uniformly
over the energy range its valid corners see and integrated exactly over the
output bins: no sampling noise, a discretisation error that falls with the
grid (about 1 %, 0.4 %, 0.2 % L1 at n = 512, 1024, 2048 for a = 0.99, i = 86 deg).
"""

from __future__ import annotations

import numpy as np

from . import kerr

__all__ = ["image_plane_line"]


def _uniform_deposit(edges: np.ndarray, lo: np.ndarray, hi: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Bin integrals of weights w spread uniformly over [lo, hi] (sums of linear ramps)."""
    c = w / (hi - lo)
    n = edges.size
    acc, accp = np.zeros(n + 1), np.zeros(n + 1)
    for p, s in ((lo, 1.0), (hi, -1.0)):
        k = np.searchsorted(edges, p, side="right")
        acc += np.bincount(k, s * c, minlength=n + 1)
        accp += np.bincount(k, s * c * p, minlength=n + 1)
    return np.diff(np.cumsum(acc)[:n] * edges - np.cumsum(accp)[:n])


def image_plane_line(a: float, incl: float, edges: np.ndarray, line: float = 1.0, q: float = 3.0,
                     rin: float | None = None, rout: float = 400.0, n: int = 1024,
                     rho_lo: float = 0.3) -> np.ndarray:
    """Line profile (sums to 1 over ``edges``, keV) of a disk ring Rin..Rout (rg; Rin default the ISCO)
    with emissivity r^-q around spin a seen at inclination incl (deg), for a rest-frame line at
    ``line`` keV, traced on n x n image-plane cells (memory ~ 100 n^2 bytes)."""
    th = np.radians(incl)
    r_in = float(kerr.isco(a)) if rin is None else float(rin)
    psi = np.arange(n + 1) * (2.0 * np.pi / n)
    rho = np.exp(np.linspace(np.log(rho_lo), np.log(1.05 * rout + 30.0), n + 1))
    W = np.zeros((n + 1, n + 1))
    G = np.full((n + 1, n + 1), np.nan)
    step = max(1, 1_000_000 // (n + 1))
    for s in range(0, n + 1, step):
        ps = psi[s:s + step, None]
        r, g, _, ok = kerr.disk_crossing(rho[None, :] * np.cos(ps), rho[None, :] * np.sin(ps), a, th)
        ok &= (r >= r_in) & (r <= rout)
        rr = np.where(ok, r, 1.0)
        gg = np.where(ok, g, 0.0)
        W[s:s + step] = np.where(ok, rho[None, :] ** 2 * rr ** -q * gg ** 3, 0.0)
        G[s:s + step] = np.where(ok, g, np.nan)
    w = 0.25 * (W[:-1, :-1] + W[1:, :-1] + W[:-1, 1:] + W[1:, 1:])
    m = w > 0
    corners = np.stack([G[:-1, :-1][m], G[1:, :-1][m], G[:-1, 1:][m], G[1:, 1:][m]])
    lo = np.nanmin(corners, axis=0) * line
    hi = np.maximum(np.nanmax(corners, axis=0) * line, lo * (1.0 + 1e-9))
    out = _uniform_deposit(np.asarray(edges, float), lo, hi, w[m])
    return out / out.sum()
