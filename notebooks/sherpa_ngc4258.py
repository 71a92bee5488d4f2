"""Fit the piled-up NGC 4258 ACIS spectrum in Sherpa with the simxray emulator, and compare
with emcee's posterior on the same emulator.

    python notebooks/sherpa_ngc4258.py [--out DIR] [--draws 2000] [--ess 1000] [--quiet]

Steps (a script an astronomer can copy into their own Sherpa session):

1. ``load_pha`` simxray/data/source_bin10.pi (ARF, RMF, background from its header),
   ``ungroup``, the emulator model ``SimxrayPileup`` as the *full* model (it already holds
   the ARF, RMF, exposure and Davis pileup), channels 35-548 (0.5-8 keV), ``wstat``;
2. ``fit`` (Nelder-Mead, then Levenberg-Marquardt), ``conf`` (1-sigma), ``get_draws``;
   absorbed and unabsorbed 0.5-2, 2-8 keV energy fluxes of the best fit with
   ``calc_energy_flux(model=mdl.source_model(...))`` (the unpiled source linked to the
   emulator's parameters);
3. ``simxray.inference.mcmc.sample_emcee`` on the same spectrum, emulator and statistic;
4. prints the best fit, the confidence intervals, the emcee posterior (median, 68 %) and,
   per parameter, how many posterior standard deviations the Sherpa best fit lies from
   the posterior mode region (|best - median| / sd); writes ``sherpa_vs_emcee.json`` and
   ``sherpa_vs_emcee.png`` to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def sherpa_fit(pha: Path, draws: int, quiet: bool) -> dict:
    """Sherpa fit, conf and get_draws with the emulator model; returns the numbers."""
    import logging

    from sherpa.astro import ui

    from simxray.sherpa import SimxrayPileup, notice_emulator_channels

    if quiet:
        logging.getLogger("sherpa").setLevel(logging.WARNING)
    ui.clean()
    ui.set_conf_opt("numcores", 1)
    ui.load_pha(str(pha))
    ui.ungroup()
    mdl = SimxrayPileup("emu")
    mdl.check_data(ui.get_data())            # raises if the response is not the emulator's
    ui.set_full_model(mdl)
    notice_emulator_channels(model=mdl)
    ui.set_stat("wstat")
    for name, val in {"nH": 1.0, "PhoIndex": 1.8, "norm": 1e-3, "alpha": 0.5, "f": 0.95}.items():
        setattr(mdl, name, val)
    ui.set_method("neldermead")
    ui.fit()
    ui.set_method("levmar")
    ui.fit()
    fit = ui.get_fit_results()
    ui.conf()
    conf = ui.get_conf_results()
    fluxes = {}
    for label, expr in (("absorbed", None), ("unabsorbed", "powerlaw")):
        src = mdl.source_model(expr)
        for lo, hi in ((0.5, 2.0), (2.0, 8.0)):   # erg/cm^2/s at the best fit
            fluxes[f"{label}_{lo:g}-{hi:g}keV"] = float(ui.calc_energy_flux(lo, hi, model=src))
    ui.set_rng(np.random.default_rng(1))
    stat, accept, pars = ui.get_draws(niter=draws)
    names = [p.name for p in mdl.pars]
    return {"names": names, "best": dict(zip(names, map(float, fit.parvals), strict=True)),
            "statistic": "wstat", "stat": float(fit.statval), "dof": int(fit.dof),
            "conf_lower": {n.split(".")[-1]: (None if v is None else float(v))
                           for n, v in zip(conf.parnames, conf.parmins, strict=True)},
            "conf_upper": {n.split(".")[-1]: (None if v is None else float(v))
                           for n, v in zip(conf.parnames, conf.parmaxes, strict=True)},
            "energy_flux_erg_cm2_s": fluxes,
            "draws": pars.T, "draws_acceptance": float(np.mean(accept))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spectrum", default=str(REPO / "simxray" / "data" / "source_bin10.pi"))
    ap.add_argument("--out", default="sherpa_ngc4258_output", help="output folder")
    ap.add_argument("--draws", type=int, default=2000, help="get_draws iterations")
    ap.add_argument("--ess", type=int, default=1000, help="emcee effective samples")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")

    from simxray.inference.emulator import Emulator
    from simxray.inference.mcmc import sample_emcee
    from simxray.io.ogip import read_pha
    from simxray.provenance import provenance, sha256

    pha = Path(args.spectrum)
    sh = sherpa_fit(pha, args.draws, args.quiet)
    emu = Emulator.load()
    spec = read_pha(pha)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        mc = sample_emcee(spec, emulator=emu, n_samples=20000, seed=1, n_effective=args.ess,
                          quiet=args.quiet)
    s = mc.samples
    med, sd = np.median(s, 0), s.std(0)
    q16, q84 = np.percentile(s, [16, 84], axis=0)
    best = np.array([sh["best"][n] for n in sh["names"]])
    # the best fit is the posterior mode under a flat prior: compare in sds of the posterior
    dist = np.abs(best - med) / sd
    rows = [f"{'parameter':<10} {'Sherpa best':>12} {'conf -1σ':>11} {'conf +1σ':>11} "
            f"{'emcee median':>13} {'68% interval':>24} {'|Δ|/σ':>7}"]
    for j, n in enumerate(sh["names"]):
        lo, hi = sh["conf_lower"].get(n), sh["conf_upper"].get(n)
        rows.append(f"{n:<10} {best[j]:>12.4g} {'' if lo is None else f'{lo:+.3g}':>11} "
                    f"{'' if hi is None else f'{hi:+.3g}':>11} {med[j]:>13.4g} "
                    f"{f'[{q16[j]:.4g}, {q84[j]:.4g}]':>24} {dist[j]:>7.2f}")
    d = mc.diagnostics
    rows.append(f"Sherpa W-stat {sh['stat']:.1f} ({sh['dof']} dof); emcee MAP W-stat "
                f"{d['map_stat']:.1f}; emcee: tau {d['autocorr_time_max']:.0f}, acceptance "
                f"{d['acceptance_fraction_mean']:.2f}, ESS {d['effective_sample_size_min']:.0f}")
    rows.append("best-fit energy flux (erg/cm^2/s): " + ", ".join(
        f"{k} {v:.3g}" for k, v in sh["energy_flux_erg_cm2_s"].items()))
    consistent = bool(np.all(dist < 2.0))
    rows.append("Sherpa's best fit is " + ("consistent" if consistent else "NOT consistent") +
                " with emcee's posterior (every parameter within 2 posterior sd of the median)")
    print("\n".join(rows))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"spectrum": str(pha.resolve()), "spectrum_sha256": sha256(pha),
           "emulator": str(emu.path), "sherpa": {k: v for k, v in sh.items() if k != "draws"},
           "sherpa_draws_mean": dict(zip(sh["names"], map(float, sh["draws"].mean(0)),
                                         strict=True)),
           "emcee": {"median": dict(zip(sh["names"], map(float, med), strict=True)),
                     "sd": dict(zip(sh["names"], map(float, sd), strict=True)),
                     "ci68": {n: [float(q16[j]), float(q84[j])]
                              for j, n in enumerate(sh["names"])},
                     "diagnostics": d},
           "best_minus_median_over_sd": dict(zip(sh["names"], map(float, dist), strict=True)),
           "consistent": consistent, "emcee_warnings": [str(w.message) for w in caught],
           "provenance": provenance(seed=1, script="notebooks/sherpa_ngc4258.py")}
    from simxray.inference.saving import write_json

    write_json(out / "sherpa_vs_emcee.json", json.loads(json.dumps(res, default=float)))
    _plot(s, sh, out / "sherpa_vs_emcee.png")
    print(f"wrote {out / 'sherpa_vs_emcee.json'}, {out / 'sherpa_vs_emcee.png'}")
    return 0


def _plot(samples: np.ndarray, sh: dict, path: Path) -> None:
    """Marginals: emcee histogram, Sherpa get_draws histogram, Sherpa best fit."""
    from simxray.plots import _pyplot, _save

    plt = _pyplot()
    names = sh["names"]
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.8))
    for j, (ax, n) in enumerate(zip(axes, names, strict=True)):
        ax.hist(samples[:, j], bins=50, density=True, histtype="step", color="C0",
                label="emcee (emulator)")
        ax.hist(sh["draws"][:, j], bins=40, density=True, histtype="step", color="C1",
                label="Sherpa get_draws")
        ax.axvline(sh["best"][n], color="k", lw=1, label="Sherpa best fit")
        ax.set_xlabel(n)
        ax.set_yticks([])
    axes[0].legend(fontsize=7)
    fig.suptitle("NGC 4258 (ObsID 1618): Sherpa + simxray emulator vs emcee", fontsize=10)
    fig.tight_layout()
    _save(fig, path)


if __name__ == "__main__":
    sys.exit(main())
