"""Rebuild the Kerr transfer-function table (simxray/data/relativity_transfer.h5).

Closed-form Kerr geodesics on 20 spins x 22 cos(i) (denser edge-on) x 48 radii
(uniform in r^-1/2 from the ISCO of the next spin node) x 40 g* cells x 2 branches
(the defaults reproduce the shipped 3.45 MB file; deterministic, no random numbers);
about 8 min of CPU on an idle core, 35 min with 2 workers on the loaded shared
2-core machine.  Equivalent to
``simxray tables build-relativistic``::

    nice python simulations/make_relativistic_table.py --workers 2 --overwrite \
        [--out simxray/data/relativity_transfer.h5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simxray.cli.tables_relativistic import DEFAULTS, build  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(REPO / "simxray" / "data" / "relativity_transfer.h5"))
    for k, v in DEFAULTS.items():
        p.add_argument("--" + k.replace("_", "-"), type=int, default=v)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    build(a.out, n_spin=a.n_spin, n_mu=a.n_mu, n_r=a.n_r, n_chi=a.n_chi, n_psi=a.n_psi, n_rho=a.n_rho,
          mantissa_bits=a.mantissa_bits, workers=a.workers, overwrite=a.overwrite,
          log=lambda m: print(m, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
