"""OGIP spectral files: PHA type I/II, ARF and RMF readers; PHA type I, ARF and RMF writers.

Formats: OGIP/92-007 (PHA spectra, type I one spectrum per extension, type II one
spectrum per table row) and CAL/GEN/92-002 (ARF ``SPECRESP``; RMF ``MATRIX`` /
``SPECRESP MATRIX`` / ``RSP_MATRIX`` with ``EBOUNDS``).  Units: energies keV,
effective areas cm², times s, spectra in counts per channel.

Conventions
-----------
* gzip-compressed files are read transparently (detected by their magic bytes);
  a truncated or corrupt gzip stream or FITS file raises :class:`FileFormatError`.
* The ARF, RMF and background named by a spectrum's ``ANCRFILE``, ``RESPFILE`` and
  ``BACKFILE`` (keywords, or columns of a type II file) are looked up relative to the
  spectrum's folder; ``name.gz`` is tried when only the compressed file exists (and
  ``name`` when the header names ``name.gz``).  ``none``/``NONE``/empty mean no file.
  A named file that does not exist gives a warning and leaves that slot ``None``
  (:meth:`Spectrum.require_responses` turns that into an error); an explicitly
  passed file that does not exist is an error.
* A ``BACKFILE`` naming the spectrum file itself (Chandra Source Catalog layout)
  selects the file's ``SPECTRUM`` extension with ``HDUCLAS2 = 'BKG'``.  Grating
  spectra without ``BACKFILE`` but with ``BACKGROUND_UP``/``BACKGROUND_DOWN`` columns
  get their background from those, with ``BACKSCAL = BACKSCUP + BACKSCDN``.
* Frame time (s), first found wins: the user override, ``TIMEDEL``, ``FRAMETIM``,
  ``EXPTIME`` + 0.04104 s (ACIS frame-transfer time, 41.04 ms per frame: ACIS
  ``TIMEDEL`` = ``EXPTIME`` + 0.04104, e.g. 3.2 s → 3.24104 s) in the spectrum's
  headers, then the same keywords in the RMF header (the CSC RMFs carry
  ``EXPTIME``); ``None`` if none is present.  ARF headers are not used: their
  ``TIMEDEL`` is the aspect sampling time (0.256 s), not the frame time.
* RMF matrices are returned as ``scipy.sparse.csr_matrix`` of shape
  (energies M, channels C), float64; column ``j`` is channel ``offset + j``.

Length: one module for the OGIP spectral formats (PHA I/II, ARF, RMF, readers and writers) because they share the FITS helpers, the header-link resolution and the one-line validation; splitting by file type would duplicate those.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from astropy.io import fits

from ..errors import FileFormatError, ParameterError, ResponseMismatchError, SimxrayError

__all__ = [
    "ACIS_FRAME_TRANSFER_S", "ARF", "RMF", "Spectrum", "check_compatible", "read_arf",
    "read_pha", "read_provenance", "read_rmf", "resolve_linked", "write_arf", "write_pha", "write_rmf",
]

#: ACIS frame-transfer time (s) added to ``EXPTIME`` to give the frame time.
ACIS_FRAME_TRANSFER_S = 0.04104
#: Relative tolerance for ARF and RMF energy grids to count as the same.
GRID_RTOL = 1e-5
_NONE_NAMES = {"", "NONE", "NULL", "N/A", "-"}
_RMF_EXTNAMES = ("MATRIX", "SPECRESP MATRIX", "RSP_MATRIX")
_SKIP_KEYS = {
    "XTENSION", "SIMPLE", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "TFIELDS", "EXTEND",
    "HISTORY", "COMMENT", "", "CHECKSUM", "DATASUM", "THEAP",
}
_COLUMN_KEY_PREFIXES = ("TTYPE", "TFORM", "TUNIT", "TLMIN", "TLMAX", "TDMIN", "TDMAX", "TNULL",
                        "TSCAL", "TZERO", "TDISP", "TDIM", "NAXIS")
_PROV_TAG = "SXPROV "


# ---------------------------------------------------------------------------
# data classes
@dataclass(eq=False)
class ARF:
    """Ancillary response: effective area ``specresp`` (cm²) on bins ``[energ_lo, energ_hi]`` keV."""

    path: Path | None
    energ_lo: np.ndarray
    energ_hi: np.ndarray
    specresp: np.ndarray
    exposure: float | None = None
    header: dict[str, Any] = field(default_factory=dict)

    @property
    def n_energies(self) -> int:
        return int(self.energ_lo.size)


@dataclass(eq=False)
class RMF:
    """Redistribution matrix: ``matrix[i, j]`` = P(channel offset+j | energy bin i).

    ``energ_lo/energ_hi`` (M,) keV; ``e_min/e_max`` (C,) keV nominal channel
    bounds from EBOUNDS; ``matrix`` CSR (M, C) float64; ``offset`` first channel.
    """

    path: Path | None
    energ_lo: np.ndarray
    energ_hi: np.ndarray
    e_min: np.ndarray
    e_max: np.ndarray
    matrix: sp.csr_matrix
    offset: int = 1
    header: dict[str, Any] = field(default_factory=dict)

    @property
    def n_energies(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def channels(self) -> np.ndarray:
        """Channel numbers (C,) int."""
        return np.arange(self.offset, self.offset + self.n_channels)

    @property
    def includes_area(self) -> bool:
        """True for a full response (RSP: effective area folded in, HDUCLAS3 'FULL')."""
        clas3 = str(self.header.get("HDUCLAS3", "")).upper()
        name = str(self.header.get("EXTNAME", "")).upper()
        return clas3 == "FULL" or (name == "SPECRESP MATRIX" and clas3 not in ("REDIST", "DETECTOR"))


@dataclass(eq=False)
class Spectrum:
    """A PHA spectrum (counts per channel) with its exposure, scalings and responses."""

    path: Path | None
    counts: np.ndarray
    channel: np.ndarray
    exposure: float
    backscal: float | np.ndarray = 1.0
    areascal: float | np.ndarray = 1.0
    grouping: np.ndarray | None = None
    quality: np.ndarray | None = None
    frame_time: float | None = None
    header: dict[str, Any] = field(default_factory=dict)
    arf: ARF | None = None
    rmf: RMF | None = None
    background: Spectrum | None = None
    row: int | None = None
    frame_time_source: str | None = None
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def n_channels(self) -> int:
        return int(self.counts.size)

    @property
    def total_counts(self) -> float:
        return float(self.counts.sum())

    @property
    def rate(self) -> np.ndarray:
        """Counts per second per channel (C,)."""
        return self.counts / self.exposure

    @property
    def background_scale(self) -> float | np.ndarray:
        """Factor turning background counts into counts expected in the source region.

        ``(exposure × BACKSCAL × AREASCAL)_src / (exposure × BACKSCAL × AREASCAL)_bkg``
        (scalar, or (C,) when a BACKSCAL/AREASCAL is a column); requires a background.
        """
        b = self.background
        if b is None:
            raise SimxrayError("spectrum has no background; expected BACKFILE or a background= file",
                               path=self.path, field="BACKFILE")
        src = self.exposure * np.asarray(self.backscal, float) * np.asarray(self.areascal, float)
        bkg = b.exposure * np.asarray(b.backscal, float) * np.asarray(b.areascal, float)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(bkg > 0, src / np.where(bkg > 0, bkg, 1.0), 0.0)
        return float(scale) if scale.ndim == 0 else scale

    def subtracted_counts(self) -> np.ndarray:
        """Background-subtracted counts (C,): counts − background_scale × background counts."""
        scale = self.background_scale  # raises without a background
        return self.counts - scale * self.background.counts

    def require_responses(self, arf: bool | None = None) -> None:
        """Raise :class:`FileFormatError` unless an RMF (and an ARF) are loaded.

        ``arf=None``: the ARF is required unless the RMF is a full response (RSP).
        """
        need = [("rmf", "RESPFILE")]
        if arf or (arf is None and not (self.rmf is not None and self.rmf.includes_area)):
            need.append(("arf", "ANCRFILE"))
        for slot, key in need:
            if getattr(self, slot) is None:
                why = self.missing.get(key, "no file named")
                raise FileFormatError(f"{why}; expected an existing {slot.upper()} "
                                      f"(name one with --{slot} / {slot}=)", path=self.path, field=key)


# ---------------------------------------------------------------------------
# low-level FITS helpers
def _one_line(exc: BaseException) -> str:
    """An exception's text on one line (errors are printed as one line by the CLI)."""
    return " ".join(str(exc).split())[:300]


_BLOCK = 2880


def _card_int(card: bytes) -> int | None:
    try:
        return int(card[10:80].split(b"/", 1)[0].strip())
    except ValueError:
        return None


def fits_structure_problem(raw: bytes | memoryview) -> str | None:
    """Why the bytes of a FITS file are incomplete, or None when every HDU is complete.

    Walks the HDUs from their headers (BITPIX, NAXISn, PCOUNT, GCOUNT): a header or data unit
    that runs past the end of the file means a truncated file (astropy would silently drop
    such an HDU, and the reader would then report a missing extension).  Bytes after the last
    HDU that do not start another one are ignored.  (DATASUM is not checked: real files and
    tools often leave it stale.)
    """
    size = len(raw)
    off, hdu = 0, 0
    while off < size:
        keys: dict[bytes, bytes] = {}
        end = False
        while not end:
            if off + _BLOCK > size:
                return (f"truncated or corrupt FITS file: the header of HDU {hdu} stops at "
                        f"byte {size} inside a {_BLOCK}-byte block, before its END card")
            block = bytes(raw[off:off + _BLOCK])
            off += _BLOCK
            for i in range(0, _BLOCK, 80):
                card = block[i:i + 80]
                key = card[:8].rstrip()
                if key == b"END":
                    end = True
                    break
                if card[8:10] == b"= ":
                    keys.setdefault(key, card)
        bitpix = _card_int(keys.get(b"BITPIX", b""))
        naxis = _card_int(keys.get(b"NAXIS", b""))
        if bitpix is None or naxis is None:
            return f"corrupt FITS file: HDU {hdu} header lacks a valid BITPIX or NAXIS keyword"
        nbytes = 0
        if naxis > 0:
            dims = [_card_int(keys.get(b"NAXIS%d" % (j + 1), b"")) for j in range(naxis)]
            if any(d is None or d < 0 for d in dims):
                return f"corrupt FITS file: HDU {hdu} header has an invalid NAXISn keyword"
            pcount = _card_int(keys.get(b"PCOUNT", b"")) or 0
            gcount = _card_int(keys.get(b"GCOUNT", b"")) or 1
            if dims[0] == 0 and hdu == 0:          # random groups: NAXIS1 = 0
                dims = dims[1:]
            nbytes = abs(bitpix) // 8 * gcount * (pcount + int(np.prod(dims, dtype=np.int64)))
        if off + nbytes > size:
            return (f"truncated FITS file: HDU {hdu} needs {nbytes} data bytes but the file "
                    f"ends {size - off} bytes into them ({size} bytes in all)")
        off += -(-nbytes // _BLOCK) * _BLOCK
        hdu += 1
        if bytes(raw[off:off + 8]) != b"XTENSION":
            break
    return None


def _open_fits(path: str | os.PathLike, what: str) -> fits.HDUList:
    """Open a (possibly gzipped) FITS file fully, mapping every failure to FileFormatError."""
    p = Path(path)
    if not p.exists():
        raise FileFormatError(f"file not found; expected {what}", path=p)
    if not p.is_file():
        raise FileFormatError(f"not a regular file; expected {what}", path=p)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise FileFormatError(f"cannot read file ({exc.strerror}); expected {what}", path=p) from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise FileFormatError(f"truncated or corrupt gzip data ({_one_line(exc)}); expected {what}",
                                  path=p) from None
    if not raw.startswith(b"SIMPLE  ="):
        raise FileFormatError(f"not a FITS file (no SIMPLE card at the start); expected {what}", path=p)
    problem = fits_structure_problem(raw)
    if problem is not None:
        raise FileFormatError(f"{problem}; expected {what}", path=p)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            hdul = fits.open(io.BytesIO(raw), lazy_load_hdus=False, memmap=False)
        except Exception as exc:  # astropy raises OSError/ValueError/KeyError on corrupt headers
            raise FileFormatError(f"corrupt FITS file ({_one_line(exc)}); expected {what}", path=p) from None
    for w in caught:
        msg = str(w.message)
        if "truncated" in msg.lower():
            raise FileFormatError(f"truncated FITS file ({msg.split(':', 1)[-1].strip()}); "
                                  f"expected {what}", path=p)
    for i, hdu in enumerate(hdul):            # header values are parsed lazily: parse them now
        for card in hdu.header.cards:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    card.value  # noqa: B018 - parses the card
            except Exception:
                raise FileFormatError(f"corrupt FITS header: unparsable card {card.keyword!r} in "
                                      f"HDU {i}; expected {what}", path=p) from None
    return hdul


def _ext_label(hdu) -> str:
    return hdu.name or type(hdu).__name__


def _find_ext(hdul: fits.HDUList, path: Path, names: tuple[str, ...], hduclas2: tuple[str, ...],
              what: str, reject=None) -> fits.BinTableHDU:
    """First binary-table extension whose EXTNAME is in ``names`` or HDUCLAS2 in ``hduclas2``."""
    for hdu in hdul[1:]:
        if not isinstance(hdu, fits.BinTableHDU):
            continue
        name = str(hdu.header.get("EXTNAME", "")).strip().upper()
        clas2 = str(hdu.header.get("HDUCLAS2", "")).strip().upper()
        if (name in names or clas2 in hduclas2) and not (reject and reject(hdu)):
            return hdu
    found = ", ".join(_ext_label(h) for h in hdul) or "nothing"
    raise FileFormatError(f"extension missing (found {found}; a truncated copy?); expected {what}",
                          path=path, field=names[0])


def _column_names(hdu) -> list[str]:
    return [c.name.upper() for c in hdu.columns]


def _col(hdu, name: str, path: Path, required: bool = True):
    """Column ``name`` (case-insensitive) as read by astropy, or None when absent."""
    if name.upper() not in _column_names(hdu):
        if required:
            raise FileFormatError(f"column missing in extension {_ext_label(hdu)}; expected columns "
                                  f"{name} (found {', '.join(hdu.columns.names)})", path=path, field=name)
        return None
    try:
        return hdu.data.field(name)
    except Exception as exc:  # truncated data, bad TFORM, ...
        raise FileFormatError(f"cannot read column ({_one_line(exc)}); file corrupt or truncated",
                              path=path, field=name) from None


def _float_col(hdu, name: str, path: Path) -> np.ndarray:
    a = _col(hdu, name, path)
    try:
        return np.array(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise FileFormatError("expected a numeric column", path=path, field=name) from None


def _tlmin(hdu, name: str) -> int | None:
    names = _column_names(hdu)
    if name.upper() not in names:
        return None
    v = hdu.header.get(f"TLMIN{names.index(name.upper()) + 1}")
    return None if v is None else int(v)


def _header_dict(*headers) -> dict[str, Any]:
    """Descriptive keywords of the given headers, later headers overriding earlier ones."""
    out: dict[str, Any] = {}
    for h in headers:
        for k, v in h.items():
            if k in _SKIP_KEYS or k.startswith(_COLUMN_KEY_PREFIXES):
                continue
            if isinstance(v, str):
                v = v.strip()
            elif isinstance(v, fits.card.Undefined):
                v = None
            out[k] = v
    return out


def _is_none_name(v) -> bool:
    return v is None or (isinstance(v, str) and v.strip().upper() in _NONE_NAMES)


def _check_grid(lo: np.ndarray, hi: np.ndarray, path: Path) -> None:
    if lo.size == 0:
        raise FileFormatError("no energy bins; expected at least one row", path=path, field="ENERG_LO")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise FileFormatError("non-finite energy; expected finite energies in keV", path=path,
                              field="ENERG_LO/ENERG_HI")
    if np.any(lo < 0) or np.any(hi <= lo) or np.any(np.diff(lo) < 0):
        raise FileFormatError("expected non-negative, increasing bins with ENERG_HI > ENERG_LO (keV)",
                              path=path, field="ENERG_LO/ENERG_HI")


# ---------------------------------------------------------------------------
# ARF
def read_arf(path: str | os.PathLike) -> ARF:
    """Read an OGIP ARF (``SPECRESP`` extension): energies in keV, area in cm²."""
    p = Path(path)
    with _open_fits(p, "an OGIP ARF") as hdul:
        hdu = _find_ext(hdul, p, ("SPECRESP",), ("SPECRESP",),
                        "an OGIP ARF with a SPECRESP extension (ENERG_LO, ENERG_HI, SPECRESP)",
                        reject=lambda h: "MATRIX" in _column_names(h))
        lo = _float_col(hdu, "ENERG_LO", p)
        hi = _float_col(hdu, "ENERG_HI", p)
        area = _float_col(hdu, "SPECRESP", p)
        header = _header_dict(hdul[0].header, hdu.header)
    _check_grid(lo, hi, p)
    if not np.all(np.isfinite(area)) or np.any(area < 0):
        raise FileFormatError("expected finite, non-negative effective areas (cm^2)", path=p, field="SPECRESP")
    exposure = header.get("EXPOSURE")
    return ARF(p, lo, hi, area, float(exposure) if exposure is not None else None, header)


# ---------------------------------------------------------------------------
# RMF
def _ragged(col, take: np.ndarray, path: Path, name: str) -> np.ndarray:
    """Concatenate the first ``take[i]`` entries of each row of ``col`` (scalar, fixed or VLA)."""
    take = np.asarray(take, dtype=np.int64)
    arr = np.asarray(col) if not (isinstance(col, np.ndarray) and col.dtype == object) else col
    if arr.dtype != object and arr.ndim == 2:
        width = arr.shape[1]
        if np.any(take > width):
            i = int(np.argmax(take > width))
            raise FileFormatError(f"row {i} holds {width} values but {take[i]} are needed",
                                  path=path, field=name)
        return arr[np.arange(width)[None, :] < take[:, None]]
    if arr.dtype != object and arr.ndim == 1:
        if np.any(take > 1):
            i = int(np.argmax(take > 1))
            raise FileFormatError(f"row {i} holds 1 value but {take[i]} are needed", path=path, field=name)
        return arr[take > 0]
    # variable-length array column: an object array of 1-D arrays
    rows = [np.atleast_1d(np.asarray(r)) for r in col]
    lens = np.fromiter((r.size for r in rows), dtype=np.int64, count=len(rows))
    if np.any(take > lens):
        i = int(np.argmax(take > lens))
        raise FileFormatError(f"row {i} holds {lens[i]} values but {take[i]} are needed",
                              path=path, field=name)
    if lens.sum() == 0:
        return np.zeros(0)
    flat = np.concatenate([r for r in rows if r.size])
    starts = np.repeat(np.cumsum(lens) - lens, lens)
    keep = (np.arange(flat.size) - starts) < np.repeat(take, lens)
    return flat[keep]


def _row_lengths(col) -> np.ndarray:
    if isinstance(col, np.ndarray) and col.dtype != object:
        return np.full(len(col), 1 if col.ndim == 1 else col.shape[1], dtype=np.int64)
    return np.fromiter((np.size(r) for r in col), dtype=np.int64, count=len(col))


def read_rmf(path: str | os.PathLike) -> RMF:
    """Read an OGIP RMF/RSP (``MATRIX``/``SPECRESP MATRIX``/``RSP_MATRIX`` plus ``EBOUNDS``)."""
    p = Path(path)
    with _open_fits(p, "an OGIP RMF") as hdul:
        mhdu = _find_ext(hdul, p, _RMF_EXTNAMES, ("RSP_MATRIX",),
                         "an OGIP RMF with a MATRIX, SPECRESP MATRIX or RSP_MATRIX extension",
                         reject=lambda h: "MATRIX" not in _column_names(h))
        ehdu = _find_ext(hdul, p, ("EBOUNDS",), ("EBOUNDS",),
                         "an EBOUNDS extension (CHANNEL, E_MIN, E_MAX)")
        lo = _float_col(mhdu, "ENERG_LO", p)
        hi = _float_col(mhdu, "ENERG_HI", p)
        f_chan = _col(mhdu, "F_CHAN", p)
        n_chan = _col(mhdu, "N_CHAN", p)
        mat = _col(mhdu, "MATRIX", p)
        n_grp = _col(mhdu, "N_GRP", p, required=False)
        e_min = _float_col(ehdu, "E_MIN", p)
        e_max = _float_col(ehdu, "E_MAX", p)
        eb_chan = _col(ehdu, "CHANNEL", p, required=False)
        offset = _tlmin(mhdu, "F_CHAN")
        if offset is None:
            offset = _tlmin(ehdu, "CHANNEL")
        if offset is None:
            offset = int(np.asarray(eb_chan)[0]) if eb_chan is not None and len(eb_chan) else 1
        header = _header_dict(hdul[0].header, mhdu.header)
        eb_detchans = ehdu.header.get("DETCHANS")
    _check_grid(lo, hi, p)
    n_e = lo.size
    detchans = header.get("DETCHANS")
    n_c = int(detchans) if detchans is not None else e_min.size
    if e_min.size != n_c or (eb_detchans is not None and int(eb_detchans) != n_c):
        raise FileFormatError(f"EBOUNDS has {e_min.size} rows (DETCHANS {eb_detchans}) but the matrix "
                              f"DETCHANS is {n_c}; expected one row per channel", path=p, field="DETCHANS")
    # groups per row
    n_groups = (np.asarray(n_grp, dtype=np.int64).reshape(-1) if n_grp is not None
                else np.minimum(_row_lengths(f_chan), _row_lengths(n_chan)))
    if n_groups.size != n_e or np.any(n_groups < 0):
        raise FileFormatError("expected one non-negative group count per energy row", path=p, field="N_GRP")
    fc = _ragged(f_chan, n_groups, p, "F_CHAN").astype(np.int64)
    nc = _ragged(n_chan, n_groups, p, "N_CHAN").astype(np.int64)
    if np.any(nc < 0):
        raise FileFormatError("negative channel count; expected N_CHAN >= 0", path=p, field="N_CHAN")
    grp_row = np.repeat(np.arange(n_e), n_groups)
    per_row = np.bincount(grp_row, weights=nc, minlength=n_e).astype(np.int64)
    values = _ragged(mat, per_row, p, "MATRIX").astype(np.float64)
    total = int(nc.sum())
    within = np.arange(total) - np.repeat(np.cumsum(nc) - nc, nc)
    cols = np.repeat(fc - offset, nc) + within
    if total and (cols.min() < 0 or cols.max() >= n_c):
        raise FileFormatError(f"F_CHAN/N_CHAN reach channels outside {offset}..{offset + n_c - 1} "
                              f"(DETCHANS {n_c}, first channel TLMIN {offset})", path=p, field="F_CHAN")
    if not np.all(np.isfinite(values)):
        raise FileFormatError("non-finite matrix element; expected finite probabilities",
                              path=p, field="MATRIX")
    rows = np.repeat(np.arange(n_e), per_row)
    matrix = sp.csr_matrix((values, (rows, cols)), shape=(n_e, n_c), dtype=np.float64)
    matrix.sum_duplicates()
    return RMF(p, lo, hi, e_min, e_max, matrix, int(offset), header)


# ---------------------------------------------------------------------------
# compatibility checks
def _grid_mismatch(a_lo, a_hi, b_lo, b_hi) -> str | None:
    if a_lo.size != b_lo.size:
        return f"{a_lo.size} energy bins vs {b_lo.size}"
    for name, x, y in (("ENERG_LO", a_lo, b_lo), ("ENERG_HI", a_hi, b_hi)):
        bad = np.abs(x - y) > GRID_RTOL * np.maximum(np.abs(x), np.abs(y)) + 1e-9
        if np.any(bad):
            i = int(np.argmax(bad))
            return f"{name}[{i}] = {x[i]:.6g} vs {y[i]:.6g} keV"
    return None


def check_compatible(obj: Spectrum | ARF, rmf: RMF, arf: ARF | None = None) -> None:
    """Raise :class:`ResponseMismatchError` unless ``obj`` (a spectrum or ARF) fits ``rmf``.

    ARF vs RMF: the same ENERG_LO/ENERG_HI grid to relative 1e-5.  Spectrum vs RMF:
    the same number of channels, and the spectrum's DETCHANS (if given) equal to
    the RMF's channel count.  A spectrum's own ARF (or ``arf``) is checked too.
    """
    if isinstance(obj, ARF):
        arf, spec = obj, None
    else:
        spec = obj
        arf = arf if arf is not None else spec.arf
    if spec is not None:
        det = spec.header.get("DETCHANS")
        if spec.n_channels != rmf.n_channels or (det is not None and int(det) != rmf.n_channels):
            raise ResponseMismatchError(
                f"spectrum has {spec.n_channels} channels (DETCHANS {det}) but RMF {rmf.path} has "
                f"{rmf.n_channels}; expected the same channel count", path=spec.path, field="DETCHANS")
    if arf is not None:
        why = _grid_mismatch(arf.energ_lo, arf.energ_hi, rmf.energ_lo, rmf.energ_hi)
        if why:
            raise ResponseMismatchError(
                f"energy grid differs from RMF {rmf.path} ({why}); expected the same ENERG_LO/ENERG_HI "
                f"grid to relative {GRID_RTOL:g}", path=arf.path, field="ENERG_LO")


# ---------------------------------------------------------------------------
# PHA
def resolve_linked(name: str, base: Path) -> Path | None:
    """Path of a file named in a header, relative to folder ``base``; tries ``.gz`` variants."""
    if _is_none_name(name):
        return None
    name = name.strip()
    p = Path(name).expanduser()
    if not p.is_absolute():
        p = base / p
    candidates = [p]
    candidates.append(p.with_name(p.name[:-3]) if p.name.lower().endswith(".gz")
                      else p.with_name(p.name + ".gz"))
    for c in candidates:
        if c.is_file():
            return c
    return None


def _positive(value, path: Path, name: str, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise FileFormatError(f"expected {what}, got {value!r}", path=path, field=name) from None
    if not np.isfinite(v) or v <= 0:
        raise FileFormatError(f"expected {what}, got {v:g}", path=path, field=name)
    return v


def _scaling(value, path: Path, name: str, n: int) -> float | np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if a.ndim == 0:
        if not np.isfinite(a) or a < 0:
            raise FileFormatError(f"expected a finite non-negative number, got {float(a):g}",
                                  path=path, field=name)
        return float(a)
    if a.shape != (n,) or not np.all(np.isfinite(a)) or np.any(a < 0):
        raise FileFormatError(f"expected {n} finite non-negative values", path=path, field=name)
    return a


def _frame_time(headers: list[tuple[str, Mapping]]) -> tuple[float | None, str | None]:
    for where, h in headers:
        for key in ("TIMEDEL", "FRAMETIM", "EXPTIME"):
            v = h.get(key)
            if v is None:
                continue
            try:
                t = float(v)
            except (TypeError, ValueError):
                continue
            if not np.isfinite(t) or t <= 0:
                continue
            if key == "EXPTIME" and str(h.get("INSTRUME", "ACIS")).upper().startswith("ACIS"):
                t = round(t + ACIS_FRAME_TRANSFER_S, 9)
            return t, f"{where} {key}"
    return None, None


def _is_bkg_ext(hdu) -> bool:
    return str(hdu.header.get("HDUCLAS2", "")).strip().upper() in ("BKG", "BACKGROUND")


def _select_row(hdu, path: Path, n_rows: int, row, tg_m, tg_part) -> int:
    names = _column_names(hdu)
    m = np.asarray(hdu.data.field("TG_M")).astype(int) if "TG_M" in names else None
    part = np.asarray(hdu.data.field("TG_PART")).astype(int) if "TG_PART" in names else None

    def listing() -> str:
        if m is None or part is None:
            return f"rows 0..{n_rows - 1}"
        shown = "; ".join(f"{i}: {part[i]},{m[i]:+d}" for i in range(min(n_rows, 24)))
        return "rows (index: TG_PART,TG_M) " + shown + ("; ..." if n_rows > 24 else "")

    if row is not None:
        if not isinstance(row, int | np.integer) or not 0 <= row < n_rows:
            raise ParameterError(f"row {row!r} out of range; expected an index 0..{n_rows - 1}",
                                 path=path, field="row")
        idx = int(row)
        for val, col, key in ((tg_m, m, "TG_M"), (tg_part, part, "TG_PART")):
            if val is not None and col is not None and col[idx] != val:
                raise ParameterError(f"row {idx} has {key}={col[idx]} but {key}={val} was asked for",
                                     path=path, field=key)
        return idx
    mask = np.ones(n_rows, dtype=bool)
    for val, col, key in ((tg_m, m, "TG_M"), (tg_part, part, "TG_PART")):
        if val is not None:
            if col is None:
                raise ParameterError(f"no {key} column to select by; expected row=INDEX (0..{n_rows - 1})",
                                     path=path, field=key)
            mask &= col == int(val)
    hits = np.flatnonzero(mask)
    if hits.size == 1:
        return int(hits[0])
    if hits.size == 0:
        raise ParameterError(f"no row with TG_M={tg_m} TG_PART={tg_part}; expected one of {listing()}",
                             path=path, field="TG_M/TG_PART")
    raise ParameterError(f"type II file with {hits.size} matching spectra; expected row= or tg_m= and "
                         f"tg_part= selecting one of {listing()}", path=path, field="row")


def _read_spectrum_ext(path: Path, row, tg_m, tg_part, want_bkg: bool = False,
                       row_hint: int | None = None) -> tuple[Spectrum, Spectrum | None]:
    """Read the (background) spectrum extension of a PHA file, without responses.

    Returns the spectrum and the background embedded as BACKGROUND_UP/DOWN columns (or None).
    """
    what = "an OGIP PHA spectrum"
    with _open_fits(path, what) as hdul:
        if want_bkg:
            hdu = _find_ext(hdul, path, ("SPECTRUM",), (), "a background SPECTRUM extension (HDUCLAS2 BKG)",
                            reject=lambda h: not _is_bkg_ext(h))
        else:
            hdu = next((h for h in hdul[1:] if isinstance(h, fits.BinTableHDU)
                        and str(h.header.get("HDUCLAS1", "")).strip().upper() == "SPECTRUM"
                        and not _is_bkg_ext(h)), None)
            if hdu is None:
                hdu = _find_ext(hdul, path, ("SPECTRUM",), (),
                                "an OGIP PHA file with a SPECTRUM extension (CHANNEL, COUNTS or RATE)")
        names = _column_names(hdu)
        data_col = "COUNTS" if "COUNTS" in names else "RATE" if "RATE" in names else None
        if data_col is None:
            raise FileFormatError(f"column missing in extension {_ext_label(hdu)}; expected a COUNTS or "
                                  f"RATE column (found {', '.join(hdu.columns.names)})",
                                  path=path, field="COUNTS")
        raw = _col(hdu, data_col, path)
        type2 = (isinstance(raw, np.ndarray) and raw.dtype != object and raw.ndim == 2) or \
            "TYPE:II" in (str(hdu.header.get("HDUCLAS3", "")).upper(), str(hdu.header.get("HDUCLAS4", "")).upper())
        header = _header_dict(hdul[0].header, hdu.header)
        if type2:
            n_rows = len(raw)
            if n_rows == 0:
                raise FileFormatError("type II file without rows; expected at least one spectrum",
                                      path=path, field=data_col)
            if row is None and tg_m is None and tg_part is None and row_hint is not None and n_rows > 1:
                row = row_hint
            idx = _select_row(hdu, path, n_rows, row, tg_m, tg_part) if n_rows > 1 or row is not None \
                or tg_m is not None or tg_part is not None else 0
        else:
            idx = None
            if row not in (None, 0):
                raise ParameterError(f"row {row!r} given but this is a type I file (one spectrum); "
                                     "expected row=None or 0", path=path, field="row")
            for val, key in ((tg_m, "TG_M"), (tg_part, "TG_PART")):
                if val is not None and key in header and int(header[key]) != int(val):
                    raise ParameterError(f"file has {key}={header[key]} but {key}={val} was asked for",
                                         path=path, field=key)

        def value(name: str, default=None):
            """Per-row column value (type II), column (type I), keyword, or default."""
            if name.upper() in names:
                c = _col(hdu, name, path)
                v = c[idx] if idx is not None else c
                if isinstance(v, bytes | np.bytes_):
                    v = v.decode(errors="replace")
                return v.strip() if isinstance(v, str) else np.asarray(v)
            return header.get(name.upper(), default)

        counts = np.array(raw[idx] if idx is not None else raw, dtype=np.float64).reshape(-1)
        n = counts.size
        chan = value("CHANNEL")
        if chan is None:
            first = _tlmin(hdu, data_col) or 1
            chan = np.arange(first, first + n)
        channel = np.asarray(chan).astype(np.int64).reshape(-1)
        if channel.size != n:
            raise FileFormatError(f"{channel.size} channels for {n} spectrum values; expected equal lengths",
                                  path=path, field="CHANNEL")
        exposure = _positive(value("EXPOSURE"), path, "EXPOSURE", "a positive exposure time (s)")
        if data_col == "RATE":
            counts = counts * exposure
        if not np.all(np.isfinite(counts)):
            raise FileFormatError("non-finite value; expected finite counts", path=path, field=data_col)
        backscal = _scaling(value("BACKSCAL", 1.0), path, "BACKSCAL", n)
        areascal = _scaling(value("AREASCAL", 1.0), path, "AREASCAL", n)
        if data_col == "COUNTS" and np.any(counts != np.round(counts)):
            k = int(np.count_nonzero(counts != np.round(counts)))
            warnings.warn(f"{path}: COUNTS: {k} channel(s) hold non-integer counts (e.g. a "
                          "background-subtracted or scaled spectrum); Poisson statistics assume "
                          "whole numbers of counts", stacklevel=3)
        grouping = quality = None
        for key, allowed in (("GROUPING", (-1, 0, 1)), ("QUALITY", (0, 1, 2, 5))):
            v = value(key)
            if v is None:
                continue
            try:
                f = np.asarray(v, dtype=np.float64)
            except (TypeError, ValueError):
                raise FileFormatError(f"expected integer flags {allowed}, got {v!r}", path=path,
                                      field=key) from None
            if not np.all(np.isfinite(f)) or np.any(f != np.round(f)):
                raise FileFormatError(f"expected integer flags {allowed}", path=path, field=key)
            a = f.astype(np.int64)
            if a.ndim == 0:
                if int(a) == 0:
                    continue
                a = np.full(n, int(a))
            a = a.reshape(-1) if a.ndim > 1 and a.size == n else a
            if a.shape != (n,):
                raise FileFormatError(f"expected {n} values (one per channel), got shape {a.shape}",
                                      path=path, field=key)
            bad = ~np.isin(a, allowed)
            if bad.any():
                raise FileFormatError(f"value {int(a[bad][0])} in {int(bad.sum())} channel(s); "
                                      f"expected one of {', '.join(map(str, allowed))} (OGIP)",
                                      path=path, field=key)
            if key == "GROUPING":
                grouping = a
            else:
                quality = a
        if idx is not None:  # per-row identity into the header
            for key in ("SPEC_NUM", "TG_M", "TG_PART", "TG_SRCID", "ANCRFILE", "RESPFILE", "BACKFILE",
                        "EXPOSURE", "BACKSCAL"):
                v = value(key)
                if v is not None and (not isinstance(v, np.ndarray) or v.ndim == 0):
                    header[key] = v.item() if isinstance(v, np.ndarray) else v
        # embedded grating background (BACKGROUND_UP + BACKGROUND_DOWN)
        embedded = None
        if "BACKGROUND_UP" in names and "BACKGROUND_DOWN" in names:
            up, dn = value("BACKSCUP"), value("BACKSCDN")
            if up is not None and dn is not None:
                bcounts = (np.asarray(value("BACKGROUND_UP"), np.float64)
                           + np.asarray(value("BACKGROUND_DOWN"), np.float64)).reshape(-1)
                bscal = _scaling(np.asarray(up, float) + np.asarray(dn, float), path, "BACKSCUP+BACKSCDN", n)
                embedded = Spectrum(path, bcounts, channel.copy(), exposure, bscal, areascal,
                                    header={**header, "HDUCLAS2": "BKG"}, row=idx)
    spec = Spectrum(path, counts, channel, exposure, backscal, areascal, grouping, quality,
                    header=header, row=idx)
    return spec, embedded


def _load_slot(given, reader, kind: str, field_name: str):
    """An explicitly given response/background: object as is, or a path to read ('none': None)."""
    if isinstance(given, ARF | RMF | Spectrum):
        return given
    if isinstance(given, str) and _is_none_name(given):
        return None
    p = Path(given)
    if not p.is_file():
        alt = resolve_linked(str(p), Path.cwd())
        if alt is None:
            raise FileFormatError(f"file not found; expected an existing {kind}", path=p, field=field_name)
        p = alt
    return reader(p)


def read_pha(path: str | os.PathLike, row: int | None = None, tg_m: int | None = None,
             tg_part: int | None = None, frame_time: float | None = None, load_responses: bool = True,
             arf: str | os.PathLike | ARF | None = None, rmf: str | os.PathLike | RMF | None = None,
             background: str | os.PathLike | Spectrum | None = None) -> Spectrum:
    """Read a PHA type I or II spectrum with its ARF, RMF and background.

    ``row`` (0-based) or ``tg_m``/``tg_part`` select a type II row.  ``frame_time``
    (s) overrides the header.  ``arf``/``rmf``/``background`` (paths or loaded
    objects; the string ``'none'`` for no file) override the header links; with
    ``load_responses=False`` header links are not followed.  Counts are float64
    counts (RATE × EXPOSURE for rate files).  Raises FileFormatError, ParameterError or ResponseMismatchError.
    """
    p = Path(path)
    spec, embedded = _read_spectrum_ext(p, row, tg_m, tg_part)
    base = p.resolve().parent
    h = spec.header

    def linked(key: str, reader, kind: str):
        name = h.get(key)
        if _is_none_name(name):
            return None
        target = resolve_linked(str(name), base)
        if target is None:
            spec.missing[key] = f"{key} '{name}' not found beside the spectrum"
            warnings.warn(f"{p}: {key}: '{name}' not found in {base} (nor .gz); {kind} not loaded",
                          stacklevel=3)
            return None
        return reader(target)

    if arf is not None:
        spec.arf = _load_slot(arf, read_arf, "ARF", "arf")
    elif load_responses:
        spec.arf = linked("ANCRFILE", read_arf, "ARF")
    if rmf is not None:
        spec.rmf = _load_slot(rmf, read_rmf, "RMF", "rmf")
    elif load_responses:
        spec.rmf = linked("RESPFILE", read_rmf, "RMF")

    if background is not None:
        if isinstance(background, Spectrum):
            spec.background = background
        else:
            bp = _load_slot(background, lambda q: q, "background PHA", "background")
            spec.background = None if bp is None else _read_background(bp, p, spec)
    elif load_responses:
        name = h.get("BACKFILE")
        if not _is_none_name(name):
            target = resolve_linked(str(name), base)
            if target is None:
                spec.missing["BACKFILE"] = f"BACKFILE '{name}' not found beside the spectrum"
                warnings.warn(f"{p}: BACKFILE: '{name}' not found in {base} (nor .gz); "
                              "background not loaded", stacklevel=2)
            else:
                spec.background = _read_background(target, p, spec)
        elif embedded is not None:
            spec.background = embedded
    if spec.background is not None and spec.background.n_channels != spec.n_channels:
        raise ResponseMismatchError(
            f"background {spec.background.path} has {spec.background.n_channels} channels but the "
            f"spectrum has {spec.n_channels}; expected the same channel count", path=p, field="BACKFILE")

    if spec.rmf is not None:
        check_compatible(spec, spec.rmf)
    # frame time: user > spectrum headers > RMF header
    if frame_time is not None:
        try:
            ft = float(frame_time)
        except (TypeError, ValueError):
            ft = float("nan")
        if not np.isfinite(ft) or ft <= 0:
            raise ParameterError(f"expected a positive frame time in seconds, got {frame_time!r}",
                                 path=p, field="frame_time")
        spec.frame_time, spec.frame_time_source = ft, "user"
    else:
        sources = [("spectrum", h)]
        if spec.rmf is not None:
            sources.append(("RMF", spec.rmf.header))
        spec.frame_time, spec.frame_time_source = _frame_time(sources)
    return spec


def _read_background(bpath: Path, src_path: Path, spec: Spectrum) -> Spectrum:
    same = bpath.resolve() == src_path.resolve()
    return _read_spectrum_ext(bpath, None, None, None, want_bkg=same, row_hint=spec.row)[0]


# ---------------------------------------------------------------------------
# writing
_STRUCTURAL = ("XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "TFIELDS", "TTYPE", "TFORM",
               "TUNIT", "TLMIN", "TLMAX", "EXTNAME", "SIMPLE", "EXTEND", "THEAP", "TDIM")


def _as_int_counts(counts) -> np.ndarray:
    c = np.asarray(counts)
    if c.ndim != 1 or c.size == 0:
        raise ParameterError(f"expected a 1-D array of counts per channel, got shape {c.shape}",
                             field="counts")
    cf = c.astype(np.float64)
    if not np.all(np.isfinite(cf)) or np.any(cf < 0) or np.any(cf != np.round(cf)):
        raise ParameterError("expected finite, non-negative whole numbers of counts", field="counts")
    if cf.max() > np.iinfo(np.int32).max:
        raise ParameterError("counts exceed the 32-bit integer range of a COUNTS column", field="counts")
    return cf.astype(np.int32)


def _link_name(v) -> str:
    return "none" if v is None else os.fspath(v)


def _check_output(path: str | os.PathLike, overwrite: bool) -> Path:
    out = Path(path)
    if out.exists() and not overwrite:
        raise SimxrayError("file exists; expected a new file name or overwrite=True (--overwrite)",
                           path=out, field="output")
    if not out.parent.is_dir():
        raise SimxrayError("folder does not exist; expected an existing output folder", path=out.parent,
                           field="output")
    return out


def _finish_header(hh: fits.Header, header: Mapping[str, Any] | None,
                   provenance: Mapping[str, Any] | None) -> None:
    """Add CREATOR, user keywords and provenance (JSON in HISTORY cards) to an extension header."""
    from .. import __version__
    from ..provenance import provenance as make_provenance

    hh["CREATOR"] = (f"simxray {__version__}", "program that wrote this file")
    for k, v in (header or {}).items():
        key = str(k).upper()
        if key.startswith(_STRUCTURAL) or key in ("HISTORY", "COMMENT"):
            raise ParameterError("cannot override a structural FITS keyword", field=f"header.{k}")
        try:
            hh[key] = v
        except (ValueError, TypeError, KeyError) as exc:
            raise ParameterError(f"not a valid FITS keyword/value ({_one_line(exc)})", field=f"header.{k}") from None
    prov = dict(provenance) if provenance is not None else make_provenance()
    text = json.dumps(prov, sort_keys=True, default=str)  # ASCII (non-ASCII escaped)
    width = 72 - len(_PROV_TAG) - 1
    for i in range(0, len(text), width):  # '|' ends each chunk: FITS readers strip trailing blanks
        hh.add_history(_PROV_TAG + text[i:i + width] + "|")


def _write_hdus(out: Path, hdus: list, telescope: str, instrument: str) -> Path:
    """Verify and write a primary HDU plus ``hdus`` atomically (temp file + os.replace); gzip for .gz."""
    from .. import __version__
    from ..provenance import atomic_path

    primary = fits.PrimaryHDU()
    primary.header["TELESCOP"] = telescope
    primary.header["INSTRUME"] = instrument
    primary.header["CREATOR"] = f"simxray {__version__}"
    hdul = fits.HDUList([primary, *hdus])
    try:
        hdul.verify("exception")
    except fits.VerifyError as exc:
        raise ParameterError(f"would not be a valid FITS file ({_one_line(exc)})", path=out, field="header") from None
    buf = io.BytesIO()
    hdul.writeto(buf, checksum=True)
    payload = buf.getvalue()
    if out.name.lower().endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)
    tmp = atomic_path(out)
    try:
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def _set_cards(hh: fits.Header, cards) -> None:
    for k, v, cmt in cards:
        hh[k] = (v, cmt)


def write_pha(path: str | os.PathLike, counts, exposure: float, *, respfile=None, ancrfile=None,
              backfile=None, backscal: float | np.ndarray = 1.0, areascal: float | np.ndarray = 1.0,
              frame_time: float | None = None, telescope: str = "CHANDRA", instrument: str = "ACIS",
              header: Mapping[str, Any] | None = None, provenance: Mapping[str, Any] | None = None,
              overwrite: bool = False, channel=None, grouping=None, quality=None,
              first_channel: int = 1, chantype: str = "PI", background: bool = False) -> Path:
    """Write an OGIP PHA type I spectrum (integer COUNTS, Poisson errors), atomically.

    ``counts`` (C,) whole numbers; ``exposure`` s; ``frame_time`` s → ``TIMEDEL``;
    ``respfile``/``ancrfile``/``backfile`` are stored as given (relative names are
    resolved against the PHA's folder when read back).  ``backscal``/``areascal``
    scalar (keyword) or (C,) (column).  ``header`` adds keywords (OBJECT, ...).
    ``provenance`` (default :func:`simxray.provenance.provenance`) goes into
    ``HISTORY`` cards (see :func:`read_provenance`).  A ``.gz`` name writes gzip.
    ``background=True`` marks the spectrum ``HDUCLAS2 = 'BKG'``.  Returns the path.
    """
    out = _check_output(path, overwrite)
    c = _as_int_counts(counts)
    n = c.size
    try:
        expo = float(exposure)
    except (TypeError, ValueError):
        expo = float("nan")
    if not np.isfinite(expo) or expo <= 0:
        raise ParameterError(f"expected a positive exposure time in seconds, got {exposure!r}",
                             field="exposure")
    if frame_time is not None and not (np.isfinite(float(frame_time)) and float(frame_time) > 0):
        raise ParameterError(f"expected a positive frame time in seconds, got {frame_time!r}",
                             field="frame_time")
    chan = (np.arange(first_channel, first_channel + n, dtype=np.int32) if channel is None
            else np.asarray(channel).astype(np.int32).reshape(-1))
    if chan.size != n:
        raise ParameterError(f"expected {n} channel numbers, got {chan.size}", field="channel")

    cols = [fits.Column(name="CHANNEL", format="J", array=chan),
            fits.Column(name="COUNTS", format="J", unit="count", array=c)]
    scal_kw: dict[str, float] = {}
    for name, val in (("BACKSCAL", backscal), ("AREASCAL", areascal)):
        a = np.asarray(val, dtype=np.float64)
        if a.ndim == 0:
            if not np.isfinite(a) or a <= 0:
                raise ParameterError(f"expected a positive number, got {float(a):g}", field=name.lower())
            scal_kw[name] = float(a)
        else:
            if a.shape != (n,) or not np.all(np.isfinite(a)) or np.any(a < 0):
                raise ParameterError(f"expected a scalar or {n} finite non-negative values",
                                     field=name.lower())
            cols.append(fits.Column(name=name, format="D", array=a))
    for name, val in (("GROUPING", grouping), ("QUALITY", quality)):
        if val is not None:
            a = np.asarray(val).astype(np.int16).reshape(-1)
            if a.size != n:
                raise ParameterError(f"expected {n} values, got {a.size}", field=name.lower())
            cols.append(fits.Column(name=name, format="I", array=a))

    hdu = fits.BinTableHDU.from_columns(cols, name="SPECTRUM")
    hh = hdu.header
    hh["TLMIN1"] = (int(chan.min()), "first possible channel")
    hh["TLMAX1"] = (int(chan.max()), "last possible channel")
    _set_cards(hh, [
        ("HDUCLASS", "OGIP", "format conforms to OGIP standard"),
        ("HDUCLAS1", "SPECTRUM", "PHA dataset (OGIP memo OGIP-92-007)"),
        ("HDUCLAS2", "BKG" if background else "TOTAL", "background or total (source+background)"),
        ("HDUCLAS3", "COUNT", "PHA data stored as counts"),
        ("HDUCLAS4", "TYPE:I", "single spectrum"),
        ("HDUVERS", "1.2.1", "version of format (OGIP memo OGIP-92-007)"),
        ("TELESCOP", telescope, "mission/satellite name"),
        ("INSTRUME", instrument, "instrument/detector name"),
        ("FILTER", "none", "filter in use"),
        ("EXPOSURE", expo, "[s] exposure time"),
        ("BACKFILE", _link_name(backfile), "associated background file"),
        ("RESPFILE", _link_name(respfile), "associated redistribution matrix file"),
        ("ANCRFILE", _link_name(ancrfile), "associated ancillary response file"),
        ("CORRFILE", "none", "associated correction file"),
        ("CORRSCAL", 1.0, "correction file scaling factor"),
        ("POISSERR", True, "Poisson errors apply"),
        ("SYS_ERR", 0.0, "no systematic error"),
        ("CHANTYPE", chantype, "channel type (PHA or PI)"),
        ("DETCHANS", n, "total number of detector channels"),
    ])
    for k, v in scal_kw.items():
        hh[k] = (v, "area scaling factor" if k == "AREASCAL" else "background scaling factor")
    if grouping is None:
        hh["GROUPING"] = (0, "no grouping of the data")
    if quality is None:
        hh["QUALITY"] = (0, "no data quality information")
    if frame_time is not None:
        hh["TIMEDEL"] = (float(frame_time), "[s] frame time (exposure + transfer)")
    _finish_header(hh, header, provenance)
    return _write_hdus(out, [hdu], telescope, instrument)


def _energy_grid(energ_lo, energ_hi, what: str) -> tuple[np.ndarray, np.ndarray]:
    lo = np.asarray(energ_lo, dtype=np.float64).reshape(-1)
    hi = np.asarray(energ_hi, dtype=np.float64).reshape(-1)
    if lo.shape != hi.shape or lo.size == 0:
        raise ParameterError(f"expected equal-length non-empty energy arrays, got {lo.size} and {hi.size}",
                             field=f"{what}.energ_lo/energ_hi")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))) or np.any(lo < 0) or \
            np.any(hi <= lo) or np.any(np.diff(lo) < 0):
        raise ParameterError("expected finite, non-negative, increasing bins with energ_hi > energ_lo (keV)",
                             field=f"{what}.energ_lo/energ_hi")
    return lo, hi


def write_arf(path: str | os.PathLike, energ_lo, energ_hi, specresp, *, exposure: float | None = None,
              telescope: str = "CHANDRA", instrument: str = "ACIS", header: Mapping[str, Any] | None = None,
              provenance: Mapping[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write an OGIP ARF (``SPECRESP``: energies keV, effective area cm²), atomically."""
    out = _check_output(path, overwrite)
    lo, hi = _energy_grid(energ_lo, energ_hi, "arf")
    area = np.asarray(specresp, dtype=np.float64).reshape(-1)
    if area.shape != lo.shape or not np.all(np.isfinite(area)) or np.any(area < 0):
        raise ParameterError(f"expected {lo.size} finite non-negative areas (cm^2)", field="specresp")
    hdu = fits.BinTableHDU.from_columns([
        fits.Column(name="ENERG_LO", format="E", unit="keV", array=lo),
        fits.Column(name="ENERG_HI", format="E", unit="keV", array=hi),
        fits.Column(name="SPECRESP", format="E", unit="cm**2", array=area)], name="SPECRESP")
    _set_cards(hdu.header, [
        ("HDUCLASS", "OGIP", "format conforms to OGIP standard"),
        ("HDUCLAS1", "RESPONSE", "dataset relates to spectral response"),
        ("HDUCLAS2", "SPECRESP", "dataset contains spectral response"),
        ("HDUVERS", "1.1.0", "version of format (OGIP memo CAL/GEN/92-002a)"),
        ("TELESCOP", telescope, "mission/satellite name"),
        ("INSTRUME", instrument, "instrument/detector name"),
        ("FILTER", "none", "filter in use"),
    ])
    if exposure is not None:
        hdu.header["EXPOSURE"] = (float(exposure), "[s] exposure time")
    _finish_header(hdu.header, header, provenance)
    return _write_hdus(out, [hdu], telescope, instrument)


def _vla(values: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    """Split a flat array into per-row pieces of the given lengths (for VLA columns)."""
    return np.split(values, np.cumsum(counts)[:-1])


def write_rmf(path: str | os.PathLike, energ_lo, energ_hi, matrix, e_min, e_max, *, offset: int = 1,
              telescope: str = "CHANDRA", instrument: str = "ACIS", chantype: str = "PI",
              header: Mapping[str, Any] | None = None, provenance: Mapping[str, Any] | None = None,
              overwrite: bool = False) -> Path:
    """Write an OGIP RMF (``MATRIX`` with variable-length F_CHAN/N_CHAN/MATRIX, ``EBOUNDS``).

    ``matrix`` (M energies, C channels), dense or scipy.sparse, probabilities per
    channel; ``e_min``/``e_max`` (C,) keV; channels are ``offset .. offset+C-1``.
    Each row's non-zero elements are stored as runs of adjacent channels (groups).
    """
    out = _check_output(path, overwrite)
    lo, hi = _energy_grid(energ_lo, energ_hi, "rmf")
    m = sp.csr_matrix(matrix, dtype=np.float64)
    m.eliminate_zeros()
    m.sort_indices()
    n_e, n_c = m.shape
    if n_e != lo.size:
        raise ParameterError(f"matrix has {n_e} rows but {lo.size} energy bins; expected equal",
                             field="matrix")
    if not np.all(np.isfinite(m.data)) or np.any(m.data < 0):
        raise ParameterError("expected finite, non-negative matrix elements", field="matrix")
    emin = np.asarray(e_min, dtype=np.float64).reshape(-1)
    emax = np.asarray(e_max, dtype=np.float64).reshape(-1)
    if emin.size != n_c or emax.size != n_c:
        raise ParameterError(f"expected {n_c} channel bounds (one per matrix column), got {emin.size}",
                             field="e_min/e_max")
    per_row = np.diff(m.indptr)
    rows = np.repeat(np.arange(n_e), per_row)
    idx = m.indices.astype(np.int64)
    start = np.ones(idx.size, dtype=bool)
    start[1:] = (idx[1:] != idx[:-1] + 1) | (rows[1:] != rows[:-1])
    first = np.flatnonzero(start)
    f_chan = (idx[first] + offset).astype(np.int32)
    n_chan = np.diff(np.append(first, idx.size)).astype(np.int32)
    n_grp = np.bincount(rows[first], minlength=n_e).astype(np.int16 if n_c < 32767 else np.int32)
    mat = m.data.astype(np.float32)
    cols = [
        fits.Column(name="ENERG_LO", format="E", unit="keV", array=lo),
        fits.Column(name="ENERG_HI", format="E", unit="keV", array=hi),
        fits.Column(name="N_GRP", format="I" if n_grp.dtype == np.int16 else "J", array=n_grp),
        fits.Column(name="F_CHAN", format="PJ()", array=_vla(f_chan, n_grp)),
        fits.Column(name="N_CHAN", format="PJ()", array=_vla(n_chan, n_grp)),
        fits.Column(name="MATRIX", format="PE()", array=_vla(mat, per_row)),
    ]
    mhdu = fits.BinTableHDU.from_columns(cols, name="MATRIX")
    mhdu.header["TLMIN4"] = (int(offset), "first channel in the response")
    mhdu.header["TLMAX4"] = (int(offset + n_c - 1), "last channel in the response")
    common = [("HDUCLASS", "OGIP", "format conforms to OGIP standard"),
              ("HDUCLAS1", "RESPONSE", "dataset relates to spectral response"),
              ("HDUVERS", "1.3.0", "version of format (OGIP memo CAL/GEN/92-002a)"),
              ("TELESCOP", telescope, "mission/satellite name"),
              ("INSTRUME", instrument, "instrument/detector name"),
              ("FILTER", "none", "filter in use"),
              ("CHANTYPE", chantype, "channel type (PHA or PI)"),
              ("DETCHANS", n_c, "total number of detector channels")]
    _set_cards(mhdu.header, [*common, ("HDUCLAS2", "RSP_MATRIX", "dataset is a spectral response matrix"),
                             ("HDUCLAS3", "REDIST", "redistribution only (no effective area)"),
                             ("LO_THRES", float(m.data.min()) if m.nnz else 0.0,
                              "lowest matrix element stored")])
    ehdu = fits.BinTableHDU.from_columns([
        fits.Column(name="CHANNEL", format="J", array=np.arange(offset, offset + n_c, dtype=np.int32)),
        fits.Column(name="E_MIN", format="E", unit="keV", array=emin),
        fits.Column(name="E_MAX", format="E", unit="keV", array=emax)], name="EBOUNDS")
    ehdu.header["TLMIN1"] = int(offset)
    ehdu.header["TLMAX1"] = int(offset + n_c - 1)
    _set_cards(ehdu.header, [*common, ("HDUCLAS2", "EBOUNDS", "nominal energies of channel bounds")])
    _finish_header(mhdu.header, header, provenance)
    return _write_hdus(out, [mhdu, ehdu], telescope, instrument)


def read_provenance(path: str | os.PathLike) -> dict | None:
    """The provenance dict written by this module's writers into a FITS file, or None."""
    p = Path(path)
    with _open_fits(p, "a FITS file written by simxray") as hdul:
        for hdu in hdul:
            parts = [str(v).rstrip()[len(_PROV_TAG):-1] for v in hdu.header.get("HISTORY", [])
                     if str(v).startswith(_PROV_TAG)]
            if parts:
                try:
                    return json.loads("".join(parts))
                except json.JSONDecodeError:
                    raise FileFormatError("corrupt provenance HISTORY cards; expected JSON",
                                          path=p, field="HISTORY") from None
    return None
