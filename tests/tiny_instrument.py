"""A tiny synthetic instrument for the campaign tests (test_campaign, test_faults): 60 energies
x 40 channels with Gaussian redistribution, and a campaign config on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

from simxray.io.ogip import write_pha


def make_instrument(d: Path, M: int = 60, C: int = 40) -> Path:
    """ARF, RMF, source and background PHA in ``d``; returns the source PHA path."""
    e = np.linspace(0.3, 10.0, M + 1)
    lo, hi = e[:-1], e[1:]
    area = 50.0 + 300.0 * np.exp(-0.5 * ((0.5 * (lo + hi) - 1.5) / 2.0) ** 2)
    arf = fits.BinTableHDU.from_columns([
        fits.Column("ENERG_LO", "E", array=lo), fits.Column("ENERG_HI", "E", array=hi),
        fits.Column("SPECRESP", "E", array=area)], name="SPECRESP")
    fits.HDUList([fits.PrimaryHDU(), arf]).writeto(d / "arf.fits")
    eb = np.linspace(0.3, 10.0, C + 1)
    mid = 0.5 * (lo + hi)
    chan_mid = 0.5 * (eb[:-1] + eb[1:])
    mat = np.exp(-0.5 * ((chan_mid[None, :] - mid[:, None]) / 0.3) ** 2)
    mat /= mat.sum(1, keepdims=True)
    m = fits.BinTableHDU.from_columns([
        fits.Column("ENERG_LO", "E", array=lo), fits.Column("ENERG_HI", "E", array=hi),
        fits.Column("N_GRP", "I", array=np.ones(M)), fits.Column("F_CHAN", "I", array=np.ones(M)),
        fits.Column("N_CHAN", "I", array=np.full(M, C)),
        fits.Column("MATRIX", f"{C}E", array=mat.astype(np.float32))], name="MATRIX")
    m.header["DETCHANS"] = C
    m.header["TLMIN4"] = 1
    ebh = fits.BinTableHDU.from_columns([
        fits.Column("CHANNEL", "J", array=np.arange(1, C + 1)),
        fits.Column("E_MIN", "E", array=eb[:-1]), fits.Column("E_MAX", "E", array=eb[1:])],
        name="EBOUNDS")
    ebh.header["DETCHANS"] = C
    fits.HDUList([fits.PrimaryHDU(), m, ebh]).writeto(d / "rmf.fits")
    write_pha(d / "bkg.pi", np.full(C, 4), 1e4, backscal=10.0, background=True)
    return write_pha(d / "src.pi", np.zeros(C, int), 1e4, respfile="rmf.fits", ancrfile="arf.fits",
                     backfile="bkg.pi", frame_time=3.24104, backscal=1.0)


def campaign_toml(name: str, chunk: int, pileup: str = "jdpileup", f_prior: bool = True) -> str:
    """A campaign config on :func:`make_instrument`'s files: powerlaw (PhoIndex uniform 1-3,
    norm log-uniform 1e-3-0.1), the background added, pileup model ``pileup`` with alpha
    (and, ``f_prior``, f) uniform."""
    f = 'f = { dist = "uniform", low = 0.85, high = 1.0 }\n' if f_prior else ""
    return f"""
[simulation]
name = "{name}"
chunk_size = {chunk}

[instrument]
spectrum = "src.pi"
energy_range = [0.5, 8.0]
add_background = true

[model]
expression = "powerlaw"

[model.parameters]
PhoIndex = {{ dist = "uniform", low = 1.0, high = 3.0 }}
norm = {{ dist = "loguniform", low = 1e-3, high = 1e-1 }}

[pileup]
model = "{pileup}"
grid = "256:15"
alpha = {{ dist = "uniform", low = 0.0, high = 1.0 }}
""" + f
