"""Rebuild the default neutral-reflection table (simxray/data/reflection_default.h5).

Seeded Monte Carlo of a cold, neutral, semi-infinite slab (see
simxray/physics/reflection/montecarlo.py).  The shipped table: the defaults
(800 packets per incident bin, seed 20251), 693 s wall on 2 shared cores.
Equivalent to ``simxray tables build-reflection``::

    nice python simulations/make_reflection_table.py --overwrite \
        [--out simxray/data/reflection_default.h5] [--fits reflection_default.fits]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simxray.physics.reflection import montecarlo as mc  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(REPO / "simxray" / "data" / "reflection_default.h5"))
    p.add_argument("--fits", help="also write the OGIP XSPEC table (FITS)")
    p.add_argument("--photons", type=int, default=800, help="packets per incident energy bin")
    p.add_argument("--seed", type=int, default=20251)
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "simxray" / "reflection"),
                   help="directory for per-A_Fe Green's functions (resume)")
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    t0 = time.time()
    last = [0.0]

    def progress(msg: str) -> None:
        if time.time() - last[0] > 30:
            last[0] = time.time()
            print(f"[{time.time() - t0:7.0f} s] {msg}", flush=True)

    out = mc.build_table(a.out, photons_per_bin=a.photons, seed=a.seed, fits_out=a.fits,
                         overwrite=a.overwrite, cache_dir=a.cache, progress=progress)
    print(f"wrote {out} in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
