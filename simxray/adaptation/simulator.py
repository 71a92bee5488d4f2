"""The adapted pileup simulator and its prior box.

:class:`PileupSimulator` draws piled ACIS spectra for source parameters θ (fit space) with
the alpha(E) Davis model (:class:`.forward.EnergyDavis`) under one of three nuisance
prescriptions:

* ``davis``       fixed φ (Sherpa's defaults alpha = 0.5, f = 0.95: the uncalibrated simulator);
* ``calibrated``  φ drawn per spectrum from the hierarchical calibration's population;
* ``adapted``     calibrated φ and the learned residual correction (:mod:`.correction`),
  with per-spectrum random offsets of its coefficients (the scatter it leaves between pairs).

:func:`train_npe` trains (or fine-tunes) NPE on such spectra with the core array trainer
(:class:`simxray.inference.npe.NPE`): Poisson noise redrawn from the expectations each
epoch, early stopping on a held-out tenth.  The kernel is the core Davis implementation
(:class:`.forward.EnergyDavis` binds :meth:`simxray.instrument.pileup.Pileup.kernel_counts`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError
from ..instrument.pileup import PileupParams
from ..simulator.prior import Dist, Prior
from .calibrate import Calibration
from .correction import ResidualCorrection, incident_features
from .forward import EnergyDavis, FitSpaceModel, phi_tensors

#: the uncalibrated simulator's φ: Sherpa's jdpileup defaults (the core's), no alpha slope
DAVIS_DEFAULT_PHI = {"alpha0": PileupParams.defaults["alpha"], "alpha1": 0.0,
                     "f": PileupParams.defaults["f"], "eff": 1.0}
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

    @property
    def names(self) -> list[str]:
        """Columns of θ (fit space)."""
        return list(self.source.names)

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


def npe_overrides(settings: dict | None = None, *, epochs: int = 150, patience: int = 15,
                  max_minutes: float = 4.0, seed: int = 0) -> dict:
    """Settings of the core trainer (:func:`simxray.inference.npe.load_settings` overrides):
    the network ``settings`` (default :data:`NPE_SETTINGS`), at most ``epochs`` epochs,
    early stopping after ``patience`` epochs without improvement or ``max_minutes``, a
    constant learning rate."""
    s = settings or NPE_SETTINGS
    out = {f"{sec}.{k}": copy.deepcopy(v) for sec in ("embedding", "flow") for k, v in s[sec].items()}
    out.update({"training.max_epochs": int(epochs), "training.patience": int(patience),
                "training.max_minutes": float(max_minutes), "training.seed": int(seed),
                "training.lr_patience": int(epochs) + 1})
    return out


def train_npe(theta_fit: np.ndarray, mu: np.ndarray, box: PriorBox, out_dir, *, init=None,
              settings: dict | None = None, epochs: int = 150, patience: int = 15,
              max_minutes: float = 4.0, seed: int = 0, quiet: bool = True) -> tuple[object, dict]:
    """NPE on (θ, Poisson(μ)) pairs with the core array trainer
    (:class:`simxray.inference.npe.NPE`, the trainer of ``simxray train``), fine-tuning
    ``init`` (a :class:`~simxray.inference.posterior.Posterior`) if given.

    θ in fit space (N, P), μ expected counts (N, C): every epoch redraws the Poisson noise
    of μ; the prior is the box's over the natural values (:meth:`PriorBox.natural_prior`).
    The posterior folder is written to ``out_dir``.  Returns (posterior, history).
    """
    from ..inference.npe import NPE

    trainer = NPE(box.natural_prior(), npe_overrides(settings, epochs=epochs, patience=patience,
                                                     max_minutes=max_minutes, seed=seed))
    x = np.random.default_rng([seed, 1]).poisson(np.asarray(mu, float))
    trainer.append(box.to_natural(theta_fit), x, mu=mu)
    post = trainer.train(out_dir, overwrite=True, quiet=quiet, init=init)
    t = post.config["training"]
    hist = {"epochs": t["epochs"], "best_epoch": t["best_epoch"], "best_val_loss": t["best_val_loss"],
            "stop_reason": t["stop_reason"], "seconds": t["seconds"], "n_train": t["n_train"],
            "n_val": t["n_validation"], "fine_tuned": init is not None}
    return post, hist


def posterior_samples(posterior, x: np.ndarray, box: PriorBox, n: int = 500, seed: int = 0) -> np.ndarray:
    """Fit-space posterior draws (n, B, P) for spectra x (B, C)."""
    return box.to_fit(posterior.sample(n, np.atleast_2d(x), seed=seed))


@torch.no_grad()
def embed(posterior, x: np.ndarray) -> np.ndarray:
    """The NPE embedding (B, features) of spectra x (B, C)."""
    net = posterior.network
    return net.embedding(torch.as_tensor(np.atleast_2d(x), dtype=torch.float32)).double().numpy()


__all__ = ["PileupSimulator", "PriorBox", "train_npe", "npe_overrides", "posterior_samples", "embed",
           "DAVIS_DEFAULT_PHI", "NPE_SETTINGS"]
