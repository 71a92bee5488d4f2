"""Accuracy of an emulator against its exact simulator (``simxray validate-emulator``):
relative errors, ΔC-stat, worst cases, the terminal report; timing in
:mod:`.emulator_timing`, figures in :mod:`simxray.plots`."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SimxrayError
from .emulator_model import Emulator
from .emulator_timing import speed_comparison

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

    from ..plots import plot_emulator_errors, plot_emulator_worst
    from .diagnostics import simulator_for

    sim = simulator_for(emu.config)
    rng = np.random.default_rng(seed)
    prior = sim.prior
    theta = prior.sample(n, rng)
    # a multi-mode emulator: every draw has its own exposure and frame time (the campaign's)
    cov = sim.covariates.sample(n, rng) if emu.covariate_names else None
    t0 = time.perf_counter()
    mus, fracs = [], []
    bs = 64
    with tqdm(total=n, unit="spectra", disable=quiet, desc="exact simulator") as bar:
        for a in range(0, n, bs):
            kw = {} if cov is None else {"covariates": cov[a:a + bs]}
            m, f = sim.expected(theta[a:a + bs], return_fraction=True, **kw)
            mus.append(m)
            fracs.append(f if sim.pileup else np.zeros(len(m)))
            bar.update(min(bs, n - a))
    mu_true = np.concatenate(mus)
    frac = np.concatenate(fracs)
    t_sim = time.perf_counter() - t0
    cols = [prior.names.index(nm) for nm in emu.names]
    mu_emu = emu.expected(theta[:, cols], covariates=cov)
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
    bins = [0.0, 0.05, 0.2, 0.5, 1.0]
    res["by_pileup_fraction"] = []
    for lo, hi in zip(bins[:-1], bins[1:], strict=True):
        sel = (frac >= lo) & (frac < hi)
        if sel.sum() == 0:
            continue
        res["by_pileup_fraction"].append(_subset(mu_emu, mu_true, dc, sel, range=[lo, hi]))
    if cov is not None and "frame_time" in emu.covariate_names:
        ft = cov[:, emu.covariate_names.index("frame_time")]
        res["by_frame_time"] = [_subset(mu_emu, mu_true, dc, np.isclose(ft, v, rtol=1e-6),
                                        frame_time=float(v)) for v in np.unique(ft)]
    order = np.argsort(-(worst + 1e-3 * dc))[:n_worst]
    res["worst"] = [{"theta": dict(zip(prior.names, map(float, theta[i]), strict=True)),
                     "max_rel_error": float(worst[i]), "abs_delta_cstat": float(dc[i]),
                     "total_counts": float(mu_true[i].sum()), "pileup_fraction": float(frac[i]),
                     **({} if cov is None else
                        dict(zip(emu.covariate_names, map(float, cov[i]), strict=True)))}
                    for i in order]
    res["simulation_s_per_spectrum_batched"] = t_sim / n
    if timing:
        e1, s1 = emu, sim
        if cov is not None:                            # the first draw's observing mode
            mode = dict(zip(emu.covariate_names, map(float, cov[0]), strict=True))
            e1, s1 = emu.at(**mode), sim.at(**mode)
        res["timing"] = speed_comparison(e1, s1, theta[:64, cols], theta[:64])
    res["files"] = {}
    if plots:
        d = Path(out_dir) if out_dir else (Path(emu.path) / "validation" if emu.path else None)
        if d is not None:
            d.mkdir(parents=True, exist_ok=True)
            res["files"]["worst"] = str(plot_emulator_worst(sim.e_min, sim.e_max, mu_true[order],
                                                   mu_emu[order], res["worst"], d / "worst.png"))
            res["files"]["errors"] = str(plot_emulator_errors(mu_emu, mu_true, dc, d / "errors.png"))
    return res


def _subset(mu_emu, mu_true, dc, sel, **key) -> dict:
    a = accuracy(mu_emu[sel], mu_true[sel])
    return {**key, "n": int(sel.sum()), "median": a.get("median"), "p99": a.get("p99"),
            "mean_abs_delta_cstat": float(dc[sel].mean()) if sel.any() else None}


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
    for b in res.get("by_frame_time", []):
        rows.append(f"  frame time {b['frame_time']:.5g} s ({b['n']}): median {b['median']:.3%}, "
                    f"99th {b['p99']:.3%}, mean |dC| {b['mean_abs_delta_cstat']:.3f}")
    t = res.get("timing")
    if t:
        rows.append(f"per likelihood evaluation ({t.get('threads', 1)} thread(s)): emulator {t['emulator_s_single'] * 1e6:.0f} us, "
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
