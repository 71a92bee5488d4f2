"""Ensemble MCMC (emcee) with the Poisson likelihood, on the emulator or the exact simulator.

``sample_emcee(spectrum, emulator=..., prior=..., n_samples=..., seed=...)`` returns an
:class:`McmcResult` (samples (N, P), names, diagnostics, log_prob).  The likelihood is
Cash's C (``cstat``, optionally with a fixed expected background added to the source
model), or XSPEC's W (``wstat``) when a background spectrum is given; the log posterior is
``-C/2 + log prior``.  Forward models: an :class:`~simxray.inference.emulator.Emulator`
(fast) or a :class:`~simxray.simulator.simulator.Simulator` (exact, slow); anything with
``expected(theta (B, P)) -> mu (B, C)`` works.

The walkers move in the prior's natural coordinates (log θ for log-uniform priors).  They
start from a Gaussian around the best of a batch of prior draws refined by Nelder-Mead,
with the covariance of a finite-difference Hessian.  The sampler runs in blocks until the
chain is longer than ``min_tau_multiple`` integrated autocorrelation times and holds at
least ``n_effective`` effective samples (or ``max_steps`` is reached); the first
``burn_tau`` autocorrelation times are discarded.  Diagnostics: τ per parameter, acceptance
fraction (mean, min), effective sample size, steps, burn-in, thinning, likelihood
evaluations and their time; warnings when the chain is too short or walkers are stuck.

``fit_spectrum_emcee`` wraps it with the outputs of ``simxray fit`` (samples.h5,
posterior.nc, summary.json, corner.png, spectrum.png) through
:mod:`simxray.inference.fit`'s writers.

The driver is :class:`EmceeSampler` (one small method per step: start, chain, pilots,
result); :func:`sample_emcee` is ``EmceeSampler(...).run()`` with BLAS on one thread.

Length: one module for the emcee path: the Likelihood (C-stat/W-stat), the sampling coordinates and the EmceeSampler's small methods (start, chain, pilots, diagnostics) share those coordinates and statistics; the importance sampler and the anchoring live in their own modules.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParameterError, SimxrayError

ACCEPT_RANGE = (0.15, 0.75)


@dataclass
class McmcResult:
    """Posterior samples (N, P) in physical units, their names, diagnostics and log posterior."""

    samples: np.ndarray
    names: list[str]
    diagnostics: dict
    log_prob: np.ndarray
    chain: np.ndarray | None = field(default=None, repr=False)   # (steps, walkers, P) physical
    forward: Any = field(default=None, repr=False)   # expected counts θ -> μ the chain used
    chain_log_prob: np.ndarray | None = field(default=None, repr=False)   # (steps, walkers)

    @property
    def warnings(self) -> list[str]:
        return list(self.diagnostics.get("warnings", []))


class Likelihood:
    """Vectorised log likelihood -stat/2 of counts x for expected source counts mu(theta).

    ``kind="cstat"``: C(x, mu + background_mu); ``kind="wstat"``: W(x, b, mu, alpha) with
    background counts b and scale alpha (background profiled out).
    """

    def __init__(self, counts: np.ndarray, forward, *, background_mu: np.ndarray | None = None,
                 background_counts: np.ndarray | None = None,
                 background_scale: float | np.ndarray | None = None):
        from scipy.special import xlogy

        self.x = np.asarray(counts, dtype=float)
        self.forward = forward
        self.fast = None
        self.n_calls = 0
        self.n_spectra = 0
        self.seconds = 0.0
        if background_counts is not None:
            if background_scale is None:
                raise ParameterError("wstat needs the background scale (exposure x BACKSCAL "
                                     "ratio)", field="background_scale")
            self.kind = "wstat"
            self.b = np.asarray(background_counts, dtype=float)
            self.alpha = background_scale
            if self.b.shape != self.x.shape:
                raise ParameterError(f"background has {self.b.size} channels; the spectrum "
                                     f"{self.x.size}", field="background")
            self._wstat = FastWStat(self.x, self.b, self.alpha)
        else:
            self.kind = "cstat"
            self.bmu = 0.0 if background_mu is None else np.asarray(background_mu, dtype=float)
        self._const = float(np.sum(xlogy(self.x, self.x) - self.x))

    def _timed(self, fn, theta: np.ndarray) -> np.ndarray:
        """fn(theta), counted and timed in ``n_calls``, ``n_spectra`` and ``seconds``."""
        t0 = time.perf_counter()
        out = fn(theta)
        self.seconds += time.perf_counter() - t0
        self.n_calls += 1
        self.n_spectra += len(theta)
        return out

    def expected(self, theta: np.ndarray) -> np.ndarray:
        return self._timed(self.forward, theta)

    def use_emulator_cstat(self, emulator) -> bool:
        """Compute C-stat straight from a ``counts`` emulator's network
        (:class:`~simxray.inference.fastlike.EmulatorCStat`); False where that does not apply
        (W-stat, another target, or no emulator)."""
        from .fastlike import EmulatorCStat

        if self.kind != "cstat" or getattr(emulator, "target", None) != "counts" or getattr(
                emulator, "in_cols", None) or not hasattr(emulator, "folded"):
            return False
        self.fast = EmulatorCStat(emulator, self.x,
                                  None if np.ndim(self.bmu) == 0 else self.bmu)
        return True

    def stat_mu(self, mu: np.ndarray) -> np.ndarray:
        """The fit statistic (B,) for expected source counts mu (B, C)."""
        from .stats import cstat

        mu = np.atleast_2d(mu)
        return self._wstat(mu) if self.kind == "wstat" else cstat(self.x, mu + self.bmu)

    def stat(self, theta: np.ndarray) -> np.ndarray:
        """The fit statistic (B,) for theta (B, P) in physical units."""
        if self.fast is not None:
            return self._timed(self.fast, theta)
        return self.stat_mu(self.expected(theta))

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        """log L (B,) up to a constant: -stat / 2."""
        return -0.5 * self.stat(theta)


class FastWStat:
    """XSPEC's W-stat summed over channels, for many models against fixed data: the channel
    classes (S = 0, B = 0, both > 0) and the data-only terms are precomputed, so a call costs
    a few array operations on (N, C) (equal to :func:`simxray.inference.stats.wstat`)."""

    def __init__(self, counts: np.ndarray, background: np.ndarray,
                 alpha: float | np.ndarray):
        from scipy.special import xlogy

        S = np.asarray(counts, dtype=float)
        B = np.asarray(background, dtype=float)
        tb = np.broadcast_to(1.0 / np.asarray(alpha, dtype=float), S.shape).astype(float)
        a = 1.0 + tb
        self.g = np.flatnonzero((S > 0) & (B > 0))
        self.s0 = np.flatnonzero(S == 0)
        self.b0 = np.flatnonzero((S > 0) & (B == 0))
        self.S, self.B, self.a, self.tb = S, B, a, tb
        g, s0, b0 = self.g, self.s0, self.b0
        self.const = (2.0 * np.sum(-B[s0] * np.log(tb[s0] / a[s0]))
                      + 2.0 * np.sum(xlogy(S[g], S[g]) - S[g] + xlogy(B[g], B[g]) - B[g]))
        self.Sg, self.Bg, self.ag, self.tbg = S[g], B[g], a[g], tb[g]
        self.Sb, self.ab, self.tbb = S[b0], a[b0], tb[b0]
        self.lnSb = np.log(np.where(self.Sb > 0, self.Sb, 1.0))

    def __call__(self, mu: np.ndarray) -> np.ndarray:
        """W (N,) for expected source counts mu (N, C)."""
        m = np.maximum(np.atleast_2d(mu), 0.0)
        out = 2.0 * m[:, self.s0].sum(1) + self.const
        if self.g.size:
            mg = m[:, self.g]
            S, B, a, tb = self.Sg, self.Bg, self.ag, self.tbg
            b = a * mg - S - B
            d = np.sqrt(b * b + 4.0 * a * B * mg)
            with np.errstate(divide="ignore", invalid="ignore"):
                f = np.where(b >= 0, 2.0 * B * mg / np.where(b + d > 0, b + d, 1.0),
                             (d - b) / (2.0 * a))
                out += 2.0 * (mg + a * f - S * np.log(mg + f) - B * np.log(tb * f)).sum(1)
        if self.b0.size:
            mb = m[:, self.b0]
            S, a, tb = self.Sb, self.ab, self.tbb
            with np.errstate(divide="ignore"):
                low = -tb * mb - S * np.log(1.0 / a)
                high = mb + S * self.lnSb - S * np.log(np.maximum(mb, 1e-300)) - S
            out += 2.0 * np.where(mb < S / a, low, high).sum(1)
        return out


class _Coords:
    """Physical θ ↔ sampling coordinates x (log θ for log-uniform priors)."""

    def __init__(self, prior):
        self.prior = prior
        self.log = np.array([d.dist == "loguniform" for d in prior.varying], dtype=bool)
        b = prior.bounds
        self.lo = np.where(self.log, np.log(np.where(self.log, b[:, 0], 1.0)), b[:, 0])
        self.hi = np.where(self.log, np.log(np.where(self.log, b[:, 1], 1.0)), b[:, 1])

    def to_theta(self, x: np.ndarray) -> np.ndarray:
        return np.where(self.log, np.exp(np.where(self.log, x, 0.0)), x)

    def to_x(self, theta: np.ndarray) -> np.ndarray:
        t = np.asarray(theta, float)
        return np.where(self.log, np.log(np.where(self.log, np.maximum(t, 1e-300), 1.0)), t)

    def log_prior(self, x: np.ndarray) -> np.ndarray:
        """log prior density in x coordinates (Jacobian included); -inf outside."""
        inside = np.all((x >= self.lo) & (x <= self.hi), axis=-1)
        lp = np.full(x.shape[0], -np.inf)
        if inside.any():
            xi = x[inside]
            lp[inside] = self.prior.log_prob(self.to_theta(xi)) + (xi * self.log).sum(-1)
        return lp

    def log_posterior(self, x: np.ndarray, log_like) -> np.ndarray:
        """log posterior (B,) at x (B, P) for ``log_like(theta (B', P)) -> (B',)``: the prior
        in x (Jacobian included) plus the likelihood; -inf outside the prior."""
        x = np.atleast_2d(x)
        lp = self.log_prior(x)
        ok = np.isfinite(lp)
        if ok.any():
            ll = log_like(self.to_theta(x[ok]))
            lp[ok] = lp[ok] + np.where(np.isfinite(ll), ll, -np.inf)
        return lp


def _resolve_forward(emulator, simulator, prior):
    if (emulator is None) == (simulator is None):
        raise SimxrayError("give exactly one forward model: emulator= (fast) or simulator= (exact)",
                           field="forward model")
    model = emulator if emulator is not None else simulator
    names = list(getattr(model, "names", prior.names))
    if names != list(prior.names):
        raise ParameterError(f"the prior's parameters {prior.names} differ from the forward "
                             f"model's {names}", field="prior")
    check = getattr(emulator, "check_prior", None)
    if check is not None:
        check(prior)

    def forward(theta: np.ndarray) -> np.ndarray:
        if emulator is not None:
            try:
                return emulator.expected(theta, on_range="clip")
            except TypeError:
                return emulator.expected(theta)
        return simulator.expected(theta)

    return forward, ("emulator" if emulator is not None else "simulator")


def _counts_and_background(spectrum, model, background, background_scale):
    """(counts (C,), background counts or None, alpha or None, spectrum object or None)."""
    spec = None
    if hasattr(spectrum, "counts") and hasattr(spectrum, "channel"):
        spec = spectrum
        ch = getattr(model, "channels", None)
        if ch is None:
            sl = getattr(model, "slice", None)
            ch = [int(model.channel[0]), int(model.channel[-1])] if sl is not None else None
        if ch is None:
            raise SimxrayError("cannot tell which channels the forward model covers",
                               field="channels")
        c = np.asarray(spec.channel).astype(int)
        idx = np.flatnonzero((c >= ch[0]) & (c <= ch[1]))
        x = np.asarray(spec.counts, dtype=float)[idx]
        if background is None and spec.background is not None:
            background = np.asarray(spec.background.counts, dtype=float)[idx]
            scale = spec.background_scale
            background_scale = scale[idx] if np.ndim(scale) else float(scale)
    else:
        x = np.asarray(spectrum, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise SimxrayError(f"expected counts per channel (C,), got shape {x.shape}", field="spectrum")
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise SimxrayError("counts must be finite and non-negative", field="spectrum")
    return x, background, background_scale, spec


def sample_emcee(spectrum, **kwargs) -> McmcResult:
    """Sample p(θ | counts) with emcee: ``EmceeSampler(spectrum, **kwargs).run()`` (see
    :class:`EmceeSampler` for the arguments), with numpy's BLAS limited to one thread
    (small matrix products; see :func:`~simxray.inference.emulator.one_blas_thread`)."""
    from .emulator import one_blas_thread

    with one_blas_thread():
        return EmceeSampler(spectrum, **kwargs).run()


class EmceeSampler:
    """Sample p(θ | counts) with emcee's affine-invariant ensemble sampler.

    ``EmceeSampler(spectrum, ...).run()`` → :class:`McmcResult`; the steps are methods:
    :meth:`log_post` (log posterior in the sampling coordinates), :meth:`find_start`
    (best prior draws, Nelder-Mead, Hessian covariance, initial walkers),
    :meth:`run_chain` (blocks until converged), :meth:`anchor_pilot` /
    :meth:`importance_pilot` (optional pilots), :meth:`result` (burn-in, diagnostics,
    warnings, subsampling).  One ``numpy`` generator seeded with ``seed`` drives every
    draw in that order, so a seed fixes the samples.

    spectrum : counts (C,) in the forward model's channels, or a
        :class:`~simxray.io.ogip.Spectrum` (its background, if any, gives W-stat).
    emulator / simulator : the forward model (exactly one); anything with ``expected``.
    prior : :class:`~simxray.simulator.prior.Prior` over the forward model's parameters
        (default: the emulator's or simulator's own).
    n_samples : posterior draws returned (subsampled without replacement from the chain
        after burn-in; all of them, with a warning, if the chain holds fewer).
    n_effective : effective sample size to reach before stopping (also the warning limit).
    background, background_scale : background counts (C,) and the exposure × BACKSCAL ratio:
        W-stat.  background_mu : a fixed expected background (C,) added to the model (C-stat).
    init : (P,) starting point (physical units) instead of the automatic search.
    n_starts : Nelder-Mead runs from the best mutually distant prior draws; other optima
        within 3 in log posterior of the best are reported (``diagnostics["modes"]``) with a
        warning: the ensemble explores the best one and rarely crosses between modes.
    moves : emcee moves (default: 80 % DEMove + 20 % DESnookerMove, which on the piled
        NGC 4258 setup halves the autocorrelation time of emcee's default stretch move).
    importance : first try MCMC-guided importance sampling
        (:mod:`~simxray.inference.importance`): a ``pilot_steps`` emcee pilot maps the
        posterior, a Student-t mixture fitted to it proposes draws weighted by the exact
        posterior; accepted when PSIS k̂ < 0.7 and the ESS reaches ``n_effective``, else
        the chain continues from the pilot as usual.
    anchor : with ``emulator``, the exact simulator (anything with ``expected``) to anchor
        the emulator to (:mod:`~simxray.inference.anchor`): a pilot chain on the plain
        emulator (``n_effective / 4`` effective samples), ~60 exact spectra at its draws, a
        quadratic correction of log μ, then the main chain on the anchored emulator.
    """

    def __init__(self, spectrum, *, emulator=None, simulator=None, prior=None, n_samples: int = 10000,
                 seed: int = 0, n_walkers: int | None = None, n_effective: int = 1000,
                 max_steps: int = 20000, block: int = 250, min_tau_multiple: float = 50.0,
                 burn_tau: float = 5.0, background: np.ndarray | None = None,
                 background_scale: float | np.ndarray | None = None,
                 background_mu: np.ndarray | None = None, n_init: int | None = None,
                 init: np.ndarray | None = None, moves=None, quiet: bool = False,
                 keep_chain: bool = False, anchor=None, n_starts: int = 4,
                 importance: bool = False, pilot_steps: int = 300):
        if prior is None:
            prior = getattr(emulator if emulator is not None else simulator, "prior", None)
            if prior is None:
                raise SimxrayError("no prior given and the forward model has none", field="prior")
        self.forward, self.kind = _resolve_forward(emulator, simulator, prior)
        model = emulator if emulator is not None else simulator
        x_obs, bkg, alpha, _ = _counts_and_background(spectrum, model, background, background_scale)
        if n_samples < 1:
            raise SimxrayError(f"expected a positive number of samples, got {n_samples}",
                               field="n_samples")
        P = prior.dim
        nw = int(n_walkers or max(32, 4 * P + 2 - (4 * P) % 2))
        if nw < 2 * P or nw % 2:
            raise SimxrayError(f"expected an even number of walkers >= {2 * P}, got {nw}",
                               field="n_walkers")
        self.prior, self.P, self.nw = prior, P, nw
        self.n_samples, self.seed, self.n_effective = n_samples, seed, n_effective
        self.max_steps, self.block = max_steps, block
        self.min_tau_multiple, self.burn_tau = min_tau_multiple, burn_tau
        self.n_init, self.init, self.n_starts = n_init, init, n_starts
        self.moves, self.quiet, self.keep_chain = moves, quiet, keep_chain
        self.anchor, self.importance, self.pilot_steps = anchor, importance, pilot_steps
        self.like = Likelihood(x_obs, self.forward, background_mu=background_mu,
                               background_counts=bkg, background_scale=alpha)
        b = prior.bounds
        if (self.kind == "emulator" and np.all(b[:, 0] >= getattr(emulator, "low", np.inf))
                and np.all(b[:, 1] <= getattr(emulator, "high", -np.inf))):
            self.like.use_emulator_cstat(emulator)   # no clipping needed inside the training range
        self.coords = _Coords(prior)
        self.width = self.coords.hi - self.coords.lo
        self.rng = np.random.default_rng(seed)
        self.t0 = time.perf_counter()
        self.x_map: np.ndarray | None = None
        self.modes: list[dict] = []
        self.anchor_info: dict | None = None

    # -- the target --------------------------------------------------------------------------------
    def log_post(self, x: np.ndarray) -> np.ndarray:
        """log posterior (B,) at sampling coordinates x (B, P); -inf outside the prior."""
        return self.coords.log_posterior(x, self.like)

    def _neg(self, v: np.ndarray) -> float:
        lp = float(self.log_post(v)[0])
        return -lp if math.isfinite(lp) else 1e30

    # -- starting point ----------------------------------------------------------------------------
    def starting_points(self) -> list[np.ndarray]:
        """``init`` (checked), else the best mutually distant of a batch of prior draws."""
        P, coords = self.P, self.coords
        if self.init is not None:
            x0 = coords.to_x(np.asarray(self.init, float).reshape(1, P))[0]
            if not np.isfinite(self.log_post(x0)[0]):
                raise ParameterError("init lies outside the prior", field="init")
            return [x0]
        k = int(self.n_init or (4096 if self.kind == "emulator" else 256))
        cand = coords.to_x(self.prior.sample(k, self.rng))
        lp = np.concatenate([self.log_post(cand[a:a + 1024]) for a in range(0, k, 1024)])
        return _distinct_starts(cand, lp, self.width, self.n_starts)

    def optimise(self, starts: list[np.ndarray]) -> list[tuple[np.ndarray, float]]:
        """Nelder-Mead from each start: [(x, -log posterior)], best first."""
        from scipy.optimize import minimize

        P, width = self.P, self.width
        maxfev = 600 if self.kind == "emulator" else 200
        optima = []
        for x0 in starts:
            opt = minimize(self._neg, x0, method="Nelder-Mead",
                           options={"maxfev": maxfev, "xatol": 1e-6, "fatol": 1e-4,
                                    "initial_simplex": x0 + np.vstack([np.zeros(P),
                                                                       0.02 * np.diag(width)])})
            f0 = self._neg(x0)
            optima.append((opt.x, float(opt.fun)) if opt.fun < f0 else (x0, f0))
        optima.sort(key=lambda o: o[1])
        return optima

    def find_start(self) -> np.ndarray:
        """Initial walkers (nw, P): around the best optimum with the Hessian covariance; sets
        :attr:`x_map` and :attr:`modes` (the other separate optima)."""
        optima = self.optimise(self.starting_points())
        self.x_map = optima[0][0]
        self.modes = _other_modes(optima, self.width, self.log_post)
        cov = _hessian_cov(self.log_post, self.x_map, self.width)
        return _initial_walkers(self.rng, self.x_map, cov, self.nw, self.coords, self.width,
                                self.log_post)

    # -- chains ------------------------------------------------------------------------------------
    def run_chain(self, state, target: int, label: str, rs_seed: int, limit: int | None = None):
        """Blocks of ``block`` steps until converged (``min_tau_multiple`` τ, ``target`` ESS)
        or ``limit`` (default ``max_steps``) steps: (sampler, steps, stop reason)."""
        import emcee
        from tqdm import tqdm

        smp = emcee.EnsembleSampler(self.nw, self.P, self.log_post, vectorize=True, moves=self.moves)
        smp.random_state = np.random.RandomState(rs_seed % 2**32).get_state()
        n_steps, why = 0, "max_steps"
        top = int(limit or self.max_steps)
        bar = tqdm(total=top, unit="step", disable=self.quiet, desc=f"emcee ({label})",
                   dynamic_ncols=True)
        try:
            while n_steps < top:
                n = min(self.block, top - n_steps)
                state = smp.run_mcmc(state, n, progress=False)
                n_steps += n
                bar.update(n)
                tau_b = _tau(smp.get_chain()[n_steps // 3:])   # the last two thirds: past burn-in
                tmax = float(np.nanmax(tau_b)) if np.isfinite(tau_b).any() else math.inf
                burn_b = int(math.ceil(self.burn_tau * tmax)) if math.isfinite(tmax) else n_steps
                ess_b = self.nw * max(0, n_steps - burn_b) / tmax if math.isfinite(tmax) else 0.0
                bar.set_postfix(tau=f"{tmax:.0f}", ess=f"{ess_b:.0f}",
                                acc=f"{np.mean(smp.acceptance_fraction):.2f}")
                if (math.isfinite(tmax) and n_steps >= self.min_tau_multiple * tmax
                        and ess_b >= target and n_steps > burn_b):
                    why = "converged"
                    break
        except KeyboardInterrupt:
            why = "interrupted"
            if n_steps == 0:
                raise
        finally:
            bar.close()
        return smp, n_steps, why

    def anchor_pilot(self, start: np.ndarray) -> np.ndarray:
        """A pilot chain on the plain emulator; anchor the likelihood to the exact simulator
        over its draws (:attr:`anchor_info`).  Returns the pilot's last walkers."""
        from .anchor import anchor_to_simulator

        pilot, steps, reason = self.run_chain(start, max(200, self.n_effective // 4),
                                              "emulator, pilot", self.seed + 1)
        if reason == "interrupted":
            raise KeyboardInterrupt
        ch = pilot.get_chain()
        tau_p = _tau(ch[steps // 3:])
        tp = float(np.nanmax(tau_p)) if np.isfinite(tau_p).any() else float(steps)
        pilot_x = ch[min(int(math.ceil(self.burn_tau * tp)), steps // 2):].reshape(-1, self.P)
        info = anchor_to_simulator(self.like, self.forward, self.anchor.expected, pilot_x,
                                   self.coords, self.rng)
        info.update(pilot_steps=steps, pilot_stop_reason=reason)
        self.anchor_info = info
        return ch[-1]                                       # walkers already in the bulk

    def importance_pilot(self, start: np.ndarray) -> McmcResult | np.ndarray:
        """A ``pilot_steps`` pilot, then guided importance sampling: the result when PSIS
        accepts it, else the pilot's last walkers (the chain goes on from there)."""
        import emcee

        from .importance import guided_importance

        pilot, p_steps, p_reason = self.run_chain(start, 10**9, f"{self.kind}, pilot",
                                                  self.seed + 2, limit=self.pilot_steps)
        if p_reason == "interrupted":
            raise KeyboardInterrupt
        pch = pilot.get_chain()
        pilot_x = pch[p_steps // 3:].reshape(-1, self.P)
        gi = guided_importance(self.log_post, pilot_x, n_effective=self.n_effective,
                               n_samples=self.n_samples, seed=self.seed + 3)
        if not gi["reliable"]:
            return pch[-1]
        is_info = {k: v for k, v in gi.items() if k != "x"}
        is_info.update(pilot_steps=p_steps, pilot_walkers=self.nw)
        samples = self.coords.to_theta(gi["x"])
        is_warn = self._report_modes(gi["x"], always=True,
                                     text="posterior, not reached by the sampler")
        like, names = self.like, self.prior.names
        seconds = time.perf_counter() - self.t0
        diag = {"sampler": "emcee pilot + importance sampling (PSIS)",
                "emcee_version": emcee.__version__, "forward_model": self.kind,
                "statistic": like.kind, "likelihood_path": "expected counts",
                "importance": is_info, "modes": self.modes, "n_walkers": self.nw,
                "steps": p_steps, "burn_in": p_steps // 3, "stop_reason": "importance",
                "effective_sample_size_min": gi["ess"], "n_samples": int(len(samples)),
                **self._timing(seconds, gi["ess"]), "map": self._map(), "seed": int(self.seed),
                "warnings": is_warn}
        return McmcResult(samples=samples, names=list(names), diagnostics=diag,
                          log_prob=np.full(len(samples), np.nan), forward=like.forward)

    # -- reporting ---------------------------------------------------------------------------------
    def _map(self) -> dict[str, float]:
        theta_map = self.coords.to_theta(self.x_map[None])[0]
        return dict(zip(self.prior.names, map(float, theta_map), strict=True))

    def _timing(self, seconds: float, ess_min: float) -> dict[str, float]:
        like = self.like
        return {"likelihood_calls": like.n_calls, "likelihood_spectra": like.n_spectra,
                "likelihood_seconds": like.seconds,
                "seconds_per_likelihood": like.seconds / max(1, like.n_spectra),
                "seconds": seconds, "seconds_per_1000_effective": seconds * 1000.0 / max(ess_min, 1e-9)}

    def _report_modes(self, draws: np.ndarray, always: bool, text: str) -> list[str]:
        """Mark the other optima the draws (sampling coordinates) visited; convert them to θ
        for the report; a warning for each unvisited one within 3 in log posterior."""
        warn = []
        if always or (self.modes and len(draws)):   # drop optima the draws visited (one ridge)
            sub = draws[:: max(1, len(draws) // 20000)]
            sd = np.maximum(sub.std(0), 1e-12)
            for m in self.modes:
                m["visited"] = bool(np.min(np.linalg.norm((sub - m["x"]) / sd, axis=1)) < 1.0)
        for m in self.modes:                    # sampling coordinates -> θ for the report
            th = self.coords.to_theta(m.pop("x")[None])[0]
            m["theta"] = dict(zip(self.prior.names, map(float, th), strict=True))
            if m["delta_log_posterior"] < 3.0 and not m.get("visited"):
                where = ", ".join(f"{n}={v:.4g}" for n, v in m["theta"].items())
                warn.append(f"another posterior mode at {where}, "
                            f"{m['delta_log_posterior']:.2f} below the best in log {text}")
        return warn

    def chain_warnings(self, steps: int, tmax: float, ess: np.ndarray, acc: np.ndarray) -> list[str]:
        """Too short a chain, too few effective samples, acceptance off range."""
        warn = []
        mult = self.min_tau_multiple
        if steps < mult * tmax:
            warn.append(f"chain too short: {steps} steps < {mult:g} autocorrelation times "
                        f"({mult:g} x {tmax:.0f}); the autocorrelation time and the "
                        "posterior may be unreliable (raise max_steps)")
        if float(np.nanmin(ess)) < self.n_effective:
            warn.append(f"effective sample size {np.nanmin(ess):.0f} < {self.n_effective} "
                        "(raise max_steps)")
        if not ACCEPT_RANGE[0] <= float(acc.mean()) <= ACCEPT_RANGE[1]:
            warn.append(f"mean acceptance fraction {acc.mean():.2f} outside "
                        f"[{ACCEPT_RANGE[0]}, {ACCEPT_RANGE[1]}]")
        return warn

    def result(self, sampler, steps: int, reason: str) -> McmcResult:
        """Burn-in, diagnostics, warnings and ``n_samples`` draws of the finished chain."""
        import emcee

        P, nw, names = self.P, self.nw, self.prior.names
        chain_x = sampler.get_chain()
        lp_chain = sampler.get_log_prob()
        tau = _tau(chain_x[steps // 3:])
        tmax = float(np.nanmax(tau)) if np.isfinite(tau).any() else float(steps)
        burn = min(int(math.ceil(self.burn_tau * tmax)), steps // 2)
        post = chain_x[burn:]
        post_lp = lp_chain[burn:]
        acc = sampler.acceptance_fraction
        ess = nw * post.shape[0] / tau
        flat = post.reshape(-1, P)
        flat_lp = post_lp.reshape(-1)
        warn = self.chain_warnings(steps, tmax, ess, acc)
        warn += self._report_modes(flat, always=False, text=(
            "posterior: the chain explores the best mode only (compare fits started there "
            "with init=)"))
        stuck = int((acc < 0.25 * np.median(acc)).sum())
        if stuck:
            warn.append(f"{stuck} walker(s) with acceptance below a quarter of the median (stuck in "
                        "a low-probability region?)")
        if flat.shape[0] >= self.n_samples:
            pick = np.sort(self.rng.choice(flat.shape[0], self.n_samples, replace=False))
        else:
            warn.append(f"the chain after burn-in holds {flat.shape[0]} draws < n_samples "
                        f"{self.n_samples}; returning them all")
            pick = np.arange(flat.shape[0])
        for w in warn:
            warnings.warn(f"emcee: {w}", RuntimeWarning, stacklevel=3)
        seconds = time.perf_counter() - self.t0
        like = self.like
        diag: dict[str, Any] = {
            "sampler": "emcee.EnsembleSampler", "emcee_version": emcee.__version__,
            "forward_model": self.kind, "statistic": like.kind,
            "likelihood_path": ("emulator C-stat (fastlike)" if like.fast is not None else
                                "anchored emulator" if self.anchor_info else "expected counts"),
            "anchor": self.anchor_info, "modes": self.modes, "n_walkers": nw, "steps": steps,
            "burn_in": burn, "stop_reason": reason,
            "autocorr_time": dict(zip(names, map(float, tau), strict=True)),
            "autocorr_time_max": tmax,
            "effective_sample_size": dict(zip(names, map(float, ess), strict=True)),
            "effective_sample_size_min": float(np.nanmin(ess)),
            "acceptance_fraction_mean": float(acc.mean()), "acceptance_fraction_min": float(acc.min()),
            "n_samples": int(len(pick)), "n_chain_draws": int(flat.shape[0]),
            **self._timing(seconds, float(np.nanmin(ess))),
            "map": self._map(),
            "map_stat": float(-2.0 * np.max(lp_chain)) if lp_chain.size else None,
            "seed": int(self.seed), "warnings": warn,
        }
        samples = self.coords.to_theta(flat[pick])
        return McmcResult(samples=samples, names=list(names), diagnostics=diag,
                          log_prob=flat_lp[pick],
                          chain=self.coords.to_theta(chain_x) if self.keep_chain else None,
                          forward=like.forward,
                          chain_log_prob=lp_chain if self.keep_chain else None)

    # -- the whole run -----------------------------------------------------------------------------
    def run(self) -> McmcResult:
        """Start, optional pilot (anchor or importance), main chain, result."""
        import emcee

        start = self.find_start()
        if self.moves is None:      # differential evolution: ~half the autocorrelation time of
            self.moves = [(emcee.moves.DEMove(), 0.8),       # emcee's default stretch move
                          (emcee.moves.DESnookerMove(), 0.2)]
        if self.anchor is not None and self.kind == "emulator":
            start = self.anchor_pilot(start)
        if self.importance and self.anchor is None:
            out = self.importance_pilot(start)
            if isinstance(out, McmcResult):
                return out
            start = out
            self.anchor_info = None
        label = "emulator, anchored" if self.anchor_info else self.kind
        return self.result(*self.run_chain(start, self.n_effective, label, self.seed))


def _distinct_starts(cand: np.ndarray, lp: np.ndarray, width: np.ndarray, n: int) -> list:
    """Up to ``n`` starting points: the best candidates, each at least 0.15 prior widths (in
    the sampling coordinates, Euclidean over parameters) from those already taken."""
    order = np.argsort(-np.where(np.isfinite(lp), lp, -np.inf))
    out: list[np.ndarray] = []
    for i in order[:max(64, 8 * n)]:
        if not np.isfinite(lp[i]):
            break
        u = cand[i] / width
        if all(np.linalg.norm(u - o / width) > 0.15 for o in out):
            out.append(cand[i])
        if len(out) >= n:
            break
    return out or [cand[int(order[0])]]


def _other_modes(optima: list, width: np.ndarray, log_post, min_dist: float = 0.05,
                 barrier: float = 2.0) -> list[dict]:
    """Optima (x, -log posterior), best first, that are separate modes: ``min_dist`` prior
    widths from every kept one and, on the straight segment to each, a dip of more than
    ``barrier`` below the lower end (points on one flat ridge are one mode).
    Returns [{x (sampling coordinates), delta_log_posterior, barrier}]."""
    best = optima[0][1]
    kept: list = [(optima[0][0], best)]
    out = []
    s = np.linspace(0.0, 1.0, 13)[1:-1, None]
    for x, f in optima[1:]:
        if any(np.linalg.norm((x - k) / width) <= min_dist for k, _ in kept):
            continue
        dips = []
        for k, fk in kept:
            seg = log_post(k + s * (x - k))
            low = -max(f, fk)                                   # the lower end's log posterior
            dips.append(low - float(np.min(np.where(np.isfinite(seg), seg, -np.inf))))
        if min(dips) > barrier:
            kept.append((x, f))
            out.append({"x": x, "delta_log_posterior": float(f - best), "barrier": float(min(dips))})
    return out


def _tau(chain: np.ndarray) -> np.ndarray:
    """Integrated autocorrelation time per parameter (NaN where the chain is too short)."""
    from emcee.autocorr import integrated_time

    if chain.shape[0] < 20:
        return np.full(chain.shape[-1], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return np.asarray(integrated_time(chain, tol=0, quiet=True), dtype=float)
        except Exception:  # emcee raises for degenerate chains
            return np.full(chain.shape[-1], np.nan)


def _hessian_cov(log_post, x: np.ndarray, width: np.ndarray) -> np.ndarray | None:
    """Covariance -H⁻¹ from central finite differences of the log posterior (one batch)."""
    P = x.size
    h = 1e-3 * width
    pts = [x]
    idx = []
    for i in range(P):
        for j in range(i, P):
            for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                d = np.zeros(P)
                d[i] += si * h[i]
                d[j] += sj * h[j]
                pts.append(x + d)
            idx.append((i, j))
    vals = log_post(np.array(pts))
    if not np.all(np.isfinite(vals)):
        return None
    H = np.zeros((P, P))
    k = 1
    for i, j in idx:
        f_pp, f_pm, f_mp, f_mm = vals[k:k + 4]
        k += 4
        if i == j:
            # x ± 2h along i: second difference with step 2h
            H[i, i] = (f_pp - 2 * vals[0] + f_mm) / (4 * h[i] ** 2)
        else:
            H[i, j] = H[j, i] = (f_pp - f_pm - f_mp + f_mm) / (4 * h[i] * h[j])
    try:
        cov = np.linalg.inv(-H)
        np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        return None
    return cov


def _initial_walkers(rng, x_map, cov, nw, coords, width, log_post) -> np.ndarray:
    """Walkers from N(x_map, (cov/4)) inside the prior (a small ball if cov is unusable)."""
    out = np.empty((0, x_map.size))
    for _ in range(50):
        if cov is not None:
            z = rng.multivariate_normal(x_map, 0.25 * cov, size=4 * nw)
        else:
            z = x_map + 1e-3 * width * rng.standard_normal((4 * nw, x_map.size))
        ok = np.isfinite(log_post(z))
        out = np.vstack([out, z[ok]])
        if len(out) >= nw:
            return out[:nw]
        cov = None if cov is None else 0.25 * cov
    raise SimxrayError("could not place the walkers inside the prior around the best fit",
                       field="init")


def synthetic_spectrum(path: str | os.PathLike, theta: np.ndarray, *, seed: int = 0,
                       emulator: str | os.PathLike | None = None,
                       template: str | os.PathLike | None = None) -> tuple[Path, np.ndarray]:
    """Write a synthetic piled-up PHA spectrum drawn from the **exact simulator** at theta (P,)
    (the emulator's parameters), with the template's ARF, RMF, exposure, frame time and
    background (default: the embedded NGC 4258 spectrum).

    Counts outside the emulator's channels are the template's; inside they are
    Poisson(mu(theta) + expected background).  Returns (path, mu (C,)).
    """
    from ..datasets import default_spectrum_path
    from ..io.ogip import read_pha, write_pha
    from ..provenance import provenance
    from .emulator import Emulator
    from .fit import build_simulator

    emu = Emulator.load(emulator)
    spec = read_pha(template or default_spectrum_path())
    if emu.covariate_names:                     # a multi-mode emulator: the template's mode
        emu = emu.at(exposure=spec.exposure, frame_time=spec.frame_time)
    sim = build_simulator(emu.config, spec)
    th = np.asarray(theta, dtype=float).reshape(1, -1)
    emu.check_theta(th)
    mu = sim.expected(th)[0]
    bmu = sim.background_mu if sim.background_mu is not None else 0.0
    counts = np.asarray(spec.counts).copy()
    lo = int(np.flatnonzero(np.asarray(spec.channel) == emu.channels[0])[0])
    counts[lo:lo + mu.size] = np.random.default_rng(seed).poisson(mu + bmu)
    out = write_pha(path, counts, spec.exposure, respfile=str(spec.rmf.path),
                    ancrfile=str(spec.arf.path) if spec.arf is not None else None,
                    backfile=str(spec.background.path) if spec.background is not None else None,
                    backscal=spec.backscal, areascal=spec.areascal, frame_time=spec.frame_time,
                    channel=spec.channel, overwrite=True,
                    header={"OBJECT": "simxray synthetic"},
                    provenance=provenance(seed=int(seed), theta=list(map(float, th[0])),
                                          generator="simxray exact simulator"))
    return Path(out), mu


# -- the legacy entry point -------------------------------------------------------------

def fit_spectrum_emcee(spectrum: str | os.PathLike, emulator: str | os.PathLike | None = None, *,
                       out: str | os.PathLike | None = None, n_samples: int = 10000,
                       seed: int = 0, exact: bool = False, force: bool = False,
                       ppc_draws: int = 100, plots: bool = True, arf: str | None = None,
                       rmf: str | None = None, background: str | None = None,
                       frame_time: float | None = None, n_effective: int = 1000,
                       max_steps: int = 20000, n_walkers: int | None = None,
                       quiet: bool = True, overwrite: bool = True):
    """emcee on a trained emulator (default: the shipped one), anchored to the simulator,
    in the setup it was trained for (``exact``: on the simulator instead):
    ``simxray.fit(obs, emulator=..., method="emcee")``."""
    from ..observation import Observation
    from .emulator import default_emulator_dir
    from .fitting import fit

    obs = Observation.from_pha(spectrum, arf=arf, rmf=rmf, background=background,
                               frame_time=frame_time)
    res = fit(obs, emulator=emulator or default_emulator_dir(),
              method="exact" if exact else "emcee", force=force, n_samples=n_samples,
              seed=seed, ppc_draws=ppc_draws, n_effective=n_effective, max_steps=max_steps,
              n_walkers=n_walkers, quiet=quiet)
    if out is not None:
        res.save(out, overwrite=overwrite, plots=plots)
    return res


__all__ = ["McmcResult", "Likelihood", "FastWStat", "EmceeSampler", "sample_emcee", "fit_spectrum_emcee", "synthetic_spectrum"]
