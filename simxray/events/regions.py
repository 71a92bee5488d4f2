"""Sky coordinates and extraction regions for Chandra event files.

* :class:`SkyWCS`: the tangent-plane (``RA---TAN`` / ``DEC--TAN``) world coordinates of an
  event file's ``x``/``y`` sky-pixel columns, from the column keywords ``TCRVLn`` (deg),
  ``TCRPXn`` (pixel) and ``TCDLTn`` (deg per pixel); ACIS sky pixels are 0.492 arcsec.
* :class:`Shape` / :class:`Region`: circles, annuli, ellipses and (rotated) boxes in
  sky pixels, with exclusions (``-circle(...)`` in ds9, ``!circle`` in FITS regions); a
  region's area (pixel²: exact for a single shape, otherwise counted on a grid of at most
  2000 x 2000 cells of >= 0.05 pixel) scales background counts to the source region.
* :func:`read_region`: a ds9/CIAO text region file (``fk5``/``icrs`` with degrees,
  sexagesimal or arcsec/arcmin radii, or ``physical`` pixels) or a FITS region file (CIAO
  tables with ``SHAPE``, ``X``, ``Y``, ``R``, ``ROTANG``): a CSC ``reg3`` file (per-stack
  ``SRCREG``/``BKGREG``, per-observation ``ECF90REG*`` ellipses) or a ``REGION`` block such
  as a grating evt2's.

Example
-------
>>> w = SkyWCS(ra0=266.41964, dec0=-29.00512, x0=4096.5, y0=4096.5, dx=-0.000136127, dy=0.000136127)
>>> x, y = w.to_pixel(266.41964, -29.00512)
>>> round(float(x), 3), round(float(y), 3)
(4096.5, 4096.5)
>>> round(w.arcsec_per_pixel, 4)
0.4901
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FileFormatError, ParameterError


@dataclass(frozen=True)
class SkyWCS:
    """Gnomonic (TAN) projection of sky pixels: reference (ra0, dec0) deg at pixel (x0, y0),
    dx, dy deg per pixel (dx < 0 for RA increasing to the east/left)."""

    ra0: float
    dec0: float
    x0: float
    y0: float
    dx: float
    dy: float

    @property
    def arcsec_per_pixel(self) -> float:
        """Sky-pixel size (arcsec), from |dy|."""
        return abs(self.dy) * 3600.0

    def to_pixel(self, ra: float | np.ndarray, dec: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sky pixels (x, y) of (ra, dec) in deg."""
        a, d = np.radians(ra), np.radians(dec)
        a0, d0 = math.radians(self.ra0), math.radians(self.dec0)
        cosc = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
        xi = np.cos(d) * np.sin(a - a0) / cosc
        eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cosc
        # FITS TAN: the intermediate world coordinates (x - x0)·dx and (y - y0)·dy are the
        # standard coordinates xi, eta (deg); dx < 0 puts increasing RA to smaller x
        x = self.x0 + np.degrees(xi) / self.dx
        y = self.y0 + np.degrees(eta) / self.dy
        return np.asarray(x, np.float64), np.asarray(y, np.float64)

    def to_world(self, x: float | np.ndarray, y: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ra, dec) in deg of sky pixels (x, y)."""
        xi = np.radians((np.asarray(x, np.float64) - self.x0) * self.dx)
        eta = np.radians((np.asarray(y, np.float64) - self.y0) * self.dy)
        d0 = math.radians(self.dec0)
        rho = np.hypot(xi, eta)
        c = np.arctan(rho)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(rho > 0, eta * np.sin(c) / np.where(rho > 0, rho, 1.0), 0.0)
        dec = np.arcsin(np.cos(c) * np.sin(d0) + ratio * np.cos(d0))
        ra = math.radians(self.ra0) + np.arctan2(xi * np.sin(c), rho * np.cos(d0) * np.cos(c)
                                                 - eta * np.sin(d0) * np.sin(c))
        return np.degrees(ra) % 360.0, np.degrees(dec)

    @classmethod
    def from_header(cls, header, xcol: int, ycol: int, *, path: str | None = None) -> SkyWCS:
        """From an EVENTS header and the 1-based column numbers of x and y."""
        vals = {}
        for key in ("TCRVL", "TCRPX", "TCDLT"):
            for axis, n in (("x", xcol), ("y", ycol)):
                k = f"{key}{n}"
                if k not in header:
                    raise FileFormatError(f"no {k} keyword: the sky columns have no world coordinates "
                                          "(expected TCRVL/TCRPX/TCDLT for x and y)", path=path,
                                          field=f"EVENTS.{k}")
                vals[key + axis] = float(header[k])
        ctype = str(header.get(f"TCTYP{xcol}", "RA---TAN")).upper()
        if not ctype.endswith("TAN"):
            raise FileFormatError(f"sky projection {ctype!r} is not supported (expected RA---TAN)",
                                  path=path, field=f"EVENTS.TCTYP{xcol}")
        if vals["TCDLTx"] == 0 or vals["TCDLTy"] == 0:
            raise FileFormatError("TCDLT is zero", path=path, field="EVENTS.TCDLT")
        return cls(vals["TCRVLx"], vals["TCRVLy"], vals["TCRPXx"], vals["TCRPXy"], vals["TCDLTx"], vals["TCDLTy"])


# --------------------------------------------------------------------------- shapes


@dataclass(frozen=True)
class Shape:
    """One region shape in sky pixels.

    kind: ``circle`` (r = (radius,)), ``annulus`` (r = (inner, outer)), ``ellipse``
    (r = (semi-major, semi-minor), angle deg from +x), ``box`` (r = (width, height),
    angle deg).  ``exclude`` marks a shape removed from the region.
    """

    kind: str
    x: float
    y: float
    r: tuple[float, ...]
    angle: float = 0.0
    exclude: bool = False

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Boolean mask of points (sky pixels) inside the shape (exclusion ignored here)."""
        dx, dy = np.asarray(x, np.float64) - self.x, np.asarray(y, np.float64) - self.y
        if self.kind == "circle":
            return dx * dx + dy * dy <= self.r[0] ** 2
        if self.kind == "annulus":
            d2 = dx * dx + dy * dy
            return (d2 >= self.r[0] ** 2) & (d2 <= self.r[1] ** 2)
        c, s = math.cos(math.radians(self.angle)), math.sin(math.radians(self.angle))
        u, v = dx * c + dy * s, -dx * s + dy * c
        if self.kind == "ellipse":
            return (u / self.r[0]) ** 2 + (v / self.r[1]) ** 2 <= 1.0
        if self.kind == "box":
            return (np.abs(u) <= 0.5 * self.r[0]) & (np.abs(v) <= 0.5 * self.r[1])
        raise ParameterError(f"unknown region shape {self.kind!r}", field="region")

    @property
    def area(self) -> float:
        """Area (pixel²)."""
        if self.kind == "circle":
            return math.pi * self.r[0] ** 2
        if self.kind == "annulus":
            return math.pi * (self.r[1] ** 2 - self.r[0] ** 2)
        if self.kind == "ellipse":
            return math.pi * self.r[0] * self.r[1]
        return self.r[0] * self.r[1]


@dataclass
class Region:
    """Include shapes (union) minus exclude shapes, in sky pixels."""

    shapes: list[Shape] = field(default_factory=list)
    description: str = ""

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Mask of points inside any included shape and no excluded one."""
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        inc = np.zeros(x.shape, bool)
        for s in self.shapes:
            if not s.exclude:
                inc |= s.contains(x, y)
        for s in self.shapes:
            if s.exclude:
                inc &= ~s.contains(x, y)
        return inc

    @property
    def area(self) -> float:
        """Area (pixel²): exact for a single included shape without exclusions, otherwise
        counted on a grid of at most 2000 x 2000 cells (>= 0.05 pixel)."""
        inc = [s for s in self.shapes if not s.exclude]
        exc = [s for s in self.shapes if s.exclude]
        if len(inc) == 1 and not exc:
            return inc[0].area
        xs = [s.x for s in inc]
        ext = max(max(s.r) for s in inc) * 1.5 + 1
        x0, x1, y0, y1 = min(xs) - ext, max(xs) + ext, min(s.y for s in inc) - ext, max(s.y for s in inc) + ext
        step = max(0.05, (x1 - x0) / 2000.0, (y1 - y0) / 2000.0)
        gx, gy = np.meshgrid(np.arange(x0, x1, step) + step / 2, np.arange(y0, y1, step) + step / 2)
        return float(self.contains(gx, gy).sum() * step * step)

    @property
    def centre(self) -> tuple[float, float]:
        """Centre of the first included shape (sky pixels)."""
        for s in self.shapes:
            if not s.exclude:
                return s.x, s.y
        raise ParameterError("region has no included shape", field="region")

    @staticmethod
    def circle(x: float, y: float, r: float, description: str = "") -> Region:
        return Region([Shape("circle", x, y, (r,))], description)

    @staticmethod
    def annulus(x: float, y: float, r_in: float, r_out: float, description: str = "") -> Region:
        if not 0 <= r_in < r_out:
            raise ParameterError(f"annulus radii must satisfy 0 <= inner < outer, got {r_in}, {r_out}",
                                 field="--bkg")
        return Region([Shape("annulus", x, y, (r_in, r_out))], description)


# --------------------------------------------------------------------------- region files


_SEXA = re.compile(r"^[+-]?\d+:\d+:\d+(\.\d*)?$")


def _angle(tok: str, *, ra: bool) -> float:
    """A coordinate in deg from '266.4', '17:45:40.03' (RA hours) or '-29:00:28.1'."""
    tok = tok.strip()
    if _SEXA.match(tok):
        sign = -1.0 if tok.startswith("-") else 1.0
        h, m, s = (abs(float(v)) for v in tok.lstrip("+-").split(":"))
        val = sign * (h + m / 60 + s / 3600)
        return val * 15.0 if ra else val
    return float(tok.rstrip("d"))


def _size(tok: str, wcs: SkyWCS | None, celestial: bool) -> float:
    """A length in sky pixels from '2.5"' (arcsec), "0.1'" (arcmin), '0.001d' or a bare number
    (pixels in physical/image coordinates, degrees in fk5/icrs)."""
    tok = tok.strip()
    unit = tok[-1] if tok and tok[-1] in "\"'d" else ("deg" if celestial else "pix")
    val = float(tok.rstrip("\"'d"))
    if unit == "pix":
        return val
    if wcs is None:
        raise ParameterError("a region size in angular units needs the event file's sky WCS", field="region")
    arcsec = val * {"\"": 1.0, "'": 60.0, "d": 3600.0, "deg": 3600.0}[unit]
    return arcsec / wcs.arcsec_per_pixel


_SHAPE_RE = re.compile(r"^([+-]?)\s*(circle|annulus|ellipse|box|rotbox)\s*\(([^)]*)\)", re.I)


def parse_ds9(text: str, wcs: SkyWCS | None, *, path: str | None = None) -> Region:
    """A ds9/CIAO text region (one or more shapes; fk5/icrs/physical systems; ``image``, which
    depends on the display binning, galactic and ecliptic are refused)."""
    shapes: list[Shape] = []
    system = "physical"
    for raw in text.replace(";", "\n").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.lower().startswith(("global", "# region", "region")):
            continue
        low = line.lower()
        if low in ("fk5", "icrs", "fk4", "j2000", "physical", "image", "galactic", "ecliptic"):
            system = low
            continue
        m = _SHAPE_RE.match(line)
        if m is None:
            raise FileFormatError(f"cannot parse region line {line!r} (expected circle/annulus/ellipse/box)",
                                  path=path, field="region")
        sign, kind, args = m.group(1), m.group(2).lower(), [a for a in m.group(3).split(",") if a.strip()]
        celestial = system in ("fk5", "icrs", "j2000", "fk4")
        if system in ("galactic", "ecliptic"):
            raise FileFormatError(f"region system {system!r} is not supported (use fk5/icrs or physical)",
                                  path=path, field="region")
        if system == "image":
            raise FileFormatError("region system 'image' depends on how ds9 binned and cropped the image it "
                                  "was drawn on; save the region in fk5 or physical coordinates", path=path,
                                  field="region")
        if len(args) < 3:
            raise FileFormatError(f"region {line!r} has too few arguments", path=path, field="region")
        try:
            if celestial:
                if wcs is None:
                    raise ParameterError("an fk5/icrs region needs the event file's sky WCS", field="region")
                x, y = wcs.to_pixel(_angle(args[0], ra=True), _angle(args[1], ra=False))
                x, y = float(x), float(y)
            else:
                x, y = float(args[0]), float(args[1])
            sizes = [_size(a, wcs, celestial) for a in args[2:]]
        except ValueError as exc:
            raise FileFormatError(f"bad number in region {line!r} ({exc})", path=path, field="region") from None
        kind = "box" if kind == "rotbox" else kind
        if kind == "circle":
            shape = Shape("circle", x, y, (sizes[0],), exclude=sign == "-")
        elif kind == "annulus":
            if len(sizes) < 2:
                raise FileFormatError(f"annulus {line!r} needs two radii", path=path, field="region")
            shape = Shape("annulus", x, y, (sizes[0], sizes[-1]), exclude=sign == "-")
        else:
            if len(sizes) < 2:
                raise FileFormatError(f"{kind} {line!r} needs two sizes", path=path, field="region")
            ang = float(args[4]) if len(args) > 4 else 0.0
            shape = Shape(kind, x, y, (sizes[0], sizes[1]), ang, exclude=sign == "-")
        shapes.append(shape)
    if not any(not s.exclude for s in shapes):
        raise FileFormatError("region file has no included shape", path=path, field="region")
    return Region(shapes, description=f"ds9 region {path or ''}".strip())


def _fits_shapes(hdu, *, path: str | None) -> list[tuple[int, Shape]]:
    """(component, shape) rows of a CIAO FITS REGION table (sky pixels)."""
    data = hdu.data
    names = {n.upper(): n for n in data.columns.names}
    for need in ("SHAPE", "X", "Y"):
        if need not in names:
            raise FileFormatError(f"region table lacks the {need} column", path=path, field=f"{hdu.name}.{need}")
    out = []
    for i in range(len(data)):
        kind = str(data[names["SHAPE"]][i]).strip().lower()
        exclude = kind.startswith("!")
        kind = kind.lstrip("!")
        xs, ys = np.atleast_1d(data[names["X"]][i]), np.atleast_1d(data[names["Y"]][i])
        r = np.atleast_1d(data[names["R"]][i]) if "R" in names else np.zeros(1)
        ang = float(np.atleast_1d(data[names["ROTANG"]][i])[0]) if "ROTANG" in names else 0.0
        comp = int(data[names["COMPONENT"]][i]) if "COMPONENT" in names else 1
        x, y = float(xs[0]), float(ys[0])
        if kind == "circle":
            shape = Shape("circle", x, y, (float(r[0]),), exclude=exclude)
        elif kind == "annulus":
            shape = Shape("annulus", x, y, (float(r[0]), float(r[1])), exclude=exclude)
        elif kind == "ellipse":
            shape = Shape("ellipse", x, y, (float(r[0]), float(r[1])), ang, exclude=exclude)
        elif kind in ("box", "rotbox", "rectangle"):
            shape = Shape("box", x, y, (float(r[0]), float(r[1])), ang, exclude=exclude)
        else:
            raise FileFormatError(f"region shape {kind!r} is not supported (circle, annulus, ellipse, box)",
                                  path=path, field=f"{hdu.name}.SHAPE")
        out.append((comp, shape))
    return out


def read_region(path: str | os.PathLike, wcs: SkyWCS | None = None) -> tuple[Region, Region | None]:
    """(source region, background region or None) from a ds9 text or a CIAO FITS region file.

    FITS: extension ``SRCREG`` (source) and ``BKGREG`` (background) when present (CSC
    per-stack reg3), else the broad-band 90 % ECF ellipse ``ECF90REGB`` (CSC per-observation
    reg3; ``ECF90REGW`` for HRC), else the ``REGION`` extension: rows of the first component
    are the source (for a grating evt2's REGION block, the zeroth-order circle), and no
    background.
    """
    p = Path(path)
    if not p.is_file():
        raise FileFormatError("region file not found", path=p, field="--region")
    head = p.read_bytes()[:80]
    gz = head[:2] == b"\x1f\x8b"                 # CSC products are downloaded gzipped (reg3.fits.gz)
    if gz:
        import gzip
        import zlib

        try:
            with gzip.open(p, "rb") as fh:
                head = fh.read(80)
        except (OSError, EOFError, zlib.error) as exc:
            raise FileFormatError(f"corrupt gzip stream ({exc})", path=p, field="--region") from None
    if head.startswith(b"SIMPLE"):
        from astropy.io import fits

        try:
            with fits.open(p, memmap=False) as hdul:
                by_name = {h.name.upper(): h for h in hdul[1:]}
                if "SRCREG" in by_name:
                    src = [s for _, s in _fits_shapes(by_name["SRCREG"], path=str(p))]
                    bkg = [s for _, s in _fits_shapes(by_name["BKGREG"], path=str(p))] if "BKGREG" in by_name \
                        else []
                elif any(n.startswith("ECF90REG") for n in by_name):
                    # per-observation CSC reg3: 90 % ECF ellipses per band; broad band (B) first, else
                    # the first one (HRC: W); no background block
                    key = "ECF90REGB" if "ECF90REGB" in by_name else sorted(
                        n for n in by_name if n.startswith("ECF90REG"))[0]
                    src = [s for _, s in _fits_shapes(by_name[key], path=str(p))]
                    bkg = []
                elif "REGION" in by_name:
                    rows = _fits_shapes(by_name["REGION"], path=str(p))
                    first = min(c for c, _ in rows) if rows else 1
                    src = [s for c, s in rows if c == first]
                    bkg = []
                else:
                    raise FileFormatError("no SRCREG, ECF90REG* or REGION extension", path=p, field="region")
        except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
            raise FileFormatError(f"not a readable FITS region file ({exc})", path=p, field="region") from None
        if not src:
            raise FileFormatError("region table has no rows", path=p, field="region")
        return Region(src, f"FITS region {p.name}"), (Region(bkg, f"FITS background {p.name}") if bkg else None)
    try:
        if gz:
            import gzip

            with gzip.open(p, "rt") as fh:
                text = fh.read()
        else:
            text = p.read_text()
    except (UnicodeDecodeError, OSError, EOFError):
        raise FileFormatError("neither a FITS nor a text region file", path=p, field="region") from None
    return parse_ds9(text, wcs, path=str(p)), None


__all__ = ["SkyWCS", "Shape", "Region", "parse_ds9", "read_region"]
