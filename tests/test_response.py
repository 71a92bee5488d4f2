"""Response folding (ARF × exposure, RMF) against Sherpa's evaluation of the same model."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from simxray.errors import ParameterError, ResponseMismatchError
from simxray.instrument.response import Response
from simxray.io.ogip import read_arf, read_pha, read_rmf
from simxray.physics.continuum import powerlaw_flux

ui = pytest.importorskip("sherpa.astro.ui")
logging.getLogger("sherpa").setLevel(logging.ERROR)

# (PhoIndex, norm) of the power laws folded in one batch
POWERLAWS = [(1.7, 2e-4), (1.0, 5e-5), (2.6, 1e-3), (0.3, 1e-6)]


@pytest.fixture(scope="module")
def pha_path(chandra_dir):
    return chandra_dir / "source_bin10.pi"


@pytest.fixture(scope="module")
def response(pha_path):
    return Response.from_spectrum(read_pha(pha_path), device="cpu")


@pytest.fixture(scope="module")
def sherpa_data(pha_path):
    ui.clean()
    ui.load_pha("sx_fold", str(pha_path))
    yield ui.get_data("sx_fold")
    ui.clean()


def _sherpa_fold(data, gamma: float, norm: float) -> np.ndarray:
    """Sherpa's expected counts per channel for powlaw1d through the PHA's ARF and RMF."""
    pl = ui.create_model_component("powlaw1d", "sx_pl")
    pl.gamma, pl.ampl = gamma, norm
    ui.set_source("sx_fold", pl)
    return data.eval_model(ui.get_model("sx_fold"))


def test_fold_matches_sherpa_channel_by_channel(response, sherpa_data):
    g = np.array([[p[0]] for p in POWERLAWS])
    k = np.array([[p[1]] for p in POWERLAWS])
    mine = response.fold(powerlaw_flux(response.edges, g, k))
    assert mine.shape == (len(POWERLAWS), 1024)
    for row, (gamma, norm) in zip(mine, POWERLAWS, strict=True):
        ref = _sherpa_fold(sherpa_data, gamma, norm)
        assert ref.sum() > 0
        nz = ref > 0
        assert np.array_equal(nz, row > 0)  # the same channels are empty
        np.testing.assert_allclose(row[nz], ref[nz], rtol=1e-6, atol=0)
        # and much tighter than required: both are the same float64 sums
        assert np.max(np.abs(row[nz] / ref[nz] - 1)) < 1e-10


def test_numpy_torch_single_and_sparse_agree(response):
    flux = powerlaw_flux(response.edges, np.array([[1.5], [2.0]]), np.array([[1e-3], [3e-4]]))
    dense = response.fold(flux)
    single = response.fold(flux[1])
    assert single.shape == (1024,) and np.allclose(single, dense[1], rtol=1e-13, atol=0)
    t = torch.as_tensor(flux, dtype=torch.float64)
    out = response.fold(t)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), dense, rtol=1e-13, atol=1e-300)
    sparse = response.fold(flux, matrix_format="sparse")
    np.testing.assert_allclose(sparse, dense, rtol=1e-10, atol=1e-12 * dense.max())
    f32 = response.fold(t.float())
    assert f32.dtype == torch.float32
    np.testing.assert_allclose(f32.numpy(), dense, rtol=1e-4, atol=1e-6 * dense.max())
    sl = response.channel_slice(0.5, 8.0)
    for fmt in ("dense", "sparse"):
        part = response.fold(flux, channels=sl, matrix_format=fmt)
        np.testing.assert_allclose(part, dense[:, sl], rtol=1e-10, atol=1e-12 * dense.max())
    # counts already multiplied by ARF x exposure fold through the RMF alone
    per_bin = flux * response.specresp * response.exposure
    np.testing.assert_allclose(response.fold_counts_per_bin(per_bin), dense, rtol=1e-12, atol=0)


def test_total_counts_conserved_through_rmf(response):
    """Counts folded through the RMF sum to Σ RMF-row-sum × counts per bin (no counts invented)."""
    a = np.linspace(1.0, 2.0, response.n_energies)
    rowsum = np.asarray(response.matrix.sum(axis=1)).ravel()
    assert np.isclose(response.fold_counts_per_bin(a).sum(), (a * rowsum).sum(), rtol=1e-12)


def test_grids_and_channel_helpers(response, chandra_dir):
    rmf = read_rmf(chandra_dir / "rmf.fits")
    assert response.n_energies == 1077 and response.n_channels == 1024
    assert response.edges.shape == (1078,)
    assert response.edges[0] == pytest.approx(0.23) and response.edges[-1] == pytest.approx(11.0)
    assert np.array_equal(response.channel, np.arange(1, 1025))
    mask = response.channel_mask(0.5, 7.0)
    assert np.all(rmf.e_max[mask] > 0.5) and np.all(rmf.e_min[mask] < 7.0)
    assert not np.any((rmf.e_max[~mask] > 0.5) & (rmf.e_min[~mask] < 7.0))
    sl = response.channel_slice(0.5, 7.0)
    assert np.array_equal(np.flatnonzero(mask), np.arange(sl.start, sl.stop))
    assert np.array_equal(response.channel_index([1, 35, 1024]), [0, 34, 1023])
    with pytest.raises(ParameterError, match="channel"):
        response.channel_index([0])
    with pytest.raises(ParameterError, match="lo < hi"):
        response.channel_mask(7.0, 0.5)


def test_from_files_and_errors(chandra_dir, response):
    r = Response.from_files(chandra_dir / "arf.fits", chandra_dir / "rmf.fits", 1000.0, device="cpu")
    assert r.exposure == 1000.0
    flux = np.ones(r.n_energies) * 1e-5
    np.testing.assert_allclose(r.fold(flux) * response.exposure / 1000.0, response.fold(flux), rtol=1e-12)
    with pytest.raises(ResponseMismatchError, match=r"expected \(M,\) or \(B, M\)"):
        r.fold(np.ones(10))
    with pytest.raises(ParameterError, match="positive exposure"):
        Response.from_files(chandra_dir / "arf.fits", chandra_dir / "rmf.fits", 0.0)
    arf = read_arf(chandra_dir / "arf.fits")
    rmf = read_rmf(chandra_dir / "rmf.fits")
    arf.energ_lo, arf.energ_hi, arf.specresp = arf.energ_lo[1:], arf.energ_hi[1:], arf.specresp[1:]
    with pytest.raises(ResponseMismatchError, match="ENERG_LO"):
        Response.from_arf_rmf(arf, rmf, 1.0)
