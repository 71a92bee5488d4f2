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
# # Relativistic line profiles
#
# The classic diskline plot: line profiles for several spins and inclinations from
# simxray's relativistic transfer functions (docs/relativity.md).  `make docs` writes
# `relline_profiles.png` to `build/docs/`.

# %% tags=["parameters"]
import os
from pathlib import Path

from simxray.physics.relativity.plot import plot_line_profiles

OUT = Path(os.environ.get("SIMXRAY_DOCS_OUT", "build/docs"))

# %%
OUT.mkdir(parents=True, exist_ok=True)
plot_line_profiles(OUT / "relline_profiles.png")
print(f"wrote {OUT / 'relline_profiles.png'}")
