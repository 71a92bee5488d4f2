"""PPAD's losses and latent optimisers: the event-level loss (:func:`source_loss`), the
grid loss of the encoder (:func:`grid_loss`) and Adam over latents."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from .ppad_data import (
    Batch,
    Prepared,
)
from .ppad_field import (
    PPADConfig,
    PPADField,
    _log_softplus,
)

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


def optimise_latents(field_: PPADField, batch: Batch, cfg: PPADConfig, z0: torch.Tensor, *, steps: int,
                     lr: float, table: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimise z only (network frozen) for a padded batch; returns (z, final loss per source)."""
    if table is None:
        with torch.no_grad():
            table = field_.grid_basis()
    coords = _coords(batch, cfg.n_bands, table.shape[0] - 2, 0.0)
    return _adam_latents(lambda z: source_loss(field_, z, batch, cfg, table, coords=coords), z0, cfg,
                         steps=steps, lr=lr)
