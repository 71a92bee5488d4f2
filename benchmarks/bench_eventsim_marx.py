"""Event-level simulator against MARX + marxpileup: events per frame, kept fraction, multiplicity.

    python benchmarks/run.py --only eventsim_marx [--quick] --json benchmarks/results/eventsim_marx.json

Reference (simxray issue 16, item 5): one MARX run with ``marxpileup`` (ACIS-S, on-axis
point source, ray-traced HRMA PSF with dither, alpha = 0.5, 0.4 s + 41.04 ms frames):
138,195 incident photons over 66,324 frames (2.084 per frame) of a hard absorbed spectrum
(mean energy 4.65 keV) give 0.915 good events per frame, 49.6 % of the incident photons
in good events and 10.4 % of the good events made of two or more photons.  MARX is not
installed here; that one operating point is the reference.

simxray side: ``tbabs*powerlaw`` with nH = 20e22 cm^-2, Gamma = 2 (mean detected energy
4.58 keV) through the embedded NGC 4258 ACIS-S ARF/RMF, 0.44104 s frames, at 0.05-3
incident photons per frame, for each PSF (``chandra``, ``gaussian``, ``king``, ``delta``)
and both grade models:

* ``marx``: marxpileup's convention (each photon's charge in its own pixel, every single
  photon good, an island of n >= 2 photons kept with probability alpha^(n-1), alpha 0.5);
  this is the like-for-like comparison with the MARX run;
* ``cloud``: simxray's charge-cloud model (Gaussian clouds, split threshold, ASCA grades
  0, 2, 3, 4, 6 good), which has no alpha.

Figures per (PSF, grading, L): ``events_per_frame`` (good events / frames),
``kept_fraction`` (sum of NPILE over good events / incident photons), ``multiplicity``
(fraction of good events with NPILE >= 2), with binomial/Poisson standard errors.  At the
MARX point (66,324 frames, as MARX) ``marx_point`` gives the three ratios simxray / MARX.
``davis`` is the Davis (2001) / jdpileup prediction for one piled cell with Sherpa's
defaults (alpha 0.5, g0 1, f 0.95, n 1): good events per frame
e^{-fL} (e^{alpha f L} - 1) / alpha + (1 - f) L, photons in good events
f L e^{-(1-alpha) f L} + (1 - f) L.

Writes ``benchmarks/results/eventsim_marx.png`` when matplotlib is available.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
FRAME = 0.44104
MARX = {"photons": 138195, "frames": 66324, "events_per_frame": 0.915, "kept_fraction": 0.496,
        "multiplicity": 0.104, "mean_energy_kev": 4.65, "alpha": 0.5}
LEVELS = [0.05, 0.1, 0.2, 0.5, 1.0, 1.5, MARX["photons"] / MARX["frames"], 3.0]
PSFS = ("chandra", "gaussian", "king", "delta")
GRADINGS = ("marx", "cloud")
SOURCE = {"nH": 20.0, "PhoIndex": 2.0, "norm": 1.0}


def davis(L: float, alpha: float = 0.5, f: float = 0.95) -> dict:
    """Davis (2001) good events per frame, kept fraction and multiplicity for L photons/frame."""
    lam = f * L
    events = np.exp(-lam) * np.expm1(alpha * lam) / alpha + (1 - f) * L
    kept = (lam * np.exp(-(1 - alpha) * lam) + (1 - f) * L) / L
    singles = lam * np.exp(-lam) + (1 - f) * L
    return {"events_per_frame": round(float(events), 4), "kept_fraction": round(float(kept), 4),
            "multiplicity": round(float(1 - singles / events), 4)}


def _stats(ev) -> dict:
    g = ev.good
    n_good = int(g.sum())
    mult = float(np.mean(ev.npile[g] >= 2)) if n_good else 0.0
    epf = n_good / ev.n_frames
    kept = ev.kept_fraction()
    return {"events_per_frame": round(epf, 4), "events_per_frame_err": round(np.sqrt(max(n_good, 1)) / ev.n_frames, 4),
            "kept_fraction": round(kept, 4),
            "kept_fraction_err": round(float(np.sqrt(kept * max(1 - kept, 0) / max(ev.n_photons, 1))), 4),
            "multiplicity": round(mult, 4),
            "multiplicity_err": round(float(np.sqrt(mult * (1 - mult) / max(n_good, 1))), 4),
            "photons": int(ev.n_photons), "frames": int(ev.n_frames)}


def run(quick: bool = False) -> dict:
    from simxray.datasets import data_path
    from simxray.instrument.eventsim import EventSimConfig, simulate_events
    from simxray.io.ogip import read_arf, read_rmf
    from simxray.models import Model

    t_start = time.perf_counter()
    arf = read_arf(data_path("arf.fits"))
    rmf = read_rmf(data_path("rmf.fits"))
    edges = np.append(arf.energ_lo, arf.energ_hi[-1])
    rate1 = Model("tbabs*powerlaw").evaluate(edges, SOURCE) * arf.specresp
    mean_e = float((rate1 * 0.5 * (edges[1:] + edges[:-1])).sum() / rate1.sum())
    photons_per_level = 8000 if quick else 30000

    curve = []
    for i, L in enumerate(LEVELS):
        rate = rate1 * (L / (rate1.sum() * FRAME))
        row = {"photons_per_frame": round(L, 4), "davis": davis(L)}
        for psf in PSFS:
            for grading in GRADINGS:
                cfg = EventSimConfig(frame_time=FRAME, psf=psf, grading=grading, marx_alpha=MARX["alpha"])
                ev = simulate_events(rate, edges, rmf.matrix, photons_per_level / L * FRAME, config=cfg,
                                     seed=100 * i + 7)
                row[f"{psf}_{grading}"] = _stats(ev)
        curve.append(row)

    # the MARX operating point at MARX's own number of frames
    L = MARX["photons"] / MARX["frames"]
    rate = rate1 * (L / (rate1.sum() * FRAME))
    frames = MARX["frames"] // (5 if quick else 1)
    point = {"photons_per_frame": round(L, 4), "marx": {k: MARX[k] for k in
                                                        ("events_per_frame", "kept_fraction", "multiplicity")},
             "davis": davis(L)}
    for psf in PSFS:
        for grading in GRADINGS:
            cfg = EventSimConfig(frame_time=FRAME, psf=psf, grading=grading, marx_alpha=MARX["alpha"])
            st = _stats(simulate_events(rate, edges, rmf.matrix, frames * FRAME, config=cfg, seed=2024))
            st["ratio_to_marx"] = {k: round(st[k] / MARX[k], 3)
                                   for k in ("events_per_frame", "kept_fraction", "multiplicity")}
            point[f"{psf}_{grading}"] = st
    point["davis"]["ratio_to_marx"] = {k: round(point["davis"][k] / MARX[k], 3)
                                       for k in ("events_per_frame", "kept_fraction", "multiplicity")}
    out = {"marx_reference": MARX, "source": {"model": "tbabs*powerlaw", **SOURCE,
                                              "mean_detected_energy_kev": round(mean_e, 3)},
           "frame_time_s": FRAME, "photons_per_level": photons_per_level, "marx_point": point, "curve": curve,
           "quick": quick}
    for psf in PSFS:
        for grading in GRADINGS:
            r = point[f"{psf}_{grading}"]["ratio_to_marx"]
            print(f"MARX point L = {L:.3f}: {psf:8s} {grading:5s} events/frame x{r['events_per_frame']:.3f}  "
                  f"kept x{r['kept_fraction']:.3f}  multiplicity x{r['multiplicity']:.3f}")
    fig = _plot(curve, point)
    if fig:
        out["figure"] = str(fig)
    out["compute_s"] = round(time.perf_counter() - t_start, 1)
    return out


def _plot(curve: list[dict], point: dict) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None

    L = np.array([r["photons_per_frame"] for r in curve])
    keys = (("events_per_frame", "good events per frame"), ("kept_fraction", "photons in good events / incident"),
            ("multiplicity", "fraction of good events with >= 2 photons"))
    colors = {"chandra": "C0", "gaussian": "C1", "king": "C2", "delta": "C3"}
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.2))
    for ax, (key, label) in zip(axes, keys, strict=True):
        for psf in PSFS:
            for grading, ls in (("marx", "-"), ("cloud", "--")):
                y = [r[f"{psf}_{grading}"][key] for r in curve]
                ax.plot(L, y, ls, marker="o", ms=3, color=colors[psf],
                        label=f"{psf} PSF, {grading} grades" if key == "events_per_frame" else None)
        ax.plot(L, [r["davis"][key] for r in curve], "k:", label="Davis / jdpileup (alpha 0.5, f 0.95)"
                if key == "events_per_frame" else None)
        ax.plot([point["photons_per_frame"]], [point["marx"][key]], "k*", ms=14,
                label="MARX + marxpileup" if key == "events_per_frame" else None)
        ax.set_xlabel("incident photons per frame")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=1)
    fig.suptitle("ACIS-S on-axis point source, 0.44 s frames, absorbed power law (mean 4.6 keV)", fontsize=10)
    fig.tight_layout()
    from simxray.plots import save_figure

    RESULTS.mkdir(exist_ok=True)
    return save_figure(fig, RESULTS / "eventsim_marx.png", dpi=130)


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick=True), indent=1))
