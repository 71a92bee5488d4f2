"""The CLI's shared vocabulary: one flag for one idea in every command.

``--n`` (how many), ``--config`` (a TOML file), ``--param NAME=VALUE``, ``--out`` (the
output, checked by :mod:`simxray.io.outputs` before any work), ``--seed``, ``--threads``
(torch CPU threads, default :data:`THREADS_DEFAULT`, set once by the CLI), ``--device``,
``-q/--quiet`` and ``-v/--verbose`` (logging level; progress bars only on a terminal) and
``--overwrite`` (replace an earlier output; refused otherwise).
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import ParameterError

THREADS_DEFAULT = 1
LOG = logging.getLogger("simxray.cli")


def add_overwrite(p: argparse.ArgumentParser, what: str = "an earlier output at --out") -> None:
    """``--overwrite``: replace ``what`` (refused without it)."""
    p.add_argument("--overwrite", action="store_true", help=f"replace {what}")


def add_threads(p: argparse.ArgumentParser) -> None:
    """``--threads N`` (torch CPU threads; the CLI sets them once, before the command runs)."""
    p.add_argument("--threads", type=int, default=THREADS_DEFAULT,
                   help="torch CPU threads (default %(default)s: fastest on a busy machine)")


def add_device(p: argparse.ArgumentParser, default: str = "cpu") -> None:
    """``--device`` (a torch device string)."""
    p.add_argument("--device", default=None,
                   help=f"torch device, e.g. cpu or cuda (default: {default})")


def add_verbosity(p: argparse.ArgumentParser) -> None:
    """``-q/--quiet`` (warnings and errors only, no progress bars) and ``-v/--verbose``."""
    opts = p._option_string_actions
    if "--quiet" not in opts:
        p.add_argument("-q", "--quiet", action="count", default=0,
                       help="print only warnings and errors (-qq: only errors); no progress bars")
    elif "-q" not in opts:
        p.add_argument("-q", dest="quiet", action="store_true", help="same as --quiet")
    if "--verbose" not in opts:
        p.add_argument("-v", "--verbose", action="count", default=0,
                       help="more messages (-v: debug); repeatable")


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars: only when not quiet and stderr is a terminal."""
    return not getattr(args, "quiet", 0) and sys.stderr.isatty()


def reject_ignored(args: argparse.Namespace, when: str, flags: dict[str, object]) -> None:
    """Raise ParameterError for each flag in ``flags`` (name -> value given) that ``when``
    makes meaningless, instead of silently ignoring it."""
    for flag, value in flags.items():
        if value not in (None, False, [], 0, ""):
            raise ParameterError(f"is not used {when}; expected it left out", field=flag)


def positive(args: argparse.Namespace, *names: str, kind: str = "integer") -> None:
    """Raise ParameterError unless each named option is > 0 (None: not given, fine)."""
    for name in names:
        v = getattr(args, name, None)
        if v is not None and not v > 0:
            raise ParameterError(f"expected a positive {kind}, got {v}",
                                 field="--" + name.replace("_", "-"))


__all__ = ["THREADS_DEFAULT", "add_device", "add_overwrite", "add_threads", "add_verbosity",
           "positive", "reject_ignored", "show_progress"]
