"""Source-parameter posteriors from HETG first orders (nearly pileup-free).

:func:`fit_gratings` fits a model jointly to several first-order arms by Poisson maximum
likelihood (Cash) in fit space (log10 for log-scaled parameters) and returns a Laplace
(Gaussian) posterior: the maximum and the inverse Fisher information, with a weak Gaussian
prior (sd 3 in fit space) that only matters for directions the gratings leave free.
``method="emcee"`` refines it with an affine-invariant ensemble sampler started from the
Laplace approximation and summarises the samples by their mean and covariance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import SimxrayError
from .forward import FitSpaceModel
from .pairs import GratingArm

PRIOR_SD = 3.0  # weak Gaussian prior (fit space) around the start values
_H = 1e-4       # finite-difference step (fit space)


@dataclass
class GratingPosterior:
    """Gaussian summary of p(θ | gratings) in fit space."""

    names: list[str]
    log: list[bool]
    mean: np.ndarray
    cov: np.ndarray
    cstat: float = float("nan")
    n_channels: int = 0
    counts: float = 0.0
    method: str = "laplace"
    samples: np.ndarray | None = field(default=None, repr=False)

    @property
    def sd(self) -> np.ndarray:
        return np.sqrt(np.diag(self.cov))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n draws (n, P) in fit space (from the stored samples when emcee was used)."""
        if self.samples is not None and len(self.samples) >= n:
            return self.samples[rng.choice(len(self.samples), n, replace=False)]
        return rng.multivariate_normal(self.mean, self.cov, size=n, method="cholesky")

    def to_dict(self) -> dict:
        return {"names": self.names, "log10": self.log, "mean": self.mean.tolist(),
                "cov": self.cov.tolist(), "sd": self.sd.tolist(), "cstat": self.cstat,
                "n_channels": self.n_channels, "counts": self.counts, "method": self.method}


def _expected(arms: list[GratingArm], source: FitSpaceModel, theta: np.ndarray) -> list[np.ndarray]:
    return [arm.fold(source.evaluate(theta, arm.edges)) for arm in arms]


def _nll(arms, source, theta: np.ndarray) -> np.ndarray:
    """Poisson negative log-likelihood (without the data-only term) for theta (B, P) → (B,)."""
    out = np.zeros(len(theta))
    for arm, mu in zip(arms, _expected(arms, source, theta), strict=True):
        mu = np.maximum(mu, 1e-30)
        out += (mu - arm.counts * np.log(mu)).sum(-1)
    return out


def fit_gratings(arms: list[GratingArm], source: FitSpaceModel, start: np.ndarray, *,
                 method: str = "laplace", n_samples: int = 2000,
                 rng: np.random.Generator | None = None, name: str = "gratings") -> GratingPosterior:
    """Joint Poisson fit of the arms → :class:`GratingPosterior` (see module doc)."""
    if method not in ("laplace", "emcee"):
        raise SimxrayError("expected 'laplace' or 'emcee'", field="grating posterior method")
    P = source.dim
    x0 = np.array(start, dtype=float).reshape(P)
    # rescale a log-scaled normalisation-like parameter so that the total counts match
    tot = sum(a.counts.sum() for a in arms)
    pred = sum(m.sum() for m in _expected(arms, source, x0[None]))
    norm_idx = [i for i, n in enumerate(source.names) if n.lower().endswith("norm") and source.log[i]]
    if norm_idx and pred > 0 and tot > 0:
        x0[norm_idx[0]] += np.log10(tot / pred)
    prior_mu = x0.copy()
    prior_prec = np.eye(P) / PRIOR_SD**2

    def expected_and_jacobian(x):
        pts = np.vstack([x, x + _H * np.eye(P)])
        mus = _expected(arms, source, pts)
        return [m[0] for m in mus], [(m[1:] - m[:1]) / _H for m in mus]  # (C,), (P, C)

    def objective(x, mus):
        v = sum(float(np.sum(np.maximum(m, 1e-30) - a.counts * np.log(np.maximum(m, 1e-30))))
                for a, m in zip(arms, mus, strict=True))
        return v + 0.5 * float((x - prior_mu) @ prior_prec @ (x - prior_mu))

    # Fisher scoring with Levenberg-Marquardt damping
    x = x0
    mus, jacs = expected_and_jacobian(x)
    obj = objective(x, mus)
    lam = 1e-3
    fisher = prior_prec.copy()
    for _ in range(100):
        grad = prior_prec @ (x - prior_mu)
        fisher = prior_prec.copy()
        for a, m, J in zip(arms, mus, jacs, strict=True):
            m = np.maximum(m, 1e-30)
            grad += J @ (1.0 - a.counts / m)
            fisher += (J / m) @ J.T
        step = -np.linalg.solve(fisher + lam * np.diag(np.diag(fisher)), grad)
        step = np.clip(step, -1.0, 1.0)
        x_new = x + step
        mus_new = [m[0] for m in _expected(arms, source, x_new[None])]
        obj_new = objective(x_new, mus_new)
        if obj_new <= obj:
            gain = obj - obj_new
            x, obj = x_new, obj_new
            mus, jacs = expected_and_jacobian(x)
            lam = max(lam / 3.0, 1e-7)
            if gain < 1e-6 or np.abs(step).max() < 1e-6:
                break
        else:
            lam *= 5.0
            if lam > 1e8:
                break
    xm = x
    fisher = prior_prec.copy()
    cstat, n_ch = 0.0, 0
    for a, m, J in zip(arms, mus, jacs, strict=True):
        m = np.maximum(m, 1e-30)
        fisher += (J / m) @ J.T
        xc = a.counts
        cstat += float(2 * np.sum(m - xc + np.where(xc > 0, xc * np.log(np.maximum(xc, 1e-30) / m), 0.0)))
        n_ch += xc.size
    cov = np.linalg.inv(fisher)
    cov = 0.5 * (cov + cov.T)
    post = GratingPosterior(list(source.names), [bool(b) for b in source.log], xm, cov, cstat, n_ch,
                            float(tot), "laplace")
    if method == "emcee":
        post = _emcee(arms, source, post, prior_mu, n_samples, rng or np.random.default_rng(0))
    return post


def _emcee(arms, source, post: GratingPosterior, prior_mu, n_samples: int,
           rng: np.random.Generator) -> GratingPosterior:
    import emcee

    P = len(post.mean)
    walkers = max(4 * P, 12)

    def log_prob(x):  # vectorised: x (W, P)
        return -_nll(arms, source, x) - 0.5 * np.sum(((x - prior_mu) / PRIOR_SD) ** 2, axis=1)

    p0 = rng.multivariate_normal(post.mean, post.cov, size=walkers)
    sampler = emcee.EnsembleSampler(walkers, P, log_prob, vectorize=True)
    sampler.random_state = np.random.RandomState(int(rng.integers(2**31))).get_state()
    burn = 200
    steps = burn + max(int(np.ceil(n_samples / walkers)), 50)
    sampler.run_mcmc(p0, steps, progress=False)
    chain = sampler.get_chain(discard=burn, flat=True)
    mean = chain.mean(0)
    cov = np.atleast_2d(np.cov(chain.T))
    return GratingPosterior(post.names, post.log, mean, cov, post.cstat, post.n_channels, post.counts,
                            "emcee", chain)
