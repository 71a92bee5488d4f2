"""xillver and relxill composition, checked against independent sums on a synthetic table.

The synthetic table has the official xillver layout (Gamma, A_Fe, logXi, Ecut, Incl;
spectra scaled by 10^logXi with relxill's 1e15/(4 pi) -> norm = 1 convention, i.e.
1e20 x 10^logXi x intensity).  The expected relxill spectrum is built here by a
direct sum over the relativistic kernel's bins, shifting each emission angle's
spectrum exactly (cumulative rebinning), with no FFT and no internal log grid.
"""

from __future__ import annotations

import numpy as np
import pytest

from simxray.io.table_model import TableParameter, write_fits_table
from simxray.models import Model
from simxray.physics.reflection import models as rm
from simxray.physics.reflection.montecarlo import MU_BINS, primary_photons
from simxray.physics.relativity.models import kernel

GAMMA = np.array([1.5, 2.5])
AFE = np.array([1.0, 3.0])
LOGXI = np.array([0.0, 2.0])
ECUT = np.array([100.0, 300.0])
INCL = np.degrees(np.arccos(MU_BINS))
EDGES = np.geomspace(0.05, 1000.0, 801)


def intensity(E, gamma, afe, ecut, mu):
    """Smooth synthetic disk-frame intensity (per unit norm and cos i), photons per keV."""
    bump = np.exp(-np.log(E / 8.0) ** 2 / 2.0) * (1 + 0.3 * mu) * (gamma / 2.0) * (ecut / 300.0) ** 0.1
    line = 0.2 * afe * mu * np.exp(-0.5 * ((E - 6.4) / 0.3) ** 2)
    return bump + line


def bin_integral(lo, hi, *args, n=16):
    x, w = np.polynomial.legendre.leggauss(n)
    e = 0.5 * (hi - lo)[..., None] * x + 0.5 * (hi + lo)[..., None]
    return (intensity(e, *args) @ w) * 0.5 * (hi - lo)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    path = tmp_path_factory.mktemp("xill") / "xillver-synth.fits"
    lo, hi = EDGES[:-1], EDGES[1:]
    rows = []
    for g in GAMMA:
        for a in AFE:
            for lx in LOGXI:
                for ec in ECUT:
                    for mu in MU_BINS:
                        rows.append(1e20 * 10**lx * bin_integral(lo, hi, g, a, ec, mu))
    params = [TableParameter("Gamma", 0, 2, 0.01, 1.5, 1.5, 2.5, 2.5, GAMMA),
              TableParameter("A_Fe", 1, 1, 0.01, 1, 1, 3, 3, AFE),
              TableParameter("logXi", 0, 1, 0.01, 0, 0, 2, 2, LOGXI),
              TableParameter("Ecut", 1, 300, 1, 100, 100, 300, 300, ECUT),
              TableParameter("Incl", 0, 30, 0.1, 0, INCL[0], INCL[-1], 90, INCL)]
    write_fits_table(path, "xillver", params, lo, hi, np.array(rows))
    rm.set_table(path)
    yield path
    rm.reset_table()


def truth(out_edges, shift, g, a, ec, mu):
    """Photons per output bin of the analytic intensity with energies multiplied by ``shift``."""
    e = out_edges / np.asarray(shift)[..., None]
    return bin_integral(e[..., :-1], e[..., 1:], g, a, ec, mu, n=8)


def test_xillver_official_layout(synthetic):
    out = np.geomspace(0.3, 300, 301)
    z, incl = 0.05, INCL[3]
    pars = dict(gamma=2.5, Afe=3.0, Ecut=300.0 / 1.05, logxi=2.0, z=z, Incl=incl, refl_frac=0.7, norm=2.0)
    got = Model("xillver").evaluate(out, pars)
    refl = truth(out, 1 / (1 + z), 2.5, 3.0, 300.0, MU_BINS[3])
    prim = primary_photons(out * (1 + z), 2.5, 300.0)
    exp = 2.0 * (0.7 * MU_BINS[3] * refl + prim)
    assert got == pytest.approx(exp, rel=1e-3)
    # reflection only for refl_frac < 0; logXi scaling (table / 10^logXi) and 1e-20
    got2 = Model("xillver").evaluate(out, {**pars, "refl_frac": -0.7})
    assert got2 == pytest.approx(2.0 * 0.7 * MU_BINS[3] * refl, rel=1e-3)
    assert Model("xillver").tables()[0].startswith(str(synthetic.resolve()))


@pytest.mark.parametrize("a,incl,q,z", [(0.998, 30.0, 3.0, 0.0), (0.5, 65.0, 4.5, 0.1)])
def test_relxill_composition(synthetic, a, incl, q, z):
    out = np.geomspace(0.5, 200, 301)
    g, afe, lx, ec, rf, norm = 1.5, 1.0, 0.0, 100.0, 2.0, 1.7
    pars = dict(Index1=q, Index2=3.0, Rbr=15.0, a=a, Incl=incl, Rin=-1.0, Rout=400.0, z=z, gamma=g,
                logxi=lx, Afe=afe, Ecut=ec / (1 + z), refl_frac=rf, norm=norm)
    got = Model("relxill").evaluate(out, pars)
    # direct sum over kernel bins (centre g_k) and angles of the analytic intensity, shifted
    dl = np.log(10) / 2000
    kg = np.exp(np.arange(np.log(0.01), np.log(2.0) + dl, dl))
    ker = kernel(kg, a, incl, -1.0, 400.0, q, 3.0, 15.0, n_mu=10)[0]  # (10, K)
    gc = np.sqrt(kg[1:] * kg[:-1])
    refl = np.zeros(out.size - 1)
    for i in range(10):
        k = np.flatnonzero(ker[i] > 1e-9)
        refl += ker[i, k] @ truth(out, gc[k] / (1 + z), g, afe, ec, MU_BINS[i])
    prim = primary_photons(out * (1 + z), g, ec)
    exp = norm * (rf * np.cos(np.radians(incl)) * refl + prim)
    assert got == pytest.approx(exp, rel=1e-3)
    only = Model("relxill").evaluate(out, {**pars, "refl_frac": -rf})
    assert only == pytest.approx(norm * rf * np.cos(np.radians(incl)) * refl, rel=1e-3)


def test_relxill_batch_equals_single(synthetic, monkeypatch):
    """Batched (threaded row chunks) evaluation equals one call per spectrum."""
    monkeypatch.setenv("SIMXRAY_THREADS", "2")
    out = np.geomspace(0.5, 200, 101)
    rng = np.random.default_rng(4)
    B = 70  # 3 chunks of <= 32 rows: the threaded path
    batch = {"a": rng.uniform(-0.9, 0.998, B), "Incl": rng.uniform(5, 85, B),
             "gamma": rng.uniform(1.5, 2.5, B), "logxi": rng.uniform(0, 2, B), "z": rng.uniform(0, 0.2, B),
             "refl_frac": rng.choice([-1.0, 2.0], B)}
    y = Model("relxill").evaluate(out, batch)
    assert y.shape == (B, 100) and np.all(np.isfinite(y)) and np.all(y >= 0)
    for j in (0, 17, 40, B - 1):
        one = Model("relxill").evaluate(out, {k: v[j] for k, v in batch.items()})
        assert y[j] == pytest.approx(one, rel=1e-10)
    # provenance: the reflection table and the relativistic transfer table
    from simxray.models import REGISTRY

    ident = Model("tbabs*relxill").tables()[0]
    assert ident.startswith(str(synthetic.resolve())) and str(REGISTRY["relline"].info["table"]) in ident


def test_default_config_is_absorbed_relxill():
    """simulations/acis_default.toml: acis_powerlaw's instrument and pileup, tbabs*relxill priors."""
    from pathlib import Path

    from simxray.simulator.config import load_config

    sims = Path(__file__).resolve().parents[1] / "simulations"
    rel, ref = load_config(sims / "acis_default.toml"), load_config(sims / "acis_powerlaw.toml")
    for key in ("spectrum", "arf", "rmf", "background", "exposure", "frame_time", "energy_range",
                "channels", "add_background", "pileup_model", "pileup", "pileup_grid", "chunk_size"):
        assert getattr(rel, key) == getattr(ref, key), key
    assert rel.expression == "tbabs*relxill"
    pr = rel.prior(frame_time=3.24104)
    bounds = dict(zip(pr.names, map(tuple, pr.bounds), strict=True))
    assert bounds == {"nH": (0.01, 10.0), "a": (0.0, 0.998), "Incl": (10.0, 80.0), "gamma": (1.4, 2.8),
                      "Afe": (0.5, 10.0), "refl_frac": (0.1, 10.0), "norm": (1.5e-6, 6e-5),
                      "pileup.alpha": (0.0, 1.0), "pileup.f": (0.85, 1.0)}
    # everything else at relxill's defaults
    fixed = {k: v for k, v in pr.fixed.items() if not k.startswith("pileup.")}
    defaults = {k.split(".")[-1]: v for k, v in Model("relxill").defaults().items()}
    assert fixed and all(defaults[k] == v for k, v in fixed.items())


def test_wrong_reflection_table(shared_dir, tmp_path, monkeypatch):
    """A table that is not in xillver layout, or a missing file: one-line FileFormatError."""
    from simxray.errors import FileFormatError

    for key in ("path", "table"):  # restore the table in use afterwards
        monkeypatch.setitem(rm._STATE, key, rm._STATE[key])
    bad = shared_dir / "data" / "xspec_tables" / "smod100.tmod"
    with pytest.raises(FileFormatError, match="unexpected parameter 'lscale'") as exc:
        rm.set_table(bad)
    assert str(bad) in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(FileFormatError, match="multiplicative|additive"):
        rm.set_table(shared_dir / "data" / "xspec_tables" / "smod000.tmod")
    monkeypatch.setenv(rm.TABLE_ENV, str(tmp_path / "missing.fits"))
    rm.reset_table()
    with pytest.raises(FileFormatError, match="missing.fits"):
        Model("xillver").evaluate(np.geomspace(1, 10, 5))
