"""``simxray validate``: the real calibration check and its exit status (slow: ~20-50 s)."""

from __future__ import annotations

from pathlib import Path

import pytest

from simxray.cli import main

PKG_DATA = Path(__file__).resolve().parents[1] / "simxray" / "data"


def listing(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}


@pytest.mark.slow
def test_validate_real_failure_exits_1(tmp_path, capsys, monkeypatch):
    """The real check: an impossibly tight tolerance fails; plots land beside the cwd."""
    pkg_before = sorted(p.name for p in (PKG_DATA / "posterior_default").rglob("*"))
    monkeypatch.chdir(tmp_path)
    rc = main(["validate", str(PKG_DATA / "posterior_default"), "--n", "20", "--samples", "20",
               "--tolerance", "0.001"])
    out, err = capsys.readouterr()
    assert rc == 1 and "calibration FAILED" in out and "check failed" in err
    assert listing(tmp_path / "posterior_default_validation") == {"coverage.png", "ranks.png",
                                                                  "recovery.png"}
    assert sorted(p.name for p in (PKG_DATA / "posterior_default").rglob("*")) == pkg_before
