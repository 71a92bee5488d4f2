"""Flaring piled sources (simxray.events.variable, benchmarks/bench_variable_pileup.py).

References: the exact piled fraction of a point-like (delta) PSF, 1 - L/(e^L - 1) per frame
(all photons of a frame in one island); Poisson expectations of the rate profile; the Davis
model itself (tested against Sherpa in test_pileup.py) evaluated frame level by frame level.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simxray.events.variable import (
    DavisAverage,
    FlareSetup,
    Instrument,
    davis_time_resolved,
    fit_davis_mean_rate,
    frame_levels,
    rate_profile,
    simulate_flare,
)

RESULT = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "variable_pileup.json"


@pytest.fixture(scope="module")
def inst():
    return Instrument(FlareSetup(span_s=1500.0))


@pytest.fixture(scope="module")
def inst_delta():
    return Instrument(FlareSetup(span_s=1500.0, psf="delta"))


def test_peak_pileup_matches_exact_delta_psf(inst_delta):
    """Delta PSF: piled fraction of detected islands at the peak = Σ P(n>=2) / Σ P(n>=1) over the peak frames."""
    s = inst_delta.setup
    theta = np.array([1.0, 3.0, np.log10(4.0), -2.0, 0.5, 0.15])   # soft: no pile leaves the RMF (> 11 keV)
    _, lab = simulate_flare(theta, inst_delta, seed=3)
    nf = int(round(s.span_s / s.frame_time_s))
    L = rate_profile(theta, (np.arange(nf) + 0.5) / nf) * s.frame_time_s
    pk = L >= 0.8 * L.max()
    p1 = -np.expm1(-L[pk])
    p2 = p1 - L[pk] * np.exp(-L[pk])
    expected = p2.sum() / p1.sum()
    n_det = p1.sum()
    tol = 4 * np.sqrt(expected * (1 - expected) / n_det) + 0.01   # binomial + level quantisation
    assert lab["peak_photons_per_frame"] == pytest.approx(L.max())
    assert abs(lab["peak_pileup_fraction"] - expected) < tol, (lab["peak_pileup_fraction"], expected)
    assert expected > 0.5   # the check is made where pileup is strong


def test_event_times_follow_the_rate_profile(inst):
    """Low rate (no pileup): counts near the flare and outside it in the ratio of the expected photons."""
    s = inst.setup
    theta = np.array([5.0, 2.0, np.log10(0.6), -0.7, 0.4, 0.08])
    ev, lab = simulate_flare(theta, inst, seed=5)
    nf = int(round(s.span_s / s.frame_time_s))
    tau = (np.arange(nf) + 0.5) / nf
    L = rate_profile(theta, tau) * s.frame_time_s
    assert lab["n_photons"] == pytest.approx(L.sum(), abs=5 * np.sqrt(L.sum()))
    inside = np.abs(tau - 0.4) < 0.08
    exp_frac = L[inside].sum() / L.sum()
    t_in = np.abs(ev.time / (nf * s.frame_time_s) - 0.4) < 0.08
    obs_frac = t_in.mean()
    assert abs(obs_frac - exp_frac) < 4 * np.sqrt(exp_frac * (1 - exp_frac) / ev.n_events) + 0.01
    assert np.all(np.diff(ev.time) >= 0) and ev.time.max() < ev.gti[0, 1]


def test_levels_conserve_the_expected_photons(inst):
    theta = np.array([5.0, 2.0, np.log10(3.0), -1.0, 0.5, 0.1])
    lbar, n = frame_levels(theta, inst.setup)
    nf = int(round(inst.setup.span_s / inst.setup.frame_time_s))
    L = rate_profile(theta, (np.arange(nf) + 0.5) / nf) * inst.setup.frame_time_s
    assert n.sum() == nf
    assert (lbar * n).sum() == pytest.approx(L.sum(), rel=1e-12)
    assert lbar.max() <= L.max() and lbar.max() >= L.max() * np.exp(-inst.setup.level_step)


def test_davis_time_resolved_equals_mean_rate_model_without_pileup(inst):
    """At negligible pileup the Davis model is linear in the rate: summing over levels = mean-rate model."""
    dav = DavisAverage(inst)
    theta = np.array([10.0, 2.0, np.log10(0.02), -2.0, 0.5, 0.1])
    lbar, n = frame_levels(theta, inst.setup)
    mean = (lbar * n).sum() / n.sum() / inst.setup.frame_time_s
    mu_t = davis_time_resolved(theta, dav)
    mu_m, _ = dav.expected(np.array([[10.0, 2.0, np.log10(mean), 0.5, 0.95]]))
    assert mu_t.sum() == pytest.approx(mu_m[0].sum(), rel=2e-3)
    assert np.allclose(mu_t, mu_m[0], rtol=5e-3, atol=1e-6)


def test_mean_rate_davis_fit_is_biased_hard_for_a_piled_flare(inst):
    """Asimov (expected-counts) fits: unbiased at low peak rate; Γ too hard (by > 0.2) at L_peak ~ 1.8."""
    dav = DavisAverage(inst)
    out = {}
    for peak in (0.1, 4.0):
        theta = np.array([15.0, 2.5, np.log10(peak), -1.5, 0.5, 0.1])
        lbar, n = frame_levels(theta, inst.setup)
        mean = (lbar * n).sum() / n.sum() / inst.setup.frame_time_s
        mu = davis_time_resolved(theta, dav)
        starts = (0.5,) if peak < 1 else (0.5, 0.9)   # two starts where the C-stat surface is bimodal
        p, _ = fit_davis_mean_rate(mu, dav, start=np.array([15.0, 2.5, np.log10(mean), 0.5]), alpha_starts=starts)
        out[peak] = p
    assert abs(out[0.1][1] - 2.5) < 0.03 and abs(out[0.1][0] - 15.0) < 0.5
    assert out[4.0][1] - 2.5 < -0.2


@pytest.mark.skipif(not RESULT.exists(), reason="benchmark result not committed")
def test_committed_result_calibration_and_bias():
    """The committed benchmark: PPAD-NPE 90 % coverage of nH and Γ within binomial tolerance of 0.9 over the
    whole test set; the time-averaged Davis fit's Γ bias at the highest peak pileup negative and larger
    than the NPE's; the direct (Asimov) calculation biased the same way."""
    res = json.loads(RESULT.read_text())
    if res.get("quick"):
        pytest.skip("quick result")
    ppad = res["methods"]["ppad"]["scores"]
    n = ppad["all"]["n"]
    tol = 3 * np.sqrt(0.9 * 0.1 / n) + 0.02
    for par in ("nH", "PhoIndex"):
        assert abs(ppad["all"][par]["coverage90"] - 0.9) < tol
    top_d = [b for b in res["methods"]["davis"]["scores"]["by_peak_pileup"] if b["n"] >= 10][-1]
    top_p = [b for b in ppad["by_peak_pileup"] if b["n"] >= 10][-1]
    assert top_d["PhoIndex"]["bias"] < 0
    assert abs(top_d["PhoIndex"]["bias"]) > abs(top_p["PhoIndex"]["bias"])
    asimov = {a["peak_rate"]: a for a in res["asimov_davis_variability_bias"]}
    assert abs(asimov[0.1]["bias_PhoIndex"]) < 0.01
    assert asimov[2.0]["bias_PhoIndex"] < -0.2           # ~19 % piled at the peak: too hard
    # the direct calculation and the NPE-measured Davis bias in the 20-30 % bin agree in sign and size
    b2030 = [b for b in res["methods"]["davis"]["scores"]["by_peak_pileup"] if b["range"][0] == 0.2][0]
    assert b2030["PhoIndex"]["bias"] < -0.15


@pytest.mark.slow
def test_quick_benchmark_end_to_end(tmp_path):
    """The benchmark in quick mode: every stage runs, outputs carry provenance, numbers are finite."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_variable_pileup.py"
    spec = importlib.util.spec_from_file_location("bench_variable_pileup", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out_json, out_png = tmp_path / "vp.json", tmp_path / "vp.png"
    res = bench.run(quick=True, work=tmp_path / "cache", json_path=out_json, png_path=out_png, real=False)
    assert out_json.exists() and out_png.stat().st_size > 10_000
    assert res["provenance"]["seed"] == 0 and len(res["provenance"]["inputs"]) >= 2
    for m in ("ppad", "plain", "davis"):
        cov = res["methods"][m]["scores"]["all"]["PhoIndex"]["coverage90"]
        assert 0.0 <= cov <= 1.0
    # the direct calculation: no variability bias at a low peak rate, a hard bias at a high one
    asim = res["asimov_davis_variability_bias"]
    assert abs(asim[0]["bias_PhoIndex"]) < 0.05 and asim[-1]["bias_PhoIndex"] < -0.2
