"""PPAD event encoder: quadrature, loss, training, encoding, persistence, CLI, features."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from simxray.cli import main
from simxray.errors import FileFormatError
from simxray.events.baselines import bayesian_blocks_rate, rate_log_likelihood, thin
from simxray.events.eventfile import EventList, write_event_dataset, write_events
from simxray.events.features import (
    AnomalyScorer,
    PPADEmbedding,
    classification_scores,
    decoded_summaries,
)
from simxray.events.ppad import (
    PERIODOGRAM_FREQS,
    PPAD,
    EncodeResult,
    PPADConfig,
    PPADField,
    _GridTerms,
    binned_periodogram,
    binned_summary,
    collate,
    default_model_dir,
    grid_batch,
    grid_loss,
    gti_quadrature,
    head_code,
    head_frequency,
    period_search,
    prepare,
    shifted_gti_quadrature,
    source_loss,
    summary_dim,
    train_ppad,
)
from simxray.events.simulate import random_source, simulate_population

torch.set_num_threads(1)

TINY = PPADConfig(latent_dim=8, hidden=32, n_blocks=1, n_basis=24, branch_hidden=48, n_freq=8, max_freq=16.0,
                  grid=128, quad_sub=24, init_bins=16, max_events=512)


def _flare_or_constant(n: int, seed: int) -> tuple[list[EventList], np.ndarray]:
    rng = np.random.default_rng(seed)
    evs, is_flare = [], []
    for i in range(n):
        flare = i % 2 == 1
        kw = dict(t0=rng.uniform(0.4, 0.6), rise=0.01, decay=0.08, amplitude=8.0) if flare else {}
        src = random_source(rng, "flare" if flare else "constant", n_expected=2500.0, gap_prob=0.5,
                            spectral_change=False, **kw)
        ev = src.sample(rng)
        ev.name = f"s{i}"
        evs.append(ev)
        is_flare.append(flare)
    return evs, np.array(is_flare)


@pytest.fixture(scope="module")
def tiny():
    evs, is_flare = _flare_or_constant(40, seed=1)
    model, z, hist = train_ppad(evs, TINY, steps=250, batch_size=16, lr=5e-3, seed=0, init_steps=200,
                                device="cpu")
    return model, evs, is_flare, hist


def test_quadrature_exact_over_gtis_with_gaps():
    gti = np.array([[0.0, 0.31], [0.4, 0.42], [0.5, 1.0]])
    f = lambda t: 1 + 3 * t ** 3 - 2 * t ** 7                       # noqa: E731 degree 7: exact for order 4
    F = lambda t: t + 0.75 * t ** 4 - 0.25 * t ** 8                 # noqa: E731
    exact = sum(F(b) - F(a) for a, b in gti) / np.sum(gti[:, 1] - gti[:, 0])
    for nodes, w in (gti_quadrature(gti, 10, 4), shifted_gti_quadrature(gti, 10, 4, 0.37)):
        assert w.sum() == pytest.approx(1.0)
        assert np.all(nodes[(nodes > 0.31) & (nodes < 0.4)] == []) and not np.any((nodes > 0.42) & (nodes < 0.5))
        assert (w * f(nodes)).sum() == pytest.approx(exact, rel=1e-12)


def test_grid_loss_matches_exact_loglike():
    torch.manual_seed(0)
    evs, _ = _flare_or_constant(4, seed=3)
    cfg = PPADConfig(**{**TINY.__dict__, "lambda_tv": 0.0, "sigma_z": 1e6, "grid": 1024, "quad_sub": 256})
    model = PPAD(cfg, device="cpu")
    items = [prepare(e, cfg) for e in evs]
    z = torch.randn(4, cfg.latent_dim)
    with torch.no_grad():
        loss = source_loss(model.field, z, collate(items, None), cfg).numpy()
    enc = EncodeResult(z.numpy(), np.array([p.scale for p in items]), loss, np.array([p.tstart for p in items]),
                       np.array([p.span for p in items]), np.array([p.n_events for p in items]))
    ll = model.log_likelihood(enc, evs)
    # ll/N = log(N/E) - loss (without TV and prior)
    np.testing.assert_allclose(ll, np.log(enc.scale) - loss, atol=2e-3)


def _grid_table(fld: PPADField, G: int) -> torch.Tensor:
    """φ on the nodes (g - 1)/G, g = 0..G+1 (any G, same network)."""
    with torch.no_grad():
        return fld.basis((torch.arange(G + 2, dtype=torch.float32) - 1) / G)


def test_grid_batch_counts_and_gti_weights():
    cfg = PPADConfig(**{**TINY.__dict__, "grid": 8})
    ev = EventList(np.array([0.0, 10.0, 55.0, 99.0, 100.0]), np.array([0.6, 0.6, 3.0, 6.0, 6.0]),
                   np.array([[0.0, 20.0], [50.0, 100.0]]))
    p = prepare(ev, cfg)
    gb = grid_batch([p], cfg)
    # event at τ = 0.55 sits 0.4 of the way from node τ=0.5 (index 5) to τ=0.625 (index 6)
    b = int(np.searchsorted(cfg.band_edges, 3.0, side="right") - 1)
    np.testing.assert_allclose(gb.counts[0, b, 5:7].numpy(), [0.6, 0.4], atol=1e-6)
    np.testing.assert_allclose(gb.counts.sum().item(), 5.0)
    # ∫_GTI hat_g dτ / good time: ρ = a + bτ (linear, so exact) averages to a + b·<τ>_GTI
    w = gb.weight[0].double().numpy()
    nodes = (np.arange(cfg.grid + 2) - 1.0) / cfg.grid
    mean_tau = (0.2 ** 2 / 2 + (1 - 0.5 ** 2) / 2) / 0.7
    assert w.sum() == pytest.approx(1.0, abs=1e-6)
    assert (w * (2.0 + 3.0 * nodes)).sum() == pytest.approx(2.0 + 3.0 * mean_tau, abs=1e-6)
    # intervals entirely inside the gap (0.25-0.5) carry no total variation
    np.testing.assert_array_equal(gb.pair[0].numpy(), [0, 1, 1, 0, 0, 1, 1, 1, 1])


def test_grid_terms_gradcheck():
    g = torch.Generator().manual_seed(0)
    s = (2 * torch.randn(2, 3, 7, generator=g, dtype=torch.float64)).requires_grad_(True)
    with torch.no_grad():
        s[0, 1, 2] = -30.0                                                     # log-softplus underflow branch
    counts = torch.rand(2, 3, 7, generator=g, dtype=torch.float64) * 3
    weight = torch.rand(2, 7, generator=g, dtype=torch.float64)
    weight /= weight.sum(1, keepdim=True)
    pair = torch.tensor([[1, 1, 0, 1, 1, 1], [1, 1, 1, 1, 1, 0]], dtype=torch.float64)
    inv_n = torch.tensor([0.1, 0.25], dtype=torch.float64)
    fn = lambda x: _GridTerms.apply(x, counts, weight, pair, inv_n, 0.7)      # noqa: E731
    assert torch.autograd.gradcheck(fn, (s,), eps=1e-6, atol=1e-7)
    # forward equals the plain expression
    rho = torch.nn.functional.softplus(s.detach())
    log_rho = torch.where(s.detach() < -20, s.detach(), torch.log(rho))
    ref = (-(counts * log_rho).sum((1, 2)) * inv_n + (rho.sum(1) * weight).sum(1)
           + 0.7 * inv_n * ((rho[:, :, 1:] - rho[:, :, :-1]).abs().sum(1) * pair).sum(1))
    torch.testing.assert_close(fn(s.detach()), ref)


def test_grid_loss_converges_to_event_loss():
    torch.manual_seed(1)
    evs, _ = _flare_or_constant(4, seed=4)
    cfg = PPADConfig(**{**TINY.__dict__, "lambda_tv": 0.0, "quad_sub": 512, "quad_order": 8})
    model = PPAD(cfg, device="cpu")
    with torch.no_grad():
        model.field.branch[-1].weight.mul_(300.0)         # a smooth rate that varies by a factor of 2-5
    items = [prepare(e, cfg) for e in evs]
    z = torch.randn(4, cfg.latent_dim)
    rho = model.rates(z.numpy(), np.linspace(0, 1, 200)).sum(-1)
    assert np.all(rho.max(1) / rho.min(1) > 1.8)
    with torch.no_grad():
        exact = source_loss(model.field, z, collate(items, None), cfg, _grid_table(model.field, 16384)).numpy()
        err = {}
        for G in (64, 256, 1024):
            c = PPADConfig(**{**cfg.__dict__, "grid": G})
            lg = grid_loss(model.field, z, grid_batch(items, c), c, _grid_table(model.field, G)).numpy()
            err[G] = np.abs(lg - exact).max()
    # O(spacing²): within a C/G² bound at every G, and 16x finer is > 50x closer (O(spacing) gives 16x)
    assert all(err[G] <= 5e-3 * (64 / G) ** 2 for G in err), err
    assert err[1024] < err[64] / 50, err
    with pytest.raises(ValueError, match="nodes"):
        grid_loss(model.field, z, grid_batch(items, cfg), cfg, _grid_table(model.field, 64))


def test_grid_loss_gradient_matches_autograd():
    torch.manual_seed(1)
    evs, _ = _flare_or_constant(4, seed=4)
    model = PPAD(TINY, device="cpu")
    items = [prepare(e, TINY) for e in evs]
    gb = grid_batch(items, TINY)
    table = model.field.grid_basis().detach()
    z = torch.randn(4, TINY.latent_dim, requires_grad=True)
    lg = grid_loss(model.field, z, gb, TINY, table)
    lg.sum().backward()
    g_fused = z.grad.clone()
    z.grad = None
    # the same terms through plain autograd
    A, c = model.field.coeffs(z)
    s = (A.transpose(1, 2).reshape(4 * TINY.n_bands, -1) @ table.T).view(4, TINY.n_bands, -1) + c[:, :, None]
    rho = torch.nn.functional.softplus(s)
    n = gb.n_events
    ref = (-(gb.counts * torch.log(rho)).sum((1, 2)) / n + (rho.sum(1) * gb.weight).sum(1)
           + TINY.lambda_tv * ((rho[:, :, 1:] - rho[:, :, :-1]).abs().sum(1) * gb.pair).sum(1) / n
           + (z ** 2).sum(1) / 2 / TINY.sigma_z ** 2 / n)
    torch.testing.assert_close(lg, ref, rtol=1e-5, atol=1e-6)
    ref.sum().backward()
    torch.testing.assert_close(g_fused, z.grad, rtol=1e-4, atol=1e-6)


def test_linear_fourier_skip_field():
    cfg = PPADConfig(**{**TINY.__dict__, "n_freq": 12, "max_freq": 6.0, "freq_spacing": "linear",
                        "fourier_skip": True})
    fld = PPADField(cfg)
    np.testing.assert_allclose(fld.freqs.numpy() / (2 * np.pi), np.linspace(0.5, 6.0, 12), rtol=1e-6)
    # with the MLP path silenced, the basis is exactly a linear map of the Fourier features
    with torch.no_grad():
        fld.basis_out.weight.zero_()
        fld.basis_out.bias.zero_()
        tau = torch.linspace(0, 1, 7)
        arg = tau[:, None] * fld.freqs
        gamma = torch.cat([torch.sin(arg), torch.cos(arg)], -1)
        torch.testing.assert_close(fld.basis(tau), gamma @ fld.skip.weight.T)
    with pytest.raises(ValueError, match="freq_spacing"):
        PPADField(PPADConfig(freq_spacing="log"))


def test_training_learns_flares(tiny):
    model, evs, is_flare, hist = tiny
    assert hist["loss"][-1][1] < hist["loss"][0][1] - 0.05
    enc = model.encode(evs, steps=30)
    # decoded light curves: flares peak in the middle, constants are flat
    rho = model.rates(enc.z, np.array([0.2, 0.5, 0.9])).sum(-1)          # (S, 3)
    ratio = rho[:, 1] / rho[:, [0, 2]].mean(1)
    assert np.median(ratio[is_flare]) > 2.5
    assert np.all(np.abs(np.log(ratio[~is_flare])) < np.log(1.6))
    # the latents separate the two kinds: cross-validated logistic regression on z
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    acc = cross_val_score(LogisticRegression(C=1.0, max_iter=2000), enc.z, is_flare, cv=5).mean()
    assert acc >= 0.85
    # the model explains a flare better than the best constant rate (per event, nats)
    i = int(np.flatnonzero(is_flare)[0])
    n = enc.n_events[i]
    ll_const = np.log(enc.scale[i]) - 1 + np.sum([c / n * np.log(c / n) for c in
                                                  np.bincount(prepare(evs[i], model.cfg).band) if c])
    assert model.log_likelihood(enc.subset([i]), [evs[i]])[0] > ll_const + 0.1


def test_light_curve_normalisation(tiny):
    model, evs, _, _ = tiny
    enc = model.encode(evs[:3], steps=20)
    for i, ev in enumerate(evs[:3]):
        edges = np.linspace(ev.tstart, ev.tstop, 65)
        lc = model.binned_light_curve(enc, i, edges)                   # counts/s per band
        from simxray.events.baselines import gti_overlap
        expected = (lc.sum(1) * gti_overlap(edges, ev.gti)).sum()
        assert expected == pytest.approx(enc.n_events[i], rel=0.05)


def test_encode_deterministic_batch_independent_and_roundtrip(tiny, tmp_path):
    model, evs, _, _ = tiny
    a = model.encode(evs[:12], steps=15, batch_size=5)
    b = model.encode(evs[:12], steps=15, batch_size=12)
    np.testing.assert_allclose(a.z, b.z, atol=1e-4)
    torch.set_num_threads(2)
    try:
        w = model.encode(evs[:12], steps=15, batch_size=5, workers=2)      # 2 worker threads, 1 torch thread each
        assert torch.get_num_threads() == 2                                 # restored
    finally:
        torch.set_num_threads(1)
    np.testing.assert_allclose(w.z, a.z, atol=1e-5)
    with pytest.raises(ValueError, match="method"):
        model.encode(evs[:2], method="exact")
    # grid (default) and event-level encoders agree
    e = model.encode(evs[:12], steps=15, method="events", max_events=10 ** 6)
    assert np.sqrt(np.mean((e.z - b.z) ** 2)) < 0.1 * np.sqrt(np.mean(b.z ** 2))
    np.testing.assert_allclose(e.loss, b.loss, atol=0.01)
    model.save(tmp_path / "m", extra={"provenance": {"seed": 0}})
    doc = json.loads((tmp_path / "m" / "config.json").read_text())
    assert doc["format"] == "simxray-ppad" and doc["format_version"] == 2 and doc["config"]["latent_dim"] == 8
    back = PPAD.load(tmp_path / "m", device="cpu")
    c = back.encode(evs[:12], steps=15, batch_size=12)
    np.testing.assert_array_equal(b.z, c.z)


def test_empty_and_bad_inputs(tiny, tmp_path):
    model, evs, _, _ = tiny
    empty = EventList(np.zeros(0), np.zeros(0), np.array([[0.0, 100.0]]), name="empty.fits")
    with pytest.raises(FileFormatError, match="no events in 0.5-7 keV"):
        model.encode([empty])
    model.save(tmp_path / "m")
    write_events(tmp_path / "empty.fits", empty)
    rc = main(["encode", str(tmp_path / "empty.fits"), "--model", str(tmp_path / "m"), "--out",
               str(tmp_path / "z.h5"), "--quiet"])
    assert rc == 2 and not (tmp_path / "z.h5").exists()
    (tmp_path / "bad").mkdir()
    with pytest.raises(FileFormatError, match="config.json"):
        PPAD.load(tmp_path / "bad")


def test_encode_rejects_a_corrupt_encoder(tiny, tmp_path, capsys):
    """Bytes flipped in an encoder's weights.safetensors (the shipped one, copied): the
    sha256 recorded in config.json catches it; ``simxray encode`` prints one line naming
    the file and exits 2, and so does a config.json of another kind or a newer version."""
    import shutil

    from simxray.events.ppad import default_model_dir

    _, evs, _, _ = tiny
    write_events(tmp_path / "src.fits", evs[0])
    d = tmp_path / "enc"
    shutil.copytree(default_model_dir(), d)
    assert PPAD.load(d).cfg.latent_dim > 0                       # the copy itself is intact
    w = d / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match="sha256 differs"):
        PPAD.load(d)
    capsys.readouterr()
    args = ["encode", str(tmp_path / "src.fits"), "--model", str(d), "--out", str(tmp_path / "z.h5"), "--quiet"]
    assert main(args) == 2 and not (tmp_path / "z.h5").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "weights.safetensors" in err[0] and "sha256 differs" in err[0], err
    shutil.copy(default_model_dir() / "weights.safetensors", w)
    doc = json.loads((d / "config.json").read_text())
    for key, value, words in (("format_version", 99, "newer than this simxray reads"),
                              ("format", "simxray-emulator", "expected 'simxray-ppad'")):
        (d / "config.json").write_text(json.dumps({**doc, key: value}))
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "config.json" in err[0] and words in err[0], err


def test_cli_train_and_encode(tmp_path, capsys):
    evs, lab = simulate_population(12, seed=9)
    ds = write_event_dataset(tmp_path / "d.h5", evs, labels=lab)
    out = tmp_path / "model"
    rc = main(["train-ppad", str(ds), "--out", str(out), "--steps", "20", "--init-steps", "10", "--batch-size", "6",
               "--latent-dim", "6", "--quiet"])
    assert rc == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["provenance"]["seed"] == 0 and cfg["provenance"]["inputs"][0]["sha256"]
    assert "z" in cfg["reference"] and cfg["config"]["periodic_head"]
    assert main(["train-ppad", "--simulate", "6", "--out", str(tmp_path / "bad"), "--latent-dim", "3",
                 "--quiet"]) == 2
    assert "--latent-dim: must be >= 4 with the periodic head" in capsys.readouterr().err
    rc = main(["encode", str(ds), "--model", str(out), "--out", str(tmp_path / "z.h5"), "--anomaly", "--k", "3",
               "--light-curves", "8", "--steps", "5", "--quiet"])
    assert rc == 0
    with h5py.File(tmp_path / "z.h5") as f:
        assert f["z"].shape == (12, 6)
        assert f["light_curve"].shape == (12, 8, 9)
        assert np.all((f["anomaly_percentile"][:] >= 0) & (f["anomaly_percentile"][:] <= 1))
        np.testing.assert_allclose(f["n_events"][:], [np.sum((e.energy >= 0.5) & (e.energy < 7)) for e in evs])
        assert json.loads(f.attrs["provenance"])["command"] == "encode"
        assert list(f["labels/kind"][:].astype(str)) == list(lab["kind"])
    rc = main(["encode", str(ds), "--model", str(out), "--out", str(tmp_path / "e.h5"), "--steps", "5",
               "--method", "events", "--quiet"])
    assert rc == 0
    with h5py.File(tmp_path / "e.h5") as f:
        assert json.loads(f.attrs["provenance"])["method"] == "events"
        np.testing.assert_allclose(f["z"][:], PPAD.load(out, device="cpu").encode(evs, steps=5, method="events").z,
                                   atol=1e-5)


def test_anomaly_scorer_and_scores():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(500, 5))
    sc = AnomalyScorer(ref, k=5)
    s, pct = sc.score(np.vstack([np.zeros(5), np.full(5, 6.0)]))
    assert pct[0] < 0.3 and pct[1] > 0.99 and s[1] > 3 * s[0]
    r = classification_scores(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), ["a", "b"])
    assert r["accuracy"] == 0.75 and r["f1"]["a"] == pytest.approx(2 / 3) and r["f1"]["b"] == pytest.approx(0.8)


def test_bayesian_blocks_baseline():
    rng = np.random.default_rng(5)
    src = random_source(rng, "eclipse", n_expected=3000.0, period=0.4, phase=0.2, duration=0.1, ingress=0.01,
                        depth=1.0, gap_prob=0.0)
    a, b = thin(src.sample(rng), rng)
    bands = PPADConfig().band_edges
    bb = bayesian_blocks_rate(a, bands)
    assert len(bb.edges) >= 5                                          # ingress/egress found
    flat = bayesian_blocks_rate(a, bands, p0=1e-300)                   # effectively one block
    assert rate_log_likelihood(bb, b) > rate_log_likelihood(flat, b) + 0.05
    blk = bayesian_blocks_rate(a, bands, spectrum="block")             # reusing the edges changes nothing
    np.testing.assert_array_equal(bayesian_blocks_rate(a, bands, spectrum="block", edges=bb.edges).rates, blk.rates)
    # total rate integrates to the fitted counts
    from simxray.events.baselines import gti_overlap
    assert (bb.rates.sum(1) * gti_overlap(bb.edges, a.gti)).sum() == pytest.approx(
        np.sum((a.energy >= 0.5) & (a.energy < 7)), rel=1e-9)


def test_embedding_and_decoded_summaries(tiny):
    model, evs, _, _ = tiny
    emb = PPADEmbedding(model, n_out=5)
    x = emb.encode(evs[:4], steps=5)
    assert x.shape == (4, 8) and emb(x).shape == (4, 5)
    assert not any(p is q for p in emb.parameters() for q in model.field.parameters())
    d = decoded_summaries(model, x.numpy())
    np.testing.assert_allclose(d[:, :9].sum(1), 1.0, rtol=1e-5)
    assert d.shape == (4, 9 + 65) and np.all(d[:, 12:19] >= 0)
    assert np.all(np.abs(d[:, 9:12]) <= 1)


def test_shipped_model_small_benchmark():
    from simxray.events.features import (
        feature_matrix,
        fit_classifier,
        fit_regressor,
        regression_scores,
    )

    d = default_model_dir()
    assert d.name == "ppad_default" and (d / "weights.safetensors").stat().st_size < 3_000_000
    prov = json.loads((d / "config.json").read_text())["provenance"]
    assert prov["script"] == "training/train_ppad.py" and prov["seed"] == 0 and prov["git_commit"]
    model = PPAD.load(device="cpu")
    assert model.reference["z"].shape == (prov["n_sources"], model.cfg.latent_dim)
    evs, lab = simulate_population(180, seed=77)
    enc = model.encode(evs, steps=20)
    X = feature_matrix(model, enc.z)
    tr, te = np.arange(126), np.arange(126, 180)
    for key in ("hard_hm", "hard_ms", "hard_hs"):
        r2 = regression_scores(lab[key][te], fit_regressor(X[tr], lab[key][tr]).predict(X[te]))["r2"]
        assert r2 > 0.85, key
    acc = (fit_classifier(X[tr], lab["kind_id"][tr]).predict(X[te]) == lab["kind_id"][te]).mean()
    assert acc > 0.5


def test_amortised_training():
    evs, _ = _flare_or_constant(12, seed=6)
    model, z, hist = train_ppad(evs, TINY, steps=60, batch_size=6, lr=5e-3, seed=0, init_steps=0,
                                amortised=True, device="cpu")
    assert z.shape == (12, TINY.latent_dim) and model.init is not None
    assert hist["loss"][-1][1] < hist["loss"][0][1] - 0.02
    # without extra initialiser steps the initialiser is the jointly trained encoder E, and the
    # training latents are E(summary) + per-source offsets that stay small
    with torch.no_grad():
        e = model.init(torch.from_numpy(binned_summary([prepare(x, TINY) for x in evs], TINY))).numpy()
    assert np.sqrt(np.mean((z - e) ** 2)) < 0.5 * np.sqrt(np.mean(z ** 2))


def test_z2_periodograms():
    from simxray.events.baselines import z2_periodogram

    rng = np.random.default_rng(3)
    freqs = np.arange(1.0, 30.0, 0.25)
    per = random_source(rng, "periodic", n_expected=1500.0, period=1 / 15.3, amplitude=0.5, gap_prob=1.0)
    const = random_source(rng, "constant", n_expected=1500.0, gap_prob=1.0)
    ev = per.sample(rng)
    p = z2_periodogram(ev, freqs)
    assert p.max() > 50 and abs(freqs[p.argmax()] - 15.3) < 0.3
    c = np.array([z2_periodogram(const.sample(rng), freqs).mean() for _ in range(5)])
    assert 1.0 < c.mean() < 3.5                                             # ~chi2_2 under the null
    # the initialiser's binned version (512 bins, GTI-corrected) agrees
    cfg = PPADConfig(**{**TINY.__dict__, "init_periodogram": True})
    pb = np.expm1(binned_periodogram(prepare(ev, cfg)))
    assert abs(PERIODOGRAM_FREQS[pb.argmax()] - 15.3) <= 0.25 and pb.max() > 50
    cb = np.mean([np.expm1(binned_periodogram(prepare(const.sample(rng), cfg))).mean() for _ in range(5)])
    assert 1.0 < cb < 3.5
    assert summary_dim(cfg) == 4 * cfg.init_bins + cfg.n_bands + PERIODOGRAM_FREQS.size
    assert binned_summary([prepare(ev, cfg)], cfg).shape == (1, summary_dim(cfg))


def test_periodogram_initialiser_roundtrip(tmp_path):
    cfg = PPADConfig(**{**TINY.__dict__, "init_periodogram": True})
    evs, _ = _flare_or_constant(8, seed=8)
    model, _, _ = train_ppad(evs, cfg, steps=5, batch_size=4, seed=0, init_steps=5, device="cpu")
    model.save(tmp_path / "m")
    back = PPAD.load(tmp_path / "m", device="cpu")
    assert back.cfg.init_periodogram and back.init.net[0].in_features == summary_dim(cfg)
    np.testing.assert_array_equal(back.encode(evs, steps=3).z, model.encode(evs, steps=3).z)


def test_period_search_and_periodic_head(tmp_path):
    rng = np.random.default_rng(5)
    cfg = PPADConfig(**{**TINY.__dict__, "periodic_head": True})
    per = [random_source(rng, "periodic", n_expected=3000.0, period=1 / f, amplitude=0.6).sample(rng)
           for f in (4.3, 11.8, 17.37)]
    const = [random_source(rng, "constant", n_expected=3000.0).sample(rng) for _ in range(3)]
    z = period_search([prepare(e, cfg) for e in per + const])
    f = head_frequency(torch.from_numpy(z[:, :1])).numpy()[:, 0]
    np.testing.assert_allclose(f[:3], [4.3, 11.8, 17.37], atol=0.1)
    amp = np.hypot(z[:, 1], z[:, 2])
    assert np.all(np.abs(amp[:3] - 0.6) < 0.12) and np.all(amp[3:] < 0.15)
    np.testing.assert_allclose(head_code(f), z[:, 0], atol=1e-5)
    # the head adds g_b·(z1 cos 2πfτ + z2 sin 2πfτ) to S: exact rates = softplus(grid values + c) at the nodes
    model = PPAD(cfg, device="cpu")
    zz = torch.zeros(6, cfg.latent_dim)
    zz[:, :3] = torch.from_numpy(z)
    with torch.no_grad():
        table = model.field.grid_basis(0.3)
        S, c = model.field.grid_values(zz, table, 0.3)
        nodes = (torch.arange(cfg.grid + 2, dtype=torch.float32) - 0.7) / cfg.grid
        torch.testing.assert_close(model.field(nodes.expand(6, -1), zz), torch.nn.functional.softplus(
            S + c[:, :, None]).transpose(1, 2), rtol=1e-5, atol=1e-6)
        rho = model.field(torch.linspace(0, 1, 401).expand(6, -1), zz).sum(-1).numpy()
    assert np.all(rho[:3].max(1) / rho[:3].min(1) > 2.5)         # the head modulates
    # training and encoding keep z0 at the search value; save/load round trip
    model, zt, _ = train_ppad(per + const, cfg, steps=10, batch_size=3, seed=0, init_steps=5, device="cpu")
    np.testing.assert_array_equal(zt[:, 0], z[:, 0])
    enc = model.encode(per + const, steps=5)
    np.testing.assert_array_equal(enc.z[:, 0], z[:, 0])
    assert np.abs(enc.z[:, 1:3] - z[:, 1:3]).max() > 1e-4                     # z1, z2 are optimised
    model.save(tmp_path / "h")
    back = PPAD.load(tmp_path / "h", device="cpu")
    np.testing.assert_array_equal(back.encode(per + const, steps=5).z, enc.z)


def test_sbi_npe_with_frozen_encoder(tiny):
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import cross_val_score

    from simxray.events.sbi_demo import PRIOR_HIGH, PRIOR_LOW, train_flare_npe

    model = tiny[0]
    before = [p.detach().clone() for p in model.field.parameters()]
    posterior, emb, theta, x = train_flare_npe(model, n_sims=100, seed=3, max_epochs=3)
    assert x.shape == (100, model.cfg.latent_dim)
    # the frozen encoder's latents carry the flare amplitude (cross-validated R^2)
    r2 = cross_val_score(RidgeCV(alphas=np.logspace(-3, 2, 6)), x.numpy(), theta[:, 0].numpy(), cv=4).mean()
    assert r2 > 0.3
    s = posterior.sample((50,), x=x[0], show_progress_bars=False)
    assert s.shape == (50, 2)
    assert torch.all(s >= torch.tensor(PRIOR_LOW) - 1e-6) and torch.all(s <= torch.tensor(PRIOR_HIGH) + 1e-6)
    assert all(torch.equal(a, b) for a, b in zip(before, model.field.parameters(), strict=True))  # frozen


def _chandra_like(path, ev: EventList, *, gti: bool = True, energy: bool = True, shuffle: bool = True):
    """An evt2-like file: unsorted rows, CCD_ID column, one GTI extension per chip (CCD_ID keyword)."""
    from astropy.io import fits

    order = np.random.default_rng(0).permutation(ev.n_events) if shuffle else np.arange(ev.n_events)
    cols = [fits.Column("TIME", "D", unit="s", array=ev.time[order]),
            fits.Column("CCD_ID", "I", array=np.full(ev.n_events, 7, np.int16)),
            fits.Column("PI", "J", array=ev.pi[order])]
    if energy:
        cols.append(fits.Column("ENERGY", "E", unit="eV", array=(ev.energy[order] * 1e3).astype(np.float32)))
    hdus = [fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name="EVENTS")]
    hdus[1].header.update(TIMEDEL=3.24104, TSTART=ev.tstart, TSTOP=ev.tstop, OBJECT="SIM")
    if gti:
        for ccd, g in ((6, np.array([[ev.tstart, ev.tstart + 10.0]])), (7, ev.gti)):
            h = fits.BinTableHDU.from_columns([fits.Column("START", "D", array=g[:, 0]),
                                               fits.Column("STOP", "D", array=g[:, 1])], name="GTI")
            h.header["CCD_ID"] = ccd
            hdus.append(h)
    fits.HDUList(hdus).writeto(path)
    return path


def test_encode_cli_event_file_edge_cases(tiny, tmp_path, capsys):
    model, evs, _, _ = tiny
    model.reference = {"z": model.encode(evs, steps=10).z}
    model.save(tmp_path / "m")
    ev = evs[1]
    good = _chandra_like(tmp_path / "acisf_evt2.fits", ev)
    args = ["--model", str(tmp_path / "m"), "--steps", "10", "--quiet"]
    assert main(["encode", str(good), "--out", str(tmp_path / "z.h5"), "--anomaly", "--k", "3", *args]) == 0
    from simxray.events.eventfile import read_events

    back = read_events(good)                                  # sorted on read, chip-7 GTIs only
    assert back.meta["sorted_on_read"] and back.meta["ccd_id"] == 7
    np.testing.assert_array_equal(back.gti, ev.gti)
    o1, o2 = np.lexsort((ev.energy, ev.time)), np.lexsort((back.energy, back.time))
    np.testing.assert_array_equal(back.time[o2], ev.time[o1])
    np.testing.assert_allclose(back.energy[o2], ev.energy[o1], rtol=1e-6)
    ref = model.encode([back], steps=10)
    assert ref.n_events[0] == np.sum((ev.energy >= 0.5) & (ev.energy < 7.0))
    with h5py.File(tmp_path / "z.h5") as f:
        np.testing.assert_allclose(f["z"][0], ref.z[0], atol=1e-4)
        assert f["n_events"][0] == ref.n_events[0] and f["scale"][0] == pytest.approx(ref.scale[0], rel=1e-6)
        assert 0 <= f["anomaly_percentile"][0] <= 1
    # no GTI: exit 2 with a one-line message, or TSTART/TSTOP with --gti-from-header
    nogti = _chandra_like(tmp_path / "nogti.fits", ev, gti=False)
    capsys.readouterr()
    assert main(["encode", str(nogti), "--out", str(tmp_path / "a.h5"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "no GTI extension" in err and len(err.splitlines()) == 1 and not (tmp_path / "a.h5").exists()
    assert main(["encode", str(nogti), "--out", str(tmp_path / "a.h5"), "--gti-from-header", *args]) == 0
    # neither ENERGY nor PI: exit 2
    from astropy.io import fits
    nopi = tmp_path / "nopi.fits"
    with fits.open(good) as h:
        h["EVENTS"] = fits.BinTableHDU.from_columns([h["EVENTS"].columns["TIME"]], name="EVENTS")
        h.writeto(nopi)
    capsys.readouterr()
    assert main(["encode", str(nopi), "--out", str(tmp_path / "b.h5"), *args]) == 2
    assert "neither an ENERGY nor a PI" in capsys.readouterr().err
    # PI only (no ENERGY): encodes from the PI channel centres
    pionly = _chandra_like(tmp_path / "pi.fits", ev, energy=False)
    assert main(["encode", str(pionly), "--out", str(tmp_path / "c.h5"), *args]) == 0
