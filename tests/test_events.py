"""Event lists: FITS/HDF5 I/O, awkward files, and the event-list simulator."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from simxray.errors import FileFormatError
from simxray.events.eventfile import (
    EventList,
    in_gti,
    merge_gti,
    read_event_dataset,
    read_events,
    write_event_dataset,
    write_events,
)
from simxray.events.simulate import (
    KINDS,
    SourceModel,
    hardness_ratios,
    random_source,
    simulate_population,
    simulate_source,
)


def _raw_fits(path, cols, gti=True, header=None):
    hdus = [fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name="EVENTS")]
    for k, v in (header or {}).items():
        hdus[1].header[k] = v
    if gti:
        hdus.append(fits.BinTableHDU.from_columns([fits.Column("START", "D", array=np.array([0.0, 60.0])),
                                                   fits.Column("STOP", "D", array=np.array([50.0, 100.0]))],
                                                  name="GTI"))
    fits.HDUList(hdus).writeto(path)
    return path


def test_hardness_ratio_definition():
    hr = hardness_ratios(soft=10.0, medium=30.0, hard=60.0)
    assert hr["hard_hm"] == pytest.approx(30 / 90)
    assert hr["hard_ms"] == pytest.approx(20 / 40)
    assert hr["hard_hs"] == pytest.approx(50 / 70)
    assert np.isnan(hardness_ratios(0.0, 0.0, 5.0)["hard_ms"])


def test_gti_helpers():
    g = merge_gti(np.array([[10.0, 20.0], [0.0, 5.0], [4.0, 8.0], [30.0, 30.0]]))
    np.testing.assert_array_equal(g, [[0, 8], [10, 20]])
    np.testing.assert_array_equal(in_gti(np.array([-1, 0, 8.5, 10, 20, 21.0]), g),
                                  [False, True, False, True, True, False])


def test_fits_roundtrip(tmp_path):
    rng = np.random.default_rng(3)
    ev, lab, _ = simulate_source(rng, "flare", name="rt")
    p = write_events(tmp_path / "evt.fits", ev, provenance={"seed": 3})
    back = read_events(p)
    np.testing.assert_array_equal(back.time, ev.time)
    np.testing.assert_allclose(back.energy, ev.energy, rtol=1e-6)   # float32 eV on disk
    np.testing.assert_array_equal(back.gti, ev.gti)
    assert back.frame_time == pytest.approx(3.24104)
    assert back.meta["energy_source"] == "ENERGY"
    assert back.exposure == pytest.approx(ev.exposure)
    assert '"seed": 3' in fits.getheader(p, 0)["SXPROV"]


def test_fits_pi_only_unsorted_and_outside_gti(tmp_path):
    t = np.array([70.0, 10.0, 55.0, 20.0])               # unsorted; 55 is in the gap
    pi = np.array([100, 200, 300, 69], dtype=np.int32)
    p = _raw_fits(tmp_path / "pi.fits", [fits.Column("TIME", "D", array=t), fits.Column("PI", "J", array=pi)])
    ev = read_events(p)
    np.testing.assert_array_equal(ev.time, [10.0, 20.0, 70.0])
    np.testing.assert_allclose(ev.energy, (np.array([200, 69, 100]) - 0.5) * 0.0146)
    assert ev.meta["sorted_on_read"] and ev.meta["n_outside_gti"] == 1
    assert ev.meta["energy_source"] == "PI"
    assert ev.exposure == pytest.approx(90.0)


def test_fits_errors_and_documented_handling(tmp_path):
    t = fits.Column("TIME", "D", array=np.array([1.0, 2.0]))
    e = fits.Column("ENERGY", "E", unit="eV", array=np.array([1000.0, 2000.0]))
    no_energy = _raw_fits(tmp_path / "noe.fits", [t, fits.Column("CHIPX", "J", array=np.array([1, 2]))])
    with pytest.raises(FileFormatError, match="neither an ENERGY nor a PI") as exc:
        read_events(no_energy)
    assert "noe.fits" in str(exc.value) and "EVENTS.ENERGY" in str(exc.value)
    no_gti = _raw_fits(tmp_path / "nogti.fits", [t, e], gti=False, header={"TSTART": 0.0, "TSTOP": 10.0})
    with pytest.raises(FileFormatError, match="no GTI extension"):
        read_events(no_gti)
    ev = read_events(no_gti, missing_gti="header")
    np.testing.assert_array_equal(ev.gti, [[0.0, 10.0]])
    np.testing.assert_allclose(ev.energy, [1.0, 2.0])
    no_time = _raw_fits(tmp_path / "notime.fits", [e])
    with pytest.raises(FileFormatError, match="no TIME column"):
        read_events(no_time)
    empty = _raw_fits(tmp_path / "empty.fits", [fits.Column("TIME", "D", array=np.zeros(0)),
                                                fits.Column("ENERGY", "E", array=np.zeros(0))])
    ev = read_events(empty)
    assert ev.n_events == 0 and ev.exposure == pytest.approx(90.0)
    (tmp_path / "junk.fits").write_text("not fits")
    with pytest.raises(FileFormatError, match="not a FITS file"):
        read_events(tmp_path / "junk.fits")


def test_truncated_event_file_is_one_line_error(tmp_path):
    """Issue 14 item 7: a truncated evt2 used to fail with 'ValueError: cannot reshape'."""
    rng = np.random.default_rng(5)
    ev, _, _ = simulate_source(rng, "constant", name="t")
    p = write_events(tmp_path / "full.fits", ev)
    raw = p.read_bytes()
    assert read_events(p).n_events == ev.n_events
    for cut in (100, 2880, 2880 * 2 + 7, len(raw) // 2, len(raw) - 2881):
        bad = tmp_path / f"cut{cut}.fits"
        bad.write_bytes(raw[:cut])
        with pytest.raises(FileFormatError) as exc:
            read_events(bad)
        msg = str(exc.value)
        assert "\n" not in msg and str(bad) in msg
        assert "truncated" in msg or "not a FITS file" in msg


def test_event_dataset_roundtrip(tmp_path):
    evs, lab = simulate_population(6, seed=5)
    p = write_event_dataset(tmp_path / "d.h5", evs, labels=lab, attrs={"provenance": {"seed": 5}})
    back, blab, attrs = read_event_dataset(p)
    assert len(back) == 6 and attrs["provenance"]["seed"] == 5
    for a, b in zip(evs, back, strict=True):
        np.testing.assert_array_equal(a.time, b.time)
        np.testing.assert_allclose(a.energy, b.energy, rtol=1e-6)
        np.testing.assert_array_equal(a.gti, b.gti)
    assert list(blab["kind"]) == list(lab["kind"])
    np.testing.assert_allclose(blab["hard_hm"], lab["hard_hm"])


def test_simulator_frames_gtis_and_counts():
    rng = np.random.default_rng(11)
    ev, lab, src = simulate_source(rng, "constant", n_expected=4000.0, gap_prob=1.0)
    ft = ev.frame_time
    k = (ev.time - src.tstart) / ft - 0.5
    np.testing.assert_allclose(k, np.round(k), atol=1e-5)          # frame-quantised mid times
    assert len(ev.gti) >= 2 and np.all(in_gti(ev.time, ev.gti))
    n_band = np.sum((ev.energy >= 0.5) & (ev.energy < 7.0))
    assert abs(n_band - lab["expected_counts"]) < 5 * np.sqrt(lab["expected_counts"])
    assert lab["expected_counts"] == pytest.approx(4000.0, rel=1e-6)
    for key in ("hard_hm", "hard_ms", "hard_hs"):            # observed vs true ratios, ~4 sigma
        assert abs(lab[key] - lab["obs_" + key]) < 4 * np.sqrt(1 / n_band * 4)


def test_simulator_variability_shapes():
    rng = np.random.default_rng(2)
    src = random_source(rng, "flare", n_expected=20000.0, t0=0.5, rise=0.01, decay=0.05, amplitude=10.0,
                        gap_prob=0.0)
    ev = src.sample(rng)
    tau = (ev.time - src.tstart) / src.span
    peak = np.sum(np.abs(tau - 0.52) < 0.02)
    quiet = np.sum(np.abs(tau - 0.2) < 0.02)
    assert peak / quiet == pytest.approx(1 + 10 * np.exp(-0.02 / 0.05), rel=0.15)
    ecl = random_source(rng, "eclipse", n_expected=20000.0, period=0.4, phase=0.3, duration=0.08, ingress=0.01,
                        depth=1.0, gap_prob=0.0)
    tau = (ecl.sample(rng).time - ecl.tstart) / ecl.span
    assert np.sum(np.abs(tau - 0.3) < 0.02) == 0                 # total eclipse
    assert np.sum(np.abs(tau - 0.5) < 0.02) > 100
    # absorption dip hardens the spectrum inside the dip
    dip = random_source(rng, "dip", spectral_change=True, n_expected=50000.0, gamma=2.0, nh22=0.05, centres=[0.5], widths=[0.05],
                        dnh22=5.0, gap_prob=0.0)
    assert isinstance(dip, SourceModel)
    t_in, t_out = dip.tstart + 0.5 * dip.span, dip.tstart + 0.15 * dip.span
    r = dip.band_rates(np.array([t_in, t_out]), [0.5, 1.2, 2.0, 7.0])
    hr_in, hr_out = (hardness_ratios(*r[i])["hard_hs"] for i in (0, 1))
    assert hr_in > hr_out + 0.2
    assert r[0].sum() < 0.7 * r[1].sum()


def test_population_balanced_and_reproducible():
    evs, lab = simulate_population(12, seed=4)
    assert sorted(lab["kind"].tolist()) == sorted(list(KINDS) * 2)
    evs2, lab2 = simulate_population(12, seed=4)
    np.testing.assert_array_equal(evs[7].time, evs2[7].time)
    np.testing.assert_array_equal(lab["hard_hs"], lab2["hard_hs"])
    assert np.all(lab["spectral_change"][lab["kind"] == "constant"] == 0)
    assert np.all((lab["hard_hm"] > -1) & (lab["hard_hm"] < 1))


def test_eventlist_clean_rejects_bad_gti():
    with pytest.raises(FileFormatError, match="STOP >= START"):
        EventList(np.array([1.0]), np.array([1.0]), np.array([[5.0, 2.0]]), name="x").clean()
    with pytest.raises(FileFormatError, match="NaN"):
        EventList(np.array([np.nan]), np.array([1.0]), np.array([[0.0, 2.0]])).clean()
