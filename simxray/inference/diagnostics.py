"""Posterior diagnostics: calibration (SBC ranks, coverage, TARP), recovery, and checks that a
spectrum is one the posterior can handle (posterior-predictive C-stat, embedding distance).

The numpy helpers here need neither sbi nor torch; :func:`run_sbc_sbi` and
:func:`run_tarp_sbi` wrap sbi's implementations (imported only when called).
"""

from __future__ import annotations

import numpy as np

from .stats import cstat

LEVELS = np.round(np.arange(0.05, 0.951, 0.05), 2)


# -- calibration ---------------------------------------------------------------------------

def ranks_from_samples(samples: np.ndarray, truths: np.ndarray) -> np.ndarray:
    """SBC ranks (B, P): how many of the S posterior draws (S, B, P) lie below each truth."""
    s = np.asarray(samples)
    t = np.asarray(truths)
    return (s < t[None]).sum(0)


def coverage_curve(ranks: np.ndarray, n_samples: int,
                   levels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Empirical coverage (L, P) of central credible intervals at nominal levels (L,).

    The truth lies in the central interval of credibility c when its posterior quantile
    u = (rank + 1/2)/(S + 1) satisfies |u - 1/2| <= c/2.
    """
    levels = LEVELS if levels is None else np.asarray(levels, dtype=float)
    u = (np.asarray(ranks, dtype=float) + 0.5) / (n_samples + 1.0)
    dist = np.abs(u - 0.5)
    cov = (dist[None] <= levels[:, None, None] / 2.0).mean(1)
    return levels, cov


def max_coverage_error(ranks: np.ndarray, n_samples: int, levels: np.ndarray | None = None) -> np.ndarray:
    """Largest |empirical - nominal| coverage over the levels, per parameter (P,)."""
    lv, cov = coverage_curve(ranks, n_samples, levels)
    return np.abs(cov - lv[:, None]).max(0)


def coverage_tolerance(n: int, n_levels: int = len(LEVELS), confidence: float = 0.95) -> float:
    """Half-width that a perfectly calibrated posterior's coverage stays within at every level.

    Binomial noise with n simulations, Bonferroni over the levels, worst case at 50 %.
    """
    from scipy.stats import norm

    z = norm.ppf(1.0 - (1.0 - confidence) / (2.0 * n_levels))
    return float(z * 0.5 / np.sqrt(n))


def r2_score(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Coefficient of determination per column: 1 - SS_res / SS_tot."""
    e, t = np.asarray(estimate, float), np.asarray(truth, float)
    ss_res = ((e - t) ** 2).sum(0)
    ss_tot = ((t - t.mean(0)) ** 2).sum(0)
    return 1.0 - ss_res / np.maximum(ss_tot, 1e-300)


def recovery(samples: np.ndarray, truths: np.ndarray, log: np.ndarray | list[bool]) -> dict:
    """R² of the posterior mean vs the truth, computed in log10 for log-uniform parameters."""
    log = np.asarray(log, dtype=bool)
    s = np.where(log, np.log10(np.maximum(samples, 1e-300)), samples)
    t = np.where(log, np.log10(np.maximum(truths, 1e-300)), truths)
    mean = s.mean(0)
    sd = s.std(0)
    z = (mean - t) / np.maximum(sd, 1e-300)
    return {"r2": r2_score(mean, t), "mean_std": sd.mean(0), "z_mean": z.mean(0), "z_std": z.std(0)}


# -- sbi wrappers --------------------------------------------------------------------------

def sbi_posterior(model, prior):
    """sbi's DirectPosterior around an :class:`~simxray.inference.npe.NPEModel`."""
    from sbi.inference.posteriors import DirectPosterior

    return DirectPosterior(model.as_sbi_estimator(), prior.to_torch())


def run_sbc_sbi(posterior, thetas, xs, num_samples: int, quiet: bool = False) -> dict:
    """sbi's run_sbc + check_sbc: ranks, KS p-values, C2ST of ranks and of data-averaged posterior."""
    import torch
    from sbi.diagnostics import check_sbc, run_sbc

    ranks, dap = run_sbc(torch.as_tensor(thetas, dtype=torch.float32),
                         torch.as_tensor(xs, dtype=torch.float32), posterior,
                         num_posterior_samples=num_samples, show_progress_bar=not quiet)
    checks = check_sbc(ranks, torch.as_tensor(thetas, dtype=torch.float32), dap,
                       num_posterior_samples=num_samples)
    return {"ranks": ranks.numpy(), "dap_samples": dap.numpy(),
            **{k: np.asarray(v, dtype=float).ravel() for k, v in checks.items()}}


def run_tarp_sbi(posterior, thetas, xs, num_samples: int, quiet: bool = False) -> dict:
    """sbi's run_tarp + check_tarp: expected coverage probability vs credibility."""
    import torch
    from sbi.diagnostics import check_tarp, run_tarp

    ecp, alpha = run_tarp(torch.as_tensor(thetas, dtype=torch.float32),
                          torch.as_tensor(xs, dtype=torch.float32), posterior,
                          num_posterior_samples=num_samples, show_progress_bar=not quiet)
    atc, ks_pval = check_tarp(ecp, alpha)
    return {"ecp": ecp.numpy(), "alpha": alpha.numpy(), "atc": float(atc), "ks_pvalue": float(ks_pval)}


def tarp_numpy(samples: np.ndarray, truths: np.ndarray, rng: np.random.Generator,
               bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """TARP expected coverage (Lemos et al. 2023) from samples (S, B, P) and truths (B, P).

    Parameters are z-scored with the truths' spread; references are drawn uniformly over
    the truths' bounding box.  Returns (ecp, alpha) on ``bins + 1`` points.
    """
    s, t = np.asarray(samples, float), np.asarray(truths, float)
    lo, hi = t.min(0), t.max(0)
    scale = np.where(hi > lo, hi - lo, 1.0)
    s, t = (s - lo) / scale, (t - lo) / scale
    S, B, _ = s.shape
    ref = rng.random(t.shape)
    d_s = np.linalg.norm(s - ref[None], axis=-1)
    d_t = np.linalg.norm(t - ref, axis=-1)
    f = (d_s < d_t[None]).mean(0)
    bins = bins or max(B // 10, 2)
    alpha = np.linspace(0.0, 1.0, bins + 1)
    ecp = (f[None, :] < alpha[:, None]).mean(1)
    return ecp, alpha


def tarp(samples, thetas, references, num_bins: int | None = None, z_score: bool = True):
    """TARP expected coverage probability (Lemos et al. 2023, arXiv:2302.03026), in torch.

    samples (S, B, P) posterior draws for B simulations, thetas (B, P) their true values,
    references (B, P) one reference point per simulation.  For each simulation the
    credibility f_i is the fraction of draws closer (Euclidean distance, after scaling every
    parameter to the truths' range when ``z_score``) to the reference than the truth is;
    ECP(alpha) is the empirical CDF of f on ``num_bins`` (default B // 10) equal bins spanning
    the observed range of f, with ECP = 0 prepended.  Returns (ecp, alpha), both
    (num_bins + 1,).  Computed as sbi's ``run_tarp`` does (tested against it), so sbi's
    ``check_tarp`` applies to the result.
    """
    import torch

    s, t, r = (torch.as_tensor(v) for v in (samples, thetas, references))
    if s.ndim != 3 or t.shape != s.shape[1:] or r.shape != t.shape:
        raise ValueError(f"expected samples (S, B, P), thetas and references (B, P); got "
                         f"{tuple(s.shape)}, {tuple(t.shape)}, {tuple(r.shape)}")
    if z_score:
        lo = t.min(dim=0, keepdim=True).values
        width = t.max(dim=0, keepdim=True).values - lo + 1e-10
        s, t, r = (s - lo) / width, (t - lo) / width, (r - lo) / width
    d_draws = ((s - r[None]) ** 2).sum(-1).sqrt()            # (S, B)
    d_truth = ((t - r) ** 2).sum(-1).sqrt()                   # (B,)
    f = (d_draws < d_truth[None]).sum(0) / s.shape[0]
    density, alpha = torch.histogram(f.cpu(), bins=int(num_bins or t.shape[0] // 10), density=True)
    cdf = torch.cumsum(density, 0) / density.sum()
    return torch.cat([cdf.new_zeros(1), cdf]), alpha


# -- single-spectrum checks ----------------------------------------------------------------

def ppc_cstat(counts: np.ndarray, mu: np.ndarray, rng: np.random.Generator,
              replicates: np.ndarray | None = None) -> dict:
    """Posterior-predictive C-stat check.

    For each posterior draw's expected counts mu_k (K, C): C_obs,k = C(x_obs, mu_k) and
    C_rep,k = C(x_rep,k, mu_k) with x_rep,k ~ Poisson(mu_k).  The p-value is
    P(C_rep >= C_obs); tiny values mean the data are not like the model's replicas.
    ``replicates`` (K, C) may be given instead of drawn.
    """
    mu = np.maximum(np.asarray(mu, float), 1e-12)
    c_obs = cstat(counts, mu)
    rep = rng.poisson(mu) if replicates is None else replicates
    c_rep = cstat(rep, mu)
    p = float((c_rep >= c_obs).mean())
    return {"p_value": p, "cstat_obs_median": float(np.median(c_obs)),
            "cstat_rep_median": float(np.median(c_rep)),
            "cstat_rep_90": [float(v) for v in np.percentile(c_rep, [5, 95])],
            "n_draws": int(len(mu)), "channels": int(mu.shape[-1])}


def embedding_distance(emb: np.ndarray, ref: dict) -> dict:
    """Squared Mahalanobis distance of one spectrum's embedding from the validation set's."""
    mean = np.asarray(ref["emb_mean"], float)
    prec = np.asarray(ref["emb_precision"], float)
    d = np.asarray(emb, float).ravel() - mean
    d2 = float(d @ prec @ d)
    q = np.asarray(ref["d2_quantiles"], float)
    return {"d2": d2, "reference_median": float(q[0]), "reference_q99": float(q[1]),
            "reference_q999": float(q[2]), "outlier": bool(d2 > q[2])}


# -- validation of a trained posterior -----------------------------------------------------

def sbi_checks(ranks: np.ndarray, thetas: np.ndarray, samples: np.ndarray, n_samples: int,
               rng: np.random.Generator) -> dict:
    """sbi's SBC and TARP statistics on ranks/samples computed once by simxray.

    Ranks are sbi's 'marginals' SBC ranks (number of posterior draws below the truth);
    ``check_sbc`` gives per-parameter KS p-values and C2ST of ranks, C2ST of prior vs
    data-averaged posterior; TARP (:func:`tarp` + sbi's ``check_tarp``) the joint expected
    coverage.  Falls back to the numpy implementations where sbi is unavailable.
    """
    out: dict = {"backend": "numpy"}
    ref = rng.uniform(thetas.min(0), thetas.max(0), size=thetas.shape)
    try:
        import warnings

        import torch
        from sbi.diagnostics import check_sbc, check_tarp
    except ImportError:
        ecp, alpha = tarp_numpy(samples, thetas, rng)
        out.update(ecp=ecp, alpha=alpha)
        return out
    t = torch.as_tensor(thetas, dtype=torch.float32)
    s = torch.as_tensor(samples, dtype=torch.float32)
    try:    # sbi's C2ST trains sklearn classifiers: as many BLAS/OpenMP threads as torch's
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(max(1, torch.get_num_threads()))
    except ImportError:
        from contextlib import nullcontext

        limit = nullcontext()
    with limit, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chk = check_sbc(torch.as_tensor(ranks, dtype=torch.float32), t, s[0], n_samples)
        ecp, alpha = tarp(s, t, torch.as_tensor(ref, dtype=torch.float32))
        atc, ks = check_tarp(ecp, alpha)
    out.update(backend="sbi", ks_pvals=chk["ks_pvals"].numpy().astype(float),
               c2st_ranks=chk["c2st_ranks"].numpy().astype(float),
               c2st_dap=np.asarray(chk["c2st_dap"], dtype=float).ravel(),
               ecp=ecp.numpy().astype(float), alpha=alpha.numpy().astype(float),
               tarp_atc=float(atc), tarp_ks_pvalue=float(ks))
    return out


def validate(posterior_dir, n: int = 500, n_samples: int = 1000, seed: int = 2024,
             dataset: str | None = None, out_dir=None, quiet: bool = False,
             tolerance: float = 0.05, log=print) -> dict:
    """SBC ranks, marginal coverage, TARP and recovery (R²) on fresh simulations.

    Simulations come from the posterior's own simulation config (seeded with ``seed``)
    or the first ``n`` finished rows of ``dataset`` (an unfinished campaign: its ``n_done``
    rows, with a warning).  Writes coverage.png, ranks.png and recovery.png to ``out_dir``
    (default ``<POSTERIOR>_validation`` beside the posterior, or in the current folder for a
    posterior shipped inside the package; never into the package).  ``tolerance`` in (0, 1).
    Returns every figure; ``result["pass"]`` says whether calibration passed.
    """
    import time
    from pathlib import Path

    import torch
    from tqdm.auto import tqdm

    from ..errors import SimxrayError
    from ..plots import coverage_plot, rank_plot, recovery_plot
    from ..provenance import provenance
    from . import saving

    t0 = time.perf_counter()
    if n < 10:
        raise SimxrayError(f"expected at least 10 simulations, got {n}", field="--n")
    if n_samples < 10:
        raise SimxrayError(f"expected at least 10 posterior samples, got {n_samples}",
                           field="--samples")
    if not 0.0 < float(tolerance) < 1.0:
        raise SimxrayError(f"expected a coverage tolerance in (0, 1), got {tolerance:g}",
                           field="--tolerance")
    loaded = saving.load_posterior(posterior_dir)
    cfg, model, names = loaded.config, loaded.model, loaded.names
    rng = np.random.default_rng(seed)
    if dataset:
        thetas, xs = _dataset_rows(dataset, cfg, n)
        source = {"dataset": str(Path(dataset).resolve())}
    else:
        sim = simulator_for(cfg)
        train_seed = (cfg.get("training") or {}).get("dataset_seed")
        if train_seed is not None and int(train_seed) == seed:
            log(f"warning: seed {seed} is the training dataset's seed; the validation "
                "simulations repeat training spectra")
        sims = sim.sample(n, rng)
        thetas, xs = sims["theta"], sims["counts"]
        if "covariates" in sims:          # the network conditions on each row's observation
            xs = np.concatenate([xs, sims["covariates"]], axis=1)
        source = {"simulated": n, "seed": seed}
    t_sim = time.perf_counter()
    torch.manual_seed(seed)
    parts = []
    step = max(1, 200000 // n_samples)
    with tqdm(total=len(thetas), desc="posterior samples", unit="spec", disable=quiet) as bar:
        for a in range(0, len(thetas), step):
            xb = torch.as_tensor(xs[a:a + step], dtype=torch.float32)
            parts.append(model.sample(n_samples, xb).double().numpy())
            bar.update(len(xb))
    samples = np.concatenate(parts, axis=1)                      # (S, N, P)
    t_samp = time.perf_counter()
    ranks = ranks_from_samples(samples, thetas)
    levels, cov = coverage_curve(ranks, n_samples)
    max_err = np.abs(cov - levels[:, None]).max(0)
    rec = recovery(samples, thetas, cfg["log"])
    checks = sbi_checks(ranks, thetas, samples, n_samples, rng)
    ecp, alpha = np.asarray(checks["ecp"]), np.asarray(checks["alpha"])
    tarp_err = float(np.abs(ecp - alpha).max())
    noise = coverage_tolerance(len(thetas))
    result = {
        "posterior": str(Path(posterior_dir).resolve()), "n": int(len(thetas)),
        "posterior_samples": int(n_samples), "source": source, "levels": levels.tolist(),
        "tolerance": tolerance, "binomial_noise_95": noise,
        "parameters": {}, "tarp": {"max_abs_error": tarp_err, "ecp": ecp.tolist(),
                                   "alpha": alpha.tolist()},
        "sbc_backend": checks["backend"],
    }
    for i, nm in enumerate(names):
        p = {"max_coverage_error": float(max_err[i]), "coverage": cov[:, i].tolist(),
             "r2": float(rec["r2"][i]), "r2_scale": "log10" if cfg["log"][i] else "linear",
             "mean_posterior_sd": float(rec["mean_std"][i]),
             "z_mean": float(rec["z_mean"][i]), "z_std": float(rec["z_std"][i]),
             "pass": bool(max_err[i] <= tolerance)}
        if "ks_pvals" in checks:
            p["sbc_ks_pvalue"] = float(checks["ks_pvals"][i])
            p["sbc_c2st_ranks"] = float(checks["c2st_ranks"][i])
        result["parameters"][nm] = p
    if "tarp_atc" in checks:
        result["tarp"].update(atc=checks["tarp_atc"], ks_pvalue=checks["tarp_ks_pvalue"])
    if "c2st_dap" in checks:
        result["c2st_dap"] = checks["c2st_dap"].tolist()
    result["pass"] = all(p["pass"] for p in result["parameters"].values())
    from ..io.outputs import check_output, default_output

    out = Path(out_dir) if out_dir else default_output(posterior_dir, "_validation")
    check_output(out, kind="dir", overwrite=True)
    out.mkdir(exist_ok=True)
    title = f"{Path(posterior_dir).name}: {len(thetas)} simulations, {n_samples} draws each"
    files = {
        "coverage": str(coverage_plot(levels, cov, names, out / "coverage.png", tolerance=tolerance,
                                      tarp=(ecp, alpha), title=title)),
        "ranks": str(rank_plot(ranks, n_samples, names, out / "ranks.png", title=title)),
        "recovery": str(recovery_plot(thetas, samples.mean(0), names, out / "recovery.png",
                                      log=cfg["log"], r2=rec["r2"])),
    }
    result["files"] = files
    result["timing_s"] = {"simulate": round(t_sim - t0, 2), "sample": round(t_samp - t_sim, 2),
                          "total": round(time.perf_counter() - t0, 2)}
    result["provenance"] = provenance(seed=seed, inputs={
        "posterior": result["posterior"], "posterior_weights_sha256": cfg["weights_sha256"],
        **source})
    return result


def format_validation(res: dict) -> str:
    """Terminal table of a :func:`validate` result."""
    rows = [f"{res['n']} simulations x {res['posterior_samples']} posterior draws "
            f"(SBC statistics: {res['sbc_backend']})",
            f"{'parameter':<16} {'max cov. err':>12} {'R^2':>8} {'scale':>7} {'SBC KS p':>9} "
            f"{'C2ST':>6}  within {res['tolerance']:g}"]
    for nm, p in res["parameters"].items():
        ks = f"{p['sbc_ks_pvalue']:.3f}" if "sbc_ks_pvalue" in p else "-"
        c2 = f"{p['sbc_c2st_ranks']:.3f}" if "sbc_c2st_ranks" in p else "-"
        rows.append(f"{nm:<16} {p['max_coverage_error']:>12.3f} {p['r2']:>8.3f} "
                    f"{p['r2_scale']:>7} {ks:>9} {c2:>6}  {'yes' if p['pass'] else 'NO'}")
    t = res["tarp"]
    extra = f", ATC {t['atc']:.3f}, KS p {t['ks_pvalue']:.3f}" if "atc" in t else ""
    rows.append(f"TARP: max |ECP - credibility| {t['max_abs_error']:.3f}{extra}")
    rows.append(f"(binomial noise alone reaches {res['binomial_noise_95']:.3f} at 95% confidence "
                f"with {res['n']} simulations)")
    if res["pass"]:
        rows.append(f"calibration PASSED: every parameter within {res['tolerance']:g} of nominal "
                    "coverage at every level")
    else:
        rows.append("calibration FAILED for: " + ", ".join(
            nm for nm, p in res["parameters"].items() if not p["pass"]))
    return "\n".join(rows)


def simulator_for(cfg: dict):
    """The simulator a posterior was trained with (from its stored simulation config)."""
    from ..errors import ConfigError
    from ..simulator.config import config_from_dict
    from ..simulator.prior import Prior
    from ..simulator.simulator import Simulator

    sc = cfg.get("simulation_config")
    if not sc:
        raise ConfigError("the posterior records no simulation config; pass --dataset",
                          field="simulation_config")
    sim = Simulator.from_config(config_from_dict(sc))
    prior = Prior.from_dict(cfg["prior"])
    if sim.channels != [int(c) for c in cfg["channels"]]:
        raise ConfigError(f"the simulator's channels {sim.channels} differ from the posterior's "
                          f"{cfg['channels']}", field="channels")
    names = (cfg.get("covariates") or {}).get("names") or []
    bound = cfg.get("bound")
    if list(names) != sim.covariate_names and not (bound and sim.covariate_names):
        raise ConfigError(f"the simulator's covariates {sim.covariate_names} differ from the "
                          f"posterior's {list(names)}", field="covariates")
    out = Simulator(sim.model, prior, sim.response, channel_slice=sim.slice, pileup=sim.pileup,
                    background_mu=sim.background_mu, files=sim.files,
                    pileup_grid=sim.pileup_grid, name=sim.name, covariates=sim.covariates)
    if bound and sim.covariate_names:              # a multi-mode emulator bound to one mode
        out = out.at(**{k: bound[k] for k in sim.covariate_names})
    return out


def _dataset_rows(path: str, cfg: dict, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` finished rows (theta, counts) of a campaign file (honours n_done)."""
    import h5py

    from ..errors import FileFormatError
    from ..simulator.campaign import dataset_rows

    n_done, _ = dataset_rows(path, min_rows=10)
    n = min(int(n), n_done)
    try:
        with h5py.File(path, "r") as f:
            th = np.asarray(f["theta"][:n], dtype=float)
            x = np.asarray(f["counts"][:n], dtype=float)
            names = [str(v) for v in f["theta"].attrs.get("names", [])]
            want = (cfg.get("covariates") or {}).get("names") or []
            if want:
                have = [str(v) for v in f["covariates"].attrs["names"]] if "covariates" in f else []
                if have != list(want):
                    raise FileFormatError(f"covariates {have} differ from the posterior's "
                                          f"{list(want)}", path=path, field="covariates")
                x = np.concatenate([x, np.asarray(f["covariates"][:n], dtype=float)], axis=1)
    except (OSError, KeyError) as exc:
        raise FileFormatError(f"cannot read theta/counts ({exc.__class__.__name__})",
                              path=path) from None
    if names and names != list(cfg["parameters"]):
        raise FileFormatError(f"parameters {names} differ from the posterior's "
                              f"{cfg['parameters']}", path=path, field="theta")
    if x.shape[1] - len((cfg.get("covariates") or {}).get("names") or []) != int(cfg["n_channels"]):
        raise FileFormatError(f"{x.shape[1]} channels; the posterior expects {cfg['n_channels']}",
                              path=path, field="counts")
    return th, x
