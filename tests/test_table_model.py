"""XSPEC table models: reader, evaluation rules, HDF5 conversion, CLI, corrupt files.

References: the XSPEC 12.13.1 / Sherpa outputs quoted in
shared/data/xspec_tables/README; XSPEC values used by Sherpa's own test-suite
(sherpa/astro/xspec/tests/test_xspec.py: testpcfabs.mod evaluated with XSPEC
12.10.1b C++ code, xspec-tablemodel-RCS.mod regression values); and an
independent brute-force re-computation from the raw FITS arrays.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from simxray.cli import main
from simxray.errors import FileFormatError, SimxrayError
from simxray.io.table_model import (
    TableParameter,
    convert_to_hdf5,
    read_table,
    write_fits_table,
)
from simxray.models import Model


@pytest.fixture(scope="module")
def tdir(shared_dir):
    return shared_dir / "data" / "xspec_tables"


# -- independent reference ------------------------------------------------------
def raw(path):
    """Raw arrays straight from the FITS file (no simxray code)."""
    with fits.open(path) as h:
        lo = np.asarray(h["ENERGIES"].data["ENERG_LO"], dtype=float)
        hi = np.asarray(h["ENERGIES"].data["ENERG_HI"], dtype=float)
        pv = np.asarray(h["SPECTRA"].data["PARAMVAL"], dtype=float).reshape(len(h["SPECTRA"].data), -1)
        spec = np.asarray(h["SPECTRA"].data["INTPSPEC"], dtype=float)
    return lo, hi, pv, spec


def brute_rebin(lo, hi, y, edges, additive, below=1.0, above=1.0):
    """Bin-by-bin overlap loop: photon shares (additive) or covered-part averages."""
    out = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        ov = np.clip(np.minimum(hi, b) - np.maximum(lo, a), 0, None)
        ov[ov < 1e-6 * (b - a)] = 0.0  # float32-resolution slivers (see _snap)
        if additive:
            out.append(np.sum(y * ov / (hi - lo)))
        elif ov.sum() > 0:
            out.append(np.sum(y * ov) / ov.sum())
        else:
            out.append(below if b <= lo.min() else above)
    return np.array(out)


def row(pv, *vals):
    return int(np.flatnonzero(np.all(np.isclose(pv, vals, rtol=1e-6, atol=1e-12), axis=1))[0])


# -- README expectations ----------------------------------------------------------
EGRID = np.linspace(0.2, 2.6, 25)
SMOD100_XSPEC = np.array([0, 0, 0, 7.5, 15., 1.5000002, 1.4999993, 1.5000002, 1.5000002, 10.000003,
                          9.999991, 10.000003, 10.000003, 14.000004, 14.000004, 13.999987, 14.000004,
                          14.000004, 37.5, 2., 0, 0, 0, 0])
SMOD000_XSPEC = np.array([0, 0, 0, 7.5, 15., 6., 6., 6., 6., 40., 40., 40., 40., 70., 70., 70., 70., 70.,
                          37.5, 2., 5., 5., 5., 5.])


@pytest.mark.parametrize("name", ["smod100", "smod111"])
def test_additive_readme(tdir, name):
    m = Model(f"table:{tdir / (name + '.tmod')}")
    y = m.evaluate(EGRID)
    # Sherpa's float32 values carry ~1e-6 noise; zeros must be exact zeros
    assert y == pytest.approx(SMOD100_XSPEC, rel=1e-6, abs=1e-12)
    assert np.all(y[SMOD100_XSPEC == 0] == 0)
    assert m.tables()[0].endswith(tuple("0123456789abcdef")) and "sha256:" in m.tables()[0]


def test_multiplicative_readme(tdir):
    m = Model(f"table:{tdir / 'smod000.tmod'}")
    assert m.kind == "mul"
    assert m.evaluate(EGRID) == pytest.approx(SMOD000_XSPEC, rel=1e-6, abs=1e-12)
    # XSPEC: mtable{smod000}*powerlaw(PhoIndex=0), plotted per keV (0.1 keV bins)
    y = Model(f"table:{tdir / 'smod000.tmod'}*powerlaw").evaluate(EGRID, {"PhoIndex": 0.0})
    assert y / 0.1 == pytest.approx(SMOD000_XSPEC, rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("lscale", [0.0, 2.5, 7.3, 10.0])
def test_smod_interpolation_brute_force(tdir, lscale):
    lo, hi, pv, spec = raw(tdir / "smod100.tmod")
    ref_y = spec[0] + lscale / 10.0 * (spec[1] - spec[0])
    edges = np.geomspace(0.3, 3.0, 41)
    ref = brute_rebin(lo, hi, ref_y, edges, True)
    got = Model(f"table:{tdir / 'smod100.tmod'}").evaluate(edges, {"lscale": lscale, "norm": 2.0})
    assert got == pytest.approx(2 * ref, rel=1e-10, abs=1e-12)
    mref = brute_rebin(lo, hi, ref_y, edges, False, below=0.0, above=5.0)
    mgot = Model(f"table:{tdir / 'smod000.tmod'}").evaluate(edges, {"lscale": lscale})
    assert mgot == pytest.approx(mref, rel=1e-10)


def test_redshift_escale_brute_force(tdir):
    lo, hi, _, spec = raw(tdir / "smod111.tmod")
    y = 0.5 * (spec[0] + spec[1])
    z, es = np.array([0.0, 0.5, 0.5]), np.array([1.0, 1.0, 1.3])
    edges = np.linspace(0.1, 3.0, 59)
    got = Model(f"table:{tdir / 'smod111.tmod'}").evaluate(edges, {"Redshift": z, "Escale": es})
    for i in range(3):
        s = es[i] / (1 + z[i])  # observed energy = table energy * Escale / (1 + z)
        ref = brute_rebin(lo * s, hi * s, y, edges, True) / (1 + z[i])
        # edges within float32 resolution of a table edge are snapped onto it: 3e-6
        assert got[i] == pytest.approx(ref, rel=3e-6, abs=1e-12)
    # photons are conserved by the shift, then divided by 1 + z (XSPEC atable)
    assert got[1].sum() == pytest.approx(y.sum() / 1.5, rel=1e-6)


# -- testpcfabs.mod (multiplicative, log-interpolated nH with a zero grid value) -------
def test_testpcfabs_xspec_values(tdir):
    m = Model(f"table:{tdir / 'testpcfabs.mod'}")
    assert [q.parameter.name for q in m.parameters] == ["nH", "fract"]
    assert m.defaults() == {"testpc.nH": 1.0, "testpc.fract": 0.5}
    egrid = np.arange(0.1, 17, 1.0)
    y = m.evaluate(egrid)
    yexp = [0.511674, 0.730111, 0.898625, 0.95572, 0.977472, 0.987328, 0.992138, 0.990245,
            0.992846, 0.994674, 0.995997, 0.996945, 0.997616, 0.998104, 0.998454]
    # 6 significant figures quoted: rounding alone allows 1e-6 relative
    assert y[:-1] == pytest.approx(yexp, rel=1.5e-6)
    assert y[-1] == 1.0  # above the table, no HIELIMIT: unity (XSPEC >= 12.13.1)


@pytest.mark.parametrize("nh,fract", [(2.0, 0.25), (3e-5, 0.95), (0.0, 0.37), (5e-6, 0.5)])
def test_testpcfabs_log_interpolation(tdir, nh, fract):
    lo, hi, pv, spec = raw(tdir / "testpcfabs.mod")
    grid = np.array([0, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1, 10, 100, 1000.])
    i = max(np.searchsorted(grid, nh, side="right") - 1, 0)
    i = min(i, grid.size - 2)
    a, b = grid[i], grid[i + 1]
    t = np.log(nh / a) / np.log(b / a) if (a > 0 and nh > 0) else (nh - a) / (b - a)
    j = min(int(fract / 0.1 + 1e-9), 9)
    u = (fract - j * 0.1) / 0.1
    f = lambda n, fr: spec[row(pv, n, fr)]  # noqa: E731
    ref = ((1 - t) * ((1 - u) * f(a, j * 0.1) + u * f(a, (j + 1) * 0.1))
           + t * ((1 - u) * f(b, j * 0.1) + u * f(b, (j + 1) * 0.1)))
    edges = np.append(lo, hi[-1])  # the table's own bins: no rebinning
    got = Model(f"table:{tdir / 'testpcfabs.mod'}").evaluate(edges, {"nH": nh, "fract": fract})
    assert got == pytest.approx(ref, rel=1e-6)


# -- xspec-tablemodel-RCS.mod (additive, 3 parameters) ---------------------------------
def test_rcs_sherpa_regression(tdir):
    m = Model(f"table:{tdir / 'xspec-tablemodel-RCS.mod'}")
    assert [q.parameter.name for q in m.parameters] == ["tau", "beta", "T", "norm"]
    # XSPEC works in single precision: round the grid as it does
    egrid = np.arange(0.1, 11, 0.01).astype(np.float32).astype(float)
    y = m.evaluate(egrid)
    assert y[0] == pytest.approx(0.27216572, rel=1e-6)
    assert y.max() == pytest.approx(0.3047457, rel=1e-6)
    assert y.min() == 0.0
    assert y[y > 0].min() == pytest.approx(1.2102469e-11, rel=1e-6)
    assert y[967] == pytest.approx(1.2102469e-11, rel=1e-6)
    assert np.array_equal(np.flatnonzero(y <= 0), np.arange(968, 1089))


def test_rcs_trilinear_brute_force(tdir):
    lo, hi, pv, spec = raw(tdir / "xspec-tablemodel-RCS.mod")
    tau, beta, T = 2.5, 0.25, 0.6
    ref = np.zeros_like(spec[0])
    for ta, wt in ((2, 0.5), (3, 0.5)):
        for be, wb in ((0.2, 0.5), (0.3, 0.5)):
            for tt, wT in ((0.5, 0.5), (0.7, 0.5)):
                ref += wt * wb * wT * spec[row(pv, ta, be, tt)]
    edges = np.linspace(0.5, 9.0, 200)
    got = Model(f"table:{tdir / 'xspec-tablemodel-RCS.mod'}").evaluate(
        edges, {"tau": tau, "beta": beta, "T": T, "norm": 3.0})
    # the file's grid values are float32 (0.2 -> 0.200000003): weights differ by ~1e-8
    assert got == pytest.approx(3.0 * brute_rebin(lo, hi, ref, edges, True), rel=1e-6)
    # batched evaluation equals row-by-row evaluation
    batch = Model(f"table:{tdir / 'xspec-tablemodel-RCS.mod'}").evaluate(
        edges, {"tau": [2.5, 7.0], "beta": [0.25, 0.5], "T": [0.6, 1.3], "norm": 3.0})
    assert batch[0] == pytest.approx(got, rel=1e-12)


# -- additional parameters and NXFLTEXP --------------------------------------------------
def _pars(vals, method=0):
    return TableParameter("p", method, 1.0, 0.1, min(vals), min(vals), max(vals), max(vals), np.asarray(vals))


def test_additional_parameters_and_xflt(tmp_path):
    rng = np.random.default_rng(1)
    e = np.linspace(1.0, 2.0, 6)
    P = TableParameter("alpha", 0, 1.0, 0.1, 0.0, 0.0, 2.0, 2.0, np.array([0.0, 1.0, 2.0]))
    A = TableParameter("beta", -1, 0.0, 0.1, -5.0, -5.0, 5.0, 5.0, np.zeros(0))
    spec = rng.uniform(1, 2, (6, 5))  # 3 grid points x NXFLTEXP=2
    add = rng.uniform(0, 1, (1, 6, 5))
    path = write_fits_table(tmp_path / "t.fits", "synth", [P], e[:-1], e[1:], spec,
                            addparams=[A], addspectra=add, nxfltexp=2, xfxp=["inst=a", "inst=b"])
    t = read_table(path)
    assert t.nxfltexp == 2 and [p.name for p in t.addparams] == ["beta"]
    s32, a32 = spec.astype(np.float32).astype(float), add.astype(np.float32).astype(float)
    # alpha = 0.5 between grid points 0 and 1; spectra rows 2*g + xflt
    for xflt in (0, 1):
        ref = 0.5 * (s32[xflt] + s32[2 + xflt]) + 1.5 * 0.5 * (a32[0, xflt] + a32[0, 2 + xflt])
        got = t.evaluate(e, np.array([[0.5]]), add=np.array([[1.5]]), norm=np.array([2.0]), xflt=xflt)
        assert got[0] == pytest.approx(2.0 * ref, rel=1e-12)
    got = Model(f"table:{path}").evaluate(e, {"alpha": 2.0, "beta": -1.0})
    assert got == pytest.approx(s32[4] - a32[0, 4], rel=1e-12)
    h5 = convert_to_hdf5(path, tmp_path / "t.h5")
    assert Model(f"table:{h5}").evaluate(e, {"alpha": 1.3, "beta": 0.7}) == pytest.approx(
        Model(f"table:{path}").evaluate(e, {"alpha": 1.3, "beta": 0.7}), rel=0, abs=0)


# -- HDF5 conversion ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["smod100.tmod", "smod000.tmod", "smod111.tmod", "testpcfabs.mod",
                                  "xspec-tablemodel-RCS.mod"])
def test_hdf5_round_trip(tdir, tmp_path, name):
    import json

    import h5py

    src = tdir / name
    out = convert_to_hdf5(src, tmp_path / "t.h5")
    a, b = read_table(src), read_table(out)
    lazy = read_table(out, in_memory=False)
    for attr in ("name", "unit", "additive", "redshift", "escale", "loelimit", "hielimit", "nxfltexp"):
        assert getattr(a, attr) == getattr(b, attr)
    for x, y in ((a.energ_lo, b.energ_lo), (a.energ_hi, b.energ_hi), (a.paramval, b.paramval),
                 (a._spectra, b._spectra)):
        assert x.dtype == y.dtype and np.array_equal(x, y)
    assert [(p.name, p.method, p.initial, p.minimum, p.maximum) for p in a.params] == \
        [(p.name, p.method, p.initial, p.minimum, p.maximum) for p in b.params]
    assert all(np.array_equal(p.values, q.values) for p, q in zip(a.params, b.params, strict=True))
    edges = np.geomspace(0.05, 20, 300)
    rng = np.random.default_rng(0)
    vals = np.column_stack([rng.uniform(p.values[0], p.values[-1], 7) for p in a.params])
    ya = a.evaluate(edges, vals)
    assert np.array_equal(ya, b.evaluate(edges, vals))
    assert np.array_equal(ya, lazy.evaluate(edges, vals))
    with h5py.File(out) as f:
        assert f["spectra"].chunks == (1, a.n_energies)
        prov = json.loads(f.attrs["provenance"])
        assert prov["source_sha256"] == f.attrs["source_sha256"] and "git_commit" in prov
    assert Model(f"table:{out}").tables() != Model(f"table:{src}").tables()


def test_convert_refuses_overwrite(tdir, tmp_path, capsys):
    out = tmp_path / "x.h5"
    assert main(["tables", "convert", str(tdir / "smod100.tmod"), str(out)]) == 0
    before = out.read_bytes()
    assert main(["tables", "convert", str(tdir / "smod000.tmod"), str(out)]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and str(out) in err and err.count("\n") == 1
    assert out.read_bytes() == before
    with pytest.raises(SimxrayError, match="overwrite"):
        convert_to_hdf5(tdir / "smod000.tmod", out)
    assert main(["tables", "convert", "--overwrite", str(tdir / "smod000.tmod"), str(out)]) == 0
    assert not read_table(out).additive
    assert not list(tmp_path.glob(".*tmp"))


def test_info_and_model_cli(tdir, tmp_path, capsys):
    assert main(["tables", "info", str(tdir / "testpcfabs.mod")]) == 0
    out = capsys.readouterr().out
    assert "multiplicative" in out and "nH" in out and "log" in out and "1e-05" in out
    csv = tmp_path / "m.csv"
    assert main(["model", f"table:{tdir / 'smod100.tmod'}", "--grid", "0.2:2.6:24:lin",
                 "--param", "lscale=5", "--out", str(csv)]) == 0
    data = np.loadtxt(csv, delimiter=",", comments="#", skiprows=2)
    assert data[:, 2] == pytest.approx(SMOD100_XSPEC, rel=1e-6, abs=1e-12)


# -- corrupt tables ------------------------------------------------------------------------
def _good(tmp_path):
    e = np.array([1.0, 2.0, 3.0])
    p = TableParameter("a", 0, 1.0, 0.1, 0.0, 0.0, 2.0, 2.0, np.array([0.0, 1.0, 2.0]))
    return write_fits_table(tmp_path / "good.fits", "good", [p], e[:-1], e[1:], np.ones((3, 2)))


def _mutate(tmp_path, fn):
    path = _good(tmp_path)
    with fits.open(path) as h:
        hdul = fits.HDUList([x.copy() for x in h])
    fn(hdul)
    out = tmp_path / "bad.fits"
    hdul.writeto(out, overwrite=True)
    return out


def _drop_spectra(h):
    del h["SPECTRA"]


def _short_spectra(h):
    cols = [fits.Column("PARAMVAL", "1E", array=[0.0, 1.0, 2.0]),
            fits.Column("INTPSPEC", "3E", array=np.ones((3, 3)))]
    h["SPECTRA"] = fits.BinTableHDU.from_columns(cols, name="SPECTRA")


def _missing_row(h):
    h["SPECTRA"] = fits.BinTableHDU(h["SPECTRA"].data[:2], name="SPECTRA")


def _off_grid(h):
    h["SPECTRA"].data["PARAMVAL"][1] = 0.5


def _bad_values(h):
    h["PARAMETERS"].data["VALUE"][0] = [0.0, 2.0, 1.0]


def _bad_energies(h):
    h["ENERGIES"].data["ENERG_HI"][0] = 0.5


def _nan(h):
    h["SPECTRA"].data["INTPSPEC"][0, 0] = np.nan


@pytest.mark.parametrize("fn,match", [
    (_drop_spectra, "missing SPECTRA"), (_short_spectra, "INTPSPEC has 3 bins"),
    (_missing_row, "2 spectra"), (_off_grid, "not one of the tabulated"),
    (_bad_values, "strictly increasing"), (_bad_energies, "energy bins"), (_nan, "NaN"),
])
def test_corrupt_fits(tmp_path, fn, match):
    bad = _mutate(tmp_path, fn)
    with pytest.raises(FileFormatError, match=match) as exc:
        read_table(bad)
    assert str(bad) in str(exc.value) and "\n" not in str(exc.value)


def test_not_a_table(tmp_path):
    txt = tmp_path / "junk.mod"
    txt.write_text("not a FITS file\n")
    with pytest.raises(FileFormatError, match="not a readable FITS"):
        read_table(txt)
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(FileFormatError, match="not a simxray table"):
        read_table(tmp_path / "other.h5")
    assert main(["model", f"table:{tmp_path / 'missing.fits'}"]) == 2
