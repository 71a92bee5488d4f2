"""The emulator's network: an MLP on unit-scaled parameters whose output is log μ in a
fixed linear basis (:class:`EmulatorNet`), and its numpy copy for the fast likelihood."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

# -- the network ---------------------------------------------------------------------------

class EmulatorNet(nn.Module):
    """MLP from scaled parameters (B, P) in [-1, 1] to log outputs (B, C).

    Buffers hold the input scaling (``lo``, ``width``, ``log``) and the output basis
    (``mean``, ``scale``, ``basis``), so the weights file alone reproduces the mapping.
    """

    def __init__(self, n_params: int, n_out: int, hidden: int = 256, layers: int = 4,
                 n_basis: int = 0):
        super().__init__()
        self.n_params, self.n_out = int(n_params), int(n_out)
        k = int(n_basis) if n_basis else self.n_out
        dims = [self.n_params] + [int(hidden)] * int(layers)
        mods: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            mods += [nn.Linear(a, b), nn.SiLU()]
        mods.append(nn.Linear(dims[-1], k))
        self.mlp = nn.Sequential(*mods)
        self.register_buffer("lo", torch.zeros(self.n_params))
        self.register_buffer("width", torch.ones(self.n_params))
        self.register_buffer("log", torch.zeros(self.n_params))
        self.register_buffer("mean", torch.zeros(self.n_out))
        self.register_buffer("scale", torch.ones(self.n_out))
        self.register_buffer("basis", torch.eye(k, self.n_out) if n_basis else torch.zeros(0))

    def scale_inputs(self, theta: Tensor) -> Tensor:
        """Physical parameters (B, P) → [-1, 1] over the training range."""
        t = torch.where(self.log.bool(), torch.log(theta.clamp_min(1e-300)), theta)
        return 2.0 * (t - self.lo) / self.width - 1.0

    def forward_scaled(self, u: Tensor) -> Tensor:
        """Scaled parameters (B, P) → standardised log outputs (B, C)."""
        z = self.mlp(u)
        return z @ self.basis if self.basis.numel() else z

    def forward(self, theta: Tensor) -> Tensor:
        """Physical parameters (B, P) → log outputs (B, C)."""
        return self.mean + self.scale * self.forward_scaled(self.scale_inputs(theta))


def _numpy_weights(net: EmulatorNet) -> dict:
    """float32 numpy copies of the layers, float64 input/output scaling (for
    :meth:`Emulator.log_numpy`)."""
    sd = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    keys = [f"mlp.{i}" for i, m in enumerate(net.mlp) if isinstance(m, nn.Linear)]
    layers = [(np.ascontiguousarray(sd[k + ".weight"].T, dtype=np.float32),
               sd[k + ".bias"].astype(np.float32)) for k in keys]
    basis = sd["basis"]
    width = sd["width"].astype(np.float64)
    lo = sd["lo"].astype(np.float64)
    scale = sd["scale"].astype(np.float64)
    return {"hidden": layers[:-1], "out_W": layers[-1][0], "out_b": layers[-1][1],
            "basis": np.ascontiguousarray(basis * scale, dtype=np.float32) if basis.size else None,
            "log_cols": np.flatnonzero(sd["log"] > 0.5), "a": 2.0 / width,
            "c": -2.0 * lo / width - 1.0, "mean": sd["mean"].astype(np.float64),
            "scale": scale}


def _scales(low: Sequence[float], high: Sequence[float], log: Sequence[bool]) -> tuple[Tensor, Tensor]:
    lg = np.asarray(log, dtype=bool)
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    lo = np.where(lg, np.log(np.where(lg, low, 1.0)), low)
    hi = np.where(lg, np.log(np.where(lg, high, 1.0)), high)
    return torch.as_tensor(lo, dtype=torch.float32), torch.as_tensor(hi - lo, dtype=torch.float32)
