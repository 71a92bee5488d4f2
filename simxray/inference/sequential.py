"""Truncated sequential neural posterior estimation (TSNPE) for one observation.

Deistler, Goncalves & Macke (2022, "Truncated proposals for scalable and hassle-free
simulation-based inference"): instead of an amortised posterior over the whole prior,
train a posterior for *this* spectrum in a few rounds, each simulating only from the prior
truncated to the current estimate's highest-probability region (HPR).  Because the
proposal is the prior restricted to a region that holds (nearly) all of the posterior
mass, the ordinary NPE loss stays valid (no importance weights, no atomic loss, no
leakage correction).

One call of :func:`fit_tsnpe`:

1. **Round 1 proposal**: the prior, or, with ``pilot`` samples (from a quick emcee or
   optimiser fit), the prior truncated to a box around them (median ± ``pilot_width``
   standard deviations per parameter, in the prior's natural coordinates: log θ for
   log-uniform priors; widened to hold every pilot draw).
2. **Each round**: simulate ``sims_per_round`` spectra from the current proposal
   (``Simulator.simulate``: Poisson source counts plus the background draw), append them
   to every earlier round's data, and train the package's estimator
   (:class:`~simxray.inference.npe.NPEModel`: embedding + zuko spline flow on the
   prior box) with sbi's :class:`sbi.inference.NPE` trainer (maximum-likelihood loss on
   all rounds, early stopping on a validation split; the network continues from the
   previous round's weights).
3. **Truncation**: the highest-probability region of q(θ | x_obs) with 1 - ``epsilon``
   posterior mass, measured against the prior: {θ : log q(θ | x_obs) - log π(θ) ≥ τ},
   where τ is the ``epsilon`` quantile of that ratio over ``threshold_samples``
   posterior draws.  (The ratio, unlike q alone, does not depend on the
   parametrisation: for a log-uniform prior q(θ) carries a 1/θ Jacobian that would
   favour the low end of the prior; it equals the HPR of q in the prior's CDF
   coordinates, where the prior is uniform.)  It is sampled by drawing from the prior
   truncated to the bounding box of those draws (widened by ``box_margin`` of its width on
   each side; exact, because the prior is a product sampled by its inverse CDF, so the
   box is a box of uniform deviates) and rejecting draws below τ.  When the rejection
   acceptance is below ``min_acceptance`` (a flow with a spurious far mode), the box
   alone is used as the proposal (recorded as ``"box"`` in the round's ``proposal``).
4. **Stop** after ``rounds`` rounds, or as soon as the region's prior mass changed by
   less than ``1 - shrink_stop`` relative to the previous proposal's (it stopped
   shrinking; at least ``min_rounds`` rounds).  A region that *grows* (the pilot box was
   too narrow) is not a reason to stop.
5. **Local calibration**: ``coverage_sims`` fresh parameters drawn from the final
   truncated prior are simulated and the posterior's central credible intervals at 50, 68,
   90 and 95 % are checked for coverage (:func:`local_coverage`).  This tests the
   estimator where it is used, not over the whole prior; it is approximate, as the
   estimator was trained on the union of the rounds' proposals.

Everything is seeded by ``seed``; sbi is used only through its public API.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.special import ndtr

from ..errors import ParameterError
from ..simulator.prior import Prior

COVERAGE_LEVELS = (0.5, 0.68, 0.9, 0.95)

#: Network used per observation: the shipped posterior's family (CNN/Anscombe embedding on
#: channels summed in fours, 5-transform neural spline flow), slightly smaller.
DEFAULT_NETWORK: dict = {
    "embedding": {"type": "cnn", "transform": "anscombe", "rebin": 4, "features": 32,
                  "widths": [16, 32, 32, 64], "kernel": 5, "pooled": 8, "hidden": 128},
    "flow": {"transforms": 5, "hidden_features": [64, 64], "bins": 8, "passes": 2},
}

#: sbi ``NPE.train`` settings per round.
DEFAULT_TRAINING: dict = {"training_batch_size": 128, "learning_rate": 1e-3,
                          "validation_fraction": 0.1, "stop_after_epochs": 20,
                          "max_num_epochs": 300, "clip_max_norm": 5.0}


@dataclass
class SequentialResult:
    """The per-observation TSNPE posterior.

    ``samples`` (N, P) are in physical units (the prior's parameters, ``names`` order);
    ``rounds`` holds per round the proposal box (physical units), its prior mass,
    the rejection acceptance, simulations, epochs and the best validation loss;
    ``seconds`` the wall time per stage (s); ``diagnostics`` the stop reason, the HPR
    threshold and ``local_coverage`` (see :func:`local_coverage`).
    """

    samples: np.ndarray
    names: list[str]
    n_simulations: int
    seconds: dict[str, float]
    rounds: list[dict]
    diagnostics: dict
    estimator: Any = field(default=None, repr=False)   # the trained NPEModel
    prior: Prior | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """JSON-able summary (no samples, no network)."""
        return {"method": "tsnpe", "names": list(self.names), "n_simulations": self.n_simulations,
                "seconds": dict(self.seconds), "rounds": self.rounds,
                "diagnostics": self.diagnostics,
                "median": dict(zip(self.names, np.median(self.samples, 0).tolist(), strict=True))}


# -- prior coordinates ----------------------------------------------------------------------

def prior_cdf(prior: Prior, theta: np.ndarray) -> np.ndarray:
    """Each varying parameter's prior CDF u (n, P) in [0, 1]; :meth:`Prior.transform` inverts it."""
    t = np.atleast_2d(np.asarray(theta, dtype=float))
    u = np.empty_like(t)
    for j, d in enumerate(prior.varying):
        x = np.clip(t[:, j], d.low, d.high)
        if d.dist == "uniform":
            u[:, j] = (x - d.low) / (d.high - d.low)
        elif d.dist == "loguniform":
            u[:, j] = np.log(x / d.low) / math.log(d.high / d.low)
        else:   # truncated normal
            a, b = ndtr((d.low - d.mu) / d.sigma), ndtr((d.high - d.mu) / d.sigma)
            u[:, j] = (ndtr((x - d.mu) / d.sigma) - a) / (b - a)
    return np.clip(u, 0.0, 1.0)


def natural(prior: Prior, theta: np.ndarray) -> np.ndarray:
    """θ in the prior's natural coordinates: log θ for log-uniform priors, θ otherwise."""
    t = np.atleast_2d(np.asarray(theta, dtype=float))
    log = np.array([d.dist == "loguniform" for d in prior.varying])
    return np.where(log, np.log(np.maximum(t, 1e-300)), t)


def from_natural(prior: Prior, z: np.ndarray) -> np.ndarray:
    """Inverse of :func:`natural`, clipped to the prior bounds."""
    log = np.array([d.dist == "loguniform" for d in prior.varying])
    t = np.where(log, np.exp(np.minimum(z, 700.0)), z)
    b = prior.bounds
    return np.clip(t, b[:, 0], b[:, 1])


@dataclass
class _Region:
    """Proposal: the prior truncated to a box of uniform deviates [u_lo, u_hi] and, when
    ``threshold`` is set, to {log q(θ | x_obs) - log π(θ) ≥ threshold}."""

    u_lo: np.ndarray
    u_hi: np.ndarray
    threshold: float | None = None
    mass: float = 1.0            # prior mass of the region (box volume × acceptance)
    acceptance: float = 1.0
    kind: str = "prior"          # prior | pilot box | hpr | box

    def describe(self, prior: Prior) -> dict:
        lo = prior.transform(self.u_lo[None])[0]
        hi = prior.transform(self.u_hi[None])[0]
        return {"proposal": self.kind, "prior_mass": float(self.mass),
                "acceptance": float(self.acceptance),
                "threshold": None if self.threshold is None else float(self.threshold),
                "box": {n: [float(a), float(b)] for n, a, b in zip(prior.names, lo, hi, strict=True)}}


def pilot_region(prior: Prior, pilot: np.ndarray, width: float = 5.0) -> _Region:
    """Box around pilot draws (N, P): median ± ``width`` sd (natural coordinates), hull included.

    A parameter whose draws do not vary (one pilot point) gets ± 10 % of its natural range.
    """
    p = np.atleast_2d(np.asarray(pilot, dtype=float))
    if p.ndim != 2 or p.shape[1] != prior.dim or p.shape[0] < 1 or not np.isfinite(p).all():
        raise ParameterError(f"pilot samples have shape {np.shape(pilot)}; expected (N, {prior.dim}) "
                             f"finite draws of {', '.join(prior.names)}", field="pilot")
    b = prior.bounds
    outside = (p < b[:, 0]) | (p > b[:, 1])
    if outside.any():
        j = int(np.flatnonzero(outside.any(0))[0])
        raise ParameterError(f"pilot draws outside the prior [{b[j, 0]:g}, {b[j, 1]:g}]",
                             field=f"pilot.{prior.names[j]}")
    z = natural(prior, p)
    zb = natural(prior, b.T)                     # (2, P)
    med = np.median(z, 0)
    sd = z.std(0) if len(z) > 1 else np.zeros(prior.dim)
    half = np.where(sd > 0, width * sd, 0.1 * (zb[1] - zb[0]))
    lo = np.minimum(med - half, z.min(0))
    hi = np.maximum(med + half, z.max(0))
    u_lo = prior_cdf(prior, from_natural(prior, lo))[0]
    u_hi = prior_cdf(prior, from_natural(prior, hi))[0]
    return _Region(u_lo, u_hi, None, float(np.prod(u_hi - u_lo)), 1.0, "pilot box")


def sample_region(prior: Prior, region: _Region, n: int, rng: np.random.Generator,
                  logq: Callable[[np.ndarray], np.ndarray] | None = None,
                  min_acceptance: float = 1e-3, batch: int = 20000) -> tuple[np.ndarray, float]:
    """n draws (n, P) from the truncated prior and the rejection acceptance rate.

    Draws are inverse-CDF transforms of uniform deviates in the region's box; with a
    threshold, those with ``logq(θ)`` (log posterior / prior) < threshold are rejected.  If the acceptance falls below
    ``min_acceptance`` after ``batch`` draws, the remaining draws come from the box alone.
    """
    width = region.u_hi - region.u_lo
    if region.threshold is None or logq is None:
        return prior.transform(region.u_lo + rng.random((n, prior.dim)) * width), 1.0
    kept: list[np.ndarray] = []
    n_kept = drawn = 0
    while n_kept < n:
        th = prior.transform(region.u_lo + rng.random((batch, prior.dim)) * width)
        ok = logq(th) >= region.threshold
        drawn += batch
        kept.append(th[ok])
        n_kept += int(ok.sum())
        acc = n_kept / drawn
        if acc < min_acceptance:
            break
    acc = n_kept / drawn
    out = np.concatenate(kept)[:n]
    if len(out) < n:
        extra = prior.transform(region.u_lo + rng.random((n - len(out), prior.dim)) * width)
        out = np.concatenate([out, extra])
    return out, acc


# -- calibration ----------------------------------------------------------------------------

def local_coverage(samples: np.ndarray, truths: np.ndarray, names: list[str],
                   levels: tuple[float, ...] = COVERAGE_LEVELS) -> dict:
    """Coverage of central credible intervals on simulations: samples (S, B, P), truths (B, P).

    Returns per-parameter empirical coverage at each nominal level, the largest
    |empirical - nominal| per parameter and overall, and the tolerance a perfectly
    calibrated posterior stays within with 95 % probability (binomial, Bonferroni over
    levels and parameters).
    """
    from .diagnostics import coverage_curve, coverage_tolerance, ranks_from_samples

    s = np.asarray(samples)
    ranks = ranks_from_samples(s, truths)
    lv, cov = coverage_curve(ranks, s.shape[0], np.asarray(levels, dtype=float))
    err = np.abs(cov - lv[:, None])
    n = int(np.shape(truths)[0])
    tol = coverage_tolerance(n, len(levels) * len(names))
    worst = float(err.max())
    return {"n_simulations": n, "posterior_draws": int(s.shape[0]),
            "levels": [float(v) for v in lv],
            "coverage": {nm: [float(c) for c in cov[:, j]] for j, nm in enumerate(names)},
            "max_error": {nm: float(err[:, j].max()) for j, nm in enumerate(names)},
            "max_coverage_error": worst, "tolerance": tol, "calibrated": bool(worst <= tol)}


def format_coverage(cov: Mapping) -> str:
    """One line per parameter: empirical coverage at each nominal level."""
    head = "local coverage (" + str(cov["n_simulations"]) + " simulations from the truncated prior): "
    rows = [head + "nominal " + " / ".join(f"{v:.0%}" for v in cov["levels"])]
    for nm, c in cov["coverage"].items():
        rows.append(f"  {nm:>14s}: " + " / ".join(f"{v:.0%}" for v in c)
                    + f"  (max error {cov['max_error'][nm]:.3f})")
    rows.append(f"  max coverage error {cov['max_coverage_error']:.3f} (tolerance "
                f"{cov['tolerance']:.3f}: {'calibrated' if cov['calibrated'] else 'NOT calibrated'})")
    return "\n".join(rows)


# -- the method -----------------------------------------------------------------------------

def fit_tsnpe(simulator, x_obs, *, prior: Prior | None = None, mask=None, pilot=None,
              rounds: int = 4, sims_per_round: int = 2000, seed: int = 0, device: str = "cpu",
              quiet: bool = False, coverage_sims: int = 200, n_samples: int = 10000,
              min_rounds: int = 2, shrink_stop: float = 0.8, epsilon: float = 1e-4,
              threshold_samples: int = 20000, box_margin: float = 0.05, pilot_width: float = 5.0,
              min_acceptance: float = 1e-3, coverage_draws: int = 500,
              network: Mapping | None = None, training: Mapping | None = None,
              log: Callable[[str], None] = print) -> SequentialResult:
    """Truncated sequential NPE (Deistler et al. 2022) for one observed spectrum.

    ``simulator``: a :class:`~simxray.simulator.simulator.Simulator` (or any object with
    ``prior`` and ``simulate(theta, rng) -> {"counts": (B, C)}``); ``x_obs`` (C,) counts
    in its channels; ``mask`` (C,) bool: channels the estimator sees (default all);
    ``pilot`` (N, P): draws from a quick fit that set round 1's box (default: the prior);
    ``prior``: defaults to the simulator's (same parameter names).  ``network`` and
    ``training`` override :data:`DEFAULT_NETWORK` and :data:`DEFAULT_TRAINING`.
    Returns a :class:`SequentialResult` with ``n_samples`` posterior draws.
    """
    from sbi.inference import NPE

    from .npe_net import NPEModel, prior_scales

    t_all = time.perf_counter()
    say = (lambda msg: None) if quiet else log
    prior = prior if prior is not None else simulator.prior
    if list(prior.names) != list(simulator.prior.names):
        raise ParameterError(f"prior parameters {prior.names} differ from the simulator's "
                             f"{simulator.prior.names}", field="prior")
    x_obs = np.asarray(x_obs, dtype=float)
    if x_obs.ndim != 1 or not np.isfinite(x_obs).all() or (x_obs < 0).any():
        raise ParameterError(f"observed counts have shape {x_obs.shape}; expected finite, "
                             "non-negative counts (C,)", field="x_obs")
    n_ch = getattr(simulator, "n_channels", x_obs.size)
    if x_obs.size != n_ch:
        raise ParameterError(f"observed counts have {x_obs.size} channels; the simulator has "
                             f"{n_ch}", field="x_obs")
    mask = np.ones(x_obs.size, bool) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != x_obs.shape or not mask.any():
        raise ParameterError(f"mask has shape {mask.shape} with {int(mask.sum())} channels on; "
                             f"expected ({x_obs.size},) with at least one", field="mask")
    for name, v, lo in (("rounds", rounds, 1), ("sims_per_round", sims_per_round, 50),
                        ("coverage_sims", coverage_sims, 0)):
        if int(v) < lo:
            raise ParameterError(f"expected an integer >= {lo}, got {v!r}", field=name)
    net = {k: dict(v) for k, v in DEFAULT_NETWORK.items()}
    for k, v in (network or {}).items():
        net[k] = dict(v)
    tr = {**DEFAULT_TRAINING, **dict(training or {})}

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    dev = torch.device(device)
    names = list(prior.names)
    x_o = torch.as_tensor(x_obs[mask], dtype=torch.float32, device=dev)
    seconds = {"simulate": 0.0, "train": 0.0, "truncate": 0.0, "coverage": 0.0, "sample": 0.0}

    low, high, logs = prior_scales(prior)
    model_box: dict[str, NPEModel] = {}

    def build(batch_theta: torch.Tensor, batch_x: torch.Tensor):
        """sbi density-estimator builder: the package's NPEModel, standardised on round 1."""
        m = NPEModel(int(mask.sum()), low, high, logs, net["embedding"], net["flow"])
        m.embedding.norm.fit(batch_x.cpu())
        m.theta_transform.fit(batch_theta.cpu())
        m.to(dev)
        model_box["model"] = m
        return m.as_sbi_estimator()

    inference = NPE(prior=prior.to_torch(device=str(dev)), density_estimator=build,
                    device=str(dev), show_progress_bars=False)

    @torch.no_grad()
    def logq(theta: np.ndarray) -> np.ndarray:
        """log q(θ | x_obs) - log π(θ) (n,) for θ (n, P) inside the prior."""
        m = model_box["model"]
        m.eval()
        dist = m.flow(m.embedding(x_o[None]))
        out = [dist.log_prob(torch.as_tensor(theta[a:a + 50000], dtype=torch.float32,
                                             device=dev)).cpu().numpy()
               for a in range(0, len(theta), 50000)]
        return np.concatenate(out).astype(float) - prior.log_prob(theta)

    def hpr() -> _Region:
        """HPR of the current estimate: threshold, widened sample box, prior mass."""
        m = model_box["model"]
        m.eval()
        th = m.sample(threshold_samples, x_o).cpu().numpy().astype(float)
        th = np.clip(th, prior.bounds[:, 0], prior.bounds[:, 1])
        thr = float(np.quantile(logq(th), epsilon))
        u = prior_cdf(prior, th)
        lo, hi = u.min(0), u.max(0)
        pad = box_margin * (hi - lo)
        reg = _Region(np.clip(lo - pad, 0.0, 1.0), np.clip(hi + pad, 0.0, 1.0), thr, kind="hpr")
        probe, acc = sample_region(prior, reg, 1, rng, logq, batch=20000)
        del probe
        reg.acceptance = acc
        reg.mass = float(np.prod(reg.u_hi - reg.u_lo)) * acc
        if acc < min_acceptance:
            reg.threshold, reg.kind, reg.acceptance = None, "box", 1.0
            reg.mass = float(np.prod(reg.u_hi - reg.u_lo))
        return reg

    if pilot is not None:
        region = pilot_region(prior, pilot, pilot_width)
    else:
        region = _Region(np.zeros(prior.dim), np.ones(prior.dim))
    history: list[dict] = []
    n_sims = 0
    stop_reason = f"{rounds} rounds"
    for r in range(1, int(rounds) + 1):
        t0 = time.perf_counter()
        theta, acc = sample_region(prior, region, int(sims_per_round), rng,
                                   logq if region.threshold is not None else None,
                                   min_acceptance)
        t1 = time.perf_counter()
        counts = np.asarray(simulator.simulate(theta, rng)["counts"], dtype=np.float32)
        t2 = time.perf_counter()
        n_sims += len(theta)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            # sbi warns about outliers for its own z-scoring of x, which the package's
            # embedding replaces (Anscombe transform + per-bin z-score), and prints a
            # convergence line: both are noise here.
            warnings.filterwarnings("ignore", message="Data has extreme outliers")
            inference.append_simulations(torch.as_tensor(theta, dtype=torch.float32),
                                         torch.as_tensor(counts[:, mask]))
            inference.train(force_first_round_loss=True, show_train_summary=False, **tr)
        t3 = time.perf_counter()
        summ = inference.summary
        entry = {"round": r, "n_simulations": len(theta), **region.describe(prior),
                 "sampling_acceptance": float(acc),
                 "epochs": int(summ["epochs_trained"][-1]),
                 "best_validation_loss": float(summ["best_validation_loss"][-1]),
                 "seconds": {"propose": round(t1 - t0, 3), "simulate": round(t2 - t1, 3),
                             "train": round(t3 - t2, 3)}}
        seconds["truncate"] += t1 - t0
        seconds["simulate"] += t2 - t1
        seconds["train"] += t3 - t2
        t4 = time.perf_counter()
        new = hpr()
        seconds["truncate"] += time.perf_counter() - t4
        ratio = new.mass / max(region.mass, 1e-300)
        entry["next_prior_mass"] = new.mass
        entry["mass_ratio"] = float(ratio)
        entry["seconds"]["truncate"] = round(time.perf_counter() - t4, 3)
        history.append(entry)
        say(f"TSNPE round {r}: {len(theta)} simulations from the {region.kind} "
            f"(prior mass {region.mass:.3g}), {entry['epochs']} epochs, best validation loss "
            f"{entry['best_validation_loss']:.3f}; new region mass {new.mass:.3g} "
            f"({ratio:.2f} x)")
        region = new
        if r >= min_rounds and shrink_stop <= ratio <= 1.0 / shrink_stop:
            stop_reason = f"region stopped shrinking after round {r} (mass ratio {ratio:.2f})"
            break

    model = model_box["model"]
    model.eval()
    diagnostics: dict = {"stop_reason": stop_reason, "final_region": region.describe(prior),
                         "epsilon": epsilon, "network": net, "training": tr, "seed": seed,
                         "channels_used": int(mask.sum())}
    if coverage_sims > 0:
        t5 = time.perf_counter()
        theta_c, _ = sample_region(prior, region, int(coverage_sims), rng, logq, min_acceptance)
        counts_c = np.asarray(simulator.simulate(theta_c, rng)["counts"], dtype=np.float32)
        n_sims += len(theta_c)
        xs = torch.as_tensor(counts_c[:, mask], device=dev)
        draws = np.concatenate([model.sample(coverage_draws, xs[a:a + 100]).cpu().numpy()
                                for a in range(0, len(xs), 100)], axis=1)
        cov = local_coverage(draws, theta_c, names)
        seconds["coverage"] = time.perf_counter() - t5
        diagnostics["local_coverage"] = cov
        say(format_coverage(cov))
    t6 = time.perf_counter()
    samples = model.sample(int(n_samples), x_o).cpu().numpy().astype(float)
    samples = np.clip(samples, prior.bounds[:, 0], prior.bounds[:, 1])
    seconds["sample"] = time.perf_counter() - t6
    seconds["total"] = time.perf_counter() - t_all
    seconds = {k: round(v, 3) for k, v in seconds.items()}
    return SequentialResult(samples=samples, names=names, n_simulations=n_sims, seconds=seconds,
                            rounds=history, diagnostics=diagnostics, estimator=model, prior=prior)


__all__ = ["SequentialResult", "fit_tsnpe", "local_coverage", "format_coverage", "prior_cdf",
           "natural", "from_natural", "pilot_region", "sample_region", "COVERAGE_LEVELS",
           "DEFAULT_NETWORK", "DEFAULT_TRAINING"]
