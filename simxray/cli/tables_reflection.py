"""``simxray tables build-reflection``: rebuild the default neutral-reflection table."""

from __future__ import annotations

import argparse
import logging

from ._common import add_overwrite, add_seed

LOG = logging.getLogger("simxray.cli.tables")


def add_build_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build-reflection", help="Monte Carlo the default neutral-reflection table",
        description="Seeded Monte Carlo of reflection from a cold, neutral, semi-infinite slab "
                    "(Klein-Nishina scattering, photoabsorption, Fe/Ni K fluorescence); writes an "
                    "XSPEC-layout table with parameters Gamma, A_Fe, Ecut, Incl (about 10 "
                    "minutes with the defaults).")
    p.add_argument("output", help="HDF5 table to write (e.g. reflection.h5)")
    p.add_argument("--fits", help="also write the OGIP XSPEC table model (FITS)")
    p.add_argument("--photons", type=int, default=800, help="packets per incident energy bin "
                   "(default %(default)s, as the shipped table)")
    add_seed(p, 20251)
    p.add_argument("--cache", help="directory keeping per-A_Fe Green's functions (resume)")
    add_overwrite(p, "existing OUTPUT / --fits files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ParameterError
    from ..io.outputs import check_output
    from ..physics.reflection.montecarlo import build_table

    if args.photons < 1:
        raise ParameterError(f"expected a positive integer, got {args.photons}", field="--photons")
    check_output(args.output, kind="file", overwrite=args.overwrite, field="OUTPUT",
                 allow_package=True)
    if args.fits:
        check_output(args.fits, kind="file", overwrite=args.overwrite, field="--fits",
                     allow_package=True)
    if args.cache:
        check_output(args.cache, kind="dir", overwrite=True, field="--cache")
    out = build_table(args.output, photons_per_bin=args.photons, seed=args.seed, fits_out=args.fits,
                      overwrite=args.overwrite, cache_dir=args.cache,
                      progress=lambda msg: LOG.info("%s", msg))
    print(f"wrote {out}")
    return 0
