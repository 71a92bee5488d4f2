"""Neural emulator of the piled-up forward model: θ → expected counts per channel.

Two targets share one network design (an MLP on unit-scaled parameters whose output is
log μ in a fixed linear basis):

* ``target = "counts"`` (the default and the shipped emulator): every parameter (source
  and pileup) → log expected source counts per channel, ARF, RMF and pileup included.
  One small matrix product chain per batch: tens of microseconds per spectrum.
* ``target = "source"``: the model parameters → log of the source spectrum on the pileup
  kernel grid (photons/cm²/s per bin); the exact Davis pileup and the RMF fold
  (:mod:`simxray.instrument.pileup`) are applied afterwards.  Nearly exact, but it pays for
  the pileup convolution and the fold, which dominate the simulator's cost.

Inputs: each parameter scaled to [-1, 1] over its training range (in log for log-uniform
priors).  Outputs: ``log μ = mean + std · (z @ basis)`` with per-channel mean and scale of
the training set's log μ and ``basis`` either the identity or the leading principal
components.  Loss: squared log error weighted by the Poisson variance (μ + 1): an error
δ in log μ costs about μ δ² in C-stat, so the fit concentrates where the likelihood does.

An emulator directory holds ``weights.safetensors`` (network + buffers) and
``config.json`` (format, target, prior, model, parameter names and training ranges,
fixed values, response identity with sha256, exposure, frame time, channels, the
simulation config, architecture, training summary, versions, provenance, weights
sha256), plus ``training.json`` (loss history).  No pickles.

Out-of-range parameters raise :class:`~simxray.errors.ParameterError` (or warn and clamp
with ``on_range="warn"``); spectra and responses the emulator was not trained for raise
:class:`~simxray.errors.ResponseMismatchError` (:meth:`Emulator.check_spectrum`).
"""

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
from scipy.special import expit
from torch import Tensor, nn

from ..errors import FileFormatError, ParameterError, ResponseMismatchError, SimxrayError
from ..provenance import provenance, sha256

FORMAT = "simxray-emulator"
FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
CONFIG = "config.json"
TARGETS = ("counts", "source")
LOG_FLOOR = 1e-8            # counts: log μ floor (μ below it is never informative)
SOURCE_FLOOR = 1e-30        # source: photons/cm²/s per kernel bin floor
RANGE_TOL = 1e-6            # relative slack on the training range (float32 round-off)
REL_TOL = 1e-3              # exposure / frame time agreement
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "data" / "emulator_default"

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


def one_blas_thread():
    """Context limiting numpy's BLAS to one thread (threadpoolctl, when installed).

    The emulator's matrix products are small: on a busy machine a multi-threaded BLAS
    spends 10-100x longer synchronising threads than computing (2 ms instead of 40 us per
    spectrum in batches of 16 on a loaded 2-core machine)."""
    import contextlib

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


#: config.json keys an emulator directory must hold
REQUIRED_KEYS = ("parameters", "prior", "model", "low", "high", "log", "channels", "n_channels",
                 "e_min", "e_max", "architecture", "n_outputs", "weights_sha256")


def default_emulator_dir() -> Path:
    """The shipped emulator (simxray/data/emulator_default)."""
    return DEFAULT_DIR


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


# -- the emulator --------------------------------------------------------------------------

class Emulator:
    """A trained emulator: ``expected(theta) -> μ (B, C)`` like :meth:`Simulator.expected`.

    Attributes: ``names`` (columns of theta), ``low``/``high`` (training range), ``log``,
    ``channel``, ``e_min``, ``e_max`` (C,), ``background_mu`` (C,) expected background of
    the training setup (or None), ``config`` (the JSON config), ``path``.
    """

    def __init__(self, net: EmulatorNet, config: dict, path: Path | None = None):
        self.net = net.eval()
        self.config = config
        self.path = path
        self.names: list[str] = list(config["parameters"])
        self.low = np.asarray(config["low"], dtype=float)
        self.high = np.asarray(config["high"], dtype=float)
        self.log = np.asarray(config["log"], dtype=bool)
        self.in_cols: list[int] | None = None
        if config.get("target") == "source" and config.get("all_parameters"):
            # theta holds every parameter (the exact pileup needs its own); the network
            # sees the model columns only
            from ..simulator.prior import Prior

            pr = Prior.from_dict(config["prior"])
            self.in_cols = [list(pr.names).index(n) for n in self.names]
            self.names = list(pr.names)
            self.low, self.high = pr.bounds[:, 0].astype(float), pr.bounds[:, 1].astype(float)
            self.log = np.array([d.dist == "loguniform" for d in pr.varying], dtype=bool)
        self.target: str = config.get("target", "counts")
        lo, hi = (int(v) for v in config["channels"])
        self.channel = np.arange(lo, hi + 1)
        self.e_min = np.asarray(config["e_min"], dtype=float)
        self.e_max = np.asarray(config["e_max"], dtype=float)
        bkg = config.get("background_expected")
        self.background_mu = None if bkg is None else np.asarray(bkg, dtype=float)
        self._sim = None
        self._net64: EmulatorNet | None = None
        self._np = _numpy_weights(net)
        self._folded = None
        slack = RANGE_TOL * (self.high - self.low)
        self._lo_slack, self._hi_slack = self.low - slack, self.high + slack

    # -- description ------------------------------------------------------------------
    @property
    def n_channels(self) -> int:
        return int(self.config["n_channels"])

    @property
    def channels(self) -> list[int]:
        return [int(v) for v in self.config["channels"]]

    @property
    def prior(self):
        from ..simulator.prior import Prior

        return Prior.from_dict(self.config["prior"])

    @property
    def fixed(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.config.get("fixed", {}).items()}

    def __repr__(self) -> str:
        return (f"Emulator({self.config['model']!r}, target={self.target!r}, params={self.names}, "
                f"channels={self.channels})")

    # -- checks -----------------------------------------------------------------------
    def check_theta(self, theta: np.ndarray, on_range: str = "error") -> np.ndarray:
        """theta (B, P) as float64; parameters outside the training range raise
        :class:`ParameterError` (``on_range="warn"``: warn and clamp to the range)."""
        t = np.atleast_2d(np.asarray(theta, dtype=float))
        if t.shape[-1] != len(self.names):
            raise ParameterError(f"theta has {t.shape[-1]} columns; expected {len(self.names)} "
                                 f"({', '.join(self.names)})", field="theta")
        if ((t >= self._lo_slack) & (t <= self._hi_slack)).all():     # fast path (NaN fails it)
            return t
        if not np.all(np.isfinite(t)):
            raise ParameterError("theta contains NaN or infinite values", field="theta")
        slack = RANGE_TOL * (self.high - self.low)
        bad = (t < self.low - slack) | (t > self.high + slack)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            msg = (f"{t[i, j]:.6g} is outside the emulator's training range [{self.low[j]:.6g}, "
                   f"{self.high[j]:.6g}]; it does not extrapolate (use the exact simulator)")
            if on_range == "warn":
                warnings.warn(f"{self.names[j]}: {msg}; clamped to the range", stacklevel=3)
            elif on_range != "clip":
                raise ParameterError(msg, field=self.names[j])
        return np.clip(t, self.low, self.high)

    def check_prior(self, prior) -> None:
        """Raise unless ``prior`` has the emulator's parameters, inside its training range,
        and the fixed values it was trained with."""
        if list(prior.names) != self.names:
            raise ParameterError(f"the prior's parameters {prior.names} differ from the "
                                 f"emulator's {self.names}", field="prior")
        b = prior.bounds
        slack = RANGE_TOL * (self.high - self.low)
        for j, n in enumerate(self.names):
            if b[j, 0] < self.low[j] - slack[j] or b[j, 1] > self.high[j] + slack[j]:
                raise ParameterError(f"prior bounds [{b[j, 0]:.6g}, {b[j, 1]:.6g}] exceed the "
                                     f"emulator's training range [{self.low[j]:.6g}, "
                                     f"{self.high[j]:.6g}]", field=n)
        for n, v in prior.fixed.items():
            want = self.fixed.get(n)
            if want is not None and not math.isclose(v, want, rel_tol=REL_TOL, abs_tol=1e-12):
                raise ParameterError(f"fixed at {v:.6g}; the emulator was trained with {want:.6g}",
                                     field=n)

    def check_spectrum(self, spec, force: bool = False) -> list[str]:
        """Reasons why a :class:`~simxray.io.ogip.Spectrum` does not belong to this emulator.

        Raises :class:`ResponseMismatchError` with the first one unless ``force`` (then the
        list is returned for warnings).  Compares ARF/RMF sha256, exposure, frame time and
        the channel count.
        """
        from .fit import check_compatibility

        problems = [p.replace("the posterior", "the emulator") for p in
                    check_compatibility(self.config, spec)]
        if problems and not force:
            raise ResponseMismatchError(problems[0] + " (the emulator includes the response and "
                                        "pileup it was trained with; retrain it for this one)",
                                        path=str(getattr(spec, "path", "") or "") or None)
        return problems

    def select(self, spec) -> np.ndarray:
        """The spectrum's counts (C,) in the emulator's channels."""
        from .fit import select_channels

        return select_channels(self.config, spec)

    # -- evaluation -------------------------------------------------------------------
    def _network(self, dtype: torch.dtype) -> EmulatorNet:
        if dtype == torch.float32:
            return self.net
        if self._net64 is None:
            import copy

            self._net64 = copy.deepcopy(self.net).to(dtype).eval()
        return self._net64

    def log_output(self, theta: Tensor) -> Tensor:
        """The network's log output (B, C) for a tensor theta (B, P) (autograd-friendly)."""
        return self._network(theta.dtype)(theta)

    @property
    def folded(self):
        """The network with scaling, output layer and basis folded
        (:class:`~simxray.inference.fastlike.FoldedNetwork`; compiled with numba)."""
        if self._folded is None:
            from .fastlike import FoldedNetwork

            self._folded = FoldedNetwork(self._np)
        return self._folded

    def log_numpy(self, theta: np.ndarray) -> np.ndarray:
        """The network's log output (B, C) float64 for theta (B, P) without torch and
        without range check: the fast path of :meth:`expected`.  Small batches run in one
        compiled loop (:mod:`~simxray.inference.fastlike`), large ones as numpy matrix
        products; both in float32 (round-off ~1e-6 in log mu), the output in float64."""
        from .fastlike import COMPILED_MAX_BATCH

        if len(np.atleast_2d(theta)) <= COMPILED_MAX_BATCH and self.folded.compiled:
            return self.folded.log_mu(theta)
        w = self._np
        t = np.array(theta, dtype=np.float64, ndmin=2)
        lc = w["log_cols"]
        t[:, lc] = np.log(np.maximum(t[:, lc], 1e-300))
        h = (t * w["a"] + w["c"]).astype(np.float32)
        for W, b in w["hidden"]:
            h = h @ W
            h += b
            h *= expit(h)                       # SiLU
        z = h @ w["out_W"]
        z += w["out_b"]
        z = z @ w["basis"] if w["basis"] is not None else z * w["scale"]
        return z + w["mean"]                     # float64

    def expected_torch(self, theta: Tensor) -> Tensor:
        """μ (B, C) for theta (B, P) as tensors (no range check; float32 or float64)."""
        out = torch.exp(self.log_output(theta[:, self.in_cols] if self.in_cols else theta))
        if self.target == "counts":
            return out
        return self._pile(out.double(), theta.double())

    def expected(self, theta: np.ndarray, on_range: str = "error", batch_size: int = 8192,
                 return_fraction: bool = False):
        """Expected source counts μ (B, C) float64 for theta (B, P), like the simulator.

        ``return_fraction`` (``target="source"`` only) also gives the pileup fraction.
        """
        t = self.check_theta(theta, on_range)
        if self.target == "counts" and not return_fraction:
            if len(t) <= batch_size:
                return np.exp(self.log_numpy(t))
            return np.concatenate([np.exp(self.log_numpy(t[a:a + batch_size]))
                                   for a in range(0, len(t), batch_size)])
        outs, fracs = [], []
        with torch.no_grad():
            for a in range(0, len(t), batch_size):
                tt = torch.as_tensor(t[a:a + batch_size], dtype=torch.float32)
                if self.target == "counts":
                    outs.append(torch.exp(self.net(tt)).double().numpy())
                else:
                    src = torch.exp(self.net(tt[:, self.in_cols] if self.in_cols else tt)
                                    .double())
                    mu, fr = self._pile(src, torch.as_tensor(t[a:a + batch_size]), True)
                    outs.append(mu.numpy())
                    fracs.append(fr.numpy())
        mu = np.concatenate(outs) if outs else np.zeros((0, self.n_channels))
        if return_fraction:
            if self.target != "source":
                raise SimxrayError("the pileup fraction is not emulated (target 'counts'); use the "
                                   "simulator", field="return_fraction")
            return mu, np.concatenate(fracs)
        return mu

    __call__ = expected

    # -- the "source" target: exact pileup after the emulated source ---------------------
    def simulator(self):
        """The exact simulator of the training setup (rebuilt from the stored config)."""
        if self._sim is None:
            from .diagnostics import simulator_for

            self._sim = simulator_for(self.config)
        return self._sim

    def _pile(self, src: Tensor, theta: Tensor, return_fraction: bool = False):
        from ..instrument.pileup import PileupParams, get_pileup

        sim = self.simulator()
        pile = get_pileup(sim.response, sim.pileup_grid)
        K = pile.source_edges.size - 1
        first = int(self.config["source_first_bin"])
        full = torch.zeros((src.shape[0], K), dtype=torch.float64)
        full[:, first:] = src
        _, pp = sim.split(theta.detach().cpu().numpy())
        pars = PileupParams.from_mapping({k: np.asarray(v, float).copy() for k, v in pp.items()})
        mu, frac = pile.channel_counts(full, pars, channels=sim.slice)
        mu = mu.clamp_min(0.0)
        return (mu, frac) if return_fraction else mu

    # -- persistence ------------------------------------------------------------------
    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write weights.safetensors then config.json (with the weights' sha256)."""
        from .saving import write_json, write_tensors

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_tensors(out / WEIGHTS, self.net.state_dict(), {"format": FORMAT})
        cfg = dict(self.config)
        cfg["format"], cfg["format_version"] = FORMAT, FORMAT_VERSION
        cfg["weights_sha256"] = sha256(out / WEIGHTS)
        self.config = cfg
        write_json(out / CONFIG, cfg)
        self.path = out
        return out

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, verify: bool = True) -> Emulator:
        """Rebuild an emulator from its directory (default: the shipped one)."""
        from .saving import read_model_dir, read_tensors

        d = Path(path) if path is not None else DEFAULT_DIR
        cfg = read_model_dir(d, fmt=FORMAT, version=FORMAT_VERSION, required=REQUIRED_KEYS,
                             what="an emulator directory written by 'simxray train-emulator'")
        w = d / WEIGHTS
        if not w.exists():
            raise FileFormatError(f"missing {WEIGHTS}", path=str(d))
        if verify and sha256(w) != cfg["weights_sha256"]:
            raise FileFormatError("sha256 differs from config.json's weights_sha256 (corrupt or "
                                  "replaced file)", path=str(w))
        arch = cfg["architecture"]
        try:
            net = EmulatorNet(len(cfg["parameters"]), int(cfg["n_outputs"]), int(arch["hidden"]),
                              int(arch["layers"]), int(arch.get("n_basis", 0)))
            net.load_state_dict(read_tensors(w), strict=True)
        except (TypeError, ValueError, KeyError, RuntimeError) as exc:
            first = str(exc).splitlines()[0][:160]
            raise FileFormatError(f"weights do not fit the architecture in config.json ({first})",
                                  path=str(w)) from None
        return cls(net, cfg, d)


def load_emulator(path: str | os.PathLike | None = None) -> Emulator:
    """:meth:`Emulator.load` (default: the shipped emulator)."""
    return Emulator.load(path)


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
            data = {k: f[k][:n] for k in ("theta", "mu", "pileup_fraction") if k in f}
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
                         threads: int | None = None, out: str | os.PathLike | None = None
                         ) -> Emulator:
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
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        y = np.log(np.maximum(mu, LOG_FLOOR)).astype(np.float32)
        net, info = fit_network(theta, y, mu.astype(np.float32), config["low"], config["high"],
                                config["log"], s, quiet=quiet)
    finally:
        torch.set_num_threads(old_threads)
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
        from .saving import write_json

        emu.save(out)
        write_json(Path(out) / "training.json", {"history": history, "settings": s})
    return emu


def train_emulator(dataset: str | os.PathLike, out: str | os.PathLike | None = None, *,
                   settings: Mapping[str, Any] | None = None, quiet: bool = False,
                   threads: int | None = None, overwrite: bool = False, log=print) -> Emulator:
    """Train an emulator on a simulator dataset; write it to ``out`` (if given).

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
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    t0 = time.perf_counter()
    try:
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
        if s["target"] == "counts":
            in_cols = list(range(len(names)))
            y = np.log(np.maximum(np.asarray(data["mu"], dtype=np.float64), LOG_FLOOR))
            w_src = np.asarray(data["mu"], dtype=np.float32)
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
        net, info = fit_network(theta[:, in_cols], y.astype(np.float32), w_src,
                                [low[i] for i in in_cols], [high[i] for i in in_cols],
                                [log_p[i] for i in in_cols], s, quiet=quiet)
        history, n_tr, n_val = info["history"], info["n_train"], info["n_validation"]
        best = (info["best_val_loss"], None, info["best_epoch"])
        stop, n_basis, C = info["stop_reason"], info["n_basis"], y.shape[1]
        # validation accuracy in the units that matter
        val_stats = {}
        if s["target"] == "counts":
            mu_val = np.asarray(data["mu"][n_tr:], dtype=float)
            val_stats = accuracy(np.exp(info["pred_val"]), mu_val)
            val_stats.pop("worst_per_spectrum", None)
        seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(old_threads)

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
        "exposure": response.get("exposure"), "frame_time": response.get("frame_time"),
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
    emu = Emulator(net, cfg)
    if out is not None:
        from .saving import write_json

        emu.save(out)
        write_json(Path(out) / "training.json", {"history": history, "settings": s})
    return emu


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


# -- accuracy ------------------------------------------------------------------------------

def accuracy(mu_emu: np.ndarray, mu_true: np.ndarray, min_counts: float = 10.0) -> dict:
    """Relative errors |emulated - simulated| / simulated over channels with at least
    ``min_counts`` simulated counts: median, 90th, 99th percentile, max; plus per spectrum
    the worst channel (``worst_per_spectrum``, (N,))."""
    e = np.asarray(mu_emu, float)
    t = np.asarray(mu_true, float)
    mask = t >= min_counts
    rel = np.abs(e - t) / np.where(mask, t, 1.0)
    vals = rel[mask]
    if vals.size == 0:
        return {"n_channels_used": 0}
    worst = np.where(mask, rel, 0.0).max(1)
    return {"min_counts": float(min_counts), "n_channels_used": int(vals.size),
            "median": float(np.median(vals)), "p90": float(np.percentile(vals, 90)),
            "p99": float(np.percentile(vals, 99)), "max": float(vals.max()),
            "total_counts_rel_median": float(np.median(np.abs(e.sum(1) / t.sum(1) - 1.0))),
            "worst_per_spectrum": worst}


def delta_cstat(mu_emu: np.ndarray, mu_true: np.ndarray, rng: np.random.Generator,
                background: np.ndarray | None = None) -> np.ndarray:
    """|C(d, μ_emu + b) - C(d, μ_true + b)| (N,) for Poisson data d ~ Poisson(μ_true + b)."""
    from .stats import cstat

    b = 0.0 if background is None else np.asarray(background, float)
    m_true = np.asarray(mu_true, float) + b
    d = rng.poisson(m_true)
    return np.abs(cstat(d, np.asarray(mu_emu, float) + b) - cstat(d, m_true))


def time_per_call(fn, *args, repeats: int = 20, min_time: float = 0.2,
                  clock=time.perf_counter) -> float:
    """Best mean seconds per call of ``fn(*args)`` over three timing rounds (``clock``:
    wall time by default, ``time.process_time`` for CPU time)."""
    fn(*args)
    best = math.inf
    for _ in range(3):
        n, t0 = 0, clock()
        while n < repeats or clock() - t0 < min_time:
            fn(*args)
            n += 1
        best = min(best, (clock() - t0) / n)
    return best


def validate_emulator(path: str | os.PathLike | Emulator | None = None, *, n: int = 1000,
                      seed: int = 12345, out_dir: str | os.PathLike | None = None,
                      quiet: bool = False, plots: bool = True, n_worst: int = 4,
                      timing: bool = True) -> dict:
    """Accuracy of an emulator against its exact simulator on ``n`` fresh prior draws.

    Returns a JSON-able dict: relative errors (channels with >= 10 expected counts),
    mean / median / 99th-percentile |ΔC-stat| on Poisson data, goals and whether they are
    met, timings per likelihood evaluation (single spectrum and a batch of 16, what emcee's
    ensemble moves evaluate at once with 32 walkers), worst cases; writes ``worst.png`` and ``errors.png`` to ``out_dir``
    (default EMULATOR/validation).
    """
    emu = path if isinstance(path, Emulator) else Emulator.load(path)
    if n < 1:
        raise SimxrayError(f"expected a positive number of draws, got {n}", field="--n")
    from tqdm import tqdm

    from .diagnostics import simulator_for

    sim = simulator_for(emu.config)
    rng = np.random.default_rng(seed)
    prior = sim.prior
    theta = prior.sample(n, rng)
    t0 = time.perf_counter()
    mus = []
    bs = 64
    with tqdm(total=n, unit="spectra", disable=quiet, desc="exact simulator") as bar:
        for a in range(0, n, bs):
            mus.append(sim.expected(theta[a:a + bs]))
            bar.update(min(bs, n - a))
    mu_true = np.concatenate(mus)
    t_sim = time.perf_counter() - t0
    cols = [prior.names.index(nm) for nm in emu.names]
    mu_emu = emu.expected(theta[:, cols])
    acc = accuracy(mu_emu, mu_true)
    worst = acc.pop("worst_per_spectrum", np.zeros(n))
    bkg = sim.background_mu
    dc = delta_cstat(mu_emu, mu_true, rng, bkg)
    res: dict[str, Any] = {
        "emulator": str(emu.path) if emu.path else None, "target": emu.target, "n": int(n),
        "seed": int(seed), "relative_error": acc,
        "delta_cstat": {"mean": float(dc.mean()), "median": float(np.median(dc)),
                        "p90": float(np.percentile(dc, 90)), "p99": float(np.percentile(dc, 99)),
                        "max": float(dc.max())},
        "goals": {"median_rel_error": 0.01, "p99_rel_error": 0.05, "mean_abs_delta_cstat": 1.0},
    }
    res["pass"] = {"median_rel_error": acc.get("median", 1.0) <= 0.01,
                   "p99_rel_error": acc.get("p99", 1.0) <= 0.05,
                   "mean_abs_delta_cstat": res["delta_cstat"]["mean"] < 1.0}
    # accuracy against the pileup fraction (where errors concentrate)
    frac = sim.pileup_fraction(theta) if sim.pileup else np.zeros(n)
    bins = [0.0, 0.05, 0.2, 0.5, 1.0]
    res["by_pileup_fraction"] = []
    for lo, hi in zip(bins[:-1], bins[1:], strict=True):
        sel = (frac >= lo) & (frac < hi)
        if sel.sum() == 0:
            continue
        a = accuracy(mu_emu[sel], mu_true[sel])
        res["by_pileup_fraction"].append({"range": [lo, hi], "n": int(sel.sum()),
                                          "median": a.get("median"), "p99": a.get("p99"),
                                          "mean_abs_delta_cstat": float(dc[sel].mean())})
    order = np.argsort(-(worst + 1e-3 * dc))[:n_worst]
    res["worst"] = [{"theta": dict(zip(prior.names, map(float, theta[i]), strict=True)),
                     "max_rel_error": float(worst[i]), "abs_delta_cstat": float(dc[i]),
                     "total_counts": float(mu_true[i].sum()), "pileup_fraction": float(frac[i])}
                    for i in order]
    res["simulation_s_per_spectrum_batched"] = t_sim / n
    if timing:
        res["timing"] = speed_comparison(emu, sim, theta[:64, cols], theta[:64])
    res["files"] = {}
    if plots:
        d = Path(out_dir) if out_dir else (Path(emu.path) / "validation" if emu.path else None)
        if d is not None:
            d.mkdir(parents=True, exist_ok=True)
            res["files"]["worst"] = str(plot_worst(sim.e_min, sim.e_max, mu_true[order],
                                                   mu_emu[order], res["worst"], d / "worst.png"))
            res["files"]["errors"] = str(plot_errors(mu_emu, mu_true, dc, d / "errors.png"))
    return res


def speed_comparison(emu: Emulator, sim, theta_emu: np.ndarray, theta_sim: np.ndarray,
                     batch: int = 16) -> dict:
    """Seconds per likelihood evaluation (C-stat of one spectrum; per spectrum in a batch of
    ``batch``), one thread: the emulator as emcee evaluates it (the compiled C-stat of
    :mod:`.fastlike` for a ``counts`` emulator) and through ``expected`` + C-stat (the W-stat
    path), against the exact simulator.  Wall times are the best of three rounds; the
    ``cpu_`` figures are process CPU time, which a busy machine disturbs less."""
    from .fastlike import EmulatorCStat
    from .stats import cstat

    x = np.random.default_rng(0).poisson(sim.expected(theta_sim[:1])[0]).astype(float)
    fast = (EmulatorCStat(emu, x) if emu.target == "counts" and not emu.in_cols
            else lambda t: cstat(x, emu.expected(t)))

    def like_mu(t):
        return cstat(x, emu.expected(t))

    def like_sim(t):
        return cstat(x, sim.expected(t))

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    blas = one_blas_thread()
    blas.__enter__()
    out: dict = {"threads": 1}
    try:
        for clock, pre in ((time.perf_counter, ""), (time.process_time, "cpu_")):
            for b in (1, batch):
                key = "single" if b == 1 else f"per_spectrum_batch{b}"
                sp = "single" if b == 1 else f"batch{b}"
                e = time_per_call(fast, theta_emu[:b], clock=clock) / b
                m = time_per_call(like_mu, theta_emu[:b], clock=clock) / b
                s_ = time_per_call(like_sim, theta_sim[:b], repeats=5 if b == 1 else 2,
                                   clock=clock) / b
                out[f"{pre}emulator_s_{key}"] = e
                out[f"{pre}emulator_mu_s_{key}"] = m
                out[f"{pre}simulator_s_{key}"] = s_
                out[f"{pre}speedup_{sp}"] = s_ / e
                out[f"{pre}speedup_mu_{sp}"] = s_ / m
    finally:
        torch.set_num_threads(old)
        blas.__exit__(None, None, None)
    return out


def plot_worst(e_min: np.ndarray, e_max: np.ndarray, mu_true: np.ndarray, mu_emu: np.ndarray,
               info: list[dict], path: str | os.PathLike) -> Path:
    """Exact vs emulated expected counts and their ratio for the worst cases."""
    from ..plots import _pyplot, _save

    plt = _pyplot()
    k = len(mu_true)
    fig, axes = plt.subplots(2, k, figsize=(3.6 * k, 5.4), sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": [2.2, 1], "hspace": 0.06})
    mid = 0.5 * (e_min + e_max)
    for i in range(k):
        ax, rx = axes[0, i], axes[1, i]
        ax.step(mid, mu_true[i], where="mid", color="k", lw=1.0, label="exact simulator")
        ax.step(mid, mu_emu[i], where="mid", color="C1", lw=1.0, ls="--", label="emulator")
        ax.set_yscale("log")
        ax.set_ylim(bottom=max(1e-2, mu_true[i].max() * 1e-4))
        th = info[i]["theta"]
        txt = ", ".join(f"{n.replace('pileup.', '')}={v:.3g}" for n, v in th.items())
        ax.set_title(f"max err {info[i]['max_rel_error']:.1%}, |ΔC| {info[i]['abs_delta_cstat']:.2f}"
                     f"\npileup {info[i]['pileup_fraction']:.0%}", fontsize=8)
        ax.text(0.02, 0.02, txt, transform=ax.transAxes, fontsize=6, va="bottom")
        good = mu_true[i] >= 10
        ratio = np.where(mu_true[i] > 0, mu_emu[i] / np.maximum(mu_true[i], 1e-300) - 1.0, 0.0)
        rx.plot(mid[good], 100 * ratio[good], ".", ms=2, color="C1", label=r"$\mu \geq 10$")
        rx.plot(mid[~good], 100 * ratio[~good], ".", ms=1.5, color="0.6", label=r"$\mu < 10$")
        rx.axhline(0, color="k", lw=0.6)
        rx.set_ylim(-6, 6)
        rx.set_xscale("log")
        rx.set_xlabel("energy [keV]")
        if i == 0:
            ax.set_ylabel("expected counts per channel")
            rx.set_ylabel("emulated / exact − 1 [%]")
            ax.legend(fontsize=7, loc="upper right")
            rx.legend(fontsize=6, loc="lower right")
    fig.suptitle("emulator: worst held-out cases", fontsize=10)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.85, bottom=0.1, wspace=0.3)
    return _save(fig, path)


def plot_errors(mu_emu: np.ndarray, mu_true: np.ndarray, dc: np.ndarray,
                path: str | os.PathLike) -> Path:
    """Histograms of relative errors (channels with >= 10 counts) and of |ΔC-stat|."""
    from ..plots import _pyplot, _save

    plt = _pyplot()
    mask = mu_true >= 10
    rel = np.abs(mu_emu - mu_true)[mask] / mu_true[mask]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    a.hist(np.log10(np.maximum(rel, 1e-7)), bins=60, color="C0")
    for q, ls in ((50, "-"), (99, "--")):
        a.axvline(np.log10(np.percentile(rel, q)), color="k", ls=ls, lw=0.8, label=f"{q}th pct")
    a.axvline(np.log10(0.01), color="C3", lw=0.8, label="1% / 5% goals")
    a.axvline(np.log10(0.05), color="C3", lw=0.8)
    a.set_xlabel(r"$\log_{10}$ |emulated − exact| / exact (channels with $\mu \geq 10$)")
    a.set_ylabel("channels")
    a.legend(fontsize=7)
    b.hist(np.log10(np.maximum(dc, 1e-6)), bins=50, color="C1")
    b.axvline(np.log10(max(dc.mean(), 1e-6)), color="k", lw=0.8, label=f"mean {dc.mean():.3f}")
    b.axvline(0.0, color="C3", lw=0.8, label="goal: mean < 1")
    b.set_xlabel(r"$\log_{10}$ |ΔC-stat| (Poisson data, per spectrum)")
    b.set_ylabel("spectra")
    b.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def format_validation(res: dict) -> str:
    """Terminal report of :func:`validate_emulator`."""
    a, d = res["relative_error"], res["delta_cstat"]
    ok = res["pass"]

    def mark(k: str) -> str:
        return "ok" if ok[k] else "FAILED"

    rows = [f"emulator {res['emulator']} (target {res['target']}), {res['n']} held-out prior "
            f"draws (seed {res['seed']})",
            f"relative error, {a.get('n_channels_used', 0)} channels with >= 10 expected counts: "
            f"median {a.get('median', float('nan')):.3%} (goal <= 1%: {mark('median_rel_error')}), "
            f"99th pct {a.get('p99', float('nan')):.3%} (goal <= 5%: {mark('p99_rel_error')}), "
            f"max {a.get('max', float('nan')):.2%}",
            f"|delta C-stat| on Poisson data: mean {d['mean']:.3f} (goal < 1: "
            f"{mark('mean_abs_delta_cstat')}), median {d['median']:.3f}, 99th pct {d['p99']:.2f}, "
            f"max {d['max']:.2f}"]
    for b in res.get("by_pileup_fraction", []):
        rows.append(f"  pileup fraction {b['range'][0]:.0%}-{b['range'][1]:.0%} ({b['n']}): "
                    f"median {b['median']:.3%}, 99th {b['p99']:.3%}, mean |dC| "
                    f"{b['mean_abs_delta_cstat']:.3f}")
    t = res.get("timing")
    if t:
        rows.append(f"per likelihood evaluation (1 thread): emulator {t['emulator_s_single'] * 1e6:.0f} us, "
                    f"simulator {t['simulator_s_single'] * 1e3:.1f} ms -> {t['speedup_single']:.0f}x; "
                    f"per spectrum in batches of 16 (emcee, 32 walkers): {t['speedup_batch16']:.0f}x")
    return "\n".join(rows)


def _json_ready(obj):
    if isinstance(obj, dict):
        return {k: _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


__all__ = ["Emulator", "EmulatorNet", "load_emulator", "train_emulator", "validate_emulator",
           "fit_network", "emulator_from_arrays", "resolve_settings",
           "accuracy", "delta_cstat", "format_validation", "default_emulator_dir",
           "one_blas_thread"]
