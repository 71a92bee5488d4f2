"""An amortised posterior as a user-facing object: :class:`Posterior`.

>>> import simxray as sx
>>> post = sx.Posterior.load(sx.datasets.DATA_DIR / "posterior_default")
>>> post.names
['nH', 'PhoIndex', 'norm', 'pileup.alpha', 'pileup.f']
>>> obs = sx.Observation.from_pha(sx.datasets.default_spectrum_path())
>>> obs.notice(1, 7)
>>> post.check(sx.FitProblem(obs, "tbabs*powerlaw"))[0]    # [] when it belongs
'channels 35-548 differ from the noticed 69-480'
>>> post.sample(5, obs.counts[34:548], seed=0).shape
(5, 5)

Loading verifies the weights' sha256 (safetensors + JSON config, never pickles).

A posterior trained on a campaign that draws the exposure and frame time per simulation
conditions on them: ``post.sample(n, counts, covariates={"exposure": 5e4, "frame_time":
0.84104})`` (s; :attr:`Posterior.covariate_names`); a FitProblem supplies its
observation's EXPOSURE and frame time itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ResponseMismatchError


class Posterior:
    """q(θ | x): a trained NPE network with the prior and setup it was trained for."""

    def __init__(self, loaded, path: Path):
        self._loaded = loaded
        self.path = Path(path)
        self.config = loaded.config if hasattr(loaded, "config") else {}

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | None = None) -> Posterior:
        from .saving import load_posterior
        from .saving import read_posterior_config as load_config

        loaded = load_posterior(path, device=device)
        post = cls(loaded, Path(path))
        post.config = load_config(path)
        return post

    @property
    def names(self) -> list[str]:
        return list(self._loaded.names)

    @property
    def network(self):
        """The trained :class:`~simxray.inference.npe_net.NPEModel` (embedding + flow)."""
        return self._loaded.model

    @property
    def prior(self):
        from ..simulator.prior import Prior

        return Prior.from_dict(self.config["prior"])

    def check(self, problem) -> list[str]:
        """Why this posterior does not belong to a
        :class:`~simxray.inference.problem.FitProblem` (empty list: it does)."""
        from .fitting import network_mismatch

        return network_mismatch(self.config, problem)

    @property
    def covariate_names(self) -> list[str]:
        """The observation covariates the network conditions on ([] for most networks)."""
        return list((self.config.get("covariates") or {}).get("names") or [])

    def _x(self, data, covariates=None) -> np.ndarray:
        from .compat import network_input

        if hasattr(data, "obs") and hasattr(data, "slice"):          # a FitProblem
            why = self.check(data)
            if why:
                raise ResponseMismatchError(why[0], path=str(self.path))
            return network_input(self.config, data.obs.counts[data.slice], data.obs.spectrum,
                                 covariates)
        x = np.asarray(data, dtype=float)
        if x.shape[-1] != int(self.config["n_channels"]):
            raise ResponseMismatchError(f"expected {self.config['n_channels']} channels, got "
                                        f"{x.shape[-1]}", path=str(self.path))
        return network_input(self.config, x, None, covariates)

    def sample(self, n: int, data, seed: int | None = None, covariates=None) -> np.ndarray:
        """n draws (n, P) in physical units for counts (C,) or a matching FitProblem.

        ``covariates``: {name: value} (s) or values in :attr:`covariate_names` order, needed
        with counts when the network conditions on them (a FitProblem gives its own)."""
        import torch

        if seed is not None:
            torch.manual_seed(seed)
        model = self._loaded.model
        dev = next(model.parameters()).device
        xt = torch.as_tensor(self._x(data, covariates), dtype=torch.float32, device=dev)
        with torch.no_grad():
            return model.sample(int(n), xt).double().cpu().numpy()

    def log_prob(self, theta, data, covariates=None) -> np.ndarray:
        """log q(θ | x) (B,) for θ (B, P) in physical units (``covariates`` as in
        :meth:`sample`)."""
        import torch

        model = self._loaded.model
        dev = next(model.parameters()).device
        t = torch.as_tensor(np.atleast_2d(theta), dtype=torch.float32, device=dev)
        xt = torch.as_tensor(self._x(data, covariates), dtype=torch.float32, device=dev)
        with torch.no_grad():
            return model.log_prob(t, xt.expand(len(t), -1)).double().cpu().numpy()

    def save(self, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Copy the model folder (weights + config) to ``out`` atomically."""
        import shutil

        from ..io.outputs import atomic_dir

        with atomic_dir(out, overwrite=overwrite, inputs=[self.path]) as tmp:
            for f in self.path.iterdir():
                if f.is_file():
                    shutil.copy2(f, tmp / f.name)
        return Path(out)

    def __repr__(self) -> str:
        return (f"Posterior({self.path.name}: {self.config.get('model')}, "
                f"params={self.names}, channels={self.config.get('channels')})")


__all__ = ["Posterior"]
