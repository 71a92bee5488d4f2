"""Benchmark: what ignoring pileup does to relxill parameters (simxray issue 15, item 3).

For piled-up ``tbabs*relxill`` spectra drawn across a campaign's prior, three treatments
of pileup are compared by the bias and the coverage of the posterior of every source
parameter (nH, a, Incl, gamma, Afe, refl_frac, norm), in bins of the pileup fraction:

* **ignored**: an amortised posterior (NPE) trained on the same campaign *without*
  pileup (the fit a user gets with ``--pileup none``);
* **Davis**: an NPE trained on Davis (2001) piled spectra (Sherpa's jdpileup, α and f
  free, as ``simxray fit`` does by default);
* **event level**: the Davis network fine-tuned (``init=``) on spectra piled by the
  event-level simulator (:mod:`simxray.instrument.eventsim`: photons in frames, PSF,
  charge clouds, 3x3 islands, grades; no α or f), simulated for the source parameters of
  the first ``n_train_events`` Davis training draws.  The parametrisation stays the
  Davis network's: α and f are carried along as nuisance parameters that the
  event-level spectra do not depend on (their posterior learns to be their prior).

The event-level simulator is also the *truth* of a second test set: the source
parameters of the Davis test set, piled photon by photon, to which all three posteriors
are applied.  That measures what Davis' approximation itself costs, and how much of it
the event-level treatment removes.  Every event-level set is simulated with one pinned
simulator configuration (:data:`EVENTSIM`, recorded in its HDF5 file and in the JSON).

The ignored and Davis networks are trained with identical settings and simulation
counts, so any difference between them is the pileup treatment.  A few spectra are refitted with the exact
likelihood (``simxray.fit(..., method="exact")`` with ``pileup="none"`` and
``"jdpileup"``) to check that the network posteriors agree with it (posterior mean
offset in posterior sd, sd ratio).

Metrics (log10 for log-uniform parameters): bias = posterior mean − truth in units of the
prior width and of the posterior sd; coverage = fraction of truths inside the central
68 % and 90 % credible intervals (binomial errors).

Run (about 1.5 hours on 2 shared cores from scratch; resumable: every stage is cached
under --work)::

    nice -n 19 .venv/bin/python benchmarks/bench_relxill_pileup_bias.py

writes benchmarks/results/relxill_pileup_bias.json and .png.  ``--quick`` is a
seconds-scale smoke run (tests/test_relxill_pileup_bias.py); ``--event-level-only``
builds only the event-level treatment (its training and test sets, the fine-tuned
network) and writes no JSON.
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
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: the benchmark's campaign, pinned: the bright relxill campaign as it was when the
#: networks and test sets were made (1/8 subarray, 100 ks; see the file's header)
BRIGHT = REPO / "benchmarks" / "relxill_pileup_bias_campaign.toml"
DEFAULT_CONFIG = REPO / "simulations" / "acis_default.toml"
RESULTS = REPO / "benchmarks" / "results"
SOURCE_PARAMS = ("nH", "a", "Incl", "gamma", "Afe", "refl_frac", "norm")
TREATMENTS = ("ignored", "davis", "events")
TESTSETS = ("davis", "events")
PF_EDGES = (0.0, 0.05, 0.15, 0.30, 0.60, 1.0)
LEVELS = (0.68, 0.90)

#: One network setup for both treatments: an MLP embedding of 4-channel sums (CPU-cheap:
#: the campaign's spectra hold 10^4-10^5 counts, so the information is in the shape
#: rather than in fine channel structure) and a 4-layer spline flow.
NETWORK = {"embedding.type": "mlp", "embedding.rebin": 4, "embedding.hidden": 128,
           "embedding.features": 32, "flow.transforms": 4, "flow.hidden_features": [64, 64]}

FULL = {"n_train": 20000, "n_test": 400, "n_events": 400, "max_events": 2e8,
        "n_train_events": 2000, "ft_epochs": 100,
        "n_post": 1000, "n_exact": 2, "max_minutes": 0.0, "max_epochs": 80}
QUICK = {"n_train": 600, "n_test": 40, "n_events": 4, "max_events": 2e4,
         "n_train_events": 20, "ft_epochs": 2,
         "n_post": 200, "n_exact": 0, "max_minutes": 0.3, "max_epochs": 3}

#: The event-level simulator's configuration of every event-level set, pinned (the
#: frame time comes from the campaign): that of the committed 18-spectrum test set
#: (Chandra PSF, Lissajous dither, charge clouds of 0.1 px, ASCA grading of the whole
#: 3x3 island), so that later changes of the simulator's defaults do not change the
#: benchmark.  ``engine`` (sparse or dense) is how the islands are found, not physics
#: (tests/test_eventsim_fast.py); it is recorded per spectrum.
EVENTSIM = {"transfer_time": 0.04104, "pixel_arcsec": 0.492, "psf": "chandra",
            "psf_sigma_arcsec": 0.36, "king_rc_arcsec": 0.35, "king_beta": 1.5,
            "cloud_sigma_px": 0.1, "cloud_sigma_slope_px_per_kev": 0.0,
            "event_threshold_kev": 0.08, "split_threshold_kev": 0.052,
            "read_noise_kev": 0.007, "grid_px": 32, "frames_per_chunk": 2048,
            "good_grades": [0, 2, 3, 4, 6], "pha_sum": "island",
            "dither_amplitude_arcsec": 8.0, "dither_period_y_s": 1000.0,
            "dither_period_z_s": 707.1, "grading": "cloud", "marx_alpha": 0.5,
            "engine": "sparse"}
ENGINE_CODES = ("dense", "sparse")   # per-spectrum "engine" column of the event-level sets

#: Fine-tuning the Davis network on event-level spectra: a smaller learning rate than
#: training from scratch; the best validation epoch is kept.
FINE_TUNE = {"training.learning_rate": 3e-4, "training.patience": 12,
             "training.lr_patience": 4}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- setup ---------------------------------------------------------------------------------

def setup(config: Path):
    """(config, Davis simulator, pileup-free simulator) for a campaign TOML."""
    from simxray.simulator.config import load_config
    from simxray.simulator.prior import Prior
    from simxray.simulator.simulator import Simulator

    cfg = load_config(config)
    sim_d = Simulator.from_config(cfg)
    if not sim_d.pileup:
        raise SystemExit(f"{config}: [pileup] model: expected jdpileup, the benchmark needs pileup")
    prior_n = Prior([d for d in sim_d.prior.dists if not d.name.startswith("pileup.")])
    sim_n = Simulator(sim_d.model, prior_n, sim_d.response, channel_slice=sim_d.slice,
                      pileup=False, background_mu=sim_d.background_mu, files=sim_d.files,
                      pileup_grid=sim_d.pileup_grid, batch_size=sim_d.batch_size,
                      name=f"{sim_d.name}_nopileup")
    missing = [p for p in SOURCE_PARAMS if p not in prior_n.names]
    if missing:
        raise SystemExit(f"{config}: [model.parameters]: expected free {', '.join(missing)}")
    return cfg, sim_d, sim_n


def _write_h5(path: Path, arrays: dict, attrs: dict) -> None:
    import h5py

    from simxray.provenance import atomic_path

    tmp = atomic_path(path)
    with h5py.File(tmp, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
        for k, v in attrs.items():
            f.attrs[k] = v
    os.replace(tmp, path)


def _read_h5(path: Path) -> dict:
    import h5py

    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f}


def _stamp(sim) -> str:
    """What a cached simulation depends on: model, prior (with fixed values), response."""
    return json.dumps({"model": sim.expression, "prior": sim.prior.to_dict(),
                       "pileup": sim.pileup, "files": sim.files}, sort_keys=True, default=str)


def simulate(sim, n: int, seed: int, path: Path) -> dict:
    """Prior draws and noisy spectra (cached in ``path``, HDF5; a cache made for another
    prior, response or seed is refused)."""
    if path.exists():
        import h5py

        with h5py.File(path, "r") as f:
            ok = f.attrs.get("stamp") == _stamp(sim) and int(f.attrs["seed"]) == seed
        if not ok:
            raise SystemExit(f"{path}: made for another campaign setup or seed; remove it "
                             "(or the --work folder) to simulate again")
        return _read_h5(path)
    rng = np.random.default_rng(seed)
    theta = sim.prior.sample(n, rng)
    out = sim.simulate(theta, rng)
    arrays = {"theta": theta, "counts": out["counts"].astype(np.int32),
              "pileup_fraction": out["pileup_fraction"],
              "source_counts": out["mu"].sum(1)}
    _write_h5(path, arrays, {"names": json.dumps(sim.prior.names), "seed": seed,
                             "stamp": _stamp(sim)})
    return _read_h5(path)


def eventsim_config(sim_d):
    """The pinned :data:`EVENTSIM` configuration with the campaign's frame time."""
    from simxray.instrument.eventsim import EventSimConfig

    ft = sim_d.files.get("frame_time") or 3.24104
    d = {k: tuple(v) if isinstance(v, list) else v for k, v in EVENTSIM.items()}
    return EventSimConfig(frame_time=float(ft), **d)


def _physics(cfg: dict) -> dict:
    """A simulator configuration without the fields that are not physics."""
    return {k: v for k, v in cfg.items() if k not in ("engine", "frames_per_chunk")}


def simulate_events(sim_d, theta: np.ndarray, seed: int, path: Path, max_events: float,
                    log_every: int = 10) -> dict:
    """Event-level piled spectra for the source parameters of ``theta`` (Davis prior
    order; α and f are not used): good-grade counts in the campaign's channels plus
    Poisson background; resumable (the file grows spectrum by spectrum).  Spectra whose
    expected counts exceed what is left of ``max_events`` photons are skipped.  A file
    made with another simulator configuration (:func:`eventsim_config`, engine aside) or
    seed is refused."""
    from simxray.instrument.eventsim import simulate_events as sim_events

    resp = sim_d.response
    ecfg = eventsim_config(sim_d)
    want = json.loads(json.dumps(_physics(ecfg.to_dict())))
    done = {"index": np.zeros(0, int)}
    if path.exists():
        import h5py

        with h5py.File(path, "r") as f:
            have = json.loads(f.attrs.get("eventsim", "{}"))
            seed_ok = int(f.attrs.get("seed", seed)) == seed
        # compared on the fields both know (a field added to the simulator later keeps
        # its default; files written before the sparse engine existed used the dense one)
        common = set(_physics(have)) & set(want)
        if any(have[k] != want[k] for k in common) or not seed_ok:
            raise SystemExit(f"{path}: made with another event-simulator configuration or "
                             "seed; remove it to simulate again")
        done = _read_h5(path)
        done.setdefault("engine", np.zeros(len(done["index"]), int))
    rows = {k: list(v) for k, v in done.items()}
    for k in ("index", "counts", "pileup_fraction", "n_events", "seconds", "engine"):
        rows.setdefault(k, [])
    attrs = {"seed": seed, "eventsim": json.dumps(ecfg.to_dict()),
             "engine_codes": json.dumps(ENGINE_CODES)}
    mp_all, _ = sim_d.split(theta)
    # cheapest spectra first would bias the pileup mix; go in draw order, skip the costly
    mu0, _ = sim_d.forward(mp_all, None, all_channels=True)
    budget = max_events - float(np.sum(rows["n_events"]))
    t_last = time.perf_counter()
    have_idx = set(int(j) for j in rows["index"])
    todo = [i for i in range(len(theta)) if i not in have_idx]
    flux_block: dict = {}
    for n_i, i in enumerate(todo):
        expected = float(mu0[i].sum())
        if expected > budget:
            continue
        if i not in flux_block:       # source spectra in blocks of 64 (one model call each)
            blk = todo[n_i:n_i + 64]
            mp = {k: v[blk] for k, v in mp_all.items()}
            flux_block = dict(zip(blk, np.atleast_2d(sim_d.model.evaluate(resp.edges, mp)),
                                  strict=True))
        rate = flux_block[i] * resp.specresp
        rng = np.random.default_rng([seed, i])
        t0 = time.perf_counter()
        ev = sim_events(rate, resp.edges, resp.matrix, resp.exposure, config=ecfg, seed=rng,
                        channel_offset=resp.offset)
        spec = ev.spectrum(resp.n_channels, offset=resp.offset)[sim_d.slice]
        if sim_d.background_mu is not None:
            spec = spec + rng.poisson(sim_d.background_mu)
        rows["index"].append(i)
        rows["counts"].append(spec.astype(np.int32))
        rows["pileup_fraction"].append(ev.pileup_fraction())
        rows["n_events"].append(ev.n_photons)
        rows["seconds"].append(time.perf_counter() - t0)
        rows["engine"].append(ENGINE_CODES.index(ecfg.engine))
        budget -= ev.n_photons
        if len(rows["index"]) % log_every == 0 or time.perf_counter() - t_last > 60:
            _write_h5(path, {k: np.asarray(v) for k, v in rows.items()}, attrs)
            log(f"events {path.stem}: {len(rows['index'])} spectra, "
                f"{np.sum(rows['n_events']):.3g} photons")
            t_last = time.perf_counter()
    arrays = {k: np.asarray(v) for k, v in rows.items()}
    if len(arrays["index"]) == 0:
        arrays["counts"] = np.zeros((0, sim_d.n_channels), np.int32)
    _write_h5(path, arrays, attrs)
    return _read_h5(path)


def train(sim, data: dict, out: Path, sizes: dict, seed: int, init=None):
    """The NPE for one treatment (cached: an existing folder is loaded); ``init``: a
    posterior to fine-tune (:data:`FINE_TUNE` settings, ``ft_epochs`` epochs)."""
    from simxray.inference.npe import NPE
    from simxray.inference.posterior import Posterior

    if (out / "config.json").exists():
        return Posterior.load(out)
    settings = {**NETWORK, "training.max_minutes": sizes["max_minutes"],
                "training.max_epochs": sizes["max_epochs"], "training.patience": 8,
                "training.lr_patience": 3, "training.seed": seed}
    if init is not None:
        settings.update({**FINE_TUNE, "training.max_epochs": sizes["ft_epochs"]})
    setup = {"model": sim.expression, "channels": sim.channels,
             "exposure": sim.files.get("exposure"), "frame_time": sim.files.get("frame_time")}
    t0 = time.perf_counter()
    post = NPE(sim.prior, settings=settings, setup=setup).append(
        data["theta"], data["counts"]).train(out, overwrite=True, init=init)
    log(f"trained {out.name} in {time.perf_counter() - t0:.0f} s")
    return post


# -- metrics ---------------------------------------------------------------------------------

def posterior_stats(post, counts: np.ndarray, n_post: int, seed: int, prior,
                    block: int = 64) -> dict:
    """Posterior mean, sd and central 68/90 % intervals of every source parameter for
    each spectrum (N, C), in the prior's coordinates (log10 for log-uniform)."""
    logs = {d.name: d.dist == "loguniform" for d in prior.varying}
    idx = [post.names.index(p) for p in SOURCE_PARAMS]
    out = {k: [] for k in ("mean", "sd", "lo68", "hi68", "lo90", "hi90")}
    for a in range(0, len(counts), block):
        s = post.sample(n_post, counts[a:a + block].astype(float), seed=seed + a)  # (n, B, P)
        s = s[:, :, idx]
        for j, p in enumerate(SOURCE_PARAMS):
            if logs[p]:
                s[:, :, j] = np.log10(s[:, :, j])
        q = np.percentile(s, [5, 16, 84, 95], axis=0)
        out["mean"].append(s.mean(0))
        out["sd"].append(s.std(0))
        out["lo90"].append(q[0])
        out["lo68"].append(q[1])
        out["hi68"].append(q[2])
        out["hi90"].append(q[3])
    return {k: np.concatenate(v) for k, v in out.items()}


def transformed_truth(theta: np.ndarray, names: list[str], prior) -> tuple[np.ndarray, np.ndarray]:
    """Truths (N, 7) and prior widths (7,) in the prior's coordinates."""
    dists = {d.name: d for d in prior.varying}
    t = np.empty((len(theta), len(SOURCE_PARAMS)))
    w = np.empty(len(SOURCE_PARAMS))
    for j, p in enumerate(SOURCE_PARAMS):
        d = dists[p]
        v = theta[:, names.index(p)]
        if d.dist == "loguniform":
            t[:, j], w[j] = np.log10(v), np.log10(d.high / d.low)
        else:
            t[:, j], w[j] = v, d.high - d.low
    return t, w


def binned_metrics(stats: dict, truth: np.ndarray, width: np.ndarray, pf: np.ndarray) -> list:
    """Bias and coverage per parameter in bins of pileup fraction."""
    rows = []
    for lo, hi in zip(PF_EDGES[:-1], PF_EDGES[1:], strict=True):
        sel = (pf >= lo) & (pf < hi)
        n = int(sel.sum())
        row = {"pileup_fraction": [lo, hi], "n": n, "median_pileup_fraction":
               float(np.median(pf[sel])) if n else None, "parameters": {}}
        for j, p in enumerate(SOURCE_PARAMS):
            if n == 0:
                row["parameters"][p] = None
                continue
            m, s, t = stats["mean"][sel, j], stats["sd"][sel, j], truth[sel, j]
            err = m - t
            z = err / np.maximum(s, 1e-12)
            c68 = (t >= stats["lo68"][sel, j]) & (t <= stats["hi68"][sel, j])
            c90 = (t >= stats["lo90"][sel, j]) & (t <= stats["hi90"][sel, j])
            row["parameters"][p] = {
                "bias_prior_width": float(err.mean() / width[j]),
                "bias_prior_width_err": float(err.std(ddof=1) / width[j] / np.sqrt(n)) if n > 1 else None,
                "rmse_prior_width": float(np.sqrt(np.mean(err ** 2)) / width[j]),
                "bias_posterior_sd": float(np.mean(z)),
                "bias_posterior_sd_median": float(np.median(z)),
                # standard error of a median, from the interquartile range (robust)
                "bias_posterior_sd_median_err": float(1.2533 * np.subtract(
                    *np.percentile(z, [75, 25])) / 1.349 / np.sqrt(n)) if n > 1 else None,
                "bias_posterior_sd_err": float(z.std(ddof=1) / np.sqrt(n)) if n > 1 else None,
                "posterior_sd_prior_width": float(np.mean(s) / width[j]),
                "coverage68": float(c68.mean()), "coverage90": float(c90.mean()),
                "coverage68_err": float(np.sqrt(0.68 * 0.32 / n)),
                "coverage90_err": float(np.sqrt(0.9 * 0.1 / n)),
            }
        rows.append(row)
    return rows


# -- exact-likelihood check ------------------------------------------------------------------

def exact_check(cfg, sim_d, sim_n, counts: np.ndarray, seed: int) -> list:
    """Fit a few test spectra with the exact likelihood (emcee + importance sampling on
    the simulator) with pileup ignored and with jdpileup: mean, sd and central 68/90 %
    intervals per source parameter (the prior's coordinates)."""
    import simxray as sx
    from simxray.datasets import default_spectrum_path
    from simxray.io.ogip import read_pha

    # the campaign's priors with every fixed value (relxill's defaults) and its ftime
    priors = {"davis": sim_d.prior, "ignored": sim_n.prior}
    out = []
    for i in range(len(counts)):
        spath = default_spectrum_path() if cfg.spectrum == "default" else Path(cfg.spectrum)
        spec = read_pha(spath, frame_time=cfg.frame_time, arf=cfg.arf, rmf=cfg.rmf,
                        background=None if sim_d.background_mu is not None else "none")
        spec.exposure = float(sim_d.files["exposure"])
        full = np.zeros(sim_d.response.n_channels)
        full[sim_d.slice] = counts[i]
        spec.counts = full
        row = {"index": i, "truth": {}, "treatments": {}}
        for treat, pile in (("ignored", "none"), ("davis", "jdpileup")):
            obs = sx.Observation(spec, name=f"test{i}")
            obs.notice_channels(*sim_d.channels)
            t0 = time.perf_counter()
            res = sx.fit(obs, "tbabs*relxill", priors[treat], pileup=pile, method="exact",
                         n_samples=2000, seed=seed + i, ppc_draws=10, max_steps=3000)
            dt = time.perf_counter() - t0
            d = {}
            prior = res.problem.prior
            logs = {q.name: q.dist == "loguniform" for q in prior.varying}
            for p in SOURCE_PARAMS:
                s = res[p]
                s = np.log10(s) if logs[p] else s
                q = np.percentile(s, [5, 16, 84, 95])
                d[p] = {"exact_mean": float(s.mean()), "exact_sd": float(s.std()),
                        "exact_ci68": [float(q[1]), float(q[2])],
                        "exact_ci90": [float(q[0]), float(q[3])]}
            row["treatments"][treat] = {"seconds": dt, "method": res.summary.get("method"),
                                        "parameters": d}
            log(f"exact {treat} fit {i}: {dt:.0f} s")
        out.append(row)
    return out


# -- figure ----------------------------------------------------------------------------------

COLORS = {"ignored": "C3", "davis": "C0", "events": "C2"}
LABELS = {"ignored": "pileup ignored", "davis": "Davis (jdpileup) modelled",
          "events": "event-level simulator modelled"}
STYLES = {"davis": ("-", "o", "test spectra piled by Davis"),
          "events": ("--", "s", "test spectra piled event by event")}
PLABELS = {"nH": r"$N_{\rm H}$ (log)", "a": r"spin $a$", "Incl": "inclination",
           "gamma": r"$\Gamma$", "Afe": r"$A_{\rm Fe}$ (log)", "refl_frac": r"refl_frac (log)",
           "norm": "norm (log)"}


def plot(result: dict, path: Path) -> Path:
    from simxray.plots import _pyplot, _save

    plt = _pyplot()
    P = len(SOURCE_PARAMS)
    rows = [("bias_prior_width", "bias / prior width"),
            ("bias_posterior_sd_median", "median bias / post. sd"),
            ("coverage90", "90 % coverage")]
    fig, axes = plt.subplots(len(rows), P, figsize=(1.85 * P + 0.5, 2.0 * len(rows) + 1.0),
                             sharex=True, squeeze=False)
    for ts in TESTSETS:
        for treat in TREATMENTS:
            bins = result["metrics"].get(ts, {}).get(treat)
            if not bins or (treat == "events" and ts == "davis"):   # that one: JSON only
                continue
            ls, mk, _ = STYLES[ts]
            ok = [b for b in bins if b["n"] >= 3]
            dodge = 1.0 + 0.05 * (TREATMENTS.index(treat) - 1) + 0.025 * TESTSETS.index(ts)
            x = np.array([b["median_pileup_fraction"] for b in ok]) * 100 * dodge
            for r, (key, _lab) in enumerate(rows):
                for j, p in enumerate(SOURCE_PARAMS):
                    y = np.array([b["parameters"][p][key] for b in ok])
                    ek = {"bias_prior_width": "bias_prior_width_err",
                          "bias_posterior_sd_median": "bias_posterior_sd_median_err",
                          "coverage90": "coverage90_err"}[key]
                    e = np.array([b["parameters"][p][ek] or 0.0 for b in ok])
                    axes[r, j].errorbar(x, y, yerr=e, color=COLORS[treat], ls=ls, marker=mk,
                                        ms=4.5, lw=1.5, capsize=0,
                                        mfc="white" if ts == "events" else COLORS[treat])
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, ScalarFormatter

    for j, p in enumerate(SOURCE_PARAMS):
        axes[0, j].set_title(PLABELS[p], fontsize=12)
        for r, (key, lab) in enumerate(rows):
            ax = axes[r, j]
            ax.axhline(0.9 if key == "coverage90" else 0.0, color="0.5", lw=0.9, zorder=0)
            if key == "coverage90":
                ax.set_ylim(-0.03, 1.03)
            if key == "bias_posterior_sd_median":   # linear within ±1 sd, log beyond
                ax.set_yscale("symlog", linthresh=1.0, linscale=0.6)
                lim = max(2.0, *(abs(v) * 1.5 for v in ax.get_ylim()))
                ax.set_ylim(-lim, lim)
            ax.set_xscale("log")
            ax.set_xlim(1, 100)
            ax.xaxis.set_major_locator(FixedLocator([2, 10, 50]))
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.tick_params(labelsize=10)
            if j == 0:
                ax.set_ylabel(lab, fontsize=11)
            if r == len(rows) - 1:
                ax.set_xlabel("pileup [%]", fontsize=11)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=COLORS[t], lw=2, label=LABELS[t]) for t in TREATMENTS]
    handles += [Line2D([], [], color="0.3", ls=STYLES[s][0], marker=STYLES[s][1],
                       mfc="white" if s == "events" else "0.3", label=STYLES[s][2])
                for s in TESTSETS if result["metrics"].get(s)]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=11,
               frameon=False, handlelength=2.6)
    fig.suptitle(f"tbabs*relxill, {result['setup']['campaign']}: {result['setup']['n_test']} "
                 f"Davis-piled and {result['setup']['n_events_done']} event-level test "
                 "spectra, amortised posteriors (event-level: fine-tuned on "
                 f"{result['setup'].get('n_train_events_done', 0)} event-level spectra)",
                 fontsize=12)
    fig.subplots_adjust(left=0.07, right=0.99, top=0.89, bottom=0.2, wspace=0.42, hspace=0.12)
    return _save(fig, path, dpi=150)


# -- main ------------------------------------------------------------------------------------

def event_level(sim_d, tr_d: dict, test: dict, work: Path, sizes: dict, seed: int,
                davis=None) -> tuple[dict, dict, object]:
    """The event-level stages: test set (the first ``n_events`` Davis test draws), training
    set (the first ``n_train_events`` Davis training draws) and, given the Davis
    posterior, the network fine-tuned on the training set.  (test, train, posterior)."""
    n_ev = min(sizes["n_events"], sizes["n_test"])
    ev = simulate_events(sim_d, test["theta"][:n_ev], seed + 4, work / "test_events.h5",
                         sizes["max_events"])
    n_tr = min(sizes["n_train_events"], len(tr_d["theta"]))
    tr_e = simulate_events(sim_d, tr_d["theta"][:n_tr], seed + 5, work / "train_events.h5",
                           np.inf, log_every=50)
    post = None
    if davis is not None:
        k = tr_e["index"].astype(int)
        post = train(sim_d, {"theta": tr_d["theta"][k], "counts": tr_e["counts"]},
                     work / "posterior_events", sizes, seed + 5, init=davis)
    return ev, tr_e, post


def run(config: Path, work: Path, sizes: dict, seed: int, quick: bool,
        events_only: bool = False, event_level_only: bool = False) -> dict:
    import torch

    from simxray.provenance import provenance, sha256

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    work.mkdir(parents=True, exist_ok=True)
    cfg, sim_d, sim_n = setup(config)
    log(f"campaign {config.name}: {sim_d}")
    t_all = time.perf_counter()
    timings = {}
    # training sets: independent seeds for the two treatments
    t0 = time.perf_counter()
    tr_n = simulate(sim_n, sizes["n_train"], seed + 1, work / "train_ignored.h5")
    tr_d = simulate(sim_d, sizes["n_train"], seed + 2, work / "train_davis.h5")
    test = simulate(sim_d, sizes["n_test"], seed + 3, work / "test_davis.h5")
    timings["simulate_s"] = time.perf_counter() - t0
    if events_only:     # the event-level test set alone (may run beside the training)
        n_ev = min(sizes["n_events"], sizes["n_test"])
        simulate_events(sim_d, test["theta"][:n_ev], seed + 4, work / "test_events.h5",
                        sizes["max_events"])
        return {}
    posts = {}
    t0 = time.perf_counter()
    if not event_level_only:
        posts["ignored"] = train(sim_n, tr_n, work / "posterior_ignored", sizes, seed)
    posts["davis"] = train(sim_d, tr_d, work / "posterior_davis", sizes, seed)
    timings["train_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ev, tr_e, posts["events"] = event_level(sim_d, tr_d, test, work, sizes, seed,
                                            davis=posts["davis"])
    timings["eventsim_and_fine_tune_s"] = time.perf_counter() - t0
    if event_level_only:
        return {}
    names = list(sim_d.prior.names)
    truth, width = transformed_truth(test["theta"], names, sim_d.prior)
    sets = {"davis": (test["counts"], truth, test["pileup_fraction"])}
    if len(ev["index"]):
        k = ev["index"].astype(int)
        sets["events"] = (ev["counts"], truth[k], ev["pileup_fraction"])
    metrics: dict = {}
    per_spectrum: dict = {}
    stats_d: dict = {}
    t0 = time.perf_counter()
    for ts, (counts, tru, pf) in sets.items():
        metrics[ts], per_spectrum[ts] = {}, {}
        for treat in TREATMENTS:
            w = sha256(work / f"posterior_{treat}" / "weights.safetensors")[:16]
            cache = work / f"stats_{ts}_{treat}_{w}_{sizes['n_post']}_{len(counts)}.npz"
            if cache.exists():
                with np.load(cache, allow_pickle=False) as z:
                    st = {k: z[k] for k in z.files}
            else:
                st = posterior_stats(posts[treat], counts, sizes["n_post"], seed + 10,
                                     sim_d.prior)
                from simxray.provenance import atomic_path

                tmp = atomic_path(cache).with_suffix(".npz")
                np.savez(tmp, **st)
                os.replace(tmp, cache)
            metrics[ts][treat] = binned_metrics(st, tru, width, pf)
            per_spectrum[ts][treat] = {k: np.round(v, 5).tolist() for k, v in st.items()}
            if ts == "davis":
                stats_d[treat] = st
    timings["evaluate_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    exact = []
    if sizes["n_exact"]:
        # spectra with clear pileup (>= 15 %) and enough counts, the cases that matter
        order = [i for i in range(len(test["theta"])) if test["pileup_fraction"][i] >= 0.15]
        pick = order[:sizes["n_exact"]]
        cache = work / f"exact_{sizes['n_exact']}.json"
        if cache.exists():
            exact = json.loads(cache.read_text())
        else:
            exact = exact_check(cfg, sim_d, sim_n, test["counts"][pick], seed + 20)
            from simxray.io.modeldir import write_json

            write_json(cache, {"rows": exact})
            exact = {"rows": exact}
        exact = exact["rows"]
        for row, i in zip(exact, pick, strict=True):
            row["index"] = int(i)
            row["pileup_fraction"] = float(test["pileup_fraction"][i])
            row["truth"] = dict(zip(SOURCE_PARAMS, truth[i].round(5).tolist(), strict=True))
            for treat, tr in row["treatments"].items():
                for j, p in enumerate(SOURCE_PARAMS):
                    d = tr["parameters"][p]
                    m_ex, sd_ex = d["exact_mean"], d["exact_sd"]
                    m_nn = float(stats_d[treat]["mean"][i, j])
                    sd_nn = float(stats_d[treat]["sd"][i, j])
                    d.update({"npe_mean": m_nn, "npe_sd": sd_nn,
                              "npe_offset_exact_sd": (m_nn - m_ex) / sd_ex,
                              "sd_ratio": sd_nn / sd_ex,
                              # how far each posterior's mean sits from the truth, in its sd
                              "exact_truth_offset_sd": (m_ex - truth[i, j]) / sd_ex,
                              "npe_truth_offset_sd": (m_nn - truth[i, j]) / sd_nn})
                    for k in ("offset_exact_sd",):
                        d.pop(k, None)
    timings["exact_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_all
    files = {p.name: sha256(p) for p in sorted(work.glob("*.h5"))}
    for t in TREATMENTS:
        files[f"posterior_{t}/weights.safetensors"] = sha256(work / f"posterior_{t}" / "weights.safetensors")
    trained = {t: json.loads((work / f"posterior_{t}" / "config.json").read_text())
               .get("training", {}) for t in TREATMENTS}
    result = {
        "provenance": provenance(command=" ".join(sys.argv), seed=seed, quick=quick,
                                 config=str(config.relative_to(REPO) if config.is_relative_to(REPO)
                                            else config),
                                 config_sha256=sha256(config.resolve()), inputs=files),
        "what": __doc__.split("\n\n")[0],
        "setup": {"campaign": cfg.name, "model": sim_d.expression, "channels": sim_d.channels,
                  "prior": sim_d.prior.to_dict(), "sizes": sizes, "n_test": int(len(test["theta"])),
                  "n_events_done": int(len(ev["index"])),
                  "event_photons": float(np.sum(ev["n_events"])) if len(ev["index"]) else 0.0,
                  "n_train_events_done": int(len(tr_e["index"])),
                  "eventsim": json.loads(json.dumps(eventsim_config(sim_d).to_dict())),
                  "events_engine": {e: int(np.sum(ev["engine"] == c))
                                    for c, e in enumerate(ENGINE_CODES)},
                  "events_treatment": "the Davis network fine-tuned on the event-level "
                                      "training set (alpha, f kept as nuisance parameters; "
                                      "they do not enter the event-level spectra)",
                  "pileup_fraction_bins": list(PF_EDGES),
                  "coordinates": "log10 for log-uniform parameters (nH, Afe, refl_frac, norm)",
                  "training": {t: {k: trained[t].get(k) for k in
                                   ("n_train", "n_validation", "epochs", "best_epoch",
                                    "best_val_loss", "stop_reason", "seconds")}
                               for t in TREATMENTS},
                  "fine_tune": {**FINE_TUNE, "max_epochs": sizes["ft_epochs"]}},
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "timings_note": "timings_s: this invocation (cached stages cost ~0); stage_cost_s: "
                        "what each cached stage cost when it ran (wall seconds, nice 19, "
                        "1 thread, shared machine)",
        "stage_cost_s": {
            **{f"train_{t}": trained[t].get("seconds") for t in TREATMENTS},
            # the fine-tuning's validation calibration on its own (event-level) spectra
            "events_validation_max_coverage_error": trained["events"].get(
                "validation_calibration", {}).get("max_coverage_error"),
            "eventsim": round(float(np.sum(ev["seconds"])), 1) if len(ev["index"]) else 0.0,
            "eventsim_photons_per_s": round(float(np.sum(ev["n_events"]) / np.sum(ev["seconds"])))
            if len(ev["index"]) else None,
            "eventsim_train": round(float(np.sum(tr_e["seconds"])), 1),
            "eventsim_train_photons_per_s": round(float(np.sum(tr_e["n_events"])
                                                        / max(np.sum(tr_e["seconds"]), 1e-9))),
            "eventsim_photons_per_s_by_engine": {
                e: round(float(np.sum(d["n_events"][d["engine"] == c])
                               / np.sum(d["seconds"][d["engine"] == c])))
                for c, e in enumerate(ENGINE_CODES)
                for d in [{k: np.concatenate([ev[k], tr_e[k]]) for k in
                           ("n_events", "seconds", "engine")}]
                if np.any(d["engine"] == c)},
            "exact_fits": {t: [round(r["treatments"][t]["seconds"], 1) for r in exact]
                           for t in exact[0]["treatments"]} if exact else {}},
        "metrics": metrics,
        "exact_check": exact,
        "per_spectrum": {"truth": truth.round(5).tolist(),
                         "pileup_fraction": np.round(test["pileup_fraction"], 5).tolist(),
                         "events_index": ev["index"].astype(int).tolist(),
                         "events_pileup_fraction": np.round(ev["pileup_fraction"], 5).tolist()
                         if len(ev["index"]) else [],
                         "posterior": per_spectrum},
    }
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=None,
                    help="campaign TOML (default: benchmarks/relxill_pileup_bias_campaign.toml, "
                         "the bright relxill campaign's 1/8-subarray 100 ks scope)")
    ap.add_argument("--work", type=Path, default=REPO / "build" / "bias" / "run",
                    help="cache folder for simulations and networks (resumable)")
    ap.add_argument("--json", type=Path, default=RESULTS / "relxill_pileup_bias.json")
    ap.add_argument("--png", type=Path, default=None, help="figure (default: beside --json)")
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    for k, v in FULL.items():
        ap.add_argument(f"--{k.replace('_', '-')}", type=type(v), default=None,
                        help=f"default {v} ({QUICK[k]} with --quick)")
    ap.add_argument("--events-only", action="store_true",
                    help="only simulate the event-level test set into --work (a second "
                         "process can do this while the first trains)")
    ap.add_argument("--event-level-only", action="store_true",
                    help="only the event-level treatment: its training and test sets and "
                         "the fine-tuned network (needs the Davis network; no JSON)")
    a = ap.parse_args(argv)
    sizes = dict(QUICK if a.quick else FULL)
    for k in FULL:
        if getattr(a, k) is not None:
            sizes[k] = getattr(a, k)
    config = a.config or (BRIGHT if BRIGHT.exists() else DEFAULT_CONFIG)
    if not config.exists():
        print(f"{config}: file not found; expected a campaign TOML", file=sys.stderr)
        return 2
    result = run(config.resolve() if not config.is_symlink() else config.absolute(), a.work,
                 sizes, a.seed, a.quick, a.events_only, a.event_level_only)
    if a.events_only or a.event_level_only:
        return 0
    from simxray.io.modeldir import write_json

    a.json.parent.mkdir(parents=True, exist_ok=True)
    png = a.png or a.json.with_suffix(".png")
    result["figure"] = png.name
    write_json(a.json, result)
    plot(result, png)
    log(f"wrote {a.json} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
