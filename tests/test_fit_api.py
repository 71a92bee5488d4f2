"""simxray.fit on real spectra: the exact-likelihood posterior against a grid posterior,
priors and bad input, ArviZ output, fluxes, and the CLI's refusal of mismatched networks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import simxray as sx
from simxray.errors import ConfigError, ParameterError
from simxray.inference.problem import FitProblem, parse_param_spec

PRIOR_2D = {"PhoIndex": {"dist": "uniform", "low": 0.5, "high": 3.5},
            "norm": {"dist": "loguniform", "low": 1e-4, "high": 1e-2}}


@pytest.fixture(scope="module")
def obs_3c273(chandra_dir):
    obs = sx.Observation.from_pha(chandra_dir / "3c273.pi")
    obs.notice(0.5, 7.0)
    return obs


def test_exact_posterior_matches_grid(obs_3c273):
    """Power law without pileup, C-stat: emcee on the simulator vs the same likelihood on
    a 2-D grid (Γ, log norm) with the prior's density: means within 0.1 sd, sds within 10 %."""
    res = sx.fit(obs_3c273, "powerlaw", PRIOR_2D, pileup="none", statistic="cstat",
                 method="exact", n_samples=8000, seed=3, ppc_draws=20)
    prob = res.problem
    # a grid over +-7 sd of the samples (checked below to hold all the mass)
    s0, s1 = res.samples[:, 0], np.log(res.samples[:, 1])
    g = np.linspace(s0.mean() - 7 * s0.std(), s0.mean() + 7 * s0.std(), 141)
    ln = np.linspace(s1.mean() - 7 * s1.std(), s1.mean() + 7 * s1.std(), 141)
    G, LN = np.meshgrid(g, ln, indexing="ij")
    th = np.column_stack([G.ravel(), np.exp(LN.ravel())])
    ll = prob.likelihood()(th).reshape(G.shape)     # log-uniform prior: flat in ln norm
    w = np.exp(ll - ll.max())
    w /= w.sum()
    assert w[0].sum() + w[-1].sum() + w[:, 0].sum() + w[:, -1].sum() < 1e-6  # grid covers it
    for col, grid in ((0, G), (1, LN)):
        m = (w * grid).sum()
        sd = np.sqrt((w * (grid - m) ** 2).sum())
        s = res.samples[:, col] if col == 0 else np.log(res.samples[:, col])
        assert abs(s.mean() - m) < 0.1 * sd
        assert s.std() == pytest.approx(sd, rel=0.10)
    assert res.summary["method"] == "exact"
    fl = res.summary["fluxes"]["bands"]["2-10"]["energy_flux"]["median"]
    # independent check: 2-10 keV energy flux of the median power law, by quadrature
    from scipy.integrate import quad

    gam, nrm = np.median(res.samples[:, 0]), np.median(res.samples[:, 1])
    ref = quad(lambda e: nrm * e ** (1 - gam), 2, 10)[0] * 1.602176634e-9
    assert fl == pytest.approx(ref, rel=0.05)


def test_arviz_groups_and_loo(obs_3c273, tmp_path):
    az = pytest.importorskip("arviz")
    res = sx.fit(obs_3c273, "powerlaw", PRIOR_2D, pileup="none", statistic="cstat",
                 method="emcee", n_samples=2000, seed=1, ppc_draws=20, n_effective=300)
    files = res.save(tmp_path / "out", plots=False)
    idata = az.from_netcdf(files["inference_data"])
    for grp in ("posterior", "sample_stats", "log_likelihood", "prior", "observed_data",
                "constant_data"):
        assert hasattr(idata, grp), grp
    assert idata.posterior.sizes["chain"] == res.chains.shape[1] > 1
    assert "PhoIndex" in idata.posterior and idata.constant_data["exposure"].attrs["units"] == "s"
    s = az.summary(idata)
    assert np.all(np.isfinite(s["r_hat"]))
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo)
    import matplotlib

    matplotlib.use("Agg")
    axes = az.plot_trace(idata)
    assert axes.shape[0] == len(res.names)
    summ = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summ["parameters"]["PhoIndex"]["median"] == pytest.approx(
        float(np.median(res.samples[:, 0])))


def test_prior_specs_and_errors(obs_3c273):
    assert parse_param_spec("nH=loguniform:0.01:20") == (
        "nH", {"dist": "loguniform", "low": 0.01, "high": 20.0})
    assert parse_param_spec('x={dist="uniform",low=0,high=4}')[1]["high"] == 4
    with pytest.raises(ParameterError):
        parse_param_spec("nH=banana:1:2")
    # a free parameter with no default prior
    with pytest.raises(ConfigError, match="HighECut"):
        FitProblem(obs_3c273, "cutoffpl", pileup="none")
    # outside the hard limits
    with pytest.raises(ConfigError, match="hard limits"):
        FitProblem(obs_3c273, "tbabs*powerlaw", {"PhoIndex": {"dist": "uniform", "low": 0,
                                                             "high": 20}}, pileup="none")
    # defaults: documented nH, PhoIndex; norm from the data; pileup alpha, f free
    p = FitProblem(obs_3c273, "tbabs*powerlaw")
    assert p.names == ["nH", "PhoIndex", "norm", "pileup.alpha", "pileup.f"]
    d = {x["name"]: x for x in p.prior.to_dict()["parameters"]}
    assert d["pileup.ftime"]["value"] == pytest.approx(3.24104)
    assert d["pileup.fracexp"]["value"] == 1.0
    assert d["norm"]["low"] < 1e-3 < d["norm"]["high"]


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "simxray.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)


def test_cli_refuses_mismatched_posterior(chandra_dir, tmp_path):
    r = _cli("fit", chandra_dir / "3c273.pi", "--method", "npe", "--out", tmp_path / "o")
    assert r.returncode == 2
    assert "no amortised posterior matches" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()
    # the shipped default posterior was trained for 0.5-8 keV and other priors
    r = _cli("fit", chandra_dir / "source_bin10.pi", "--method", "npe", "--energy", "1:7",
             "--posterior", sx.datasets.DATA_DIR / "posterior_default", "--out", tmp_path / "o")
    assert r.returncode == 2 and "channels" in r.stderr


@pytest.mark.parametrize("args, msg", [
    (["--energy", "20:30"], "no good channel"),
    (["--model", "cutoffpl", "--pileup", "none"], "does not cover"),
    (["--param", "PhoIndex=uniform:0:50"], "hard limits"),
    (["--energy", "7:1"], "LO < HI"),
    (["--param", "pileup.alpha=uniform:0:2"], "hard limits"),
])
def test_cli_bad_input(chandra_dir, tmp_path, args, msg):
    r = _cli("fit", chandra_dir / "3c273.pi", "--out", tmp_path / "o", *args)
    assert r.returncode == 2, r.stderr
    assert msg in r.stderr and r.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_cli_fit_any_spectrum(chandra_dir, tmp_path):
    """A spectrum the project never trained for: exact path, no training step."""
    out = tmp_path / "csc"
    r = _cli("fit", chandra_dir / "acisf01575_001N001_r0085_pha3.fits.gz", "--energy", "0.5:7",
             "--model", "wabs*powerlaw", "--max-steps", "400", "--samples", "1000",
             "--ppc-draws", "20", "--no-plots", "--out", out)
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["method"] == "exact" and "no amortised posterior matches" in s["method_reason"]
    assert s["pileup"] is True and s["statistic"] == "wstat"
    assert 0.5 < s["parameters"]["PhoIndex"]["median"] < 3.5
    assert "0.5-2" in s["fluxes"]["bands"]
    assert sorted(p.name for p in out.iterdir()) == ["posterior.nc", "samples.h5",
                                                      "summary.json"]
    # the same --out again without --overwrite is refused before any work
    r = _cli("fit", chandra_dir / "acisf01575_001N001_r0085_pha3.fits.gz", "--out", out)
    assert r.returncode == 2 and "--overwrite" in r.stderr


def test_network_guided_importance_matches_grid(obs_3c273):
    """The fallback when an amortised posterior fails the exact-likelihood check: importance
    sampling (tempered AMIS) seeded by the network's draws.  Stand-in draws twice as wide as the
    posterior and offset by 1.5 sd must still give the grid posterior: means within 0.1 sd,
    sds within 10 %."""
    from simxray.inference.fitting import _network_guided

    prob = FitProblem(obs_3c273, "powerlaw", PRIOR_2D, pileup="none", statistic="cstat")
    g = np.linspace(1.0, 3.0, 201)
    ln = np.linspace(np.log(1e-4), np.log(1e-2), 201)
    G, LN = np.meshgrid(g, ln, indexing="ij")
    ll = prob.likelihood()(np.column_stack([G.ravel(), np.exp(LN.ravel())])).reshape(G.shape)
    w = np.exp(ll - ll.max())
    w /= w.sum()
    m = np.array([(w * G).sum(), (w * LN).sum()])
    sd = np.sqrt(np.array([(w * (G - m[0]) ** 2).sum(), (w * (LN - m[1]) ** 2).sum()]))
    rho = (w * (G - m[0]) * (LN - m[1])).sum() / sd.prod()
    cov = np.outer(sd, sd) * np.array([[1, rho], [rho, 1]])
    rng = np.random.default_rng(4)
    bad = rng.multivariate_normal(m + 1.5 * sd, 4 * cov, 4000)       # wide and offset
    bad = np.column_stack([bad[:, 0], np.exp(bad[:, 1])])
    out = _network_guided(prob, bad, 4000, 5, 1000)
    assert out is not None, "guided importance sampling did not converge"
    s, extra = out
    imp = extra["sampler"]["importance"]
    assert imp["khat"] < 0.7 and imp["ess"] >= 1000
    for col, x in ((0, s[:, 0]), (1, np.log(s[:, 1]))):
        assert abs(x.mean() - m[col]) < 0.1 * sd[col]
        assert x.std() == pytest.approx(sd[col], rel=0.10)
