"""Learned residual correction of the piled spectrum, conditioned on the incident spectrum.

On top of the calibrated alpha(E) Davis model, the expected piled counts in channel c are
multiplied by ``exp(g(e_c, z))``, where e_c is the channel's nominal energy (keV), g is
smooth in energy (a Gaussian-bump basis in ln E whose coefficients an MLP predicts), and z
summarises the *incident* (unpiled) spectrum: by default log10 of the incident counts per
frame (what pileup depends on); the incident hardness (fraction of counts above 2 keV) and
mean energy can be added (``features``) but, with few pairs, trade against the source's
own spectral parameters.
g (tanh-bounded to ±``max_log``) is trained by Poisson maximum likelihood
on the calibration pairs, the source parameters of each pair drawn afresh from its grating
posterior at every step (so the correction sees the grating uncertainty and cannot absorb
one pair's noise), with an L2 penalty on g towards 0 (no correction).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..io.modeldir import ModelDirError
from .forward import EnergyDavis

FEATURES = ("log_rate", "hardness", "mean_energy")  # columns of incident_features


def incident_features(davis: EnergyDavis, flux: torch.Tensor) -> torch.Tensor:
    """(B, 3) summary of the incident spectrum for flux (B, K) on ``davis.source_edges``.

    log10 incident counts per frame, fraction of counts above 2 keV, mean energy / 5 keV.
    """
    a0 = torch.clamp(flux[:, : davis.K] * davis._arf, min=0.0)       # photons/s per kernel bin
    e = torch.as_tensor(davis.grid.energies[: davis.K], dtype=a0.dtype)
    tot = a0.sum(-1).clamp_min(1e-30)
    per_frame = tot * davis.ftime
    hard = (a0 * (e > 2.0)).sum(-1) / tot
    mean_e = (a0 * e).sum(-1) / tot
    return torch.stack([torch.log10(per_frame.clamp_min(1e-6)), hard, mean_e / 5.0], -1)


class ResidualCorrection(nn.Module):
    """g(e, z) = Σ_k c_k(z) b_k(e): (B, 3) features → (B, C) log multiplicative correction.

    b_k are ``n_basis`` Gaussian bumps evenly spaced in ln E over the channels' range (width
    one spacing: smooth on the detector's ~0.1-0.2 keV resolution), c(z) a small MLP; the
    sum is tanh-bounded to ±``max_log``.
    """

    def __init__(self, channel_energy: np.ndarray, hidden: int = 32, max_log: float = 0.5,
                 n_basis: int = 10, features: tuple[str, ...] = ("log_rate",)):
        super().__init__()
        unknown = [f for f in features if f not in FEATURES]
        if unknown or not features:
            raise ConfigError(f"unknown feature {unknown}; expected some of {', '.join(FEATURES)}",
                              field="correction.features")
        self.features = tuple(features)
        self.register_buffer("columns", torch.tensor([FEATURES.index(f) for f in features]))
        e = np.asarray(channel_energy, float)
        self.register_buffer("energy", torch.as_tensor(e, dtype=torch.float64))
        le = np.log(np.clip(e, 1e-3, None))
        centres = np.linspace(le.min(), le.max(), int(n_basis))
        width = centres[1] - centres[0] if n_basis > 1 else 1.0
        basis = np.exp(-0.5 * ((le[None] - centres[:, None]) / width) ** 2)
        self.register_buffer("basis", torch.as_tensor(basis, dtype=torch.float64))  # (K, C)
        # pair-to-pair scatter of the basis coefficients the MLP does not explain (random effects)
        self.register_buffer("coef_sd", torch.zeros(int(n_basis), dtype=torch.float64))
        self.max_log = float(max_log)
        self.net = nn.Sequential(nn.Linear(len(self.features), hidden), nn.Tanh(),
                                 nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, int(n_basis))).double()
        with torch.no_grad():  # start at no correction
            self.net[-1].weight.zero_()
            self.net[-1].bias.zero_()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        g = self.net(features[:, self.columns].to(torch.float64)) @ self.basis
        return self.max_log * torch.tanh(g / self.max_log)

    def sample(self, features: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """g with random coefficient offsets ~ N(0, coef_sd²) per spectrum (B, C)."""
        g = self.net(features[:, self.columns].to(torch.float64))
        eps = torch.randn(g.shape, dtype=torch.float64, generator=generator)
        g = (g + eps * self.coef_sd) @ self.basis
        return self.max_log * torch.tanh(g / self.max_log)

    def mean_factor(self, features: torch.Tensor, offsets: torch.Tensor | None = None,
                    marginal: np.ndarray | None = None, n_nodes: int = 24) -> torch.Tensor:
        """E[exp g] (B, C) over the random coefficient offsets of :meth:`sample`.

        ``offsets`` (B, n_basis) are given offsets added to the coefficients (default 0);
        ``marginal`` (n_basis,) bool marks the offsets integrated over (default all).
        The offsets enter linearly before the tanh, so in each channel the argument is
        Gaussian, N(m_c, v_c) with v_c = Σ_{k marginal} coef_sd_k² b_k(e_c)²: a 1-D
        Gauss-Hermite integral per channel (``n_nodes`` nodes), deterministic."""
        from numpy.polynomial.hermite_e import hermegauss

        x, w = hermegauss(int(n_nodes))
        x = torch.as_tensor(x, dtype=torch.float64)
        w = torch.as_tensor(w / w.sum(), dtype=torch.float64)
        c = self.net(features[:, self.columns].to(torch.float64))
        if offsets is not None:
            c = c + torch.as_tensor(offsets, dtype=torch.float64)
        m = c @ self.basis                                                            # (B, C)
        sd_k = self.coef_sd if marginal is None else \
            self.coef_sd * torch.as_tensor(np.asarray(marginal, float), dtype=torch.float64)
        sd = torch.sqrt((sd_k[:, None] ** 2 * self.basis ** 2).sum(0))                # (C,)
        g = m[..., None] + sd[None, :, None] * x                                       # (B, C, n)
        return (torch.exp(self.max_log * torch.tanh(g / self.max_log)) * w).sum(-1)

    def save(self, path: str | os.PathLike, meta: dict | None = None) -> Path:
        """A model directory (:mod:`simxray.io.modeldir`): ``weights.safetensors`` + ``config.json``
        (settings, provenance, the weights' sha256)."""
        from ..io.modeldir import save_model_dir
        from ..provenance import provenance

        cfg = {"hidden": self.net[0].out_features, "max_log": self.max_log,
               "n_basis": int(self.basis.shape[0]), "features": list(self.features),
               "n_channels": int(self.energy.shape[0]), **(meta or {}), "provenance": provenance()}
        return save_model_dir(path, {k: v.contiguous() for k, v in self.state_dict().items()}, cfg,
                              "correction")

    @classmethod
    def load(cls, path: str | os.PathLike) -> ResidualCorrection:
        """Rebuild a correction saved by :meth:`save` (weights' sha256 verified)."""
        from ..io.modeldir import load_model_dir, load_state

        cfg, t = load_model_dir(path, "correction", what="a pileup-correction directory written by "
                                "'simxray adapt'", required=("hidden", "max_log", "n_basis", "features"))
        if "energy" not in t:
            raise ModelDirError("missing tensor 'energy'", path=str(Path(path) / "weights.safetensors"))
        mod = cls(t["energy"].numpy(), int(cfg["hidden"]), float(cfg["max_log"]), int(cfg["n_basis"]),
                  tuple(cfg["features"]))
        load_state(mod, t, Path(path) / "weights.safetensors")
        return mod


def channel_energies(davis: EnergyDavis) -> np.ndarray:
    """Nominal energies (keV) of the selected channels (EBOUNDS mid-points)."""
    r = davis.response
    e = 0.5 * (np.asarray(r.e_min, float) + np.asarray(r.e_max, float))
    return e[davis.slice]


def train_correction(groups, posteriors_by_group, phi_by_group, *, steps: int = 200, draws: int = 2,
                     l2: float = 30.0, lr: float = 1e-2, hidden: int = 32, max_log: float = 0.5,
                     features: tuple[str, ...] = ("log_rate",), spread: bool = True, seed: int = 0,
                     quiet: bool = True) -> tuple[ResidualCorrection, dict]:
    """Fit g on calibration pairs (see module doc).

    ``groups``: :class:`~.calibrate.PairGroup` list (one response each; all groups must share
    the channel energies); ``posteriors_by_group``: per group, the pairs' grating posteriors;
    ``phi_by_group``: per group, dict of (B,) tensors (the calibrated φ of each pair).
    Returns (correction, {"nll_before_per_channel", "nll_after_per_channel", "steps"[, "coef_sd"]}):
    the Poisson NLL per channel at the grating posterior means without and with the correction;
    with ``spread`` the pair-to-pair scatter it leaves (:func:`estimate_spread`), which the
    adapted simulator draws from.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    corr = ResidualCorrection(channel_energies(groups[0].davis), hidden, max_log, features=features)
    opt = torch.optim.Adam(corr.parameters(), lr=lr)
    # cache: base counts and features for fixed θ draws, refreshed every 25 steps
    n_ch = sum(g.x.numel() for g in groups)

    def draw(at_mean: bool = False):
        out = []
        for g, posts, phi in zip(groups, posteriors_by_group, phi_by_group, strict=True):
            if at_mean:
                th = np.tile(np.stack([q.mean for q in posts]), (draws, 1))
            else:
                th = np.stack([q.sample(draws, rng) for q in posts], 1).reshape(-1, g.source.dim)  # (D*B, P)
            with torch.no_grad():
                flux = g.source.flux(torch.as_tensor(th), g.davis.source_edges)
                rep = {k: v.repeat(draws) for k, v in phi.items()}
                mu = g.davis.counts(flux, rep).clamp_min(1e-30)
                z = incident_features(g.davis, flux)
            out.append((mu, z, g.x.repeat(draws, 1)))
        return out

    def nll(batch) -> torch.Tensor:
        tot = torch.zeros((), dtype=torch.float64)
        for mu, z, x in batch:
            lm = torch.log(mu) + corr(z)
            tot = tot + (torch.exp(lm) - x * lm).sum() / draws
        return tot

    fixed = draw(at_mean=True)  # the grating posterior means: before/after diagnostics
    with torch.no_grad():
        before = float(nll(fixed)) / n_ch
    batch = draw()
    for step in tqdm(range(steps), desc="correction", disable=quiet):
        if step and step % 20 == 0:
            batch = draw()
        opt.zero_grad()
        reg = sum((corr(z) ** 2).mean() for _, z, _ in batch) * l2 * len(groups[0].pairs)
        loss = nll(batch) + reg
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(nll(fixed)) / n_ch
    info = {"nll_before_per_channel": before, "nll_after_per_channel": after, "steps": steps}
    if spread:
        info["coef_sd"] = estimate_spread(corr, fixed, draws)
    return corr.eval(), info


def estimate_spread(corr: ResidualCorrection, batch, draws: int, iters: int = 8) -> list[float]:
    """Random-effects sd τ (K,) of the basis coefficients; sets ``corr.coef_sd``.

    Per pair, Poisson Newton fit of coefficient offsets δ_i on top of the fitted correction
    (log μ = log μ_cal + g + δ_i·b) with information H_i; then maximum marginal likelihood
    of τ in δ_i ~ N(0, H_i⁻¹ + diag τ²) (the bumps overlap: full noise covariances).
    """
    deltas, noise = [], []
    with torch.no_grad():
        for mu, z, x in batch:
            n = mu.shape[0] // draws
            base = torch.log(mu[:n]) + corr(z[:n])
            Bm = corr.basis                                     # (K, C)
            K = Bm.shape[0]
            d = torch.zeros(n, K, dtype=torch.float64)
            for _ in range(iters):
                m = torch.exp(base + d @ Bm)
                grad = (m - x[:n]) @ Bm.T + 1e-3 * d
                H = torch.einsum("kc,bc,lc->bkl", Bm, m, Bm) + 1e-3 * torch.eye(K, dtype=torch.float64)
                d = d - torch.linalg.solve(H, grad[..., None])[..., 0]
            deltas.append(d)
            noise.append(torch.linalg.inv(H))
    from scipy.optimize import minimize

    D = torch.cat(deltas).numpy()
    C = torch.cat(noise).numpy()

    def negll(log_tau: np.ndarray) -> float:
        cov = C + np.diag(np.exp(2 * log_tau))[None]
        _, logdet = np.linalg.slogdet(cov)
        quad = np.einsum("bi,bi->b", D, np.linalg.solve(cov, D[..., None])[..., 0])
        return 0.5 * float(np.sum(logdet + quad))

    K = D.shape[1]
    res = minimize(negll, np.full(K, np.log(0.05)), method="L-BFGS-B", bounds=[(-9.0, 0.0)] * K)
    tau = np.exp(res.x)
    corr.coef_sd.copy_(torch.as_tensor(np.where(tau < 1e-3, 0.0, tau)))
    return corr.coef_sd.tolist()


__all__ = ["ResidualCorrection", "incident_features", "train_correction", "channel_energies"]

