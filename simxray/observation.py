"""An observed spectrum with everything a fit needs: :class:`Observation`.

Every fit path (``simxray.fit``, the CLI's ``fit``, the Sherpa bridge) consumes this one
object.  It holds the counts per channel, the responses (ARF, RMF), the exposure, the
BACKSCAL/AREASCAL scalings, the background spectrum, the CCD frame time, FRACEXPO, the
QUALITY and GROUPING columns, and an energy filter.

Conventions (those of XSPEC and Sherpa):

* ``notice(lo, hi)`` / ``ignore(lo, hi)`` in keV select channels whose EBOUNDS bin
  overlaps the interval (as Sherpa does for ungrouped data: ``notice(1, 7)`` on ACIS keeps
  channels 69-480).  Filters combine in the order given; ``notice()`` resets.
* Channels with QUALITY > 0 are excluded (XSPEC's and Sherpa's ``ignore_bad``); the user is
  told once how many.
* GROUPING is kept for plots only: the Poisson likelihood (C-stat / W-stat) always works
  on ungrouped channels.
* Pileup sees the whole spectrum (photons from outside the filter pile into it); only the
  likelihood and neural networks see the noticed channels: :attr:`mask`.

Example
-------
>>> import simxray as sx
>>> obs = sx.Observation.from_pha(sx.datasets.default_spectrum_path())
>>> obs.notice(1, 7)
>>> int(obs.mask.sum()), obs.noticed_channels
(412, (69, 480))
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np

from .errors import ParameterError, SimxrayError
from .provenance import sha256

log = logging.getLogger(__name__)


def _file_id(obj) -> dict | None:
    p = getattr(obj, "path", None) if obj is not None else None
    if p is None:
        return None
    p = Path(p)
    return {"name": p.name, "path": str(p.resolve()),
            "sha256": sha256(p) if p.is_file() else None}


class Observation:
    """A PHA spectrum, its responses and background, and an energy filter.

    Build it with :meth:`from_pha` (or from an already read
    :class:`~simxray.io.ogip.Spectrum`).  Attributes are read-only views of the spectrum;
    the filter lives in :attr:`mask`.
    """

    def __init__(self, spectrum, *, fracexp: float | None = None, name: str | None = None):
        self.spectrum = spectrum
        self.path = Path(spectrum.path) if spectrum.path is not None else None
        self.name = name or (self.path.name if self.path else "spectrum")
        c = np.asarray(spectrum.counts, dtype=float)
        if c.ndim != 1 or c.size == 0:
            raise SimxrayError("no channels; expected a non-empty spectrum", path=self.path,
                               field="COUNTS")
        if not np.all(np.isfinite(c)) or np.any(c < 0):
            raise SimxrayError("counts must be finite and non-negative", path=self.path,
                               field="COUNTS")
        if np.any(c != np.round(c)):
            warnings.warn(f"{self.path}: COUNTS: non-integer counts; the Poisson likelihood "
                          "treats them as counts (expected integers)", stacklevel=2)
        self.counts = c
        if spectrum.rmf is None:
            why = spectrum.missing.get("RESPFILE", "no RMF named")
            raise SimxrayError(f"{why}; expected an RMF (RESPFILE in the header, or rmf=)",
                               path=self.path, field="RESPFILE")
        spectrum.require_responses()
        q = spectrum.quality
        self.quality = (np.zeros(c.size, dtype=np.int16) if q is None
                        else np.broadcast_to(np.asarray(q, dtype=np.int16), c.shape).copy())
        g = spectrum.grouping
        self.grouping = None if g is None else np.broadcast_to(np.asarray(g, dtype=np.int16),
                                                               c.shape).copy()
        self.good = self.quality <= 0
        if not self.good.any():
            raise SimxrayError("QUALITY flags every channel as bad; expected some good channels",
                               path=self.path, field="QUALITY")
        n_bad = int((~self.good).sum())
        if n_bad:
            log.debug("%s: %d channels with QUALITY > 0 are excluded", self.name, n_bad)
        self._notice = np.ones(c.size, dtype=bool)
        if fracexp is None:
            fx = (spectrum.arf.header.get("FRACEXPO") if spectrum.arf is not None else None)
            fracexp = float(fx) if fx is not None else None
        self.fracexp = fracexp
        self._response = None

    # -- construction ----------------------------------------------------------------
    @classmethod
    def from_pha(cls, path: str | os.PathLike, *, arf=None, rmf=None, background=None,
                 frame_time: float | None = None, row: int | None = None,
                 tg_m: int | None = None, tg_part: int | None = None,
                 fracexp: float | None = None) -> Observation:
        """Read a PHA I/II file with the ARF, RMF and background its header names.

        ``arf``/``rmf``/``background`` (paths; ``"none"`` for none) override the header;
        ``frame_time`` (s) overrides TIMEDEL; ``fracexp`` overrides the ARF's FRACEXPO.
        """
        from .io.ogip import read_pha

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            spec = read_pha(path, row=row, tg_m=tg_m, tg_part=tg_part, frame_time=frame_time,
                            arf=arf, rmf=rmf, background=background)
        obs = cls(spec, fracexp=fracexp)
        obs.read_warnings = [str(w.message) for w in caught]
        for w in obs.read_warnings:
            log.warning("%s", w)
        return obs

    read_warnings: list[str] = []

    # -- plain views -----------------------------------------------------------------
    @property
    def channel(self) -> np.ndarray:
        """Channel numbers (C,) int."""
        return np.asarray(self.spectrum.channel).astype(int)

    @property
    def n_channels(self) -> int:
        return int(self.counts.size)

    @property
    def e_min(self) -> np.ndarray:
        """Lower channel energies (C,) keV from the RMF's EBOUNDS."""
        return np.asarray(self.spectrum.rmf.e_min, dtype=float)

    @property
    def e_max(self) -> np.ndarray:
        return np.asarray(self.spectrum.rmf.e_max, dtype=float)

    @property
    def exposure(self) -> float:
        """Exposure time (s)."""
        return float(self.spectrum.exposure)

    @property
    def frame_time(self) -> float | None:
        """CCD frame time (s): user override > TIMEDEL > FRAMETIM > EXPTIME + 0.04104."""
        return self.spectrum.frame_time

    @property
    def backscal(self):
        return self.spectrum.backscal

    @property
    def areascal(self):
        return self.spectrum.areascal

    @property
    def arf(self):
        return self.spectrum.arf

    @property
    def rmf(self):
        return self.spectrum.rmf

    @property
    def background(self):
        """The background :class:`~simxray.io.ogip.Spectrum` or None."""
        return self.spectrum.background

    @property
    def background_counts(self) -> np.ndarray | None:
        b = self.spectrum.background
        return None if b is None else np.asarray(b.counts, dtype=float)

    @property
    def background_scale(self) -> float | np.ndarray | None:
        """Source-to-background (exposure × BACKSCAL × AREASCAL) ratio, or None."""
        return None if self.spectrum.background is None else self.spectrum.background_scale

    # -- filter ----------------------------------------------------------------------
    def _overlap(self, lo: float | None, hi: float | None) -> np.ndarray:
        lo = -np.inf if lo is None else float(lo)
        hi = np.inf if hi is None else float(hi)
        if not lo < hi:
            raise ParameterError(f"expected lo < hi keV, got {lo:g}:{hi:g}", field="energy")
        return (self.e_max > lo) & (self.e_min < hi)

    def notice(self, lo: float | None = None, hi: float | None = None) -> None:
        """Add channels overlapping [lo, hi] keV to the filter (no arguments: all)."""
        if lo is None and hi is None:
            self._notice[:] = True
            return
        if not getattr(self, "_filtered", False):
            self._notice[:] = False
            self._filtered = True
        self._notice |= self._overlap(lo, hi)
        self._check_mask(lo, hi)

    def notice_channels(self, first: int, last: int) -> None:
        """Notice channels first..last (channel numbers, inclusive) only."""
        ch = self.channel
        self._notice[:] = (ch >= int(first)) & (ch <= int(last))
        self._filtered = True
        if not self.mask.any():
            raise ParameterError(f"no good channel in {first}..{last}", path=self.path,
                                 field="channels")

    @property
    def filtered(self) -> bool:
        """True once notice()/ignore() narrowed the channels."""
        return bool(getattr(self, "_filtered", False)) and not self._notice.all()

    def ignore(self, lo: float | None = None, hi: float | None = None) -> None:
        """Remove channels overlapping [lo, hi] keV from the filter."""
        self._filtered = True
        self._notice &= ~self._overlap(lo, hi)
        self._check_mask(lo, hi)

    def _check_mask(self, lo, hi) -> None:
        if not self.mask.any():
            rng = f"{'' if lo is None else f'{lo:g}'}:{'' if hi is None else f'{hi:g}'}"
            raise ParameterError(f"no good channel is left after the energy filter {rng} keV "
                                 f"(channels cover {self.e_min[0]:.3g}-{self.e_max[-1]:.3g} keV)",
                                 path=self.path, field="energy")

    @property
    def mask(self) -> np.ndarray:
        """Channels (C,) the likelihood sees: noticed and QUALITY 0."""
        return self._notice & self.good

    @property
    def noticed_slice(self) -> slice:
        """The contiguous range of channel indices covering every noticed channel."""
        idx = np.flatnonzero(self.mask)
        return slice(int(idx[0]), int(idx[-1]) + 1)

    @property
    def noticed_channels(self) -> tuple[int, int]:
        """(first, last) noticed channel numbers."""
        sl = self.noticed_slice
        ch = self.channel
        return int(ch[sl.start]), int(ch[sl.stop - 1])

    @property
    def energy_range(self) -> tuple[float, float]:
        """(lo, hi) keV covered by the noticed channels."""
        sl = self.noticed_slice
        return float(self.e_min[sl.start]), float(self.e_max[sl.stop - 1])

    @property
    def noticed_counts(self) -> np.ndarray:
        return self.counts[self.mask]

    # -- grouping (plots only) -------------------------------------------------------
    def groups(self, min_counts: int | None = None) -> list[np.ndarray]:
        """Channel-index groups (for plots) inside the noticed range: the file's GROUPING
        (1 starts a group, -1 continues it) or, with ``min_counts``, groups of at least
        that many counts.  The likelihood never uses them."""
        sl = self.noticed_slice
        idx = np.arange(sl.start, sl.stop)
        idx = idx[self.mask[idx]]
        if min_counts:
            out, cur, tot = [], [], 0.0
            for i in idx:
                cur.append(i)
                tot += self.counts[i]
                if tot >= min_counts:
                    out.append(np.array(cur))
                    cur, tot = [], 0.0
            if cur:
                if out:
                    out[-1] = np.concatenate([out[-1], cur])
                else:
                    out.append(np.array(cur))
            return out
        if self.grouping is None:
            return [np.array([i]) for i in idx]
        out: list[list[int]] = []
        for i in idx:
            if self.grouping[i] >= 0 or not out:
                out.append([i])
            else:
                out[-1].append(i)
        return [np.array(g) for g in out]

    # -- instrument ------------------------------------------------------------------
    def response(self, device=None):
        """The :class:`~simxray.instrument.response.Response` (ARF × exposure, RMF)."""
        if self._response is None:
            from .instrument.response import Response

            self._response = Response.from_spectrum(self.spectrum, self.exposure)
        return self._response

    def identity(self) -> dict:
        """Input files (name, path, sha256), exposure, frame time, FRACEXPO and the filter:
        what a trained network must match to be used for this observation."""
        sp = self.spectrum
        return {"spectrum": _file_id(sp), "arf": _file_id(sp.arf), "rmf": _file_id(sp.rmf),
                "background": _file_id(sp.background), "exposure": self.exposure,
                "frame_time": self.frame_time, "fracexp": self.fracexp,
                "channels": list(self.noticed_channels),
                "n_noticed": int(self.mask.sum()),
                "energy_range": [round(v, 6) for v in self.energy_range]}

    def __repr__(self) -> str:
        lo, hi = self.energy_range
        return (f"Observation({self.name!r}, {self.counts.sum():.0f} counts, exposure "
                f"{self.exposure:.6g} s, frame time {self.frame_time} s, noticed "
                f"{lo:.3g}-{hi:.3g} keV: {int(self.mask.sum())} channels)")


def as_observation(obj, **kw) -> Observation:
    """An :class:`Observation` from itself, a PHA path or a read Spectrum."""
    if isinstance(obj, Observation):
        return obj
    if isinstance(obj, str | os.PathLike):
        return Observation.from_pha(obj, **kw)
    if hasattr(obj, "counts") and hasattr(obj, "rmf"):
        return Observation(obj)
    raise SimxrayError(f"expected an Observation, a PHA path or a Spectrum, got {type(obj).__name__}",
                       field="observation")


__all__ = ["Observation", "as_observation"]
