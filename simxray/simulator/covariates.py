"""Observation covariates drawn per simulation: exposure (s) and frame time (s).

A campaign may give ``[instrument] exposure`` and ``frame_time`` as distributions instead
of numbers::

    exposure = { dist = "loguniform", low = 2e4, high = 1.5e5 }        # s
    frame_time = { dist = "choice", values = [0.44104, 0.84104, 3.24104],
                   weights = [1, 1, 1] }                                  # s

Each simulation then draws its own value (after its parameters, from the same chunk
generator; by the inverse CDF of one uniform deviate per covariate), the simulator uses it
(pileup frame time ``ftime`` = that row's frame time; expected counts proportional to that
row's exposure), the campaign stores it per row (HDF5 dataset ``covariates`` (N, K), column
names in its ``names`` attribute) and the networks condition on it.  A campaign with fixed
numbers draws nothing, so its outputs are unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError

#: the covariates a campaign may draw, in the column order of the ``covariates`` dataset
COVARIATE_NAMES = ("exposure", "frame_time")
COVARIATE_DISTS = ("uniform", "loguniform", "choice")
#: relative tolerance when an observation's value is compared with trained values
REL_TOL = 1e-3


@dataclass(frozen=True)
class Covariate:
    """One covariate's distribution (``uniform``/``loguniform`` on [low, high] or
    ``choice`` of ``values`` with ``weights``)."""

    name: str
    dist: str
    low: float = math.nan
    high: float = math.nan
    values: tuple[float, ...] = ()
    weights: tuple[float, ...] = ()

    @property
    def reference(self) -> float:
        """The value the campaign's response is built with (low bound or first value)."""
        return float(self.values[0]) if self.dist == "choice" else float(self.low)

    @property
    def bounds(self) -> tuple[float, float]:
        """(min, max) of the values this covariate takes."""
        if self.dist == "choice":
            return float(min(self.values)), float(max(self.values))
        return float(self.low), float(self.high)

    def transform(self, u: np.ndarray) -> np.ndarray:
        """Inverse CDF: uniform deviates (N,) -> values (N,)."""
        u = np.asarray(u, float)
        if self.dist == "uniform":
            return self.low + (self.high - self.low) * u
        if self.dist == "loguniform":
            lo, hi = math.log(self.low), math.log(self.high)
            return np.exp(lo + (hi - lo) * u)
        cdf = np.cumsum(self.weights) / np.sum(self.weights)
        idx = np.minimum(np.searchsorted(cdf, u, side="right"), len(self.values) - 1)
        return np.asarray(self.values, float)[idx]

    def contains(self, value: float, rel_tol: float = REL_TOL) -> bool:
        """Whether ``value`` is one of the trained values (within ``rel_tol``) or inside the
        trained range (widened by ``rel_tol``)."""
        if self.dist == "choice":
            return any(abs(value / v - 1.0) <= rel_tol for v in self.values)
        return self.low * (1 - rel_tol) <= value <= self.high * (1 + rel_tol)

    def describe(self) -> str:
        """'2e4-1.5e5' or '0.44104, 0.84104, 3.24104' (for messages)."""
        if self.dist == "choice":
            return ", ".join(_short(v) for v in self.values)
        return f"{_short(self.low)}-{_short(self.high)}"

    def to_dict(self) -> dict:
        if self.dist == "choice":
            return {"dist": "choice", "values": list(self.values), "weights": list(self.weights)}
        return {"dist": self.dist, "low": self.low, "high": self.high}


def _short(x: float) -> str:
    """1.5e5 for 150000, 0.44104 for 0.44104 (compact numbers for messages)."""
    if abs(x) < 1e4:
        return f"{x:g}"
    m, e = f"{x:.3e}".split("e")
    return f"{m.rstrip('0').rstrip('.')}e{int(e)}"


def parse_covariate(name: str, spec: Mapping, err=None) -> Covariate:
    """Validate a covariate table ``{dist, low, high}`` or ``{dist="choice", values,
    weights}`` (values > 0); raises :class:`ConfigError` naming ``instrument.NAME``."""
    fld = f"instrument.{name}"

    def fail(msg: str) -> ConfigError:
        return err(msg, fld) if err is not None else ConfigError(msg, field=fld)

    d = spec.get("dist")
    if d not in COVARIATE_DISTS:
        raise fail(f"unknown distribution {d!r}; expected a number or dist = one of "
                   f"{', '.join(COVARIATE_DISTS)}")
    allowed = {"dist", "values", "weights"} if d == "choice" else {"dist", "low", "high"}
    extra = set(spec) - allowed
    if extra:
        raise fail(f"unknown key {sorted(extra)[0]!r}; expected {', '.join(sorted(allowed))}")

    def num(v) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            raise fail(f"expected positive numbers, got {v!r}")
        return float(v)

    if d == "choice":
        vals = spec.get("values")
        if not isinstance(vals, list | tuple) or not vals:
            raise fail("choice needs a non-empty list 'values'")
        values = tuple(num(v) for v in vals)
        w = spec.get("weights", [1.0] * len(values))
        if not isinstance(w, list | tuple) or len(w) != len(values):
            raise fail(f"expected {len(values)} weights, got {w!r}")
        weights = tuple(num(v) for v in w)
        return Covariate(name, d, values=values, weights=weights)
    for k in ("low", "high"):
        if k not in spec:
            raise fail(f"{d} needs '{k}'")
    lo, hi = num(spec["low"]), num(spec["high"])
    if not lo < hi:
        raise fail(f"expected low < high, got low={lo:g}, high={hi:g}")
    return Covariate(name, d, low=lo, high=hi)


@dataclass
class Covariates:
    """The covariates a campaign draws per simulation (in :data:`COVARIATE_NAMES` order)."""

    items: list[Covariate] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping] | None) -> Covariates:
        data = data or {}
        return cls([parse_covariate(n, data[n]) for n in COVARIATE_NAMES if n in data])

    def to_dict(self) -> dict[str, dict]:
        return {c.name: c.to_dict() for c in self.items}

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def get(self, name: str) -> Covariate | None:
        return next((c for c in self.items if c.name == name), None)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, K) draws; one uniform deviate per covariate and row."""
        u = rng.random((int(n), len(self.items)))
        return np.stack([c.transform(u[:, k]) for k, c in enumerate(self.items)], axis=1) \
            if self.items else np.zeros((int(n), 0))


def covariate_columns(names: Sequence[str], values: np.ndarray) -> dict[str, np.ndarray]:
    """{name: column (N,)} of a covariate array (N, K)."""
    v = np.atleast_2d(np.asarray(values, float))
    return {n: v[:, k] for k, n in enumerate(names)}


def mismatch(cov_cfg: Mapping[str, Mapping], exposure: float | None,
             frame_time: float | None, what: str = "posterior") -> list[str]:
    """Reasons why an observation's exposure / frame time (s) lie outside a network's trained
    covariates (``config["covariates"]["distributions"]``); empty when they are inside."""
    out = []
    for name, val, label in (("exposure", exposure, "exposure"),
                             ("frame_time", frame_time, "frame time")):
        spec = cov_cfg.get(name)
        if spec is None:
            continue
        c = parse_covariate(name, spec)
        if val is None:
            out.append(f"the observation has no {label}; the {what} needs one ({c.describe()} s)")
        elif not c.contains(float(val)):
            where = "one of" if c.dist == "choice" else "outside"
            if c.dist == "choice":
                out.append(f"{label} {val:.5g} s is not {where} the {what}'s {c.describe()} s")
            else:
                out.append(f"{label} {val:.2g} s is outside the {what}'s {c.describe()} s")
    return out


__all__ = ["COVARIATE_NAMES", "Covariate", "Covariates", "covariate_columns", "mismatch",
           "parse_covariate"]
