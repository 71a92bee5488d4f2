"""On-axis Chandra mirror (HRMA) PSF and ACIS dither for the event-level simulator.

Two PSFs: ``psf="chandra"`` (below), built from published encircled energies measured on
sky images, and ``psf="hrma"`` (:func:`sample_hrma`, end of this module), the focal-plane
PSF as MARX ray-traces it, which is what MARX's ``marxpileup`` sees.

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


# --------------------------------------------------------------------------------------
# psf="hrma": the focal-plane HRMA PSF as MARX ray-traces it (what marxpileup sees)
# --------------------------------------------------------------------------------------
# MARX (Chandra-MARX/marx) blurs each mirror's surface normal by a Gaussian angle about a
# random axis (marx/libsrc/hrma.c, blur_normal); the sigmas are the parameters P1Blur ..
# H6Blur of marx/par/marx.par (arcsec), shells 1, 3, 4, 6.  Only the tilt component in the
# plane of incidence deflects the reflected ray (by twice the tilt; the other changes the
# direction by 2 sin(grazing) times the tilt), so each reflection moves the photon on the
# focal plane radially by 2 sigma g sin(psi) (g standard normal, psi uniform).  Aspect
# blur (AspectBlur) is applied by MARX to sky coordinates only, and there is no pixel
# randomisation in the detector plane, so the focal-plane PSF is sharper than the
# published encircled energies measured on sky images (psf="chandra").
MARX_BLUR_P_ARCSEC = (0.303427, 0.0951899, 0.178899, 0.151085)
MARX_BLUR_H_ARCSEC = (0.0051428, 0.0713614, 0.0101367, 0.0239287)
# paraboloid radii rho0 (mm) of shells 1, 3, 4, 6 (marx/data/hrma/EKCHDOS02.rdb); focal length (mm)
HRMA_RHO0_MM = (606.86081, 488.46244, 431.26226, 320.56978)
HRMA_FOCAL_MM = 10070.0
# Scattering wings: on-orbit fit psi(theta) = a (theta/10")^-gamma exp(-c theta) (arcsec^-2) of
# the on-axis HRMA wings (T. J. Gaetz, "Assessing the Chandra PSF wings: on-orbit calibration",
# Her X-1, ObsID 3662; cxc.harvard.edu/cal/Hrma/psf/wing_analysis/herx1_wings.html, Table 2):
# (band centre keV, gamma, a, c).  MARX's scattering factors (H1ScatFactor ...) were tuned to
# the flight wings; this law is used from HRMA_WING_RMIN_ARCSEC outwards.
HRMA_WINGS = ((1.5, 1.972, 7.476e-06, 6.750e-04), (2.5, 1.840, 1.012e-05, 1.213e-03),
              (3.5, 1.760, 1.875e-05, 1.963e-03), (4.5, 1.749, 2.569e-05, 1.982e-03),
              (5.5, 1.902, 3.471e-05, 1.783e-03), (6.5, 1.948, 4.017e-05, 1.844e-03),
              (7.5, 2.137, 4.909e-05, 0.0))
HRMA_WING_RMIN_ARCSEC = 1.0
_WING_THETA = np.logspace(np.log10(HRMA_WING_RMIN_ARCSEC), np.log10(1000.0), 1500)
_WING_E = np.linspace(0.3, 10.0, 98)


def iridium_reflectivity(grazing_rad: np.ndarray, energy_kev: np.ndarray, f1: float = 72.0,
                         beta_over_delta: float = 0.15) -> np.ndarray:
    """Fresnel reflectivity of a smooth iridium surface (22.56 g/cm^3) at a grazing angle (rad).

    Approximation: constant scattering factor f1 (electrons per atom) and absorption
    ratio beta/delta, adequate above the Ir M edges (~3 keV) for the relative weights of
    the four shells; not an effective-area model.
    """
    lam_cm = 12.39842 / np.asarray(energy_kev, float) * 1e-8
    n_atoms = 22.56 / 192.217 * 6.02214e23
    delta = 2.8179403e-13 * lam_cm ** 2 * n_atoms * f1 / (2 * np.pi)
    n = 1.0 - delta - 1j * beta_over_delta * delta
    s, c = np.sin(grazing_rad), np.cos(grazing_rad)
    kz = np.sqrt(n ** 2 - c ** 2)
    return np.abs((s - kz) / (s + kz)) ** 2


def hrma_shell_weights(energy_kev: np.ndarray) -> np.ndarray:
    """Fraction of focused photons from shells 1, 3, 4, 6 at each energy, shape (n, 4).

    Geometric aperture of a shell ~ rho0^2 (its annulus width grows with rho0), times the
    two-bounce reflectivity at the mean grazing angle rho0 / (4 F).
    """
    rho = np.asarray(HRMA_RHO0_MM)
    e = np.atleast_1d(np.asarray(energy_kev, float))
    w = rho[None, :] ** 2 * iridium_reflectivity(rho[None, :] / (4 * HRMA_FOCAL_MM), e[:, None]) ** 2
    return w / w.sum(axis=1, keepdims=True)


def hrma_wing_table(energy_kev: float, r_min: float = HRMA_WING_RMIN_ARCSEC) -> tuple[np.ndarray, np.ndarray]:
    """(theta arcsec, cumulative fraction of all photons scattered beyond r_min out to theta)."""
    t = np.asarray(HRMA_WINGS)
    g, a, c = (np.interp(energy_kev, t[:, 0], t[:, j]) for j in (1, 2, 3))
    th = _WING_THETA[_WING_THETA >= r_min]
    dens = 2 * np.pi * th * a * (th / 10.0) ** -g * np.exp(-c * th)
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(th))])
    return th, cum


_WING_TABLES = [hrma_wing_table(float(e)) for e in _WING_E]
_WING_FRACTION = np.array([tab[1][-1] for tab in _WING_TABLES])


def hrma_wing_fraction(energy_kev: np.ndarray) -> np.ndarray:
    """Fraction of photons in the scattering wings beyond 1 arcsec at energy E (keV)."""
    return np.interp(np.asarray(energy_kev, float), _WING_E, _WING_FRACTION)


def sample_hrma(energy_kev: np.ndarray, rng: np.random.Generator,
                wings: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(dx, dy) focal-plane offsets (arcsec) of photons of energy E from the MARX-like HRMA model.

    Core: a shell drawn by :func:`hrma_shell_weights`, then the radial deflection
    2 (sigma_P g1 sin psi1 + sigma_H g2 sin psi2) of MARX's normal blur along a uniform
    azimuth.  Wings (``wings=True``): with probability :func:`hrma_wing_fraction` the photon
    is scattered to a radius drawn from the on-orbit wing law beyond 1 arcsec.
    """
    e = np.asarray(energy_kev, float)
    n = e.size
    r = np.empty(n)
    k = np.clip(np.searchsorted(_WING_E, e), 0, _WING_E.size - 1)
    wing = rng.random(n) < _WING_FRACTION[k] if wings else np.zeros(n, dtype=bool)
    for j in np.unique(k[wing]):
        sel = wing & (k == j)
        th, cum = _WING_TABLES[j]
        r[sel] = np.interp(rng.random(int(sel.sum())) * cum[-1], cum, th)
    core = ~wing
    m = int(core.sum())
    cw = np.cumsum(hrma_shell_weights(e[core]), axis=1)
    shell = (rng.random(m)[:, None] > cw[:, :-1]).sum(axis=1)
    sp, sh = np.asarray(MARX_BLUR_P_ARCSEC)[shell], np.asarray(MARX_BLUR_H_ARCSEC)[shell]
    r[core] = 2.0 * (sp * rng.normal(size=m) * np.sin(2 * np.pi * rng.random(m))
                     + sh * rng.normal(size=m) * np.sin(2 * np.pi * rng.random(m)))
    phi = rng.random(n) * 2 * np.pi
    return r * np.cos(phi), r * np.sin(phi)
