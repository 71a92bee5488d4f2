"""Train the bright-source relxill posterior and emulator (issue 15; seeded, resumable).

    python training/train_relxill_bright.py [--work DIR] [--n 60000] [--seed 1]
                                            [--only posterior|emulator] [--minutes 50]

Ships simxray/data/posterior_relxill_bright, which belongs to
``simulations/acis_relxill_bright.toml``: ACIS-S3 in three observing modes (1/8 and 1/4
subarrays, full frame: 0.44104, 0.84104, 3.24104 s frames) and 20-150 ks, both drawn per
simulation and given to the network as covariates, the embedded ACIS-S response,
tbabs*relxill with Davis (2001) pileup.  The shipped run (2026-12-07):

    python training/train_relxill_bright.py --work build/modes/run --n 60000 --seed 1 \
        --workers 2 --only posterior --minutes 50

The emulator (simxray/data/emulator_relxill_bright) serves the same three modes with one
network (log frame time an input, exposure an exact scale); it is trained on a larger
dataset of the same campaign, in its own work folder:

    python training/train_relxill_bright.py --work build/modes/emu --n 300000 --seed 2 \
        --workers 2 --only emulator

Steps (each is skipped or resumed when the script is rerun with the same arguments):

1. ``simxray simulate simulations/acis_relxill_bright.toml --n N --seed SEED``
   -> WORK/sims.h5 (one writer at a time: run it before two ``--only`` jobs in parallel);
2. posterior: ``simxray train`` with ``training/npe_relxill_bright.toml`` (its epoch and
   time budget; ``--resume`` from the checkpoint after an interruption), then
   ``simxray validate`` on ``--validate-n`` fresh simulations with seed SEED + 1000 (a seed
   no training step uses): SBC ranks, coverage of central intervals, TARP, R^2.  Shipped
   only when every parameter's maximum coverage error is at most ``--max-coverage-error``
   (0.05) and the weights are at most 3 MB (``--ship-anyway`` skips the check);
3. emulator: ``simxray train-emulator`` with ``training/emulator_relxill_bright.toml``
   (every parameter and the log frame time -> log expected piled counts per channel at a
   reference exposure), ``simxray
   validate-emulator`` on ``--validate-n`` fresh prior draws, each in a mode drawn from the
   campaign (seed 12345), shipped with its validation.json.

Every step runs the ``simxray`` command line under ``nice`` with one torch thread.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from _common import (
    MAX_WEIGHTS_BYTES,
    REPO,
    add_shipping_checks,
    base_parser,
    coverage_and_size,
    ship,
    simulate_dataset,
    simxray,
    train_or_resume,
)

SIM_CONFIG = REPO / "simulations" / "acis_relxill_bright.toml"
NPE_CONFIG = REPO / "training" / "npe_relxill_bright.toml"
EMU_CONFIG = REPO / "training" / "emulator_relxill_bright.toml"
POST_OUT = REPO / "simxray" / "data" / "posterior_relxill_bright"
EMU_OUT = REPO / "simxray" / "data" / "emulator_relxill_bright"
POST_FILES = ("weights.safetensors", "config.json", "training.json", "validation.json")
EMU_FILES = ("weights.safetensors", "config.json", "training.json", "validation.json")


def train_posterior(args, work: Path, data: Path) -> int:
    """Train, validate and (if calibrated) ship the posterior; 0 when shipped."""
    post = work / "posterior"
    extra = ["--max-minutes", args.minutes] if args.minutes is not None else []
    train_or_resume(data, NPE_CONFIG, post, args, *extra)
    val_json = work / "validation.json"
    if not val_json.exists():                      # exit 1: calibration failed, JSON written
        simxray("validate", post, "--n", args.validate_n, "--seed", args.seed + 1000,
                "--out", post / "validation", "--json", val_json, "--quiet", "--overwrite",
                "--threads", args.threads, threads=args.threads, ok=(0, 1))
    worst, size = coverage_and_size(val_json, post)
    if not args.ship_anyway and (max(worst.values()) > args.max_coverage_error
                                 or size > MAX_WEIGHTS_BYTES):
        print(f"posterior not shipped: a coverage error exceeds {args.max_coverage_error} or "
              f"the weights exceed 3 MB (left in {post})")
        return 1
    shutil.copy2(val_json, post / "validation.json")
    ship(post, POST_FILES, Path(args.posterior_out), trees=("validation",))
    print(f"shipped {args.posterior_out}")
    return 0


def train_emulator(args, work: Path, data: Path) -> int:
    """Train, validate and ship the emulator (one network for every observing mode of the
    campaign: log frame time an input, exposure an exact scale); 0 when shipped."""
    emu = work / "emulator"
    if not (emu / "config.json").exists():
        simxray("train-emulator", data, "--config", EMU_CONFIG, "--out", emu, "--quiet",
                "--overwrite", "--threads", args.threads, threads=args.threads)
    vjson = emu / "validation.json"
    if not vjson.exists():
        simxray("validate-emulator", emu, "--n", args.validate_n, "--seed", 12345, "--json",
                vjson, "--out", emu / "validation", "--overwrite", "--quiet",
                threads=args.threads)
    v = json.loads(vjson.read_text())
    print(f"emulator: median {v['relative_error']['median']:.3%}, p99 "
          f"{v['relative_error']['p99']:.3%}, mean |dC| {v['delta_cstat']['mean']:.3f}")
    ship(emu, EMU_FILES, Path(args.emulator_out),
         trees=("validation",) if (emu / "validation").is_dir() else ())
    print(f"shipped {args.emulator_out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = base_parser(__doc__, work="relxill_bright", n=60000, out=POST_OUT)
    ap.add_argument("--workers", type=int, default=1, help="simulation processes")
    ap.add_argument("--only", choices=("posterior", "emulator"),
                    help="run one of the two trainings (after the simulation)")
    ap.add_argument("--minutes", type=float, default=None,
                    help="NPE time budget in minutes (default: the training config's)")
    add_shipping_checks(ap, 1000, 0.05)
    ap.add_argument("--emulator-out", default=str(EMU_OUT),
                    help="where to ship the emulator (default %(default)s)")
    args = ap.parse_args(argv)
    args.posterior_out = args.out

    work = Path(args.work)
    t0 = time.time()
    data = simulate_dataset(args, SIM_CONFIG)
    rc = 0
    if args.only in (None, "posterior"):
        rc |= train_posterior(args, work, data)
    if args.only in (None, "emulator"):
        rc |= train_emulator(args, work, data)
    print(f"done in {(time.time() - t0) / 60:.1f} min")
    return rc


if __name__ == "__main__":
    sys.exit(main())
