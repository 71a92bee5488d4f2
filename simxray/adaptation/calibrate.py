"""Hierarchical calibration of the pileup nuisance parameters from grating/piled pairs.

Per pair i, with source parameters θ_i (fit space) and nuisance ψ_i (transformed φ):

* the gratings give a Gaussian posterior N(m_i, S_i) for θ_i (:mod:`.grating`);
* the piled spectrum x_i has the Poisson likelihood of :class:`.forward.EnergyDavis`
  with φ = (alpha0, alpha1, f, eff), alpha(E) = alpha0 + alpha1 ln(E / 2 keV);
* θ_i is marginalised over the grating posterior by a Laplace approximation of
  ∫ p(x_i | θ, φ) N(θ; m_i, S_i) dθ: a joint maximum over (θ_i, ψ_i) and the ψ-block of
  the inverse Hessian (finite differences of autograd gradients).

ψ = (logit alpha0, alpha1, logit((f - 0.5) / 0.5), ln eff).  Weak priors keep single-pair
fits finite (N(0, 1.5) on logit alpha0, N(0, 0.5) on alpha1, N(2, 1.5) on logit f,
N(0, 0.2) on ln eff); they are divided out of each pair's Gaussian summary before the
population fit.  Population: ψ_i ~ N(μ, diag τ²), each pair contributing its
likelihood summary N(ψ̂_i, Σ_i): maximum marginal likelihood over (μ, τ), giving the
population distribution and shrunken per-pair estimates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize

from ..errors import FileFormatError, SimxrayError
from .forward import F_MIN, PHI_NAMES, EnergyDavis, FitSpaceModel
from .grating import GratingPosterior, fit_gratings
from .pairs import Pair

ALPHA_MODELS = ("loglinear", "constant")
PSI_PRIOR_MEAN = np.array([0.0, 0.0, 2.0, 0.0])
PSI_PRIOR_SD = np.array([1.5, 0.5, 1.5, 0.2])
PSI_NAMES = ("logit_alpha0", "alpha1", "logit_f", "ln_eff")


def psi_to_phi(psi: np.ndarray) -> dict[str, np.ndarray]:
    """ψ (..., 4) → {alpha0, alpha1, f, eff} natural values."""
    s = np.asarray(psi, float)
    return {"alpha0": 1.0 / (1.0 + np.exp(-s[..., 0])), "alpha1": s[..., 1],
            "f": F_MIN + (1.0 - F_MIN) / (1.0 + np.exp(-s[..., 2])), "eff": np.exp(s[..., 3])}


def phi_to_psi(phi: dict[str, float]) -> np.ndarray:
    a0 = np.clip(float(phi["alpha0"]), 1e-6, 1 - 1e-6)
    fr = np.clip((float(phi["f"]) - F_MIN) / (1.0 - F_MIN), 1e-6, 1 - 1e-6)
    return np.array([np.log(a0 / (1 - a0)), float(phi["alpha1"]), np.log(fr / (1 - fr)),
                     np.log(float(phi["eff"]))])


def _psi_to_phi_torch(psi: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"alpha0": torch.sigmoid(psi[:, 0]), "alpha1": psi[:, 1],
            "f": F_MIN + (1.0 - F_MIN) * torch.sigmoid(psi[:, 2]), "eff": torch.exp(psi[:, 3])}


@dataclass
class Calibration:
    """Result of :func:`calibrate`: per-pair estimates and the population of φ."""

    alpha_model: str
    mean: np.ndarray               # μ (4,) in ψ space
    tau: np.ndarray                # τ (4,) population sd in ψ space (0 for fixed components)
    mean_se: np.ndarray            # standard errors of μ
    free: list[bool]
    pairs: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def sample_psi(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n draws (n, 4) of ψ from the population (parameter uncertainty of μ included)."""
        sd = np.sqrt(self.tau**2 + self.mean_se**2)
        return self.mean + sd * rng.standard_normal((n, 4)) * np.asarray(self.free, float)

    def sample_phi(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """n draws of φ = {alpha0, alpha1, f, eff} from the population."""
        return psi_to_phi(self.sample_psi(n, rng))

    def phi_mean(self) -> dict[str, float]:
        return {k: float(v) for k, v in psi_to_phi(self.mean).items()}

    def to_dict(self) -> dict:
        return {"format": "simxray-pileup-calibration", "format_version": 1,
                "alpha_model": self.alpha_model, "psi_names": list(PSI_NAMES),
                "phi_names": list(PHI_NAMES), "free": self.free,
                "population": {"mean": self.mean.tolist(), "tau": self.tau.tolist(),
                               "mean_se": self.mean_se.tolist(), "phi_at_mean": self.phi_mean()},
                "pairs": self.pairs, "settings": self.settings}

    @classmethod
    def from_dict(cls, d: dict, path=None) -> Calibration:
        try:
            pop = d["population"]
            return cls(d["alpha_model"], np.asarray(pop["mean"], float), np.asarray(pop["tau"], float),
                       np.asarray(pop["mean_se"], float), list(d["free"]), list(d.get("pairs", [])),
                       dict(d.get("settings", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise FileFormatError(f"not a pileup calibration ({exc.__class__.__name__}: {exc}); expected "
                                  "the calibration.json written by 'simxray adapt'", path=path) from None

    def save(self, path: str | os.PathLike) -> None:
        from ..io.modeldir import write_json

        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        from ..io.modeldir import read_json

        return cls.from_dict(read_json(path), path=path)


class PairGroup:
    """Pairs sharing one piled response, frame time and channel range (batched together)."""

    def __init__(self, pairs: list[Pair], source: FitSpaceModel, grid: str | None):
        p0 = pairs[0]
        self.pairs = pairs
        self.source = source
        self.davis = EnergyDavis(p0.piled_response, p0.piled_slice, grid=grid, ftime=p0.frame_time)
        self.x = torch.as_tensor(np.stack([p.piled_counts for p in pairs]), dtype=torch.float64)

    def expected(self, theta: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        flux = self.source.flux(theta, self.davis.source_edges)
        return self.davis.counts(flux, _psi_to_phi_torch(psi))

    def nll(self, theta: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        """Poisson negative log-likelihood per pair (B,) (without the data-only term)."""
        mu = self.expected(theta, psi).clamp_min(1e-30)
        return (mu - self.x * torch.log(mu)).sum(-1)


def response_key(resp) -> str:
    """Content hash of a piled response (ARF, RMF, exposure): equal files group together."""
    import hashlib

    h = hashlib.sha256()
    m = resp.matrix
    for a in (resp.specresp, resp.energ_lo, m.data, m.indices, m.indptr, np.array([resp.exposure])):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def group_pairs(pairs: list[Pair], source: FitSpaceModel, grid: str | None) -> list[PairGroup]:
    """Pairs grouped by identical piled response, frame time and channel range."""
    groups: dict[tuple, list[Pair]] = {}
    keys: dict[int, str] = {}
    for p in pairs:
        rk = keys.setdefault(id(p.piled_response), response_key(p.piled_response))
        key = (rk, p.frame_time, p.piled_slice.start, p.piled_slice.stop)
        groups.setdefault(key, []).append(p)
    return [PairGroup(v, source, grid) for v in groups.values()]


def grating_posteriors(pairs: list[Pair], source: FitSpaceModel, start: np.ndarray, *,
                       method: str = "laplace", rng: np.random.Generator | None = None,
                       progress=None) -> list[GratingPosterior]:
    """The grating posterior of every pair."""
    rng = rng or np.random.default_rng(0)
    out = []
    for p in pairs:
        out.append(fit_gratings(p.arms, source, start, method=method, rng=rng, name=p.name))
        if progress is not None:
            progress.update(1)
    return out


def _fit_group(group: PairGroup, posts: list[GratingPosterior], free: np.ndarray,
               psi_start: np.ndarray, max_iter: int = 60, tol: float = 1e-4
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Joint MAP of (θ_i, ψ_i) for a group by Fisher scoring with Levenberg-Marquardt damping.

    Returns (θ̂ (B, P), ψ̂ (B, 4), information matrices (B, D, D)): the expected Fisher
    information of the piled spectrum plus the grating and ψ prior precisions, D = P + free ψ.
    """
    B, P = len(group.pairs), group.source.dim
    fi = np.flatnonzero(free)
    D = P + fi.size
    m = np.stack([q.mean for q in posts])
    prior_prec = np.zeros((B, D, D))
    prior_prec[:, :P, :P] = np.stack([np.linalg.inv(q.cov) for q in posts])
    prior_prec[:, P:, P:] = np.diag(1.0 / PSI_PRIOR_SD[fi] ** 2)
    prior_mean = np.concatenate([m, np.broadcast_to(PSI_PRIOR_MEAN[fi], (B, fi.size))], 1)
    x = group.x.numpy()

    def forward(z: np.ndarray) -> np.ndarray:
        psi = np.broadcast_to(psi_start, (len(z), 4)).copy()
        psi[:, fi] = z[:, P:]
        with torch.no_grad():
            return group.expected(torch.as_tensor(z[:, :P]), torch.as_tensor(psi)).numpy()

    def objective(z: np.ndarray, mu: np.ndarray, idx: np.ndarray) -> np.ndarray:
        mu = np.maximum(mu, 1e-30)
        d = z - prior_mean[idx]
        return (mu - x[idx] * np.log(mu)).sum(-1) + \
            0.5 * np.einsum("bi,bij,bj->b", d, prior_prec[idx], d)

    z = np.concatenate([m, np.broadcast_to(psi_start[fi], (B, fi.size))], 1)
    mu = forward(z)
    obj = objective(z, mu, np.arange(B))
    lam = np.full(B, 1e-2)
    active = np.ones(B, bool)
    h = 1e-5
    info = prior_prec.copy()
    for it in range(max_iter):
        idx = np.flatnonzero(active)
        if os.environ.get('SIMXRAY_DEBUG'):
            print('iter', it, idx.size, obj.sum())
        if idx.size == 0:
            break
        za = z[idx]
        zp = (za[None] + h * np.eye(D)[:, None, :]).reshape(D * idx.size, D)
        J = ((forward(zp).reshape(D, idx.size, -1) - mu[idx][None]) / h).transpose(1, 2, 0)  # (b, C, D)
        mu_a = np.maximum(mu[idx], 1e-30)
        grad = np.einsum("bcd,bc->bd", J, 1.0 - x[idx] / mu_a) + \
            np.einsum("bij,bj->bi", prior_prec[idx], za - prior_mean[idx])
        F = np.einsum("bcd,bc,bce->bde", J, 1.0 / mu_a, J) + prior_prec[idx]
        info[idx] = F
        damp = F + lam[idx, None, None] * np.einsum("bii->bi", F)[:, :, None] * np.eye(D)
        step = -np.linalg.solve(damp, grad[..., None])[..., 0]
        step = np.clip(step, -1.0, 1.0)
        z_new = za + step
        mu_new = forward(z_new)
        obj_new = objective(z_new, mu_new, idx)
        ok = obj_new <= obj[idx]
        gain = obj[idx] - obj_new
        z[idx[ok]], mu[idx[ok]], obj[idx[ok]] = z_new[ok], mu_new[ok], obj_new[ok]
        lam[idx] = np.where(ok, np.maximum(lam[idx] / 3.0, 1e-6), lam[idx] * 5.0)
        done = (ok & (np.abs(step).max(1) < tol)) | (ok & (gain < 1e-3)) | (lam[idx] > 1e8)
        active[idx[done]] = False
    psi = np.broadcast_to(psi_start, (B, 4)).copy()
    psi[:, fi] = z[:, P:]
    return z[:, :P], psi, info


def _likelihood_summary(mean: np.ndarray, cov: np.ndarray, free: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Divide the weak ψ prior out of a Gaussian posterior summary (free components)."""
    fi = np.flatnonzero(free)
    lam_post = np.linalg.inv(cov[np.ix_(fi, fi)])
    lam_prior = np.diag(1.0 / PSI_PRIOR_SD[fi] ** 2)
    lam = lam_post - lam_prior
    w, v = np.linalg.eigh(0.5 * (lam + lam.T))
    w = np.maximum(w, 1e-6)  # directions the pair does not constrain: (almost) no information
    lam = (v * w) @ v.T
    rhs = lam_post @ mean[fi] - lam_prior @ PSI_PRIOR_MEAN[fi]
    return np.linalg.solve(lam, rhs), lam


def population_fit(means: list[np.ndarray], precisions: list[np.ndarray], free: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normal-normal model ψ̂_i ~ N(μ, Λ_i^-1 + diag τ²): maximum marginal likelihood (μ, τ, se μ)."""
    fi = np.flatnonzero(free)
    k = fi.size
    n = len(means)
    Ms = np.stack(means)
    covs = np.stack([np.linalg.inv(lam) for lam in precisions])

    def negll(v):
        mu, log_tau = v[:k], v[k:]
        C = covs + np.diag(np.exp(2 * log_tau))[None]
        d = Ms - mu
        _, logdet = np.linalg.slogdet(C)
        quad = np.einsum("bi,bi->b", d, np.linalg.solve(C, d[..., None])[..., 0])
        # weak penalty (a N(0, 1) prior on tau) keeps tau finite with few pairs
        return 0.5 * float(np.sum(logdet + quad)) + 0.5 * float(np.sum(np.exp(2 * log_tau)))

    w = np.stack([np.diag(lam) for lam in precisions])
    mu0 = (Ms * w).sum(0) / w.sum(0)
    best = None
    for lt in (-3.0, -1.0):
        res = minimize(negll, np.concatenate([mu0, np.full(k, lt)]), method="L-BFGS-B",
                       bounds=[(None, None)] * k + [(-8.0, 2.0)] * k)
        if best is None or res.fun < best.fun:
            best = res
    mu, tau = best.x[:k], np.exp(best.x[k:])
    T = np.diag(tau**2)
    info = sum(np.linalg.inv(covs[i] + T) for i in range(n))
    se = np.sqrt(np.diag(np.linalg.inv(info)))
    out_mu, out_tau, out_se = PSI_PRIOR_MEAN.copy(), np.zeros(4), np.zeros(4)
    out_mu[fi], out_tau[fi], out_se[fi] = mu, np.where(tau < 1e-3, 0.0, tau), se
    return out_mu, out_tau, out_se


def calibrate(pairs: list[Pair], source: FitSpaceModel, start: np.ndarray, *,
              alpha_model: str = "loglinear", grid: str | None = None,
              posteriors: list[GratingPosterior] | None = None, grating_method: str = "laplace",
              rng: np.random.Generator | None = None, quiet: bool = True) -> Calibration:
    """Hierarchical calibration of φ from pairs (see module doc)."""
    from tqdm.auto import tqdm

    if alpha_model not in ALPHA_MODELS:
        raise SimxrayError(f"expected one of {', '.join(ALPHA_MODELS)}", field="alpha_model")
    if not pairs:
        raise SimxrayError("no pairs to calibrate", field="pairs")
    rng = rng or np.random.default_rng(0)
    if posteriors is None:
        with tqdm(total=len(pairs), desc="grating fits", disable=quiet) as bar:
            posteriors = grating_posteriors(pairs, source, start, method=grating_method, rng=rng,
                                            progress=bar)
    free = np.array([True, alpha_model == "loglinear", True, True])
    psi_start = np.array([0.0, 0.0, 2.0, 0.0])
    index = {id(p): i for i, p in enumerate(pairs)}
    P = source.dim
    fi = np.flatnonzero(free)
    results: list[dict | None] = [None] * len(pairs)
    summaries: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(pairs)
    for group in tqdm(group_pairs(pairs, source, grid), desc="pair fits", disable=quiet):
        idx = [index[id(p)] for p in group.pairs]
        gp = [posteriors[i] for i in idx]
        th, psi, H = _fit_group(group, gp, free, psi_start)
        with torch.no_grad():
            mu_hat, frac = group.davis.counts_and_fraction(
                source.flux(torch.as_tensor(th), group.davis.source_edges),
                _psi_to_phi_torch(torch.as_tensor(psi)))
        for b, i in enumerate(idx):
            try:
                cov = np.linalg.inv(H[b])
            except np.linalg.LinAlgError:
                cov = np.linalg.pinv(H[b])
            cov = 0.5 * (cov + cov.T)
            cov_psi = np.zeros((4, 4))
            cov_psi[np.ix_(fi, fi)] = cov[P:, P:]
            summaries[i] = _likelihood_summary(psi[b], cov_psi, free)
            x = group.x[b].numpy()
            m = np.maximum(mu_hat[b].numpy(), 1e-30)
            cst = float(2 * np.sum(m - x + np.where(x > 0, x * np.log(np.maximum(x, 1e-30) / m), 0.0)))
            p = pairs[i]
            results[i] = {
                "name": p.name, "grating": gp[b].to_dict(),
                "theta_joint": th[b].tolist(), "theta_joint_sd": np.sqrt(np.diag(cov)[:P]).tolist(),
                "psi": psi[b].tolist(), "psi_cov": cov_psi.tolist(),
                "phi": {k: float(v) for k, v in psi_to_phi(psi[b]).items()},
                "pileup_fraction": float(frac[b]), "cstat": cst, "n_channels": int(x.size),
                "piled_counts": float(x.sum()), "truth": p.truth,
                "psi_likelihood_mean": summaries[i][0].tolist(),
                "psi_likelihood_precision": summaries[i][1].tolist(),
            }
    means = [s[0] for s in summaries]
    precs = [s[1] for s in summaries]
    mu, tau, se = population_fit(means, precs, free)
    # shrunken per-pair estimates under the population
    T_inv = np.diag(1.0 / np.maximum(tau[fi], 1e-3) ** 2)
    for i, (mi, lam) in enumerate(zip(means, precs, strict=True)):
        post_prec = lam + T_inv
        shr = mu.copy()
        shr[fi] = np.linalg.solve(post_prec, lam @ mi + T_inv @ mu[fi])
        results[i]["psi_shrunk"] = shr.tolist()
        results[i]["phi_shrunk"] = {k: float(v) for k, v in psi_to_phi(shr).items()}
    settings = {"grid": grid, "grating_method": grating_method, "model": source.expression,
                "free_parameters": source.names, "log10": [bool(b) for b in source.log],
                "fixed": source.fixed, "psi_prior_mean": PSI_PRIOR_MEAN.tolist(),
                "psi_prior_sd": PSI_PRIOR_SD.tolist()}
    return Calibration(alpha_model, mu, tau, se, [bool(b) for b in free], results, settings)


def write_calibration(path: str | os.PathLike, cal: Calibration, extra: dict | None = None) -> Path:
    """calibration.json with provenance (atomic)."""
    from ..io.modeldir import write_json
    from ..provenance import provenance

    d = cal.to_dict()
    d["provenance"] = provenance(**(extra or {}))
    write_json(path, d)
    return Path(path)


def load_calibration(path: str | os.PathLike) -> Calibration:
    return Calibration.load(path)


__all__ = ["Calibration", "calibrate", "response_key", "population_fit", "psi_to_phi", "phi_to_psi",
           "grating_posteriors", "group_pairs", "write_calibration", "load_calibration"]
