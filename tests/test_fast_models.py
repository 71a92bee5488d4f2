"""The batched fast paths of the default model (powerlaw, tbabs) and the simulator.

References are computed in extended precision (numpy longdouble, 64-bit mantissa on
x86) from the same formulas, so these tests pin the round-off of the fast paths; the
physics is tested in test_models.py and test_absorption.py.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from simxray.instrument.pileup import KernelGrid
from simxray.physics import absorption as A
from simxray.physics.continuum import powerlaw_flux

LONG = np.finfo(np.longdouble).eps < 1e-18
needs_long = pytest.mark.skipif(not LONG, reason="longdouble is not extended precision here")
KERNEL_EDGES = KernelGrid().edges[:3006]  # Sherpa's kernel grid up to 11 keV
REPO = Path(__file__).resolve().parents[1]

warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


def _powerlaw_long(edges, gamma, norm):
    e = edges.astype(np.longdouble)
    s = 1 - np.asarray(gamma, np.longdouble)[:, None]
    lo, hi = e[None, :-1], e[None, 1:]
    d = np.log(hi / lo)
    safe = np.where(s == 0, 1, s)
    return norm * np.where(s == 0, d, np.expm1(s * d) * lo**s / safe)


@needs_long
@pytest.mark.parametrize("edges", [KERNEL_EDGES, np.geomspace(0.01, 1000.0, 5001)])
def test_powerlaw_round_off(edges):
    gamma = np.array([-3.0, 0.0, 0.9, 0.96, 1.0 - 1e-7, 1.0, 1.0 + 1e-9, 1.001, 1.04, 1.05,
                      1.5, 2.0, 3.0, 10.0])
    got = powerlaw_flux(edges, gamma[:, None], np.full((gamma.size, 1), 2.5))
    rel = np.abs(got / _powerlaw_long(edges, gamma, 2.5) - 1).astype(float)
    # difference of powers: ~1e-16 / (|1 - gamma| ln(hi/lo)); near gamma = 1 the expm1 form
    assert rel.max() < 2e-11, rel.max(axis=1)
    assert rel[[4, 5, 6, 7, 8]].max() < 1e-12  # |1 - gamma| < 0.05: exact in the limit


def test_powerlaw_shapes_and_zero_edge():
    e = np.array([0.0, 0.5, 1.0, 2.0])
    out = powerlaw_flux(e, np.array([[2.0], [0.5]]), np.array([[1.0]]))  # numpy formula
    assert out.shape == (2, 3) and np.isinf(out[0, 0]) and out[1, 0] == pytest.approx(0.5**0.5 / 0.5)
    one = powerlaw_flux(e[1:], np.array([[2.0]]), 3.0)
    np.testing.assert_allclose(one, [[3.0, 1.5]], rtol=1e-14)


@needs_long
@pytest.mark.parametrize("model", ["tbabs", "wabs"])
def test_transmission_round_off_and_deep_absorption(model):
    edges = KERNEL_EDGES
    nh = np.array([0.0, 1e-8, 0.01, 0.3, 3.0, 10.0, 1e3, 1e6])[:, None]
    got = A.transmission(edges, nh, model)
    nodes, w, starts = A.bin_quadrature(edges, A.model_edges(model))
    sig = A.cross_section(model, nodes).astype(np.longdouble) * 1e22
    ref = np.add.reduceat(np.exp(-nh.astype(np.longdouble) * sig) * w, starts, axis=1).astype(float)
    np.testing.assert_array_equal(got[0], 1.0)  # no absorber: exactly 1
    assert np.all((got >= 0) & (got <= 1))
    # relative precision ~1e-16 (1 + tau) (the exponent's own round-off) wherever the
    # transmission is above 1e-280; below it within 1e-297 (node terms < 1e-300 are 0)
    err = np.abs(got - ref)
    assert np.max(err) < 1e-15
    assert np.all(err <= 2e-13 * ref + 1e-297)
    mid = ref > 1e-8  # tau < ~18
    assert np.max(err[mid] / ref[mid]) < 1e-14
    assert not np.any((got > 0) & (got < np.finfo(float).tiny))
    assert np.all(got[-1, (edges[:-1] > 0.1) & (edges[1:] < 1.0)] == 0.0)  # 1e28 cm^-2, 0.1-1 keV


def test_bin_averager_groups_extra_nodes():
    # bins split at edges and into several pieces (> 2 nodes) add up to the reduceat sum
    edges = np.array([0.01, 0.1, 0.45, 0.52, 0.545, 0.60, 0.70, 0.73, 0.90, 2.0, 20.0])
    nodes, w, starts = A.bin_quadrature(edges, A.model_edges("tbabs"))
    assert np.diff(np.r_[starts, nodes.size]).max() > 2
    sig = A.tbabs_cross_section(nodes) * 1e22
    nh = np.array([[0.05], [0.7], [4.0]])
    ref = np.add.reduceat(np.exp(-nh * sig) * w, starts, axis=1)
    np.testing.assert_allclose(A.BinAverager(sig, w, starts)(nh), ref, rtol=1e-13, atol=1e-300)


def test_simulator_kernel_source_skips_bins_without_area():
    from simxray.instrument.pileup import get_pileup
    from simxray.simulator.config import load_config
    from simxray.simulator.simulator import Simulator

    sim = Simulator.from_config(load_config(REPO / "simulations" / "acis_powerlaw.toml"))
    theta = sim.prior.sample(6, np.random.default_rng(3))
    mp, pp = sim.split(theta)
    src = sim._kernel_source(mp, theta.shape[0])
    pile = get_pileup(sim.response, sim.pileup_grid)
    full = sim.model.evaluate(pile.source_edges, mp)
    lo = int(np.flatnonzero(pile.arf > 0)[0])
    assert lo > 0 and np.all(src[:, :lo].numpy() == 0.0)
    np.testing.assert_array_equal(src[:, lo:].numpy(), full[:, lo:])  # same values, to the bit
    with torch.no_grad():
        from simxray.instrument.pileup import PileupParams

        params = PileupParams.from_mapping({k: np.ascontiguousarray(v) for k, v in pp.items()})
        a = pile(src, params).counts
        b = pile(torch.as_tensor(np.array(full)), params).counts
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # bins without area change nothing
    mu = sim.expected(theta)
    assert mu.shape == (6, sim.n_channels) and np.all(np.isfinite(mu)) and np.all(mu >= 0)
