"""benchmarks/bench_relxill_pileup_bias.py: its bias/coverage arithmetic against exact
Gaussian references, its posterior summaries against analytic quantiles, and (slow) the
--quick run end to end (three treatments, the event-level one fine-tuned; JSON with
provenance, figure)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm as normal

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import bench_relxill_pileup_bias as bench  # noqa: E402
from simxray.simulator.prior import Dist, Prior  # noqa: E402

P = len(bench.SOURCE_PARAMS)


def gaussian_stats(mean: np.ndarray, sd: np.ndarray) -> dict:
    """Exact summaries of Gaussian posteriors N(mean, sd) (N, P)."""
    z68, z90 = normal.ppf(0.84), normal.ppf(0.95)
    return {"mean": mean, "sd": sd, "lo68": mean - z68 * sd, "hi68": mean + z68 * sd,
            "lo90": mean - z90 * sd, "hi90": mean + z90 * sd}


def test_calibrated_posteriors_have_nominal_coverage_and_no_bias():
    """Truths drawn from the posteriors themselves: coverage 0.68 / 0.90 within 3
    binomial sd, bias within 3 standard errors of 0 in every bin."""
    rng = np.random.default_rng(0)
    N = 6000
    mean = rng.normal(size=(N, P))
    sd = rng.uniform(0.05, 0.3, size=(N, P))
    truth = mean + sd * rng.normal(size=(N, P))
    pf = rng.uniform(0, 1, N)
    rows = bench.binned_metrics(gaussian_stats(mean, sd), truth, np.ones(P), pf)
    assert [r["pileup_fraction"] for r in rows] == [list(b) for b in
                                                    zip(bench.PF_EDGES[:-1], bench.PF_EDGES[1:], strict=True)]
    assert sum(r["n"] for r in rows) == N
    for r in rows:
        for p, m in r["parameters"].items():
            assert abs(m["coverage68"] - 0.68) < 3 * m["coverage68_err"], (p, r)
            assert abs(m["coverage90"] - 0.90) < 3 * m["coverage90_err"], (p, r)
            assert abs(m["bias_posterior_sd"]) < 3 * m["bias_posterior_sd_err"]
            assert abs(m["bias_posterior_sd_median"]) < 3 * m["bias_posterior_sd_median_err"]
            assert abs(m["bias_prior_width"]) < 3 * m["bias_prior_width_err"]


def test_a_shifted_posterior_has_the_expected_bias_and_coverage():
    """Posterior means shifted by +1 sd: bias 1 sd, bias in prior width = sd/width, and
    coverage P(|X + 1| < z) for X ~ N(0, 1), computed exactly."""
    rng = np.random.default_rng(1)
    N = 20000
    truth = rng.normal(size=(N, P))
    sd = np.full((N, P), 0.2)
    mean = truth + sd + sd * rng.normal(size=(N, P))      # centred one sd high
    width = np.full(P, 4.0)
    rows = bench.binned_metrics(gaussian_stats(mean, sd), truth, width, np.full(N, 0.2))
    m = rows[2]["parameters"]["gamma"]                    # 15-30 % bin holds everything
    assert rows[2]["n"] == N
    assert m["bias_posterior_sd"] == pytest.approx(1.0, abs=0.03)
    assert m["bias_posterior_sd_median"] == pytest.approx(1.0, abs=0.03)
    # the median's standard error for N(1, 1) z-scores: sqrt(pi / 2) / sqrt(N)
    assert m["bias_posterior_sd_median_err"] == pytest.approx(1.2533 / np.sqrt(N), rel=0.05)
    assert m["bias_prior_width"] == pytest.approx(0.2 / 4.0, abs=0.002)
    for lev, key in ((0.68, "coverage68"), (0.90, "coverage90")):
        z = normal.ppf(0.5 + lev / 2)
        exact = normal.cdf(z - 1) - normal.cdf(-z - 1)    # P(|X + 1| < z), X ~ N(0, 1)
        assert m[key] == pytest.approx(exact, abs=0.015)


def test_posterior_stats_match_analytic_quantiles():
    """posterior_stats on a stand-in posterior that draws N(mu, sigma) per spectrum, in
    the prior's coordinates: log10 for log-uniform parameters."""
    dists = [Dist("nH", "loguniform", 0.01, 10.0), Dist("a", "uniform", 0.0, 0.998),
             Dist("Incl", "uniform", 10.0, 80.0), Dist("gamma", "uniform", 1.4, 2.6),
             Dist("Afe", "loguniform", 0.5, 10.0), Dist("refl_frac", "loguniform", 0.1, 10.0),
             Dist("norm", "loguniform", 4e-5, 1.5e-4)]
    prior = Prior(dists)
    logs = np.array([d.dist == "loguniform" for d in dists])
    mu = np.array([-0.5, 0.5, 40.0, 2.0, 0.3, 0.0, -4.2])      # log10 where log-uniform
    sig = np.array([0.05, 0.1, 5.0, 0.05, 0.1, 0.2, 0.01])

    class Fake:
        names = [d.name for d in dists]

        def sample(self, n, x, seed=None):
            r = np.random.default_rng(seed)
            s = mu + sig * r.normal(size=(n, len(x), P))
            s[:, :, logs] = 10 ** s[:, :, logs]
            return s

    st = bench.posterior_stats(Fake(), np.zeros((3, 10)), 200000, 0, prior, block=2)
    for k in range(3):
        assert np.all(np.abs(st["mean"][k] - mu) < 5 * sig / np.sqrt(200000))
        np.testing.assert_allclose(st["sd"][k], sig, rtol=0.01)
        assert np.all(np.abs(st["hi90"][k] - (mu + normal.ppf(0.95) * sig)) < 0.02 * sig)
        assert np.all(np.abs(st["lo68"][k] - (mu - normal.ppf(0.84) * sig)) < 0.02 * sig)
    truth, width = bench.transformed_truth(np.array([[1.0, 0.5, 30.0, 2.0, 1.0, 10.0, 1e-4]]),
                                           bench.SOURCE_PARAMS, prior)
    np.testing.assert_allclose(truth[0], [0.0, 0.5, 30.0, 2.0, 0.0, 1.0, -4.0])
    np.testing.assert_allclose(width, [3.0, 0.998, 70.0, 1.2, np.log10(20), 2.0,
                                       np.log10(1.5e-4 / 4e-5)])


@pytest.mark.slow
def test_quick_run_writes_json_with_provenance_and_figure(tmp_path):
    """The one documented command, --quick: every stage runs, the JSON records its
    inputs (sha256), seed and commit, and the figure is written."""
    out = tmp_path / "bias.json"
    rc = bench.main(["--quick", "--work", str(tmp_path / "work"), "--json", str(out),
                     "--config", str(REPO / "simulations" / "acis_default.toml")])
    assert rc == 0
    d = json.loads(out.read_text())
    prov = d["provenance"]
    assert prov["seed"] == 15 and prov["git_commit"] and prov["config_sha256"]
    assert all(len(v) == 64 for v in prov["inputs"].values())
    assert set(d["metrics"]["davis"]) == {"ignored", "davis", "events"}
    # the event-level treatment: fine-tuned on event-level spectra, applied to both sets
    assert set(d["metrics"]["events"]) == {"ignored", "davis", "events"}
    assert d["setup"]["n_train_events_done"] == 20 and d["setup"]["eventsim"]["psf"] == "chandra"
    assert "train_events.h5" in prov["inputs"]
    assert "posterior_events/weights.safetensors" in prov["inputs"]
    assert sum(b["n"] for b in d["metrics"]["events"]["events"]) == d["setup"]["n_events_done"] > 0
    n = sum(b["n"] for b in d["metrics"]["davis"]["davis"])
    assert n == d["setup"]["n_test"] == 40
    for b in d["metrics"]["davis"]["ignored"]:
        if b["n"]:
            for m in b["parameters"].values():
                assert 0.0 <= m["coverage90"] <= 1.0 and np.isfinite(m["bias_posterior_sd"])
    png = out.with_suffix(".png")
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 30000
