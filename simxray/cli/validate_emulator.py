"""``simxray validate-emulator EMULATOR_DIR [--n 1000] [--json FILE]``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate-emulator", help="check an emulator against the exact simulator",
        description="Draw --n fresh parameter sets from the emulator's prior, compute their "
                    "expected counts with the exact simulator and with the emulator, and report "
                    "the relative error over channels with at least 10 expected counts (median, "
                    "99th percentile; goals 1%% and 5%%), the mean |delta C-stat| the emulator "
                    "introduces on Poisson data (goal < 1) and the speed-up per likelihood "
                    "evaluation. Plots the worst cases (worst.png, errors.png).")
    p.add_argument("emulator", nargs="?", help="emulator directory (default: the shipped one)")
    p.add_argument("--n", type=int, default=1000, help="held-out prior draws (default %(default)s)")
    p.add_argument("--seed", type=int, default=12345, help="draw seed (default %(default)s)")
    p.add_argument("--out", help="folder for the plots (default EMULATOR/validation)")
    p.add_argument("--json", help="write every figure to this JSON file")
    p.add_argument("--no-plots", action="store_true", help="skip the plots")
    p.add_argument("--no-timing", action="store_true", help="skip the speed measurement")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..inference.emulator import _json_ready, format_validation, validate_emulator
    from ..inference.saving import write_json
    from ..provenance import provenance

    if args.threads:
        torch.set_num_threads(args.threads)
    res = validate_emulator(args.emulator, n=args.n, seed=args.seed, out_dir=args.out,
                            quiet=args.quiet, plots=not args.no_plots, timing=not args.no_timing)
    res["provenance"] = provenance(seed=args.seed, inputs={"emulator": res["emulator"]})
    print(format_validation(res))
    if args.json:
        write_json(args.json, _json_ready(res))
    files = list(res["files"].values()) + ([args.json] if args.json else [])
    if files:
        print(f"wrote {', '.join(files)}")
    return 0
