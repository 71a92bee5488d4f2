"""Pileup of a flaring source: event-level NPE with the PPAD embedding against the time-averaged Davis fit.

    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_variable_pileup.py [--quick] [--workers 2]

Steps (each resumable: simulation chunks are cached under ``--work``, default
``build/varpileup/cache``, and skipped when present; the same seed gives the same files):

1. simulate flaring absorbed power laws (``tbabs*powerlaw``) with the event-level simulator
   (:func:`simxray.events.variable.simulate_flare`: 15043-like 1/8 subarray, 0.44104 s frames,
   5538 s, Gaussian PSF sigma 0.36", no transfer loss); priors nH U(2, 25) 1e22 cm^-2, Γ U(1, 3.5),
   log10 peak rate U(log10 0.05, log10 6) photons/s, log10 quiescent rate U(-2.5, -0.5),
   flare centre U(0.25, 0.75) and Gaussian sigma U(0.04, 0.25) of the span.  Peak photons per frame
   0.02-2.6, peak piled fraction 0-50 %.  Each event list is summarised by its good-event spectrum
   (0.25 keV bins, 0.5-10 keV, + 10-15 keV), a 2-band x 16-bin light curve and its PPAD latent
   (shipped encoder, 30 steps, grid loss);
2. train three NPEs, each an equal-weight ensemble of 3 (``sbi`` masked autoregressive flow, 4
   transforms, a 3-layer MLP embedding; counts enter as log1p; sbi's mixture density network was
   tried first and was far less accurate, Γ RMSE 0.64 against 0.28, and overconfident):
   **ppad**: spectrum + PPAD latent + log10 N; **plain**: spectrum + binned light curve +
   log10 N (no PPAD); **davis**: the time-averaged Davis (jdpileup) model of the summed
   spectrum at the mean rate, θ_D = (nH, Γ, log10 mean rate, alpha, f), trained on Davis
   simulations (:class:`simxray.events.variable.DavisAverage`), i.e. an amortised Davis fit;
3. on held-out event simulations: bias (posterior median - truth) and 68 / 90 % central-interval
   coverage of nH, Γ (and the rates) in bins of the peak piled fraction; for Davis also on its
   own simulations (its calibration) and on steady event-level sources at the same mean rate
   (how much of its bias is the Davis-vs-event-level physics rather than the variability);
4. the 15043 flare (Sgr A*, 1.25", ``/work/shared/data/events/15043_flare_evt2.fits``) with
   all three.

Outputs: ``benchmarks/results/variable_pileup.json`` (provenance: inputs with sha256, seed,
version, commit, settings) and ``variable_pileup.png``.
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
RESULTS = ROOT / "benchmarks" / "results"
REAL = Path(os.environ.get("SIMXRAY_EVENTS_DIR", "/work/shared/data/events")) / "15043_flare_evt2.fits"
SGRA = {"ra": 266.41684, "dec": -29.00781, "radius": 1.25}
CHUNK = 80
SPLITS = {"train": 0, "test": 1, "control": 2}

FULL = {"n_train": 2000, "n_test": 400, "n_control": 120, "n_davis": 6000, "n_davis_test": 300,
        "n_samples": 500, "max_epochs": 300, "estimator": "maf", "hidden": 48, "transforms": 4, "ensemble": 3}
QUICK = {"n_train": 120, "n_test": 40, "n_control": 0, "n_davis": 800, "n_davis_test": 40,
         "n_samples": 200, "max_epochs": 30, "estimator": "maf", "hidden": 32, "transforms": 3, "ensemble": 1}
PILE_BINS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)


def _setup():
    import torch

    torch.set_num_threads(1)
    from simxray.events.variable import FlareSetup, Instrument

    return Instrument(FlareSetup())


def _atomic_npz(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _chunk_job(args) -> str:
    """Simulate, summarise and PPAD-encode one chunk; returns its path."""
    split, k, seed, n, work, theta_ctrl = args
    path = Path(work) / f"{split}_{k:04d}.npz"
    if path.exists():
        return str(path)
    from simxray.events.ppad import PPAD
    from simxray.events.variable import (
        PRIOR_HIGH,
        PRIOR_LOW,
        light_curve_summary,
        simulate_constant,
        simulate_flare,
        spectrum_summary,
    )

    inst = _setup()
    ss = np.random.SeedSequence(seed, spawn_key=(SPLITS[split], k))
    s_theta, s_sims = ss.spawn(2)
    if split == "control":
        theta = np.asarray(theta_ctrl, np.float64)
    else:
        theta = np.random.default_rng(s_theta).uniform(PRIOR_LOW, PRIOR_HIGH, size=(n, len(PRIOR_LOW)))
    events, labels = [], []
    for i, child in enumerate(s_sims.spawn(len(theta))):
        if split == "control":   # steady source at the flare's mean rate (column 2: log10 mean rate)
            ev = simulate_constant(10 ** theta[i, 2], theta[i, 0], theta[i, 1], inst, child)
            lab = {"peak_pileup_fraction": np.nan, "peak_photons_per_frame": np.nan,
                   "mean_rate": 10 ** theta[i, 2], "n_photons": np.nan, "n_good": ev.n_events}
        else:
            ev, lab = simulate_flare(theta[i], inst, child)
        events.append(ev)
        labels.append(lab)
    spec = np.stack([spectrum_summary(e.energy) for e in events])
    lc = np.stack([light_curve_summary(e) for e in events])
    model = PPAD.load()
    ok = [i for i, e in enumerate(events) if np.any((e.energy >= 0.5) & (e.energy < 7.0))]
    z = np.zeros((len(events), model.cfg.latent_dim), np.float32)
    if ok:
        z[ok] = model.encode([events[i] for i in ok], workers=1).z
    keys = sorted(labels[0])
    _atomic_npz(path, theta=theta, spec=spec, lc=lc, z=z, n_events=np.array([e.n_events for e in events]),
                **{k_: np.array([lab[k_] for lab in labels], np.float64) for k_ in keys})
    return str(path)


def simulate_split(split: str, n: int, seed: int, work: Path, workers: int, theta_ctrl=None) -> dict:
    """Run (or resume) the chunks of one split; returns the concatenated arrays."""
    work.mkdir(parents=True, exist_ok=True)
    jobs = []
    for k, start in enumerate(range(0, n, CHUNK)):
        m = min(CHUNK, n - start)
        tc = None if theta_ctrl is None else theta_ctrl[start:start + m]
        jobs.append((split, k, seed, m, str(work), tc))
    t0 = time.perf_counter()
    todo = [j for j in jobs if not (work / f"{j[0]}_{j[1]:04d}.npz").exists()]
    if todo:
        if workers > 1:
            from multiprocessing import get_context

            with get_context("spawn").Pool(workers) as pool:
                for p in pool.imap_unordered(_chunk_job, todo):
                    print(f"  {p}  {time.perf_counter() - t0:.0f}s", flush=True)
        else:
            for j in todo:
                print(f"  {_chunk_job(j)}  {time.perf_counter() - t0:.0f}s", flush=True)
    parts = [dict(np.load(work / f"{split}_{k:04d}.npz")) for k in range(len(jobs))]
    out = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    out["wall_s_this_run"] = time.perf_counter() - t0
    out["n_simulated_this_run"] = sum(j[3] for j in todo)
    return out


# ----------------------------------------------------------------------------- features / NPE

def features(d: dict, kind: str) -> np.ndarray:
    """Network input: log1p spectrum + (PPAD latent | log1p light curve) + log10 N."""
    from simxray.events.variable import transform_counts

    spec = transform_counts(d["spec"])
    if kind == "davis":
        return spec.astype(np.float32)
    logn = np.log10(np.maximum(d["n_events"], 1.0))[:, None]
    if kind == "ppad":
        return np.column_stack([spec, d["z"], logn]).astype(np.float32)
    if kind == "plain":
        return np.column_stack([spec, transform_counts(d["lc"]), logn]).astype(np.float32)
    raise ValueError(kind)


def train_npe(theta: np.ndarray, x: np.ndarray, low, high, cfg: dict, seed: int):
    """sbi NPE (``cfg["estimator"]``: maf or mdn) with an MLP embedding; returns (posterior, info)."""
    import torch
    from sbi.inference import NPE
    from sbi.neural_nets import posterior_nn
    from sbi.utils import BoxUniform
    from torch import nn

    torch.manual_seed(seed)
    prior = BoxUniform(torch.tensor(low, dtype=torch.float32), torch.tensor(high, dtype=torch.float32))
    h = cfg["hidden"]
    emb = nn.Sequential(nn.Linear(x.shape[1], 2 * h), nn.SiLU(), nn.Linear(2 * h, h), nn.SiLU(), nn.Linear(h, 32))
    if cfg.get("estimator", "mdn") == "maf":
        de = posterior_nn(model="maf", embedding_net=emb, hidden_features=h, num_transforms=cfg["transforms"])
    else:
        de = posterior_nn(model="mdn", embedding_net=emb, hidden_features=h, num_components=cfg["components"])
    inf = NPE(prior=prior, density_estimator=de, show_progress_bars=False)
    t0 = time.perf_counter()
    inf.append_simulations(torch.as_tensor(theta, dtype=torch.float32), torch.as_tensor(x)).train(
        training_batch_size=128, max_num_epochs=cfg["max_epochs"], stop_after_epochs=20, show_train_summary=False)
    s = inf.summary
    info = {"train_s": round(time.perf_counter() - t0, 1), "epochs": int(s["epochs_trained"][-1]),
            "best_validation_log_prob": round(float(s["best_validation_loss"][-1]) * -1, 4)
            if "best_validation_loss" in s else None}
    return inf.build_posterior(), info


def train_ensemble(theta: np.ndarray, x: np.ndarray, low, high, cfg: dict, seed: int):
    """``cfg["ensemble"]`` NPEs with different seeds (initialisation, validation split); their
    equal-weight mixture is the posterior (single NPEs trained on a few thousand simulations
    are overconfident).  Returns (list of posteriors, list of training infos)."""
    posts, infos = [], []
    for k in range(cfg["ensemble"]):
        p, i = train_npe(theta, x, low, high, cfg, seed + 1000 * k)
        posts.append(p)
        infos.append(i)
    return posts, infos


def sample_quantiles(posterior, x: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Quantiles (5, 16, 50, 84, 95 %) of n posterior draws per row of x: (N, 5, P)."""
    import torch

    torch.manual_seed(seed)
    qs = torch.tensor([0.05, 0.16, 0.5, 0.84, 0.95])
    return np.stack([np.quantile(s, qs.numpy(), axis=0) for s in draw(posterior, x, n)])


NO_DRAW_IN_PRIOR = [0]


def draw(posterior, x: np.ndarray, n: int) -> list[np.ndarray]:
    """n posterior draws (n, P) per row of x, from the flow directly, truncated to the prior box.

    Same distribution as sbi's rejection sampler (the box prior truncates the flow): 2 n draws
    per row, then up to two more rounds of 8 n for the rows with fewer than n inside the box;
    a row that still has fewer keeps those it has; a row with none keeps its last draws clipped to
    the box (counted in ``NO_DRAW_IN_PRIOR``: the network puts the source outside the prior).
    """
    import torch

    if isinstance(posterior, list | tuple):     # ensemble: equal shares from each member
        k = len(posterior)
        parts = [draw(p, x, -(-n // k)) for p in posterior]
        return [np.concatenate([pt[i] for pt in parts])[:n] for i in range(len(x))]
    est = posterior.posterior_estimator
    lo, hi = (b.numpy() for b in _box(posterior))
    out: list[np.ndarray] = []
    with torch.no_grad():
        for i in range(0, len(x), 100):
            xb = torch.as_tensor(x[i:i + 100])
            kept = [np.zeros((0, lo.size), np.float32) for _ in range(len(xb))]
            rows = np.arange(len(xb))
            for m in (2 * n, 8 * n, 8 * n):
                s = est.sample((m,), condition=xb[rows]).numpy()          # (m, b, P)
                for k, j in enumerate(rows):
                    ok = np.all((s[:, k] >= lo) & (s[:, k] <= hi), axis=1)
                    kept[j] = np.concatenate([kept[j], s[ok, k]])[:n]
                rows = np.array([j for j in rows if len(kept[j]) < n])
                if rows.size == 0:
                    break
            for j in rows:      # no draw inside the box at all: the posterior sits beyond the prior edge
                if len(kept[j]) == 0:
                    k_ = list(rows).index(j)
                    kept[j] = np.clip(s[:n, k_], lo, hi)
                    NO_DRAW_IN_PRIOR[0] += 1
            out.extend(kept)
    return out


def _box(posterior):
    """(low, high) of the BoxUniform prior."""
    base = posterior.prior.base_dist
    return base.low, base.high


def scores(q: np.ndarray, truth: np.ndarray, pile: np.ndarray | None, names) -> dict:
    """Bias, RMSE and 68/90 % coverage per parameter, overall and per peak-piled-fraction bin."""
    def block(sel) -> dict:
        out = {"n": int(sel.sum())}
        for j, name in enumerate(names):
            t, qq = truth[sel, j], q[sel, :, j]
            if not sel.any():
                continue
            err = qq[:, 2] - t
            out[name] = {"bias": float(err.mean()), "bias_se": float(err.std(ddof=1) / np.sqrt(max(sel.sum(), 2))
                                                                      if sel.sum() > 1 else np.nan),
                         "rmse": float(np.sqrt(np.mean(err ** 2))),
                         "median_abs_err": float(np.median(np.abs(err))),
                         "coverage68": float(np.mean((t >= qq[:, 1]) & (t <= qq[:, 3]))),
                         "coverage90": float(np.mean((t >= qq[:, 0]) & (t <= qq[:, 4]))),
                         "mean_width68": float(np.mean(qq[:, 3] - qq[:, 1]))}
        return out

    res = {"all": block(np.ones(len(truth), bool))}
    if pile is not None:
        res["by_peak_pileup"] = []
        for lo, hi in zip(PILE_BINS, PILE_BINS[1:] + (1.01,), strict=True):
            sel = (pile >= lo) & (pile < hi)
            res["by_peak_pileup"].append({"range": [lo, hi], **block(sel)})
    return res


def davis_training_set(inst, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """θ_D from the Davis prior and Poisson spectra from :class:`DavisAverage`."""
    from simxray.events.variable import DAVIS_HIGH, DAVIS_LOW, DavisAverage

    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))
    th = rng.uniform(DAVIS_LOW, DAVIS_HIGH, size=(n, len(DAVIS_LOW)))
    mu, _ = DavisAverage(inst).expected(th)
    return th, rng.poisson(mu).astype(np.float32)


ASIMOV_THETA = (15.0, 2.5, None, -1.5, 0.5, 0.1)


def asimov_curve(inst, peak_rates) -> list[dict]:
    """Direct calculation of the variability bias of a mean-rate Davis fit, with no noise and no network.

    For θ = (nH 15, Γ 2.5, peak rate, quiescent 10^-1.5, t0 0.5, sigma 0.1 span): the expected
    spectrum if every frame piles as Davis' model says at its own rate (alpha 0.5, f 0.95;
    :func:`~simxray.events.variable.davis_time_resolved`) is fitted by C-stat with the Davis
    model at one constant rate (nH, Γ, rate, alpha free; :func:`fit_davis_mean_rate`).
    """
    from simxray.events.variable import (
        DavisAverage,
        davis_time_resolved,
        fit_davis_mean_rate,
        frame_levels,
    )

    dav = DavisAverage(inst)
    out = []
    for r in peak_rates:
        th = np.array([v if v is not None else np.log10(r) for v in ASIMOV_THETA])
        lbar, nfr = frame_levels(th, inst.setup)
        mean_rate = float((lbar * nfr).sum() / nfr.sum() / inst.setup.frame_time_s)
        _, frac_pk = dav.expected(np.array([[th[0], th[1], np.log10(lbar.max() / inst.setup.frame_time_s), 0.5, 0.95]]))
        mu = davis_time_resolved(th, dav)
        p, c = fit_davis_mean_rate(mu, dav, start=np.array([th[0], th[1], np.log10(mean_rate), 0.5]))
        out.append({"peak_rate": float(r), "peak_photons_per_frame": float(lbar.max()),
                    "davis_peak_pileup_fraction": float(frac_pk[0]), "mean_rate": mean_rate,
                    "fit_nH": float(p[0]), "fit_PhoIndex": float(p[1]), "fit_log10_mean_rate": float(p[2]),
                    "fit_alpha": float(p[3]), "bias_nH": float(p[0] - th[0]), "bias_PhoIndex": float(p[1] - th[1]),
                    "cstat_asimov": c})
        print("asimov", out[-1], flush=True)
    return out


# ----------------------------------------------------------------------------- real data

def real_summary(path: Path) -> dict:
    """The 15043 flare, Sgr A* 1.25": the three networks' inputs and the observed facts."""
    from simxray.events.eventfile import EventList
    from simxray.events.ppad import PPAD
    from simxray.events.realfile import read_observation
    from simxray.events.variable import FlareSetup, light_curve_summary, spectrum_summary

    obs = read_observation(path, **SGRA)
    ev = obs.source
    setup = FlareSetup()
    # times from the GTI start; the same span as the simulations (one 5538-s GTI)
    ev0 = EventList(ev.time - ev.tstart, ev.energy, ev.gti - ev.tstart, frame_time=ev.frame_time, name=ev.name)
    d = {"spec": spectrum_summary(ev0.energy)[None], "lc": light_curve_summary(ev0)[None],
         "n_events": np.array([ev0.n_events]), "z": PPAD.load().encode([ev0], workers=1).z}
    facts = {"n_events_region": int(ev.n_events), "span_s": float(ev.span), "span_sim_s": setup.span_s,
             "frame_time_s": float(ev.frame_time), "dtcor": obs.meta.get("dtcor"),
             "fraction_above_7keV": float(np.mean(ev.energy > 7.0)),
             "busiest_100s_counts": int(np.histogram(ev0.time, np.arange(0, ev0.span + 100, 100))[0].max())}
    return {"d": d, "facts": facts}


# ----------------------------------------------------------------------------- plot

def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [("ppad", "NPE: PPAD latent + spectrum", "C0", "o"), ("plain", "NPE: light curve + spectrum", "C2", "s"),
               ("davis", "time-averaged Davis (jdpileup)", "C3", "^")]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5), sharex=True)
    for col, (par, label) in enumerate([("nH", r"$N_H$ [$10^{22}$ cm$^{-2}$]"), ("PhoIndex", r"$\Gamma$"), (None, "")]):
        for (m, lab, c, mk) in methods:
            bins = res["methods"][m]["scores"].get("by_peak_pileup", [])
            bb = [b for b in bins if b["n"] >= 10]          # a bin with fewer sources is not drawn
            xs = [0.5 * (b["range"][0] + min(b["range"][1], 0.6)) * 100 for b in bb]
            if par is None:
                name = "log10_peak_rate" if m != "davis" else "log10_mean_rate"
                if m == "plain":
                    continue
                lab = lab + (" (peak rate)" if m == "ppad" else " (mean rate)")
            else:
                name = par
            if not bb or name not in bb[0]:
                continue
            axes[0, col].errorbar(xs, [b[name]["bias"] for b in bb], yerr=[b[name]["bias_se"] for b in bb],
                                  color=c, marker=mk, label=lab, capsize=3)
            axes[1, col].plot(xs, [b[name]["coverage68"] for b in bb], color=c, marker=mk, ls="-", label=f"{lab}, 68 %")
            axes[1, col].plot(xs, [b[name]["coverage90"] for b in bb], color=c, marker=mk, ls="--", label=f"{lab}, 90 %")
        axes[0, col].axhline(0, color="k", lw=0.8)
        for lvl in (0.68, 0.9):
            axes[1, col].axhline(lvl, color="k", lw=0.8, ls=":")
        axes[1, col].set_ylim(0, 1.02)
        axes[1, col].set_xlabel("peak piled fraction of events [%] (bin centres)")
        axes[0, col].set_title(label if par else r"log$_{10}$ rate [photons/s]")
    axes[0, 0].set_ylabel("bias (posterior median - truth)")
    axes[1, 0].set_ylabel("coverage of central interval")
    axes[0, 2].legend(fontsize=8)
    axes[1, 0].legend(fontsize=7, ncol=1)
    fig.suptitle("Flaring piled source (event-level simulations, 0.44 s frames): bias and coverage "
                 "against peak pileup", fontsize=11)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=130)
    os.replace(tmp, path)
    plt.close(fig)


# ----------------------------------------------------------------------------- main

def run(quick: bool = False, seed: int = 0, workers: int = 1, work: Path | None = None,
        json_path: Path | None = None, png_path: Path | None = None, real: bool = True) -> dict:
    import torch

    from simxray.events.variable import (
        DAVIS_HIGH,
        DAVIS_LOW,
        DAVIS_NAMES,
        PARAM_NAMES,
        PRIOR_HIGH,
        PRIOR_LOW,
        FlareSetup,
    )
    from simxray.provenance import provenance, sha256

    torch.set_num_threads(1)
    cfg = dict(QUICK if quick else FULL)
    work = Path(work or ROOT / "build" / "varpileup" / ("cache_quick" if quick else "cache"))
    t_all = time.perf_counter()
    inst = _setup()
    timing = {}
    train = simulate_split("train", cfg["n_train"], seed, work, workers)
    test = simulate_split("test", cfg["n_test"], seed, work, workers)
    for name, d in (("train", train), ("test", test)):
        if d["n_simulated_this_run"]:
            timing[f"sim_{name}_s_per_source"] = round(d["wall_s_this_run"] * max(workers, 1)
                                                       / d["n_simulated_this_run"], 3)
    control = None
    if cfg["n_control"]:
        n_c = min(cfg["n_control"], cfg["n_test"])
        tc = np.column_stack([test["theta"][:n_c, :2], np.log10(test["mean_rate"][:n_c])])
        control = simulate_split("control", n_c, seed, work, workers, theta_ctrl=tc)

    methods = {}
    posts = {}
    for kind in ("ppad", "plain"):
        post, info = train_ensemble(train["theta"], features(train, kind), PRIOR_LOW, PRIOR_HIGH, cfg, seed)
        posts[kind] = post
        NO_DRAW_IN_PRIOR[0] = 0
        q = sample_quantiles(post, features(test, kind), cfg["n_samples"], seed + 1)
        np.savez(work / f"quantiles_{kind}.npz", q=q)
        methods[kind] = {"training": info, "names": list(PARAM_NAMES),
                         "scores": scores(q, test["theta"], test["peak_pileup_fraction"], PARAM_NAMES),
                         "test_rows_without_draws_in_prior": NO_DRAW_IN_PRIOR[0]}
        print(kind, json.dumps(methods[kind]["scores"]["all"])[:400], flush=True)

    th_d, x_d = davis_training_set(inst, cfg["n_davis"] + cfg["n_davis_test"], seed)
    nd = cfg["n_davis"]
    post_d, info_d = train_ensemble(th_d[:nd], features({"spec": x_d[:nd]}, "davis"), DAVIS_LOW, DAVIS_HIGH, cfg,
                                    seed)
    posts["davis"] = post_d
    truth_d = np.column_stack([test["theta"][:, :2], np.log10(test["mean_rate"])])
    NO_DRAW_IN_PRIOR[0] = 0
    q_d = sample_quantiles(post_d, features(test, "davis"), cfg["n_samples"], seed + 1)
    np.savez(work / "quantiles_davis.npz", q=q_d)
    no_draw_d = NO_DRAW_IN_PRIOR[0]
    dnames = ("nH", "PhoIndex", "log10_mean_rate")
    methods["davis"] = {"training": info_d, "names": list(DAVIS_NAMES),
                        "scores": scores(q_d[:, :, :3], truth_d, test["peak_pileup_fraction"], dnames),
                        "test_rows_without_draws_in_prior": no_draw_d}
    q_self = sample_quantiles(post_d, features({"spec": x_d[nd:]}, "davis"), cfg["n_samples"], seed + 2)
    methods["davis"]["self_calibration"] = scores(q_self, th_d[nd:], None, DAVIS_NAMES)["all"]
    if control is not None:
        q_c = sample_quantiles(post_d, features(control, "davis"), cfg["n_samples"], seed + 3)
        n_c = len(control["theta"])
        methods["davis"]["steady_control"] = scores(q_c[:, :, :3], control["theta"], None, dnames)["all"]
        methods["davis"]["same_sources_flaring"] = scores(q_d[:n_c, :, :3], truth_d[:n_c], None, dnames)["all"]
    print("davis", json.dumps(methods["davis"]["scores"]["all"])[:400], flush=True)

    asimov = asimov_curve(inst, (0.1, 3.0) if quick else (0.1, 0.5, 1.0, 2.0, 6.0))

    real_out = None
    if real and REAL.exists():
        rs = real_summary(REAL)
        real_out = {"file": str(REAL), "sha256": sha256(REAL), "region": SGRA, "facts": rs["facts"]}
        for kind, names in (("ppad", PARAM_NAMES), ("plain", PARAM_NAMES), ("davis", DAVIS_NAMES)):
            x = features(rs["d"], kind)
            torch.manual_seed(seed)
            s = draw(posts[kind], x, 4000)[0]
            real_out[kind] = {n: {"median": float(np.median(s[:, j])),
                                  "q16": float(np.quantile(s[:, j], 0.16)), "q84": float(np.quantile(s[:, j], 0.84)),
                                  "q05": float(np.quantile(s[:, j], 0.05)), "q95": float(np.quantile(s[:, j], 0.95))}
                              for j, n in enumerate(names)}

    pile = test["peak_pileup_fraction"]
    res = {
        "benchmark": "variable_pileup",
        "quick": quick,
        "settings": {**cfg, "seed": seed, "workers": workers, "chunk": CHUNK, "pileup_bins": list(PILE_BINS),
                     "setup": FlareSetup().to_dict(), "eventsim_config": inst.setup.eventsim_config().to_dict(),
                     "prior": {"names": list(PARAM_NAMES), "low": list(PRIOR_LOW), "high": list(PRIOR_HIGH)},
                     "davis_prior": {"names": list(DAVIS_NAMES), "low": list(DAVIS_LOW), "high": list(DAVIS_HIGH)}},
        "test_set": {"n": int(len(pile)), "peak_pileup_fraction_range": [float(pile.min()), float(pile.max())],
                     "peak_pileup_fraction_quantiles_10_50_90": np.quantile(pile, [0.1, 0.5, 0.9]).tolist(),
                     "n_good_events_median": float(np.median(test["n_events"])),
                     "n_good_events_range": [int(test["n_events"].min()), int(test["n_events"].max())]},
        "methods": methods,
        "asimov_davis_variability_bias": asimov,
        "real_15043": real_out,
        "timing": {**timing, "total_wall_s_this_run": round(time.perf_counter() - t_all, 1)},
        "provenance": provenance(script="benchmarks/bench_variable_pileup.py", seed=seed,
                                 inputs={p.name: sha256(p) for p in (Path(inst.arf_path), Path(inst.rmf_path))}
                                 | ({REAL.name: sha256(REAL)} if REAL.exists() else {})),
    }
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = json_path.with_name(f".{json_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(res, indent=1, default=float))
        os.replace(tmp, json_path)
    if png_path:
        plot(res, png_path)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (tests)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="simulation processes")
    ap.add_argument("--work", type=Path, default=None, help="cache folder for simulation chunks")
    ap.add_argument("--json", type=Path, default=RESULTS / "variable_pileup.json")
    ap.add_argument("--png", type=Path, default=RESULTS / "variable_pileup.png")
    ap.add_argument("--simulate-only", action="store_true", help="stop after the simulations")
    ap.add_argument("--plot-only", action="store_true", help="redraw the PNG from the JSON")
    a = ap.parse_args(argv)
    if a.plot_only:
        plot(json.loads(a.json.read_text()), a.png)
        return 0
    if a.simulate_only:
        cfg = QUICK if a.quick else FULL
        work = Path(a.work or ROOT / "build" / "varpileup" / ("cache_quick" if a.quick else "cache"))
        _setup()
        simulate_split("train", cfg["n_train"], a.seed, work, a.workers)
        simulate_split("test", cfg["n_test"], a.seed, work, a.workers)
        return 0
    run(quick=a.quick, seed=a.seed, workers=a.workers, work=a.work, json_path=a.json, png_path=a.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
