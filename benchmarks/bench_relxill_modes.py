"""Recovery and calibration of the multi-mode bright relxill posterior per observing mode.

    python benchmarks/bench_relxill_modes.py [--n 3000] [--seed 777] [--samples 500]

Simulates ``--n`` fresh spectra from ``simulations/acis_relxill_bright.toml`` (seed 777,
never used in training or validation), frame time and exposure drawn per simulation, samples
the shipped posterior (``simxray/data/posterior_relxill_bright``, or ``--posterior``) with
each spectrum's covariates, and reports per frame time (1/8 subarray, 1/4 subarray, full
frame) and per pileup-fraction bin: R² of the posterior mean (log10 for log-uniform
parameters), the coverage of central 50 % and 90 % intervals, and the 0.5-8 keV counts and
pileup-fraction quantiles.  Writes ``benchmarks/results/relxill_modes.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "simulations" / "acis_relxill_bright.toml"
OUT = REPO / "benchmarks" / "results" / "relxill_modes.json"
PILEUP_BINS = ((0.0, 0.05), (0.05, 0.15), (0.15, 0.3), (0.3, 0.6), (0.6, 1.01))
QUANTILES = (10, 25, 50, 75, 90)


def r2(truth: np.ndarray, mean: np.ndarray, log: np.ndarray) -> np.ndarray:
    """R² of the posterior mean per parameter (log10 for log-uniform priors)."""
    t = np.where(log, np.log10(truth), truth)
    m = np.where(log, np.log10(mean), mean)
    return 1.0 - ((t - m) ** 2).sum(0) / ((t - t.mean(0)) ** 2).sum(0)


def summarise(sel: np.ndarray, theta, mean, inside, log, names, counts, frac) -> dict:
    """R², 50/90 % coverage and quantiles for the rows ``sel``."""
    out = {"n": int(sel.sum())}
    if sel.sum() < 20:
        return out
    out["r2"] = dict(zip(names, np.round(r2(theta[sel], mean[sel], log), 3).tolist(), strict=True))
    for lev, ins in inside.items():
        out[f"coverage_{int(lev * 100)}"] = dict(zip(names, np.round(ins[sel].mean(0), 3).tolist(),
                                                     strict=True))
    out["counts_quantiles"] = np.percentile(counts[sel], QUANTILES).round(0).tolist()
    out["pileup_fraction_quantiles"] = np.percentile(frac[sel], QUANTILES).round(4).tolist()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--posterior", default=None)
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args(argv)
    import torch

    from simxray import __version__
    from simxray.datasets import DATA_DIR
    from simxray.inference.saving import load_posterior
    from simxray.provenance import provenance, sha256
    from simxray.simulator.config import load_config
    from simxray.simulator.simulator import Simulator

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    pdir = Path(a.posterior) if a.posterior else DATA_DIR / "posterior_relxill_bright"
    post = load_posterior(pdir)
    names, log = list(post.names), np.asarray(post.config["log"], bool)
    sim = Simulator.from_config(load_config(CONFIG))
    t0 = time.perf_counter()
    r = sim.sample(a.n, np.random.default_rng(a.seed))
    theta, counts, cov = r["theta"], r["counts"], r["covariates"]
    x = np.concatenate([counts, cov], axis=1)
    torch.manual_seed(a.seed)
    means, inside = [], {0.5: [], 0.9: []}
    with torch.no_grad():
        for i in range(0, a.n, 50):
            s = post.model.sample(a.samples, torch.as_tensor(x[i:i + 50], dtype=torch.float32))
            s = s.double().numpy()                                   # (S, B, P)
            # geometric mean for log-uniform parameters (as the validation's R²)
            means.append(np.where(log, 10 ** np.log10(s).mean(0), s.mean(0)))
            for lev in inside:
                lo, hi = np.quantile(s, [(1 - lev) / 2, (1 + lev) / 2], axis=0)
                t = theta[i:i + 50]
                inside[lev].append((lo <= t) & (t <= hi))
    mean = np.concatenate(means)
    inside = {k: np.concatenate(v) for k, v in inside.items()}
    tot, frac = counts.sum(1), r["pileup_fraction"]
    ft = cov[:, sim.covariate_names.index("frame_time")]
    res = {"all": summarise(np.ones(a.n, bool), theta, mean, inside, log, names, tot, frac),
           "by_frame_time": {}, "by_pileup": {}}
    for v in sorted(set(np.round(ft, 5))):
        res["by_frame_time"][f"{v:.5f}"] = summarise(np.isclose(ft, v), theta, mean, inside, log,
                                                     names, tot, frac)
    for lo, hi in PILEUP_BINS:
        res["by_pileup"][f"{lo:g}-{min(hi, 1):g}"] = summarise((frac >= lo) & (frac < hi), theta,
                                                               mean, inside, log, names, tot, frac)
    res["settings"] = {"n": a.n, "seed": a.seed, "samples": a.samples,
                       "seconds": round(time.perf_counter() - t0, 1)}
    res["provenance"] = provenance(seed=a.seed, inputs={
        "config": sha256(CONFIG), "posterior_weights": sha256(pdir / "weights.safetensors")})
    res["version"] = __version__
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=1))
    tmp.replace(out)
    for k, v in res["by_frame_time"].items():
        print(k, v["n"], "R2", v.get("r2"), "cov90", v.get("coverage_90"))
    print("wrote", out)
    return 0


def run(quick: bool = False) -> dict:
    """``benchmarks/run.py`` entry: R² of N_H, Γ and norm per observing mode on 300 (quick)
    or 3,000 fresh spectra; the JSON goes to a temporary file (the committed one is written
    by running this script directly)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "relxill_modes.json"
        main(["--n", "300" if quick else "3000", "--out", str(out)])
        res = json.loads(out.read_text())
    figs = {}
    for ft, v in res["by_frame_time"].items():
        for n in ("nH", "gamma", "norm"):
            if (v.get("r2") or {}).get(n) is not None:
                figs[f"r2_{n}_frame_{ft}"] = v["r2"][n]
    return figs


if __name__ == "__main__":
    sys.exit(main())
