"""The Davis (2001, ApJ 562, 575) CCD pileup model, batched in torch, as Sherpa's ``jdpileup``.

Model (Davis 2001, with the parameters of Sherpa's ``jdpileup``).  Per frame
of ``ftime`` s the source delivers ``a(E) = ARF(E) · ftime · s(E)`` photons per energy
bin (s in photons/cm²/s per bin).  A fraction ``f`` of them falls into ``n`` pileup
cells, each exposed for a fraction ``fracexp`` of the frames::

    a'(E) = f a(E) / (n fracexp),   L = Σ_E a'(E),   â = a' / L
    R(E)  = a'(E) + Σ_{p=2..P} alpha^(p-1) L^p / p! · â^{*p}(E)
    counts(E) = N_f n fracexp exp(-L/g0) R(E) + (1 - f) N_f a(E),   N_f = exposure / ftime

``â^{*p}`` is the p-fold self-convolution (energies of piled photons add), ``g0`` the
probability that a single photon keeps a good grade, ``alpha^(p-1)`` that a pile of
p photons does.  The sum stops at ``P = nterms`` (≤ 30) or at the first p for which the
Poisson mass ``exp(-L) (1 + L + Σ_{q≤p} L^q/q!)`` exceeds 0.99999.  The pileup fraction
is ``Σ_{p≥2} alpha^(p-1) L^p/p! / (L + Σ_{p≥2} alpha^(p-1) L^p/p!)``.  The counts are
per response energy bin with the ARF applied; fold them through the RMF only
(:meth:`simxray.instrument.response.Response.fold_counts_per_bin`).

Two options extend the model for the adaptation (:mod:`simxray.adaptation`), both off by
default: an energy-dependent ``alpha(E) = clip(alpha + alpha_slope ln(E / 2 keV), 0, 1)``
for a pile landing at E (:func:`alpha_of_energy`; ``alpha_slope = 0`` is Davis' model) and
an ``efficiency`` factor on the counts (:meth:`Pileup.kernel_counts`).

Discretisation (Sherpa's, learned from its C source ``pileup.cc``; the default
:class:`KernelGrid`): K = 4096 points ``E_i = i·dE``, dE = 15/4096 keV, except
``E_0 = 1e-4`` keV; source bin i spans ``[E_{i-1}, E_i]`` (bin 0 ``[E_0/2, E_0]``; the
last bin ``[E_{K-2}, E_{K-1} + dE]`` is two steps wide) and the model is integrated
over it; the ARF is looked up at ``E_i`` (the bin's upper edge): the ARF bin whose
ENERG_LO is the largest ≤ E_i, zero for ``E_i`` outside [ENERG_LO_0, ENERG_HI_last)
and at i = 0.  Piles of photons in bins i and j land in bin i + j (truncated at K).
The piled counts are then redistributed onto the response's energy bins assuming a
uniform density within each kernel bin.  Sherpa computes the factorial in unsigned
32-bit arithmetic, which wraps for p ≥ 13 (13! mod 2³² = 1 932 053 504); the default
``factorial="sherpa"`` reproduces this so that results agree channel by channel,
``factorial="exact"`` uses the true p!.  The difference only touches piles of 13 or
more photons: 1e-6 relative at most in any channel for a 60 % pileup fraction, but up to
tens of per cent in hard channels when the pileup fraction exceeds 99 %.

Convolutions: the default ``method="fft"`` evaluates the whole series in Fourier space,
``Σ c_p F^p`` by Horner's rule with one forward and one inverse real FFT per spectrum.
Circular aliasing of the p-fold supports is suppressed by an exponential tilt
(``â_k θ^k`` with θ^N = ε, N the FFT length ≥ 2 K_out; the tilt commutes with
convolution and is divided out afterwards), balancing aliasing ε against the
round-off amplification ε^(-K_out/N).  Without autograd, spectra are sorted by their
number of terms so each costs only its own Horner steps, and a degree's step skips the
frequencies where |F|^p makes it negligible (< 1e-16 of the series).  Measured against
Sherpa on NGC 4258 (tests/test_pileup.py, benchmarks/bench_pileup.py): ≤ 1.5e-8
relative in every channel with at least 1e-6 of the peak counts for pileup fractions
1-60 %, ≤ 3e-7 over random draws up to 99 %.  ``method="sequential"`` convolves term
by term, zero-padded to twice the length, exactly as Sherpa does (slower; a check).

Grid sensitivity (benchmarks/bench_pileup_grid.py, power laws with 1-60 % pileup,
0.5-8 keV channels ≥ 1e-3 of the peak): relative to Sherpa's 4096-bin grid, 2048 bins
change channel counts by ≤ 1.3 %, 1024 bins by ≤ 3.4 %; 8192 bins by ≤ 0.7 % and the
converged 32768-bin grid by ≤ 0.9 % (totals ≤ 0.6 %, pileup fraction ≤ 0.8 %): the
default's own discretisation error, kept for agreement with Sherpa.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
import torch

from ..errors import ParameterError, ResponseMismatchError
from ..models import Parameter, parse_param_args
from .pileup_series import counts_fast, series_fft, series_sequential, series_weighted
from .response import Response

TINY = float(np.finfo(np.float32).tiny)  # Sherpa's ``tinyval``
MAX_NUM_TERMS = 30
PROBABILITY_CUTOFF = 0.99999
#: pivot energy (keV) of the energy-dependent alpha(E) = alpha0 + alpha1 ln(E / ALPHA_PIVOT)
ALPHA_PIVOT = 2.0

# Hard limits: Sherpa's JDPileup hard limits (and the checks of its C wrapper:
# g0 > 0, n > 0, ftime > 0, 1 <= nterms <= 30).
PILEUP_PARAMETERS: tuple[Parameter, ...] = (
    Parameter("alpha", 0.5, 0.0, 1.0, "", doc="probability that each extra piled photon keeps a good grade"),
    Parameter("g0", 1.0, TINY, 1.0, "", frozen=True, doc="probability that a single photon keeps a good grade"),
    Parameter("f", 0.95, 0.0, 1.0, "", doc="fraction of the flux in the piled region"),
    Parameter("n", 1.0, TINY, 2048.0, "", frozen=True, doc="number of independent pileup cells"),
    Parameter("ftime", 3.241, TINY, 100.0, "s", frozen=True, doc="frame time"),
    Parameter("fracexp", 0.987, 0.0, 1.0, "", frozen=True, doc="fractional exposure while dithering"),
    Parameter("nterms", 30, 1, MAX_NUM_TERMS, "", frozen=True, doc="most photons in one pile"),
)
_BY_NAME = {p.name: p for p in PILEUP_PARAMETERS}
#: name -> (hard min, hard max), as validated by :class:`PileupParams`
HARD_LIMITS: dict[str, tuple[float, float]] = {p.name: (float(p.min), float(p.max)) for p in PILEUP_PARAMETERS}


def _numeric(v: Any) -> bool:
    try:
        np.asarray(v, dtype=float)
    except (TypeError, ValueError):
        return False
    return True


@dataclass
class PileupParams:
    """Davis/jdpileup parameters; each a float or a (B,) array/tensor (batched).

    ``names``, ``defaults``, ``bounds`` (Sherpa's soft limits, e.g. f in [0.9, 1], for
    priors and fits) and ``hard_limits`` (validated here) follow astropy.modeling.
    """

    alpha: Any = 0.5
    g0: Any = 1.0
    f: Any = 0.95
    n: Any = 1.0
    ftime: Any = 3.241
    fracexp: Any = 0.987
    nterms: Any = 30

    names: ClassVar[tuple[str, ...]] = tuple(p.name for p in PILEUP_PARAMETERS)
    defaults: ClassVar[dict[str, float]] = {p.name: float(p.default) for p in PILEUP_PARAMETERS}
    bounds: ClassVar[dict[str, tuple[float, float]]] = {
        "alpha": (0.0, 1.0), "g0": (TINY, 1.0), "f": (0.9, 1.0), "n": (TINY, 100.0),
        "ftime": (TINY, 5.0), "fracexp": (0.0, 1.0), "nterms": (1.0, float(MAX_NUM_TERMS)),
    }
    hard_limits: ClassVar[dict[str, tuple[float, float]]] = HARD_LIMITS

    def __post_init__(self) -> None:
        for name in self.names:
            v = getattr(self, name)
            if isinstance(v, list | tuple):
                setattr(self, name, np.asarray(v, dtype=float) if _numeric(v) else v)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ParameterError` for NaN, non-numeric or out-of-limit values."""
        for name in self.names:
            v = getattr(self, name)
            if isinstance(v, torch.Tensor):
                arr = v.detach().cpu().numpy()
            elif _numeric(v):
                arr = np.asarray(v, float)
            else:
                raise ParameterError(f"expected a number or a 1-D batch of numbers, got {v!r}",
                                     field=f"pileup.{name}")
            if arr.ndim > 1:
                raise ParameterError(f"expected a scalar or a 1-D batch, got shape {arr.shape}",
                                     field=f"pileup.{name}")
            _BY_NAME[name].check(arr, f"pileup.{name}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> PileupParams:
        """From ``{"alpha": 0.4, ...}`` (case-insensitive names; missing ones default)."""
        kw: dict[str, Any] = {}
        for key, v in (values or {}).items():
            k = key.strip().lower()
            k = k.split(".", 1)[1] if k.startswith(("jdpileup.", "pileup.")) else k
            if k not in cls.names:
                raise ParameterError(f"unknown pileup parameter; expected one of {', '.join(cls.names)}",
                                     field=key)
            kw[k] = v
        return cls(**kw)

    @classmethod
    def from_string(cls, text: str) -> PileupParams:
        """From ``"alpha=0.5,g0=1,f=0.95,n=1,ftime=3.241,fracexp=0.987,nterms=30"``."""
        return cls.from_mapping(parse_param_args([text]))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def batch_size(self) -> int:
        """B of the batched parameters (1 when all are scalars); raises on mismatch."""
        B = 1
        for name in self.names:
            v = getattr(self, name)
            size = int(v.numel()) if isinstance(v, torch.Tensor) else int(np.size(v))
            ndim = v.ndim if isinstance(v, (torch.Tensor, np.ndarray)) else 0
            if ndim == 1 and size != 1:
                if B not in (1, size):
                    raise ParameterError(f"batch size {size} does not match {B}", field=f"pileup.{name}")
                B = size
        return B

    def tensors(self, batch: int, device: torch.device, dtype: torch.dtype = torch.float64
                ) -> dict[str, torch.Tensor]:
        """Every parameter as a (batch,) tensor (nterms as int64, rounded down as Sherpa)."""
        out = {}
        for name in self.names:
            v = getattr(self, name)
            t = v.to(device=device, dtype=dtype) if isinstance(v, torch.Tensor) else \
                torch.as_tensor(np.asarray(v, dtype=np.float64), device=device, dtype=dtype)
            t = t.reshape(-1)
            if t.numel() not in (1, batch):
                raise ParameterError(f"batch size {t.numel()} does not match {batch}", field=f"pileup.{name}")
            out[name] = t.expand(batch)
        out["nterms"] = torch.floor(out["nterms"].detach()).to(torch.int64)
        return out


# ---------------------------------------------------------------------------
# kernel grid
@dataclass(frozen=True)
class KernelGrid:
    """Uniform pileup-kernel grid of ``n`` points, step ``emax / n`` keV (Sherpa: 4096, 15).

    ``energies`` (n,): E_0 = ``e0``, E_i = i·dE; ``edges`` (n+1,): the source bins
    (see module doc).  Finer or coarser grids keep the same construction.
    """

    n: int = 4096
    emax: float = 15.0
    e0: float = 1e-4

    def __post_init__(self) -> None:
        if not (16 <= int(self.n) <= 1 << 20) or int(self.n) != self.n:
            raise ParameterError(f"expected an integer number of grid points in [16, {1 << 20}], "
                                 f"got {self.n!r}", field="pileup grid n")
        if not (np.isfinite(self.emax) and self.emax > 0):
            raise ParameterError(f"expected a positive maximum energy in keV, got {self.emax!r}",
                                 field="pileup grid emax")
        if not (0 < self.e0 <= self.de):
            raise ParameterError(f"expected 0 < e0 <= dE = {self.de:g} keV, got {self.e0!r}",
                                 field="pileup grid e0")

    @classmethod
    def sherpa(cls) -> KernelGrid:
        """Sherpa's fixed grid: 4096 points from 0 to 15 keV (dE = 3.662 eV)."""
        return cls()

    @classmethod
    def parse(cls, spec: str | KernelGrid | None) -> KernelGrid:
        """``None``/``"sherpa"`` → Sherpa's grid; ``"N"`` or ``"N:EMAX"`` → N points to EMAX keV."""
        if spec is None or isinstance(spec, KernelGrid):
            return spec or cls()
        text = str(spec).strip().lower()
        if text in ("", "sherpa", "default"):
            return cls()
        try:
            parts = text.split(":")
            n = int(parts[0])
            emax = float(parts[1]) if len(parts) > 1 else 15.0
            if len(parts) > 2:
                raise ValueError
        except ValueError:
            raise ParameterError("expected 'sherpa', N or N:EMAX (e.g. 8192:15)",
                                 field=f"pileup grid {spec}") from None
        return cls(n, emax)

    @property
    def de(self) -> float:
        return self.emax / self.n

    @property
    def energies(self) -> np.ndarray:
        """Grid energies E_i (n,) keV: E_0 = e0, E_i = i·dE."""
        e = np.arange(self.n, dtype=np.float64) * self.de
        e[0] = self.e0
        return e

    @property
    def edges(self) -> np.ndarray:
        """Source bin edges (n+1,) keV on which the model must be evaluated."""
        e = self.energies
        return np.concatenate([[e[0] / 2.0], e[:-1], [e[-1] + self.de]])


def arf_on_grid(grid: KernelGrid, energ_lo: np.ndarray, energ_hi: np.ndarray,
                specresp: np.ndarray) -> np.ndarray:
    """Effective area (cm²) at the grid energies, looked up as Sherpa does (n,)."""
    lo = np.asarray(energ_lo, np.float64)
    hi = np.asarray(energ_hi, np.float64)
    area = np.asarray(specresp, np.float64)
    e = grid.energies
    idx = np.clip(np.searchsorted(lo, e, side="right") - 1, 0, lo.size - 1)
    out = np.where((e >= hi[-1]) | (e < lo[0]), 0.0, area[idx])
    out[0] = 0.0
    return np.maximum(out, 0.0)


def _factorials(kind: str) -> np.ndarray:
    """p! for p = 2..30, exact or in Sherpa's unsigned 32-bit arithmetic (29,)."""
    if kind == "exact":
        return np.array([float(math.factorial(p)) for p in range(2, MAX_NUM_TERMS + 1)])
    if kind != "sherpa":
        raise ParameterError("expected 'sherpa' or 'exact'", field="factorial")
    out, f = [], 1
    for p in range(2, MAX_NUM_TERMS + 1):
        f = (f * p) % (1 << 32)
        out.append(float(f))
    return np.array(out)


class PileupOutput(NamedTuple):
    """Result of :func:`davis_pileup` (B = batch)."""

    counts: torch.Tensor  # (B, K_out) counts per kernel bin (or per response bin, see Pileup)
    fraction: torch.Tensor  # (B,) pileup fraction
    photons_per_frame: torch.Tensor  # (B,) L = Σ a' (Sherpa's integral_ae is L / g0)
    num_terms: torch.Tensor  # (B,) int: last pile size included


def _as_batch(x, B: int, like: torch.Tensor) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, np.float64))
    t = t.to(device=like.device, dtype=like.dtype).reshape(-1)
    return t.expand(B)


def alpha_of_energy(energy: torch.Tensor, alpha0: torch.Tensor, alpha1: torch.Tensor,
                    pivot: float = ALPHA_PIVOT) -> torch.Tensor:
    """Energy-dependent grade-migration probability (B, K), clipped to [0, 1]::

        alpha(E) = clip(alpha0 + alpha1 ln(E / pivot), 0, 1)

    energy (K,) keV (clamped at 1 eV), alpha0 and alpha1 (B,), pivot keV.  alpha1 = 0 is
    Davis' constant alpha.
    """
    le = torch.log(energy.clamp_min(1e-3) / pivot)
    return (alpha0[:, None] + alpha1[:, None] * le[None, :]).clamp(0.0, 1.0)


def davis_pileup(source: torch.Tensor, arf: torch.Tensor, exposure, alpha, g0, f, n, ftime, fracexp,
                 nterms=MAX_NUM_TERMS, *, n_out: int | None = None, factorial: str = "sherpa",
                 method: Literal["fft", "sequential"] = "fft", efficiency=None) -> PileupOutput:
    """Piled-up counts per kernel bin for a batch of source spectra (float64, differentiable).

    source : (B, K) photons/cm²/s per kernel bin (the model on ``KernelGrid.edges``);
    arf : (K,) cm² on the grid energies (:func:`arf_on_grid`); exposure : s, scalar or (B,);
    alpha, g0, f, n, ftime (s), fracexp : scalars or (B,) tensors; nterms : int or (B,).
    ``alpha`` may also be a (B, n_out) tensor: an energy-dependent probability alpha(E)
    that a pile landing in kernel bin E keeps a good grade, so a pile of p photons keeps it
    with probability alpha(E)^(p-1) (:func:`alpha_of_energy`; used by the adaptation).  The
    pileup fraction then weights each pile size by the mean of alpha(E)^(p-1) over the
    pile's energy distribution (exactly alpha^(p-1) when alpha is constant).
    efficiency : None, a scalar or (B,): a multiplicative factor on the counts (single-
    photon grade losses, cross-calibration); the fraction is unchanged.
    n_out : number of leading kernel bins to return (default K; piles only move up).
    Parameters are assumed valid (see :class:`PileupParams`).  Without autograd a faster
    in-place path is taken (same numbers).
    """
    if source.ndim != 2 or source.shape[-1] != arf.shape[-1]:
        raise ResponseMismatchError(f"source has shape {tuple(source.shape)}; expected (B, {arf.shape[-1]}) "
                                    "on the pileup kernel grid", field="pileup source")
    if method not in ("fft", "sequential"):
        raise ParameterError("expected 'fft' or 'sequential'", field="pileup method")
    src = source.to(torch.float64)
    B, K = src.shape
    K_out = K if n_out is None else int(min(max(n_out, 1), K))
    dev = src.device
    A = arf.to(device=dev, dtype=torch.float64)
    alpha_e = None  # (B, K_out) energy-dependent alpha, or None for Davis' constant alpha
    if isinstance(alpha, torch.Tensor) and alpha.ndim == 2:
        if alpha.shape[-1] != K_out or alpha.shape[0] not in (1, B):
            raise ParameterError(f"energy-dependent alpha has shape {tuple(alpha.shape)}; "
                                 f"expected ({B}, {K_out})", field="pileup.alpha")
        alpha_e = alpha.to(device=dev, dtype=torch.float64).expand(B, K_out)
        alpha = torch.ones(B, dtype=torch.float64, device=dev)  # c_p = L^p / p!; alpha(E) below
    params = [_as_batch(v, B, src) for v in (alpha, g0, f, n, ftime, fracexp, exposure)]
    alpha, g0, f, n, ftime, fracexp, exposure = params
    nt = torch.as_tensor(nterms, device=dev).reshape(-1).expand(B).to(torch.int64)
    extra = [t for t in (alpha_e, efficiency) if isinstance(t, torch.Tensor)]
    grad = torch.is_grad_enabled() and (src.requires_grad or any(t.requires_grad for t in params + extra))

    a0 = torch.clamp(src * A, min=0.0)  # A(E) s(E): photons/s per kernel bin
    S0 = a0.sum(-1)
    psf = f / n / torch.where(fracexp > 0, fracexp, torch.ones_like(fracexp))
    L = S0 * ftime * psf  # photons per frame in one pileup cell
    has = L > 0
    L_safe = torch.where(has, L, torch.ones_like(L))
    S0_safe = torch.where(has, S0, torch.ones_like(S0))

    # series coefficients c_p = alpha^(p-1) L^p / p!, p = 2..30, and Sherpa's stopping rule
    P = MAX_NUM_TERMS
    p = torch.arange(2, P + 1, device=dev)
    if alpha_e is not None and factorial == "exact":
        # L^p / p! in log space, exp(p ln L - ln p!): the adaptation's calibrated kernel has
        # always formed it so; it differs from the product below by round-off only
        pf = p.to(torch.float64)
        norm = torch.exp(pf[None, :] * torch.log(L_safe)[:, None] - torch.lgamma(pf + 1.0)[None, :])
        norm = torch.where(has[:, None], norm, torch.zeros_like(norm))
    else:
        Lpow = torch.cumprod(L[:, None].expand(B, P), dim=1)[:, 1:]  # L^2 .. L^30
        norm = Lpow / torch.as_tensor(_factorials(factorial), device=dev)
    total = 1.0 + L[:, None] + torch.cumsum(norm, dim=1)
    stop = (total * torch.exp(-L)[:, None] > PROBABILITY_CUTOFF).detach()
    stopped_before = (torch.cumsum(stop.to(torch.int64), dim=1) - stop.to(torch.int64)) > 0
    include = (p[None, :] <= nt[:, None]) & ~stopped_before & has[:, None]
    coef = torch.where(include, alpha[:, None] ** (p[None, :] - 1) * norm, torch.zeros_like(norm))
    n_coef = include.sum(1)  # piled terms used per spectrum
    num_terms = torch.where(has, n_coef + 1, nt)  # as Sherpa reports it (nterms when L = 0)
    piled_sum = coef.sum(1)

    # counts = N_f n fracexp e^(-L/g0) [a' + Σ c_p â^{*p}] + (1 - f) N_f a,  a = ftime A s
    frames = exposure / ftime
    scale = frames * n * fracexp * torch.exp(-L / g0)
    w1 = scale * ftime * psf + (1.0 - f) * frames * ftime
    p_max = int(n_coef.max()) + 1 if B else 1
    if alpha_e is not None:
        counts = a0[:, :K_out] * w1[:, None]
        if p_max >= 2:
            ahat = a0[:, :K_out] / S0_safe[:, None]
            series, piled_sum = series_weighted(ahat, coef[:, : p_max - 1], alpha_e)
            counts = counts + scale[:, None] * series
    elif p_max < 2:
        counts = a0[:, :K_out] * w1[:, None]
    elif grad or method == "sequential":
        ahat = a0[:, :K_out] / S0_safe[:, None]
        series = (series_fft(ahat, coef[:, : p_max - 1]) if method == "fft"
                  else series_sequential(ahat, coef[:, : p_max - 1]))
        counts = a0[:, :K_out] * w1[:, None] + scale[:, None] * series
    else:
        counts = counts_fast(a0[:, :K_out], S0_safe, coef[:, : p_max - 1], n_coef, scale, w1)
    fraction = torch.where(has, piled_sum / (L_safe + piled_sum), torch.zeros_like(L))
    if efficiency is not None:
        counts = counts * _as_batch(efficiency, B, src)[:, None]
    return PileupOutput(counts, fraction, L, num_terms)


# ---------------------------------------------------------------------------
# kernel bound to a response
class Pileup:
    """The Davis model bound to a :class:`Response` and a :class:`KernelGrid`.

    ``pileup(source, params)`` takes the source on :attr:`edges` (photons/cm²/s per
    kernel bin, (B, K) or (K,); or on the shorter :attr:`source_edges`) and returns a :class:`PileupOutput` whose counts are per
    response energy bin (B, M), ARF × exposure applied; :meth:`channel_counts` folds
    them through the RMF.
    """

    def __init__(self, response: Response, grid: KernelGrid | str | None = None, *,
                 factorial: str = "sherpa", method: Literal["fft", "sequential"] = "fft"):
        self.response = response
        self.grid = KernelGrid.parse(grid)
        _factorials(factorial)
        if method not in ("fft", "sequential"):
            raise ParameterError("expected 'fft' or 'sequential'", field="pileup method")
        self.factorial, self.method = factorial, method
        self.edges = self.grid.edges
        self.arf = arf_on_grid(self.grid, response.energ_lo, response.energ_hi, response.specresp)
        # kernel bins needed to cover the response: piles only move counts upwards
        top = float(response.energ_hi.max())
        self.n_out = int(min(self.grid.n, np.searchsorted(self.edges, top, side="right")))
        # redistribution onto response bins: cumulative counts, linear within kernel bins
        e = self.edges[: self.n_out + 1]
        lo, hi = response.energ_lo, response.energ_hi
        self._contiguous = bool(np.all(hi[:-1] == lo[1:]))
        points = np.concatenate([lo, hi[-1:]]) if self._contiguous else np.concatenate([lo, hi])
        self._at = self._locate(e, points)
        self._tail_empty = not np.any(self.arf[self.n_out:])
        self._t: dict[Any, Any] = {}

    @property
    def source_edges(self) -> np.ndarray:
        """The leading grid edges (keV) whose bins carry effective area.

        A source evaluated on these alone (``(B, len - 1)``) gives the same result as on
        :attr:`edges`, for less work: the ARF is zero above them.
        """
        return self.edges[: (self.n_out if self._tail_empty else self.grid.n) + 1]

    @staticmethod
    def _locate(e: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        j = np.clip(np.searchsorted(e, x, side="right") - 1, 0, e.size - 2)
        w = np.clip((x - e[j]) / (e[j + 1] - e[j]), 0.0, 1.0)
        return j, 1.0 - w  # weight of the part of bin j above x

    def _tensors(self, device: torch.device):
        key = str(device)
        if key not in self._t:
            d = dict(device=device)
            self._t[key] = (torch.as_tensor(self.arf, dtype=torch.float64, **d),
                            torch.as_tensor(self._at[0], **d), torch.as_tensor(self._at[1], **d))
        return self._t[key]

    def to_response_bins(self, counts: torch.Tensor) -> torch.Tensor:
        """Counts per kernel bin (B, K_out) → counts per response energy bin (B, M).

        Uniform density within each kernel bin: the cumulative counts at an energy x in
        kernel bin j are ``cum[j] - v·counts[j]``, v the part of bin j above x.
        """
        _, j, v = self._tensors(counts.device)
        cum = torch.cumsum(counts, dim=-1)
        at = torch.index_select(cum, 1, j) - v * torch.index_select(counts, 1, j)
        if self._contiguous:
            return at[:, 1:] - at[:, :-1]
        M = self.response.n_energies
        return at[:, M:] - at[:, :M]

    def __call__(self, source, params: PileupParams | Mapping[str, Any] | None = None) -> PileupOutput:
        pars = params if isinstance(params, PileupParams) else PileupParams.from_mapping(params)
        src = source if isinstance(source, torch.Tensor) else torch.as_tensor(
            np.asarray(source, np.float64), device=self.response.device)
        if src.ndim == 1:
            src = src[None]
        widths = (self.grid.n, self.source_edges.size - 1)
        if src.ndim != 2 or src.shape[-1] not in widths:
            raise ResponseMismatchError(
                f"source has shape {tuple(src.shape)}; expected (B, {self.grid.n}) evaluated on the "
                f"pileup grid edges (Pileup.edges) or (B, {widths[1]}) on Pileup.source_edges",
                field="pileup source")
        B = src.shape[0]
        pb = pars.batch_size()
        if B == 1 and pb > 1:
            src = src.expand(pb, -1)
            B = pb
        elif pb not in (1, B):
            raise ParameterError(f"pileup parameters have batch size {pb}, the source {B}",
                                 field="pileup")
        out = self.kernel_counts(src, pars.tensors(B, src.device))
        return out._replace(counts=self.to_response_bins(out.counts))

    def kernel_counts(self, source: torch.Tensor, tensors: Mapping[str, torch.Tensor], *,
                      alpha_slope: torch.Tensor | None = None, efficiency: torch.Tensor | None = None,
                      factorial: str | None = None) -> PileupOutput:
        """The Davis series per kernel bin: counts (B, n_out), fraction, L, terms.

        source : (B, K) float64 photons/cm²/s per bin on :attr:`source_edges` (or on
        :attr:`edges`); tensors : (B,) tensors for every name of :class:`PileupParams`
        (:meth:`PileupParams.tensors`; assumed valid).  ``alpha_slope`` (B,) makes alpha
        energy-dependent, ``alpha(E) = clip(alpha + alpha_slope ln(E / 2 keV), 0, 1)``
        (:func:`alpha_of_energy`; the adaptation's calibrated kernel), ``efficiency`` (B,)
        scales the counts; ``factorial`` overrides the instance's ('sherpa' or 'exact').
        Differentiable; :meth:`to_response_bins` maps the counts to response energy bins.
        """
        t = tensors
        arf = self._tensors(source.device)[0]
        K = self.n_out if self._tail_empty else self.grid.n  # bins above the response: no area
        alpha = t["alpha"]
        if alpha_slope is not None:
            key = ("energies", str(source.device))
            if key not in self._t:
                self._t[key] = torch.as_tensor(self.grid.energies[: self.n_out], dtype=torch.float64,
                                               device=source.device)
            alpha = alpha_of_energy(self._t[key], alpha, alpha_slope)
        return davis_pileup(source[:, :K], arf[:K], self.response.exposure, alpha, t["g0"], t["f"],
                            t["n"], t["ftime"], t["fracexp"], t["nterms"], n_out=self.n_out,
                            factorial=factorial or self.factorial, method=self.method,
                            efficiency=efficiency)

    def channel_counts(self, source, params: PileupParams | Mapping[str, Any] | None = None, *,
                       channels: slice | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(expected counts per channel (B, C), pileup fraction (B,)); ``channels``: a column slice."""
        out = self(source, params)
        return self.response.fold_counts_per_bin(out.counts, channels=channels), out.fraction


_KERNELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def get_pileup(response: Response, grid: KernelGrid | str | None = None, **kw) -> Pileup:
    """A cached :class:`Pileup` for this response and grid."""
    g = KernelGrid.parse(grid)
    per = _KERNELS.setdefault(response, {})
    key = (g, tuple(sorted(kw.items())))
    if key not in per:
        per[key] = Pileup(response, g, **kw)
    return per[key]


def piled_counts(response: Response, flux: Callable[[np.ndarray], Any] | Any,
                 params: PileupParams | Mapping[str, Any] | None = None, *,
                 grid: KernelGrid | str | None = None, return_fraction: bool = False,
                 channels: slice | None = None, **kw):
    """Expected piled-up counts per channel (B, C) for a source on the kernel grid.

    ``flux`` is either a callable ``flux(edges) -> (B, len(edges) - 1)`` photons/cm²/s
    per bin (e.g. ``lambda e: Model("powerlaw").evaluate(e, p)``; it is called with
    :attr:`Pileup.source_edges`) or an array/tensor already evaluated on
    :attr:`Pileup.edges` or :attr:`Pileup.source_edges`.  numpy in (or a callable returning numpy) →
    numpy out.  With ``return_fraction`` also the pileup fraction (B,).  ``channels`` (a
    column slice, :meth:`Response.channel_slice`) folds only those channels; ``kw``
    (``factorial``, ``method``) configure the cached :class:`Pileup`.
    """
    pile = get_pileup(response, grid, **kw)
    src = flux(pile.source_edges) if callable(flux) else flux
    as_numpy = not isinstance(src, torch.Tensor)
    counts, frac = pile.channel_counts(src, params, channels=channels)
    if as_numpy:
        counts, frac = counts.detach().cpu().numpy(), frac.detach().cpu().numpy()
        if np.ndim(src) == 1 and counts.shape[0] == 1:
            counts, frac = counts[0], frac[0]
    return (counts, frac) if return_fraction else counts
