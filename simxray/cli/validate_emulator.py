"""``simxray validate-emulator [EMULATOR_DIR] [--n 1000] [--out DIR] [--json FILE]``.

The accuracy goals are reported (met / missed) with exit status 0; bad input exits 2.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ._common import add_overwrite, add_seed, reject_ignored, show_progress

LOG = logging.getLogger("simxray.cli.validate_emulator")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate-emulator", help="check an emulator against the exact simulator",
        description="Draw --n fresh parameter sets from the emulator's prior, compute their "
                    "expected counts with the exact simulator and with the emulator, and report "
                    "the relative error over channels with at least 10 expected counts (median, "
                    "99th percentile; goals 1% and 5%), the mean |delta C-stat| the emulator "
                    "introduces on Poisson data (goal < 1) and the speed-up per likelihood "
                    "evaluation. Plots the worst cases (worst.png, errors.png) into --out.")
    p.add_argument("emulator", nargs="?", help="emulator directory (default: the shipped one)")
    p.add_argument("--n", type=int, default=1000, metavar="N",
                   help="number of held-out prior draws (default %(default)s)")
    add_seed(p, 12345, "the prior draws")
    p.add_argument("--out", metavar="DIR",
                   help="folder for the plots (default: EMULATOR_validation beside the emulator; "
                        "in the current folder for the shipped one)")
    p.add_argument("--json", metavar="FILE", help="also write every figure to this JSON file")
    p.add_argument("--no-plots", action="store_true", help="skip the plots (and --out)")
    p.add_argument("--no-timing", action="store_true", help="skip the speed measurement")
    add_overwrite(p, "an earlier --out folder or --json file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..inference.emulator import DEFAULT_DIR, _json_ready, format_validation, validate_emulator
    from ..inference.saving import write_json
    from ..io.outputs import atomic_dir, atomic_file, check_output, default_output
    from ..provenance import provenance

    if args.no_plots:
        reject_ignored(args, "with --no-plots", {"--out": args.out})
    inputs = [args.emulator]
    source = args.emulator or DEFAULT_DIR
    out = None
    if not args.no_plots:
        out = check_output(args.out or default_output(source, "_validation"), kind="dir",
                           overwrite=args.overwrite, inputs=inputs)
    if args.json:
        check_output(args.json, kind="file", overwrite=args.overwrite, inputs=inputs,
                     field="--json")

    def check(out_dir):
        return validate_emulator(args.emulator, n=args.n, seed=args.seed, out_dir=out_dir,
                                 quiet=not show_progress(args), plots=not args.no_plots,
                                 timing=not args.no_timing)

    if out is None:
        res = check(None)
    else:
        with atomic_dir(out, overwrite=args.overwrite, inputs=inputs) as tmp:
            res = check(tmp)
        res["files"] = {k: str(out / Path(v).name) for k, v in res["files"].items()}
    res["provenance"] = provenance(seed=args.seed, inputs={"emulator": res["emulator"]})
    print(format_validation(res))
    if args.json:
        with atomic_file(args.json, overwrite=args.overwrite, inputs=inputs, field="--json") as tmp:
            write_json(tmp, _json_ready(res))
    files = list(res["files"].values()) + ([args.json] if args.json else [])
    if files:
        print(f"wrote {', '.join(files)}")
    missed = [k for k, ok in res["pass"].items() if not ok]
    if missed:
        LOG.warning("accuracy goal(s) missed: %s", ", ".join(missed))
    return 0
