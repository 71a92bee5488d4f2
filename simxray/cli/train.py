"""``simxray train DATASET.h5 [--config training/npe_default.toml] --out POSTERIOR_DIR``."""

from __future__ import annotations

import argparse

from ._common import add_device, add_overwrite, add_seed, positive, reject_ignored, show_progress


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a neural posterior (NPE) on a simulated dataset",
        description="Train an amortised neural posterior q(theta | counts) (zuko spline flow + "
                    "1-D CNN/ResNet embedding) on the finished rows of a dataset from 'simxray "
                    "simulate'. Writes weights.safetensors + config.json (no pickles) to --out; a "
                    "checkpoint is saved every epoch, so an interrupted run continues with "
                    "--resume.")
    p.add_argument("dataset", help="HDF5 dataset written by 'simxray simulate'")
    p.add_argument("--config", metavar="CONFIG.toml", help="TOML training settings (default: built-in settings, as in "
                                    "training/npe_default.toml)")
    p.add_argument("--out", required=True, metavar="DIR", help="posterior directory to write")
    p.add_argument("--embedding", choices=("cnn", "resnet", "mlp"), help="override embedding.type")
    p.add_argument("--transform", choices=("log1p", "anscombe", "sqrt"),
                   help="override embedding.transform (variance-stabilising transform)")
    p.add_argument("--epochs", "--max-epochs", dest="epochs", type=int,
                   help="largest number of epochs (override training.max_epochs; --max-epochs "
                        "is a deprecated alias)")
    p.add_argument("--max-minutes", type=float, help="stop after this much training time")
    add_seed(p, None, "the training", "training.seed of --config, else 1")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    add_overwrite(p, "an existing posterior (or unfinished run) in --out")
    p.add_argument("--keep-checkpoint", action="store_true",
                   help="keep checkpoint/ (optimiser state) after training finishes")
    add_device(p, "cuda if available, else cpu")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io.outputs import check_output
    from ..simulator.campaign import dataset_rows

    if args.resume:
        reject_ignored(args, "with --resume (it continues the run in --out)",
                       {"--overwrite": args.overwrite})
    positive(args, "epochs")
    positive(args, "max_minutes", kind="number")
    check_output(args.out, kind="dir", overwrite=True, inputs=[args.dataset, args.config])
    dataset_rows(args.dataset, min_rows=20)          # finished rows only; warns when unfinished
    from ..inference.npe import load_settings, train  # heavy (torch, zuko): after the checks

    overrides = {}
    if args.embedding:
        overrides["embedding.type"] = args.embedding
    if args.transform:
        overrides["embedding.transform"] = args.transform
    if args.epochs:
        overrides["training.max_epochs"] = args.epochs
    if args.max_minutes:
        overrides["training.max_minutes"] = args.max_minutes
    if args.seed is not None:
        overrides["training.seed"] = args.seed
    settings = load_settings(args.config, overrides)
    s = train(args.dataset, settings, args.out, resume=args.resume, overwrite=args.overwrite,
              quiet=not show_progress(args), device=args.device,
              keep_checkpoint=args.keep_checkpoint)
    cal = s["validation_calibration"]["max_coverage_error"]
    print(f"trained {s['epochs']} epochs ({s['stop_reason']}), best validation loss "
          f"{s['best_val_loss']:.4f} at epoch {s['best_epoch']}, {s['seconds']:.0f} s on "
          f"{s['device']}")
    print("validation max coverage error: " + ", ".join(f"{k} {v:.3f}" for k, v in cal.items()))
    print(f"wrote {args.out}/weights.safetensors, config.json, training.json")
    return 0
