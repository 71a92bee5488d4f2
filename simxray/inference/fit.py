"""Fit a spectrum with a trained amortised posterior: samples, summary, checks, plots.

The fast path imports torch and zuko (for the flow) but not sbi: the network is rebuilt
from ``config.json`` + ``weights.safetensors`` (:mod:`simxray.inference.saving`).

Checks, in order: the spectrum is non-empty with counts in the posterior's channels; the
posterior was trained for this response (ARF/RMF sha256), exposure, frame time and channel
count (``force`` turns these mismatches into warnings); after sampling, the spectrum's
embedding distance from the training set and a posterior-predictive C-stat test flag
out-of-distribution or misspecified data.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ResponseMismatchError, SimxrayError
from ..provenance import atomic_path, provenance, sha256

DEFAULT_POSTERIOR = Path(__file__).resolve().parent.parent / "data" / "posterior_default"
PPC_ALERT = 0.01          # posterior-predictive p-value below which a fit is flagged
REL_TOL = 1e-3            # relative tolerance on exposure and frame time


def default_posterior_dir() -> Path:
    """The shipped posterior for the default ACIS configuration (NGC 4258 setup)."""
    return DEFAULT_POSTERIOR


@dataclass
class FitResult:
    """Posterior samples (N, P) with names, the summary dict and the files written."""

    samples: np.ndarray
    names: list[str]
    summary: dict
    files: dict[str, str] = field(default_factory=dict)


# -- compatibility -----------------------------------------------------------------------

def _file_sha(obj) -> str | None:
    p = getattr(obj, "path", None)
    if p is None or not Path(p).is_file():
        return None
    return sha256(p)


def check_compatibility(cfg: dict, spec) -> list[str]:
    """Reasons why ``spec`` does not belong to the posterior ``cfg`` (empty: compatible)."""
    problems: list[str] = []
    resp = cfg.get("response") or {}
    n_total = cfg.get("spectrum_channels")
    if n_total and spec.n_channels != int(n_total):
        problems.append(f"the spectrum has {spec.n_channels} channels; the posterior was trained "
                        f"on spectra with {int(n_total)}")
    for key, obj in (("rmf", spec.rmf), ("arf", spec.arf)):
        want = (resp.get(key) or {}).get("sha256") if isinstance(resp.get(key), dict) else None
        if want is None:
            continue
        if obj is None:
            continue                     # the posterior's own response will be used
        have = _file_sha(obj)
        if have is not None and have != want:
            name = Path(obj.path).name
            problems.append(f"{key.upper()} {name} differs from the {key.upper()} the posterior "
                            f"was trained with ({resp[key].get('name', '?')}, sha256 "
                            f"{want[:12]}...)")
    exp = cfg.get("exposure")
    if exp and spec.exposure and abs(spec.exposure / float(exp) - 1.0) > REL_TOL:
        problems.append(f"exposure {spec.exposure:.6g} s differs from the posterior's "
                        f"{float(exp):.6g} s")
    ft = cfg.get("frame_time")
    if ft and spec.frame_time and abs(spec.frame_time / float(ft) - 1.0) > REL_TOL:
        problems.append(f"frame time {spec.frame_time:.6g} s differs from the posterior's "
                        f"{float(ft):.6g} s")
    return problems


def _trained_file(entry: dict | None) -> str | None:
    """A response file the posterior was trained with: its recorded path, or the file of the
    same name in simxray/data, provided the sha256 matches."""
    if not isinstance(entry, dict) or not entry.get("sha256"):
        return None
    from ..datasets import DATA_DIR

    for cand in (entry.get("path"), DATA_DIR / str(entry.get("name", ""))):
        if cand and Path(cand).is_file() and sha256(cand) == entry["sha256"]:
            return str(cand)
    return None


def select_channels(cfg: dict, spec) -> np.ndarray:
    """The spectrum's counts in the posterior's channel range [lo, hi] (C,)."""
    lo, hi = (int(v) for v in cfg["channels"])
    ch = np.asarray(spec.channel).astype(int)
    idx = np.flatnonzero((ch >= lo) & (ch <= hi))
    if idx.size != int(cfg["n_channels"]):
        raise ResponseMismatchError(
            f"has {idx.size} channels in {lo}..{hi}; the posterior expects {cfg['n_channels']} "
            "(different channel count or binning)", path=str(spec.path), field="CHANNEL")
    x = np.asarray(spec.counts, dtype=float)[idx]
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise SimxrayError("counts must be finite and non-negative", path=str(spec.path),
                           field="COUNTS")
    if x.sum() <= 0:
        raise SimxrayError(f"no counts in channels {lo}..{hi}; expected a non-empty spectrum",
                           path=str(spec.path), field="COUNTS")
    return x


# -- summary -----------------------------------------------------------------------------

def summarise(samples: np.ndarray) -> dict:
    """Median, mean, sd, 68 % and 90 % central intervals of samples (N,)."""
    s = np.asarray(samples, dtype=float)
    q = np.percentile(s, [5, 16, 50, 84, 95])
    return {"median": float(q[2]), "mean": float(s.mean()), "sd": float(s.std()),
            "ci68": [float(q[1]), float(q[3])], "ci90": [float(q[0]), float(q[4])]}


def format_summary(summary: dict) -> str:
    """A fixed-width table of the summary for the terminal."""
    rows = [f"{'parameter':<18} {'median':>11} {'68% interval':>25} {'90% interval':>25}"]

    def fmt(v: float) -> str:
        return f"{v:.4g}"

    for name, s in summary["parameters"].items():
        rows.append(f"{name:<18} {fmt(s['median']):>11} "
                    f"{'[' + fmt(s['ci68'][0]) + ', ' + fmt(s['ci68'][1]) + ']':>25} "
                    f"{'[' + fmt(s['ci90'][0]) + ', ' + fmt(s['ci90'][1]) + ']':>25}")
    pf = summary.get("pileup_fraction")
    if pf:
        rows.append(f"{'pileup fraction':<18} {fmt(pf['median']):>11} "
                    f"{'[' + fmt(pf['ci68'][0]) + ', ' + fmt(pf['ci68'][1]) + ']':>25} "
                    f"{'[' + fmt(pf['ci90'][0]) + ', ' + fmt(pf['ci90'][1]) + ']':>25}")
    ch = summary.get("checks", {})
    ppc = ch.get("ppc")
    if ppc:
        rows.append(f"posterior-predictive C-stat: observed {ppc['cstat_obs_median']:.1f}, "
                    f"replicas 90% [{ppc['cstat_rep_90'][0]:.1f}, {ppc['cstat_rep_90'][1]:.1f}], "
                    f"p = {ppc['p_value']:.3f}")
    emb = ch.get("embedding")
    if emb:
        rows.append(f"embedding distance d² = {emb['d2']:.1f} (training spectra: median "
                    f"{emb['reference_median']:.1f}, 99.9% {emb['reference_q999']:.1f})")
    for w in summary.get("warnings", []):
        rows.append(f"WARNING: {w}")
    if not summary.get("warnings"):
        rows.append("checks passed: the spectrum looks like the training simulations")
    return "\n".join(rows)


# -- posterior predictive ----------------------------------------------------------------

def build_simulator(cfg: dict, spec):
    """A :class:`~simxray.simulator.simulator.Simulator` for this spectrum's response and the
    posterior's model and prior (fixed frame time replaced by the spectrum's)."""
    from ..instrument.response import Response
    from ..models import Model
    from ..simulator.prior import Dist, Prior
    from ..simulator.simulator import Simulator

    sim_cfg = cfg.get("simulation_config") or {}
    pil = sim_cfg.get("pileup", {}) if isinstance(sim_cfg.get("pileup"), dict) else {}
    prior = Prior.from_dict(cfg["prior"])
    if spec.frame_time:
        dists = [Dist(d.name, "fixed", value=float(spec.frame_time))
                 if d.name == "pileup.ftime" and not d.varying else d for d in prior.dists]
        prior = Prior(dists)
    if spec.rmf is None:
        raise SimxrayError("no RMF; expected RESPFILE in the header or --rmf", path=str(spec.path),
                           field="RESPFILE")
    response = Response.from_spectrum(spec, spec.exposure)
    lo, hi = (int(v) for v in cfg["channels"])
    sl = slice(lo - response.offset, hi - response.offset + 1)
    bmu = None
    if (sim_cfg.get("instrument") or {}).get("add_background") and spec.background is not None:
        bmu = (np.asarray(spec.background.counts, float) * spec.background_scale)[sl]
    return Simulator(Model(cfg["model"]), prior, response, channel_slice=sl,
                     pileup=pil.get("model", "none") != "none", background_mu=bmu,
                     pileup_grid=pil.get("grid"))


def posterior_predictive(sim, theta: np.ndarray) -> dict:
    """Expected counts with and without pileup, and pileup fractions, for draws theta (K, P)."""
    mu, frac = sim.expected(theta, return_fraction=True)
    out = {"mu": mu, "pileup_fraction": frac, "mu_unpiled": None}
    if sim.pileup:
        parts = []
        for a in range(0, len(theta), sim.batch_size):
            mp, _ = sim.split(theta[a:a + sim.batch_size])
            parts.append(sim.forward(mp, None)[0])
        out["mu_unpiled"] = np.concatenate(parts)
    if sim.background_mu is not None:
        out["background"] = sim.background_mu
    return out


# -- outputs -----------------------------------------------------------------------------

def predictive_check(sim, samples: np.ndarray, x: np.ndarray, rng: np.random.Generator,
                     ppc_draws: int, summary: dict) -> dict:
    """Posterior-predictive C-stat check on ``ppc_draws`` random posterior draws.

    Adds ``checks.ppc``, the implied ``pileup_fraction`` (piled simulators) and a warning
    when p < :data:`PPC_ALERT` to ``summary``; returns the predictive draws
    (:func:`posterior_predictive` plus ``replicates``, Poisson counts) for the plots.
    """
    from .diagnostics import ppc_cstat

    k = min(int(ppc_draws), len(samples))
    draws = samples[rng.choice(len(samples), k, replace=False)]
    pred = posterior_predictive(sim, draws)
    mu_tot = pred["mu"] + (pred.get("background") if pred.get("background") is not None else 0.0)
    pred["replicates"] = rng.poisson(mu_tot)
    ppc = ppc_cstat(x, mu_tot, rng, replicates=pred["replicates"])
    summary["checks"]["ppc"] = ppc
    if sim.pileup:
        summary["pileup_fraction"] = summarise(pred["pileup_fraction"])
        summary["pileup_fraction"]["n_draws"] = k
    if ppc["p_value"] < PPC_ALERT:
        summary["warnings"].append(
            f"misspecified or out of distribution: posterior-predictive C-stat p = "
            f"{ppc['p_value']:.3g} < {PPC_ALERT} (observed {ppc['cstat_obs_median']:.1f}, "
            f"replicas {ppc['cstat_rep_90'][0]:.1f}-{ppc['cstat_rep_90'][1]:.1f})")
    return pred


def write_samples_h5(path: Path, samples: np.ndarray, names: list[str], attrs: dict,
                     extra: dict | None = None) -> None:
    import h5py

    tmp = atomic_path(path)
    with h5py.File(tmp, "w") as f:
        d = f.create_dataset("samples", data=samples, compression="gzip", compression_opts=1)
        d.attrs["names"] = names
        for k, v in (extra or {}).items():
            f.create_dataset(k, data=v)
        for k, v in attrs.items():
            f.attrs[k] = v if isinstance(v, str | int | float) else json.dumps(v)
    os.replace(tmp, path)


def write_inference_data(path: Path, samples: np.ndarray, names: list[str], counts: np.ndarray,
                         channel: np.ndarray, attrs: dict, predictive: dict | None = None) -> None:
    """ArviZ InferenceData netCDF (groups ``posterior``, ``observed_data`` and, with
    ``predictive``, ``posterior_predictive``) written with netCDF4 directly: fitting
    imports neither ArviZ nor xarray.  ``arviz.from_netcdf(path)`` reads it."""
    import netCDF4

    tmp = atomic_path(path)
    meta = {"created_at": attrs.get("created", ""), "inference_library": "simxray",
            "inference_library_version": attrs.get("simxray_version", ""),
            **{k: (v if isinstance(v, str | int | float) else json.dumps(v))
               for k, v in attrs.items()}}

    def group(nc, name: str, dims: dict[str, np.ndarray]):
        g = nc.createGroup(name)
        for dim, values in dims.items():
            g.createDimension(dim, len(values))
            v = g.createVariable(dim, values.dtype, (dim,))
            v[:] = values
        g.setncatts(meta)
        return g

    def var(g, name: str, dims: tuple[str, ...], data: np.ndarray) -> None:
        v = g.createVariable(name, data.dtype, dims)
        v[:] = data

    n = samples.shape[0]
    chain = np.zeros(1, dtype=np.int64)
    try:
        with netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:
            g = group(nc, "posterior", {"chain": chain, "draw": np.arange(n, dtype=np.int64)})
            for i, nm in enumerate(names):
                var(g, nm, ("chain", "draw"), samples[None, :, i].astype(np.float64))
            g = group(nc, "observed_data", {"channel": np.asarray(channel, dtype=np.int64)})
            var(g, "counts", ("channel",), np.asarray(counts, dtype=np.float64))
            if predictive is not None:
                k = predictive["mu"].shape[0]
                g = group(nc, "posterior_predictive", {"chain": chain,
                          "draw": np.arange(k, dtype=np.int64),
                          "channel": np.asarray(channel, dtype=np.int64)})
                if predictive.get("replicates") is not None:
                    var(g, "counts", ("chain", "draw", "channel"),
                        np.asarray(predictive["replicates"], dtype=np.float64)[None])
                var(g, "expected_counts", ("chain", "draw", "channel"),
                    np.asarray(predictive["mu"], dtype=np.float64)[None])
                var(g, "pileup_fraction", ("chain", "draw"),
                    np.asarray(predictive["pileup_fraction"], dtype=np.float64)[None])
        os.replace(tmp, path)
    finally:
        if Path(tmp).exists():
            Path(tmp).unlink()


# -- the fit -----------------------------------------------------------------------------

def fit_spectrum(spectrum: str | os.PathLike, posterior: str | os.PathLike | None = None, *,
                 out: str | os.PathLike | None = None, n_samples: int = 10000, seed: int = 0,
                 force: bool = False, ppc_draws: int = 100, plots: bool = True,
                 arf: str | None = None, rmf: str | None = None, background: str | None = None,
                 frame_time: float | None = None, device: str | None = None, threads: int = 1,
                 log=print) -> FitResult:
    """Sample the posterior for one spectrum; write samples, summary and plots to ``out``.

    ``threads``: torch CPU threads while sampling (1 is fastest for these small tensors and
    robust on busy machines; 0 keeps torch's setting).
    """
    import warnings

    t0 = time.perf_counter()
    from ..io.ogip import read_pha
    from . import saving

    post_dir = Path(posterior) if posterior else default_posterior_dir()
    if posterior is None and not (post_dir / saving.CONFIG).exists():
        raise SimxrayError("the shipped default posterior is missing; train it with "
                           "training/train_default_posterior.py or pass --posterior DIR",
                           path=str(post_dir))
    cfg = saving.load_config(post_dir)
    if n_samples < 1:
        raise SimxrayError(f"expected a positive number of samples, got {n_samples}", field="--samples")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spec = read_pha(spectrum, arf=arf, rmf=rmf, background=background, frame_time=frame_time)
    warn_list = [str(w.message) for w in caught]
    if spec.n_channels == 0:
        raise SimxrayError("no channels; expected a non-empty spectrum", path=str(spectrum),
                           field="COUNTS")
    problems = check_compatibility(cfg, spec)
    if problems and not force:
        raise ResponseMismatchError(problems[0] + " (use --force to fit anyway)",
                                    path=str(spectrum))
    warn_list += [f"{p} (fitted anyway: --force)" for p in problems]
    x = select_channels(cfg, spec)
    lo_hi = [int(v) for v in cfg["channels"]]
    resp = cfg.get("response") or {}
    if spec.rmf is None or (spec.arf is None and resp.get("arf")):
        # no response linked: fall back to the files the posterior was trained with
        f_arf = None if spec.arf is not None else _trained_file(resp.get("arf"))
        f_rmf = None if spec.rmf is not None else _trained_file(resp.get("rmf"))
        if f_arf or f_rmf:
            spec = read_pha(spectrum, arf=arf or f_arf or (spec.arf.path if spec.arf else None),
                            rmf=rmf or f_rmf or (spec.rmf.path if spec.rmf else None),
                            background=background, frame_time=frame_time)
            warn_list.append("the spectrum names no " + " and no ".join(
                k for k, v in (("ARF", f_arf), ("RMF", f_rmf)) if v) + "; used the posterior's")
    t_read = time.perf_counter()

    import torch

    torch.manual_seed(seed)
    n_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        loaded = saving.load_posterior(post_dir, device=device)
        model = loaded.model
        dev = next(model.parameters()).device
        xt = torch.as_tensor(x, dtype=torch.float32, device=dev)
        with torch.no_grad():
            samples = model.sample(int(n_samples), xt).double().cpu().numpy()
            emb = model.embedding(xt[None]).double().cpu().numpy()[0]
    finally:
        torch.set_num_threads(n_threads)
    names = loaded.names
    t_sample = time.perf_counter()

    corner_job = None
    pileup_on = (cfg.get("pileup") or {}).get("model", "none") != "none"
    title = f"{Path(spectrum).name}: {cfg['model']}" + (" + pileup" if pileup_on else "")
    if out is not None:
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise SimxrayError("exists and is not a directory", path=str(out), field="--out")
        out.mkdir(parents=True, exist_ok=True)
        if plots:   # the corner plot needs only the samples: draw it alongside the rest
            corner_job = _in_background(_corner_job, out / "corner.png", samples, names, title,
                                        cfg.get("log"))

    summary: dict = {"spectrum": str(Path(spectrum).resolve()), "posterior": str(post_dir.resolve()),
                     "n_samples": int(n_samples), "total_counts": float(x.sum()),
                     "channels": lo_hi, "parameters": {}, "checks": {}, "warnings": []}
    for i, n in enumerate(names):
        summary["parameters"][n] = summarise(samples[:, i])
    ood = {k: v.double().numpy() for k, v in loaded.ood.items()}
    if "emb_mean" in ood:
        from .diagnostics import embedding_distance

        e = embedding_distance(emb, ood)
        summary["checks"]["embedding"] = e
        if e["outlier"]:
            summary["warnings"].append(
                f"out of distribution: the spectrum's embedding distance d² = {e['d2']:.1f} exceeds "
                f"that of 99.9% of training spectra ({e['reference_q999']:.1f})")
    if "total_range" in ood:
        tmin, tmax = (float(v) for v in ood["total_range"])
        summary["checks"]["total_counts_range"] = [tmin, tmax]
        if not tmin <= x.sum() <= tmax:
            summary["warnings"].append(f"out of distribution: {x.sum():.0f} counts lies outside the "
                                       f"training range [{tmin:.0f}, {tmax:.0f}]")

    # posterior predictive: C-stat check, pileup fraction, plot
    pred = None
    rng = np.random.default_rng(seed)
    try:
        sim = build_simulator(cfg, spec)
    except (SimxrayError, ImportError, ValueError, KeyError) as exc:
        sim = None
        summary["warnings"].append(f"no posterior-predictive check: cannot rebuild the simulator "
                                   f"({str(exc).splitlines()[0]})")
    if sim is not None and ppc_draws > 0:
        pred = predictive_check(sim, samples, x, rng, ppc_draws, summary)
    summary["warnings"] = warn_list + summary["warnings"]
    summary["flagged"] = bool(summary["warnings"])
    t_ppc = time.perf_counter()
    summary["timing_s"] = {"read": round(t_read - t0, 3), "sample": round(t_sample - t_read, 3),
                           "predictive": round(t_ppc - t_sample, 3)}
    summary["provenance"] = provenance(
        seed=seed, inputs={"spectrum": summary["spectrum"], "spectrum_sha256": sha256(spectrum),
                           "posterior": summary["posterior"],
                           "posterior_weights_sha256": cfg["weights_sha256"]},
        forced=bool(force and problems))

    result = FitResult(samples=samples, names=names, summary=summary)
    if out is not None:
        result.files = write_outputs(out, result, cfg, spec, x, pred, sim, plots, title=title,
                                     corner_job=corner_job)
        summary["timing_s"]["outputs"] = round(time.perf_counter() - t_ppc, 3)
        saving.write_json(Path(out) / "summary.json", summary)
    summary["timing_s"]["total"] = round(time.perf_counter() - t0, 3)
    return result


def _corner_job(path: Path, samples: np.ndarray, names: list[str], title: str, log) -> None:
    from ..plots import corner_plot

    corner_plot(samples, names, path, title=title, log=log)


def _in_background(fn, *args) -> int | None:
    """Run fn(*args) in a forked child (a second core draws while this one works).

    Returns the child's pid, or None where fork is unavailable or disabled
    (``SIMXRAY_NO_FORK=1``); the caller then runs fn itself.
    """
    if not hasattr(os, "fork") or os.environ.get("SIMXRAY_NO_FORK") or (os.cpu_count() or 1) < 2:
        return None
    try:
        pid = os.fork()
    except OSError:
        return None
    if pid == 0:                       # child: never returns into the caller's code
        code = 1
        try:
            fn(*args)
            code = 0
        except BaseException:          # the parent redoes the work and reports errors
            pass
        finally:
            os._exit(code)
    return pid


def _finished(pid: int | None) -> bool:
    """Wait for a background child; True if it succeeded."""
    if pid is None:
        return False
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return False
    return os.waitstatus_to_exitcode(status) == 0


def write_outputs(out: Path, result: FitResult, cfg: dict, spec, x: np.ndarray, pred: dict | None,
                  sim, plots: bool, title: str = "", corner_job: int | None = None) -> dict[str, str]:
    """samples.h5, posterior.nc, summary.json, corner.png, spectrum.png."""
    from . import saving

    out.mkdir(parents=True, exist_ok=True)
    s = result.summary
    attrs = {"simxray_version": s["provenance"]["simxray_version"],
             "git_commit": s["provenance"]["git_commit"], "created": s["provenance"]["created"],
             "spectrum": s["spectrum"], "posterior": s["posterior"],
             "posterior_weights_sha256": cfg["weights_sha256"], "seed": s["provenance"]["seed"],
             "model": cfg["model"], "flagged": int(s["flagged"])}
    files = {}
    extra = {}
    if pred is not None:
        extra["pileup_fraction_draws"] = pred["pileup_fraction"]
    write_samples_h5(out / "samples.h5", result.samples, result.names,
                     {**attrs, "provenance": s["provenance"]}, extra)
    files["samples"] = str(out / "samples.h5")
    lo, hi = cfg["channels"]
    channel = np.arange(int(lo), int(hi) + 1)
    write_inference_data(out / "posterior.nc", result.samples, result.names, x, channel, attrs, pred)
    files["inference_data"] = str(out / "posterior.nc")
    if plots:
        from ..plots import spectrum_plot

        if pred is not None and sim is not None:
            pf = s.get("pileup_fraction")
            note = (f"pileup fraction {pf['median']:.1%} "
                    f"[{pf['ci90'][0]:.1%}, {pf['ci90'][1]:.1%}] (90%)") if pf else None
            ppc = s["checks"].get("ppc")
            if ppc:
                note = (note + "; " if note else "") + f"PPC p = {ppc['p_value']:.2f}"
            bkg = pred.get("background")
            model = pred["mu"] + (bkg if bkg is not None else 0.0)
            unpiled = None
            if pred.get("mu_unpiled") is not None:
                unpiled = pred["mu_unpiled"] + (bkg if bkg is not None else 0.0)
            files["spectrum"] = str(spectrum_plot(sim.e_min, sim.e_max, x, spec.exposure,
                                                  out / "spectrum.png", model=model,
                                                  model_unpiled=unpiled, background=bkg,
                                                  title=title, note=note))
        if not _finished(corner_job):
            _corner_job(out / "corner.png", result.samples, result.names, title, cfg.get("log"))
        files["corner"] = str(out / "corner.png")
    files["summary"] = str(out / "summary.json")
    saving.write_json(out / "summary.json", s)
    return files


__all__ = ["fit_spectrum", "FitResult", "check_compatibility", "select_channels", "summarise",
           "format_summary", "default_posterior_dir"]
