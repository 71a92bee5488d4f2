"""Train the absorbed-relxill posterior shipped in simxray/data/posterior_relxill (seeded).

    python training/train_relxill_posterior.py [--work DIR] [--n 20000] [--seed 1]

A non-default posterior: ``simxray fit SPECTRUM --posterior simxray/data/posterior_relxill``.
Steps (each is skipped or resumed when the script is rerun with the same arguments):

1. ``simxray simulate simulations/acis_default.toml --n N --seed SEED`` -> WORK/sims.h5
   (tbabs*relxill + Davis pileup, the acis_powerlaw response, channels and pileup priors);
2. ``simxray train`` with ``training/npe_default.toml`` (CNN/Anscombe embedding, no
   embedding comparison) for at most ``--epochs`` epochs and ``--minutes`` minutes of
   training (the shipped run: 20,000 simulations, all 80 epochs in 16.4 min, inside the
   23-minute budget; see training/README.md, "Absorbed relxill posterior").  A slower
   machine may hit the time budget first; ``--minutes 0`` always trains the full
   ``--epochs``, which repeats the run (every epoch's noise and shuffling are seeded by the
   epoch number and the learning-rate schedule depends only on validation losses);
3. ``simxray validate`` on ``--validate-n`` fresh simulations (seed SEED + 1000), then
   weights.safetensors, config.json, training.json, validation.json and validation/*.png
   are copied to ``--out`` -- only if every parameter's maximum coverage error is at most
   ``--max-coverage-error`` and the weights are at most 3 MB (``--ship-anyway`` skips the
   check).

Every step runs the ``simxray`` command line under ``nice`` with one torch thread.
"""

from __future__ import annotations

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

SIM_CONFIG = REPO / "simulations" / "acis_default.toml"
TRAIN_CONFIG = REPO / "training" / "npe_default.toml"
DEFAULT_OUT = REPO / "simxray" / "data" / "posterior_relxill"
SHIPPED = ("weights.safetensors", "config.json", "training.json", "validation.json")


def main(argv: list[str] | None = None) -> int:
    ap = base_parser(__doc__, work="relxill", n=20000, out=DEFAULT_OUT)
    ap.add_argument("--workers", type=int, default=2, help="simulation processes")
    ap.add_argument("--epochs", type=int, default=80, help="maximum epochs (default %(default)s)")
    ap.add_argument("--minutes", type=float, default=23.0,
                    help="training time budget in minutes, 0 for none (default %(default)s)")
    add_shipping_checks(ap, 300)
    args = ap.parse_args(argv)

    work = Path(args.work)
    t0 = time.time()
    data = simulate_dataset(args, SIM_CONFIG)

    post = work / "posterior"
    train_or_resume(data, TRAIN_CONFIG, post, args, "--max-minutes", args.minutes)

    val_json = work / "validation.json"
    simxray("validate", post, "--n", args.validate_n, "--seed", args.seed + 1000, "--out",
            post / "validation", "--json", val_json, "--quiet", "--threads", args.threads,
            threads=args.threads)
    worst, size = coverage_and_size(val_json, post)
    if not args.ship_anyway and (max(worst.values()) > args.max_coverage_error
                                 or size > MAX_WEIGHTS_BYTES):
        print(f"not shipped: a coverage error exceeds {args.max_coverage_error} or the weights "
              f"exceed 3 MB (posterior left in {post})")
        return 1

    shutil.copy2(val_json, post / "validation.json")
    dest = ship(post, SHIPPED, Path(args.out), trees=["validation"])
    print(f"done in {(time.time() - t0) / 60:.1f} min: {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
