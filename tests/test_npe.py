"""Neural posterior estimation: transforms, flow density, statistics, training, saving."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from simxray.errors import ConfigError, FileFormatError
from simxray.inference import diagnostics, saving, stats
from simxray.inference.npe import BoxToReal, NPEModel, load_settings, train
from simxray.simulator.prior import Dist, Prior

torch.set_num_threads(1)

TOY_SETTINGS = {
    "embedding.type": "mlp", "embedding.features": 8, "embedding.hidden": 32,
    "flow.transforms": 2, "flow.hidden_features": [32, 32], "training.batch_size": 128,
    "training.learning_rate": 3e-3, "training.patience": 50,
}


def toy_prior() -> Prior:
    return Prior([Dist("PhoIndex", "uniform", 1.0, 3.0), Dist("norm", "loguniform", 0.5, 5.0)])


def write_toy_dataset(path, n: int = 3000, C: int = 32, seed: int = 0) -> Prior:
    """Power-law-like spectra in the documented dataset layout."""
    prior = toy_prior()
    rng = np.random.default_rng(seed)
    th = prior.sample(n, rng)
    e = np.linspace(0.5, 8.0, C)
    mu = th[:, 1:2] * 40.0 * e[None] ** (-th[:, 0:1])
    with h5py.File(path, "w") as f:
        d = f.create_dataset("theta", data=th.astype("f4"))
        d.attrs["names"] = prior.names
        f["mu"] = mu.astype("f4")
        f["counts"] = rng.poisson(mu).astype("i4")
        f.attrs["prior"] = prior.to_json()
        f.attrs["config"] = json.dumps({"model": {"expression": "toy"}})
        f.attrs["model"] = "toy"
        f.attrs["response"] = json.dumps({"exposure": 1000.0})
        f.attrs["provenance"] = json.dumps({})
        f.attrs["seed"] = seed
        f.attrs["channels"] = [1, C]
        f.attrs["n_done"] = n
    return prior


def settings(**extra):
    return load_settings(None, {**TOY_SETTINGS, **extra})


# -- the parameter transform and the flow ---------------------------------------------------

def test_box_to_real_roundtrip_and_jacobian():
    low = torch.tensor([0.01, 1.0])
    high = torch.tensor([10.0, 3.0])
    t = BoxToReal(low, high, torch.tensor([1.0, 0.0]), torch.tensor([0.3, -0.1]),
                  torch.tensor([1.7, 1.9]))
    x = torch.tensor([[0.02, 1.2], [3.0, 2.9], [9.5, 2.0]], dtype=torch.float64)
    t64 = BoxToReal(low.double(), high.double(), torch.tensor([1.0, 0.0]).double(),
                    torch.tensor([0.3, -0.1]).double(), torch.tensor([1.7, 1.9]).double())
    y = t64(x)
    assert torch.allclose(t64.inv(y), x, rtol=1e-10)
    # analytic log|dy/dx| equals autograd's, elementwise
    for i in range(x.shape[0]):
        for j in range(2):
            xi = x[i].clone().requires_grad_(True)
            (g,) = torch.autograd.grad(t64(xi)[j], xi)
            assert float(t64.log_abs_det_jacobian(x[i], y[i])[j]) == pytest.approx(
                float(torch.log(g[j])), rel=1e-8)
    # float32 extremes map inside the bounds
    z = torch.tensor([[-40.0, -40.0], [40.0, 40.0]])
    back = t.inv(z)
    assert torch.all(back >= low) and torch.all(back <= high)


def test_flow_density_integrates_to_one_over_the_prior_box():
    torch.manual_seed(3)
    m = NPEModel(16, [1.0, 0.5], [3.0, 5.0], [False, True], {"type": "mlp", "features": 4},
                 {"transforms": 2, "hidden_features": [16, 16]})
    m.theta_transform.fit(torch.tensor(toy_prior().sample(500, np.random.default_rng(1)),
                                       dtype=torch.float32))
    x = torch.poisson(torch.full((1, 16), 4.0))
    g1 = torch.linspace(1.0, 3.0, 401)[1:-1]
    g2 = torch.logspace(np.log10(0.5), np.log10(5.0), 401)[1:-1]
    a, b = torch.meshgrid(g1, g2, indexing="ij")
    th = torch.stack([a.ravel(), b.ravel()], -1)
    with torch.no_grad():
        p = m.log_prob(th, x.expand(len(th), -1)).exp().reshape(a.shape)
    # trapezoid in theta space (non-uniform grid in norm)
    integral = torch.trapezoid(torch.trapezoid(p, g2, dim=1), g1).item()
    assert integral == pytest.approx(1.0, abs=0.03)
    s = m.sample(4000, x[0])
    assert s.shape == (4000, 2)
    assert float(s[:, 0].min()) >= 1.0 and float(s[:, 0].max()) <= 3.0
    assert float(s[:, 1].min()) >= 0.5 and float(s[:, 1].max()) <= 5.0


# -- statistics -------------------------------------------------------------------------------

def test_cstat_matches_formula_and_is_minimal_at_the_data():
    d = np.array([0.0, 3.0, 10.0])
    m = np.array([0.5, 2.0, 12.0])
    expect = 2 * (0.5 + (2 - 3 + 3 * np.log(3 / 2)) + (12 - 10 + 10 * np.log(10 / 12)))
    assert stats.cstat(d, m) == pytest.approx(expect, rel=1e-12)
    assert stats.cstat(d, np.maximum(d, 1e-300)) == pytest.approx(0.0, abs=1e-9)
    many = np.stack([m, m * 2])
    assert stats.cstat(d, many).shape == (2,)
    mean, var = stats.cstat_expectation(np.array([200.0, 200.0]))
    assert mean == pytest.approx(2.0) and var == pytest.approx(4.0)
    mean, _ = stats.cstat_expectation(np.array([1.0]))
    rng = np.random.default_rng(0)
    mc = stats.cstat(rng.poisson(1.0, (200000, 1)), np.ones((1, 1))).mean()
    assert mean == pytest.approx(mc, rel=0.02)


@pytest.mark.parametrize("S,B,mu,alpha", [(5, 3, 2.5, 0.2), (0, 4, 1.0, 0.5), (7, 0, 1.0, 0.3),
                                          (2, 0, 30.0, 0.3), (12, 40, 6.0, 0.1)])
def test_wstat_equals_profile_likelihood(S, B, mu, alpha):
    from scipy.optimize import minimize_scalar
    from scipy.special import xlogy

    # -2 log L(mu, b) + saturated terms, b = background counts expected in the source region
    def neg2(b):
        lam_s, lam_b = mu + b, b / alpha
        return 2 * (lam_s - xlogy(S, lam_s) + lam_b - xlogy(B, lam_b)
                    - S + xlogy(S, S) - B + xlogy(B, B))

    best = minimize_scalar(neg2, bounds=(0.0, 1e3), method="bounded",
                           options={"xatol": 1e-10}).fun
    best = min(best, neg2(0.0))
    assert stats.wstat(np.array([S]), np.array([B]), np.array([mu]), alpha) == pytest.approx(
        best, abs=1e-5)


# -- calibration diagnostics ------------------------------------------------------------------

def test_coverage_of_calibrated_and_overconfident_posteriors():
    rng = np.random.default_rng(1)
    n, S = 3000, 400
    mean = rng.normal(size=(n, 2))
    truth = mean + rng.normal(size=(n, 2))                   # truth ~ posterior
    good = mean[None] + rng.normal(size=(S, n, 2))
    narrow = mean[None] + 0.5 * rng.normal(size=(S, n, 2))   # twice too confident
    err = diagnostics.max_coverage_error(diagnostics.ranks_from_samples(good, truth), S)
    assert np.all(err < 0.04)
    lv, cov = diagnostics.coverage_curve(diagnostics.ranks_from_samples(narrow, truth), S,
                                         levels=np.array([0.6827]))
    # central 68% of N(0, 0.5^2) is |z| < 0.5: covers P(|Z| < 0.5) = 0.383 of the truths
    assert cov[0] == pytest.approx([0.383, 0.383], abs=0.03)
    ecp, alpha = diagnostics.tarp_numpy(good[:200], truth, rng)
    assert np.max(np.abs(ecp - alpha)) < 0.06
    rec = diagnostics.recovery(good, truth, [False, False])
    assert rec["r2"] == pytest.approx([0.5, 0.5], abs=0.06)    # var(mean) / var(truth)


def test_tarp_equals_sbi_public_run_tarp_and_flags_bias():
    """Own TARP (diagnostics.tarp) against sbi's public run_tarp on the same draws, truths and
    references (a posterior object that returns those draws): identical ECP and alpha.  A
    calibrated Gaussian posterior has ECP ≈ alpha (and sbi's check_tarp KS p-value is not
    small); one shifted by one sd or three times too narrow does not."""
    import torch
    from sbi.diagnostics import check_tarp, run_tarp

    class Fixed:                                    # sbi's batched-sampling interface
        def __init__(self, draws):
            self.draws = draws

        def sample_batched(self, sample_shape, x, show_progress_bars=False, **kw):
            assert tuple(sample_shape) == (self.draws.shape[0],) and len(x) == self.draws.shape[1]
            return self.draws

    rng = np.random.default_rng(7)
    B, S = 600, 300
    mean = rng.normal(size=(B, 3)) * [1.0, 5.0, 0.2]
    truth = mean + rng.normal(size=(B, 3)) * [1.0, 5.0, 0.2]
    ref = torch.as_tensor(rng.uniform(truth.min(0), truth.max(0), size=truth.shape), dtype=torch.float32)
    th = torch.as_tensor(truth, dtype=torch.float32)
    dev = {}
    for case, shift, width in (("calibrated", 0.0, 1.0), ("shifted", 1.0, 1.0), ("overconfident", 0.0, 0.3)):
        draws = torch.as_tensor(mean[None] + shift * np.array([1.0, 5.0, 0.2])
                                + width * rng.normal(size=(S, B, 3)) * [1.0, 5.0, 0.2], dtype=torch.float32)
        ecp, alpha = diagnostics.tarp(draws, th, ref)
        ecp_sbi, alpha_sbi = run_tarp(th, torch.zeros(B, 1), Fixed(draws), references=ref,
                                      num_posterior_samples=S, show_progress_bar=False)
        torch.testing.assert_close(ecp, ecp_sbi, rtol=0, atol=0)
        torch.testing.assert_close(alpha, alpha_sbi, rtol=0, atol=0)
        assert ecp.shape == (B // 10 + 1,) and float(ecp[0]) == 0.0 and float(ecp[-1]) == pytest.approx(1.0)
        dev[case] = (float((ecp - alpha).abs().max()), float(check_tarp(ecp, alpha)[1]))
    assert dev["calibrated"][0] < 0.05 and dev["calibrated"][1] > 0.05, dev   # ECP ≈ alpha
    assert dev["shifted"][0] > 0.1 and dev["overconfident"][0] > 0.2, dev      # measured 0.17, 0.37
    assert dev["overconfident"][1] < 0.01, dev
    with pytest.raises(ValueError, match="expected samples"):
        diagnostics.tarp(draws[0], th, ref)


def test_ppc_and_embedding_distance_flag_misfits():
    rng = np.random.default_rng(2)
    mu = np.tile(np.linspace(20, 2, 100), (200, 1)) * rng.uniform(0.97, 1.03, (200, 1))
    ok = diagnostics.ppc_cstat(rng.poisson(mu[0]), mu, rng)
    assert ok["p_value"] > 0.05
    bad_data = rng.poisson(mu[0] * np.where(np.arange(100) < 50, 1.6, 0.5))
    bad = diagnostics.ppc_cstat(bad_data, mu, rng)
    assert bad["p_value"] < 0.01 and bad["cstat_obs_median"] > bad["cstat_rep_90"][1]
    ref = {"emb_mean": np.zeros(3), "emb_precision": np.eye(3),
           "d2_quantiles": np.array([2.37, 11.3, 16.3])}
    assert not diagnostics.embedding_distance(np.array([1.0, -1.0, 0.5]), ref)["outlier"]
    far = diagnostics.embedding_distance(np.array([5.0, 0.0, 0.0]), ref)
    assert far["outlier"] and far["d2"] == pytest.approx(25.0)


# -- training, saving, loading ------------------------------------------------------------------

@pytest.fixture(scope="module")
def toy_posterior(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy")
    write_toy_dataset(d / "toy.h5", n=3000)
    summary = train(str(d / "toy.h5"), settings(**{"training.max_epochs": 12}), str(d / "post"),
                    quiet=True, log=lambda *a: None)
    return d, summary


def test_training_learns_and_is_calibrated(toy_posterior):
    d, summary = toy_posterior
    assert summary["epochs"] == 12 and summary["best_epoch"] >= 8
    hist = json.loads((d / "post" / "training.json").read_text())["history"]
    assert hist[-1]["val_loss"] < hist[0]["val_loss"] - 0.5
    # fresh spectra: the posterior mean recovers both parameters
    prior = toy_prior()
    rng = np.random.default_rng(99)
    th = prior.sample(300, rng)
    e = np.linspace(0.5, 8.0, 32)
    x = rng.poisson(th[:, 1:2] * 40.0 * e[None] ** (-th[:, 0:1]))
    post = saving.load_posterior(d / "post")
    s = post.model.sample(300, torch.as_tensor(x, dtype=torch.float32)).numpy()
    rec = diagnostics.recovery(s, th, [False, True])
    assert rec["r2"][0] > 0.8 and rec["r2"][1] > 0.8
    err = diagnostics.max_coverage_error(diagnostics.ranks_from_samples(s, th), 300)
    assert np.all(err < 0.15)
    cal = summary["validation_calibration"]["max_coverage_error"]
    assert set(cal) == {"PhoIndex", "norm"}


def test_saved_posterior_reloads_exactly_and_records_inputs(toy_posterior):
    d, summary = toy_posterior
    cfg = json.loads((d / "post" / "config.json").read_text())
    assert cfg["parameters"] == ["PhoIndex", "norm"] and cfg["log"] == [False, True]
    assert cfg["channels"] == [1, 32] and cfg["n_channels"] == 32
    assert cfg["training"]["dataset_sha256"] and cfg["provenance"]["seed"] == 1
    assert cfg["versions"]["torch"] == torch.__version__
    a = saving.load_posterior(d / "post").model
    b = saving.load_posterior(d / "post").model
    th = torch.tensor([[2.0, 1.0], [1.5, 3.0]])
    x = torch.poisson(torch.full((2, 32), 5.0))
    with torch.no_grad():
        assert torch.equal(a.log_prob(th, x), b.log_prob(th, x))
    assert not (d / "post" / "checkpoint").exists()
    # nothing in the directory is a pickle
    for f in (d / "post").iterdir():
        assert not f.read_bytes()[:2] == b"\x80\x04"


def test_corrupt_or_foreign_posterior_directories_raise_one_line_errors(toy_posterior, tmp_path):
    import shutil

    d, _ = toy_posterior
    bad = tmp_path / "bad"
    shutil.copytree(d / "post", bad)
    w = bad / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match="sha256"):
        saving.load_posterior(bad)
    w.write_bytes(b"not a safetensors file")
    with pytest.raises(FileFormatError, match="corrupt safetensors"):
        saving.load_posterior(bad, verify=False)
    (bad / "config.json").write_text("{ truncated")
    with pytest.raises(FileFormatError, match="unreadable JSON"):
        saving.load_posterior(bad)
    (bad / "config.json").unlink()
    with pytest.raises(FileFormatError, match="missing config.json"):
        saving.load_posterior(bad)
    with pytest.raises(FileFormatError, match="not a directory"):
        saving.load_posterior(tmp_path / "nowhere")


def test_resume_continues_and_refuses_other_settings(tmp_path):
    write_toy_dataset(tmp_path / "toy.h5", n=600)
    # streamed from the file in blocks of 100 rows (no in-memory cache)
    s = settings(**{"training.max_epochs": 2, "data.cache_mb": 0, "data.block_size": 100})
    train(str(tmp_path / "toy.h5"), s, str(tmp_path / "p"), quiet=True, keep_checkpoint=True)
    assert (tmp_path / "p" / "checkpoint" / "state.safetensors").exists()
    with pytest.raises(ConfigError, match="already holds"):
        train(str(tmp_path / "toy.h5"), s, str(tmp_path / "p"), quiet=True)
    s3 = settings(**{"training.max_epochs": 3, "data.cache_mb": 0, "data.block_size": 100})
    with pytest.raises(ConfigError, match="another dataset or other settings"):
        train(str(tmp_path / "toy.h5"), {**s3, "training": {**s3["training"], "learning_rate": 1e-2}},
              str(tmp_path / "p"), resume=True, quiet=True)
    # same settings apart from the epoch budget: the fingerprint ignores max_epochs
    out = train(str(tmp_path / "toy.h5"), s3, str(tmp_path / "p"), resume=True, quiet=True,
                log=lambda *a: None)
    hist = json.loads((tmp_path / "p" / "training.json").read_text())["history"]
    assert out["epochs"] == 3 and [h["epoch"] for h in hist] == [1, 2, 3]


def test_bad_training_inputs(tmp_path):
    with pytest.raises(FileFormatError, match="file not found"):
        train(str(tmp_path / "none.h5"), settings(), str(tmp_path / "p"), quiet=True)
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f["theta"] = np.zeros((5, 2), "f4")
    with pytest.raises(FileFormatError, match="counts"):
        train(str(tmp_path / "empty.h5"), settings(), str(tmp_path / "p"), quiet=True)
    (tmp_path / "t.toml").write_text("[training]\nbatch_size = 0\n")
    with pytest.raises(ConfigError, match="batch_size"):
        load_settings(str(tmp_path / "t.toml"))
    (tmp_path / "t.toml").write_text("[embedding]\ntype = 'transformer'\n")
    with pytest.raises(ConfigError, match="embedding.type"):
        load_settings(str(tmp_path / "t.toml"))


def test_streamed_batches_cover_every_training_row_once(tmp_path):
    from simxray.inference.npe import TrainingData

    write_toy_dataset(tmp_path / "toy.h5", n=500)
    data = TrainingData(str(tmp_path / "toy.h5"), validation_fraction=0.2, block=64, cache_mb=0)
    assert data.train_rows == (0, 400) and data.val_rows == (400, 500) and not data.cached
    g = torch.Generator().manual_seed(0)
    seen = torch.cat([th for th, _ in data.batches(data.train_rows, 50, g)])
    with h5py.File(tmp_path / "toy.h5") as f:
        ref = torch.as_tensor(f["theta"][:400])
    assert seen.shape == ref.shape
    assert torch.equal(torch.sort(seen[:, 0]).values, torch.sort(ref[:, 0]).values)
    assert not torch.equal(seen, ref)            # shuffled
    # fresh noise: counts redrawn from mu each epoch, with the right mean
    _, x1 = next(data.batches(data.train_rows, 400, torch.Generator().manual_seed(1), True))
    _, x2 = next(data.batches(data.train_rows, 400, torch.Generator().manual_seed(2), True))
    assert not torch.equal(x1, x2)
    data.close()


def test_array_trainer_learns_a_poisson_posterior(tmp_path):
    """``NPE(prior).append(theta, x).train()`` (issue 13) on a 1-parameter Poisson problem:
    x_c ~ Poisson(a * s_c) over 16 channels.  Against the exact grid posterior for a fresh
    observation: mean within 0.25 sd, sd within 25 %."""
    from simxray.inference.npe import NPE
    from simxray.simulator.prior import Dist, Prior

    rng = np.random.default_rng(0)
    shape = np.linspace(5.0, 20.0, 16)
    prior = Prior([Dist("a", "uniform", 0.5, 2.0)])
    theta = prior.sample(3000, rng)
    x = rng.poisson(theta * shape)
    settings = {"embedding.type": "mlp", "embedding.features": 8, "embedding.hidden": 32,
                "embedding.rebin": 1, "flow.transforms": 2, "training.max_epochs": 40,
                "training.batch_size": 128, "training.seed": 1}
    trainer = NPE(prior, settings).append(theta[:1500], x[:1500]).append(theta[1500:], x[1500:])
    assert trainer.n_simulations == 3000
    post = trainer.train(tmp_path / "post")
    assert post.names == ["a"] and (tmp_path / "post" / "config.json").is_file()
    x_obs = rng.poisson(1.3 * shape)
    s = post.sample(4000, x_obs, seed=0)[:, 0]
    g = np.linspace(0.5, 2.0, 3001)
    ll = (x_obs[None] * np.log(g[:, None] * shape) - g[:, None] * shape).sum(1)
    w = np.exp(ll - ll.max())
    w /= w.sum()
    m = (w * g).sum()
    sd = np.sqrt((w * (g - m) ** 2).sum())
    assert abs(s.mean() - m) < 0.25 * sd
    assert s.std() == pytest.approx(sd, rel=0.25)
    with pytest.raises(Exception, match="theta"):
        NPE(prior).append(np.zeros((3, 2)), np.zeros((3, 16)))
