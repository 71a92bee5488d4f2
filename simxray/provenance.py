"""Provenance recorded in every output: package version, git commit, inputs, seed."""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import subprocess
from pathlib import Path

from . import __version__
from .compat import UTC

_COMMIT: str | None = None


def git_commit() -> str:
    """The simxray source tree's git commit (``unknown`` outside a checkout)."""
    global _COMMIT
    if _COMMIT is None:
        root = Path(__file__).resolve().parent.parent
        try:
            out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                 text=True, timeout=5)
            _COMMIT = out.stdout.strip() if out.returncode == 0 else "unknown"
            if _COMMIT != "unknown":
                dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                       capture_output=True, text=True, timeout=5).stdout.strip()
                if dirty:
                    _COMMIT += "-dirty"
        except (OSError, subprocess.SubprocessError):
            _COMMIT = "unknown"
    return _COMMIT


def sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def provenance(**extra) -> dict:
    """A dict of version, commit, time, host and any extra fields (inputs, seed)."""
    info = {
        "simxray_version": __version__,
        "git_commit": git_commit(),
        "created": _dt.datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
    }
    info.update(extra)
    return info


def atomic_path(path: str | os.PathLike) -> Path:
    """A temporary sibling of ``path`` to write to before :func:`os.replace`."""
    p = Path(path)
    return p.with_name(f".{p.name}.{os.getpid()}.tmp")
