"""The NPE network: a zuko neural spline flow q(θ | x) behind an embedding net.

The flow lives in an unconstrained, standardised space: each parameter is mapped from its
prior interval [low, high] to the real line by a logit (of log θ for log-uniform priors),
then z-scored.  This is sbi's ``z_score_theta='transform_to_unconstrained'`` with a
per-prior choice of scale, so posterior samples can never fall outside the prior bounds.

:class:`NPEModel` holds the embedding and the flow; its ``flow`` is a plain
:class:`zuko.flows.Flow`, so the same weights serve sbi (``as_sbi_estimator``, used by the
validation tools) and the fast fitting path, which imports neither sbi nor its trainer.
Training and datasets: :mod:`.npe`; directories on disk: :mod:`.saving`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import zuko
from torch import Tensor, nn
from torch.distributions import Transform, constraints

from .embedding import CovariateEmbedding, build_embedding

_EPS = 1e-6


class BoxToReal(Transform):
    """Elementwise bijection from [low, high] (log-scaled where ``log``) to standardised R."""

    domain = constraints.real
    codomain = constraints.real
    bijective = True
    sign = +1

    def __init__(self, low: Tensor, high: Tensor, log: Tensor, mean: Tensor, std: Tensor):
        super().__init__(cache_size=0)
        self.log = log.bool()
        self.lo = torch.where(self.log, torch.log(low), low)
        self.width = torch.where(self.log, torch.log(high), high) - self.lo
        self.mean, self.std = mean, std

    def __eq__(self, other: object) -> bool:
        return self is other

    def _scaled(self, x: Tensor) -> Tensor:
        t = torch.where(self.log, torch.log(x.clamp_min(1e-300)), x)
        return ((t - self.lo) / self.width).clamp(_EPS, 1.0 - _EPS)

    def _call(self, x: Tensor) -> Tensor:
        s = self._scaled(x)
        return (torch.log(s) - torch.log1p(-s) - self.mean) / self.std

    def _inverse(self, y: Tensor) -> Tensor:
        t = self.lo + self.width * torch.sigmoid(y * self.std + self.mean)
        return torch.where(self.log, torch.exp(t), t)

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        s = self._scaled(x)
        ladj = -torch.log(s) - torch.log1p(-s) - torch.log(self.width) - torch.log(self.std)
        return ladj - torch.where(self.log, torch.log(x.clamp_min(1e-300)), torch.zeros_like(x))


class ThetaTransform(zuko.lazy.LazyTransform):
    """The parameter pre-transform as a lazy zuko transform; bounds and scales are buffers."""

    def __init__(self, low: Sequence[float], high: Sequence[float], log: Sequence[bool]):
        super().__init__()
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32))
        self.register_buffer("log", torch.as_tensor(log, dtype=torch.float32))
        self.register_buffer("mean", torch.zeros(len(low)))
        self.register_buffer("std", torch.ones(len(low)))

    def forward(self, c: Tensor | None = None) -> Transform:
        return BoxToReal(self.low, self.high, self.log, self.mean, self.std)

    @torch.no_grad()
    def fit(self, theta: Tensor) -> None:
        """Z-score the logit-space parameters with a batch of prior draws."""
        self.mean.zero_()
        self.std.fill_(1.0)
        u = self.forward()(theta.float())
        self.mean.copy_(u.mean(0))
        self.std.copy_(u.std(0).clamp_min(1e-3))


def prior_scales(prior) -> tuple[list[float], list[float], list[bool]]:
    """(low, high, log-scaled?) for each varying parameter of a :class:`Prior`."""
    lo, hi, log = [], [], []
    for d in prior.varying:
        lo.append(float(d.low))
        hi.append(float(d.high))
        log.append(d.dist == "loguniform")
    return lo, hi, log


class NPEModel(nn.Module):
    """Embedding + conditional neural spline flow over bounded parameters.

    ``covariates`` (names, e.g. ``["exposure", "frame_time"]``): the network conditions on
    them too; its input x is then (B, C + K), the counts followed by the covariates (s), and
    the flow's context is the embedding plus the standardised log covariates
    (:class:`~simxray.inference.embedding.CovariateEmbedding`).  Without covariates (every
    network trained before them) x is (B, C) and the layout of the weights is unchanged.
    """

    def __init__(self, n_channels: int, low: Sequence[float], high: Sequence[float],
                 log: Sequence[bool], embedding: dict, flow: dict,
                 covariates: Sequence[str] | None = None):
        super().__init__()
        self.n_channels = int(n_channels)
        self.theta_dim = len(low)
        self.covariate_names = list(covariates or [])
        self.embedding = build_embedding(embedding, n_channels)
        features = int(embedding.get("features", 32))
        if self.covariate_names:
            self.embedding = CovariateEmbedding(self.embedding, n_channels, self.covariate_names)
            features += len(self.covariate_names)
        hidden = flow.get("hidden_features", [64, 64])
        hidden = [int(hidden)] * 2 if isinstance(hidden, int) else [int(h) for h in hidden]
        nsf = zuko.flows.NSF(features=self.theta_dim, context=features,
                             transforms=int(flow.get("transforms", 5)), hidden_features=hidden,
                             bins=int(flow.get("bins", 8)),
                             **({"passes": int(flow["passes"])} if flow.get("passes") else {}))
        self.flow = zuko.flows.Flow((ThetaTransform(low, high, log), *nsf.transform.transforms),
                                    nsf.base)

    @property
    def theta_transform(self) -> ThetaTransform:
        return self.flow.transform.transforms[0]

    @property
    def input_width(self) -> int:
        """Columns of x: the channels, then the covariates (if any)."""
        return self.n_channels + len(self.covariate_names)

    def log_prob(self, theta: Tensor, x: Tensor) -> Tensor:
        """log q(θ | x) for matching batches θ (B, P), x (B, C [+ K])."""
        return self.flow(self.embedding(x)).log_prob(theta)

    def loss(self, theta: Tensor, x: Tensor) -> Tensor:
        """Mean negative log posterior density."""
        return -self.log_prob(theta, x).mean()

    @torch.no_grad()
    def sample(self, n: int, x: Tensor, batch: int = 20000) -> Tensor:
        """n posterior draws for one spectrum x (C,) or each of several x (B, C) -> (n, [B,] P)."""
        single = x.dim() == 1
        emb = self.embedding(x.reshape(-1, x.shape[-1]))
        dist = self.flow(emb)
        parts, done = [], 0
        while done < n:
            k = min(batch, n - done)
            parts.append(dist.sample((k,)))
            done += k
        out = torch.cat(parts, 0)
        return out[:, 0] if single else out

    def as_sbi_estimator(self):
        """This model as sbi's ``ZukoFlow`` density estimator (imports sbi)."""
        from sbi.neural_nets.estimators.zuko_flow import ZukoFlow

        return ZukoFlow(self.flow, self.embedding, input_shape=torch.Size([self.theta_dim]),
                        condition_shape=torch.Size([self.input_width]))


__all__ = ["BoxToReal", "NPEModel", "ThetaTransform", "prior_scales"]
