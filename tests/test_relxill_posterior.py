"""The shipped absorbed-relxill posterior (simxray/data/posterior_relxill) recovers a known truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simxray.datasets import DATA_DIR

REPO = Path(__file__).resolve().parents[1]
POSTERIOR = DATA_DIR / "posterior_relxill"

# inside the acis_default.toml (relxill) prior; ~2500 counts, pileup fraction ~14 %
TRUTH = {"nH": 1.0, "a": 0.5, "Incl": 40.0, "gamma": 2.0, "Afe": 1.0, "refl_frac": 1.0,
         "norm": 1e-5, "pileup.alpha": 0.5, "pileup.f": 0.95}
# the 90 % interval as a fraction of the prior range (log10 range for log-uniform priors)
# must be below these: nH is well constrained (~0.06 at this truth), Γ and norm partly
# (~0.65, ~0.45; validation R² 0.73 and 0.79); spin, inclination, A_Fe and the
# reflection fraction are close to their priors with ~2500 counts and are only checked
# for coverage
MAX_WIDTH = {"nH": 0.15, "gamma": 0.75, "norm": 0.6}


@pytest.mark.skipif(not (POSTERIOR / "config.json").exists(), reason="no shipped relxill posterior")
def test_relxill_posterior_recovers_a_spectrum_simulated_at_known_truth():
    import torch

    from simxray.inference import saving
    from simxray.simulator.config import load_config
    from simxray.simulator.simulator import Simulator

    post = saving.load_posterior(POSTERIOR)          # checks the weights' sha256
    cfg = post.config
    assert cfg["model"] == "tbabs*relxill" and cfg["channels"] == [35, 548]
    sim = Simulator.from_config(load_config(REPO / "simulations" / "acis_default.toml"))
    assert post.names == sim.names == list(TRUTH)
    theta = np.array([[TRUTH[n] for n in sim.names]])
    x = sim.simulate(theta, np.random.default_rng(7))["counts"][0]
    assert 1500 < x.sum() < 4000
    torch.manual_seed(1)
    smp = post.model.sample(4000, torch.as_tensor(x, dtype=torch.float32)).double().numpy()
    low, high = np.asarray(cfg["low"]), np.asarray(cfg["high"])
    assert np.all((smp >= low) & (smp <= high))
    log = np.asarray(cfg["log"], bool)
    for i, (name, t) in enumerate(TRUTH.items()):
        lo, hi = np.quantile(smp[:, i], [0.05, 0.95])
        assert lo <= t <= hi, (name, t, lo, hi)
        if name in MAX_WIDTH:
            width = np.log10(hi / lo) if log[i] else hi - lo
            prior = np.log10(high[i] / low[i]) if log[i] else high[i] - low[i]
            assert width < MAX_WIDTH[name] * prior, (name, width, prior)
