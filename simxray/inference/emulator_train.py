"""Training an :class:`~.emulator_model.Emulator`: datasets, settings, the network fit and
the ``simxray train-emulator`` driver."""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import FileFormatError, SimxrayError
from ..io.modeldir import (
    CONFIG,
    write_json,
)
from ..provenance import provenance, sha256
from .emulator_model import (
    FORMAT,
    FORMAT_VERSION,
    LOG_FLOOR,
    SOURCE_FLOOR,
    TARGETS,
    Emulator,
)
from .emulator_net import EmulatorNet, _scales
from .emulator_validate import accuracy

DEFAULTS: dict[str, Any] = {
    "target": "counts",
    "hidden": 256,
    "layers": 4,
    "n_basis": 0,            # 0: full per-channel output; K > 0: K principal components
    "epochs": 400,
    "batch_size": 256,
    "learning_rate": 2e-3,
    "min_learning_rate": 1e-5,
    "weight_decay": 0.0,
    "validation_fraction": 0.05,
    "seed": 0,
    "max_minutes": None,
    "n_train": None,         # use the first n_train rows (None: all)
    "poisson_offset": 1.0,   # weight = μ + poisson_offset
}


# -- training ------------------------------------------------------------------------------

def _read_training_data(path: str | os.PathLike, n_rows: int | None) -> dict:
    """theta, mu, pileup_fraction (first ``n_rows`` complete rows), names, channels, attrs.

    Reads only what the emulator needs (not the noisy counts or the background draws)."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise FileFormatError("file not found; expected an HDF5 dataset from 'simxray simulate'",
                              path=str(p))
    try:
        with h5py.File(p, "r") as f:
            n = int(f.attrs["n_done"])
            if n_rows:
                n = min(n, int(n_rows))
            data = {k: f[k][:n] for k in ("theta", "mu", "pileup_fraction", "covariates")
                    if k in f}
            if "covariates" in f:
                data["covariate_names"] = [str(x) for x in f["covariates"].attrs["names"]]
            data["names"] = [str(x) for x in f["theta"].attrs["names"]]
            for k in ("channel", "e_min", "e_max"):
                data[k] = f[k][:]
            data["attrs"] = {k: (v.decode() if isinstance(v, bytes) else v)
                             for k, v in f.attrs.items()}
    except (OSError, KeyError) as exc:
        raise FileFormatError(f"not a readable simxray dataset ({exc})", path=str(p)) from None
    attrs = data["attrs"]
    for k in ("prior", "config", "response", "channels"):
        if k not in attrs:
            raise FileFormatError("missing root attribute; expected a dataset from 'simxray "
                                  "simulate'", path=str(p), field=k)
    if len(data["theta"]) < 20:
        raise SimxrayError(f"only {len(data['theta'])} complete spectra; expected at least 20 "
                           "(finish the simulation first)", path=str(p), field="n_done")
    if not np.all(np.isfinite(data["mu"])) or np.any(data["mu"] < 0):
        raise FileFormatError("mu has negative or non-finite values", path=str(p), field="mu")
    return data


def _background_expected(path: str | os.PathLike) -> list[float] | None:
    import h5py

    with h5py.File(path, "r") as f:
        if "background" in f and "expected" in f["background"].attrs:
            return [float(v) for v in f["background"].attrs["expected"]]
    return None


def source_targets(sim, theta: np.ndarray, batch: int = 512) -> tuple[np.ndarray, int]:
    """The source on the pileup kernel grid (N, K - first) and the first bin with area."""
    mp_all, _ = sim.split(theta)
    parts = []
    first = 0
    for a in range(0, len(theta), batch):
        mp = {k: v[a:a + batch] for k, v in mp_all.items()}
        src = sim._kernel_source(mp, len(next(iter(mp.values()))))
        first = sim._first_bin[1]
        parts.append(src[:, first:].numpy().astype(np.float32))
    return np.concatenate(parts), first


def _lr_at(step: int, total: int, lr: float, lr_min: float, warmup: int,
           time_fraction: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to ``lr_min`` over the steps or, when a time budget
    is set and runs out first, over the budget (``time_fraction`` of it used)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    x = max((step - warmup) / max(1, total - warmup), time_fraction)
    return lr_min + 0.5 * (lr - lr_min) * (1.0 + math.cos(math.pi * min(1.0, x)))


def resolve_settings(settings: Mapping[str, Any] | None = None) -> dict:
    """:data:`DEFAULTS` overridden by ``settings`` (None values ignored), checked."""
    s = dict(DEFAULTS)
    for k, v in (settings or {}).items():
        if k not in DEFAULTS:
            raise SimxrayError(f"unknown setting; expected one of {', '.join(DEFAULTS)}", field=k)
        if v is not None:
            s[k] = v
    if s["target"] not in TARGETS:
        raise SimxrayError(f"expected one of {', '.join(TARGETS)}, got {s['target']!r}",
                           field="target")
    for k in ("hidden", "layers", "epochs", "batch_size"):
        if int(s[k]) < 1:
            raise SimxrayError(f"expected a positive integer, got {s[k]!r}", field=k)
    return s


def fit_network(theta: np.ndarray, y: np.ndarray, weight: np.ndarray, low: Sequence[float],
                high: Sequence[float], log: Sequence[bool], settings: Mapping[str, Any] | None = None,
                *, quiet: bool = True, desc: str = "emulator") -> tuple[EmulatorNet, dict]:
    """The training loop shared by every emulator: an :class:`EmulatorNet` fitted to arrays.

    theta (N, P) physical parameters inside [low, high] (``log``: log-uniform columns,
    scaled in log); y (N, C) log targets; weight (N, C) the expected counts behind each
    target (Poisson weight ``weight + poisson_offset``).  ``settings`` as
    :data:`DEFAULTS` (``target`` and ``n_train`` are the caller's business).  The last
    ``validation_fraction`` of the rows is held out; the best epoch on it is kept.
    Returns (net in eval mode, info) with info: history, n_train, n_validation, epochs,
    best_epoch, best_val_loss, stop_reason, n_basis, seconds, and ``pred_val`` (the
    network's log output on the held-out rows, float64).
    """
    from tqdm import tqdm

    s = resolve_settings(settings)
    t0 = time.perf_counter()
    theta = np.asarray(theta, dtype=np.float64)
    y = np.asarray(y, dtype=np.float32)
    N, C = y.shape
    if theta.shape[0] != N or np.shape(weight) != y.shape:
        raise SimxrayError(f"theta {theta.shape}, targets {y.shape} and weights "
                           f"{np.shape(weight)} do not match", field="training data")
    n_val = max(1, int(round(N * float(s["validation_fraction"]))))
    n_tr = N - n_val
    if n_tr < 1:
        raise SimxrayError(f"only {N} rows; expected more than the validation share",
                           field="training data")
    mean = y[:n_tr].mean(0)
    scale = np.maximum(y[:n_tr].std(0), 1e-3)
    ystd = (y - mean) / scale
    n_basis = int(s["n_basis"] or 0)
    if n_basis >= C:
        n_basis = 0
    torch.manual_seed(int(s["seed"]))
    net = EmulatorNet(theta.shape[1], C, int(s["hidden"]), int(s["layers"]), n_basis)
    lo_t, w_t = _scales(low, high, log)
    net.lo.copy_(lo_t)
    net.width.copy_(w_t)
    net.log.copy_(torch.as_tensor([float(v) for v in log]))
    net.mean.copy_(torch.as_tensor(mean))
    net.scale.copy_(torch.as_tensor(scale))
    if n_basis:
        _, _, vt = np.linalg.svd(ystd[: min(n_tr, 20000)], full_matrices=False)
        net.basis.copy_(torch.as_tensor(vt[:n_basis].astype(np.float32)))
    th_t = torch.as_tensor(theta, dtype=torch.float32)
    with torch.no_grad():
        u = net.scale_inputs(th_t)
    yt = torch.as_tensor(ystd)
    # Poisson weight, in standardised units: (μ + c) · scale²
    wt = torch.as_tensor(np.asarray(weight, dtype=np.float32)) + float(s["poisson_offset"])
    wt = wt * torch.as_tensor(scale ** 2)[None, :]
    wt = wt / wt[:n_tr].mean()

    opt = torch.optim.AdamW(net.parameters(), lr=float(s["learning_rate"]),
                            weight_decay=float(s["weight_decay"]))
    bs = int(s["batch_size"])
    steps_per_epoch = max(1, n_tr // bs)
    total = int(s["epochs"]) * steps_per_epoch
    warm = min(500, total // 20 + 1)
    gen = torch.Generator().manual_seed(int(s["seed"]))
    history = []
    best = (math.inf, None, -1)
    max_s = float(s["max_minutes"]) * 60 if s["max_minutes"] else math.inf
    stop = "epochs"
    step = 0
    t_train = time.perf_counter()
    bar = tqdm(total=int(s["epochs"]), unit="epoch", disable=quiet, desc=desc,
               dynamic_ncols=True)
    try:
        for epoch in range(int(s["epochs"])):
            net.train()
            perm = torch.randperm(n_tr, generator=gen)
            run = 0.0
            for b in range(steps_per_epoch):
                idx = perm[b * bs:(b + 1) * bs]
                for g in opt.param_groups:
                    g["lr"] = _lr_at(step, total, float(s["learning_rate"]),
                                     float(s["min_learning_rate"]), warm,
                                     (time.perf_counter() - t_train) / max_s)
                pred = net.forward_scaled(u[idx])
                loss = (wt[idx] * (pred - yt[idx]) ** 2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                run += float(loss.detach())
                step += 1
            net.eval()
            with torch.no_grad():
                pv = net.forward_scaled(u[n_tr:])
                val = float((wt[n_tr:] * (pv - yt[n_tr:]) ** 2).mean())
            history.append({"epoch": epoch + 1, "train_loss": run / steps_per_epoch,
                            "val_loss": val, "lr": opt.param_groups[0]["lr"],
                            "seconds": round(time.perf_counter() - t0, 1)})
            if val < best[0]:
                best = (val, {k: v.detach().clone() for k, v in net.state_dict().items()},
                        epoch + 1)
            bar.set_postfix(train=f"{run / steps_per_epoch:.2e}", val=f"{val:.2e}")
            bar.update(1)
            if time.perf_counter() - t_train > max_s:
                stop = f"time budget ({s['max_minutes']} min)"
                break
    except KeyboardInterrupt:
        stop = "interrupted"
        if best[1] is None:
            raise
    finally:
        bar.close()
    net.load_state_dict(best[1])
    net.eval()
    with torch.no_grad():
        pred_log = (net.mean + net.scale * net.forward_scaled(u[n_tr:])).double().numpy()
    return net, {"history": history, "n_train": int(n_tr), "n_validation": int(n_val),
                 "epochs": len(history), "best_epoch": best[2], "best_val_loss": best[0],
                 "stop_reason": stop, "n_basis": n_basis,
                 "seconds": time.perf_counter() - t0, "pred_val": pred_log}


def architecture(settings: Mapping[str, Any], n_basis: int, target: str = "counts") -> dict:
    """The ``architecture`` entry of an emulator's config.json."""
    return {"type": "mlp", "hidden": int(settings["hidden"]), "layers": int(settings["layers"]),
            "activation": "silu", "n_basis": int(n_basis),
            "input": "[-1, 1] over the training range (log for log-uniform)",
            "output": "log mu = mean + scale * (z @ basis)" if n_basis else
                      "log mu = mean + scale * z",
            "log_floor": LOG_FLOOR if target == "counts" else SOURCE_FLOOR}


def emulator_from_arrays(theta: np.ndarray, mu: np.ndarray, config: Mapping[str, Any], *,
                         settings: Mapping[str, Any] | None = None, quiet: bool = True,
                         out: str | os.PathLike | None = None) -> Emulator:
    """A ``target="counts"`` emulator trained on arrays: θ (N, P) physical → μ (N, C).

    For forward models other than :class:`~simxray.simulator.simulator.Simulator` datasets
    (the adapted pileup simulator, :mod:`simxray.adaptation.emulate`).  ``config`` gives
    what describes the forward model: ``parameters``, ``low``, ``high``, ``log`` (training
    range, physical units), ``prior`` (a :class:`~simxray.simulator.prior.Prior` dict),
    ``model``, ``channels`` ([first, last]), ``e_min``, ``e_max`` and anything else to
    record; the architecture, output size and training summary (validation accuracy
    included) are added.  Saved to ``out`` if given (weights.safetensors, config.json,
    training.json).
    """
    import sys

    s = resolve_settings({**(settings or {}), "target": "counts"})
    for k in ("parameters", "low", "high", "log", "prior", "model", "channels", "e_min", "e_max"):
        if k not in config:
            raise SimxrayError("missing from the emulator config", field=k)
    theta = np.asarray(theta, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    if s["n_train"]:
        theta, mu = theta[: int(s["n_train"])], mu[: int(s["n_train"])]
    if not np.all(np.isfinite(mu)) or np.any(mu < 0):
        raise SimxrayError("mu has negative or non-finite values", field="mu")
    y = np.log(np.maximum(mu, LOG_FLOOR)).astype(np.float32)
    net, info = fit_network(theta, y, mu.astype(np.float32), config["low"], config["high"],
                            config["log"], s, quiet=quiet)
    pred = info.pop("pred_val")
    val_stats = accuracy(np.exp(pred), mu[info["n_train"]:])
    val_stats.pop("worst_per_spectrum", None)
    history = info.pop("history")
    cfg = {"format": FORMAT, "format_version": FORMAT_VERSION, "target": "counts",
           "fixed": {}, "all_parameters": list(config["parameters"]), **dict(config),
           "n_channels": int(mu.shape[1]), "n_outputs": int(mu.shape[1]),
           "architecture": architecture(s, info["n_basis"]),
           "training": {"source": "arrays", "n_train": info["n_train"],
                        "n_validation": info["n_validation"], "epochs": info["epochs"],
                        "best_epoch": info["best_epoch"], "best_val_loss": info["best_val_loss"],
                        "stop_reason": info["stop_reason"], "seconds": round(info["seconds"], 1),
                        "settings": s, "validation_accuracy": val_stats},
           "versions": {"simxray": _version(), "torch": torch.__version__,
                        "python": sys.version.split()[0], "numpy": np.__version__}}
    cfg.setdefault("provenance", provenance(seed=int(s["seed"])))
    emu = Emulator(net, cfg)
    if out is not None:
        emu.save(out)
        write_json(Path(out) / "training.json", {"history": history, "settings": s})
    return emu


def _threads_argument(threads: int | None) -> None:
    """Library code leaves torch's threads to the caller (the CLI sets them once)."""
    if threads is not None:
        warnings.warn("train_emulator(threads=...) is ignored: torch's threads are the caller's "
                      "(simxray's CLI sets them from --threads)", DeprecationWarning, stacklevel=3)


def train_emulator(dataset: str | os.PathLike, out: str | os.PathLike | None = None, *,
                   settings: Mapping[str, Any] | None = None, quiet: bool = False,
                   threads: int | None = None, overwrite: bool = False, log=print) -> Emulator:
    """Train an emulator on a simulator dataset; write it to ``out`` (if given).

    Runs at the caller's torch threads (the CLI's ``--threads``); ``threads`` is accepted
    for old callers, ignored with a :class:`DeprecationWarning`.

    ``settings`` override :data:`DEFAULTS` (target, hidden, layers, n_basis, epochs,
    batch_size, learning_rate, min_learning_rate, weight_decay, validation_fraction, seed,
    max_minutes, n_train, poisson_offset).  Training rows are the dataset's first
    (1 - validation_fraction); the rest measure the validation error.  The loop itself is
    :func:`fit_network` (shared with :func:`emulator_from_arrays`).
    """
    from ..simulator.prior import Prior

    s = resolve_settings(settings)
    if out is not None:
        outp = Path(out)
        if (outp / CONFIG).exists() and not overwrite:
            raise SimxrayError("already holds an emulator; pass --overwrite to replace it",
                               path=str(outp), field="--out")
        if outp.exists() and not outp.is_dir():
            raise SimxrayError("exists and is not a directory", path=str(outp), field="--out")
    _threads_argument(threads)
    t0 = time.perf_counter()
    data = _read_training_data(dataset, s["n_train"])
    attrs = data["attrs"]
    prior = Prior.from_json(attrs["prior"])
    names = list(data["names"])
    if names != prior.names:
        raise FileFormatError(f"theta names {names} differ from the prior's {prior.names}",
                              path=str(dataset), field="theta")
    theta = np.asarray(data["theta"], dtype=np.float64)
    low = [float(v) for v in prior.bounds[:, 0]]
    high = [float(v) for v in prior.bounds[:, 1]]
    log_p = [d.dist == "loguniform" for d in prior.varying]
    sim_config = json.loads(attrs["config"])
    first_bin = None
    cov = _covariate_setup(data, json.loads(attrs["response"]), dataset, s["target"])
    if s["target"] == "counts":
        in_cols = list(range(len(names)))
        mu = np.asarray(data["mu"], dtype=np.float64)
        y = np.log(np.maximum(mu * cov["scale"][:, None], LOG_FLOOR)) if cov else \
            np.log(np.maximum(mu, LOG_FLOOR))
        w_src = mu.astype(np.float32)                  # Poisson weight: the counts themselves
    else:
        from .diagnostics import simulator_for

        sim = simulator_for({"simulation_config": sim_config, "prior": prior.to_dict(),
                             "channels": [int(c) for c in attrs["channels"]]})
        in_cols = [i for i, n in enumerate(names) if not n.startswith("pileup.")]
        src, first_bin = source_targets(sim, theta)
        y = np.log(np.maximum(src.astype(np.float64), SOURCE_FLOOR))
        pile_arf = _source_weights(sim, first_bin)
        w_src = src * pile_arf[None, :]                  # expected unpiled counts per bin
    sub = [names[i] for i in in_cols]
    x_in = theta[:, in_cols]
    lo_in, hi_in, lg_in = ([low[i] for i in in_cols], [high[i] for i in in_cols],
                           [log_p[i] for i in in_cols])
    if cov and cov["inputs"]:                         # log frame time after the parameters
        x_in = np.column_stack([x_in, cov["input_values"]])
        lo_in, hi_in = lo_in + cov["input_low"], hi_in + cov["input_high"]
        lg_in = lg_in + [True] * len(cov["inputs"])
    net, info = fit_network(x_in, y.astype(np.float32), w_src, lo_in, hi_in, lg_in, s,
                            quiet=quiet)
    history, n_tr, n_val = info["history"], info["n_train"], info["n_validation"]
    best = (info["best_val_loss"], None, info["best_epoch"])
    stop, n_basis, C = info["stop_reason"], info["n_basis"], y.shape[1]
    # validation accuracy in the units that matter
    val_stats = {}
    if s["target"] == "counts":
        mu_val = np.asarray(data["mu"][n_tr:], dtype=float)
        pred = info["pred_val"] - (np.log(cov["scale"][n_tr:, None]) if cov else 0.0)
        val_stats = accuracy(np.exp(pred), mu_val)
        val_stats.pop("worst_per_spectrum", None)
    seconds = time.perf_counter() - t0

    response = json.loads(attrs["response"])
    ch = [int(c) for c in attrs["channels"]]
    import sys

    versions = {"simxray": _version(), "torch": torch.__version__,
                "python": sys.version.split()[0], "numpy": np.__version__}
    cfg = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "target": s["target"],
        "parameters": sub if s["target"] == "source" else names,
        "all_parameters": names,
        "prior": prior.to_dict(),
        "fixed": prior.fixed,
        "model": str(attrs.get("model", sim_config["model"]["expression"])),
        "low": [low[i] for i in in_cols] if s["target"] == "source" else low,
        "high": [high[i] for i in in_cols] if s["target"] == "source" else high,
        "log": [log_p[i] for i in in_cols] if s["target"] == "source" else log_p,
        "units": _units(sim_config["model"]["expression"], sub if s["target"] == "source" else names),
        "channels": ch, "n_channels": int(len(data["channel"])),
        "e_min": [float(v) for v in data["e_min"]], "e_max": [float(v) for v in data["e_max"]],
        "n_outputs": int(C),
        "source_first_bin": first_bin,
        "response": response,
        "exposure": None if cov else response.get("exposure"),
        "frame_time": None if cov and "frame_time" in cov["names"] else response.get("frame_time"),
        "spectrum_channels": _spectrum_channels(response),
        "pileup": sim_config.get("pileup"),
        "simulation_config": sim_config,
        "background_expected": _background_expected(dataset),
        "architecture": architecture(s, n_basis, s["target"]),
        "training": {"dataset": str(Path(dataset).resolve()), "dataset_sha256": sha256(dataset),
                     "dataset_seed": int(attrs.get("seed", -1)), "n_train": int(n_tr),
                     "n_validation": int(n_val), "epochs": len(history), "best_epoch": best[2],
                     "best_val_loss": best[0], "stop_reason": stop, "seconds": round(seconds, 1),
                     "settings": s, "validation_accuracy": val_stats},
        "versions": versions,
        "provenance": provenance(seed=int(s["seed"]), inputs={
            "dataset": str(Path(dataset).resolve()), "dataset_sha256": sha256(dataset),
            "dataset_provenance": json.loads(attrs.get("provenance", "{}"))}),
    }
    if cov:
        cfg["covariates"] = {k: cov[k] for k in ("names", "units", "inputs", "exposure_reference",
                                                 "distributions", "trained_distributions",
                                                 "trained_min", "trained_max", "transform")}
    emu = Emulator(net, cfg)
    if out is not None:
        emu.save(out)
        write_json(Path(out) / "training.json", {"history": history, "settings": s})
    return emu


def _covariate_setup(data: dict, response: Mapping, dataset, target: str) -> dict:
    """How a multi-mode dataset's covariates enter the emulator ({} for a single-mode one).

    The frame time (s) changes the piled spectrum's shape: a network input (log, scaled to
    [-1, 1] over the trained values).  The exposure (s) scales μ exactly (Davis: frames ×
    per-frame spectrum): the targets are μ at a reference exposure, ``scale`` (N,) =
    reference / row exposure, and :meth:`Emulator.at` shifts log μ back.
    """
    if "covariates" not in data:
        return {}
    if target != "counts":
        raise SimxrayError("a dataset that draws the observing mode needs target 'counts' (the "
                           "'source' target stores one exposure and frame time)",
                           path=str(dataset), field="target")
    names = data["covariate_names"]
    c = np.asarray(data["covariates"], dtype=np.float64)
    col = dict(zip(names, c.T, strict=True))
    dists = dict(response.get("covariates") or {})  # the campaign's, as the NPE records them
    ref = float(np.exp(np.mean(np.log(col["exposure"])))) if "exposure" in col else \
        float(response["exposure"])
    ref = float(f"{ref:.3g}")                          # a round number, recorded
    inputs = [n for n in names if n == "frame_time" and np.ptp(np.log(col[n])) > 1e-9]
    vals = np.column_stack([col[n] for n in inputs]) if inputs else np.zeros((len(c), 0))
    return {"names": names, "units": ["s"] * len(names), "inputs": inputs,
            "exposure_reference": ref,
            "distributions": {n: d for n, d in dists.items() if n in inputs},
            "trained_distributions": dists,
            "trained_min": [float(v) for v in c.min(0)], "trained_max": [float(v) for v in c.max(0)],
            "transform": "frame time: log, [-1, 1] over the trained values; exposure: exact "
                         "scale (log mu + log(exposure / exposure_reference))",
            "scale": ref / col["exposure"] if "exposure" in col else np.ones(len(c)),
            "input_values": vals,
            "input_low": [float(vals[:, k].min()) for k in range(len(inputs))],
            "input_high": [float(vals[:, k].max()) for k in range(len(inputs))]}


def _source_weights(sim, first: int) -> np.ndarray:
    """ARF × exposure on the kernel grid from bin ``first`` (counts per unit source flux)."""
    from ..instrument.pileup import get_pileup

    pile = get_pileup(sim.response, sim.pileup_grid)
    K = pile.source_edges.size - 1
    return (np.asarray(pile.arf[:K], float) * sim.response.exposure)[first:].astype(np.float32)


def _spectrum_channels(response: Mapping) -> int | None:
    spec = response.get("spectrum") if isinstance(response, Mapping) else None
    if not isinstance(spec, Mapping) or not spec.get("path") or not Path(spec["path"]).is_file():
        return None
    try:
        from ..io.ogip import read_pha

        return int(read_pha(spec["path"]).n_channels)
    except (SimxrayError, OSError):
        return None


def _units(expression: str, names: Sequence[str]) -> dict[str, str]:
    from ..models import Model

    out = {}
    try:
        m = Model(expression)
        lookup = dict(zip(m.short_names, [q.parameter for q in m.parameters], strict=True))
    except SimxrayError:
        lookup = {}
    for n in names:
        par = lookup.get(n)
        out[n] = (par.unit or "") if par is not None else ("s" if n == "pileup.ftime" else "")
    return out


def _version() -> str:
    from .. import __version__

    return __version__
