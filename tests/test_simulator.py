"""Prior, config and Simulator (simxray.simulator) and ``simxray predict``."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from simxray.cli import main
from simxray.errors import ConfigError
from simxray.simulator.config import config_from_dict, load_config
from simxray.simulator.prior import Dist, Prior

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TOML = REPO / "simulations" / "acis_powerlaw.toml"

warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


# ---------------------------------------------------------------------------
# prior
@pytest.fixture(scope="module")
def prior() -> Prior:
    return Prior([
        Dist("nH", "loguniform", 0.01, 10.0),
        Dist("PhoIndex", "uniform", 1.0, 3.0),
        Dist("x", "normal", 0.0, 1.0, mu=0.2, sigma=0.3),
        Dist("g0", "fixed", value=1.0),
    ])


def test_prior_sample_moments_and_bounds(prior):
    s = prior.sample(200_000, np.random.default_rng(1))
    assert s.shape == (200_000, 3) and prior.names == ["nH", "PhoIndex", "x"]
    assert prior.fixed == {"g0": 1.0}
    assert np.all(s >= prior.bounds[:, 0]) and np.all(s <= prior.bounds[:, 1])
    mean, var = prior.moments()
    # analytic: log-uniform mean (hi - lo)/ln(hi/lo) = 9.99/ln(1000) = 1.44620
    assert mean[0] == pytest.approx(9.99 / math.log(1000), rel=1e-12)
    assert mean[1] == 2.0 and var[1] == pytest.approx(4 / 12)
    tn = stats.truncnorm((0 - 0.2) / 0.3, (1 - 0.2) / 0.3, loc=0.2, scale=0.3)
    assert mean[2] == pytest.approx(tn.mean(), rel=1e-10)
    assert var[2] == pytest.approx(tn.var(), rel=1e-10)
    se = np.sqrt(var / s.shape[0])
    assert np.all(np.abs(s.mean(0) - mean) < 5 * se)
    # log-uniform: log10 nH is uniform on [-2, 1]
    assert stats.kstest(np.log10(s[:, 0]), stats.uniform(-2, 3).cdf).pvalue > 1e-3
    assert stats.kstest(s[:, 2], tn.cdf).pvalue > 1e-3


def test_prior_log_prob_matches_scipy(prior):
    t = np.array([[0.1, 1.5, 0.3], [5.0, 2.9, 0.9]])
    tn = stats.truncnorm((0 - 0.2) / 0.3, (1 - 0.2) / 0.3, loc=0.2, scale=0.3)
    ref = (stats.loguniform(0.01, 10).logpdf(t[:, 0]) + stats.uniform(1, 2).logpdf(t[:, 1])
           + tn.logpdf(t[:, 2]))
    np.testing.assert_allclose(prior.log_prob(t), ref, rtol=1e-12)
    assert prior.log_prob(np.array([20.0, 2.0, 0.5])) == -np.inf
    assert prior.log_prob(t[0]) == pytest.approx(ref[0])


def test_prior_json_roundtrip_same_draws(prior):
    again = Prior.from_json(prior.to_json())
    assert again.names == prior.names and again.fixed == prior.fixed
    a = prior.sample(50, np.random.default_rng(7))
    b = again.sample(50, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ConfigError, match="prior"):
        Prior.from_dict({"parameters": [{"name": "a"}]})


def test_prior_torch_distribution(prior):
    torch = pytest.importorskip("torch")
    d = prior.to_torch()
    x = d.sample((1000,))
    assert x.shape == (1000, 3) and x.dtype == torch.float32
    assert bool(d.support.check(x).all())
    t = np.array([[0.1, 1.5, 0.3], [5.0, 2.9, 0.9], [20.0, 2.0, 0.5]])
    lp = d.log_prob(torch.as_tensor(t, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(lp[:2], prior.log_prob(t)[:2], rtol=1e-5)
    assert lp[2] == -np.inf
    np.testing.assert_allclose(d.mean.numpy(), prior.moments()[0], rtol=1e-6)
    # same inverse-CDF transform as numpy
    u = np.random.default_rng(3).random((5, 3))
    np.testing.assert_allclose(d.transform(torch.as_tensor(u)).double().numpy(), prior.transform(u),
                               rtol=1e-6)
    import pickle

    assert pickle.loads(pickle.dumps(d)).log_prob(x[:3]).shape == (3,)


@pytest.mark.parametrize("kw, msg", [
    ({"dist": "beta", "low": 0, "high": 1}, "unknown distribution"),
    ({"dist": "uniform", "low": 2, "high": 1}, "low < high"),
    ({"dist": "loguniform", "low": 0.0, "high": 1}, "low > 0"),
    ({"dist": "normal", "mu": 50.0, "sigma": 1e-3, "low": 0, "high": 1}, "no mass"),
    ({"dist": "fixed"}, "finite 'value'"),
])
def test_dist_validation(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        Dist("p", **kw)


# ---------------------------------------------------------------------------
# config
def test_default_config_loads():
    cfg = load_config(DEFAULT_TOML)
    assert cfg.expression == "tbabs*powerlaw" and cfg.pileup_model == "jdpileup"
    pr = cfg.prior(frame_time=3.24104)
    assert pr.names == ["nH", "PhoIndex", "norm", "pileup.alpha", "pileup.f"]
    np.testing.assert_allclose(pr.bounds, [[0.01, 10], [1, 3], [1e-4, 3e-3], [0, 1], [0.85, 1]])
    assert pr.fixed == {"pileup.g0": 1.0, "pileup.n": 1.0, "pileup.ftime": 3.24104,
                        "pileup.fracexp": 0.987, "pileup.nterms": 30.0}
    # round trip through the JSON stored in datasets
    again = config_from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again.digest() == cfg.digest()


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    return p


GOOD = """
[instrument]
spectrum = "default"
[model]
expression = "powerlaw"
[model.parameters]
PhoIndex = { dist = "uniform", low = 1.0, high = 3.0 }
"""


@pytest.mark.parametrize("text, field, what", [
    ("[model\nexpression = 1", None, "invalid TOML"),
    (GOOD.replace('"powerlaw"', '"nosuchmodel*powerlaw"'), "model.expression", "unknown model"),
    (GOOD + "Foo = 1.0\n", "model.parameters.Foo", "unknown parameter"),
    (GOOD.replace('"uniform"', '"gamma"'), "model.parameters.PhoIndex", "unknown distribution"),
    (GOOD.replace("high = 3.0", "high = 30.0"), "model.parameters.PhoIndex", "hard limits"),
    (GOOD + "[pileup]\nalpha = { dist = \"uniform\", low = 0.0, high = 2.0 }\n", "pileup.alpha",
     "hard limits"),
    (GOOD + "[pileup]\nnterms = 40\n", "pileup.nterms", "hard limits"),
    (GOOD + "[pileup]\nmodel = \"marx\"\n", "pileup.model", "unknown pileup model"),
    (GOOD.replace("[instrument]", "[instrument]\nenergy_range = [8.0, 0.5]"), "instrument.energy_range",
     "low < high"),
    (GOOD + "[extra]\na = 1\n", "extra", "unknown section"),
    (GOOD.replace("[instrument]", "[instrument]\nspectrun = 'x'"), "instrument.spectrun", "unknown key"),
    ("[instrument]\nspectrum = 'default'\n", "model.expression", "missing"),
])
def test_config_errors_name_file_and_field(tmp_path, text, field, what):
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    msg = str(ei.value)
    assert str(p.resolve()) in msg and what in msg and "\n" not in msg
    if field:
        assert f": {field}: " in msg


def test_config_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "none.toml")


# ---------------------------------------------------------------------------
# simulator on the embedded NGC 4258 response
@pytest.fixture(scope="module")
def sim_nopile():
    from simxray.simulator.simulator import Simulator

    cfg = config_from_dict({
        "instrument": {"spectrum": "default", "energy_range": [0.5, 8.0], "add_background": True},
        "model": {"expression": "powerlaw", "parameters": {
            "PhoIndex": {"dist": "uniform", "low": 1.0, "high": 3.0},
            "norm": {"dist": "loguniform", "low": 1e-4, "high": 1e-2}}},
    })
    return Simulator.from_config(cfg)


@pytest.fixture(scope="module")
def sim_default():
    from simxray.simulator.simulator import Simulator

    return Simulator.from_config(load_config(DEFAULT_TOML))


def test_channels_from_energy_range(sim_nopile):
    s = sim_nopile
    assert s.channels == [35, 548] and s.n_channels == 514
    assert s.e_min[0] < 0.5 < s.e_max[0] and s.e_min[-1] < 8.0 < s.e_max[-1]
    ident = s.identity()
    assert ident["rmf"]["name"] == "rmf.fits" and len(ident["rmf"]["sha256"]) == 64
    assert ident["frame_time"] == pytest.approx(3.24104)


def test_expected_matches_manual_fold(sim_nopile):
    from simxray.datasets import default_spectrum
    from simxray.models import Model

    spec = default_spectrum()
    edges = np.concatenate([spec.rmf.energ_lo, spec.rmf.energ_hi[-1:]])
    theta = np.array([[1.7, 1e-3], [2.5, 3e-3]])
    flux = Model("powerlaw").evaluate(edges, {"PhoIndex": theta[:, 0], "norm": theta[:, 1]})
    ref = (flux * spec.arf.specresp * spec.exposure) @ spec.rmf.matrix.toarray()
    mu = sim_nopile.expected(theta)
    np.testing.assert_allclose(mu, ref[:, 34:548], rtol=1e-10)
    # Gamma=1.7, norm=1e-3: 1.99e-3 photons/cm^2/s in 0.5-8 keV; over 20.65 ks the counts
    # imply a mean ACIS-S effective area of a few hundred cm^2
    photons = 1e-3 * (0.5**-0.7 - 8.0**-0.7) / 0.7
    area = mu[0].sum() / (photons * spec.exposure)
    assert 350 < area < 600


def test_background_scaled_and_separate(sim_nopile):
    from simxray.datasets import default_spectrum

    spec = default_spectrum()
    scale = (spec.exposure * spec.backscal) / (spec.background.exposure * spec.background.backscal)
    np.testing.assert_allclose(sim_nopile.background_mu, spec.background.counts[34:548] * scale)
    assert sim_nopile.background_mu.sum() == pytest.approx(0.92, abs=0.01)
    theta = np.tile([[2.0, 1e-4]], (400, 1))
    out = sim_nopile.simulate(theta, np.random.default_rng(5))
    bkg = out["background"]
    assert bkg.shape == out["counts"].shape and np.all(out["counts"] >= bkg)
    # Poisson means: source ~ mu, background ~ mu_bkg (5 sigma)
    n_src = (out["counts"] - bkg).sum(1)
    m = out["mu"][0].sum()
    assert abs(n_src.mean() - m) < 5 * math.sqrt(m / 400)
    mb = sim_nopile.background_mu.sum()
    assert abs(bkg.sum(1).mean() - mb) < 5 * math.sqrt(mb / 400)


def test_seeded_sampling(sim_nopile):
    a = sim_nopile.sample(20, 11)
    b = sim_nopile.sample(20, np.random.default_rng(11))
    c = sim_nopile.sample(20, 12)
    for k in ("theta", "mu", "counts", "background"):
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["counts"], c["counts"])
    assert a["theta"].shape == (20, 2) and a["counts"].dtype.kind == "i"


def test_pileup_limits(sim_default):
    s = sim_default
    names = s.names
    base = {"nH": 1.0, "PhoIndex": 2.0, "pileup.alpha": 0.5, "pileup.f": 0.95}
    norms = np.array([1e-7, 1e-4, 1e-3, 3e-3])
    theta = np.array([[base.get(n, 0.0) for n in names] for _ in norms])
    theta[:, names.index("norm")] = norms
    mu, frac = s.expected(theta, return_fraction=True)
    # fraction grows with flux; negligible at 1e-7
    assert frac[0] < 1e-4 and np.all(np.diff(frac) > 0) and 0.05 < frac[2] < 0.5
    # faint source: piled == unpiled (ARF x exposure x RMF) to 1e-3
    mp, _ = s.split(theta[:1])
    ref, _ = s.forward(mp, None)
    np.testing.assert_allclose(mu[0].sum(), ref[0].sum(), rtol=2e-3)
    # bright source: counts are lost (grade migration) and the spectrum hardens
    lin, _ = s.forward(s.split(theta[3:])[0], None)
    assert mu[3].sum() < 0.7 * lin[0].sum()
    hard = s.e_min > 3.0
    assert mu[3][hard].sum() / mu[3].sum() > lin[0][hard].sum() / lin[0].sum()


def test_default_prior_pileup_fraction_span(sim_default):
    th = sim_default.prior.sample(96, np.random.default_rng(0))
    frac = sim_default.pileup_fraction(th)
    q10, q50 = np.quantile(frac, [0.1, 0.5])
    assert 0.002 < q10 < 0.05 and 0.05 < q50 < 0.4


# ---------------------------------------------------------------------------
# simxray predict
def _csv(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", comments="#")


def test_predict_cli(tmp_path, capsys, sim_default):
    out = tmp_path / "p.csv"
    args = ["predict", "default", "--model", "tbabs*powerlaw", "--param", "nH=1,PhoIndex=2",
            "--param", "norm=1e-3"]
    assert main([*args, "--pileup", "alpha=0.5,f=0.95", "--out", str(out)]) == 0
    line = capsys.readouterr().out
    d = _csv(out)
    assert d.shape == (1024, 4) and d[0, 0] == 1 and d[-1, 0] == 1024
    names = sim_default.names
    theta = np.array([[{"nH": 1, "PhoIndex": 2, "norm": 1e-3, "pileup.alpha": 0.5,
                        "pileup.f": 0.95}[n] for n in names]])
    mu, frac = sim_default.expected(theta, return_fraction=True)
    np.testing.assert_allclose(d[34:548, 3], mu[0], rtol=1e-8)
    assert f"pileup fraction {frac[0]:.4g}" in line
    # no pileup: more counts, fraction 0; shorter frame -> less pileup
    assert main([*args, "--out", str(tmp_path / "n.csv")]) == 0
    assert "pileup fraction 0" in capsys.readouterr().out
    assert _csv(tmp_path / "n.csv")[:, 3].sum() > d[:, 3].sum()
    assert main([*args, "--pileup", "alpha=0.5,f=0.95", "--frame-time", "0.4", "--out",
                 str(tmp_path / "s.csv")]) == 0
    f_short = float(capsys.readouterr().out.split("pileup fraction ")[1].split()[0])
    assert f_short < 0.25 * frac[0]


@pytest.mark.parametrize("extra, what", [
    (["--param", "nH=-1"], "tbabs.nH: value -1 outside the hard limits"),
    (["--param", "foo=1"], "foo: unknown parameter"),
    (["--pileup", "alpha=2"], "pileup.alpha: value 2 outside"),
    (["--pileup", "beta=2"], "beta: unknown pileup parameter"),
])
def test_predict_errors_exit_2(tmp_path, capsys, extra, what):
    out = tmp_path / "x.csv"
    rc = main(["predict", "default", "--model", "tbabs*powerlaw", *extra, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and what in err and err.count("\n") == 1 and not out.exists()
