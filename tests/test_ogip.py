"""OGIP I/O (simxray.io.ogip): real Chandra files, sherpa cross-checks, round trips, bad input.

References are independent of the reader under test: header keywords read with plain
astropy (TOTCTS, EXPOSURE, TIMEDEL), the shared data README (3325 counts, 20.65 ks),
the per-order type I files for the PHA type II rows, and Sherpa's own OGIP reader.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from simxray import datasets
from simxray.errors import FileFormatError, ParameterError, ResponseMismatchError, SimxrayError
from simxray.io.ogip import (
    ACIS_FRAME_TRANSFER_S,
    ARF,
    check_compatible,
    read_arf,
    read_pha,
    read_provenance,
    read_rmf,
    write_arf,
    write_pha,
    write_rmf,
)

_SHARED = Path(os.environ.get("SIMXRAY_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
CHANDRA = _SHARED / "data" / "chandra"

PHA_FILES = ["source_bin10.pi", "background.pi", "3c273.pi", "3c273_bg.pi",
             "acisf01575_001N001_r0085_pha3.fits.gz", "3c120_heg_-1.pha.gz", "3c120_heg_1.pha.gz",
             "3c120_meg_-1.pha.gz", "3c120_meg_1.pha.gz"]
ARF_FILES = ["arf.fits", "3c273.arf", "acisf01575_001N001_r0085_arf3.fits.gz", "3c120_heg_-1.arf.gz",
             "3c120_heg_1.arf.gz", "3c120_meg_-1.arf.gz", "3c120_meg_1.arf.gz"]
RMF_FILES = ["rmf.fits", "3c273.rmf", "acisf01575_001N001_r0085_rmf3.fits.gz"]
# (file, TG_PART, TG_M): HEG is TG_PART 1, MEG is TG_PART 2
ORDERS = [("3c120_heg_-1.pha.gz", 1, -1), ("3c120_heg_1.pha.gz", 1, 1),
          ("3c120_meg_-1.pha.gz", 2, -1), ("3c120_meg_1.pha.gz", 2, 1)]


@pytest.fixture(scope="module")
def chandra() -> Path:
    if not CHANDRA.is_dir():
        pytest.skip(f"shared Chandra data not found at {CHANDRA}")
    return CHANDRA


@pytest.fixture(scope="module")
def sherpa_io():
    pytest.importorskip("sherpa.astro.io")
    logging.getLogger("sherpa").setLevel(logging.ERROR)
    from sherpa.astro import io as sio

    return sio


def _quiet_read(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return read_pha(path, **kw)


def _one_line_naming(exc: pytest.ExceptionInfo, path, field: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg
    assert str(path) in msg, msg
    assert field in msg, msg


def _key(path: Path, key: str, ext: int = 1):
    with fits.open(path) as h:
        return h[ext].header[key]


# ---------------------------------------------------------------------------
# real files: independent facts
def test_ngc4258_values_and_links(chandra):
    s = read_pha(chandra / "source_bin10.pi")
    assert s.total_counts == 3325 == _key(chandra / "source_bin10.pi", "TOTCTS")  # README: 3325 counts
    assert s.exposure == pytest.approx(20.65e3, abs=5)  # README: 20.65 ks
    assert s.frame_time == pytest.approx(3.2 + ACIS_FRAME_TRANSFER_S) and s.frame_time_source == "spectrum TIMEDEL"
    assert (s.header["OBS_ID"], s.header["OBJECT"], s.header["DETCHANS"]) == ("1618", "NGC4258", 1024)
    assert s.n_channels == 1024 and s.channel[0] == 1 and s.channel[-1] == 1024
    assert s.counts.dtype == np.float64 and s.channel.dtype.kind == "i"
    assert s.arf.path.name == "arf.fits" and s.rmf.path.name == "rmf.fits"
    assert s.background.path.name == "background.pi"
    assert s.background.total_counts == _key(chandra / "background.pi", "TOTCTS") == 79
    assert s.background_scale == pytest.approx(8.2267382518748e-07 / 1.6997393568944e-05)
    assert s.rmf.matrix.shape == (1077, 1024) and s.arf.n_energies == 1077
    assert s.rmf.matrix.dtype == np.float64 and s.rmf.offset == 1
    # the RMF conserves probability: rows sum to <= 1 (+ rounding), most near 1 above 1 keV
    rows = np.asarray(s.rmf.matrix.sum(axis=1)).ravel()
    assert rows.max() < 1.0 + 1e-4 and np.median(rows[s.rmf.energ_lo > 1.0]) > 0.9
    # the ARF peaks near 1.5 keV at several hundred cm^2 (ACIS-S BI)
    peak = s.arf.specresp.argmax()
    assert 0.8 < s.arf.energ_lo[peak] < 2.0 and 300 < s.arf.specresp.max() < 900


@pytest.mark.parametrize("name", PHA_FILES)
def test_pha_matches_sherpa(chandra, sherpa_io, name):
    ours = _quiet_read(chandra / name)
    theirs = sherpa_io.read_pha(str(chandra / name), use_errors=False, use_background=False)
    np.testing.assert_array_equal(ours.counts, theirs.counts)
    np.testing.assert_array_equal(ours.channel, theirs.channel)
    assert ours.exposure == theirs.exposure
    assert np.all(np.asarray(ours.backscal) == np.asarray(theirs.backscal))
    assert np.all(np.asarray(ours.areascal) == np.asarray(theirs.areascal))
    for mine, its in ((ours.grouping, theirs.grouping), (ours.quality, theirs.quality)):
        if its is None or not np.any(its):
            assert mine is None or not np.any(mine)
        else:
            np.testing.assert_array_equal(mine, its)
    if theirs.background_ids:
        # sherpa keeps BACKGROUND_UP and _DOWN as two backgrounds (each scale includes 1/2);
        # ours sums them with BACKSCAL = BACKSCUP + BACKSCDN: the scaled background must agree
        ids = theirs.background_ids
        assert ours.background is not None
        expected = sum(theirs.get_background_scale(i) * theirs.get_background(i).counts for i in ids)
        np.testing.assert_allclose(ours.background_scale * ours.background.counts, expected, rtol=1e-12)
        assert ours.background.exposure == theirs.get_background(ids[0]).exposure


@pytest.mark.parametrize("name", ARF_FILES)
def test_arf_matches_sherpa(chandra, sherpa_io, name):
    ours = read_arf(chandra / name)
    theirs = sherpa_io.read_arf(str(chandra / name))
    for a in ("energ_lo", "energ_hi", "specresp"):
        np.testing.assert_allclose(getattr(ours, a), getattr(theirs, a), rtol=1e-7)
    assert ours.exposure == pytest.approx(_key(chandra / name, "EXPOSURE"))


@pytest.mark.parametrize("name", RMF_FILES)
def test_rmf_matches_sherpa(chandra, sherpa_io, name):
    ours = read_rmf(chandra / name)
    theirs = sherpa_io.read_rmf(str(chandra / name))
    assert ours.offset == theirs.offset and ours.n_channels == theirs.detchans
    np.testing.assert_allclose(ours.energ_lo, theirs.energ_lo, rtol=1e-7)
    np.testing.assert_allclose(ours.e_min, theirs.e_min, rtol=1e-7)
    np.testing.assert_allclose(ours.e_max, theirs.e_max, rtol=1e-7)
    # folding random spectra with both matrices tests every element's position
    rng = np.random.default_rng(7)
    for _ in range(3):
        v = rng.random(ours.n_energies)
        np.testing.assert_allclose(v @ ours.matrix, theirs.apply_rmf(v), rtol=1e-6, atol=1e-9)
    # one energy row at a time: a delta at 6.4 keV lands where sherpa puts it
    v = np.zeros(ours.n_energies)
    v[np.searchsorted(ours.energ_hi, 6.4)] = 1.0
    np.testing.assert_allclose(v @ ours.matrix, theirs.apply_rmf(v), rtol=1e-6, atol=1e-12)


def test_pha2_rows_match_type1_files_and_sherpa(chandra, sherpa_io):
    pha2 = chandra / "3c120_pha2.gz"
    for name, part, m in ORDERS:
        row = read_pha(pha2, tg_m=m, tg_part=part)
        single = _quiet_read(chandra / name)
        np.testing.assert_array_equal(row.counts, single.counts)  # an independent file
        assert (row.header["TG_M"], row.header["TG_PART"]) == (m, part)
        assert row.exposure == single.exposure and row.frame_time == pytest.approx(2.44104)
        assert row.background.total_counts == single.background.total_counts
    theirs = sherpa_io.read_pha(str(pha2), use_errors=False, use_background=False)
    assert len(theirs) == 12
    for i, t in enumerate(theirs):
        ours = read_pha(pha2, row=i)
        np.testing.assert_array_equal(ours.counts, t.counts)
        assert ours.header["TG_M"] == t.header["TG_M"] and ours.header["TG_PART"] == t.header["TG_PART"]
    # MEG -1 (row 8) holds 30750 counts in the first-order spectrum, HEG +1 15363
    assert read_pha(pha2, row=8).total_counts == 30750 == read_pha(pha2, tg_m=-1, tg_part=2).total_counts
    assert read_pha(pha2, tg_part=1, tg_m=1).total_counts == 15363


def test_pha2_selection_errors(chandra):
    pha2 = chandra / "3c120_pha2.gz"
    with pytest.raises(ParameterError) as e:
        read_pha(pha2)
    _one_line_naming(e, pha2, "row")
    assert "2,-1" in str(e.value)  # lists the rows available
    with pytest.raises(ParameterError) as e:
        read_pha(pha2, tg_m=-1)  # HEG and MEG both match
    _one_line_naming(e, pha2, "row")
    with pytest.raises(ParameterError) as e:
        read_pha(pha2, tg_m=5, tg_part=1)
    _one_line_naming(e, pha2, "TG_M")
    with pytest.raises(ParameterError) as e:
        read_pha(pha2, row=12)
    _one_line_naming(e, pha2, "row")
    with pytest.raises(ParameterError) as e:
        read_pha(pha2, row=8, tg_part=1)
    _one_line_naming(e, pha2, "TG_PART")
    with pytest.raises(ParameterError) as e:
        read_pha(chandra / "source_bin10.pi", row=3)
    _one_line_naming(e, chandra / "source_bin10.pi", "row")


def test_gz_alternative_names_and_missing_rmf(chandra):
    path = chandra / "3c120_heg_-1.pha.gz"
    assert _key(path, "ANCRFILE") == "3c120_heg_-1.arf"  # only the .gz exists
    with pytest.warns(UserWarning, match="RESPFILE"):
        s = read_pha(path)
    assert s.arf.path.name == "3c120_heg_-1.arf.gz" and s.rmf is None
    assert "RESPFILE" in s.missing
    with pytest.raises(FileFormatError) as e:
        s.require_responses()
    _one_line_naming(e, path, "RESPFILE")
    assert read_pha(path, load_responses=False).arf is None


def test_csc_layout(chandra):
    path = chandra / "acisf01575_001N001_r0085_pha3.fits.gz"
    s = read_pha(path)
    assert s.total_counts == 855 == _key(path, "TOTCTS")
    # BACKFILE names the file itself: the background is its HDUCLAS2 = BKG extension
    assert s.background.path == path and s.background.total_counts == _key(path, "TOTCTS", ext=4) == 303
    assert s.background.backscal == _key(path, "BACKSCAL", ext=4)
    assert s.rmf.path.name.endswith("rmf3.fits.gz") and s.arf.path.name.endswith("arf3.fits.gz")
    assert s.rmf.header["EXTNAME"] == "RSP_MATRIX" and s.rmf.n_energies == s.arf.n_energies == 900
    # no frame keyword in the PHA: EXPTIME = 3.2 s of the RMF + 41.04 ms transfer
    assert _key(chandra / "acisf01575_001N001_r0085_rmf3.fits.gz", "EXPTIME") == 3.2
    assert s.frame_time == pytest.approx(3.24104, abs=1e-9) and s.frame_time_source == "RMF EXPTIME"


def test_frame_time_order(chandra, tmp_path):
    assert read_pha(chandra / "source_bin10.pi", frame_time=3.2).frame_time == 3.2
    with pytest.raises(ParameterError) as e:
        read_pha(chandra / "source_bin10.pi", frame_time=-1)
    _one_line_naming(e, chandra / "source_bin10.pi", "frame_time")
    counts = np.ones(16)
    cases = [({"TIMEDEL": 2.5, "FRAMETIM": 1.0, "EXPTIME": 0.4}, 2.5),
             ({"FRAMETIM": 1.0, "EXPTIME": 0.4}, 1.0),
             ({"EXPTIME": 0.4}, 0.4 + ACIS_FRAME_TRANSFER_S),
             ({}, None)]
    for i, (hdr, want) in enumerate(cases):
        p = write_pha(tmp_path / f"f{i}.pha", counts, 100.0, header=hdr)
        got = read_pha(p).frame_time
        assert got == (pytest.approx(want) if want is not None else None)


def test_rate_spectrum_converted_to_counts(chandra, tmp_path):
    src = read_pha(chandra / "source_bin10.pi", load_responses=False)
    cols = [fits.Column(name="CHANNEL", format="J", array=src.channel),
            fits.Column(name="RATE", format="D", unit="count/s", array=src.counts / src.exposure)]
    hdu = fits.BinTableHDU.from_columns(cols, name="SPECTRUM")
    hdu.header.update({"HDUCLASS": "OGIP", "HDUCLAS1": "SPECTRUM", "HDUCLAS3": "RATE",
                       "EXPOSURE": src.exposure, "DETCHANS": 1024, "POISSERR": False})
    p = tmp_path / "rate.pha"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(p)
    s = read_pha(p)
    np.testing.assert_allclose(s.counts, src.counts, rtol=1e-12, atol=1e-9)
    assert s.backscal == 1.0 and s.areascal == 1.0 and s.grouping is None


# ---------------------------------------------------------------------------
# embedded defaults
def test_embedded_defaults():
    s = datasets.default_spectrum()
    assert s.path == datasets.default_spectrum_path() and s.path.parent == datasets.DATA_DIR
    assert s.total_counts == 3325 and s.arf.path == datasets.default_arf_path()
    assert s.rmf.path == datasets.default_rmf_path() and s.background.path == datasets.default_background_path()
    assert s.exposure == pytest.approx(20651.149) and s.frame_time == pytest.approx(3.24104)
    with pytest.raises(FileFormatError) as e:
        datasets.data_path("nope.fits")
    _one_line_naming(e, "nope.fits", "name")


def test_embedded_copies_are_unchanged(chandra):
    for name in ("source_bin10.pi", "arf.fits", "rmf.fits", "background.pi"):
        assert datasets.data_path(name).read_bytes() == (chandra / name).read_bytes()


def test_zeroth_order_frame_time_from_pha_not_arf(chandra):
    s = read_pha(chandra / "3c273.pi")
    assert _key(chandra / "3c273.arf", "TIMEDEL") == pytest.approx(0.25625)  # aspect sampling
    assert s.frame_time == _key(chandra / "3c273.pi", "TIMEDEL") == pytest.approx(3.24104)
    assert s.total_counts == _key(chandra / "3c273.pi", "TOTCTS") == 736
    assert s.background.total_counts == _key(chandra / "3c273_bg.pi", "TOTCTS") == 216
    check_compatible(s, s.rmf)
    assert s.rmf.n_energies == s.arf.n_energies == 1090


# ---------------------------------------------------------------------------
# writing
OGIP_REQUIRED = ("EXTNAME", "TELESCOP", "INSTRUME", "FILTER", "EXPOSURE", "AREASCAL", "BACKFILE",
                 "BACKSCAL", "CORRFILE", "CORRSCAL", "RESPFILE", "ANCRFILE", "HDUCLASS", "HDUCLAS1",
                 "HDUVERS", "POISSERR", "CHANTYPE", "DETCHANS")  # OGIP/92-007 mandatory keywords


def test_write_pha_round_trip_sherpa(chandra, sherpa_io, tmp_path):
    ui = pytest.importorskip("sherpa.astro.ui.utils")
    for name in ("arf.fits", "rmf.fits"):
        shutil.copy(chandra / name, tmp_path / name)
    rng = np.random.default_rng(2024)
    counts = rng.poisson(rng.gamma(2.0, 3.0, size=1024))
    prov = {"seed": 2024, "model": "tbabs*powerlaw", "note": "spaces  at  chunk ends " * 8}
    out = write_pha(tmp_path / "sim.pha", counts, 20651.149, respfile="rmf.fits", ancrfile="arf.fits",
                    backscal=8.2e-7, frame_time=3.24104, header={"OBJECT": "simulated"}, provenance=prov)
    with fits.open(out, checksum=True) as h:  # checksums verify, structure verifies
        h.verify("exception")
        hdr = h["SPECTRUM"].header
        assert all(k in hdr for k in OGIP_REQUIRED)
        assert h["SPECTRUM"].columns["COUNTS"].format == "J" and hdr["POISSERR"] is True
        assert (hdr["HDUCLAS2"], hdr["HDUCLAS3"], hdr["TIMEDEL"]) == ("TOTAL", "COUNT", 3.24104)
    assert read_provenance(out) == prov
    assert not list(tmp_path.glob("*.tmp"))

    session = ui.Session()
    session.load_pha(1, str(out))
    d = session.get_data(1)
    np.testing.assert_array_equal(d.counts, counts)
    assert d.exposure == 20651.149 and d.backscal == pytest.approx(8.2e-7)
    np.testing.assert_allclose(session.get_arf(1).specresp, read_arf(chandra / "arf.fits").specresp)
    assert session.get_rmf(1).detchans == 1024

    ours = read_pha(out)
    np.testing.assert_array_equal(ours.counts, counts)
    assert ours.frame_time == 3.24104 and ours.header["OBJECT"] == "simulated"
    assert ours.arf.path == tmp_path / "arf.fits" and ours.rmf.path == tmp_path / "rmf.fits"

    # gzip output, array BACKSCAL, grouping and quality columns
    gz = write_pha(tmp_path / "sim.pha.gz", counts, 1000.0, backscal=np.full(1024, 0.5),
                   grouping=np.where(np.arange(1024) % 2 == 0, 1, -1), quality=np.zeros(1024, int))
    assert gz.read_bytes()[:2] == b"\x1f\x8b"
    t = sherpa_io.read_pha(str(gz), use_errors=False)
    np.testing.assert_array_equal(t.counts, counts)
    np.testing.assert_array_equal(t.backscal, 0.5)
    np.testing.assert_array_equal(t.grouping, read_pha(gz).grouping)


def test_write_pha_refuses_bad_input(tmp_path):
    p = write_pha(tmp_path / "a.pha", [1, 2, 3], 10.0)
    before = p.read_bytes()
    with pytest.raises(SimxrayError) as e:
        write_pha(p, [4, 5, 6], 10.0)
    _one_line_naming(e, p, "overwrite")
    assert p.read_bytes() == before
    assert read_pha(write_pha(p, [4, 5, 6], 10.0, overwrite=True)).total_counts == 15
    for counts, field in (([1.5, 2], "counts"), ([-1, 2], "counts"), ([[1, 2]], "counts")):
        with pytest.raises(ParameterError, match=field):
            write_pha(tmp_path / "b.pha", counts, 10.0)
    with pytest.raises(ParameterError, match="exposure"):
        write_pha(tmp_path / "b.pha", [1, 2], 0.0)
    with pytest.raises(ParameterError, match="NAXIS"):
        write_pha(tmp_path / "b.pha", [1, 2], 1.0, header={"NAXIS2": 5})
    assert not (tmp_path / "b.pha").exists()


def _gaussian_rmf(n_e: int = 40, n_c: int = 32, sigma: float = 1.5):
    """A toy redistribution: energy bin i spreads over channels as a Gaussian, cut below 1e-3."""
    centre = np.linspace(2, n_c - 3, n_e)[:, None]
    d = np.exp(-0.5 * ((np.arange(n_c)[None, :] - centre) / sigma) ** 2)
    d[d < 1e-3] = 0.0
    d[5, :] = 0.0  # an energy with no response (N_GRP = 0)
    d[7, 20:22] = 0.3  # a second group in one row
    return (d / np.maximum(d.sum(axis=1, keepdims=True), 1e-30)).astype(np.float32).astype(float)


def test_write_rmf_arf_round_trip_sherpa(chandra, sherpa_io, tmp_path):
    rng = np.random.default_rng(5)
    # the real ACIS RMF re-written (our own grouping) folds exactly like the original
    orig = read_rmf(chandra / "rmf.fits")
    out = write_rmf(tmp_path / "copy.rmf", orig.energ_lo, orig.energ_hi, orig.matrix, orig.e_min,
                    orig.e_max, offset=orig.offset, provenance={"from": "rmf.fits"})
    theirs = sherpa_io.read_rmf(str(out))
    v = rng.random(orig.n_energies)
    np.testing.assert_allclose(theirs.apply_rmf(v), sherpa_io.read_rmf(str(chandra / "rmf.fits")).apply_rmf(v),
                               rtol=1e-6)
    assert (read_rmf(out).matrix != orig.matrix).nnz == 0 and read_provenance(out) == {"from": "rmf.fits"}
    # a toy matrix with channels starting at 0, an empty row and a two-group row
    dense = _gaussian_rmf()
    n_e, n_c = dense.shape
    e = np.linspace(0.5, 8.5, n_e + 1)
    ch = np.linspace(0.4, 9.0, n_c + 1)
    toy = write_rmf(tmp_path / "toy.rmf.gz", e[:-1], e[1:], dense, ch[:-1], ch[1:], offset=0)
    ours = read_rmf(toy)
    assert ours.offset == 0 and ours.n_channels == n_c
    np.testing.assert_array_equal(ours.matrix.toarray(), dense)
    theirs = sherpa_io.read_rmf(str(toy))
    assert theirs.offset == 0
    v = rng.random(n_e)
    np.testing.assert_allclose(theirs.apply_rmf(v), v @ dense, rtol=1e-6)
    # ARF
    arf = read_arf(chandra / "arf.fits")
    out = write_arf(tmp_path / "copy.arf", arf.energ_lo, arf.energ_hi, arf.specresp, exposure=arf.exposure)
    t = sherpa_io.read_arf(str(out))
    np.testing.assert_array_equal(t.specresp, arf.specresp)
    np.testing.assert_array_equal(t.energ_lo, arf.energ_lo)
    check_compatible(read_arf(out), orig)
    with pytest.raises(ParameterError, match="specresp"):
        write_arf(tmp_path / "bad.arf", arf.energ_lo, arf.energ_hi, -arf.specresp)
    with pytest.raises(ParameterError, match="matrix"):
        write_rmf(tmp_path / "bad.rmf", e[:-2], e[1:-1], dense, ch[:-1], ch[1:])


@pytest.mark.parametrize("layout", ["fixed", "scalar"])
def test_rmf_fixed_width_columns(sherpa_io, tmp_path, layout):
    """RMFs whose F_CHAN/N_CHAN/MATRIX are fixed-width (not variable-length) columns."""
    dense = _gaussian_rmf()
    if layout == "scalar":
        dense[7, 20:22] = 0.0  # one group per row: scalar F_CHAN/N_CHAN columns
    n_e, n_c = dense.shape
    groups = []  # per row: list of (first channel, values)
    for row in dense:
        nz = np.flatnonzero(row)
        runs = np.split(nz, np.flatnonzero(np.diff(nz) != 1) + 1) if nz.size else []
        groups.append([(int(r[0]) + 1, row[r]) for r in runs])
    g = max(len(x) for x in groups)
    w = max(sum(v.size for _, v in x) for x in groups)
    fch = np.zeros((n_e, g), np.int32)
    nch = np.zeros((n_e, g), np.int32)
    mat = np.zeros((n_e, w), np.float32)
    for i, x in enumerate(groups):
        k = 0
        for j, (f, vals) in enumerate(x):
            fch[i, j], nch[i, j] = f, vals.size
            mat[i, k:k + vals.size] = vals
            k += vals.size
    e = np.linspace(0.5, 8.5, n_e + 1)
    cols = [fits.Column(name="ENERG_LO", format="E", array=e[:-1]),
            fits.Column(name="ENERG_HI", format="E", array=e[1:]),
            fits.Column(name="N_GRP", format="I", array=np.array([len(x) for x in groups]))]
    if layout == "fixed":
        cols += [fits.Column(name="F_CHAN", format=f"{g}J", array=fch),
                 fits.Column(name="N_CHAN", format=f"{g}J", array=nch)]
    else:
        cols += [fits.Column(name="F_CHAN", format="J", array=fch[:, 0]),
                 fits.Column(name="N_CHAN", format="J", array=nch[:, 0])]
    cols.append(fits.Column(name="MATRIX", format=f"{w}E", array=mat))
    m = fits.BinTableHDU.from_columns(cols, name="SPECRESP MATRIX")
    m.header.update({"HDUCLASS": "OGIP", "HDUCLAS1": "RESPONSE", "HDUCLAS2": "RSP_MATRIX",
                     "DETCHANS": n_c, "TLMIN4": 1, "CHANTYPE": "PI"})
    ch = np.linspace(0.4, 9.0, n_c + 1)
    eb = fits.BinTableHDU.from_columns([fits.Column(name="CHANNEL", format="J", array=np.arange(1, n_c + 1)),
                                        fits.Column(name="E_MIN", format="E", array=ch[:-1]),
                                        fits.Column(name="E_MAX", format="E", array=ch[1:])], name="EBOUNDS")
    eb.header.update({"HDUCLASS": "OGIP", "HDUCLAS1": "RESPONSE", "HDUCLAS2": "EBOUNDS", "DETCHANS": n_c})
    p = tmp_path / f"{layout}.rsp"
    fits.HDUList([fits.PrimaryHDU(), m, eb]).writeto(p)
    ours = read_rmf(p)
    np.testing.assert_array_equal(ours.matrix.toarray(), dense)
    v = np.random.default_rng(3).random(n_e)
    np.testing.assert_allclose(sherpa_io.read_rmf(str(p)).apply_rmf(v), v @ ours.matrix, rtol=1e-6)


def test_none_arguments(chandra):
    s = read_pha(chandra / "source_bin10.pi", arf="none", background="NONE")
    assert s.arf is None and s.background is None and s.rmf is not None


# ---------------------------------------------------------------------------
# bad input: corrupt, truncated, wrong extension, mismatched responses
def test_corrupt_and_truncated_files(chandra, tmp_path):
    junk = tmp_path / "junk.pi"
    junk.write_bytes(b"this is not a FITS file\n" * 200)
    with pytest.raises(FileFormatError) as e:
        read_pha(junk)
    _one_line_naming(e, junk, "FITS")

    raw = (chandra / "source_bin10.pi").read_bytes()
    for n in (50000, 2880 * 20, len(raw) - 100):  # mid-table, block boundary, inside the GTI
        cut = tmp_path / f"cut{n}.pi"
        cut.write_bytes(raw[:n])
        with pytest.raises(FileFormatError) as e:
            read_pha(cut, load_responses=False)
        _one_line_naming(e, cut, "truncated")
    cut = tmp_path / "cut_header.pi"
    cut.write_bytes(raw[:2880 * 2])  # inside the SPECTRUM header
    with pytest.raises(FileFormatError) as e:
        read_pha(cut)
    _one_line_naming(e, cut, "corrupt FITS")

    gz = tmp_path / "cut.pha2.gz"
    gz.write_bytes((chandra / "3c120_pha2.gz").read_bytes()[:400_000])
    with pytest.raises(FileFormatError) as e:
        read_pha(gz, row=0)
    _one_line_naming(e, gz, "gzip")

    rmf_cut = tmp_path / "rmf.fits"
    rmf_cut.write_bytes((chandra / "rmf.fits").read_bytes()[:1_000_000])
    with pytest.raises(FileFormatError) as e:
        read_rmf(rmf_cut)
    _one_line_naming(e, rmf_cut, "truncated")

    missing = tmp_path / "nothere.pi"
    with pytest.raises(FileFormatError) as e:
        read_pha(missing)
    _one_line_naming(e, missing, "not found")


def test_wrong_or_missing_extension(chandra, tmp_path):
    with pytest.raises(FileFormatError) as e:
        read_pha(chandra / "rmf.fits")
    _one_line_naming(e, chandra / "rmf.fits", "SPECTRUM")
    assert "EBOUNDS" in str(e.value)  # says what it found
    with pytest.raises(FileFormatError) as e:
        read_rmf(chandra / "arf.fits")
    _one_line_naming(e, chandra / "arf.fits", "MATRIX")
    with pytest.raises(FileFormatError) as e:
        read_arf(chandra / "rmf.fits")
    _one_line_naming(e, chandra / "rmf.fits", "SPECRESP")

    p = tmp_path / "no_ebounds.rmf"  # RMF without EBOUNDS
    with fits.open(chandra / "rmf.fits") as h:
        del h[2]
        h.writeto(p)
    q = tmp_path / "short_ebounds.rmf"  # EBOUNDS with fewer rows than DETCHANS
    with fits.open(chandra / "rmf.fits") as h:
        h[2].data = h[2].data[:512]
        h.writeto(q)
    with pytest.raises(FileFormatError) as e:
        read_rmf(p)
    _one_line_naming(e, p, "EBOUNDS")
    with pytest.raises(FileFormatError) as e:
        read_rmf(q)
    _one_line_naming(e, q, "DETCHANS")

    with fits.open(chandra / "source_bin10.pi") as h:  # no COUNTS/RATE column; no EXPOSURE
        t = h[1]
        nocounts = fits.BinTableHDU.from_columns([t.columns["CHANNEL"]], header=t.header, name="SPECTRUM")
        p1 = tmp_path / "nocounts.pi"
        fits.HDUList([h[0].copy(), nocounts]).writeto(p1)
        noexp = t.copy()
        del noexp.header["EXPOSURE"]
        p2 = tmp_path / "noexp.pi"
        fits.HDUList([h[0].copy(), noexp]).writeto(p2)
    with pytest.raises(FileFormatError) as e:
        read_pha(p1, load_responses=False)
    _one_line_naming(e, p1, "COUNTS")
    with pytest.raises(FileFormatError) as e:
        read_pha(p2, load_responses=False)
    _one_line_naming(e, p2, "EXPOSURE")


def test_arf_rmf_grid_mismatch(chandra, tmp_path):
    rmf = read_rmf(chandra / "rmf.fits")
    arf = read_arf(chandra / "arf.fits")
    check_compatible(arf, rmf)  # the real pair agrees
    nearly = ARF(None, arf.energ_lo * (1 + 1e-7), arf.energ_hi, arf.specresp)
    check_compatible(nearly, rmf)  # within the 1e-5 tolerance

    with fits.open(chandra / "arf.fits") as h:
        short = h[1].copy()
        short.data = short.data[:-10]
        p_short = tmp_path / "short.arf"
        fits.HDUList([h[0].copy(), short]).writeto(p_short)
        shifted = h[1].copy()
        shifted.data["ENERG_LO"] *= 1.001
        shifted.data["ENERG_HI"] *= 1.001
        p_shift = tmp_path / "shifted.arf.gz"
        with gzip.open(p_shift, "wb") as fh:
            fits.HDUList([h[0].copy(), shifted]).writeto(fh)
    for bad in (p_short, p_shift):
        with pytest.raises(ResponseMismatchError) as e:
            read_pha(chandra / "source_bin10.pi", arf=bad)
        _one_line_naming(e, bad, "ENERG_LO")
        assert str(chandra / "rmf.fits") in str(e.value)
    with pytest.raises(ResponseMismatchError) as e:
        check_compatible(read_arf(p_shift), rmf)
    assert "ENERG_LO[0]" in str(e.value)


def test_channel_count_mismatch(chandra, tmp_path):
    shutil.copy(chandra / "rmf.fits", tmp_path / "rmf.fits")
    p = write_pha(tmp_path / "half.pha", np.ones(512), 100.0, respfile="rmf.fits")
    with pytest.raises(ResponseMismatchError) as e:
        read_pha(p)
    _one_line_naming(e, p, "DETCHANS")
    assert "512" in str(e.value) and "1024" in str(e.value)
    s = read_pha(p, load_responses=False)  # fine without the response ...
    with pytest.raises(ResponseMismatchError):
        check_compatible(s, read_rmf(tmp_path / "rmf.fits"))  # ... but not with it
    # a background with a different channel count
    bkg = write_pha(tmp_path / "bkg.pha", np.ones(256), 100.0)
    with pytest.raises(ResponseMismatchError) as e:
        read_pha(p, background=bkg, load_responses=False)
    _one_line_naming(e, p, "BACKFILE")
    with pytest.raises(FileFormatError) as e:
        read_pha(p, rmf=tmp_path / "absent.rmf")
    _one_line_naming(e, tmp_path / "absent.rmf", "rmf")


def test_background_scale_matches_sherpa(sherpa_io, tmp_path):
    """Exposure, BACKSCAL and AREASCAL all enter the scale (real pairs share one exposure)."""
    rng = np.random.default_rng(11)
    bkg = write_pha(tmp_path / "b.pha", rng.poisson(2, 64), 5000.0, backscal=4e-5, areascal=0.9,
                    background=True)
    src = write_pha(tmp_path / "s.pha", rng.poisson(5, 64), 1200.0, backscal=2e-6, areascal=1.1,
                    backfile="b.pha")
    ours = read_pha(src)
    theirs = sherpa_io.read_pha(str(src), use_errors=False)
    assert ours.background.path == bkg and ours.background.header["HDUCLAS2"] == "BKG"
    assert ours.background_scale == pytest.approx(theirs.get_background_scale(1), rel=1e-12)
    assert ours.background_scale == pytest.approx(1200 * 2e-6 * 1.1 / (5000 * 4e-5 * 0.9), rel=1e-12)
    np.testing.assert_allclose(ours.subtracted_counts(),
                               theirs.counts - theirs.get_background_scale(1) * theirs.get_background(1).counts)


def test_require_responses_full_rsp(tmp_path):
    dense = _gaussian_rmf()
    n_e, n_c = dense.shape
    e, ch = np.linspace(0.5, 8.5, n_e + 1), np.linspace(0.4, 9.0, n_c + 1)
    write_rmf(tmp_path / "redist.rmf", e[:-1], e[1:], dense, ch[:-1], ch[1:])
    write_rmf(tmp_path / "full.rsp", e[:-1], e[1:], 300 * dense, ch[:-1], ch[1:], header={"HDUCLAS3": "FULL"})
    full = read_pha(write_pha(tmp_path / "a.pha", np.ones(n_c), 10.0, respfile="full.rsp"))
    assert full.rmf.includes_area and full.arf is None
    full.require_responses()  # an RSP needs no ARF
    with pytest.raises(FileFormatError):
        full.require_responses(arf=True)
    redist = read_pha(write_pha(tmp_path / "b.pha", np.ones(n_c), 10.0, respfile="redist.rmf"))
    assert not redist.rmf.includes_area
    with pytest.raises(FileFormatError) as e:
        redist.require_responses()
    _one_line_naming(e, tmp_path / "b.pha", "ANCRFILE")
    with pytest.raises(FileFormatError) as e:
        read_pha(tmp_path / "a.pha", load_responses=False).require_responses()
    _one_line_naming(e, tmp_path / "a.pha", "RESPFILE")
