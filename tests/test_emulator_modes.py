"""One emulator for several observing modes (issue 15): the log frame time is a network
input, the exposure an exact scale; ``Emulator.at`` binds it to one observation, fits bind
it to the spectrum's EXPOSURE and TIMEDEL, and the exact simulator is the reference."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from simxray.datasets import DATA_DIR

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_relxill_modes import FRAMES, TINY  # noqa: E402

SETTINGS = """
[emulator]
target = "counts"
hidden = 64
layers = 3
n_basis = 16
epochs = 150
batch_size = 128
learning_rate = 3e-3
seed = 1
"""


@pytest.fixture(scope="module")
def modes(tmp_path_factory):
    """A two-mode tbabs*powerlaw campaign (3,000 spectra, seed 3), an emulator trained on it
    with ``simxray train-emulator`` and the exact simulator of its setup."""
    from simxray.cli import main
    from simxray.inference.diagnostics import simulator_for
    from simxray.inference.emulator import Emulator
    from simxray.simulator.campaign import run_campaign
    from simxray.simulator.config import load_config

    d = tmp_path_factory.mktemp("emu_modes")
    (d / "tiny.toml").write_text(TINY)
    (d / "emu.toml").write_text(SETTINGS)
    run_campaign(load_config(d / "tiny.toml"), 3000, d / "sims.h5", seed=3, quiet=True)
    rc = main(["train-emulator", str(d / "sims.h5"), "--config", str(d / "emu.toml"), "--out",
               str(d / "emu"), "-q", "--threads", "1"])
    assert rc == 0
    emu = Emulator.load(d / "emu")
    return d, emu, simulator_for(emu.config)


def _pha(sim, tmp_path, exposure, frame_time, name="s.pi", seed=1):
    from simxray.io.ogip import write_pha

    theta = np.array([[0.5, 2.0, 5e-4, 0.5]])
    r = sim.at(exposure=exposure, frame_time=frame_time).simulate(theta,
                                                                   np.random.default_rng(seed))
    full = np.zeros(1024, dtype=np.int64)
    full[np.asarray(sim.channel) - 1] = r["counts"][0]
    return write_pha(tmp_path / name, full, exposure, respfile=str(DATA_DIR / "rmf.fits"),
                     ancrfile=str(DATA_DIR / "arf.fits"), frame_time=frame_time), theta[0]


def test_config_records_the_modes(modes):
    _, emu, _ = modes
    cov = emu.config["covariates"]
    assert emu.covariate_names == ["exposure", "frame_time"]
    assert cov["inputs"] == ["frame_time"]
    assert cov["distributions"]["frame_time"]["values"] == list(FRAMES)
    assert "exposure" not in cov["distributions"]          # an exact scale: any exposure
    assert 2e4 < cov["exposure_reference"] < 1.5e5
    assert emu.config["exposure"] is None and emu.config["frame_time"] is None
    assert emu.net.n_params == len(emu.names) + 1


def test_one_network_serves_every_mode(modes):
    """Against the exact simulator in each mode and at two exposures: median error < 2 %,
    while the other mode's spectrum is 15 % or more away (the network tells them apart)."""
    _, emu, sim = modes
    th = sim.prior.sample(200, np.random.default_rng(5))
    for ft, other in (FRAMES, FRAMES[::-1]):
        for ex in (3e4, 1.2e5):
            mu = emu.at(exposure=ex, frame_time=ft).expected(th)
            true = sim.at(exposure=ex, frame_time=ft).expected(th)
            wrong = sim.at(exposure=ex, frame_time=other).expected(th)
            m = true > 10
            err = np.median(np.abs(mu / true - 1)[m])
            assert err < 0.02, (ft, ex, err)
            assert np.median(np.abs(wrong / true - 1)[m]) > 0.15


def test_binding_is_exact_and_round_trips(modes, tmp_path):
    """``at`` folds the frame time into the first layer's bias and the exposure into the
    output mean: equal to the per-row path (float32 round-off), μ ∝ exposure, the bound
    config names its mode, and a saved bound emulator reloads to the same numbers."""
    import torch

    from simxray.inference.emulator import Emulator

    _, emu, sim = modes
    th = sim.prior.sample(50, np.random.default_rng(2))
    b = emu.at(exposure=4e4, frame_time=FRAMES[1])
    rows = emu.expected(th, covariates=np.tile([4e4, FRAMES[1]], (50, 1)))
    np.testing.assert_allclose(b.expected(th), rows, rtol=2e-5)
    with torch.no_grad():
        np.testing.assert_allclose(b.expected_torch(torch.as_tensor(th)).numpy(), rows,
                                   rtol=2e-5)
    np.testing.assert_allclose(emu.at(exposure=8e4, frame_time=FRAMES[1]).expected(th),
                               2 * b.expected(th), rtol=2e-6)
    assert b.covariate_names == [] and b.net.n_params == len(b.names)
    assert b.config["bound"]["frame_time"] == FRAMES[1]
    assert (b.config["exposure"], b.config["frame_time"]) == (4e4, FRAMES[1])
    assert b.fixed["pileup.ftime"] == FRAMES[1]
    assert b.prior.fixed["pileup.ftime"] == FRAMES[1]
    b.save(tmp_path / "bound")
    np.testing.assert_array_equal(Emulator.load(tmp_path / "bound").expected(th),
                                  b.expected(th))
    # the exact simulator of the bound setup is that mode's
    from simxray.inference.diagnostics import simulator_for

    np.testing.assert_allclose(simulator_for(b.config).expected(th[:5]),
                               sim.at(exposure=4e4, frame_time=FRAMES[1]).expected(th[:5]))


def test_unbound_and_untrained_modes_are_refused(modes):
    from simxray.errors import ParameterError, SimxrayError

    _, emu, sim = modes
    th = sim.prior.sample(3, np.random.default_rng(0))
    with pytest.raises(SimxrayError, match=r"several observing modes \(trained frame times "
                                           r"0.44104, 3.24104 s\); bind it"):
        emu.expected(th)
    with pytest.raises(SimxrayError, match="several observing modes"):
        _ = emu.folded
    with pytest.raises(ParameterError, match="frame time 0.84104 s is not one of the "
                                             "emulator's 0.44104, 3.24104 s"):
        emu.at(exposure=5e4, frame_time=0.84104)
    with pytest.raises(ParameterError, match="positive exposure"):
        emu.at(exposure=-1.0, frame_time=FRAMES[0])
    with pytest.raises(ParameterError, match=r"covariates have shape \(1, 2\); expected \(3, 2\)"):
        emu.expected(th, covariates=[[5e4, FRAMES[0]]])
    with pytest.raises(SimxrayError, match="one observing mode"):
        emu.at(exposure=5e4, frame_time=FRAMES[0]).at(exposure=6e4, frame_time=FRAMES[0])


def test_validate_reports_each_mode(modes, tmp_path):
    """``simxray validate-emulator`` draws each spectrum's mode from the campaign and reports
    the accuracy per frame time."""
    from simxray.cli import main

    d, _, _ = modes
    rc = main(["validate-emulator", str(d / "emu"), "--n", "120", "--seed", "9", "--json",
               str(tmp_path / "v.json"), "--no-plots", "--no-timing", "-q"])
    v = json.loads((tmp_path / "v.json").read_text())
    assert rc in (0, 1)
    ft = {round(b["frame_time"], 5): b for b in v["by_frame_time"]}
    assert set(ft) == set(FRAMES) and sum(b["n"] for b in ft.values()) == 120
    assert all(b["median"] < 0.02 for b in ft.values())
    assert all("frame_time" in w and "exposure" in w for w in v["worst"])


def test_fit_binds_the_emulator_to_the_spectrum(modes, tmp_path):
    """A fit finds the multi-mode emulator for a full-frame spectrum, binds it to the
    spectrum's EXPOSURE and TIMEDEL, and its emcee posterior covers the truth; a frame time
    it was not trained on is a reason, not a wrong answer."""
    import simxray as sx
    from simxray.inference.fitting import _adopt_setup, _find_emulator

    d, _, sim = modes
    path, truth = _pha(sim, tmp_path, 6e4, FRAMES[1])
    obs = sx.Observation.from_pha(path)
    model, prior, pile = _adopt_setup(d / "emu", obs, "emulator")
    prob = sx.FitProblem(obs, model, prior, pileup=pile)
    emu, why = _find_emulator(prob, d / "emu")
    assert why == [] and emu.config["bound"] == {**emu.config["bound"], "exposure": 6e4,
                                                  "frame_time": FRAMES[1]}
    res = sx.fit(path, emulator=d / "emu", method="emcee", n_samples=2000, seed=3,
                 n_effective=300, max_steps=4000, quiet=True)
    assert res.summary["method_reason"] == "emulator emu matches"
    lo, hi = np.quantile(res.samples, [0.005, 0.995], axis=0)
    free = list(prior.names)
    for j, name in enumerate(free):
        assert lo[j] <= truth[j] <= hi[j], (name, lo[j], truth[j], hi[j])
    path2, _ = _pha(sim, tmp_path, 6e4, 0.84104, name="quarter.pi")
    obs2 = sx.Observation.from_pha(path2)
    _adopt_setup(d / "emu", obs2, "emulator")
    emu2, why2 = _find_emulator(sx.FitProblem(obs2, model, prior, pileup=pile), d / "emu")
    assert emu2 is None and "frame time 0.84104 s is not one of" in why2[0]


def test_sherpa_model_binds_to_the_data(modes, tmp_path):
    pytest.importorskip("sherpa")
    from sherpa.astro import ui

    from simxray.errors import ParameterError
    from simxray.sherpa import SimxrayPileup

    d, emu, sim = modes
    path, _ = _pha(sim, tmp_path, 5e4, FRAMES[0])
    with pytest.raises(ParameterError, match="several observing modes; pass the data set"):
        SimxrayPileup("m", emulator=emu)
    ui.clean()
    ui.load_pha(str(path))
    m = SimxrayPileup("m", emulator=emu, data=ui.get_data())
    assert (m.emulator.config["exposure"], m.emulator.config["frame_time"]) == (5e4, FRAMES[0])
    ui.clean()


def test_synthetic_spectrum_takes_the_template_mode(modes, tmp_path):
    from simxray.inference.mcmc import synthetic_spectrum

    d, _, sim = modes
    template, theta = _pha(sim, tmp_path, 7e4, FRAMES[1], name="template.pi")
    _, mu = synthetic_spectrum(tmp_path / "syn.pi", theta, emulator=d / "emu",
                               template=template)
    np.testing.assert_allclose(mu, sim.at(exposure=7e4, frame_time=FRAMES[1]).expected(
        theta[None])[0], rtol=1e-6)


def test_shipped_bright_emulator_on_ngc4258(chandra_dir):
    """The shipped multi-mode relxill emulator on a real piled-up spectrum (NGC 4258, ObsID
    1618: full frame, 20.65 ks, one of the campaign's modes).  A fit binds it to the
    spectrum; at the exact posterior's medians (benchmarks/relxill_bright_ngc4258.py) its
    W-stat on the real counts is within 1 of the exact simulator's, and Sherpa's own
    jdpileup and folding with simxray's tbabs*relxill give the exact simulator's W-stat."""
    pytest.importorskip("sherpa")
    import simxray as sx
    from simxray.inference.fitting import _adopt_setup, _find_emulator

    shipped = DATA_DIR / "emulator_relxill_bright"
    path = chandra_dir / "source_bin10.pi"
    obs = sx.Observation.from_pha(path)
    model, prior, pile = _adopt_setup(shipped, obs, "emulator")
    prob = sx.FitProblem(obs, model, prior, pileup=pile)
    emu, why = _find_emulator(prob, shipped)
    assert why == [] and emu.config["bound"]["frame_time"] == pytest.approx(3.24104)
    assert emu.config["bound"]["exposure"] == pytest.approx(20651.149, rel=1e-6)
    med = {"nH": 8.09, "a": 0.54, "Incl": 48.5, "gamma": 1.53, "Afe": 1.98,
           "refl_frac": 0.98, "norm": 1.17e-4, "pileup.alpha": 0.49, "pileup.f": 0.89}
    theta = np.array([[med[n] for n in prior.names]])
    w_exact = -2 * prob.likelihood()(theta)[0]
    w_emu = -2 * prob.likelihood(emu)(theta)[0]
    assert abs(w_emu - w_exact) < 1.0, (w_emu, w_exact)
    # the same number from Sherpa's pipeline
    from sherpa.astro.models import JDPileup
    from sherpa.astro.ui.utils import Session

    from simxray.sherpa import SimxrayModel

    s = Session()
    s.load_pha(str(path))
    s.ungroup()
    s.set_analysis("channel")
    s.ignore()
    s.notice(*prob.obs.noticed_channels)
    s.set_stat("wstat")
    src, jdp = SimxrayModel(model, "src"), JDPileup("jdp")
    jdp.f.min = 0.85                                  # the campaign's prior (Sherpa's: 0.9)
    for n, v in {**prob.prior.fixed, **med}.items():    # ftime from the spectrum
        if n.startswith("pileup."):
            setattr(jdp, n.split(".", 1)[1], v)
        else:
            setattr(src, n, v)
    s.set_source(src)
    s.set_pileup_model(jdp)
    assert s.calc_stat() == pytest.approx(w_exact, rel=1e-8)
