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
    """A small acis_default dataset and a tiny posterior trained on it by the CLI."""
    from simxray.simulator.campaign import run_campaign
    from simxray.simulator.config import load_config

    d = tmp_path_factory.mktemp("fitcli")
    run_campaign(load_config(REPO / "simulations" / "acis_default.toml"), 600, d / "sims.h5",
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
    assert s["provenance"]["inputs"]["posterior_weights_sha256"] == cfg["weights_sha256"]
    with h5py.File(out / "samples.h5", "r") as f:
        smp = f["samples"][:]
        assert smp.shape == (3000, 5)
        assert [str(n) for n in f["samples"].attrs["names"]] == cfg["parameters"]
        assert np.median(smp[:, 1]) == pytest.approx(s["parameters"]["PhoIndex"]["median"])
    import arviz as az

    idata = az.from_netcdf(out / "posterior.nc")
    assert set(idata.posterior.data_vars) == set(cfg["parameters"])
    assert idata.posterior.sizes["draw"] == 3000
    assert float(idata.observed_data["counts"].sum()) == pytest.approx(2991, abs=1)
    assert idata.posterior_predictive["expected_counts"].shape == (1, 40, 514)


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
    assert rc == 0, err
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
