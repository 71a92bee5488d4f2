"""Whether a spectrum belongs to a trained network (posterior or emulator): the response
files (sha256), exposure, frame time and channel count it was trained for.

A network trained on a campaign that draws the exposure and frame time per simulation
(``config["covariates"]``) accepts an observation whose exposure lies inside the trained
range and whose frame time is one of the trained values (rel. tol. 1e-3) or inside a
trained range; the others need equality within :data:`REL_TOL`.

A leaf module (no import of the fitting layer), shared by the networks and by
:mod:`simxray.inference.fitting`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ResponseMismatchError, SimxrayError
from ..provenance import sha256

REL_TOL = 1e-3            # relative tolerance on exposure and frame time


# -- compatibility -----------------------------------------------------------------------

def _file_sha(obj) -> str | None:
    p = getattr(obj, "path", None)
    if p is None or not Path(p).is_file():
        return None
    return sha256(p)


def check_compatibility(cfg: dict, spec) -> list[str]:
    """Reasons why ``spec`` does not belong to the posterior ``cfg`` (empty: compatible)."""
    problems: list[str] = []
    resp = cfg.get("response") or {}
    n_total = cfg.get("spectrum_channels")
    if n_total and spec.n_channels != int(n_total):
        problems.append(f"the spectrum has {spec.n_channels} channels; the posterior was trained "
                        f"on spectra with {int(n_total)}")
    for key, obj in (("rmf", spec.rmf), ("arf", spec.arf)):
        want = (resp.get(key) or {}).get("sha256") if isinstance(resp.get(key), dict) else None
        if want is None:
            continue
        if obj is None:
            continue                     # the posterior's own response will be used
        have = _file_sha(obj)
        if have is not None and have != want:
            name = Path(obj.path).name
            problems.append(f"{key.upper()} {name} differs from the {key.upper()} the posterior "
                            f"was trained with ({resp[key].get('name', '?')}, sha256 "
                            f"{want[:12]}...)")
    dists = (cfg.get("covariates") or {}).get("distributions") or {}
    if dists:
        from ..simulator.covariates import mismatch

        problems += mismatch(dists, spec.exposure, spec.frame_time)
    exp = cfg.get("exposure")
    if "exposure" not in dists and exp and spec.exposure and \
            abs(spec.exposure / float(exp) - 1.0) > REL_TOL:
        problems.append(f"exposure {spec.exposure:.6g} s differs from the posterior's "
                        f"{float(exp):.6g} s")
    ft = cfg.get("frame_time")
    if "frame_time" not in dists and ft and spec.frame_time and \
            abs(spec.frame_time / float(ft) - 1.0) > REL_TOL:
        problems.append(f"frame time {spec.frame_time:.6g} s differs from the posterior's "
                        f"{float(ft):.6g} s")
    return problems


def _trained_file(entry: dict | None) -> str | None:
    """A response file the posterior was trained with: its recorded path, or the file of the
    same name in simxray/data, provided the sha256 matches."""
    if not isinstance(entry, dict) or not entry.get("sha256"):
        return None
    from ..datasets import DATA_DIR

    for cand in (entry.get("path"), DATA_DIR / str(entry.get("name", ""))):
        if cand and Path(cand).is_file() and sha256(cand) == entry["sha256"]:
            return str(cand)
    return None


def select_channels(cfg: dict, spec) -> np.ndarray:
    """The spectrum's counts in the posterior's channel range [lo, hi] (C,)."""
    lo, hi = (int(v) for v in cfg["channels"])
    ch = np.asarray(spec.channel).astype(int)
    idx = np.flatnonzero((ch >= lo) & (ch <= hi))
    if idx.size != int(cfg["n_channels"]):
        raise ResponseMismatchError(
            f"has {idx.size} channels in {lo}..{hi}; the posterior expects {cfg['n_channels']} "
            "(different channel count or binning)", path=str(spec.path), field="CHANNEL")
    x = np.asarray(spec.counts, dtype=float)[idx]
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise SimxrayError("counts must be finite and non-negative", path=str(spec.path),
                           field="COUNTS")
    if x.sum() <= 0:
        raise SimxrayError(f"no counts in channels {lo}..{hi}; expected a non-empty spectrum",
                           path=str(spec.path), field="COUNTS")
    return x


def observation_covariates(cfg: dict, spec) -> np.ndarray:
    """The observation's covariates (K,) in the network's order (``config["covariates"]
    ["names"]``: exposure = the PHA's EXPOSURE, frame time = TIMEDEL or the frame time the
    observation was given), s; empty for a network without covariates."""
    names = (cfg.get("covariates") or {}).get("names") or []
    out = []
    for n in names:
        v = getattr(spec, n, None)
        if v is None or not np.isfinite(float(v)) or float(v) <= 0:
            raise ResponseMismatchError(f"the network conditions on the {n.replace('_', ' ')}; "
                                        "the spectrum has none (set it, e.g. frame_time=...)",
                                        path=str(getattr(spec, "path", "")), field=n.upper())
        out.append(float(v))
    return np.asarray(out, dtype=float)


def network_input(cfg: dict, counts: np.ndarray, spec=None, covariates=None) -> np.ndarray:
    """Counts (..., C) followed by the covariates the network conditions on (..., C + K):
    ``covariates`` ({name: s} or a sequence in the network's order), else those of ``spec``
    (:func:`observation_covariates`).  Counts unchanged for a network without covariates."""
    names = (cfg.get("covariates") or {}).get("names") or []
    x = np.asarray(counts, dtype=float)
    if not names:
        return x
    if covariates is None:
        if spec is None:
            raise ResponseMismatchError(f"the network conditions on {', '.join(names)} (s); pass "
                                        "covariates={" + ", ".join(f"'{n}': ..." for n in names)
                                        + "}", field="covariates")
        c = observation_covariates(cfg, spec)
    elif isinstance(covariates, dict):
        missing = [n for n in names if n not in covariates]
        if missing:
            raise ResponseMismatchError(f"missing covariate {missing[0]!r}; the network "
                                        f"conditions on {', '.join(names)} (s)", field="covariates")
        c = np.asarray([float(covariates[n]) for n in names])
    else:
        c = np.asarray(covariates, dtype=float)
    c = np.broadcast_to(c, x.shape[:-1] + (len(names),))
    return np.concatenate([x, c], axis=-1)


__all__ = ["check_compatibility", "network_input", "observation_covariates", "select_channels"]
