"""The code base stays ruff clean (the project's configured rules)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff not installed")
    dirs = [d for d in ("simxray", "tests", "benchmarks", "simulations", "training", "notebooks")
            if (REPO / d).is_dir()]
    assert "simxray" in dirs and "tests" in dirs
    out = subprocess.run([ruff, "check", "--output-format", "concise", *dirs], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]
