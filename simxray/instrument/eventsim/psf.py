"""On-axis Chandra mirror (HRMA) PSF and ACIS dither for the event-level simulator.

PSF (``psf="chandra"``): a circular King profile whose encircled energy

    EE(r; E) = 1 - (1 + r^2 / r_c(E)^2)^(1 - beta(E))

passes exactly through the 50 % and 90 % encircled-energy radii of the on-axis HRMA
point-spread function at each photon energy E.  The anchor radii (arcsec) are

    =========  =======  =======  =========================================================
    E [keV]    r50      r90      source
    =========  =======  =======  =========================================================
    1.49       0.42     1.0      r50: flight value, 0.5-2 keV (Dewey 1999, MIT HETG
                                 technote "pix_random/dd_psf"; 0.87 ACIS pixels);
                                 r90: Chandra Proposers' Observatory Guide (POG) ch. 4,
                                 on-axis encircled-energy curves (90 % within ~1")
    6.40       0.45     2.0      POG ch. 4 (the 6.4 keV curve: a core a little wider than
                                 at 1.49 keV and scattering wings that put 90 % within ~2")
    =========  =======  =======  =========================================================

and are linear in E between the anchors, constant below 1.49 keV (the PSF core is set by
the mirror figure, the wings by X-ray scattering that falls with energy) and linearly
extrapolated above 6.4 keV up to 10 keV.  The POG also gives a FWHM of 0.5" for the
HRMA with its detector (Table 4.1).  Tolerances: the POG curves are read to about
+/- 0.05" (r50) and +/- 0.2" (r90); the profile is rotationally symmetric (the
sub-arcsecond HRMA artefact and the azimuthal structure of the wings are ignored).

Dither (``dither_amplitude_arcsec > 0``): the pointing follows the ACIS Lissajous pattern,
16" peak to peak (amplitude 8") with periods 1000 s (chip y) and 707.1 s (chip z) (POG
ch. 5, "Dither"), with random phases.  The motion is slow: at most 0.09"/s, 0.28" in a
3.2 s frame and 0.04" in a 0.44 s frame, so within a frame the source is nearly fixed
while its sub-pixel phase changes from frame to frame; each photon is placed at the
pointing of its own arrival time, which models both.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq

# (energy keV, r50 arcsec, r90 arcsec): see the module docstring for the sources
CHANDRA_EE_ANCHORS = ((1.49, 0.42, 1.0), (6.40, 0.45, 2.0))
DITHER_AMPLITUDE_ARCSEC = 8.0
DITHER_PERIODS_S = (1000.0, 707.1)


def _log_expm1(x: float) -> float:
    """log(exp(x) - 1) for x > 0 without overflow."""
    return float(x + np.log1p(-np.exp(-x))) if x > 30 else float(np.log(np.expm1(x)))


def king_from_radii(r50: float, r90: float) -> tuple[float, float]:
    """(r_c, beta) of the King profile with EE(r50) = 0.5 and EE(r90) = 0.9 (same units as r)."""
    if not 0 < r50 < r90:
        raise ValueError(f"expected 0 < r50 < r90, got {r50}, {r90}")
    q = 2.0 * np.log(r90 / r50)

    def f(beta: float) -> float:
        # log of (r90/rc)^2 / (r50/rc)^2, computed stably for beta near 1
        return _log_expm1(np.log(10.0) / (beta - 1.0)) - _log_expm1(np.log(2.0) / (beta - 1.0)) - q

    # the ratio r90/r50 of a King profile runs from sqrt(ln10/ln2) = 1.82 (Gaussian) to infinity
    if q <= np.log(np.log(10.0) / np.log(2.0)) + 1e-9:
        raise ValueError(f"r90/r50 = {r90 / r50:.3f} is narrower than a Gaussian (1.82)")
    beta = brentq(f, 1.0 + 1e-3, 200.0)
    rc = r50 / np.sqrt(np.expm1(np.log(2.0) / (beta - 1.0)))
    return float(rc), float(beta)


def chandra_radii(energy_kev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """50 % and 90 % encircled-energy radii (arcsec) of the on-axis HRMA PSF at energy E (keV)."""
    e = np.clip(np.asarray(energy_kev, dtype=float), CHANDRA_EE_ANCHORS[0][0], 10.0)
    (e0, a0, b0), (e1, a1, b1) = CHANDRA_EE_ANCHORS
    t = (e - e0) / (e1 - e0)
    return a0 + t * (a1 - a0), b0 + t * (b1 - b0)


_GRID_E = np.linspace(CHANDRA_EE_ANCHORS[0][0], 10.0, 86)
_GRID_KING = np.array([king_from_radii(*(float(v) for v in chandra_radii(e))) for e in _GRID_E])


def chandra_king(energy_kev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """King (r_c arcsec, beta) of the Chandra PSF at each energy (interpolated on a 0.1 keV grid)."""
    e = np.clip(np.asarray(energy_kev, dtype=float), _GRID_E[0], _GRID_E[-1])
    return np.interp(e, _GRID_E, _GRID_KING[:, 0]), np.interp(e, _GRID_E, _GRID_KING[:, 1])


def king_encircled_energy(r: np.ndarray, rc: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Fraction of a King profile's photons within radius r (same units as rc)."""
    r, rc, beta = np.asarray(r, float), np.asarray(rc, float), np.asarray(beta, float)
    return 1.0 - (1.0 + (r / rc) ** 2) ** (1.0 - beta)


def chandra_encircled_energy(radius_arcsec: np.ndarray, energy_kev: np.ndarray) -> np.ndarray:
    """Encircled-energy fraction of the on-axis Chandra PSF model within radius (arcsec) at E (keV)."""
    rc, beta = chandra_king(energy_kev)
    return king_encircled_energy(radius_arcsec, rc, beta)


def sample_king(rc: np.ndarray, beta: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(dx, dy) offsets drawn from King profiles (vectorised over rc, beta; inverse radial CDF)."""
    rc, beta = np.broadcast_arrays(np.asarray(rc, float), np.asarray(beta, float))
    u = rng.random(rc.shape)
    r = rc * np.sqrt((1.0 - u) ** (1.0 / (1.0 - beta)) - 1.0)
    phi = rng.random(rc.shape) * 2 * np.pi
    return r * np.cos(phi), r * np.sin(phi)


def dither_offsets(t: np.ndarray, amplitude_arcsec: float, periods_s: tuple[float, float],
                   phases: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Lissajous dither pointing offsets (arcsec) in chip y, z at times t (s)."""
    t = np.asarray(t, dtype=float)
    return (amplitude_arcsec * np.sin(2 * np.pi * t / periods_s[0] + phases[0]),
            amplitude_arcsec * np.sin(2 * np.pi * t / periods_s[1] + phases[1]))
