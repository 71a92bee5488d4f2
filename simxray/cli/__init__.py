"""The ``simxray`` command line: thin layer that parses, calls the library, reports.

Each sub-command lives in its own module ``simxray/cli/<name>.py`` exposing
``register(subparsers)``, which adds a parser and sets ``func``.  Heavy imports
(torch, sbi, sherpa) happen inside the command functions, never at import.
User errors (:class:`simxray.errors.SimxrayError`) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import SimxrayError

COMMANDS = (
    "model", "predict", "simulate", "tables", "train", "fit", "validate",
    "train_emulator", "validate_emulator", "adapt", "eventsim", "train_ppad", "encode",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="simxray", description="Simulation-based inference for piled-up X-ray spectra.")
    parser.add_argument("--version", action="version", version=f"simxray {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except SimxrayError as exc:
        print(f"simxray {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"simxray {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
