"""Benchmark: batched piled-up simulation of the default config (spectra per second).

``run(quick)`` builds the simulator of ``simulations/acis_default.toml`` (tbabs*powerlaw,
Davis pileup on Sherpa's 4096-bin kernel, NGC 4258 ACIS-S response, 0.5-8 keV) and times
``Simulator.sample`` (prior draw, model, pileup, RMF, Poisson, background) in one
process, single-threaded as in a campaign chunk and with torch's default threads.
``simxray_spectra_per_s`` is the single-threaded batched rate; the reference is the same
simulator called one spectrum at a time (what an unbatched loop, e.g. over Sherpa's
model evaluation, would do), so ``ratio`` is the gain from batching.
"""

from __future__ import annotations

import platform
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _time(sim, n: int, batch: int, seed: int = 0) -> float:
    import numpy as np

    rng = np.random.default_rng(seed)
    sim.batch_size = batch
    t0 = time.perf_counter()
    done = 0
    while done < n:
        k = min(batch, n - done)
        sim.sample(k, rng)
        done += k
    return time.perf_counter() - t0


def run(quick: bool = False) -> dict:
    """Spectra per second of the default campaign's forward simulation."""
    import torch

    from simxray.simulator.config import load_config
    from simxray.simulator.simulator import Simulator

    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    cfg = load_config(REPO / "simulations" / "acis_default.toml")
    t0 = time.perf_counter()
    sim = Simulator.from_config(cfg)
    build = time.perf_counter() - t0
    n = 256 if quick else 2048
    batch = cfg.chunk_size
    sim.sample(8, 0)  # warm-up (caches, kernels)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t1 = _time(sim, n, batch)
        n1 = 16 if quick else 64
        t_one = _time(sim, n1, 1)
    finally:
        torch.set_num_threads(threads)
    tn = _time(sim, n, batch)
    return {
        "name": "simulate",
        "what": "Simulator.sample on simulations/acis_default.toml (tbabs*powerlaw + jdpileup, "
                "4096-bin kernel, 514 channels, Poisson + background)",
        "n_spectra": n,
        "batch": batch,
        "build_s": round(build, 3),
        "spectra_per_s_1thread": round(n / t1, 1),
        f"spectra_per_s_{threads}threads": round(n / tn, 1),
        "ms_per_spectrum_1thread": round(1e3 * t1 / n, 3),
        "simxray_spectra_per_s": round(n / t1, 1),
        "reference_spectra_per_s": round(n1 / t_one, 1),
        "reference": "same simulator, one spectrum per call (batch 1), 1 thread",
        "ratio": round((n / t1) / (n1 / t_one), 2),
        "torch_threads": threads,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "quick": bool(quick),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
