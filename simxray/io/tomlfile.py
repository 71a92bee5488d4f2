"""Reading TOML configuration files with one-line errors (simulation, training, pairs)."""

from __future__ import annotations

import os
from pathlib import Path

from ..compat import tomllib
from ..errors import ConfigError


def read_toml(path: str | os.PathLike, expected: str = "a TOML file") -> dict:
    """The parsed TOML document at ``path``.

    Raises :class:`ConfigError` naming the file when it is missing ("file not found;
    expected <expected>"), unreadable or not UTF-8, or not valid TOML ("invalid TOML: ...").
    """
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"file not found; expected {expected}", path=str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read ({exc.__class__.__name__}); expected a UTF-8 TOML file",
                          path=str(p)) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", path=str(p)) from None
