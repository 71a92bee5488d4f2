"""Chandra HETG first-order spectra: Gaussian line-spread-function RMFs and joint folding.

HEG/MEG first orders are nearly free of pileup, so they measure the source
spectrum that the piled zeroth order or ACIS imaging spectrum distorts.

Line-spread function: FWHM(lambda) = c0 + c1 lambda + c2 lambda^2 + c3 lambda^3 (Angstrom),
the MARX grating-model fit (Dewey 2001) quoted in docs/PHYSICS:

    MEG: 0.018851868, -3.3946575e-4, 2.9781558e-5, -4.1097023e-7
    HEG: 0.010019662, -1.4101982e-4, 1.4591413e-5, -1.9632994e-7

A Gaussian of that FWHM (wings ignored) is enough for continuum work.  Grating
channels are wavelength bins (BIN_LO, BIN_HI in Angstrom, usually descending
with channel number); the matching grating ARF has one energy bin per channel.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from astropy.io import fits
from scipy.special import ndtr

from ..errors import FileFormatError, ResponseMismatchError
from ..io.ogip import RMF, Spectrum, read_pha

HC_KEV_A = 12.398419843320026  # h c in keV Angstrom
LSF_FWHM_COEFFS = {
    "HEG": (0.010019662, -1.4101982e-4, 1.4591413e-5, -1.9632994e-7),
    "MEG": (0.018851868, -3.3946575e-4, 2.9781558e-5, -4.1097023e-7),
}
TG_PART = {1: "HEG", 2: "MEG"}


def lsf_fwhm(wavelength: np.ndarray, part: str) -> np.ndarray:
    """First-order line-spread-function FWHM (Angstrom) at ``wavelength`` (Angstrom)."""
    c = LSF_FWHM_COEFFS[part.upper()]
    lam = np.asarray(wavelength, dtype=float)
    return c[0] + lam * (c[1] + lam * (c[2] + lam * c[3]))


def gaussian_lsf_rmf(energ_lo: np.ndarray, energ_hi: np.ndarray, bin_lo: np.ndarray, bin_hi: np.ndarray,
                     part: str, order: int = 1, nsigma: float = 6.0) -> RMF:
    """RMF (M energies x C wavelength channels) with a Gaussian LSF of the MARX FWHM.

    ``bin_lo/bin_hi`` are the channels' wavelength bounds (Angstrom) in channel
    order; the FWHM scales as 1/|order| in wavelength for higher orders.
    """
    lam = HC_KEV_A / (0.5 * (np.asarray(energ_lo) + np.asarray(energ_hi)))
    sigma = lsf_fwhm(lam, part) / abs(order) / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    lo, hi = np.asarray(bin_lo, float), np.asarray(bin_hi, float)
    descending = lo[0] > lo[-1]
    order_idx = np.argsort(lo)  # channels sorted by increasing wavelength
    slo, shi = lo[order_idx], hi[order_idx]
    width = int(np.ceil(2 * nsigma * sigma.max() / np.min(shi - slo))) + 2
    start = np.clip(np.searchsorted(shi, lam - nsigma * sigma) , 0, max(lo.size - width, 0))
    cols = start[:, None] + np.arange(width)[None, :]
    cols = np.minimum(cols, lo.size - 1)
    vals = ndtr((shi[cols] - lam[:, None]) / sigma[:, None]) - ndtr((slo[cols] - lam[:, None]) / sigma[:, None])
    vals[cols != start[:, None] + np.arange(width)[None, :]] = 0.0
    rows = np.repeat(np.arange(lam.size), width)
    chan = order_idx[cols.ravel()]
    mat = sp.csr_matrix((vals.ravel(), (rows, chan)), shape=(lam.size, lo.size))
    mat.eliminate_zeros()
    e_min, e_max = HC_KEV_A / hi, HC_KEV_A / lo
    return RMF(path=None, energ_lo=np.asarray(energ_lo, float), energ_hi=np.asarray(energ_hi, float),
               e_min=e_min, e_max=e_max, matrix=mat, offset=1,
               header={"LSF": f"gaussian MARX FWHM {part} order {order}", "DESCENDING": bool(descending)})


def _bins(path: Path) -> tuple[np.ndarray, np.ndarray, int | None, int | None]:
    with fits.open(path) as h:
        ext = h[1]
        names = [n.upper() for n in ext.columns.names]
        if "BIN_LO" not in names or "BIN_HI" not in names:
            raise FileFormatError("expected BIN_LO and BIN_HI wavelength columns of a grating spectrum",
                                  path=path, field="SPECTRUM.BIN_LO")
        tg_m = ext.header.get("TG_M")
        tg_part = ext.header.get("TG_PART")
        return np.asarray(ext.data["BIN_LO"], float), np.asarray(ext.data["BIN_HI"], float), tg_m, tg_part


@dataclass
class GratingOrder:
    """One grating arm and order: spectrum, ARF and a (built) RMF."""

    name: str
    spectrum: Spectrum
    part: str
    order: int

    @property
    def exposure(self) -> float:
        return self.spectrum.exposure


def load_grating_order(pha: str | os.PathLike, arf: str | os.PathLike | None = None) -> GratingOrder:
    """Read a first-order grating PHA (type I) with its ARF and a Gaussian-LSF RMF."""
    path = Path(pha)
    lo, hi, tg_m, tg_part = _bins(path)
    if tg_part not in TG_PART or tg_m is None:
        raise FileFormatError("expected TG_PART 1 (HEG) or 2 (MEG) and TG_M in the header",
                              path=path, field="TG_PART")
    part = TG_PART[int(tg_part)]
    spec = read_pha(path, arf=arf, rmf="none") if arf is not None else read_pha(path, rmf="none")
    if spec.arf is None:
        raise FileFormatError("no grating ARF found; expected ANCRFILE beside the spectrum or arf=",
                              path=path, field="ANCRFILE")
    if spec.arf.n_energies != lo.size:
        raise ResponseMismatchError(f"ARF has {spec.arf.n_energies} energy bins but the spectrum has "
                                    f"{lo.size} wavelength channels; expected one bin per channel",
                                    path=path, field="ANCRFILE")
    spec.rmf = gaussian_lsf_rmf(spec.arf.energ_lo, spec.arf.energ_hi, lo, hi, part, int(tg_m))
    name = f"{part.lower()}_{int(tg_m):+d}"
    return GratingOrder(name=name, spectrum=spec, part=part, order=int(tg_m))


class GratingSet:
    """Joint folding of several grating orders (e.g. HEG/MEG ±1) of one observation."""

    def __init__(self, orders: list[GratingOrder]):
        if not orders:
            raise FileFormatError("expected at least one grating order", field="orders")
        exps = np.array([o.exposure for o in orders])
        if np.ptp(exps) > 0.01 * exps.max():
            raise ResponseMismatchError(
                f"grating orders have exposures {', '.join(f'{e:.0f}' for e in exps)} s; "
                "expected one observation (within 1 %)", field="EXPOSURE")
        self.orders = orders
        from .response import Response

        self.responses = [Response.from_spectrum(o.spectrum) for o in orders]

    @classmethod
    def from_files(cls, phas: list[str | os.PathLike]) -> GratingSet:
        return cls([load_grating_order(p) for p in phas])

    @property
    def counts(self) -> list[np.ndarray]:
        return [o.spectrum.counts for o in self.orders]

    def fold(self, model, params: dict, lo: float = 0.5, hi: float = 8.0) -> list[np.ndarray]:
        """Expected counts per order (list of (B, C) or (C,)) for a model expression."""
        out = []
        for r in self.responses:
            flux = model.evaluate(r.edges, params)
            out.append(np.asarray(r.fold(flux)))
        return out

    def masks(self, lo: float = 0.5, hi: float = 8.0) -> list[np.ndarray]:
        """Channels of each order with nominal energies inside [lo, hi] keV."""
        return [r.channel_mask(lo, hi) for r in self.responses]
