"""The Observation object against Sherpa's own filtering, grouping and scalings on the
real ACIS spectra in ../shared/data/chandra."""

from __future__ import annotations

import numpy as np
import pytest

from simxray.errors import ParameterError, SimxrayError
from simxray.observation import Observation

SPECTRA = ["source_bin10.pi", "3c273.pi", "acisf01575_001N001_r0085_pha3.fits.gz"]


def _sherpa_session(path):
    pytest.importorskip("sherpa")
    import logging

    from sherpa.astro.ui.utils import Session

    logging.getLogger("sherpa").setLevel(logging.ERROR)
    s = Session()
    s.load_pha(str(path))
    return s


@pytest.mark.sherpa
@pytest.mark.parametrize("name", SPECTRA)
@pytest.mark.parametrize("band", [(1.0, 7.0), (0.5, 7.0), (0.3, 8.0), (2.0, 2.5)])
def test_notice_equals_sherpa_ungrouped(chandra_dir, name, band):
    s = _sherpa_session(chandra_dir / name)
    s.ungroup()
    s.notice(*band)
    want = np.asarray(s.get_data().mask, dtype=bool)
    obs = Observation.from_pha(chandra_dir / name)
    obs.good[:] = True          # compare the energy filter alone
    obs.notice(*band)
    assert obs.mask.sum() == want.sum() > 0
    np.testing.assert_array_equal(obs.mask, want)


@pytest.mark.sherpa
def test_quality_as_sherpa_ignore_bad(chandra_dir):
    s = _sherpa_session(chandra_dir / "source_bin10.pi")
    s.ignore_bad()
    s.ungroup()
    want = np.asarray(s.get_data().get_mask(), dtype=bool)
    obs = Observation.from_pha(chandra_dir / "source_bin10.pi")
    assert (~obs.good).sum() == 4 == (~want).sum()
    np.testing.assert_array_equal(obs.mask, want)


@pytest.mark.sherpa
@pytest.mark.parametrize("name", ["source_bin10.pi", "3c273.pi"])
def test_grouping_sums_equal_sherpa(chandra_dir, name):
    s = _sherpa_session(chandra_dir / name)
    d = s.get_data()
    want = d.apply_grouping(d.counts)
    obs = Observation.from_pha(chandra_dir / name)
    obs.good[:] = True
    groups = obs.groups()
    got = np.array([obs.counts[g].sum() for g in groups])
    np.testing.assert_allclose(got, want)
    assert len(groups) < obs.n_channels


@pytest.mark.sherpa
@pytest.mark.parametrize("name", SPECTRA)
def test_scalings_equal_sherpa(chandra_dir, name):
    s = _sherpa_session(chandra_dir / name)
    d = s.get_data()
    obs = Observation.from_pha(chandra_dir / name)
    assert obs.exposure == pytest.approx(d.exposure, rel=1e-12)
    assert np.all(np.asarray(obs.backscal) == pytest.approx(np.asarray(d.backscal), rel=1e-12))
    np.testing.assert_array_equal(obs.counts, d.counts)
    if obs.background is not None:
        assert obs.background_scale == pytest.approx(float(np.mean(s.get_bkg_scale())),
                                                     rel=1e-9)


def test_frame_time_and_fracexp(chandra_dir):
    obs = Observation.from_pha(chandra_dir / "source_bin10.pi")
    assert obs.frame_time == pytest.approx(3.24104)
    assert obs.fracexp == 1.0                      # FRACEXPO of arf.fits
    obs2 = Observation.from_pha(chandra_dir / "source_bin10.pi", frame_time=3.2, fracexp=0.9)
    assert (obs2.frame_time, obs2.fracexp) == (3.2, 0.9)


def test_filters_combine_and_reset(chandra_dir):
    obs = Observation.from_pha(chandra_dir / "3c273.pi")
    obs.notice(0.5, 7.0)
    n = int(obs.mask.sum())
    obs.ignore(2.0, 3.0)
    assert 0 < obs.mask.sum() < n
    lo, hi = obs.energy_range
    assert lo == pytest.approx(0.4964, abs=0.02) and hi == pytest.approx(7.0, abs=0.02)
    obs.notice()
    assert obs.mask.sum() == obs.n_channels


def test_empty_filter_and_all_bad_quality(chandra_dir, tmp_path):
    obs = Observation.from_pha(chandra_dir / "3c273.pi")
    with pytest.raises(ParameterError, match="no good channel"):
        obs.notice(20.0, 30.0)
    from astropy.io import fits

    src = fits.open(chandra_dir / "3c273.pi")
    src[1].data["QUALITY"][:] = 5
    bad = tmp_path / "bad.pi"
    src.writeto(bad)
    for f in ("3c273.arf", "3c273.rmf", "3c273_bg.pi"):
        (tmp_path / f).symlink_to(chandra_dir / f)
    with pytest.raises(SimxrayError, match="QUALITY flags every channel"):
        Observation.from_pha(bad)
