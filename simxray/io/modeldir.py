"""Model directories: the one on-disk format of every trained network in simxray.

A model directory holds

* ``weights.safetensors`` – tensors only (no pickles), written first;
* ``config.json`` – everything needed to rebuild the network and to decide what it applies
  to, plus ``format`` (the kind, :data:`FORMATS`), ``format_version`` (an integer, one
  scheme for every kind: a reader accepts versions up to its own) and ``weights_sha256``
  (the sha256 of the weights file, verified on load).  Written last, so a directory
  without it is an unfinished run.

Posteriors (``simxray train``), emulators (``simxray train-emulator``), PPAD encoders
(``simxray train-ppad``) and the adaptation's residual corrections use it.  Every problem
with a directory (missing or corrupt file, checksum, format, version, missing key) raises
:class:`ModelDirError`, a :class:`~simxray.errors.FileFormatError` with a one-line message
naming the file.  Training checkpoints use the same two-file scheme
(:func:`save_checkpoint`).  Only the standard library, safetensors and torch are used
here: nothing from the rest of simxray but errors and provenance, so any layer can import
it without cycles.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import FileFormatError
from ..provenance import atomic_path, sha256

WEIGHTS = "weights.safetensors"
CONFIG = "config.json"
#: kind -> (format name written to config.json, newest format_version this simxray reads)
FORMATS: dict[str, tuple[str, int]] = {
    "posterior": ("simxray-npe", 1),
    "emulator": ("simxray-emulator", 1),
    "ppad": ("simxray-ppad", 2),
    "correction": ("simxray-correction", 1),
}


class ModelDirError(FileFormatError):
    """A model directory or file that cannot be used (missing, corrupt, wrong kind or version)."""


# -- JSON and safetensors files ------------------------------------------------------------

def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str | os.PathLike, data: Mapping) -> None:
    """Write a JSON object atomically (numpy scalars/arrays and paths converted)."""
    tmp = atomic_path(path)
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=False, default=_json_default)
        fh.write("\n")
    os.replace(tmp, path)


def read_json(path: str | os.PathLike) -> dict:
    """Read a JSON object; any failure is a one-line :class:`ModelDirError`."""
    try:
        with open(path) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise ModelDirError("file not found", path=str(path)) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelDirError(f"unreadable JSON ({exc.__class__.__name__})", path=str(path)) from None
    if not isinstance(data, dict):
        raise ModelDirError("expected a JSON object", path=str(path))
    return data


def _umask_mode(path: str | os.PathLike) -> None:
    """Give a temp file the permissions a plain open() would (safetensors writes 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def write_tensors(path: str | os.PathLike, tensors: Mapping, metadata: Mapping | None = None) -> None:
    """Write a dict of tensors as safetensors, atomically (contiguous CPU copies)."""
    from safetensors.torch import save_file

    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    tmp = atomic_path(path)
    save_file(flat, str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})
    _umask_mode(tmp)
    os.replace(tmp, path)


def read_tensors(path: str | os.PathLike, device: str = "cpu") -> dict:
    """Read a safetensors file; any failure is a one-line :class:`ModelDirError`."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=device)
    except FileNotFoundError:
        raise ModelDirError("file not found", path=str(path)) from None
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise ModelDirError(f"corrupt safetensors file ({msg[:120]})", path=str(path)) from None


def verify_sha256(path: str | os.PathLike, expected: str | None, what: str = "config.json's weights_sha256"
                  ) -> None:
    """Raise :class:`ModelDirError` unless the file's sha256 is ``expected``."""
    if not Path(path).is_file():
        raise ModelDirError("file not found", path=str(path))
    if sha256(path) != expected:
        raise ModelDirError(f"sha256 differs from {what} (corrupt or replaced file)", path=str(path))


def prefixed(**groups: Mapping) -> dict:
    """``{"group.key": tensor}`` from ``group={key: tensor}`` mappings (state dicts)."""
    return {f"{g}.{k}": v for g, d in groups.items() for k, v in d.items()}


def group(tensors: Mapping, prefix: str) -> dict:
    """The tensors stored under ``prefix.`` with the prefix removed (inverse of :func:`prefixed`)."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


# -- model directories ---------------------------------------------------------------------

def _format(kind: str) -> tuple[str, int]:
    if kind not in FORMATS:
        raise ValueError(f"unknown model-directory kind {kind!r}; expected one of {', '.join(FORMATS)}")
    return FORMATS[kind]


def save_model_dir(out_dir: str | os.PathLike, tensors: Mapping, config: Mapping, kind: str) -> Path:
    """Write ``weights.safetensors`` then ``config.json`` (format, version, weights' sha256).

    Returns the directory; ``config`` is not modified (the written one is
    :func:`read_model_config`'s).
    """
    fmt, version = _format(kind)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_tensors(out / WEIGHTS, tensors, {"format": fmt})
    cfg = dict(config)
    cfg["format"], cfg["format_version"] = fmt, version
    cfg["weights_sha256"] = sha256(out / WEIGHTS)
    write_json(out / CONFIG, cfg)
    return out


def read_model_config(path: str | os.PathLike, kind: str, *, required: Iterable[str] = (), what: str = "",
                      hint: str = "", accept: Mapping[str, int] | None = None) -> dict:
    """Read and check the ``config.json`` of a model directory (no torch import).

    ``kind``: a key of :data:`FORMATS`; ``required``: keys that must be present; ``what``:
    the directory's description for errors (e.g. "a posterior directory written by
    'simxray train'"); ``hint``: appended to the missing-config error; ``accept``: older
    format names still read, with the version they stand for.
    """
    fmt, version = _format(kind)
    what = what or f"a {kind} directory"
    d = Path(path)
    if not d.is_dir():
        raise ModelDirError(f"not a directory; expected {what}", path=str(d))
    cfg_path = d / CONFIG
    if not cfg_path.exists():
        raise ModelDirError(f"missing {CONFIG}; expected {what}{hint}", path=str(d))
    cfg = read_json(cfg_path)
    name = cfg.get("format")
    if accept and name in accept:
        cfg.setdefault("format_version", accept[name])
    elif name != fmt:
        raise ModelDirError(f"format is {name!r}; expected {fmt!r} ({what})", path=str(cfg_path),
                            field="format")
    try:
        got = int(cfg.get("format_version", -1))
    except (TypeError, ValueError):
        got = -1
    if got < 1:
        raise ModelDirError(f"format_version is {cfg.get('format_version')!r}; expected an integer "
                            f"1..{version}", path=str(cfg_path), field="format_version")
    if got > version:
        raise ModelDirError(f"format_version {got} is newer than this simxray reads ({version}); "
                            "upgrade simxray", path=str(cfg_path), field="format_version")
    for key in required:
        if key not in cfg:
            raise ModelDirError("missing key", path=str(cfg_path), field=key)
    return cfg


def load_model_dir(path: str | os.PathLike, kind: str, *, required: Iterable[str] = (), what: str = "",
                   hint: str = "", verify: bool = True, device: str = "cpu",
                   accept: Mapping[str, int] | None = None) -> tuple[dict, dict]:
    """(config, tensors) of a model directory; the weights' sha256 checked unless ``verify=False``.

    A config without ``weights_sha256`` (an older format ``accept`` lets through) is read
    unverified.
    """
    cfg = read_model_config(path, kind, required=required, what=what, hint=hint, accept=accept)
    w = Path(path) / WEIGHTS
    if not w.exists():
        raise ModelDirError(f"missing {WEIGHTS}", path=str(path))
    if verify and "weights_sha256" in cfg:
        verify_sha256(w, cfg["weights_sha256"])
    return cfg, read_tensors(w, device)


def load_state(module, state: Mapping, path: str | os.PathLike, strict: bool = True) -> None:
    """``module.load_state_dict(state)``; a mismatch is a one-line :class:`ModelDirError`."""
    try:
        module.load_state_dict(state, strict=strict)
    except (RuntimeError, KeyError, ValueError) as exc:
        first = str(exc).splitlines()[0][:160] if str(exc) else exc.__class__.__name__
        raise ModelDirError(f"weights do not fit the architecture in config.json ({first})",
                            path=str(path)) from None


# -- training checkpoints ------------------------------------------------------------------

def save_checkpoint(ckpt_dir: str | os.PathLike, model, optimizer, best_state: Mapping,
                    state: Mapping) -> None:
    """Model, best-so-far weights and optimiser state as tensors; the rest as JSON."""
    d = Path(ckpt_dir)
    d.mkdir(parents=True, exist_ok=True)
    tensors = prefixed(model=model.state_dict(), best=best_state)
    opt = optimizer.state_dict()
    opt_json: dict = {"param_groups": opt["param_groups"], "scalars": {}}
    for pid, st in opt["state"].items():
        for key, val in st.items():
            if hasattr(val, "shape"):
                tensors[f"opt.{pid}.{key}"] = val
            else:
                opt_json["scalars"][f"{pid}.{key}"] = val
    write_tensors(d / "state.safetensors", tensors)
    out = dict(state)
    out["optimizer"] = opt_json
    out["tensors_sha256"] = sha256(d / "state.safetensors")
    write_json(d / "state.json", out)


def load_checkpoint(ckpt_dir: str | os.PathLike, model, optimizer) -> tuple[dict, dict]:
    """Restore model and optimiser in place; return (json state, best weights)."""
    d = Path(ckpt_dir)
    state = read_json(d / "state.json")
    verify_sha256(d / "state.safetensors", state.get("tensors_sha256"), "state.json's tensors_sha256")
    tensors = read_tensors(d / "state.safetensors")
    model.load_state_dict(group(tensors, "model"))
    best = group(tensors, "best")
    opt_json = state.pop("optimizer")
    per: dict[int, dict] = {}
    for k, v in group(tensors, "opt").items():
        pid, key = k.split(".", 1)
        per.setdefault(int(pid), {})[key] = v
    for k, v in opt_json.get("scalars", {}).items():
        pid, key = k.split(".", 1)
        per.setdefault(int(pid), {})[key] = v
    optimizer.load_state_dict({"state": per, "param_groups": opt_json["param_groups"]})
    return state, best


__all__ = ["CONFIG", "FORMATS", "WEIGHTS", "ModelDirError", "group", "load_checkpoint", "load_model_dir",
           "load_state", "prefixed", "read_json", "read_model_config", "read_tensors", "save_checkpoint",
           "save_model_dir", "verify_sha256", "write_json", "write_tensors"]
