"""Benchmark: relxill spectra per second on a 2000-bin log grid (0.1-1000 keV).

relxill = xillver intensities at the 10 emission angles (table interpolation) ->
log-grid convolution (FFT) with the relativistic kernel split by emission angle ->
primary -> rebinning.  Batched evaluation (one call for B random parameter sets:
spin, inclination, emissivity, Gamma, A_Fe, Ecut, z; the kernel and the
post-kernel steps each split over SIMXRAY_THREADS threads, default min(2, CPUs))
is measured against the reference of the same code called once per spectrum (an
unbatched Python loop, as a fitting loop calling a single-spectrum model would),
in the same run.  Also reported: CPU ms per spectrum (less sensitive to machine
load than wall time), the share of the relativistic kernel, and xillver.
Goal: >= 300 relxill spectra per second on 2 cores.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._timing import best_wall_cpu  # noqa: E402


def run(quick: bool = False) -> dict:
    """relxill spectra per second, batched vs an unbatched loop; kernel share; xillver."""
    import numpy as np

    from simxray.models import Model, make_grid
    from simxray.physics.reflection.models import CONV_PER_DEX, _threads, get_table
    from simxray.physics.relativity.models import kernel

    edges = make_grid("0.1:1000:2000:log")
    B = 128 if quick else 512
    n_loop = 16 if quick else 64
    repeats = 2 if quick else 3
    rng = np.random.default_rng(0)
    p = {"a": rng.uniform(0, 0.998, B), "Incl": rng.uniform(10, 80, B), "Index1": rng.uniform(2, 5, B),
         "gamma": rng.uniform(1.5, 2.8, B), "Afe": rng.uniform(0.5, 5, B),
         "Ecut": rng.uniform(50, 500, B), "z": rng.uniform(0, 0.1, B)}
    rel, xil = Model("relxill"), Model("xillver")
    rel.evaluate(edges, {k: v[:2] for k, v in p.items()})  # load the tables, warm caches
    wall_b, cpu_b = best_wall_cpu(lambda: rel.evaluate(edges, p), repeats)
    one = [{k: float(v[i]) for k, v in p.items()} for i in range(n_loop)]
    wall_l, cpu_l = best_wall_cpu(lambda: [rel.evaluate(edges, q) for q in one], repeats)
    px = {k: p[k] for k in ("Incl", "gamma", "Afe", "Ecut", "z")}
    wall_x, _ = best_wall_cpu(lambda: xil.evaluate(edges, px), repeats)
    dlog = np.log(10.0) / CONV_PER_DEX
    kg = np.exp((np.arange(-int(np.ceil(np.log(100) / dlog)), int(np.ceil(np.log(2) / dlog)) + 2) - 0.5) * dlog)
    wall_k, _ = best_wall_cpu(lambda: kernel(kg, p["a"], p["Incl"], -1.0, 400.0, p["Index1"], 3.0, 15.0, n_mu=10),
                       repeats)
    batched, loop = B / wall_b, n_loop / wall_l
    return {
        "what": f"relxill on 0.1-1000 keV, 2000 log bins; batch B={B} random parameters vs a loop of "
                f"{n_loop} single calls; {_threads()} threads, best of {repeats}, {os.cpu_count()} CPUs "
                f"visible, 1-min load average {os.getloadavg()[0]:.1f}",
        "table": get_table().path.name,
        "simxray_spectra_per_s": round(batched, 1),
        "reference_spectra_per_s": round(loop, 1),
        "ratio": round(batched / loop, 2),
        "relxill_batched_cpu_ms_per_spectrum": round(1e3 * cpu_b / B, 3),
        "relxill_loop_cpu_ms_per_spectrum": round(1e3 * cpu_l / n_loop, 3),
        "kernel_share_of_batched_wall": round(wall_k / wall_b, 3),
        "xillver_batched_per_s": round(B / wall_x, 1),
        "goal_relxill_per_s": 300,
        "meets_goal": bool(batched >= 300),
    }


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
