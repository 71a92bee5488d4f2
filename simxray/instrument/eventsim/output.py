"""Write simulated ACIS event lists as FITS (EVENTS + GTI), Chandra-like columns."""

from __future__ import annotations

import json
import os

import numpy as np
from astropy.io import fits

from ...provenance import atomic_path, provenance
from .simulate import EventList


def write_events(path: str | os.PathLike, events: EventList, *, overwrite: bool = False,
                 extra: dict | None = None) -> None:
    """Write an event list with TIME, X, Y, PI, ENERGY (eV), GRADE, FLTGRADE, NPILE.

    Includes a GTI extension spanning the simulated frames; the header records
    the simulator configuration and provenance.  Written atomically.
    """
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path}: exists (use overwrite)")
    cols = [
        fits.Column("TIME", "D", unit="s", array=events.time),
        fits.Column("X", "J", unit="pixel", array=events.x),
        fits.Column("Y", "J", unit="pixel", array=events.y),
        fits.Column("PI", "J", unit="chan", array=events.pi),
        fits.Column("ENERGY", "E", unit="eV", array=events.energy_ev),
        fits.Column("GRADE", "I", array=events.grade),
        fits.Column("FLTGRADE", "I", array=events.fltgrade),
        fits.Column("NPILE", "I", array=events.npile),
    ]
    ev = fits.BinTableHDU.from_columns(cols, name="EVENTS")
    hdr = ev.header
    cfg = events.config
    hdr["TELESCOP"] = "CHANDRA"
    hdr["INSTRUME"] = "ACIS"
    hdr["HDUCLASS"] = "OGIP"
    hdr["HDUCLAS1"] = "EVENTS"
    hdr["TIMEDEL"] = (cfg.get("frame_time", 3.24104), "[s] frame time")
    hdr["EXPOSURE"] = (events.exposure, "[s]")
    hdr["NFRAMES"] = events.n_frames
    hdr["NPHOTONS"] = (events.n_photons, "incident photons simulated")
    hdr["TSTART"] = 0.0
    hdr["TSTOP"] = events.n_frames * cfg.get("frame_time", 3.24104)
    info = provenance(eventsim=cfg, **(extra or {}))
    hdr["CREATOR"] = "simxray eventsim"
    for i, chunk in enumerate(_chunks(json.dumps(info), 60)):
        hdr[f"PROV{i:03d}"] = chunk
    gti = fits.BinTableHDU.from_columns(
        [fits.Column("START", "D", unit="s", array=[0.0]),
         fits.Column("STOP", "D", unit="s", array=[hdr["TSTOP"]])], name="GTI")
    tmp = atomic_path(path)
    fits.HDUList([fits.PrimaryHDU(), ev, gti]).writeto(tmp, overwrite=True)
    os.replace(tmp, path)


def _chunks(text: str, n: int) -> list[str]:
    return [text[i:i + n] for i in range(0, len(text), n)] or [""]


def events_to_table(events: EventList) -> dict[str, np.ndarray]:
    """Columns of an event list as a dict of arrays."""
    return {"TIME": events.time, "X": events.x, "Y": events.y, "PI": events.pi,
            "ENERGY": events.energy_ev, "GRADE": events.grade, "FLTGRADE": events.fltgrade,
            "NPILE": events.npile}
