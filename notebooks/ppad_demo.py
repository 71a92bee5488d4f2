# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # PPAD: reconstructed light curves and a latent-space map
#
# The shipped PPAD encoder (docs/ppad.md) on simulated sources: one source per variability
# class (binned counts, PPAD rate, true rate and the Bayesian-blocks rate, soft 0.5-1.2 keV
# and hard 2-7 keV), then a 2-D PCA of the latents of `N_SOURCES` simulated sources, coloured
# by class and by the true hardness ratio.  `make docs` runs it with the small default below
# and writes `ppad_light_curves.png`, `ppad_latent_map.png` and `ppad_demo_summary.json` to
# `build/docs/`; the figures in docs/ppad.md used `N_SOURCES = 600`.

# %% tags=["parameters"]
import json
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from simxray.events.baselines import bayesian_blocks_rate, gti_overlap
from simxray.events.ppad import PPAD
from simxray.events.simulate import KINDS, simulate_population, simulate_source
from simxray.provenance import provenance

MODEL = os.environ.get("SIMXRAY_PPAD_MODEL")     # None: the shipped encoder
N_SOURCES = 120                                  # 600 for the documented figure
SEED = 31
OUT = Path(os.environ.get("SIMXRAY_DOCS_OUT", "build/docs"))


def save(fig, name: str) -> None:
    """Write a figure into OUT (a build folder) and close it."""
    OUT.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT / name, dpi=110)
    plt.close(fig)
    print(f"wrote {OUT / name}")


# %%
model = PPAD.load(MODEL, device="cpu")
edges = np.asarray(model.cfg.band_edges)
mids = 0.5 * (edges[:-1] + edges[1:])
groups = {"soft 0.5-1.2 keV": mids < 1.2, "hard 2-7 keV": mids >= 2.0}

# %% [markdown]
# ## One source per variability class

# %%
rng = np.random.default_rng(SEED)
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
save(fig, "ppad_light_curves.png")

# %% [markdown]
# ## Latent-space map

# %%
events, labels = simulate_population(N_SOURCES, seed=SEED + 1)
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
save(fig, "ppad_latent_map.png")
summary = {"n_sources": N_SOURCES, "pca_explained": explained, "mean_loss": float(enc.loss.mean()),
           "provenance": provenance(script="notebooks/ppad_demo.py", seed=SEED, model=str(MODEL or "shipped"))}
(OUT / "ppad_demo_summary.json").write_text(json.dumps(summary, indent=2, default=float))
