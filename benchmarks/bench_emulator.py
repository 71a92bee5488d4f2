"""Benchmark: the shipped neural emulator vs the exact simulator.

* ``speedup_single`` / ``speedup_batch16``: seconds per likelihood evaluation (expected
  counts + C-stat for one parameter set; per set in batches of 16, what emcee's vectorised
  stretch move asks for with 32 walkers) of the exact simulator over the emulator's, one
  thread, 64 prior draws.  Goal >= 100.
* ``emu_wall_s_per_1000_ess`` / ``exact_wall_s_per_1000_ess``: wall time of emcee (32
  walkers) per 1,000 effective samples (smallest over parameters) on a synthetic piled
  spectrum, with each forward model.
* posterior agreement on synthetic piled spectra drawn from the exact simulator at
  ``TRUTHS``: for each parameter, |mean_emu - mean_exact| / sd_exact (goal <= 0.1) and
  sd_emu / sd_exact - 1 (goal within 10 %); and the same against the shipped NPE posterior
  (simxray/data/posterior_default, 10,000 draws).

``--quick`` uses one spectrum and 300 effective samples (smoke test; the agreement figures
are then noisy).  Full run: two spectra, 1,000 effective samples, ~10-20 min on a busy core
(``python benchmarks/bench_emulator.py [--quick] [--one] [--json FILE]`` runs it alone).
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# nH [1e22 cm^-2], PhoIndex, norm [ph/keV/cm2/s at 1 keV], pileup.alpha, pileup.f
TRUTHS = [[1.0, 1.8, 1.0e-3, 0.5, 0.95],       # ~20 % pileup, NGC 4258-like counts
          [0.3, 2.2, 5.0e-4, 0.7, 0.92]]


def speed(emu, sim, n: int = 64) -> dict:
    """Seconds per likelihood evaluation, emulator vs simulator, one thread."""
    import torch

    from simxray.inference.emulator import time_per_call
    from simxray.inference.stats import cstat

    theta = sim.prior.sample(n, np.random.default_rng(0))
    x = np.random.default_rng(1).poisson(sim.expected(theta[:1])[0])
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {}
        for b in (1, 16):
            te = time_per_call(lambda t: cstat(x, emu.expected(t)), theta[:b]) / b
            ts = time_per_call(lambda t: cstat(x, sim.expected(t)), theta[:b], repeats=3) / b
            key = "single" if b == 1 else f"batch{b}"
            out[f"emulator_s_{key}"] = te
            out[f"simulator_s_{key}"] = ts
            out[f"speedup_{key}"] = ts / te
    finally:
        torch.set_num_threads(old)
    return out


def _moments(samples: np.ndarray, log: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means and sds in the prior's natural coordinates (log for log-uniform parameters)."""
    s = np.where(log, np.log(np.where(log, samples, 1.0)), samples)
    return s.mean(0), s.std(0)


def compare(a: np.ndarray, b: np.ndarray, log: np.ndarray) -> dict:
    """Mean shift in units of b's sd and sd ratio - 1, per parameter (a vs reference b)."""
    ma, sa = _moments(a, log)
    mb, sb = _moments(b, log)
    return {"mean_shift_sigma": np.abs(ma - mb) / sb, "sd_ratio_minus_1": sa / sb - 1.0}


def run(quick: bool = False, n_spectra: int | None = None, ess: int | None = None) -> dict:
    """All figures (see the module docstring); ``n_spectra``/``ess`` override the sizes."""
    from simxray.inference.emulator import Emulator
    from simxray.inference.fit import build_simulator, fit_spectrum
    from simxray.inference.mcmc import sample_emcee, synthetic_spectrum
    from simxray.io.ogip import read_pha

    emu = Emulator.load()
    names = emu.names
    log = emu.log
    ess = ess or (300 if quick else 1000)
    truths = TRUTHS[:n_spectra or (1 if quick else len(TRUTHS))]
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, truth in enumerate(truths):
            path, _ = synthetic_spectrum(Path(tmp) / f"syn{k}.pi", np.array(truth), seed=100 + k)
            spec = read_pha(path)
            sim = build_simulator(emu.config, spec)
            if k == 0:
                out.update(speed(emu, sim))
            res = {}
            for kind, kw in (("emu", {"emulator": emu}), ("exact", {"simulator": sim})):
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    r = sample_emcee(spec, prior=emu.prior, n_samples=20000, seed=7 + k,
                                     n_effective=ess, max_steps=40000, quiet=True, **kw)
                d = r.diagnostics
                res[kind] = r.samples
                out[f"s{k}_{kind}_wall_s"] = time.perf_counter() - t0
                out[f"s{k}_{kind}_ess_min"] = d["effective_sample_size_min"]
                out[f"s{k}_{kind}_tau_max"] = d["autocorr_time_max"]
                out[f"s{k}_{kind}_acceptance"] = d["acceptance_fraction_mean"]
                out[f"s{k}_{kind}_wall_s_per_1000_ess"] = d["seconds_per_1000_effective"]
                out[f"s{k}_{kind}_warnings"] = len(d["warnings"])
            npe = fit_spectrum(path, n_samples=10000, seed=3, ppc_draws=0, plots=False).samples
            for ref_name, a, b in (("emu_vs_exact", res["emu"], res["exact"]),
                                   ("npe_vs_exact", npe, res["exact"]),
                                   ("emu_vs_npe", res["emu"], npe)):
                c = compare(a, b, log)
                for j, n in enumerate(names):
                    out[f"s{k}_{ref_name}_{n}_mean_shift_sigma"] = float(c["mean_shift_sigma"][j])
                    out[f"s{k}_{ref_name}_{n}_sd_ratio_minus_1"] = float(c["sd_ratio_minus_1"][j])
                out[f"s{k}_{ref_name}_max_mean_shift_sigma"] = float(c["mean_shift_sigma"].max())
                out[f"s{k}_{ref_name}_max_abs_sd_ratio_minus_1"] = float(
                    np.abs(c["sd_ratio_minus_1"]).max())
    ks = range(len(truths))
    out["emu_wall_s_per_1000_ess"] = float(np.median([out[f"s{k}_emu_wall_s_per_1000_ess"]
                                                      for k in ks]))
    out["exact_wall_s_per_1000_ess"] = float(np.median([out[f"s{k}_exact_wall_s_per_1000_ess"]
                                                        for k in ks]))
    out["emu_vs_exact_max_mean_shift_sigma"] = max(out[f"s{k}_emu_vs_exact_max_mean_shift_sigma"]
                                                   for k in ks)
    out["emu_vs_exact_max_abs_sd_ratio_minus_1"] = max(
        out[f"s{k}_emu_vs_exact_max_abs_sd_ratio_minus_1"] for k in ks)
    out["goals"] = {"speedup": 100, "mean_shift_sigma": 0.1, "sd_ratio": 0.1}
    return out


if __name__ == "__main__":
    import json

    from simxray.inference.saving import write_json

    res = run("--quick" in sys.argv, n_spectra=1 if "--one" in sys.argv else None)
    print(json.dumps(res, indent=1, default=float))
    if "--json" in sys.argv:
        write_json(sys.argv[sys.argv.index("--json") + 1], json.loads(json.dumps(res, default=float)))
