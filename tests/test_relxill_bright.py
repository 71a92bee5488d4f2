"""The shipped bright-source relxill posterior and emulator (issue 15).

simxray/data/posterior_relxill_bright belongs to the campaign recorded in its config.json
(simulations/acis_relxill_bright.toml: ACIS-S3 1/8 and 1/4 subarrays and full frame,
20-150 ks, drawn per simulation and conditioned on; the embedded ACIS-S response,
tbabs*relxill with Davis (2001) pileup).  The test spectrum is a 1/8-subarray, 100 ks one
(~1e5 counts, pileup fraction ~20 %), inside the trained modes of every shipped version.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from simxray.datasets import DATA_DIR

REPO = Path(__file__).resolve().parents[1]
POSTERIOR = DATA_DIR / "posterior_relxill_bright"
EMULATOR = DATA_DIR / "emulator_relxill_bright"
CONFIG = REPO / "simulations" / "acis_relxill_bright.toml"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

needs_posterior = pytest.mark.skipif(not (POSTERIOR / "config.json").exists(),
                                     reason="no shipped bright relxill posterior")
# inside the prior: ~1e5 counts, pileup fraction ~20 %
TRUTH = {"nH": 0.5, "a": 0.9, "Incl": 40.0, "gamma": 2.0, "Afe": 2.0, "refl_frac": 2.0,
         "norm": 8e-5, "pileup.alpha": 0.5, "pileup.f": 0.95}


@pytest.fixture(scope="module")
def trained_sim():
    """The simulator the shipped posterior was trained with (its recorded campaign)."""
    from simxray.inference.diagnostics import simulator_for
    from simxray.inference.saving import read_posterior_config

    return simulator_for(read_posterior_config(POSTERIOR))


@pytest.fixture(scope="module")
def sim(trained_sim):
    """That simulator for one 1/8-subarray (0.44104 s), 100 ks observation."""
    return trained_sim.at(exposure=1e5, frame_time=0.44104)


@pytest.fixture(scope="module")
def bright(sim, tmp_path_factory):
    """A simulated bright spectrum (TRUTH, seed 11) as a PHA with the embedded response."""
    from benchmarks.bench_relxill_bright import write_spectrum

    theta = np.array([[TRUTH[n] for n in sim.names]])
    r = sim.simulate(theta, np.random.default_rng(11))
    path = write_spectrum(tmp_path_factory.mktemp("bright") / "bright.pi", r["counts"][0], sim)
    return path, r


def test_campaign_config_is_the_documented_bright_setup():
    from simxray.simulator.config import load_config
    from simxray.simulator.simulator import Simulator

    cfg = load_config(CONFIG)
    assert CONFIG.is_symlink() and CONFIG.resolve() == DATA_DIR / "configs" / CONFIG.name
    assert cfg.expression == "tbabs*relxill" and cfg.pileup_model == "jdpileup"
    assert cfg.covariates["exposure"] == {"dist": "loguniform", "low": 2e4, "high": 1.5e5}
    assert cfg.covariates["frame_time"]["values"] == [0.44104, 0.84104, 3.24104]
    assert Path(cfg.arf).resolve() == (DATA_DIR / "arf.fits").resolve()
    assert Path(cfg.rmf).resolve() == (DATA_DIR / "rmf.fits").resolve()
    # the documented per-mode medians (config comment, 60,000 spectra) hold on an
    # independent draw (seed 5, 900 sims, ~300 per mode; quantile scatter ~10-15 %):
    # 1/8 subarray counts 24,600, pileup 5.3 %; full frame counts 7,900, pileup 34 %
    sim = Simulator.from_config(cfg)
    r = sim.sample(900, np.random.default_rng(5))
    ft = r["covariates"][:, sim.covariate_names.index("frame_time")]
    tot = r["counts"].sum(1)
    for frame, counts, pile in ((0.44104, 24600, 0.053), (3.24104, 7900, 0.34)):
        m = np.isclose(ft, frame)
        assert 0.75 < np.median(tot[m]) / counts < 1.33, (frame, np.median(tot[m]))
        assert 0.6 < np.median(r["pileup_fraction"][m]) / pile < 1.6, frame
    # a full frame piles more than a 1/8 subarray at the same source
    assert np.median(r["pileup_fraction"][np.isclose(ft, 3.24104)]) > 4 * np.median(
        r["pileup_fraction"][np.isclose(ft, 0.44104)])


@needs_posterior
def test_auto_fit_uses_the_bright_posterior_and_says_why(bright):
    import simxray as sx

    path, r = bright
    assert 5e4 < r["counts"].sum() < 2e5
    # n_reweight=0: the network's own draws (with the default exact-likelihood reweighting,
    # auto falls back to the exact path when Pareto k >= 0.7, which is common at 1e5
    # counts: the network is calibrated but wider than the exact posterior; docs/relxill_bright.md)
    res = sx.fit(path, "tbabs*relxill", method="auto", n_samples=2000, ppc_draws=0,
                 n_reweight=0, seed=2)
    s = res.summary
    assert s["method"] == "npe", s["method_reason"]
    assert "posterior_relxill_bright" in s["method_reason"] and s["setup_from_network"]
    assert s["channels"] == [35, 548]
    for i, n in enumerate(res.names):
        lo, hi = np.quantile(res.samples[:, i], [0.005, 0.995])
        assert lo <= TRUTH[n] <= hi, (n, lo, hi)
    # another exposure: the reason names it, and the exact path runs instead of the network
    from simxray.inference.fitting import adoptable_posterior

    obs = sx.Observation.from_pha(path)
    obs.spectrum.exposure = 1.8e5
    found, why = adoptable_posterior(obs, "tbabs*relxill")
    assert found is None and "exposure" in why[0], why


@needs_posterior
def test_calibration_on_fresh_simulations(trained_sim):
    """Coverage of central 50 % and 90 % intervals on 200 fresh simulations (seed 4242).

    With n = 200 the empirical coverage of a calibrated posterior has binomial sd
    sqrt(p (1 - p) / n) = 0.035 (50 %) and 0.021 (90 %); the tolerances 0.11 and 0.07 are
    ~3 sd, so a calibrated network fails with probability ~0.3 % per parameter and level,
    while a miscalibration of 0.1 (twice the shipping goal) is caught.
    """
    import torch

    from simxray.inference import saving

    post = saving.load_posterior(POSTERIOR)
    r = trained_sim.sample(200, np.random.default_rng(4242))
    theta, x = r["theta"], r["counts"]
    if "covariates" in r:                   # each spectrum's exposure and frame time
        x = np.concatenate([x, r["covariates"]], axis=1)
    torch.manual_seed(0)
    inside = {0.5: [], 0.9: []}
    with torch.no_grad():
        for i in range(len(x)):
            s = post.model.sample(400, torch.as_tensor(x[i], dtype=torch.float32)).double().numpy()
            for lev in inside:
                lo, hi = np.quantile(s, [(1 - lev) / 2, (1 + lev) / 2], axis=0)
                inside[lev].append((lo <= theta[i]) & (theta[i] <= hi))
    for lev, tol in ((0.5, 0.11), (0.9, 0.07)):
        cov = np.mean(inside[lev], axis=0)
        assert np.all(np.abs(cov - lev) < tol), (lev, dict(zip(post.names, cov, strict=True)))


@needs_posterior
def test_network_contains_the_exact_posterior_on_one_spectrum(bright):
    """The network against the exact likelihood on one spectrum (1e5 counts, pileup 22 %).

    Reference: the network's draws importance-weighted by p(x|θ)p(θ)/q(θ|x) with the exact
    simulator's Poisson likelihood (the exact posterior's moments, up to importance-sampling
    noise).  Measured (benchmarks/results/relxill_bright_posterior.json, 8 spectra): the
    network is calibrated over the prior but ~2x wider than the exact posterior in N_H, Γ
    and norm, so it must contain the exact posterior: the exact means lie within 2 network
    sd of the network means, and the network is not narrower than the exact posterior
    (sd ratio > 0.7) in the well-constrained N_H, Γ and norm.
    """
    import torch

    import simxray as sx
    from simxray.inference import saving

    path, _ = bright
    post = saving.load_posterior(POSTERIOR)
    obs = sx.Observation.from_pha(path)
    obs.notice_channels(*post.config["channels"])
    prob = sx.FitProblem(obs, "tbabs*relxill", sx.Prior.from_dict(post.config["prior"]))
    from simxray.inference.compat import network_input

    xt = torch.as_tensor(network_input(post.config, prob.x, obs.spectrum), dtype=torch.float32)
    torch.manual_seed(3)
    with torch.no_grad():
        d = post.model.sample(1500, xt)
        lq = post.model.log_prob(d, xt.expand(len(d), -1)).double().numpy()
    d = d.double().numpy()
    lw = prob.prior.log_prob(d) + prob.likelihood()(d) - lq
    w = np.exp(lw - lw.max())
    w /= w.sum()
    log = np.asarray(post.config["log"], bool)
    y = np.where(log, np.log10(d), d)
    m_exact = (w[:, None] * y).sum(0)
    sd_exact = np.sqrt((w[:, None] * (y - m_exact) ** 2).sum(0))
    m_net, sd_net = y.mean(0), y.std(0)
    off = np.abs(m_net - m_exact) / sd_net
    assert np.all(off < 2.0), dict(zip(post.names, off.round(2), strict=True))
    for n in ("nH", "gamma", "norm"):
        j = post.names.index(n)
        assert sd_net[j] / sd_exact[j] > 0.7, (n, sd_net[j], sd_exact[j])


# Reference: emcee on the exact simulator on the test spectrum under the shipped posterior's
# prior (python benchmarks/relxill_bright_emcee_reference.py, seed 2, 2026-12-07, 612 s: 38 walkers x 20,000
# steps, the step cap; max autocorrelation time 898, min ESS 656), median and sd.
EMCEE_REF = {"nH": (0.5040, 0.0105), "gamma": (2.0074, 0.0431), "norm": (6.30e-5, 1.86e-5)}


@pytest.fixture(scope="module")
def guided(bright):
    import simxray as sx

    path, _ = bright
    return sx.fit(path, "tbabs*relxill", method="auto", n_samples=2000, ppc_draws=0, seed=2)


@needs_posterior
def test_auto_fit_returns_the_exact_posterior_via_network_guided_sampling(guided):
    """With the default exact-likelihood check, ``auto`` on a bright spectrum: the network is
    calibrated but ~2x wider than the exact posterior in N_H and Γ (network sd 0.025 and
    0.10 against emcee's 0.0105 and 0.043; Pareto k > 0.7), so its draws seed tempered-AMIS
    importance sampling of the exact posterior (simxray.inference.fitting._network_guided).
    Both are Monte Carlo estimates, so medians must agree with emcee (EMCEE_REF) within
    0.5 sd, and the sds of N_H and Γ within 25 %."""
    s = guided.summary
    assert s["method"] == "exact" and "seeded importance sampling" in s["method_reason"], s
    imp = s["sampler"]["importance"]
    assert imp["reliable"] and imp["khat"] < 0.7 and imp["ess"] >= 1000
    assert "evidence" in s
    for n, (mu, sd) in EMCEE_REF.items():
        x = guided.samples[:, guided.names.index(n)]
        assert abs(np.median(x) - mu) < 0.5 * sd, (n, np.median(x), mu)
        if n != "norm":
            assert x.std() == pytest.approx(sd, rel=0.25), (n, x.std(), sd)


#: emcee (20,000 steps) with seeds 2, 5 and 6 on the same spectrum: norm sd 1.86e-5, 1.25e-5,
#: 2.69e-5; share of draws with norm > 8.5e-5 (the ridge towards low pileup alpha) -, 0.097,
#: 0.325 (benchmarks/results/relxill_bright_ridge.json: the chains do not converge along it)
EMCEE_NORM_SD = (1.25e-5, 2.69e-5)


@needs_posterior
def test_guided_sampling_keeps_the_norm_ridge(guided):
    """The exact posterior has a long, thin ridge (higher norm at lower pileup alpha: more
    grade migration of a brighter source).  A mixture refitted to the importance weights
    alone lost it while PSIS still reported k 0.40 (norm sd 0.79e-5, 1.2 % of draws above
    8.5e-5); with the network itself as a defensive component the guided sampler keeps it:
    norm sd and the ridge's share must lie within what the emcee runs give."""
    x = guided.samples[:, guided.names.index("norm")]
    lo, hi = EMCEE_NORM_SD
    assert 0.8 * lo <= x.std() <= 1.25 * hi, x.std()
    assert (x > 8.5e-5).mean() >= 0.05, (x > 8.5e-5).mean()
