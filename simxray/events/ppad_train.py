"""Training PPAD (``simxray train-ppad``): the auto-decoder loop, PCA latents, the
reference set and the amortised initialiser's fit."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import SimxrayError
from .eventfile import EventList
from .ppad_data import (
    Prepared,
    collate,
    prepare,
)
from .ppad_field import (
    PPADConfig,
)
from .ppad_init import (
    LatentInit,
    binned_summary,
    period_search,
)
from .ppad_loss import (
    source_loss,
)
from .ppad_model import PPAD

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
