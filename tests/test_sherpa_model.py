"""The emulator as a Sherpa model (simxray.sherpa) on the real NGC 4258 spectrum."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sherpa")

from sherpa.astro.ui.utils import Session  # noqa: E402
from sherpa.utils.err import ParameterErr  # noqa: E402

from simxray.datasets import default_spectrum_path  # noqa: E402
from simxray.errors import ParameterError, ResponseMismatchError  # noqa: E402
from simxray.sherpa import (  # noqa: E402
    SimxrayModelError,
    SimxrayPileup,
    emulated_counts,
    notice_emulator_channels,
)

START = {"nH": 1.0, "PhoIndex": 1.8, "norm": 1e-3, "alpha": 0.5, "f": 0.95}


@pytest.fixture(scope="module")
def session():
    """A private Sherpa session with the NGC 4258 spectrum, ungrouped, W-stat, the emulator
    as the full model on its channels."""
    s = Session()
    s.set_conf_opt("numcores", 1)
    s.load_pha(str(default_spectrum_path()))
    s.ungroup()
    m = SimxrayPileup("emu")
    s.set_full_model(m)
    # notice_emulator_channels works on the global session; do the same here by hand
    d = s.get_data()
    d.units = "channel"
    d.notice(None, None, ignore=True)
    d.notice(m.emulator.channels[0], m.emulator.channels[1])
    d.units = "energy"
    s.set_stat("wstat")
    return s, m


def test_parameters_limits_units():
    m = SimxrayPileup("p")
    assert [p.name for p in m.pars] == ["nH", "PhoIndex", "norm", "alpha", "f"]
    assert m.nH.min == pytest.approx(0.01) and m.nH.max == pytest.approx(10.0)
    assert m.nH.hard_max == pytest.approx(10.0) and m.f.hard_min == pytest.approx(0.85)
    assert m.nH.units == "1e22 cm^-2" and "keV" in m.norm.units
    with pytest.raises(ParameterErr):
        m.nH = 20.0                                   # outside the training range
    assert m.fixed_pileup["ftime"] == pytest.approx(3.24104)


def test_model_is_the_emulator_on_channels(session):
    s, m = session
    for k, v in START.items():
        setattr(m, k, v)
    x = np.arange(m.emulator.channels[0], m.emulator.channels[1] + 1)
    ref = m.emulator.expected(np.array([[1.0, 1.8, 1e-3, 0.5, 0.95]]))[0]
    assert np.allclose(m(x), ref)
    assert np.allclose(emulated_counts(**START), ref)
    with pytest.raises(ParameterError, match="missing"):
        emulated_counts(nH=1.0)


def test_wstat_equals_simxray(session):
    """Sherpa's W-stat of the emulator model = simxray's wstat on the same counts."""
    from simxray.inference.mcmc import Likelihood
    from simxray.io.ogip import read_pha

    s, m = session
    for k, v in START.items():
        setattr(m, k, v)
    spec = read_pha(default_spectrum_path())
    emu = m.emulator
    lo, hi = emu.channels
    idx = (spec.channel >= lo) & (spec.channel <= hi)
    like = Likelihood(spec.counts[idx], emu.expected,
                      background_counts=spec.background.counts[idx],
                      background_scale=spec.background_scale)
    ours = like.stat(np.array([[1.0, 1.8, 1e-3, 0.5, 0.95]]))[0]
    assert s.calc_stat() == pytest.approx(ours, rel=1e-6)


def test_fit_conf_draws(session):
    """fit() reaches the minimum found independently by scipy on the same statistic; conf()
    brackets it; get_draws() stays inside the limits."""
    from scipy.optimize import minimize

    from simxray.inference.mcmc import Likelihood
    from simxray.io.ogip import read_pha

    s, m = session
    for k, v in START.items():
        setattr(m, k, v)
    s.set_method("neldermead")
    s.fit()
    s.set_method("levmar")
    s.fit()
    best = s.get_fit_results().statval
    spec = read_pha(default_spectrum_path())
    emu = m.emulator
    idx = (spec.channel >= emu.channels[0]) & (spec.channel <= emu.channels[1])
    like = Likelihood(spec.counts[idx], emu.expected,
                      background_counts=spec.background.counts[idx],
                      background_scale=spec.background_scale)
    lo, hi = emu.low, emu.high

    def f(u):
        return float(like.stat(lo + (hi - lo) * np.clip(u, 0, 1)[None])[0])

    ref = min(minimize(f, u0, method="Nelder-Mead", options={"maxfev": 3000, "xatol": 1e-6,
                                                             "fatol": 1e-6}).fun
              for u0 in ([0.1, 0.4, 0.3, 0.5, 0.5], [0.5, 0.1, 0.5, 0.8, 0.9]))
    assert best <= ref + 0.5
    s.conf(m.nH)
    r = s.get_conf_results()
    assert r.parmins[0] is not None and r.parmins[0] < 0 < r.parmaxes[0]
    stat, accept, pars = s.get_draws(niter=200)
    assert pars.shape == (5, 201)
    assert np.all(pars >= lo[:, None] - 1e-12) and np.all(pars <= hi[:, None] + 1e-12)


def test_wrong_use_gives_clear_errors(session):
    s, m = session
    with pytest.raises(SimxrayModelError, match="set_full_model"):
        m.calc([p.val for p in m.pars], np.linspace(0.3, 8, 10), np.linspace(0.31, 8.1, 10))
    with pytest.raises(SimxrayModelError, match="outside the emulator's channels"):
        m.calc([p.val for p in m.pars], np.arange(20, 600))
    assert m.check_data(s.get_data()) == []
    d = s.get_data()
    old = d.exposure
    d.exposure = old * 2
    try:
        # check_data reads the file, so compare the in-memory exposure through the emulator
        with pytest.raises(ResponseMismatchError, match="exposure"):
            from simxray.io.ogip import read_pha

            spec = read_pha(default_spectrum_path())
            spec.exposure = d.exposure
            m.emulator.check_spectrum(spec)
    finally:
        d.exposure = old


def test_notice_emulator_channels_global_session():
    import sherpa.astro.ui as ui

    ui.clean()
    ui.load_pha(str(default_spectrum_path()))
    ui.ungroup()
    m = SimxrayPileup("g")
    ui.set_full_model(m)
    assert notice_emulator_channels(model=m) == m.emulator.channels
    ch = ui.get_data().get_noticed_channels()
    assert ch[0] == m.emulator.channels[0] and ch[-1] == m.emulator.channels[1]
    assert len(ch) == m.emulator.n_channels
    ui.clean()


def test_emulator_source_model_gives_fluxes(session):
    """calc_energy_flux with the emulator's linked source model = quad integrals of
    tbabs*powerlaw (absorbed) and of the power law (unabsorbed)."""
    from scipy.integrate import quad

    from simxray.physics.absorption import cross_section

    s, m = session
    for k, v in START.items():
        setattr(m, k, v)
    src = m.source_model()
    assert [p.name for p in src.pars] == ["nH", "PhoIndex", "norm"]
    m.PhoIndex = 2.0                                   # linked: the source follows the fit
    assert src.PhoIndex.val == 2.0
    kev = 1.602176634e-9                               # erg per keV
    absorbed = s.calc_energy_flux(2.0, 7.0, model=src)
    ref = quad(lambda e: e * 1e-3 * e ** -2.0 * np.exp(
        -1e22 * cross_section("tbabs", np.array([e]))[0]), 2.0, 7.0, points=[2.47, 3.2, 4.04],
        limit=200)[0] * kev
    assert absorbed == pytest.approx(ref, rel=2e-3)
    unabs = s.calc_energy_flux(2.0, 7.0, model=m.source_model("powerlaw"))
    assert unabs == pytest.approx(1e-3 * np.log(7.0 / 2.0) * kev, rel=1e-4)
    with pytest.raises(SimxrayModelError, match="set_full_model"):
        s.calc_energy_flux(2.0, 7.0, model=m)          # counts per channel: no flux
