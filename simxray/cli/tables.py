"""``simxray tables convert|info|build-*``: XSPEC table models and the tables simxray builds.

``convert IN.fits OUT.h5 [--overwrite]`` writes the chunked HDF5 layout of
:mod:`simxray.io.table_model`; ``info FILE`` prints a table's parameters and
grids.  Modules ``simxray.cli.tables_relativistic`` and
``simxray.cli.tables_reflection``, when present, add their ``build-*``
sub-commands through ``add_build_parser(subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib

from ._common import add_overwrite

BUILDERS = ("simxray.cli.tables_relativistic", "simxray.cli.tables_reflection")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tables", help="convert, inspect and build spectral tables",
                       description="XSPEC table models (FITS or HDF5) and the tables simxray builds.")
    tsub = p.add_subparsers(dest="tables_command", metavar="ACTION")

    c = tsub.add_parser("convert", help="convert an XSPEC FITS table model to HDF5",
                        description="Convert an OGIP XSPEC table model (FITS) to simxray's chunked HDF5 "
                                    "layout, readable anywhere as table:OUT.h5.")
    c.add_argument("input", help="XSPEC table model (FITS)")
    c.add_argument("output", help="HDF5 file to write (not the input)")
    add_overwrite(c, "OUTPUT if it exists")
    c.set_defaults(func=run_convert)

    i = tsub.add_parser("info", help="print a table model's parameters and grids",
                        description="Print the type, energies, parameters and grids of a table model "
                                    "(FITS or HDF5).")
    i.add_argument("file", help="table model (FITS or HDF5)")
    i.set_defaults(func=run_info)

    for name in BUILDERS:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        mod.add_build_parser(tsub)

    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_convert(args: argparse.Namespace) -> int:
    from ..io.outputs import check_output
    from ..io.table_model import convert_to_hdf5, read_table

    check_output(args.output, kind="file", overwrite=args.overwrite, inputs=[args.input],
                 field="OUTPUT")
    out = convert_to_hdf5(args.input, args.output, overwrite=args.overwrite)
    t = read_table(out, in_memory=False)
    print(f"wrote {out}: {t.n_spectra} spectra x {t.n_energies} bins, parameters "
          f"{', '.join(p.name for p in t.params + t.addparams)}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from ..io.table_model import read_table

    print(read_table(args.file, in_memory=False).summary())
    return 0
