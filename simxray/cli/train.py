"""``simxray train DATASET.h5 --config training/npe_default.toml --out POSTERIOR_DIR``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a neural posterior (NPE) on a simulated dataset",
        description="Train an amortised neural posterior q(theta | counts) (zuko spline flow + "
                    "1-D CNN/ResNet embedding) on a dataset from 'simxray simulate'. Writes "
                    "weights.safetensors + config.json (no pickles) to --out; a checkpoint is "
                    "saved every epoch, so an interrupted run continues with --resume.")
    p.add_argument("dataset", help="HDF5 dataset written by 'simxray simulate'")
    p.add_argument("--config", help="training TOML (default: built-in settings, as in "
                                    "training/npe_default.toml)")
    p.add_argument("--out", required=True, help="posterior directory to write")
    p.add_argument("--embedding", choices=("cnn", "resnet", "mlp"), help="override embedding.type")
    p.add_argument("--transform", choices=("log1p", "anscombe", "sqrt"),
                   help="override embedding.transform (variance-stabilising transform)")
    p.add_argument("--max-epochs", type=int, help="override training.max_epochs")
    p.add_argument("--max-minutes", type=float, help="stop after this much training time")
    p.add_argument("--seed", type=int, help="override training.seed")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--overwrite", action="store_true", help="replace an existing posterior in --out")
    p.add_argument("--keep-checkpoint", action="store_true",
                   help="keep checkpoint/ (optimiser state) after training finishes")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default %(default)s: fastest on a busy machine)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..inference.npe import load_settings, train

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {}
    if args.embedding:
        overrides["embedding.type"] = args.embedding
    if args.transform:
        overrides["embedding.transform"] = args.transform
    if args.max_epochs:
        overrides["training.max_epochs"] = args.max_epochs
    if args.max_minutes:
        overrides["training.max_minutes"] = args.max_minutes
    if args.seed is not None:
        overrides["training.seed"] = args.seed
    settings = load_settings(args.config, overrides)
    s = train(args.dataset, settings, args.out, resume=args.resume, overwrite=args.overwrite,
              quiet=args.quiet, device=args.device, keep_checkpoint=args.keep_checkpoint)
    cal = s["validation_calibration"]["max_coverage_error"]
    print(f"trained {s['epochs']} epochs ({s['stop_reason']}), best validation loss "
          f"{s['best_val_loss']:.4f} at epoch {s['best_epoch']}, {s['seconds']:.0f} s on "
          f"{s['device']}")
    print("validation max coverage error: " + ", ".join(f"{k} {v:.3f}" for k, v in cal.items()))
    print(f"wrote {args.out}/weights.safetensors, config.json, training.json")
    return 0
