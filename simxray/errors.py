"""User-facing errors.

Every problem caused by user input (a file, a parameter, a config) raises
:class:`SimxrayError`; the CLI prints its one-line message and exits with
status 2.  The message names the file, the field and what was expected.
"""

from __future__ import annotations


class SimxrayError(Exception):
    """A problem with user input: printed as one line, exit code 2."""

    def __init__(self, message: str, *, path: str | None = None, field: str | None = None):
        self.path = str(path) if path is not None else None
        self.field = field
        parts = []
        if self.path:
            parts.append(self.path)
        if field:
            parts.append(field)
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class FileFormatError(SimxrayError):
    """A file is unreadable, corrupt, or lacks an expected extension/column."""


class ParameterError(SimxrayError):
    """A parameter is unknown, NaN, or outside its hard limits."""


class ModelError(SimxrayError):
    """An unknown model or a malformed model expression."""


class ConfigError(SimxrayError):
    """A configuration file is unreadable or inconsistent."""


class ResponseMismatchError(SimxrayError):
    """Responses, spectra or trained models that do not belong together."""


class OutputError(SimxrayError):
    """An output path that cannot be written: missing or unwritable folder, wrong kind,
    an input of the same command, inside the package, or an earlier output without
    ``--overwrite``."""


class LockedError(OutputError):
    """An output that another live process is writing (a campaign has one writer)."""


class CheckFailed(Exception):
    """A check that ran and failed (calibration, a benchmark goal): the CLI prints the
    one-line message and exits with status 1 (not a user error)."""
