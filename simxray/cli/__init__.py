"""The ``simxray`` command line: thin layer that parses, calls the library, reports.

Each sub-command lives in its own module ``simxray/cli/<name>.py`` exposing
``register(subparsers)``, which adds a parser and sets ``func``.  Heavy imports
(torch, sbi, sherpa) happen inside the command functions, never at import.

Shared conventions (see :mod:`simxray.cli._common` and the README's "Exit codes"):

* every command takes ``-q/--quiet``, ``-v/--verbose`` and ``--threads``; logging is
  configured here, once, from them (messages on stderr; results on stdout); Python
  warnings print as one line;
* torch's CPU threads are set here, once, from ``--threads`` (library modules never do);
* exit codes: 0 success, 1 a check that ran and failed (:class:`CheckFailed`), 2 bad
  input (:class:`SimxrayError`, one line), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import warnings

from ..errors import CheckFailed, SimxrayError
from ._common import add_threads, add_verbosity

COMMANDS = (
    "model", "predict", "simulate", "tables", "train", "fit", "validate",
    "train_emulator", "validate_emulator", "adapt", "eventsim", "train_ppad", "encode",
    "demo",
)


def _leaf_parsers(parser: argparse.ArgumentParser):
    """Every parser below ``parser`` that runs a command (sub-sub-commands included)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield sub
                yield from _leaf_parsers(sub)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="simxray", description="Simulation-based inference for piled-up X-ray spectra.",
        epilog="Exit codes: 0 success, 1 a check that ran and failed, 2 bad input, "
               "130 interrupted. 'simxray COMMAND --help' describes each command.")
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
    for p in _leaf_parsers(parser):
        add_verbosity(p)
        if "--threads" not in p._option_string_actions:
            add_threads(p)
    return parser


class _StderrHandler(logging.Handler):
    """Writes to the *current* ``sys.stderr`` (so redirections and test captures work)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


class _Formatter(logging.Formatter):
    def __init__(self, command: str):
        super().__init__()
        self.command = command

    def format(self, record: logging.LogRecord) -> str:
        msg = " ".join(record.getMessage().split("\n"))
        if record.levelno >= logging.WARNING:
            return f"simxray {self.command}: {record.levelname.lower()}: {msg}"
        return msg


def configure_logging(command: str, verbose: int = 0, quiet: int = 0) -> logging.Logger:
    """Set up the ``simxray`` logger once per invocation: INFO by default, DEBUG with -v,
    WARNING with -q, ERROR with -qq; one line per message on stderr."""
    logger = logging.getLogger("simxray")
    for h in list(logger.handlers):
        if isinstance(h, _StderrHandler):
            logger.removeHandler(h)
    h = _StderrHandler()
    h.setFormatter(_Formatter(command))
    logger.addHandler(h)
    quiet = int(quiet or 0)
    level = (logging.ERROR if quiet >= 2 else logging.WARNING if quiet else
             logging.DEBUG if verbose else logging.INFO)
    logger.setLevel(level)
    logger.propagate = False
    return logger


@contextlib.contextmanager
def _one_line_warnings(logger: logging.Logger):
    """Python warnings as one log line each (``simxray CMD: warning: ...``)."""
    old = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        logger.warning("%s", message)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = old


def _set_threads(n) -> None:
    """torch CPU threads for this command (the only place they are set).

    torch already imported: ``torch.set_num_threads``; otherwise ``OMP_NUM_THREADS`` /
    ``MKL_NUM_THREADS``, which torch reads when a command imports it (no torch import
    for commands that do not need it).
    """
    if n is None:
        return
    if isinstance(n, bool) or not n >= 1:
        raise SimxrayError(f"expected a positive number of threads, got {n}", field="--threads")
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(int(n))
    else:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(int(n))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logger = configure_logging(args.command, getattr(args, "verbose", 0), getattr(args, "quiet", 0))
    try:
        with _one_line_warnings(logger):
            _set_threads(getattr(args, "threads", None))
            rc = args.func(args)
    except SimxrayError as exc:
        print(f"simxray {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except CheckFailed as exc:
        print(f"simxray {args.command}: check failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"simxray {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:   # disk full, permissions changed mid-run...: one line, no traceback
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"simxray {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
