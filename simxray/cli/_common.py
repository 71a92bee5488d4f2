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


#: how each shared flag's help begins (the same words in every command; tests/test_cli_validate.py)
HELP_STARTS = {
    "--n": "number of", "--config": "TOML", "--param": "NAME=VALUE", "--seed": "random seed",
    "--threads": "torch CPU threads", "--device": "torch device", "--quiet": "print only warnings",
    "--verbose": "more messages", "--overwrite": "replace",
}


def add_threads(p: argparse.ArgumentParser, detail: str = "fastest on a busy machine") -> None:
    """``--threads N`` (torch CPU threads; the CLI sets them once, before the command runs)."""
    p.add_argument("--threads", type=int, default=THREADS_DEFAULT, metavar="N",
                   help=f"torch CPU threads (default %(default)s: {detail})")


def add_param(p: argparse.ArgumentParser) -> None:
    """``--param NAME=VALUE`` (repeatable): a model parameter value."""
    p.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="NAME=VALUE: a model parameter (repeatable; NAME=V,NAME=V also accepted)")


def add_spectrum_model(p: argparse.ArgumentParser) -> None:
    """The positional SPECTRUM (whose header names the responses), ``--model EXPR`` and
    ``--param`` of the commands that put a model through a spectrum's responses."""
    p.add_argument("spectrum", metavar="SPECTRUM",
                   help="PHA file whose header names the ARF/RMF, or 'default' (embedded NGC 4258 ACIS-S)")
    p.add_argument("--model", required=True, metavar="EXPR", help="model expression, e.g. 'tbabs*powerlaw'")
    add_param(p)


def add_seed(p: argparse.ArgumentParser, default: int | None = 0, what: str = "",
             default_text: str | None = None) -> None:
    """``--seed N``: the random seed (of ``what``); ``default_text`` describes a None default."""
    d = default_text if default is None and default_text else "%(default)s"
    p.add_argument("--seed", type=int, default=default, metavar="N",
                   help=f"random seed{' of ' + what if what else ''} (default {d})")


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


__all__ = ["HELP_STARTS", "THREADS_DEFAULT", "add_device", "add_overwrite", "add_param", "add_seed",
           "add_spectrum_model", "add_threads", "add_verbosity",
           "positive", "reject_ignored", "show_progress"]
