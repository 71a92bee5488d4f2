"""File input/output: OGIP spectra and responses (:mod:`simxray.io.ogip`), tables, events.

Names are imported lazily so that ``import simxray.io`` stays cheap for the CLI.
"""

from __future__ import annotations

import importlib

_OGIP = ("ARF", "RMF", "Spectrum", "check_compatible", "read_arf", "read_pha", "read_rmf",
         "read_provenance", "resolve_linked", "write_arf", "write_pha", "write_rmf")

__all__ = list(_OGIP)


def __getattr__(name: str):
    if name in _OGIP:
        return getattr(importlib.import_module(".ogip", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
