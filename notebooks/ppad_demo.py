"""PPAD demo: reconstructed light curves and a latent-space map.

    python notebooks/ppad_demo.py [--model DIR] [--out notebooks] [--n 600]

Writes ``ppad_light_curves.png`` (one simulated source per variability class: binned counts,
PPAD rate, true rate and the Bayesian-blocks rate, soft 0.5-1.2 keV and hard 2-7 keV),
``ppad_latent_map.png`` (2-D PCA of the latents of ``--n`` simulated sources, coloured by class
and by true hard_hs) and ``ppad_demo_summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", default=str(ROOT / "notebooks"))
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--seed", type=int, default=31)
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from simxray.events.baselines import bayesian_blocks_rate, gti_overlap
    from simxray.events.ppad import PPAD
    from simxray.events.simulate import KINDS, simulate_population, simulate_source
    from simxray.provenance import atomic_path, provenance

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = PPAD.load(args.model, device="cpu")
    edges = np.asarray(model.cfg.band_edges)
    mids = 0.5 * (edges[:-1] + edges[1:])
    groups = {"soft 0.5-1.2 keV": mids < 1.2, "hard 2-7 keV": mids >= 2.0}

    # --- light curves: one source per class
    rng = np.random.default_rng(args.seed)
    fig, axes = plt.subplots(len(KINDS), 2, figsize=(11, 2.1 * len(KINDS)), sharex="row")
    for r, kind in enumerate(KINDS):
        ev, lab, src = simulate_source(rng, kind, n_expected=3000.0, spectral_change=kind != "constant")
        enc = model.encode([ev])
        t_edges = np.linspace(ev.tstart, ev.tstop, 61)
        fine = np.linspace(ev.tstart, ev.tstop, 1200)
        rate = model.light_curve(enc, 0, fine)
        true = src.band_rates(fine, edges)
        bb = bayesian_blocks_rate(ev, edges, spectrum="block")
        good = gti_overlap(t_edges, ev.gti)
        bidx = np.clip(np.searchsorted(bb.edges, fine, side="right") - 1, 0, len(bb.rates) - 1)
        for c, (gname, sel) in enumerate(groups.items()):
            ax = axes[r, c]
            band = np.searchsorted(edges, ev.energy, side="right") - 1
            inb = (band >= 0) & (band < len(mids))
            m = inb & sel[np.clip(band, 0, len(mids) - 1)]
            counts = np.histogram(ev.time[m], t_edges)[0]
            ok = good > 0
            tc = 0.5 * (t_edges[1:] + t_edges[:-1])
            ax.errorbar((tc[ok] - ev.tstart) / 1e3, counts[ok] / good[ok], np.sqrt(np.maximum(counts[ok], 1)) /
                        good[ok], fmt=".", color="0.5", ms=3, label="binned counts")
            x = (fine - ev.tstart) / 1e3
            ax.plot(x, true[:, sel].sum(1), "k--", lw=1, label="true rate")
            ax.plot(x, bb.rates[bidx][:, sel].sum(1), color="tab:orange", lw=1, label="Bayesian blocks")
            ax.plot(x, rate[:, sel].sum(1), color="tab:blue", lw=1.5, label="PPAD")
            for k in range(len(ev.gti) - 1):
                ax.axvspan((ev.gti[k, 1] - ev.tstart) / 1e3, (ev.gti[k + 1, 0] - ev.tstart) / 1e3, color="0.9")
            ax.set_title(f"{kind} ({'spectral change' if lab['spectral_change'] else 'grey'}) - {gname}", fontsize=8)
            ax.tick_params(labelsize=7)
            if r == len(KINDS) - 1:
                ax.set_xlabel("time since start (ks)", fontsize=8)
            if c == 0:
                ax.set_ylabel("counts/s", fontsize=8)
    axes[0, 0].legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    tmp = atomic_path(out / "ppad_light_curves.png")
    fig.savefig(tmp, dpi=110, format="png")
    os.replace(tmp, out / "ppad_light_curves.png")
    plt.close(fig)

    # --- latent-space map
    events, labels = simulate_population(args.n, seed=args.seed + 1)
    enc = model.encode(events)
    z = (enc.z - enc.z.mean(0)) / (enc.z.std(0) + 1e-9)
    u, s, vt = np.linalg.svd(z, full_matrices=False)
    pc = z @ vt[:2].T
    explained = (s[:2] ** 2 / np.sum(s ** 2)).tolist()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for k, kind in enumerate(KINDS):
        m = labels["kind_id"] == k
        axes[0].scatter(pc[m, 0], pc[m, 1], s=6, label=kind)
    axes[0].legend(fontsize=7, markerscale=2)
    axes[0].set_title("PPAD latents (PCA), coloured by variability class", fontsize=9)
    sc = axes[1].scatter(pc[:, 0], pc[:, 1], s=6, c=labels["hard_hs"], cmap="coolwarm")
    fig.colorbar(sc, ax=axes[1], label="true hard_hs")
    axes[1].set_title("coloured by CSC hardness ratio hard_hs", fontsize=9)
    for ax in axes:
        ax.set_xlabel(f"PC1 ({100 * explained[0]:.0f}%)")
        ax.set_ylabel(f"PC2 ({100 * explained[1]:.0f}%)")
    fig.tight_layout()
    tmp = atomic_path(out / "ppad_latent_map.png")
    fig.savefig(tmp, dpi=110, format="png")
    os.replace(tmp, out / "ppad_latent_map.png")
    plt.close(fig)
    summary = {"n_sources": args.n, "pca_explained": explained, "mean_loss": float(enc.loss.mean()),
               "provenance": provenance(script="notebooks/ppad_demo.py", seed=args.seed,
                                        model=str(args.model or "shipped"))}
    tmp = atomic_path(out / "ppad_demo_summary.json")
    tmp.write_text(json.dumps(summary, indent=2, default=float))
    os.replace(tmp, out / "ppad_demo_summary.json")
    print(f"wrote {out}/ppad_light_curves.png, ppad_latent_map.png, ppad_demo_summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
