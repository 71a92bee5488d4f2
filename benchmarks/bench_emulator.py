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
  sd_emu / sd_exact - 1 (goal within 10 %), for the plain emulator (``emu``) and the
  emulator anchored to the simulator around the mode (``anchored``, what ``simxray fit
  --method emcee`` does by default: :mod:`simxray.inference.anchor`); and the same against
  the shipped NPE posterior (simxray/data/posterior_default, 10,000 draws).  The Monte
  Carlo noise of a mean shift is ``mc_se_mean_shift_sigma`` = sqrt(1/ESS_a + 1/ESS_b) if
  the ESS estimates hold; along the norm-alpha degeneracy repeated runs scatter more than
  that, so the figures are also measured **paired** (``paired_*``): the exact posterior's
  draws reweighted by exp(log L_model - log L_exact) give the model posterior's moments
  on the same draws, free of a second chain's noise (``paired_dloglike_sd``: the spread of
  log L_model - log L_exact over the exact posterior).  ``replica_scatter_*``: emcee's own
  run-to-run scatter (``REPLICAS`` more plain-emulator chains with other seeds), the noise
  floor of the independent-chain figures (times sqrt(2)).

``--quick`` uses one spectrum and 300 effective samples (smoke test; the agreement figures
are then noisy).  Full run: two spectra, 2,000 effective samples, ~30-40 min on a busy core
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
REPLICAS = 6            # extra plain-emulator chains per spectrum for emcee's own scatter


def speed(emu, sim, n: int = 64) -> dict:
    """Seconds per likelihood evaluation, emulator vs simulator, one thread
    (:func:`simxray.inference.emulator.speed_comparison`)."""
    from simxray.inference.emulator import speed_comparison

    theta = sim.prior.sample(n, np.random.default_rng(0))
    return speed_comparison(emu, sim, theta, theta)


def _moments(samples: np.ndarray, log: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means and sds in the prior's natural coordinates (log for log-uniform parameters)."""
    s = np.where(log, np.log(np.where(log, samples, 1.0)), samples)
    return s.mean(0), s.std(0)


def compare(a: np.ndarray, b: np.ndarray, log: np.ndarray) -> dict:
    """Mean shift in units of b's sd and sd ratio - 1, per parameter (a vs reference b)."""
    ma, sa = _moments(a, log)
    mb, sb = _moments(b, log)
    return {"mean_shift_sigma": np.abs(ma - mb) / sb, "sd_ratio_minus_1": sa / sb - 1.0}


def paired(spec, sim, res: dict, fwd: dict, emu, log: np.ndarray, k: int, n: int = 2000) -> dict:
    """Paired agreement: n exact-posterior draws reweighted to each emulator posterior."""
    from simxray.inference.mcmc import Likelihood, _counts_and_background

    x, bkg, alpha, _ = _counts_and_background(spec, emu, None, None)
    like = Likelihood(x, None, background_counts=bkg, background_scale=alpha)
    rng = np.random.default_rng(k)
    t = res["exact"][rng.choice(len(res["exact"]), min(n, len(res["exact"])), replace=False)]
    ll_x = -0.5 * like.stat_mu(sim.expected(t))
    v = np.where(log, np.log(np.where(log, t, 1.0)), t)
    out = {}
    for kind in ("emu", "anchored"):
        d = -0.5 * like.stat_mu(fwd[kind](t)) - ll_x
        d -= d.max()
        w = np.exp(d)
        w /= w.sum()
        m = w @ v
        sd = np.sqrt(w @ (v - m) ** 2)
        shift = np.abs(m - v.mean(0)) / v.std(0)
        ratio = sd / v.std(0) - 1.0
        out[f"s{k}_paired_{kind}_dloglike_sd"] = float(np.std(d))
        out[f"s{k}_paired_{kind}_weights_ess"] = float(1.0 / (w ** 2).sum())
        out[f"s{k}_paired_{kind}_max_mean_shift_sigma"] = float(shift.max())
        out[f"s{k}_paired_{kind}_max_abs_sd_ratio_minus_1"] = float(np.abs(ratio).max())
        for j, name in enumerate(emu.names):
            out[f"s{k}_paired_{kind}_{name}_mean_shift_sigma"] = float(shift[j])
            out[f"s{k}_paired_{kind}_{name}_sd_ratio_minus_1"] = float(ratio[j])
    return out


def replicas(spec, emu, exact: np.ndarray, log: np.ndarray, k: int, ess: int, n: int) -> dict:
    """Run-to-run scatter of emcee itself: ``n`` plain-emulator chains with other seeds, the
    sd over runs of each parameter's mean (in units of the exact posterior's sd) and of its
    sd ratio.  An independent-chain comparison carries sqrt(2) x this noise; along the
    norm-alpha degeneracy it is larger than sqrt(1/ESS) says."""
    from simxray.inference.mcmc import sample_emcee

    ms, ss = [], []
    ve = np.where(log, np.log(np.where(log, exact, 1.0)), exact)
    for r in range(n):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            smp = sample_emcee(spec, emulator=emu, prior=emu.prior, n_samples=20000,
                               seed=1000 + 10 * k + r, n_effective=ess, max_steps=40000,
                               quiet=True).samples
        v = np.where(log, np.log(np.where(log, smp, 1.0)), smp)
        ms.append(v.mean(0) / ve.std(0))
        ss.append(v.std(0) / ve.std(0))
    m_sd, s_sd = np.std(ms, axis=0, ddof=1), np.std(ss, axis=0, ddof=1)
    out = {f"s{k}_replicas": n,
           f"s{k}_replica_scatter_mean_sigma_max": float(m_sd.max()),
           f"s{k}_replica_scatter_sd_ratio_max": float(s_sd.max())}
    for j, name in enumerate(emu.names):
        out[f"s{k}_replica_scatter_{name}_mean_sigma"] = float(m_sd[j])
        out[f"s{k}_replica_scatter_{name}_sd_ratio"] = float(s_sd[j])
    return out


def run(quick: bool = False, n_spectra: int | None = None, ess: int | None = None) -> dict:
    """All figures (see the module docstring); ``n_spectra``/``ess`` override the sizes."""
    from simxray.inference.emulator import Emulator
    from simxray.inference.fit import build_simulator, fit_spectrum
    from simxray.inference.mcmc import sample_emcee, synthetic_spectrum
    from simxray.io.ogip import read_pha

    emu = Emulator.load()
    names = emu.names
    log = emu.log
    ess = ess or (300 if quick else 2000)
    truths = TRUTHS[:n_spectra or (1 if quick else len(TRUTHS))]
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, truth in enumerate(truths):
            path, _ = synthetic_spectrum(Path(tmp) / f"syn{k}.pi", np.array(truth), seed=100 + k)
            spec = read_pha(path)
            sim = build_simulator(emu.config, spec)
            if k == 0:
                out.update(speed(emu, sim))
            res, fwd = {}, {}
            for kind, kw in (("emu", {"emulator": emu}), ("anchored", {"emulator": emu, "anchor": sim}),
                             ("exact", {"simulator": sim})):
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    r = sample_emcee(spec, prior=emu.prior, n_samples=20000, seed=7 + k,
                                     n_effective=ess, max_steps=40000, quiet=True, **kw)
                d = r.diagnostics
                res[kind] = r.samples
                fwd[kind] = r.forward
                ess_of = out.setdefault("_ess", {})
                ess_of[kind] = d["effective_sample_size_min"]
                out[f"s{k}_{kind}_wall_s"] = time.perf_counter() - t0
                out[f"s{k}_{kind}_ess_min"] = d["effective_sample_size_min"]
                out[f"s{k}_{kind}_tau_max"] = d["autocorr_time_max"]
                out[f"s{k}_{kind}_acceptance"] = d["acceptance_fraction_mean"]
                out[f"s{k}_{kind}_wall_s_per_1000_ess"] = d["seconds_per_1000_effective"]
                out[f"s{k}_{kind}_warnings"] = len(d["warnings"])
            out.update(paired(spec, sim, res, fwd, emu, log, k))
            out.update(replicas(spec, emu, res["exact"], log, k, ess, 3 if quick else REPLICAS))
            npe = fit_spectrum(path, n_samples=10000, seed=3, ppc_draws=0, plots=False).samples
            ess_of = out.pop("_ess")
            ess_of["npe"] = float(len(npe))
            for ref_name, ka, kb in (("emu_vs_exact", "emu", "exact"),
                                     ("anchored_vs_exact", "anchored", "exact"),
                                     ("npe_vs_exact", "npe", "exact"),
                                     ("emu_vs_npe", "emu", "npe")):
                a, b = (npe if name == "npe" else res[name] for name in (ka, kb))
                c = compare(a, b, log)
                out[f"s{k}_{ref_name}_mc_se_mean_shift_sigma"] = float(
                    np.sqrt(1.0 / ess_of[ka] + 1.0 / ess_of[kb]))
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
    out["anchored_wall_s_per_1000_ess"] = float(np.median(
        [out[f"s{k}_anchored_wall_s_per_1000_ess"] for k in ks]))
    for ref in ("emu_vs_exact", "anchored_vs_exact"):
        out[f"{ref}_max_mean_shift_sigma"] = max(out[f"s{k}_{ref}_max_mean_shift_sigma"] for k in ks)
        out[f"{ref}_max_abs_sd_ratio_minus_1"] = max(
            out[f"s{k}_{ref}_max_abs_sd_ratio_minus_1"] for k in ks)
        out[f"{ref}_mc_se_mean_shift_sigma"] = max(out[f"s{k}_{ref}_mc_se_mean_shift_sigma"]
                                                   for k in ks)
    out["replica_scatter_mean_sigma_max"] = max(out[f"s{k}_replica_scatter_mean_sigma_max"] for k in ks)
    out["replica_scatter_sd_ratio_max"] = max(out[f"s{k}_replica_scatter_sd_ratio_max"] for k in ks)
    for kind in ("emu", "anchored"):
        for q in ("max_mean_shift_sigma", "max_abs_sd_ratio_minus_1", "dloglike_sd"):
            out[f"paired_{kind}_{q}"] = max(out[f"s{k}_paired_{kind}_{q}"] for k in ks)
    out["goals"] = {"speedup": 100, "mean_shift_sigma": 0.1, "sd_ratio": 0.1}
    return out


if __name__ == "__main__":
    import json

    from simxray.inference.saving import write_json

    res = run("--quick" in sys.argv, n_spectra=1 if "--one" in sys.argv else None)
    print(json.dumps(res, indent=1, default=float))
    if "--json" in sys.argv:
        write_json(sys.argv[sys.argv.index("--json") + 1], json.loads(json.dumps(res, default=float)))
