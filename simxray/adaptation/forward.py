"""Fit-space source models and the calibrated pileup kernel used by the adaptation.

Source parameters live in a *fit space*: log10 of the parameters named in ``log`` (norms,
column densities), the others as they are.  :class:`FitSpaceModel` wraps the core
:class:`simxray.models.Model` in that space and back-propagates through it by forward
finite differences (one extra batched model evaluation per parameter), so fits of any
expression can use torch's autograd for the pileup part.

:class:`EnergyDavis` binds the one Davis (2001) implementation,
:meth:`simxray.instrument.pileup.Pileup.kernel_counts`, with its two adaptation options
(see docs/adaptation.md):

* the grade-migration probability of a pile depends on the pile's *total* energy E (the
  kernel energy the pile lands on), ``alpha(E) = clip(alpha0 + alpha1 ln(E / 2 keV), 0, 1)``,
  so a pile of p photons landing at E keeps a good grade with probability
  ``alpha(E)^(p-1)``.  alpha1 = 0 is Davis' model exactly (with the exact p!);
* a multiplicative efficiency ``eff`` on the piled counts (single-photon grade losses and
  cross-calibration of the piled instrument against the gratings).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import ParameterError
from ..instrument.pileup import ALPHA_PIVOT, MAX_NUM_TERMS, alpha_of_energy, get_pileup
from ..instrument.response import Response

#: nuisance parameters calibrated from pairs, in order
PHI_NAMES: tuple[str, ...] = ("alpha0", "alpha1", "f", "eff")
#: pivot energy (keV) of alpha(E) = alpha0 + alpha1 ln(E / E_PIVOT)
E_PIVOT = ALPHA_PIVOT
F_MIN = 0.5  # lower bound of f in the calibration's transform (Sherpa's soft limit is 0.9)


class FitSpaceModel:
    """A model expression with named free parameters in fit space (log10 where ``log``).

    ``flux(theta, edges)``: theta (B, P) torch (fit space) → (B, N) photons/cm²/s per bin,
    differentiable with respect to theta by finite differences.
    """

    def __init__(self, expression: str, free: Sequence[str], log: Sequence[str] = (),
                 fixed: dict[str, float] | None = None, step: float = 1e-5):
        from ..models import Model

        self.model = Model(expression)
        self.expression = expression
        self.names = list(free)
        for n in list(free) + list(log) + list(fixed or {}):
            self.model.lookup(n)  # raises ParameterError for unknown names
        unknown = [n for n in log if n not in free]
        if unknown:
            raise ParameterError(f"log-scaled parameters must be free; {', '.join(unknown)} is not",
                                 field="model.log")
        self.log = np.array([n in log for n in free])
        self.fixed = dict(fixed or {})
        self.step = float(step)
        lims = [self.model.lookup(n).parameter for n in free]
        self._lo = np.array([p.min for p in lims], float)
        self._hi = np.array([p.max for p in lims], float)

    @property
    def dim(self) -> int:
        return len(self.names)

    def to_natural(self, theta: np.ndarray) -> np.ndarray:
        """Fit space (…, P) → natural parameter values (…, P)."""
        t = np.asarray(theta, float)
        return np.where(self.log, 10.0 ** t, t)

    def to_fit(self, values: np.ndarray) -> np.ndarray:
        """Natural values (…, P) → fit space."""
        v = np.asarray(values, float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.log, np.log10(np.where(self.log, v, 1.0)), v)

    def params(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """{name: (B,)} natural values (clipped to the hard limits) plus the fixed ones."""
        nat = np.clip(self.to_natural(np.atleast_2d(theta)), self._lo, self._hi)
        out = {n: nat[:, i] for i, n in enumerate(self.names)}
        out.update({k: np.full(nat.shape[0], v) for k, v in self.fixed.items()})
        return out

    def evaluate(self, theta: np.ndarray, edges: np.ndarray) -> np.ndarray:
        """(B, N) flux for fit-space theta (B, P), numpy."""
        t = np.atleast_2d(np.asarray(theta, float))
        out = self.model.evaluate(edges, self.params(t))
        return np.ascontiguousarray(np.broadcast_to(out, (t.shape[0], len(edges) - 1)))

    def flux(self, theta: torch.Tensor, edges: np.ndarray) -> torch.Tensor:
        """Differentiable (B, N) float64 flux for fit-space theta (B, P)."""
        return _FluxFunction.apply(theta, self, np.asarray(edges, float))


class _FluxFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, theta: torch.Tensor, model: FitSpaceModel, edges: np.ndarray):
        t = theta.detach().cpu().double().numpy()
        f0 = model.evaluate(t, edges)
        ctx.save_for_backward(theta)
        ctx.model, ctx.edges, ctx.f0 = model, edges, f0
        return torch.tensor(f0, dtype=torch.float64, device=theta.device)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (theta,) = ctx.saved_tensors
        model, edges, f0 = ctx.model, ctx.edges, ctx.f0
        t = theta.detach().cpu().double().numpy()
        B, P = t.shape
        h = model.step
        pert = np.repeat(t[None], P, axis=0)  # (P, B, P)
        pert[np.arange(P), :, np.arange(P)] += h
        fp = model.evaluate(pert.reshape(P * B, P), edges).reshape(P, B, -1)
        jac = (fp - f0[None]) / h  # (P, B, N)
        g = grad.detach().cpu().double().numpy()
        out = np.einsum("pbn,bn->bp", jac, g)
        return torch.as_tensor(out, dtype=theta.dtype, device=theta.device), None, None


class EnergyDavis:
    """The Davis kernel with alpha(E) and an efficiency, bound to a response and channels.

    A thin binding of :meth:`simxray.instrument.pileup.Pileup.kernel_counts` (the one
    pileup implementation; exact p!) that fixes ``ftime``, ``fracexp``, ``n``, ``g0`` and
    ``nterms`` per instance (Sherpa's defaults but the frame time) and selects channels.
    ``counts(flux, phi)``: flux (B, K) on :attr:`source_edges` (torch float64), phi a dict
    of (B,) tensors with ``alpha0, alpha1, f, eff`` → expected counts (B, C_sel) in the
    selected channels (differentiable).
    """

    def __init__(self, response: Response, channels: slice | None = None, *, grid: str | None = None,
                 ftime: float = 3.241, fracexp: float = 0.987, n: float = 1.0, g0: float = 1.0,
                 nterms: int = MAX_NUM_TERMS):
        self.response = response
        self.pileup = get_pileup(response, grid)
        self.grid = self.pileup.grid
        self.slice = channels or slice(0, response.n_channels)
        self.ftime, self.fracexp, self.n, self.g0 = float(ftime), float(fracexp), float(n), float(g0)
        self.nterms = int(nterms)
        if not (self.ftime > 0 and 0 < self.fracexp <= 1 and self.n > 0 and 0 < self.g0 <= 1
                and 1 <= self.nterms <= MAX_NUM_TERMS):
            raise ParameterError("expected ftime > 0, 0 < fracexp <= 1, n > 0, 0 < g0 <= 1, "
                                 "1 <= nterms <= 30", field="pileup")
        self.K = self.pileup.source_edges.size - 1
        self.K_out = int(self.pileup.n_out)
        self._arf = torch.as_tensor(self.pileup.arf[: self.K], dtype=torch.float64)
        self._rmf = torch.as_tensor(response.matrix[:, self.slice].toarray(), dtype=torch.float64)

    @property
    def source_edges(self) -> np.ndarray:
        return self.pileup.source_edges

    @property
    def n_channels(self) -> int:
        return self.slice.stop - self.slice.start

    def kernel_counts(self, flux: torch.Tensor, phi: dict[str, torch.Tensor]
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """(piled counts per kernel bin (B, K_out), pileup fraction (B,))."""
        B = flux.shape[0]
        alpha0, alpha1, f, eff = (torch.as_tensor(phi[k], dtype=torch.float64).reshape(-1).expand(B)
                                  for k in PHI_NAMES)
        fixed = {"g0": self.g0, "n": self.n, "ftime": self.ftime, "fracexp": self.fracexp}
        t = {k: torch.full((B,), v, dtype=torch.float64) for k, v in fixed.items()}
        t.update(alpha=alpha0, f=f, nterms=torch.full((B,), self.nterms, dtype=torch.int64))
        out = self.pileup.kernel_counts(flux, t, alpha_slope=alpha1, efficiency=eff, factorial="exact")
        return out.counts, out.fraction

    def counts(self, flux: torch.Tensor, phi: dict[str, torch.Tensor]) -> torch.Tensor:
        """Expected counts (B, C_sel) in the selected channels."""
        return self.counts_and_fraction(flux, phi)[0]

    def counts_and_fraction(self, flux: torch.Tensor, phi: dict[str, torch.Tensor]
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        kc, frac = self.kernel_counts(flux, phi)
        per_bin = self.pileup.to_response_bins(kc)
        return (per_bin @ self._rmf).clamp_min(0.0), frac

    def unpiled(self, flux_response: torch.Tensor) -> torch.Tensor:
        """Counts (B, C_sel) without pileup for flux on the response's energy bins."""
        ae = torch.as_tensor(self.response.arf_exposure, dtype=torch.float64)
        return (flux_response * ae) @ self._rmf


def phi_tensors(phi: dict[str, float | np.ndarray], batch: int) -> dict[str, torch.Tensor]:
    """{name: (batch,) float64 tensor} from scalars or arrays, checking names."""
    out = {}
    for k in PHI_NAMES:
        if k not in phi:
            raise ParameterError(f"missing; expected {', '.join(PHI_NAMES)}", field=f"phi.{k}")
        t = torch.as_tensor(np.asarray(phi[k], float), dtype=torch.float64).reshape(-1)
        out[k] = t.expand(batch) if t.numel() == 1 else t
    return out


#: the former name of :class:`FitSpaceModel` (``simxray.models.Model`` is the core model)
SourceModel = FitSpaceModel

__all__ = ["E_PIVOT", "F_MIN", "PHI_NAMES", "EnergyDavis", "FitSpaceModel", "SourceModel",
           "alpha_of_energy", "phi_tensors"]
