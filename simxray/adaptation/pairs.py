"""Pairs of simultaneous unpiled (HETG first orders) and piled spectra of one source.

``PAIRS.toml`` (example: ``simulations/pairs_3c120.toml``)::

    [model]                       # the source model fitted to the gratings
    expression = "tbabs*powerlaw"
    free = ["nH", "PhoIndex", "norm"]
    log = ["nH", "norm"]          # fitted (and calibrated) in log10
    start = { nH = 0.1, PhoIndex = 1.8, norm = 1e-3 }
    fixed = {}                    # other model parameters (default: the model's defaults)

    [defaults]                    # optional; every key may be repeated per pair
    grating_energy_range = [0.8, 7.0]   # keV, channels of the first orders used
    piled_energy_range = [0.5, 8.0]     # keV, channels of the piled spectrum used
    exposure_tolerance = 0.01           # largest relative exposure difference in a pair
    pileup_grid = "sherpa"              # Davis kernel grid ("N" or "N:EMAX" for others)

    [[pair]]
    name = "obs1"
    gratings = ["heg_m1.pha", "heg_p1.pha", "meg_m1.pha", "meg_p1.pha"]  # TG_PART 1/2, TG_M ±1
    grating_arfs = [...]          # optional, else each PHA's ANCRFILE
    piled = "acis.pha"            # piled imaging or zeroth-order spectrum (ANCRFILE, RESPFILE)
    piled_arf = "..."             # optional overrides
    piled_rmf = "..."
    exposure = 30000.0            # optional: checked against every file's EXPOSURE (s)
    frame_time = 3.24104          # optional: overrides the piled spectrum's TIMEDEL (s)
    truth = { nH = 0.1, ... }     # optional hidden truth (synthetic pairs; reports only)

Paths are relative to the TOML file.  A pair whose files have different exposures (or
non-overlapping TSTART–TSTOP) is refused as two observations; gratings must be HETG
first orders (TG_PART 1 or 2, TG_M ±1, no arm twice); the two energy ranges must overlap.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError, SimxrayError
from ..io.tomlfile import read_toml
from .forward import FitSpaceModel

DEFAULTS: dict[str, Any] = {
    "grating_energy_range": [0.8, 7.0],
    "piled_energy_range": [0.5, 8.0],
    "exposure_tolerance": 0.01,
    "pileup_grid": "sherpa",
}
_PAIR_KEYS = {"name", "gratings", "grating_arfs", "piled", "piled_arf", "piled_rmf", "exposure",
              "frame_time", "truth", *DEFAULTS}
_MODEL_KEYS = {"expression", "free", "log", "start", "fixed"}


@dataclass
class GratingArm:
    """One first-order arm restricted to the channels and energies that matter.

    ``edges`` (M'+1,) keV of the energy bins feeding the selected channels, ``specresp``
    (M',) cm², ``matrix`` (M', C') CSR redistribution, ``counts`` (C',) observed counts.
    """

    name: str
    part: str
    order: int
    edges: np.ndarray
    specresp: np.ndarray
    matrix: sp.csr_matrix
    counts: np.ndarray
    exposure: float
    path: str | None = None

    def fold(self, flux: np.ndarray) -> np.ndarray:
        """Expected counts (B, C') for flux (B, M') photons/cm²/s per bin."""
        a = np.atleast_2d(flux) * (self.specresp * self.exposure)
        return np.asarray((self.matrix.T @ a.T).T)

    def with_data(self, counts: np.ndarray, exposure: float) -> GratingArm:
        """A copy sharing the response arrays, with other counts and exposure."""
        return GratingArm(self.name, self.part, self.order, self.edges, self.specresp, self.matrix,
                          np.asarray(counts, float), float(exposure), None)


def grating_arm(order, lo: float, hi: float) -> GratingArm:
    """A :class:`GratingArm` from a :class:`simxray.instrument.hetg.GratingOrder` in [lo, hi] keV."""
    spec = order.spectrum
    rmf, arf = spec.rmf, spec.arf
    chan = np.flatnonzero((rmf.e_max > lo) & (rmf.e_min < hi))
    if chan.size == 0:
        raise ConfigError(f"no channel in [{lo:g}, {hi:g}] keV", path=spec.path, field="grating_energy_range")
    m = rmf.matrix.tocsc()[:, chan].tocsr()
    rows = np.flatnonzero(np.diff(m.indptr) > 0)
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    lo_e, hi_e = arf.energ_lo[r0:r1], arf.energ_hi[r0:r1]
    if not np.allclose(hi_e[:-1], lo_e[1:], rtol=1e-6, atol=0):
        raise ConfigError("grating energy bins are not contiguous", path=spec.path, field="ENERG_LO")
    return GratingArm(order.name, order.part, order.order, np.append(lo_e, hi_e[-1]),
                      np.asarray(arf.specresp[r0:r1], float), m[r0:r1].tocsr(),
                      np.asarray(spec.counts, float)[chan], float(spec.exposure),
                      str(spec.path) if spec.path else None)


@dataclass
class Pair:
    """A calibration pair: first-order grating arms and a piled spectrum of the same time."""

    name: str
    arms: list[GratingArm]
    piled_response: Any                 # simxray.instrument.response.Response
    piled_counts: np.ndarray            # (C_sel,)
    piled_slice: slice
    frame_time: float
    exposure: float
    grating_range: tuple[float, float]
    piled_range: tuple[float, float]
    truth: dict[str, float] | None = None
    files: dict[str, Any] = field(default_factory=dict)

    @property
    def grating_counts(self) -> float:
        return float(sum(a.counts.sum() for a in self.arms))


@dataclass
class PairsConfig:
    """A parsed PAIRS.toml: the source model, the pairs and the settings."""

    path: str | None
    source: FitSpaceModel
    start: dict[str, float]
    pairs: list[Pair]
    pileup_grid: str

    def start_theta(self) -> np.ndarray:
        vals = np.array([self.start.get(n, self.source.model.lookup(n).parameter.default)
                         for n in self.source.names], float)
        return self.source.to_fit(vals)


def _range(v, path, fld) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in v)
    except (TypeError, ValueError):
        raise ConfigError(f"expected [lo, hi] in keV, got {v!r}", path=path, field=fld) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
        raise ConfigError(f"expected 0 <= lo < hi keV, got [{lo:g}, {hi:g}]", path=path, field=fld)
    return lo, hi


def source_from_table(tab: dict, path=None) -> tuple[FitSpaceModel, dict[str, float]]:
    """The ``[model]`` table → (FitSpaceModel, start values)."""
    if not isinstance(tab, dict) or "expression" not in tab:
        raise ConfigError("missing; expected [model] with expression, free, log, start",
                          path=path, field="model.expression")
    extra = set(tab) - _MODEL_KEYS
    if extra:
        raise ConfigError(f"unknown key; expected one of {', '.join(sorted(_MODEL_KEYS))}",
                          path=path, field=f"model.{sorted(extra)[0]}")
    try:
        from ..models import Model

        expr = str(tab["expression"])
        free = list(tab.get("free") or Model(expr).short_names)
        src = FitSpaceModel(expr, free, list(tab.get("log", [])), dict(tab.get("fixed", {})))
    except SimxrayError as exc:
        raise ConfigError(str(exc), path=path, field="model") from None
    start = {str(k): float(v) for k, v in dict(tab.get("start", {})).items()}
    for k in start:
        if k not in src.names:
            raise ConfigError(f"not a free parameter; expected one of {', '.join(src.names)}",
                              path=path, field=f"model.start.{k}")
    return src, start


def _header_times(header: dict) -> tuple[float, float] | None:
    try:
        return float(header["TSTART"]), float(header["TSTOP"])
    except (KeyError, TypeError, ValueError):
        return None


def check_gratings(orders: list, where: str, path) -> None:
    """HETG first orders only, each arm once."""
    seen = set()
    for o in orders:
        g = str(o.spectrum.header.get("GRATING", "HETG")).strip().upper()
        if g != "HETG":
            raise ConfigError(f"{o.spectrum.path}: GRATING = {g}; expected HETG first orders",
                              path=path, field=f"{where}.gratings")
        if abs(o.order) != 1:
            raise ConfigError(f"{o.spectrum.path}: TG_M = {o.order}; expected a first order (±1)",
                              path=path, field=f"{where}.gratings")
        key = (o.part, o.order)
        if key in seen:
            raise ConfigError(f"{o.spectrum.path}: {o.part} {o.order:+d} listed twice (TG_PART/TG_M); "
                              "expected each arm once", path=path, field=f"{where}.gratings")
        seen.add(key)


def check_exposures(exposures: dict[str, float], tol: float, where: str, path) -> float:
    """The common exposure (s); raises when two files differ by more than ``tol``."""
    vals = np.array(list(exposures.values()), float)
    ref = float(np.median(vals))
    for name, e in exposures.items():
        if abs(e - ref) > tol * ref:
            raise ConfigError(f"{name}: EXPOSURE {e:.0f} s differs from the pair's {ref:.0f} s by "
                              f"{abs(e - ref) / ref:.0%}; expected one observation (within {tol:.0%})",
                              path=path, field=f"{where}.exposure")
    return ref


def load_pairs(path: str | os.PathLike) -> PairsConfig:
    """Read and validate a PAIRS.toml file (see module doc)."""
    from ..instrument.hetg import load_grating_order
    from ..instrument.response import Response
    from ..io.ogip import read_pha

    p = Path(path)
    doc = read_toml(p, "a PAIRS.toml file")
    extra = set(doc) - {"model", "defaults", "pair"}
    if extra:
        raise ConfigError("unknown section; expected model, defaults, pair", path=p, field=sorted(extra)[0])
    source, start = source_from_table(doc.get("model"), p)
    defaults = dict(DEFAULTS)
    for k, v in dict(doc.get("defaults", {})).items():
        if k not in DEFAULTS:
            raise ConfigError(f"unknown key; expected one of {', '.join(DEFAULTS)}", path=p,
                              field=f"defaults.{k}")
        defaults[k] = v
    entries = doc.get("pair", [])
    if not isinstance(entries, list) or not entries:
        raise ConfigError("no pairs; expected at least one [[pair]] table", path=p, field="pair")
    base = p.resolve().parent
    pairs: list[Pair] = []
    names = set()
    for i, ent in enumerate(entries):
        where = f"pair[{i}]"
        if not isinstance(ent, dict):
            raise ConfigError("expected a table", path=p, field=where)
        unknown = set(ent) - _PAIR_KEYS
        if unknown:
            raise ConfigError(f"unknown key; expected one of {', '.join(sorted(_PAIR_KEYS))}",
                              path=p, field=f"{where}.{sorted(unknown)[0]}")
        name = str(ent.get("name", f"pair{i}"))
        if name in names:
            raise ConfigError("name used twice; expected unique pair names", path=p, field=f"{where}.name")
        names.add(name)
        cfg = {**defaults, **{k: ent[k] for k in DEFAULTS if k in ent}}
        g_lo, g_hi = _range(cfg["grating_energy_range"], p, f"{where}.grating_energy_range")
        p_lo, p_hi = _range(cfg["piled_energy_range"], p, f"{where}.piled_energy_range")
        if min(g_hi, p_hi) <= max(g_lo, p_lo):
            raise ConfigError(f"grating_energy_range [{g_lo:g}, {g_hi:g}] and piled_energy_range "
                              f"[{p_lo:g}, {p_hi:g}] keV do not overlap; expected a common band",
                              path=p, field=f"{where}.piled_energy_range")
        tol = float(cfg["exposure_tolerance"])
        gfiles = ent.get("gratings")
        if not isinstance(gfiles, list) or not gfiles:
            raise ConfigError("expected a list of first-order grating PHA files", path=p,
                              field=f"{where}.gratings")
        garfs = ent.get("grating_arfs") or [None] * len(gfiles)
        if len(garfs) != len(gfiles):
            raise ConfigError(f"{len(garfs)} ARFs for {len(gfiles)} gratings; expected one each",
                              path=p, field=f"{where}.grating_arfs")
        if "piled" not in ent:
            raise ConfigError("missing; expected the piled PHA file", path=p, field=f"{where}.piled")

        def rel(v):
            q = Path(str(v)).expanduser()
            return q if q.is_absolute() else base / q

        try:
            orders = [load_grating_order(rel(g), None if a is None else rel(a))
                      for g, a in zip(gfiles, garfs, strict=True)]
            piled = read_pha(rel(ent["piled"]), arf=None if "piled_arf" not in ent else rel(ent["piled_arf"]),
                             rmf=None if "piled_rmf" not in ent else rel(ent["piled_rmf"]),
                             background="none")
            piled.require_responses()
        except ConfigError:
            raise
        except SimxrayError as exc:
            raise ConfigError(str(exc), path=p, field=where) from None
        check_gratings(orders, where, p)
        exposures = {str(o.spectrum.path.name): float(o.spectrum.exposure) for o in orders}
        exposures[str(piled.path.name)] = float(piled.exposure)
        if "exposure" in ent:
            exposures["exposure"] = float(ent["exposure"])
        exposure = check_exposures(exposures, tol, where, p)
        t_piled = _header_times(piled.header)
        for o in orders:
            t_g = _header_times(o.spectrum.header)
            if t_piled and t_g and (min(t_piled[1], t_g[1]) <= max(t_piled[0], t_g[0])):
                raise ConfigError(f"{piled.path.name}: TSTART-TSTOP {t_piled[0]:.0f}-{t_piled[1]:.0f} does "
                                  f"not overlap {o.spectrum.path.name}'s {t_g[0]:.0f}-{t_g[1]:.0f}; expected "
                                  "the same observation", path=p, field=f"{where}.piled")
        frame_time = float(ent.get("frame_time") or piled.frame_time or 0.0)
        if not frame_time > 0:
            raise ConfigError("no frame time; expected TIMEDEL in the piled spectrum or frame_time",
                              path=p, field=f"{where}.frame_time")
        try:
            resp = Response.from_spectrum(piled, matrix_format="dense")
            sl = resp.channel_slice(p_lo, p_hi)
            arms = [grating_arm(o, g_lo, g_hi) for o in orders]
        except ConfigError:
            raise
        except SimxrayError as exc:
            raise ConfigError(str(exc), path=p, field=where) from None
        truth = ent.get("truth")
        if truth is not None:
            truth = {str(k): float(v) for k, v in dict(truth).items()}
        files = {"gratings": [str(rel(g)) for g in gfiles], "piled": str(rel(ent["piled"]))}
        pairs.append(Pair(name, arms, resp, np.asarray(piled.counts, float)[sl], sl, frame_time,
                          exposure, (g_lo, g_hi), (p_lo, p_hi), truth, files))
    return PairsConfig(str(p), source, start, pairs, str(defaults["pileup_grid"]))


def write_grating_pha(template: str | os.PathLike, counts: np.ndarray, exposure: float,
                      path: str | os.PathLike, *, provenance: dict | None = None,
                      ancrfile: str | None = None, overwrite: bool = False) -> Path:
    """Write a first-order grating PHA like ``template`` (BIN_LO/HI, TG_M, TG_PART) with other
    COUNTS and EXPOSURE, atomically; ANCRFILE points at the template's ARF unless given."""
    import json

    from astropy.io import fits

    from ..io.ogip import resolve_linked
    from ..provenance import atomic_path
    from ..provenance import provenance as prov

    out = Path(path)
    if out.exists() and not overwrite:
        raise ConfigError("exists; expected a new file (use overwrite)", path=out)
    tpl = Path(template)
    with fits.open(tpl) as h:
        hdu = h[1].copy()
        c = np.asarray(counts)
        if c.shape != hdu.data["COUNTS"].shape:
            raise ConfigError(f"{c.size} counts for {hdu.data['COUNTS'].size} channels", path=out,
                              field="COUNTS")
        hdu.data["COUNTS"] = np.rint(c).astype(hdu.data["COUNTS"].dtype)
        if "STAT_ERR" in hdu.columns.names:
            hdu.data["STAT_ERR"] = np.sqrt(np.maximum(hdu.data["COUNTS"], 1.0))
        hh = hdu.header
        hh["EXPOSURE"] = float(exposure)
        if ancrfile is None:
            arf = resolve_linked(str(hh.get("ANCRFILE", "none")), tpl.resolve().parent)
            ancrfile = str(arf.resolve()) if arf else "none"
        hh["ANCRFILE"] = (ancrfile, "")
        hh["RESPFILE"] = "none"
        hh["CREATOR"] = "simxray adaptation"
        for key in ("BACKGROUND_UP", "BACKGROUND_DOWN"):
            if key in hdu.columns.names:
                hdu.data[key] = 0
        text = json.dumps(provenance or prov(template=str(tpl)))
        for i in range(0, len(text), 70):
            hh.add_history(text[i:i + 70])
        tmp = atomic_path(out)
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, overwrite=True)
        os.replace(tmp, out)
    return out
