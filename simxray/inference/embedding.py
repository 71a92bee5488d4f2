"""Embedding networks that compress a count spectrum into a short summary vector.

Every network takes raw counts (B, C) (float), applies a variance-stabilising transform
(``log1p`` or ``anscombe``), standardises each channel with statistics measured on the
training set (buffers saved with the weights), and maps the result to ``features`` numbers
that condition the normalising flow.  Two architectures:

* ``cnn``    strided 1-D convolutions, then a small MLP;
* ``resnet`` 1-D residual blocks with down-sampling, then a small MLP.

Both also receive log(total counts) so the flux level is never lost in the pooling.
:func:`build_embedding` rebuilds a network from its JSON-able description.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

TRANSFORMS = ("log1p", "anscombe", "sqrt")
ARCHITECTURES = ("cnn", "resnet", "mlp")


def stabilise(x: Tensor, kind: str) -> Tensor:
    """Variance-stabilising transform of Poisson counts."""
    x = x.clamp_min(0.0)
    if kind == "log1p":
        return torch.log1p(x)
    if kind == "anscombe":
        return 2.0 * torch.sqrt(x + 0.375)
    if kind == "sqrt":
        return torch.sqrt(x)
    raise ValueError(f"unknown transform {kind!r}; expected one of {', '.join(TRANSFORMS)}")


def n_binned(n_channels: int, rebin: int) -> int:
    """Number of inputs after summing groups of ``rebin`` adjacent channels."""
    return -(-int(n_channels) // max(int(rebin), 1))


class Standardise(nn.Module):
    """Sum groups of ``rebin`` channels, stabilise, z-score per bin; log total counts too.

    Summing adjacent channels keeps the Poisson information at the detector's resolution
    (ACIS channels are ~15 eV, its resolution ~100-150 eV) and makes the networks cheaper.
    """

    def __init__(self, n_channels: int, transform: str, rebin: int = 1):
        super().__init__()
        if transform not in TRANSFORMS:
            raise ValueError(f"unknown transform {transform!r}; expected one of {', '.join(TRANSFORMS)}")
        self.transform = transform
        self.rebin = max(int(rebin), 1)
        self.n_channels = int(n_channels)
        n = n_binned(n_channels, self.rebin)
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))
        self.register_buffer("tot_mean", torch.zeros(()))
        self.register_buffer("tot_std", torch.ones(()))

    def binned(self, x: Tensor) -> Tensor:
        """(B, C) counts -> (B, ceil(C / rebin)) summed counts."""
        x = x.clamp_min(0.0)
        if self.rebin == 1:
            return x
        pad = (-x.shape[-1]) % self.rebin
        if pad:
            x = nn.functional.pad(x, (0, pad))
        return x.reshape(*x.shape[:-1], -1, self.rebin).sum(-1)

    @torch.no_grad()
    def fit(self, counts: Tensor) -> None:
        """Set the standardisation from a batch of training spectra (N, C)."""
        y = stabilise(self.binned(counts.float()), self.transform)
        self.mean.copy_(y.mean(0))
        self.std.copy_(y.std(0).clamp_min(1e-3))
        t = torch.log1p(counts.float().sum(-1))
        self.tot_mean.copy_(t.mean())
        self.tot_std.copy_(t.std().clamp_min(1e-3))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b = self.binned(x)
        y = (stabilise(b, self.transform) - self.mean) / self.std
        t = (torch.log1p(b.sum(-1, keepdim=True)) - self.tot_mean) / self.tot_std
        return y, t


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                         nn.Linear(hidden, n_out))


class CNNEmbedding(nn.Module):
    """Strided 1-D CNN: (B, C) counts -> (B, features)."""

    def __init__(self, n_channels: int, features: int = 32, transform: str = "anscombe",
                 widths: tuple[int, ...] = (16, 32, 32, 64), kernel: int = 5, pooled: int = 8,
                 hidden: int = 128, rebin: int = 1):
        super().__init__()
        self.norm = Standardise(n_channels, transform, rebin)
        layers: list[nn.Module] = []
        c_in = 1
        for w in widths:
            layers += [nn.Conv1d(c_in, w, kernel, padding=kernel // 2), nn.GELU(),
                       nn.Conv1d(w, w, kernel, stride=2, padding=kernel // 2), nn.GELU()]
            c_in = w
        self.conv = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool1d(pooled)
        self.head = _mlp(c_in * pooled + 1, hidden, features)

    def forward(self, x: Tensor) -> Tensor:
        y, t = self.norm(x)
        h = self.pool(self.conv(y.unsqueeze(1))).flatten(1)
        return self.head(torch.cat([h, t], dim=-1))


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=kernel // 2), nn.GroupNorm(1, c_out),
            nn.GELU(), nn.Conv1d(c_out, c_out, kernel, padding=kernel // 2), nn.GroupNorm(1, c_out))
        self.skip = (nn.Identity() if c_in == c_out and stride == 1
                     else nn.Conv1d(c_in, c_out, 1, stride=stride))
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.body(x) + self.skip(x))


class ResNetEmbedding(nn.Module):
    """1-D ResNet: (B, C) counts -> (B, features)."""

    def __init__(self, n_channels: int, features: int = 32, transform: str = "anscombe",
                 widths: tuple[int, ...] = (16, 32, 64), kernel: int = 5, pooled: int = 8,
                 hidden: int = 128, rebin: int = 1):
        super().__init__()
        self.norm = Standardise(n_channels, transform, rebin)
        self.stem = nn.Conv1d(1, widths[0], kernel, padding=kernel // 2)
        blocks = []
        c_in = widths[0]
        for w in widths:
            blocks.append(_ResBlock(c_in, w, kernel, stride=2))
            c_in = w
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool1d(pooled)
        self.head = _mlp(c_in * pooled + 1, hidden, features)

    def forward(self, x: Tensor) -> Tensor:
        y, t = self.norm(x)
        h = self.pool(self.blocks(self.stem(y.unsqueeze(1)))).flatten(1)
        return self.head(torch.cat([h, t], dim=-1))


class MLPEmbedding(nn.Module):
    """Fully connected baseline: (B, C) counts -> (B, features)."""

    def __init__(self, n_channels: int, features: int = 32, transform: str = "anscombe",
                 hidden: int = 128, rebin: int = 1, **_: object):
        super().__init__()
        self.norm = Standardise(n_channels, transform, rebin)
        self.head = _mlp(n_binned(n_channels, rebin) + 1, hidden, features)

    def forward(self, x: Tensor) -> Tensor:
        y, t = self.norm(x)
        return self.head(torch.cat([y, t], dim=-1))


def build_embedding(spec: dict, n_channels: int) -> nn.Module:
    """Build an embedding from ``{"type": "cnn"|"resnet"|"mlp", "features": .., ...}``."""
    spec = dict(spec)
    kind = spec.pop("type", "cnn")
    for key in ("widths",):
        if key in spec:
            spec[key] = tuple(int(v) for v in spec[key])
    cls = {"cnn": CNNEmbedding, "resnet": ResNetEmbedding, "mlp": MLPEmbedding}.get(kind)
    if cls is None:
        raise ValueError(f"unknown embedding type {kind!r}; expected one of {', '.join(ARCHITECTURES)}")
    return cls(n_channels, **spec)


class CovariateEmbedding(nn.Module):
    """An embedding of counts plus observation covariates (exposure, frame time in s).

    Input (B, C + K): the C channel counts followed by the K covariates; output: the base
    embedding of the counts (``features`` numbers) followed by the standardised log
    covariates, (B, features + K).  The covariates' mean and sd of log value are buffers
    measured on the training set (:meth:`fit`).
    """

    def __init__(self, base: nn.Module, n_channels: int, names: list[str]):
        super().__init__()
        self.base = base
        self.n_channels = int(n_channels)
        self.names = list(names)
        k = len(self.names)
        self.register_buffer("mean", torch.zeros(k))
        self.register_buffer("std", torch.ones(k))

    @property
    def norm(self) -> nn.Module:
        """The base embedding's channel standardisation."""
        return self.base.norm

    @torch.no_grad()
    def fit(self, covariates: Tensor) -> None:
        """Mean and sd (floored at 1e-3) of log covariates (N, K) from the training set."""
        z = torch.log(covariates.double().clamp_min(1e-30))
        self.mean.copy_(z.mean(0).float())
        self.std.copy_(z.std(0).clamp_min(1e-3).float())

    def forward(self, x: Tensor) -> Tensor:
        counts, cov = x[..., :self.n_channels], x[..., self.n_channels:]
        z = (torch.log(cov.clamp_min(1e-30)) - self.mean) / self.std
        return torch.cat([self.base(counts), z], dim=-1)


def n_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def receptive_summary(spec: dict) -> str:
    """Short human description, e.g. ``cnn/anscombe/32``."""
    return f"{spec.get('type', 'cnn')}/{spec.get('transform', 'anscombe')}/{spec.get('features', 32)}"


__all__ = ["build_embedding", "CovariateEmbedding", "CNNEmbedding", "ResNetEmbedding", "MLPEmbedding", "Standardise",
           "stabilise", "n_parameters", "receptive_summary"]
