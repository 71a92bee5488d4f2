"""Embedded default data: the NGC 4258 ACIS-S spectrum (ObsID 1618) and its responses.

Used when the user names no spectrum or response.  See ``simxray/data/README.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .errors import FileFormatError

if TYPE_CHECKING:
    from .io.ogip import ARF, RMF, Spectrum

DATA_DIR = Path(__file__).resolve().parent / "data"

DEFAULT_SPECTRUM = "source_bin10.pi"
DEFAULT_ARF = "arf.fits"
DEFAULT_RMF = "rmf.fits"
DEFAULT_BACKGROUND = "background.pi"


def data_path(name: str) -> Path:
    """Path of an embedded data file (relative to ``simxray/data``); FileFormatError if absent."""
    p = (DATA_DIR / name).resolve()
    if DATA_DIR not in p.parents or not p.is_file():
        have = sorted(q.name for q in DATA_DIR.iterdir() if q.is_file() and q.suffix != ".md")
        raise FileFormatError(f"no such embedded data file; expected one of {', '.join(have)}",
                              path=DATA_DIR / name, field="name")
    return p


def default_spectrum_path() -> Path:
    """The embedded NGC 4258 PHA (``source_bin10.pi``)."""
    return data_path(DEFAULT_SPECTRUM)


def default_arf_path() -> Path:
    """The embedded ACIS-S ARF (``arf.fits``)."""
    return data_path(DEFAULT_ARF)


def default_rmf_path() -> Path:
    """The embedded ACIS-S RMF (``rmf.fits``)."""
    return data_path(DEFAULT_RMF)


def default_background_path() -> Path:
    """The embedded NGC 4258 background PHA (``background.pi``)."""
    return data_path(DEFAULT_BACKGROUND)


def default_spectrum(**kwargs) -> Spectrum:
    """The NGC 4258 spectrum with its ARF, RMF and background (``read_pha`` keywords pass on)."""
    from .io.ogip import read_pha

    return read_pha(default_spectrum_path(), **kwargs)


def default_arf() -> ARF:
    from .io.ogip import read_arf

    return read_arf(default_arf_path())


def default_rmf() -> RMF:
    from .io.ogip import read_rmf

    return read_rmf(default_rmf_path())
