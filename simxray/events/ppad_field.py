"""PPAD's neural field ρ(τ, b | z): configuration (:class:`PPADConfig`), the network
(:class:`PPADField`) and the periodic head's frequency code.  Design and loss:
:mod:`simxray.events.ppad`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

DEFAULT_BANDS = (0.5, 0.7, 0.9, 1.2, 1.6, 2.0, 2.8, 4.0, 5.5, 7.0)
"""Default PPAD energy bands (keV); contain the CSC s/m/h edges 0.5, 1.2, 2.0, 7.0."""


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
