"""The adapted pileup simulator and NPE (re)training on it.

:class:`PileupSimulator` draws piled ACIS spectra for source parameters θ (fit space) with
the alpha(E) Davis model (:class:`.forward.EnergyDavis`) under one of three nuisance
prescriptions:

* ``davis``       fixed φ (Sherpa's defaults alpha = 0.5, f = 0.95: the uncalibrated simulator);
* ``calibrated``  φ drawn per spectrum from the hierarchical calibration's population;
* ``adapted``     calibrated φ and the learned residual correction (:mod:`.correction`),
  with per-spectrum random offsets of its coefficients (the scatter it leaves between pairs).

:func:`train_npe` trains (or fine-tunes) an :class:`simxray.inference.npe.NPEModel` on such
spectra, redrawing the Poisson noise of the stored expectations each epoch, with early
stopping on a held-out tenth.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError
from ..simulator.prior import Dist, Prior
from .calibrate import Calibration
from .correction import ResidualCorrection, incident_features
from .forward import EnergyDavis, FitSpaceModel, phi_tensors

DAVIS_DEFAULT_PHI = {"alpha0": 0.5, "alpha1": 0.0, "f": 0.95, "eff": 1.0}
NPE_SETTINGS = {"embedding": {"type": "mlp", "transform": "anscombe", "features": 16, "hidden": 64,
                              "rebin": 4},
                "flow": {"transforms": 3, "hidden_features": [48, 48], "bins": 8}}


@dataclass
class PriorBox:
    """Uniform prior in fit space: ``low``/``high`` (P,) (log10 where ``log``).

    A view of the core :class:`simxray.simulator.prior.Prior`: :attr:`prior` is the same
    box as a uniform core prior over the fit-space coordinates (it draws the samples),
    :meth:`natural_prior` the log-uniform one over the natural parameter values.
    """

    names: list[str]
    low: np.ndarray
    high: np.ndarray
    log: np.ndarray

    def __post_init__(self):
        self.low, self.high = np.asarray(self.low, float), np.asarray(self.high, float)
        self.log = np.asarray(self.log, bool)
        if not np.all(self.high > self.low):
            raise ConfigError("expected low < high for every parameter", field="prior")

    @property
    def prior(self) -> Prior:
        """The box as a core prior: uniform in the fit-space coordinates."""
        return Prior(Dist(n, "uniform", low=float(a), high=float(b))
                     for n, a, b in zip(self.names, self.low, self.high, strict=True))

    def natural_prior(self) -> Prior:
        """The box as a core prior over natural values (log-uniform where ``log``)."""
        lo, hi = self.natural_bounds()
        return Prior(Dist(n, "loguniform" if lg else "uniform", low=float(a), high=float(b))
                     for n, lg, a, b in zip(self.names, self.log, lo, hi, strict=True))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n fit-space draws (n, P) from :attr:`prior`."""
        return self.prior.sample(n, rng)

    def natural_bounds(self) -> tuple[list[float], list[float]]:
        lo = np.where(self.log, 10.0 ** self.low, self.low)
        hi = np.where(self.log, 10.0 ** self.high, self.high)
        return lo.tolist(), hi.tolist()

    def to_natural(self, theta: np.ndarray) -> np.ndarray:
        return np.where(self.log, 10.0 ** np.asarray(theta, float), theta)

    def to_fit(self, theta: np.ndarray) -> np.ndarray:
        t = np.asarray(theta, float)
        return np.where(self.log, np.log10(np.maximum(t, 1e-300)), t)

    def to_dict(self) -> dict:
        return {"names": self.names, "low_fit": self.low.tolist(), "high_fit": self.high.tolist(),
                "log10": self.log.tolist()}

    @classmethod
    def around(cls, source: FitSpaceModel, centres: np.ndarray, sds: np.ndarray, widen: float = 3.0) -> PriorBox:
        """Box covering fit-space ``centres`` (N, P) ± ``widen`` × ``sds`` (N, P), at least ± 0.1,
        inside the model's hard limits.  A pair whose grating fit barely constrains a
        parameter does not blow the box up: each sd is capped at 5 × the pairs' median sd."""
        c, s = np.atleast_2d(centres), np.atleast_2d(sds)
        s = np.minimum(s, 5.0 * np.median(s, axis=0))
        lo = (c - widen * s).min(0)
        hi = (c + widen * s).max(0)
        pad = np.maximum(0.1 - 0.5 * (hi - lo), 0.0)
        lo, hi = lo - pad, hi + pad
        with np.errstate(divide="ignore", invalid="ignore"):
            hard_lo = np.where(source.log, np.log10(np.maximum(source._lo, 0.0)), source._lo)
            hard_hi = np.where(source.log, np.log10(np.maximum(source._hi, 0.0)), source._hi)
        lo = np.maximum(lo, np.where(np.isfinite(hard_lo), hard_lo, -np.inf))
        hi = np.minimum(hi, np.where(np.isfinite(hard_hi), hard_hi, np.inf))
        return cls(list(source.names), lo, hi, source.log.copy())


class PileupSimulator:
    """Piled spectra (selected channels) for fit-space θ under a nuisance prescription."""

    def __init__(self, davis: EnergyDavis, source: FitSpaceModel, mode: str = "davis", *,
                 phi: dict | None = None, calibration: Calibration | None = None,
                 correction: ResidualCorrection | None = None):
        if mode not in ("davis", "calibrated", "adapted"):
            raise ConfigError(f"unknown mode {mode!r}; expected davis, calibrated or adapted", field="mode")
        if mode != "davis" and calibration is None:
            raise ConfigError("a calibration is needed for mode " + mode, field="calibration")
        if mode == "adapted" and correction is None:
            raise ConfigError("a correction is needed for mode adapted", field="correction")
        self.davis, self.source, self.mode = davis, source, mode
        self.phi = dict(phi or DAVIS_DEFAULT_PHI)
        self.calibration, self.correction = calibration, correction

    def expected(self, theta: np.ndarray, rng: np.random.Generator, batch: int = 500) -> np.ndarray:
        """Expected counts (N, C) for fit-space θ (N, P); φ drawn per row unless ``davis``."""
        th = np.atleast_2d(np.asarray(theta, float))
        out = []
        for i in range(0, len(th), batch):
            t = th[i:i + batch]
            if self.mode == "davis":
                phi = phi_tensors(self.phi, len(t))
            else:
                phi = phi_tensors(self.calibration.sample_phi(len(t), rng), len(t))
            with torch.no_grad():
                flux = self.source.flux(torch.as_tensor(t), self.davis.source_edges)
                mu = self.davis.counts(flux, phi)
                if self.mode == "adapted":
                    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
                    mu = mu * torch.exp(self.correction.sample(incident_features(self.davis, flux), gen))
            out.append(mu.numpy())
        return np.concatenate(out)

    def expected_given(self, theta: np.ndarray, psi: np.ndarray, offsets: np.ndarray | None = None,
                       marginal: np.ndarray | None = None, batch: int = 500) -> np.ndarray:
        """Expected counts (N, C) at fit-space θ (N, P) and given nuisances: ψ (N, 4)
        (:data:`.calibrate.PSI_NAMES`) and, ``adapted``, the correction's coefficient offsets
        ``offsets`` (N, n_basis) (default 0), those marked ``marginal`` (n_basis,) bool
        integrated over (:meth:`ResidualCorrection.mean_factor`; default all).  Deterministic;
        the target of the adaptation's emulators (:mod:`.emulate`)."""
        from .calibrate import psi_to_phi

        th = np.atleast_2d(np.asarray(theta, float))
        ps = np.atleast_2d(np.asarray(psi, float))
        out = []
        for i in range(0, len(th), batch):
            t = th[i:i + batch]
            with torch.no_grad():
                flux = self.source.flux(torch.as_tensor(t), self.davis.source_edges)
                mu = self.davis.counts(flux, phi_tensors(psi_to_phi(ps[i:i + batch]), len(t)))
                if self.mode == "adapted":
                    off = None if offsets is None else offsets[i:i + batch]
                    mu = mu * self.correction.mean_factor(incident_features(self.davis, flux), off, marginal)
            out.append(mu.numpy())
        return np.concatenate(out)

    def simulate(self, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rng.poisson(self.expected(theta, rng)).astype(np.float32)


def new_npe(n_channels: int, box: PriorBox, settings: dict | None = None):
    """An untrained :class:`simxray.inference.npe.NPEModel` for the box prior."""
    from ..inference.npe import NPEModel

    s = copy.deepcopy(settings or NPE_SETTINGS)
    lo, hi = box.natural_bounds()
    return NPEModel(n_channels, lo, hi, box.log.tolist(), s["embedding"], s["flow"])


def train_npe(theta_fit: np.ndarray, mu: np.ndarray, box: PriorBox, *, init=None, settings: dict | None = None,
              epochs: int = 150, batch_size: int = 256, lr: float = 1e-3, patience: int = 15,
              max_minutes: float = 4.0, seed: int = 0, quiet: bool = True) -> tuple[object, dict]:
    """Train an NPE on (θ, Poisson(μ)) pairs; fine-tune ``init`` (a model, copied) if given.

    θ in fit space (N, P), μ expected counts (N, C).  Returns (model, history).
    """
    from tqdm.auto import tqdm

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    th = torch.as_tensor(box.to_natural(theta_fit), dtype=torch.float32)
    m = torch.as_tensor(mu, dtype=torch.float32)
    n = len(th)
    n_val = max(n // 10, 1)
    perm = torch.randperm(n, generator=g)
    iv, it = perm[:n_val], perm[n_val:]
    x_val = torch.poisson(m[iv], generator=g)
    if init is None:
        model = new_npe(m.shape[1], box, settings)
        model.embedding.norm.fit(torch.poisson(m[it], generator=g))
        model.theta_transform.fit(th[it])
    else:
        model = copy.deepcopy(init)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-5)
    best, best_state, bad, hist = float("inf"), copy.deepcopy(model.state_dict()), 0, []
    t0 = time.time()
    n_epochs = 0
    for _ in tqdm(range(epochs), desc="npe", disable=quiet):
        n_epochs += 1
        model.train()
        order = it[torch.randperm(len(it), generator=g)]
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            x = torch.poisson(m[idx], generator=g)
            opt.zero_grad()
            loss = model.loss(th[idx], x)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
        model.eval()
        with torch.no_grad():
            v = float(model.loss(th[iv], x_val))
        hist.append(v)
        if v < best - 1e-3:
            best, best_state, bad = v, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
        if bad >= patience or (time.time() - t0) > 60 * max_minutes:
            break
    model.load_state_dict(best_state)
    model.eval()
    return model, {"epochs": n_epochs, "best_val_loss": best, "val_loss": hist,
                   "seconds": time.time() - t0, "n_train": int(len(it)), "n_val": int(n_val),
                   "fine_tuned": init is not None}


def posterior_samples(model, x: np.ndarray, box: PriorBox, n: int = 500, seed: int = 0) -> np.ndarray:
    """Fit-space posterior draws (n, B, P) for spectra x (B, C)."""
    torch.manual_seed(seed)
    s = model.sample(n, torch.as_tensor(np.atleast_2d(x), dtype=torch.float32)).double().numpy()
    return box.to_fit(s)


@torch.no_grad()
def embed(model, x: np.ndarray) -> np.ndarray:
    """The NPE embedding (B, features) of spectra x (B, C)."""
    return model.embedding(torch.as_tensor(np.atleast_2d(x), dtype=torch.float32)).double().numpy()


__all__ = ["PileupSimulator", "PriorBox", "train_npe", "new_npe", "posterior_samples", "embed",
           "DAVIS_DEFAULT_PHI", "NPE_SETTINGS"]
