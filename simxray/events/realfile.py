"""Real Chandra event files (evt2, CSC regevt3): one source (and its background) per call.

:func:`read_observation` reads an event file as the CXC writes it and returns an
:class:`Observation`: the source's :class:`~simxray.events.eventfile.EventList` (times s,
energies keV, good time intervals), an optional background event list from an annulus
with its area ratio, and a ``meta`` dict recording every choice made.

What it copes with:

* column names in any case (``time``/``TIME``...); the EVENTS block found in any HDU by
  EXTNAME or HDUNAME ``EVENTS`` or, failing that, as the first table with a time and an
  energy or PI column; light curves, spectra, responses and images refused by name;
* Chandra ACIS only: HRC (no event energies) and other missions (``TELESCOP``) refused
  (:func:`check_instrument`);
* energy: the ``energy`` column in eV (``TUNIT`` ``eV``; ``keV`` honoured; no unit and values
  below 50: keV, warned), else ``pi`` converted with an RMF's ``EBOUNDS`` (channel centre
  (E_MIN + E_MAX)/2) when ``rmf`` is given, else the ACIS nominal (pi - 0.5) x 14.6 eV
  (warned); NaN energies dropped and counted (warned);
* one GTI extension per CCD (CIAO: EXTNAME ``GTI``, HDUNAME ``GTI7``, keyword ``CCD_ID``; the
  CCD is also read from names such as ``GTI7``, ``GTI_7``, ``STDGTI07``): the source's GTIs
  are the *intersection* of the GTIs of every CCD holding >= 1 % of its events (a dithered
  source on a chip boundary is only fully exposed when both chips are on); a GTI block
  without a CCD applies to all chips; no GTI block: an error, or with ``missing_gti``
  TSTART/TSTOP or the span of the event times (warned); GTIs that hold none of the selected
  events: an error;
* frame time from ``TIMEDEL`` (not ``EXPTIME``), with warned fallbacks
  (:func:`frame_time_from_header`: continuous clocking 2.85 ms, ``EXPTIME`` + 41.04 ms, the
  ``NROWS`` subarray default); live-time fraction ``DTCOR`` (rates per live second = counts /
  (good time x DTCOR)); the time system (``TIMESYS``, ``TIMEREF``,
  ``MJDREF``/``MJDREFI+MJDREFF``, ``TIMEZERO``) recorded, barycentred times flagged;
* a source region off the field, or on it without events: an error naming the position and
  the events' sky extent; no region on a file whose events spread over > 30 arcsec: warned;
* grating files (``tg_m``/``tg_part`` columns): ``order="zeroth"`` (default for a
  grating observation: ``tg_part == 0``), ``"dispersed"`` (``tg_part`` 1-3, ``|tg_m|`` >= 1,
  no spatial cut: the arms are not near the source in sky pixels), ``"first"``
  (``|tg_m|`` == 1) or ``"all"``;
* source selection: a circle (RA/Dec deg, radius arcsec) through the tangent-plane WCS
  of the ``x``/``y`` columns (``TCRVL``/``TCRPX``/``TCDLT``), or a ds9/CIAO/CSC region file
  (:func:`~simxray.events.regions.read_region`); background: an annulus around the source
  (radii arcsec) or the region file's background, counts scaled by the area ratio;
  without either, the whole file is one source (a cut-out such as the pipeline's
  ``*_sgra_evt2.fits``);
* dithering and gaps are reported, not hidden: ``meta["gti_gaps"]`` (number and total
  length of the gaps between GTIs), ``meta["chip_edge_pixels"]`` (distance of the source
  from its chip's edge, chip pixels) and a note when the source lies within the dither
  pattern (16 arcsec ≈ 33 pixels) of a chip edge, where its rate is modulated at the
  dither periods (707 s and 1000 s for ACIS); the ``EXPOSURE`` keyword is compared with
  the GTIs (``chandra_test.fits`` says 18.3 ks for 945 s of data);
* ``meta["warnings"]``: every assumption a user should know about (also in ``notes``);
  ``simxray encode`` prints them on stderr;
* truncated or corrupt files: :class:`~simxray.errors.FileFormatError` (one line, exit 2),
  from :func:`fits_problem`'s walk over the headers before astropy reads a byte of data.

Length: one module for reading a real event file, because every check (the EVENTS and GTI
blocks, the instrument, energies, frame time, regions, GTIs against the events) works on the
same open HDU list and writes the same ``meta``/``warnings`` record that the report shows;
splitting it would pass that state between modules.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FileFormatError, ParameterError
from .eventfile import ACIS_PI_KEV, EventList, merge_gti
from .regions import Region, SkyWCS, read_region

DITHER_PERIODS_S = (707.0, 1000.0)
"""ACIS dither periods (s): pitch 707 s, yaw 1000 s."""

DITHER_PIXELS = 33.0
"""Peak-to-peak ACIS dither (16 arcsec) in 0.492-arcsec pixels."""

ACIS_CHIP_PIXELS = 1024
"""ACIS chip size (chip pixels)."""

SGR_A_STAR = (266.41683708, -29.00781056)
"""Sgr A* (ICRS, deg): 17h45m40.0409s -29d00m28.118s (Reid & Brunthaler 2004)."""

SGR_J1745_2900 = (266.41735000, -29.00828333)
"""Magnetar SGR J1745-2900 (deg): 17h45m40.164s -29d00m29.82s (Rea et al. 2013, Chandra),
2.35 arcsec from Sgr A*."""

_DATA_ERRORS = (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError, EOFError, OverflowError)


@dataclass
class Observation:
    """One source from a real event file.

    source : events in the source region (keV, s), GTIs for the source's CCDs.
    background : events in the background region over the same GTIs, or None.
    backscal : source-region area / background-region area (multiply background counts by
        it to estimate the background inside the source region).
    meta : what was read and chosen (see :func:`read_observation`).
    """

    source: EventList
    background: EventList | None = None
    backscal: float = 0.0
    meta: dict = field(default_factory=dict)

    @property
    def livetime(self) -> float:
        """Live time (s): good time x DTCOR."""
        return self.source.exposure * float(self.meta.get("dtcor", 1.0))


# --------------------------------------------------------------------------- FITS integrity


def _card_value(card: str) -> str:
    return card[10:].split("/", 1)[0].strip()


def fits_problem(path: str | os.PathLike) -> str | None:
    """Walk a FITS file's headers without reading data; a one-line description of why it is
    truncated or not FITS, or None when every HDU's header and data fit in the file.
    Gzipped files (``.fits.gz``, as the archive ships evt2) are walked through the stream."""
    import gzip
    import zlib

    p = Path(path)
    with open(p, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    if gz:                                   # archive evt2 files come gzipped: walk the stream
        try:
            size = 0
            with gzip.open(p, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    size += len(chunk)
        except (EOFError, OSError, zlib.error) as exc:
            return f"truncated or corrupt gzip stream ({type(exc).__name__}: {exc})"
        opener = gzip.open
    else:
        size = p.stat().st_size
        opener = open
    if size < 2880:
        return f"not a FITS file or truncated: {size} bytes, shorter than one 2880-byte FITS block"
    with opener(p, "rb") as fh:
        pos, hdu = 0, 0
        while pos < size:
            keys: dict[str, str] = {}
            first = None
            end = False
            while not end:
                fh.seek(pos)
                block = fh.read(2880)
                if len(block) < 2880:
                    if hdu > 0 and not keys and not block.strip(b"\0 "):
                        return None                     # trailing padding
                    return (f"truncated: the header of HDU {hdu} is cut at byte {size} "
                            f"(expected 2880-byte blocks)")
                pos += 2880
                for i in range(36):
                    card = block[i * 80:(i + 1) * 80].decode("ascii", "replace")
                    key = card[:8].strip()
                    if first is None:
                        first = key
                    if key == "END":
                        end = True
                        break
                    if card[8:10] == "= " and (key in ("BITPIX", "NAXIS", "PCOUNT", "GCOUNT")
                                               or key.startswith("NAXIS")):
                        keys[key] = _card_value(card)
            if hdu == 0 and first != "SIMPLE":
                return "not a FITS file (no SIMPLE card at the start)"
            if hdu > 0 and first != "XTENSION":
                return f"corrupt: HDU {hdu} at byte {pos - 2880} does not start with XTENSION"
            try:
                naxis = int(keys.get("NAXIS", "0"))
                bitpix = int(keys.get("BITPIX", "8"))
                dims = [int(keys.get(f"NAXIS{i}", "0")) for i in range(1, naxis + 1)]
                pcount = int(keys.get("PCOUNT", "0"))
                gcount = int(keys.get("GCOUNT", "1"))
            except ValueError:
                return f"corrupt: HDU {hdu} has a non-integer BITPIX/NAXIS/PCOUNT/GCOUNT card"
            ndata = 0
            if naxis > 0:
                ndata = abs(bitpix) // 8 * gcount * (pcount + math.prod(dims))
            if pos + ndata > size:
                return (f"truncated: HDU {hdu} needs {ndata} bytes of data from byte {pos} but the "
                        f"file ends at byte {size}")
            pos += -(-ndata // 2880) * 2880
            if pos > size:
                return (f"truncated: HDU {hdu} ends (with its FITS padding) at byte {pos} but the file "
                        f"ends at byte {size}")
            hdu += 1
    return None


def open_fits_checked(path: Path, what: str = "event file"):
    """astropy HDUList of ``path`` after :func:`fits_problem`; errors are FileFormatError."""
    from astropy.io import fits

    if not path.is_file():
        raise FileFormatError("file not found", path=path)
    problem = fits_problem(path)
    if problem is not None:
        raise FileFormatError(f"{problem}; expected a complete FITS {what}", path=path)
    try:
        return fits.open(path, memmap=False)
    except _DATA_ERRORS as exc:
        raise FileFormatError(f"not a readable FITS {what} ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})", path=path) from None


# --------------------------------------------------------------------------- helpers


def _colmap(hdu) -> dict[str, str]:
    return {n.lower(): n for n in hdu.columns.names}


_NOT_EVENTS = {"LIGHTCURVE": "a binned light curve (e.g. a CSC lc3 file)", "RATE": "a binned light curve",
               "SPECTRUM": "a spectrum (e.g. a CSC pha3 file)", "MATRIX": "a response matrix",
               "SPECRESP MATRIX": "a response matrix", "EBOUNDS": "a response matrix",
               "SPECRESP": "an effective-area (ARF) file"}


def _events_hdu(hdul, path: Path):
    """The EVENTS table: by EXTNAME/HDUNAME ``EVENTS`` (any case, any HDU), else the first
    table with a time column and an energy or PI column that is not a GTI, light curve or
    spectrum.  Other products (images, light curves, spectra, responses) are refused by name."""
    for h in hdul[1:]:
        names = {h.name.upper(), str(h.header.get("HDUNAME", "")).strip().upper()}
        if "EVENTS" in names and getattr(h, "columns", None) is not None:
            return h
    for h in hdul[1:]:
        cols = getattr(h, "columns", None)
        if cols is None:
            continue
        cm = _colmap(h)
        kind = str(h.header.get("HDUCLAS1", "")).strip().upper()
        if h.name.upper().startswith(("GTI", "STDGTI")) or h.name.upper() in _NOT_EVENTS or kind in _NOT_EVENTS:
            continue
        if "time" in cm and ("energy" in cm or "pi" in cm) and not {"rate", "counts", "count_rate"} & set(cm):
            return h
    found = ", ".join(f"{h.name} ({'image' if getattr(h, 'columns', None) is None else 'table'})" for h in hdul)
    for h in hdul:
        kind = str(h.header.get("HDUCLAS1", "")).strip().upper()
        what = _NOT_EVENTS.get(h.name.upper()) or _NOT_EVENTS.get(kind)
        if what:
            raise FileFormatError(f"this is {what}, not an event list (HDUs: {found}); expected an evt2 or "
                                  "CSC regevt3 event file", path=path, field="EVENTS")
    if all(getattr(h, "columns", None) is None for h in hdul):
        raise FileFormatError(f"this is an image, not an event list (HDUs: {found}); expected an evt2 or CSC "
                              "regevt3 event file", path=path, field="EVENTS")
    raise FileFormatError(f"no EVENTS extension (found {found}); expected a table named EVENTS with time and "
                          "energy or pi columns", path=path, field="EVENTS")


def time_system(header) -> dict:
    """Time keywords of an EVENTS header (TIMESYS, TIMEREF, MJDREF days, TIMEZERO s, ...)."""
    if "MJDREF" in header:
        mjdref = float(header["MJDREF"])
    elif "MJDREFI" in header:
        mjdref = float(header["MJDREFI"]) + float(header.get("MJDREFF", 0.0))
    else:
        mjdref = float("nan")
    sys_ = str(header.get("TIMESYS", "TT")).strip()
    ref = str(header.get("TIMEREF", "LOCAL")).strip()
    return {"timesys": sys_, "timeref": ref, "mjdref": mjdref, "timeunit": str(header.get("TIMEUNIT", "s")),
            "timezero": float(header.get("TIMEZERO", 0.0)), "clockapp": bool(header.get("CLOCKAPP", True)),
            "barycentred": ref.upper() == "SOLARSYSTEM" or sys_.upper() == "TDB"}


def _gti_ccd(h) -> int | None:
    """The CCD of a GTI block: keyword ``CCD_ID``, else the digits of its EXTNAME or HDUNAME
    (``GTI7``, ``GTI_7``: CIAO names the blocks EXTNAME ``GTI``, HDUNAME ``GTI7``)."""
    ccd = h.header.get("CCD_ID")
    if ccd is not None:
        return int(ccd)
    import re

    for name in (h.name, str(h.header.get("HDUNAME", ""))):
        m = re.fullmatch(r"(?:STD)?GTI_?(\d{1,2})", name.strip().upper())
        if m:
            return int(m.group(1))
    return None


def _is_gti(h) -> bool:
    names = (h.name.upper(), str(h.header.get("HDUNAME", "")).strip().upper())
    return (getattr(h, "columns", None) is not None
            and (any(n.startswith(("GTI", "STDGTI")) for n in names)
                 or str(h.header.get("HDUCLAS1", "")).strip().upper() == "GTI"))


def _gti_blocks(hdul, path: Path) -> list[tuple[int | None, np.ndarray]]:
    """Every GTI block (EXTNAME or HDUNAME ``GTI*``/``STDGTI*``, or HDUCLAS1 ``GTI``) with its
    CCD (:func:`_gti_ccd`; None for a block that applies to all chips)."""
    out = []
    for h in hdul[1:]:
        if not _is_gti(h):
            continue
        cm = _colmap(h)
        if "start" not in cm or "stop" not in cm:
            raise FileFormatError(f"GTI extension {h.name} lacks START/STOP columns", path=path, field="GTI")
        g = np.column_stack([np.asarray(h.data[cm["start"]], np.float64),
                             np.asarray(h.data[cm["stop"]], np.float64)]) if len(h.data) else np.zeros((0, 2))
        if np.any(~np.isfinite(g)) or np.any(g[:, 1] < g[:, 0]):
            raise FileFormatError("GTI rows must be finite with STOP >= START", path=path, field="GTI")
        out.append((_gti_ccd(h), merge_gti(g)))
    return out


def intersect_gti(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection of two sorted, disjoint GTI lists (K, 2) s."""
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i, 0], b[j, 0]), min(a[i, 1], b[j, 1])
        if hi > lo:
            out.append((lo, hi))
        if a[i, 1] < b[j, 1]:
            i += 1
        else:
            j += 1
    return np.array(out, np.float64).reshape(-1, 2)


def check_instrument(hdul, hdr, path: Path) -> dict:
    """Refuse what the reader cannot interpret; return TELESCOP and INSTRUME.

    Non-Chandra event files (``TELESCOP`` other than CHANDRA/AXAF: XMM-Newton, Swift,
    NuSTAR, eROSITA ... have other energy scales, frame times and sky pixels) and Chandra HRC
    files (no event energies: HRC ``pi`` is not an energy scale, and PPAD's bands need
    energies) are :class:`~simxray.errors.FileFormatError`.  A file without TELESCOP is read
    as Chandra ACIS."""
    prim = hdul[0].header
    tel = str(hdr.get("TELESCOP", prim.get("TELESCOP", ""))).strip().upper()
    inst = str(hdr.get("INSTRUME", prim.get("INSTRUME", ""))).strip().upper()
    if tel and tel not in ("CHANDRA", "AXAF"):
        raise FileFormatError(f"TELESCOP is {tel!r}: simxray reads Chandra ACIS event files only (energies, "
                              "frame times, GTIs and sky pixels follow the CXC conventions)", path=path,
                              field="EVENTS.TELESCOP")
    if inst.startswith("HRC"):
        raise FileFormatError(f"INSTRUME is {inst!r}: Chandra HRC event files are not supported (HRC has no "
                              "event energies: its pi is not an energy scale, and PPAD's bands and the "
                              "hardness ratios need ACIS energies)", path=path, field="EVENTS.INSTRUME")
    return {"telescop": tel, "instrume": inst}


def _energy_kev(hdu, cm: dict, path: Path, rmf: str | os.PathLike | None) -> tuple[np.ndarray, str, str | None]:
    """Event energies (keV; may hold NaN), how they were obtained, and a warning or None."""
    data, hdr = hdu.data, hdu.header
    if "energy" in cm and rmf is None:
        idx = hdu.columns.names.index(cm["energy"]) + 1
        raw = str(hdr.get(f"TUNIT{idx}", "")).strip()
        e = np.asarray(data[cm["energy"]], np.float64)
        unit = raw.lower()
        if unit in ("kev", "kiloelectronvolt"):
            return e, "energy column (keV)", None
        if unit in ("ev", "electronvolt"):
            return e * 1e-3, "energy column (eV)", None
        fin = e[np.isfinite(e)]
        if not unit and fin.size and np.quantile(fin, 0.99) < 50.0:
            return e, "energy column (no TUNIT; values < 50: keV)", (
                "the energy column has no unit (TUNIT) and its values are below 50: read as keV")
        if unit:
            raise FileFormatError(f"energy unit {raw!r} not understood; expected TUNIT eV or keV", path=path,
                                  field=f"EVENTS.{cm['energy']}")
        return e * 1e-3, "energy column (no TUNIT: eV, the CXC convention)", None
    if "pi" not in cm:
        raise FileFormatError("neither an ENERGY nor a PI column; cannot assign energy bands", path=path,
                              field="EVENTS.ENERGY")
    pi = np.asarray(data[cm["pi"]], np.int64)
    if rmf is not None:
        from ..io.ogip import read_rmf

        r = read_rmf(rmf)
        mid = 0.5 * (r.e_min + r.e_max)
        k = pi - r.offset
        bad = (k < 0) | (k >= mid.size)
        if np.any(bad):
            raise FileFormatError(f"{int(bad.sum())} PI values outside the RMF's channels "
                                  f"{r.offset}..{r.offset + mid.size - 1}", path=path, field="EVENTS.PI")
        return mid[k], f"pi via EBOUNDS of {Path(rmf).name}", None
    return ((pi - 0.5) * ACIS_PI_KEV, "pi x 14.6 eV (ACIS nominal; pass an RMF for its EBOUNDS)",
            "no energy column: energies are the ACIS nominal PI channel centres, (pi - 0.5) x 14.6 eV; "
            "pass the observation's RMF (--rmf) to use its EBOUNDS")


def _parse_order(order: str) -> str:
    if order not in ("auto", "zeroth", "dispersed", "first", "all"):
        raise ParameterError(f"must be auto, zeroth, dispersed, first or all, got {order!r}", field="--order")
    return order


# --------------------------------------------------------------------------- reader


def read_observation(path: str | os.PathLike, *, ra: float | None = None, dec: float | None = None,
                     radius: float = 2.0, region: str | os.PathLike | None = None,
                     bkg: tuple[float, float] | None = None, order: str = "auto",
                     rmf: str | os.PathLike | None = None, missing_gti: str = "error",
                     name: str | None = None) -> Observation:
    """Read one source (and background) from a Chandra event file; see the module docstring.

    ra, dec : source position (deg, ICRS) for a circle of ``radius`` arcsec.
    region : ds9/CIAO text or FITS (CSC reg3) region file instead of ra/dec.
    bkg : (inner, outer) annulus radii (arcsec) around the source centre.
    order : grating order selection (``auto`` = zeroth for grating files).
    rmf : RMF whose EBOUNDS convert PI to energy (used instead of an energy column).
    missing_gti : without a GTI block: ``"error"``, ``"header"`` (TSTART/TSTOP, or the span of the
        event times when those keywords are missing) or ``"events"`` (the span of the event times);
        the last two are warned (``meta["warnings"]``).
    """
    p = Path(path)
    order = _parse_order(order)
    if (ra is None) != (dec is None):
        raise ParameterError("give both --ra and --dec (deg)", field="--ra/--dec")
    if ra is not None and region is not None:
        raise ParameterError("give either --ra/--dec or --region, not both", field="--region")
    if not radius > 0:
        raise ParameterError(f"must be > 0 arcsec, got {radius}", field="--radius")
    if ra is not None and not (math.isfinite(ra) and math.isfinite(dec) and -90.0 <= dec <= 90.0):
        raise ParameterError(f"RA/Dec must be finite degrees with -90 <= Dec <= 90, got {ra}, {dec}",
                             field="--ra/--dec")
    hdul = open_fits_checked(p)
    try:
        with hdul:
            obs = _read(hdul, p, ra, dec, radius, region, bkg, order, rmf, missing_gti)
    except FileFormatError:
        raise
    except ParameterError:
        raise
    except _DATA_ERRORS as exc:
        msg = str(exc).splitlines()[0] if str(exc) else ""
        raise FileFormatError(f"corrupt or unreadable event data ({type(exc).__name__}: {msg}); expected a "
                              "complete Chandra event file", path=p) from None
    if name:
        obs.source.name = name
        obs.meta["name"] = name
    return obs


ACIS_TRANSFER_S = 0.04104
"""ACIS frame-store transfer time (s) added to the exposure time of every TE frame."""

ACIS_CC_FRAME_S = 0.00285
"""ACIS continuous-clocking (CC) frame time (s): one row read every 2.85 ms."""

ACIS_SUBARRAY_EXPTIME_S = {1024: 3.2, 512: 1.5, 256: 0.8, 128: 0.4}
"""Default exposure times (s) of ACIS full frame and the 1/2, 1/4, 1/8 subarrays (rows NROWS)
(Chandra Proposers' Observatory Guide, ACIS chapter)."""


def frame_time_from_header(hdr) -> tuple[float, str, str | None]:
    """Frame time (s), its source and a warning (None when ``TIMEDEL`` is present).

    ``TIMEDEL``; else continuous clocking (``READMODE`` CONTINUOUS or a ``CC*`` DATAMODE) 2.85 ms;
    else ``EXPTIME`` + 41.04 ms; else the default exposure of the subarray (``NROWS``) + 41.04 ms;
    else the 3.24104 s full frame."""
    readmode = str(hdr.get("READMODE", "")).strip().upper()
    datamode = str(hdr.get("DATAMODE", "")).strip().upper()
    if "TIMEDEL" in hdr and float(hdr["TIMEDEL"]) > 0:
        return float(hdr["TIMEDEL"]), "TIMEDEL", None
    if readmode.startswith("CONTINUOUS") or datamode.startswith("CC"):
        return ACIS_CC_FRAME_S, "continuous clocking (READMODE/DATAMODE)", (
            "no TIMEDEL keyword: continuous-clocking frame time 2.85 ms assumed")
    if "EXPTIME" in hdr and float(hdr["EXPTIME"]) > 0:
        ft = float(hdr["EXPTIME"]) + ACIS_TRANSFER_S
        return ft, "EXPTIME + 41.04 ms", f"no TIMEDEL keyword: frame time = EXPTIME + 41.04 ms = {ft:.5f} s"
    nrows = hdr.get("NROWS")
    if nrows is not None and int(nrows) in ACIS_SUBARRAY_EXPTIME_S:
        ft = ACIS_SUBARRAY_EXPTIME_S[int(nrows)] + ACIS_TRANSFER_S
        return ft, f"default exposure of a {int(nrows)}-row subarray + 41.04 ms", (
            f"no TIMEDEL or EXPTIME: assumed the default {int(nrows)}-row frame time {ft:.5f} s")
    return 3.24104, "default ACIS full frame", "no TIMEDEL, EXPTIME or NROWS: assumed the 3.24104 s ACIS full frame"


def _check_region_on_field(reg: Region, x: np.ndarray, y: np.ndarray, wcs: SkyWCS | None, n_in: int,
                           p: Path) -> None:
    """Refuse a source region without events: off the events' sky extent, or on it but empty."""
    if n_in > 0:
        return
    cx, cy = reg.centre
    r = max(max(sh.r) for sh in reg.shapes if not sh.exclude)
    ok = np.isfinite(x) & np.isfinite(y)
    where = f"sky pixel ({cx:.1f}, {cy:.1f})"
    if wcs is not None:
        cra, cdec = wcs.to_world(cx, cy)
        where = f"RA {float(cra):.5f} Dec {float(cdec):.5f} ({where[4:]})"
    if not ok.any():
        raise FileFormatError(f"no event has a finite sky position; cannot select the source region at {where}",
                              path=p, field="EVENTS.x")
    x0, x1, y0, y1 = x[ok].min(), x[ok].max(), y[ok].min(), y[ok].max()
    off = cx + r < x0 or cx - r > x1 or cy + r < y0 or cy - r > y1
    scale = wcs.arcsec_per_pixel if wcs is not None else float("nan")
    if off:
        raise FileFormatError(f"the source region at {where} lies off the field: the events cover sky x "
                              f"{x0:.0f}-{x1:.0f}, y {y0:.0f}-{y1:.0f} pixels ({(x1 - x0) * scale:.0f} x "
                              f"{(y1 - y0) * scale:.0f} arcsec); expected a position inside it", path=p,
                              field="--ra/--dec")
    raise FileFormatError(f"no events in the source region at {where} (inside the field); PPAD needs events "
                          "to encode: check the position, or use a larger --radius", path=p, field="--ra/--dec")


def _read(hdul, p: Path, ra, dec, radius, region, bkg, order, rmf, missing_gti) -> Observation:
    if missing_gti not in ("error", "header", "events"):
        raise ParameterError(f"missing_gti must be error, header or events, got {missing_gti!r}",
                             field="missing_gti")
    ev = _events_hdu(hdul, p)
    hdr = ev.header
    data = ev.data
    if data is None or len(ev.columns) == 0:
        raise FileFormatError("EVENTS extension has no table", path=p, field="EVENTS")
    ids = check_instrument(hdul, hdr, p)
    cm = _colmap(ev)
    if "time" not in cm:
        raise FileFormatError("no TIME column", path=p, field="EVENTS.TIME")
    time = np.asarray(data[cm["time"]], np.float64)
    if not np.all(np.isfinite(time)):
        raise FileFormatError("TIME contains NaN or infinite values", path=p, field="EVENTS.TIME")
    energy, energy_source, e_warn = _energy_kev(ev, cm, p, rmf)
    n_file = int(time.size)
    keep = np.ones(n_file, bool)
    meta: dict = {"path": str(p), "n_events_file": n_file, "energy_source": energy_source,
                  "object": str(hdr.get("OBJECT", "")).strip(), "obs_id": str(hdr.get("OBS_ID", "")).strip(),
                  "instrument": str(hdr.get("INSTRUME", "")).strip(), "detnam": str(hdr.get("DETNAM", "")).strip(),
                  "grating": str(hdr.get("GRATING", "NONE")).strip(), "readmode": str(hdr.get("READMODE", "")).strip(),
                  "datamode": str(hdr.get("DATAMODE", "")).strip(), "telescop": ids["telescop"],
                  "extname": ev.name, "content": str(hdr.get("CONTENT", "")).strip(),
                  "creator": str(hdr.get("CREATOR", "")).strip(), "ascdsver": str(hdr.get("ASCDSVER", "")).strip(),
                  "timepixr": float(hdr.get("TIMEPIXR", 0.5)), **time_system(hdr), "notes": [], "warnings": []}
    notes: list[str] = meta["notes"]
    warns: list[str] = meta["warnings"]

    def warn(msg: str) -> None:
        warns.append(msg)
        notes.append(msg)

    if e_warn:
        warn(e_warn)
    bad_e = ~np.isfinite(energy)
    if bad_e.all():
        raise FileFormatError(f"all {n_file} event energies are NaN or infinite", path=p, field="EVENTS.ENERGY")
    if bad_e.any():
        keep &= ~bad_e
        meta["n_bad_energy"] = int(bad_e.sum())
        warn(f"{int(bad_e.sum())} events with NaN or infinite energy dropped")
        energy = np.where(bad_e, 0.0, energy)
    if meta["content"].upper() == "EVT1" or str(hdr.get("HDUCLAS2", "")).strip().upper() == "ALL":
        warn("a level-1 event file (CONTENT EVT1): events are not filtered on grade, status or GTI as in "
             "an evt2; use the evt2 (or chandra_repro's output) for science")
    # ---- frame time, dead time
    frame_time, meta["frame_time_source"], ft_warn = frame_time_from_header(hdr)
    if ft_warn:
        warn(ft_warn)
    meta["continuous_clocking"] = bool(frame_time < 0.01 or meta["readmode"].upper().startswith("CONTINUOUS"))
    meta["frame_time"] = frame_time
    meta["dtcor"] = float(hdr.get("DTCOR", 1.0))
    # ---- grating orders
    if "tg_m" in cm and "tg_part" in cm:
        tg_m = np.asarray(data[cm["tg_m"]], np.int64)
        tg_part = np.asarray(data[cm["tg_part"]], np.int64)
        chosen = "zeroth" if order == "auto" else order
        if chosen == "zeroth":
            sel = tg_part == 0
        elif chosen == "dispersed":
            sel = (tg_part >= 1) & (tg_part <= 3) & (np.abs(tg_m) >= 1) & (np.abs(tg_m) < 99)
        elif chosen == "first":
            sel = (tg_part >= 1) & (tg_part <= 3) & (np.abs(tg_m) == 1)
        else:
            sel = np.ones(n_file, bool)
        keep &= sel
        meta["order"] = chosen
        meta["grating_counts"] = {"zeroth": int((tg_part == 0).sum()),
                                  "dispersed": int(((tg_part >= 1) & (tg_part <= 3)).sum()),
                                  "unassigned (tg_part 99)": int((tg_part == 99).sum())}
    else:
        if order in ("zeroth", "dispersed", "first"):
            raise ParameterError(f"--order {order} needs grating columns tg_m and tg_part, which this file "
                                 "lacks", field="--order")
        meta["order"] = "none (no grating columns)"
    # ---- sky selection
    wcs = None
    if "x" in cm and "y" in cm:
        xi, yi = ev.columns.names.index(cm["x"]) + 1, ev.columns.names.index(cm["y"]) + 1
        if f"TCRVL{xi}" in hdr:
            wcs = SkyWCS.from_header(hdr, xi, yi, path=str(p))
    src_reg: Region | None = None
    bkg_reg: Region | None = None
    if region is not None:
        src_reg, bkg_reg = read_region(region, wcs)
    elif ra is not None:
        if wcs is None:
            raise FileFormatError("source selection by RA/Dec needs x/y columns with TCRVL/TCRPX/TCDLT",
                                  path=p, field="EVENTS.x")
        x0, y0 = wcs.to_pixel(float(ra), float(dec))
        src_reg = Region.circle(float(x0), float(y0), radius / wcs.arcsec_per_pixel,
                                f"circle RA {ra:.6f} Dec {dec:.6f} r {radius:g} arcsec")
    if bkg is not None:
        if src_reg is None:
            raise ParameterError("a background annulus needs a source position (--ra/--dec or --region)",
                                 field="--bkg")
        if wcs is None:
            raise FileFormatError("a background annulus needs sky WCS keywords", path=p, field="EVENTS.x")
        r_in, r_out = (float(v) for v in bkg)
        if not 0 <= r_in < r_out:
            raise ParameterError(f"annulus radii must satisfy 0 <= inner < outer (arcsec), got {r_in:g}, "
                                 f"{r_out:g}", field="--bkg")
        cx, cy = src_reg.centre
        bkg_reg = Region.annulus(cx, cy, r_in / wcs.arcsec_per_pixel, r_out / wcs.arcsec_per_pixel,
                                 f"annulus {r_in:g}-{r_out:g} arcsec")
    dispersed = meta["order"] in ("dispersed", "first", "all")
    if src_reg is not None and ("x" not in cm or "y" not in cm):
        raise FileFormatError("a region needs x and y columns", path=p, field="EVENTS.x")
    if src_reg is not None:
        x = np.asarray(data[cm["x"]], np.float64)
        y = np.asarray(data[cm["y"]], np.float64)
        in_src = src_reg.contains(x, y) if not dispersed else np.ones(n_file, bool)
        if dispersed:
            notes.append("dispersed orders: no spatial cut (the arms run across the detector)")
        in_bkg = bkg_reg.contains(x, y) & ~in_src if bkg_reg is not None else None
        meta["region"] = src_reg.description
        meta["selection"] = "region"
        if wcs is not None:
            cra, cdec = wcs.to_world(*src_reg.centre)
            meta["centre_deg"] = [float(cra), float(cdec)]
    else:
        x = y = None
        in_src = np.ones(n_file, bool)
        in_bkg = None
        meta["region"] = "whole file (no spatial selection)"
        meta["selection"] = "whole file"
        notes.append("no source region given: every event in the file is treated as one source "
                     "(right for a cut-out such as *_sgra_evt2.fits)")
        if "x" in cm and "y" in cm and wcs is not None and (keep).sum() > 20:
            xs = np.asarray(data[cm["x"]], np.float64)[keep]
            ys = np.asarray(data[cm["y"]], np.float64)[keep]
            ok = np.isfinite(xs) & np.isfinite(ys)
            if ok.sum() > 20:
                ext = [float(np.subtract(*np.quantile(v[ok], [0.95, 0.05]))) * wcs.arcsec_per_pixel for v in (xs, ys)]
                meta["sky_extent_arcsec"] = ext
                if max(ext) > 30.0:
                    warn(f"no source region given, but the events cover {ext[0]:.0f} x {ext[1]:.0f} arcsec (5-95 %): "
                         "every source in the field is analysed as one; give --ra/--dec or --region to select one")
        if "regevt3" in p.name.lower() or any(h.name.upper() == "MASK" for h in hdul[1:]):
            notes.append("a CSC regevt3 file holds the whole background region of interest around the "
                         "source: pass its reg3 file (--region) to select the source and background")
    src_mask = keep & in_src
    meta["n_events_region"] = int(src_mask.sum())
    if src_reg is not None and not dispersed:
        _check_region_on_field(src_reg, x[keep], y[keep], wcs, int(src_mask.sum()), p)
        if meta["continuous_clocking"]:
            warn("continuous-clocking (CC) mode: the position along the readout column is not measured, so "
                 "a point source's events lie along a streak in sky coordinates; a circle keeps only part of "
                 "them (use a box or rotbox region along the streak)")
    # ---- CCDs and GTIs
    ccd = np.asarray(data[cm["ccd_id"]], np.int64) if "ccd_id" in cm else None
    blocks = _gti_blocks(hdul, p)
    if ccd is not None and src_mask.any():
        ids, counts = np.unique(ccd[src_mask], return_counts=True)
        src_ccds = [int(i) for i, c in zip(ids, counts, strict=True) if c >= 0.01 * counts.sum()]
    elif ccd is not None and ccd.size:
        src_ccds = [int(np.bincount(ccd).argmax())]
    else:
        src_ccds = []
    meta["ccd_ids"] = src_ccds
    meta["gti_per_ccd"] = {}
    for c, g in blocks:
        if c is not None:
            meta["gti_per_ccd"].setdefault(str(c), []).extend(g.tolist())
    if blocks:
        by_ccd: dict[int, np.ndarray] = {}
        for c, g in blocks:               # a CSC stack regevt3 has one block per CCD per ObsID: union
            if c is not None:
                by_ccd[c] = merge_gti(np.concatenate([by_ccd[c], g])) if c in by_ccd else g
        generic = [g for c, g in blocks if c is None]
        chosen_g = []
        for c in src_ccds:
            if c in by_ccd:
                chosen_g.append(by_ccd[c])
        if not chosen_g:
            if generic:
                chosen_g = [merge_gti(np.concatenate(generic))]
            else:
                chosen_g = [merge_gti(np.concatenate([g for _, g in blocks]))]
                warn(f"no GTI block for CCD {src_ccds}; used the union of all GTI blocks")
        gti = chosen_g[0]
        for g in chosen_g[1:]:
            gti = intersect_gti(gti, g)
        meta["gti_source"] = (f"GTI of CCD {src_ccds[0]}" if len(chosen_g) == 1 and src_ccds else
                              f"intersection of the GTIs of CCDs {src_ccds}" if len(chosen_g) > 1 else "GTI")
    elif missing_gti == "header" and "TSTART" in hdr and "TSTOP" in hdr:
        gti = np.array([[float(hdr["TSTART"]), float(hdr["TSTOP"])]])
        meta["gti_source"] = "TSTART/TSTOP (no GTI extension)"
        warn("no GTI extension: the good time is TSTART-TSTOP, so gaps in the observation (if any) count as "
             "exposure")
    elif missing_gti in ("header", "events"):
        if not n_file:
            raise FileFormatError("no GTI extension, no TSTART/TSTOP and no events to take a span from",
                                  path=p, field="GTI")
        half = 0.5 * frame_time
        gti = np.array([[float(time.min()) - half, float(time.max()) + half]])
        meta["gti_source"] = "span of the event times (no GTI extension)"
        warn(f"no GTI extension{'' if missing_gti == 'events' else ' and no TSTART/TSTOP'}: the good time is "
             "the span of the event times (first - last event, +- half a frame), gaps count as exposure")
    else:
        raise FileFormatError("no GTI extension (pass --gti-from-header to use TSTART-TSTOP, or the span of "
                              "the event times when those keywords are missing too)", path=p, field="GTI")
    if len(gti) == 0:
        raise FileFormatError(f"the GTIs of CCDs {src_ccds} do not overlap", path=p, field="GTI")
    gaps = gti[1:, 0] - gti[:-1, 1]
    meta["gti_gaps"] = {"n": int(gaps.size), "total_s": float(gaps.sum()),
                        "longest_s": float(gaps.max()) if gaps.size else 0.0}
    good = float(np.sum(gti[:, 1] - gti[:, 0]))
    meta["good_time_s"] = good
    meta["livetime_s"] = good * meta["dtcor"]
    if "EXPOSURE" in hdr:
        meta["exposure_keyword_s"] = float(hdr["EXPOSURE"])
        if abs(float(hdr["EXPOSURE"]) - meta["livetime_s"]) > 0.02 * max(meta["livetime_s"], 1.0):
            notes.append(f"EXPOSURE keyword {float(hdr['EXPOSURE']):.0f} s differs from the GTIs' live time "
                         f"{meta['livetime_s']:.0f} s; the GTIs are used")
    if gaps.size:
        notes.append(f"{gaps.size} gap(s) between GTIs, {gaps.sum():.0f} s in total: rates use the good "
                     "time per bin, gaps are shaded in plots")
    # ---- chip edges and dither
    if "chipx" in cm and "chipy" in cm and src_mask.any() and meta["selection"] == "region" and not dispersed:
        cx = np.asarray(data[cm["chipx"]], np.float64)[src_mask]
        cy = np.asarray(data[cm["chipy"]], np.float64)[src_mask]
        edge = float(min(np.median(cx) - 1, ACIS_CHIP_PIXELS - np.median(cx),
                         np.median(cy) - 1, ACIS_CHIP_PIXELS - np.median(cy)))
        meta["chip_edge_pixels"] = edge
        rpix = max(max(s.r) for s in src_reg.shapes if not s.exclude) if src_reg is not None else 0.0
        if edge < DITHER_PIXELS + rpix or len(src_ccds) > 1:
            notes.append(f"source {edge:.0f} chip pixels from a chip edge (dither {DITHER_PIXELS:.0f} pixels "
                         "peak to peak): its rate may be modulated at the dither periods 707 s and 1000 s")
    notes.append("a source on or near a bad column or chip edge is modulated at the ACIS dither periods "
                 "(707 s, 1000 s); see dither_z2 in the light-curve analysis")
    # ---- build event lists
    name = f"{p.name}"
    if meta["selection"] == "region":
        name += f"[{meta['region']}]"
    src = EventList(time[src_mask], energy[src_mask], gti, frame_time, name=name, meta=dict(meta)).clean()
    back = None
    backscal = 0.0
    if in_bkg is not None:
        bmask = keep & in_bkg
        back = EventList(time[bmask], energy[bmask], gti.copy(), frame_time, name=name + "[background]").clean()
        backscal = src_reg.area / bkg_reg.area
        meta["background_region"] = bkg_reg.description
        meta["backscal"] = backscal
        meta["n_events_background"] = back.n_events
    if "n_outside_gti" in src.meta:
        n_out = int(src.meta["n_outside_gti"])
        meta["n_outside_gti"] = n_out
        n_sel = int(src_mask.sum())
        if n_out == n_sel:
            t_sel = time[src_mask]
            raise FileFormatError(f"none of the {n_sel} selected events lies inside the GTIs (events "
                                  f"{t_sel.min():.1f}-{t_sel.max():.1f} s, GTIs {gti[0, 0]:.1f}-{gti[-1, 1]:.1f} s); "
                                  "expected GTIs that cover the events (wrong GTI block, or shifted times?)",
                                  path=p, field="GTI")
        if n_out > 0.01 * n_sel:
            warn(f"{n_out} of {n_sel} selected events ({100 * n_out / n_sel:.1f} %) lie outside the GTIs and were "
                 "dropped")
    src.meta = meta
    return Observation(src, back, backscal, meta)




def find_point_sources(path: str | os.PathLike, *, min_counts: int = 30, cell_arcsec: float = 2.0,
                       band: tuple[float, float] = (0.5, 7.0), merge_arcsec: float = 3.0) -> list[dict]:
    """Bright point-like sources of an event file: cells of ``cell_arcsec`` (two grids offset
    by half a cell) holding >= ``min_counts`` events in ``band`` (keV) that are local maxima;
    each centre refined by the mean position of the events within one cell size (3
    iterations); detections closer than ``merge_arcsec`` merged.  Returns dicts with ra, dec
    (deg), x, y (sky pixels) and counts within one cell size, brightest first.  A simple
    finder for tests and benchmarks, not a replacement for wavdetect."""
    p = Path(path)
    hdul = open_fits_checked(p)
    try:
        with hdul:
            ev = _events_hdu(hdul, p)
            cm = _colmap(ev)
            for need in ("x", "y"):
                if need not in cm:
                    raise FileFormatError(f"no {need} column", path=p, field=f"EVENTS.{need}")
            xi, yi = ev.columns.names.index(cm["x"]) + 1, ev.columns.names.index(cm["y"]) + 1
            wcs = SkyWCS.from_header(ev.header, xi, yi, path=str(p))
            e, _, _ = _energy_kev(ev, cm, p, None)
            sel = (e >= band[0]) & (e < band[1])
            x = np.asarray(ev.data[cm["x"]], np.float64)[sel]
            y = np.asarray(ev.data[cm["y"]], np.float64)[sel]
    except _DATA_ERRORS as exc:
        raise FileFormatError(f"corrupt or unreadable event data ({type(exc).__name__})", path=p) from None
    cell = cell_arcsec / wcs.arcsec_per_pixel
    found: list[tuple[float, float, int]] = []
    for off in (0.0, 0.5):
        x0, y0 = x.min() - off * cell, y.min() - off * cell
        nx, ny = int((x.max() - x0) / cell) + 2, int((y.max() - y0) / cell) + 2
        h, _, _ = np.histogram2d(x, y, bins=(nx, ny), range=((x0, x0 + nx * cell), (y0, y0 + ny * cell)))
        pad = np.pad(h, 1)
        neigh = np.max([pad[1 + dx:1 + dx + nx, 1 + dy:1 + dy + ny] for dx in (-1, 0, 1) for dy in (-1, 0, 1)
                        if dx or dy], axis=0)
        for i, j in zip(*np.nonzero((h >= min_counts) & (h >= neigh)), strict=True):
            cx, cy = x0 + (i + 0.5) * cell, y0 + (j + 0.5) * cell
            for _ in range(3):
                m = (x - cx) ** 2 + (y - cy) ** 2 <= cell ** 2
                if not m.any():
                    break
                cx, cy = float(x[m].mean()), float(y[m].mean())
            n = int(((x - cx) ** 2 + (y - cy) ** 2 <= cell ** 2).sum())
            found.append((cx, cy, n))
    found.sort(key=lambda r: -r[2])
    merged: list[tuple[float, float, int]] = []
    rmerge = merge_arcsec / wcs.arcsec_per_pixel
    for cx, cy, n in found:
        if all((cx - a) ** 2 + (cy - b) ** 2 > rmerge ** 2 for a, b, _ in merged):
            merged.append((cx, cy, n))
    out = []
    for cx, cy, n in merged:
        if n < min_counts:
            continue
        ra, dec = wcs.to_world(cx, cy)
        out.append({"ra": float(ra), "dec": float(dec), "x": cx, "y": cy, "counts": n})
    return out


__all__ = ["Observation", "read_observation", "find_point_sources", "fits_problem", "open_fits_checked", "intersect_gti",
           "time_system", "check_instrument", "frame_time_from_header", "SGR_A_STAR", "SGR_J1745_2900",
           "DITHER_PERIODS_S"]
