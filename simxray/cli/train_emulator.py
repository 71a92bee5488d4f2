"""``simxray train-emulator DATASET.h5 --out DIR [--config TOML] [--target counts|source]``."""

from __future__ import annotations

import argparse

from ._common import add_overwrite, add_seed, positive, show_progress


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-emulator", help="train a neural emulator of the piled-up forward model",
        description="Train an MLP that maps parameters (source and pileup) to expected counts per "
                    "channel (target 'counts'), or the model parameters to the source spectrum on "
                    "the pileup grid with the exact pileup and response applied after it (target "
                    "'source'), on the finished rows of a dataset from 'simxray simulate'. Writes "
                    "weights.safetensors, config.json (prior, parameter names and training "
                    "ranges, response identity and checksums, channels, versions) and "
                    "training.json to --out; no pickles.")
    p.add_argument("dataset", help="HDF5 dataset written by 'simxray simulate'")
    p.add_argument("--out", required=True, metavar="DIR", help="emulator directory to write")
    p.add_argument("--config", metavar="CONFIG.toml", help="TOML with an [emulator] table of settings (see "
                                    "training/emulator_default.toml)")
    p.add_argument("--target", choices=("counts", "source"), help="what the network predicts")
    p.add_argument("--epochs", type=int, help="training epochs")
    p.add_argument("--hidden", type=int, help="hidden units per layer")
    p.add_argument("--layers", type=int, help="hidden layers")
    p.add_argument("--n-basis", type=int, help="principal components of log mu (0: none)")
    p.add_argument("--batch-size", type=int, help="spectra per optimiser step")
    p.add_argument("--max-minutes", type=float, help="stop after this much training time")
    p.add_argument("--n", "--n-train", dest="n_train", type=int, metavar="N",
                   help="number of spectra to use: the dataset's first N (default all; --n-train is "
                        "a deprecated alias)")
    add_seed(p, None, "the training", "the --config [emulator] seed, else 0")
    add_overwrite(p, "an emulator in --out")
    p.set_defaults(func=run)


def load_settings(path: str | None) -> dict:
    """The [emulator] table of a TOML file ({} without a file)."""
    if not path:
        return {}
    from ..errors import ConfigError
    from ..io.tomlfile import read_toml

    data = read_toml(path, "a TOML file with an [emulator] table")
    table = data.get("emulator")
    if not isinstance(table, dict):
        raise ConfigError("missing; expected an [emulator] table", path=path, field="emulator")
    return dict(table)


def run(args: argparse.Namespace) -> int:
    from ..io.outputs import check_output
    from ..simulator.campaign import dataset_rows

    positive(args, "epochs", "hidden", "layers", "batch_size", "n_train")
    positive(args, "max_minutes", kind="number")
    check_output(args.out, kind="dir", overwrite=True, inputs=[args.dataset, args.config])
    dataset_rows(args.dataset, min_rows=20)          # finished rows only; warns when unfinished
    from ..inference.emulator import train_emulator  # heavy (torch): after the checks

    settings = load_settings(args.config)
    for key in ("target", "epochs", "hidden", "layers", "n_basis", "batch_size", "max_minutes",
                "n_train", "seed"):
        v = getattr(args, key)
        if v is not None:
            settings[key] = v
    emu = train_emulator(args.dataset, args.out, settings=settings, quiet=not show_progress(args),
                         overwrite=args.overwrite)
    t = emu.config["training"]
    v = t.get("validation_accuracy") or {}
    print(f"trained {t['epochs']} epochs ({t['stop_reason']}) in {t['seconds']:.0f} s; best "
          f"validation loss {t['best_val_loss']:.3g} at epoch {t['best_epoch']}")
    if v.get("n_channels_used"):
        print(f"validation ({t['n_validation']} spectra, channels with >= 10 counts): median "
              f"relative error {v['median']:.3%}, 99th percentile {v['p99']:.3%}")
    print(f"wrote {args.out}/weights.safetensors, config.json, training.json")
    return 0
