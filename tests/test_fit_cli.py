"""``simxray train / fit / validate`` end to end on the embedded NGC 4258 setup (tiny networks)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from simxray.cli import main
from simxray.datasets import DATA_DIR, default_spectrum_path

REPO = Path(__file__).resolve().parents[1]
SPECTRUM = default_spectrum_path()

TINY_TOML = """
[embedding]
type = "mlp"
transform = "anscombe"
features = 8
hidden = 32
rebin = 8
[flow]
transforms = 2
hidden_features = [32, 32]
passes = 2
[training]
batch_size = 128
learning_rate = 3e-3
max_epochs = 3
seed = 5
[data]
validation_fraction = 0.2
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small acis_powerlaw dataset and a tiny posterior trained on it by the CLI."""
    from simxray.simulator.campaign import run_campaign
    from simxray.simulator.config import load_config

    d = tmp_path_factory.mktemp("fitcli")
    run_campaign(load_config(REPO / "simulations" / "acis_powerlaw.toml"), 600, d / "sims.h5",
                 seed=3, quiet=True)
    (d / "tiny.toml").write_text(TINY_TOML)
    rc = main(["train", str(d / "sims.h5"), "--config", str(d / "tiny.toml"), "--out",
               str(d / "post"), "--quiet"])
    assert rc == 0
    return d


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_train_writes_posterior_with_response_identity(tiny):
    cfg = json.loads((tiny / "post" / "config.json").read_text())
    assert cfg["parameters"] == ["nH", "PhoIndex", "norm", "pileup.alpha", "pileup.f"]
    assert cfg["channels"] == [35, 548] and cfg["n_channels"] == 514
    assert cfg["spectrum_channels"] == 1024
    assert cfg["response"]["rmf"]["sha256"] and cfg["response"]["arf"]["sha256"]
    assert cfg["frame_time"] == pytest.approx(3.24104, rel=1e-4)
    assert cfg["exposure"] > 2e4 and cfg["model"] == "tbabs*powerlaw"
    assert cfg["embedding"]["type"] == "mlp" and cfg["flow"]["passes"] == 2


def test_fit_writes_samples_summary_plots(tiny, capsys):
    out = tiny / "fit"
    rc, stdout, err = run_cli(capsys, "fit", SPECTRUM, "--posterior", tiny / "post", "--samples",
                              3000, "--ppc-draws", 40, "--out", out)
    assert rc == 0, err
    assert "pileup fraction" in stdout and "PhoIndex" in stdout
    for name in ("samples.h5", "posterior.nc", "summary.json", "corner.png", "spectrum.png"):
        assert (out / name).stat().st_size > 1000, name
    s = json.loads((out / "summary.json").read_text())
    cfg = json.loads((tiny / "post" / "config.json").read_text())
    assert s["total_counts"] == pytest.approx(2991, abs=1)     # 0.5-8 keV of 3325
    for i, name in enumerate(cfg["parameters"]):
        p = s["parameters"][name]
        assert p["ci90"][0] <= p["ci68"][0] <= p["median"] <= p["ci68"][1] <= p["ci90"][1]
        assert cfg["low"][i] <= p["ci90"][0] and p["ci90"][1] <= cfg["high"][i]
    pf = s["pileup_fraction"]
    assert 0.0 <= pf["ci90"][0] <= pf["median"] <= pf["ci90"][1] <= 1.0
    assert 0.0 <= s["checks"]["ppc"]["p_value"] <= 1.0 and s["checks"]["ppc"]["n_draws"] == 40
    assert s["method"] == "npe" and s["setup_from_network"] is True
    assert s["provenance"]["inputs"]["posterior_sha256"] == cfg["weights_sha256"]
    with h5py.File(out / "samples.h5", "r") as f:
        smp = f["samples"][:]
        assert smp.shape == (3000, 5)
        assert [str(n) for n in f["samples"].attrs["names"]] == [
            n.replace(".", "_") for n in cfg["parameters"]]
        assert np.median(smp[:, 1]) == pytest.approx(s["parameters"]["PhoIndex"]["median"])
    import arviz as az

    idata = az.from_netcdf(out / "posterior.nc")
    assert set(idata.posterior.data_vars) == {n.replace(".", "_") for n in cfg["parameters"]}
    assert idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"] == 2000
    assert float(idata.observed_data["counts"].sum()) == pytest.approx(2991, abs=1)
    assert idata.log_likelihood["counts"].shape[-1] == 514
    assert np.isfinite(az.loo(idata).elpd_loo)


def test_fit_is_reproducible_with_a_seed(tiny, capsys):
    a, b = tiny / "fa", tiny / "fb"
    for o in (a, b):
        assert run_cli(capsys, "fit", SPECTRUM, "--posterior", tiny / "post", "--samples", 500,
                       "--ppc-draws", 10, "--no-plots", "--out", o, "--quiet")[0] == 0
    with h5py.File(a / "samples.h5") as fa, h5py.File(b / "samples.h5") as fb:
        assert np.array_equal(fa["samples"][:], fb["samples"][:])


def _write_variant(dst: Path, counts=None, exposure=None, n_channels=None) -> Path:
    """A copy of the NGC 4258 spectrum with changed counts, exposure or channel count."""
    from astropy.io import fits

    for f in ("arf.fits", "rmf.fits", "background.pi"):
        if not (dst.parent / f).exists():
            shutil.copy(DATA_DIR / f, dst.parent / f)
    with fits.open(SPECTRUM) as h:
        h = fits.HDUList([hdu.copy() for hdu in h])
    tab = h["SPECTRUM"]
    if counts is not None:
        tab.data["COUNTS"][:] = counts
    if exposure is not None:
        tab.header["EXPOSURE"] = exposure
    if n_channels is not None:
        tab = fits.BinTableHDU(tab.data[:n_channels], header=tab.header, name="SPECTRUM")
        tab.header["DETCHANS"] = n_channels
        tab.header["TLMAX1"] = n_channels
        h[1] = tab
    h.writeto(dst, overwrite=True)
    return dst


@pytest.mark.parametrize("case,pattern", [
    ("zeros", "no counts"),
    ("exposure", "exposure 10000 s differs"),
    ("channels", "channel"),
    ("corrupt_weights", "weights.safetensors"),
    ("corrupt_config", "config.json"),
    ("missing", "not a directory"),
])
def test_fit_refuses_bad_input_with_one_line(tiny, tmp_path, capsys, case, pattern):
    spec, post = SPECTRUM, tiny / "post"
    if case == "zeros":
        spec = _write_variant(tmp_path / "zero.pi", counts=0)
    elif case == "exposure":
        spec = _write_variant(tmp_path / "exp.pi", exposure=10000.0)
    elif case == "channels":
        spec = _write_variant(tmp_path / "short.pi", n_channels=512)
    elif case.startswith("corrupt"):
        post = tmp_path / "post"
        shutil.copytree(tiny / "post", post)
        if case == "corrupt_weights":
            (post / "weights.safetensors").write_bytes(b"\x00" * 100)
        else:
            (post / "config.json").write_text('{"format": "simxray-npe"')
    else:
        post = tmp_path / "nowhere"
    rc, out, err = run_cli(capsys, "fit", spec, "--posterior", post, "--out", tmp_path / "o")
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("simxray fit: error:"), err
    assert pattern in lines[0]
    assert not (tmp_path / "o" / "summary.json").exists()


def test_force_fits_a_mismatched_spectrum_and_says_so(tiny, tmp_path, capsys):
    spec = _write_variant(tmp_path / "exp.pi", exposure=10000.0)
    rc, out, err = run_cli(capsys, "fit", spec, "--posterior", tiny / "post", "--samples", 300,
                           "--ppc-draws", 10, "--no-plots", "--force", "--out", tmp_path / "o")
    assert rc == 0, err
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["flagged"] and any("exposure" in w and "--force" in w for w in s["warnings"])
    assert s["provenance"]["forced"] is True


def test_validate_reports_and_writes_json(tiny, tmp_path, capsys):
    rc, out, err = run_cli(capsys, "validate", tiny / "post", "--n", 40, "--samples", 100,
                           "--seed", 11, "--out", tmp_path / "v", "--json", tmp_path / "v.json",
                           "--quiet")
    # 0: calibrated; 1: the check ran and failed (a 3-epoch network may be miscalibrated)
    assert rc in (0, 1), err
    res = json.loads((tmp_path / "v.json").read_text())
    assert res["n"] == 40 and res["posterior_samples"] == 100
    assert set(res["parameters"]) == {"nH", "PhoIndex", "norm", "pileup.alpha", "pileup.f"}
    for p in res["parameters"].values():
        assert 0.0 <= p["max_coverage_error"] <= 1.0
        assert len(p["coverage"]) == len(res["levels"])
        assert p["r2"] <= 1.0
    assert len(res["tarp"]["ecp"]) == len(res["tarp"]["alpha"])
    assert "max cov. err" in out and "TARP" in out
    for f in ("coverage.png", "ranks.png", "recovery.png"):
        assert (tmp_path / "v" / f).stat().st_size > 1000


def test_fit_refuses_a_foreign_rmf_unless_forced(tmp_path, capsys):
    """A spectrum whose RMF differs (by checksum) from the training RMF: exit 2, or --force."""
    from astropy.io import fits

    spec = _write_variant(tmp_path / "s.pi")
    with fits.open(tmp_path / "rmf.fits", mode="update") as rmf:
        rmf[1].header["HISTORY"] = "modified: not the response the posterior was trained with"
    post = DATA_DIR / "posterior_default"
    rc, out, err = run_cli(capsys, "fit", spec, "--posterior", post, "--out", tmp_path / "o")
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "RMF rmf.fits differs from the RMF the posterior was trained with" in err
    assert "--force" in err and not (tmp_path / "o" / "summary.json").exists()
    rc, out, err = run_cli(capsys, "fit", spec, "--posterior", post, "--force", "--samples", 300,
                           "--ppc-draws", 10, "--no-plots", "--out", tmp_path / "o", "--quiet")
    assert rc == 0, err
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["flagged"] and s["provenance"]["forced"] is True
    assert any(w.startswith("RMF rmf.fits differs") and "--force" in w for w in s["warnings"])


def test_empty_spectrum_is_refused(tmp_path, capsys):
    """A PHA with no rows at all (not just zero counts): one-line error naming the channels."""
    spec = _write_variant(tmp_path / "empty.pi", n_channels=0)
    for extra in (("--posterior", DATA_DIR / "posterior_default"), ("--background", "none")):
        rc, out, err = run_cli(capsys, "fit", spec, *extra, "--out", tmp_path / "o")
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert "has 0" in err and "channel" in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


# -- the shipped default posterior ----------------------------------------------------------

DEMO_THETA = {"nH": 1.0, "PhoIndex": 1.8, "norm": 1e-3, "pileup.alpha": 0.5, "pileup.f": 0.95}


@pytest.fixture(scope="module")
def demo_spectrum(tmp_path_factory):
    """The demo's simulated PHA (known truth, ~23 % pileup) and its noiseless prediction."""
    from simxray.cli.demo import predict_step, simulated_pha_step

    d = tmp_path_factory.mktemp("demo_spec")
    pred = predict_step(d)
    return simulated_pha_step(d, pred, seed=4), pred


def test_fit_predictive_with_and_without_pileup_matches_predict(demo_spectrum):
    """The fit's posterior-predictive models (piled and unpiled) equal `simxray predict`'s."""
    from simxray.inference import saving
    from simxray.inference.fit import build_simulator, posterior_predictive
    from simxray.io.ogip import read_pha

    path, pred = demo_spectrum
    cfg = saving.load_config(DATA_DIR / "posterior_default")
    sim = build_simulator(cfg, read_pha(path))
    theta = np.array([[DEMO_THETA[n] for n in cfg["parameters"]]])
    pp = posterior_predictive(sim, theta)
    lo, hi = cfg["channels"]
    ch = np.asarray(pred["sim"].response.channel)
    sel = (ch >= lo) & (ch <= hi)
    np.testing.assert_allclose(pp["mu"][0], pred["piled"][sel], rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(pp["mu_unpiled"][0], pred["unpiled"][sel], rtol=1e-5, atol=1e-9)
    # pileup loses about half the events here (2 piled photons -> 1 event or none)
    assert pp["mu"][0].sum() < 0.6 * pp["mu_unpiled"][0].sum()
    assert pp["pileup_fraction"][0] == pytest.approx(pred["fraction"], rel=1e-6)


def test_default_posterior_recovers_a_simulated_spectrum_and_flags_a_line(demo_spectrum, tmp_path):
    """Known truth inside the prior: inside the 90 % intervals, not flagged.  The same
    spectrum with an unmodelled 6.4 keV line (500 counts) fails the predictive check."""
    from astropy.io import fits

    from simxray.inference.fit import fit_spectrum

    path, pred = demo_spectrum
    res = fit_spectrum(path, None, n_samples=4000, ppc_draws=60, seed=1, plots=False)
    s = res.summary
    assert not s["flagged"], s["warnings"]
    assert s["checks"]["ppc"]["p_value"] > 0.01
    for name, truth in DEMO_THETA.items():
        lo, hi = s["parameters"][name]["ci90"]
        assert lo <= truth <= hi, (name, truth, lo, hi)
    # nH, Γ and norm are well constrained by ~3300 counts
    assert s["parameters"]["PhoIndex"]["ci90"][1] - s["parameters"]["PhoIndex"]["ci90"][0] < 0.8
    pf = s["pileup_fraction"]
    assert pf["ci90"][0] <= pred["fraction"] <= pf["ci90"][1]

    line = tmp_path / "line.pi"
    shutil.copy(path, line)
    for f in ("arf.fits", "rmf.fits", "background.pi"):
        shutil.copy(path.parent / f, tmp_path / f)
    with fits.open(line, mode="update") as h:
        c = h["SPECTRUM"].data["COUNTS"]
        e = (h["SPECTRUM"].data["CHANNEL"] - 0.5) * 0.0146   # ACIS PI: 14.6 eV per channel
        bump = np.random.default_rng(0).poisson(500 * np.exp(-0.5 * ((e - 6.4) / 0.07) ** 2)
                                                / (np.sqrt(2 * np.pi) * 0.07 / 0.0146))
        c[:] = c + bump
    bad = fit_spectrum(line, None, n_samples=2000, ppc_draws=60, seed=1, plots=False).summary
    assert bad["flagged"] and bad["checks"]["ppc"]["p_value"] < 0.01
    assert any("misspecified" in w for w in bad["warnings"])


def test_default_posterior_calibration_small(tmp_path):
    """A smaller `simxray validate` of the shipped posterior: 150 fresh simulations.

    Binomial noise allows |coverage - nominal| up to coverage_tolerance(150) ≈ 0.12 at
    every level (95 %, Bonferroni over 19 levels); an overconfident copy (posterior
    spread halved) must fail the same check.
    """
    import torch

    from simxray.inference import diagnostics, saving

    post = saving.load_posterior(DATA_DIR / "posterior_default")
    sim = diagnostics.simulator_for(post.config)
    sims = sim.sample(150, np.random.default_rng(77))
    torch.manual_seed(77)
    smp = post.model.sample(300, torch.as_tensor(sims["counts"], dtype=torch.float32)).double()
    smp = smp.numpy()                                                       # (S, N, P)
    tol = diagnostics.coverage_tolerance(150)
    assert 0.1 < tol < 0.13
    err = diagnostics.max_coverage_error(diagnostics.ranks_from_samples(smp, sims["theta"]), 300)
    assert np.all(err <= tol), dict(zip(post.names, err, strict=True))
    rec = diagnostics.recovery(smp, sims["theta"], post.config["log"])
    r2 = dict(zip(post.names, rec["r2"], strict=True))
    # 500 simulations give R² 0.96, 0.91, 0.79 (validation.json); 150 scatter more
    assert r2["nH"] > 0.85 and r2["PhoIndex"] > 0.75 and r2["norm"] > 0.45, r2
    narrow = smp.mean(0) + 0.5 * (smp - smp.mean(0))
    bad = diagnostics.max_coverage_error(diagnostics.ranks_from_samples(narrow, sims["theta"]), 300)
    assert bad.max() > tol
