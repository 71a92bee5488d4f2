"""The kernel's corner: high spin, near edge-on (a >= 0.99, i = 75-87 deg), between table nodes.

Held-out checks of the shipped transfer-function table: relline at (a, i) points half-way
between the table's nodes against

* transfer functions traced at exactly that (a, i) with finer radial, g* and
  evaluation grids (``transfer.transfer_functions``, no table interpolation), and
* (slow) an image-plane ray tracing that shares nothing with the table code but the
  closed-form geodesics (``raytrace.image_plane_line``: a polar grid of rays, each
  grid cell's photons, eps(r) g^3 dalpha dbeta, spread over the energies its corners see).

relxill's own outputs are checked in ``test_relativity.py::test_relxill_reference``.
"""

from __future__ import annotations

import numpy as np
import pytest

from simxray.models import Model, make_grid
from simxray.physics.relativity import models as rm
from simxray.physics.relativity import transfer
from simxray.physics.relativity.raytrace import image_plane_line

EDGES = make_grid("0.1:1000:2000:log")
LINE = 6.4


def l1(a, b):
    return float(np.abs(a - b).sum() / np.abs(b).sum())


def _corner_points():
    """(a, i) half-way between the shipped table's nodes: the two top spin intervals (a >= 0.99) and
    the cos i intervals with i in 75-87 deg, plus i = 87 deg (a node in cos i) between spin nodes."""
    tab = transfer.load_table()
    a_mid = [0.990, round(0.5 * (tab.spin[-2] + tab.spin[-1]), 4)]
    mu_mid = 0.5 * (tab.mu0[1:] + tab.mu0[:-1])
    i_mid = np.degrees(np.arccos(mu_mid))
    i_mid = i_mid[(i_mid >= 75.0) & (i_mid <= 87.0)]
    return tab, a_mid, [float(x) for x in i_mid]


def _relline(table, a, incl, n_fine=rm.N_FINE):
    rin, rout, rbr = rm.resolve_radii(np.array([a]), -1.0, 400.0, 15.0)
    p = rm.line_profile(EDGES, [a], [incl], rin, rout, lambda r, rows: rm.broken_power_law(r, 3.0, 3.0, rbr[rows]),
                        [0.0], [LINE], table=table, n_fine=n_fine)[0]
    return p / p.sum()


def _traced(a, incl):
    """relline from transfer functions traced at exactly (a, incl) (no interpolation in a, i), with
    twice the table's radii and g* cells and 4x the evaluation radii."""
    return _relline(transfer.point_table(a, incl, n_r=96, n_chi=81), a, incl, n_fine=256)


def test_corner_points_lie_between_nodes():
    tab, a_mid, i_mid = _corner_points()
    assert len(i_mid) >= 6 and max(i_mid) > 86.0
    for a in a_mid:
        assert a >= 0.99 and np.min(np.abs(tab.spin - a)) > 1e-3
    for i in i_mid:
        assert np.min(np.abs(tab.mu0 - np.cos(np.radians(i)))) > 5e-3


@pytest.mark.parametrize("k_a,k_i", [(0, -1), (1, -2), (0, 3), (1, 0)])
def test_corner_relline_matches_direct_tracing(k_a, k_i):
    """Between nodes at a >= 0.99 and i = 75-87 deg the table's relline is within 1 % L1 of the
    line traced at exactly that (a, i) (the old table: up to 3.3 %)."""
    tab, a_mid, i_mid = _corner_points()
    a, incl = a_mid[k_a], sorted(i_mid)[k_i]
    assert l1(_relline(tab, a, incl), _traced(a, incl)) < 0.01


def test_corner_relline_at_87_degrees():
    """The inclination limit, between spin nodes (a = 0.993)."""
    tab = transfer.load_table()
    assert l1(_relline(tab, 0.993, 87.0), _traced(0.993, 87.0)) < 0.01


@pytest.mark.slow
def test_corner_against_image_plane_ray_tracing():
    """a = 0.99, i = 86.45 deg (between nodes in a and cos i): the transfer-function tracing and the
    independent image-plane ray tracing (1024^2 rays; its own discretisation error ~0.4 % L1)
    agree, and so does the shipped table's relline."""
    tab, a_mid, i_mid = _corner_points()
    a, incl = 0.990, max(i_mid)
    ray = image_plane_line(a, incl, EDGES, line=LINE, n=1024)
    assert l1(_traced(a, incl), ray) < 0.006
    assert l1(_relline(tab, a, incl), ray) < 0.012
    # and through the public model (simxray model relline ...)
    f = np.atleast_2d(Model("relline").evaluate(EDGES, {"a": a, "Incl": incl}))[0]
    assert l1(f, ray) < 0.012
