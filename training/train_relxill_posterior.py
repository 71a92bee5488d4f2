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

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIM_CONFIG = REPO / "simulations" / "acis_default.toml"
TRAIN_CONFIG = REPO / "training" / "npe_default.toml"
DEFAULT_OUT = REPO / "simxray" / "data" / "posterior_relxill"
SHIPPED = ("weights.safetensors", "config.json", "training.json", "validation.json")
MAX_WEIGHTS_BYTES = 3 * 1024 * 1024


def simxray(*args: object, threads: int = 1) -> None:
    """Run ``nice python -m simxray.cli ARGS``; stop on failure."""
    cmd = ["nice", "-n", "19", sys.executable, "-m", "simxray.cli", *map(str, args)]
    print("+", " ".join(cmd[3:]), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(cmd, check=True, cwd=REPO, env=env)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=str(REPO / "build" / "relxill"),
                    help="working folder for the dataset and the run (default %(default)s)")
    ap.add_argument("--n", type=int, default=20000, help="simulations (default %(default)s)")
    ap.add_argument("--seed", type=int, default=1, help="simulation seed (default %(default)s)")
    ap.add_argument("--workers", type=int, default=2, help="simulation processes")
    ap.add_argument("--epochs", type=int, default=80, help="maximum epochs (default %(default)s)")
    ap.add_argument("--minutes", type=float, default=23.0,
                    help="training time budget in minutes, 0 for none (default %(default)s)")
    ap.add_argument("--validate-n", type=int, default=300,
                    help="validation simulations (default %(default)s)")
    ap.add_argument("--max-coverage-error", type=float, default=0.1,
                    help="ship only if every parameter's max coverage error is at most this")
    ap.add_argument("--ship-anyway", action="store_true", help="skip the shipping checks")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="where to ship (default %(default)s)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data = work / "sims.h5"
    simxray("simulate", SIM_CONFIG, "--n", args.n, "--seed", args.seed, "--workers",
            args.workers, "--out", data, "--quiet")

    post = work / "posterior"
    if not (post / "config.json").exists():        # a finished run is kept as it is
        again = ["--resume"] if (post / "checkpoint").exists() else ["--overwrite"]
        simxray("train", data, "--config", TRAIN_CONFIG, "--max-epochs", args.epochs,
                "--max-minutes", args.minutes, "--keep-checkpoint", "--out", post, "--quiet",
                "--threads", args.threads, *again, threads=args.threads)

    val_json = work / "validation.json"
    simxray("validate", post, "--n", args.validate_n, "--seed", args.seed + 1000, "--out",
            post / "validation", "--json", val_json, "--quiet", "--threads", args.threads,
            threads=args.threads)
    val = json.loads(val_json.read_text())
    worst = {k: v["max_coverage_error"] for k, v in val["parameters"].items()}
    size = (post / "weights.safetensors").stat().st_size
    print("max coverage error: " + ", ".join(f"{k} {v:.3f}" for k, v in worst.items()))
    print(f"weights: {size / 1e6:.2f} MB")
    if not args.ship_anyway and (max(worst.values()) > args.max_coverage_error
                                 or size > MAX_WEIGHTS_BYTES):
        print(f"not shipped: a coverage error exceeds {args.max_coverage_error} or the weights "
              f"exceed 3 MB (posterior left in {post})")
        return 1

    ship = Path(args.out)
    tmp = ship.with_name(ship.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy2(val_json, post / "validation.json")
    for f in SHIPPED:
        shutil.copy2(post / f, tmp / f)
    shutil.copytree(post / "validation", tmp / "validation")
    old = ship.with_name(ship.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if ship.exists():
        ship.rename(old)
    tmp.rename(ship)
    shutil.rmtree(old, ignore_errors=True)
    print(f"done in {(time.time() - t0) / 60:.1f} min: {ship}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
