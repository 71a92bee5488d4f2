"""Neural posterior estimation: training q(θ | x) on simulated datasets.

:func:`train` fits an :class:`NPEModel` (the embedding + zuko spline flow of
:mod:`.npe_net`, re-exported here with :class:`BoxToReal`, :class:`ThetaTransform` and
:func:`prior_scales`) on a :class:`TrainingData` HDF5 campaign and writes a posterior
directory (:mod:`.saving`, :mod:`simxray.io.modeldir`).  The flow samples through zuko's
public API only (no patched torch functions).

Length: the HDF5 reader (counts, expected counts and observation covariates), the trainer
and its array front end :class:`NPE` share one data layout and one training loop.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import zuko
from torch import Tensor

from . import saving
from .diagnostics import coverage_curve, ranks_from_samples
from .npe_net import BoxToReal, NPEModel, ThetaTransform, prior_scales


def pick_device(name: str | None = None) -> torch.device:
    """``cuda`` when available (or requested), else CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------------------------------
# datasets
# ---------------------------------------------------------------------------------------

REQUIRED_DATASETS = ("theta", "counts")


class TrainingData:
    """A simulated dataset (HDF5, layout in docs/ARCHITECTURE.md) read in row blocks.

    Rows ``[0, n_done)`` are used; the last ``validation_fraction`` of them form the
    validation split.  A campaign that draws observation covariates (exposure, frame time;
    dataset ``covariates``) gives x = counts followed by the covariates (s), (N, C + K).  Splits smaller than ``cache_mb`` are read once and kept in memory,
    larger ones are streamed block by block every epoch.
    """

    def __init__(self, path: str, validation_fraction: float = 0.1, block: int = 4096,
                 cache_mb: float = 1024.0):
        import json

        import h5py

        from ..errors import FileFormatError
        from ..simulator.prior import Prior

        self.path = str(path)
        try:
            self._h5 = h5py.File(self.path, "r")
        except FileNotFoundError:
            raise FileFormatError("file not found; expected an HDF5 dataset written by "
                                  "'simxray simulate'", path=self.path) from None
        except OSError as exc:
            raise FileFormatError(f"not a readable HDF5 file ({exc.__class__.__name__}); expected "
                                  "a dataset written by 'simxray simulate'", path=self.path) from None
        h = self._h5
        for key in REQUIRED_DATASETS:
            if key not in h:
                raise FileFormatError(f"missing dataset; expected {', '.join(REQUIRED_DATASETS)}"
                                      " (and 'mu')", path=self.path, field=key)
        theta, counts = h["theta"], h["counts"]
        if theta.ndim != 2 or counts.ndim != 2 or theta.shape[0] != counts.shape[0]:
            raise FileFormatError(f"expected theta (N, P) and counts (N, C) with equal N, got "
                                  f"{theta.shape} and {counts.shape}", path=self.path, field="theta")
        self.has_mu = "mu" in h and h["mu"].shape == counts.shape
        # counts = Poisson(mu) + Poisson(background); fresh noise needs the expected background
        self.bkg_expected = None
        if "background" in h and not bool(h.attrs.get("mu_includes_background", False)):
            exp = h["background"].attrs.get("expected")
            if exp is None:
                self.has_mu = False       # cannot redraw the background: use stored counts
            else:
                self.bkg_expected = torch.as_tensor(exp, dtype=torch.float32)
        n_done = int(h.attrs.get("n_done", theta.shape[0]))
        self.n = min(n_done, theta.shape[0])
        if self.n < 20:
            raise FileFormatError(f"only {self.n} finished simulations; expected at least 20",
                                  path=self.path, field="n_done")
        self.n_channels = int(counts.shape[1])
        self.theta_dim = int(theta.shape[1])
        self.covariate_names: list[str] = []
        self._cov = None
        if "covariates" in h:
            cv = h["covariates"]
            names_c = cv.attrs.get("names")
            if cv.ndim != 2 or cv.shape[0] != theta.shape[0] or names_c is None \
                    or len(names_c) != cv.shape[1]:
                raise FileFormatError(f"expected covariates (N, K) with N = {theta.shape[0]} and "
                                      "K column names", path=self.path, field="covariates")
            self.covariate_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names_c]
            self._cov = np.asarray(cv[:self.n], dtype=np.float32)

        def attr_json(name: str, default=None):
            raw = h.attrs.get(name)
            if raw is None:
                return default
            try:
                return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            except (TypeError, ValueError):
                raise FileFormatError("attribute is not valid JSON", path=self.path,
                                      field=name) from None

        prior_json = attr_json("prior")
        if prior_json is None:
            raise FileFormatError("missing attribute; expected the prior as JSON", path=self.path,
                                  field="prior")
        self.prior = Prior.from_dict(prior_json)
        names = theta.attrs.get("names")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in names] if names is not None \
            else self.prior.names
        if names != self.prior.names or len(names) != self.theta_dim:
            raise FileFormatError(f"theta columns {names} do not match the prior's varying "
                                  f"parameters {self.prior.names}", path=self.path, field="theta")
        self.names = names
        self.config = attr_json("config", {})
        self.response = attr_json("response", {})
        self.covariate_dists = dict((self.response or {}).get("covariates") or {}) \
            if isinstance(self.response, dict) else {}
        self.provenance = attr_json("provenance", {})
        model = h.attrs.get("model", "")
        self.model = model.decode() if isinstance(model, bytes) else str(model)
        ch = h.attrs.get("channels")
        self.channels = [int(ch[0]), int(ch[1])] if ch is not None else [1, self.n_channels]
        seed = h.attrs.get("seed")
        self.seed = int(seed) if seed is not None else None
        n_val = max(1, int(round(validation_fraction * self.n)))
        if self.n - n_val < 10:
            raise FileFormatError(f"{self.n} simulations leave too few for training after a "
                                  f"{validation_fraction:g} validation split", path=self.path)
        self.train_rows = (0, self.n - n_val)
        self.val_rows = (self.n - n_val, self.n)
        self.block = int(block)
        row_bytes = 4 * (self.theta_dim + self.n_channels * (2 if self.has_mu else 1))
        self.cached = self.n * row_bytes / 2**20 <= cache_mb
        self._cache: dict[tuple[int, int, str], tuple[Tensor, Tensor]] = {}

    def close(self) -> None:
        self._h5.close()

    def read(self, lo: int, hi: int, what: str = "counts", cache: bool = True) -> tuple[Tensor, Tensor]:
        """Rows [lo, hi) as float32 tensors (theta, counts or mu); non-finite rows dropped."""
        key = (lo, hi, what)
        if key in self._cache:
            return self._cache[key]
        th = torch.from_numpy(self._h5["theta"][lo:hi].astype("float32"))
        x = torch.from_numpy(self._h5[what][lo:hi].astype("float32"))
        if self._cov is not None:                   # counts (or mu), then the covariates
            x = torch.cat([x, torch.from_numpy(self._cov[lo:hi])], dim=1)
        good = torch.isfinite(th).all(1) & torch.isfinite(x).all(1)
        if not bool(good.all()):
            th, x = th[good], x[good]
        if self.cached and cache:
            self._cache[key] = (th, x)
        return th, x

    def batches(self, rows: tuple[int, int], batch_size: int, generator: torch.Generator | None,
                resample: bool = False):
        """Yield (theta, x) mini-batches; shuffled when ``generator`` is given.

        ``resample`` draws fresh Poisson counts from the stored expected counts ``mu``.
        """
        lo, hi = rows
        what = "mu" if resample and self.has_mu else "counts"
        starts = torch.arange(lo, hi, self.block)
        if generator is not None:
            starts = starts[torch.randperm(len(starts), generator=generator)]
        for s in starts.tolist():
            th, x = self.read(s, min(s + self.block, hi), what)
            if generator is not None:
                perm = torch.randperm(len(th), generator=generator)
                th, x = th[perm], x[perm]
            if what == "mu":
                C = self.n_channels
                rate = x[:, :C] if self.bkg_expected is None else x[:, :C] + self.bkg_expected
                x = torch.cat([torch.poisson(rate.clamp_min(0.0), generator=generator),
                               x[:, C:]], dim=1) if x.shape[1] > C else \
                    torch.poisson(rate.clamp_min(0.0), generator=generator)
            for b in range(0, len(th), batch_size):
                yield th[b:b + batch_size], x[b:b + batch_size]

    def sample_rows(self, k: int, what: str = "counts") -> tuple[Tensor, Tensor]:
        """The first k training rows (for standardisation statistics)."""
        lo, hi = self.train_rows
        return self.read(lo, min(hi, lo + k), what, cache=False)


# ---------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------

DEFAULT_SETTINGS: dict = {
    "embedding": {"type": "cnn", "transform": "anscombe", "features": 32},
    "flow": {"transforms": 5, "hidden_features": [64, 64], "bins": 8},
    "training": {"batch_size": 256, "learning_rate": 1e-3, "weight_decay": 1e-5,
                 "max_epochs": 200, "patience": 20, "lr_patience": 6, "lr_factor": 0.5,
                 "min_learning_rate": 1e-5, "clip_grad_norm": 5.0, "seed": 1,
                 "max_minutes": 0.0},
    "data": {"validation_fraction": 0.1, "resample_noise": True, "block_size": 4096,
             "cache_mb": 1024.0},
}


def load_settings(path: str | None, overrides: dict | None = None) -> dict:
    """Training settings: defaults <- TOML file <- overrides ({"embedding.type": "resnet"})."""
    import copy

    from ..errors import ConfigError
    from ..io.tomlfile import read_toml

    s = copy.deepcopy(DEFAULT_SETTINGS)
    if path:
        data = read_toml(path, "a training TOML file")
        for sec, val in data.items():
            if sec not in s or not isinstance(val, dict):
                raise ConfigError(f"unknown section; expected one of {', '.join(s)}", path=path,
                                  field=sec)
            for k, v in val.items():
                if sec in ("training", "data") and k not in s[sec]:
                    raise ConfigError(f"unknown key; expected one of {', '.join(s[sec])}",
                                      path=path, field=f"{sec}.{k}")
                s[sec][k] = v
    for key, v in (overrides or {}).items():
        sec, k = key.split(".", 1)
        s[sec][k] = v
    emb = s["embedding"]
    from .embedding import ARCHITECTURES, TRANSFORMS

    if emb.get("type") not in ARCHITECTURES:
        raise ConfigError(f"unknown embedding {emb.get('type')!r}; expected one of "
                          f"{', '.join(ARCHITECTURES)}", path=path, field="embedding.type")
    if emb.get("transform") not in TRANSFORMS:
        raise ConfigError(f"unknown transform {emb.get('transform')!r}; expected one of "
                          f"{', '.join(TRANSFORMS)}", path=path, field="embedding.transform")
    t = s["training"]
    for k in ("batch_size", "max_epochs", "patience"):
        if not isinstance(t[k], int) or isinstance(t[k], bool) or t[k] < 1:
            raise ConfigError(f"expected a positive integer, got {t[k]!r}", path=path,
                              field=f"training.{k}")
    vf = s["data"]["validation_fraction"]
    if not isinstance(vf, int | float) or not 0 < vf < 0.9:
        raise ConfigError(f"expected a fraction in (0, 0.9), got {vf!r}", path=path,
                          field="data.validation_fraction")
    return s


RESUMABLE_CHANGES = ("max_epochs", "max_minutes", "patience")


def _fingerprint(settings: dict, data_sha: str) -> str:
    """Hash of what a resumed run must share: dataset and settings (bar the stopping rules)."""
    import hashlib
    import json

    s = {k: dict(v) for k, v in settings.items()}
    for k in RESUMABLE_CHANGES:
        s["training"].pop(k, None)
    return hashlib.sha256(json.dumps([s, data_sha], sort_keys=True).encode()).hexdigest()


def _state_sha(state: dict) -> str:
    """sha256 of a state dict's tensors (the identity of a fine-tuning start)."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def evaluate_loss(model: NPEModel, data: TrainingData, rows: tuple[int, int], device,
                  batch_size: int = 1024) -> float:
    """Mean negative log posterior density over rows (stored noisy counts)."""
    model.eval()
    tot, n = 0.0, 0
    with torch.no_grad():
        for th, x in data.batches(rows, batch_size, None):
            lp = model.log_prob(th.to(device), x.to(device))
            tot += float(-lp.sum())
            n += len(th)
    return tot / max(n, 1)


@torch.no_grad()
def quick_calibration(model: NPEModel, data: TrainingData, n: int = 200, samples: int = 500,
                      device="cpu", seed: int = 0) -> dict:
    """Coverage of central intervals on validation spectra: {'max_error': .., per parameter}."""
    import numpy as np

    torch.manual_seed(seed)
    lo, hi = data.val_rows
    th, x = data.read(lo, min(hi, lo + n), "counts", cache=False)
    s = model.sample(samples, x.to(device)).cpu().numpy()          # (S, B, P)
    ranks = ranks_from_samples(s, th.numpy())
    levels, cov = coverage_curve(ranks, samples)
    err = np.abs(cov - levels[:, None]).max(0)
    return {"n": len(th), "samples": samples, "max_coverage_error": dict(zip(data.names,
            [float(e) for e in err], strict=True))}


@torch.no_grad()
def reference_statistics(model: NPEModel, data: TrainingData, device, n: int = 4096) -> dict:
    """Embedding mean / inverse covariance and total-count range of validation spectra."""
    lo, hi = data.val_rows
    _, x = data.read(lo, min(hi, lo + n), "counts", cache=False)
    _, xt = data.sample_rows(n)
    emb = model.embedding(x.to(device)).double().cpu()
    mean = emb.mean(0)
    cov = torch.cov(emb.T) + 1e-6 * torch.eye(emb.shape[1], dtype=torch.float64)
    prec = torch.linalg.inv(cov)
    d2 = ((emb - mean) @ prec * (emb - mean)).sum(1)
    C = model.n_channels
    tot = torch.cat([x[:, :C].sum(1), xt[:, :C].sum(1)]).double()
    return {"emb_mean": mean, "emb_precision": prec,
            "d2_quantiles": torch.quantile(d2, torch.tensor([0.5, 0.99, 0.999], dtype=torch.float64)),
            "total_range": torch.stack([tot.min(), tot.max()])}


def _covariate_meta(data: TrainingData) -> dict:
    """What config.json records of the covariates: names, units, the campaign's
    distributions and the trained range (min, max over the dataset)."""
    cov = data._cov
    return {"names": list(data.covariate_names), "units": ["s"] * len(data.covariate_names),
            "transform": "log, standardised (mean and sd of the training set)",
            "distributions": data.covariate_dists,
            "trained_min": [float(v) for v in cov.min(0)],
            "trained_max": [float(v) for v in cov.max(0)]}


def train(dataset: str, settings: dict, out_dir: str, *, resume: bool = False,
          overwrite: bool = False, quiet: bool = False, device: str | None = None,
          log=print, keep_checkpoint: bool = False, init=None) -> dict:
    """Train an NPE posterior on a simulated dataset; write it to ``out_dir``.

    ``init`` (an :class:`NPEModel` or a :class:`~simxray.inference.posterior.Posterior` of
    the same architecture) starts from its weights and standardisations instead of fresh
    ones: fine-tuning on another simulator.  Returns the training summary (also stored in
    ``config.json``).
    """
    import copy
    import shutil
    import time
    from pathlib import Path

    from tqdm.auto import tqdm

    from .. import __version__
    from ..errors import ConfigError
    from ..provenance import provenance, sha256

    out = Path(out_dir)
    ckpt = out / "checkpoint"
    if out.exists() and not out.is_dir():
        raise ConfigError("exists and is not a directory", path=str(out), field="--out")
    if (out / saving.CONFIG).exists() and not overwrite and not (resume and ckpt.exists()):
        raise ConfigError("already holds a trained posterior; pass --overwrite to replace it",
                          path=str(out), field="--out")
    if ckpt.exists() and not resume and not overwrite:
        raise ConfigError("holds an unfinished training run; pass --resume to continue it or "
                          "--overwrite to start again", path=str(out), field="--out")
    if overwrite and not resume:
        for name in (saving.CONFIG, saving.WEIGHTS, "training.json"):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(ckpt, ignore_errors=True)
    if resume and not (ckpt / "state.json").exists():
        log(f"no checkpoint in {out}; starting a new run")
        resume = False

    dev = pick_device(device)
    t_cfg, d_cfg = settings["training"], settings["data"]
    data = TrainingData(dataset, d_cfg["validation_fraction"], int(d_cfg["block_size"]),
                        float(d_cfg["cache_mb"]))
    data_sha = sha256(dataset)
    init_net = getattr(init, "network", init)
    fp = _fingerprint(settings, data_sha if init_net is None else
                      data_sha + _state_sha(init_net.state_dict()))
    seed = int(t_cfg["seed"])
    torch.manual_seed(seed)
    low, high, logs = prior_scales(data.prior)
    model = NPEModel(data.n_channels, low, high, logs, settings["embedding"], settings["flow"],
                     covariates=data.covariate_names or None)
    th0, x0 = data.sample_rows(5000)
    model.embedding.norm.fit(x0[:, :data.n_channels])
    if data.covariate_names:
        model.embedding.fit(x0[:, data.n_channels:])
    model.theta_transform.fit(th0)
    if init_net is not None:                 # fine-tuning: its weights and standardisations
        model.load_state_dict(init_net.state_dict())
    model.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=float(t_cfg["learning_rate"]),
                            weight_decay=float(t_cfg["weight_decay"]))
    state = {"epoch": 0, "best_val": float("inf"), "best_epoch": 0, "bad_epochs": 0,
             "lr_bad_epochs": 0, "history": [], "fingerprint": fp, "seconds": 0.0}
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if resume:
        state, best_state = saving.load_checkpoint(ckpt, model, opt)
        if state.get("fingerprint") != fp:
            raise ConfigError("the checkpoint was made with another dataset or other settings; "
                              "pass --overwrite to start again", path=str(ckpt), field="--resume")
        log(f"resuming after epoch {state['epoch']} (best validation loss "
            f"{state['best_val']:.4f} at epoch {state['best_epoch']})")

    resample = bool(d_cfg["resample_noise"]) and data.has_mu
    max_epochs, patience = int(t_cfg["max_epochs"]), int(t_cfg["patience"])
    max_seconds = float(t_cfg.get("max_minutes", 0) or 0) * 60.0
    bs = int(t_cfg["batch_size"])
    n_train = data.train_rows[1] - data.train_rows[0]
    t_start = time.perf_counter() - float(state["seconds"])
    stop_reason = "max_epochs"
    epoch_bar = tqdm(total=max_epochs, initial=state["epoch"], desc="epochs", unit="epoch",
                     disable=quiet, leave=True)
    while state["epoch"] < max_epochs:
        epoch = state["epoch"] + 1
        g = torch.Generator().manual_seed(seed * 100003 + epoch)
        model.train()
        tot, n = 0.0, 0
        bar = tqdm(total=n_train, desc=f"epoch {epoch}", unit="spec", disable=quiet, leave=False)
        for th, x in data.batches(data.train_rows, bs, g, resample=resample):
            th, x = th.to(dev), x.to(dev)
            loss = model.loss(th, x)
            if not torch.isfinite(loss):
                continue
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if t_cfg["clip_grad_norm"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(t_cfg["clip_grad_norm"]))
            opt.step()
            tot += float(loss.detach()) * len(th)
            n += len(th)
            bar.update(len(th))
        bar.close()
        val = evaluate_loss(model, data, data.val_rows, dev)
        lr = opt.param_groups[0]["lr"]
        state["history"].append({"epoch": epoch, "train_loss": tot / max(n, 1), "val_loss": val,
                                 "lr": lr})
        state["epoch"] = epoch
        if val < state["best_val"] - 1e-4:
            state.update(best_val=val, best_epoch=epoch, bad_epochs=0, lr_bad_epochs=0)
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            state["bad_epochs"] += 1
            state["lr_bad_epochs"] += 1
            if state["lr_bad_epochs"] >= int(t_cfg["lr_patience"]):
                new_lr = max(lr * float(t_cfg["lr_factor"]), float(t_cfg["min_learning_rate"]))
                for pg in opt.param_groups:
                    pg["lr"] = new_lr
                state["lr_bad_epochs"] = 0
        state["seconds"] = time.perf_counter() - t_start
        saving.save_checkpoint(ckpt, model, opt, best_state, state)
        epoch_bar.update(1)
        epoch_bar.set_postfix(train=f"{tot / max(n, 1):.3f}", val=f"{val:.3f}",
                              best=f"{state['best_val']:.3f}")
        if state["bad_epochs"] >= patience:
            stop_reason = f"early stopping (no improvement for {patience} epochs)"
            break
        if max_seconds and state["seconds"] > max_seconds:
            stop_reason = f"time budget ({max_seconds / 60:g} min)"
            break
    epoch_bar.close()

    model.load_state_dict(best_state)
    model.eval()
    calib = quick_calibration(model, data, device=dev, seed=seed)
    ref = reference_statistics(model, data, dev)
    summary = {
        "dataset": str(Path(dataset).resolve()), "dataset_sha256": data_sha,
        "dataset_seed": data.seed, "n_train": n_train,
        "n_validation": data.val_rows[1] - data.val_rows[0], "epochs": state["epoch"],
        "best_epoch": state["best_epoch"], "best_val_loss": state["best_val"],
        "stop_reason": stop_reason, "seconds": round(state["seconds"], 1), "device": str(dev),
        "resample_noise": resample, "seed": seed, "validation_calibration": calib,
        "fine_tuned": init_net is not None,
        "settings": copy.deepcopy(settings),
    }
    versions = {"simxray": __version__, "torch": torch.__version__, "zuko": zuko.__version__}
    try:
        from importlib.metadata import version

        versions["sbi"] = version("sbi")
    except Exception:  # sbi is optional at training time (only validation needs it)
        pass
    spectrum_channels = None
    rmf_path = (data.response.get("rmf") or {}).get("path") if isinstance(data.response, dict) else None
    if rmf_path and Path(rmf_path).is_file():
        from ..io.ogip import read_rmf

        spectrum_channels = int(read_rmf(rmf_path).n_channels)
    cfg = data.config if isinstance(data.config, dict) else {}
    ins = cfg.get("instrument", {}) if isinstance(cfg.get("instrument"), dict) else {}
    meta = {
        "parameters": data.names, "prior": data.prior.to_dict(), "model": data.model,
        "pileup": cfg.get("pileup", {}), "response": data.response,
        "exposure": data.response.get("exposure", ins.get("exposure")),
        "frame_time": data.response.get("frame_time", ins.get("frame_time")),
        "channels": data.channels, "n_channels": data.n_channels,
        "spectrum_channels": spectrum_channels,
        "simulation_config": cfg, "low": low, "high": high, "log": logs,
        "embedding": settings["embedding"], "flow": settings["flow"], "training": summary,
        "versions": versions,
        **({"covariates": _covariate_meta(data)} if data.covariate_names else {}),
        "provenance": provenance(inputs={"dataset": summary["dataset"],
                                         "dataset_sha256": data_sha,
                                         "dataset_provenance": data.provenance}, seed=seed),
    }
    saving.save_posterior(out, model, meta, extra=ref)
    saving.write_json(out / "training.json", {"history": state["history"], "summary": summary})
    data.close()
    if not keep_checkpoint:
        shutil.rmtree(ckpt, ignore_errors=True)
    return summary


__all__ = ["BoxToReal", "NPEModel", "ThetaTransform", "TrainingData", "load_settings", "pick_device",
           "prior_scales", "train"]


class NPE:
    """An sbi-style trainer on arrays: ``NPE(prior).append(theta, x).train(out_dir)``.

    ``prior`` is a :class:`~simxray.simulator.prior.Prior` (or anything ``Prior.from_dict``
    takes); ``append`` adds simulations θ (N, P) in the prior's varying parameters and
    counts x (N, C) (several calls accumulate, as sbi's ``append_simulations``), optionally
    with their expected counts μ (N, C) so that every epoch redraws the Poisson noise
    (``data.resample_noise``); ``train`` runs the same trainer as ``simxray train``
    (:func:`train`; ``init=`` fine-tunes a trained posterior) and returns the
    :class:`~simxray.inference.posterior.Posterior`.  ``setup`` optionally records what a
    fit must match (``model``, ``channels``, ``response`` identity, ``exposure``,
    ``frame_time``; e.g. ``FitProblem.identity()``), otherwise the posterior is a generic
    one that `simxray fit` never picks by itself.

    >>> import numpy as np
    >>> from simxray.simulator.prior import Dist, Prior
    >>> prior = Prior([Dist("a", "uniform", 0.0, 1.0)])
    >>> trainer = NPE(prior).append(np.zeros((30, 1)), np.ones((30, 4)))
    >>> trainer.n_simulations
    30
    """

    def __init__(self, prior, settings: dict | None = None, setup: dict | None = None):
        from ..simulator.prior import Prior

        self.prior = prior if isinstance(prior, Prior) else Prior.from_dict(prior)
        self.settings = load_settings(None, settings)
        self.setup = dict(setup or {})
        self._theta: list[np.ndarray] = []
        self._x: list[np.ndarray] = []
        self._mu: list[np.ndarray | None] = []

    @property
    def n_simulations(self) -> int:
        return int(sum(len(t) for t in self._theta))

    def append(self, theta, x, mu=None) -> NPE:
        """Add simulations θ (N, P), counts x (N, C) and optionally their expected counts
        μ (N, C) (given for every call or for none); returns self."""
        from ..errors import ParameterError

        t = np.atleast_2d(np.asarray(theta, dtype=np.float32))
        c = np.atleast_2d(np.asarray(x, dtype=np.float32))
        if t.shape[1] != self.prior.dim or len(t) != len(c):
            raise ParameterError(f"expected theta (N, {self.prior.dim}) and x (N, C) with equal "
                                 f"N, got {t.shape} and {c.shape}", field="theta")
        if self._x and c.shape[1] != self._x[0].shape[1]:
            raise ParameterError(f"x has {c.shape[1]} channels; earlier simulations have "
                                 f"{self._x[0].shape[1]}", field="x")
        if not (np.all(np.isfinite(c)) and np.all(c >= 0)):
            raise ParameterError("x must be finite, non-negative counts", field="x")
        m = None
        if mu is not None:
            m = np.atleast_2d(np.asarray(mu, dtype=np.float32))
            if m.shape != c.shape or not (np.all(np.isfinite(m)) and np.all(m >= 0)):
                raise ParameterError(f"expected mu of x's shape {c.shape}, finite and "
                                     f"non-negative, got {m.shape}", field="mu")
        if self._mu and (m is None) != (self._mu[0] is None):
            raise ParameterError("give mu with every append or with none", field="mu")
        self._theta.append(t)
        self._x.append(c)
        self._mu.append(m)
        return self

    def train(self, out_dir: str | os.PathLike, *, overwrite: bool = False,
              quiet: bool = True, device: str | None = None, init=None):
        """Train on everything appended; write the posterior folder ``out_dir`` and return it
        as a :class:`~simxray.inference.posterior.Posterior`.  ``init``: a posterior (or
        :class:`NPEModel`) of the same architecture to fine-tune (:func:`train`)."""
        import json
        import tempfile

        import h5py

        from .posterior import Posterior

        theta, x = np.concatenate(self._theta), np.concatenate(self._x)
        setup = self.setup
        ch = setup.get("channels") or [1, x.shape[1]]
        with tempfile.TemporaryDirectory(prefix="simxray_npe_") as tmp:
            path = os.path.join(tmp, "data.h5")
            with h5py.File(path, "w") as f:
                d = f.create_dataset("theta", data=theta)
                d.attrs["names"] = list(self.prior.names)
                f.create_dataset("counts", data=x)
                if self._mu and self._mu[0] is not None:
                    f.create_dataset("mu", data=np.concatenate(self._mu))
                f.attrs["prior"] = json.dumps(self.prior.to_dict())
                f.attrs["n_done"] = len(theta)
                f.attrs["channels"] = [int(ch[0]), int(ch[1])]
                f.attrs["model"] = str(setup.get("model", ""))
                resp = {k: setup[k] for k in ("arf", "rmf", "exposure", "frame_time")
                        if k in setup}
                f.attrs["response"] = json.dumps(resp)
                f.attrs["config"] = json.dumps({"source": "simxray.inference.npe.NPE (arrays)"})
            train(path, self.settings, str(out_dir), overwrite=overwrite, quiet=quiet,
                  device=device, log=(lambda *_: None) if quiet else print, init=init)
        return Posterior.load(out_dir, device=device)
