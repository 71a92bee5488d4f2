"""Event-level ACIS pileup Monte Carlo: throughput, checks, and comparison with Davis (2001).

    python benchmarks/run.py --only eventsim [--quick] [--json FILE]

Source: ``tbabs*powerlaw`` (nH 0.1, Γ 1.7) through the NGC 4258 ObsID 1618 ARF/RMF
(``simxray/data``), 3.24104 s frames, the on-axis Chandra mirror PSF with dither (the event
simulator's default since issue 16; the Gaussian PSF was the default before).

Figures:

* ``events_per_s``: good + rejected events produced per wall second (1 thread);
* ``low_rate_chi2_p``: chi-square p-value of the good-grade spectrum at 0.004 photons per
  frame against the ARF x RMF folded model (grouped to >= 25 expected counts);
* ``curve``: per incident photons/frame L, the piled fraction of detected islands for a
  delta PSF (all photons of a frame in one island), the Gaussian and the Chandra PSF, and the published
  Chandra curve 1 - L/(e^L - 1) (ABC guide, CIAO pileup thread);
* ``davis``: per L, the Davis model fitted to the event-level spectrum by C-stat over a grid
  of alpha (and f), n = g0 = fracexp = 1 and the true source fixed: best alpha and f,
  C-stat of the best fit against its expectation for Poisson data drawn from that fit
  (``cstat_excess_sigma``: how many standard deviations the event-level spectrum is from
  anything the Davis model can produce), and the ratio of Davis' predicted counts
  and pileup fraction to the event simulator's.  ``alpha`` drifting with L, or a large
  ``cstat_excess_sigma``, is where the one-parameter grade-migration model departs from the
  event-level physics.

The figure ``benchmarks/results/eventsim_vs_davis.png`` (written when matplotlib is
available) shows the curve and the spectra at three rates with Davis' best fit.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

FRAME = 3.24104
RESULTS = Path(__file__).resolve().parent / "results"


def _setup():
    from simxray.datasets import data_path
    from simxray.instrument.response import Response
    from simxray.io.ogip import read_arf, read_rmf
    from simxray.models import Model

    arf = read_arf(data_path("arf.fits"))
    rmf = read_rmf(data_path("rmf.fits"))
    resp = Response.from_arf_rmf(arf, rmf, exposure=1.0)
    edges = np.append(arf.energ_lo, arf.energ_hi[-1])
    model = Model("tbabs*powerlaw")
    pars = {"nH": 0.1, "PhoIndex": 1.7, "norm": 1.0}
    rate1 = model.evaluate(edges, pars) * arf.specresp  # photons/s per bin at norm 1
    return arf, rmf, resp, edges, model, pars, rate1


def _cstat(obs: np.ndarray, mu: np.ndarray) -> np.ndarray:
    mu = np.maximum(mu, 1e-300)
    t = np.where(obs > 0, obs * np.log(np.where(obs > 0, obs, 1.0) / mu), 0.0)
    return 2.0 * np.sum(mu - obs + t, axis=-1)


def run(quick: bool = False) -> dict:
    import torch

    from simxray.instrument.eventsim import EventSimConfig, simulate_events
    from simxray.instrument.pileup import PileupParams, get_pileup

    torch.set_num_threads(1)
    arf, rmf, resp, edges, model, pars, rate1 = _setup()
    n_ch = rmf.matrix.shape[1]
    lo, hi = resp.channel_slice(0.5, 8.0).start, resp.channel_slice(0.5, 8.0).stop
    figs: dict = {}

    # throughput and low-rate consistency
    low = rate1 * (0.004 / (rate1.sum() * FRAME))
    exposure = (2e4 if quick else 6e4) * FRAME / 0.004
    t0 = time.perf_counter()
    ev = simulate_events(low, edges, rmf.matrix, exposure, seed=3)
    dt = time.perf_counter() - t0
    figs["events_per_s"] = round(ev.pi.size / dt, 1)
    obs = ev.spectrum(n_ch)
    mu = np.asarray(rmf.matrix.T @ (low * exposure)).ravel()
    mu *= obs.sum() / mu.sum()
    cum = np.cumsum(mu)
    groups = np.r_[0, np.flatnonzero(np.diff(cum // 25) > 0) + 1]
    o, m = np.add.reduceat(obs, groups), np.add.reduceat(mu, groups)
    keep = m > 5
    from scipy import stats

    chi2 = float(np.sum((o[keep] - m[keep]) ** 2 / m[keep]))
    figs["low_rate_chi2"] = round(chi2, 1)
    figs["low_rate_dof"] = int(keep.sum() - 1)
    figs["low_rate_chi2_p"] = round(float(stats.chi2.sf(chi2, keep.sum() - 1)), 4)

    # pileup curve and Davis comparison across rates
    levels = [0.05, 0.2, 0.6] if quick else [0.05, 0.1, 0.2, 0.4, 0.8, 1.2]
    n_events = 2.0e4 if quick else 8.0e4
    pile = get_pileup(resp)
    src = model.evaluate(pile.source_edges, pars)  # photons/cm^2/s per kernel bin, norm 1
    alphas = np.linspace(0.0, 1.0, 41)
    fs = np.linspace(0.80, 1.0, 9)
    A, F = np.meshgrid(alphas, fs, indexing="ij")
    curve, davis, spectra = [], [], []
    for L in levels:
        scale = L / (rate1.sum() * FRAME)
        exp_s = n_events * FRAME / L
        row = {"photons_per_frame": L, "abc_curve": round(float(1 - L / np.expm1(L)), 4)}
        for psf in ("delta", "gaussian", "chandra"):
            e = simulate_events(rate1 * scale, edges, rmf.matrix, exp_s,
                                config=EventSimConfig(psf=psf), seed=int(1000 * L) + 1)
            row[f"pileup_fraction_{psf}"] = round(e.pileup_fraction(), 4)
            row[f"good_fraction_{psf}"] = round(1.0 - e.loss_fraction(), 4)
        curve.append(row)
        obs = e.spectrum(n_ch)[lo:hi].astype(float)  # Chandra PSF (the last one): the realistic case
        resp.exposure = exp_s
        p = PileupParams.from_mapping({"alpha": torch.as_tensor(A.ravel()), "f": torch.as_tensor(F.ravel()),
                                       "g0": 1.0, "n": 1.0, "fracexp": 1.0, "ftime": FRAME})
        cnt, frac = pile.channel_counts(torch.as_tensor(src * scale).expand(A.size, -1), p,
                                        channels=slice(lo, hi))
        cnt = cnt.numpy()
        c = _cstat(obs[None], cnt)
        k = int(np.argmin(c))
        unpiled = np.asarray(rmf.matrix.T @ (rate1 * scale * exp_s)).ravel()[lo:hi]
        # goodness of fit: C-stat against its distribution for Poisson data from the best fit
        rng = np.random.default_rng(int(1000 * L))
        ref = _cstat(rng.poisson(np.broadcast_to(cnt[k], (200, cnt.shape[1]))).astype(float), cnt[k][None])
        davis.append({
            "photons_per_frame": L,
            "best_alpha": round(float(A.ravel()[k]), 3),
            "best_f": round(float(F.ravel()[k]), 3),
            "cstat": round(float(c[k]), 1),
            "cstat_expected": round(float(ref.mean()), 1),
            "cstat_excess_sigma": round(float((c[k] - ref.mean()) / ref.std()), 2),
            "cstat_alpha_0.5_f_0.95": round(float(
                c[int(np.argmin(np.abs(A.ravel() - 0.5) + np.abs(F.ravel() - 0.95)))]), 1),
            "counts_ratio_davis_over_eventsim": round(float(cnt[k].sum() / obs.sum()), 4),
            "eventsim_counts_over_unpiled": round(float(obs.sum() / unpiled.sum()), 4),
            "davis_pileup_fraction": round(float(frac[k]), 4),
            "eventsim_pileup_fraction": row["pileup_fraction_chandra"],
        })
        spectra.append((L, obs, cnt[k], unpiled))
    resp.exposure = 1.0
    figs["curve"] = curve
    figs["davis"] = davis
    figs["best_alpha_range"] = [min(d["best_alpha"] for d in davis), max(d["best_alpha"] for d in davis)]
    fig_path = _plot(curve, spectra, resp, lo, hi)
    if fig_path:
        figs["figure"] = str(fig_path)
    figs["n_events_per_rate"] = int(n_events)
    figs["quick"] = quick
    return figs


def _plot(curve, spectra, resp, lo, hi) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return None

    ch_e = 0.5 * (resp.e_min + resp.e_max)[lo:hi]
    fig, axes = plt.subplots(1, 1 + min(3, len(spectra)), figsize=(4.2 * (1 + min(3, len(spectra))), 3.8))
    ax = axes[0]
    L = np.array([r["photons_per_frame"] for r in curve])
    x = np.linspace(0.01, L.max() * 1.05, 200)
    ax.plot(x, 1 - x / np.expm1(x), "k-", label="ABC guide: 1 - L/(e$^L$ - 1)")
    ax.plot(L, [r["pileup_fraction_delta"] for r in curve], "o", label="event sim, delta PSF")
    ax.plot(L, [r["pileup_fraction_gaussian"] for r in curve], "s", label="event sim, Gaussian PSF")
    ax.plot(L, [r["pileup_fraction_chandra"] for r in curve], "^", label="event sim, Chandra PSF")
    ax.set_xlabel("incident photons per frame L")
    ax.set_ylabel("piled fraction of events")
    ax.legend(fontsize=8)
    pick = [spectra[0], spectra[len(spectra) // 2], spectra[-1]][: len(axes) - 1]
    for ax, (lvl, obs, mod, unp) in zip(axes[1:], pick, strict=False):
        g = 8
        n = obs.size // g * g
        e = ch_e[:n].reshape(-1, g).mean(1)
        ax.step(e, obs[:n].reshape(-1, g).sum(1), where="mid", label="event sim (Chandra PSF)")
        ax.plot(e, mod[:n].reshape(-1, g).sum(1), "r-", label="Davis best fit")
        ax.plot(e, unp[:n].reshape(-1, g).sum(1), "k:", label="no pileup")
        ax.set_xscale("log")
        ax.set_xticks([0.5, 1, 2, 5])
        ax.set_xticklabels(["0.5", "1", "2", "5"])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_yscale("log")
        ax.set_ylim(1, None)
        ax.set_xlabel("energy [keV]")
        ax.set_ylabel("counts per 117 eV")
        ax.set_title(f"L = {lvl} photons/frame")
        ax.legend(fontsize=7)
    fig.tight_layout()
    from simxray.plots import save_figure

    RESULTS.mkdir(exist_ok=True)
    return save_figure(fig, RESULTS / "eventsim_vs_davis.png", dpi=110)


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick=True), indent=1))
