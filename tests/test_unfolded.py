"""Unfolded spectra (FitResult.unfolded / plot_unfolded, unfolded.png from `simxray fit`):
the unfolded model against direct integration of the power law, the unfolded data of
simulated spectra against their model (chi-square), with and without pileup."""

from __future__ import annotations

import numpy as np
import pytest

import simxray as sx
from simxray.datasets import default_spectrum_path
from simxray.inference.problem import FitProblem
from simxray.inference.result import FitResult
from simxray.io.ogip import read_pha

GAMMA, NORM = 1.7, 2e-3       # photons/keV/cm²/s at 1 keV
PRIOR = {"PhoIndex": {"dist": "uniform", "low": 1.0, "high": 3.0},
         "norm": {"dist": "loguniform", "low": 1e-5, "high": 1e-1}}


def simulated(pileup: str, theta: list[float], seed: int) -> FitResult:
    """A spectrum simulated from the embedded ACIS response at ``theta`` (no background),
    wrapped in a FitResult whose posterior is a point mass at the truth."""
    spec = read_pha(default_spectrum_path(), background="none")
    obs = sx.Observation(spec)
    obs.notice(0.5, 8.0)
    prob = FitProblem(obs, "powerlaw", {**PRIOR}, pileup=pileup, statistic="cstat")
    mu = prob.simulator.expected(np.array([theta]))[0]
    full = np.zeros(obs.n_channels)
    full[prob.slice] = np.random.default_rng(seed).poisson(mu)
    spec.counts = full
    obs = sx.Observation(spec)
    obs.notice(0.5, 8.0)
    prob = FitProblem(obs, "powerlaw", {**PRIOR}, pileup=pileup, statistic="cstat")
    return FitResult(samples=np.tile(theta, (20, 1)), names=prob.names, summary={},
                     problem=prob)


@pytest.fixture(scope="module")
def unpiled():
    return simulated("none", [GAMMA, NORM], seed=1)


@pytest.fixture(scope="module")
def piled():
    # 2e-2 at Gamma 1.7: ~0.5 photons per 3.24 s frame, a strongly piled source
    return simulated("jdpileup", [GAMMA, 1e-2, 0.5, 0.95], seed=2)


def test_unfolded_model_is_the_integrated_power_law(unpiled):
    """The source curve in photons/cm²/s/keV is the power law's mean over each group's
    energy range (direct integration), and E·F_E is E² times it."""
    u = unpiled.unfolded(units="uf")
    lo, hi = u["e_lo"], u["e_hi"]
    ref = NORM * (hi ** (1 - GAMMA) - lo ** (1 - GAMMA)) / (1 - GAMMA) / (hi - lo)
    np.testing.assert_allclose(u["source"][1], ref, rtol=1e-6)
    e = unpiled.unfolded(units="eeuf")
    np.testing.assert_allclose(e["source"][1], ref * u["energy"] ** 2, rtol=1e-6)
    np.testing.assert_allclose(e["data"], u["data"] * u["energy"] ** 2, rtol=1e-12)
    assert "piled" not in u


def test_unfolded_data_match_the_model_within_errors(unpiled):
    """Unpiled power law: the unfolded data scatter around the model as Poisson noise
    (chi-square per group within the 99.9 % range for G groups), no overall offset."""
    from scipy.stats import chi2

    u = unpiled.unfolded(units="uf")
    G = len(u["energy"])
    assert G > 30
    r = (u["data"] - u["source"][1]) / u["data_err"]
    assert chi2.ppf(0.0005, G) < np.sum(r ** 2) < chi2.ppf(0.9995, G)
    # the total counts agree with the model's: ratio 1 within 3 sd
    n = u["counts"].sum()
    assert abs(n / np.sum(u["counts"] / u["ratio"]) - 1) < 3 / np.sqrt(n)


def test_unfolding_through_pileup_recovers_the_source(piled):
    """Piled power law: data unfolded through response + pileup match the source model;
    unfolded ignoring pileup they fall below it by the piled/unpiled counts ratio, and
    the 'with pileup' curve is the source times that ratio."""
    from scipy.stats import chi2

    u = piled.unfolded(units="uf")
    G = len(u["energy"])
    r = (u["data"] - u["source"][1]) / u["data_err"]
    assert np.sum(r ** 2) < chi2.ppf(0.9995, G)
    prob = piled.problem
    mu_p = prob.expected(piled.samples[:1])[0]
    mp, _ = prob.simulator.split(piled.samples[:1])
    mu_u = prob.simulator.forward(mp, None)[0][0][prob.inner]
    loss = mu_p.sum() / mu_u.sum()
    assert loss < 0.8                                   # strongly piled
    tot = np.sum(u["piled"][1] * (u["e_hi"] - u["e_lo"]))
    src = np.sum(u["source"][1] * (u["e_hi"] - u["e_lo"]))
    assert tot / src < 0.85
    r_naive = (u["data_no_pileup"] - u["source"][1]) / u["data_no_pileup_err"]
    assert np.sum(r_naive ** 2) > 5 * chi2.ppf(0.9995, G)
    r_piled = (u["data_no_pileup"] - u["piled"][1]) / u["data_no_pileup_err"]
    assert np.sum(r_piled ** 2) < chi2.ppf(0.9995, G)


def test_plot_unfolded_writes_png(piled, unpiled, tmp_path):
    for res, name in ((piled, "p.png"), (unpiled, "u.png")):
        p = res.plot_unfolded(tmp_path / name)
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 20000


def test_fit_cli_writes_unfolded_png(tmp_path):
    """`simxray fit` writes unfolded.png next to spectrum.png (shipped posterior)."""
    from simxray.cli import main

    out = tmp_path / "fit"
    rc = main(["fit", str(default_spectrum_path()), "--samples", "1000", "--ppc-draws", "20",
               "--out", str(out)])
    assert rc == 0
    for name in ("spectrum.png", "unfolded.png", "corner.png"):
        assert (out / name).stat().st_size > 20000, name
