"""The multi-mode relxill emulator on a real piled-up spectrum, beside Sherpa (issue 15).

    python benchmarks/relxill_bright_ngc4258.py [--seed 3] [--samples 4000] [--auto]

NGC 4258 (ObsID 1618; ``../shared/data/chandra/source_bin10.pi``: ACIS-S full frame,
3.24104 s frames, 20.65 ks, 3,325 counts, piled up) is one of the bright campaign's modes
(full frame, 20-150 ks), so ``simxray.fit(spectrum, emulator=...)`` binds the shipped
multi-mode emulator to its EXPOSURE and TIMEDEL and fits the campaign's setup
(``tbabs*relxill`` × Davis pileup, its priors, channels 35-548, W-stat with the
background).  Three answers on the same data:

1. **emulator emcee**: the anchored emulator driving emcee (``method="emcee"``);
2. **exact**: its draws reweighted with L_exact / L_emulator (PSIS): the posterior of the
   exact simulator (relxill + tbabs + Davis + the real ARF/RMF);
3. **network**: the shipped amortised posterior (``posterior_relxill_bright``, conditioned
   on the spectrum's exposure and frame time), its own draws (``method="npe"``,
   ``n_reweight=0``): calibrated on simulations, here against the exact posterior on data;
   With ``--auto`` also what ``simxray fit SPECTRUM --model 'tbabs*relxill'`` returns
   (``method="auto"``: the network, checked by exact-likelihood importance reweighting,
   else the exact likelihood), against the exact posterior of 2 (~9 min more);
4. **Sherpa**: Sherpa's own ``jdpileup`` and response folding with simxray's
   ``tbabs*relxill`` as a Sherpa model (the same free parameters and bounds), W-stat,
   Nelder-Mead then Levenberg-Marquardt from the emulator posterior's median, ``covar``
   1-sigma errors; and its W-stat at its best fit against simxray's exact W-stat there
   (the two pipelines computing the same number).

-> ``benchmarks/results/relxill_bright_ngc4258.json`` and ``.png`` (marginals of the
constrained parameters, Sherpa's best fit and 1-sigma error marked).  Records the inputs'
sha256, seed, version and commit.  ~10 min on one core.
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
RESULTS = REPO / "benchmarks" / "results"
SHOWN = ("nH", "gamma", "norm", "pileup.alpha", "pileup.f", "refl_frac")


def spectrum_path() -> Path:
    p = REPO.parent / "shared" / "data" / "chandra" / "source_bin10.pi"
    if p.is_file():
        return p
    from simxray.datasets import DATA_DIR

    return DATA_DIR / "source_bin10.pi"         # the same file, shipped


def sherpa_fit(path: Path, prob, start: dict[str, float]) -> dict:
    """Sherpa's jdpileup and folding with simxray's tbabs*relxill, on the fit's channels."""
    from sherpa.astro.models import JDPileup
    from sherpa.astro.ui.utils import Session

    from simxray.sherpa import SimxrayModel

    s = Session()
    s.set_conf_opt("numcores", 1)
    s.load_pha(str(path))
    s.ungroup()
    lo, hi = prob.obs.noticed_channels
    s.set_analysis("channel")
    s.ignore()
    s.notice(lo, hi)
    s.set_analysis("energy")
    s.set_stat("wstat")
    src = SimxrayModel(prob.model.expr, "src")
    jdp = JDPileup("jdp")
    prior = prob.prior
    fixed = prior.fixed
    jdp.ftime, jdp.fracexp = fixed["pileup.ftime"], fixed["pileup.fracexp"]
    jdp.g0, jdp.n, jdp.nterms = fixed["pileup.g0"], fixed["pileup.n"], int(fixed["pileup.nterms"])
    for p in (jdp.g0, jdp.n, jdp.ftime, jdp.fracexp, jdp.nterms):
        p.freeze()
    pars = {}
    for name in prior.names:
        p = getattr(jdp, name.split(".", 1)[1]) if name.startswith("pileup.") else \
            getattr(src, name)
        pars[name] = p
    for name, v in fixed.items():
        if not name.startswith("pileup."):
            getattr(src, name).val = v
            getattr(src, name).freeze()
    b = prior.bounds
    for j, name in enumerate(prior.names):
        p = pars[name]
        p.thaw()
        p.min, p.max = max(b[j, 0], p.hard_min), min(b[j, 1], p.hard_max)
        p.val = float(np.clip(start[name], p.min, p.max))
    s.set_source(src)
    s.set_pileup_model(jdp)
    t0 = time.perf_counter()
    s.set_method("neldermead")
    s.fit()
    s.set_method("levmar")
    s.fit()
    fit = s.get_fit_results()
    s.covar()
    cov = s.get_covar_results()
    err = {n: (lo_, hi_) for n, lo_, hi_ in zip(cov.parnames, cov.parmins, cov.parmaxes,
                                                  strict=True)}
    out = {"statistic": "wstat", "statval": float(fit.statval), "dof": int(fit.dof),
           "nfev": int(fit.nfev), "seconds": round(time.perf_counter() - t0, 1),
           "channels": [int(lo), int(hi)], "best": {}, "at_bound": []}
    for name, p in pars.items():
        lo_, hi_ = err.get(p.fullname, (None, None))
        sd = None if lo_ is None or hi_ is None else 0.5 * (abs(hi_) + abs(lo_))
        out["best"][name] = {"value": float(p.val), "covar_sd": sd}
        if min(p.val - p.min, p.max - p.val) <= 1e-3 * (p.max - p.min):
            out["at_bound"].append(name)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--samples", type=int, default=4000)
    ap.add_argument("--emulator", default=None, help="default: the shipped bright emulator")
    ap.add_argument("--quick", action="store_true", help="short chains (a smoke test)")
    ap.add_argument("--auto", action="store_true", help="also the default fit (method auto)")
    args = ap.parse_args(argv)

    import torch

    import simxray as sx
    from simxray.datasets import DATA_DIR
    from simxray.inference.reweight import reweight
    from simxray.provenance import atomic_path, provenance, sha256

    torch.set_num_threads(1)
    edir = Path(args.emulator) if args.emulator else DATA_DIR / "emulator_relxill_bright"
    path = spectrum_path()
    t0 = time.perf_counter()
    short = {"n_effective": 100, "max_steps": 1500} if args.quick else {}
    res = sx.fit(path, emulator=edir, method="emcee", n_samples=args.samples, seed=args.seed,
                 ppc_draws=100, **short)
    t_emcee = time.perf_counter() - t0
    prob = res.problem
    from simxray.inference.fitting import _find_emulator

    emu, _ = _find_emulator(prob, edir)
    names = list(prob.prior.names)
    draws = res.samples
    like_x, like_e = prob.likelihood(), prob.likelihood(emu)
    t0 = time.perf_counter()
    ll_x = like_x(draws)
    t_rw = time.perf_counter() - t0
    rw = reweight(ll_x, like_e(draws), len(draws), np.random.default_rng(args.seed + 1))
    exact = draws[rw["index"]]
    t0 = time.perf_counter()
    net = sx.fit(path, model=prob.model.expr, method="npe", n_samples=args.samples,
                 seed=args.seed, n_reweight=0, ppc_draws=0)
    t_net = time.perf_counter() - t0
    assert list(net.names) == names and net.summary["method"] == "npe"
    auto = None
    if args.auto:
        t0 = time.perf_counter()
        auto = sx.fit(path, model=prob.model.expr, n_samples=args.samples, seed=args.seed,
                      ppc_draws=0)
        t_auto = time.perf_counter() - t0
    med = dict(zip(names, np.median(draws, 0), strict=True))
    sh = sherpa_fit(path, prob, med)
    best = np.array([[sh["best"][n]["value"] for n in names]])
    w_simxray = float(-2.0 * like_x(best)[0])
    log = [d.dist == "loguniform" for d in prob.prior.varying]
    par = {}
    for j, n in enumerate(names):
        f = np.log10 if log[j] else (lambda v: v)
        e, x = f(draws[:, j]), f(exact[:, j])
        q = f(net.samples[:, j])
        b = sh["best"][n]
        par[n] = {"scale": "log10" if log[j] else "linear",
                  "emulator_median": float(np.median(e)), "emulator_sd": float(e.std()),
                  "exact_median": float(np.median(x)), "exact_sd": float(x.std()),
                  "sd_ratio": float(e.std() / x.std()) if x.std() > 0 else None,
                  "offset_in_exact_sd": float((np.median(e) - np.median(x)) / x.std())
                  if x.std() > 0 else None,
                  "network_median": float(np.median(q)), "network_sd": float(q.std()),
                  "network_sd_ratio": float(q.std() / x.std()) if x.std() > 0 else None,
                  "network_offset_in_exact_sd": float((np.median(q) - np.median(x)) / x.std())
                  if x.std() > 0 else None,
                  **({} if auto is None else {
                      "auto_median": float(np.median(f(auto.samples[:, j]))),
                      "auto_sd": float(f(auto.samples[:, j]).std()),
                      "auto_offset_in_exact_sd": float((np.median(f(auto.samples[:, j]))
                                                        - np.median(x)) / x.std()),
                      "auto_sd_ratio": float(f(auto.samples[:, j]).std() / x.std())}),
                  "sherpa_best": float(f(b["value"])),
                  "sherpa_covar_sd": (None if b["covar_sd"] is None else
                                      float(b["covar_sd"] / (b["value"] * np.log(10))
                                            if log[j] else b["covar_sd"])),
                  "sherpa_best_in_exact_sd": float((f(b["value"]) - np.median(x)) / x.std())
                  if x.std() > 0 else None}
    s = res.summary
    out = {"spectrum": str(path), "counts": s["total_counts"], "channels": s["channels"],
           "exposure_s": prob.obs.spectrum.exposure, "frame_time_s": prob.obs.spectrum.frame_time,
           "emulator_bound": emu.config["bound"], "method_reason": s["method_reason"],
           "statistic": s["statistic"], "pileup_fraction": s.get("pileup_fraction"),
           "ppc": s["checks"].get("ppc"),
           "emcee": {"seconds": round(t_emcee, 1),
                     **{k: v for k, v in s.get("sampler", {}).items()
                        if isinstance(v, int | float | str)}},
           "network": {"seconds": round(t_net, 1), "method_reason":
                       net.summary["method_reason"]},
           **({} if auto is None else {"auto": {
               "seconds": round(t_auto, 1), "method": auto.summary["method"],
               "method_reason": auto.summary["method_reason"],
               "sampler": {k: v for k, v in auto.summary.get("sampler", {}).items()
                           if isinstance(v, int | float | str)}}}),
           "reweighting": {"seconds": round(t_rw, 1), "psis_khat": float(rw["khat"]),
                           "ess": float(rw["ess"]), "reliable": bool(rw["reliable"])},
           "sherpa": sh, "wstat_at_sherpa_best": {"sherpa": sh["statval"],
                                                  "simxray_exact": w_simxray},
           "parameters": par}
    out["provenance"] = provenance(
        seed=args.seed, script="benchmarks/relxill_bright_ngc4258.py",
        inputs={"spectrum": sha256(path), "emulator_weights": sha256(edir / "weights.safetensors"),
                "posterior_weights": sha256(DATA_DIR / "posterior_relxill_bright" /
                                            "weights.safetensors")})
    res_dir = Path(os.environ.get("SIMXRAY_BENCH_OUT", RESULTS)) if args.quick else RESULTS
    res_dir.mkdir(parents=True, exist_ok=True)
    dst = res_dir / "relxill_bright_ngc4258.json"
    tmp = atomic_path(dst)
    tmp.write_text(json.dumps(out, indent=2, default=float) + "\n")
    os.replace(tmp, dst)
    plot(draws, exact, names, log, sh, res_dir / "relxill_bright_ngc4258.png", net.samples)
    print(json.dumps({k: out[k] for k in ("counts", "emcee", "reweighting",
                                          "wstat_at_sherpa_best")}, indent=1, default=float))
    for n, e in par.items():
        print(f"{n:13s} {e['scale']:6s} emulator {e['emulator_median']:9.4g} ± "
              f"{e['emulator_sd']:.3g}   exact {e['exact_median']:9.4g} ± {e['exact_sd']:.3g}"
              f"   network {e['network_median']:9.4g} ± {e['network_sd']:.3g}"
              f"   Sherpa {e['sherpa_best']:9.4g} ± {e['sherpa_covar_sd'] or float('nan'):.3g}")
    return 0


def plot(draws, exact, names, log, sh, out: Path, network=None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [n for n in SHOWN if n in names]
    fig, axes = plt.subplots(1, len(shown), figsize=(2.6 * len(shown), 2.8))
    for ax, n in zip(np.atleast_1d(axes), shown, strict=True):
        j = names.index(n)
        f = np.log10 if log[j] else (lambda v: v)
        bins = np.linspace(*np.percentile(f(np.r_[draws[:, j], exact[:, j]]), [0.5, 99.5]), 40)
        ax.hist(f(draws[:, j]), bins, density=True, histtype="step", lw=1.6,
                label="emulator emcee")
        ax.hist(f(exact[:, j]), bins, density=True, histtype="step", lw=1.6, ls="--",
                label="exact (PSIS)")
        if network is not None:
            ax.hist(f(network[:, j]), bins, density=True, histtype="step", lw=1.2, ls=":",
                    color="tab:green", label="amortised network")
        b = sh["best"][n]
        ax.axvline(f(b["value"]), color="k", lw=1.2, label="Sherpa best fit")
        if b["covar_sd"]:
            sd = b["covar_sd"] / (b["value"] * np.log(10)) if log[j] else b["covar_sd"]
            ax.axvspan(f(b["value"]) - sd, f(b["value"]) + sd, color="0.85", zorder=0)
        ax.set_xlabel(f"log10 {n}" if log[j] else n)
        ax.set_yticks([])
    np.atleast_1d(axes)[0].legend(fontsize=7, loc="upper left")
    fig.suptitle("NGC 4258 (ObsID 1618, full frame, 20.65 ks): tbabs*relxill × pileup",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=150)
    plt.close(fig)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
