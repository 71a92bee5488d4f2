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
# # The default neutral-reflection table next to the xillver references
#
# Panels: (1) reflected E² N(E) for R = 1 at several inclinations (Γ 2, Ecut 300 keV,
# A_Fe 1); (2) the iron-abundance dependence at 41°; (3) reflection / primary of simxray's
# xillver (default table) and of relxill's xillver at the parameters of
# `shared/reference/relxill/xillver_random_refdat_0004.fits` (logxi 0.34) and
# `xillver_defparam_refdat_0001.fits` (logxi 3.1, ionised: outside the neutral table's
# reach; panel 3 is empty without the shared references).  docs/reflection.md;
# `make docs` writes `reflection_table.png` to `build/docs/`.

# %% tags=["parameters"]
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from astropy.io import fits

from simxray.models import Model, make_grid

# the shared reference data (relxill outputs; beside the repository) and the output folder
ROOT = next(p for p in (Path.cwd(), Path.cwd().parent) if (p / "notebooks").is_dir())
SHARED = Path(os.environ.get("SIMXRAY_SHARED", ROOT.parent / "shared"))
OUT = Path(os.environ.get("SIMXRAY_DOCS_OUT", "build/docs"))


# %%
def load_ref(path: Path):
    with fits.open(path) as h:
        d = h["DATA"].data
        par = {str(r["name"]).split(".")[-1]: float(r["value"]) for r in h["MODEL"].data}
        e = np.append(np.asarray(d["bin_lo"], float), float(d["bin_hi"][-1]))
        return e, np.asarray(d["value"], float), par


# %%
e = make_grid("0.1:1000:2000:log")
c = np.sqrt(e[1:] * e[:-1])
x = Model("xillver")
fig, ax = plt.subplots(1, 3, figsize=(15, 4.5))
for incl in (18.2, 41.4, 63.3, 81.4):
    y = x.evaluate(e, {"Incl": incl, "refl_frac": -1})
    ax[0].loglog(c, y * c**2 / np.diff(e), label=f"i = {incl:.0f} deg")
prim = x.evaluate(e, {"refl_frac": 0})
ax[0].loglog(c, prim * c**2 / np.diff(e), "k:", label="primary")
ax[0].set(xlim=(0.1, 500), ylim=(1, 2e3), xlabel="E (keV)", ylabel="E^2 N(E)",
          title="default table: R = 1, Gamma 2, Ecut 300")
ax[0].legend(fontsize=8)
for afe in (0.5, 1, 2, 5, 10):
    y = x.evaluate(e, {"Incl": 41.4, "Afe": afe, "refl_frac": -1})
    ax[1].loglog(c, y * c**2 / np.diff(e), label=f"A_Fe = {afe:g}")
ax[1].set(xlim=(1, 100), ylim=(10, 500), xlabel="E (keV)", title="iron abundance, i = 41 deg")
ax[1].legend(fontsize=8)
ref_dir = SHARED / "reference" / "relxill"
for name, col in (("xillver_random_refdat_0004.fits", "C0"), ("xillver_defparam_refdat_0001.fits", "C3")):
    path = ref_dir / name
    if not path.is_file():
        continue
    er, yr, p = load_ref(path)
    pars = dict(gamma=p["gamma"], Afe=p["Afe"], Ecut=p["Ecut"], logxi=p["logxi"], z=p["z"],
                Incl=p["Incl"], norm=1.0)
    ours = x.evaluate(er, {**pars, "refl_frac": -1})
    pr = x.evaluate(er, {**pars, "refl_frac": 0})
    cr = np.sqrt(er[1:] * er[:-1])
    ax[2].loglog(cr, yr / pr, col, lw=0.8, label=f"relxill xillver, logxi {p['logxi']:.2f}")
    ax[2].loglog(cr, ours / pr, col + "--", lw=1.2,
                 label=f"simxray default table (neutral), gamma {p['gamma']:.2f}")
ax[2].set(xlim=(0.1, 300), ylim=(1e-3, 5), xlabel="E (keV, observed)", ylabel="reflection / primary",
          title="vs xillver references")
ax[2].legend(fontsize=7)
fig.tight_layout()
OUT.mkdir(parents=True, exist_ok=True)
fig.savefig(OUT / "reflection_table.png", dpi=110)
print(f"wrote {OUT / 'reflection_table.png'}")
