"""``simxray validate POSTERIOR_DIR [--n 500] [--json FILE]``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate", help="check a trained posterior's calibration on fresh simulations",
        description="Simulation-based calibration of a posterior from 'simxray train': draws "
                    "--n fresh simulations from its own simulator and prior (or reads them from "
                    "--dataset), samples the posterior for each, and reports SBC rank statistics "
                    "(sbi check_sbc), the marginal coverage of central credible intervals, TARP "
                    "expected coverage and the recovery R^2 of the posterior mean. Writes "
                    "coverage.png, ranks.png and recovery.png.")
    p.add_argument("posterior", help="posterior directory")
    p.add_argument("--n", type=int, default=500, help="simulations (default %(default)s)")
    p.add_argument("--samples", type=int, default=1000,
                   help="posterior draws per simulation (default %(default)s)")
    p.add_argument("--seed", type=int, default=2024, help="simulation seed (default %(default)s)")
    p.add_argument("--dataset", help="held-out HDF5 dataset to use instead of simulating")
    p.add_argument("--tolerance", type=float, default=0.05,
                   help="allowed |coverage - nominal| (default %(default)s)")
    p.add_argument("--out", help="folder for the plots (default POSTERIOR/validation)")
    p.add_argument("--json", help="write every reported figure to this JSON file")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default %(default)s: fastest on a busy machine)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..inference.diagnostics import format_validation, validate
    from ..inference.saving import write_json

    if args.threads:
        torch.set_num_threads(args.threads)
    res = validate(args.posterior, n=args.n, n_samples=args.samples, seed=args.seed,
                   dataset=args.dataset, out_dir=args.out, quiet=args.quiet,
                   tolerance=args.tolerance)
    print(format_validation(res))
    if args.json:
        write_json(args.json, res)
    print(f"wrote {', '.join(res['files'].values())}" + (f", {args.json}" if args.json else ""))
    return 0
