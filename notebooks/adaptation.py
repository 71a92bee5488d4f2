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
# # Domain adaptation with a hidden truth
#
# The before/after figures of the adaptation benchmark (docs/adaptation.md): it reads the
# JSON that `python benchmarks/bench_adaptation.py --json FILE` writes (~15-25 min on 2 busy
# cores; `--quick` for a smoke test) and draws recovery, coverage, calibration and emcee
# figures.  `make docs` runs it and writes the figures to `build/docs/`.

# %% tags=["parameters"]
import json
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

# the benchmark's JSON (from the repository root or from notebooks/) and the output folder
ROOT = next(p for p in (Path.cwd(), Path.cwd().parent) if (p / "benchmarks").is_dir())
JSON = Path(os.environ.get("SIMXRAY_ADAPTATION_JSON", ROOT / "benchmarks" / "results" / "adaptation.json"))
OUT = Path(os.environ.get("SIMXRAY_DOCS_OUT", "build/docs"))

# %%
LABELS = {"nH": "log10 nH", "PhoIndex": "Gamma", "norm": "log10 norm"}
SHOW = (("npe_uncalibrated", "NPE, Davis simulator", "tab:red"),
        ("npe_calibrated", "NPE, calibrated Davis", "tab:orange"),
        ("npe_adapted", "NPE, adapted (calibration + correction)", "tab:blue"),
        ("ml_davis", "Davis ML fit (alpha free)", "tab:gray"))
SHOW_EMCEE = (("emcee_davis_emulator", "emcee, Davis emulator", "tab:red"),
              ("emcee_adapted_emulator_plugin", "emcee, adapted emulator, plug-in", "tab:olive"),
              ("emcee_adapted_emulator", "emcee, adapted emulator, marginalised", "tab:green"),
              ("npe_adapted", "NPE, adapted", "tab:blue"))


def coverage_frame(ax, fig_d: dict, name: str) -> None:
    """Nominal-coverage diagonal, its ± 0.1 band, labels and legend of a coverage panel."""
    lv = np.array(fig_d["methods"]["npe_adapted"]["levels"])
    ax.fill_between(lv, lv - 0.1, lv + 0.1, color="k", alpha=0.1, label="nominal ± 0.1")
    ax.plot(lv, lv, "k--", lw=0.8)
    ax.set_xlabel("nominal credibility")
    ax.set_ylabel(f"empirical coverage, {LABELS.get(name, name)}")
    ax.legend(fontsize=6)


def save(fig, name: str) -> None:
    """Write a figure into OUT (a build folder) and close it."""
    OUT.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT / name, dpi=110)
    plt.close(fig)
    print(f"wrote {OUT / name}")


doc = json.loads(JSON.read_text())
fig_d = doc["figures"]
names = fig_d["reference_3c120"]["names"]
truth = np.asarray(fig_d["arrays"]["truth"])
frac = np.asarray(fig_d["arrays"]["pileup_fraction_events"])
est = {k: np.asarray(v) for k, v in fig_d["arrays"]["estimates"].items()}

# %% [markdown]
# ## Recovery
# Estimate − truth against the event-level pileup fraction, per parameter: the uncalibrated
# NPE, the calibrated and the adapted NPE, and the Davis ML fit.

# %%
fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8))
for j, n in enumerate(names):
    ax = axes[j]
    for key, lab, col in SHOW:
        if key in est:
            b = fig_d["methods"][key][n]["bias"]
            ax.scatter(frac, est[key][:, j] - truth[:, j], s=9, color=col, alpha=0.6,
                       label=f"{lab}: bias {b:+.3f}")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("pileup fraction (event simulator)")
    ax.set_ylabel(f"estimate − truth, {LABELS.get(n, n)}")
    ax.legend(fontsize=6)
fig.suptitle(f"held-out pairs: bias ratio adapted/uncalibrated = "
             f"{fig_d['bias_ratio_adapted_over_uncalibrated']:.2f}", fontsize=10)
fig.tight_layout()
save(fig, "adaptation_recovery.png")

# %% [markdown]
# ## Coverage
# Empirical against nominal coverage of central credible intervals.

# %%
fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8))
for j, n in enumerate(names):
    ax = axes[j]
    for key, lab, col in SHOW:
        m = fig_d["methods"].get(key)
        if m:
            ax.plot(m["levels"], m[n]["coverage"], "o-", color=col, label=lab, ms=4)
    coverage_frame(ax, fig_d, n)
fig.tight_layout()
save(fig, "adaptation_coverage.png")

# %% [markdown]
# ## Calibration
# Per-pair calibrated alpha0 and eff, and the Davis model's pileup fraction against the event
# simulator's, for the calibration pairs.

# %%
cal = fig_d["calibration"]["pairs"]
pf_ev = np.array([p["pileup_fraction_events"] for p in cal])
pf_mod = np.array([p["pileup_fraction_model"] for p in cal])
fig, axes = plt.subplots(1, 3, figsize=(12.5, 3.6))
axes[0].scatter(pf_ev, [p["phi_shrunk"]["alpha0"] for p in cal], s=14)
axes[0].set_ylabel("alpha0 (shrunken, per pair)")
axes[1].scatter(pf_ev, [p["phi_shrunk"]["eff"] for p in cal], s=14)
axes[1].set_ylabel("eff (shrunken, per pair)")
for ax in axes[:2]:
    ax.set_xlabel("pileup fraction (event simulator)")
axes[2].scatter(pf_ev, pf_mod, s=14)
axes[2].plot([0, 1], [0, 1], "k--", lw=0.8)
axes[2].set_xlabel("pileup fraction (event simulator)")
axes[2].set_ylabel("pileup fraction (calibrated Davis)")
pop = fig_d["calibration"]["population"]["phi_at_mean"]
fig.suptitle("population: " + ", ".join(f"{k} = {v:.3f}" for k, v in pop.items()), fontsize=10)
fig.tight_layout()
save(fig, "adaptation_calibration.png")

# %% [markdown]
# ## emcee with the adaptation's emulators
# The Davis emulator, the adapted one with its nuisance inputs at the population mean
# (plug-in) and sampled under the calibrated population (marginalised), next to the adapted NPE.

# %%
emu = fig_d.get("emulators")
if emu:
    n_e = int(emu.get("n_test_pairs_emcee", len(truth)))
    fig, axes = plt.subplots(2, len(names), figsize=(4.2 * len(names), 7.2))
    for j, n in enumerate(names):
        ax, axc = axes[0, j], axes[1, j]
        for key, lab, col in SHOW_EMCEE:
            if key not in est:
                continue
            e = est[key][:n_e]
            b = fig_d["methods"][key][n]["bias"]
            ax.scatter(frac[:n_e], e[:, j] - truth[:n_e, j], s=9, color=col, alpha=0.6,
                       label=f"{lab}: bias {b:+.3f}")
            m = fig_d["methods"][key]
            axc.plot(m["levels"], m[n]["coverage"], "o-", color=col, label=lab, ms=4)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel("pileup fraction (event simulator)")
        ax.set_ylabel(f"estimate − truth, {LABELS.get(n, n)}")
        ax.legend(fontsize=6)
        coverage_frame(axc, fig_d, n)
    r = emu["bias_reduction"]
    fig.suptitle(f"emcee on {n_e} held-out pairs: scaled RMS bias {r['scaled_rms_bias_before']:.3f} "
                 f"(Davis emulator) -> {r['scaled_rms_bias_after']:.3f} (adapted, marginalised)",
                 fontsize=10)
    fig.tight_layout()
    save(fig, "adaptation_emcee.png")
