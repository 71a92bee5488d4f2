"""The forward simulator: prior → model flux → pileup → RMF → expected counts → Poisson.

For parameters θ (the prior's varying parameters, (B, P)):

1. the model expression gives photons/cm²/s per bin (on the pileup kernel grid when
   pileup is on, otherwise on the response's energy bins);
2. with pileup, the Davis (2001) model (:mod:`simxray.instrument.pileup`, Sherpa's
   ``jdpileup``) gives piled counts per response energy bin with ARF × exposure
   applied, folded through the RMF; without, the flux is folded through ARF × exposure
   and the RMF (:class:`simxray.instrument.response.Response`);
3. μ(θ) (B, C) expected source counts in the selected channels;
4. counts = Poisson(μ) (+ Poisson(μ_bkg) when a background is added, where μ_bkg is
   the observed background spectrum scaled by the exposure × BACKSCAL × AREASCAL ratio;
   the background draw is returned separately, and μ excludes it).

Everything is batched (numpy/torch, float64); a generator fixes every random draw.

Observation covariates (:mod:`.covariates`): a campaign may draw each simulation's
exposure and frame time.  Row i then uses ``ftime`` = its frame time in the Davis kernel
(photons per frame = flux × ARF × frame time) and μ_i = μ(exposure_ref) × exposure_i /
exposure_ref (piled and unpiled counts are proportional to the exposure at fixed frame
time: N_frames = exposure / ftime).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from ..errors import ConfigError
from ..provenance import sha256
from .config import SimConfig
from .prior import Prior

PILEUP_PREFIX = "pileup."


def _file_id(path) -> dict[str, str] | None:
    if path is None:
        return None
    p = Path(path)
    return {"name": p.name, "path": str(p.resolve()), "sha256": sha256(p)}


class Simulator:
    """Batched, seeded simulator of (piled-up) spectra for one instrument setup.

    Parameters
    ----------
    model : simxray.models.Model
    prior : Prior over the model's short parameter names and ``pileup.NAME``.
    response : simxray.instrument.response.Response (ARF × exposure, RMF).
    channel_slice : the columns of the response's channels used (contiguous).
    pileup : apply the Davis model (needs every ``pileup.*`` parameter in the prior).
    background_mu : (C_sel,) expected background counts in the source region, or None.
    files : identity of the input files (name, path, sha256) for provenance.
    pileup_grid : the pileup kernel grid (``"sherpa"``: 4096 bins over 0–15 keV).
    batch_size : spectra evaluated per vectorised call (bounds memory).
    """

    def __init__(self, model, prior: Prior, response, *, channel_slice: slice | None = None,
                 pileup: bool = True, background_mu: np.ndarray | None = None,
                 files: Mapping[str, Any] | None = None, pileup_grid: str | None = None,
                 batch_size: int = 256, name: str = "simulation", covariates=None):
        self.model = model
        self.prior = prior
        self.response = response
        self.slice = channel_slice or slice(0, response.n_channels)
        self.pileup = bool(pileup)
        self.pileup_grid = pileup_grid
        self.background_mu = None if background_mu is None else np.asarray(background_mu, float)
        self.files = dict(files or {})
        self.batch_size = int(batch_size)
        self.name = name
        from .covariates import Covariates

        self.covariates = covariates if isinstance(covariates, Covariates) else \
            Covariates.from_dict(covariates)
        if self.covariates.get("frame_time") is not None and not self.pileup:
            self.covariates = Covariates([c for c in self.covariates.items
                                          if c.name != "frame_time"])
        self._model_names = [n for n in [d.name for d in prior.dists] if not n.startswith(PILEUP_PREFIX)]
        self._pileup_names = [n for n in [d.name for d in prior.dists] if n.startswith(PILEUP_PREFIX)]
        self._fixed: tuple[list[str], np.ndarray] | None = None   # see :meth:`at`
        self._first_bin: tuple[int, int] | None = None  # (id of the Pileup, first kernel bin with area)
        if self.background_mu is not None and self.background_mu.shape != (self.n_channels,):
            raise ValueError(f"background_mu has shape {self.background_mu.shape}; "
                             f"expected ({self.n_channels},)")

    # -- construction ---------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: SimConfig) -> Simulator:
        """Read the spectrum, responses and background named by a validated config."""
        from ..datasets import default_spectrum_path
        from ..instrument.response import Response
        from ..io.ogip import read_pha

        spath = default_spectrum_path() if cfg.spectrum == "default" else Path(cfg.spectrum)
        no_bkg = cfg.background == "none"
        spec = read_pha(spath, frame_time=cfg.frame_time, arf=cfg.arf, rmf=cfg.rmf,
                        background=None if (no_bkg or cfg.background is None) else cfg.background)
        if no_bkg:
            spec.background = None
        exposure = cfg.exposure if cfg.exposure is not None else spec.exposure
        response = Response.from_spectrum(spec, exposure)
        # channels used for inference
        if cfg.channels is not None:
            lo, hi = cfg.channels
            first, last = response.offset, response.offset + response.n_channels - 1
            if lo < first or hi > last:
                raise ConfigError(f"channels [{lo}, {hi}] outside the response's {first}..{last}",
                                  path=cfg.path, field="instrument.channels")
            sl = slice(lo - response.offset, hi - response.offset + 1)
        else:
            lo_e, hi_e = cfg.energy_range
            mask = response.channel_mask(lo_e, hi_e)
            idx = np.flatnonzero(mask)
            if idx.size == 0:
                raise ConfigError(f"no channel of the response overlaps [{lo_e:g}, {hi_e:g}] keV",
                                  path=cfg.path, field="instrument.energy_range")
            sl = slice(int(idx[0]), int(idx[-1]) + 1)
        bmu = None
        if cfg.add_background:
            if spec.background is None:
                raise ConfigError("add_background = true but the spectrum has no background "
                                  "(BACKFILE); name one with instrument.background",
                                  path=cfg.path, field="instrument.add_background")
            scale = spec.background_scale
            bmu = (np.asarray(spec.background.counts, float) * scale)[sl]
        prior = cfg.prior(frame_time=spec.frame_time)
        files = {
            "spectrum": _file_id(spec.path),
            "arf": _file_id(spec.arf.path if spec.arf is not None else None),
            "rmf": _file_id(spec.rmf.path),
            "background": _file_id(spec.background.path if spec.background is not None else None),
            "exposure": float(exposure),
            "frame_time": spec.frame_time,
            "frame_time_source": spec.frame_time_source,
        }
        return cls(cfg.model(), prior, response, channel_slice=sl,
                   pileup=cfg.pileup_model != "none", background_mu=bmu, files=files,
                   pileup_grid=cfg.pileup_grid, name=cfg.name, covariates=cfg.covariates)

    # -- description ----------------------------------------------------------
    @property
    def expression(self) -> str:
        return self.model.expr

    @property
    def names(self) -> list[str]:
        """Columns of theta."""
        return self.prior.names

    @property
    def n_channels(self) -> int:
        return self.slice.stop - self.slice.start

    @property
    def channel(self) -> np.ndarray:
        """Channel numbers (C,) used."""
        return self.response.channel[self.slice]

    @property
    def channels(self) -> list[int]:
        """[first, last] channel numbers used (inclusive)."""
        c = self.channel
        return [int(c[0]), int(c[-1])]

    @property
    def e_min(self) -> np.ndarray:
        return self.response.e_min[self.slice]

    @property
    def e_max(self) -> np.ndarray:
        return self.response.e_max[self.slice]

    @property
    def covariate_names(self) -> list[str]:
        """Columns of the per-simulation covariates ([] for a fixed observation)."""
        return self.covariates.names

    def at(self, exposure: float | None = None, frame_time: float | None = None) -> Simulator:
        """This simulator for one observation: every row uses ``exposure`` and ``frame_time``
        (s; None: the reference value) and nothing is drawn per simulation."""
        import copy

        from .covariates import Covariates

        sim = copy.copy(self)
        sim.covariates = Covariates()
        sim.files = dict(self.files)
        names, vals = [], []
        if exposure is not None:
            names.append("exposure")
            vals.append(float(exposure))
            sim.files["exposure"] = float(exposure)
        if frame_time is not None:
            if not self.pileup:
                raise ValueError("frame_time needs a simulator with pileup")
            names.append("frame_time")
            vals.append(float(frame_time))
            sim.files["frame_time"] = float(frame_time)
        sim._fixed = (names, np.asarray(vals, float)) if names else None
        return sim

    def identity(self) -> dict:
        """Input files (name, path, sha256), exposure and frame time: the responses' identity
        (with the covariates' distributions when the campaign draws them)."""
        out = dict(self.files)
        if self.covariates:
            out["covariates"] = self.covariates.to_dict()
        return out

    # -- forward model --------------------------------------------------------
    def forward(self, model_params: Mapping[str, Any], pileup_params: Mapping[str, Any] | None = None,
                all_channels: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Expected source counts (B, C) and pileup fraction (B,) for explicit parameters.

        ``model_params``: {name: scalar or (B,)} for the model; ``pileup_params``:
        {alpha, g0, f, n, ftime, fracexp, nterms} (scalars or (B,)) or None for no pileup.
        ``all_channels`` returns every response channel instead of the selected range.
        """
        from ..instrument.pileup import PileupParams, piled_counts

        cols = None if all_channels else self.slice
        sizes = [np.size(v) for v in list(model_params.values()) + list((pileup_params or {}).values())]
        B = max([1, *sizes])
        mp = {k: np.broadcast_to(np.asarray(v, float), (B,)) for k, v in model_params.items()}
        if pileup_params is not None:
            pp = PileupParams.from_mapping({k: np.broadcast_to(np.asarray(v, float), (B,)).copy()
                                            for k, v in pileup_params.items()})
            src = self._kernel_source(mp, B)
            mu, frac = piled_counts(self.response, src, pp, grid=self.pileup_grid,
                                    return_fraction=True, channels=cols)
            mu, frac = mu.detach().cpu().numpy(), frac.detach().cpu().numpy()
        else:
            flux = np.require(self.model.evaluate(self.response.edges, mp), requirements="CW")
            mu = self.response.fold(flux, channels=cols)
            frac = np.zeros(B)
        mu = np.maximum(np.asarray(mu, dtype=np.float64).reshape(B, -1), 0.0)
        frac = np.asarray(frac, dtype=np.float64).reshape(B)
        return mu, frac

    def _kernel_source(self, mp: Mapping[str, np.ndarray], B: int) -> torch.Tensor:
        """The model on the pileup kernel grid (B, K) float64, zero where the ARF is.

        Kernel bins with no effective area contribute nothing to the piled counts (the
        source enters as ARF × flux), so the model is evaluated only from the first
        bin with area on (0.23 keV for ACIS: this skips the lowest bins, which are also
        the costliest for absorption models); the counts are the same to the bit.
        """
        from ..instrument.pileup import get_pileup

        pile = get_pileup(self.response, self.pileup_grid)
        edges = pile.source_edges
        K = edges.size - 1
        key = id(pile)
        if self._first_bin is None or self._first_bin[0] != key:
            nz = np.flatnonzero(pile.arf[:K] > 0)
            self._first_bin = (key, int(nz[0]) if nz.size else 0)
        lo = self._first_bin[1]
        flux = self.model.evaluate(edges[lo:], mp)
        src = torch.empty((B, K), dtype=torch.float64, device="cpu")
        src[:, :lo] = 0.0
        np.copyto(src.numpy()[:, lo:], flux)
        return src.to(self.response.device)

    def split(self, theta: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
        """theta (B, P) → (model parameters, pileup parameters or None), each {name: (B,)}."""
        full = self.prior.full(theta)
        B = np.atleast_2d(theta).shape[0]
        mp = {k: np.broadcast_to(full[k], (B,)) for k in self._model_names}
        if not self.pileup:
            return mp, None
        pp = {k[len(PILEUP_PREFIX):]: np.broadcast_to(full[k], (B,)) for k in self._pileup_names}
        return mp, pp

    def expected(self, theta: np.ndarray, return_fraction: bool = False,
                 covariates: np.ndarray | None = None):
        """Expected source counts μ (B, C) for theta (B, P) [and the pileup fraction (B,)].

        ``covariates`` (B, K) in :attr:`covariate_names` order (exposure s, frame time s):
        each row's own observation; None: the reference observation (the response's
        exposure, the prior's ftime)."""
        t = np.atleast_2d(np.asarray(theta, dtype=float))
        if t.shape[1] != self.prior.dim:
            raise ValueError(f"theta has {t.shape[1]} columns; expected {self.prior.dim} "
                             f"({', '.join(self.names)})")
        cov = None
        if covariates is not None and self.covariates:
            cov = np.atleast_2d(np.asarray(covariates, dtype=float))
            if cov.shape != (t.shape[0], len(self.covariates)):
                raise ValueError(f"covariates have shape {cov.shape}; expected "
                                 f"({t.shape[0]}, {len(self.covariates)}) "
                                 f"({', '.join(self.covariate_names)})")
        names = self.covariate_names
        if cov is None and covariates is None and self._fixed is not None:
            names = self._fixed[0]
            cov = np.broadcast_to(self._fixed[1], (t.shape[0], len(names)))
        mus, fracs = [], []
        for a in range(0, t.shape[0], self.batch_size):
            mp, pp = self.split(t[a:a + self.batch_size])
            c = None if cov is None else cov[a:a + self.batch_size]
            if c is not None and pp is not None and "frame_time" in names:
                pp = {**pp, "ftime": c[:, names.index("frame_time")].copy()}
            mu, frac = self.forward(mp, pp)
            if c is not None and "exposure" in names:
                mu = mu * (c[:, names.index("exposure")] / float(self.response.exposure))[:, None]
            mus.append(mu)
            fracs.append(frac)
        mu = np.concatenate(mus) if mus else np.zeros((0, self.n_channels))
        frac = np.concatenate(fracs) if fracs else np.zeros(0)
        return (mu, frac) if return_fraction else mu

    def pileup_fraction(self, theta: np.ndarray, covariates: np.ndarray | None = None) -> np.ndarray:
        """Pileup fraction (B,) for theta (B, P) [and covariates (B, K)]."""
        return self.expected(theta, return_fraction=True, covariates=covariates)[1]

    def simulate(self, theta: np.ndarray, rng: np.random.Generator,
                 covariates: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Noisy spectra for theta (B, P): mu, pileup_fraction, counts, background (or None).

        counts = Poisson(μ) + background, background = Poisson(μ_bkg) (when added).
        The background does not scale with a row's exposure covariate (campaigns that draw
        the exposure have no added background).
        """
        mu, frac = self.expected(theta, return_fraction=True, covariates=covariates)
        counts = rng.poisson(mu)
        bkg = None
        if self.background_mu is not None:
            bkg = rng.poisson(np.broadcast_to(self.background_mu, mu.shape))
            counts = counts + bkg
        return {"mu": mu, "pileup_fraction": frac, "counts": counts, "background": bkg}

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> dict[str, np.ndarray]:
        """n draws from the prior and their simulated spectra (theta, mu, counts, ...; with
        ``covariates`` (n, K) when the campaign draws exposure / frame time per simulation)."""
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        theta = self.prior.sample(n, rng)
        if self.covariates:
            cov = self.covariates.sample(n, rng)
            out = self.simulate(theta, rng, covariates=cov)
            out["covariates"] = cov
        else:
            out = self.simulate(theta, rng)
        out["theta"] = theta
        return out

    def __repr__(self) -> str:
        return (f"Simulator({self.expression!r}, pileup={self.pileup}, params={self.names}, "
                f"channels={self.channels})")


@runtime_checkable
class ForwardModel(Protocol):
    """The contract every forward model follows (the simulator, the emulator, the adapted
    and event-level simulators, a :class:`~simxray.inference.problem.FitProblem`):
    ``names`` (the columns of θ), ``prior`` and ``expected(theta (B, P)) -> mu (B, C)``,
    expected source counts per channel."""

    names: list[str]

    def expected(self, theta: np.ndarray) -> np.ndarray: ...
