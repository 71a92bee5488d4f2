"""``simxray tables build-relativistic``: the Kerr transfer-function table (relline/relconv).

Traces closed-form Kerr geodesics (simxray.physics.relativity) on a grid of
spins (uniform in log ISCO radius) and cos(i) and writes the HDF5 table read by
relline, relconv, relline_lp and the relxill kernel.  Reproduces the shipped
table with the defaults (20 spins x 22 cos i, denser edge-on, x 48 radii uniform in
r^-1/2 x 40 g* cells; about 8 min of CPU; ``--workers`` processes).
"""

from __future__ import annotations

import argparse
import logging
import time

from ._common import add_overwrite

LOG = logging.getLogger("simxray.cli.tables")

DEFAULTS = {"n_spin": 20, "n_mu": 22, "n_r": 48, "n_chi": 41, "n_psi": 512, "n_rho": 480, "mantissa_bits": 10}


def add_build_parser(tsub: argparse._SubParsersAction) -> None:
    """Add ``build-relativistic`` to the ``simxray tables`` sub-commands."""
    b = tsub.add_parser("build-relativistic", help="build the Kerr transfer-function table (relline)",
                        description=__doc__.split("\n\n")[1].replace("\n", " "))
    b.add_argument("--out", required=True, metavar="FILE.h5",
                   help="HDF5 file to write (to regenerate the shipped table: "
                        "--out simxray/data/relativity_transfer.h5 --overwrite)")
    b.add_argument("--n-spin", type=int, default=DEFAULTS["n_spin"], help="spins in [-0.998, 0.998] (%(default)s)")
    b.add_argument("--n-mu", type=int, default=DEFAULTS["n_mu"], help="cos(i) values, 3-87 deg, denser edge-on (%(default)s)")
    b.add_argument("--n-r", type=int, default=DEFAULTS["n_r"], help="radii, ISCO to 1000 rg (%(default)s)")
    b.add_argument("--n-chi", type=int, default=DEFAULTS["n_chi"], help="g* nodes per branch (n_chi - 1 cells; %(default)s)")
    b.add_argument("--n-psi", type=int, default=DEFAULTS["n_psi"], help="image-plane angles per ring (%(default)s)")
    b.add_argument("--n-rho", type=int, default=DEFAULTS["n_rho"], help="image-plane radii per angle (%(default)s)")
    b.add_argument("--mantissa-bits", type=int, default=DEFAULTS["mantissa_bits"],
                   help="float32 mantissa bits kept (compression; %(default)s)")
    b.add_argument("--workers", type=int, default=1, help="processes (default %(default)s)")
    add_overwrite(b, "--out if it exists")
    b.set_defaults(func=run_build)


def build(out, n_spin=20, n_mu=22, n_r=48, n_chi=41, n_psi=512, n_rho=480, mantissa_bits=10, workers=1,
          overwrite=False, log=LOG.info):
    """Build and write the table; returns the path."""
    from pathlib import Path

    from ..errors import ParameterError
    from ..io.outputs import check_output
    from ..physics.relativity import transfer

    if Path(out).exists() and not overwrite:
        raise ParameterError("exists; pass --overwrite to replace it", path=str(out), field="--out")
    out = check_output(out, kind="file", overwrite=True, allow_package=True)
    for name, v, lo in (("--n-spin", n_spin, 2), ("--n-mu", n_mu, 2), ("--n-r", n_r, 4), ("--n-chi", n_chi, 5),
                        ("--n-psi", n_psi, 64), ("--n-rho", n_rho, 64), ("--workers", workers, 1)):
        if v < lo:
            raise ParameterError(f"expected at least {lo}, got {v}", field=name)
    t0 = time.time()
    last = [0.0]

    def progress(i, n):
        if time.time() - last[0] > 30 or i == n:
            last[0] = time.time()
            log(f"[{time.time() - t0:7.0f} s] {i}/{n} (spin, cos i) nodes")

    table = transfer.build_table(transfer.default_spins(n_spin), transfer.default_mu0(n_mu), n_r=n_r, n_chi=n_chi,
                                 n_psi=n_psi, n_rho=n_rho, workers=workers, progress=progress)
    path = transfer.write_table(out, table, mantissa_bits=mantissa_bits,
                                extra={"builder": "simxray tables build-relativistic",
                                       "build_seconds": round(time.time() - t0, 1)})
    log(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) in {time.time() - t0:.0f} s")
    return path


def run_build(args: argparse.Namespace) -> int:
    build(args.out, n_spin=args.n_spin, n_mu=args.n_mu, n_r=args.n_r, n_chi=args.n_chi, n_psi=args.n_psi,
          n_rho=args.n_rho, mantissa_bits=args.mantissa_bits, workers=args.workers, overwrite=args.overwrite)
    return 0
