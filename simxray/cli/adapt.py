"""``simxray adapt PAIRS.toml --out DIR``: correct the pileup prescription with grating pairs.

Reads the pairs (HETG first orders + piled spectrum of the same observation), fits the
gratings, calibrates the alpha(E) Davis nuisance parameters hierarchically, learns the
residual correction, trains NPE on the Davis simulator and fine-tunes it on the adapted
one, trains emulators of both simulators for emcee (the adapted one with the calibrated
nuisances as extra inputs), and writes calibration.json, correction.{safetensors,json},
npe_davis/, npe_adapted/, emulator_davis/, emulator_adapted/ and summary.json (with the
misspecification score before/after and the emulators' accuracy) to DIR.
"""

from __future__ import annotations

import argparse
import logging

from ._common import add_overwrite, add_seed, show_progress

LOG = logging.getLogger("simxray.cli.adapt")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "adapt", help="calibrate and correct the pileup model with HETG/piled pairs, retrain NPE and emulator",
        description="Domain adaptation of the Davis pileup prescription from pairs of nearly "
                    "pileup-free HETG first-order spectra and a piled ACIS spectrum of the same "
                    "source and time (PAIRS.toml; synthetic ones: simulations/adapt_make_pairs.py): "
                    "hierarchical likelihood calibration of alpha(E) = alpha0 + alpha1 ln(E/2 keV), "
                    "f and an efficiency, a learned residual correction conditioned on the "
                    "incident spectrum, and NPE and emulator retrained on the corrected simulator.")
    p.add_argument("pairs", metavar="PAIRS.toml", help="pairs file")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (new or empty)")
    p.add_argument("--alpha-model", choices=("loglinear", "constant"), default="loglinear",
                   help="alpha energy dependence (default %(default)s)")
    p.add_argument("--grid", default=None, help="Davis kernel grid: 'sherpa', N or N:EMAX "
                                                "(default: the file's pileup_grid)")
    p.add_argument("--n", "--n-sims", dest="n_sims", type=int, default=4000, metavar="N",
                   help="number of NPE training simulations (default %(default)s; --n-sims is a deprecated alias)")
    p.add_argument("--epochs", type=int, default=150, help="largest number of NPE epochs (default %(default)s)")
    p.add_argument("--max-minutes", type=float, default=4.0, help="NPE training time limit per network, min")
    p.add_argument("--correction-steps", type=int, default=200, help="residual-correction optimiser steps")
    p.add_argument("--no-npe", action="store_true", help="calibrate and correct only (no NPE, no emulators)")
    p.add_argument("--no-emulator", action="store_true",
                   help="skip the Davis and adapted emulators (emulator_davis/, emulator_adapted/)")
    p.add_argument("--emulator-minutes", type=float, default=2.5,
                   help="emulator training time limit per network, min (default %(default)s)")
    add_seed(p, 0)
    add_overwrite(p, "an earlier output folder DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..adaptation.pairs import load_pairs
    from ..adaptation.pipeline import adapt, write_outputs
    from ..errors import ConfigError
    from ..io.outputs import check_output
    from ..provenance import sha256

    for name in ("n_sims", "epochs", "correction_steps"):
        if getattr(args, name) < 1:
            raise ConfigError(f"expected a positive integer, got {getattr(args, name)}",
                              field="--" + name.replace("_", "-"))
    for name in ("max_minutes", "emulator_minutes"):
        if not getattr(args, name) > 0:
            raise ConfigError(f"expected a positive number of minutes, got {getattr(args, name)}",
                              field="--" + name.replace("_", "-"))
    out = check_output(args.out, kind="dir", overwrite=args.overwrite, inputs=[args.pairs])
    cfg = load_pairs(args.pairs)
    grid = args.grid or cfg.pileup_grid

    def log(*parts) -> None:
        LOG.info("%s", " ".join(str(x) for x in parts))

    res = adapt(cfg.pairs, cfg.source, cfg.start_theta(), grid=grid, alpha_model=args.alpha_model,
                n_sims=args.n_sims, npe=not args.no_npe, correction_steps=args.correction_steps,
                npe_epochs=args.epochs, npe_minutes=args.max_minutes, seed=args.seed,
                emulators=not (args.no_npe or args.no_emulator),
                emulator_settings={"max_minutes": args.emulator_minutes},
                quiet=not show_progress(args), log=log)
    inputs = {"pairs": str(Path(args.pairs).resolve()), "pairs_sha256": sha256(args.pairs),
              "files": [p.files for p in cfg.pairs], "seed": args.seed, "grid": grid,
              "alpha_model": args.alpha_model, "n_sims": args.n_sims,
              "emulators": not (args.no_npe or args.no_emulator), "emulator_minutes": args.emulator_minutes}
    write_outputs(out, res, inputs, overwrite=True)
    m = res.summary.get("misspecification_pairs")
    if m:
        log(f"misspecification (sbi MMD, pairs vs simulator): before p = {m['before']['p_value']:.3f} "
            f"(MMD {m['before']['mmd']:.4f}), after p = {m['after']['p_value']:.3f} (MMD {m['after']['mmd']:.4f})")
    log(f"wrote {out}/calibration.json, correction.*, summary.json"
        + ("" if args.no_npe else ", npe_davis/, npe_adapted/")
        + ("" if args.no_npe or args.no_emulator else ", emulator_davis/, emulator_adapted/"))
    return 0
