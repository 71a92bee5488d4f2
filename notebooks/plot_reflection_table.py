"""Figure: the default neutral-reflection table next to the xillver references.

    python notebooks/plot_reflection_table.py [--out notebooks/reflection_table.png]

Panels: (1) reflected E^2 N(E) for R = 1 at several inclinations (Gamma 2, Ecut
300 keV, A_Fe 1); (2) the iron-abundance dependence at 41 deg; (3) reflection /
primary of simxray's xillver (default table) and of relxill's xillver at the
parameters of shared/reference/relxill/xillver_random_refdat_0004.fits (logxi
0.34) and xillver_defparam_refdat_0001.fits (logxi 3.1, ionised: outside the
neutral table's reach).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("MPLBACKEND", "Agg")


def load_ref(path: Path):
    import numpy as np
    from astropy.io import fits

    with fits.open(path) as h:
        d = h["DATA"].data
        par = {str(r["name"]).split(".")[-1]: float(r["value"]) for r in h["MODEL"].data}
        e = np.append(np.asarray(d["bin_lo"], float), float(d["bin_hi"][-1]))
        return e, np.asarray(d["value"], float), par


def main(argv=None) -> int:
    import matplotlib.pyplot as plt
    import numpy as np

    from simxray.models import Model, make_grid

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "notebooks" / "reflection_table.png"))
    ap.add_argument("--shared", default=str(REPO.parent / "shared"))
    a = ap.parse_args(argv)
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
    ref_dir = Path(a.shared) / "reference" / "relxill"
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
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
