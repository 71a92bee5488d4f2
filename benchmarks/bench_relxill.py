"""Benchmark: batched relxill (and xillver) spectra per second on a 2000-bin grid.

relxill = xillver intensities at the 10 emission angles (table interpolation) ->
log-grid convolution (FFT) with the relativistic kernel split by emission angle ->
primary -> rebinning.  Random parameters (spin, inclination, emissivity, Gamma,
A_Fe, Ecut, z) in batches; the figure is the best of a few repeats.  The share of
the time spent in the relativistic kernel (simxray.physics.relativity) is reported
separately.  Goal: >= 300 relxill spectra/s on 2 cores.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(quick: bool = False) -> dict:
    """relxill/xillver spectra per second; kernel share of the relxill time."""
    import numpy as np

    from simxray.models import Model, make_grid
    from simxray.physics.reflection.models import CONV_PER_DEX, get_table
    from simxray.physics.relativity.models import kernel

    edges = make_grid("0.1:1000:2000:log")
    B = 64 if quick else 256
    repeats = 2 if quick else 3
    rng = np.random.default_rng(0)
    p = {"a": rng.uniform(0, 0.998, B), "Incl": rng.uniform(10, 80, B), "Index1": rng.uniform(2, 5, B),
         "gamma": rng.uniform(1.5, 2.8, B), "Afe": rng.uniform(0.5, 5, B),
         "Ecut": rng.uniform(50, 500, B), "z": rng.uniform(0, 0.1, B)}
    rel, xil = Model("relxill"), Model("xillver")
    rel.evaluate(edges, {k: v[:2] for k, v in p.items()})  # load table, warm caches
    t_rel = _best(lambda: rel.evaluate(edges, p), repeats)
    px = {k: p[k] for k in ("Incl", "gamma", "Afe", "Ecut", "z")}
    t_xil = _best(lambda: xil.evaluate(edges, px), repeats)
    tab = get_table()
    dlog = np.log(10.0) / CONV_PER_DEX
    kg = np.exp((np.arange(-int(np.ceil(np.log(100) / dlog)), int(np.ceil(np.log(2) / dlog)) + 2) - 0.5) * dlog)
    t_ker = _best(lambda: kernel(kg, p["a"], p["Incl"], -1.0, 400.0, p["Index1"], 3.0, 15.0, n_mu=10),
                  repeats)
    return {
        "what": f"relxill B={B} random parameters, 0.1-1000 keV 2000 log bins, best of {repeats}",
        "table": str(tab.path.name),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "simxray_spectra_per_s": round(B / t_rel, 1),
        "ms_per_relxill_spectrum": round(1e3 * t_rel / B, 3),
        "kernel_share_of_relxill": round(t_ker / t_rel, 3),
        "relxill_spectra_per_s_without_kernel": round(B / max(t_rel - t_ker, 1e-9), 1),
        "xillver_spectra_per_s": round(B / t_xil, 1),
        "goal_spectra_per_s": 300,
    }


if __name__ == "__main__":
    for k, v in run(quick="--quick" in sys.argv).items():
        print(f"{k:40s} {v}")
