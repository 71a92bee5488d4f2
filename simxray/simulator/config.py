"""Simulation configuration: TOML → validated :class:`SimConfig`.

Layout (see ``simulations/acis_default.toml`` for a documented example)::

    [simulation]            name, description, chunk_size (spectra per chunk, default 256)
    [instrument]            spectrum = "default" | PHA path (relative to the TOML file);
                            optional arf, rmf, background (paths, or "none"), exposure (s),
                            frame_time (s), energy_range = [lo, hi] keV or channels = [lo, hi],
                            add_background = true|false.  exposure and frame_time may be
                            distributions drawn per simulation ({dist = "uniform" |
                            "loguniform", low, high} or {dist = "choice", values, weights}):
                            observation covariates, :mod:`simxray.simulator.covariates`
    [model]                 expression = "tbabs*powerlaw"
    [model.parameters]      NAME = number (fixed) | {dist = "uniform"|"loguniform"|"normal"|
                            "fixed", low, high, mu, sigma, value}
    [pileup]                model = "jdpileup" | "none"; alpha, g0, f, n, ftime, fracexp,
                            nterms as above (ftime = "header": the spectrum's frame time)

Model parameters that are not listed stay fixed at the model default.  Bounds must lie
within the parameter's hard limits.  Every problem raises :class:`ConfigError` naming the
file and the field.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, SimxrayError
from ..io.tomlfile import read_toml
from .prior import DISTS, Dist, Prior

# Sherpa jdpileup parameters: (default, hard min, hard max).  nterms is capped at 30
# by Sherpa's C implementation (MAX_NUM_TERMS); g0, n, ftime must be > 0.
PILEUP_PARAMS: dict[str, tuple[float, float, float]] = {
    "alpha": (0.5, 0.0, 1.0),
    "g0": (1.0, 1e-20, 1.0),
    "f": (0.95, 0.0, 1.0),
    "n": (1.0, 1e-20, 2048.0),
    "ftime": (3.241, 1e-20, 100.0),
    "fracexp": (0.987, 0.0, 1.0),
    "nterms": (30.0, 1.0, 30.0),
}
PILEUP_MODELS = ("jdpileup", "none")
DEFAULT_CHUNK = 256

_SECTIONS = {
    "simulation": {"name", "description", "chunk_size"},
    "instrument": {"spectrum", "arf", "rmf", "background", "exposure", "frame_time",
                   "energy_range", "channels", "add_background"},
    "model": {"expression", "parameters"},
    "pileup": {"model", "grid", *PILEUP_PARAMS},
}
_SPEC_KEYS = {"dist", "low", "high", "mu", "sigma", "value"}


def _pileup_limits() -> dict[str, tuple[float, float, float]]:
    """(default, hard min, hard max) from :mod:`simxray.instrument.pileup` (fallback: above)."""
    try:
        from ..instrument.pileup import PILEUP_PARAMETERS
    except ImportError:  # pragma: no cover - pileup layer absent
        return PILEUP_PARAMS
    return {p.name: (float(p.default), float(p.min), float(p.max)) for p in PILEUP_PARAMETERS}


@dataclass
class SimConfig:
    """A validated simulation configuration.  Paths are absolute."""

    path: str | None
    name: str
    description: str
    chunk_size: int
    expression: str
    spectrum: str                      # "default" or an absolute path
    arf: str | None = None             # overrides (absolute) or None: from the PHA header
    rmf: str | None = None
    background: str | None = None      # "none" disables
    exposure: float | None = None
    frame_time: float | None = None
    energy_range: tuple[float, float] | None = (0.5, 8.0)
    channels: tuple[int, int] | None = None
    add_background: bool = False
    parameters: dict[str, dict] = field(default_factory=dict)   # canonical model name -> spec
    pileup_model: str = "none"
    pileup: dict[str, dict] = field(default_factory=dict)       # alpha, g0, ... -> spec
    pileup_grid: str | None = None     # kernel grid: None/"sherpa" or "N[:EMAX]"
    # exposure / frame_time drawn per simulation: name -> distribution table (then exposure
    # and frame_time above hold the reference value the response is built with)
    covariates: dict[str, dict] = field(default_factory=dict)

    # -- derived --------------------------------------------------------------
    def model(self):
        from ..models import Model

        return Model(self.expression)

    def prior(self, frame_time: float | None = None) -> Prior:
        """The prior over model (short names) and pileup (``pileup.NAME``) parameters.

        ``frame_time`` (s) replaces ``ftime = "header"``.
        """
        dists = [_dist(name, spec) for name, spec in self.parameters.items()]
        if self.pileup_model != "none":
            for name, spec in self.pileup.items():
                if spec.get("value") == "header":
                    ft = self.frame_time if self.frame_time is not None else frame_time
                    if ft is None:
                        raise ConfigError("ftime = 'header' but the spectrum has no frame time "
                                          "(TIMEDEL); set pileup.ftime or instrument.frame_time",
                                          path=self.path, field="pileup.ftime")
                    spec = {"dist": "fixed", "value": float(ft)}
                dists.append(_dist(f"pileup.{name}", spec))
        return Prior(dists)

    def to_dict(self) -> dict:
        """A JSON-able dict that :func:`config_from_dict` turns back into this config."""
        return {
            "simulation": {"name": self.name, "description": self.description,
                           "chunk_size": self.chunk_size},
            "instrument": {k: v for k, v in {
                "spectrum": self.spectrum, "arf": self.arf, "rmf": self.rmf,
                "background": self.background,
                "exposure": copy.deepcopy(self.covariates.get("exposure", self.exposure)),
                "frame_time": copy.deepcopy(self.covariates.get("frame_time", self.frame_time)),
                "energy_range": list(self.energy_range) if self.energy_range else None,
                "channels": list(self.channels) if self.channels else None,
                "add_background": self.add_background}.items() if v is not None},
            "model": {"expression": self.expression, "parameters": copy.deepcopy(self.parameters)},
            "pileup": {"model": self.pileup_model, **copy.deepcopy(self.pileup),
                       **({"grid": self.pileup_grid} if self.pileup_grid else {})},
            "source": self.path,
        }

    def digest(self) -> str:
        """sha256 of the canonical config (the 'source' path excluded)."""
        d = self.to_dict()
        d.pop("source", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def _dist(name: str, spec: Mapping) -> Dist:
    kw = {k: float(v) for k, v in spec.items() if k != "dist"}
    return Dist(name=name, dist=spec["dist"], **kw)


def load_config(path: str | os.PathLike) -> SimConfig:
    """Read and validate a simulation TOML file."""
    p = Path(path)
    data = read_toml(p, "a simulation TOML file")
    return config_from_dict(data, path=str(p.resolve()), base=p.resolve().parent)


def config_from_dict(data: Mapping, path: str | None = None, base: Path | None = None) -> SimConfig:
    """Validate a config mapping (as parsed from TOML, or from :meth:`SimConfig.to_dict`)."""
    data = dict(data)
    data.pop("source", None)
    path = path or None

    def err(msg: str, fld: str) -> ConfigError:
        return ConfigError(msg, path=path, field=fld)

    for sec, val in data.items():
        if sec not in _SECTIONS:
            raise err(f"unknown section; expected one of {', '.join(_SECTIONS)}", sec)
        if not isinstance(val, Mapping):
            raise err("expected a table", sec)
        extra = set(val) - _SECTIONS[sec]
        if extra:
            raise err(f"unknown key; expected one of {', '.join(sorted(_SECTIONS[sec]))}",
                      f"{sec}.{sorted(extra)[0]}")
    sim = data.get("simulation", {})
    ins = data.get("instrument", {})
    mod = data.get("model")
    pil = dict(data.get("pileup", {}))
    if mod is None or "expression" not in mod:
        raise err("missing; expected a model expression such as 'tbabs*powerlaw'", "model.expression")

    def resolve_path(v, fld: str, allow_none: bool = False) -> str | None:
        if v is None:
            return None
        if not isinstance(v, str) or not v:
            raise err("expected a file path string", fld)
        if v == "default" and fld == "instrument.spectrum":
            return v
        if allow_none and v.lower() == "none":
            return "none"
        q = Path(v).expanduser()
        if not q.is_absolute() and base is not None:
            q = base / q
        return str(q)

    def number(v, fld: str, positive: bool = True) -> float | None:
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or (
                positive and v <= 0):
            raise err(f"expected a {'positive ' if positive else ''}number, got {v!r}", fld)
        return float(v)

    def pair(v, fld: str, kind=float):
        if v is None:
            return None
        if (not isinstance(v, list | tuple) or len(v) != 2
                or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
                or not v[0] < v[1] or v[0] < 0):
            raise err(f"expected [low, high] with 0 <= low < high, got {v!r}", fld)
        if kind is int and not all(float(x).is_integer() for x in v):
            raise err(f"expected integer channels, got {v!r}", fld)
        return (kind(v[0]), kind(v[1]))

    chunk = sim.get("chunk_size", DEFAULT_CHUNK)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise err(f"expected a positive integer, got {chunk!r}", "simulation.chunk_size")
    add_bkg = ins.get("add_background", False)
    if not isinstance(add_bkg, bool):
        raise err(f"expected true or false, got {add_bkg!r}", "instrument.add_background")
    spectrum = ins.get("spectrum", "default")
    covariates: dict[str, dict] = {}

    def number_or_dist(fld: str) -> float | None:
        v = ins.get(fld)
        if isinstance(v, Mapping):
            from .covariates import parse_covariate

            c = parse_covariate(fld, v, err)
            covariates[fld] = c.to_dict()
            return c.reference
        return number(v, f"instrument.{fld}")

    exposure = number_or_dist("exposure")
    frame_time = number_or_dist("frame_time")
    if add_bkg and "exposure" in covariates:
        raise err("add_background = true needs a fixed exposure (the background does not "
                  "scale with a drawn exposure)", "instrument.add_background")
    energy = pair(ins.get("energy_range"), "instrument.energy_range")
    channels = pair(ins.get("channels"), "instrument.channels", int)
    if energy is not None and channels is not None:
        raise err("give either energy_range or channels, not both", "instrument.channels")
    if energy is None and channels is None:
        energy = (0.5, 8.0)
    cfg = SimConfig(
        path=path,
        name=str(sim.get("name", Path(path).stem if path else "simulation")),
        description=str(sim.get("description", "")),
        chunk_size=int(chunk),
        expression=str(mod["expression"]),
        spectrum=resolve_path(spectrum, "instrument.spectrum"),
        arf=resolve_path(ins.get("arf"), "instrument.arf"),
        rmf=resolve_path(ins.get("rmf"), "instrument.rmf"),
        background=resolve_path(ins.get("background"), "instrument.background", allow_none=True),
        exposure=exposure,
        frame_time=frame_time,
        energy_range=energy,
        channels=channels,
        add_background=add_bkg,
        covariates=covariates,
    )

    # -- model parameters --------------------------------------------------------
    try:
        model = cfg.model()
    except SimxrayError as exc:
        raise err(str(exc), "model.expression") from None
    params = mod.get("parameters", {})
    if not isinstance(params, Mapping):
        raise err("expected a table of NAME = spec", "model.parameters")
    given: dict[str, dict] = {}
    short = dict(zip(model.param_names, model.short_names, strict=True))
    for key, spec in params.items():
        fld = f"model.parameters.{key}"
        try:
            q = model.lookup(key)
        except SimxrayError as exc:
            msg = str(exc).split(": ", 1)[-1]
            raise err(msg, fld) from None
        if q.name in given:
            raise err("parameter given twice", fld)
        par = q.parameter
        given[q.name] = _check_spec(spec, fld, par.min, par.max, par.unit, err)
    for q in model.parameters:
        spec = given.get(q.name, {"dist": "fixed", "value": float(q.parameter.default)})
        cfg.parameters[short[q.name]] = spec

    # -- pileup -------------------------------------------------------------------
    pmodel = pil.pop("model", "jdpileup" if pil else "none")
    if pmodel not in PILEUP_MODELS:
        raise err(f"unknown pileup model {pmodel!r}; expected one of {', '.join(PILEUP_MODELS)}",
                  "pileup.model")
    cfg.pileup_model = pmodel
    grid = pil.pop("grid", None)
    if grid is not None:
        if not isinstance(grid, str | int) or isinstance(grid, bool):
            raise err(f"expected 'sherpa', N or 'N:EMAX', got {grid!r}", "pileup.grid")
        try:
            from ..instrument.pileup import KernelGrid

            KernelGrid.parse(str(grid))
        except SimxrayError as exc:
            raise err(str(exc).split(": ", 1)[-1], "pileup.grid") from None
        cfg.pileup_grid = str(grid)
    if pmodel != "none":
        limits = _pileup_limits()
        for name, (default, lo, hi) in limits.items():
            fld = f"pileup.{name}"
            spec = pil.get(name, "header" if name == "ftime" else default)
            if name == "ftime" and (spec == "header" or (
                    isinstance(spec, Mapping) and spec.get("value") == "header")):
                cfg.pileup[name] = {"dist": "fixed", "value": "header"}
                continue
            s = _check_spec(spec, fld, lo, hi, "", err)
            if name == "nterms" and (s["dist"] != "fixed" or not float(s["value"]).is_integer()):
                raise err("expected a fixed integer number of terms (1-30)", fld)
            cfg.pileup[name] = s
        if "frame_time" in covariates and cfg.pileup["ftime"].get("value") != "header":
            raise err("frame_time is drawn per simulation; expected ftime = \"header\" so that "
                      "each simulation's pileup uses its frame time", "pileup.ftime")
    return cfg


def _check_spec(spec, fld: str, lo: float, hi: float, unit: str, err) -> dict:
    """Validate one parameter spec against hard limits [lo, hi]; return a canonical dict."""
    lim = f"[{lo:g}, {hi:g}]" + (f" {unit}" if unit else "")
    if isinstance(spec, bool):
        raise err(f"expected a number or a {{dist = ...}} table, got {spec!r}", fld)
    if isinstance(spec, int | float):
        spec = {"dist": "fixed", "value": spec}
    if not isinstance(spec, Mapping):
        raise err(f"expected a number or a {{dist = ...}} table, got {spec!r}", fld)
    extra = set(spec) - _SPEC_KEYS
    if extra:
        raise err(f"unknown key {sorted(extra)[0]!r}; expected {', '.join(sorted(_SPEC_KEYS))}", fld)
    d = spec.get("dist")
    if d not in DISTS:
        raise err(f"unknown distribution {d!r}; expected dist = one of {', '.join(DISTS)}", fld)
    for k, v in spec.items():
        if k != "dist" and (isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)):
            raise err(f"expected a finite number for {k}, got {v!r}", fld)
    need = {"uniform": ("low", "high"), "loguniform": ("low", "high"), "normal": ("mu", "sigma"),
            "fixed": ("value",)}[d]
    for k in need:
        if k not in spec:
            raise err(f"{d} needs '{k}'", fld)
    out = {"dist": d, **{k: float(v) for k, v in spec.items() if k != "dist"}}
    if d == "normal":
        out.setdefault("low", lo)
        out.setdefault("high", hi)
        if not (math.isfinite(out["low"]) and math.isfinite(out["high"])):
            raise err("normal needs finite low and high bounds", fld)
    if d == "fixed":
        if not lo <= out["value"] <= hi:
            raise err(f"value {out['value']:g} outside the hard limits {lim}", fld)
    else:
        if not out["low"] < out["high"]:
            raise err(f"expected low < high, got low={out['low']:g}, high={out['high']:g}", fld)
        if out["low"] < lo or out["high"] > hi:
            raise err(f"bounds [{out['low']:g}, {out['high']:g}] outside the hard limits {lim}", fld)
        if d == "loguniform" and out["low"] <= 0:
            raise err(f"log-uniform needs low > 0, got {out['low']:g}", fld)
    try:
        Dist(name=fld, **out)
    except ConfigError as exc:
        raise err(str(exc).split(": ", 1)[-1], fld) from None
    return out
