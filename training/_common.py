"""What the training scripts share: running ``simxray`` steps under ``nice``, their common
command-line options, the train-or-resume step, the shipping checks and the atomic copy of
a finished model into ``simxray/data``.

The scripts run as ``python training/SCRIPT.py``, so this folder is on ``sys.path`` and they
import ``_common`` directly.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_WEIGHTS_BYTES = 3 * 1024 * 1024


def simxray(*args: object, threads: int = 1, nice: int = 19, ok: tuple[int, ...] = (0,)) -> int:
    """Run ``python -m simxray.cli ARGS`` at niceness ``nice`` in all (not ``nice`` more when
    the script itself runs under nice) with ``threads`` OpenMP threads; stop unless its exit
    status is in ``ok``.  Returns the exit status."""
    inc = max(0, nice - os.nice(0))
    cmd = ["nice", "-n", str(inc), sys.executable, "-m", "simxray.cli", *map(str, args)]
    print("+", " ".join(cmd[3:]), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    rc = subprocess.run(cmd, cwd=REPO, env=env).returncode
    if rc not in ok:
        raise SystemExit(f"failed with exit status {rc}: {' '.join(cmd[3:])}")
    return rc


def base_parser(doc: str, *, work: str, n: int, out: Path) -> argparse.ArgumentParser:
    """The options every training script takes: --work, --n, --seed, --out, --threads."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--work", default=str(REPO / "build" / work),
                    help="working folder for the dataset and the runs (default %(default)s)")
    ap.add_argument("--n", type=int, default=n, help="number of simulations (default %(default)s)")
    ap.add_argument("--seed", type=int, default=1, help="random seed of the simulations (default %(default)s)")
    ap.add_argument("--out", default=str(out), help="where to ship (default %(default)s)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default %(default)s)")
    return ap


def add_shipping_checks(ap: argparse.ArgumentParser, validate_n: int,
                        max_coverage_error: float = 0.1) -> None:
    """--validate-n, --max-coverage-error and --ship-anyway."""
    ap.add_argument("--validate-n", type=int, default=validate_n,
                    help="number of validation simulations (default %(default)s)")
    ap.add_argument("--max-coverage-error", type=float, default=max_coverage_error,
                    help="ship only if every parameter's max coverage error is at most this")
    ap.add_argument("--ship-anyway", action="store_true", help="skip the shipping checks")


def simulate_dataset(args: argparse.Namespace, config: Path) -> Path:
    """``simxray simulate CONFIG`` into WORK/sims.h5 (continued when rerun); its path."""
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = work / "sims.h5"
    simxray("simulate", config, "--n", args.n, "--seed", args.seed, "--workers",
            args.workers, "--out", data, "--quiet")
    return data


def train_or_resume(data: Path, config: Path, post: Path, args: argparse.Namespace,
                    *extra: object) -> None:
    """``simxray train`` into ``post`` unless a finished run is there (resumed from its
    checkpoint when one is); ``--max-epochs`` from ``args.epochs`` when the script has it,
    else the training config's."""
    if (post / "config.json").exists():          # a finished run is kept as it is
        return
    again = ["--resume"] if (post / "checkpoint").exists() else ["--overwrite"]
    epochs = getattr(args, "epochs", None)
    simxray("train", data, "--config", config,
            *(["--max-epochs", epochs] if epochs is not None else []), *extra,
            "--keep-checkpoint", "--out", post, "--quiet", "--threads", args.threads,
            *again, threads=args.threads)


def coverage_and_size(val_json: Path, post: Path) -> tuple[dict[str, float], int]:
    """Each parameter's max coverage error from ``simxray validate --json`` and the size of
    the weights in bytes (printed)."""
    val = json.loads(val_json.read_text())
    worst = {k: v["max_coverage_error"] for k, v in val["parameters"].items()}
    size = (post / "weights.safetensors").stat().st_size
    print("max coverage error: " + ", ".join(f"{k} {v:.3f}" for k, v in worst.items()))
    print(f"weights: {size / 1e6:.2f} MB")
    return worst, size


def ship(src: Path, files: Iterable[str], dest: Path, *, trees: Iterable[str] = (),
         extra: dict[str, str] | None = None) -> Path:
    """Replace ``dest`` by a folder with ``files`` and the folders ``trees`` of ``src`` (and
    ``extra`` {name: text}), built beside it and renamed into place."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in files:
        shutil.copy2(src / f, tmp / f)
    for t in trees:
        shutil.copytree(src / t, tmp / t)
    for name, text in (extra or {}).items():
        (tmp / name).write_text(text)
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest
