"""Posterior directories: the NPE kind of :mod:`simxray.io.modeldir`.

A posterior directory holds ``weights.safetensors`` (the embedding's and flow's state
dicts as ``model.*``, plus reference statistics used to flag out-of-distribution spectra
as ``ood.*``) and ``config.json`` (format version, prior, model expression, parameter
names, response identity (files + sha256), exposure, frame time, channel range,
architecture, training summary, versions and provenance, and the weights' sha256).  The
file layer (JSON, safetensors, checksums, versions, checkpoints, :class:`ModelDirError`)
is :mod:`simxray.io.modeldir`, re-exported here for existing imports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..io.modeldir import (  # noqa: F401  (re-exported: the file layer)
    CONFIG,
    FORMATS,
    WEIGHTS,
    ModelDirError,
    group,
    load_checkpoint,
    load_model_dir,
    load_state,
    prefixed,
    read_json,
    read_tensors,
    save_checkpoint,
    save_model_dir,
    write_json,
    write_tensors,
)
from ..io.modeldir import read_model_config as _read_model_config

KIND = "posterior"
FORMAT, FORMAT_VERSION = FORMATS[KIND]
REQUIRED_KEYS = ("format", "format_version", "parameters", "prior", "model", "n_channels",
                 "channels", "embedding", "flow", "low", "high", "log", "weights_sha256")
WHAT = "a posterior directory written by 'simxray train'"


def save_posterior(out_dir: str | os.PathLike, model, meta: dict, extra: dict | None = None) -> Path:
    """Write ``weights.safetensors`` then ``config.json`` (with the weights' sha256)."""
    tensors = prefixed(model=model.state_dict(), ood=extra or {})
    return save_model_dir(out_dir, tensors, meta, KIND)


@dataclass
class LoadedPosterior:
    """A rebuilt posterior: the network, its JSON config, OOD reference statistics."""

    model: object
    config: dict
    ood: dict
    path: Path

    @property
    def names(self) -> list[str]:
        return list(self.config["parameters"])


def _hint(path: str | os.PathLike) -> str:
    return " (unfinished training run? resume with 'simxray train --resume')" \
        if (Path(path) / "checkpoint").exists() else ""


def read_posterior_config(path: str | os.PathLike) -> dict:
    """Read and check a posterior directory's ``config.json`` (no torch import)."""
    return _read_model_config(path, KIND, required=REQUIRED_KEYS, what=WHAT, hint=_hint(path))


#: the former name of :func:`read_posterior_config` (not :func:`simxray.simulator.config.load_config`)
load_config = read_posterior_config


def load_posterior(path: str | os.PathLike, device: str | None = None,
                   verify: bool = True) -> LoadedPosterior:
    """Rebuild the network of a posterior directory from config.json + weights.safetensors."""
    import torch

    from .npe_net import NPEModel

    d = Path(path)
    cfg, tensors = load_model_dir(d, KIND, required=REQUIRED_KEYS, what=WHAT, hint=_hint(d), verify=verify)
    try:
        model = NPEModel(int(cfg["n_channels"]), cfg["low"], cfg["high"], cfg["log"],
                         cfg["embedding"], cfg["flow"],
                         covariates=(cfg.get("covariates") or {}).get("names"))
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelDirError(f"cannot rebuild the network ({exc})", path=str(d / CONFIG)) from None
    load_state(model, group(tensors, "model"), d / WEIGHTS)
    dev = torch.device(device) if device else torch.device("cpu")
    model.to(dev).eval()
    return LoadedPosterior(model=model, config=cfg, ood=group(tensors, "ood"), path=d)
