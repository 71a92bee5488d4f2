"""Benchmark: relline evaluations per second on a 2000-bin log grid (0.1-1000 keV).

Batched evaluation (one call for B random parameter sets, table interpolation,
vectorised over the batch, split over SIMXRAY_THREADS worker threads, default
min(2, CPUs)) against the reference of the same code called once per spectrum
(an unbatched Python loop, as a fitting loop calling a single-spectrum model
would).  Also reports CPU seconds per spectrum (independent of machine load)
and relconv*powerlaw.  Goal: >= 1000 relline evaluations per second on 2 cores.

Why this reference: relxill's relline (XSPEC local model) is not installed
here and sherpa is built without XSPEC support, so an external timing cannot be
taken in the same run; the loop of single-spectrum calls is the same physics
without batching.  ``ratio`` = batched / loop.  On a loaded machine the wall
rates drop; ``*_cpu_ms_per_spectrum`` (process CPU time) is the load-independent
figure: 2 cores / (CPU ms per spectrum) bounds the rate on 2 idle cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._timing import best_wall_cpu  # noqa: E402


def _params(rng, B):
    return {"lineE": rng.uniform(5.5, 7.0, B), "Index1": rng.uniform(2.0, 5.0, B), "Index2": rng.uniform(2.0, 3.5, B),
            "Rbr": rng.uniform(5.0, 50.0, B), "a": rng.uniform(-0.998, 0.998, B), "Incl": rng.uniform(5.0, 85.0, B),
            "Rin": rng.uniform(-3.0, -1.0, B), "Rout": rng.uniform(100.0, 1000.0, B), "z": rng.uniform(0.0, 0.1, B)}


def run(quick: bool = False) -> dict:
    """Spectra per second batched vs an unbatched loop, and CPU ms per spectrum."""
    import os

    import numpy as np

    from simxray.models import Model, make_grid
    from simxray.physics.relativity import models as rm

    edges = make_grid("0.1:1000:2000:log")
    rng = np.random.default_rng(1)
    B = 256 if quick else 2048
    n_loop = 32 if quick else 128
    repeats = 2 if quick else 3
    model = Model("relline")
    p = _params(rng, B)
    model.evaluate(edges, {k: v[:4] for k, v in p.items()})  # load the table, warm caches
    wall_b, cpu_b = best_wall_cpu(lambda: model.evaluate(edges, p), repeats)
    one = [{k: float(v[i]) for k, v in p.items()} for i in range(n_loop)]
    wall_l, cpu_l = best_wall_cpu(lambda: [model.evaluate(edges, q) for q in one], repeats)
    conv = Model("relconv*powerlaw")
    pc = {"a": p["a"][:64], "Incl": p["Incl"][:64], "PhoIndex": rng.uniform(1.5, 2.5, 64)}
    conv.evaluate(edges, {k: v[:2] for k, v in pc.items()})
    wall_c, _ = best_wall_cpu(lambda: conv.evaluate(edges, pc), repeats)
    batched = B / wall_b
    loop = n_loop / wall_l
    ideal_2core = 2e3 / (1e3 * cpu_b / B)
    return {
        "simxray_spectra_per_s": round(batched, 1),
        "reference_spectra_per_s": round(loop, 1),
        "ratio": round(batched / loop, 2),
        "what": f"relline on 0.1-1000 keV, 2000 log bins; batch B={B} vs a loop of {n_loop} single calls; "
                f"{rm._threads()} threads (SIMXRAY_THREADS), best of {repeats}, {os.cpu_count()} CPUs visible",
        "relline_batched_per_s": round(batched, 1),
        "relline_loop_per_s": round(loop, 1),
        "relline_batched_cpu_ms_per_spectrum": round(1e3 * cpu_b / B, 3),
        "relline_loop_cpu_ms_per_spectrum": round(1e3 * cpu_l / n_loop, 3),
        "relconv_powerlaw_batched_per_s": round(64 / wall_c, 1),
        "goal_relline_per_s": 1000,
        "relline_per_s_2_idle_cores_from_cpu_time": round(ideal_2core, 1),
        "meets_goal": bool(batched >= 1000),
    }


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
