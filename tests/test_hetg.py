"""HETG first orders: LSF widths, Gaussian-LSF RMF, joint folding of real 3C 120 spectra."""

from __future__ import annotations

import numpy as np
import pytest

from simxray.errors import FileFormatError, ResponseMismatchError
from simxray.instrument.hetg import (
    HC_KEV_A,
    GratingOrder,
    GratingSet,
    gaussian_lsf_rmf,
    load_grating_order,
    lsf_fwhm,
)
from simxray.models import Model


def test_lsf_fwhm_values():
    # MARX polynomial (Dewey 2001) evaluated by hand at 6 and 12 Angstrom
    assert lsf_fwhm(6.0, "HEG") == pytest.approx(0.010019662 - 6 * 1.4101982e-4 + 36 * 1.4591413e-5
                                                 - 216 * 1.9632994e-7)
    assert lsf_fwhm(12.0, "MEG") == pytest.approx(0.018851868 - 12 * 3.3946575e-4 + 144 * 2.9781558e-5
                                                  - 1728 * 4.1097023e-7)
    # HEG resolves about twice as finely as MEG
    assert 0.4 < lsf_fwhm(6.0, "HEG") / lsf_fwhm(6.0, "MEG") < 0.65


def test_gaussian_rmf_line_position_and_width():
    lam_edges = np.linspace(1.0, 3.0, 801)[::-1]  # descending wavelength with channel, like Chandra
    bin_lo, bin_hi = lam_edges[1:], lam_edges[:-1]
    e_edges = np.sort(HC_KEV_A / lam_edges)
    rmf = gaussian_lsf_rmf(e_edges[:-1], e_edges[1:], bin_lo, bin_hi, "HEG")
    m = rmf.matrix.toarray()
    row = np.argmin(np.abs(0.5 * (e_edges[:-1] + e_edges[1:]) - 6.4))
    lam0 = HC_KEV_A / (0.5 * (e_edges[row] + e_edges[row + 1]))
    centres = 0.5 * (bin_lo + bin_hi)
    p = m[row] / m[row].sum()
    mean = np.sum(p * centres)
    sd = np.sqrt(np.sum(p * (centres - mean) ** 2))
    assert m[row].sum() == pytest.approx(1.0, abs=1e-6)
    assert mean == pytest.approx(lam0, abs=1e-4)
    fwhm = lsf_fwhm(lam0, "HEG")
    assert sd * 2.3548 == pytest.approx(np.sqrt(fwhm**2 + (0.0025**2) / 12 * 5.545), rel=0.05)


@pytest.fixture(scope="module")
def gratings(chandra_dir):
    return GratingSet.from_files([chandra_dir / f"3c120_{p}_{o}.pha.gz" for p in ("heg", "meg") for o in ("-1", "1")])


def test_joint_folding_of_four_orders(gratings):
    """A power law fitted by normalisation alone in 0.8-7 keV agrees across the four orders."""
    assert [o.name for o in gratings.orders] == ["heg_-1", "heg_+1", "meg_-1", "meg_+1"]
    assert gratings.orders[0].spectrum.frame_time == pytest.approx(2.44104)
    mus = gratings.fold(Model("powerlaw"), {"PhoIndex": 1.7, "norm": 1.0})
    norms = []
    for o, mu, mask in zip(gratings.orders, mus, gratings.masks(0.8, 7.0), strict=True):
        assert mu.shape == o.spectrum.counts.shape
        norms.append(o.spectrum.counts[mask].sum() / mu[mask].sum())
    norms = np.array(norms)
    assert np.ptp(norms) / norms.mean() < 0.05
    assert 5e-3 < norms.mean() < 5e-2  # 3C 120: ~1e-2 photons/keV/cm^2/s at 1 keV


def test_mismatched_orders_are_refused(chandra_dir, gratings, tmp_path):
    o = gratings.orders[0]
    short = GratingOrder(o.name, o.spectrum, o.part, o.order)
    import copy

    other = copy.copy(o.spectrum)
    other.exposure = o.spectrum.exposure * 0.5
    with pytest.raises(ResponseMismatchError, match="EXPOSURE"):
        GratingSet([short, GratingOrder("x", other, "HEG", 1)])
    with pytest.raises(ResponseMismatchError, match="ANCRFILE"):
        load_grating_order(chandra_dir / "3c120_heg_1.pha.gz", arf=chandra_dir / "arf.fits")
    with pytest.raises(FileFormatError, match="BIN_LO"):
        load_grating_order(chandra_dir / "source_bin10.pi")
