"""The built wheel carries everything ``simxray demo`` needs (issue 17): installed outside
the checkout, ``python -m simxray demo`` runs from the current folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_runs_the_demo_outside_the_checkout(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                        "--no-build-isolation", "-w", str(tmp_path / "whl"), str(REPO)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    wheel = next((tmp_path / "whl").glob("simxray-*.whl"))
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                        str(tmp_path / "site"), str(wheel)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    run.mkdir()
    probe = subprocess.run([sys.executable, "-c", "import simxray; print(simxray.__file__)"],
                           capture_output=True, text=True, env=env, cwd=run)
    assert str(tmp_path / "site") in probe.stdout          # the wheel's copy, not the checkout
    r = subprocess.run([sys.executable, "-m", "simxray", "demo", "--out", "demo", "--n", "16",
                        "--no-compare", "-q"], capture_output=True, text=True, env=env, cwd=run)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((run / "demo" / "fit" / "walkthrough_1-7keV" / "summary.json").read_text())
    assert s["model"] == "wabs*powerlaw" and s["n_samples"] == 10000
    assert (run / "demo" / "dataset.h5").is_file()
