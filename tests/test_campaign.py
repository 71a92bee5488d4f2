"""Simulation campaigns (simxray.simulator.campaign) and ``simxray simulate``.

A tiny synthetic instrument (60 energies x 40 channels, Gaussian redistribution) keeps
these tests fast; the code path (OGIP reading, Response, Davis pileup, HDF5) is the real one.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from tiny_instrument import campaign_toml, make_instrument

from simxray.cli import main
from simxray.simulator import campaign
from simxray.simulator.campaign import read_dataset, run_campaign, run_chunk
from simxray.simulator.config import load_config

REPO = Path(__file__).resolve().parents[1]
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tiny")
    make_instrument(d)
    (d / "tiny.toml").write_text(campaign_toml("tiny", 25, "jdpileup"))
    (d / "fast.toml").write_text(campaign_toml("tiny", 500, "none"))
    return d


def _same(a: Path, b: Path) -> None:
    da, db = read_dataset(a), read_dataset(b)
    for k in ("theta", "mu", "counts", "background", "pileup_fraction"):
        np.testing.assert_array_equal(da[k], db[k], err_msg=k)
    assert da["attrs"]["n_done"] == db["attrs"]["n_done"]


def test_dataset_layout_and_provenance(tiny, tmp_path):
    out = tmp_path / "a.h5"
    res = run_campaign(load_config(tiny / "tiny.toml"), 60, out, seed=4, quiet=True)
    assert res["n_done"] == 60 and res["new"] == 60
    with h5py.File(out) as f:
        assert f["theta"].shape == (60, 4) and f["theta"].dtype == np.float32
        assert [str(x) for x in f["theta"].attrs["names"]] == ["PhoIndex", "norm", "pileup.alpha",
                                                               "pileup.f"]
        C = f["mu"].shape[1]
        assert f["mu"].dtype == np.float32 and f["counts"].dtype == np.int32 and f["counts"].shape == (60, C)
        assert f["background"].shape == (60, C)
        a = f.attrs
        assert int(a["n_done"]) == 60 and int(a["seed"]) == 4
        ch = list(a["channels"])
        assert ch[1] - ch[0] + 1 == C and np.all(f["channel"][:] == np.arange(ch[0], ch[1] + 1))
        assert json.loads(a["config"])["model"]["expression"] == "powerlaw"
        assert json.loads(a["prior"])["parameters"][0]["name"] == "PhoIndex"
        assert a["model"] == "powerlaw"
        resp = json.loads(a["response"])
        assert resp["rmf"]["name"] == "rmf.fits" and len(resp["arf"]["sha256"]) == 64
        prov = json.loads(a["provenance"])
        assert prov["seed"] == 4 and prov["simxray_version"] and prov["git_commit"]
        theta = f["theta"][:]
        mu, counts, bkg = f["mu"][:], f["counts"][:], f["background"][:]
    assert np.all((theta[:, 0] >= 1) & (theta[:, 0] <= 3) & (theta[:, 3] >= 0.85))
    assert np.all(counts >= bkg)
    # chunk 1 (rows 25-49) is exactly run_chunk(seed, 1)
    cfg = json.loads(h5py.File(out)["/"].attrs["config"])
    r = run_chunk(cfg, 4, 1, 25, 50)
    np.testing.assert_array_equal(r["counts"], counts[25:50])
    np.testing.assert_allclose(r["mu"], mu[25:50], rtol=1e-6)
    # Poisson: total counts scatter around mu + background (chi^2 per dof ~ 1)
    tot_mu = mu.sum(1) + np.asarray(h5py.File(out)["background"].attrs["expected"]).sum()
    chi2 = np.mean((counts.sum(1) - tot_mu) ** 2 / tot_mu)
    assert 0.4 < chi2 < 2.0


@pytest.mark.slow
def test_workers_and_dask_identical(tiny, tmp_path):
    cfg = load_config(tiny / "tiny.toml")
    run_campaign(cfg, 100, tmp_path / "w1.h5", seed=9, workers=1, quiet=True)
    run_campaign(cfg, 100, tmp_path / "w2.h5", seed=9, workers=2, quiet=True)
    _same(tmp_path / "w1.h5", tmp_path / "w2.h5")
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        rc = main(["simulate", str(tiny / "tiny.toml"), "--n", "100", "--out", str(tmp_path / "d.h5"),
                   "--seed", "9", "--scheduler", cluster.scheduler_address, "--quiet"])
    assert rc == 0
    _same(tmp_path / "w1.h5", tmp_path / "d.h5")
    # a different seed gives a different dataset
    run_campaign(cfg, 100, tmp_path / "s.h5", seed=10, quiet=True)
    assert not np.array_equal(read_dataset(tmp_path / "s.h5")["counts"],
                              read_dataset(tmp_path / "w1.h5")["counts"])


class _Interrupting:
    """A simulator wrapper raising KeyboardInterrupt (Ctrl-C) on its k-th chunk."""

    calls = 0
    stop_at = 3

    def __init__(self, sim):
        self._sim = sim

    def __getattr__(self, name):
        return getattr(self._sim, name)

    def sample(self, n, rng):
        type(self).calls += 1
        if type(self).calls == type(self).stop_at:
            raise KeyboardInterrupt
        return self._sim.sample(n, rng)


def interrupting_factory(config):
    return _Interrupting(campaign.default_factory(config))


def test_interrupt_then_resume_equals_uninterrupted(tiny, tmp_path):
    cfg = load_config(tiny / "tiny.toml")
    ref = tmp_path / "ref.h5"
    run_campaign(cfg, 130, ref, seed=2, quiet=True)
    out = tmp_path / "int.h5"
    _Interrupting.calls = 0
    with pytest.raises(KeyboardInterrupt):
        run_campaign(cfg, 130, out, seed=2, quiet=True, factory=interrupting_factory)
    with h5py.File(out) as f:  # valid file, two chunks of 25 done
        assert int(f.attrs["n_done"]) == 50
    res = run_campaign(cfg, 130, out, seed=2, quiet=True)
    assert res["resumed_from"] == 50 and res["new"] == 80
    _same(ref, out)


@pytest.mark.slow
def test_sigkill_then_resume(tiny, tmp_path):
    """A run killed with SIGKILL mid-way leaves a valid file; rerunning completes it identically."""
    out = tmp_path / "k.h5"
    n = 100_000
    cmd = [sys.executable, "-m", "simxray", "simulate", str(tiny / "fast.toml"), "--n", str(n),
           "--out", str(out), "--seed", "5", "-v"]   # -v: a progress log line per chunk
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
    seen = {"done": 0}

    def reader():
        buf = b""
        while chunk := proc.stderr.read(64):
            buf = (buf + chunk)[-400:]
            m = re.findall(rb"(\d+)/%d" % n, buf)
            if m:
                seen["done"] = int(m[-1])

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    deadline = time.time() + 60
    while seen["done"] < 3000 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    t.join(5)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    with h5py.File(out) as f:
        done = int(f.attrs["n_done"])
    assert 0 < done < n and done % 500 == 0
    # rerun the same command: continues from n_done
    rc = main(["simulate", str(tiny / "fast.toml"), "--n", str(n), "--out", str(out), "--seed", "5",
               "--quiet"])
    assert rc == 0
    d = read_dataset(out)
    assert d["attrs"]["n_done"] == n
    cfg = json.loads(d["attrs"]["config"])
    for i in (0, done // 500 - 1, done // 500, n // 500 - 1):  # chunks either side of the kill
        r = run_chunk(cfg, 5, i, 500 * i, 500 * (i + 1))
        np.testing.assert_array_equal(r["counts"], d["counts"][500 * i:500 * (i + 1)])
        np.testing.assert_array_equal(r["theta"].astype(np.float32), d["theta"][500 * i:500 * (i + 1)])


def test_refuses_different_arguments(tiny, tmp_path, capsys):
    out = tmp_path / "r.h5"
    args = ["simulate", str(tiny / "tiny.toml"), "--n", "50", "--out", str(out), "--quiet"]
    assert main([*args, "--seed", "1"]) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert main([*args, "--seed", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different arguments" in err and "seed 1 vs 2" in err
    assert main(["simulate", str(tiny / "tiny.toml"), "--n", "60", "--out", str(out), "--seed", "1"]) == 2
    assert "n 50 vs 60" in capsys.readouterr().err
    assert out.read_bytes() == before
    # already complete: nothing to do
    assert main([*args, "--seed", "1"]) == 0
    assert "already complete" in capsys.readouterr().out
    # an existing file that is not a dataset
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    assert main(["simulate", str(tiny / "tiny.toml"), "--n", "5", "--out", str(junk)]) == 2
    assert "not a readable simxray dataset" in capsys.readouterr().err


def test_finished_campaign_is_not_recomputed(tiny, tmp_path):
    """130 spectra in chunks of 25: the last chunk is partial; a rerun touches nothing."""
    out = tmp_path / "f.h5"
    cfg = load_config(tiny / "tiny.toml")
    run_campaign(cfg, 130, out, seed=2, quiet=True)
    before, mtime = out.read_bytes(), out.stat().st_mtime_ns
    res = run_campaign(cfg, 130, out, seed=2, quiet=True)
    assert res["new"] == 0 and res["resumed_from"] == 130
    assert out.read_bytes() == before and out.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.h5"]   # lock file removed


def test_bad_run_arguments_leave_nothing(tiny, tmp_path, capsys, monkeypatch):
    out = tmp_path / "o.h5"
    base = ["simulate", str(tiny / "tiny.toml"), "--n", "50", "--out", str(out)]
    for extra, what in ((["--chunk-size", "0"], "--chunk-size: expected a positive chunk size"),
                        (["--chunk-size", "-5"], "--chunk-size"),
                        (["--workers", "0"], "--workers"),
                        (["--workers", "2", "--scheduler", "tcp://127.0.0.1:9"], "--workers"),
                        (["--seed", "-1"], "--seed")):
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and what in err, err
    assert list(tmp_path.iterdir()) == []
    # a scheduler that cannot be reached: the error comes before any file is created
    pytest.importorskip("distributed")
    monkeypatch.setattr(campaign, "DASK_CONNECT_TIMEOUT", "1s")
    assert main([*base, "--scheduler", "tcp://127.0.0.1:9", "-q"]) == 2
    err = capsys.readouterr().err
    assert "cannot connect to the Dask scheduler" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_overwrite_starts_afresh(tiny, tmp_path, capsys):
    out = tmp_path / "o.h5"
    args = ["simulate", str(tiny / "tiny.toml"), "--n", "50", "--out", str(out), "-q"]
    assert main([*args, "--seed", "1"]) == 0
    assert main([*args, "--seed", "2"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--seed", "2", "--overwrite"]) == 0
    with h5py.File(out) as f:
        assert int(f.attrs["seed"]) == 2 and int(f.attrs["n_done"]) == 50
    ref = tmp_path / "ref.h5"
    run_campaign(load_config(tiny / "tiny.toml"), 50, ref, seed=2, quiet=True)
    _same(ref, out)


@pytest.mark.parametrize("text, what", [
    ("[model]\nexpression = 'powerlaw'\n[model.parameters]\nPhoIndex = {dist='uniform', low=1, high=99}\n",
     "model.parameters.PhoIndex: bounds [1, 99] outside the hard limits"),
    ("[model]\nexpression = 'nosuch'\n", "model.expression"),
    ("[model]\nexpression = 'powerlaw'\n[model.parameters]\nGamma = 2.0\n",
     "model.parameters.Gamma: unknown parameter"),
    ("[model]\nexpression = 'powerlaw'\n[model.parameters]\nnorm = {dist='lognormal'}\n",
     "unknown distribution 'lognormal'"),
    ("[model\n", "invalid TOML"),
    ("[instrument]\nspectrum = 'missing.pi'\nadd_background = true\n[model]\nexpression = 'powerlaw'\n",
     "missing.pi: file not found"),
    ("[instrument]\nspectrum = 'src.pi'\nbackground = 'none'\nadd_background = true\n"
     "[model]\nexpression = 'powerlaw'\n", "instrument.add_background"),
])
def test_bad_configs_exit_2_one_line(tiny, tmp_path, capsys, text, what):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    if "src.pi" in text:
        p = tiny / "bad.toml"
        p.write_text(text)
    out = tmp_path / "o.h5"
    rc = main(["simulate", str(p), "--n", "10", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and what in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".o.h5.*"))


@pytest.mark.slow
def test_demo(tmp_path, capsys):
    from simxray.io.ogip import read_pha

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n", "40", "--quiet"]) == 0
    text = capsys.readouterr().out
    for name in ("predicted.csv", "simulated.pi", "predicted_spectrum.png", "dataset.h5"):
        assert (out / name).is_file() and str(out / name) in text
    assert (out / "rmf.fits").is_file() and (out / "arf.fits").is_file()
    d = np.loadtxt(out / "predicted.csv", delimiter=",", comments="#")
    assert d.shape == (1024, 5)
    # pileup removes about half of the counts of this bright source (3316 vs 6607)
    assert 0.45 < d[:, 3].sum() / d[:, 4].sum() < 0.55
    spec = read_pha(out / "simulated.pi")
    assert spec.rmf is not None and spec.arf is not None and spec.background is not None
    assert spec.frame_time == pytest.approx(3.24104)
    assert abs(spec.counts.sum() - d[:, 3].sum()) < 5 * np.sqrt(d[:, 3].sum())
    assert read_dataset(out / "dataset.h5")["counts"].shape[0] == 40
    # the main job: NGC 4258 in Sherpa's pileup-walkthrough setup (1-7 keV)
    fit = out / "fit" / "walkthrough_1-7keV"
    for f in ("samples.h5", "posterior.nc", "summary.json", "corner.png", "spectrum.png"):
        assert (fit / f).stat().st_size > 1000, f
    s = json.loads((fit / "summary.json").read_text())
    assert s["n_samples"] == 10000 and s["total_counts"] == pytest.approx(2792, abs=1)
    assert s["model"] == "wabs*powerlaw" and s["energy_range"][0] == pytest.approx(0.9928)
    # BXA on the same likelihood and priors: nH 4.30 ± 0.51, Γ 0.81 ± 0.22 (issue 12)
    assert abs(s["parameters"]["nH"]["median"] - 4.30) < 0.6 * 0.51
    assert abs(s["parameters"]["PhoIndex"]["median"] - 0.81) < 0.6 * 0.22
    assert "NGC 4258" in text and str(fit) in text
    # the full band: a soft component is needed (evidence), and then the fit passes the
    # posterior-predictive check, which the absorbed power law alone fails
    a = json.loads((out / "fit" / "full_band_absorbed_powerlaw" / "summary.json").read_text())
    b = json.loads((out / "fit" / "full_band_with_soft_component" / "summary.json").read_text())
    assert b["evidence"]["logz"] - a["evidence"]["logz"] > 5
    assert b["checks"]["ppc"]["p_value"] >= 0.01 > a["checks"]["ppc"]["p_value"]
    assert "in favour of the model with it" in text
