"""Compatibility checks between a spectrum and a trained network, and the legacy
``fit_spectrum`` entry point (now a thin wrapper over :func:`simxray.fit`).

``check_compatibility`` says why a spectrum does not belong to a posterior or emulator
(response sha256, exposure, frame time, channel count); ``build_simulator`` rebuilds the
network's simulator for a spectrum's response (posterior predictive, anchoring).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import SimxrayError

DEFAULT_POSTERIOR = Path(__file__).resolve().parent.parent / "data" / "posterior_default"


def default_posterior_dir() -> Path:
    """The shipped posterior for the default ACIS configuration (NGC 4258 setup)."""
    return DEFAULT_POSTERIOR


from .compat import REL_TOL, _file_sha, _trained_file, check_compatibility, select_channels  # noqa: E402,F401
from .result import FitResult, format_summary, summarise  # noqa: E402,F401  (re-exports)

# -- posterior predictive ----------------------------------------------------------------

def build_simulator(cfg: dict, spec):
    """A :class:`~simxray.simulator.simulator.Simulator` for this spectrum's response and the
    posterior's model and prior (fixed frame time replaced by the spectrum's)."""
    from ..instrument.response import Response
    from ..models import Model
    from ..simulator.prior import Dist, Prior
    from ..simulator.simulator import Simulator

    sim_cfg = cfg.get("simulation_config") or {}
    pil = sim_cfg.get("pileup", {}) if isinstance(sim_cfg.get("pileup"), dict) else {}
    prior = Prior.from_dict(cfg["prior"])
    if spec.frame_time:
        dists = [Dist(d.name, "fixed", value=float(spec.frame_time))
                 if d.name == "pileup.ftime" and not d.varying else d for d in prior.dists]
        prior = Prior(dists)
    if spec.rmf is None:
        raise SimxrayError("no RMF; expected RESPFILE in the header or --rmf", path=str(spec.path),
                           field="RESPFILE")
    response = Response.from_spectrum(spec, spec.exposure)
    lo, hi = (int(v) for v in cfg["channels"])
    sl = slice(lo - response.offset, hi - response.offset + 1)
    bmu = None
    if (sim_cfg.get("instrument") or {}).get("add_background") and spec.background is not None:
        bmu = (np.asarray(spec.background.counts, float) * spec.background_scale)[sl]
    return Simulator(Model(cfg["model"]), prior, response, channel_slice=sl,
                     pileup=pil.get("model", "none") != "none", background_mu=bmu,
                     pileup_grid=pil.get("grid"))


def posterior_predictive(sim, theta: np.ndarray) -> dict:
    """Expected counts with and without pileup, and pileup fractions, for draws theta (K, P)."""
    mu, frac = sim.expected(theta, return_fraction=True)
    out = {"mu": mu, "pileup_fraction": frac, "mu_unpiled": None}
    if sim.pileup:
        parts = []
        for a in range(0, len(theta), sim.batch_size):
            mp, _ = sim.split(theta[a:a + sim.batch_size])
            parts.append(sim.forward(mp, None)[0])
        out["mu_unpiled"] = np.concatenate(parts)
    if sim.background_mu is not None:
        out["background"] = sim.background_mu
    return out


# -- the legacy entry point -------------------------------------------------------------

def fit_spectrum(spectrum: str | os.PathLike, posterior: str | os.PathLike | None = None, *,
                 out: str | os.PathLike | None = None, n_samples: int = 10000, seed: int = 0,
                 force: bool = False, ppc_draws: int = 100, plots: bool = True,
                 arf: str | None = None, rmf: str | None = None, background: str | None = None,
                 frame_time: float | None = None, device: str | None = None,
                 overwrite: bool = True) -> FitResult:
    """Sample an amortised posterior (default: the shipped one) for a PHA spectrum in the
    setup it was trained for: ``simxray.fit(obs, posterior=..., method="npe")``."""
    from ..observation import Observation
    from .fitting import fit

    obs = Observation.from_pha(spectrum, arf=arf, rmf=rmf, background=background,
                               frame_time=frame_time)
    res = fit(obs, posterior=posterior or default_posterior_dir(), method="npe", force=force,
              n_samples=n_samples, seed=seed, ppc_draws=ppc_draws, device=device,
              n_reweight=0)
    if out is not None:
        res.save(out, overwrite=overwrite, plots=plots)
    return res


__all__ = ["fit_spectrum", "FitResult", "check_compatibility", "select_channels", "summarise",
           "format_summary", "default_posterior_dir", "build_simulator", "posterior_predictive"]
