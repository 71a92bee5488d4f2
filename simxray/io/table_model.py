"""XSPEC table models (OGIP memo 92-009): reader, HDF5 conversion and evaluation.

A table model is a grid of spectra over ``k`` interpolation parameters
(PARAMETERS extension; the last parameter varies fastest in SPECTRA), on the
table's own energy bins (ENERGIES).  Supported features:

* additive (``ADDMODEL = T``; spectra in photons/cm^2/s per bin) and
  multiplicative tables (dimensionless factor per bin);
* linear (``METHOD = 0``) or logarithmic (``METHOD = 1``) interpolation in each
  parameter; multilinear over the 2^k corners of the enclosing grid cell.  A log
  step whose bracketing grid values are not both positive falls back to linear.
  Values outside a parameter's grid (but inside its hard limits) are clamped to
  the grid edge;
* additional (non-interpolated) parameters: ``NADDPARM`` columns ``ADDSPnnn``
  interpolated like INTPSPEC and added with weight equal to the parameter value;
* ``NXFLTEXP`` spectra per grid point (one chosen with ``xflt``; default the first);
* ``REDSHIFT`` (parameter ``Redshift``: table energies divided by 1 + z, additive
  fluxes divided by 1 + z as XSPEC's atable does) and ``ESCALE`` (parameter
  ``Escale``: table energies multiplied by Escale);
* evaluation on any energy grid.  Additive: photons in each requested bin are the
  overlap-weighted share of each table bin (flux conserving); zero outside the
  table's energies.  Multiplicative: the overlap-weighted average over the part of
  the bin the table covers; a bin wholly below (above) the table takes LOELIMIT
  (HIELIMIT), which default to 1 as documented for XSPEC's mtable.  These rules
  reproduce the XSPEC 12.13.1 outputs of ``shared/data/xspec_tables/README`` (where
  an additive table returns 0 above its range whatever HIELIMIT says).

The HDF5 conversion (:func:`convert_to_hdf5`) stores the same content with
spectra chunked one row per chunk so that the 2^k corner spectra of an
evaluation are read without touching the rest of a large table (official xillver
tables are several hundred MB).  ``table:PATH`` (FITS or its HDF5 conversion)
works in any model expression; each evaluation's provenance names the table by
path and SHA-256 (``ModelSpec.info["table"]``).

Length: the XSPEC table format (FITS and its HDF5 conversion), the interpolation on the parameter grid and the registry hook belong together; the reader and the interpolator share the grid checks.
"""

from __future__ import annotations

import json
import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..errors import FileFormatError, ParameterError, SimxrayError
from ..models import ModelSpec, Parameter, register_table_loader
from ..provenance import provenance, sha256

HDF5_FORMAT = "simxray-xspec-table"
HDF5_VERSION = 1
#: tables smaller than this are read into memory; larger ones are read row by row
IN_MEMORY_BYTES = 512 * 1024**2

_PARAM_FIELDS = ("INITIAL", "DELTA", "MINIMUM", "BOTTOM", "TOP", "MAXIMUM")


@dataclass(frozen=True)
class TableParameter:
    """One PARAMETERS row: XSPEC name, METHOD (0 lin, 1 log, -1 additional), limits, grid."""

    name: str
    method: int
    initial: float
    delta: float
    minimum: float
    bottom: float
    top: float
    maximum: float
    values: np.ndarray = field(repr=False)  # tabulated values (empty for additional ones)

    def as_parameter(self) -> Parameter:
        lo, hi = min(self.minimum, self.maximum), max(self.minimum, self.maximum)
        return Parameter(self.name, float(np.clip(self.initial, lo, hi)), lo, hi, "",
                         frozen=self.delta < 0, doc="table parameter")


@dataclass
class XspecTable:
    """An XSPEC table model held in memory (small tables) or read lazily by row."""

    path: Path
    name: str
    unit: str
    additive: bool
    redshift: bool
    escale: bool
    loelimit: float | None
    hielimit: float | None
    params: list[TableParameter]
    addparams: list[TableParameter]
    energ_lo: np.ndarray
    energ_hi: np.ndarray
    paramval: np.ndarray  # (S, k) in file order
    nxfltexp: int = 1
    xfxp: list[str] = field(default_factory=list)
    source_sha256: str = ""
    header: dict = field(default_factory=dict)  # extra primary-header keywords
    _spectra: np.ndarray | None = field(default=None, repr=False)  # (S, M)
    _addsp: np.ndarray | None = field(default=None, repr=False)  # (NADD, S, M)
    _reader: object = field(default=None, repr=False)  # callable(rows, which) -> (U, M)
    _rebin_cache: OrderedDict = field(default_factory=OrderedDict, repr=False)

    # -- structure ----------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """Grid shape, one entry per interpolation parameter."""
        return tuple(p.values.size for p in self.params)

    @property
    def n_spectra(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.nxfltexp

    @property
    def n_energies(self) -> int:
        return self.energ_lo.size

    @property
    def identity(self) -> str:
        """Provenance string: absolute path and SHA-256 of the file read."""
        return f"{self.path.resolve()} sha256:{file_sha256(self.path)}"

    def parameters(self) -> list[Parameter]:
        """Model parameters: table ones, then additional, Redshift, Escale, norm."""
        names = [p.name.lower() for p in self.params + self.addparams]
        out = [p.as_parameter() for p in self.params + self.addparams]
        if self.redshift:
            out.append(Parameter("Redshift", 0.0, -0.999, 10.0, "", frozen=True, doc="redshift z"))
        if self.escale:
            out.append(Parameter("Escale", 1.0, 1e-3, 1e3, "", frozen=True,
                                 doc="energy scale: table energies x Escale"))
        if self.additive:
            out.append(Parameter("norm", 1.0, 0.0, 1e24, "", doc="normalisation"))
        extra = [p.name.lower() for p in out[len(names):]]
        dup = {n for n in names + extra if (names + extra).count(n) > 1}
        if dup:
            raise FileFormatError(f"duplicate parameter name(s) {', '.join(sorted(dup))}",
                                  path=self.path, field="PARAMETERS.NAME")
        return out

    # -- spectra access -----------------------------------------------------
    def rows(self, rows: np.ndarray, which: int = -1) -> np.ndarray:
        """Spectra rows (sorted unique indices) as float64 (U, M); which=-1 INTPSPEC, j ADDSPj+1."""
        if self._spectra is not None:
            src = self._spectra if which < 0 else self._addsp[which]
            return np.asarray(src[rows], dtype=float)
        return np.asarray(self._reader(rows, which), dtype=float)

    def load(self) -> XspecTable:
        """Read every spectrum into memory (no-op when already there)."""
        if self._spectra is None:
            allrows = np.arange(self.n_spectra)
            self._spectra = self._reader(allrows, -1)
            if self.addparams:
                self._addsp = np.stack([self._reader(allrows, j) for j in range(len(self.addparams))])
        return self

    # -- interpolation ------------------------------------------------------
    def corners(self, values: np.ndarray, xflt: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Row indices (B, C) and weights (B, C) of the grid-cell corners around ``values`` (B, k)."""
        values = np.atleast_2d(np.asarray(values, dtype=float))
        B, k = values.shape
        if not 0 <= xflt < self.nxfltexp:
            raise ParameterError(f"expected 0 <= xflt < NXFLTEXP={self.nxfltexp}, got {xflt}",
                                 field=self.name)
        if k != len(self.params):
            raise ParameterError(f"expected {len(self.params)} table parameter values, got {k}",
                                 field=self.name)
        idx = np.zeros((B, k), dtype=np.int64)
        frac = np.zeros((B, k))
        active = []
        for j, p in enumerate(self.params):
            v = p.values
            if v.size == 1:
                continue
            active.append(j)
            x = np.clip(values[:, j], v[0], v[-1])
            i = np.clip(np.searchsorted(v, x, side="right") - 1, 0, v.size - 2)
            lo, hi = v[i], v[i + 1]
            t = (x - lo) / (hi - lo)
            if p.method == 1:
                ok = (lo > 0) & (hi > 0) & (x > 0)
                with np.errstate(divide="ignore", invalid="ignore"):
                    tlog = np.log(x / lo) / np.log(hi / lo)
                t = np.where(ok, tlog, t)
            idx[:, j] = i
            frac[:, j] = np.clip(t, 0.0, 1.0)
        strides = np.ones(k, dtype=np.int64)
        for j in range(k - 2, -1, -1):
            strides[j] = strides[j + 1] * self.shape[j + 1]
        strides *= self.nxfltexp
        base = idx @ strides + xflt
        na = len(active)
        bits = (np.arange(2**na)[:, None] >> np.arange(na)[None, :]) & 1  # (C, na)
        act = np.asarray(active, dtype=np.int64)
        rows = base[:, None] + bits @ strides[act] if na else base[:, None]
        if na:
            f = frac[:, act]  # (B, na)
            w = np.prod(np.where(bits[None] == 1, f[:, None, :], 1.0 - f[:, None, :]), axis=2)
        else:
            w = np.ones((B, 1))
        return rows, w

    def interpolate(self, values: np.ndarray, add: np.ndarray | None = None,
                    xflt: int = 0) -> np.ndarray:
        """Interpolated spectra (B, M) on the table's own bins.

        ``values`` (B, k) interpolation parameters; ``add`` (B, NADD) additional ones.
        """
        rows, w = self.corners(values, xflt)
        B = rows.shape[0]
        u, inv = np.unique(rows, return_inverse=True)
        W = sp.csr_matrix((w.ravel(), (np.repeat(np.arange(B), rows.shape[1]), inv.ravel())),
                          shape=(B, u.size))  # duplicates (weights of one row) are summed
        out = np.asarray(W @ self.rows(u))
        if self.addparams:
            add = np.zeros((B, len(self.addparams))) if add is None else np.broadcast_to(
                np.asarray(add, dtype=float), (B, len(self.addparams)))
            for j in range(len(self.addparams)):
                if np.any(add[:, j] != 0):
                    out += add[:, j:j + 1] * np.asarray(W @ self.rows(u, j))
        return out

    # -- rebinning ------------------------------------------------------------
    def rebin_matrix(self, edges: np.ndarray, scale: float = 1.0) -> tuple[sp.csc_matrix, np.ndarray]:
        """Sparse (M, N) map from table bins (energies x ``scale``) onto ``edges``, plus a fill (N,).

        Additive: output = spec @ R (photon-conserving shares).  Multiplicative:
        output = spec @ R + fill (overlap-weighted averages; LOELIMIT/HIELIMIT for
        bins outside the table).
        """
        edges = np.asarray(edges, dtype=float)
        key = (float(scale), edges.size, hash(edges.tobytes()))
        hit = self._rebin_cache.get(key)
        if hit is not None:
            self._rebin_cache.move_to_end(key)
            return hit
        lo = self.energ_lo.astype(float) * scale
        hi = self.energ_hi.astype(float) * scale
        edges = _snap(edges, np.union1d(lo, hi))
        N = edges.size - 1
        first = np.clip(np.searchsorted(edges, lo, side="right") - 1, 0, N - 1)
        last = np.clip(np.searchsorted(edges, hi, side="left") - 1, 0, N - 1)
        count = np.maximum(last - first + 1, 0)
        m = np.repeat(np.arange(lo.size), count)
        n = np.repeat(first, count) + (np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count))
        ov = np.minimum(hi[m], edges[n + 1]) - np.maximum(lo[m], edges[n])
        keep = ov > 0
        m, n, ov = m[keep], n[keep], ov[keep]
        fill = np.zeros(N)
        if self.additive:
            vals = ov / (hi[m] - lo[m])
        else:
            covered = np.bincount(n, weights=ov, minlength=N)
            vals = ov / covered[n]
            below = edges[1:] <= lo.min()
            above = edges[:-1] >= hi.max()
            gap = (covered <= 0) & ~below & ~above
            fill[below] = 1.0 if self.loelimit is None else self.loelimit
            fill[above] = 1.0 if self.hielimit is None else self.hielimit
            if np.any(gap):  # requested bin inside a gap between table bins: nearest bin
                centre = 0.5 * (edges[:-1] + edges[1:])[gap]
                near = np.argmin(np.abs(0.5 * (lo + hi)[None, :] - centre[:, None]), axis=1)
                m = np.concatenate([m, near])
                n = np.concatenate([n, np.flatnonzero(gap)])
                vals = np.concatenate([vals, np.ones(near.size)])
        R = sp.csc_matrix((vals, (m, n)), shape=(lo.size, N))
        self._rebin_cache[key] = (R, fill)
        while len(self._rebin_cache) > 32:
            self._rebin_cache.popitem(last=False)
        return R, fill

    def evaluate(self, edges: np.ndarray, values: np.ndarray, add: np.ndarray | None = None,
                 z: np.ndarray | None = None, escale: np.ndarray | None = None,
                 norm: np.ndarray | None = None, xflt: int = 0) -> np.ndarray:
        """Table model on ``edges`` (keV): photons/cm^2/s per bin (additive) or factors, (B, N).

        ``values`` (B, k); ``add`` (B, NADD); ``z``, ``escale``, ``norm`` (B,) or None.
        """
        spec = self.interpolate(values, add, xflt)
        B = spec.shape[0]
        zf = np.ones(B) if z is None else 1.0 + np.broadcast_to(np.asarray(z, float).ravel(), (B,))
        es = np.ones(B) if escale is None else np.broadcast_to(np.asarray(escale, float).ravel(), (B,))
        scale = es / zf
        out = np.empty((B, edges.size - 1))
        uniq, inv = np.unique(scale, return_inverse=True)
        for i, s in enumerate(uniq):
            sel = inv.ravel() == i
            R, fill = self.rebin_matrix(edges, s)
            out[sel] = (R.T @ spec[sel].T).T + fill
        if self.additive:
            if self.redshift:
                out /= zf[:, None]
            if norm is not None:
                out *= np.broadcast_to(np.asarray(norm, float).ravel(), (B,))[:, None]
        return out

    # -- registry -------------------------------------------------------------
    def spec(self) -> ModelSpec:
        """A :class:`ModelSpec` evaluating this table (kind add or mul)."""
        params = self.parameters()
        names = [p.name for p in self.params]
        addn = [p.name for p in self.addparams]

        def func(edges, **p):
            vals = np.column_stack([np.asarray(p[n], float).reshape(-1) for n in names]) \
                if names else np.zeros((1, 0))
            add = np.column_stack([np.asarray(p[n], float).reshape(-1) for n in addn]) if addn else None
            return self.evaluate(edges, vals, add=add,
                                 z=p["Redshift"].reshape(-1) if self.redshift else None,
                                 escale=p["Escale"].reshape(-1) if self.escale else None,
                                 norm=p["norm"].reshape(-1) if self.additive else None)

        kind = "add" if self.additive else "mul"
        return ModelSpec(name=_component_name(self.name), kind=kind, params=tuple(params), func=func,
                         doc=f"XSPEC {'additive' if self.additive else 'multiplicative'} table "
                             f"{self.path.name}", info={"table": self.identity})

    def summary(self) -> str:
        """Human-readable description: type, energies, parameters and grids."""
        kind = "additive" if self.additive else "multiplicative"
        lines = [f"{self.path}: XSPEC {kind} table model '{self.name}'"
                 + (f" ({self.unit})" if self.unit.strip() else ""),
                 f"  energies: {self.n_energies} bins, {self.energ_lo.min():g} - {self.energ_hi.max():g} keV",
                 f"  spectra: {self.n_spectra}" + (f" ({self.nxfltexp} per grid point)" if self.nxfltexp > 1 else ""),
                 f"  redshift: {'yes' if self.redshift else 'no'}; escale: {'yes' if self.escale else 'no'}",
                 f"  below/above range: {_fmt_limit(self.loelimit, self.additive)} / "
                 f"{_fmt_limit(self.hielimit, self.additive)}",
                 "  parameters (name, method, initial, [min, max], grid):"]
        for p in self.params:
            grid = ", ".join(f"{v:g}" for v in p.values) if p.values.size <= 12 else \
                ", ".join(f"{v:g}" for v in p.values[:5]) + ", ..., " + ", ".join(f"{v:g}" for v in p.values[-3:])
            lines.append(f"    {p.name:14s} {'log' if p.method == 1 else 'lin'} {p.initial:10g} "
                         f"[{p.minimum:g}, {p.maximum:g}]  {p.values.size} values: {grid}")
        for p in self.addparams:
            lines.append(f"    {p.name:14s} additional {p.initial:10g} [{p.minimum:g}, {p.maximum:g}]")
        for i, x in enumerate(self.xfxp):
            lines.append(f"  XFXP{i + 1:04d}: {x}")
        lines.append(f"  sha256: {file_sha256(self.path)}")
        return "\n".join(lines)


def _snap(edges: np.ndarray, table_edges: np.ndarray, rtol: float = 1.2e-7) -> np.ndarray:
    """Move requested edges within single-precision resolution of a table edge onto it.

    Table energies are stored as float32: 2.2 keV reads as 2.2000000477.  XSPEC
    compares energies at that precision, so a requested edge at 2.2 must not
    leave a 5e-8 keV sliver of the neighbouring table bin.
    """
    j = np.clip(np.searchsorted(table_edges, edges), 1, table_edges.size - 1)
    near = np.where(np.abs(table_edges[j - 1] - edges) < np.abs(table_edges[j] - edges),
                    table_edges[j - 1], table_edges[j])
    close = np.abs(near - edges) <= rtol * np.abs(near)
    if not np.any(close):
        return edges
    out = np.where(close, near, edges)
    return out if np.all(np.diff(out) > 0) else edges


def _fmt_limit(v: float | None, additive: bool) -> str:
    if additive:
        return "0"
    return "1 (default)" if v is None else f"{v:g}"


def _component_name(name: str) -> str:
    s = re.sub(r"[^a-z0-9_]", "_", name.strip().lower())
    if not s or not re.match(r"[a-z_]", s):
        s = "table" + ("_" + s if s else "")
    return s


# ---------------------------------------------------------------------------
# hashing (cached per path, size, mtime)
_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, cached by (path, size, mtime)."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256(path)
    return _SHA_CACHE[key]


# ---------------------------------------------------------------------------
# FITS reader
def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8) == b"\x89HDF\r\n\x1a\n"


def read_table(path: str | os.PathLike, in_memory: bool | None = None) -> XspecTable:
    """Read an XSPEC table model from FITS or its HDF5 conversion.

    ``in_memory`` forces (True) or prevents (False) reading all spectra now;
    by default tables under 512 MB are read into memory.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError("no such table model file", path=path)
    try:
        if _is_hdf5(path):
            return _read_hdf5(path, in_memory)
        return _read_fits(path, in_memory)
    except SimxrayError:
        raise
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            _fits_verify_error()) as exc:
        raise FileFormatError(f"corrupt table model ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:200]})", path=path) from None


def _fits_verify_error() -> type[Exception]:
    """astropy's VerifyError (an unparsable header card met while reading)."""
    from astropy.io.fits.verify import VerifyError

    return VerifyError


def _hdr_bool(hdr, key: str, default: bool) -> bool:
    v = hdr.get(key, default)
    if isinstance(v, str):
        return v.strip().upper() in ("T", "TRUE", "Y", "YES")
    return bool(v)


def _hdr_float(hdr, key: str) -> float | None:
    v = hdr.get(key)
    if v is None or isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _check_fits_file(path: Path) -> None:
    """One-line FileFormatError for an empty, non-FITS or truncated table file."""
    import gzip
    import mmap
    import zlib

    from .ogip import fits_structure_problem

    what = "expected an XSPEC table model (OGIP 92-009 FITS)"
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise FileFormatError(f"empty file; {what}", path=path)
        head = fh.read(9)
        if head[:2] == b"\x1f\x8b":
            fh.seek(0)
            try:
                raw = gzip.decompress(fh.read())
            except (OSError, EOFError, zlib.error) as exc:
                raise FileFormatError(f"truncated or corrupt gzip data ({exc}); {what}",
                                      path=path) from None
            problem = None if not raw.startswith(b"SIMPLE  =") else fits_structure_problem(raw)
            head = raw[:9]
        else:
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                problem = fits_structure_problem(mm) if head == b"SIMPLE  =" else None
    if head != b"SIMPLE  =":
        raise FileFormatError(f"not a readable FITS file (no SIMPLE card at the start); {what}",
                              path=path)
    if problem is not None:
        raise FileFormatError(f"{problem}; {what}", path=path)


def _read_fits(path: Path, in_memory: bool | None) -> XspecTable:
    from astropy.io import fits

    _check_fits_file(path)
    try:
        hdul = fits.open(path, memmap=True)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise FileFormatError(f"not a readable FITS file ({' '.join(str(exc).split())[:200]})",
                              path=path) from None
    with hdul:
        names = [h.name.upper() for h in hdul]
        for ext in ("PARAMETERS", "ENERGIES", "SPECTRA"):
            if ext not in names:
                raise FileFormatError(f"missing {ext} extension (a truncated copy?); expected an "
                                      "XSPEC table model (OGIP 92-009)", path=path)
        hdr = hdul[0].header
        par = hdul["PARAMETERS"]
        nint = par.header.get("NINTPARM")
        nadd = int(par.header.get("NADDPARM", 0) or 0)
        data = par.data
        if data is None:
            raise FileFormatError("empty PARAMETERS table", path=path, field="PARAMETERS")
        cols = [c.upper() for c in data.columns.names]
        for c in ("NAME", "METHOD", *_PARAM_FIELDS, "NUMBVALS", "VALUE"):
            if c not in cols:
                raise FileFormatError(f"missing column {c}", path=path, field="PARAMETERS")
        if nint is None:
            nint = len(data) - nadd
        nint = int(nint)
        if nint < 0 or nint + nadd != len(data):
            raise FileFormatError(f"NINTPARM={nint} + NADDPARM={nadd} does not match {len(data)} rows",
                                  path=path, field="PARAMETERS")
        params, addparams = [], []
        for i, row in enumerate(data):
            name = str(row["NAME"]).strip()
            fields = {f.lower(): _decimal(row[f]) for f in _PARAM_FIELDS}
            if i < nint:
                nv = int(row["NUMBVALS"])
                vals = np.atleast_1d(np.asarray(row["VALUE"], dtype=float))
                if nv < 1 or nv > vals.size:
                    raise FileFormatError(f"NUMBVALS={nv} but VALUE holds {vals.size} entries",
                                          path=path, field=f"PARAMETERS.{name}")
                vals = vals[:nv]
                if not np.all(np.isfinite(vals)) or np.any(np.diff(vals) <= 0):
                    raise FileFormatError("tabulated values must be finite and strictly increasing",
                                          path=path, field=f"PARAMETERS.{name}.VALUE")
                method = int(row["METHOD"])
                if method not in (0, 1):
                    raise FileFormatError(f"METHOD={method}; expected 0 (linear) or 1 (log)",
                                          path=path, field=f"PARAMETERS.{name}")
                params.append(TableParameter(name, method, values=vals, **fields))
            else:
                addparams.append(TableParameter(name, -1, values=np.zeros(0), **fields))
        en = hdul["ENERGIES"].data
        if en is None or "ENERG_LO" not in [c.upper() for c in en.columns.names] \
                or "ENERG_HI" not in [c.upper() for c in en.columns.names]:
            raise FileFormatError("ENERGIES needs columns ENERG_LO and ENERG_HI", path=path,
                                  field="ENERGIES")
        elo = np.asarray(en["ENERG_LO"]).astype(np.asarray(en["ENERG_LO"]).dtype.newbyteorder("="))
        ehi = np.asarray(en["ENERG_HI"]).astype(np.asarray(en["ENERG_HI"]).dtype.newbyteorder("="))
        spec_hdu = hdul["SPECTRA"]
        sd = spec_hdu.data
        if sd is None:
            raise FileFormatError("empty SPECTRA table", path=path, field="SPECTRA")
        scols = [c.upper() for c in sd.columns.names]
        for c in ("PARAMVAL", "INTPSPEC") + tuple(f"ADDSP{j + 1:03d}" for j in range(nadd)):
            if c not in scols:
                raise FileFormatError(f"missing column {c}", path=path, field="SPECTRA")
        std = {"SIMPLE", "BITPIX", "NAXIS", "EXTEND", "HDUNAME", "HDUCLASS", "HDUCLAS1", "HDUVERS",
               "HDUVERS1", "MODLNAME", "MODLUNIT", "REDSHIFT", "ESCALE", "ADDMODEL", "LOELIMIT",
               "HIELIMIT", "NXFLTEXP", "COMMENT", "HISTORY", ""}
        extra_hdr = {k: hdr[k] for k in hdr if k not in std and not k.startswith("XFXP")
                     and isinstance(hdr[k], (str, int, float, bool))}
        nx = int(hdr.get("NXFLTEXP", 1) or 1)
        xfxp = [str(hdr.get(f"XFXP{i + 1:04d}", "")) for i in range(nx)] if nx > 1 else []
        pv = np.asarray(sd["PARAMVAL"], dtype=float).reshape(len(sd), -1)
        M = elo.size
        first = np.asarray(sd["INTPSPEC"][:1])
        if first.reshape(1, -1).shape[1] != M:
            raise FileFormatError(f"INTPSPEC has {first.size} bins but ENERGIES has {M}",
                                  path=path, field="SPECTRA.INTPSPEC")
        table = XspecTable(
            path=path, name=str(hdr.get("MODLNAME", path.stem)).strip() or path.stem,
            unit=str(hdr.get("MODLUNIT", "")).strip(),
            additive=_hdr_bool(hdr, "ADDMODEL", True), redshift=_hdr_bool(hdr, "REDSHIFT", False),
            escale=_hdr_bool(hdr, "ESCALE", False), loelimit=_hdr_float(hdr, "LOELIMIT"),
            hielimit=_hdr_float(hdr, "HIELIMIT"), params=params, addparams=addparams,
            energ_lo=elo, energ_hi=ehi, paramval=pv, nxfltexp=nx, xfxp=xfxp, header=extra_hdr)
        _check_energies(table)
        order = _row_order(table)
        nbytes = len(sd) * M * first.dtype.itemsize * (1 + nadd)
        load = in_memory if in_memory is not None else nbytes <= IN_MEMORY_BYTES
        if load:
            table._spectra = _native(np.asarray(sd["INTPSPEC"]).reshape(len(sd), M))[order]
            if nadd:
                table._addsp = np.stack([_native(np.asarray(sd[f"ADDSP{j + 1:03d}"]).reshape(len(sd), M))[order]
                                         for j in range(nadd)])
            _check_finite(table._spectra, path)
        table.paramval = pv[order]

    if not load:
        def reader(rows, which, _path=path, _order=order, _M=M):
            with fits.open(_path, memmap=True) as h:
                col = "INTPSPEC" if which < 0 else f"ADDSP{which + 1:03d}"
                src = _order[np.asarray(rows)]
                srt = np.argsort(src)
                out = np.empty((src.size, _M), dtype=np.float32)
                out[srt] = np.asarray(h["SPECTRA"].data[col][src[srt]]).reshape(src.size, _M)
                return out
        table._reader = reader
    return table


def _decimal(x) -> float:
    """A float32 header value as the decimal it was written from (1.3, not 1.2999999523)."""
    v = np.asarray(x)
    return float(str(v.astype(np.float32))) if v.dtype.kind == "f" and v.dtype.itemsize == 4 else float(v)


def _native(a: np.ndarray) -> np.ndarray:
    return a.astype(a.dtype.newbyteorder("="), copy=False)


def _check_finite(spec: np.ndarray, path: Path) -> None:
    if not np.all(np.isfinite(spec)):
        raise FileFormatError("spectra contain NaN or infinite values", path=path, field="SPECTRA.INTPSPEC")


def _check_energies(t: XspecTable) -> None:
    lo, hi = t.energ_lo.astype(float), t.energ_hi.astype(float)
    if lo.size < 1 or not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))) \
            or np.any(hi <= lo) or np.any(lo[1:] < hi[:-1] * (1 - 1e-6)) or np.any(lo < 0):
        raise FileFormatError("energy bins must be finite, non-negative, increasing and "
                              "non-overlapping", path=t.path, field="ENERGIES")


def _row_order(t: XspecTable) -> np.ndarray:
    """Permutation putting SPECTRA rows in grid order (last parameter fastest)."""
    S = t.paramval.shape[0]
    if S != t.n_spectra:
        raise FileFormatError(f"{S} spectra but the parameter grid {t.shape} x NXFLTEXP={t.nxfltexp} "
                              f"needs {t.n_spectra}", path=t.path, field="SPECTRA")
    k = len(t.params)
    if t.paramval.shape[1] != k:
        raise FileFormatError(f"PARAMVAL has {t.paramval.shape[1]} entries; expected NINTPARM={k}",
                              path=t.path, field="SPECTRA.PARAMVAL")
    flat = np.zeros(S, dtype=np.int64)
    for j, p in enumerate(t.params):
        v = p.values
        x = t.paramval[:, j]
        i = np.clip(np.searchsorted(v, x), 0, v.size - 1)
        i = np.where((i > 0) & (np.abs(v[i - 1] - x) < np.abs(v[i] - x)), i - 1, i)
        tol = 1e-5 * np.maximum(np.abs(v[i]), 1e-30) + 1e-30
        if np.any(np.abs(v[i] - x) > tol):
            bad = x[np.abs(v[i] - x) > tol][0]
            raise FileFormatError(f"PARAMVAL {bad:g} is not one of the tabulated values",
                                  path=t.path, field=f"SPECTRA.PARAMVAL[{p.name}]")
        flat = flat * v.size + i
    flat = flat * t.nxfltexp
    # rows of the same grid point keep their file order (xflt 0, 1, ...)
    order = np.lexsort((np.arange(S), flat))
    grid_of_sorted = flat[order]
    expect = np.repeat(np.arange(S // t.nxfltexp) * t.nxfltexp, t.nxfltexp)
    if not np.array_equal(grid_of_sorted, expect):
        raise FileFormatError("SPECTRA rows do not cover the parameter grid exactly once",
                              path=t.path, field="SPECTRA.PARAMVAL")
    return order


# ---------------------------------------------------------------------------
# FITS writer
def write_fits_table(path: str | os.PathLike, name: str, params: list[TableParameter],
                     energ_lo: np.ndarray, energ_hi: np.ndarray, spectra: np.ndarray, *,
                     additive: bool = True, unit: str = "photons/cm^2/s", redshift: bool = False,
                     escale: bool = False, loelimit: float | None = None,
                     hielimit: float | None = None, addparams: list[TableParameter] | None = None,
                     addspectra: np.ndarray | None = None, nxfltexp: int = 1,
                     xfxp: list[str] | None = None, header: dict | None = None,
                     overwrite: bool = False) -> Path:
    """Write an OGIP XSPEC table model (FITS, HDUVERS 1.2.0) atomically.

    ``spectra`` (S, M) in grid order, last parameter fastest (and ``nxfltexp``
    consecutive rows per grid point); ``addspectra`` (NADD, S, M).  ``header``
    adds keywords (e.g. provenance) to the primary HDU.
    """
    from astropy.io import fits

    from .outputs import atomic_file, check_output

    path = check_output(path, kind="file", overwrite=overwrite, allow_package=True)
    addparams = list(addparams or [])
    allp = list(params) + addparams
    spectra = np.asarray(spectra, dtype=np.float32)
    M = np.asarray(energ_lo).size
    grid = [np.asarray(p.values, dtype=float) for p in params]
    S = int(np.prod([g.size for g in grid], dtype=np.int64)) * nxfltexp
    if spectra.shape != (S, M):
        raise ParameterError(f"spectra shape {spectra.shape}; expected ({S}, {M})", field="spectra")
    prim = fits.PrimaryHDU()
    h = prim.header
    for k, v in (("HDUCLASS", "OGIP"), ("HDUCLAS1", "XSPEC TABLE MODEL"), ("HDUVERS", "1.2.0"),
                 ("MODLNAME", name[:12]), ("MODLUNIT", unit if additive else ""),
                 ("REDSHIFT", bool(redshift)), ("ESCALE", bool(escale)), ("ADDMODEL", bool(additive))):
        h[k] = v
    if loelimit is not None:
        h["LOELIMIT"] = float(loelimit)
    if hielimit is not None:
        h["HIELIMIT"] = float(hielimit)
    if nxfltexp > 1:
        h["NXFLTEXP"] = int(nxfltexp)
        for i, x in enumerate(xfxp or []):
            h[f"XFXP{i + 1:04d}"] = x
    for k, v in (header or {}).items():
        h[k] = v
    nv = max([g.size for g in grid] + [1])
    vals = np.zeros((len(allp), nv), dtype=np.float32)
    for i, g in enumerate(grid):
        vals[i, :g.size] = g
    cols = [fits.Column("NAME", "12A", array=[p.name for p in allp]),
            fits.Column("METHOD", "J", array=[p.method if p.method >= 0 else 0 for p in allp])]
    for f in _PARAM_FIELDS:
        cols.append(fits.Column(f, "E", array=[getattr(p, f.lower()) for p in allp]))
    cols.append(fits.Column("NUMBVALS", "J", array=[g.size for g in grid] + [0] * len(addparams)))
    cols.append(fits.Column("VALUE", f"{nv}E", array=vals))
    par = fits.BinTableHDU.from_columns(cols, name="PARAMETERS")
    ene = fits.BinTableHDU.from_columns([fits.Column("ENERG_LO", "E", array=np.asarray(energ_lo)),
                                         fits.Column("ENERG_HI", "E", array=np.asarray(energ_hi))],
                                        name="ENERGIES")
    mesh = np.stack(np.meshgrid(*grid, indexing="ij"), axis=-1).reshape(-1, len(grid)) if grid \
        else np.zeros((1, 0))
    pv = np.repeat(mesh, nxfltexp, axis=0).astype(np.float32)
    scols = [fits.Column("PARAMVAL", f"{max(len(grid), 1)}E", array=pv if grid else np.zeros((S, 1))),
             fits.Column("INTPSPEC", f"{M}E", unit=unit if additive else "", array=spectra)]
    for j in range(len(addparams)):
        scols.append(fits.Column(f"ADDSP{j + 1:03d}", f"{M}E",
                                 array=np.asarray(addspectra[j], dtype=np.float32)))
    spe = fits.BinTableHDU.from_columns(scols, name="SPECTRA")
    for hdu, cls2 in ((par, "PARAMETERS"), (ene, "ENERGIES"), (spe, "MODEL SPECTRA")):
        hdu.header["HDUCLASS"] = "OGIP"
        hdu.header["HDUCLAS1"] = "XSPEC TABLE MODEL"
        hdu.header["HDUCLAS2"] = cls2
        hdu.header["HDUVERS"] = "1.0.0"
    par.header["NINTPARM"] = len(grid)
    par.header["NADDPARM"] = len(addparams)
    with atomic_file(path, check=False) as tmp:
        fits.HDUList([prim, par, ene, spe]).writeto(tmp, overwrite=True)
    return path


# ---------------------------------------------------------------------------
# HDF5 conversion
def convert_to_hdf5(src: str | os.PathLike, dst: str | os.PathLike, overwrite: bool = False,
                    compression: str | None = None) -> Path:
    """Convert a FITS table model to the chunked HDF5 layout (atomic write).

    ``dst`` may not be ``src``; an existing ``dst`` is replaced only with ``overwrite``.
    """
    from .outputs import check_output

    dst = check_output(dst, kind="file", overwrite=overwrite, inputs=[src], field="OUTPUT",
                       allow_package=True)
    return write_hdf5(read_table(src, in_memory=True), dst, overwrite=True, compression=compression)


def write_hdf5(t: XspecTable, dst: str | os.PathLike, overwrite: bool = False,
               compression: str | None = None, extra=None, **prov) -> Path:
    """Write a table in simxray's HDF5 layout (one spectrum per chunk), atomically.

    ``compression`` ('gzip' adds the shuffle filter); ``extra(h5file)`` may add
    groups (ignored by the reader); ``prov`` adds provenance fields.
    """
    import h5py

    from .outputs import atomic_file, check_output

    src_path = t.path if t.path is not None and Path(t.path).is_file() else None
    dst = check_output(dst, kind="file", overwrite=overwrite, inputs=[src_path], field="OUTPUT",
                       allow_package=True)
    M = t.n_energies
    comp = dict(compression="gzip", compression_opts=6, shuffle=True) if compression == "gzip" else {}
    with atomic_file(dst, check=False) as tmp:
        t.load()
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = HDF5_FORMAT
            f.attrs["format_version"] = HDF5_VERSION
            f.attrs["modlname"] = t.name
            f.attrs["modlunit"] = t.unit
            f.attrs["addmodel"] = t.additive
            f.attrs["redshift"] = t.redshift
            f.attrs["escale"] = t.escale
            if t.loelimit is not None:
                f.attrs["loelimit"] = t.loelimit
            if t.hielimit is not None:
                f.attrs["hielimit"] = t.hielimit
            f.attrs["nxfltexp"] = t.nxfltexp
            f.attrs["xfxp"] = json.dumps(t.xfxp)
            f.attrs["header"] = json.dumps(t.header)
            src = t.path if t.path.is_file() else None
            f.attrs["source_file"] = str(src.resolve()) if src else ""
            f.attrs["source_sha256"] = file_sha256(src) if src else ""
            f.attrs["provenance"] = json.dumps(provenance(
                source=str(src.resolve()) if src else None,
                source_sha256=file_sha256(src) if src else None, **prov))
            g = f.create_group("parameters")
            for i, p in enumerate(t.params + t.addparams):
                d = g.create_dataset(f"{i:03d}", data=np.asarray(p.values, dtype=float))
                d.attrs["name"] = p.name
                d.attrs["method"] = p.method
                for k in ("initial", "delta", "minimum", "bottom", "top", "maximum"):
                    d.attrs[k] = getattr(p, k)
            f.create_dataset("energ_lo", data=t.energ_lo)
            f.create_dataset("energ_hi", data=t.energ_hi)
            f.create_dataset("paramval", data=t.paramval)
            f.create_dataset("spectra", data=t._spectra, chunks=(1, M), **comp)
            if t.addparams:
                f.create_dataset("addsp", data=t._addsp, chunks=(1, 1, M), **comp)
            if extra is not None:
                extra(f)
    return dst


def _read_hdf5(path: Path, in_memory: bool | None) -> XspecTable:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise FileFormatError(f"not a readable HDF5 file ({exc})", path=path) from None
    with f:
        if f.attrs.get("format") != HDF5_FORMAT:
            raise FileFormatError(f"not a simxray table model (attribute format != '{HDF5_FORMAT}')",
                                  path=path)
        try:
            params, addparams = [], []
            for key in sorted(f["parameters"]):
                d = f["parameters"][key]
                a = d.attrs
                p = TableParameter(str(a["name"]), int(a["method"]), float(a["initial"]), float(a["delta"]),
                                   float(a["minimum"]), float(a["bottom"]), float(a["top"]),
                                   float(a["maximum"]), np.asarray(d[()], dtype=float))
                (addparams if p.method == -1 else params).append(p)
            t = XspecTable(
                path=path, name=str(f.attrs["modlname"]), unit=str(f.attrs["modlunit"]),
                additive=bool(f.attrs["addmodel"]), redshift=bool(f.attrs["redshift"]),
                escale=bool(f.attrs["escale"]),
                loelimit=float(f.attrs["loelimit"]) if "loelimit" in f.attrs else None,
                hielimit=float(f.attrs["hielimit"]) if "hielimit" in f.attrs else None,
                params=params, addparams=addparams, energ_lo=f["energ_lo"][()],
                energ_hi=f["energ_hi"][()], paramval=f["paramval"][()],
                nxfltexp=int(f.attrs.get("nxfltexp", 1)), xfxp=json.loads(f.attrs.get("xfxp", "[]")),
                source_sha256=str(f.attrs.get("source_sha256", "")),
                header=json.loads(f.attrs.get("header", "{}")))
            ds = f["spectra"]
            if ds.shape != (t.n_spectra, t.n_energies):
                raise FileFormatError(f"spectra shape {ds.shape}; expected ({t.n_spectra}, {t.n_energies})",
                                      path=path, field="spectra")
            _check_energies(t)
            nbytes = ds.size * ds.dtype.itemsize * (1 + len(addparams))
            load = in_memory if in_memory is not None else nbytes <= IN_MEMORY_BYTES
            if load:
                t._spectra = ds[()]
                if addparams:
                    t._addsp = f["addsp"][()]
                _check_finite(t._spectra, path)
        except KeyError as exc:
            raise FileFormatError(f"missing {exc.args[0]!s}; expected a simxray table model", path=path) from None
    if not load:
        def reader(rows, which, _path=path):
            with h5py.File(_path, "r") as h:
                rows = np.asarray(rows)
                return h["spectra"][rows] if which < 0 else h["addsp"][which, rows]
        t._reader = reader
    return t


# ---------------------------------------------------------------------------
# registry hook: table:PATH
_LOADED: dict[tuple[str, int, int], XspecTable] = {}


def load_table(path: str | os.PathLike) -> XspecTable:
    """Read a table once per (path, size, mtime) and keep it for later evaluations."""
    p = Path(os.path.expanduser(str(path)))
    if not p.is_file():
        raise FileFormatError("no such table model file", path=p)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _LOADED:
        if len(_LOADED) >= 8:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = read_table(p)
    return _LOADED[key]


def table_spec(path: str) -> ModelSpec:
    """Loader for ``table:PATH`` components."""
    return load_table(path).spec()


register_table_loader(table_spec)
