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

from ..errors import ResponseMismatchError, SimxrayError
from ..provenance import sha256

DEFAULT_POSTERIOR = Path(__file__).resolve().parent.parent / "data" / "posterior_default"
PPC_ALERT = 0.01          # posterior-predictive p-value below which a fit is flagged
REL_TOL = 1e-3            # relative tolerance on exposure and frame time


def default_posterior_dir() -> Path:
    """The shipped posterior for the default ACIS configuration (NGC 4258 setup)."""
    return DEFAULT_POSTERIOR


# -- compatibility -----------------------------------------------------------------------

def _file_sha(obj) -> str | None:
    p = getattr(obj, "path", None)
    if p is None or not Path(p).is_file():
        return None
    return sha256(p)


def check_compatibility(cfg: dict, spec) -> list[str]:
    """Reasons why ``spec`` does not belong to the posterior ``cfg`` (empty: compatible)."""
    problems: list[str] = []
    resp = cfg.get("response") or {}
    n_total = cfg.get("spectrum_channels")
    if n_total and spec.n_channels != int(n_total):
        problems.append(f"the spectrum has {spec.n_channels} channels; the posterior was trained "
                        f"on spectra with {int(n_total)}")
    for key, obj in (("rmf", spec.rmf), ("arf", spec.arf)):
        want = (resp.get(key) or {}).get("sha256") if isinstance(resp.get(key), dict) else None
        if want is None:
            continue
        if obj is None:
            continue                     # the posterior's own response will be used
        have = _file_sha(obj)
        if have is not None and have != want:
            name = Path(obj.path).name
            problems.append(f"{key.upper()} {name} differs from the {key.upper()} the posterior "
                            f"was trained with ({resp[key].get('name', '?')}, sha256 "
                            f"{want[:12]}...)")
    exp = cfg.get("exposure")
    if exp and spec.exposure and abs(spec.exposure / float(exp) - 1.0) > REL_TOL:
        problems.append(f"exposure {spec.exposure:.6g} s differs from the posterior's "
                        f"{float(exp):.6g} s")
    ft = cfg.get("frame_time")
    if ft and spec.frame_time and abs(spec.frame_time / float(ft) - 1.0) > REL_TOL:
        problems.append(f"frame time {spec.frame_time:.6g} s differs from the posterior's "
                        f"{float(ft):.6g} s")
    return problems


def _trained_file(entry: dict | None) -> str | None:
    """A response file the posterior was trained with: its recorded path, or the file of the
    same name in simxray/data, provided the sha256 matches."""
    if not isinstance(entry, dict) or not entry.get("sha256"):
        return None
    from ..datasets import DATA_DIR

    for cand in (entry.get("path"), DATA_DIR / str(entry.get("name", ""))):
        if cand and Path(cand).is_file() and sha256(cand) == entry["sha256"]:
            return str(cand)
    return None


def select_channels(cfg: dict, spec) -> np.ndarray:
    """The spectrum's counts in the posterior's channel range [lo, hi] (C,)."""
    lo, hi = (int(v) for v in cfg["channels"])
    ch = np.asarray(spec.channel).astype(int)
    idx = np.flatnonzero((ch >= lo) & (ch <= hi))
    if idx.size != int(cfg["n_channels"]):
        raise ResponseMismatchError(
            f"has {idx.size} channels in {lo}..{hi}; the posterior expects {cfg['n_channels']} "
            "(different channel count or binning)", path=str(spec.path), field="CHANNEL")
    x = np.asarray(spec.counts, dtype=float)[idx]
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise SimxrayError("counts must be finite and non-negative", path=str(spec.path),
                           field="COUNTS")
    if x.sum() <= 0:
        raise SimxrayError(f"no counts in channels {lo}..{hi}; expected a non-empty spectrum",
                           path=str(spec.path), field="COUNTS")
    return x


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
              n_samples=n_samples, seed=seed, ppc_draws=ppc_draws, device=device)
    if out is not None:
        res.save(out, overwrite=overwrite, plots=plots)
    return res


__all__ = ["fit_spectrum", "FitResult", "check_compatibility", "select_channels", "summarise",
           "format_summary", "default_posterior_dir", "build_simulator", "posterior_predictive"]
