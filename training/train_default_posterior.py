"""Train the default posterior shipped in simxray/data/posterior_default (reproducible, seeded).

    python training/train_default_posterior.py [--work DIR] [--n 60000] [--seed 1]

Steps (each is skipped or resumed when the script is rerun with the same arguments):

1. ``simxray simulate simulations/acis_powerlaw.toml --n N --seed SEED`` -> WORK/acis_powerlaw.h5
2. train every candidate embedding (``--candidates``, default CNN and ResNet on the Anscombe
   transform and CNN on log1p) with the same data and settings for ``--compare-epochs``
   epochs (equal work; wall-clock budgets are unfair on a shared machine);
3. keep the candidate with the lowest validation loss after those epochs among those whose
   quick validation calibration is acceptable, record the comparison
   (WORK/comparison.json), and continue its training (``--resume``) to ``--final-epochs``
   epochs (31 for the shipped posterior; the learning-rate schedule depends only on the
   validation losses and every epoch's noise and shuffling are seeded, so the epoch count,
   not a wall-clock budget, makes the run reproducible; ``--final-minutes`` adds a budget);
4. copy weights.safetensors, config.json and training.json to ``--out`` and run
   ``simxray validate`` there (500 fresh simulations; validation.json + plots).

Every step runs the ``simxray`` command line under ``nice``.
"""

from __future__ import annotations

import json
import sys
import time
from functools import partial
from pathlib import Path

from _common import REPO, base_parser, ship
from _common import simxray as _simxray

SIM_CONFIG = REPO / "simulations" / "acis_powerlaw.toml"
TRAIN_CONFIG = REPO / "training" / "npe_default.toml"
DEFAULT_OUT = REPO / "simxray" / "data" / "posterior_default"
SHIPPED = ("weights.safetensors", "config.json", "training.json")


simxray = partial(_simxray, nice=10)


def candidate_dir(work: Path, cand: str) -> Path:
    return work / ("cand_" + cand.replace(":", "_"))


def epochs_done(path: Path) -> int:
    """Epochs trained so far (checkpoint, else the finished run's summary, else 0)."""
    state = path / "checkpoint" / "state.json"
    if state.exists():
        return int(json.loads(state.read_text())["epoch"])
    if (path / "config.json").exists():
        return int(json.loads((path / "config.json").read_text())["training"]["epochs"])
    return 0


def summary_of(path: Path, epochs: int | None = None) -> dict:
    """A candidate's figures; ``best_val_loss_at`` compares runs after the same epochs."""
    cfg = json.loads((path / "config.json").read_text())
    t = cfg["training"]
    cal = t["validation_calibration"]["max_coverage_error"]
    hist = json.loads((path / "training.json").read_text())["history"]
    out = {"embedding": cfg["embedding"]["type"], "transform": cfg["embedding"]["transform"],
           "best_val_loss": t["best_val_loss"], "epochs": t["epochs"],
           "best_epoch": t["best_epoch"], "seconds": t["seconds"],
           "val_loss_history": [round(h["val_loss"], 4) for h in hist],
           "max_coverage_error": cal, "worst_coverage_error": max(cal.values()),
           "stop_reason": t["stop_reason"]}
    if epochs:
        out["compare_epochs"] = epochs
        out["best_val_loss_at"] = min(h["val_loss"] for h in hist if h["epoch"] <= epochs)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = base_parser(__doc__, work="posterior_default", n=60000, out=DEFAULT_OUT)
    ap.add_argument("--dataset", help="use this existing dataset instead of simulating")
    ap.add_argument("--candidates", default="cnn:anscombe,resnet:anscombe,cnn:log1p",
                    help="EMBEDDING:TRANSFORM,... to compare (default %(default)s)")
    ap.add_argument("--compare-epochs", type=int, default=4,
                    help="epochs per candidate for the comparison (default %(default)s)")
    ap.add_argument("--final-minutes", type=float, default=0.0,
                    help="optional limit on the total training time of the chosen candidate "
                         "in minutes (default %(default)s: none)")
    ap.add_argument("--final-epochs", type=int, default=31,
                    help="epochs of the final training (default %(default)s, as shipped)")
    ap.add_argument("--calibration-limit", type=float, default=0.12,
                    help="worst quick-calibration coverage error a candidate may have "
                         "(200 validation spectra; default %(default)s)")
    ap.add_argument("--validate-n", type=int, default=500, help="validation simulations")
    args = ap.parse_args(argv)

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data = Path(args.dataset) if args.dataset else work / "acis_powerlaw.h5"
    if not args.dataset:
        simxray("simulate", SIM_CONFIG, "--n", args.n, "--seed", args.seed, "--out", data,
                "--quiet")

    cands = [c.strip() for c in args.candidates.split(",") if c.strip()]
    results = {}
    for cand in cands:
        emb, tr = cand.split(":")
        out = candidate_dir(work, cand)
        done = epochs_done(out)
        if done < args.compare_epochs or not (out / "config.json").exists():
            again = ["--resume"] if (out / "checkpoint").exists() else ["--overwrite"]
            simxray("train", data, "--config", TRAIN_CONFIG, "--embedding", emb, "--transform", tr,
                    "--max-epochs", max(done, args.compare_epochs), "--keep-checkpoint", "--out",
                    out, "--quiet", "--threads", args.threads, *again, threads=args.threads)
        results[cand] = summary_of(out, args.compare_epochs)
        print(f"{cand}: {json.dumps(results[cand])}", flush=True)

    ok = {c: r for c, r in results.items() if r["worst_coverage_error"] <= args.calibration_limit}
    pool = ok or results
    best = min(pool, key=lambda c: pool[c]["best_val_loss_at"])
    comparison = {"candidates": results, "chosen": best,
                  "rule": f"lowest validation loss within the first {args.compare_epochs} epochs "
                          f"among candidates with quick-calibration coverage error <= "
                          f"{args.calibration_limit} (all if none)",
                  "compare_epochs": args.compare_epochs, "dataset": str(data)}
    (work / "comparison.json").write_text(json.dumps(comparison, indent=2) + "\n")
    print(f"chosen: {best}", flush=True)

    emb, tr = best.split(":")
    final = candidate_dir(work, best)
    simxray("train", data, "--config", TRAIN_CONFIG, "--embedding", emb, "--transform", tr,
            "--max-minutes", args.final_minutes, "--max-epochs", args.final_epochs, "--resume",
            "--keep-checkpoint", "--out", final,
            "--quiet", "--threads", args.threads, threads=args.threads)
    comparison["final"] = summary_of(final)
    (work / "comparison.json").write_text(json.dumps(comparison, indent=2) + "\n")

    dest = ship(final, SHIPPED, Path(args.out),
                extra={"comparison.json": json.dumps(comparison, indent=2) + "\n"})
    simxray("validate", dest, "--n", args.validate_n, "--seed", args.seed + 1000, "--out",
            dest / "validation", "--json", dest / "validation.json", "--quiet",
            "--threads", args.threads, threads=args.threads)
    print(f"done in {(time.time() - t0) / 60:.1f} min: {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
