"""``simxray simulate CONFIG.toml --n N --out DATASET.h5 [--seed S] [--workers K] [--scheduler ADDR]``."""

from __future__ import annotations

import argparse
import logging

from ._common import add_overwrite, add_seed, show_progress

LOG = logging.getLogger("simxray.cli.simulate")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate", help="simulate a dataset of (piled-up) spectra from a TOML config",
        description="Draw parameters from the config's prior, compute expected counts (model, "
                    "pileup, response) and Poisson counts, and write them in chunks to an HDF5 "
                    "dataset with the config, response checksums, version, commit and seed. "
                    "An interrupted run continues when the same command is rerun; the same seed "
                    "gives the same dataset for any --workers or --scheduler. One process writes "
                    "a dataset at a time: a second one is refused with the first one's PID.")
    p.add_argument("config", metavar="CONFIG.toml", nargs="?",
                   help="simulation config (e.g. simulations/acis_default.toml); or --config")
    p.add_argument("--config", dest="config_opt", metavar="CONFIG.toml",
                   help="TOML simulation config (the positional CONFIG.toml, as the other commands name it)")
    p.add_argument("--n", type=int, required=True, metavar="N", help="number of spectra (required)")
    p.add_argument("--out", required=True, metavar="DATASET.h5",
                   help="HDF5 dataset to write (or to continue, when made with the same arguments)")
    add_seed(p, 0)
    p.add_argument("--workers", type=int, default=1,
                   help="local worker processes (default %(default)s)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on an existing Dask distributed cluster (e.g. tcp://host:8786)")
    p.add_argument("--chunk-size", type=int,
                   help="spectra per chunk (default: the config's simulation.chunk_size, 256)")
    add_overwrite(p, "a dataset at --out instead of continuing it (start afresh)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ParameterError
    from ..simulator.campaign import run_campaign
    from ..simulator.config import load_config

    if (args.config is None) == (args.config_opt is None):
        raise ParameterError("expected one simulation config: CONFIG.toml or --config CONFIG.toml",
                             field="--config")
    args.config = args.config or args.config_opt
    cfg = load_config(args.config)
    argv = ["simulate", str(args.config), "--n", str(args.n), "--out", str(args.out),
            "--seed", str(args.seed)]
    try:
        res = run_campaign(cfg, args.n, args.out, seed=args.seed, workers=args.workers,
                           scheduler=args.scheduler, chunk_size=args.chunk_size,
                           quiet=bool(args.quiet), progress=show_progress(args), argv=argv,
                           overwrite=args.overwrite, inputs=[args.config])
    except KeyboardInterrupt:
        LOG.warning("stopped; %s holds the chunks finished so far. Rerun the same command to "
                    "continue.", args.out)
        raise
    if res["new"] == 0:
        print(f"{res['path']}: already complete ({res['n']} spectra)")
    else:
        resumed = f", continued from {res['resumed_from']}" if res["resumed_from"] else ""
        print(f"{res['path']}: {res['n']} spectra ({res['new']} new in {res['seconds']:.1f} s, "
              f"{res['rate']:.0f} spectra/s{resumed})")
    return 0
