"""``simxray model NAME --grid LO:HI:N:log --param K=V ... [--out FILE.csv]``."""

from __future__ import annotations

import argparse
import sys

from ._common import add_overwrite, add_param, reject_ignored


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="evaluate a model expression on an energy grid",
                       description="Evaluate a model (or expression such as 'tbabs*powerlaw') on energy-bin "
                                   "edges; writes e_lo, e_hi, flux (photons/cm^2/s per bin).")
    p.add_argument("name", help="model name or expression, e.g. relline, 'tbabs*powerlaw', table:FILE")
    p.add_argument("--grid", default=None, help="LO:HI:N:log|lin in keV (default 0.1:1000:2000:log)")
    add_param(p)
    p.add_argument("--out", metavar="FILE.csv", help="CSV file to write (default: standard output)")
    p.add_argument("--list", action="store_true", help="list the model's parameters and exit")
    add_overwrite(p, "an existing --out file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..io.outputs import atomic_file, check_output
    from ..models import Model, make_grid, parse_param_args

    if args.list:
        reject_ignored(args, "with --list", {"--param": args.param, "--out": args.out,
                                             "--grid": args.grid, "--overwrite": args.overwrite})
    inputs = [args.name.split(":", 1)[1]] if args.name.startswith("table:") else []
    if args.out:
        check_output(args.out, kind="file", overwrite=args.overwrite, inputs=inputs)
    model = Model(args.name)
    if args.list:
        for q, short in zip(model.parameters, model.short_names, strict=True):
            par = q.parameter
            print(f"{short:24s} {par.default:>12g}  [{par.min:g}, {par.max:g}] {par.unit}")
        return 0
    edges = make_grid(args.grid or "0.1:1000:2000:log")
    params = parse_param_args(args.param)
    flux = model.evaluate(edges, params)
    header = f"# simxray model {model.expr}; " + " ".join(f"{k}={v:g}" for k, v in params.items())
    if model.tables():
        header += "; tables " + ", ".join(model.tables())
    rows = np.column_stack([edges[:-1], edges[1:], flux])
    if args.out:
        with atomic_file(args.out, overwrite=args.overwrite, inputs=inputs) as tmp:
            np.savetxt(tmp, rows, delimiter=",", header=header[2:] + "\ne_lo,e_hi,flux",
                       comments="# ", fmt="%.10g")
    else:
        np.savetxt(sys.stdout, rows, delimiter=",", header="e_lo,e_hi,flux", comments="", fmt="%.10g")
    return 0
