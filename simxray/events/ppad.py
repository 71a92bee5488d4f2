"""PPAD: a Poisson-process auto-decoder for event lists.

A neural field ρ(τ, b | z) gives the rate of events in energy band b at normalised time
τ = (t - tstart)/span (span = last GTI stop - first GTI start) for a source with latent
vector z.  The physical rate (counts/s per band) is

    r(t, b) = (N / E) · ρ(τ, b | z),

where N is the number of events in the bands and E the good time (s): N/E is the MLE of
a constant rate, so z describes *shape* (light curve and spectrum), not brightness.

Network (DeepONet-style factorisation, chosen so that encoding is cheap):

    ρ(τ, b | z) = softplus( Σ_k φ_k(τ) A_kb(z) + c_b(z) )

* trunk φ(τ) ∈ R^K: Fourier features γ(τ) of τ (sin, cos at ``n_freq`` frequencies from 0.5
  to ``max_freq`` cycles per span, spaced geometrically or, ``freq_spacing="linear"``,
  linearly) → linear → ``n_blocks`` residual SiLU blocks → linear, plus (``fourier_skip``) a
  linear map of γ(τ) itself, so that sinusoids at any phase are in the basis' span without
  the MLP having to synthesise them; it does not depend on z, so it is evaluated once on a
  fine grid of τ nodes (``grid`` intervals; training jitters the grid every step) and
  linearly interpolated;
* branch (A, c)(z): an MLP of the latent giving the K × n_bands mixing matrix and offsets;
* periodic head (``periodic_head``): S_b gains g_b(z)·[z₁ cos(2πfτ) + z₂ sin(2πfτ)], with
  f = :func:`head_frequency` (z₀) and band gains g_b(z) from the branch.  z₀ is not optimised:
  it is set for every source, in training and encoding, by a period search on the events
  (:func:`period_search`: highest GTI-corrected Z² peak at 1-24 cycles per span), and z₁, z₂
  start from the Fourier amplitude there.  Without it the auto-decoder does not learn
  modulation faster than ~11 cycles per span: a latent cannot find such a frequency by
  gradient descent (the likelihood is flat in z away from it).

Loss per source (divided by N, so every source weighs the same per event):

    -Σ_i log r(t_i, b_i) + Σ_b ∫_GTI r(t, b) dt + λ_TV Σ_j Σ_b |ρ_b(τ_j) - ρ_b(τ_{j-1})|
    + |z|² / (2 σ_z²)

The integral is a composite Gauss-Legendre rule inside each GTI (sub-intervals never cross
a gap, so gaps are handled exactly).  The total-variation term runs over consecutive
evaluation points in time, the GL nodes that densely cover the good time (a discretised
∫|dρ/dτ| dτ; using the nodes rather than the event times makes its cost independent of
the number of events).  Training uses up to ``max_events`` events per source per step
(random subsample, unbiased for the first term).  Training optimises the network and all
latents jointly (auto-decoder); encoding freezes the network and optimises only z (Adam,
batched over sources), starting from an amortised guess (a small MLP on binned counts,
trained to predict the auto-decoder latents) when the model has one.  The encoder's default
loss is the same objective evaluated on the interpolation grid (:func:`grid_loss`: events
histogrammed onto the grid nodes, exact GTI weights of the nodes), so its cost does not grow
with the number of events and every event is used.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import FileFormatError, ResponseMismatchError, SimxrayError
from .eventfile import EventList

DEFAULT_BANDS = (0.5, 0.7, 0.9, 1.2, 1.6, 2.0, 2.8, 4.0, 5.5, 7.0)
"""Default PPAD energy bands (keV); contain the CSC s/m/h edges 0.5, 1.2, 2.0, 7.0."""

FORMAT = "simxray-ppad-1"


@dataclass
class PPADConfig:
    """Architecture and loss settings (saved in config.json)."""

    band_edges: tuple[float, ...] = DEFAULT_BANDS
    latent_dim: int = 24
    hidden: int = 64
    n_blocks: int = 3
    n_basis: int = 64
    branch_hidden: int = 128
    n_freq: int = 16
    max_freq: float = 48.0
    grid: int = 512
    lambda_tv: float = 0.5
    sigma_z: float = 1.0
    quad_sub: int = 64
    quad_order: int = 4
    max_events: int = 2048
    init_bins: int = 32
    freq_spacing: str = "geom"
    fourier_skip: bool = False
    init_periodogram: bool = False
    periodic_head: bool = False

    @property
    def n_bands(self) -> int:
        return len(self.band_edges) - 1

    @classmethod
    def from_dict(cls, d: dict) -> PPADConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "band_edges" in known:
            known["band_edges"] = tuple(float(x) for x in known["band_edges"])
        return cls(**known)


# --------------------------------------------------------------------------- network


class _Block(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.l1 = nn.Linear(hidden, hidden)
        self.l2 = nn.Linear(hidden, hidden)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.l2(F.silu(self.l1(F.silu(h))))


def _log_softplus(s: torch.Tensor) -> torch.Tensor:
    """log(softplus(s)), accurate for very negative s."""
    return torch.where(s < -20, s, torch.log(F.softplus(s).clamp_min(1e-30)))


class PPADField(nn.Module):
    """ρ(τ, b | z) = softplus(φ(τ)·A(z) + c(z)); see the module docstring."""

    def __init__(self, cfg: PPADConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.freq_spacing not in ("geom", "linear"):
            raise ValueError(f"freq_spacing must be 'geom' or 'linear', got {cfg.freq_spacing!r}")
        space = np.geomspace if cfg.freq_spacing == "geom" else np.linspace
        freqs = torch.tensor(space(0.5, cfg.max_freq, cfg.n_freq), dtype=torch.float32)
        self.register_buffer("freqs", 2 * math.pi * freqs, persistent=False)
        self.inp = nn.Linear(2 * cfg.n_freq, cfg.hidden)
        self.blocks = nn.ModuleList([_Block(cfg.hidden) for _ in range(cfg.n_blocks)])
        self.basis_out = nn.Linear(cfg.hidden, cfg.n_basis)
        # linear path from the Fourier features to the basis: sinusoids at the encoding
        # frequencies (any phase) are in the basis' span without the MLP having to synthesise them
        self.skip = nn.Linear(2 * cfg.n_freq, cfg.n_basis, bias=False) if cfg.fourier_skip else None
        nb, K, H = cfg.n_bands, cfg.n_basis, cfg.branch_hidden
        if cfg.periodic_head and cfg.latent_dim < 4:
            raise ValueError(f"periodic_head needs latent_dim >= 4, got {cfg.latent_dim}")
        n_head = nb if cfg.periodic_head else 0
        self.branch = nn.Sequential(nn.Linear(cfg.latent_dim, H), nn.SiLU(), nn.Linear(H, H), nn.SiLU(),
                                    nn.Linear(H, K * nb + nb + n_head))
        with torch.no_grad():
            last = self.branch[-1]
            last.weight.mul_(0.1)
            last.bias.zero_()
            last.bias[K * nb:K * nb + nb] = math.log(math.expm1(1.0 / nb))
            last.bias[K * nb + nb:] = 1.0              # periodic-head band gains start at 1

    def basis(self, tau: torch.Tensor) -> torch.Tensor:
        """Trunk φ(τ): (..., ) → (..., K), exact (no grid)."""
        arg = tau[..., None] * self.freqs
        gamma = torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)
        h = self.inp(gamma)
        for blk in self.blocks:
            h = blk(h)
        out = self.basis_out(F.silu(h))
        return out if self.skip is None else out + self.skip(gamma)

    def coeffs(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Branch: latents (B, d) → A (B, K, n_bands), c (B, n_bands)."""
        A, c, _ = self.branch_all(z)
        return A, c

    def branch_all(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Branch: A (B, K, n_bands), c (B, n_bands) and the periodic head's band gains g
        (B, n_bands; None without the head)."""
        out = self.branch(z)
        K, nb = self.cfg.n_basis, self.cfg.n_bands
        g = out[:, K * nb + nb:] if self.cfg.periodic_head else None
        return out[:, :K * nb].view(-1, K, nb), out[:, K * nb:K * nb + nb], g

    def head(self, z: torch.Tensor, tau: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor | None:
        """Periodic head (``periodic_head``), added to the log-rate argument S:
        g_b(z)·[z₁ cos(2πfτ) + z₂ sin(2πfτ)] with f = :func:`head_frequency` (z₀) cycles per span
        and band gains g_b(z) from the branch.  τ (P,) or (B, P) → (B, n_bands, P); None without
        the head."""
        if not self.cfg.periodic_head:
            return None
        if g is None:
            g = self.branch_all(z)[2]
        arg = 2 * math.pi * head_frequency(z[:, 0:1]) * (tau if tau.dim() == 2 else tau[None, :])
        wave = z[:, 1:2] * torch.cos(arg) + z[:, 2:3] * torch.sin(arg)
        return g[:, :, None] * wave[:, None, :]

    def grid_basis(self, offset: float = 0.0) -> torch.Tensor:
        """φ on the nodes τ_g = (g - 1 + offset)/G, g = 0..G+1 (covering [0, 1]): (G+2, K)."""
        G = self.cfg.grid
        nodes = (torch.arange(G + 2, device=self.freqs.device, dtype=torch.float32) - 1 + offset) / G
        return self.basis(nodes)

    def forward(self, tau: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Exact rates: τ (B, P), z (B, d) → ρ (B, P, n_bands)."""
        A, c, g = self.branch_all(z)
        S = torch.bmm(self.basis(tau), A) + c[:, None]
        h = self.head(z, tau, g)
        return F.softplus(S if h is None else S + h.transpose(1, 2))

    def grid_values(self, z: torch.Tensor, table: torch.Tensor, offset: float = 0.0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """S - c on the grid nodes of ``table`` (:meth:`grid_basis` at ``offset``), (B, n_bands, G+2),
        and c (B, n_bands)."""
        A, c, g = self.branch_all(z)
        B, nb, G2 = z.shape[0], self.cfg.n_bands, table.shape[0]
        S = (A.transpose(1, 2).reshape(B * nb, -1) @ table.T).view(B, nb, G2)
        if g is not None:
            nodes = (torch.arange(G2, device=table.device, dtype=table.dtype) - 1 + offset) / (G2 - 2)
            S = S + self.head(z, nodes, g)
        return S, c


HEAD_FREQ_RANGE = (1.0, 24.0)
"""Frequencies (cycles per span) spanned by the periodic head's z₀ ∈ [-2, 2]."""


def head_frequency(z0: torch.Tensor) -> torch.Tensor:
    """Periodic-head frequency (cycles per span) from z₀: log-uniform, z₀ = ±2 at the ends of
    :data:`HEAD_FREQ_RANGE`."""
    lo, hi = math.log(HEAD_FREQ_RANGE[0]), math.log(HEAD_FREQ_RANGE[1])
    return torch.exp(0.5 * (lo + hi) + 0.25 * (hi - lo) * z0)


def head_code(freq: np.ndarray) -> np.ndarray:
    """Inverse of :func:`head_frequency`: z₀ for frequencies in cycles per span."""
    lo, hi = math.log(HEAD_FREQ_RANGE[0]), math.log(HEAD_FREQ_RANGE[1])
    return (np.log(freq) - 0.5 * (lo + hi)) / (0.25 * (hi - lo))


# --------------------------------------------------------------------------- data


_GL_CACHE: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _gauss_legendre(order: int) -> tuple[np.ndarray, np.ndarray]:
    if order not in _GL_CACHE:
        _GL_CACHE[order] = np.polynomial.legendre.leggauss(order)
    return _GL_CACHE[order]


def gti_quadrature(gti_tau: np.ndarray, n_sub: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss-Legendre nodes/weights over GTIs given in normalised time.

    Each GTI gets ≥ 1 of ``max(n_sub, K)`` equal sub-intervals (by the largest-remainder rule
    on its length), each with ``order`` nodes, so no sub-interval crosses a gap.  Weights
    sum to 1 (they average over the good time).  Returns (Q,), (Q,) with Q = order·max(n_sub, K).
    """
    lengths = gti_tau[:, 1] - gti_tau[:, 0]
    total = lengths.sum()
    k = len(lengths)
    m_tot = max(n_sub, k)
    share = lengths / total * (m_tot - k)
    m = 1 + np.floor(share).astype(int)
    rest = m_tot - m.sum()
    if rest > 0:
        m[np.argsort(-(share - np.floor(share)), kind="stable")[:rest]] += 1
    x, w = _gauss_legendre(order)
    nodes, weights = [], []
    for (a, b), mj in zip(gti_tau, m, strict=True):
        edges = np.linspace(a, b, mj + 1)
        nodes_w = _gl_on_edges(edges, x, w)
        nodes.append(nodes_w[0])
        weights.append(nodes_w[1])
    return np.concatenate(nodes), np.concatenate(weights) / total


def _gl_on_edges(edges: np.ndarray, x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    half = 0.5 * np.diff(edges)[:, None]
    mid = 0.5 * (edges[1:] + edges[:-1])[:, None]
    return (mid + half * x).ravel(), (half * w).ravel()


def shifted_gti_quadrature(gti_tau: np.ndarray, n_sub: int, order: int, shift: float
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss-Legendre rule on sub-intervals of length h = good time / n_sub whose
    boundaries sit at ``gti_start + (shift + j)·h`` clipped to each GTI (partial end pieces get
    their own scaled rule).  Used in training with a random ``shift`` ∈ [0, 1) every step:
    every node is then uniformly distributed, so the estimate of ∫ρ is unbiased and the
    network cannot hide rate between fixed nodes.  Weights sum to 1."""
    lengths = gti_tau[:, 1] - gti_tau[:, 0]
    total = lengths.sum()
    h = total / n_sub
    x, w = _gauss_legendre(order)
    nodes, weights = [], []
    for a, b in gti_tau:
        inner = a + (shift + np.arange(int(np.ceil((b - a) / h)) + 1)) * h
        edges = np.concatenate([[a], inner[inner < b], [b]])
        edges = edges[np.concatenate([[True], np.diff(edges) > 0])]
        nw = _gl_on_edges(edges, x, w)
        nodes.append(nw[0])
        weights.append(nw[1])
    return np.concatenate(nodes), np.concatenate(weights) / total


@dataclass
class Prepared:
    """One event list reduced to what PPAD needs (normalised times, band indices, quadrature)."""

    tau: np.ndarray          # (n,) float32, sorted, in [0, 1]
    band: np.ndarray         # (n,) int64
    qt: np.ndarray           # (Q,) float32 quadrature nodes
    qw: np.ndarray           # (Q,) float32 weights, sum 1
    n_events: int            # events in the bands and GTIs
    exposure: float          # s
    tstart: float            # s
    span: float              # s
    gti_tau: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 2)))

    @property
    def scale(self) -> float:
        """N / E: the mean rate (counts/s) that multiplies ρ."""
        return self.n_events / self.exposure


def prepare(events: EventList, cfg: PPADConfig, *, allow_empty: bool = False) -> Prepared:
    """Normalise times, assign bands, build the GTI quadrature; events outside the bands are ignored."""
    where = events.name or None
    if len(events.gti) == 0:
        raise FileFormatError("no good time intervals", path=where, field="GTI")
    edges = np.asarray(cfg.band_edges)
    keep = (events.energy >= edges[0]) & (events.energy < edges[-1])
    t = events.time[keep]
    if t.size and np.any(np.diff(t) < 0):
        raise FileFormatError("event times are not sorted (use EventList.clean())", path=where, field="TIME")
    n = int(t.size)
    if n == 0 and not allow_empty:
        raise FileFormatError(f"no events in {edges[0]:g}-{edges[-1]:g} keV inside the GTIs; PPAD needs "
                              "at least one event", path=where, field="EVENTS")
    t0, span = events.tstart, events.span
    if not span > 0:
        raise FileFormatError("GTIs have zero total length", path=where, field="GTI")
    gti_tau = (events.gti - t0) / span
    qt, qw = gti_quadrature(gti_tau, cfg.quad_sub, cfg.quad_order)
    band = np.searchsorted(edges, events.energy[keep], side="right") - 1
    return Prepared(((t - t0) / span).astype(np.float32), band.astype(np.int64), qt.astype(np.float32),
                    qw.astype(np.float32), n, events.exposure, t0, span, gti_tau)


@dataclass
class Batch:
    tau: torch.Tensor      # (B, n)
    band: torch.Tensor     # (B, n)
    mask: torch.Tensor     # (B, n)
    n_used: torch.Tensor   # (B,)
    n_events: torch.Tensor  # (B,)
    qt: torch.Tensor       # (B, Q)
    qw: torch.Tensor       # (B, Q)

    def to(self, device) -> Batch:
        return Batch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def collate(items: Sequence[Prepared], max_events: int | None, rng: np.random.Generator | None = None,
            device: str | torch.device = "cpu", seed: int = 0, quad: tuple[int, int] | None = None) -> Batch:
    """Pad a list of prepared sources into tensors, subsampling to ``max_events`` events each
    (with ``rng``, or, when None, a generator seeded by (seed, n_events) per source so that a
    source's subsample does not depend on the rest of the batch)."""
    sel = []
    for p in items:
        if max_events is not None and p.n_events > max_events:
            r = rng if rng is not None else np.random.default_rng([seed, p.n_events])
            idx = np.sort(r.choice(p.n_events, max_events, replace=False))
            sel.append(idx)
        else:
            sel.append(None)
    if quad is not None:      # training: randomly shifted quadrature, fresh every call
        qs = [shifted_gti_quadrature(p.gti_tau, quad[0], quad[1], float(rng.random())) for p in items]
    else:
        qs = [(p.qt, p.qw) for p in items]
    n = max(1, max(len(s) if s is not None else p.n_events for s, p in zip(sel, items, strict=True)))
    q = max(x[0].size for x in qs)
    B = len(items)
    tau = np.zeros((B, n), np.float32)
    band = np.zeros((B, n), np.int64)
    mask = np.zeros((B, n), np.float32)
    qt = np.zeros((B, q), np.float32)
    qw = np.zeros((B, q), np.float32)
    for i, (p, s) in enumerate(zip(items, sel, strict=True)):
        tt, bb = (p.tau, p.band) if s is None else (p.tau[s], p.band[s])
        tau[i, :tt.size], band[i, :tt.size], mask[i, :tt.size] = tt, bb, 1.0
        qt[i, :qs[i][0].size], qw[i, :qs[i][0].size] = qs[i]
    n_used = mask.sum(1)
    n_ev = np.array([p.n_events for p in items], np.float32)
    dev = torch.device(device)
    return Batch(*(torch.from_numpy(a).to(dev) for a in (tau, band, mask, n_used, n_ev, qt, qw)))


# --------------------------------------------------------------------------- loss


def _interp_coords(tau: torch.Tensor, grid: int, offset: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Left node index and weight for linear interpolation on nodes (g - 1 + offset)/grid."""
    x = tau * grid + 1 - offset
    i = x.floor().clamp(0, grid)
    return i.long(), (x - i).clamp(0, 1)


@dataclass
class _Coords:
    idx: torch.Tensor    # (B, 2n + 2 nb Q) flat indices into S (left and right nodes)
    a: torch.Tensor      # (B, n) event interpolation weights
    aq: torch.Tensor     # (B, Q) quadrature-node interpolation weights
    n: int
    Q: int


def _coords(batch: Batch, nb: int, grid: int, offset: float) -> _Coords:
    G2 = grid + 2
    i, a = _interp_coords(batch.tau, grid, offset)
    iq, aq = _interp_coords(batch.qt, grid, offset)
    B, n, Q = i.shape[0], i.shape[1], iq.shape[1]
    k = batch.band * G2 + i
    kq = (torch.arange(nb, device=i.device)[None, :, None] * G2 + iq[:, None, :]).reshape(B, nb * Q)
    return _Coords(torch.cat([k, k + 1, kq, kq + 1], dim=1), a, aq, n, Q)


def source_loss(field_: PPADField, z: torch.Tensor, batch: Batch, cfg: PPADConfig,
                table: torch.Tensor | None = None, offset: float = 0.0, coords: _Coords | None = None
                ) -> torch.Tensor:
    """Per-source PPAD loss divided by N (B,); see the module docstring.

    The log-rate argument S = A(z)ᵀ φ + c is computed on the trunk grid ``table``
    (:meth:`PPADField.grid_basis` at ``offset``; cached when the network is frozen) with one
    dense matrix product, then linearly interpolated to the event times and quadrature
    nodes (identical to interpolating φ, since S is linear in φ).
    """
    if table is None:
        table = field_.grid_basis(offset)
    B, nb, G2 = z.shape[0], cfg.n_bands, table.shape[0]
    if coords is None:
        coords = _coords(batch, nb, G2 - 2, offset)
    n, Q = coords.n, coords.Q
    S, c = field_.grid_values(z, table, offset)
    S = S.view(B, nb * G2)
    v = S.gather(1, coords.idx)                                           # one gather/scatter
    s_ev = torch.lerp(v[:, :n], v[:, n:2 * n], coords.a) + c.gather(1, batch.band)
    nll = -(_log_softplus(s_ev) * batch.mask).sum(1) / batch.n_used.clamp_min(1)
    vq = v[:, 2 * n:].view(B, 2, nb, Q)
    rho_q = F.softplus(torch.lerp(vq[:, 0], vq[:, 1], coords.aq[:, None, :]) + c[:, :, None])
    integ = (rho_q.sum(1) * batch.qw).sum(1)
    pair = (batch.qw[:, 1:] > 0) & (batch.qw[:, :-1] > 0)
    tv = ((rho_q[:, :, 1:] - rho_q[:, :, :-1]).abs().sum(1) * pair).sum(1)
    nn_ = batch.n_events.clamp_min(1)
    return nll + integ + cfg.lambda_tv * tv / nn_ + (z ** 2).sum(1) / (2 * cfg.sigma_z ** 2) / nn_


@dataclass
class GridBatch:
    """Sources reduced to the interpolation grid (the encoder's fast path, :func:`grid_loss`)."""

    counts: torch.Tensor    # (B, n_bands, G+2) events split linearly between their two nodes
    weight: torch.Tensor    # (B, G+2) ∫_GTI of each node's hat function / good time (sums to 1)
    pair: torch.Tensor      # (B, G+1) 1 where the interval between nodes g, g+1 overlaps the GTIs
    n_events: torch.Tensor  # (B,)


def _hat_integral(u: np.ndarray) -> np.ndarray:
    """∫_{-∞}^u of the unit hat function max(0, 1 - |x|)."""
    u = np.clip(u, -1.0, 1.0)
    return np.where(u < 0, 0.5 * (u + 1) ** 2, 1 - 0.5 * (1 - u) ** 2)


def grid_batch(items: Sequence[Prepared], cfg: PPADConfig, grid: int | None = None,
               device: str | torch.device = "cpu") -> GridBatch:
    """Histogram every event onto the nodes τ_g = (g - 1)/G, g = 0..G+1 (weights 1 - a and a on
    its two neighbours, as in the linear interpolation of the field), and integrate the nodes'
    hat functions exactly over the GTIs.  All events are used (no subsampling); cost is
    independent of the number of events."""
    G = cfg.grid if grid is None else grid
    G2, nb, B = G + 2, cfg.n_bands, len(items)
    tau = np.concatenate([p.tau for p in items]).astype(np.float64)
    band = np.concatenate([p.band for p in items])
    src = np.repeat(np.arange(B), [p.tau.size for p in items])
    x = tau * G + 1
    i = np.clip(np.floor(x), 0, G)
    a = np.clip(x - i, 0.0, 1.0)
    k = (src * nb + band) * G2 + i.astype(np.int64)
    size = B * nb * G2
    counts = (np.bincount(k, 1 - a, minlength=size) + np.bincount(k + 1, a, minlength=size)).reshape(B, nb, G2)
    nodes = (np.arange(G2) - 1.0) / G
    weight = np.zeros((B, G2))
    pair = np.zeros((B, G2 - 1))
    for s, p in enumerate(items):
        g = p.gti_tau
        hi = _hat_integral((g[:, 1:2] - nodes) * G) - _hat_integral((g[:, 0:1] - nodes) * G)
        weight[s] = hi.sum(0) / G / (g[:, 1] - g[:, 0]).sum()
        ov = np.minimum(g[:, 1:2], nodes[1:]) - np.maximum(g[:, 0:1], nodes[:-1])
        pair[s] = (np.clip(ov, 0, None).sum(0) > 0)
    n_ev = np.array([p.n_events for p in items], np.float32)
    dev = torch.device(device)
    return GridBatch(*(torch.from_numpy(np.asarray(v, np.float32)).to(dev) for v in (counts, weight, pair, n_ev)))


class _GridTerms(torch.autograd.Function):
    """Event, integral and total-variation terms of :func:`grid_loss` as a function of the
    pre-softplus field values s (B, n_bands, G+2), with a hand-written fused backward (the
    encoder's hot loop: fewer passes over the (B, n_bands, G+2) arrays than autograd)."""

    @staticmethod
    def forward(ctx, s, counts, weight, pair, inv_n, lambda_tv):
        rho = F.softplus(s)
        tiny = s < -20.0                                      # log softplus(s) = s there (no underflow)
        log_rho = torch.where(tiny, s, torch.log(rho))
        d = rho[:, :, 1:] - rho[:, :, :-1]
        out = (-(counts * log_rho).sum((1, 2)) * inv_n + (rho.sum(1) * weight).sum(1)
               + lambda_tv * inv_n * (d.abs().sum(1) * pair).sum(1))
        ctx.save_for_backward(s, rho, d, counts, weight, pair, inv_n)
        ctx.lambda_tv = lambda_tv
        return out

    @staticmethod
    def backward(ctx, grad):
        s, rho, d, counts, weight, pair, inv_n = ctx.saved_tensors
        sig = torch.sigmoid(s)                                # d rho / d s
        dlog = torch.where(s < -20.0, torch.ones_like(s), sig / rho)   # d log rho / d s
        sg = torch.sign(d) * pair[:, None, :]                 # d tv / d(rho_{g+1} - rho_g)
        lam = (ctx.lambda_tv * inv_n)[:, None, None]
        drho = weight[:, None, :].expand_as(rho).clone()
        drho[:, :, 1:] += lam * sg
        drho[:, :, :-1] -= lam * sg
        ds = drho * sig - counts * inv_n[:, None, None] * dlog
        return grad[:, None, None] * ds, None, None, None, None, None


def grid_loss(field_: PPADField, z: torch.Tensor, gb: GridBatch, cfg: PPADConfig, table: torch.Tensor
              ) -> torch.Tensor:
    """Per-source loss of :func:`source_loss` evaluated on the grid (``table`` = φ on the nodes,
    :meth:`PPADField.grid_basis`, on the same grid as ``gb``): Σ_i log ρ(τ_i) → Σ_g n_g log ρ_g
    (log-rate interpolated linearly between nodes), ∫ρ → Σ_g w_g ρ_g (rate piecewise linear
    between nodes), total variation over consecutive nodes whose interval overlaps the GTIs.
    The first two terms differ from the event-level loss by O(grid spacing²) where the rate is
    smooth; the total variation differs by the sampling of ρ (grid nodes vs quadrature nodes).
    Returns (B,) nats per event."""
    G2 = table.shape[0]
    if gb.counts.shape[2] != G2:
        raise ValueError(f"grid batch has {gb.counts.shape[2]} nodes but the basis table has {G2}")
    S, c = field_.grid_values(z, table)
    s = S + c[:, :, None]
    inv_n = 1.0 / gb.n_events.clamp_min(1)
    terms = _GridTerms.apply(s, gb.counts, gb.weight, gb.pair, inv_n, float(cfg.lambda_tv))
    return terms + (z ** 2).sum(1) / (2 * cfg.sigma_z ** 2) * inv_n


def optimise_latents_grid(field_: PPADField, gb: GridBatch, cfg: PPADConfig, z0: torch.Tensor, *, steps: int,
                          lr: float, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`optimise_latents` with :func:`grid_loss` (Adam, cosine learning rate)."""
    return _adam_latents(lambda z: grid_loss(field_, z, gb, cfg, table), z0, cfg, steps=steps, lr=lr)


def _adam_latents(loss_fn: Callable[[torch.Tensor], torch.Tensor], z0: torch.Tensor, cfg: PPADConfig, *,
                  steps: int, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise ``loss_fn(z)`` (per-source losses) over z only: Adam with a cosine learning
    rate, the periodic head's frequency frozen; returns (z, final loss per source)."""
    z = z0.detach().clone().requires_grad_(True)
    _freeze_head_frequency(z, cfg)
    opt = torch.optim.Adam([z], lr=lr)
    for k in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * k / max(steps, 1)))
        opt.zero_grad(set_to_none=True)
        loss_fn(z).sum().backward()
        opt.step()
    with torch.no_grad():
        loss = loss_fn(z)
    return z.detach(), loss.detach()


def _freeze_head_frequency(z: torch.Tensor, cfg: PPADConfig) -> None:
    """With the periodic head, z₀ (its frequency, set by :func:`period_search`) is not optimised:
    its gradient is zeroed (Adam then leaves it unchanged)."""
    if cfg.periodic_head:
        mask = torch.ones_like(z)
        mask[:, 0] = 0.0
        z.register_hook(lambda g: g * mask)


# --------------------------------------------------------------------------- amortised initialiser


PERIODOGRAM_FREQS = np.arange(1.0, 24.01, 0.5)
"""Frequencies (cycles per span) of the initialiser's periodogram (``init_periodogram``)."""

_PGRAM_BINS = 512
_FINE_STEPS = np.arange(-0.3, 0.3001, 0.01)


def summary_dim(cfg: PPADConfig) -> int:
    """Length of :func:`binned_summary` rows for ``cfg``."""
    return 4 * cfg.init_bins + cfg.n_bands + (PERIODOGRAM_FREQS.size if cfg.init_periodogram else 0)


def _good_fraction(gti_tau: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Good-time length inside each bin [edges_j, edges_j+1) (normalised-time units)."""
    lo = np.clip(gti_tau[:, None, 0], edges[None, :-1], edges[None, 1:])
    hi = np.clip(gti_tau[:, None, 1], edges[None, :-1], edges[None, 1:])
    return (hi - lo).sum(0)


_DFT_CACHE: dict[str, np.ndarray] = {}


def _dft_matrix(kind: str) -> np.ndarray:
    """e^{2πi f τ_j} at the 512 bin centres τ_j for f = :data:`PERIODOGRAM_FREQS` ("coarse") or
    f = the refinement offsets ("fine"), cached."""
    if kind not in _DFT_CACHE:
        mid = (np.arange(_PGRAM_BINS) + 0.5) / _PGRAM_BINS
        _DFT_CACHE[kind] = np.exp(2j * np.pi * np.outer(mid, PERIODOGRAM_FREQS if kind == "coarse" else _FINE_STEPS))
    return _DFT_CACHE[kind]


def binned_periodogram(p: Prepared) -> np.ndarray:
    """log(1 + Z²) at :data:`PERIODOGRAM_FREQS` from the events binned into 512 time bins, with
    the counts expected from a constant rate over the GTIs subtracted first (so gaps add no
    power): Z² = 2 |Σ_j (n_j - N f_j) e^{2πi f τ_j}|² / N, ≈ χ²₂ (mean 2) for a constant source."""
    z2 = 2.0 * np.abs(_binned_residual(p) @ _dft_matrix("coarse")) ** 2 / max(p.n_events, 1)
    return np.log1p(z2)


def _binned_residual(p: Prepared) -> np.ndarray:
    """Counts in 512 time bins minus those of a constant rate over the GTIs."""
    edges = np.linspace(0.0, 1.0, _PGRAM_BINS + 1)
    frac = _good_fraction(p.gti_tau, edges)
    n = np.bincount(np.clip((p.tau * _PGRAM_BINS).astype(np.int64), 0, _PGRAM_BINS - 1),
                    minlength=_PGRAM_BINS).astype(np.float64)
    return n - p.n_events * frac / max(frac.sum(), 1e-12)


def period_search(items: Sequence[Prepared]) -> np.ndarray:
    """The periodic head's latents (z₀, z₁, z₂) from the events (S, 3) float32: the highest
    peak of :func:`binned_periodogram`, refined on a 0.01-cycle grid within ±0.3 cycles, gives
    the frequency f (z₀ = :func:`head_code` (f)); z₁ + i z₂ = (2/N) Σ_j r_j e^{2πi f τ_j} over the
    512 binned residuals r (≈ a·e^{iφ} for a rate ∝ 1 + a cos(2πfτ - φ))."""
    coarse, fine = _dft_matrix("coarse"), _dft_matrix("fine")
    out = np.zeros((len(items), 3), np.float32)
    for i, p in enumerate(items):
        r = _binned_residual(p)
        k = int(np.argmax(np.abs(r @ coarse)))
        amp = (r * coarse[:, k]) @ fine                       # DFT at PERIODOGRAM_FREQS[k] + fine steps
        j = int(np.argmax(np.abs(amp)))
        f = float(np.clip(PERIODOGRAM_FREQS[k] + _FINE_STEPS[j], *HEAD_FREQ_RANGE))
        c = 2.0 * amp[j] / max(p.n_events, 1)
        out[i] = (head_code(np.array(f)), c.real, c.imag)
    return out


def binned_summary(items: Sequence[Prepared], cfg: PPADConfig) -> np.ndarray:
    """Fixed-size summary of each source for the amortised initialiser (not a feature set):
    per band group (soft <1.2, medium 1.2-2, hard ≥2 keV, all) the relative count rate in
    ``init_bins`` time bins (counts / expected-if-constant, square-rooted), plus the band
    fractions (sqrt) of all events, plus (``init_periodogram``) :func:`binned_periodogram`.
    Shape (S, :func:`summary_dim`)."""
    nbins, edges = cfg.init_bins, np.asarray(cfg.band_edges)
    groups = np.searchsorted(np.array([1.2, 2.0]), 0.5 * (edges[:-1] + edges[1:]), side="right")
    t_edges = np.linspace(0, 1, nbins + 1)
    out = np.zeros((len(items), summary_dim(cfg)), np.float32)
    for i, p in enumerate(items):
        frac = _good_fraction(p.gti_tau, t_edges)         # good-time fraction of each time bin
        good = frac > 1e-3 / nbins
        tb = np.clip((p.tau * nbins).astype(int), 0, nbins - 1)
        bc = np.bincount(p.band, minlength=cfg.n_bands).astype(np.float64)
        gtot = frac.sum()
        for g in range(4):
            sel = np.ones_like(p.band, bool) if g == 3 else (groups[p.band] == g)
            c = np.bincount(tb[sel], minlength=nbins).astype(np.float64)
            expct = max(sel.sum(), 1) * frac / gtot
            rel = np.where(good, c / np.maximum(expct, 1e-9), 1.0)
            out[i, g * nbins:(g + 1) * nbins] = np.sqrt(rel)
        out[i, 4 * nbins:4 * nbins + cfg.n_bands] = np.sqrt(bc / max(p.n_events, 1))
        if cfg.init_periodogram:
            out[i, 4 * nbins + cfg.n_bands:] = binned_periodogram(p)
    return out


class LatentInit(nn.Module):
    """Amortised initial guess z0 = MLP(binned summary)."""

    def __init__(self, n_in: int, latent_dim: int, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, latent_dim))
        self.register_buffer("mean", torch.zeros(n_in))
        self.register_buffer("std", torch.ones(n_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


# --------------------------------------------------------------------------- model container


class PPAD:
    """A trained PPAD: the field, its config and (optionally) the amortised initialiser and a
    reference set of latents (for anomaly scores)."""

    def __init__(self, cfg: PPADConfig, field_: PPADField | None = None, init: LatentInit | None = None,
                 meta: dict | None = None, reference: dict[str, np.ndarray] | None = None,
                 device: str | torch.device | None = None):
        self.cfg = cfg
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.field = (field_ or PPADField(cfg)).to(self.device)
        self.init = init.to(self.device) if init is not None else None
        self.meta = meta or {}
        self.reference = reference or {}

    # ---------------------------------------------------------------- persistence
    def save(self, out_dir: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write ``weights.safetensors`` and ``config.json`` into ``out_dir`` (atomic per file)."""
        from safetensors.torch import save_file

        from ..provenance import atomic_path

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {f"field.{k}": v.detach().cpu().contiguous() for k, v in self.field.state_dict().items()}
        if self.init is not None:
            tensors.update({f"init.{k}": v.detach().cpu().contiguous() for k, v in self.init.state_dict().items()})
        for k, v in self.reference.items():
            tensors[f"reference.{k}"] = torch.as_tensor(np.asarray(v)).contiguous()
        tmp = atomic_path(out / "weights.safetensors")
        save_file(tensors, str(tmp))
        os.replace(tmp, out / "weights.safetensors")
        meta = dict(self.meta)
        meta.update(extra or {})
        doc = {"format": FORMAT, "config": asdict(self.cfg), "init": self.init is not None,
               "init_hidden": self.init.net[0].out_features if self.init is not None else None,
               "reference": sorted(self.reference), **meta}
        tmp = atomic_path(out / "config.json")
        tmp.write_text(json.dumps(doc, indent=2, default=str))
        os.replace(tmp, out / "config.json")
        return out

    @classmethod
    def load(cls, model_dir: str | os.PathLike | None = None, device: str | torch.device | None = None) -> PPAD:
        """Load a saved model (default: the shipped one in ``simxray/data/ppad_default``)."""
        from safetensors.torch import load_file

        d = Path(model_dir) if model_dir is not None else default_model_dir()
        cfg_path, w_path = d / "config.json", d / "weights.safetensors"
        for p in (cfg_path, w_path):
            if not p.is_file():
                raise FileFormatError("missing (a PPAD model directory holds config.json and "
                                      "weights.safetensors)", path=p)
        try:
            doc = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as exc:
            raise FileFormatError(f"not valid JSON ({exc.msg})", path=cfg_path) from None
        if doc.get("format") != FORMAT:
            raise ResponseMismatchError(f"format is {doc.get('format')!r}, expected {FORMAT!r}", path=cfg_path,
                                        field="format")
        cfg = PPADConfig.from_dict(doc["config"])
        tensors = load_file(str(w_path))
        field_ = PPADField(cfg)
        field_.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("field.")})
        init = None
        if doc.get("init"):
            init = LatentInit(summary_dim(cfg), cfg.latent_dim, int(doc.get("init_hidden") or 128))
            init.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("init.")})
        ref = {k[10:]: v.numpy() for k, v in tensors.items() if k.startswith("reference.")}
        meta = {k: v for k, v in doc.items() if k not in ("format", "config", "init", "init_hidden", "reference")}
        model = cls(cfg, field_, init, meta, ref, device)
        model.field.eval()
        return model

    # ---------------------------------------------------------------- inference
    def prepare(self, events: Sequence[EventList]) -> list[Prepared]:
        return [prepare(e, self.cfg) for e in events]

    def initial_latents(self, items: Sequence[Prepared]) -> torch.Tensor:
        """Amortised z0 (zeros when the model has no initialiser; the periodic head's three
        latents from :func:`period_search`)."""
        if self.init is None:
            z = torch.zeros(len(items), self.cfg.latent_dim, device=self.device)
        else:
            x = torch.from_numpy(binned_summary(items, self.cfg)).to(self.device)
            with torch.no_grad():
                z = self.init(x)
        if self.cfg.periodic_head:                            # head latents from the period search
            z[:, :3] = torch.from_numpy(period_search(items)).to(z)
        return z

    def encode(self, events: Sequence[EventList] | Sequence[Prepared], *, steps: int = 30, lr: float = 0.05,
               batch_size: int = 256, max_events: int | None = None, seed: int = 0,
               progress: bool = False, use_init: bool = True, method: str = "grid",
               workers: int | None = None) -> EncodeResult:
        """Latents for event lists: network frozen, z optimised by Adam (batched, cosine lr).

        ``method="grid"`` (default) evaluates the loss on the interpolation grid from histogrammed
        events (:func:`grid_loss`: all events, cost independent of their number, deterministic);
        ``method="events"`` uses the event-level training loss (:func:`source_loss`) on up to
        ``max_events`` events per source (default the config's; a random subsample drawn from
        ``seed`` above that).  Batches (data preparation included) run in ``workers`` threads
        with one torch thread each (default: ``torch.get_num_threads()``); a source's latent
        does not depend on the batching or the number of workers (up to float rounding).
        With the periodic head, z₀ stays at the period search's value (:func:`period_search`).
        """
        if method not in ("grid", "events"):
            raise ValueError(f"method must be 'grid' or 'events', got {method!r}")
        from concurrent.futures import ThreadPoolExecutor

        from tqdm.auto import tqdm

        events = list(events)
        max_events = self.cfg.max_events if max_events is None else max_events
        workers = max(1, torch.get_num_threads() if workers is None else int(workers))
        self.field.eval()
        for p in self.field.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            table = self.field.grid_basis()
        S = len(events)
        z_all = np.zeros((S, self.cfg.latent_dim), np.float32)
        loss_all = np.zeros(S, np.float32)
        items: list[Prepared | None] = [e if isinstance(e, Prepared) else None for e in events]
        size = [e.n_events if isinstance(e, Prepared) else e.time.size for e in events]
        order = np.argsort(size, kind="stable")             # batches of similar size
        if workers > 1 and S > 1:
            batch_size = min(batch_size, -(-S // workers))
        bar = tqdm(total=S, disable=not progress, unit="src", desc="encode")

        def one(sel: np.ndarray) -> None:
            for i in sel:                                    # data preparation inside the worker
                if items[i] is None:
                    items[i] = prepare(events[i], self.cfg)
            chunk = [items[i] for i in sel]
            z0 = self.initial_latents(chunk) if use_init else torch.zeros(len(chunk), self.cfg.latent_dim,
                                                                           device=self.device)
            if method == "grid":
                gb = grid_batch(chunk, self.cfg, device=self.device)
                z, loss = optimise_latents_grid(self.field, gb, self.cfg, z0, steps=steps, lr=lr, table=table)
            else:
                batch = collate(chunk, max_events, None, self.device, seed=seed)
                z, loss = optimise_latents(self.field, batch, self.cfg, z0, steps=steps, lr=lr, table=table)
            z_all[sel] = z.cpu().numpy()
            loss_all[sel] = loss.cpu().numpy()
            bar.update(len(chunk))

        batches = [order[i:i + batch_size] for i in range(0, S, batch_size)]
        try:
            if workers > 1 and len(batches) > 1 and self.device.type == "cpu":
                threads = torch.get_num_threads()
                torch.set_num_threads(1)
                try:
                    with ThreadPoolExecutor(workers) as pool:
                        list(pool.map(one, batches))
                finally:
                    torch.set_num_threads(threads)
            else:
                for sel in batches:
                    one(sel)
        finally:
            bar.close()
            for p in self.field.parameters():
                p.requires_grad_(True)
        return EncodeResult(z_all, np.array([p.scale for p in items]), loss_all,
                            np.array([p.tstart for p in items]), np.array([p.span for p in items]),
                            np.array([p.n_events for p in items]))

    def rates(self, z: np.ndarray | torch.Tensor, tau: np.ndarray | torch.Tensor) -> np.ndarray:
        """Normalised rates ρ (S, P, n_bands) at normalised times τ (P,) or (S, P)."""
        z = torch.as_tensor(np.asarray(z, np.float32), device=self.device).reshape(-1, self.cfg.latent_dim)
        tau = torch.as_tensor(np.asarray(tau, np.float32), device=self.device)
        if tau.ndim == 1:
            tau = tau.expand(z.shape[0], -1)
        with torch.no_grad():
            return self.field(tau, z).cpu().numpy()

    def light_curve(self, enc: EncodeResult, index: int, times: np.ndarray) -> np.ndarray:
        """Rate (counts/s) per band (n_t, n_bands) of source ``index`` at times t (s)."""
        tau = (np.asarray(times, np.float64) - enc.tstart[index]) / enc.span[index]
        return enc.scale[index] * self.rates(enc.z[index], tau)[0]

    def binned_light_curve(self, enc: EncodeResult, index: int, t_edges: np.ndarray, order: int = 8
                           ) -> np.ndarray:
        """Mean rate (counts/s) per band in time bins ``t_edges`` (s), Gauss-Legendre per bin."""
        x, w = _gauss_legendre(order)
        lo, hi = np.asarray(t_edges[:-1]), np.asarray(t_edges[1:])
        t = (0.5 * (lo + hi))[:, None] + (0.5 * (hi - lo))[:, None] * x
        r = self.light_curve(enc, index, t.ravel()).reshape(len(lo), order, -1)
        return 0.5 * np.einsum("nkb,k->nb", r, w)

    def log_likelihood(self, enc: EncodeResult, events: Sequence[EventList], *, quad_sub: int = 256,
                       batch_size: int = 64) -> np.ndarray:
        """Exact log-likelihood per event of ``events[i]`` under the rate of latent ``enc.z[i]``
        (with ``enc.scale[i]``, so a model fitted on one half of a thinned list can be scored on
        the other half).  Rates in counts/s; quadrature with ``quad_sub`` sub-intervals."""
        cfg = PPADConfig(**{**asdict(self.cfg), "quad_sub": quad_sub, "quad_order": 8})
        out = np.zeros(len(events))
        for start in range(0, len(events), batch_size):
            chunk = [prepare(e, cfg, allow_empty=True) for e in events[start:start + batch_size]]
            for k, p in enumerate(chunk):       # evaluate on the fitted source's time axis
                i = start + k
                p.tau = ((p.tau * p.span + p.tstart - enc.tstart[i]) / enc.span[i]).astype(np.float32)
                p.qt = ((p.qt * p.span + p.tstart - enc.tstart[i]) / enc.span[i]).astype(np.float32)
            b = collate(chunk, None, None, self.device)
            z = torch.as_tensor(enc.z[start:start + len(chunk)], device=self.device)
            n = b.tau.shape[1]
            with torch.no_grad():
                rho = self.field(torch.cat([b.tau, b.qt], 1), z)
            r_i = torch.gather(rho[:, :n], 2, b.band[..., None]).squeeze(-1)
            scale = torch.as_tensor(enc.scale[start:start + len(chunk)], device=self.device, dtype=torch.float32)
            expo = torch.as_tensor([p.exposure for p in chunk], device=self.device, dtype=torch.float32)
            sum_log = (torch.log(r_i.double() * scale[:, None] + 1e-300) * b.mask).sum(1)
            integ = (rho[:, n:].sum(-1) * b.qw).sum(1) * scale * expo
            out[start:start + len(chunk)] = ((sum_log - integ) / b.n_used.clamp_min(1)).cpu().numpy()
        return out


@dataclass
class EncodeResult:
    """Latents and the per-source normalisation: rate (counts/s) = scale · ρ(τ | z)."""

    z: np.ndarray          # (S, d)
    scale: np.ndarray      # (S,) N/E counts/s
    loss: np.ndarray       # (S,) final loss per event (normalised units)
    tstart: np.ndarray     # (S,) s
    span: np.ndarray       # (S,) s
    n_events: np.ndarray   # (S,)

    def subset(self, idx) -> EncodeResult:
        return EncodeResult(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


def default_model_dir() -> Path:
    """The shipped pre-trained encoder (``simxray/data/ppad_default``)."""
    return Path(__file__).resolve().parent.parent / "data" / "ppad_default"


def optimise_latents(field_: PPADField, batch: Batch, cfg: PPADConfig, z0: torch.Tensor, *, steps: int,
                     lr: float, table: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimise z only (network frozen) for a padded batch; returns (z, final loss per source)."""
    if table is None:
        with torch.no_grad():
            table = field_.grid_basis()
    coords = _coords(batch, cfg.n_bands, table.shape[0] - 2, 0.0)
    return _adam_latents(lambda z: source_loss(field_, z, batch, cfg, table, coords=coords), z0, cfg,
                         steps=steps, lr=lr)


# --------------------------------------------------------------------------- training


def train_ppad(events: Sequence[EventList] | Sequence[Prepared], cfg: PPADConfig | None = None, *,
               steps: int = 3000, batch_size: int = 64, lr: float = 2e-3, lr_z: float = 0.05, seed: int = 0,
               init_steps: int = 1500, latent_scale: float = 0.5, device: str | torch.device | None = None,
               progress: bool = False, amortised: bool = False,
               callback: Callable[[int, float], None] | None = None) -> tuple[PPAD, np.ndarray, dict]:
    """Train a PPAD auto-decoder on event lists; returns (model, training latents, history).

    The network and one latent per source are optimised jointly (Adam for the network,
    SparseAdam for the latent table, cosine learning-rate decay).  Latents start from the
    leading principal components of the binned summaries (:func:`pca_latents`, std
    ``latent_scale``), which orders the latent space from the start and speeds up training
    many times over a random start.  Then, if ``init_steps``, the amortised initialiser is
    fitted to predict the learnt latents from binned summaries.

    ``amortised``: the latent of a source is ``E(binned summary) + δ`` with E the
    initialiser network (trained jointly with the field, Adam) and δ a free per-source offset
    (SparseAdam, starting at 0, or at the period search's values for the head's latents), so
    that gradients reach every source's latent through the shared E at every step.  E becomes
    the model's initialiser (refined by ``init_steps`` more steps on the final latents).  An
    option; the shipped model does not use it (it did not help on small test runs).

    With ``cfg.periodic_head``, z₀ (the head's frequency) is fixed at the period search's
    value (:func:`period_search`) for every source and not trained.
    """
    from tqdm.auto import tqdm

    cfg = cfg or PPADConfig()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    items = [e if isinstance(e, Prepared) else prepare(e, cfg) for e in events]
    if not items:
        raise SimxrayError("no event lists to train on")
    model = PPAD(cfg, device=device)
    fld = model.field
    S = len(items)
    emb = nn.Embedding(S, cfg.latent_dim, sparse=True).to(model.device)
    enc_net, xs = None, None
    head0 = torch.from_numpy(period_search(items)).to(model.device) if cfg.periodic_head else None
    with torch.no_grad():
        if amortised:
            xs = torch.from_numpy(binned_summary(items, cfg)).to(model.device)
            enc_net = LatentInit(xs.shape[1], cfg.latent_dim).to(model.device)
            enc_net.mean.copy_(xs.mean(0))
            enc_net.std.copy_(xs.std(0).clamp_min(1e-3))
            emb.weight.zero_()
            if head0 is not None:
                emb.weight[:, 1:3] = head0[:, 1:3]
        else:
            emb.weight.copy_(torch.from_numpy(pca_latents(items, cfg, latent_scale)))
    net_params = list(fld.parameters()) + (list(enc_net.parameters()) if amortised else [])
    opt = torch.optim.Adam(net_params, lr=lr)
    opt_z = torch.optim.SparseAdam(list(emb.parameters()), lr=lr_z)
    hist = {"loss": []}
    bar = tqdm(range(steps), disable=not progress, desc="train-ppad", unit="step")
    ema = None
    for step in bar:
        frac = step / max(steps, 1)
        warm = min(1.0, (step + 1) / 100)
        for o, base in ((opt, lr), (opt_z, lr_z)):
            for g in o.param_groups:
                g["lr"] = base * warm * 0.5 * (1 + math.cos(math.pi * frac))
        idx = rng.choice(S, min(batch_size, S), replace=False)
        batch = collate([items[i] for i in idx], cfg.max_events, rng, model.device,
                        quad=(cfg.quad_sub, cfg.quad_order))
        idx_t = torch.as_tensor(idx, device=model.device)
        z = emb(idx_t) if enc_net is None else emb(idx_t) + enc_net(xs[idx_t])
        if head0 is not None:                                  # the head's frequency is not trained
            z = torch.cat([head0[idx_t, :1], z[:, 1:]], 1)
        offset = float(rng.random())
        loss = source_loss(fld, z, batch, cfg, fld.grid_basis(offset), offset).mean()
        opt.zero_grad(set_to_none=True)
        opt_z.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net_params, 5.0)
        opt.step()
        opt_z.step()
        lv = float(loss.detach())
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        if step % 10 == 0:
            hist["loss"].append((step, ema))
            bar.set_postfix(loss=f"{ema:.4f}")
        if callback is not None:
            callback(step, lv)
    bar.close()
    z_train = emb.weight.detach().cpu().numpy().copy()
    if enc_net is not None:
        enc_net.eval()
        with torch.no_grad():
            z_train += enc_net(xs).cpu().numpy()
    if head0 is not None:
        z_train[:, 0] = head0[:, 0].cpu().numpy()
    if init_steps:
        model.init = fit_initialiser(items, z_train, cfg, steps=init_steps, seed=seed, device=model.device,
                                     progress=progress, net=enc_net)
    elif enc_net is not None:
        model.init = enc_net
    hist["final_loss"] = ema
    return model, z_train, hist


def pca_latents(items: Sequence[Prepared], cfg: PPADConfig, scale: float = 0.5) -> np.ndarray:
    """Initial latents: leading principal components of the standardised binned summaries,
    each scaled to standard deviation ``scale`` (S, latent_dim) float32; with the periodic head
    the first three are :func:`period_search`'s."""
    x = binned_summary(items, cfg).astype(np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    u, sv, _ = np.linalg.svd(x, full_matrices=False)
    first = 3 if cfg.periodic_head else 0                 # the head's latents come from the period search
    d = min(cfg.latent_dim - first, u.shape[1])
    z = np.zeros((len(items), cfg.latent_dim))
    z[:, first:first + d] = u[:, :d] / (u[:, :d].std(0) + 1e-12) * scale
    if first:
        z[:, :3] = period_search(items)
    return z.astype(np.float32)


def reference_set(model: PPAD, events: Sequence[EventList] | Sequence[Prepared],
                  labels: dict[str, np.ndarray] | None = None, *, max_sources: int = 4000, seed: int = 0,
                  progress: bool = False) -> dict[str, np.ndarray]:
    """Latents of (up to ``max_sources`` of) the training sources, encoded exactly as new data
    would be, stored with the model as the anomaly-score reference (plus ``kind_id`` if known)."""
    idx = np.arange(len(events))
    if len(idx) > max_sources:
        idx = np.sort(np.random.default_rng(seed).choice(len(idx), max_sources, replace=False))
    enc = model.encode([events[i] for i in idx], progress=progress)
    ref = {"z": enc.z.astype(np.float32)}
    if labels and "kind_id" in labels:
        ref["kind_id"] = np.asarray(labels["kind_id"])[idx].astype(np.int64)
    return ref


def fit_initialiser(items: Sequence[Prepared], z: np.ndarray, cfg: PPADConfig, *, steps: int = 1500,
                    batch_size: int = 256, lr: float = 2e-3, seed: int = 0, device=None,
                    progress: bool = False, net: LatentInit | None = None) -> LatentInit:
    """Fit the amortised initialiser (MSE to the auto-decoder latents); ``net`` warm-starts it."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    dev = torch.device(device or "cpu")
    x = torch.from_numpy(binned_summary(items, cfg)).to(dev)
    y = torch.as_tensor(z, dtype=torch.float32, device=dev)
    if net is None:
        net = LatentInit(x.shape[1], cfg.latent_dim).to(dev)
        with torch.no_grad():
            net.mean.copy_(x.mean(0))
            net.std.copy_(x.std(0).clamp_min(1e-3))
    else:
        net = net.to(dev).train()
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-5)
    g = torch.Generator(device="cpu").manual_seed(seed)
    for step in tqdm(range(steps), disable=not progress, desc="initialiser", unit="step"):
        for grp in opt.param_groups:
            grp["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        idx = torch.randint(0, x.shape[0], (min(batch_size, x.shape[0]),), generator=g).to(dev)
        loss = ((net(x[idx]) - y[idx]) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    return net
