"""Observing modes as per-simulation covariates (issue 15, item 1): exposure and frame time
drawn per simulation, used by the simulator, stored in the campaign, conditioned on by the
NPE network and range-matched when a fit decides whether a network belongs to a spectrum."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from simxray.datasets import DATA_DIR

REPO = Path(__file__).resolve().parents[1]
FRAMES = (0.44104, 3.24104)            # 1/8 subarray and full frame (s)

TINY = f"""
[simulation]
name = "tiny_modes"
chunk_size = 64
[instrument]
spectrum = "default"
arf = "{DATA_DIR / 'arf.fits'}"
rmf = "{DATA_DIR / 'rmf.fits'}"
background = "none"
exposure = {{ dist = "loguniform", low = 2e4, high = 1.5e5 }}
frame_time = {{ dist = "choice", values = [{FRAMES[0]}, {FRAMES[1]}] }}
energy_range = [0.5, 8.0]
[model]
expression = "tbabs*powerlaw"
[model.parameters]
nH = {{ dist = "loguniform", low = 0.1, high = 3.0 }}
PhoIndex = {{ dist = "uniform", low = 1.5, high = 2.5 }}
norm = {{ dist = "loguniform", low = 1e-4, high = 1e-3 }}
[pileup]
model = "jdpileup"
alpha = {{ dist = "uniform", low = 0.2, high = 0.8 }}
g0 = 1.0
f = 0.95
ftime = "header"
fracexp = 1.0
"""

NPE_TOML = """
[embedding]
type = "mlp"
transform = "anscombe"
rebin = 8
features = 8
[flow]
transforms = 2
hidden_features = [16, 16]
bins = 4
[training]
batch_size = 64
max_epochs = 2
patience = 5
seed = 1
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny two-mode campaign (256 spectra, seed 3) and its config."""
    from simxray.simulator.campaign import run_campaign
    from simxray.simulator.config import load_config

    d = tmp_path_factory.mktemp("modes")
    (d / "tiny.toml").write_text(TINY)
    cfg = load_config(d / "tiny.toml")
    run_campaign(cfg, 256, d / "sims.h5", seed=3, quiet=True)
    return d, cfg


@pytest.fixture(scope="module")
def sim(tiny):
    from simxray.simulator.simulator import Simulator

    return Simulator.from_config(tiny[1])


def test_covariates_drawn_and_stored(tiny):
    import h5py

    from simxray.simulator.campaign import read_dataset

    d, cfg = tiny
    assert cfg.exposure == 2e4 and cfg.frame_time == FRAMES[0]        # reference values
    assert set(cfg.covariates) == {"exposure", "frame_time"}
    data = read_dataset(d / "sims.h5")
    cov = data["covariates"]
    assert data["covariate_names"] == ["exposure", "frame_time"] and cov.shape == (256, 2)
    assert 2e4 <= cov[:, 0].min() and cov[:, 0].max() <= 1.5e5
    # log-uniform: the mean of log exposure is the midpoint (sd of the mean ~0.033)
    assert np.log(cov[:, 0]).mean() == pytest.approx(np.log(np.sqrt(2e4 * 1.5e5)), abs=0.15)
    assert set(np.unique(cov[:, 1])) == set(FRAMES)
    assert 0.35 < np.mean(cov[:, 1] == FRAMES[1]) < 0.65               # equal weights
    # the campaign's seed fixes the covariates: a second run is identical
    from simxray.simulator.campaign import run_campaign

    run_campaign(cfg, 256, d / "again.h5", seed=3, quiet=True)
    with h5py.File(d / "again.h5") as f:
        assert np.array_equal(f["covariates"][:], cov)
        assert np.array_equal(f["counts"][:], data["counts"])


def test_full_frame_row_is_more_piled_and_matches_direct_pileup(sim):
    """A full-frame row with the same θ is more piled than a 1/8-subarray row; both agree
    with the Davis kernel evaluated directly (Pileup with that frame time and a response
    with that row's exposure)."""
    from simxray.instrument.pileup import PileupParams, piled_counts
    from simxray.instrument.response import Response
    from simxray.io.ogip import read_pha

    theta = np.array([[0.5, 2.0, 5e-4, 0.5]] * 2)
    cov = np.array([[6e4, FRAMES[0]], [6e4, FRAMES[1]]])
    mu, frac = sim.expected(theta, return_fraction=True, covariates=cov)
    assert frac[1] > 3 * frac[0] > 0.03
    # direct: a response built with exposure 6e4 s, ftime = the row's frame time
    from simxray.datasets import default_spectrum_path

    spec = read_pha(default_spectrum_path(), arf=str(DATA_DIR / "arf.fits"),
                    rmf=str(DATA_DIR / "rmf.fits"))
    resp = Response.from_spectrum(spec, 6e4)
    from simxray.models import Model

    model = Model("tbabs*powerlaw")
    for i, ft in enumerate(FRAMES):
        pp = PileupParams(alpha=0.5, g0=1.0, f=0.95, n=1.0, ftime=ft, fracexp=1.0, nterms=30)
        direct, dfrac = piled_counts(
            resp, lambda e: model.evaluate(e, {"nH": np.array([0.5]), "PhoIndex": np.array([2.0]),
                                               "norm": np.array([5e-4])}),
            pp, return_fraction=True, channels=sim.slice)
        np.testing.assert_allclose(mu[i], np.ravel(direct), rtol=1e-9, atol=1e-12)
        assert frac[i] == pytest.approx(float(np.ravel(dfrac)[0]), rel=1e-9)


def test_counts_scale_with_exposure(sim):
    theta = np.array([[1.0, 1.8, 3e-4, 0.4]] * 3)
    cov = np.array([[2e4, FRAMES[1]], [5e4, FRAMES[1]], [1.5e5, FRAMES[1]]])
    mu, frac = sim.expected(theta, return_fraction=True, covariates=cov)
    np.testing.assert_allclose(mu[1], mu[0] * 2.5, rtol=1e-12)
    np.testing.assert_allclose(mu[2], mu[0] * 7.5, rtol=1e-12)
    assert np.ptp(frac) == 0.0                  # the pileup fraction does not depend on it
    # Simulator.at: one fixed observation gives the same rows
    fixed = sim.at(exposure=5e4, frame_time=FRAMES[1])
    np.testing.assert_allclose(fixed.expected(theta[:1])[0], mu[1], rtol=1e-12)
    assert "covariates" not in fixed.sample(4, 0)


def test_config_errors_name_the_field(tmp_path):
    from simxray.errors import ConfigError
    from simxray.simulator.config import load_config

    bad = TINY.replace('ftime = "header"', "ftime = 3.2")
    (tmp_path / "a.toml").write_text(bad)
    with pytest.raises(ConfigError, match="pileup.ftime"):
        load_config(tmp_path / "a.toml")
    bad = TINY.replace('dist = "choice"', 'dist = "gamma"')
    (tmp_path / "b.toml").write_text(bad)
    with pytest.raises(ConfigError, match="instrument.frame_time.*unknown distribution"):
        load_config(tmp_path / "b.toml")


@pytest.fixture(scope="module")
def tiny_posterior(tiny):
    from simxray.inference.npe import load_settings, train

    d, _ = tiny
    (d / "npe.toml").write_text(NPE_TOML)
    train(str(d / "sims.h5"), load_settings(str(d / "npe.toml")), str(d / "post"), quiet=True,
          log=lambda *_: None)
    return d / "post"


def test_tiny_npe_with_covariates_trains_saves_loads_samples(tiny_posterior, tiny):
    from simxray.errors import ResponseMismatchError
    from simxray.inference.posterior import Posterior

    post = Posterior.load(tiny_posterior)
    cfg = post.config
    assert post.covariate_names == ["exposure", "frame_time"]
    assert cfg["covariates"]["distributions"]["frame_time"]["values"] == list(FRAMES)
    assert 2e4 <= cfg["covariates"]["trained_min"][0] < cfg["covariates"]["trained_max"][0] <= 1.5e5
    assert post.network.input_width == cfg["n_channels"] + 2
    from simxray.simulator.campaign import read_dataset

    data = read_dataset(tiny[0] / "sims.h5")
    x = data["counts"][-1]
    s = post.sample(50, x, seed=0, covariates={"exposure": 5e4, "frame_time": FRAMES[1]})
    assert s.shape == (50, 4) and np.all(np.isfinite(s))
    lo, hi = np.array(cfg["low"]), np.array(cfg["high"])
    assert np.all((s >= lo) & (s <= hi))
    # the network uses the covariates: its density changes with the frame time
    lp1 = post.log_prob(s[:10], x, covariates=[5e4, FRAMES[0]])
    lp2 = post.log_prob(s[:10], x, covariates=[5e4, FRAMES[1]])
    assert np.max(np.abs(lp1 - lp2)) > 1e-4
    with pytest.raises(ResponseMismatchError, match="conditions on exposure, frame_time"):
        post.sample(5, x)


def test_validate_draws_covariates(tiny_posterior, tmp_path):
    from simxray.inference.diagnostics import validate

    res = validate(tiny_posterior, n=20, n_samples=20, seed=5, out_dir=tmp_path / "v",
                   quiet=True, log=lambda *_: None)
    assert res["n"] == 20 and set(res["parameters"]) == {"nH", "PhoIndex", "norm", "pileup.alpha"}


COV_CFG = {"covariates": {"names": ["exposure", "frame_time"], "distributions": {
    "exposure": {"dist": "loguniform", "low": 2e4, "high": 1.5e5},
    "frame_time": {"dist": "choice", "values": [0.44104, 0.84104, 3.24104],
                   "weights": [1.0, 1.0, 1.0]}}},
    "exposure": 2e4, "frame_time": 0.44104}


def _spec(exposure, frame_time):
    return SimpleNamespace(n_channels=1024, rmf=None, arf=None, exposure=exposure,
                           frame_time=frame_time, path="x.pi")


@pytest.mark.parametrize("exposure,frame_time", [(2e4, 0.44104), (1.5e5, 3.24104),
                                                 (7.7e4, 0.8412), (3e4, 3.2412)])
def test_range_matching_accepts_inside(exposure, frame_time):
    from simxray.inference.compat import check_compatibility

    assert check_compatibility(COV_CFG, _spec(exposure, frame_time)) == []


def test_range_matching_rejects_outside_with_reason():
    from simxray.inference.compat import check_compatibility

    assert check_compatibility(COV_CFG, _spec(1.8e5, 0.44104)) == [
        "exposure 1.8e+05 s is outside the posterior's 2e4-1.5e5 s"]
    assert check_compatibility(COV_CFG, _spec(1e5, 1.74104)) == [
        "frame time 1.741 s is not one of the posterior's 0.44104, 0.84104, 3.24104 s"]
    # a network without covariates still needs equality (within 1e-3)
    old = {"exposure": 1e5, "frame_time": 0.44104}
    assert check_compatibility(old, _spec(1e5, 0.44104)) == []
    assert check_compatibility(old, _spec(5e4, 0.44104)) == [
        "exposure 50000 s differs from the posterior's 100000 s"]


def test_network_input_from_the_observation():
    from simxray.inference.compat import network_input

    x = network_input(COV_CFG, np.ones(4), _spec(5e4, 0.84104))
    np.testing.assert_array_equal(x, [1, 1, 1, 1, 5e4, 0.84104])
    np.testing.assert_array_equal(network_input({}, np.ones(3), None), np.ones(3))


def test_old_networks_load_and_behave_as_before():
    """Networks without covariates: same weights layout, counts-only input."""
    import torch

    from simxray.inference.posterior import Posterior
    from simxray.inference.saving import load_posterior

    d = DATA_DIR / "posterior_default"
    post = Posterior.load(d)
    assert post.covariate_names == [] and "covariates" not in post.config
    net = load_posterior(d).model
    assert not any(k.startswith("embedding.base.") for k in net.state_dict())
    assert net.input_width == post.config["n_channels"]
    x = np.full(post.config["n_channels"], 5.0)
    a = post.sample(20, x, seed=1)
    torch.manual_seed(1)
    with torch.no_grad():
        b = net.sample(20, torch.as_tensor(x, dtype=torch.float32)).double().numpy()
    np.testing.assert_array_equal(a, b)


def test_shipped_campaign_documents_three_modes():
    from simxray.simulator.config import load_config

    cfg = load_config(REPO / "simulations" / "acis_relxill_bright.toml")
    assert cfg.covariates["frame_time"]["values"] == [0.44104, 0.84104, 3.24104]
    assert cfg.covariates["exposure"] == {"dist": "loguniform", "low": 2e4, "high": 1.5e5}
    assert json.loads(json.dumps(cfg.to_dict()))["instrument"]["exposure"]["dist"] == "loguniform"


def test_fit_passes_the_observation_covariates(tiny_posterior, sim, tmp_path):
    """``simxray.fit`` with a covariate network: the spectrum's EXPOSURE and TIMEDEL are the
    network's covariates (the draws equal Posterior.sample with them given by hand), and an
    exposure outside the trained range is named in the mismatch reasons."""
    import simxray as sx
    from simxray.inference.posterior import Posterior
    from simxray.io.ogip import write_pha

    post = Posterior.load(tiny_posterior)
    theta = np.array([[0.5, 2.0, 5e-4, 0.5]])
    r = sim.at(exposure=5e4, frame_time=FRAMES[1]).simulate(theta, np.random.default_rng(1))
    full = np.zeros(1024, dtype=np.int64)
    full[np.asarray(sim.channel) - 1] = r["counts"][0]
    path = write_pha(tmp_path / "s.pi", full, 5e4, respfile=str(DATA_DIR / "rmf.fits"),
                     ancrfile=str(DATA_DIR / "arf.fits"), frame_time=FRAMES[1])
    obs = sx.Observation.from_pha(path)
    # the setup a fit adopts from the network: its prior without pileup.ftime, which comes
    # from the spectrum's TIMEDEL (a fixed 0.44104 s, the campaign's reference, would be wrong)
    from simxray.inference.fitting import _adopt_setup

    model, prior, pile = _adopt_setup(tiny_posterior, obs, "posterior")
    assert "pileup.ftime" not in prior.fixed and "pileup.alpha" in prior.names
    prob = sx.FitProblem(obs, model, prior, pileup=pile)
    assert prob.prior.fixed["pileup.ftime"] == pytest.approx(FRAMES[1])
    assert post.check(prob) == []
    a = post.sample(30, prob, seed=4)
    b = post.sample(30, r["counts"][0], seed=4, covariates={"exposure": 5e4,
                                                            "frame_time": FRAMES[1]})
    np.testing.assert_array_equal(a, b)
    obs.spectrum.exposure = 1.8e5
    assert "exposure 1.8e+05 s is outside the posterior's 2e4-1.5e5 s" in post.check(prob)
