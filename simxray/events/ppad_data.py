"""PPAD's inputs: event lists on the normalised time axis (:class:`Prepared`), GTI
quadrature rules and padded batches (:class:`Batch`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import FileFormatError
from .eventfile import EventList
from .ppad_field import (
    PPADConfig,
)

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
