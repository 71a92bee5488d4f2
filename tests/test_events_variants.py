"""Real event files as users bring them: variants DERIVED at test time (into tmp_path, with
astropy) from the real lists in ``../shared/data/events``.  Each variant either reads to the
same events, good time and frame time as its original (numbers compared with the original
file read by astropy, not with the code under test), or is refused by ``simxray encode``
with a one-line error naming file and field and exit status 2."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest
from astropy.io import fits

from simxray.cli import main
from simxray.errors import FileFormatError
from simxray.events.realfile import SGR_A_STAR, SGR_J1745_2900, read_observation

FLARE = "15043_flare_evt2.fits"        # 1/8 subarray, CCD 7, 11,244 events
QUIET = "14945_sgra_evt2.fits"         # 191 events, one GTI
FIELD = "acisf28229_repro_evt2.fits"   # full evt2, CCDs 6 and 7
BRIGHT_28229 = (266.4168, -29.0078)    # Sgr A* in 28229 (README: 119 counts at 2-8 keV in 1.25")


def _copy(src, dst, *, events=None, columns=None, header=None, drop_keys=(), gti=None, before=(), after=(),
          primary=None):
    """Write a variant of ``src``: EVENTS with optional new columns/header edits, GTI HDUs
    replaced by ``gti`` (a list of HDUs; None keeps the originals), extra HDUs ``before``/``after``."""
    with fits.open(src) as h:
        ev = h["EVENTS"]
        cols = columns(ev) if columns else ev.columns
        hdr = ev.header.copy()
        for k in drop_keys:
            hdr.remove(k, ignore_missing=True, remove_all=True)
        for k, v in (header or {}).items():
            hdr[k] = v
        new = fits.BinTableHDU.from_columns(cols, header=hdr, name=events or "EVENTS")
        if events is not None:
            new.header["HDUNAME"] = events
        gtis = [x.copy() for x in h[2:] if x.name == "GTI"] if gti is None else gti
        prim = primary if primary is not None else h[0].copy()
        hdul = fits.HDUList([prim, *before, new, *gtis, *after])
        if str(dst).endswith(".gz"):
            import io

            buf = io.BytesIO()
            hdul.writeto(buf)
            with open(dst, "wb") as fh:
                fh.write(gzip.compress(buf.getvalue()))
        else:
            hdul.writeto(dst)
    return dst


_COORD = ("coord_type", "coord_unit", "coord_ref_value", "coord_ref_point", "coord_inc")


def _col(c, *, name=None, array=None, unit="same"):
    """A copy of column ``c`` (with its sky WCS keywords TCTYP/TCRVL/TCRPX/TCDLT), renamed or
    with new values or unit."""
    return fits.Column(name or c.name, c.format, unit=c.unit if unit == "same" else unit, array=array,
                       **{k: getattr(c, k) for k in _COORD if getattr(c, k) is not None})


def _gti_hdu(start, stop, name="GTI", ccd=None, hduname=None):
    h = fits.BinTableHDU.from_columns([fits.Column("START", "D", array=np.atleast_1d(start)),
                                       fits.Column("STOP", "D", array=np.atleast_1d(stop))], name=name)
    if ccd is not None:
        h.header["CCD_ID"] = ccd
    if hduname:
        h.header["HDUNAME"] = hduname
    return h


def _orig(path):
    """(time, energy keV, {ccd: gti}) of a real file, read directly with astropy."""
    with fits.open(path) as h:
        d = h["EVENTS"].data
        g = {x.header["CCD_ID"]: np.column_stack([x.data["START"], x.data["STOP"]]) for x in h[2:]
             if x.name == "GTI"}
        return np.asarray(d["time"], float), np.asarray(d["energy"], float) / 1e3, g


def _refused(args, capsys, *words):
    capsys.readouterr()
    rc = main(["encode", *args, "--quiet", "--no-analysis"])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    return err


# --------------------------------------------------------------------------- same events as the original


def test_uppercase_columns_gzip_and_events_not_first(evdir, tmp_path):
    """Upper-case column names, a primary image and an extra image before EVENTS, gzip: the
    same events, GTIs and frame time as the original."""
    src = evdir / FLARE
    t, e, g = _orig(src)

    def upper(ev):
        return fits.ColDefs([_col(c, name=c.name.upper(), array=ev.data[c.name]) for c in ev.columns])

    img = fits.ImageHDU(np.zeros((8, 8), np.int16), name="EXPMAP")
    dst = _copy(src, tmp_path / "upper_evt2.fits.gz", columns=upper, primary=fits.PrimaryHDU(np.ones((4, 4))),
                before=[img])
    with fits.open(dst) as h:
        assert [x.name for x in h][:3] == ["PRIMARY", "EXPMAP", "EVENTS"] and "TIME" in h["EVENTS"].columns.names
    a = read_observation(src, ra=SGR_A_STAR[0], dec=SGR_A_STAR[1], radius=1.25)
    b = read_observation(dst, ra=SGR_A_STAR[0], dec=SGR_A_STAR[1], radius=1.25)
    np.testing.assert_array_equal(a.source.time, b.source.time)
    np.testing.assert_array_equal(a.source.energy, b.source.energy)
    np.testing.assert_array_equal(b.source.gti, g[7])
    assert b.meta["frame_time"] == 0.44104 and b.meta["warnings"] == []
    whole = read_observation(dst)
    assert whole.source.n_events == t.size == 11244
    np.testing.assert_allclose(np.sort(whole.source.energy), np.sort(e))


def test_events_extname_variants(evdir, tmp_path):
    """EVENTS found by HDUNAME, or as the first table with time and energy columns whatever its
    EXTNAME; a binned light curve, a spectrum or an image alone are refused by name."""
    src = evdir / QUIET
    n = _orig(src)[0].size
    for name in ("EVT", "STDEVT"):
        dst = _copy(src, tmp_path / f"{name}.fits", events=name)
        o = read_observation(dst)
        assert o.source.n_events == n == 191 and o.meta["extname"] == name
    lc = fits.BinTableHDU.from_columns([fits.Column("TIME", "D", array=[1.0, 2.0]),
                                        fits.Column("COUNTS", "J", array=[3, 4]),
                                        fits.Column("COUNT_RATE", "E", array=[3.0, 4.0])], name="LIGHTCURVE")
    fits.HDUList([fits.PrimaryHDU(), lc, _gti_hdu(0.0, 3.0)]).writeto(tmp_path / "lc3.fits")
    with pytest.raises(FileFormatError, match="binned light curve"):
        read_observation(tmp_path / "lc3.fits")
    sp = fits.BinTableHDU.from_columns([fits.Column("CHANNEL", "J", array=[1, 2]),
                                        fits.Column("COUNTS", "J", array=[3, 4])], name="SPECTRUM")
    fits.HDUList([fits.PrimaryHDU(), sp]).writeto(tmp_path / "pha3.fits")
    with pytest.raises(FileFormatError, match="a spectrum"):
        read_observation(tmp_path / "pha3.fits")
    fits.HDUList([fits.PrimaryHDU(np.ones((5, 5)))]).writeto(tmp_path / "img3.fits")
    with pytest.raises(FileFormatError, match="an image"):
        read_observation(tmp_path / "img3.fits")


def test_gti_extension_names_and_ccds(evdir, tmp_path):
    """GTI blocks named GTI + CCD_ID (CIAO), GTI7/GTI6 without CCD_ID, GTI_7 in HDUNAME, or one
    generic STDGTI: a source on CCD 7 of 28229 gets CCD 7's GTIs whenever the CCD is known."""
    src = evdir / FIELD
    _, _, g = _orig(src)
    assert set(g) == {6, 7}
    ref = read_observation(src, ra=BRIGHT_28229[0], dec=BRIGHT_28229[1], radius=1.25)
    assert ref.meta["ccd_ids"] == [7]
    np.testing.assert_array_equal(ref.source.gti, g[7])
    variants = {
        "extname_digits": [_gti_hdu(g[c][:, 0], g[c][:, 1], name=f"GTI{c}") for c in (7, 6)],
        "hduname_underscore": [_gti_hdu(g[c][:, 0], g[c][:, 1], name="GTI", hduname=f"GTI_{c}") for c in (6, 7)],
        "stdgti_numbered": [_gti_hdu(g[c][:, 0], g[c][:, 1], name=f"STDGTI0{c}") for c in (7, 6)],
    }
    for tag, blocks in variants.items():
        o = read_observation(_copy(src, tmp_path / f"{tag}.fits", gti=blocks), ra=BRIGHT_28229[0],
                             dec=BRIGHT_28229[1], radius=1.25)
        np.testing.assert_array_equal(o.source.gti, g[7], err_msg=tag)
        np.testing.assert_array_equal(o.source.time, ref.source.time, err_msg=tag)
    # a CSC stack regevt3 has one block per CCD per ObsID: blocks of the same CCD are joined
    g7 = g[7]
    mid = 0.5 * (g7[0, 0] + g7[-1, 1])
    halves = [_gti_hdu(np.minimum(g7[:, 0], mid), np.minimum(g7[:, 1], mid), ccd=7),
              _gti_hdu(np.maximum(g7[:, 0], mid), np.maximum(g7[:, 1], mid), ccd=7),
              _gti_hdu(g[6][:, 0], g[6][:, 1], ccd=6)]
    o = read_observation(_copy(src, tmp_path / "stack.fits", gti=halves), ra=BRIGHT_28229[0],
                         dec=BRIGHT_28229[1], radius=1.25)
    np.testing.assert_allclose(o.source.gti, g7)
    np.testing.assert_array_equal(o.source.time, ref.source.time)
    # one GTI block for all chips (no CCD_ID, no digits): it applies to every CCD
    one = _copy(src, tmp_path / "stdgti.fits", gti=[_gti_hdu(g[6][:, 0], g[6][:, 1], name="STDGTI")])
    o = read_observation(one, ra=BRIGHT_28229[0], dec=BRIGHT_28229[1], radius=1.25)
    np.testing.assert_array_equal(o.source.gti, g[6])


def test_no_gti_extension(evdir, tmp_path, capsys):
    """No GTI at all: refused by default (one line, exit 2, names the flag); with
    --gti-from-header the good time is TSTART-TSTOP, or without those keywords the span of the
    event times +- half a frame, and a warning says so."""
    src = evdir / QUIET
    t, _, g = _orig(src)
    dst = _copy(src, tmp_path / "nogti.fits", gti=[])
    _refused([str(dst), "--out", str(tmp_path / "a.h5")], capsys, "nogti.fits", "GTI", "--gti-from-header")
    with fits.open(src) as h:
        tstart, tstop = h["EVENTS"].header["TSTART"], h["EVENTS"].header["TSTOP"]
    o = read_observation(dst, missing_gti="header")
    np.testing.assert_array_equal(o.source.gti, [[tstart, tstop]])
    assert o.source.n_events == t.size and any("TSTART-TSTOP" in w for w in o.meta["warnings"])
    bare = _copy(src, tmp_path / "bare.fits", gti=[], drop_keys=("TSTART", "TSTOP"))
    o = read_observation(bare, missing_gti="header")
    np.testing.assert_allclose(o.source.gti, [[t.min() - 0.22052, t.max() + 0.22052]])
    assert o.source.n_events == t.size and any("span of the event times" in w for w in o.meta["warnings"])
    capsys.readouterr()
    assert main(["encode", str(bare), "--out", str(tmp_path / "b.h5"), "--gti-from-header", "--no-analysis"]) == 0
    assert "warning:" in capsys.readouterr().err


def test_missing_timedel_frame_time_fallbacks(evdir, tmp_path):
    """TIMEDEL missing: EXPTIME + 41.04 ms (0.4 + 0.04104 = the file's TIMEDEL 0.44104 s); without
    EXPTIME too, the 128-row subarray default; continuous clocking: 2.85 ms; all warned."""
    src = evdir / QUIET
    o = read_observation(_copy(src, tmp_path / "a.fits", drop_keys=("TIMEDEL",)))
    assert o.meta["frame_time"] == pytest.approx(0.44104, abs=1e-9) and o.meta["warnings"]
    o = read_observation(_copy(src, tmp_path / "b.fits", drop_keys=("TIMEDEL", "EXPTIME")))
    assert o.meta["frame_time"] == pytest.approx(0.44104, abs=1e-9) and "128-row" in o.meta["frame_time_source"]
    o = read_observation(_copy(src, tmp_path / "c.fits", drop_keys=("TIMEDEL",), header={"READMODE": "CONTINUOUS"}))
    assert o.meta["frame_time"] == 0.00285 and o.meta["continuous_clocking"]
    o = read_observation(_copy(src, tmp_path / "d.fits", drop_keys=("TIMEDEL", "EXPTIME", "NROWS")))
    assert o.meta["frame_time"] == 3.24104


def test_pi_only_and_energy_units(evdir, tmp_path):
    """No energy column and no RMF: (pi - 0.5) x 14.6 eV with a warning; 0.5-7 keV counts within
    1 % of the energy column's.  An energy column in keV (TUNIT keV, or no TUNIT and values
    below 50) gives the same energies; an unknown unit is refused."""
    src = evdir / FLARE
    _, e, _ = _orig(src)
    with fits.open(src) as h:
        pi = np.asarray(h["EVENTS"].data["pi"], float)
    o = read_observation(_copy(src, tmp_path / "pi.fits",
                               columns=lambda ev: fits.ColDefs([c for c in ev.columns if c.name != "energy"])))
    np.testing.assert_allclose(np.sort(o.source.energy), np.sort((pi - 0.5) * 0.0146))
    assert any("14.6 eV" in w for w in o.meta["warnings"])
    n_pi = np.sum((o.source.energy >= 0.5) & (o.source.energy < 7))
    n_e = np.sum((e >= 0.5) & (e < 7))
    assert abs(n_pi - n_e) < 0.01 * n_e

    def kev(unit):
        def f(ev):
            return fits.ColDefs([_col(c, unit=(unit if c.name == "energy" else c.unit),
                                      array=(ev.data[c.name] / 1e3 if c.name == "energy" else ev.data[c.name]))
                                 for c in ev.columns])
        return f
    for unit in ("keV", None):
        o = read_observation(_copy(src, tmp_path / f"kev{unit}.fits", columns=kev(unit)))
        np.testing.assert_allclose(np.sort(o.source.energy), np.sort(e), rtol=1e-6)
    with pytest.raises(FileFormatError, match="energy unit 'J'"):
        read_observation(_copy(src, tmp_path / "joule.fits", columns=kev("J")))


def test_nan_energies_dropped_with_warning(evdir, tmp_path):
    src = evdir / QUIET
    t, e, _ = _orig(src)
    bad = np.arange(t.size) % 10 == 3

    def nan_cols(ev):
        en = np.array(ev.data["energy"], np.float32)
        en[bad] = np.nan
        return fits.ColDefs([_col(c, array=(en if c.name == "energy" else ev.data[c.name])) for c in ev.columns])
    o = read_observation(_copy(src, tmp_path / "nan.fits", columns=nan_cols))
    assert o.meta["n_bad_energy"] == int(bad.sum()) == 19
    assert o.source.n_events == t.size - bad.sum() and np.all(np.isfinite(o.source.energy))
    np.testing.assert_allclose(np.sort(o.source.energy), np.sort(e[~bad]), rtol=1e-6)
    assert any("NaN" in w for w in o.meta["warnings"])


# --------------------------------------------------------------------------- CSC regevt3


def _csc_regevt3(src, tmp_path, ra, dec):
    """A CSC 2.x per-observation regevt3-like file: the evt2 filtered to a rectangular sky box
    (the background region of interest), GTI blocks of the CCDs in it (EXTNAME GTI, HDUNAME
    GTIn, CCD_ID), a MASK image; and its reg3 with SRCREG (ellipse) and BKGREG (ellipse minus
    the source ellipse), gzipped as the archive serves them."""
    from simxray.events.regions import SkyWCS

    with fits.open(src) as h:
        ev = h["EVENTS"]
        names = ev.columns.names
        w = SkyWCS.from_header(ev.header, names.index("x") + 1, names.index("y") + 1)
        x0, y0 = (float(v) for v in w.to_pixel(ra, dec))
        half = 60.0                                              # 30" half-width box
        d = ev.data
        m = (np.abs(d["x"] - x0) <= half) & (np.abs(d["y"] - y0) <= half)
        keep = ["time", "ccd_id", "node_id", "expno", "chipx", "chipy", "tdetx", "tdety", "detx", "dety", "x", "y",
                "pha", "pha_ro", "energy", "pi", "fltgrade", "grade", "status"]
        cols = fits.ColDefs([_col(c, array=d[c.name][m]) for c in ev.columns if c.name in keep])
        new = fits.BinTableHDU.from_columns(cols, header=ev.header.copy(), name="EVENTS")
        new.header["CONTENT"] = "EVT3"
        ccds = sorted(set(np.asarray(d["ccd_id"][m]).tolist()))
        gtis = []
        for x in h[2:]:
            if x.name == "GTI" and x.header["CCD_ID"] in ccds:
                gtis.append(x.copy())
        mask = fits.ImageHDU(np.ones((121, 121), np.uint8), name="MASK")
        evt = tmp_path / "acisf28229_000N028_r0007_regevt3.fits.gz"
        import io

        buf = io.BytesIO()
        fits.HDUList([h[0].copy(), new, *gtis, mask]).writeto(buf)
        evt.write_bytes(gzip.compress(buf.getvalue()))

    def table(name, rows):
        return fits.BinTableHDU.from_columns(
            [fits.Column("SHAPE", "16A", array=[r[0] for r in rows]),
             fits.Column("X", "1D", array=[x0] * len(rows)), fits.Column("Y", "1D", array=[y0] * len(rows)),
             fits.Column("R", "2D", array=np.array([r[1] for r in rows])),
             fits.Column("ROTANG", "1D", array=[0.0] * len(rows)),
             fits.Column("COMPONENT", "1I", array=[1] * len(rows))], name=name)
    reg = tmp_path / "acisf28229_000N028_r0007_reg3.fits"
    buf = __import__("io").BytesIO()
    fits.HDUList([fits.PrimaryHDU(), table("SRCREG", [("Ellipse", (4.0, 3.0))]),
                  table("BKGREG", [("Ellipse", (40.0, 30.0)), ("!Ellipse", (8.0, 6.0))])]).writeto(buf)
    (tmp_path / (reg.name + ".gz")).write_bytes(gzip.compress(buf.getvalue()))
    return evt, tmp_path / (reg.name + ".gz"), (x0, y0), ccds


def test_csc_regevt3_with_reg3(evdir, tmp_path, capsys):
    """A CSC regevt3 (+ gzipped reg3) gives exactly the source and background events of the
    same reg3 ellipses applied to the full evt2, and encodes from the CLI."""
    src = evdir / FIELD
    evt, reg, (x0, y0), ccds = _csc_regevt3(src, tmp_path, *BRIGHT_28229)
    small = read_observation(evt, region=reg)
    full = read_observation(src, region=reg)
    np.testing.assert_array_equal(small.source.time, full.source.time)
    np.testing.assert_array_equal(small.background.time, full.background.time)
    assert small.backscal == pytest.approx(12.0 / (1200.0 - 48.0), rel=2e-3)
    # independent count: events inside the 4 x 3 pixel ellipse, from astropy
    with fits.open(src) as h:
        d = h["EVENTS"].data
        inside = ((d["x"] - x0) / 4.0) ** 2 + ((d["y"] - y0) / 3.0) ** 2 <= 1.0
        assert small.source.n_events == int(inside.sum()) > 50
    np.testing.assert_array_equal(small.source.gti, full.source.gti)
    whole = read_observation(evt)
    assert any("reg3" in s for s in whole.meta["notes"])
    out, rep = tmp_path / "z.h5", tmp_path / "r.json"
    assert main(["encode", str(evt), "--region", str(reg), "--out", str(out), "--report", str(rep), "--quiet",
                 "--null-sims", "10"]) == 0
    import json

    doc = json.loads(rep.read_text())["sources"][0]
    assert doc["n_events_region"] == small.source.n_events and doc["class"] == "constant"


# --------------------------------------------------------------------------- refusals and cuts


def test_refusals_one_line_exit_2(evdir, tmp_path, capsys):
    """HRC, non-Chandra, a circle off the field, an empty circle on the field, GTIs that do not
    overlap the events, all events outside 0.5-7 keV: one line naming file and field, exit 2."""
    src = evdir / QUIET
    _, _, g = _orig(src)
    out = ["--out", str(tmp_path / "o.h5")]
    hrc = _copy(src, tmp_path / "hrcf_evt2.fits", header={"INSTRUME": "HRC-I", "DETNAM": "HRC-I"},
                columns=lambda ev: fits.ColDefs([c for c in ev.columns if c.name in ("time", "x", "y", "pi")]))
    _refused([str(hrc), *out], capsys, "hrcf_evt2.fits", "INSTRUME", "HRC event files are not supported")
    xmm = _copy(src, tmp_path / "pn.fits", header={"TELESCOP": "XMM", "INSTRUME": "EPN"})
    _refused([str(xmm), *out], capsys, "TELESCOP", "Chandra ACIS event files only")
    f = str(evdir / FIELD)
    err = _refused([f, "--ra", "266.5", "--dec", "-29.2", *out], capsys, "off the field", "--ra/--dec")
    assert "RA 266.5" in err
    _refused([f, "--ra", str(SGR_A_STAR[0] + 10 / 3600), "--dec", str(SGR_A_STAR[1]), "--radius", "0.1", *out],
             capsys, "no events in the source region")
    shifted = _copy(src, tmp_path / "shifted_gti.fits",
                    gti=[_gti_hdu(g[7][:, 0] + 1e6, g[7][:, 1] + 1e6, ccd=7)])
    _refused([str(shifted), *out], capsys, "shifted_gti.fits", "GTI", "none of the 191 selected events")

    def hot(ev):
        return fits.ColDefs([_col(c, array=(np.full(len(ev.data), 9000.0) if c.name == "energy" else ev.data[c.name]))
                             for c in ev.columns])
    hard = _copy(src, tmp_path / "hard.fits", columns=hot)
    _refused([str(hard), *out], capsys, "hard.fits", "no events in 0.5-7")
    assert not (tmp_path / "o.h5").exists()


def test_continuous_clocking_file(evdir, tmp_path):
    """A CC-mode-like copy of 15043_sgra (TIMEDEL 2.85 ms, READMODE CONTINUOUS, 50 ks): read with
    the 2.85-ms frame; the Z² search is binned under its FFT cap (f_max lowered and stated), the
    Bayesian blocks run, and the flare is still a flare."""
    from simxray.events.lightcurve import Z2_MAX_BINS
    from simxray.events.realencode import baseline, combined_class

    src = evdir / "15043_sgra_evt2.fits"
    rng = np.random.default_rng(4)

    def cc_times(ev):       # each event spread over its 0.441-s frame, then on the 2.85-ms CC grid
        t = np.asarray(ev.data["time"], float) + rng.uniform(-0.22052, 0.22052, len(ev.data))
        t = t[0] + np.round((t - t[0]) / 0.00285) * 0.00285
        return fits.ColDefs([_col(c, array=(t if c.name == "time" else ev.data[c.name])) for c in ev.columns])
    dst = _copy(src, tmp_path / "cc.fits", columns=cc_times,
                header={"TIMEDEL": 0.00285, "READMODE": "CONTINUOUS", "DATAMODE": "CC33_FAINT"})
    o = read_observation(dst)
    assert o.meta["frame_time"] == 0.00285 and o.meta["continuous_clocking"]
    base = baseline(o)                       # Z² against the blocks light curve, as encode runs it
    z = base["z2_search"]
    assert z["binned_s"] == pytest.approx(0.00285 * math.ceil(o.source.span / 0.00285 * 4 / Z2_MAX_BINS))
    assert o.source.span / z["binned_s"] * 4 <= Z2_MAX_BINS and "FFT size cap" in z["note"]
    assert z["fmax_hz"] == pytest.approx(0.5 / z["binned_s"]) and z["fap"] > 1e-3
    assert base["bayesian_blocks"]["cls"] == "flare" and combined_class(None, base)["class"] == "flare"
    # a circle on a CC file is warned (the source is a streak in sky coordinates)
    with fits.open(src) as h:
        d = h["EVENTS"].data
        names = h["EVENTS"].columns.names
        from simxray.events.regions import SkyWCS

        w = SkyWCS.from_header(h["EVENTS"].header, names.index("x") + 1, names.index("y") + 1)
        ra, dec = w.to_world(float(np.median(d["x"])), float(np.median(d["y"])))
    o = read_observation(dst, ra=float(ra), dec=float(dec), radius=2.0)
    assert any("continuous-clocking" in s for s in o.meta["warnings"])


def test_bayesian_blocks_cells_for_many_distinct_times():
    """More distinct times than ``max_cells``: the times are binned into equal cells first, and
    the edges are astropy's Bayesian blocks of the cell-centred times; a step in rate is still
    found where it is."""
    from astropy.stats import bayesian_blocks

    from simxray.events.lightcurve import bayesian_blocks_events

    rng = np.random.default_rng(2)
    t = np.sort(np.concatenate([rng.uniform(0, 1000, 6000), rng.uniform(600, 700, 3000)]))
    edges = bayesian_blocks_events(t, 0.01, max_cells=2000)
    w = (t.max() - t.min()) / 2000
    cells = t.min() + (np.minimum(((t - t.min()) / w).astype(int), 1999) + 0.5) * w
    np.testing.assert_allclose(edges, bayesian_blocks(cells, fitness="events", p0=0.01))
    inner = edges[1:-1]
    assert np.min(np.abs(inner - 600)) < 2 * w and np.min(np.abs(inner - 700)) < 2 * w and len(edges) <= 6


def test_magnetar_region_in_gzipped_ds9_file(evdir, tmp_path):
    """A ds9 region file gzipped (as some archives ship them) reads like the plain one."""
    f = evdir / FLARE
    text = f"fk5;circle({SGR_J1745_2900[0]},{SGR_J1745_2900[1]},1\")\n"
    (tmp_path / "m.reg.gz").write_bytes(gzip.compress(text.encode()))
    a = read_observation(f, region=tmp_path / "m.reg.gz")
    b = read_observation(f, ra=SGR_J1745_2900[0], dec=SGR_J1745_2900[1], radius=1.0)
    assert a.source.n_events == b.source.n_events > 1000
    # ds9 'image' coordinates depend on the display binning: refused, not read as sky pixels
    (tmp_path / "img.reg").write_text("image\ncircle(100,100,5)\n")
    with pytest.raises(FileFormatError, match="image"):
        read_observation(f, region=tmp_path / "img.reg")


# --------------------------------------------------------------------------- held-out-like sources


def _busiest(t, tstart, tstop, width=300.0):
    edges = tstart + width * np.arange(int(np.ceil((tstop - tstart) / width)) + 1)
    c = np.histogram(t, edges)[0]
    k = int(np.argmax(c))
    return 0.5 * (edges[k] + edges[k + 1])


@pytest.fixture(scope="module")
def heldout(evdir):
    """Sources a user could bring, derived from the real lists: 15043's Sgr A* time-reversed and
    with five 10-ks segments permuted (still one flare), 15043 before and after its flare and
    11843 with its flare cut out of the GTIs (constant), the magnetar with its times and GTIs
    shifted by 12345.678 s (still periodic at 3.76 s).  One analysis, 50 null simulations."""
    from simxray.events.eventfile import EventList
    from simxray.events.ppad import PPAD
    from simxray.events.realencode import analyse
    from simxray.events.realfile import Observation

    def mk(o, t, e, gti, tag):
        return Observation(EventList(t, e, gti, o.source.frame_time, name=o.source.name + tag).clean(), None, 0.0,
                           dict(o.meta))

    obs = {}
    o = read_observation(evdir / "15043_sgra_evt2.fits")
    s = o.source
    obs["reversed"] = mk(o, s.tstart + s.tstop - s.time, s.energy, s.tstart + s.tstop - s.gti[::-1, ::-1], "[rev]")
    edges = np.linspace(s.tstart, s.tstop, 6)
    perm = [3, 0, 4, 1, 2]
    k_old = np.clip(np.searchsorted(edges, s.time, side="right") - 1, 0, 4)
    new_pos = np.argsort(perm)                      # old segment j goes to position new_pos[j]
    t_new = s.time - edges[k_old] + edges[new_pos[k_old]]
    obs["permuted"] = mk(o, t_new, s.energy, s.gti, "[perm]")
    tpk = _busiest(s.time, s.tstart, s.tstop)
    m = s.time < tpk - 6000
    obs["before"] = mk(o, s.time[m], s.energy[m], np.array([[s.tstart, tpk - 6000]]), "[before]")
    m = s.time > tpk + 6000
    obs["after"] = mk(o, s.time[m], s.energy[m], np.array([[tpk + 6000, s.tstop]]), "[after]")
    o = read_observation(evdir / "11843_sgra_evt2.fits")
    s = o.source
    tpk = _busiest(s.time, s.tstart, s.tstop)
    m = (s.time < tpk - 4000) | (s.time > tpk + 4000)
    obs["cut"] = mk(o, s.time[m], s.energy[m], np.array([[s.tstart, tpk - 4000], [tpk + 4000, s.tstop]]), "[cut]")
    o = read_observation(evdir / FLARE, ra=SGR_J1745_2900[0], dec=SGR_J1745_2900[1], radius=1.0)
    s = o.source
    obs["shifted"] = mk(o, s.time + 12345.678, s.energy, s.gti + 12345.678, "[shift]")
    res, _ = analyse(PPAD.load(device="cpu"), list(obs.values()), null_sims=50)
    return dict(zip(obs, res, strict=True)), obs


def test_heldout_flares_stay_flares(heldout):
    res, obs = heldout
    for key in ("reversed", "permuted"):
        r, s = res[key], obs[key].source
        assert r["class"] == "flare", (key, r["variability"])
        assert r["ppad"]["variability_test"]["significant"]
        # the flare's peak moved with the events: the blocks' peak is near the busiest 300-s bin
        assert abs(r["baseline"]["bayesian_blocks"]["peak_time"] - _busiest(s.time, s.tstart, s.tstop)) < 2850


def test_heldout_quiescent_parts_are_constant(heldout):
    res, obs = heldout
    for key in ("before", "after", "cut"):
        r = res[key]
        assert r["class"] == "constant", (key, r["variability"])
        assert r["baseline"]["bayesian_blocks_strict"]["n_blocks"] == 1
    # 15043 before its flare has fewer than 20 events in 0.5-7 keV: 'constant' is said to mean "no evidence"
    assert obs["before"].source.n_events < 20 and any("too few" in w for w in res["before"]["warnings"])
    assert not any("too few" in w for w in res["after"]["warnings"])
    # 11843 without its flare has a GTI gap of 8 ks: the blocks see good time, not a dip
    assert len(obs["cut"].source.gti) == 2 and res["cut"]["baseline"]["bayesian_blocks"]["gaps_compressed"]


def test_heldout_magnetar_shifted_still_periodic(heldout):
    r = heldout[0]["shifted"]
    assert r["class"] == "periodic" and r["variability"]["period_s"] == pytest.approx(3.76364, abs=5e-4)
