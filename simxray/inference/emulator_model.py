"""The :class:`Emulator` object: load/save (a :mod:`simxray.io.modeldir` directory),
parameter and spectrum checks, and the expected counts for a batch of θ.  The module
documentation of :mod:`simxray.inference.emulator` describes the design."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.special import expit
from torch import Tensor

from ..errors import ParameterError, ResponseMismatchError, SimxrayError
from ..io.modeldir import (
    FORMATS,
    WEIGHTS,
    ModelDirError,
    load_model_dir,
    load_state,
    read_model_config,
    save_model_dir,
)
from .emulator_net import EmulatorNet, _numpy_weights

FORMAT, FORMAT_VERSION = FORMATS["emulator"]
TARGETS = ("counts", "source")
LOG_FLOOR = 1e-8            # counts: log μ floor (μ below it is never informative)
SOURCE_FLOOR = 1e-30        # source: photons/cm²/s per kernel bin floor
RANGE_TOL = 1e-6            # relative slack on the training range (float32 round-off)
REL_TOL = 1e-3              # exposure / frame time agreement
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "data" / "emulator_default"

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
        cov = config.get("covariates") or {}
        #: covariates an unbound emulator takes per spectrum (exposure, frame time; s)
        self.covariate_names: list[str] = list(cov.get("names") or [])
        self.covariate_inputs: list[str] = list(cov.get("inputs") or [])
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
        cov = f", covariates={self.covariate_names}" if self.covariate_names else ""
        return (f"Emulator({self.config['model']!r}, target={self.target!r}, params={self.names}, "
                f"channels={self.channels}{cov})")

    # -- observing modes ----------------------------------------------------------------
    def _unbound(self) -> SimxrayError:
        d = self.config["covariates"].get("distributions") or {}
        ft = d.get("frame_time")
        modes = (" (trained frame times " + ", ".join(f"{v:g}" for v in ft["values"]) + " s)"
                 if ft and ft.get("dist") == "choice" else "")
        return SimxrayError("this emulator serves several observing modes" + modes + "; bind it "
                            "to one first: emulator.at(exposure=..., frame_time=...) or "
                            "emulator.for_spectrum(spectrum), or pass covariates=",
                            field="covariates")

    def at(self, exposure: float | None = None, frame_time: float | None = None) -> Emulator:
        """This multi-mode emulator for one observation: exposure and frame time (s).

        The frame time enters the network's first layer as a constant (folded into its bias)
        and the exposure shifts log μ exactly (μ ∝ exposure), so the result is an ordinary
        single-mode emulator with the same fast paths.  The frame time must be one of the
        trained values (or inside a trained range); the exposure may be any positive value
        (None: the reference exposure the network's log μ refers to).

        >>> emu = Emulator.load("simxray/data/emulator_relxill_bright")   # doctest: +SKIP
        >>> emu.at(exposure=5e4, frame_time=0.84104).expected(theta)       # doctest: +SKIP
        """
        import copy

        if not self.covariate_names:
            raise SimxrayError("this emulator is trained for one observing mode (exposure "
                               f"{self.config.get('exposure')} s, frame time "
                               f"{self.config.get('frame_time')} s); it cannot be rebound",
                               field="covariates")
        cov = self.config["covariates"]
        if exposure is None:
            exposure = float(cov["exposure_reference"])
        if not np.isfinite(exposure) or float(exposure) <= 0:
            raise ParameterError(f"expected a positive exposure in s, got {exposure!r}",
                                 field="exposure")
        if "frame_time" in self.covariate_inputs:
            if frame_time is None:
                raise ParameterError("the emulator conditions on the frame time; expected "
                                     "frame_time= (s)", field="frame_time")
            self._check_frame_time(float(frame_time))
        ft = float(frame_time) if frame_time is not None else self.config.get("frame_time")
        P = len(self.names)
        arch = self.config["architecture"]
        net = EmulatorNet(P, int(self.config["n_outputs"]), int(arch["hidden"]),
                          int(arch["layers"]), int(arch.get("n_basis", 0)))
        sd = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        if self.covariate_inputs:
            vals = torch.full((1, len(self.covariate_inputs)), ft, dtype=torch.float64)
            lo, width, lg = (sd[k][P:].double() for k in ("lo", "width", "log"))
            v = torch.where(lg.bool(), torch.log(vals), vals)
            u = (2.0 * (v - lo) / width - 1.0)[0]
            W = sd["mlp.0.weight"]
            sd["mlp.0.bias"] = (sd["mlp.0.bias"].double() + W[:, P:].double() @ u).float()
            sd["mlp.0.weight"] = W[:, :P].contiguous()
            for k in ("lo", "width", "log"):
                sd[k] = sd[k][:P].contiguous()
        shift = math.log(float(exposure) / float(cov["exposure_reference"]))
        sd["mean"] = (sd["mean"].double() + shift).float()
        net.load_state_dict(sd)
        cfg = copy.deepcopy(self.config)
        cfg.pop("covariates")
        cfg["bound"] = {"exposure": float(exposure), "frame_time": ft,
                        "from": str(self.path) if self.path else None,
                        "weights_sha256": self.config.get("weights_sha256")}
        cfg["exposure"], cfg["frame_time"] = float(exposure), ft
        if ft is not None and "pileup.ftime" in cfg.get("fixed", {}):
            cfg["fixed"]["pileup.ftime"] = ft
            for d in cfg["prior"].get("parameters", []):
                if d.get("name") == "pileup.ftime":
                    d.update({"dist": "fixed", "value": ft})
        return Emulator(net, cfg, self.path)

    def _check_frame_time(self, frame_time: float) -> None:
        """Raise :class:`ParameterError` unless ``frame_time`` (s) is a trained one."""
        from ..simulator.covariates import mismatch

        dists = self.config["covariates"].get("distributions") or {}
        if "frame_time" in dists:
            bad = mismatch({"frame_time": dists["frame_time"]}, None, frame_time, "emulator")
            if bad:
                raise ParameterError(bad[0], field="frame_time")

    def for_spectrum(self, spec, force: bool = False, check: bool = True) -> Emulator:
        """:meth:`at` the exposure and frame time of a :class:`~simxray.io.ogip.Spectrum`
        after :meth:`check_spectrum` (``check=False``: the caller has checked it); itself for
        a single-mode emulator."""
        if check:
            self.check_spectrum(spec, force=force)
        if not self.covariate_names:
            return self
        return self.at(exposure=spec.exposure, frame_time=spec.frame_time)

    # -- checks -----------------------------------------------------------------------
    def check_theta(self, theta: np.ndarray, on_range: str = "error") -> np.ndarray:
        """theta (B, P) as float64; parameters outside the training range raise
        :class:`ParameterError` (``on_range="warn"``: warn and clamp to the range)."""
        if self.covariate_names:
            raise self._unbound()
        return self._check_theta(theta, on_range)

    def _check_theta(self, theta: np.ndarray, on_range: str = "error") -> np.ndarray:
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
        from .compat import check_compatibility

        problems = [p.replace("the posterior", "the emulator") for p in
                    check_compatibility(self.config, spec)]
        if problems and not force:
            raise ResponseMismatchError(problems[0] + " (the emulator includes the response and "
                                        "pileup it was trained with; retrain it for this one)",
                                        path=str(getattr(spec, "path", "") or "") or None)
        return problems

    def select(self, spec) -> np.ndarray:
        """The spectrum's counts (C,) in the emulator's channels."""
        from .compat import select_channels

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
        if self.covariate_names:
            raise self._unbound()
        return self._network(theta.dtype)(theta)

    @property
    def folded(self):
        """The network with scaling, output layer and basis folded
        (:class:`~simxray.inference.fastlike.FoldedNetwork`; compiled with numba)."""
        if self.covariate_names:
            raise self._unbound()
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
        return self._log_matrix(theta)

    def _log_matrix(self, theta: np.ndarray) -> np.ndarray:
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
        if self.covariate_names:
            raise self._unbound()
        out = torch.exp(self.log_output(theta[:, self.in_cols] if self.in_cols else theta))
        if self.target == "counts":
            return out
        return self._pile(out.double(), theta.double())

    def expected(self, theta: np.ndarray, on_range: str = "error", batch_size: int = 8192,
                 return_fraction: bool = False, covariates: np.ndarray | None = None):
        """Expected source counts μ (B, C) float64 for theta (B, P), like the simulator.

        ``return_fraction`` (``target="source"`` only) also gives the pileup fraction.
        ``covariates`` (B, K) in :attr:`covariate_names` order (exposure, frame time; s): one
        observing mode per row, for an emulator trained on several (see :meth:`at`).
        """
        if covariates is not None:
            return self._expected_rows(theta, covariates, on_range, batch_size)
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

    def _expected_rows(self, theta, covariates, on_range: str, batch_size: int) -> np.ndarray:
        if not self.covariate_names:
            raise SimxrayError("this emulator is trained for one observing mode; it takes no "
                               "covariates", field="covariates")
        t = self._check_theta(theta, on_range)
        c = np.atleast_2d(np.asarray(covariates, dtype=float))
        if c.shape != (len(t), len(self.covariate_names)):
            raise ParameterError(f"covariates have shape {c.shape}; expected ({len(t)}, "
                                 f"{len(self.covariate_names)}) ({', '.join(self.covariate_names)})",
                                 field="covariates")
        col = dict(zip(self.covariate_names, c.T, strict=True))
        if not np.all(np.isfinite(c)) or np.any(c <= 0):
            raise ParameterError("covariates must be positive (s)", field="covariates")
        for ft in np.unique(col.get("frame_time", [])):
            self._check_frame_time(float(ft))
        ext = np.column_stack([t] + [col[n] for n in self.covariate_inputs])
        ref = float(self.config["covariates"]["exposure_reference"])
        shift = np.log(col["exposure"] / ref) if "exposure" in col else np.zeros(len(t))
        out = [self._log_matrix(ext[a:a + batch_size]) for a in range(0, len(t), batch_size)]
        return np.exp((np.concatenate(out) if out else np.zeros((0, self.n_channels)))
                      + shift[:, None])

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
        out = save_model_dir(out_dir, self.net.state_dict(), self.config, "emulator")
        self.config = read_model_config(out, "emulator")
        self.path = out
        return out

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, verify: bool = True) -> Emulator:
        """Rebuild an emulator from its directory (default: the shipped one)."""
        d = Path(path) if path is not None else DEFAULT_DIR
        cfg, tensors = load_model_dir(d, "emulator", required=REQUIRED_KEYS, verify=verify,
                                      what="an emulator directory written by 'simxray train-emulator'")
        arch = cfg["architecture"]
        try:
            n_in = len(cfg["parameters"]) + len((cfg.get("covariates") or {}).get("inputs") or [])
            net = EmulatorNet(n_in, int(cfg["n_outputs"]), int(arch["hidden"]),
                              int(arch["layers"]), int(arch.get("n_basis", 0)))
        except (TypeError, ValueError, KeyError) as exc:
            raise ModelDirError(f"cannot rebuild the network ({exc})", path=str(d / "config.json")) from None
        load_state(net, tensors, d / WEIGHTS)
        return cls(net, cfg, d)


def load_emulator(path: str | os.PathLike | None = None) -> Emulator:
    """:meth:`Emulator.load` (default: the shipped emulator)."""
    return Emulator.load(path)
