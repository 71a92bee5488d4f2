"""``simxray validate POSTERIOR_DIR [--n 500] [--out DIR] [--json FILE]``.

Exit status 1 when the calibration check ran and failed (a parameter's coverage error
above ``--tolerance``), 2 for bad input, 0 when it passed.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ._common import add_overwrite, add_seed, show_progress

LOG = logging.getLogger("simxray.cli.validate")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate", help="check a trained posterior's calibration on fresh simulations",
        description="Simulation-based calibration of a posterior from 'simxray train': draws "
                    "--n fresh simulations from its own simulator and prior (or reads the "
                    "finished rows of --dataset), samples the posterior for each, and reports SBC "
                    "rank statistics (sbi check_sbc), the marginal coverage of central credible "
                    "intervals, TARP expected coverage and the recovery R^2 of the posterior "
                    "mean. Writes coverage.png, ranks.png and recovery.png to --out. Exits with "
                    "status 1 when calibration fails.")
    p.add_argument("posterior", help="posterior directory")
    p.add_argument("--n", type=int, default=500, metavar="N",
                   help="number of simulations (default %(default)s)")
    p.add_argument("--samples", type=int, default=1000,
                   help="posterior draws per simulation (default %(default)s)")
    add_seed(p, 2024, "the simulations and posterior draws")
    p.add_argument("--dataset", help="held-out HDF5 dataset to use instead of simulating")
    p.add_argument("--tolerance", type=float, default=0.05,
                   help="allowed |coverage - nominal|, in (0, 1) (default %(default)s)")
    p.add_argument("--out", metavar="DIR",
                   help="folder for the plots (default: POSTERIOR_validation beside the "
                        "posterior; in the current folder for a shipped posterior)")
    p.add_argument("--json", metavar="FILE", help="also write every reported figure to this JSON file")
    add_overwrite(p, "an earlier --out folder or --json file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import CheckFailed, ParameterError
    from ..inference.diagnostics import format_validation, validate
    from ..inference.saving import write_json
    from ..io.outputs import atomic_dir, atomic_file, check_output, default_output

    if not 0.0 < args.tolerance < 1.0:
        raise ParameterError(f"expected a coverage tolerance in (0, 1), got {args.tolerance:g}",
                             field="--tolerance")
    inputs = [args.posterior, args.dataset]
    out = check_output(args.out or default_output(args.posterior, "_validation"), kind="dir",
                       overwrite=args.overwrite, inputs=inputs)
    if args.json:
        check_output(args.json, kind="file", overwrite=args.overwrite, inputs=inputs,
                     field="--json")
    with atomic_dir(out, overwrite=args.overwrite, inputs=inputs) as tmp:
        res = validate(args.posterior, n=args.n, n_samples=args.samples, seed=args.seed,
                       dataset=args.dataset, out_dir=tmp, quiet=not show_progress(args),
                       tolerance=args.tolerance,
                       log=lambda m: LOG.warning(str(m).removeprefix("warning: ")))
    res["files"] = {k: str(out / Path(v).name) for k, v in res["files"].items()}
    print(format_validation(res))
    if args.json:
        with atomic_file(args.json, overwrite=args.overwrite, inputs=inputs, field="--json") as tmp:
            write_json(tmp, res)
    print(f"wrote {', '.join([*res['files'].values(), *([args.json] if args.json else [])])}")
    if not res["pass"]:
        bad = [k for k, v in res["parameters"].items() if not v["pass"]]
        raise CheckFailed(f"calibration failed for {', '.join(bad)} (coverage error above "
                          f"{args.tolerance:g})")
    return 0
