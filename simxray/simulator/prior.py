"""Priors over simulator parameters: one independent distribution per parameter.

Supported distributions (``dist`` in the TOML/JSON):

* ``uniform``     flat on [low, high]
* ``loguniform``  flat in log(x) on [low, high], 0 < low < high
* ``normal``      Normal(mu, sigma) truncated to [low, high] (default: the hard limits)
* ``fixed``       a constant ``value`` (not part of theta)

Every varying parameter has finite bounds ``[low, high]``; all sampling is by the
inverse CDF of one uniform deviate per parameter, so numpy (:meth:`Prior.sample`)
and torch (:meth:`Prior.to_torch`) agree and a seed fixes a draw exactly.

``theta`` arrays hold only the varying parameters, in :attr:`Prior.names` order;
fixed values live in :attr:`Prior.fixed`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from ..errors import ConfigError

DISTS = ("uniform", "loguniform", "normal", "fixed")


@dataclass(frozen=True)
class Dist:
    """One parameter's prior.  Units are those of the parameter."""

    name: str
    dist: str
    low: float = math.nan
    high: float = math.nan
    mu: float = math.nan
    sigma: float = math.nan
    value: float = math.nan

    def __post_init__(self) -> None:
        d, f = self.dist, self.name
        if d not in DISTS:
            raise ConfigError(f"unknown distribution {d!r}; expected one of {', '.join(DISTS)}",
                              field=f)
        if d == "fixed":
            if not math.isfinite(self.value):
                raise ConfigError("a fixed parameter needs a finite 'value'", field=f)
            return
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ConfigError(f"expected finite bounds low < high, got low={self.low:g}, "
                              f"high={self.high:g}", field=f)
        if d == "loguniform" and self.low <= 0:
            raise ConfigError(f"log-uniform needs low > 0, got {self.low:g}", field=f)
        if d == "normal":
            if not (math.isfinite(self.mu) and math.isfinite(self.sigma) and self.sigma > 0):
                raise ConfigError("normal needs finite 'mu' and 'sigma' > 0", field=f)
            a, b = (self.low - self.mu) / self.sigma, (self.high - self.mu) / self.sigma
            if float(ndtr(b) - ndtr(a)) < 1e-12:
                raise ConfigError(f"normal(mu={self.mu:g}, sigma={self.sigma:g}) has no mass in "
                                  f"[{self.low:g}, {self.high:g}]", field=f)

    @property
    def varying(self) -> bool:
        return self.dist != "fixed"

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if not (isinstance(v, float) and math.isnan(v))}


def _dist_arrays(dists: list[Dist]) -> dict[str, np.ndarray]:
    """Per-parameter float64 arrays used by the vectorised numpy and torch code."""
    kind = np.array([DISTS.index(d.dist) for d in dists], dtype=np.int64)
    low = np.array([d.low for d in dists], dtype=float)
    high = np.array([d.high for d in dists], dtype=float)
    mu = np.array([d.mu if d.dist == "normal" else 0.0 for d in dists], dtype=float)
    sigma = np.array([d.sigma if d.dist == "normal" else 1.0 for d in dists], dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(kind == 2, (low - mu) / sigma, 0.0)
        b = np.where(kind == 2, (high - mu) / sigma, 1.0)
        llo = np.where(kind == 1, np.log(np.where(kind == 1, low, 1.0)), 0.0)
        lhi = np.where(kind == 1, np.log(np.where(kind == 1, high, 1.0)), 0.0)
    return {"kind": kind, "low": low, "high": high, "mu": mu, "sigma": sigma, "a": a, "b": b,
            "llo": llo, "lhi": lhi, "pa": ndtr(a), "pb": ndtr(b)}


class Prior:
    """Independent product prior over named parameters.

    ``Prior([Dist("nH", "loguniform", 0.01, 10), Dist("g0", "fixed", value=1)])``
    """

    def __init__(self, dists: Iterable[Dist]):
        self.dists: list[Dist] = list(dists)
        seen: set[str] = set()
        for d in self.dists:
            if d.name.lower() in seen:
                raise ConfigError("parameter declared twice", field=d.name)
            seen.add(d.name.lower())
        self.varying: list[Dist] = [d for d in self.dists if d.varying]
        self._a = _dist_arrays(self.varying)

    # -- description ---------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """Names of the varying parameters: the columns of theta."""
        return [d.name for d in self.varying]

    @property
    def fixed(self) -> dict[str, float]:
        return {d.name: d.value for d in self.dists if not d.varying}

    @property
    def dim(self) -> int:
        return len(self.varying)

    @property
    def bounds(self) -> np.ndarray:
        """(P, 2) [low, high] of each varying parameter."""
        return np.column_stack([self._a["low"], self._a["high"]]) if self.dim else np.zeros((0, 2))

    def __repr__(self) -> str:
        return f"Prior({', '.join(f'{d.name}~{d.dist}' for d in self.dists)})"

    # -- numpy ---------------------------------------------------------------
    def transform(self, u: np.ndarray) -> np.ndarray:
        """Map uniform deviates u (n, P) in (0, 1) to parameters (n, P) (inverse CDF)."""
        u = np.asarray(u, dtype=float)
        a = self._a
        k = a["kind"]
        uni = a["low"] + u * (a["high"] - a["low"])
        logu = np.exp(a["llo"] + u * (a["lhi"] - a["llo"]))
        p = a["pa"] + u * (a["pb"] - a["pa"])
        norm = a["mu"] + a["sigma"] * ndtri(np.clip(p, 1e-300, 1 - 1e-16))
        out = np.where(k == 0, uni, np.where(k == 1, logu, norm))
        return np.clip(out, a["low"], a["high"])

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n draws, (n, P) float64, from the varying parameters' priors."""
        return self.transform(rng.random((int(n), self.dim)))

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        """Log density (n,) of theta (n, P) or (P,); -inf outside the bounds."""
        t = np.atleast_2d(np.asarray(theta, dtype=float))
        if t.shape[-1] != self.dim:
            raise ValueError(f"theta has {t.shape[-1]} columns; the prior has {self.dim}")
        a = self._a
        k = a["kind"]
        inside = np.all((t >= a["low"]) & (t <= a["high"]), axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            lp_u = -np.log(a["high"] - a["low"]) + 0.0 * t
            lp_l = -np.log(t) - np.log(a["lhi"] - a["llo"])
            z = (t - a["mu"]) / a["sigma"]
            lp_n = -0.5 * z**2 - 0.5 * math.log(2 * math.pi) - np.log(a["sigma"]) - np.log(a["pb"] - a["pa"])
            lp = np.where(k == 0, lp_u, np.where(k == 1, lp_l, lp_n)).sum(axis=-1)
        out = np.where(inside, lp, -np.inf)
        return out if np.ndim(theta) > 1 else out[0]

    def full(self, theta: np.ndarray) -> dict[str, np.ndarray | float]:
        """{name: (n,) array or fixed float} for every parameter."""
        t = np.atleast_2d(np.asarray(theta, dtype=float))
        out: dict[str, np.ndarray | float] = {}
        col = 0
        for d in self.dists:
            if d.varying:
                out[d.name] = t[:, col]
                col += 1
            else:
                out[d.name] = d.value
        return out

    # -- serialisation -------------------------------------------------------
    def to_dict(self) -> dict:
        return {"parameters": [d.to_dict() for d in self.dists]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping) -> Prior:
        try:
            return cls(Dist(**{k: (float(v) if k not in ("name", "dist") else v) for k, v in p.items()})
                       for p in data["parameters"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed prior description ({exc})", field="prior") from None

    @classmethod
    def from_json(cls, text: str) -> Prior:
        return cls.from_dict(json.loads(text))

    # -- torch ---------------------------------------------------------------
    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Exact (mean, variance) of each varying parameter, (P,) each."""
        a = self._a
        k, lo, hi = a["kind"], a["low"], a["high"]
        m_u, v_u = 0.5 * (lo + hi), (hi - lo) ** 2 / 12.0
        with np.errstate(divide="ignore", invalid="ignore"):
            ln = a["lhi"] - a["llo"]
            m_l = (hi - lo) / ln
            v_l = (hi**2 - lo**2) / (2.0 * ln) - m_l**2
            z = a["pb"] - a["pa"]
            phi_a = np.exp(-0.5 * a["a"] ** 2) / math.sqrt(2 * math.pi)
            phi_b = np.exp(-0.5 * a["b"] ** 2) / math.sqrt(2 * math.pi)
            r = (phi_a - phi_b) / z
            m_n = a["mu"] + a["sigma"] * r
            v_n = a["sigma"] ** 2 * (1.0 + (a["a"] * phi_a - a["b"] * phi_b) / z - r**2)
        mean = np.where(k == 0, m_u, np.where(k == 1, m_l, m_n))
        var = np.where(k == 0, v_u, np.where(k == 1, v_l, v_n))
        return mean, var

    def to_torch(self, dtype=None, device=None):
        """A ``torch.distributions.Distribution`` over theta (event shape (P,)) for sbi.

        Independent product of the per-parameter priors with support
        ``independent(interval(low, high), 1)``; ``sample``/``rsample``, ``log_prob``,
        ``mean``, ``variance``; float32 by default.
        """
        return _torch_prior_class()(self, dtype=dtype, device=device)


_TORCH_PRIOR = None


def _torch_prior_class():
    """Build (once) the torch Distribution class; keeps torch out of import time."""
    global _TORCH_PRIOR
    if _TORCH_PRIOR is not None:
        return _TORCH_PRIOR
    import torch
    from torch.distributions import Distribution, constraints

    class TorchPrior(Distribution):
        """Independent product prior (uniform / log-uniform / truncated normal) for sbi."""

        arg_constraints: dict = {}
        has_rsample = True

        def __init__(self, prior: Prior, dtype=None, device=None, validate_args=False):
            self.prior = prior
            self._dtype = dtype or torch.get_default_dtype()
            self._device = torch.device(device) if device is not None else torch.device("cpu")
            a = prior._a
            f64 = {"dtype": torch.float64, "device": self._device}
            self._p = {k: torch.as_tensor(v, **f64) for k, v in a.items() if k != "kind"}
            self._kind = torch.as_tensor(a["kind"], device=self._device)
            mean, var = prior.moments()
            self._mean = torch.as_tensor(mean, dtype=self._dtype, device=self._device)
            self._var = torch.as_tensor(var, dtype=self._dtype, device=self._device)
            super().__init__(batch_shape=torch.Size(), event_shape=torch.Size([prior.dim]),
                             validate_args=validate_args)

        def to(self, device):
            return TorchPrior(self.prior, dtype=self._dtype, device=device)

        @property
        def support(self):
            lo = self._p["low"].to(self._dtype)
            hi = self._p["high"].to(self._dtype)
            return constraints.independent(constraints.interval(lo, hi), 1)

        @property
        def mean(self):
            return self._mean

        @property
        def variance(self):
            return self._var

        def transform(self, u):
            """Inverse CDF: uniform deviates (..., P) -> parameters (..., P)."""
            p, k = self._p, self._kind
            u = u.to(torch.float64)
            uni = p["low"] + u * (p["high"] - p["low"])
            logu = torch.exp(p["llo"] + u * (p["lhi"] - p["llo"]))
            q = (p["pa"] + u * (p["pb"] - p["pa"])).clamp(1e-300, 1 - 1e-16)
            norm = p["mu"] + p["sigma"] * torch.special.ndtri(q)
            out = torch.where(k == 0, uni, torch.where(k == 1, logu, norm))
            return torch.minimum(torch.maximum(out, p["low"]), p["high"]).to(self._dtype)

        def rsample(self, sample_shape=torch.Size()):
            shape = self._extended_shape(torch.Size(sample_shape))
            return self.transform(torch.rand(shape, dtype=torch.float64, device=self._device))

        def log_prob(self, value):
            p, k = self._p, self._kind
            t = torch.as_tensor(value, device=self._device).to(torch.float64)
            inside = ((t >= p["low"]) & (t <= p["high"])).all(dim=-1)
            lp_u = -torch.log(p["high"] - p["low"]) + 0.0 * t
            lp_l = -torch.log(t.clamp_min(1e-300)) - torch.log(p["lhi"] - p["llo"])
            z = (t - p["mu"]) / p["sigma"]
            lp_n = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi) - torch.log(p["sigma"])
                    - torch.log(p["pb"] - p["pa"]))
            lp = torch.where(k == 0, lp_u, torch.where(k == 1, lp_l, lp_n)).sum(dim=-1)
            lp = torch.where(inside, lp, torch.full_like(lp, -math.inf))
            return lp.to(self._dtype)

    TorchPrior.__module__ = __name__
    TorchPrior.__qualname__ = "TorchPrior"
    _TORCH_PRIOR = TorchPrior
    return TorchPrior


def __getattr__(name: str):
    # ``prior.TorchPrior`` (e.g. when unpickling) builds the class on first use.
    if name == "TorchPrior":
        return _torch_prior_class()
    raise AttributeError(name)
