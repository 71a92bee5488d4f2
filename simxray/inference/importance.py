"""MCMC-guided importance sampling with the exact likelihood.

Piled-up spectra have a thin, curved ridge in (norm, α, f): more pileup (higher norm,
grades kept by α, less flux in the piled core f) can give the same detected spectrum.
emcee explores it, but slowly (integrated autocorrelation times of ~80 steps on NGC 4258,
so ~10⁵ likelihood calls for 1,000 effective samples), while the batched simulator costs
little more for thousands of spectra than for one.  So:

1. a short emcee pilot (a few autocorrelation times) maps the ridge;
2. a mixture of Student-t components (ν = 5) fitted to the pilot draws by weighted EM,
   widened by ``inflate``, plus a wide defensive Student-t (10 %), is the proposal q;
3. thousands of draws from q are weighted by the exact posterior, p/q, in one batched
   pass; adaptive rounds (AMIS: every draw reweighted against the mixture of all the
   proposals so far) continue until the effective sample size reaches the target;
4. the evidence Z = E_q[p̃/q] comes with the weights (p̃ the unnormalised posterior:
   likelihood × normalised prior), with an error from their spread;
5. Pareto-smoothed importance sampling (PSIS) smooths the largest weights and gives k̂:
   the estimate is reliable when k̂ < 0.7 (Vehtari et al. 2024); otherwise the caller
   falls back to a full emcee run.

Works in emcee's sampling coordinates (log θ for log-uniform priors, θ otherwise; draws
outside the prior get zero weight).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import solve_triangular
from scipy.special import gammaln, logsumexp

from .reweight import KHAT_MAX, psis


def _chol(cov: np.ndarray) -> np.ndarray:
    P = cov.shape[0]
    cov = 0.5 * (cov + cov.T)
    scale = max(float(np.trace(cov)) / P, 1e-300)
    jitter = 1e-10 * scale
    for _ in range(10):
        try:
            return np.linalg.cholesky(cov + jitter * np.eye(P))
        except np.linalg.LinAlgError:
            jitter *= 10
    w, v = np.linalg.eigh(cov)
    return np.linalg.cholesky((v * np.maximum(w, 1e-8 * w.max())) @ v.T)


def _t_logpdf(z: np.ndarray, mean: np.ndarray, chol: np.ndarray, nu: float) -> np.ndarray:
    P = z.shape[1]
    d = solve_triangular(chol, (z - mean).T, lower=True)
    m = (d * d).sum(0)
    return (gammaln((nu + P) / 2) - gammaln(nu / 2) - 0.5 * P * math.log(nu * math.pi)
            - np.log(np.diag(chol)).sum() - 0.5 * (nu + P) * np.log1p(m / nu))


def _t_sample(rng, n: int, mean: np.ndarray, chol: np.ndarray, nu: float) -> np.ndarray:
    g = rng.standard_normal((n, mean.size)) @ chol.T
    return mean + g / np.sqrt(rng.chisquare(nu, size=(n, 1)) / nu)


def _gauss_logpdf(z, mean, chol):
    d = solve_triangular(chol, (z - mean).T, lower=True)
    return (-0.5 * (d * d).sum(0) - np.log(np.diag(chol)).sum()
            - 0.5 * z.shape[1] * math.log(2 * math.pi))


def weighted_em(z: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator,
                iters: int = 50) -> tuple[list, list, np.ndarray]:
    """Gaussian mixture (means, Cholesky factors, weights) fitted to weighted draws."""
    w = np.asarray(w, float) / np.sum(w)
    n, P = z.shape
    k = max(1, min(k, int((w > 0).sum()) // (2 * P + 2)))
    cov0 = np.cov(z.T, aweights=w).reshape(P, P)
    floor = 1e-4 * np.diag(np.diag(cov0))
    means = [z[i].copy() for i in rng.choice(n, k, replace=False, p=w)]
    chols = [_chol(cov0)] * k
    pis = np.full(k, 1.0 / k)
    for _ in range(iters):
        lr = np.vstack([math.log(pis[j]) + _gauss_logpdf(z, means[j], chols[j])
                        for j in range(k)])
        r = np.exp(lr - logsumexp(lr, axis=0)) * w
        nk = r.sum(1) + 1e-300
        pis = nk / nk.sum()
        for j in range(k):
            means[j] = (r[j][:, None] * z).sum(0) / nk[j]
            d = z - means[j]
            chols[j] = _chol((r[j][:, None] * d).T @ d / nk[j] + floor)
    keep = pis > 1e-3
    return ([m for m, q in zip(means, keep, strict=True) if q],
            [c for c, q in zip(chols, keep, strict=True) if q], pis[keep] / pis[keep].sum())


class TMixture:
    """Student-t mixture proposal with a defensive wide component and, optionally, a
    defensive network component (``network = (logpdf(z), sample(rng, n), weight)``: an
    amortised posterior's density and draws in the same coordinates)."""

    def __init__(self, means, chols, weights, wide_mean, wide_chol, nu: float = 5.0,
                 defensive: float = 0.1, network=None):
        self.means, self.chols, self.w = means, chols, np.asarray(weights, float)
        self.wide_mean, self.wide_chol = wide_mean, wide_chol
        self.nu, self.defensive = nu, defensive
        self.network = network
        self.net_w = float(network[2]) if network is not None else 0.0

    def logpdf(self, z: np.ndarray, net_lp: np.ndarray | None = None) -> np.ndarray:
        """log density at z (N, P); ``net_lp``: the network's log density at z if known."""
        body = 1.0 - self.defensive - self.net_w
        parts = [math.log(self.defensive) + _t_logpdf(z, self.wide_mean, self.wide_chol, self.nu)]
        if self.network is not None:
            if net_lp is None:
                net_lp = self.network[0](z)
            parts.append(math.log(self.net_w) + np.asarray(net_lp, float))
        for m, c, w in zip(self.means, self.chols, self.w, strict=True):
            parts.append(math.log(body * w) + _t_logpdf(z, m, c, self.nu))
        return logsumexp(np.vstack(parts), axis=0)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        k, kn, _ = rng.multinomial(n, [self.defensive, self.net_w,
                                       1.0 - self.defensive - self.net_w])
        out = [_t_sample(rng, k, self.wide_mean, self.wide_chol, self.nu)]
        if kn:
            out.append(np.asarray(self.network[1](rng, kn), float))
        comp = rng.choice(len(self.w), n - k - kn, p=self.w)
        for j in range(len(self.w)):
            m = int((comp == j).sum())
            if m:
                out.append(_t_sample(rng, m, self.means[j], self.chols[j], self.nu))
        z = np.vstack(out)
        return z[rng.permutation(len(z))]


def _tempered(lw: np.ndarray, min_ess: float) -> np.ndarray:
    """Normalised weights exp(beta lw) with the largest beta in (0, 1] whose effective sample
    size is at least ``min_ess`` (bisection; beta = 1 when the raw weights already reach it)."""
    def weights(beta: float) -> tuple[np.ndarray, float]:
        a = beta * (lw - lw.max())
        w = np.exp(a - logsumexp(a))
        return w, float(1.0 / np.sum(w * w))

    w, ess = weights(1.0)
    if ess >= min_ess:
        return w
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if weights(mid)[1] >= min_ess:
            lo = mid
        else:
            hi = mid
    return weights(lo)[0] if lo > 0 else np.full(lw.shape, 1.0 / len(lw))


def guided_importance(log_post, pilot: np.ndarray, *, n_effective: int = 1000,
                      n_samples: int = 10000, round_size: int = 4096, max_rounds: int = 4,
                      n_components: int = 8, inflate: float = 1.3, seed: int = 0,
                      temper_ess: float = 0.02, network=None) -> dict:
    """Importance sampling of ``log_post`` (vectorised, sampling coordinates) from a
    Student-t mixture fitted to ``pilot`` draws (N, P); see the module docstring.

    ``network``: ``(logpdf(z), sample(rng, n), weight)`` of the amortised posterior that
    gave the pilot, in the same coordinates: a share ``weight`` of every round's draws comes
    from it and its density enters every proposal (a defensive component: the refitted
    mixture concentrates on the high-weight region and can leave out a long, thin ridge of
    posterior mass that the calibrated network still covers, without PSIS noticing).

    Returns {x (n_samples, P) equal-weight draws, ess, khat, reliable, n_evaluations,
    rounds}.
    """
    rng = np.random.default_rng(seed)
    pilot = np.asarray(pilot, float)
    P = pilot.shape[1]
    means, chols, pis = weighted_em(pilot, np.ones(len(pilot)), n_components, rng)
    wide_cov = np.cov(pilot.T).reshape(P, P) * 4.0
    mix = TMixture(means, [c * inflate for c in chols], pis, pilot.mean(0), _chol(wide_cov),
                   network=network)
    Z, LP, NLP, props, sizes, rounds = [], [], [], [], [], []
    n_eval = 0
    ess, khat, lws = 0.0, float("inf"), None
    for _ in range(max_rounds):
        z = mix.sample(rng, round_size)
        lp = np.asarray(log_post(z), float)
        n_eval += len(z)
        Z.append(z)
        LP.append(lp)
        if network is not None:                 # the network's density, once per draw
            NLP.append(np.asarray(network[0](z), float))
        props.append(mix)
        sizes.append(len(z))
        zz, lpp = np.vstack(Z), np.concatenate(LP)
        nlp = np.concatenate(NLP) if network is not None else None
        tot = float(sum(sizes))
        logq = logsumexp(np.vstack([math.log(s / tot) + q.logpdf(zz, nlp)
                                    for q, s in zip(props, sizes, strict=True)]), axis=0)
        lw = lpp - logq
        ok = np.isfinite(lw)
        lws = np.full(lw.shape, -np.inf)
        lws[ok], khat = psis(lw[ok])
        w = np.exp(lws)
        ess = float(1.0 / np.sum(w * w))
        rounds.append({"draws": len(z), "ess": round(ess, 1), "khat": round(khat, 3),
                       "inside_prior": float(np.isfinite(lp).mean())})
        if ess >= n_effective and khat < KHAT_MAX:
            break
        # refit the mixture to all weighted draws so far (AMIS), the weights tempered
        # (w^beta, beta <= 1) so that at least ``temper_ess`` of the draws count: with a few
        # dominant weights the refit would collapse onto them (e.g. a proposal from a network
        # twice as wide as a narrow 9-parameter posterior)
        means, chols, pis = weighted_em(zz[ok], _tempered(lw[ok], temper_ess * ok.sum()),
                                        n_components, rng)
        mix = TMixture(means, [c * inflate for c in chols], pis, pilot.mean(0), _chol(wide_cov),
                       network=network)
    zz = np.vstack(Z)
    w = np.exp(lws)
    pick = rng.choice(len(zz), n_samples, replace=True, p=w / w.sum())
    # evidence: Z = E_q[p~/q] with the raw weights (every draw, AMIS mixture density)
    n = len(lw)
    raw = lw[ok]
    logz = float(logsumexp(raw) - math.log(n))
    wn = np.exp(raw - logsumexp(raw))
    logz_err = float(math.sqrt(max(np.sum(wn * wn) - 1.0 / n, 0.0)))
    return {"x": zz[pick], "ess": ess, "khat": khat, "logz": logz, "logz_err": logz_err,
            "reliable": bool(ess >= n_effective and khat < KHAT_MAX),
            "n_evaluations": n_eval, "rounds": rounds}


__all__ = ["guided_importance", "weighted_em", "TMixture"]
