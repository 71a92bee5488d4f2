"""PPAD's amortised initialiser: period search, binned summaries and the small MLP
(:class:`LatentInit`) that guesses latents from them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .ppad_data import (
    Prepared,
)
from .ppad_field import (
    HEAD_FREQ_RANGE,
    PPADConfig,
    head_code,
)

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
