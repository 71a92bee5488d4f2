"""PPAD event-encoder benchmark.

On simulated Chandra event lists (never seen in training: seed 2026) with the shipped
encoder (``simxray/data/ppad_default``):

* encoding throughput (sources/s, batched, CPU threads as set by SIMXRAY_THREADS, default 2;
  on a loaded machine use SIMXRAY_THREADS=1 OMP_NUM_THREADS=1) and CPU seconds: median of 3
  timed encodings of all sources after a warm-up (1 with ``--quick``), each with the load average;
* regression of the CSC hardness ratios hard_hm, hard_ms, hard_hs from latent features
  (held-out R², 70/30 split) with gradient boosting; features = z plus summaries decoded
  from z by the frozen decoder and log N, the decoded model's expected counts (``decoded``),
  and, for comparison, z alone (``z_only``);
* classification of the variability type (accuracy, macro F1, F1 per class);
* held-out log-likelihood per event: each test event list is thinned into halves A/B, the
  model is fitted on A (PPAD: encode A; baseline: Bayesian blocks on A with the
  time-averaged or per-block spectrum) and scored on B;
* a model-free detectability reference on the raw events of the test sources (never used by
  the PPAD features): the GTI-corrected Rayleigh Z² periodogram (1-40 cycles per span) per
  class, PPAD accuracy on periodic sources below/above 11 cycles per span, and the accuracy
  of a gradient-boosting classifier on raw-event summaries (Z² peak, binned light curve).

``run(quick)`` returns a dict; ``python benchmarks/bench_ppad.py [--quick] [--json FILE]``
prints it and writes JSON (default benchmarks/results/ppad.json for the full run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GOALS = {"r2_min": 0.9, "accuracy_min": 0.92, "throughput_min": 100.0}


def run(quick: bool = False, model_dir: str | None = None, seed: int = 2026) -> dict:
    """Run the benchmark (quick: 360 sources, 60 held-out likelihood sources; full: 2400, 600)."""
    import torch

    from simxray.events.baselines import bayesian_blocks_rate, rate_log_likelihood, thin
    from simxray.events.features import (
        HARDNESS_KEYS,
        classification_scores,
        feature_matrix,
        fit_classifier,
        fit_regressor,
        regression_scores,
    )
    from simxray.events.ppad import PPAD
    from simxray.events.simulate import KINDS, simulate_population
    from simxray.provenance import provenance, sha256

    threads = int(os.environ.get("SIMXRAY_THREADS", "2"))
    torch.set_num_threads(threads)
    n_src, n_ll = (360, 60) if quick else (2400, 600)
    model = PPAD.load(model_dir, device="cpu")
    mdir = Path(model_dir) if model_dir else Path(__file__).resolve().parents[1] / "simxray" / "data" / "ppad_default"
    t0 = time.perf_counter()
    events, lab = simulate_population(n_src, seed=seed)
    t_sim = time.perf_counter() - t0

    model.encode(events[:64])               # warm-up (thread pool, allocator, caches); not timed
    runs = []
    for _ in range(1 if quick else 3):      # batches in `threads` worker threads (PPAD.encode default)
        load0 = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), time.process_time()
        enc = model.encode(events)
        t_enc, c_enc = time.perf_counter() - t0, time.process_time() - c0
        runs.append({"seconds": t_enc, "sources_per_s": n_src / t_enc, "cpu_seconds": c_enc,
                     "sources_per_cpu_s": n_src / c_enc, "loadavg_before": load0,
                     "loadavg_after": os.getloadavg()[0]})
    med = sorted(runs, key=lambda r: r["sources_per_s"])[len(runs) // 2]

    perm = np.random.default_rng(seed).permutation(n_src)
    n_tr = int(0.7 * n_src)
    tr, te = perm[:n_tr], perm[n_tr:]
    out: dict = {"n_sources": n_src, "n_train": int(n_tr), "n_test": int(n_src - n_tr), "quick": quick}
    out["throughput"] = {**med, "torch_threads": threads, "cpu_count": os.cpu_count(),
                         "cpu_based_sources_per_s_on_2_cores": 2 * med["sources_per_cpu_s"],
                         "runs": runs,
                         "encoder": {"method": "grid", "steps": 30, "workers": threads},
                         "note": "median of the timed runs (all in `runs`): wall time of PPAD.encode of all "
                                 "sources (incl. data preparation) on a shared machine, after a 64-source "
                                 "warm-up; cpu_seconds is the process CPU time (all threads), so "
                                 "n / (cpu_seconds / 2) estimates what 2 otherwise idle cores would give"}
    # reference: the event-level encoder (the pre-grid default: 2048-event subsample, one worker)
    sub = events[:480]
    t0, c0 = time.perf_counter(), time.process_time()
    model.encode(sub, method="events", workers=1)
    out["throughput"]["event_level_encoder_reference"] = {
        "n_sources": len(sub), "sources_per_s": len(sub) / (time.perf_counter() - t0),
        "sources_per_cpu_s": len(sub) / (time.process_time() - c0), "torch_threads": threads,
        "note": "PPAD.encode(method='events', workers=1): the encoder before the grid loss and worker threads"}
    feats = {"decoded": feature_matrix(model, enc.z, decoded=True, n_events=enc.n_events), "z_only": enc.z}
    reg: dict = {}
    cls: dict = {}
    for name, X in feats.items():
        reg[name] = {}
        for key in HARDNESS_KEYS:
            y = lab[key]
            m = fit_regressor(X[tr], y[tr])
            reg[name][key] = regression_scores(y[te], m.predict(X[te]))
        c = fit_classifier(X[tr], lab["kind_id"][tr])
        pred = c.predict(X[te])
        cls[name] = classification_scores(lab["kind_id"][te], pred, KINDS)
        cls[name]["pred"] = pred
    # reference: the observed hardness ratios of the counts themselves (no model)
    reg["observed_counts_ratio"] = {k: regression_scores(lab[k][te], np.nan_to_num(lab["obs_" + k][te]))
                                    for k in HARDNESS_KEYS}
    out["hardness_regression"] = reg
    out["variability_classification"] = cls

    # held-out log-likelihood (thinning split)
    rng = np.random.default_rng(seed + 1)
    ll_idx = te[:n_ll]
    halves = [thin(events[i], rng) for i in ll_idx]
    fit_a = [a for a, _ in halves]
    test_b = [b for _, b in halves]
    ok = np.array([a.n_events > 0 and b.n_events > 0 for a, b in halves])
    t0 = time.perf_counter()
    enc_a = model.encode([a for a, k in zip(fit_a, ok, strict=True) if k])
    ll_ppad = model.log_likelihood(enc_a, [b for b, k in zip(test_b, ok, strict=True) if k])
    t_ll = time.perf_counter() - t0
    bands = model.cfg.band_edges
    ll_bb: dict = {"global": [], "block": []}
    t0 = time.perf_counter()
    for a, b, k in zip(fit_a, test_b, ok, strict=True):
        if k:
            g = bayesian_blocks_rate(a, bands, spectrum="global")
            ll_bb["global"].append(rate_log_likelihood(g, b))
            ll_bb["block"].append(rate_log_likelihood(bayesian_blocks_rate(a, bands, spectrum="block",
                                                                           edges=g.edges), b))
    ll_bb = {key: np.array(v) for key, v in ll_bb.items()}
    t_bb = time.perf_counter() - t0
    kinds_ll = lab["kind"][ll_idx][ok]
    best_bb = np.maximum(ll_bb["global"], ll_bb["block"])
    ll = {"n_sources": int(ok.sum()), "split": "thinning p=0.5: fit on half A, score half B",
          "ppad_mean": float(np.mean(ll_ppad)), "bb_global_spectrum_mean": float(np.mean(ll_bb["global"])),
          "bb_block_spectrum_mean": float(np.mean(ll_bb["block"])),
          "ppad_minus_per_source_best_bb_mean": float(np.mean(ll_ppad - best_bb)),
          "ppad_wins_fraction_vs_per_source_best_bb": float(np.mean(ll_ppad > best_bb)),
          "ppad_seconds": t_ll, "bayesian_blocks_seconds": t_bb, "per_kind": {}}
    for k in KINDS:
        m = kinds_ll == k
        if m.any():
            ll["per_kind"][k] = {"n": int(m.sum()), "ppad": float(np.mean(ll_ppad[m])),
                                 "bb_global": float(np.mean(ll_bb["global"][m])),
                                 "bb_block": float(np.mean(ll_bb["block"][m]))}
    out["heldout_loglike_per_event"] = ll
    out["detectability_reference"] = _detectability(events, lab, te, cls["decoded"]["pred"], tr)

    for c in cls.values():
        c.pop("pred")
    r2_min = min(reg["decoded"][k]["r2"] for k in HARDNESS_KEYS)
    acc = cls["decoded"]["accuracy"]
    out["goals"] = {
        "hardness_r2_min": r2_min, "hardness_r2_goal": GOALS["r2_min"], "hardness_pass": r2_min >= GOALS["r2_min"],
        "accuracy": acc, "accuracy_goal": GOALS["accuracy_min"], "accuracy_pass": acc >= GOALS["accuracy_min"],
        "loglike_pass": ll["ppad_mean"] > max(ll["bb_global_spectrum_mean"], ll["bb_block_spectrum_mean"]),
        "throughput": out["throughput"]["sources_per_s"], "throughput_goal": GOALS["throughput_min"],
        "throughput_pass": out["throughput"]["sources_per_s"] >= GOALS["throughput_min"],
    }
    out["timing"] = {"simulate_s": t_sim}
    out["provenance"] = provenance(benchmark="bench_ppad", seed=seed, model=str(mdir),
                                   model_sha256=sha256(mdir / "weights.safetensors"),
                                   model_provenance=model.meta.get("provenance", {}).get("git_commit"))
    return out


def _detectability(events, lab, te, pred, tr) -> dict:
    """Model-free reference on raw events (see the module docstring)."""
    from simxray.events.baselines import z2_periodogram
    from simxray.events.features import classification_scores, fit_classifier
    from simxray.events.simulate import KINDS

    freqs = np.arange(1.0, 40.01, 0.1)
    idx = np.concatenate([te, tr])
    z2max, fbest, feats = {}, {}, []
    for i in idx:
        ev = events[i]
        p = z2_periodogram(ev, freqs)
        z2max[i], fbest[i] = float(p.max()), float(freqs[p.argmax()])
        sel = (ev.energy >= 0.5) & (ev.energy < 7.0)
        tau = (ev.time[sel] - ev.tstart) / ev.span
        g = (ev.gti - ev.tstart) / ev.span
        e = np.linspace(0, 1, 65)
        fr = (np.clip(g[:, None, 1], e[None, :-1], e[None, 1:]) - np.clip(g[:, None, 0], e[None, :-1], e[None, 1:])).sum(0)
        c = np.histogram(tau, e)[0]
        rel = np.where(fr > 1e-4, c / np.maximum(tau.size * fr / fr.sum(), 1e-9), 1.0)
        feats.append(np.concatenate([[p.max(), freqs[p.argmax()], np.log(max(tau.size, 1))],
                                     np.quantile(rel[fr > 0.5 / 64], [0, .05, .25, .5, .75, .95, 1]), np.sort(rel)]))
    kid = lab["kind_id"]
    out: dict = {"z2_max_quantiles_1_5_50_percent": {
        k: np.round(np.quantile([z2max[i] for i in te if kid[i] == j], [0.01, 0.05, 0.5]), 1).tolist()
        for j, k in enumerate(KINDS)},
        "constant_z2_max_99_percent": float(np.quantile([z2max[i] for i in te if kid[i] == 0], 0.99))}
    per = [(i, p) for i, p in zip(te, pred, strict=True) if kid[i] == KINDS.index("periodic")]
    for name, sel in (("below_11_cycles_per_span", lambda f: f < 11), ("above_11_cycles_per_span", lambda f: f >= 11)):
        rows = [(i, p) for i, p in per if sel(fbest[i])]
        out[f"periodic_{name}"] = {"n": len(rows), "ppad_accuracy": float(np.mean([p == kid[i] for i, p in rows]))
                                   if rows else float("nan"), "min_z2": float(min(z2max[i] for i, _ in rows))
                                   if rows else float("nan")}
    F = np.array(feats)
    n_te = len(te)
    c = fit_classifier(F[n_te:], kid[tr])
    s = classification_scores(kid[te], c.predict(F[:n_te]), KINDS)
    out["raw_event_classifier"] = {"accuracy": s["accuracy"], "f1": s["f1"], "confusion": s["confusion"],
                                   "features": "Z2 peak and frequency, log N, 64-bin exposure-corrected light "
                                               "curve (quantiles and sorted values); same split"}
    out["note"] = ("periodic modulation (amplitude 0.5-0.9, >= ~500 counts) is always detectable in the raw "
                   "events (min Z2 of periodic sources vs the constant sources' 99th percentile)")
    return out


def _summary(res: dict) -> str:
    g = res["goals"]
    reg = res["hardness_regression"]["decoded"]
    cls = res["variability_classification"]["decoded"]
    ll = res["heldout_loglike_per_event"]
    lines = [f"PPAD benchmark ({res['n_sources']} simulated event lists, {res['n_test']} held out)",
             "  hardness R2: " + ", ".join(f"{k} {v['r2']:.3f}" for k, v in reg.items())
             + f"  (goal >= 0.9: {'PASS' if g['hardness_pass'] else 'FAIL'})",
             f"  variability accuracy {cls['accuracy']:.3f} (goal >= 0.92: {'PASS' if g['accuracy_pass'] else 'FAIL'});"
             " F1 " + ", ".join(f"{k} {v:.2f}" for k, v in cls["f1"].items()),
             f"  held-out logL/event: PPAD {ll['ppad_mean']:.4f}, Bayesian blocks {ll['bb_global_spectrum_mean']:.4f}"
             f" (global spectrum) / {ll['bb_block_spectrum_mean']:.4f} (per-block)"
             f"  ({'PASS' if g['loglike_pass'] else 'FAIL'}; PPAD better on "
             f"{100 * ll['ppad_wins_fraction_vs_per_source_best_bb']:.0f}% of sources)",
             f"  encoding throughput {g['throughput']:.1f} sources/s with {res['throughput']['torch_threads']} "
             f"thread(s), load {res['throughput']['loadavg_before']:.1f} (goal >= 100: "
             f"{'PASS' if g['throughput_pass'] else 'FAIL'})"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small version (360 sources)")
    ap.add_argument("--json", help="write results here (default for the full run: benchmarks/results/ppad.json)")
    ap.add_argument("--model", help="PPAD model directory (default: shipped)")
    args = ap.parse_args(argv)
    res = run(args.quick, args.model)
    print(_summary(res))
    path = args.json or (None if args.quick else str(ROOT / "benchmarks" / "results" / "ppad.json"))
    if path:
        from simxray.provenance import atomic_path

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = atomic_path(path)
        tmp.write_text(json.dumps(res, indent=2, default=float))
        os.replace(tmp, path)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
