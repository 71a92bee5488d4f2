"""The realistic simulations of benchmarks/bench_ppad_representation.py against closed forms:
pileup (Poisson frame counts with grade migration α^(k-1)), frame quantisation, counts, the
oracle likelihood ratio, and the raw-event baseline's features on clear cases."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

bench = pytest.importorskip("bench_ppad_representation")


def test_pileup_matches_poisson_closed_form():
    """μ photons per frame on average (Poisson): the expected number of surviving events per
    frame is Σ_k≥1 e^-μ μ^k/k! α^(k-1) = e^-μ (e^{μα} - 1) / α, and the expected number of
    piled frames 1 - e^-μ (1 + μ); summed energies conserve the photons' energy in kept frames."""
    rng = np.random.default_rng(0)
    ft, n_frames, mu, alpha = 3.14104, 40000, 0.6, 0.5
    k = rng.poisson(mu, n_frames)
    t = np.repeat((np.arange(n_frames) + 0.5) * ft, k)
    e = np.full(t.size, 1.5)
    t2, e2, piled = bench.pileup_frames(t, e, rng, alpha)
    exp_events = n_frames * np.exp(-mu) * (np.exp(mu * alpha) - 1) / alpha
    exp_piled = n_frames * (1 - np.exp(-mu) * (1 + mu))
    assert t2.size == pytest.approx(exp_events, abs=4 * np.sqrt(exp_events))
    assert piled == pytest.approx(exp_piled, abs=4 * np.sqrt(exp_piled))
    assert np.all(np.isin(np.round(e2 / 1.5), np.arange(1, 12)))       # sums of whole photons
    assert np.unique(t2).size == t2.size                                # one event per frame


def test_realistic_sources_quantised_and_counted():
    rng = np.random.default_rng(4)
    for kind in ("constant", "flare", "transient"):
        ev, lab = bench.realistic_source(rng, kind)
        ft = lab["frame_time"]
        assert ft in bench.FRAME_TIMES
        phase = (ev.time - ev.tstart) / ft - 0.5
        np.testing.assert_allclose(phase, np.round(phase), atol=1e-6)     # frame mid times
        assert 20 <= lab["n_source_expected"] <= 500 and 5e3 <= lab["span"] <= 8e4
        n = np.sum((ev.energy >= 0.5) & (ev.energy < 7))
        expected = lab["n_source_expected"] + lab["n_bkg_expected"]           # both are 0.5-7 keV counts
        assert n <= expected + 4 * np.sqrt(expected)                          # pileup and dither only remove
        if lab["dither"] is None:        # each piled frame removes at most (photons - 1), a few at these rates
            lost = lab["n_photons"] - lab["n_events"]
            assert n >= expected - 4 * np.sqrt(expected) - 3 * lost
    assert bench.realistic_source(np.random.default_rng(1), "constant")[1]["oracle_llr"] == 0.0


def test_oracle_llr_and_raw_features_separate_a_strong_flare():
    """A bright flare has a large oracle log-likelihood ratio and several Bayesian blocks; a
    constant source one block and a blind Z² FAP that is not significant."""
    rng = np.random.default_rng(7)
    flares = [bench.realistic_source(rng, "flare") for _ in range(6)]
    best = max(flares, key=lambda x: x[1]["oracle_llr"])
    f = bench.raw_features(best[0])
    assert best[1]["oracle_llr"] > 10
    nb_idx = 3 + 3 + 2 + 7 + 3 + 3 + 6        # position of the first n_blocks (see raw_features)
    assert f[nb_idx] >= 2
    const = bench.realistic_source(np.random.default_rng(2), "constant")[0]
    fc = bench.raw_features(const)
    assert fc[nb_idx] == 1 and fc[nb_idx - 3] > -3           # log10 FAP of the blind Z² search
    assert np.all(np.isfinite(f)) and f.shape == fc.shape
