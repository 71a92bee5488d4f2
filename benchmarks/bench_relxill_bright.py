"""Benchmark and validation of the bright-source relxill posterior and emulator (issue 15).

    python benchmarks/bench_relxill_bright.py posterior [--n 2000] [--exact 6]
    python benchmarks/bench_relxill_bright.py speed

``posterior`` -> benchmarks/results/relxill_bright_posterior.json (+ .png):
  R^2 of the posterior mean per parameter on ``--n`` fresh simulations of
  simulations/acis_relxill_bright.toml (seed 777, never used in training), overall and
  binned by 0.5-8 keV counts and by pileup fraction; and the network posterior against the
  exact-likelihood posterior (``simxray.fit(..., method="exact")``) on ``--exact`` of
  those spectra written as PHA files with the embedded response: per parameter the ratio
  of posterior sds (network / exact) and the offset of the means in exact-posterior sds.
``speed`` -> benchmarks/results/relxill_bright_speed.json:
  relxill spectra per second (batched; benchmarks/bench_relxill.py), the cost of one
  likelihood evaluation inside emcee with the exact simulator and with the emulator
  (32 walkers at a time), and emcee on one bright spectrum with the emulator against the
  exact simulator (means and sds per parameter, paired, wall times).

Every result records its inputs (sha256 of the networks and the config), seeds, version
and commit.  Run under ``nice`` with one thread (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CONFIG = REPO / "simulations" / "acis_relxill_bright.toml"
RESULTS = REPO / "benchmarks" / "results"
SEED = 777          # fresh simulations: not a training or validation seed
COUNT_BINS = [0, 3e4, 6e4, 1e5, 1.5e5, np.inf]
PILEUP_BINS = [0, 0.05, 0.15, 0.30, 0.60, 1.0]
#: a bright spectrum inside the prior: ~1e5 counts, pileup fraction ~20 %
TRUTH = {"nH": 0.5, "a": 0.9, "Incl": 40.0, "gamma": 2.0, "Afe": 2.0, "refl_frac": 2.0,
         "norm": 8e-5, "pileup.alpha": 0.5, "pileup.f": 0.95}


def data_dir() -> Path:
    from simxray.datasets import DATA_DIR

    return DATA_DIR


def simulator():
    """The campaign's simulator (simulations/acis_relxill_bright.toml) for the benchmark's
    observation: a 1/8 subarray (0.44104 s frames), 100 ks (the campaign draws the mode and
    exposure per simulation; benchmarks/bench_relxill_modes.py covers every mode)."""
    from simxray.simulator.config import load_config
    from simxray.simulator.simulator import Simulator

    sim = Simulator.from_config(load_config(CONFIG))
    return sim.at(exposure=1e5, frame_time=0.44104) if sim.covariate_names else sim


def write_spectrum(path: Path, counts: np.ndarray, sim) -> Path:
    """Write noticed-channel ``counts`` as a full PHA (1024 channels, zeros elsewhere) with the
    embedded ARF/RMF, the campaign's exposure and frame time."""
    from simxray.io.ogip import write_pha

    full = np.zeros(1024, dtype=np.int64)
    ch = np.asarray(sim.channel)
    full[ch - 1] = counts
    d = data_dir()
    return write_pha(path, full, 1e5, respfile=str(d / "rmf.fits"), ancrfile=str(d / "arf.fits"),
                     frame_time=0.44104, header={"OBJECT": "simulated bright relxill"},
                     overwrite=True)


def r2(truth: np.ndarray, mean: np.ndarray, log: np.ndarray) -> np.ndarray:
    """R^2 of the posterior mean per parameter (log10 for log-uniform priors)."""
    t = np.where(log, np.log10(truth), truth)
    m = np.where(log, np.log10(mean), mean)
    ss = ((t - m) ** 2).sum(0)
    return 1.0 - ss / ((t - t.mean(0)) ** 2).sum(0)


def posterior_means(post, x: np.ndarray, n_samples: int, log: np.ndarray) -> np.ndarray:
    """Posterior means per spectrum (geometric for log-scaled parameters)."""
    import torch

    from simxray.inference.compat import network_input

    out = np.empty((len(x), len(log)))
    torch.manual_seed(SEED)
    with torch.no_grad():
        for i in range(len(x)):
            xi = network_input(post.config, x[i], covariates={"exposure": 1e5,
                                                              "frame_time": 0.44104})
            s = post.model.sample(n_samples, torch.as_tensor(xi, dtype=torch.float32))
            s = s.double().numpy()
            out[i] = np.where(log, 10 ** np.log10(s).mean(0), s.mean(0))
    return out


def bench_posterior(n: int, n_exact: int, n_samples: int = 500, n_draws: int = 2000,
                    exact_fits: int = 0, pdir: Path | None = None) -> dict:
    """R^2 binned by counts and pileup fraction; network vs exact on ``n_exact`` spectra."""
    import torch

    import simxray as sx
    from simxray.inference import saving
    from simxray.provenance import provenance, sha256

    torch.set_num_threads(1)
    pdir = Path(pdir or data_dir() / "posterior_relxill_bright")
    post = saving.load_posterior(pdir)
    cfg = post.config
    log = np.asarray(cfg["log"], bool)
    names = list(post.names)
    sim = simulator()
    assert sim.names == names, (sim.names, names)
    rng = np.random.default_rng(SEED)
    theta = sim.prior.sample(n, rng)
    out = sim.simulate(theta, rng)
    x, pf = out["counts"], out["pileup_fraction"]
    tot = x.sum(1)
    t0 = time.perf_counter()
    mean = posterior_means(post, x, n_samples, log)
    t_npe = time.perf_counter() - t0
    res = {"overall": dict(zip(names, np.round(r2(theta, mean, log), 4).tolist(), strict=True))}
    for key, val, edges in (("by_counts", tot, COUNT_BINS), ("by_pileup_fraction", pf, PILEUP_BINS)):
        rows = []
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            m = (val >= lo) & (val < hi)
            if m.sum() < 20:
                continue
            rows.append({"low": float(lo), "high": float(hi), "n": int(m.sum()),
                         "r2": dict(zip(names, np.round(r2(theta[m], mean[m], log), 4).tolist(),
                                        strict=True))})
        res[key] = rows

    # -- network vs exact on the first n_exact spectra -------------------------------------
    # The exact-likelihood posterior: the network's draws importance-reweighted with the
    # exact simulator's Poisson likelihood and the prior (PSIS; Pareto k < 0.7 means the
    # reweighted draws are the exact posterior); with --exact-fits also
    # simxray.fit(method="exact") (emcee pilot + importance sampling) on the first ones.
    from simxray.inference.reweight import reweight

    prior = sx.Prior.from_dict(cfg["prior"])
    pairs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n_exact):
            pha = write_spectrum(Path(tmp) / f"s{i}.pi", x[i], sim)
            obs = sx.Observation.from_pha(pha)
            obs.notice_channels(*cfg["channels"])
            prob = sx.FitProblem(obs, cfg["model"], prior)
            from simxray.inference.compat import network_input

            xt = torch.as_tensor(network_input(cfg, prob.x, obs.spectrum), dtype=torch.float32)
            torch.manual_seed(i)
            t1 = time.perf_counter()
            with torch.no_grad():
                d = post.model.sample(n_draws, xt)
                lq = post.model.log_prob(d, xt.expand(len(d), -1)).double().numpy()
            d = d.double().numpy()
            lp = prob.prior.log_prob(d) + prob.likelihood()(d)
            rw = reweight(lp, lq, n_draws, np.random.default_rng(i))
            t_ex = time.perf_counter() - t1
            refs = {"reweighted": d[rw["index"]]}
            if i < exact_fits:
                t2 = time.perf_counter()
                ex = sx.fit(obs, cfg["model"], prior, method="exact", seed=i, ppc_draws=0,
                            n_samples=4000)
                refs["exact_fit"] = ex.samples
                t_fit = time.perf_counter() - t2
            row = {"index": i, "counts": int(tot[i]), "pileup_fraction": float(pf[i]),
                   "psis_khat": float(rw["khat"]), "ess": float(rw["ess"]),
                   "reliable": bool(rw["reliable"]), "exact_likelihood_evaluations": n_draws,
                   "reweight_seconds": round(t_ex, 1), "parameters": {}}
            if i < exact_fits:
                row["exact_fit_seconds"] = round(t_fit, 1)
            for j, nm in enumerate(names):
                b = np.log10(d[:, j]) if log[j] else d[:, j]
                tr = np.log10(theta[i, j]) if log[j] else theta[i, j]
                e = {"scale": "log10" if log[j] else "linear", "truth": float(tr),
                     "network_mean": float(b.mean()), "network_sd": float(b.std())}
                for key, smp in refs.items():
                    a = np.log10(smp[:, j]) if log[j] else smp[:, j]
                    e[f"{key}_mean"], e[f"{key}_sd"] = float(a.mean()), float(a.std())
                    e[f"{key}_sd_ratio"] = float(b.std() / a.std())
                    e[f"{key}_offset_in_sd"] = float((b.mean() - a.mean()) / a.std())
                e["sd_ratio"] = e["reweighted_sd_ratio"]
                e["offset_in_exact_sd"] = e["reweighted_offset_in_sd"]
                row["parameters"][nm] = e
            pairs.append(row)
            print(f"network vs exact {i + 1}/{n_exact}: k = {rw['khat']:.2f} ({t_ex:.0f} s)",
                  flush=True)
    if pairs:
        summ = {}
        for nm in names:
            r = np.array([p["parameters"][nm]["sd_ratio"] for p in pairs])
            o = np.array([p["parameters"][nm]["offset_in_exact_sd"] for p in pairs])
            summ[nm] = {"sd_ratio_median": float(np.median(r)), "sd_ratio_min": float(r.min()),
                        "sd_ratio_max": float(r.max()),
                        "abs_offset_median": float(np.median(np.abs(o))),
                        "abs_offset_max": float(np.abs(o).max())}
        res["network_vs_exact"] = {
            "spectra": pairs, "summary": summ,
            "khat": [p["psis_khat"] for p in pairs],
            "reference": "the network's draws importance-reweighted with the exact likelihood "
                         "and the prior (PSIS, Pareto k < 0.7: the exact posterior); "
                         "'exact_fit' where present: simxray.fit(method='exact')"}
    res["setup"] = {"n": n, "seed": SEED, "posterior_samples": n_samples,
                    "npe_seconds_per_spectrum": round(t_npe / n, 4),
                    "r2_definition": "1 - sum((t - m)^2) / sum((t - mean t)^2), log10 for "
                                     "log-uniform parameters, m the posterior mean",
                    "counts_quantiles": np.percentile(tot, [10, 50, 90]).round().tolist(),
                    "pileup_quantiles": np.percentile(pf, [10, 50, 90]).round(4).tolist()}
    res["provenance"] = provenance(
        seed=SEED, script="benchmarks/bench_relxill_bright.py posterior",
        inputs={"config": sha256(CONFIG), "posterior_weights": sha256(pdir / "weights.safetensors")})
    plot_r2(res, names, RESULTS / "relxill_bright_posterior.png")
    return res


def plot_r2(res: dict, names: list[str], path: Path) -> None:
    """R^2 per parameter against counts and pileup-fraction bins (two panels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.2), sharey=True)
    for ax, key, lab, scale in ((axes[0], "by_counts", "0.5-8 keV counts", 1e3),
                                (axes[1], "by_pileup_fraction", "pileup fraction (%)", 0.01)):
        rows = res[key]
        xt = [f"{r['low'] / scale:.0f}-{r['high'] / scale:.0f}" if np.isfinite(r["high"])
              else f">{r['low'] / scale:.0f}" for r in rows]
        for nm in names:
            ax.plot(range(len(rows)), [r["r2"][nm] for r in rows], "o-", label=nm)
        ax.set_xticks(range(len(rows)), xt)
        ax.set_xlabel(lab + (" (thousands)" if key == "by_counts" else ""))
        ax.axhline(0, color="0.6", lw=0.8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("R² of the posterior mean")
    axes[0].set_ylim(-0.2, 1.02)
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle("Bright relxill posterior (ACIS-S 1/8 subarray, 100 ks): recovery by bin")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def bench_speed(quick: bool = False, exact_fit: bool = False, n_reweight: int = 4000) -> dict:
    """Spectra/s, likelihood cost exact vs emulator, emcee exact vs emulator on one spectrum."""
    import torch

    import simxray as sx
    from benchmarks import bench_relxill
    from simxray.inference.emulator import Emulator
    from simxray.inference.saving import read_posterior_config
    from simxray.provenance import provenance, sha256

    torch.set_num_threads(1)
    out: dict = {"relxill_batched": bench_relxill.run(quick=True)}
    sim = simulator()
    rng = np.random.default_rng(SEED + 1)
    theta0 = np.array([[TRUTH[n] for n in sim.names]])
    r = sim.simulate(theta0, rng)
    x = r["counts"][0]
    edir = data_dir() / "emulator_relxill_bright"
    pdir = data_dir() / "posterior_relxill_bright"
    cfg = read_posterior_config(pdir) if (pdir / "config.json").exists() else None
    emu = Emulator.load(edir)
    with tempfile.TemporaryDirectory() as tmp:
        obs = sx.Observation.from_pha(write_spectrum(Path(tmp) / "bright.pi", x, sim))
        emu = emu.for_spectrum(obs.spectrum)        # a multi-mode emulator: this mode
        prior = sx.Prior.from_dict(emu.config["prior"])
        obs.notice_channels(*emu.config["channels"])
        prob = sx.FitProblem(obs, emu.config["model"], prior)
        # one likelihood evaluation of 32 walkers: exact simulator vs emulator
        th = prior.sample(32, np.random.default_rng(1))
        like_x, like_e = prob.likelihood(), prob.likelihood(emu)
        like_x(th), like_e(th)
        reps = 3 if quick else 10
        t = time.perf_counter()
        for _ in range(reps):
            like_x(th)
        t_x = (time.perf_counter() - t) / reps
        t = time.perf_counter()
        for _ in range(reps * 20):
            like_e(th)
        t_e = (time.perf_counter() - t) / (reps * 20)
        out["likelihood_32_walkers_s"] = {"exact": t_x, "emulator": t_e, "speedup": t_x / t_e,
                                          "exact_spectra_per_s": 32 / t_x,
                                          "emulator_spectra_per_s": 32 / t_e}
        fits, refs = {}, {}
        runs = [("emulator", {"method": "emcee", "emulator": edir})]
        if exact_fit:
            runs.append(("exact_fit", {"method": "exact"}))
        for name, kw in runs:
            t = time.perf_counter()
            res = sx.fit(obs, emu.config["model"], prior, seed=3, ppc_draws=0, n_samples=4000,
                         **kw)
            sampler = res.summary.get("sampler", {})
            fits[name] = {"seconds": round(time.perf_counter() - t, 1),
                          "method": res.summary["method"],
                          "reason": res.summary["method_reason"],
                          "sampler": {k: v for k, v in sampler.items()
                                      if isinstance(v, int | float | str)}}
            refs[name] = res.samples
        # the exact posterior from the emulator's: importance weights L_exact / L_emulator
        # (the prior cancels), PSIS; Pareto k < 0.7 means the reweighted draws are exact
        from simxray.inference.reweight import reweight

        draws = refs["emulator"][:n_reweight]
        t = time.perf_counter()
        ll_x = like_x(draws)
        t_rw = time.perf_counter() - t
        ll_e = like_e(draws)
        rw = reweight(ll_x, ll_e, len(draws), np.random.default_rng(4))
        refs["exact_reweighted"] = draws[rw["index"]]
        fits["exact_reweighted"] = {"seconds": round(t_rw, 1), "psis_khat": float(rw["khat"]),
                                    "ess": float(rw["ess"]), "reliable": bool(rw["reliable"]),
                                    "exact_likelihood_evaluations": len(draws)}
        steps = fits["emulator"]["sampler"].get("steps")
        walkers = fits["emulator"]["sampler"].get("n_walkers")
        if steps and walkers:
            fits["emulator"]["exact_emcee_same_steps_estimated_s"] = round(
                float(steps) * t_x * float(walkers) / 32.0, 1)
        log = np.asarray([d["dist"] == "loguniform" for d in prior.to_dict()["parameters"]
                          if d["dist"] != "fixed"])
        names = prior.names
        par = {}
        b = refs["emulator"]
        for j, nm in enumerate(names):
            v = np.log10(b[:, j]) if log[j] else b[:, j]
            e = {"scale": "log10" if log[j] else "linear",
                 "truth": float(np.log10(TRUTH[nm]) if log[j] else TRUTH[nm]),
                 "emulator_mean": float(v.mean()), "emulator_sd": float(v.std())}
            for key in ("exact_reweighted", "exact_fit"):
                if key not in refs:
                    continue
                u = np.log10(refs[key][:, j]) if log[j] else refs[key][:, j]
                e[f"{key}_mean"], e[f"{key}_sd"] = float(u.mean()), float(u.std())
                e[f"{key}_sd_ratio"] = float(v.std() / u.std())
                e[f"{key}_offset_in_sd"] = float((v.mean() - u.mean()) / u.std())
            par[nm] = e
        out["emcee_one_spectrum"] = {"truth": TRUTH, "counts": int(x.sum()),
                                     "pileup_fraction": float(r["pileup_fraction"][0]),
                                     "fits": fits, "parameters": par}
    out["provenance"] = provenance(
        seed=SEED + 1, script="benchmarks/bench_relxill_bright.py speed",
        inputs={"config": sha256(CONFIG), "emulator_weights": sha256(edir / "weights.safetensors"),
                "posterior_weights": sha256(pdir / "weights.safetensors") if cfg else None})
    out["machine"] = {"cpus": os.cpu_count(), "load_1min": os.getloadavg()[0],
                      "torch_threads": torch.get_num_threads()}
    return out


def run(quick: bool = False) -> dict:
    """``benchmarks/run.py`` entry: the speed figures (batched relxill, exact vs emulator
    likelihood) and, unless ``quick``, the posterior's R² and network-vs-exact comparison."""
    out = {f"speed_{k}": v for k, v in bench_speed(quick).items()
           if isinstance(v, int | float | str)}
    if not quick:
        post = bench_posterior(2000, 8)
        out.update({f"posterior_{k}": v for k, v in post.items()
                    if isinstance(v, int | float | str)})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("posterior", "speed"))
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--exact", type=int, default=8,
                    help="spectra compared with the exact-likelihood posterior")
    ap.add_argument("--exact-fits", type=int, default=0,
                    help="of those, how many also get simxray.fit(method='exact') (slow)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--posterior", help="posterior folder (default: the shipped one)")
    args = ap.parse_args(argv)
    from simxray.provenance import atomic_path

    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.what == "posterior":
        res = bench_posterior(args.n, args.exact, exact_fits=args.exact_fits,
                              pdir=args.posterior)
        path = RESULTS / "relxill_bright_posterior.json"
    else:
        res = bench_speed(args.quick, exact_fit=args.exact_fits > 0)
        path = RESULTS / "relxill_bright_speed.json"
    tmp = atomic_path(path)
    tmp.write_text(json.dumps(res, indent=2, default=float) + "\n")
    os.replace(tmp, path)
    print(json.dumps({k: v for k, v in res.items() if k not in ("provenance",)}, indent=1,
                     default=float)[:4000])
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
