"""Neural emulators of the Davis and the adapted pileup simulators, and emcee fits with them.

The adapted simulator (:class:`.simulator.PileupSimulator`, mode ``adapted``) is stochastic:
every spectrum gets its own φ from the calibrated population and its own offsets of the
learned correction's coefficients.  Its emulator therefore takes those nuisances as
**extra inputs** next to the source parameters θ:

* ψ = (logit alpha0, alpha1, logit f', ln eff) (:data:`.calibrate.PSI_NAMES`), each free
  component with a population spread (``psi.<name>``);
* the correction offsets whose spread is at least ``min_offset_sd`` (``offset.<k>``); the
  smaller ones are integrated out of the output (per channel, Gauss-Hermite:
  :meth:`.correction.ResidualCorrection.mean_factor`).

Trained uniformly over ± :data:`NUISANCE_WIDTH` population sds.  The same emulator serves
two fits (:func:`emcee_fits`):

* **marginalised** (the default): emcee samples θ and the nuisances, whose prior is the
  calibrated population (normal, truncated at ± :data:`NUISANCE_WIDTH` sd); the posterior
  of θ integrates over the pair-to-pair scatter, as the NPE trained on draws does;
* **plug-in** (:class:`PluginForward`): nuisances fixed at the population mean (typical pair),
  a θ-only forward model; narrower and over-confident where the scatter matters.

(Emulating the population-mean counts E[μ | θ] instead would give a θ-only model too, but
fitting one spectrum with the population's *mean* spectrum is biased where the scatter is
large: with a log-normal offset of sd 0.44 in the softest correction bump the mean predicts
~10 % more soft counts than the typical pair, which a fit absorbs in nH.)

The emulators' targets are :meth:`.simulator.PileupSimulator.expected_given` (deterministic).
The Davis emulator has θ only (φ fixed at Sherpa's defaults).  θ is in natural units (nH
in 10²² cm⁻², Gamma, norm) with the log-uniform columns scaled in log, like every
:class:`simxray.inference.emulator.Emulator`; the training loop is
:func:`simxray.inference.emulator.fit_network`.
"""

from __future__ import annotations

import time

import numpy as np

from .simulator import PileupSimulator, PriorBox

#: training settings of the adaptation's emulators (simxray.inference.emulator.DEFAULTS keys)
EMULATOR_SETTINGS = {"hidden": 128, "layers": 3, "epochs": 400, "batch_size": 128,
                     "learning_rate": 2e-3, "validation_fraction": 0.1, "max_minutes": 2.5}
NUISANCE_WIDTH = 3.5        # training range and prior truncation, population sds
MIN_OFFSET_SD = 0.08        # correction offsets with a smaller spread are integrated out


def nuisance_inputs(sim: PileupSimulator, min_offset_sd: float = MIN_OFFSET_SD) -> list[dict]:
    """The nuisance inputs of ``sim``'s emulator: name, kind (psi/offset), index, mean, sd."""
    from .calibrate import PSI_NAMES

    if sim.mode == "davis":
        return []
    cal = sim.calibration
    sd = np.sqrt(cal.tau ** 2 + cal.mean_se ** 2) * np.asarray(cal.free, float)
    out = [{"name": f"psi.{n}", "kind": "psi", "index": j, "mean": float(cal.mean[j]), "sd": float(sd[j])}
           for j, n in enumerate(PSI_NAMES) if sd[j] > 1e-9]
    if sim.mode == "adapted":
        csd = sim.correction.coef_sd.detach().numpy()
        out += [{"name": f"offset.{k}", "kind": "offset", "index": k, "mean": 0.0, "sd": float(v)}
                for k, v in enumerate(csd) if v >= min_offset_sd]
    return out


def simulator_mean(sim: PileupSimulator, theta_fit: np.ndarray, nu: np.ndarray | None,
                   nuis: list[dict]) -> np.ndarray:
    """Expected counts (N, C) at fit-space θ and nuisance inputs nu (N, Q); ψ components
    that are not inputs sit at the population mean, offsets that are not inputs are
    integrated out."""
    th = np.atleast_2d(np.asarray(theta_fit, float))
    if sim.mode == "davis":
        return sim.expected(th, None)
    psi = np.tile(sim.calibration.mean, (len(th), 1))
    offsets, given = None, np.zeros(0, bool)
    if sim.mode == "adapted":
        nb = int(sim.correction.coef_sd.shape[0])
        offsets, given = np.zeros((len(th), nb)), np.zeros(nb, bool)
    for q, d in enumerate(nuis):
        if d["kind"] == "psi":
            psi[:, d["index"]] = nu[:, q]
        else:
            offsets[:, d["index"]] = nu[:, q]
            given[d["index"]] = True
    return sim.expected_given(th, psi, offsets, None if offsets is None else ~given)


def emulator_prior(box: PriorBox, nuis: list[dict] | tuple = ()):
    """The box prior (log-uniform where the box is uniform in log10) and the nuisances'
    population (normal, truncated at ± :data:`NUISANCE_WIDTH` sd) as a
    :class:`simxray.simulator.prior.Prior` over natural parameters."""
    from ..simulator.prior import Dist, Prior

    dists = list(box.natural_prior().dists)
    dists += [Dist(d["name"], "normal", mu=d["mean"], sigma=d["sd"], low=d["mean"] - NUISANCE_WIDTH * d["sd"],
                   high=d["mean"] + NUISANCE_WIDTH * d["sd"]) for d in nuis]
    return Prior(dists)


def emulator_nuisance(emu) -> list[dict]:
    """The nuisance inputs recorded in an adaptation emulator's config."""
    return list(emu.config.get("adaptation_simulator", {}).get("nuisance", []))


def emulator_config(sim: PileupSimulator, box: PriorBox, nuis: list[dict]) -> dict:
    """What describes the simulator in the emulator's config.json."""
    d = sim.davis
    resp = d.response
    sl = d.slice
    off = int(getattr(resp, "offset", 0))
    lo, hi = box.natural_bounds()
    n_sel = sl.stop - sl.start
    e_min = resp.e_min[sl] if resp.e_min is not None else np.full(n_sel, np.nan)
    e_max = resp.e_max[sl] if resp.e_max is not None else np.full(n_sel, np.nan)
    info = {"mode": sim.mode,
            "output": "expected piled counts; correction offsets that are not inputs integrated out",
            "pileup": {"kernel": "alpha(E) Davis (simxray.adaptation.forward.EnergyDavis)",
                       "ftime": d.ftime, "fracexp": d.fracexp, "n": d.n, "g0": d.g0,
                       "grid_bins": int(d.K)},
            "nuisance": nuis, "nuisance_width_sd": NUISANCE_WIDTH}
    if sim.mode == "davis":
        info["phi"] = dict(sim.phi)
    else:
        info["calibration_population"] = sim.calibration.to_dict()["population"]
    if sim.mode == "adapted":
        info["correction_coef_sd"] = sim.correction.coef_sd.tolist()
    return {"parameters": list(box.names) + [q["name"] for q in nuis],
            "low": list(lo) + [q["mean"] - NUISANCE_WIDTH * q["sd"] for q in nuis],
            "high": list(hi) + [q["mean"] + NUISANCE_WIDTH * q["sd"] for q in nuis],
            "log": [bool(v) for v in box.log] + [False] * len(nuis),
            "prior": emulator_prior(box, nuis).to_dict(),
            "model": sim.source.expression, "fixed_model_parameters": dict(sim.source.fixed),
            "channels": [off + int(sl.start), off + int(sl.stop) - 1],
            "e_min": [float(v) for v in e_min], "e_max": [float(v) for v in e_max],
            "response": {"name": getattr(resp, "name", None)},
            "exposure": float(resp.exposure), "frame_time": float(d.ftime),
            "background_expected": None, "adaptation_simulator": info}


def _uniform_nuisance(nuis: list[dict], n: int, rng: np.random.Generator) -> np.ndarray:
    m = np.array([q["mean"] for q in nuis])
    sd = np.array([q["sd"] for q in nuis])
    return m + NUISANCE_WIDTH * sd * (2.0 * rng.random((n, len(nuis))) - 1.0)


def train_simulator_emulator(sim: PileupSimulator, box: PriorBox, *, theta_fit: np.ndarray | None = None,
                             n: int = 3000, rng: np.random.Generator | None = None,
                             settings: dict | None = None, seed: int = 0, quiet: bool = True):
    """Emulator of ``sim`` (θ and its nuisance inputs → expected counts).

    θ: ``theta_fit`` (N, P) fit-space draws of ``box`` or ``n`` fresh ones; nuisances
    uniform over ± :data:`NUISANCE_WIDTH` population sds.  Returns (emulator, summary) with
    summary: the inputs, seconds for the targets and the training, and the accuracy on
    the held-out tenth (relative errors, channels ≥ 10 counts)."""
    from ..inference.emulator import emulator_from_arrays

    rng = rng if rng is not None else np.random.default_rng(seed)
    nuis = nuisance_inputs(sim)
    th = box.sample(n, rng) if theta_fit is None else np.atleast_2d(theta_fit)
    nu = _uniform_nuisance(nuis, len(th), rng)
    t0 = time.perf_counter()
    mu = simulator_mean(sim, th, nu, nuis)
    t_targets = time.perf_counter() - t0
    s = {**EMULATOR_SETTINGS, **(settings or {}), "seed": int(seed)}
    emu = emulator_from_arrays(np.hstack([box.to_natural(th), nu]), mu, emulator_config(sim, box, nuis),
                               settings=s, quiet=quiet)
    tr = emu.config["training"]
    summary = {"simulator": sim.mode, "inputs": emu.names, "n_train": tr["n_train"],
               "n_validation": tr["n_validation"], "epochs": tr["epochs"], "best_epoch": tr["best_epoch"],
               "stop_reason": tr["stop_reason"], "seconds_targets": round(t_targets, 1),
               "seconds_training": tr["seconds"], "validation_accuracy": tr["validation_accuracy"]}
    return emu, summary


def emulator_accuracy(emu, sim: PileupSimulator, box: PriorBox, n: int, rng: np.random.Generator,
                      min_counts: float = 10.0) -> dict:
    """Relative errors of the emulator against the simulator on ``n`` fresh draws of its
    prior (θ from the box, nuisances from the population)."""
    from ..inference.emulator import accuracy

    nuis = emulator_nuisance(emu)
    draws = emulator_prior(box, nuis).sample(n, rng)
    P = len(box.names)
    acc = accuracy(emu.expected(draws), simulator_mean(sim, box.to_fit(draws[:, :P]), draws[:, P:], nuis),
                   min_counts)
    acc.pop("worst_per_spectrum", None)
    return {"n": int(n), **acc}


class PluginForward:
    """θ-only forward model: an adaptation emulator with its nuisances at the population mean."""

    def __init__(self, emu, box: PriorBox):
        self.emu = emu
        self.names = list(box.names)
        self.nu = np.array([q["mean"] for q in emulator_nuisance(emu)])
        self.channels = emu.channels
        self.prior = emulator_prior(box)

    def expected(self, theta: np.ndarray, on_range: str = "error") -> np.ndarray:
        t = np.atleast_2d(np.asarray(theta, float))
        return self.emu.expected(np.hstack([t, np.broadcast_to(self.nu, (len(t), self.nu.size))]),
                                 on_range=on_range)


def emcee_fits(model, x: np.ndarray, box: PriorBox, *, marginal: bool = True, n_samples: int = 1000,
               max_steps: int = 2000, n_effective: int = 300, min_tau_multiple: float = 20.0,
               seed: int = 0) -> dict:
    """emcee posteriors (:func:`simxray.inference.mcmc.sample_emcee`) of piled spectra x (B, C).

    ``model``: an adaptation emulator; ``marginal``: sample its nuisance inputs under the
    population prior (else fix them at the mean: :class:`PluginForward`).  Returns
    {"samples": (n_samples, B, P) θ in fit space, "nuisance_z": (B, Q) posterior means of
    the sampled nuisances in population sds (empty without), "map_cstat": (B,) C-stat at
    the MAP, "seconds", "steps_median", "tau_max_median", "n_with_warnings", "n"}."""
    import warnings

    from ..inference.mcmc import sample_emcee

    P = len(box.names)
    nuis = emulator_nuisance(model)
    if marginal or not nuis:
        prior = emulator_prior(box, nuis)
    else:
        model, nuis = PluginForward(model, box), []
        prior = model.prior
    mean = np.array([q["mean"] for q in nuis])
    sd = np.array([q["sd"] for q in nuis])
    x = np.atleast_2d(np.asarray(x, float))
    out, nz, cmap, steps, taus, n_warn = [], [], [], [], [], 0
    t0 = time.perf_counter()
    for i, xi in enumerate(x):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            r = sample_emcee(xi, emulator=model, prior=prior, n_samples=n_samples, seed=seed + i,
                             max_steps=max_steps, n_effective=n_effective,
                             min_tau_multiple=min_tau_multiple, quiet=True)
        s = r.samples[:, :P]
        if len(s) < n_samples:           # short chain: resample to a common size
            s = s[np.random.default_rng(seed + i).choice(len(s), n_samples)]
        out.append(box.to_fit(s))
        nz.append((r.samples[:, P:].mean(0) - mean) / sd)
        cmap.append(r.diagnostics["map_stat"])
        steps.append(r.diagnostics["steps"])
        taus.append(r.diagnostics["autocorr_time_max"])
        n_warn += bool(r.warnings)
    return {"samples": np.stack(out, 1), "nuisance_z": np.array(nz), "map_cstat": np.array(cmap, float),
            "seconds": time.perf_counter() - t0, "steps_median": float(np.median(steps)),
            "tau_max_median": float(np.median(taus)), "n_with_warnings": int(n_warn), "n": int(len(x))}


__all__ = ["train_simulator_emulator", "emulator_accuracy", "emcee_fits", "emulator_prior",
           "emulator_config", "nuisance_inputs", "simulator_mean", "PluginForward",
           "EMULATOR_SETTINGS", "NUISANCE_WIDTH", "MIN_OFFSET_SD"]
