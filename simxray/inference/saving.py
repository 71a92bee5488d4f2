"""Saving and loading trained posteriors without pickles.

A posterior directory holds

* ``weights.safetensors`` – tensors only: the embedding's and flow's state dicts, plus
  reference statistics used to flag out-of-distribution spectra (``ood.*``);
* ``config.json`` – everything needed to rebuild the network and to decide whether a
  spectrum belongs to it: format version, prior, model expression, parameter names,
  response identity (files + sha256), exposure, frame time, channel range, architecture,
  training summary, versions and provenance, and the sha256 of the weights file.

``config.json`` is written last, so a directory without it is an unfinished run.
Training checkpoints (``checkpoint/``) use the same two-file scheme and hold the optimiser
state as plain tensors.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import FileFormatError
from ..provenance import atomic_path, sha256

FORMAT = "simxray-npe"
FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
CONFIG = "config.json"
REQUIRED_KEYS = ("format", "format_version", "parameters", "prior", "model", "n_channels",
                 "channels", "embedding", "flow", "low", "high", "log", "weights_sha256")


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Write JSON atomically."""
    tmp = atomic_path(path)
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=False, default=_json_default)
        fh.write("\n")
    os.replace(tmp, path)


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_tensors(path: str | os.PathLike, tensors: dict, metadata: dict | None = None) -> None:
    """Write a dict of tensors as safetensors, atomically (contiguous CPU copies)."""
    from safetensors.torch import save_file

    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    tmp = atomic_path(path)
    save_file(flat, str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})
    _umask_mode(tmp)
    os.replace(tmp, path)


def _umask_mode(path: str | os.PathLike) -> None:
    """Give a temp file the permissions a plain open() would (safetensors writes 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def read_tensors(path: str | os.PathLike, device: str = "cpu") -> dict:
    """Read a safetensors file; any failure is a one-line :class:`FileFormatError`."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=device)
    except FileNotFoundError:
        raise FileFormatError("file not found", path=str(path)) from None
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise FileFormatError(f"corrupt safetensors file ({msg[:120]})", path=str(path)) from None


def read_json(path: str | os.PathLike) -> dict:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise FileFormatError("file not found", path=str(path)) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FileFormatError(f"unreadable JSON ({exc.__class__.__name__})", path=str(path)) from None
    if not isinstance(data, dict):
        raise FileFormatError("expected a JSON object", path=str(path))
    return data


def save_posterior(out_dir: str | os.PathLike, model, meta: dict, extra: dict | None = None) -> Path:
    """Write ``weights.safetensors`` then ``config.json`` (with the weights' sha256)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ood.{k}": v for k, v in (extra or {}).items()})
    write_tensors(out / WEIGHTS, tensors, {"format": FORMAT})
    cfg = dict(meta)
    cfg["format"], cfg["format_version"] = FORMAT, FORMAT_VERSION
    cfg["weights_sha256"] = sha256(out / WEIGHTS)
    write_json(out / CONFIG, cfg)
    return out


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


def read_model_dir(path: str | os.PathLike, *, fmt: str, version: int, required, what: str,
                   hint: str = "") -> dict:
    """Read and check the ``config.json`` of a saved-network directory.

    ``fmt``/``version``: the expected ``format`` and newest readable ``format_version``;
    ``required``: keys that must be present; ``what``: the directory's description for
    errors (e.g. "a posterior directory written by 'simxray train'"); ``hint``: appended
    to the missing-config error.
    """
    d = Path(path)
    if not d.is_dir():
        raise FileFormatError(f"not a directory; expected {what}", path=str(d))
    cfg_path = d / CONFIG
    if not cfg_path.exists():
        raise FileFormatError(f"missing {CONFIG}; expected {what}{hint}", path=str(d))
    cfg = read_json(cfg_path)
    if cfg.get("format") != fmt:
        raise FileFormatError(f"format is {cfg.get('format')!r}; expected {fmt!r}",
                              path=str(cfg_path), field="format")
    if int(cfg.get("format_version", -1)) > version:
        raise FileFormatError(f"format_version {cfg.get('format_version')} is newer than this "
                              f"simxray reads ({version}); upgrade simxray", path=str(cfg_path),
                              field="format_version")
    for key in required:
        if key not in cfg:
            raise FileFormatError("missing key", path=str(cfg_path), field=key)
    return cfg


def load_config(path: str | os.PathLike) -> dict:
    """Read and check a posterior directory's ``config.json`` (no torch import)."""
    hint = " (unfinished training run? resume with 'simxray train --resume')" \
        if (Path(path) / "checkpoint").exists() else ""
    return read_model_dir(path, fmt=FORMAT, version=FORMAT_VERSION, required=REQUIRED_KEYS,
                          what="a posterior directory written by 'simxray train'", hint=hint)


def load_posterior(path: str | os.PathLike, device: str | None = None,
                   verify: bool = True) -> LoadedPosterior:
    """Rebuild the network of a posterior directory from config.json + weights.safetensors."""
    import torch

    from .npe import NPEModel

    d = Path(path)
    cfg = load_config(d)
    w = d / WEIGHTS
    if not w.exists():
        raise FileFormatError(f"missing {WEIGHTS}", path=str(d))
    if verify and sha256(w) != cfg["weights_sha256"]:
        raise FileFormatError("sha256 differs from config.json's weights_sha256 (corrupt or "
                              "replaced file)", path=str(w))
    tensors = read_tensors(w)
    try:
        model = NPEModel(int(cfg["n_channels"]), cfg["low"], cfg["high"], cfg["log"],
                         cfg["embedding"], cfg["flow"])
    except (TypeError, ValueError, KeyError) as exc:
        raise FileFormatError(f"cannot rebuild the network ({exc})", path=str(d / CONFIG)) from None
    state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0][:160]
        raise FileFormatError(f"weights do not fit the architecture in config.json ({first})",
                              path=str(w)) from None
    dev = torch.device(device) if device else torch.device("cpu")
    model.to(dev).eval()
    ood = {k[4:]: v for k, v in tensors.items() if k.startswith("ood.")}
    return LoadedPosterior(model=model, config=cfg, ood=ood, path=d)


# -- training checkpoints ------------------------------------------------------------------

def save_checkpoint(ckpt_dir: str | os.PathLike, model, optimizer, best_state: dict,
                    state: dict) -> None:
    """Model, best-so-far weights and optimiser state as tensors; the rest as JSON."""
    d = Path(ckpt_dir)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"best.{k}": v for k, v in best_state.items()})
    opt = optimizer.state_dict()
    opt_json: dict = {"param_groups": opt["param_groups"], "scalars": {}}
    for pid, st in opt["state"].items():
        for key, val in st.items():
            if hasattr(val, "shape"):
                tensors[f"opt.{pid}.{key}"] = val
            else:
                opt_json["scalars"][f"{pid}.{key}"] = val
    write_tensors(d / "state.safetensors", tensors)
    state = dict(state)
    state["optimizer"] = opt_json
    state["tensors_sha256"] = sha256(d / "state.safetensors")
    write_json(d / "state.json", state)


def load_checkpoint(ckpt_dir: str | os.PathLike, model, optimizer) -> tuple[dict, dict]:
    """Restore model and optimiser in place; return (json state, best weights)."""
    d = Path(ckpt_dir)
    state = read_json(d / "state.json")
    if sha256(d / "state.safetensors") != state.get("tensors_sha256"):
        raise FileFormatError("checksum differs from state.json (corrupt checkpoint)",
                              path=str(d / "state.safetensors"))
    tensors = read_tensors(d / "state.safetensors")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    opt_json = state.pop("optimizer")
    per: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, key = k.split(".", 2)
            per.setdefault(int(pid), {})[key] = v
    for k, v in opt_json.get("scalars", {}).items():
        pid, key = k.split(".", 1)
        per.setdefault(int(pid), {})[key] = v
    optimizer.load_state_dict({"state": per, "param_groups": opt_json["param_groups"]})
    return state, best
