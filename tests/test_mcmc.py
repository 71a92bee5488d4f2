"""emcee sampling (simxray.inference.mcmc): exact posteriors, convergence reporting, Sherpa's
statistics, and ``simxray fit --method emcee`` on the shipped emulator."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from scipy import stats

from simxray.errors import SimxrayError
from simxray.inference.mcmc import Likelihood, sample_emcee
from simxray.simulator.prior import Dist, Prior


class Linear:
    """mu = a * template + b * flat: a forward model with a known posterior."""

    def __init__(self, template: np.ndarray, flat: np.ndarray, names: list[str]):
        self.t, self.f, self.names = template, flat, names
        self.channels = [1, template.size]

    def expected(self, theta: np.ndarray) -> np.ndarray:
        th = np.atleast_2d(theta)
        return th[:, :1] * self.t + th[:, 1:2] * self.f


class Scaled:
    """mu = s * template: one parameter, a Gamma posterior under a flat prior."""

    names = ["s"]

    def __init__(self, template: np.ndarray):
        self.t = template
        self.channels = [1, template.size]

    def expected(self, theta: np.ndarray) -> np.ndarray:
        return np.atleast_2d(theta)[:, :1] * self.t


def test_one_parameter_gamma_posterior():
    """mu = s * template with a flat prior: the posterior of s is Gamma(N + 1, sum(template))."""
    tmpl = np.linspace(0.5, 3.0, 40)
    x = np.random.default_rng(1).poisson(2.0 * tmpl)
    prior = Prior([Dist("s", "uniform", low=0.1, high=10.0)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sample_emcee(x, simulator=Scaled(tmpl), prior=prior, n_samples=4000, seed=3,
                           n_walkers=16, n_effective=1000, max_steps=3000, block=200, quiet=True)
    ref = stats.gamma(x.sum() + 1, scale=1.0 / tmpl.sum())
    s = res.samples[:, 0]
    assert abs(s.mean() - ref.mean()) < 0.08 * ref.std()
    assert abs(s.std() / ref.std() - 1.0) < 0.08
    d = res.diagnostics
    assert d["stop_reason"] == "converged"
    assert 0.3 < d["acceptance_fraction_mean"] < 0.9
    assert d["effective_sample_size_min"] >= 1000
    assert d["autocorr_time_max"] > 1.0 and d["steps"] >= 50 * d["autocorr_time_max"]


def test_two_parameters_match_grid_posterior_loguniform():
    """Two correlated amounts, one log-uniform: moments match a brute-force grid posterior."""
    rng = np.random.default_rng(7)
    e = np.linspace(1, 8, 60)
    tmpl, flat = 20 * e ** -1.5, np.full(60, 0.5)
    fwd = Linear(tmpl, flat, ["a", "b"])
    x = rng.poisson(fwd.expected(np.array([1.0, 2.0]))[0])
    prior = Prior([Dist("a", "loguniform", low=0.2, high=5.0),
                   Dist("b", "uniform", low=0.0, high=6.0)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sample_emcee(x, simulator=fwd, prior=prior, n_samples=6000, seed=11,
                           n_effective=1000, max_steps=5000, quiet=True)
    a = np.geomspace(0.4, 2.5, 400)
    b = np.linspace(0.0, 6.0, 401)
    A, B = np.meshgrid(a, b, indexing="ij")
    th = np.column_stack([A.ravel(), B.ravel()])
    ll = Likelihood(x, fwd.expected)(th).reshape(A.shape) - np.log(A)   # 1/a prior density
    w = np.exp(ll - ll.max()) * A                                       # geometric grid: da ∝ a
    w /= w.sum()
    for j, G in enumerate((A, B)):
        m = (w * G).sum()
        sd = np.sqrt((w * (G - m) ** 2).sum())
        assert abs(res.samples[:, j].mean() - m) < 0.1 * sd, j
        assert abs(res.samples[:, j].std() / sd - 1.0) < 0.1, j


class Biased(Linear):
    """An 'emulator' of Linear with a smooth, parameter-dependent error of a few per cent
    (larger than the Poisson noise of the total counts)."""

    def expected(self, theta: np.ndarray, on_range: str = "error") -> np.ndarray:
        th = np.atleast_2d(theta)
        mu = super().expected(th)
        tilt = np.linspace(-1.0, 1.0, mu.shape[1])
        return mu * np.exp(0.08 + 0.03 * tilt * (th[:, :1] - 1.0) + 0.02 * (th[:, 1:2] - 2.0) / 2)


def test_anchor_removes_emulator_bias():
    """emcee on a biased emulator is pulled off the exact posterior (> 0.5 sd); anchored to
    the exact model over a pilot chain's draws, it agrees within 0.1 sd in means and 10 % in
    sds, and the check draws show the log-likelihood error shrink."""
    rng = np.random.default_rng(5)
    e = np.linspace(1, 8, 60)
    exact = Linear(20 * e ** -1.5, np.full(60, 2.0), ["a", "b"])
    emu = Biased(exact.t, exact.f, ["a", "b"])
    x = rng.poisson(exact.expected(np.array([1.0, 2.0]))[0])
    prior = Prior([Dist("a", "loguniform", low=0.2, high=5.0),
                   Dist("b", "uniform", low=0.0, high=6.0)])
    kw = dict(prior=prior, n_samples=8000, seed=2, n_effective=1500, max_steps=8000, quiet=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = sample_emcee(x, simulator=exact, **kw).samples
        plain = sample_emcee(x, emulator=emu, **kw).samples
        anch = sample_emcee(x, emulator=emu, anchor=exact, **kw)
    sd = ref.std(0)
    assert np.max(np.abs(plain.mean(0) - ref.mean(0)) / sd) > 0.5
    assert np.all(np.abs(anch.samples.mean(0) - ref.mean(0)) / sd < 0.1)
    assert np.all(np.abs(anch.samples.std(0) / sd - 1.0) < 0.1)
    info = anch.diagnostics["anchor"]
    assert anch.diagnostics["likelihood_path"] == "anchored emulator"
    assert info["points"] >= 18 and abs(info["total_correction_at_centre"] + 0.08) < 0.03
    assert info["check_dloglike_sd_anchored"] < 0.1 * info["check_dloglike_sd_plain"]


def test_second_mode_is_reported():
    """mu = a^2 x template: modes at +a and -a; the sampler finds both starts, explores one,
    and says so (diagnostics and a warning)."""
    tmpl = np.linspace(1.0, 3.0, 30)

    class Square:
        names = ["a"]
        channels = [1, 30]

        def expected(self, theta):
            return np.atleast_2d(theta)[:, :1] ** 2 * tmpl

    x = np.random.default_rng(4).poisson(1.5 ** 2 * tmpl)
    prior = Prior([Dist("a", "uniform", low=-3.0, high=3.0)])
    with pytest.warns(RuntimeWarning, match="another posterior mode"):
        res = sample_emcee(x, simulator=Square(), prior=prior, n_samples=500, seed=1,
                           n_walkers=8, n_effective=200, max_steps=2000, quiet=True)
    modes = res.diagnostics["modes"]
    assert len(modes) == 1 and modes[0]["delta_log_posterior"] < 0.01
    a_other, a_med = modes[0]["theta"]["a"], np.median(res.samples[:, 0])
    a_hat = np.sqrt(x.sum() / tmpl.sum())                    # the maximum-likelihood |a|
    assert abs(abs(a_other) - a_hat) < 0.01 and abs(abs(a_med) - a_hat) < 0.05
    assert np.sign(a_other) != np.sign(a_med)


def test_short_chain_warns_and_reports():
    tmpl = np.linspace(1, 2, 20)
    fwd = Linear(tmpl, np.ones(20), ["a", "b"])
    x = np.random.default_rng(0).poisson(fwd.expected(np.array([1.0, 1.0]))[0])
    prior = Prior([Dist("a", "uniform", low=0.1, high=5), Dist("b", "uniform", low=0, high=5)])
    with pytest.warns(RuntimeWarning, match="chain too short|effective sample size"):
        res = sample_emcee(x, simulator=fwd, prior=prior, n_samples=100, seed=0,
                           max_steps=60, block=30, quiet=True)
    assert res.diagnostics["stop_reason"] == "max_steps"
    assert any("too short" in w or "effective sample size" in w for w in res.warnings)


def test_emcee_sampler_steps():
    """The class behind sample_emcee: find_start lands on the analytic maximum (mu = s x
    template, flat prior: s_hat = N / sum(template)) with walkers around it, and run()
    gives sample_emcee's draws bit for bit for the same seed."""
    from simxray.inference.mcmc import EmceeSampler

    tmpl = np.linspace(0.5, 3.0, 40)
    x = np.random.default_rng(1).poisson(2.0 * tmpl)
    prior = Prior([Dist("s", "uniform", low=0.1, high=10.0)])
    kw = dict(simulator=Scaled(tmpl), prior=prior, n_samples=300, seed=5, n_walkers=8,
              n_effective=200, max_steps=600, block=100, quiet=True)
    smp = EmceeSampler(x, **kw)
    walkers = smp.find_start()
    s_hat = x.sum() / tmpl.sum()
    sd = np.sqrt(x.sum()) / tmpl.sum()
    assert abs(smp.x_map[0] - s_hat) < 0.01 * sd
    assert walkers.shape == (8, 1) and np.all(np.abs(walkers[:, 0] - s_hat) < 3 * sd)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        a = EmceeSampler(x, **kw).run()
        b = sample_emcee(x, **kw)
    assert np.array_equal(a.samples, b.samples) and np.array_equal(a.log_prob, b.log_prob)
    assert a.diagnostics["steps"] == b.diagnostics["steps"]


def test_bad_input():
    fwd = Linear(np.ones(5), np.ones(5), ["a", "b"])
    prior = Prior([Dist("a", "uniform", low=0.1, high=5), Dist("b", "uniform", low=0, high=5)])
    with pytest.raises(SimxrayError, match="exactly one forward model"):
        sample_emcee(np.ones(5), prior=prior)
    with pytest.raises(SimxrayError, match="non-negative"):
        sample_emcee(-np.ones(5), simulator=fwd, prior=prior, quiet=True)
    with pytest.raises(SimxrayError, match="walkers"):
        sample_emcee(np.ones(5), simulator=fwd, prior=prior, n_walkers=3, quiet=True)


@pytest.mark.sherpa
def test_statistics_match_sherpa():
    """Likelihood's cstat and wstat equal Sherpa's compiled CStat and WStat."""
    pytest.importorskip("sherpa")
    from sherpa.stats import _statfcts

    rng = np.random.default_rng(5)
    mu = rng.uniform(0.05, 30, 200)
    x = rng.poisson(mu).astype(float)
    x[:5] = 0.0
    bkg = rng.poisson(2.0, 200).astype(float)
    bkg[5:10] = 0.0
    alpha = 0.1
    fwd = lambda th: np.atleast_2d(th)[:, :1] * mu  # noqa: E731
    c = Likelihood(x, fwd).stat(np.array([[1.0]]))[0]
    ref_c = _statfcts.calc_cstat_stat(x, mu, None, 1e-25)[0]
    assert c == pytest.approx(ref_c, rel=1e-10)
    w = Likelihood(x, fwd, background_counts=bkg, background_scale=alpha).stat(np.array([[1.0]]))[0]
    one = np.ones(x.size)
    ref_w = _statfcts.calc_wstat_stat(x, mu, np.array([x.size]), one, one / alpha, bkg, one,
                                      1e-25)[0]
    assert w == pytest.approx(ref_w, rel=1e-8)


# -- the shipped emulator -------------------------------------------------------------------

def test_fit_cli_emcee_outputs(tmp_path, capsys):
    """``simxray fit --method emcee`` on a synthetic piled spectrum: same files as NPE fits,
    sampler diagnostics in summary.json, truth inside the 99 % range."""
    import h5py

    from simxray.cli import main
    from simxray.inference.mcmc import synthetic_spectrum

    truth = np.array([1.0, 1.8, 1e-3, 0.5, 0.95])
    path, _ = synthetic_spectrum(tmp_path / "synthetic.pi", truth, seed=2)
    from simxray.datasets import DATA_DIR

    rc = main(["fit", str(path), "--method", "emcee", "--emulator",
               str(DATA_DIR / "emulator_default"), "--out", str(tmp_path / "o"), "--samples",
               "300", "--max-steps", "300", "--n-effective", "200", "--ppc-draws", "10",
               "--quiet", "--seed", "1"])
    assert rc == 0
    for f in ("samples.h5", "posterior.nc", "summary.json", "corner.png", "spectrum.png"):
        assert (tmp_path / "o" / f).stat().st_size > 0, f
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    d = s["sampler"]
    assert s["method"] == "emcee" and d["forward_model"] == "emulator"
    for k in ("autocorr_time", "acceptance_fraction_mean", "effective_sample_size_min", "steps"):
        assert k in d
    # anchored by default: the check draws' log-likelihood error shrinks against the plain emulator
    a = d["anchor"]
    assert d["likelihood_path"] == "anchored emulator" and a["points"] >= 60
    assert a["check_dloglike_sd_anchored"] < a["check_dloglike_sd_plain"]
    with h5py.File(tmp_path / "o" / "samples.h5") as f:
        smp = f["samples"][:] if "samples" in f else None
    assert smp is not None and smp.shape[1] == 5
    for j, t in enumerate(truth[:3]):
        lo_q, hi_q = np.percentile(smp[:, j], [0.5, 99.5])
        assert lo_q <= t <= hi_q, (j, lo_q, t, hi_q)
    capsys.readouterr()
    rc = main(["fit", str(path), "--method", "npe", "--walkers", "8", "--out",
               str(tmp_path / "x")])
    assert rc == 2
    assert "--walkers" in capsys.readouterr().err


def test_emcee_rejects_wrong_response(tmp_path):
    from simxray.datasets import default_spectrum_path
    from simxray.errors import ResponseMismatchError
    from simxray.inference.mcmc import fit_spectrum_emcee

    with pytest.raises(ResponseMismatchError, match="frame time|exposure"):
        fit_spectrum_emcee(default_spectrum_path(), frame_time=1.7, out=None, max_steps=10)


