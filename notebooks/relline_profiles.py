"""Relativistic line profiles for several spins and inclinations (the classic diskline plot).

    python notebooks/relline_profiles.py [--out relline_profiles.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simxray.physics.relativity.plot import plot_line_profiles  # noqa: E402

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="relline_profiles.png")
    a = p.parse_args()
    plot_line_profiles(a.out)
    print(f"wrote {a.out}")
