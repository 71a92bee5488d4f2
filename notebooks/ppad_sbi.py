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
# # Event-level SBI with a frozen PPAD encoder
#
# Flare amplitude and flare hardness from an event list: NPE (sbi) with the frozen PPAD
# encoder as embedding network (`simxray/events/sbi_demo.py`, docs/ppad.md).  The figure
# shows posterior mean against truth for both parameters and the posterior of one test
# source.  `make docs` runs it with the small defaults below and writes
# `ppad_sbi_recovery.png` and `ppad_sbi_summary.json` to `build/docs/`; the numbers in
# docs/ppad.md used `N_SIMS = 1500`, `N_TEST = 50`.

# %% tags=["parameters"]
import json
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from simxray.events.ppad import PPAD
from simxray.events.sbi_demo import PARAM_NAMES, evaluate, prior, simulate_flares, train_flare_npe
from simxray.provenance import provenance

MODEL = os.environ.get("SIMXRAY_PPAD_MODEL")     # None: the shipped encoder
N_SIMS = 300                                     # training simulations (1500 for the docs)
N_TEST = 20                                      # held-out test sources (50 for the docs)
SEED = 0
OUT = Path(os.environ.get("SIMXRAY_DOCS_OUT", "build/docs"))

# %% [markdown]
# ## Train the NPE on simulated flares, then evaluate it on fresh ones

# %%
model = PPAD.load(MODEL, device="cpu")
t0 = time.time()
posterior, emb, theta, x = train_flare_npe(model, n_sims=N_SIMS, seed=SEED)
t_train = time.time() - t0
torch.manual_seed(SEED + 1)
theta_test = prior().sample((N_TEST,)).numpy()
events = simulate_flares(theta_test, seed=SEED + 1)
res = evaluate(posterior, model, theta_test, events=events)
means = np.array(res.pop("posterior_mean"))
print(json.dumps(res, indent=2))

# %% [markdown]
# ## Recovery and one posterior

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 4))
for j, name in enumerate(PARAM_NAMES):
    ax = axes[j]
    ax.scatter(theta_test[:, j], means[:, j], s=10)
    lim = [theta_test[:, j].min(), theta_test[:, j].max()]
    ax.plot(lim, lim, "k--", lw=1)
    ax.set_xlabel(f"true {name}")
    ax.set_ylabel(f"posterior mean {name}")
    ax.set_title(f"RMSE {res[name]['rmse']:.3f} (prior {res[name]['prior_rmse']:.3f}), "
                 f"68% cov {res[name]['coverage68']:.2f}", fontsize=8)
xo = torch.as_tensor(model.encode(events[:1]).z[0])
s = posterior.sample((2000,), x=xo, show_progress_bars=False).numpy()
axes[2].scatter(s[:, 0], s[:, 1], s=2, alpha=0.3)
axes[2].plot(theta_test[0, 0], theta_test[0, 1], "r*", ms=14, label="truth")
axes[2].set_xlabel(PARAM_NAMES[0])
axes[2].set_ylabel(PARAM_NAMES[1])
axes[2].legend()
axes[2].set_title("posterior of test source 0", fontsize=8)
fig.tight_layout()
OUT.mkdir(parents=True, exist_ok=True)
fig.savefig(OUT / "ppad_sbi_recovery.png", dpi=110)
plt.close(fig)
summary = {"n_sims": N_SIMS, "n_test": N_TEST, "train_seconds": t_train, "metrics": res,
           "provenance": provenance(script="notebooks/ppad_sbi.py", seed=SEED, model=str(MODEL or "shipped"))}
(OUT / "ppad_sbi_summary.json").write_text(json.dumps(summary, indent=2, default=float))
print(f"wrote {OUT / 'ppad_sbi_recovery.png'}")
