"""Chandra event lists: the :class:`EventList` container, FITS reading/writing and
an HDF5 format for many event lists (simulated populations, training sets).

Reading (:func:`read_events`) follows the Chandra evt2 conventions:

* ``EVENTS`` extension (any HDU; see :func:`simxray.events.realfile._events_hdu`) with a
  ``TIME`` column (s, mission time) and ``ENERGY``
  (eV unless ``TUNIT`` says keV) or, failing that, ``PI`` (ACIS: 14.6 eV per
  channel, the channel centre ``(PI - 0.5) * 0.0146`` keV is used).
* ``GTI`` extensions (``START``, ``STOP``).  Chandra writes one per ACIS chip
  (keyword ``CCD_ID``); when the events carry ``CCD_ID`` only the GTIs of the
  chip holding most events are used, otherwise all GTIs are merged (union).
* Frame time from ``TIMEDEL`` (or ``EXPTIME`` + 0.04104 s), else 3.24104 s.

Documented handling of awkward files:

* no ``TIME`` column, neither ``ENERGY`` nor ``PI``, NaN times, GTIs with
  STOP < START: :class:`~simxray.errors.FileFormatError` naming file and field;
* no GTI extension: an error by default; ``missing_gti="header"`` uses
  ``[TSTART, TSTOP]`` from the header instead (and errors if those are absent);
* unsorted times: events are sorted (stably) and ``meta["sorted_on_read"]`` is set;
* events outside the GTIs are dropped (``meta["n_outside_gti"]`` counts them);
* zero events: a valid, empty :class:`EventList` (the PPAD encoder refuses it
  with a clear error, since a rate shape cannot be estimated from no events);
* truncated or corrupt files: the headers are walked first
  (:func:`simxray.events.realfile.fits_problem`), so a cut file is reported as truncated
  (one-line :class:`~simxray.errors.FileFormatError`) before astropy reads its data.

Real Chandra files with a source to extract (sky regions, background, grating orders,
per-CCD GTIs, an RMF for PI-only files) are read by
:func:`simxray.events.realfile.read_observation`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FileFormatError

FRAME_TIME = 3.24104
"""Default ACIS frame time (s): 3.2 s exposure + 41.04 ms transfer."""

ACIS_PI_KEV = 0.0146
"""ACIS PI channel width (keV)."""


@dataclass
class EventList:
    """Photon events of one source: times (s), energies (keV) and good time intervals.

    ``gti`` is (K, 2) [start, stop] in s, sorted and non-overlapping; ``time`` is sorted
    and every event lies inside a GTI (use :meth:`clean` after building one by hand).
    """

    time: np.ndarray
    energy: np.ndarray
    gti: np.ndarray
    frame_time: float | None = FRAME_TIME
    name: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.time = np.asarray(self.time, dtype=np.float64).ravel()
        self.energy = np.asarray(self.energy, dtype=np.float64).ravel()
        self.gti = np.asarray(self.gti, dtype=np.float64).reshape(-1, 2)
        if self.time.shape != self.energy.shape:
            raise FileFormatError(f"TIME has {self.time.size} rows but ENERGY has {self.energy.size}",
                                  path=self.name or None, field="EVENTS")

    @property
    def n_events(self) -> int:
        return int(self.time.size)

    @property
    def tstart(self) -> float:
        """Start of the first GTI (s)."""
        return float(self.gti[0, 0]) if len(self.gti) else float("nan")

    @property
    def tstop(self) -> float:
        """End of the last GTI (s)."""
        return float(self.gti[-1, 1]) if len(self.gti) else float("nan")

    @property
    def span(self) -> float:
        """tstop - tstart (s)."""
        return self.tstop - self.tstart

    @property
    def exposure(self) -> float:
        """Total good time (s)."""
        return float(np.sum(self.gti[:, 1] - self.gti[:, 0]))

    @property
    def pi(self) -> np.ndarray:
        """ACIS PI channels (1-based, 14.6 eV wide) of the energies."""
        return np.floor(self.energy / ACIS_PI_KEV).astype(np.int32) + 1

    def clean(self) -> EventList:
        """Validate and normalise in place: merge GTIs, sort times, drop events outside GTIs."""
        where = self.name or None
        if not np.all(np.isfinite(self.time)):
            raise FileFormatError("TIME contains NaN or infinite values", path=where, field="EVENTS.TIME")
        if len(self.gti) == 0:
            raise FileFormatError("no good time intervals", path=where, field="GTI")
        if np.any(~np.isfinite(self.gti)) or np.any(self.gti[:, 1] < self.gti[:, 0]):
            raise FileFormatError("GTI rows must be finite with STOP >= START", path=where, field="GTI")
        self.gti = merge_gti(self.gti)
        if self.time.size > 1 and np.any(np.diff(self.time) < 0):
            order = np.argsort(self.time, kind="stable")
            self.time, self.energy = self.time[order], self.energy[order]
            self.meta["sorted_on_read"] = True
        inside = in_gti(self.time, self.gti)
        if not np.all(inside):
            self.meta["n_outside_gti"] = int(np.sum(~inside))
            self.time, self.energy = self.time[inside], self.energy[inside]
        return self

    def select_energy(self, emin: float, emax: float) -> EventList:
        """A copy with only the events emin <= E < emax (keV)."""
        keep = (self.energy >= emin) & (self.energy < emax)
        return EventList(self.time[keep], self.energy[keep], self.gti.copy(), self.frame_time, self.name,
                         dict(self.meta))


def merge_gti(gti: np.ndarray) -> np.ndarray:
    """Sort GTIs and merge overlapping or touching ones; drop empty ones."""
    g = np.asarray(gti, dtype=np.float64).reshape(-1, 2)
    g = g[g[:, 1] > g[:, 0]]
    if len(g) == 0:
        return g
    g = g[np.argsort(g[:, 0], kind="stable")]
    out = [g[0].copy()]
    for start, stop in g[1:]:
        if start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], stop)
        else:
            out.append(np.array([start, stop]))
    return np.array(out)


def in_gti(t: np.ndarray, gti: np.ndarray) -> np.ndarray:
    """Boolean mask: which times lie in [start, stop] of some GTI (GTIs sorted, disjoint)."""
    t = np.asarray(t, dtype=np.float64)
    if len(gti) == 0:
        return np.zeros(t.shape, dtype=bool)
    idx = np.searchsorted(gti[:, 0], t, side="right") - 1
    ok = idx >= 0
    idx = np.clip(idx, 0, len(gti) - 1)
    return ok & (t <= gti[idx, 1])


# --------------------------------------------------------------------------- FITS


def _column(data, names: Sequence[str]) -> str | None:
    upper = {n.upper(): n for n in data.columns.names}
    for n in names:
        if n in upper:
            return upper[n]
    return None


def read_events(path: str | os.PathLike, *, missing_gti: str = "error") -> EventList:
    """Read a Chandra (or OGIP-like) event file; see the module docstring for the rules.

    ``missing_gti``: ``"error"`` (default) or ``"header"`` (use TSTART/TSTOP when the file
    has no GTI extension).
    """
    from .realfile import open_fits_checked

    path = Path(path)
    hdul = open_fits_checked(path)
    try:
        with hdul:
            return _read_events_hdul(hdul, path, missing_gti)
    except FileFormatError:
        raise
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else ""
        raise FileFormatError(f"corrupt or unreadable event data ({type(exc).__name__}: {msg})",
                              path=path) from None


def _read_events_hdul(hdul, path: Path, missing_gti: str) -> EventList:
    """The body of :func:`read_events` on an open HDUList.  The EVENTS table, the GTI blocks and
    the instrument check are those of :mod:`simxray.events.realfile` (EVENTS in any HDU, GTI
    blocks named ``GTI``/``GTI7``/``STDGTI``, HRC and non-Chandra files refused)."""
    from .realfile import _events_hdu, _gti_ccd, _is_gti, check_instrument

    ev = _events_hdu(hdul, path)
    data, hdr = ev.data, ev.header
    check_instrument(hdul, hdr, path)
    if data is None or len(data.columns) == 0:
        raise FileFormatError("EVENTS extension has no table", path=path, field="EVENTS")
    tcol = _column(data, ["TIME"])
    if tcol is None:
        raise FileFormatError("no TIME column", path=path, field="EVENTS.TIME")
    time = np.asarray(data[tcol], dtype=np.float64)
    ecol = _column(data, ["ENERGY"])
    if ecol is not None:
        unit = str(hdr.get(f"TUNIT{data.columns.names.index(ecol) + 1}", "eV")).strip().lower()
        scale = 1.0 if unit == "kev" else 1e-3
        energy = np.asarray(data[ecol], dtype=np.float64) * scale
        energy_source = "ENERGY"
    else:
        pcol = _column(data, ["PI"])
        if pcol is None:
            raise FileFormatError("neither an ENERGY nor a PI column; cannot assign energy bands",
                                  path=path, field="EVENTS.ENERGY")
        energy = (np.asarray(data[pcol], dtype=np.float64) - 0.5) * ACIS_PI_KEV
        energy_source = "PI"
    ccd_col = _column(data, ["CCD_ID"])
    ccd = int(np.bincount(np.asarray(data[ccd_col], dtype=np.int64)).argmax()) \
        if ccd_col is not None and len(data) else None
    gti_hdus = [h for h in hdul[1:] if _is_gti(h)]
    if ccd is not None:
        matching = [h for h in gti_hdus if _gti_ccd(h) == ccd]
        if matching:
            gti_hdus = matching
    if gti_hdus:
        rows = []
        for h in gti_hdus:
            scol, pcol_ = _column(h.data, ["START"]), _column(h.data, ["STOP"])
            if scol is None or pcol_ is None:
                raise FileFormatError("GTI extension lacks START/STOP columns", path=path, field="GTI")
            rows.append(np.column_stack([h.data[scol], h.data[pcol_]]).astype(np.float64))
        gti = np.concatenate(rows) if rows else np.zeros((0, 2))
        gti_source = "GTI"
    elif missing_gti == "header":
        if "TSTART" not in hdr or "TSTOP" not in hdr:
            raise FileFormatError("no GTI extension and no TSTART/TSTOP keywords", path=path, field="GTI")
        gti = np.array([[float(hdr["TSTART"]), float(hdr["TSTOP"])]])
        gti_source = "TSTART/TSTOP"
    else:
        raise FileFormatError("no GTI extension (pass missing_gti='header' / --gti-from-header to "
                              "use TSTART-TSTOP)", path=path, field="GTI")
    if "TIMEDEL" in hdr:
        frame_time = float(hdr["TIMEDEL"])
    elif "EXPTIME" in hdr:
        frame_time = float(hdr["EXPTIME"]) + 0.04104
    else:
        frame_time = FRAME_TIME
    meta = {"energy_source": energy_source, "gti_source": gti_source, "ccd_id": ccd,
            "object": str(hdr.get("OBJECT", "")), "obs_id": str(hdr.get("OBS_ID", ""))}
    evl = EventList(time, energy, gti, frame_time, name=str(path), meta=meta)
    return evl.clean()


def write_events(path: str | os.PathLike, events: EventList, *, provenance: dict | None = None,
                 overwrite: bool = True) -> Path:
    """Write an evt2-like FITS file: EVENTS (TIME s, ENERGY eV, PI) and one GTI extension.

    The write is atomic (temporary sibling + rename).  ``provenance`` is stored as JSON in
    the primary header keyword ``SXPROV``.
    """
    from astropy.io import fits

    from ..provenance import atomic_path

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileFormatError("exists (overwrite=False)", path=path)
    primary = fits.PrimaryHDU()
    primary.header["TELESCOP"] = "CHANDRA"
    primary.header["INSTRUME"] = "ACIS"
    primary.header["CREATOR"] = "simxray"
    if provenance is not None:
        primary.header["SXPROV"] = json.dumps(provenance, sort_keys=True, default=str)
    cols = [fits.Column("TIME", "D", unit="s", array=events.time),
            fits.Column("ENERGY", "E", unit="eV", array=(events.energy * 1e3).astype(np.float32)),
            fits.Column("PI", "J", array=events.pi)]
    evh = fits.BinTableHDU.from_columns(cols, name="EVENTS")
    gth = fits.BinTableHDU.from_columns([fits.Column("START", "D", unit="s", array=events.gti[:, 0]),
                                         fits.Column("STOP", "D", unit="s", array=events.gti[:, 1])],
                                        name="GTI")
    for h in (evh, gth):
        h.header["TSTART"] = events.tstart
        h.header["TSTOP"] = events.tstop
        h.header["TIMESYS"] = "TT"
        h.header["TIMEUNIT"] = "s"
    if events.frame_time:
        evh.header["TIMEDEL"] = float(events.frame_time)
    evh.header["OBJECT"] = events.name[:68]
    tmp = atomic_path(path)
    fits.HDUList([primary, evh, gth]).writeto(tmp, overwrite=True)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- HDF5 datasets


def write_event_dataset(path: str | os.PathLike, events: Sequence[EventList], *,
                        labels: dict[str, np.ndarray] | None = None, attrs: dict | None = None) -> Path:
    """Write many event lists to one HDF5 file (atomic).

    Layout: ``time``, ``energy`` concatenated (float64 s, float32 keV) with ``offsets``
    (S+1,); ``gti`` (sum K, 2) with ``gti_offsets``; ``frame_time`` (S,); ``names``;
    optional group ``labels`` (one array of length S per key); root attributes from
    ``attrs`` (dicts JSON-encoded), e.g. ``provenance``.
    """
    import h5py

    from ..provenance import atomic_path

    path = Path(path)
    n = np.array([e.n_events for e in events], dtype=np.int64)
    k = np.array([len(e.gti) for e in events], dtype=np.int64)
    tmp = atomic_path(path)
    with h5py.File(tmp, "w") as f:
        f["offsets"] = np.concatenate([[0], np.cumsum(n)])
        f["gti_offsets"] = np.concatenate([[0], np.cumsum(k)])
        f["time"] = np.concatenate([e.time for e in events]) if len(events) else np.zeros(0)
        f["energy"] = (np.concatenate([e.energy for e in events]) if len(events) else np.zeros(0)).astype(np.float32)
        f["gti"] = np.concatenate([e.gti for e in events]) if len(events) else np.zeros((0, 2))
        f["frame_time"] = np.array([e.frame_time or 0.0 for e in events], dtype=np.float64)
        f["names"] = np.array([e.name.encode() for e in events], dtype="S")
        if labels:
            g = f.create_group("labels")
            for key, val in labels.items():
                arr = np.asarray(val)
                if arr.dtype.kind == "U":
                    arr = arr.astype("S")
                g[key] = arr
        f.attrs["format"] = "simxray-events-1"
        for key, val in (attrs or {}).items():
            f.attrs[key] = json.dumps(val, default=str) if isinstance(val, dict | list) else val
    os.replace(tmp, path)
    return path


def read_event_dataset(path: str | os.PathLike, *, indices: Sequence[int] | None = None
                       ) -> tuple[list[EventList], dict[str, np.ndarray], dict]:
    """Read an HDF5 event-list dataset: (event lists, labels, root attributes)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileFormatError("file not found", path=path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise FileFormatError(f"not a readable HDF5 file ({exc})", path=path) from None
    with f:
        if f.attrs.get("format") != "simxray-events-1":
            raise FileFormatError("not a simxray event-list dataset (attribute format != simxray-events-1)",
                                  path=path, field="format")
        off, goff = f["offsets"][:], f["gti_offsets"][:]
        time, energy, gti = f["time"][:], f["energy"][:].astype(np.float64), f["gti"][:]
        ft, names = f["frame_time"][:], [s.decode() for s in f["names"][:]]
        sel = range(len(off) - 1) if indices is None else indices
        events = [EventList(time[off[i]:off[i + 1]], energy[off[i]:off[i + 1]], gti[goff[i]:goff[i + 1]],
                            float(ft[i]) or None, names[i] or f"{path.name}[{i}]") for i in sel]
        labels = {}
        if "labels" in f:
            for key, ds in f["labels"].items():
                arr = ds[:]
                if arr.dtype.kind == "S":
                    arr = arr.astype(str)
                labels[key] = arr if indices is None else arr[np.asarray(indices)]
        attrs = {}
        for key, val in f.attrs.items():
            if isinstance(val, str) and val[:1] in "[{":
                try:
                    val = json.loads(val)
                except json.JSONDecodeError:
                    pass
            attrs[key] = val
    return events, labels, attrs


def load_event_inputs(paths: Sequence[str | os.PathLike], *, missing_gti: str = "error"
                      ) -> tuple[list[EventList], dict[str, np.ndarray]]:
    """Event lists from FITS event files and/or HDF5 event-list datasets (labels from datasets)."""
    events: list[EventList] = []
    labels: dict[str, list] = {}
    for p in paths:
        p = Path(p)
        if p.suffix.lower() in (".h5", ".hdf5"):
            evs, lab, _ = read_event_dataset(p)
            for key, val in lab.items():
                labels.setdefault(key, [None] * len(events)).extend(list(val))
            events.extend(evs)
        else:
            events.append(read_events(p, missing_gti=missing_gti))
        for key in labels:
            labels[key].extend([None] * (len(events) - len(labels[key])))
    out = {}
    for key, val in labels.items():
        if all(v is not None for v in val):
            out[key] = np.asarray(val)
    return events, out
